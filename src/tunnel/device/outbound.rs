//! The send path of the [`Device`]: an IP packet from the TUN is routed to a peer by its
//! destination (cryptokey routing), sealed on the peer's current session, or staged while a
//! handshake starts. Also what the device sends on its own: initiations (first, retried,
//! rekeys), keepalives, and the staged packets once a session exists.
//!
//! The sealing path allocates nothing and touches the timer schedule only when a timer moved
//! earlier (see [`Schedule`](super::Schedule)).

use super::{jitter_from, Device};
use crate::crypto::x25519::StaticSecret;
use crate::time::Instant;
use crate::tunnel::error::{DeviceError, DropReason};
use crate::tunnel::handshake;
use crate::tunnel::output::Action;
use crate::tunnel::peer_table::Slot;
use crate::tunnel::timers::{REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME_NS, REKEY_TIMEOUT};
use crate::tunnel::wire::{self, DATA_HEADER_LEN, DATA_OVERHEAD, INITIATION_LEN};
use alloc::vec;
use core::net::SocketAddr;
use zeroize::Zeroize;

impl<R: rand_core::CryptoRng> Device<R> {
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
    ) -> Result<Action, DeviceError> {
        let (slot, has_session, to) = self.route(now, packet)?;
        if has_session {
            let needed = self.datagram_len(packet.len());
            if out.len() < needed {
                return Err(DeviceError::BufferTooSmall { needed });
            }
            out.get_mut(DATA_HEADER_LEN..)
                .and_then(|o| o.get_mut(..packet.len()))
                .ok_or(DeviceError::BufferTooSmall { needed })?
                .copy_from_slice(packet);
            let len = self.seal_in_place(now, slot, packet.len(), out)?;
            return Ok(Action::WriteToNetwork { to, len });
        }
        if out.len() < INITIATION_LEN {
            return Err(DeviceError::BufferTooSmall {
                needed: INITIATION_LEN,
            });
        }
        self.stage(slot, packet);
        self.initiate_into(now, slot, out)
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
    /// let mut d = Device::new(StaticSecret::from_bytes([1; 32]), DeviceConfig::default(), ChaCha20Rng::seed_from_u64(0))?;
    /// let mut p = PeerConfig::new(peer);
    /// p.endpoint = Some("192.0.2.2:51820".parse().unwrap());
    /// p.allowed_ips.push("10.0.0.2/32".parse().unwrap());
    /// d.add_peer(Instant::ZERO, p)?;
    ///
    /// // A 20-byte IPv4 header to 10.0.0.2, placed where the datagram's payload goes.
    /// let mut buf = [0u8; 2048];
    /// let ip = &mut buf[DATA_HEADER_LEN..DATA_HEADER_LEN + 20];
    /// ip[0] = 0x45;
    /// ip[3] = 20;
    /// ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    /// // No session yet: the packet is staged and `buf` now holds the handshake initiation.
    /// let action = d.encapsulate_in_place(Instant::ZERO, &mut buf, 20)?;
    /// assert!(matches!(action, Action::WriteToNetwork { len: 148, .. }));
    /// assert_eq!(buf[0], 1); // message type 1
    /// # Ok::<(), sealwire::tunnel::DeviceError>(())
    /// ```
    pub fn encapsulate_in_place(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Action, DeviceError> {
        let end = DATA_HEADER_LEN.saturating_add(len);
        let Some(packet) = buf.get(DATA_HEADER_LEN..end) else {
            let needed = self.datagram_len(len).max(INITIATION_LEN);
            return Err(DeviceError::BufferTooSmall { needed });
        };
        let (slot, has_session, to) = self.route(now, packet)?;
        if has_session {
            let needed = self.datagram_len(len);
            if buf.len() < needed {
                return Err(DeviceError::BufferTooSmall { needed });
            }
            let len = self.seal_in_place(now, slot, len, buf)?;
            return Ok(Action::WriteToNetwork { to, len });
        }
        if buf.len() < INITIATION_LEN {
            return Err(DeviceError::BufferTooSmall {
                needed: INITIATION_LEN,
            });
        }
        // The packet moves to the staging buffer before the initiation overwrites it.
        if let Some(packet) = buf.get(DATA_HEADER_LEN..end) {
            self.stage(slot, packet);
        }
        self.initiate_into(now, slot, buf)
    }

    /// The peer for an outbound `packet` (cryptokey routing), whether it has a session to
    /// send on, and its endpoint. Counts the reason of a packet that cannot go anywhere.
    #[inline]
    fn route(
        &mut self,
        now: Instant,
        packet: &[u8],
    ) -> Result<(Slot, bool, SocketAddr), DeviceError> {
        self.route_uncounted(now, packet)
            .map_err(|(reason, count)| {
                if count {
                    self.stats.count(reason);
                }
                reason.into()
            })
    }

    /// [`route`](Self::route) without counting: the error says why and whether `route`
    /// counts it (a batch stops before such a packet and leaves it to the next call).
    #[inline]
    pub(super) fn route_uncounted(
        &mut self,
        now: Instant,
        packet: &[u8],
    ) -> Result<(Slot, bool, SocketAddr), (DropReason, bool)> {
        let Some((dst, _)) = wire::inner_ip(packet, false) else {
            return Err((DropReason::Malformed, true));
        };
        let Some(slot) = self.routes.lookup_cached(dst) else {
            return Err((DropReason::NoRoute, true));
        };
        let Some(p) = self.peers.get(slot) else {
            return Err((DropReason::NoRoute, false));
        };
        let has_session = p.can_send(now);
        let Some(to) = p.endpoint else {
            return Err((DropReason::NoEndpoint, true));
        };
        Ok((slot, has_session, to))
    }

    /// Starts a handshake with `slot` (unless one is in flight) and writes the initiation
    /// into `out`, which the caller checked holds [`INITIATION_LEN`] bytes.
    fn initiate_into(
        &mut self,
        now: Instant,
        slot: Slot,
        out: &mut [u8],
    ) -> Result<Action, DeviceError> {
        let action = match self.initiation(now, slot, false) {
            Some((to, msg)) => {
                out.get_mut(..INITIATION_LEN)
                    .ok_or(DeviceError::BufferTooSmall {
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

    /// Encrypts `payload` on the current session into `out`; returns the datagram length.
    /// The caller checked that a session exists.
    pub(super) fn seal_data(
        &mut self,
        now: Instant,
        slot: Slot,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, DeviceError> {
        out.get_mut(DATA_HEADER_LEN..)
            .and_then(|o| o.get_mut(..payload.len()))
            .ok_or(DeviceError::BufferTooSmall {
                needed: self.datagram_len(payload.len()),
            })?
            .copy_from_slice(payload);
        self.seal_in_place(now, slot, payload.len(), out)
    }

    /// Encrypts the `len`-byte payload already in `out[16..16 + len]` on the current
    /// session, padding and sealing in place; returns the datagram length. The caller
    /// checked that a session exists.
    #[inline]
    pub(super) fn seal_in_place(
        &mut self,
        now: Instant,
        slot: Slot,
        len: usize,
        out: &mut [u8],
    ) -> Result<usize, DeviceError> {
        self.send_in_place::<true>(now, slot, len, out)
    }

    /// [`seal_in_place`](Self::seal_in_place) with or without the sealing itself: with
    /// `SEAL` false everything else happens (padding, the counter taken, timers, rekey) and
    /// the datagram is left for a [`SealJob`](super::SealJob) to seal with the counter it
    /// was given, outside the device.
    #[inline]
    pub(super) fn send_in_place<const SEAL: bool>(
        &mut self,
        now: Instant,
        slot: Slot,
        len: usize,
        out: &mut [u8],
    ) -> Result<usize, DeviceError> {
        let needed = self.datagram_len(len);
        // Split borrows: the peer, the RNG and the schedule are used together below, so
        // the peer is looked up once per packet.
        let Device {
            peers,
            rng,
            schedule,
            ..
        } = self;
        let p = peers.get_mut(slot).ok_or(DeviceError::UnknownPeer)?;
        let kp = p
            .current_mut()
            .ok_or(DeviceError::Dropped(DropReason::SessionExpired))?;
        let buf = out
            .get_mut(..needed)
            .ok_or(DeviceError::BufferTooSmall { needed })?;
        // Zero the padding (at most 15 bytes) with one fixed 16-byte store rather than a
        // variable-length fill: the bytes past the padding are the tag's place, written
        // after sealing, and `padded >= len` keeps the store inside `buf`.
        if let Some(pad) = buf
            .get_mut(DATA_HEADER_LEN..)
            .and_then(|b| b.get_mut(len..))
            .and_then(<[u8]>::first_chunk_mut::<16>)
        {
            *pad = [0u8; 16];
        }
        if SEAL {
            kp.seal_into(buf)
                .ok_or(DeviceError::BufferTooSmall { needed })?;
        } else {
            kp.send_counter = kp.send_counter.saturating_add(1);
        }
        // WG §6.2: the initiator rekeys after REKEY_AFTER_TIME; either side after
        // REKEY_AFTER_MESSAGES.
        let rekey = kp.send_counter > REKEY_AFTER_MESSAGES
            || (kp.initiator && kp.age_ns(now) >= REKEY_AFTER_TIME_NS);
        // The schedule entry stays a valid lower bound when timers only move later or
        // disarm (the usual case here: the persistent keepalive moves on, the keepalive is
        // cancelled); only a timer armed or moved earlier needs the entry looked at.
        let keepalive_before = p.timers.persistent_keepalive;
        p.timers.any_authenticated_packet_traversal(now);
        p.timers.any_authenticated_packet_sent();
        let mut armed = !schedule.is_scheduled(slot)
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
            schedule.update(slot, p.timers.next());
        }
        Ok(needed)
    }

    /// Holds `packet` for `slot` until its handshake completes (the peer's staging buffer).
    fn stage(&mut self, slot: Slot, packet: &[u8]) {
        let max = self.config.max_staged_packets;
        if self
            .peers
            .get_mut(slot)
            .is_some_and(|p| p.stage(packet, max))
        {
            self.stats.count(DropReason::QueueFull);
        }
    }

    /// Sends staged packets on the current session (slow path: they go to the queue).
    pub(super) fn flush_staged(&mut self, now: Instant, slot: Slot) {
        loop {
            let Some(p) = self.peers.get_mut(slot) else {
                return;
            };
            let (Some(to), true) = (p.endpoint, p.can_send(now)) else {
                return;
            };
            let Some(pkt) = p.staged.pop_front() else {
                return;
            };
            let mut buf = vec![0u8; self.datagram_len(pkt.len())];
            match self.seal_data(now, slot, &pkt, &mut buf) {
                Ok(len) => {
                    buf.truncate(len);
                    self.push_transmit(to, buf);
                }
                // Not sealed: the buffer may hold the packet in the clear.
                Err(_) => buf.zeroize(),
            }
        }
    }

    /// An empty data packet on the current session, or a handshake if there is none.
    pub(super) fn send_keepalive(&mut self, now: Instant, slot: Slot) {
        let Some(p) = self.peers.get(slot) else {
            return;
        };
        let Some(to) = p.endpoint else {
            return;
        };
        if p.can_send(now) {
            let mut buf = vec![0u8; DATA_OVERHEAD];
            if let Ok(len) = self.seal_data(now, slot, &[], &mut buf) {
                buf.truncate(len);
                self.push_transmit(to, buf);
            }
        } else {
            self.queue_initiation(now, slot, false);
        }
    }

    /// Queues an initiation for `slot` (see [`initiation`](Self::initiation)).
    pub(super) fn queue_initiation(&mut self, now: Instant, slot: Slot, retry: bool) {
        if let Some((to, msg)) = self.initiation(now, slot, retry) {
            self.push_transmit(to, msg.to_vec());
        }
    }

    /// Builds an initiation for `slot` unless one went out less than REKEY_TIMEOUT ago; a
    /// new attempt (`retry` false) restarts the retry count.
    fn initiation(
        &mut self,
        now: Instant,
        slot: Slot,
        retry: bool,
    ) -> Option<(SocketAddr, [u8; INITIATION_LEN])> {
        let jitter = self.jitter();
        let wall = self.wall_at(now);
        let p = self.peers.get_mut(slot)?;
        if !retry {
            p.timers.handshake_attempts = 0;
        }
        let to = p.endpoint?;
        if p.last_initiation_sent
            .is_some_and(|t| now.saturating_duration_since(t) < REKEY_TIMEOUT)
        {
            return None;
        }
        if let Some(h) = p.handshake.take() {
            self.peers.release(&[h.local_index]);
        }
        let local_index = self.peers.allocate_index(slot, &mut self.rng);
        let ephemeral = StaticSecret::random(&mut self.rng);
        let identity = &self.identity;
        let p = self.peers.get_mut(slot)?;
        let mut msg = [0u8; INITIATION_LEN];
        let Some(state) =
            handshake::create_initiation(identity, &p.keys, local_index, ephemeral, wall, &mut msg)
        else {
            self.peers.release(&[local_index]);
            return None;
        };
        let mac1_key = p.keys.mac1_key;
        p.cookies.stamp(now, &mac1_key, &mut msg);
        p.handshake = Some(state);
        p.last_initiation_sent = Some(now);
        p.timers.any_authenticated_packet_traversal(now);
        p.timers.any_authenticated_packet_sent();
        p.timers.handshake_initiated(now, jitter);
        self.stats.initiations_sent = self.stats.initiations_sent.saturating_add(1);
        Some((to, msg))
    }

    /// Payload length after padding: a multiple of 16, but not beyond the MTU (kernel
    /// behaviour), and never shorter than the packet.
    #[inline]
    fn padded(&self, len: usize) -> usize {
        wire::padded_len(len).min(usize::from(self.config.mtu).max(len))
    }

    /// The length of the datagram that carries a `len`-byte packet: header, padded payload,
    /// tag (saturating: a length near `usize::MAX` asks for an impossible buffer, and the
    /// caller reports it as too small).
    #[inline]
    pub(super) fn datagram_len(&self, len: usize) -> usize {
        DATA_OVERHEAD.saturating_add(self.padded(len))
    }
}
