//! A control-plane view of a tunnel: the [`TunnelBackend`] trait and its capability model
//! (this file), this crate's implementation over the userspace [`Device`]
//! ([`UserspaceBackend`], in `userspace.rs`) and a reusable conformance suite
//! ([`run_conformance`], in `conformance.rs`).
//!
//! Control planes (mesh coordinators, VPN managers) configure peers, routes and exit mode;
//! they should not care whether packets are moved by this crate's userspace [`Device`], the
//! Linux kernel module or wireguard-go. So the trait speaks only in plain data — public keys,
//! the [`PeerConfig`] of a wg-quick `[Peer]` section, [`Cidr`] prefixes, socket addresses,
//! [`Instant`]s — and never in handshake, session or message types. What a backend can do is
//! declared up front in [`Capabilities`], and [`run_conformance`] checks that a backend keeps
//! the contract, so the same suite can run against ours and against a wrapper of `wg(8)`.
//!
//! ```
//! use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
//! use sealwire::crypto::x25519::StaticSecret;
//! use sealwire::tunnel::backend::{run_conformance, UserspaceBackend};
//! use sealwire::tunnel::DeviceConfig;
//! let mut seed = 0;
//! run_conformance(|| {
//!     seed += 1;
//!     let key = StaticSecret::from_bytes([seed as u8; 32]);
//!     UserspaceBackend::new(key, DeviceConfig::default(), ChaCha20Rng::seed_from_u64(seed))
//!         .expect("the default configuration is valid")
//! })
//! .unwrap();
//! ```

mod conformance;
mod userspace;

pub use conformance::{run_conformance, ConformanceFailure};
pub use userspace::UserspaceBackend;

use super::allowed_ips::Cidr;
use super::config::PeerConfig;
#[cfg(doc)]
use super::device::Device;
use crate::crypto::x25519::PublicKey;
use crate::time::Instant;
use alloc::string::String;
use core::fmt;
use core::net::SocketAddr;

/// What a backend supports. Control planes must not ask for what is `false`.
///
/// ```
/// let none = sealwire::tunnel::backend::Capabilities::default();
/// assert!(!none.roaming && !none.ipv6);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Peer endpoints follow authenticated packets (the peer may change address).
    pub roaming: bool,
    /// Can send all traffic through one peer ([`ExitMode::UseExit`]).
    pub exit_node: bool,
    /// Can act as an exit for peers ([`ExitMode::ServeExit`]); forwarding/NAT is the host's.
    pub exit_serving: bool,
    /// Can route extra LAN prefixes through peers ([`TunnelBackend::replace_routes`]).
    pub lan_routes: bool,
    /// Carries IPv6 (IPv6 AllowedIPs and routes).
    pub ipv6: bool,
    /// Supports a pre-shared key per peer.
    pub preshared_keys: bool,
    /// Supports persistent keepalives.
    pub persistent_keepalive: bool,
}

/// An extra prefix reached through a peer (a LAN behind it).
///
/// ```
/// use sealwire::crypto::x25519::PublicKey;
/// use sealwire::tunnel::backend::Route;
/// let r = Route { prefix: "192.168.50.0/24".parse().unwrap(), via: PublicKey::from_bytes([7; 32]) };
/// assert!(r.prefix.contains("192.168.50.9".parse().unwrap()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The destination prefix.
    pub prefix: Cidr,
    /// The peer it goes through.
    pub via: PublicKey,
}

/// Whether traffic leaves through an exit peer.
///
/// ```
/// assert_eq!(sealwire::tunnel::backend::ExitMode::default(), sealwire::tunnel::backend::ExitMode::Off);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitMode {
    /// Only peer addresses and routes go through the tunnel.
    #[default]
    Off,
    /// Default routes (`0.0.0.0/0`, and `::/0` with IPv6) go through this peer.
    UseExit {
        /// The exit peer.
        peer: PublicKey,
    },
    /// We accept peers' traffic for any destination (the host forwards it).
    ServeExit,
}

/// Counters a control plane can show.
///
/// ```
/// assert_eq!(sealwire::tunnel::backend::BackendStats::default().peers, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendStats {
    /// Configured peers.
    pub peers: usize,
    /// Completed handshakes.
    pub handshakes: u64,
    /// Inner bytes received over all peers.
    pub rx_bytes: u64,
    /// Inner bytes sent over all peers.
    pub tx_bytes: u64,
    /// Dropped inputs over all reasons.
    pub drops: u64,
}

/// Errors of a backend operation.
///
/// ```
/// use sealwire::tunnel::backend::BackendError;
/// assert_eq!(BackendError::NotRunning.to_string(), "the backend is not running");
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// The request is invalid (unknown peer, our own key, a route via an unknown peer, an
    /// IPv6 prefix on a backend without IPv6, ...). Nothing changed.
    InvalidInput(&'static str),
    /// `start` on a running backend.
    AlreadyRunning,
    /// The operation needs a running backend.
    NotRunning,
    /// The backend does not have the capability the request needs.
    Unsupported,
    /// The backend failed internally (a kernel or process error in wrappers).
    Internal(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::InvalidInput(why) => write!(f, "invalid input: {why}"),
            BackendError::AlreadyRunning => f.write_str("the backend is already running"),
            BackendError::NotRunning => f.write_str("the backend is not running"),
            BackendError::Unsupported => f.write_str("the backend does not support this"),
            BackendError::Internal(e) => write!(f, "internal backend error: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BackendError {}

/// The contract between a control plane and whatever moves the packets.
///
/// ```
/// use sealwire::tunnel::backend::TunnelBackend;
/// // Control planes hold any backend behind the trait.
/// fn peers(b: &dyn TunnelBackend) -> usize {
///     b.stats().map_or(0, |s| s.peers)
/// }
/// # let _ = peers;
/// ```
///
/// Configuration (`configure_peer`, `remove_peer`, `replace_routes`, `set_exit_mode`) is
/// accepted whether or not the backend runs and survives `shutdown`/`start`; queries of live
/// state (`peer_endpoint`, `latest_handshake`, `stats`) need a running backend.
pub trait TunnelBackend {
    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;
    /// Our public key.
    fn public_key(&self) -> PublicKey;
    /// Starts moving packets with the stored configuration.
    fn start(&mut self, now: Instant) -> Result<(), BackendError>;
    /// Stops and wipes all sessions; configuration is kept.
    fn shutdown(&mut self) -> Result<(), BackendError>;
    /// Adds a peer or replaces its configuration.
    fn configure_peer(&mut self, now: Instant, peer: PeerConfig) -> Result<(), BackendError>;
    /// Removes a peer and every route through it.
    fn remove_peer(&mut self, public_key: &PublicKey) -> Result<(), BackendError>;
    /// The peer's current endpoint (configured or learned).
    fn peer_endpoint(&self, public_key: &PublicKey) -> Result<Option<SocketAddr>, BackendError>;
    /// When the last handshake with the peer completed.
    fn latest_handshake(&self, public_key: &PublicKey) -> Result<Option<Instant>, BackendError>;
    /// Replaces all LAN routes at once.
    fn replace_routes(&mut self, now: Instant, routes: &[Route]) -> Result<(), BackendError>;
    /// Sets the exit mode.
    fn set_exit_mode(&mut self, now: Instant, mode: ExitMode) -> Result<(), BackendError>;
    /// Counters.
    fn stats(&self) -> Result<BackendStats, BackendError>;
}
