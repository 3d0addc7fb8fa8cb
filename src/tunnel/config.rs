//! Configuration of a [`Device`](super::Device) and of each peer (the wg-quick fields).

use super::allowed_ips::Cidr;
use crate::crypto::x25519::{PublicKey, StaticSecret};
use crate::crypto::SecretBytes;
use alloc::vec::Vec;
use core::net::SocketAddr;

/// Device-wide settings. Every bound is a knob; the defaults follow the reference
/// implementations.
///
/// ```
/// use sealwire::crypto::x25519::StaticSecret;
/// use sealwire::tunnel::DeviceConfig;
/// let cfg = DeviceConfig::new(StaticSecret::from_bytes([1u8; 32]));
/// assert_eq!(cfg.max_staged_packets, 128);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct DeviceConfig {
    /// Our static X25519 key (`[Interface] PrivateKey`).
    pub private_key: StaticSecret,
    /// The tunnel MTU: transport payloads are padded to a multiple of 16 but never beyond
    /// it (default 1420, wg-quick's).
    pub mtu: u16,
    /// Most peers the device will hold (default 65 536).
    pub max_peers: usize,
    /// Handshake messages per second the device processes before it is "under load" and
    /// demands cookies (default 100; the one global rate limiter).
    pub handshake_rate_limit: u32,
    /// Sources tracked by the per-source handshake limiter that applies under load
    /// (default 4096); when all are active, new sources are refused until some go idle.
    pub max_rate_limited_sources: usize,
    /// Outgoing packets held per peer while a handshake is in flight (default 128, the
    /// kernel's MAX_STAGED_PACKETS); older ones are dropped first.
    pub max_staged_packets: usize,
    /// Datagrams waiting in [`poll_transmit`](super::Device::poll_transmit) (default 4096).
    pub max_queued_transmits: usize,
    /// Events waiting in [`poll_event`](super::Device::poll_event) (default 1024); when full
    /// the oldest is dropped and counted.
    pub max_queued_events: usize,
}

impl DeviceConfig {
    /// Defaults around `private_key`.
    pub fn new(private_key: StaticSecret) -> Self {
        DeviceConfig {
            private_key,
            mtu: 1420,
            max_peers: 65_536,
            handshake_rate_limit: 100,
            max_rate_limited_sources: 4096,
            max_staged_packets: 128,
            max_queued_transmits: 4096,
            max_queued_events: 1024,
        }
    }
}

/// One `[Peer]`.
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
#[derive(Debug)]
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
