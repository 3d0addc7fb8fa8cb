//! Configuration of a [`Device`](super::Device) ([`DeviceConfig`]) and of each of its peers
//! ([`PeerConfig`], the fields of a wg-quick `[Peer]` section). Both are plain data; the device
//! checks them when it takes them ([`Device::new`](super::Device::new),
//! [`Device::add_peer`](super::Device::add_peer)).

use super::allowed_ips::Cidr;
use super::error::DeviceError;
use crate::crypto::x25519::PublicKey;
use crate::crypto::SecretBytes;
use alloc::vec::Vec;
use core::net::SocketAddr;

/// Device-wide settings: plain data, every bound a knob, the defaults those of the reference
/// implementations. [`Device::new`](super::Device::new) checks them and refuses a value that
/// makes no sense with [`DeviceError::InvalidConfig`] naming the field.
///
/// ```
/// use sealwire::tunnel::DeviceConfig;
/// let mut cfg = DeviceConfig::default();
/// assert_eq!((cfg.mtu, cfg.max_staged_packets, cfg.queue_capacity), (1420, 128, 4096));
/// cfg.mtu = 1380;
/// assert!(cfg.check().is_ok());
/// cfg.mtu = 500;
/// assert_eq!(cfg.check(), Err(sealwire::tunnel::DeviceError::InvalidConfig("mtu")));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceConfig {
    /// The tunnel MTU: transport payloads are padded to a multiple of 16 but never beyond
    /// it (default 1420, wg-quick's; at least [`DeviceConfig::MIN_MTU`]).
    pub mtu: u16,
    /// Most peers the device will hold (default 65 536; at least 1).
    pub max_peers: usize,
    /// Handshake messages per second the device processes before it is "under load" and
    /// demands cookies (default 100; the one global rate limiter). 0 demands a cookie of
    /// every handshake.
    pub handshake_rate_limit: u32,
    /// Sources tracked by the per-source handshake limiter that applies under load
    /// (default 4096; at least 1); when all are active, new sources are refused until some go
    /// idle.
    pub max_rate_limited_sources: usize,
    /// Outgoing packets held per peer while a handshake is in flight (default 128, the
    /// kernel's MAX_STAGED_PACKETS). This is a per-peer buffer, not an output queue: when it
    /// is full the **oldest** packet makes room (the newest data is the most useful once the
    /// session is up), counted as [`DropReason::QueueFull`](super::DropReason::QueueFull).
    /// 0 stages nothing: packets sent before the handshake completes are dropped and counted.
    pub max_staged_packets: usize,
    /// Datagrams waiting in [`poll_transmit`](super::Device::poll_transmit) and events waiting
    /// in [`poll_event`](super::Device::poll_event), each (default 4096; at least 1). An
    /// output that does not fit is dropped and counted
    /// ([`DeviceStats::transmits_dropped`](super::DeviceStats::transmits_dropped),
    /// [`DeviceStats::events_dropped`](super::DeviceStats::events_dropped)); a caller that
    /// drains after every call never sees a drop.
    pub queue_capacity: usize,
}

impl DeviceConfig {
    /// The smallest accepted [`mtu`](Self::mtu): 576, the datagram every IPv4 host must
    /// accept (RFC 791); the wg-quick parser enforces the same floor.
    pub const MIN_MTU: u16 = 576;

    /// Checks every field; the first one that makes no sense is named in the error.
    ///
    /// ```
    /// use sealwire::tunnel::{DeviceConfig, DeviceError};
    /// let mut cfg = DeviceConfig::default();
    /// cfg.queue_capacity = 0;
    /// assert_eq!(cfg.check(), Err(DeviceError::InvalidConfig("queue_capacity")));
    /// ```
    pub fn check(&self) -> Result<(), DeviceError> {
        let invalid = [
            ("mtu", self.mtu < Self::MIN_MTU),
            // Zero is meaningless here: a device without peers, a limiter that refuses every
            // source under load, or queues that drop every datagram the timers produce.
            ("max_peers", self.max_peers == 0),
            (
                "max_rate_limited_sources",
                self.max_rate_limited_sources == 0,
            ),
            ("queue_capacity", self.queue_capacity == 0),
        ];
        match invalid.into_iter().find(|(_, bad)| *bad) {
            Some((field, _)) => Err(DeviceError::InvalidConfig(field)),
            None => Ok(()),
        }
    }
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            mtu: 1420,
            max_peers: 65_536,
            handshake_rate_limit: 100,
            max_rate_limited_sources: 4096,
            max_staged_packets: 128,
            queue_capacity: 4096,
        }
    }
}

/// One peer: what a wg-quick `[Peer]` section says, what [`Device::add_peer`] takes, what a
/// control plane hands a [`TunnelBackend`](super::backend::TunnelBackend), and what
/// [`WgQuick::parse`](super::wg_quick::WgQuick::parse) produces.
///
/// ```
/// use sealwire::crypto::x25519::PublicKey;
/// use sealwire::tunnel::PeerConfig;
/// let mut p = PeerConfig::new(PublicKey::from_bytes([2u8; 32]));
/// p.allowed_ips.push("10.0.0.2/32".parse().unwrap());
/// p.endpoint = Some("192.0.2.1:51820".parse().unwrap());
/// p.persistent_keepalive = Some(25);
/// assert!(p.preshared_key.is_none());
/// ```
///
/// [`Device::add_peer`]: super::Device::add_peer
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerConfig {
    /// The peer's static public key (its identity).
    pub public_key: PublicKey,
    /// Optional pre-shared key mixed into the handshake (post-quantum hedge).
    pub preshared_key: Option<SecretBytes<32>>,
    /// Where to send; without one the peer is a pure responder until it contacts us.
    pub endpoint: Option<SocketAddr>,
    /// Inner addresses this peer may send from and receive (cryptokey routing).
    pub allowed_ips: Vec<Cidr>,
    /// Send a keepalive after this many seconds without traffic (0 or `None` = off).
    pub persistent_keepalive: Option<u16>,
}

impl PeerConfig {
    /// A peer with no endpoint, no PSK, no AllowedIPs and no persistent keepalive.
    ///
    /// ```
    /// # use sealwire::crypto::x25519::PublicKey;
    /// let p = sealwire::tunnel::PeerConfig::new(PublicKey::from_bytes([9u8; 32]));
    /// assert!(p.allowed_ips.is_empty() && p.endpoint.is_none());
    /// ```
    pub fn new(public_key: PublicKey) -> Self {
        PeerConfig {
            public_key,
            preshared_key: None,
            endpoint: None,
            allowed_ips: Vec::new(),
            persistent_keepalive: None,
        }
    }
}

// A control plane keeps the configuration it applied (to re-apply it after a restart), so the
// configuration is cloneable; the copy of the pre-shared key is wiped on drop like the original.
impl Clone for PeerConfig {
    fn clone(&self) -> Self {
        PeerConfig {
            public_key: self.public_key,
            preshared_key: self.preshared_key.as_ref().map(SecretBytes::clone_secret),
            endpoint: self.endpoint,
            allowed_ips: self.allowed_ips.clone(),
            persistent_keepalive: self.persistent_keepalive,
        }
    }
}
