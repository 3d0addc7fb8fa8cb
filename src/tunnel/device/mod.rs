//! The [`Device`]: many peers behind one static key. This file holds the device itself, its
//! peer management, its outputs and its timers; the two packet paths are beside it:
//! [`outbound`] (TUN packet ⇒ datagram, staging, initiations) and [`inbound`] (datagram ⇒
//! reply or TUN packet), and [`batch`], both in runs for UDP segmentation offload, and
//! [`split`], the data path in steps so that workers encrypt without holding the device.
//!
//! The device owns its parts and wires them together: the [`PeerTable`] (slots, keys,
//! session indices), the routes ([`AllowedIps`]), the [`Schedule`] of timer deadlines, the
//! handshake defences (cookies, rate limits) and the bounded output queues.

mod batch;
mod inbound;
mod outbound;
mod split;

pub use batch::DecapsulateBatch;
pub use split::{Begun, Opened, Opening, SealJob};

use super::allowed_ips::AllowedIps;
use super::config::{DeviceConfig, PeerConfig};
use super::cookie::CookieChecker;
use super::error::DeviceError;
use super::handshake::{Identity, PeerKeys, Tai64N};
use super::output::{DeviceEvent, Transmit};
use super::peer::Peer;
use super::peer_table::{PeerTable, Slot};
use super::rate_limit::{RateLimiter, SourceLimiter};
use super::schedule::Schedule;
use super::stats::{DeviceStats, PeerStatus};
use super::timers::{
    KEEPALIVE_TIMEOUT, MAX_TIMER_HANDSHAKES, REKEY_TIMEOUT_JITTER_MAX, ZERO_KEY_MATERIAL_AFTER,
};
use crate::crypto::x25519::{PublicKey, StaticSecret};
use crate::queue::Outbox;
use crate::time::{Duration, Instant, WallTime};
use core::net::SocketAddr;

/// How many jitter values there are: `[0, REKEY_TIMEOUT_JITTER_MAX]` in nanoseconds.
const JITTER_SPAN_NS: u64 = (REKEY_TIMEOUT_JITTER_MAX.as_nanos() as u64).saturating_add(1);

/// Uniform random jitter in `[0, REKEY_TIMEOUT_JITTER_MAX]`.
fn jitter_from<R: rand_core::CryptoRng>(rng: &mut R) -> Duration {
    Duration::from_nanos(rng.next_u64() % JITTER_SPAN_NS)
}

/// The persistent keepalive interval of a peer configuration (0 means off, as in `wg`).
fn keepalive_interval(cfg: &PeerConfig) -> Option<Duration> {
    cfg.persistent_keepalive
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(u64::from(s)))
}

