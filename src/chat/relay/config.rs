//! The relay's bounds: frame size, handshake rate, mailboxes and byte budget, apps, streams and
//! chats, registration time and idle-chat expiry, output queues.

use crate::time::Duration;

use super::error::RelayError;

/// Everything a [`Relay`](super::Relay) is configured with; checked by
/// [`Relay::new`](super::Relay::new).
///
/// ```
/// use sealwire::chat::relay::{Relay, RelayConfig, RelayError};
/// use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
/// let mut cfg = RelayConfig::default();
/// cfg.mailbox_frames = 16;
/// assert!(Relay::new(cfg.clone(), ChaCha20Rng::from_seed([0; 32])).is_ok());
/// cfg.max_chats = 0;
/// assert_eq!(Relay::new(cfg, ChaCha20Rng::from_seed([0; 32])).unwrap_err(),
///            RelayError::InvalidConfig("max_chats"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Largest plaintext a data frame may carry (default 65 536); larger frames are refused.
    pub max_message_len: usize,
    /// At most this many handshake-initiation frames per chat per `handshake_period`
    /// (default 6: three rekeys, each possibly started by both sides at once).
    pub max_handshakes: u32,
    /// The sliding period of the handshake limit (default 30 s).
    pub handshake_period: Duration,
    /// Frames queued per identity, online or offline, delivered ones it has not acknowledged
    /// included (default 1024).
    pub mailbox_frames: usize,
    /// Frames held for a chat's second participant before it has joined (default 64).
    pub pending_frames: usize,
    /// In a mesh: copies kept per chat of the frames forwarded to a peer on another node
    /// until the peer has them ([`Relay::handle_remote_delivered`](super::Relay::handle_remote_delivered)).
    /// A copy is published again whenever that peer (re)joins at some node, or when a frame
    /// published after it is acknowledged first, so a frame published while the peer's node
    /// was dying, or dropped on the bus, still reaches it (the peer drops copies it already
    /// has as replays). Copies count in `max_queued_bytes`; with this many waiting in a chat,
    /// or no room in the budget, a frame for the remote peer is refused for now
    /// ([`RelayError::QueuesFull`](super::RelayError::QueuesFull)) rather than a copy dropped.
    /// 0 keeps none (default 1024, as many as a mailbox holds).
    pub mesh_replay_frames: usize,
    /// Bytes of frames queued over all mailboxes and pending lists (default 256 MiB).
    pub max_queued_bytes: usize,
    /// Identities known at once (default 10 000); an idle one (offline, empty mailbox) is
    /// forgotten to make room.
    pub max_apps: usize,
    /// Open streams, registering ones included (default 10 000).
    pub max_streams: usize,
    /// Chats held (default 100 000).
    pub max_chats: usize,
    /// Chats one stream may start (default 64).
    pub max_chats_per_stream: usize,
    /// Time a stream has to register and answer the challenge (default 10 s).
    pub register_timeout: Duration,
    /// A chat with no frame and no start for this long expires: its membership, held frames
    /// and queued frames are wiped (default 7 days).
    pub chat_idle_timeout: Duration,
    /// Capacity of the transmit queue and of the event queue (default 64 each).
    pub queue_capacity: usize,
    /// Whether this relay is one node of a mesh (default `false`): a frame whose recipient has
    /// no live stream here leaves through [`Relay::poll_forward`](super::Relay::poll_forward)
    /// instead of waiting here, and frames from other nodes come in through
    /// [`Relay::handle_forwarded`](super::Relay::handle_forwarded).
    pub mesh: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            max_message_len: 65_536,
            max_handshakes: 6,
            handshake_period: Duration::from_secs(30),
            mailbox_frames: 1024,
            pending_frames: 64,
            mesh_replay_frames: 1024,
            max_queued_bytes: 256 << 20,
            max_apps: 10_000,
            max_streams: 10_000,
            max_chats: 100_000,
            max_chats_per_stream: 64,
            register_timeout: Duration::from_secs(10),
            chat_idle_timeout: Duration::from_secs(7 * 24 * 3600),
            queue_capacity: 64,
            mesh: false,
        }
    }
}

impl RelayConfig {
    /// The first field whose value the relay cannot work with.
    pub(crate) fn validate(&self) -> Result<(), RelayError> {
        let checks = [
            (self.max_message_len > 0, "max_message_len"),
            (self.max_handshakes > 0, "max_handshakes"),
            (self.handshake_period > Duration::ZERO, "handshake_period"),
            (self.mailbox_frames > 0, "mailbox_frames"),
            (self.pending_frames > 0, "pending_frames"),
            (self.max_queued_bytes > 0, "max_queued_bytes"),
            (self.max_apps > 0, "max_apps"),
            (self.max_streams > 0, "max_streams"),
            (self.max_chats > 0, "max_chats"),
            (self.max_chats_per_stream > 0, "max_chats_per_stream"),
            (self.register_timeout > Duration::ZERO, "register_timeout"),
            (self.chat_idle_timeout > Duration::ZERO, "chat_idle_timeout"),
            // Room for the answers and events of one input (a registration replacing a stream).
            (self.queue_capacity >= 4, "queue_capacity"),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, field)) => Err(RelayError::InvalidConfig(field)),
            None => Ok(()),
        }
    }
}
