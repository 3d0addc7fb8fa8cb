//! The [`Device`]: many peers behind one static key, cryptokey routing, timers, and the
//! allocation-free data path.

use super::allowed_ips::AllowedIps;
use super::config::{DeviceConfig, PeerConfig};
use super::cookie::{CookieChecker, RateLimiter, SourceLimiter};
use super::error::{DropReason, Error};
use super::handshake::{self, Identity, PeerKeys, Tai64N};
use super::peer::Peer;
use super::stats::{PeerStatus, Stats};
use super::timers::{
    KEEPALIVE_TIMEOUT, MAX_TIMER_HANDSHAKES, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME_NS, REKEY_TIMEOUT, REKEY_TIMEOUT_JITTER_MAX,
};
use super::wire::{self, DATA_HEADER_LEN, DATA_OVERHEAD, INITIATION_LEN};
use crate::crypto::x25519::{PublicKey, StaticSecret};
use crate::time::{Duration, Instant};
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

/// Wall-clock time (seconds and nanoseconds since the Unix epoch), used only for the TAI64N
/// timestamp in initiations. It is an explicit input: see [`Device::set_wall_clock`].
///
/// ```
/// use sealwire::tunnel::WallTime;
/// let w = WallTime::from_unix(1_700_000_000, 5);
/// assert_eq!(w.secs(), 1_700_000_000);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct WallTime {
    secs: u64,
    nanos: u32,
}

impl WallTime {
    /// `secs` seconds and `nanos` nanoseconds (clamped below 10^9) after the Unix epoch.
    pub const fn from_unix(secs: u64, nanos: u32) -> Self {
        let nanos = if nanos > 999_999_999 {
            999_999_999
        } else {
            nanos
        };
        WallTime { secs, nanos }
    }

    /// Seconds since the Unix epoch.
    pub const fn secs(&self) -> u64 {
        self.secs
    }

    /// The current system time (std only).
    ///
    /// ```
    /// assert!(sealwire::tunnel::WallTime::now().secs() > 1_600_000_000);
    /// ```
    #[cfg(feature = "std")]
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        WallTime::from_unix(d.as_secs(), d.subsec_nanos())
    }

    fn plus(self, d: Duration) -> Self {
        let total = u128::from(self.nanos) + d.as_nanos() % 1_000_000_000;
        let carry = (total / 1_000_000_000) as u64;
        WallTime {
            secs: self.secs.saturating_add(d.as_secs()).saturating_add(carry),
            nanos: (total % 1_000_000_000) as u32,
        }
    }
}

/// What the caller must do after [`Device::encapsulate`] or [`Device::decapsulate`].
/// In every case, afterwards drain [`Device::poll_transmit`] too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Send `out[..len]` as one UDP datagram to `to`.
    WriteToNetwork {
        /// Destination endpoint.
        to: SocketAddr,
        /// Bytes of `out` to send.
        len: usize,
    },
    /// Write `out[..len]`, a verified IP packet from `source`, to the TUN device.
    WriteToTunnel {
        /// Bytes of `out` to write.
        len: usize,
        /// The packet's inner source address (already checked against AllowedIPs).
        source: IpAddr,
    },
    /// Nothing to write (a keepalive, a handshake step with no reply, a staged packet).
    Done,
}

/// Something the embedder may want to log or act on; drained with [`Device::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A handshake with `peer` completed and a new session exists. As responder the session
    /// becomes usable for sending once the initiator's first packet arrives.
    HandshakeCompleted {
        /// The peer.
        peer: PublicKey,
        /// Where it is now.
        endpoint: SocketAddr,
        /// Whether we initiated.
        initiator: bool,
    },
    /// An authenticated packet arrived from a new address: the peer roamed.
    EndpointChanged {
        /// The peer.
        peer: PublicKey,
        /// Its new endpoint.
        endpoint: SocketAddr,
    },
    /// No response after every retry (about REKEY_ATTEMPT_TIME): staged packets were dropped.
    HandshakeGaveUp {
        /// The peer.
        peer: PublicKey,
    },
    /// All session keys of `peer` were wiped (3 × REJECT_AFTER_TIME without a new session).
    KeysWiped {
        /// The peer.
        peer: PublicKey,
    },
}

/// A datagram the device wants sent that did not fit the call that produced it (timer
/// messages, staged packets flushed after a handshake, rekey initiations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination endpoint.
    pub to: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

pub(super) type Slot = u32;

/// Uniform random jitter in `[0, REKEY_TIMEOUT_JITTER_MAX]`.
fn jitter_from<R: rand_core::CryptoRng>(rng: &mut R) -> Duration {
    let max = REKEY_TIMEOUT_JITTER_MAX.as_nanos() as u64;
    Duration::from_nanos(rng.next_u64() % (max + 1))
}

