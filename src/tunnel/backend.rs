//! A control-plane view of a tunnel: the [`TunnelBackend`] trait, capability flags and a
//! reusable conformance suite.
//!
//! Control planes (mesh coordinators, VPN managers) configure peers, routes and exit mode;
//! they should not care whether packets are moved by this crate's userspace [`Device`], the
//! Linux kernel module or wireguard-go. So the trait speaks only in plain types — 32-byte
//! keys, [`Cidr`] prefixes, socket addresses, [`Instant`]s — and never in handshake, session
//! or message types. What a backend can do is declared up front in [`Capabilities`], and
//! [`run_conformance`] checks that a backend keeps the contract, so the same suite can run
//! against ours and against a wrapper of `wg(8)`.
//!
//! ```
//! use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
//! use sealwire::tunnel::backend::{run_conformance, UserspaceBackend};
//! let mut seed = 0;
//! run_conformance(|| {
//!     seed += 1;
//!     UserspaceBackend::new([seed as u8; 32], ChaCha20Rng::seed_from_u64(seed))
//! })
//! .unwrap();
//! ```

use super::allowed_ips::Cidr;
use super::config::{DeviceConfig, PeerConfig};
use super::device::{Device, WallTime};
use super::error::Error;
use crate::crypto::x25519::{PublicKey, StaticSecret};
use crate::crypto::SecretBytes;
use crate::time::Instant;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What a backend supports. Control planes must not ask for what is `false`.
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

/// One peer as a control plane describes it.
#[derive(Debug)]
#[non_exhaustive]
pub struct PeerSpec {
    /// The peer's 32-byte public key.
    pub public_key: [u8; 32],
    /// Optional pre-shared key.
    pub preshared_key: Option<SecretBytes<32>>,
    /// Initial endpoint, if known.
    pub endpoint: Option<SocketAddr>,
    /// The peer's own addresses.
    pub allowed_ips: Vec<Cidr>,
    /// Keepalive interval in seconds.
    pub persistent_keepalive: Option<u16>,
}

impl PeerSpec {
    /// A peer with only a key.
    ///
    /// ```
    /// let p = sealwire::tunnel::backend::PeerSpec::new([9u8; 32]);
    /// assert!(p.allowed_ips.is_empty());
    /// ```
    pub fn new(public_key: [u8; 32]) -> Self {
        PeerSpec {
            public_key,
            preshared_key: None,
            endpoint: None,
            allowed_ips: Vec::new(),
            persistent_keepalive: None,
        }
    }
}

/// An extra prefix reached through a peer (a LAN behind it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The destination prefix.
    pub prefix: Cidr,
    /// The peer it goes through.
    pub via: [u8; 32],
}

/// Whether traffic leaves through an exit peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitMode {
    /// Only peer addresses and routes go through the tunnel.
    #[default]
    Off,
    /// Default routes (`0.0.0.0/0`, and `::/0` with IPv6) go through this peer.
    UseExit {
        /// The exit peer.
        peer: [u8; 32],
    },
    /// We accept peers' traffic for any destination (the host forwards it).
    ServeExit,
}

/// Counters a control plane can show.
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
/// Configuration (`configure_peer`, `remove_peer`, `replace_routes`, `set_exit_mode`) is
/// accepted whether or not the backend runs and survives `shutdown`/`start`; queries of live
/// state (`peer_endpoint`, `latest_handshake`, `stats`) need a running backend.
pub trait TunnelBackend {
    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;
    /// Our public key.
    fn public_key(&self) -> [u8; 32];
    /// Starts moving packets with the stored configuration.
    fn start(&mut self, now: Instant) -> Result<(), BackendError>;
    /// Stops and wipes all sessions; configuration is kept.
    fn shutdown(&mut self) -> Result<(), BackendError>;
    /// Adds a peer or replaces its configuration.
    fn configure_peer(&mut self, now: Instant, peer: PeerSpec) -> Result<(), BackendError>;
    /// Removes a peer and every route through it.
    fn remove_peer(&mut self, public_key: &[u8; 32]) -> Result<(), BackendError>;
    /// The peer's current endpoint (configured or learned).
    fn peer_endpoint(&self, public_key: &[u8; 32]) -> Result<Option<SocketAddr>, BackendError>;
    /// When the last handshake with the peer completed.
    fn latest_handshake(&self, public_key: &[u8; 32]) -> Result<Option<Instant>, BackendError>;
    /// Replaces all LAN routes at once.
    fn replace_routes(&mut self, now: Instant, routes: &[Route]) -> Result<(), BackendError>;
    /// Sets the exit mode.
    fn set_exit_mode(&mut self, now: Instant, mode: ExitMode) -> Result<(), BackendError>;
    /// Counters.
    fn stats(&self) -> Result<BackendStats, BackendError>;
}

