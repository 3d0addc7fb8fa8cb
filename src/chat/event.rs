//! What a [`crate::chat::Chat`] reports: events, close reasons, the result of the in-place
//! receive path, and its counters.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::crypto::ed25519::IdentityPublic;

/// Why a chat closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// An orderly close by one side (code 0).
    Normal,
    /// Desynchronised (code 1). This version never sends it (a desync starts a rekey
    /// instead), but reports it from a peer that does.
    Desync,
    /// An unexpected identity (code 2). This version never sends it (such a handshake
    /// message is dropped instead), but reports it from a peer that does.
    IdentityMismatch,
    /// The epoch outlived `reject_after_time` without a successful rekey (code 3).
    Expired,
    /// A reason code this version does not know.
    Unknown(u8),
}

impl CloseReason {
    /// The wire code carried (encrypted) in a close frame.
    ///
    /// ```
    /// use sealwire::chat::CloseReason;
    /// assert_eq!(CloseReason::from_code(CloseReason::Desync.code()), CloseReason::Desync);
    /// ```
    pub const fn code(self) -> u8 {
        match self {
            CloseReason::Normal => 0,
            CloseReason::Desync => 1,
            CloseReason::IdentityMismatch => 2,
            CloseReason::Expired => 3,
            CloseReason::Unknown(c) => c,
        }
    }

    /// Parses a wire code.
    pub const fn from_code(c: u8) -> Self {
        match c {
            0 => CloseReason::Normal,
            1 => CloseReason::Desync,
            2 => CloseReason::IdentityMismatch,
            3 => CloseReason::Expired,
            c => CloseReason::Unknown(c),
        }
    }
}

/// What the machine tells its embedder. Drain with [`Chat::poll_event`](crate::chat::Chat::poll_event).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatEvent {
    /// The peer proved this Ed25519 identity (signature over its Noise static key verified,
    /// and equal to the pinned one if any). Reported once, at the first handshake; rekeys must
    /// prove the same identity.
    PeerIdentity {
        /// The verified identity.
        identity: IdentityPublic,
    },
    /// The first epoch is established: messages can be sent.
    Established {
        /// The epoch (0).
        epoch: u32,
        /// The Noise handshake hash, usable for channel binding.
        handshake_hash: [u8; 32],
    },
    /// A rekey completed: new messages use the new epoch.
    Rekeyed {
        /// The new epoch.
        epoch: u32,
        /// The new handshake hash.
        handshake_hash: [u8; 32],
    },
    /// A message arrived (possibly out of order).
    Message {
        /// Epoch it was sent in.
        epoch: u32,
        /// Its counter in the sender's chain.
        counter: u64,
        /// The plaintext.
        plaintext: Vec<u8>,
    },
    /// The last sealed record no longer covers the state well (half the counter lease is used,
    /// or a new epoch began): seal again soon.
    SealAdvised,
    /// The chat is closed and every key is wiped.
    Closed {
        /// Why.
        reason: CloseReason,
        /// Whether the peer closed it (authenticated close frame).
        by_peer: bool,
    },
}

impl fmt::Debug for ChatEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatEvent::PeerIdentity { identity } => write!(f, "PeerIdentity({identity:?})"),
            ChatEvent::Established { epoch, .. } => write!(f, "Established {{ epoch: {epoch} }}"),
            ChatEvent::Rekeyed { epoch, .. } => write!(f, "Rekeyed {{ epoch: {epoch} }}"),
            ChatEvent::Message {
                epoch,
                counter,
                plaintext,
            } => write!(
                f,
                "Message {{ epoch: {epoch}, counter: {counter}, len: {} }}",
                plaintext.len()
            ),
            ChatEvent::SealAdvised => f.write_str("SealAdvised"),
            ChatEvent::Closed { reason, by_peer } => {
                write!(f, "Closed {{ reason: {reason:?}, by_peer: {by_peer} }}")
            }
        }
    }
}

/// The result of [`Chat::open_in_place`](crate::chat::Chat::open_in_place).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Opened {
    /// A data frame: its plaintext is now at `plaintext` inside the caller's buffer.
    Message {
        /// Epoch it was sent in.
        epoch: u32,
        /// Counter in the sender's chain.
        counter: u64,
        /// Where the plaintext lies in the buffer.
        plaintext: Range<usize>,
    },
    /// A handshake, close or confirmation frame was consumed: drain `poll_transmit` and
    /// `poll_event`.
    Control,
}

/// Counters of a [`Chat`](crate::chat::Chat), from [`Chat::stats`](crate::chat::Chat::stats).
///
/// ```
/// # use sealwire::chat::{Chat, ChatConfig, ChatId};
/// # use sealwire::crypto::ed25519::IdentityKey;
/// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
/// let chat = Chat::responder(IdentityKey::from_seed([2; 32]), ChatConfig::new(ChatId::new([0; 16])),
///                            ChaCha20Rng::from_seed([0; 32])).unwrap();
/// assert_eq!(chat.stats().transmits_dropped, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChatStats {
    /// Frames produced by a timer (a message-3 resend, a close on expiry) that found the
    /// transmit queue full and were dropped.
    pub transmits_dropped: u64,
    /// Events that found the event queue full and were dropped.
    pub events_dropped: u64,
}
