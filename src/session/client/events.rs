//! What the client tells its application: events ([`ClientEvent`]) and counters
//! ([`ClientStats`]).

use alloc::string::String;
use core::fmt;

use crate::session::error::ClientError;

/// What the client tells its application.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// `session_init_ack` arrived: prompts may be sent.
    SessionReady,
    /// One decrypted piece of the answer.
    Chunk {
        /// The text.
        text: String,
        /// Its index in the answer.
        index: u64,
        /// The node marked it final.
        is_final: bool,
    },
    /// The answer ended. For an encrypted session this comes only after the node's sealed
    /// end of answer (`encrypted_response` under AAD `encrypted_response_final_<n>`) matched
    /// the `n` chunks received, then `stream_end` or the grace period; otherwise the answer
    /// ends as [`ClientEvent::Truncated`].
    Finished {
        /// The whole answer (a prefix when the application cancelled).
        text: String,
        /// The finish reason: the sealed one of an encrypted session, else `stream_end`'s.
        finish_reason: Option<String>,
        /// `tokens_used` of `stream_end` (in clear: for accounting, not proof).
        tokens_used: Option<u64>,
        /// `true` when the sealed end of answer proved `text` whole. `false` when nothing
        /// proves it: a plaintext (legacy) session, where nothing is authenticated, or an
        /// answer the application cancelled ([`Client::cancel`](crate::session::Client::cancel)).
        authenticated: bool,
    },
    /// An encrypted answer ended without its sealed end of answer: `stream_end` (which travels
    /// in clear), a `final` flag, a timeout after part of the answer, or a sealed end counting
    /// more chunks than arrived. Someone may have cut the answer short: this is a failure,
    /// not a complete answer. Every chunk in `text` was authenticated, so with the default
    /// [`ChunkAadPolicy::Ordered`](crate::session::ChunkAadPolicy) it is a prefix of what the
    /// node sent (also for plaintext sessions whose answer timed out, unauthenticated).
    Truncated {
        /// The text received so far.
        text: String,
    },
    /// The node sent an `error` frame (fails the init or the answer).
    NodeError {
        /// The node's code (`TOKEN_LIMIT_EXCEEDED`, ...).
        code: String,
        /// The node's message.
        message: String,
    },
    /// The ack, or the first piece of the answer, did not come in time.
    TimedOut,
    /// `pong` (heartbeat answer).
    Pong,
    /// The answer failed on the client's checks (undecryptable or reordered chunk, ...).
    AnswerFailed {
        /// Why.
        error: ClientError,
    },
}

impl fmt::Debug for ClientEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientEvent::SessionReady => f.write_str("SessionReady"),
            ClientEvent::Chunk {
                text,
                index,
                is_final,
            } => write!(
                f,
                "Chunk {{ index: {index}, is_final: {is_final}, {} bytes }}",
                text.len()
            ),
            ClientEvent::Finished {
                text,
                authenticated,
                ..
            } => write!(
                f,
                "Finished({} bytes, authenticated: {authenticated})",
                text.len()
            ),
            ClientEvent::Truncated { text } => write!(f, "Truncated({} bytes)", text.len()),
            ClientEvent::NodeError { code, .. } => write!(f, "NodeError({code})"),
            ClientEvent::TimedOut => f.write_str("TimedOut"),
            ClientEvent::Pong => f.write_str("Pong"),
            ClientEvent::AnswerFailed { error } => write!(f, "AnswerFailed({error:?})"),
        }
    }
}

/// Counters of a client ([`Client::stats`](crate::session::Client::stats)).
///
/// ```
/// # use sealwire::session::{Client, ClientConfig, SecretKey};
/// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
/// let node = SecretKey::from_bytes(&[7; 32]).unwrap().public_key();
/// let client = Client::new(SecretKey::from_bytes(&[8; 32]).unwrap(), node, ClientConfig::default(), ChaCha20Rng::from_seed([0; 32])).unwrap();
/// assert_eq!(client.stats().events_dropped, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Frames dropped because the transmit queue was full (the client refuses calls instead,
    /// so this stays 0 unless a call is made without checking its result).
    pub transmits_dropped: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
}