/// [`TunnelBackend`] over this crate's userspace [`Device`]. The embedder still pumps packets
/// through [`device_mut`](Self::device_mut) (see `examples/tun_node.rs`).
pub struct UserspaceBackend<R> {
    device: Device<R>,
    running: bool,
    peers: BTreeMap<[u8; 32], PeerSpec>,
    routes: Vec<Route>,
    exit: ExitMode,
}

impl<R: rand_core::CryptoRng> UserspaceBackend<R> {
    /// A stopped backend with our private key.
    pub fn new(private_key: [u8; 32], rng: R) -> Self {
        UserspaceBackend {
            device: Device::new(
                DeviceConfig::new(StaticSecret::from_bytes(private_key)),
                rng,
            ),
            running: false,
            peers: BTreeMap::new(),
            routes: Vec::new(),
            exit: ExitMode::Off,
        }
    }

    /// The device, for the packet pump.
    pub fn device_mut(&mut self) -> &mut Device<R> {
        &mut self.device
    }

    /// Sets the wall clock of the device (see [`Device::set_wall_clock`]).
    pub fn set_wall_clock(&mut self, now: Instant, wall: WallTime) {
        self.device.set_wall_clock(now, wall);
    }

    /// The AllowedIPs a peer gets: its own, plus routes through it, plus default routes if it
    /// is the exit.
    fn effective_allowed_ips(&self, key: &[u8; 32]) -> Vec<Cidr> {
        let mut v: Vec<Cidr> = self
            .peers
            .get(key)
            .map(|p| p.allowed_ips.clone())
            .unwrap_or_default();
        v.extend(
            self.routes
                .iter()
                .filter(|r| &r.via == key)
                .map(|r| r.prefix),
        );
        if self.exit == (ExitMode::UseExit { peer: *key }) {
            v.extend(Cidr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
            v.extend(Cidr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0));
        }
        v
    }

    /// Pushes the stored spec to the device. `with_endpoint` is false for route/exit changes so
    /// a roamed endpoint is not reset to the configured one.
    fn apply(
        &mut self,
        now: Instant,
        key: &[u8; 32],
        with_endpoint: bool,
    ) -> Result<(), BackendError> {
        if !self.running {
            return Ok(());
        }
        let Some(spec) = self.peers.get(key) else {
            return Ok(());
        };
        let mut cfg = PeerConfig::new(PublicKey::from_bytes(*key));
        cfg.preshared_key = spec
            .preshared_key
            .as_ref()
            .map(|k| SecretBytes::new(*k.expose()));
        cfg.endpoint = if with_endpoint { spec.endpoint } else { None };
        cfg.persistent_keepalive = spec.persistent_keepalive;
        cfg.allowed_ips = self.effective_allowed_ips(key);
        let pk = PublicKey::from_bytes(*key);
        let r = if self.device.peers().any(|k| *k == pk) {
            self.device.update_peer(now, cfg)
        } else {
            cfg.endpoint = spec.endpoint;
            self.device.add_peer(now, cfg)
        };
        r.map_err(|e| match e {
            Error::TooManyPeers => BackendError::InvalidInput("too many peers"),
            Error::InvalidConfig => BackendError::InvalidInput("invalid peer configuration"),
            other => BackendError::Internal(format!("{other}")),
        })
    }

    fn apply_all(&mut self, now: Instant) -> Result<(), BackendError> {
        let keys: Vec<[u8; 32]> = self.peers.keys().copied().collect();
        for k in keys {
            self.apply(now, &k, false)?;
        }
        Ok(())
    }

