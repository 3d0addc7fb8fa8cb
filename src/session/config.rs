//! The configurations of the node and the client ([`NodeConfig`], [`ClientConfig`]): every
//! table, queue and timer has its bound here, checked when the machine is built.

use super::error::{ClientError, NodeError};
use crate::time::Duration;

/// The first field that is zero among `sizes` then `timers`: a zero size, capacity or timer
/// would refuse every input or expire everything at once.
fn first_zero(
    sizes: &[(&'static str, usize)],
    timers: &[(&'static str, Duration)],
) -> Option<&'static str> {
    let size = sizes.iter().find(|(_, n)| *n == 0).map(|(field, _)| *field);
    size.or_else(|| {
        timers
            .iter()
            .find(|(_, d)| d.is_zero())
            .map(|(field, _)| *field)
    })
}

/// Limits and timers of a [`Node`](super::Node).
///
/// ```
/// use sealwire::session::NodeConfig;
/// let cfg = NodeConfig { allow_plaintext: true, ..NodeConfig::default() };
/// assert_eq!(cfg.max_sessions_per_connection, 64);
/// ```
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Largest accepted frame in bytes, checked before parsing (default 32 MiB: images make
    /// prompts up to ~13 MB of base64, hex doubles it).
    pub max_frame_len: usize,
    /// Largest number of open connections (default 100 000).
    pub max_connections: usize,
    /// Largest number of sessions (pending and established) node-wide (default 100 000).
    pub max_sessions: usize,
    /// Largest number of sessions on one connection (default 64).
    pub max_sessions_per_connection: usize,
    /// Absolute key lifetime since the key was installed (default 24 h).
    pub session_ttl: Duration,
    /// A key unused for this long is wiped (default 30 min).
    pub idle_timeout: Duration,
    /// A `SessionRequested` the embedder does not answer within this time is dropped with an
    /// error frame (default 60 s).
    pub accept_timeout: Duration,
    /// Largest number of remembered ephemeral keys; each is kept for `session_ttl`
    /// (default 1 000 000, about 120 bytes each). When full of live entries, new inits get
    /// `CAPACITY`. Only inits that were accepted (or re-keyed automatically) stay in it, and
    /// the SDK sends one init per prompt, so size it at least peak accepted-init rate ×
    /// `session_ttl`: the default covers about 11 prompts per second node-wide with a 24 h TTL.
    pub replay_cache_capacity: usize,
    /// Largest number of those entries one client address may hold once the cache is half
    /// full (default 100 000, a tenth of the default capacity: about 1.2 prompts per second
    /// sustained over a 24 h TTL). Below half full no client is limited. Above it, a client
    /// over its quota gets `CAPACITY` for its own new inits and re-keys while every other
    /// client still gets in, until its entries expire. (0 refuses every client once the
    /// cache is half full.)
    pub replay_cache_per_client: usize,
    /// Largest number of queued outgoing frames, and of queued events (default 65 536). An
    /// output of an input that does not fit is dropped and counted
    /// ([`NodeStats`](super::NodeStats)); an input whose outputs would not fit is refused
    /// before it changes anything, and an embedder call gets `Capacity`.
    pub queue_capacity: usize,
    /// Accept the SDK's legacy unauthenticated `session_init`/`prompt` (default false).
    pub allow_plaintext: bool,
}

impl NodeConfig {
    /// The first field a node cannot run with: a zero size, capacity or timer would refuse
    /// every frame or expire every session at once. (`replay_cache_per_client` may be 0.)
    pub(crate) fn check(&self) -> Result<(), NodeError> {
        let sizes = [
            ("max_frame_len", self.max_frame_len),
            ("max_connections", self.max_connections),
            ("max_sessions", self.max_sessions),
            (
                "max_sessions_per_connection",
                self.max_sessions_per_connection,
            ),
            ("replay_cache_capacity", self.replay_cache_capacity),
            ("queue_capacity", self.queue_capacity),
        ];
        let timers = [
            ("session_ttl", self.session_ttl),
            ("idle_timeout", self.idle_timeout),
            ("accept_timeout", self.accept_timeout),
        ];
        match first_zero(&sizes, &timers) {
            Some(field) => Err(NodeError::InvalidConfig(field)),
            None => Ok(()),
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            max_frame_len: 32 * 1024 * 1024,
            max_connections: 100_000,
            max_sessions: 100_000,
            max_sessions_per_connection: 64,
            session_ttl: Duration::from_secs(24 * 3600),
            idle_timeout: Duration::from_secs(30 * 60),
            accept_timeout: Duration::from_secs(60),
            replay_cache_capacity: 1_000_000,
            replay_cache_per_client: 100_000,
            queue_capacity: 65_536,
            allow_plaintext: false,
        }
    }
}

/// Which AADs the client accepts on `encrypted_chunk` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkAadPolicy {
    /// Require `chunk_<i>` with `i` = 0, 1, 2, … in arrival order and `encrypted_response_final`
    /// on `encrypted_response` (what the reference node and sealwire's node send). Stops
    /// reordering, dropping-then-shifting and reflection of the client's own messages.
    Ordered,
    /// Decrypt under whatever `aadHex` says, like the SDK (for nodes that send an empty or
    /// `message_<n>` AAD). Undecryptable chunks still fail the answer.
    AsSent,
}

/// Timers and limits of a [`Client`](super::Client).
///
/// ```
/// use sealwire::session::ClientConfig;
/// assert_eq!(ClientConfig::default().ack_timeout.as_secs(), 30);
/// ```
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Wait for `session_init_ack` (SDK: 30 s).
    pub ack_timeout: Duration,
    /// Wait for the first chunk of an answer (SDK: 180 s).
    pub first_chunk_timeout: Duration,
    /// Wait between chunks (SDK: 60 s).
    pub chunk_timeout: Duration,
    /// After a `final` chunk or `encrypted_response` without `stream_end`, resolve after this
    /// long (SDK: 3 s).
    pub final_grace: Duration,
    /// Largest accepted frame in bytes (default 4 MiB).
    pub max_frame_len: usize,
    /// Largest answer in bytes (default 16 MiB).
    pub max_answer_len: usize,
    /// Which chunk AADs are accepted (default [`ChunkAadPolicy::Ordered`]).
    pub chunk_aad: ChunkAadPolicy,
    /// Largest number of queued outgoing frames, and of queued events (default 65 536). A
    /// call whose frame would not fit gets [`ClientError::Capacity`]; an event of an input
    /// that does not fit is dropped and counted ([`ClientStats`](super::ClientStats)).
    pub queue_capacity: usize,
    /// Largest number of sealed answer frames (chunks and ends) one session key may bring
    /// (default 1 048 576). The client remembers each one's nonce (8 bytes, about 40 with
    /// the set's overhead) for as long as the key lives, so that a frame of an earlier answer
    /// cannot be passed off as part of a later one; beyond it the answer fails with
    /// [`ClientError::KeyExhausted`] and a new session is needed. (The SDK starts a new
    /// session before every prompt, so one key carries one answer.)
    pub max_frames_per_key: usize,
}

impl ClientConfig {
    /// The first field a client cannot run with (a zero size or capacity, or a zero wait for
    /// the ack or a chunk; a zero `final_grace` is allowed).
    pub(crate) fn check(&self) -> Result<(), ClientError> {
        let sizes = [
            ("max_frame_len", self.max_frame_len),
            ("max_answer_len", self.max_answer_len),
            ("queue_capacity", self.queue_capacity),
            ("max_frames_per_key", self.max_frames_per_key),
        ];
        let timers = [
            ("ack_timeout", self.ack_timeout),
            ("first_chunk_timeout", self.first_chunk_timeout),
            ("chunk_timeout", self.chunk_timeout),
        ];
        match first_zero(&sizes, &timers) {
            Some(field) => Err(ClientError::InvalidConfig(field)),
            None => Ok(()),
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            ack_timeout: Duration::from_secs(30),
            first_chunk_timeout: Duration::from_secs(180),
            chunk_timeout: Duration::from_secs(60),
            final_grace: Duration::from_secs(3),
            max_frame_len: 4 * 1024 * 1024,
            max_answer_len: 16 * 1024 * 1024,
            chunk_aad: ChunkAadPolicy::Ordered,
            queue_capacity: 65_536,
            max_frames_per_key: 1 << 20,
        }
    }
}
