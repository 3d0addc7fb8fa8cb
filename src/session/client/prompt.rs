//! What an application asks the client to send: the session it opens ([`SessionParams`]) and
//! each prompt ([`Prompt`]).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::session::{PromptImage, VectorDatabase};

/// The session a client opens (envelope ids and the encrypted init's content).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionParams {
    /// Session id (decimal).
    pub session_id: String,
    /// Job id (decimal).
    pub job_id: String,
    /// Chain id.
    pub chain_id: u64,
    /// Model name, passed through.
    pub model: String,
    /// Price per token (the SDK always sends 0).
    pub price_per_token: u64,
    /// Optional RAG database reference.
    pub vector_database: Option<VectorDatabase>,
}

/// One prompt. `Debug` hides the text.
#[derive(Clone)]
pub struct Prompt {
    /// The prompt text.
    pub text: String,
    /// Model (default: the session's).
    pub model: Option<String>,
    /// `max_tokens` (default 4000, the SDK's).
    pub max_tokens: u64,
    /// `temperature` (default 0.7).
    pub temperature: f64,
    /// `thinking` mode.
    pub thinking: Option<String>,
    /// Attached images.
    pub images: Vec<PromptImage>,
    /// Envelope `web_search` (sent in clear, as the SDK does).
    pub web_search: bool,
    /// Envelope `max_searches`.
    pub max_searches: u64,
    /// Search queries — only ever sent *inside* the ciphertext; the envelope says `null`.
    pub search_queries: Vec<String>,
    /// Request id to use (the SDK's is `Date.now()-<base36>`); `None` = derived from `now`
    /// and a counter.
    pub request_id: Option<String>,
}

impl Prompt {
    /// A prompt with the SDK's defaults.
    ///
    /// ```
    /// let p = sealwire::session::Prompt::new("hi");
    /// assert_eq!(p.max_tokens, 4000);
    /// assert!(!format!("{p:?}").contains("hi"));
    /// ```
    pub fn new(text: impl Into<String>) -> Self {
        Prompt {
            text: text.into(),
            model: None,
            max_tokens: 4000,
            temperature: 0.7,
            thinking: None,
            images: Vec::new(),
            web_search: false,
            max_searches: 0,
            search_queries: Vec::new(),
            request_id: None,
        }
    }
}

impl fmt::Debug for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prompt")
            .field("text", &"[redacted]")
            .field("model", &self.model)
            .field("images", &self.images.len())
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}