    fn require_running(&self) -> Result<(), BackendError> {
        if self.running {
            Ok(())
        } else {
            Err(BackendError::NotRunning)
        }
    }

    fn require_peer(&self, key: &[u8; 32]) -> Result<(), BackendError> {
        if self.peers.contains_key(key) {
            Ok(())
        } else {
            Err(BackendError::InvalidInput("unknown peer"))
        }
    }
}

impl<R: rand_core::CryptoRng> TunnelBackend for UserspaceBackend<R> {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            roaming: true,
            exit_node: true,
            exit_serving: true,
            lan_routes: true,
            ipv6: true,
            preshared_keys: true,
            persistent_keepalive: true,
        }
    }

    fn public_key(&self) -> [u8; 32] {
        *self.device.public_key().as_bytes()
    }

    fn start(&mut self, now: Instant) -> Result<(), BackendError> {
        if self.running {
            return Err(BackendError::AlreadyRunning);
        }
        self.running = true;
        self.apply_all(now)
    }

    fn shutdown(&mut self) -> Result<(), BackendError> {
        self.require_running()?;
        let keys: Vec<PublicKey> = self.device.peers().copied().collect();
        for k in keys {
            // Removal wipes every session of the peer.
            let _ = self.device.remove_peer(&k);
        }
        self.running = false;
        Ok(())
    }

    fn configure_peer(&mut self, now: Instant, peer: PeerSpec) -> Result<(), BackendError> {
        if peer.public_key == self.public_key() {
            return Err(BackendError::InvalidInput("a peer cannot have our own key"));
        }
        let key = peer.public_key;
        let previous = self.peers.insert(key, peer);
        if let Err(e) = self.apply(now, &key, true) {
            match previous {
                Some(p) => {
                    self.peers.insert(key, p);
                }
                None => {
                    self.peers.remove(&key);
                }
            }
            return Err(e);
        }
        Ok(())
    }

    fn remove_peer(&mut self, public_key: &[u8; 32]) -> Result<(), BackendError> {
        self.require_peer(public_key)?;
        self.peers.remove(public_key);
        self.routes.retain(|r| &r.via != public_key);
        if self.exit == (ExitMode::UseExit { peer: *public_key }) {
            self.exit = ExitMode::Off;
        }
        if self.running {
            let _ = self.device.remove_peer(&PublicKey::from_bytes(*public_key));
        }
        Ok(())
    }

    fn peer_endpoint(&self, public_key: &[u8; 32]) -> Result<Option<SocketAddr>, BackendError> {
        self.require_running()?;
        self.require_peer(public_key)?;
        Ok(self
            .device
            .peer_status(Instant::ZERO, &PublicKey::from_bytes(*public_key))
            .and_then(|s| s.endpoint))
    }

    fn latest_handshake(&self, public_key: &[u8; 32]) -> Result<Option<Instant>, BackendError> {
        self.require_running()?;
        self.require_peer(public_key)?;
        Ok(self
            .device
            .peer_status(Instant::ZERO, &PublicKey::from_bytes(*public_key))
            .and_then(|s| s.last_handshake))
    }

    fn replace_routes(&mut self, now: Instant, routes: &[Route]) -> Result<(), BackendError> {
        if routes.iter().any(|r| !self.peers.contains_key(&r.via)) {
            return Err(BackendError::InvalidInput("route via an unknown peer"));
        }
        self.routes = routes.to_vec();
        self.apply_all(now)
    }

    fn set_exit_mode(&mut self, now: Instant, mode: ExitMode) -> Result<(), BackendError> {
        if let ExitMode::UseExit { peer } = mode {
            self.require_peer(&peer)?;
        }
        self.exit = mode;
        self.apply_all(now)
    }

    fn stats(&self) -> Result<BackendStats, BackendError> {
        self.require_running()?;
        let (mut rx, mut tx) = (0u64, 0u64);
        for k in self.device.peers() {
            if let Some(s) = self.device.peer_status(Instant::ZERO, k) {
                rx = rx.saturating_add(s.rx_bytes);
                tx = tx.saturating_add(s.tx_bytes);
            }
        }
        let st = self.device.stats();
        Ok(BackendStats {
            peers: self.peers.len(),
            handshakes: st.handshakes_completed,
            rx_bytes: rx,
            tx_bytes: tx,
            drops: st.total_drops(),
        })
    }
}

