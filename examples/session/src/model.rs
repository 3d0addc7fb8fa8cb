//! The model seam of the node driver: the [`Model`] trait an LLM backend implements, and the
//! built-in [`EchoModel`] that lets the node run without one.

use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;

/// An LLM backend: turns a prompt into a stream of text pieces (each piece whole UTF-8
/// characters; the node sends one `encrypted_chunk` per piece).
pub trait Model: Send + Sync + 'static {
    /// Starts generating an answer. The prompt is borrowed: copy only what the answer needs.
    fn generate(&self, prompt: &str) -> BoxStream<'static, String>;
    /// The context window reported in `stream_end` usage.
    fn context_window(&self) -> u64 {
        0
    }
}

/// Echoes the prompt back, one word (with its trailing whitespace) per piece.
///
/// ```
/// use futures_util::StreamExt;
/// use session_examples::model::{EchoModel, Model};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let model = EchoModel { delay: std::time::Duration::ZERO };
/// let pieces: Vec<String> = model.generate("hello  wide world").collect().await;
/// assert_eq!(pieces, ["hello  ", "wide ", "world"]);
/// # });
/// ```
pub struct EchoModel {
    /// Pause before each word (to make cancellation observable).
    pub delay: Duration,
}

impl Model for EchoModel {
    fn generate(&self, prompt: &str) -> BoxStream<'static, String> {
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
                w
            })
            .boxed()
    }

    fn context_window(&self) -> u64 {
        8192
    }
}