/// A WireGuard-compatible interface: one static key, many peers.
///
/// The device is sans-IO. Feed it IP packets from the TUN ([`encapsulate`](Self::encapsulate)),
/// UDP datagrams ([`decapsulate`](Self::decapsulate)) and time
/// ([`handle_timeout`](Self::handle_timeout)); write what the returned [`Action`] says and
/// drain [`poll_transmit`](Self::poll_transmit); sleep until [`poll_timeout`](Self::poll_timeout).
///
/// ```
/// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
/// use sealwire::crypto::x25519::StaticSecret;
/// use sealwire::time::Instant;
/// use sealwire::tunnel::{Action, Device, DeviceConfig, PeerConfig, WallTime};
///
/// let (ka, kb) = (StaticSecret::from_bytes([1; 32]), StaticSecret::from_bytes([2; 32]));
/// let (pa, pb) = (ka.public_key(), kb.public_key());
/// let mut a = Device::new(DeviceConfig::new(ka), ChaCha20Rng::seed_from_u64(1));
/// let mut b = Device::new(DeviceConfig::new(kb), ChaCha20Rng::seed_from_u64(2));
/// let (addr_a, addr_b) = ("192.0.2.1:51820".parse().unwrap(), "192.0.2.2:51820".parse().unwrap());
/// let mut peer_b = PeerConfig::new(pb);
/// peer_b.endpoint = Some(addr_b);
/// peer_b.allowed_ips.push("10.0.0.2/32".parse().unwrap());
/// a.add_peer(Instant::ZERO, peer_b).unwrap();
/// let mut peer_a = PeerConfig::new(pa);
/// peer_a.allowed_ips.push("10.0.0.1/32".parse().unwrap());
/// b.add_peer(Instant::ZERO, peer_a).unwrap();
/// let now = Instant::from_secs(1);
/// a.set_wall_clock(now, WallTime::from_unix(1_700_000_000, 0));
///
/// // An IPv4 packet 10.0.0.1 -> 10.0.0.2 (header only).
/// let mut ip = [0u8; 20];
/// ip[0] = 0x45; ip[3] = 20; ip[12..16].copy_from_slice(&[10, 0, 0, 1]); ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
///
/// let (mut buf, mut out) = ([0u8; 2048], [0u8; 2048]);
/// // No session yet: the packet is staged and an initiation goes out.
/// let Action::WriteToNetwork { len, .. } = a.encapsulate(now, &ip, &mut buf).unwrap() else { panic!() };
/// let Action::WriteToNetwork { len, .. } = b.decapsulate(now, addr_a, &buf[..len], &mut out).unwrap() else { panic!() };
/// // The response completes the handshake; the staged packet is queued for sending.
/// let _ = a.decapsulate(now, addr_b, &out[..len], &mut buf).unwrap();
/// let t = a.poll_transmit().unwrap();
/// let Action::WriteToTunnel { len, source } = b.decapsulate(now, addr_a, &t.payload, &mut out).unwrap() else { panic!() };
/// assert_eq!(&out[..len], &ip);
/// assert_eq!(source, "10.0.0.1".parse::<std::net::IpAddr>().unwrap());
/// ```
pub struct Device<R> {
    pub(super) identity: Identity,
    pub(super) config: DeviceConfig,
    pub(super) rng: R,
    pub(super) peers: Vec<Option<Peer>>,
    pub(super) free_slots: Vec<Slot>,
    pub(super) by_key: BTreeMap<PublicKey, Slot>,
    pub(super) indices: BTreeMap<u32, Slot>,
    pub(super) routes: AllowedIps<Slot>,
    pub(super) deadlines: BTreeSet<(Instant, Slot)>,
    pub(super) cookie_checker: CookieChecker,
    pub(super) rate_limiter: RateLimiter,
    pub(super) source_limiter: SourceLimiter,
    pub(super) transmits: VecDeque<Transmit>,
    pub(super) events: VecDeque<Event>,
    pub(super) wall_anchor: Option<(Instant, WallTime)>,
    pub(super) stats: Stats,
}