impl<R> fmt::Debug for UserspaceBackend<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserspaceBackend")
            .field("running", &self.running)
            .field("peers", &self.peers.len())
            .field("exit", &self.exit)
            .finish_non_exhaustive()
    }
}

/// A conformance check that failed: which rule, and what happened instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConformanceFailure {
    /// The rule, as a sentence.
    pub check: &'static str,
    /// What the backend did.
    pub detail: String,
}

impl fmt::Display for ConformanceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.check, self.detail)
    }
}

fn expect<T: fmt::Debug>(
    check: &'static str,
    got: T,
    ok: impl FnOnce(&T) -> bool,
) -> Result<(), ConformanceFailure> {
    if ok(&got) {
        Ok(())
    } else {
        Err(ConformanceFailure {
            check,
            detail: format!("{got:?}"),
        })
    }
}

/// Runs the backend contract against fresh backends from `factory` (each check group gets
/// a new one). Returns the first rule broken.
///
/// Rules: lifecycle (`start` twice ⇒ `AlreadyRunning`, queries and `shutdown` when stopped ⇒
/// `NotRunning`); configuration is kept across `shutdown`/`start`; our own key as a peer,
/// unknown peers, routes or exits via unknown peers ⇒ `InvalidInput` and nothing changes;
/// endpoints reflect configuration; removing a peer removes its routes; capabilities are
/// honoured (an IPv6 prefix on a backend without IPv6 ⇒ `InvalidInput` or `Unsupported`).
pub fn run_conformance<B, F>(mut factory: F) -> Result<(), ConformanceFailure>
where
    B: TunnelBackend,
    F: FnMut() -> B,
{
    let now = Instant::from_secs(1);
    let peer_a = [0xa1u8; 32];
    let peer_b = [0xb2u8; 32];
    let ep: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 51820);
    let ep2: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)), 51821);
    let v4 = |a, b, c, d, l| Cidr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), l);
    let host_a = v4(10, 9, 0, 1, 32).into_iter().collect::<Vec<_>>();

    // Lifecycle.
    let mut b = factory();
    let caps = b.capabilities();
    expect("stats before start is NotRunning", b.stats(), |r| {
        *r == Err(BackendError::NotRunning)
    })?;
    expect("shutdown before start is NotRunning", b.shutdown(), |r| {
        *r == Err(BackendError::NotRunning)
    })?;
    expect("start succeeds", b.start(now), |r| r.is_ok())?;
    expect("start twice is AlreadyRunning", b.start(now), |r| {
        *r == Err(BackendError::AlreadyRunning)
    })?;
    expect("stats when running start at zero peers", b.stats(), |r| {
        r.as_ref().is_ok_and(|s| s.peers == 0 && s.handshakes == 0)
    })?;
    expect("shutdown succeeds", b.shutdown(), |r| r.is_ok())?;
    expect("shutdown twice is NotRunning", b.shutdown(), |r| {
        *r == Err(BackendError::NotRunning)
    })?;
    expect(
        "queries when stopped are NotRunning",
        b.peer_endpoint(&peer_a),
        |r| *r == Err(BackendError::NotRunning),
    )?;

    // Peers.
    let mut b = factory();
    let own = b.public_key();
    expect("start succeeds", b.start(now), |r| r.is_ok())?;
    expect(
        "our own key as a peer is InvalidInput",
        b.configure_peer(now, PeerSpec::new(own)),
        |r| matches!(r, Err(BackendError::InvalidInput(_))),
    )?;
    let mut a = PeerSpec::new(peer_a);
    a.endpoint = Some(ep);
    a.allowed_ips = host_a.clone();
    expect("a valid peer is accepted", b.configure_peer(now, a), |r| {
        r.is_ok()
    })?;
    expect(
        "the endpoint reflects configuration",
        b.peer_endpoint(&peer_a),
        |r| *r == Ok(Some(ep)),
    )?;
    expect("no handshake yet", b.latest_handshake(&peer_a), |r| {
        *r == Ok(None)
    })?;
    expect(
        "unknown peers are InvalidInput",
        b.peer_endpoint(&peer_b),
        |r| matches!(r, Err(BackendError::InvalidInput(_))),
    )?;
    let mut a2 = PeerSpec::new(peer_a);
    a2.endpoint = Some(ep2);
    a2.allowed_ips = host_a.clone();
    expect(
        "reconfiguring a peer is accepted",
        b.configure_peer(now, a2),
        |r| r.is_ok(),
    )?;
    expect(
        "reconfiguring moves the endpoint",
        b.peer_endpoint(&peer_a),
        |r| *r == Ok(Some(ep2)),
    )?;
    expect("one peer counted", b.stats(), |r| {
        r.as_ref().is_ok_and(|s| s.peers == 1)
    })?;

    // Routes and exit.
    let lan = Route {
        prefix: v4(192, 168, 50, 0, 24).unwrap_or(host_a[0]),
        via: peer_a,
    };
    let bad = Route {
        prefix: lan.prefix,
        via: peer_b,
    };
    if caps.lan_routes {
        expect(
            "a route via an unknown peer is InvalidInput",
            b.replace_routes(now, &[lan, bad]),
            |r| matches!(r, Err(BackendError::InvalidInput(_))),
        )?;
        expect(
            "routes via known peers are accepted",
            b.replace_routes(now, &[lan]),
            |r| r.is_ok(),
        )?;
        expect(
            "an empty route set is accepted",
            b.replace_routes(now, &[]),
            |r| r.is_ok(),
        )?;
    } else {
        expect(
            "LAN routes without the capability are Unsupported",
            b.replace_routes(now, &[lan]),
            |r| *r == Err(BackendError::Unsupported),
        )?;
    }
    if caps.exit_node {
        expect(
            "an exit via an unknown peer is InvalidInput",
            b.set_exit_mode(now, ExitMode::UseExit { peer: peer_b }),
            |r| matches!(r, Err(BackendError::InvalidInput(_))),
        )?;
        expect(
            "an exit via a known peer is accepted",
            b.set_exit_mode(now, ExitMode::UseExit { peer: peer_a }),
            |r| r.is_ok(),
        )?;
        expect(
            "exit off is accepted",
            b.set_exit_mode(now, ExitMode::Off),
            |r| r.is_ok(),
        )?;
    }
    if !caps.exit_serving {
        expect(
            "serving as exit without the capability is Unsupported",
            b.set_exit_mode(now, ExitMode::ServeExit),
            |r| *r == Err(BackendError::Unsupported),
        )?;
    }
    let mut v6 = PeerSpec::new(peer_b);
    v6.allowed_ips = Cidr::new(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)), 128)
        .into_iter()
        .collect();
    let r = b.configure_peer(now, v6);
    if caps.ipv6 {
        expect(
            "IPv6 AllowedIPs are accepted with the ipv6 capability",
            r,
            |r| r.is_ok(),
        )?;
        expect("removing a peer succeeds", b.remove_peer(&peer_b), |r| {
            r.is_ok()
        })?;
    } else {
        expect("IPv6 without the capability is refused", r, |r| {
            matches!(
                r,
                Err(BackendError::InvalidInput(_)) | Err(BackendError::Unsupported)
            )
        })?;
    }
    expect(
        "removing an unknown peer is InvalidInput",
        b.remove_peer(&peer_b),
        |r| matches!(r, Err(BackendError::InvalidInput(_))),
    )?;

    // Configuration survives a restart.
    expect("shutdown succeeds", b.shutdown(), |r| r.is_ok())?;
    expect("start again succeeds", b.start(now), |r| r.is_ok())?;
    expect(
        "peers survive shutdown/start",
        b.peer_endpoint(&peer_a),
        |r| *r == Ok(Some(ep2)),
    )?;
    expect("removing the peer succeeds", b.remove_peer(&peer_a), |r| {
        r.is_ok()
    })?;
    expect(
        "a removed peer is unknown",
        b.latest_handshake(&peer_a),
        |r| matches!(r, Err(BackendError::InvalidInput(_))),
    )?;
    expect("zero peers after removal", b.stats(), |r| {
        r.as_ref().is_ok_and(|s| s.peers == 0)
    })?;
    Ok(())
}
