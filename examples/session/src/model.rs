//! The model seam of the node driver: the [`Model`] trait an LLM backend implements, the
//! [`Output`] it streams, and the built-in [`EchoModel`] that lets the node run without one
//! (the OpenAI-compatible backend is [`crate::upstream`]).

use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use sealwire::session::ErrorCode;

/// One item of a model's answer stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A piece of text (whole UTF-8 characters): one `encrypted_chunk`.
    Text(String),
    /// The answer ended normally: the model's finish reason and, when it reported them, its
    /// token counts. A stream that simply ends counts as `stop` with counts estimated by the
    /// node.
    End {
        /// e.g. `stop`, `length`.
        finish_reason: String,
        /// Prompt tokens as the model counted them.
        prompt_tokens: Option<u64>,
        /// Completion tokens as the model counted them.
        completion_tokens: Option<u64>,
    },
    /// The answer failed: the client gets an `error` frame with `code` (nothing after it).
    /// `message` goes to the client: it must hold no prompt text or upstream detail.
    Failed {
        /// Usually [`ErrorCode::InferenceFailed`]; [`ErrorCode::Capacity`] when refused busy.
        code: ErrorCode,
        /// A short fixed description.
        message: &'static str,
    },
}

/// An LLM backend: turns a prompt into a stream of [`Output`]s. Dropping the stream must abort
/// the work (the node drops it when the client cancels or goes away).
pub trait Model: Send + Sync + 'static {
    /// Starts generating an answer with `model` (the session's model name). The prompt is
    /// borrowed: copy only what the answer needs.
    fn generate(&self, model: &str, prompt: &str) -> BoxStream<'static, Output>;
    /// The context window reported in `stream_end` usage.
    fn context_window(&self) -> u64 {
        0
    }
}

/// Echoes the prompt back, one word (with its trailing whitespace) per piece.
///
/// ```
/// use futures_util::StreamExt;
/// use session_examples::model::{EchoModel, Model, Output};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let model = EchoModel { delay: std::time::Duration::ZERO };
/// let pieces: Vec<Output> = model.generate("echo", "hello  wide world").collect().await;
/// let text = |t: &str| Output::Text(t.into());
/// assert_eq!(pieces, [text("hello  "), text("wide "), text("world")]);
/// # });
/// ```
pub struct EchoModel {
    /// Pause before each word (to make cancellation observable).
    pub delay: Duration,
}

impl Model for EchoModel {
    fn generate(&self, _model: &str, prompt: &str) -> BoxStream<'static, Output> {
        let mut words = Vec::new();
        let mut start = 0;
        let mut in_space = false;
        for (i, c) in prompt.char_indices() {
            if c.is_whitespace() {
                in_space = true;
            } else if in_space {
                words.push(prompt[start..i].to_owned());
                start = i;
                in_space = false;
            }
        }
        if start < prompt.len() {
            words.push(prompt[start..].to_owned());
        }
        let delay = self.delay;
        futures_util::stream::iter(words)
            .then(move |w| async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Output::Text(w)
            })
            .boxed()
    }

    fn context_window(&self) -> u64 {
        8192
    }
}