impl<R: rand_core::CryptoRng> Device<R> {
    /// A device with no peers.
    pub fn new(config: DeviceConfig, rng: R) -> Self {
        let identity = Identity::new(config.private_key.clone_secret());
        Device {
            identity,
            rate_limiter: RateLimiter::new(config.handshake_rate_limit),
            source_limiter: SourceLimiter::new(config.max_rate_limited_sources),
            config,
            rng,
            peers: Vec::new(),
            free_slots: Vec::new(),
            by_key: BTreeMap::new(),
            indices: BTreeMap::new(),
            routes: AllowedIps::default(),
            deadlines: BTreeSet::new(),
            cookie_checker: CookieChecker::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            wall_anchor: None,
            stats: Stats::default(),
        }
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
    ///
    /// ```
    /// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// # use sealwire::crypto::x25519::{PublicKey, StaticSecret};
    /// # use sealwire::time::Instant;
    /// use sealwire::tunnel::{Device, DeviceConfig, Error, PeerConfig};
    /// let mut d = Device::new(DeviceConfig::new(StaticSecret::from_bytes([1; 32])), ChaCha20Rng::seed_from_u64(0));
    /// let key = PublicKey::from_bytes([9; 32]);
    /// let mut p = PeerConfig::new(key);
    /// p.allowed_ips.push("10.7.0.0/24".parse().unwrap());
    /// d.add_peer(Instant::ZERO, p).unwrap();
    /// assert_eq!(d.add_peer(Instant::ZERO, PeerConfig::new(key)), Err(Error::DuplicatePeer));
    /// let st = d.peer_status(Instant::ZERO, &key).unwrap();
    /// assert_eq!(st.allowed_ips[0].to_string(), "10.7.0.0/24");
    /// assert!(!st.has_session);
    /// d.remove_peer(&key).unwrap();
    /// assert_eq!(d.peer_count(), 0);
    /// ```
    pub fn add_peer(&mut self, now: Instant, cfg: PeerConfig) -> Result<(), Error> {
        if self.by_key.contains_key(&cfg.public_key) {
            return Err(Error::DuplicatePeer);
        }
        if cfg.public_key == self.identity.public {
            return Err(Error::InvalidConfig);
        }
        if self.by_key.len() >= self.config.max_peers {
            return Err(Error::TooManyPeers);
        }
        let keys = PeerKeys::new(
            &self.identity,
            cfg.public_key,
            cfg.preshared_key.as_ref().map(|k| *k.expose()),
        );
        let mut peer = Peer::new(keys, cfg.endpoint);
        peer.timers.persistent_interval = cfg
            .persistent_keepalive
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s)));
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                let s = u32::try_from(self.peers.len()).map_err(|_| Error::TooManyPeers)?;
                self.peers.push(None);
                s
            }
        };
        if let Some(p) = self.peers.get_mut(slot as usize) {
            *p = Some(peer);
        }
        self.by_key.insert(cfg.public_key, slot);
        for c in cfg.allowed_ips {
            self.routes.insert(c, slot);
        }
        // A persistent keepalive starts at once (wg set ... persistent-keepalive does too).
        if let Some(p) = self.peer_mut(slot) {
            if p.timers.persistent_interval.is_some() && p.endpoint.is_some() {
                p.timers.persistent_keepalive = Some(now);
            }
        }
        self.reschedule(slot);
        Ok(())
    }

    /// Changes a peer's endpoint, PSK, AllowedIPs (replaced) and keepalive; keeps sessions
    /// unless the PSK changed.
    pub fn update_peer(&mut self, now: Instant, cfg: PeerConfig) -> Result<(), Error> {
        let slot = *self.by_key.get(&cfg.public_key).ok_or(Error::UnknownPeer)?;
        let new_keys = PeerKeys::new(
            &self.identity,
            cfg.public_key,
            cfg.preshared_key.as_ref().map(|k| *k.expose()),
        );
        let mut freed = Vec::new();
        let Some(p) = self.peer_mut(slot) else {
            return Err(Error::UnknownPeer);
        };
        if !crate::crypto::ct_eq(&p.keys.psk, &new_keys.psk) {
            p.clear_sessions(&mut freed);
        }
        p.keys = new_keys;
        if cfg.endpoint.is_some() {
            p.endpoint = cfg.endpoint;
        }
        p.timers.persistent_interval = cfg
            .persistent_keepalive
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s)));
        if p.timers.persistent_interval.is_none() {
            p.timers.persistent_keepalive = None;
        } else if p.timers.persistent_keepalive.is_none() && p.endpoint.is_some() {
            p.timers.persistent_keepalive = Some(now);
        }
        self.free_indices(&freed);
        self.routes.remove_value(slot);
        for c in cfg.allowed_ips {
            self.routes.insert(c, slot);
        }
        self.reschedule(slot);
        Ok(())
    }

    /// Removes a peer, wiping its sessions and routes.
    pub fn remove_peer(&mut self, key: &PublicKey) -> Result<(), Error> {
        let slot = self.by_key.remove(key).ok_or(Error::UnknownPeer)?;
        let mut freed = Vec::new();
        if let Some(mut p) = self.peers.get_mut(slot as usize).and_then(Option::take) {
            p.clear_sessions(&mut freed);
            if let Some(t) = p.scheduled {
                self.deadlines.remove(&(t, slot));
            }
        }
        self.free_indices(&freed);
        self.routes.remove_value(slot);
        self.free_slots.push(slot);
        Ok(())
    }

    /// Number of peers.
    pub fn peer_count(&self) -> usize {
        self.by_key.len()
    }

    /// A snapshot of one peer.
    pub fn peer_status(&self, now: Instant, key: &PublicKey) -> Option<PeerStatus> {
        let slot = *self.by_key.get(key)?;
        let p = self.peers.get(slot as usize)?.as_ref()?;
        Some(PeerStatus {
            public_key: *key,
            endpoint: p.endpoint,
            last_handshake: p.last_handshake,
            has_session: p.current.as_ref().is_some_and(|k| k.can_send(now)),
            rx_bytes: p.rx_bytes,
            tx_bytes: p.tx_bytes,
            allowed_ips: self.routes.prefixes_of(slot).collect(),
        })
    }

    /// The public keys of all peers.
    pub fn peers(&self) -> impl Iterator<Item = &PublicKey> + '_ {
        self.by_key.keys()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The next datagram to send, if any (bounded queue).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, if any (bounded queue).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
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
    /// let mut d = Device::new(DeviceConfig::new(StaticSecret::from_bytes([1; 32])), ChaCha20Rng::seed_from_u64(0));
    /// assert_eq!(d.poll_timeout(), None);
    /// let mut p = PeerConfig::new(StaticSecret::from_bytes([2; 32]).public_key());
    /// p.endpoint = Some("192.0.2.1:51820".parse().unwrap());
    /// p.persistent_keepalive = Some(25);
    /// d.add_peer(Instant::from_secs(3), p).unwrap();
    /// // A persistent keepalive is due at once; with no session it starts a handshake.
    /// assert_eq!(d.poll_timeout(), Some(Instant::from_secs(3)));
    /// d.handle_timeout(Instant::from_secs(3));
    /// assert_eq!(d.poll_transmit().unwrap().payload.len(), 148);
    /// // Next: the handshake retry, REKEY_TIMEOUT (5 s) plus up to 333 ms of jitter later.
    /// let next = d.poll_timeout().unwrap();
    /// assert!(next >= Instant::from_secs(8) && next <= Instant::from_secs(9));
    /// ```
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Runs every timer due at `now`; resulting datagrams go to [`poll_transmit`](Self::poll_transmit).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(t, slot)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.remove(&(t, slot));
            if let Some(p) = self.peer_mut(slot) {
                p.scheduled = None;
            }
            self.fire_timers(now, slot);
            self.reschedule(slot);
        }
    }

    /// Encrypts one IP packet from the TUN for the peer whose AllowedIPs contain its
    /// destination, writing the datagram into `out` (needs the packet padded to 16 bytes but
    /// not beyond the MTU, plus 32; or 148 when a handshake must start). Allocates nothing
    /// when a session exists.
    ///
    /// Without a session the packet is staged (bounded, oldest dropped first) and sent once
    /// the handshake completes, via [`poll_transmit`](Self::poll_transmit).
    ///
    /// Returns [`Action::WriteToNetwork`], or [`Action::Done`] when the packet was staged
    /// behind a handshake already in flight. `Err(BufferTooSmall)` leaves everything as it was.
    pub fn encapsulate(
        &mut self,
        now: Instant,
        packet: &[u8],
        out: &mut [u8],
    ) -> Result<Action, Error> {
        let (slot, has_session, to) = self.route(now, packet)?;
        if has_session {
            let needed = DATA_OVERHEAD + self.padded(packet.len());
            if out.len() < needed {
                return Err(Error::BufferTooSmall { needed });
            }
            out.get_mut(DATA_HEADER_LEN..DATA_HEADER_LEN + packet.len())
                .ok_or(Error::BufferTooSmall { needed })?
                .copy_from_slice(packet);
            let len = self.seal_in_place(now, slot, packet.len(), out)?;
            return Ok(Action::WriteToNetwork { to, len });
        }
        self.stage_and_initiate(now, slot, packet, out)
    }

    /// [`encapsulate`](Self::encapsulate) without the copy: the IP packet is already in
    /// `buf[16..16 + len]` (read it from the TUN straight there), and the datagram is
    /// sealed in place around it, so `buf` needs `len` padded to 16 bytes (but not beyond
    /// the MTU) plus 32 bytes; or at least 148 whenever the peer has no session (the packet
    /// is staged and the initiation, if one is due, is written into `buf`).
    ///
    /// Same results as [`encapsulate`](Self::encapsulate): [`Action::WriteToNetwork`] with
    /// the datagram in `buf[..len]`, [`Action::Done`] when the packet was staged behind a
    /// handshake in flight, and `Err` (counted, nothing changed) for a packet that has no
    /// route. `Err(BufferTooSmall { needed })` leaves everything, `buf` included, as it was,
    /// and a buffer of `needed` bytes then succeeds (when the packet does not even fit,
    /// `needed` covers both the session and the no-session case).
    ///
    /// ```
    /// use sealwire::crypto::x25519::StaticSecret;
    /// use sealwire::time::Instant;
    /// use sealwire::tunnel::{Action, Device, DeviceConfig, PeerConfig, DATA_HEADER_LEN};
    ///
    /// # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// let peer = StaticSecret::from_bytes([2; 32]).public_key();
    /// let mut d = Device::new(DeviceConfig::new(StaticSecret::from_bytes([1; 32])), ChaCha20Rng::seed_from_u64(0));
    /// let mut p = PeerConfig::new(peer);
    /// p.endpoint = Some("192.0.2.2:51820".parse().unwrap());
    /// p.allowed_ips.push("10.0.0.2/32".parse().unwrap());
    /// d.add_peer(Instant::ZERO, p).unwrap();
    ///
    /// // A 20-byte IPv4 header to 10.0.0.2, placed where the datagram's payload goes.
    /// let mut buf = [0u8; 2048];
    /// let ip = &mut buf[DATA_HEADER_LEN..DATA_HEADER_LEN + 20];
    /// ip[0] = 0x45;
    /// ip[3] = 20;
    /// ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    /// // No session yet: the packet is staged and `buf` now holds the handshake initiation.
    /// let action = d.encapsulate_in_place(Instant::ZERO, &mut buf, 20).unwrap();
    /// assert!(matches!(action, Action::WriteToNetwork { len: 148, .. }));
    /// assert_eq!(buf[0], 1); // message type 1
    /// ```
    pub fn encapsulate_in_place(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Action, Error> {
        let end = DATA_HEADER_LEN.saturating_add(len);
        let Some(packet) = buf.get(DATA_HEADER_LEN..end) else {
            let needed = DATA_OVERHEAD
                .saturating_add(self.padded(len))
                .max(INITIATION_LEN);
            return Err(Error::BufferTooSmall { needed });
        };
        let (slot, has_session, to) = self.route(now, packet)?;
        if has_session {
            let needed = DATA_OVERHEAD + self.padded(len);
            if buf.len() < needed {
                return Err(Error::BufferTooSmall { needed });
            }
            let len = self.seal_in_place(now, slot, len, buf)?;
            return Ok(Action::WriteToNetwork { to, len });
        }
        if buf.len() < INITIATION_LEN {
            return Err(Error::BufferTooSmall {
                needed: INITIATION_LEN,
            });
        }
        // The packet moves to the staging queue before the initiation overwrites it.
        if let Some(packet) = buf.get(DATA_HEADER_LEN..end) {
            self.stage(slot, packet);
        }
        self.initiate_into(now, slot, buf)
    }

    /// The peer for an outbound `packet` (cryptokey routing), whether it has a session to
    /// send on, and its endpoint. Counts the reason of a packet that cannot go anywhere.
    #[inline]
    fn route(&mut self, now: Instant, packet: &[u8]) -> Result<(Slot, bool, SocketAddr), Error> {
        let Some((dst, _)) = wire::inner_ip(packet, false) else {
            self.stats.count(DropReason::Malformed);
            return Err(DropReason::Malformed.into());
        };
        let Some(slot) = self.routes.lookup_cached(dst) else {
            self.stats.count(DropReason::NoRoute);
            return Err(DropReason::NoRoute.into());
        };
        let Some(p) = self.peer(slot) else {
            return Err(DropReason::NoRoute.into());
        };
        let has_session = p.current.as_ref().is_some_and(|k| k.can_send(now));
        let Some(to) = p.endpoint else {
            self.stats.count(DropReason::NoEndpoint);
            return Err(DropReason::NoEndpoint.into());
        };
        Ok((slot, has_session, to))
    }

    /// The slow path of an outbound packet without a session: stage a copy, start a
    /// handshake unless one is in flight, and write its initiation into `out`.
    fn stage_and_initiate(
        &mut self,
        now: Instant,
        slot: Slot,
        packet: &[u8],
        out: &mut [u8],
    ) -> Result<Action, Error> {
        if out.len() < INITIATION_LEN {
            return Err(Error::BufferTooSmall {
                needed: INITIATION_LEN,
            });
        }
        self.stage(slot, packet);
        self.initiate_into(now, slot, out)
    }

    /// Starts a handshake with `slot` (unless one is in flight) and writes the initiation
    /// into `out`, which the caller checked holds [`INITIATION_LEN`] bytes.
    fn initiate_into(&mut self, now: Instant, slot: Slot, out: &mut [u8]) -> Result<Action, Error> {
        let action = match self.initiation(now, slot, false) {
            Some((to, msg)) => {
                out.get_mut(..INITIATION_LEN)
                    .ok_or(Error::BufferTooSmall {
                        needed: INITIATION_LEN,
                    })?
                    .copy_from_slice(&msg);
                Action::WriteToNetwork {
                    to,
                    len: INITIATION_LEN,
                }
            }
            None => Action::Done,
        };
        self.reschedule(slot);
        Ok(action)
    }

    /// Processes one UDP datagram received from `src`, writing any reply or decrypted packet
    /// into `out` (at least the datagram's length is always enough).
    ///
    /// Returns what to do with `out`. A bad datagram returns `Err(Dropped(reason))`, counts
    /// the reason, and changes no peer.
    pub fn decapsulate(
        &mut self,
        now: Instant,
        src: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Result<Action, Error> {
        let result = self.decapsulate_inner(now, src, datagram, out);
        if let Err(Error::Dropped(r)) = result {
            self.stats.count(r);
        }
        result
    }

    /// [`decapsulate`](Self::decapsulate) without the copy: the datagram is `buf[..len]`
    /// (receive it straight there) and transport data is decrypted where it lies.
    ///
    /// As with [`encapsulate_in_place`](Self::encapsulate_in_place), the inner packet lives
    /// behind the 16-byte data header: [`Action::WriteToTunnel`]`{ len, .. }` means write
    /// `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len]` to the TUN. A reply
    /// ([`Action::WriteToNetwork`]`{ len, .. }`, for a handshake message) is `buf[..len]`, as
    /// from `decapsulate`. A bad datagram is dropped with a counted reason and changes no
    /// peer; its bytes in `buf` are not to be used afterwards (an authenticated packet
    /// dropped for its inner header or source address leaves its decrypted bytes there, so
    /// treat `buf` as holding plaintext until it is reused). `len` beyond `buf` is
    /// `BufferTooSmall`, with nothing changed.
    ///
    /// ```
    /// use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
    /// use sealwire::crypto::x25519::StaticSecret;
    /// use sealwire::time::Instant;
    /// use sealwire::tunnel::{Action, Device, DeviceConfig, PeerConfig, WallTime, DATA_HEADER_LEN};
    ///
    /// let (ka, kb) = (StaticSecret::from_bytes([1; 32]), StaticSecret::from_bytes([2; 32]));
    /// let (pa, pb) = (ka.public_key(), kb.public_key());
    /// let mut a = Device::new(DeviceConfig::new(ka), ChaCha20Rng::seed_from_u64(1));
    /// let mut b = Device::new(DeviceConfig::new(kb), ChaCha20Rng::seed_from_u64(2));
    /// let (addr_a, addr_b) = ("192.0.2.1:51820".parse().unwrap(), "192.0.2.2:51820".parse().unwrap());
    /// let mut peer_b = PeerConfig::new(pb);
    /// peer_b.endpoint = Some(addr_b);
    /// peer_b.allowed_ips.push("10.0.0.2/32".parse().unwrap());
    /// a.add_peer(Instant::ZERO, peer_b).unwrap();
    /// let mut peer_a = PeerConfig::new(pa);
    /// peer_a.allowed_ips.push("10.0.0.1/32".parse().unwrap());
    /// b.add_peer(Instant::ZERO, peer_a).unwrap();
    /// let now = Instant::from_secs(1);
    /// a.set_wall_clock(now, WallTime::from_unix(1_700_000_000, 0));
    ///
    /// // An IPv4 packet 10.0.0.1 -> 10.0.0.2 (header only).
    /// let mut ip = [0u8; 20];
    /// ip[0] = 0x45; ip[3] = 20; ip[12..16].copy_from_slice(&[10, 0, 0, 1]); ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    ///
    /// // One buffer per direction, as a UDP receive loop would have.
    /// let (mut buf_a, mut buf_b) = ([0u8; 2048], [0u8; 2048]);
    /// let Action::WriteToNetwork { len, .. } = a.encapsulate(now, &ip, &mut buf_a).unwrap() else { panic!() };
    /// buf_b[..len].copy_from_slice(&buf_a[..len]); // "sent" over UDP: the initiation
    /// let Action::WriteToNetwork { len, .. } = b.decapsulate_in_place(now, addr_a, &mut buf_b, len).unwrap() else { panic!() };
    /// buf_a[..len].copy_from_slice(&buf_b[..len]); // the response
    /// assert_eq!(a.decapsulate_in_place(now, addr_b, &mut buf_a, len).unwrap(), Action::Done);
    /// let t = a.poll_transmit().unwrap(); // the staged packet
    /// buf_b[..t.payload.len()].copy_from_slice(&t.payload);
    /// let Action::WriteToTunnel { len, .. } = b.decapsulate_in_place(now, addr_a, &mut buf_b, t.payload.len()).unwrap() else { panic!() };
    /// assert_eq!(&buf_b[DATA_HEADER_LEN..DATA_HEADER_LEN + len], &ip);
    /// ```
    pub fn decapsulate_in_place(
        &mut self,
        now: Instant,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Action, Error> {
        let result = self.decapsulate_in_place_inner(now, src, buf, len);
        if let Err(Error::Dropped(r)) = result {
            self.stats.count(r);
        }
        result
    }

    /// Encrypts `payload` on the current session into `out`; returns the datagram length.
    /// The caller checked that a session exists.
    pub(super) fn seal_data(
        &mut self,
        now: Instant,
        slot: Slot,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let end = DATA_HEADER_LEN + payload.len();
        out.get_mut(DATA_HEADER_LEN..end)
            .ok_or(Error::BufferTooSmall {
                needed: DATA_OVERHEAD + self.padded(payload.len()),
            })?
            .copy_from_slice(payload);
        self.seal_in_place(now, slot, payload.len(), out)
    }

    /// Encrypts the `len`-byte payload already in `out[16..16 + len]` on the current
    /// session, padding and sealing in place; returns the datagram length. The caller
    /// checked that a session exists.
    pub(super) fn seal_in_place(
        &mut self,
        now: Instant,
        slot: Slot,
        len: usize,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let padded = self.padded(len);
        let needed = DATA_OVERHEAD + padded;
        // Split borrows: the peer, the RNG and the deadline set are used together below, so
        // the peer is looked up once per packet.
        let Device {
            peers,
            rng,
            deadlines,
            ..
        } = self;
        let p = peers
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .ok_or(Error::UnknownPeer)?;
        let kp = p
            .current
            .as_deref_mut()
            .ok_or(Error::Dropped(DropReason::SessionExpired))?;
        let buf = out
            .get_mut(..needed)
            .ok_or(Error::BufferTooSmall { needed })?;
        // Zero the padding (at most 15 bytes) with one fixed 16-byte store rather than a
        // variable-length fill: the bytes past the padding are the tag's place, written
        // after sealing, and `padded >= len` keeps the store inside `buf`.
        let pad_at = DATA_HEADER_LEN + len;
        if let Some(pad) = buf.get_mut(pad_at..pad_at + 16) {
            pad.copy_from_slice(&[0u8; 16]);
        }
        kp.seal_into(buf).ok_or(Error::BufferTooSmall { needed })?;
        // WG §6.2: the initiator rekeys after REKEY_AFTER_TIME; either side after
        // REKEY_AFTER_MESSAGES.
        let rekey = kp.send_counter > REKEY_AFTER_MESSAGES
            || (kp.initiator && kp.age_ns(now) >= REKEY_AFTER_TIME_NS);
        // The deadline entry stays a valid lower bound when timers only move later or
        // disarm (the usual case here: the persistent keepalive moves on, the keepalive is
        // cancelled); only a timer armed or moved earlier needs the entry looked at.
        let keepalive_before = p.timers.persistent_keepalive;
        p.timers.any_authenticated_packet_traversal(now);
        p.timers.any_authenticated_packet_sent();
        let mut armed = p.scheduled.is_none()
            || match (keepalive_before, p.timers.persistent_keepalive) {
                (Some(before), Some(after)) => after < before,
                (None, after) => after.is_some(),
                (Some(_), None) => false,
            };
        if len != 0 {
            // Draw jitter only when the timer is actually armed: no RNG call per packet.
            if p.timers.new_handshake.is_none() {
                p.timers.data_sent(now, jitter_from(rng));
                armed = true;
            }
            p.tx_bytes = p.tx_bytes.saturating_add(len as u64);
        }
        if rekey {
            self.queue_initiation(now, slot, false);
            self.reschedule(slot);
        } else if armed {
            Self::reschedule_peer(deadlines, slot, p);
        }
        Ok(needed)
    }

    pub(super) fn stage(&mut self, slot: Slot, packet: &[u8]) {
        let max = self.config.max_staged_packets;
        let mut dropped = false;
        if let Some(p) = self.peer_mut(slot) {
            if p.staged.len() >= max {
                p.staged.pop_front();
                dropped = true;
            }
            if max > 0 {
                p.staged.push_back(packet.to_vec());
            }
        }
        if dropped || max == 0 {
            self.stats.count(DropReason::QueueFull);
        }
    }

    /// Sends staged packets on the current session (slow path: they go to the queue).
    pub(super) fn flush_staged(&mut self, now: Instant, slot: Slot) {
        loop {
            let Some(p) = self.peer_mut(slot) else { return };
            let (Some(to), true) = (
                p.endpoint,
                p.current.as_ref().is_some_and(|k| k.can_send(now)),
            ) else {
                return;
            };
            let Some(pkt) = p.staged.pop_front() else {
                return;
            };
            let mut buf = vec![0u8; DATA_OVERHEAD + self.padded(pkt.len())];
            if let Ok(len) = self.seal_data(now, slot, &pkt, &mut buf) {
                buf.truncate(len);
                self.push_transmit(to, buf);
            }
        }
    }

    pub(super) fn push_event(&mut self, e: Event) {
        if self.config.max_queued_events == 0 {
            return;
        }
        if self.events.len() >= self.config.max_queued_events {
            self.events.pop_front();
            self.stats.count(DropReason::QueueFull);
        }
        self.events.push_back(e);
    }

    pub(super) fn push_transmit(&mut self, to: SocketAddr, payload: Vec<u8>) {
        if self.transmits.len() >= self.config.max_queued_transmits {
            self.stats.count(DropReason::QueueFull);
            return;
        }
        self.transmits.push_back(Transmit { to, payload });
    }

    pub(super) fn queue_initiation(&mut self, now: Instant, slot: Slot, retry: bool) {
        if let Some((to, msg)) = self.initiation(now, slot, retry) {
            self.push_transmit(to, msg.to_vec());
        }
    }

    /// Builds an initiation for `slot` unless one went out less than REKEY_TIMEOUT ago.
    pub(super) fn initiation(
        &mut self,
        now: Instant,
        slot: Slot,
        retry: bool,
    ) -> Option<(SocketAddr, [u8; INITIATION_LEN])> {
        let jitter = self.jitter();
        let wall = self.wall_at(now);
        let p = self.peer_mut(slot)?;
        if !retry {
            p.timers.handshake_attempts = 0;
        }
        let to = p.endpoint?;
        if p.last_initiation_sent
            .is_some_and(|t| now.saturating_duration_since(t) < REKEY_TIMEOUT)
        {
            return None;
        }
        let old = p.handshake.take().map(|h| h.local_index);
        if let Some(i) = old {
            self.indices.remove(&i);
        }
        let local_index = self.new_index(slot);
        let ephemeral = StaticSecret::random(&mut self.rng);
        let identity = &self.identity;
        let p = self.peers.get_mut(slot as usize)?.as_mut()?;
        let mut msg = [0u8; INITIATION_LEN];
        let Some(state) =
            handshake::create_initiation(identity, &p.keys, local_index, ephemeral, wall, &mut msg)
        else {
            self.indices.remove(&local_index);
            return None;
        };
        let mac1_key = p.keys.mac1_key;
        p.cookies.stamp(now, &mac1_key, &mut msg);
        p.handshake = Some(state);
        p.last_initiation_sent = Some(now);
        p.timers.any_authenticated_packet_traversal(now);
        p.timers.any_authenticated_packet_sent();
        p.timers.handshake_initiated(now, jitter);
        self.stats.initiations_sent += 1;
        Some((to, msg))
    }

    pub(super) fn fire_timers(&mut self, now: Instant, slot: Slot) {
        let due = |t: &mut Option<Instant>| {
            if t.is_some_and(|d| d <= now) {
                *t = None;
                true
            } else {
                false
            }
        };
        let Some(p) = self.peer_mut(slot) else { return };
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
                    p.timers.zero_key_material = Some(now + REJECT_AFTER_TIME * 3);
                }
                let peer = p.keys.remote;
                self.push_event(Event::HandshakeGaveUp { peer });
            } else {
                p.timers.handshake_attempts += 1;
                self.queue_initiation(now, slot, true);
            }
        }
        if keepalive {
            self.send_keepalive(now, slot);
            if let Some(p) = self.peer_mut(slot) {
                if p.timers.need_another_keepalive {
                    p.timers.need_another_keepalive = false;
                    p.timers.send_keepalive = Some(now + KEEPALIVE_TIMEOUT);
                }
            }
        }
        if new_handshake {
            self.queue_initiation(now, slot, false);
        }
        if zero {
            let mut freed = Vec::new();
            let mut wiped = None;
            if let Some(p) = self.peer_mut(slot) {
                p.clear_sessions(&mut freed);
                wiped = Some(p.keys.remote);
            }
            self.free_indices(&freed);
            if let Some(peer) = wiped {
                self.push_event(Event::KeysWiped { peer });
            }
        }
        if persistent {
            self.send_keepalive(now, slot);
        }
    }

    /// An empty data packet on the current session, or a handshake if there is none.
    pub(super) fn send_keepalive(&mut self, now: Instant, slot: Slot) {
        let Some(p) = self.peer(slot) else { return };
        let Some(to) = p.endpoint else { return };
        if p.current.as_ref().is_some_and(|k| k.can_send(now)) {
            let mut buf = vec![0u8; DATA_OVERHEAD];
            if let Ok(len) = self.seal_data(now, slot, &[], &mut buf) {
                buf.truncate(len);
                self.push_transmit(to, buf);
            }
        } else {
            self.queue_initiation(now, slot, false);
        }
    }

    pub(super) fn wall_at(&self, now: Instant) -> Tai64N {
        let w = match self.wall_anchor {
            Some((at, wall)) if now >= at => wall.plus(now - at),
            Some((_, wall)) => wall,
            None => WallTime::default().plus(now - Instant::ZERO),
        };
        // Whiten to 2^24 ns (kernel: rounddown to a power of two below 1 s / 50) so the
        // timestamp does not leak fine-grained clock state.
        Tai64N::from_unix(w.secs, w.nanos & !0x00ff_ffff)
    }

    pub(super) fn jitter(&mut self) -> Duration {
        jitter_from(&mut self.rng)
    }

    /// Payload length after padding: a multiple of 16, but not beyond the MTU (kernel
    /// behaviour), and never shorter than the packet.
    pub(super) fn padded(&self, len: usize) -> usize {
        wire::padded_len(len).min(usize::from(self.config.mtu).max(len))
    }

    /// A fresh random index not in use (random, so indices reveal nothing).
    pub(super) fn new_index(&mut self, slot: Slot) -> u32 {
        loop {
            let i = self.rng.next_u32();
            if let alloc::collections::btree_map::Entry::Vacant(e) = self.indices.entry(i) {
                e.insert(slot);
                return i;
            }
        }
    }

    pub(super) fn free_indices(&mut self, freed: &[u32]) {
        for i in freed {
            self.indices.remove(i);
        }
    }

    pub(super) fn peer(&self, slot: Slot) -> Option<&Peer> {
        self.peers.get(slot as usize)?.as_ref()
    }

    pub(super) fn peer_mut(&mut self, slot: Slot) -> Option<&mut Peer> {
        self.peers.get_mut(slot as usize)?.as_mut()
    }

    /// Keeps `slot`'s entry in the deadline set a lower bound of its next timer.
    ///
    /// Only an earlier deadline moves the entry. A later one (the common case on the data
    /// path: every packet pushes the persistent keepalive forward) leaves it alone, so the
    /// hot path does no tree operations and no allocation; the early entry just wakes
    /// [`handle_timeout`](Self::handle_timeout), which finds nothing due and re-inserts the
    /// real deadline. Every timer still fires exactly at its deadline.
    pub(super) fn reschedule(&mut self, slot: Slot) {
        let Some(p) = self.peers.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        Self::reschedule_peer(&mut self.deadlines, slot, p);
    }

    /// [`reschedule`](Self::reschedule) for a peer the caller already holds.
    #[inline]
    pub(super) fn reschedule_peer(
        deadlines: &mut BTreeSet<(Instant, Slot)>,
        slot: Slot,
        p: &mut Peer,
    ) {
        let Some(next) = p.timers.next() else {
            return;
        };
        if p.scheduled.is_some_and(|t| t <= next) {
            return;
        }
        Self::move_deadline(deadlines, slot, p, next);
    }

    /// The slow part of rescheduling (tree operations), kept out of the data path.
    #[cold]
    fn move_deadline(
        deadlines: &mut BTreeSet<(Instant, Slot)>,
        slot: Slot,
        p: &mut Peer,
        next: Instant,
    ) {
        if let Some(t) = p.scheduled {
            deadlines.remove(&(t, slot));
        }
        deadlines.insert((next, slot));
        p.scheduled = Some(next);
    }
}

impl<R> core::fmt::Debug for Device<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Device")
            .field("public_key", &self.identity.public)
            .field("peers", &self.by_key.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
