//! Device counters and per-peer status snapshots.

use super::allowed_ips::Cidr;
use super::error::DropReason;
use crate::crypto::x25519::PublicKey;
use crate::time::Instant;
use alloc::vec::Vec;
use core::net::SocketAddr;

/// Device counters: one per [`DropReason`] plus a few successes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    drops: [u64; DropReason::ALL.len()],
    /// Handshakes completed (as initiator or responder).
    pub handshakes_completed: u64,
    /// Cookie replies we sent because we were under load.
    pub cookie_replies_sent: u64,
    /// Cookie replies we accepted from peers.
    pub cookie_replies_received: u64,
    /// Initiations sent (including retries).
    pub initiations_sent: u64,
}

impl Stats {
    /// How many inputs were dropped for `reason`.
    ///
    /// ```
    /// use sealwire::tunnel::{DropReason, Stats};
    /// assert_eq!(Stats::default().drops(DropReason::ReplayedCounter), 0);
    /// ```
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.index()).copied().unwrap_or(0)
    }

    /// Sum of all drop counters.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub(crate) fn count(&mut self, reason: DropReason) {
        if let Some(c) = self.drops.get_mut(reason.index()) {
            *c = c.saturating_add(1);
        }
    }
}

/// A snapshot of one peer for status displays and control planes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStatus {
    /// The peer's public key.
    pub public_key: PublicKey,
    /// Its current endpoint (configured or learned from authenticated packets).
    pub endpoint: Option<SocketAddr>,
    /// When the last handshake completed.
    pub last_handshake: Option<Instant>,
    /// Whether a session can send right now.
    pub has_session: bool,
    /// Inner bytes received.
    pub rx_bytes: u64,
    /// Inner bytes sent.
    pub tx_bytes: u64,
    /// Its AllowedIPs.
    pub allowed_ips: Vec<Cidr>,
}