/// A WireGuard-compatible interface: one static key, many peers.
///
/// The device is sans-IO. Feed it IP packets from the TUN ([`encapsulate`](Self::encapsulate)),
/// UDP datagrams ([`decapsulate`](Self::decapsulate)) and time
/// ([`handle_timeout`](Self::handle_timeout)); write what the returned
/// [`Action`](super::Action) says and drain [`poll_transmit`](Self::poll_transmit); sleep until
/// [`poll_timeout`](Self::poll_timeout).
///
/// ```
/// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
/// use sealwire::crypto::x25519::StaticSecret;
/// use sealwire::time::{Instant, WallTime};
/// use sealwire::tunnel::{Action, Device, DeviceConfig, PeerConfig};
///
/// let (ka, kb) = (StaticSecret::from_bytes([1; 32]), StaticSecret::from_bytes([2; 32]));
/// let (pa, pb) = (ka.public_key(), kb.public_key());
/// let mut a = Device::new(ka, DeviceConfig::default(), ChaCha20Rng::seed_from_u64(1))?;
/// let mut b = Device::new(kb, DeviceConfig::default(), ChaCha20Rng::seed_from_u64(2))?;
/// let (addr_a, addr_b) = ("192.0.2.1:51820".parse().unwrap(), "192.0.2.2:51820".parse().unwrap());
/// let mut peer_b = PeerConfig::new(pb);
/// peer_b.endpoint = Some(addr_b);
/// peer_b.allowed_ips.push("10.0.0.2/32".parse().unwrap());
/// a.add_peer(Instant::ZERO, peer_b)?;
/// let mut peer_a = PeerConfig::new(pa);
/// peer_a.allowed_ips.push("10.0.0.1/32".parse().unwrap());
/// b.add_peer(Instant::ZERO, peer_a)?;
/// let now = Instant::from_secs(1);
/// a.set_wall_clock(now, WallTime::from_unix(1_700_000_000, 0));
///
/// // An IPv4 packet 10.0.0.1 -> 10.0.0.2 (header only).
/// let mut ip = [0u8; 20];
/// ip[0] = 0x45; ip[3] = 20; ip[12..16].copy_from_slice(&[10, 0, 0, 1]); ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
///
/// let (mut buf, mut out) = ([0u8; 2048], [0u8; 2048]);
/// // No session yet: the packet is staged and an initiation goes out.
/// let Action::WriteToNetwork { len, .. } = a.encapsulate(now, &ip, &mut buf)? else { panic!() };
/// let Action::WriteToNetwork { len, .. } = b.decapsulate(now, addr_a, &buf[..len], &mut out)? else { panic!() };
/// // The response completes the handshake; the staged packet is queued for sending.
/// let _ = a.decapsulate(now, addr_b, &out[..len], &mut buf)?;
/// let t = a.poll_transmit().unwrap();
/// let Action::WriteToTunnel { len, source } = b.decapsulate(now, addr_a, &t.payload, &mut out)? else { panic!() };
/// assert_eq!(&out[..len], &ip);
/// assert_eq!(source, "10.0.0.1".parse::<std::net::IpAddr>().unwrap());
/// # Ok::<(), sealwire::tunnel::DeviceError>(())
/// ```
///
/// A device holds keys, so it cannot be copied (only the fuzz targets' builds can):
///
/// ```compile_fail
/// fn copyable<T: Clone>() {}
/// copyable::<sealwire::tunnel::Device<rand_chacha::ChaCha20Rng>>();
/// ```
// Fuzz targets clone an established device per input (cargo-fuzz builds with `--cfg
// fuzzing`); no other build can copy these keys.
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Device<R> {
    identity: Identity,
    config: DeviceConfig,
    rng: R,
    peers: PeerTable,
    routes: AllowedIps<Slot>,
    schedule: Schedule,
    cookie_checker: CookieChecker,
    rate_limiter: RateLimiter,
    source_limiter: SourceLimiter,
    transmits: Outbox<Transmit>,
    events: Outbox<DeviceEvent>,
    wall_anchor: Option<(Instant, WallTime)>,
    stats: DeviceStats,
}

impl<R: rand_core::CryptoRng> Device<R> {
    /// A device with no peers, owning our static key (`[Interface] PrivateKey`), which it
    /// wipes on drop. The configuration is checked first ([`DeviceConfig::check`]).
    ///
    /// ```
    /// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// use sealwire::crypto::x25519::StaticSecret;
    /// use sealwire::tunnel::{Device, DeviceConfig, DeviceError};
    /// let key = || StaticSecret::from_bytes([1; 32]);
    /// let d = Device::new(key(), DeviceConfig::default(), ChaCha20Rng::seed_from_u64(0)).unwrap();
    /// assert_eq!(d.public_key(), key().public_key());
    /// let mut cfg = DeviceConfig::default();
    /// cfg.max_peers = 0;
    /// let err = Device::new(key(), cfg, ChaCha20Rng::seed_from_u64(0)).unwrap_err();
    /// assert_eq!(err, DeviceError::InvalidConfig("max_peers"));
    /// ```
    pub fn new(
        private_key: StaticSecret,
        config: DeviceConfig,
        rng: R,
    ) -> Result<Self, DeviceError> {
        config.check()?;
        Ok(Device {
            identity: Identity::new(private_key),
            rate_limiter: RateLimiter::new(config.handshake_rate_limit),
            source_limiter: SourceLimiter::new(config.max_rate_limited_sources),
            peers: PeerTable::new(config.max_peers),
            transmits: Outbox::new(config.queue_capacity),
            events: Outbox::new(config.queue_capacity),
            config,
            rng,
            routes: AllowedIps::default(),
            schedule: Schedule::default(),
            cookie_checker: CookieChecker::new(),
            wall_anchor: None,
            stats: DeviceStats::default(),
        })
    }

    /// Our static public key.
    pub fn public_key(&self) -> PublicKey {
        self.identity.public
    }

    /// Anchors wall-clock time: at monotonic `now` the wall clock reads `wall`. Initiation
    /// timestamps are `wall + (t - now)`. Call it at start and whenever the system clock is
    /// stepped; without it timestamps count from the Unix epoch, which a peer that has seen
    /// a real timestamp from us before will reject as a replay.
    pub fn set_wall_clock(&mut self, now: Instant, wall: WallTime) {
        self.wall_anchor = Some((now, wall));
    }

