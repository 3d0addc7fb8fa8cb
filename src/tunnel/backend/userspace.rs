//! [`UserspaceBackend`]: the [`TunnelBackend`] contract over this crate's [`Device`]. It keeps
//! the control plane's configuration (peers, LAN routes, exit mode) and turns it into each
//! peer's AllowedIPs on the device.

use super::{BackendError, BackendStats, Capabilities, ExitMode, Route, TunnelBackend};
use crate::crypto::x25519::{PublicKey, StaticSecret};
use crate::time::{Instant, WallTime};
use crate::tunnel::allowed_ips::Cidr;
use crate::tunnel::config::{DeviceConfig, PeerConfig};
use crate::tunnel::device::Device;
use crate::tunnel::error::DeviceError;
use crate::tunnel::stats::PeerStatus;
use crate::tunnel::wiped::WipedBox;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// [`TunnelBackend`] over this crate's userspace [`Device`]. The embedder still pumps packets
/// through [`device_mut`](Self::device_mut) (as the `tun_node` example program does).
///
/// ```
/// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
/// use sealwire::crypto::x25519::{PublicKey, StaticSecret};
/// use sealwire::time::Instant;
/// use sealwire::tunnel::backend::{TunnelBackend, UserspaceBackend};
/// use sealwire::tunnel::{DeviceConfig, PeerConfig};
/// let key = StaticSecret::from_bytes([1; 32]);
/// let mut b = UserspaceBackend::new(key, DeviceConfig::default(), ChaCha20Rng::seed_from_u64(1))?;
/// let peer = PublicKey::from_bytes([9; 32]);
/// b.configure_peer(Instant::ZERO, PeerConfig::new(peer)).unwrap();
/// b.start(Instant::ZERO).unwrap();
/// assert_eq!(b.device_mut().peer_count(), 1);
/// # Ok::<(), sealwire::tunnel::DeviceError>(())
/// ```
pub struct UserspaceBackend<R> {
    device: Device<R>,
    running: bool,
    /// Boxed: a B-tree shifts its entries within and between nodes and frees nodes without
    /// wiping them, so an inline PSK would leave copies behind; a box never moves and its
    /// block is zeroed when it goes.
    peers: BTreeMap<PublicKey, WipedBox<PeerConfig>>,
    routes: Vec<Route>,
    exit: ExitMode,
}

impl<R: rand_core::CryptoRng> UserspaceBackend<R> {
    /// A stopped backend around a new [`Device`] (see [`Device::new`]: the key is moved in,
    /// the configuration checked).
    pub fn new(
        private_key: StaticSecret,
        config: DeviceConfig,
        rng: R,
    ) -> Result<Self, DeviceError> {
        Ok(UserspaceBackend {
            device: Device::new(private_key, config, rng)?,
            running: false,
            peers: BTreeMap::new(),
            routes: Vec::new(),
            exit: ExitMode::Off,
        })
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
    fn effective_allowed_ips(&self, key: &PublicKey) -> Vec<Cidr> {
        let mut v: Vec<Cidr> = self
            .peers
            .get(key)
            .and_then(WipedBox::get)
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

    /// Pushes the stored configuration to the device. `with_endpoint` is false for
    /// route/exit changes so a roamed endpoint is not reset to the configured one.
    fn apply(
        &mut self,
        now: Instant,
        key: &PublicKey,
        with_endpoint: bool,
    ) -> Result<(), BackendError> {
        if !self.running {
            return Ok(());
        }
        let Some(stored) = self.peers.get(key).and_then(WipedBox::get) else {
            return Ok(());
        };
        let mut cfg = PeerConfig::clone(stored);
        cfg.allowed_ips = self.effective_allowed_ips(key);
        let r = if self.device.peers().any(|k| k == key) {
            if !with_endpoint {
                cfg.endpoint = None;
            }
            self.device.update_peer(now, cfg)
        } else {
            self.device.add_peer(now, cfg)
        };
        r.map_err(|e| match e {
            DeviceError::TooManyPeers => BackendError::InvalidInput("too many peers"),
            DeviceError::InvalidConfig(_) => {
                BackendError::InvalidInput("invalid peer configuration")
            }
            other => BackendError::Internal(format!("{other}")),
        })
    }

    fn apply_all(&mut self, now: Instant) -> Result<(), BackendError> {
        let keys: Vec<PublicKey> = self.peers.keys().copied().collect();
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

    fn require_peer(&self, key: &PublicKey) -> Result<(), BackendError> {
        if self.peers.contains_key(key) {
            Ok(())
        } else {
            Err(BackendError::InvalidInput("unknown peer"))
        }
    }

    /// The device's status of a configured peer of a running backend.
    fn status(&self, key: &PublicKey) -> Result<Option<PeerStatus>, BackendError> {
        self.require_running()?;
        self.require_peer(key)?;
        Ok(self.device.peer_status(key))
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

    fn public_key(&self) -> PublicKey {
        self.device.public_key()
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

    fn configure_peer(&mut self, now: Instant, peer: PeerConfig) -> Result<(), BackendError> {
        if peer.public_key == self.public_key() {
            return Err(BackendError::InvalidInput("a peer cannot have our own key"));
        }
        let key = peer.public_key;
        let previous = self.peers.insert(key, WipedBox::new(peer));
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

    fn remove_peer(&mut self, public_key: &PublicKey) -> Result<(), BackendError> {
        self.require_peer(public_key)?;
        self.peers.remove(public_key);
        self.routes.retain(|r| &r.via != public_key);
        if self.exit == (ExitMode::UseExit { peer: *public_key }) {
            self.exit = ExitMode::Off;
        }
        if self.running {
            let _ = self.device.remove_peer(public_key);
        }
        Ok(())
    }

    fn peer_endpoint(&self, public_key: &PublicKey) -> Result<Option<SocketAddr>, BackendError> {
        Ok(self.status(public_key)?.and_then(|s| s.endpoint))
    }

    fn latest_handshake(&self, public_key: &PublicKey) -> Result<Option<Instant>, BackendError> {
        Ok(self.status(public_key)?.and_then(|s| s.last_handshake))
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
        for s in self
            .device
            .peers()
            .filter_map(|k| self.device.peer_status(k))
        {
            rx = rx.saturating_add(s.rx_bytes);
            tx = tx.saturating_add(s.tx_bytes);
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
