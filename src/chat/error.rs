//! Errors of the chat machine. Each describes the outcome of one input; a rejected frame
//! never closes the chat and leaves its keys, counters and epochs as they were (a
//! [`ChatError::Desync`] may start a throttled rekey).
//! Detailed errors are for the embedder's logs: do not echo them to the peer.

use core::fmt;

use crate::seal::SealError;

/// What went wrong with one call into a [`crate::chat::Chat`].
///
/// ```
/// use sealwire::chat::ChatError;
/// // Safe to log: fixed texts and field names only.
/// assert_eq!(ChatError::InvalidConfig("seal_lease").to_string(),
///            "the chat configuration is invalid: seal_lease");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatError {
    /// The frame is not a well-formed chat frame (size, version, kind, counter of a handshake).
    Malformed,
    /// The frame belongs to another chat.
    WrongChat,
    /// The frame did not authenticate under the key its header names (tampered, forged, or
    /// encrypted under another key). State unchanged.
    AuthenticationFailed,
    /// A handshake message failed: a Noise tag, a low-order key, or the identity signature over
    /// the Noise static key. State unchanged.
    HandshakeFailed,
    /// A handshake message carried a valid signature by an identity other than the pinned one
    /// (or, on a rekey, other than the one proved in the first epoch). The message is dropped
    /// and the handshake in flight stays as it was, so the genuine peer's message can still
    /// complete it. Why not close: anyone with an Ed25519 key can produce such a message.
    IdentityMismatch,
    /// The frame was already received, lies below the skipped-key window, or names an epoch
    /// that is no longer accepted. State unchanged.
    Replayed,
    /// The frame's counter jumps beyond the skipped-key window, or its epoch skips one. The
    /// frame was not authenticated (nothing is derived that far), so keys, counters and epoch
    /// are unchanged and the chat stays open; if established, idle and within the rekey
    /// throttle, the chat starts a rekey, which resynchronises a peer that really lost a
    /// window of frames.
    Desync,
    /// No keys for this yet: the chat (or the frame's epoch) is still being established.
    NotEstablished,
    /// A handshake message arrived that this side is not waiting for (out of turn). Dropped.
    UnexpectedHandshake,
    /// A rekey was asked for (or offered by the peer) too soon after the previous ones.
    RekeyThrottled,
    /// A rekey is already under way.
    RekeyInProgress,
    /// The chat is closed; nothing more can be sent or received.
    Closed,
    /// The output buffer is too small; it was left untouched and no key was used.
    BufferTooSmall {
        /// Bytes the buffer must hold.
        needed: usize,
    },
    /// The plaintext is longer than the configured maximum.
    MessageTooLarge,
    /// The bounded transmit or event queue has no room for what this call would queue; drain
    /// `poll_transmit`/`poll_event` first. Nothing changed.
    Capacity,
    /// Every counter of the last sealed lease has been used: seal the state again before sending
    /// more, so a restore can never reuse a message key.
    LeaseExhausted,
    /// This chat was restored from a sealed record that may not be the newest (an older copy
    /// of the file, or a second instance on it): its restored epoch's send chain may already
    /// have been used, so nothing is sent under it. Sending resumes once the fresh epoch the
    /// restore started is established ([`ChatEvent::Rekeyed`](crate::chat::ChatEvent)), or
    /// at once when [`Chat::unseal`](crate::chat::Chat::unseal) was given the record's own
    /// sequence as proof that it is the newest. Nothing changed; keep the message and retry.
    AwaitingRekey,
    /// The configuration is unusable (e.g. a zero window or throttle); names the field.
    InvalidConfig(&'static str),
    /// The sealed record could not be opened (see [`SealError`]).
    Sealed(SealError),
    /// The sealed record is authentic but belongs to another chat or identity.
    SealedForeign,
    /// The sealed record is older than one the caller has already seen.
    SealedStale {
        /// Seal sequence number of the record.
        record: u64,
        /// Newest sequence number the caller had seen.
        seen: u64,
    },
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::Malformed => f.write_str("the frame is not a well-formed chat frame"),
            ChatError::WrongChat => f.write_str("the frame belongs to another chat"),
            ChatError::AuthenticationFailed => f.write_str("the frame did not authenticate"),
            ChatError::HandshakeFailed => f.write_str("the handshake message did not verify"),
            ChatError::IdentityMismatch => {
                f.write_str("a handshake message proved an unexpected identity and was dropped")
            }
            ChatError::Replayed => f.write_str("the frame was already received or is too old"),
            ChatError::Desync => f.write_str(
                "the frame jumps beyond the skipped-key window or skips an epoch and was dropped",
            ),
            ChatError::NotEstablished => f.write_str("the chat or epoch is not established yet"),
            ChatError::UnexpectedHandshake => {
                f.write_str("a handshake message arrived out of turn and was dropped")
            }
            ChatError::RekeyThrottled => f.write_str("too many rekeys in the throttle period"),
            ChatError::RekeyInProgress => f.write_str("a rekey is already under way"),
            ChatError::Closed => f.write_str("the chat is closed"),
            ChatError::BufferTooSmall { needed } => {
                write!(
                    f,
                    "the output buffer is too small: {needed} bytes are needed"
                )
            }
            ChatError::MessageTooLarge => {
                f.write_str("the message is larger than the configured maximum")
            }
            ChatError::Capacity => f.write_str("the transmit or event queue is full"),
            ChatError::LeaseExhausted => {
                f.write_str("the sealed counter lease is used up; seal the state again")
            }
            ChatError::AwaitingRekey => f.write_str(
                "the chat was restored and sends only once its fresh epoch is established",
            ),
            ChatError::InvalidConfig(field) => {
                write!(f, "the chat configuration is invalid: {field}")
            }
            ChatError::Sealed(e) => write!(f, "the sealed state could not be opened: {e}"),
            ChatError::SealedForeign => {
                f.write_str("the sealed state belongs to another chat or identity")
            }
            ChatError::SealedStale { record, seen } => write!(
                f,
                "the sealed state is stale: sequence {record} is older than {seen}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ChatError {}

impl From<SealError> for ChatError {
    fn from(e: SealError) -> Self {
        ChatError::Sealed(e)
    }
}