    /// Adds a peer. Its AllowedIPs take over any prefix another peer had (as in `wg set`).
    /// With an endpoint and a persistent keepalive, the first keepalive is due at `now`.
    ///
    /// ```
    /// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// # use sealwire::crypto::x25519::{PublicKey, StaticSecret};
    /// # use sealwire::time::Instant;
    /// use sealwire::tunnel::{Device, DeviceConfig, DeviceError, PeerConfig};
    /// let mut d = Device::new(StaticSecret::from_bytes([1; 32]), DeviceConfig::default(), ChaCha20Rng::seed_from_u64(0))?;
    /// let key = PublicKey::from_bytes([9; 32]);
    /// let mut p = PeerConfig::new(key);
    /// p.allowed_ips.push("10.7.0.0/24".parse().unwrap());
    /// d.add_peer(Instant::ZERO, p)?;
    /// assert_eq!(d.add_peer(Instant::ZERO, PeerConfig::new(key)), Err(DeviceError::DuplicatePeer));
    /// let st = d.peer_status(&key).unwrap();
    /// assert_eq!(st.allowed_ips[0].to_string(), "10.7.0.0/24");
    /// assert!(!d.has_session(Instant::ZERO, &key));
    /// d.remove_peer(&key)?;
    /// assert_eq!(d.peer_count(), 0);
    /// # Ok::<(), DeviceError>(())
    /// ```
    pub fn add_peer(&mut self, now: Instant, cfg: PeerConfig) -> Result<(), DeviceError> {
        if cfg.public_key == self.identity.public {
            return Err(DeviceError::InvalidConfig("public_key"));
        }
        // Refuse before the static-static DH below is spent.
        self.peers.check_room(&cfg.public_key)?;
        let psk = cfg.preshared_key.as_ref().map(|k| *k.expose());
        let mut peer = Peer::new(
            PeerKeys::new(&self.identity, cfg.public_key, psk),
            cfg.endpoint,
        );
        peer.timers.persistent_interval = keepalive_interval(&cfg);
        // A persistent keepalive starts at once (wg set ... persistent-keepalive does too).
        if peer.timers.persistent_interval.is_some() && peer.endpoint.is_some() {
            peer.timers.persistent_keepalive = Some(now);
        }
        let slot = self.peers.insert(cfg.public_key, peer)?;
        for c in cfg.allowed_ips {
            self.routes.insert(c, slot);
        }
        self.reschedule(slot);
        Ok(())
    }

    /// Changes a peer's endpoint (when one is given), PSK, AllowedIPs (replaced) and
    /// keepalive (a newly enabled one is due at `now`); keeps sessions unless the PSK changed.
    ///
    /// ```
    /// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// # use sealwire::crypto::x25519::{PublicKey, StaticSecret};
    /// use sealwire::time::Instant;
    /// use sealwire::tunnel::{Device, DeviceConfig, DeviceError, PeerConfig};
    /// let mut d = Device::new(StaticSecret::from_bytes([1; 32]), DeviceConfig::default(), ChaCha20Rng::seed_from_u64(0))?;
    /// let key = PublicKey::from_bytes([9; 32]);
    /// assert_eq!(d.update_peer(Instant::ZERO, PeerConfig::new(key)), Err(DeviceError::UnknownPeer));
    /// d.add_peer(Instant::ZERO, PeerConfig::new(key))?;
    /// let mut p = PeerConfig::new(key);
    /// p.allowed_ips.push("10.9.0.0/16".parse().unwrap());
    /// d.update_peer(Instant::ZERO, p)?;
    /// assert_eq!(d.peer_status(&key).unwrap().allowed_ips[0].to_string(), "10.9.0.0/16");
    /// # Ok::<(), DeviceError>(())
    /// ```
    pub fn update_peer(&mut self, now: Instant, cfg: PeerConfig) -> Result<(), DeviceError> {
        let slot = self
            .peers
            .slot(&cfg.public_key)
            .ok_or(DeviceError::UnknownPeer)?;
        let psk = cfg.preshared_key.as_ref().map(|k| *k.expose());
        let new_keys = PeerKeys::new(&self.identity, cfg.public_key, psk);
        let p = self.peers.get_mut(slot).ok_or(DeviceError::UnknownPeer)?;
        let psk_changed = !crate::crypto::ct_eq(&p.keys.psk, &new_keys.psk);
        p.keys = new_keys;
        if cfg.endpoint.is_some() {
            p.endpoint = cfg.endpoint;
        }
        p.timers.persistent_interval = keepalive_interval(&cfg);
        if p.timers.persistent_interval.is_none() {
            p.timers.persistent_keepalive = None;
        } else if p.timers.persistent_keepalive.is_none() && p.endpoint.is_some() {
            p.timers.persistent_keepalive = Some(now);
        }
        if psk_changed {
            self.peers.clear_sessions(slot);
        }
        self.routes.remove_value(slot);
        for c in cfg.allowed_ips {
            self.routes.insert(c, slot);
        }
        self.reschedule(slot);
        Ok(())
    }

