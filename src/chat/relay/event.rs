//! What the relay reports to its embedder: events (for logs, and to wake the stream an app's
//! frames wait for) and counters.

use alloc::string::String;

use crate::crypto::ed25519::IdentityPublic;

use super::super::wire::ChatId;
use super::wire::ConnId;

/// Something the embedder may act on or log. Drain with
/// [`Relay::poll_event`](super::Relay::poll_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayEvent {
    /// Frames wait for the app on `conn` (its mailbox was empty): deliver them with
    /// [`Relay::poll_frame`](super::Relay::poll_frame) as its stream has room, until `None`.
    FramesWaiting {
        /// The app's stream.
        conn: ConnId,
    },
    /// An app proved its identity on `conn`.
    AppRegistered {
        /// Its stream.
        conn: ConnId,
        /// The proven identity.
        identity: IdentityPublic,
        /// Its display name.
        app_id: String,
        /// Frames that waited for it.
        queued_frames: usize,
    },
    /// A registered app's stream ended (closed, or replaced by a newer one).
    AppDisconnected {
        /// The stream.
        conn: ConnId,
        /// Its identity.
        identity: IdentityPublic,
    },
    /// An identity became a participant of a chat.
    ChatJoined {
        /// The chat.
        chat_id: ChatId,
        /// The new participant.
        identity: IdentityPublic,
    },
    /// A chat was idle for `chat_idle_timeout`: its membership and frames are wiped.
    ChatExpired {
        /// The chat.
        chat_id: ChatId,
        /// Frames of it that were still queued and are now dropped.
        frames_dropped: usize,
    },
}

/// Counters and gauges of a [`Relay`](super::Relay), from
/// [`Relay::stats`](super::Relay::stats).
///
/// ```
/// # use sealwire::chat::relay::{Relay, RelayConfig};
/// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
/// let relay = Relay::new(RelayConfig::default(), ChaCha20Rng::from_seed([0; 32])).unwrap();
/// assert_eq!(relay.stats().chats, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// Open streams (registering ones included).
    pub streams: usize,
    /// Identities known.
    pub apps: usize,
    /// Chats held.
    pub chats: usize,
    /// Frames queued in mailboxes and pending lists.
    pub queued_frames: usize,
    /// Bytes of those frames.
    pub queued_bytes: usize,
    /// Successful registrations.
    pub registrations: u64,
    /// Frames accepted for routing.
    pub frames_routed: u64,
    /// Frames handed to an app's stream.
    pub frames_delivered: u64,
    /// Uplink messages refused (in band or by ending the stream).
    pub uplinks_refused: u64,
    /// Frames dropped after they were accepted: held for a joining participant whose mailbox
    /// was full, or queued in a chat that expired.
    pub frames_dropped: u64,
    /// Chats that expired.
    pub chats_expired: u64,
    /// Frames handed to the mesh ([`Relay::poll_forward`](super::Relay::poll_forward)).
    pub frames_forwarded: u64,
    /// Frames from other nodes queued for an app here.
    pub forwarded_in: u64,
    /// Frames from other nodes refused (no such chat here, no recipient here, a stranger,
    /// full mailbox or budget, malformed).
    pub forwarded_refused: u64,
    /// Transmits dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
}
