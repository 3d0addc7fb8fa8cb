//! Device counters ([`DeviceStats`]) and per-peer status snapshots ([`PeerStatus`]).

use super::allowed_ips::Cidr;
use super::error::DropReason;
use crate::crypto::x25519::PublicKey;
use crate::time::Instant;
use alloc::vec::Vec;
use core::net::SocketAddr;

/// Device counters: one per [`DropReason`], the outputs the queues had to drop, and a few
/// successes.
///
/// ```
/// use sealwire::tunnel::{DeviceStats, DropReason};
/// let s = DeviceStats::default();
/// assert_eq!(s.drops(DropReason::ReplayedCounter), 0);
/// assert_eq!((s.transmits_dropped, s.events_dropped), (0, 0));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceStats {
    drops: [u64; DropReason::ALL.len()],
    /// Handshakes completed (as initiator or responder).
    pub handshakes_completed: u64,
    /// Cookie replies we sent because we were under load.
    pub cookie_replies_sent: u64,
    /// Cookie replies we accepted from peers.
    pub cookie_replies_received: u64,
    /// Initiations sent (including retries).
    pub initiations_sent: u64,
    /// Datagrams dropped because the transmit queue held `queue_capacity` already.
    pub transmits_dropped: u64,
    /// Events dropped because the event queue held `queue_capacity` already.
    pub events_dropped: u64,
}

impl DeviceStats {
    /// How many inputs were dropped for `reason`.
    ///
    /// ```
    /// use sealwire::tunnel::{DeviceStats, DropReason};
    /// assert_eq!(DeviceStats::default().drops(DropReason::NoRoute), 0);
    /// ```
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.index()).copied().unwrap_or(0)
    }

    /// Sum of the drop counters of every [`DropReason`] (not the output queues' drops).
    ///
    /// ```
    /// assert_eq!(sealwire::tunnel::DeviceStats::default().total_drops(), 0);
    /// ```
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub(crate) fn count(&mut self, reason: DropReason) {
        if let Some(c) = self.drops.get_mut(reason.index()) {
            *c = c.saturating_add(1);
        }
    }
}

/// A snapshot of one peer for status displays and control planes (what `wg show` prints).
/// Whether its session can send at a given moment is a question of time:
/// [`Device::has_session`](super::Device::has_session).
///
/// ```
/// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
/// use sealwire::crypto::x25519::{PublicKey, StaticSecret};
/// use sealwire::time::Instant;
/// use sealwire::tunnel::{Device, DeviceConfig, PeerConfig};
/// let mut d = Device::new(StaticSecret::from_bytes([1; 32]), DeviceConfig::default(), ChaCha20Rng::seed_from_u64(0))?;
/// let key = PublicKey::from_bytes([9; 32]);
/// let mut p = PeerConfig::new(key);
/// p.endpoint = Some("192.0.2.9:51820".parse().unwrap());
/// d.add_peer(Instant::ZERO, p)?;
/// let st = d.peer_status(&key).unwrap();
/// assert_eq!(st.endpoint, Some("192.0.2.9:51820".parse().unwrap()));
/// assert_eq!((st.last_handshake, st.rx_bytes, st.tx_bytes), (None, 0, 0));
/// # Ok::<(), sealwire::tunnel::DeviceError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStatus {
    /// The peer's public key.
    pub public_key: PublicKey,
    /// Its current endpoint (configured or learned from authenticated packets).
    pub endpoint: Option<SocketAddr>,
    /// When the last handshake completed.
    pub last_handshake: Option<Instant>,
    /// Inner bytes received.
    pub rx_bytes: u64,
    /// Inner bytes sent.
    pub tx_bytes: u64,
    /// Its AllowedIPs.
    pub allowed_ips: Vec<Cidr>,
}