    /// Removes a peer, wiping its sessions and routes.
    pub fn remove_peer(&mut self, key: &PublicKey) -> Result<(), DeviceError> {
        let slot = self.peers.remove(key).ok_or(DeviceError::UnknownPeer)?;
        self.schedule.remove(slot);
        self.routes.remove_value(slot);
        Ok(())
    }

    /// Number of peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// A snapshot of one peer.
    pub fn peer_status(&self, key: &PublicKey) -> Option<PeerStatus> {
        let slot = self.peers.slot(key)?;
        let p = self.peers.get(slot)?;
        Some(PeerStatus {
            public_key: *key,
            endpoint: p.endpoint,
            last_handshake: p.last_handshake,
            rx_bytes: p.rx_bytes,
            tx_bytes: p.tx_bytes,
            allowed_ips: self.routes.prefixes_of(slot).collect(),
        })
    }

    /// Whether the peer has a session that can send at `now` (not older than
    /// REJECT_AFTER_TIME, counter not exhausted); `false` for an unknown peer.
    pub fn has_session(&self, now: Instant, key: &PublicKey) -> bool {
        let p = self.peers.slot(key).and_then(|slot| self.peers.get(slot));
        p.is_some_and(|p| p.can_send(now))
    }

    /// The public keys of all peers.
    pub fn peers(&self) -> impl Iterator<Item = &PublicKey> + '_ {
        self.peers.keys()
    }

    /// Counters, including the outputs the queues had to drop.
    ///
    /// ```
    /// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// # use sealwire::crypto::x25519::StaticSecret;
    /// use sealwire::time::Instant;
    /// use sealwire::tunnel::{Device, DeviceConfig, DropReason};
    /// let mut d = Device::new(StaticSecret::from_bytes([1; 32]), DeviceConfig::default(), ChaCha20Rng::seed_from_u64(0))?;
    /// let mut out = [0u8; 64];
    /// assert!(d.decapsulate(Instant::ZERO, "192.0.2.1:1".parse().unwrap(), b"noise", &mut out).is_err());
    /// assert_eq!(d.stats().drops(DropReason::Malformed), 1);
    /// assert_eq!(d.stats().transmits_dropped, 0);
    /// # Ok::<(), sealwire::tunnel::DeviceError>(())
    /// ```
    pub fn stats(&self) -> DeviceStats {
        let mut s = self.stats.clone();
        s.transmits_dropped = self.transmits.dropped();
        s.events_dropped = self.events.dropped();
        s
    }

    /// The next datagram to send, if any (at most `queue_capacity` wait).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop()
    }

    /// The next event, if any (at most `queue_capacity` wait).
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop()
    }

    /// The earliest timer deadline over all peers (`O(log n)`). Sleep until then, then call
    /// [`handle_timeout`](Self::handle_timeout). `None`: nothing is scheduled. It may be
    /// earlier than the next action (a timer that traffic pushed back), never later.
    ///
    /// ```
    /// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// # use sealwire::crypto::x25519::{PublicKey, StaticSecret};
    /// # use sealwire::time::Instant;
    /// use sealwire::tunnel::{Device, DeviceConfig, PeerConfig};
    /// let mut d = Device::new(StaticSecret::from_bytes([1; 32]), DeviceConfig::default(), ChaCha20Rng::seed_from_u64(0))?;
    /// assert_eq!(d.poll_timeout(), None);
    /// let mut p = PeerConfig::new(StaticSecret::from_bytes([2; 32]).public_key());
    /// p.endpoint = Some("192.0.2.1:51820".parse().unwrap());
    /// p.persistent_keepalive = Some(25);
    /// d.add_peer(Instant::from_secs(3), p)?;
    /// // A persistent keepalive is due at once; with no session it starts a handshake.
    /// assert_eq!(d.poll_timeout(), Some(Instant::from_secs(3)));
    /// d.handle_timeout(Instant::from_secs(3));
    /// assert_eq!(d.poll_transmit().unwrap().payload.len(), 148);
    /// // Next: the handshake retry, REKEY_TIMEOUT (5 s) plus up to 333 ms of jitter later.
    /// let next = d.poll_timeout().unwrap();
    /// assert!(next >= Instant::from_secs(8) && next <= Instant::from_secs(9));
    /// # Ok::<(), sealwire::tunnel::DeviceError>(())
    /// ```
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.schedule.first()
    }

    /// Runs every timer due at `now`; resulting datagrams go to [`poll_transmit`](Self::poll_transmit).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(slot) = self.schedule.pop_due(now) {
            self.fire_timers(now, slot);
            self.reschedule(slot);
        }
    }

    /// Runs the timers of `slot` that are due at `now` (WireGuard paper §6, the kernel's
    /// timers.c), each at most once.
    fn fire_timers(&mut self, now: Instant, slot: Slot) {
        let due = |t: &mut Option<Instant>| {
            if t.is_some_and(|d| d <= now) {
                *t = None;
                true
            } else {
                false
            }
        };
        let Some(p) = self.peers.get_mut(slot) else {
            return;
        };
        let peer = p.keys.remote;
        let retransmit = due(&mut p.timers.retransmit_handshake);
        let keepalive = due(&mut p.timers.send_keepalive);
        let new_handshake = due(&mut p.timers.new_handshake);
        let zero = due(&mut p.timers.zero_key_material);
        let persistent = due(&mut p.timers.persistent_keepalive);
        if retransmit {
            if p.timers.handshake_attempts > MAX_TIMER_HANDSHAKES {
                // WG §6.4 / kernel timers.c: give up after MAX_TIMER_HANDSHAKES + 2 attempts
                // (about REKEY_ATTEMPT_TIME); drop what waited for the handshake.
                p.timers.send_keepalive = None;
                p.staged.clear();
                if p.timers.zero_key_material.is_none() {
                    p.timers.zero_key_material = Some(now.saturating_add(ZERO_KEY_MATERIAL_AFTER));
                }
                self.events.push(DeviceEvent::HandshakeGaveUp { peer });
            } else {
                p.timers.handshake_attempts = p.timers.handshake_attempts.saturating_add(1);
                self.queue_initiation(now, slot, true);
            }
        }
        if keepalive {
            self.send_keepalive(now, slot);
            if let Some(p) = self.peers.get_mut(slot) {
                if p.timers.need_another_keepalive {
                    p.timers.need_another_keepalive = false;
                    p.timers.send_keepalive = Some(now.saturating_add(KEEPALIVE_TIMEOUT));
                }
            }
        }
        if new_handshake {
            self.queue_initiation(now, slot, false);
        }
        if zero {
            self.peers.clear_sessions(slot);
            self.events.push(DeviceEvent::KeysWiped { peer });
        }
        if persistent {
            self.send_keepalive(now, slot);
        }
    }

    /// Keeps `slot`'s schedule entry a lower bound of its next timer (see [`Schedule`]).
    fn reschedule(&mut self, slot: Slot) {
        if let Some(p) = self.peers.get(slot) {
            self.schedule.update(slot, p.timers.next());
        }
    }

    fn push_transmit(&mut self, to: SocketAddr, payload: alloc::vec::Vec<u8>) {
        self.transmits.push(Transmit { to, payload });
    }

    /// The TAI64N timestamp of an initiation sent at `now`, from the wall-clock anchor.
    fn wall_at(&self, now: Instant) -> Tai64N {
        let w = match self.wall_anchor {
            Some((at, wall)) if now >= at => wall.saturating_add(now.saturating_duration_since(at)),
            Some((_, wall)) => wall,
            None => {
                WallTime::UNIX_EPOCH.saturating_add(now.saturating_duration_since(Instant::ZERO))
            }
        };
        // Whiten to 2^24 ns (kernel: rounddown to a power of two below 1 s / 50) so the
        // timestamp does not leak fine-grained clock state.
        Tai64N::from_unix(w.secs(), w.subsec_nanos() & !0x00ff_ffff)
    }

    fn jitter(&mut self) -> Duration {
        jitter_from(&mut self.rng)
    }
}

impl<R> core::fmt::Debug for Device<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Device")
            .field("public_key", &self.identity.public)
            .field("peers", &self.peers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
