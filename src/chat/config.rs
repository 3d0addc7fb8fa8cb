//! Configuration of a chat machine: pinning, windows, rekey policy, sealing, queue bounds.
//! Plain data without secrets: the long-term identity key is handed to the constructors.

use crate::crypto::ed25519::IdentityPublic;
use crate::seal::KdfLimits;
use crate::time::Duration;

use super::error::ChatError;
use super::wire::ChatId;

/// Bounds of the skipped-message-key store (out-of-order delivery).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkipWindow {
    /// Largest forward jump accepted in one chain, and most skipped keys kept per chain
    /// (default 256). A frame further ahead is a [`crate::chat::ChatError::Desync`].
    pub per_chain: u32,
    /// Most skipped keys kept over all chains of the chat (default 1024); the oldest go first.
    pub total: u32,
}

impl Default for SkipWindow {
    fn default() -> Self {
        SkipWindow {
            per_chain: 256,
            total: 1024,
        }
    }
}

/// When and how often to rekey.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RekeyPolicy {
    /// Start a rekey after this many messages sent in one epoch (default 2^20).
    pub after_messages: u64,
    /// Start a rekey when the epoch is this old (default 24 h).
    pub after_time: Duration,
    /// Close the chat (reason `Expired`) if the epoch reaches this age without a successful
    /// rekey (default 48 h).
    pub reject_after_time: Duration,
    /// How long the previous epoch's receive chain stays usable after a rekey, so in-flight
    /// messages still open (default 60 s).
    pub grace: Duration,
    /// A handshake not finished within this time is abandoned; the initiator retries
    /// (default 10 s).
    pub handshake_timeout: Duration,
    /// At most this many rekey handshakes (started or accepted) per `throttle_period`
    /// (default 3).
    pub throttle_max: u32,
    /// The throttle's sliding period (default 30 s).
    pub throttle_period: Duration,
}

impl Default for RekeyPolicy {
    fn default() -> Self {
        RekeyPolicy {
            after_messages: 1 << 20,
            after_time: Duration::from_secs(24 * 3600),
            reject_after_time: Duration::from_secs(48 * 3600),
            grace: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            throttle_max: 3,
            throttle_period: Duration::from_secs(30),
        }
    }
}

/// Everything a [`crate::chat::Chat`] is configured with (its identity key aside, which the
/// constructors take). Checked when the machine is built: an unusable value is refused with
/// [`ChatError::InvalidConfig`] naming the field.
///
/// ```
/// use sealwire::chat::{Chat, ChatConfig, ChatError, ChatId};
/// use sealwire::crypto::ed25519::IdentityKey;
/// use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
/// let peer = IdentityKey::from_seed([2; 32]).public();
/// let mut cfg = ChatConfig::new(ChatId::new([1; 16]));
/// cfg.pinned_peer = Some(peer);
/// cfg.window.per_chain = 64;
/// assert_eq!(cfg.rekey.throttle_max, 3);
/// cfg.window.per_chain = 0;
/// let err = Chat::responder(IdentityKey::from_seed([1; 32]), cfg, ChaCha20Rng::from_seed([0; 32]));
/// assert_eq!(err.unwrap_err(), ChatError::InvalidConfig("window.per_chain"));
/// ```
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// The chat identifier (bound into every frame, the prologue and the signatures).
    pub chat_id: ChatId,
    /// If set, the peer must prove exactly this identity, or the chat fails closed.
    pub pinned_peer: Option<IdentityPublic>,
    /// Skipped-key bounds.
    pub window: SkipWindow,
    /// Rekey policy and throttle.
    pub rekey: RekeyPolicy,
    /// Counters reserved ahead by each seal (default 128, at least 2): after a restore the
    /// sender resumes at the end of the lease, never reusing a message key. The last counter
    /// of a lease is kept for a close frame, so a chat can always close within its lease. The
    /// restored sender's first
    /// counter jumps ahead by up to this much, so it must not exceed the peer's
    /// `window.per_chain` (checked against ours, as both sides normally share defaults).
    pub seal_lease: u64,
    /// Limits on Argon2id parameters accepted from a sealed record's header.
    pub kdf_limits: KdfLimits,
    /// Largest plaintext accepted for one message (default 65 536 bytes).
    pub max_message_len: usize,
    /// Capacity of the transmit queue and of the event queue (default 64 each).
    pub queue_capacity: usize,
}

impl ChatConfig {
    /// A configuration with the defaults documented on each field.
    pub fn new(chat_id: ChatId) -> Self {
        ChatConfig {
            chat_id,
            pinned_peer: None,
            window: SkipWindow::default(),
            rekey: RekeyPolicy::default(),
            seal_lease: 128,
            kdf_limits: KdfLimits::default(),
            max_message_len: 65_536,
            queue_capacity: 64,
        }
    }

    /// The first field whose value the machine cannot work with.
    pub(crate) fn validate(&self) -> Result<(), ChatError> {
        let checks = [
            (self.window.per_chain > 0, "window.per_chain"),
            (self.window.total >= self.window.per_chain, "window.total"),
            (self.rekey.throttle_max > 0, "rekey.throttle_max"),
            (self.rekey.after_messages > 0, "rekey.after_messages"),
            (
                self.rekey.handshake_timeout > Duration::ZERO,
                "rekey.handshake_timeout",
            ),
            // One counter for data at least, and the last one kept for a close.
            (self.seal_lease >= 2, "seal_lease"),
            // A restored sender jumps ahead by up to a lease: the peer's window must cover it.
            (
                self.seal_lease <= u64::from(self.window.per_chain),
                "seal_lease",
            ),
            // Room for a handshake reply, its confirmation and the events of one input.
            (self.queue_capacity >= 4, "queue_capacity"),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, field)) => Err(ChatError::InvalidConfig(field)),
            None => Ok(()),
        }
    }
}
