//! What the node hands to its embedder: connection handles, frames, events, requests and
//! counters.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use zeroize::Zeroizing;

use super::error::ErrorCode;
use super::VectorDatabase;
use crate::crypto::secp256k1::{Address, PublicKey};

/// Opaque handle for one WebSocket connection; sessions and keys are bound to it.
///
/// ```
/// # use sealwire::session::{Node, NodeConfig, SecretKey};
/// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
/// let mut node = Node::new(SecretKey::from_bytes(&[7; 32]).unwrap(), NodeConfig::default(), ChaCha20Rng::from_seed([0; 32])).unwrap();
/// let a = node.connect().unwrap();
/// let b = node.connect().unwrap();
/// assert_ne!(a, b);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub(crate) u64);

impl ConnectionId {
    /// The raw number (for logs).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// One WebSocket text frame to send on `conn`.
#[derive(Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The connection to send it on.
    pub conn: ConnectionId,
    /// The frame (one JSON object).
    pub frame: String,
}

impl fmt::Debug for Transmit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Frames are ciphertext or protocol text, but plaintext sessions carry answers in
        // clear: show only the size.
        write!(f, "Transmit({:?}, {} bytes)", self.conn, self.frame.len())
    }
}

/// What the node tells its embedder.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
#[non_exhaustive]
pub enum NodeEvent {
    /// A verified init waits for [`Node::accept`](super::Node::accept) or [`Node::reject`](super::Node::reject).
    SessionRequested(SessionRequest),
    /// A re-init for an accepted `(conn, session_id)` recovering the same address and job:
    /// accepted automatically (the SDK sends a fresh init before every prompt), old key wiped,
    /// ack queued.
    SessionRekeyed {
        /// The connection.
        conn: ConnectionId,
        /// The session.
        session_id: String,
    },
    /// A decrypted prompt to answer with [`Node::send_chunk`](super::Node::send_chunk) and [`Node::finish`](super::Node::finish).
    Prompt(PromptRequest),
    /// The client cancelled the current answer (`stream_cancel`).
    Cancel {
        /// The connection.
        conn: ConnectionId,
        /// The session.
        session_id: String,
        /// The client's reason (e.g. `user_cancelled`), at most 256 bytes.
        reason: String,
    },
    /// A session ended and its key was wiped.
    SessionClosed {
        /// The connection.
        conn: ConnectionId,
        /// The session.
        session_id: String,
        /// Why.
        reason: CloseReason,
    },
}

/// A verified session init awaiting the embedder's decision.
///
/// The signature only proves that *some* key signed the ephemeral key and nonce; check that
/// `client_address` may use `job_id` (on-chain job owner, allow-list) before accepting.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionRequest {
    /// The connection the init came on.
    pub conn: ConnectionId,
    /// Envelope `session_id` (decimal).
    pub session_id: String,
    /// Job id (decimal), equal to the encrypted `jobId`.
    pub job_id: String,
    /// Envelope `chain_id` (not authenticated).
    pub chain_id: u64,
    /// Address recovered from the init signature; `None` for plaintext sessions.
    pub client_address: Option<Address>,
    /// Plaintext sessions only: the unverified `user_address` the client claims.
    pub claimed_user_address: Option<String>,
    /// Model name from the encrypted init (empty for plaintext sessions).
    pub model: String,
    /// Price per token from the encrypted init (always 0 from SDK 1.36.0).
    pub price_per_token: u64,
    /// The client's key for checkpoint deltas.
    pub recovery_public_key: Option<PublicKey>,
    /// RAG database reference, if the init carried one.
    pub vector_database: Option<VectorDatabase>,
    /// `false` for legacy plaintext sessions (nothing authenticated).
    pub encrypted: bool,
}

/// One image attached to a prompt.
///
/// ```
/// use sealwire::session::PromptImage;
/// let image = PromptImage { data: zeroize::Zeroizing::new("aGk=".into()), format: "png".into() };
/// assert_eq!(format!("{image:?}"), "PromptImage(png, 4 bytes)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PromptImage {
    /// Base64 data (no `data:` prefix), wiped on drop: it is what the user sent.
    pub data: Zeroizing<String>,
    /// `png`, `jpeg`, `webp` or `gif`.
    pub format: String,
}

impl fmt::Debug for PromptImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PromptImage({}, {} bytes)", self.format, self.data.len())
    }
}

