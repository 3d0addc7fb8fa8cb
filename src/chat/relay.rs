//! Relay-side checks that need no keys: a relay (e.g. a gRPC node forwarding frames between
//! two apps) parses the header, drops garbage, and rate-limits handshakes per chat without
//! ever seeing plaintext.
//!
//! Why: handshakes cost both apps two X25519 key generations and several DH operations; a
//! relay that forwards unlimited message-1 frames lets anyone burn the apps' battery. The
//! apps throttle too ([`crate::chat::RekeyPolicy`]), this only stops the flood earlier.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::time::{Duration, Instant};

use super::error::Error;
use super::wire::{ChatId, FrameHeader, FrameKind};

/// Relay limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Largest plaintext a data frame may carry (default 65 536).
    pub max_message_len: usize,
    /// At most this many handshake-initiation frames per chat per `period` (default 6: three
    /// rekeys, each possibly started by both sides at once).
    pub max_handshakes: u32,
    /// The sliding period of the handshake limit (default 30 s).
    pub period: Duration,
    /// Most chats tracked at once (default 65 536); beyond it new chats' handshakes are
    /// refused with [`Error::QueueFull`] until old entries age out.
    pub max_chats: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            max_message_len: 65_536,
            max_handshakes: 6,
            period: Duration::from_secs(30),
            max_chats: 65_536,
        }
    }
}

/// Per-relay frame filter.
///
/// ```
/// use sealwire::chat::{ChatId, Error, FrameHeader, FrameKind, RelayConfig, RelayFilter};
/// use sealwire::time::Instant;
/// let mut relay = RelayFilter::new(RelayConfig { max_handshakes: 1, ..RelayConfig::default() });
/// let mut init = FrameHeader { kind: FrameKind::HandshakeInit, chat_id: ChatId::new([1; 16]),
///                              epoch: 1, counter: 0 }.encode().to_vec();
/// init.extend_from_slice(&[0u8; 32]);
/// assert!(relay.check(Instant::ZERO, &init).is_ok());
/// assert_eq!(relay.check(Instant::ZERO, &init), Err(Error::RekeyThrottled));
/// assert_eq!(relay.check(Instant::ZERO, b"garbage"), Err(Error::Malformed));
/// ```
#[derive(Debug)]
pub struct RelayFilter {
    config: RelayConfig,
    handshakes: BTreeMap<ChatId, Vec<Instant>>,
}

impl RelayFilter {
    /// A filter with `config`.
    pub fn new(config: RelayConfig) -> Self {
        RelayFilter {
            config,
            handshakes: BTreeMap::new(),
        }
    }

    /// Checks one frame: version, kind, sizes; and for handshake initiations the per-chat rate.
    /// Returns the header so the relay can route by chat id.
    pub fn check(&mut self, now: Instant, frame: &[u8]) -> Result<FrameHeader, Error> {
        let (h, _) = FrameHeader::parse_checked(frame, self.config.max_message_len)?;
        if h.kind != FrameKind::HandshakeInit {
            return Ok(h);
        }
        let period = self.config.period;
        if !self.handshakes.contains_key(&h.chat_id)
            && self.handshakes.len() >= self.config.max_chats
        {
            self.handshakes
                .retain(|_, log| log.iter().any(|t| now < *t + period));
            if self.handshakes.len() >= self.config.max_chats {
                return Err(Error::QueueFull);
            }
        }
        let log = self.handshakes.entry(h.chat_id).or_default();
        log.retain(|t| now < *t + period);
        if log.len() >= self.config.max_handshakes as usize {
            return Err(Error::RekeyThrottled);
        }
        log.push(now);
        Ok(h)
    }

    /// Number of chats currently tracked.
    pub fn tracked_chats(&self) -> usize {
        self.handshakes.len()
    }
}