/// A decrypted prompt. `Debug` does not show the prompt, the images or the search queries.
#[cfg_attr(fuzzing, derive(Clone))]
#[non_exhaustive]
pub struct PromptRequest {
    /// The connection.
    pub conn: ConnectionId,
    /// The session.
    pub session_id: String,
    /// The frame's `id`; answer frames carry it.
    pub request_id: String,
    /// The prompt text (wiped on drop).
    pub prompt: Zeroizing<String>,
    /// Model the client asked for.
    pub model: Option<String>,
    /// `max_tokens`.
    pub max_tokens: Option<u64>,
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `thinking` mode.
    pub thinking: Option<String>,
    /// Number of attached images.
    pub image_count: usize,
    /// The attached images.
    pub images: Vec<PromptImage>,
    /// Envelope `web_search` flag.
    pub web_search: bool,
    /// Search queries from inside the ciphertext (the envelope copy is ignored).
    pub search_queries: Zeroizing<Vec<String>>,
    /// `n` of the AAD `message_<n>`; `None` for plaintext sessions.
    pub index: Option<u64>,
    /// `false` for plaintext sessions.
    pub encrypted: bool,
}

impl fmt::Debug for PromptRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromptRequest")
            .field("conn", &self.conn)
            .field("session_id", &self.session_id)
            .field("request_id", &self.request_id)
            .field("prompt", &"[redacted]")
            .field("model", &self.model)
            .field("image_count", &self.image_count)
            .field("index", &self.index)
            .field("encrypted", &self.encrypted)
            .finish_non_exhaustive()
    }
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// [`Node::close_session`](super::Node::close_session).
    Closed,
    /// The key reached `session_ttl`, or a pending request was not answered in
    /// `accept_timeout`.
    Expired,
    /// No accepted frame for `idle_timeout`.
    Idle,
    /// [`Node::disconnect`](super::Node::disconnect).
    Disconnected,
    /// The embedder rejected it.
    Rejected,
    /// Replaced by a new session.
    Replaced,
}

/// How an answer ended (the plaintext `stream_end`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEnd {
    /// `complete` or `cancelled`.
    pub reason: String,
    /// The model's finish reason, e.g. `stop` (encrypted in `encrypted_response`).
    pub finish_reason: String,
    /// Tokens billed.
    pub tokens_used: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Context window of the model.
    pub context_window_size: u64,
}

impl StreamEnd {
    /// A normal end (`complete`, `stop`) with the given token counts.
    ///
    /// ```
    /// let end = sealwire::session::StreamEnd::complete(12, 3, 8192);
    /// assert_eq!(end.tokens_used, 3);
    /// ```
    pub fn complete(prompt_tokens: u64, completion_tokens: u64, context_window_size: u64) -> Self {
        StreamEnd {
            reason: String::from("complete"),
            finish_reason: String::from("stop"),
            tokens_used: completion_tokens,
            prompt_tokens,
            completion_tokens,
            context_window_size,
        }
    }
}

/// Counters of a node ([`Node::stats`](super::Node::stats)).
///
/// ```
/// # use sealwire::session::{ErrorCode, Node, NodeConfig, SecretKey};
/// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
/// let mut node = Node::new(SecretKey::from_bytes(&[7; 32]).unwrap(), NodeConfig::default(), ChaCha20Rng::from_seed([0; 32])).unwrap();
/// let conn = node.connect().unwrap();
/// let _ = node.handle_frame(sealwire::time::Instant::ZERO, conn, "{}");
/// assert_eq!(node.stats().errors(ErrorCode::InvalidMessage), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Frames passed to `handle_frame`.
    pub frames_received: u64,
    /// Frames rejected with an error frame (and sessions the embedder rejected).
    pub frames_rejected: u64,
    /// Open connections.
    pub connections: usize,
    /// Established sessions.
    pub sessions_active: usize,
    /// Sessions waiting for accept/reject.
    pub sessions_pending: usize,
    /// Remembered ephemeral keys.
    pub replay_cache_len: usize,
    /// Ephemeral keys recorded since the node was built (accepted inits and re-keys, and
    /// restored entries): when it changes, a saved [`Node::replay_state`](super::Node::replay_state)
    /// is out of date.
    pub replay_cache_inserts: u64,
    /// Frames dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    errors: [u64; ErrorCode::COUNT],
}

impl NodeStats {
    /// Rejections with `code`.
    pub fn errors(&self, code: ErrorCode) -> u64 {
        self.errors.get(code.index()).copied().unwrap_or(0)
    }

    /// `(code, count)` for every code seen at least once.
    pub fn errors_by_code(&self) -> impl Iterator<Item = (ErrorCode, u64)> + '_ {
        ErrorCode::all()
            .map(|c| (c, self.errors(c)))
            .filter(|(_, n)| *n > 0)
    }

    /// Counts one rejection (an `error` frame sent for an input or a reject).
    pub(crate) fn count_rejection(&mut self, code: ErrorCode) {
        // Counters: saturating (2^64 frames are out of reach anyway).
        self.frames_rejected = self.frames_rejected.saturating_add(1);
        if let Some(n) = self.errors.get_mut(code.index()) {
            *n = n.saturating_add(1);
        }
    }
}
