//! The receive path of the [`Device`]: mac checks and cookies, initiations, responses,
//! transport data. Every check runs before any peer state changes, and a dropped datagram
//! is counted under its [`DropReason`].

use super::Device;
use crate::crypto::x25519::StaticSecret;
use crate::time::Instant;
use crate::tunnel::cookie::mac1_valid;
use crate::tunnel::error::{DeviceError, DropReason};
use crate::tunnel::handshake;
use crate::tunnel::keypair::Keypair;
use crate::tunnel::output::{Action, DeviceEvent};
use crate::tunnel::peer_table::Slot;
use crate::tunnel::timers::{INITIATION_MIN_GAP, REKEY_ON_RECEIVE_AFTER_NS};
use crate::tunnel::wire::{
    self, Message, COOKIE_REPLY_LEN, DATA_HEADER_LEN, DATA_OVERHEAD, INITIATION_LEN, RESPONSE_LEN,
};
use alloc::vec::Vec;
use core::net::SocketAddr;

/// Where a transport-data packet's ciphertext is and where its plaintext goes.
enum Sealed<'a> {
    /// `sealed` (ciphertext ‖ tag) is decrypted into `out`.
    Copy { sealed: &'a [u8], out: &'a mut [u8] },
    /// Ciphertext ‖ tag, decrypted where it lies.
    InPlace(&'a mut [u8]),
}

impl<R: rand_core::CryptoRng> Device<R> {
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
    ) -> Result<Action, DeviceError> {
        let result = match wire::parse(datagram) {
            Ok(msg) => self.receive(now, src, msg, out),
            Err(reason) => Err(reason.into()),
        };
        self.count_drop(result)
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
    /// use sealwire::time::{Instant, WallTime};
    /// use sealwire::tunnel::{Action, Device, DeviceConfig, PeerConfig, DATA_HEADER_LEN};
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
    /// // One buffer per direction, as a UDP receive loop would have.
    /// let (mut buf_a, mut buf_b) = ([0u8; 2048], [0u8; 2048]);
    /// let Action::WriteToNetwork { len, .. } = a.encapsulate(now, &ip, &mut buf_a)? else { panic!() };
    /// buf_b[..len].copy_from_slice(&buf_a[..len]); // "sent" over UDP: the initiation
    /// let Action::WriteToNetwork { len, .. } = b.decapsulate_in_place(now, addr_a, &mut buf_b, len)? else { panic!() };
    /// buf_a[..len].copy_from_slice(&buf_b[..len]); // the response
    /// assert_eq!(a.decapsulate_in_place(now, addr_b, &mut buf_a, len)?, Action::Done);
    /// let t = a.poll_transmit().unwrap(); // the staged packet
    /// buf_b[..t.payload.len()].copy_from_slice(&t.payload);
    /// let Action::WriteToTunnel { len, .. } = b.decapsulate_in_place(now, addr_a, &mut buf_b, t.payload.len())? else { panic!() };
    /// assert_eq!(&buf_b[DATA_HEADER_LEN..DATA_HEADER_LEN + len], &ip);
    /// # Ok::<(), sealwire::tunnel::DeviceError>(())
    /// ```
    pub fn decapsulate_in_place(
        &mut self,
        now: Instant,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Action, DeviceError> {
        let result = self.receive_in_place(now, src, buf, len);
        self.count_drop(result)
    }

    /// Counts the reason of a dropped datagram; passes the result on.
    pub(super) fn count_drop(
        &mut self,
        result: Result<Action, DeviceError>,
    ) -> Result<Action, DeviceError> {
        if let Err(DeviceError::Dropped(r)) = result {
            self.stats.count(r);
        }
        result
    }

    /// One parsed datagram, its reply or plaintext written into `out`.
    fn receive(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: Message<'_>,
        out: &mut [u8],
    ) -> Result<Action, DeviceError> {
        match msg {
            Message::Data {
                receiver,
                counter,
                sealed,
            } => {
                let needed = sealed.len().saturating_sub(16);
                if out.len() < needed {
                    return Err(DeviceError::BufferTooSmall { needed });
                }
                self.receive_data(now, src, receiver, counter, Sealed::Copy { sealed, out })
            }
            Message::Initiation(msg) => {
                if out.len() < RESPONSE_LEN {
                    return Err(DeviceError::BufferTooSmall {
                        needed: RESPONSE_LEN,
                    });
                }
                if let Some(a) = self.check_macs(now, src, msg, out)? {
                    return Ok(a);
                }
                self.receive_initiation(now, src, msg, out)
            }
            Message::Response(msg) => {
                let needed = DATA_OVERHEAD.max(COOKIE_REPLY_LEN);
                if out.len() < needed {
                    return Err(DeviceError::BufferTooSmall { needed });
                }
                if let Some(a) = self.check_macs(now, src, msg, out)? {
                    return Ok(a);
                }
                self.receive_response(now, src, msg, out)
            }
            Message::CookieReply(msg) => {
                let receiver = wire::u32_at(msg, wire::cookie::RECEIVER);
                let (_, p) = self
                    .peers
                    .by_index_mut(receiver)
                    .ok_or(DropReason::UnknownIndex)?;
                let key = p.keys.cookie_key;
                if !p.cookies.consume_reply(now, &key, msg) {
                    return Err(DropReason::Unexpected.into());
                }
                self.stats.cookie_replies_received =
                    self.stats.cookie_replies_received.saturating_add(1);
                Ok(Action::Done)
            }
        }
    }

    /// [`decapsulate_in_place`](Self::decapsulate_in_place) before the drop count: transport
    /// data is opened where it lies; a handshake message (at most 148 bytes) is copied out
    /// first and takes the ordinary path, its reply written into `buf`.
    fn receive_in_place(
        &mut self,
        now: Instant,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Action, DeviceError> {
        let datagram = buf
            .get(..len)
            .ok_or(DeviceError::BufferTooSmall { needed: len })?;
        let (receiver, counter) = match wire::parse(datagram)? {
            Message::Data {
                receiver, counter, ..
            } => (receiver, counter),
            _ => {
                let mut copy = [0u8; INITIATION_LEN];
                let copy = copy.get_mut(..len).ok_or(DropReason::Malformed)?;
                copy.copy_from_slice(datagram);
                let msg = wire::parse(copy)?;
                return self.receive(now, src, msg, buf);
            }
        };
        let sealed = buf
            .get_mut(DATA_HEADER_LEN..len)
            .ok_or(DropReason::Malformed)?;
        self.receive_data(now, src, receiver, counter, Sealed::InPlace(sealed))
    }

    /// mac1 always; under load mac2 or a cookie reply (written to `out`).
    fn check_macs(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &[u8],
        out: &mut [u8],
    ) -> Result<Option<Action>, DeviceError> {
        if !mac1_valid(&self.identity.mac1_key, msg) {
            return Err(DropReason::InvalidMac1.into());
        }
        let under_load = self.rate_limiter.record(now);
        if under_load
            && !self
                .cookie_checker
                .mac2_valid(now, &mut self.rng, &src, msg)
        {
            let mut reply = [0u8; COOKIE_REPLY_LEN];
            self.cookie_checker.reply(
                now,
                &mut self.rng,
                &self.identity.cookie_key,
                &src,
                msg,
                &mut reply,
            );
            let dst = out
                .get_mut(..COOKIE_REPLY_LEN)
                .ok_or(DeviceError::BufferTooSmall {
                    needed: COOKIE_REPLY_LEN,
                })?;
            dst.copy_from_slice(&reply);
            self.stats.count(DropReason::CookieRequired);
            self.stats.cookie_replies_sent = self.stats.cookie_replies_sent.saturating_add(1);
            return Ok(Some(Action::WriteToNetwork {
                to: src,
                len: COOKIE_REPLY_LEN,
            }));
        }
        // Under load a proven address still gets only its fair share (kernel ratelimiter.c).
        if under_load && !self.source_limiter.allow(now, src.ip()) {
            return Err(DropReason::RateLimited.into());
        }
        Ok(None)
    }

    fn receive_initiation(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &[u8; INITIATION_LEN],
        out: &mut [u8],
    ) -> Result<Action, DeviceError> {
        let half = handshake::open_initiation_static(&self.identity, msg)?;
        // The peer is the one whose key decrypted, never the one at the source address.
        let slot = self
            .peers
            .slot(&half.remote_static)
            .ok_or(DropReason::UnknownPeer)?;
        let p = self.peers.get(slot).ok_or(DropReason::UnknownPeer)?;
        let opened = handshake::open_initiation_timestamp(half, &p.keys, msg)?;
        // WG §5.1: a replayed initiation must not reset the responder's session.
        if p.latest_timestamp.is_some_and(|t| opened.timestamp <= t) {
            return Err(DropReason::ReplayedTimestamp.into());
        }
        if p.last_initiation_consumed
            .is_some_and(|t| now.saturating_duration_since(t) < INITIATION_MIN_GAP)
        {
            return Err(DropReason::InitiationFlood.into());
        }
        let local_index = self.peers.allocate_index(slot, &mut self.rng);
        let ephemeral = StaticSecret::random(&mut self.rng);
        let mut resp = [0u8; RESPONSE_LEN];
        let Some(p) = self.peers.get_mut(slot) else {
            return Err(DropReason::UnknownPeer.into());
        };
        let Some(keys) =
            handshake::create_response(&opened, &p.keys, local_index, ephemeral, &mut resp)
        else {
            self.peers.release(&[local_index]);
            return Err(DropReason::HandshakeDecrypt.into());
        };
        let mac1_key = p.keys.mac1_key;
        p.cookies.stamp(now, &mac1_key, &mut resp);
        p.latest_timestamp = Some(opened.timestamp);
        p.last_initiation_consumed = Some(now);
        let keypair = Keypair::new(
            keys.send,
            keys.recv,
            local_index,
            opened.remote_index,
            now,
            false,
        );
        self.complete_handshake(now, slot, src, keypair);
        self.reschedule(slot);
        let dst = out
            .get_mut(..RESPONSE_LEN)
            .ok_or(DeviceError::BufferTooSmall {
                needed: RESPONSE_LEN,
            })?;
        dst.copy_from_slice(&resp);
        Ok(Action::WriteToNetwork {
            to: src,
            len: RESPONSE_LEN,
        })
    }

    fn receive_response(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &[u8; RESPONSE_LEN],
        out: &mut [u8],
    ) -> Result<Action, DeviceError> {
        let receiver = wire::u32_at(msg, wire::resp::RECEIVER);
        let (slot, p) = self
            .peers
            .by_index_mut(receiver)
            .ok_or(DropReason::UnknownIndex)?;
        let state = p
            .handshake
            .as_ref()
            .filter(|h| h.local_index == receiver)
            .ok_or(DropReason::Unexpected)?;
        let keys = handshake::consume_response(&self.identity, &p.keys, state, msg)?;
        let remote_index = wire::u32_at(msg, wire::resp::SENDER);
        // The handshake's index now names the keypair: it stays in the table.
        p.handshake = None;
        let keypair = Keypair::new(keys.send, keys.recv, receiver, remote_index, now, true);
        self.complete_handshake(now, slot, src, keypair);
        // Confirm the session to the responder: staged packets, or a keepalive.
        let action = if self.peers.get(slot).is_some_and(|p| p.staged.is_empty()) {
            let len = self.seal_data(now, slot, &[], out)?;
            Action::WriteToNetwork { to: src, len }
        } else {
            self.flush_staged(now, slot);
            Action::Done
        };
        self.reschedule(slot);
        Ok(action)
    }

    /// What a completed handshake does in either role, once the message verified: the new
    /// keypair is installed, the endpoint follows the authenticated sender, the timers
    /// restart (the key-wipe deadline, no new handshake needed, the persistent keepalive
    /// from now), and the completion is counted and reported.
    ///
    /// The roles differ in one timer (kernel noise.c / timers.c): the responder is about to
    /// send its response, an authenticated packet (`any_authenticated_packet_sent`); the
    /// initiator's handshake is over, so its retransmissions stop (`handshake_complete`).
    fn complete_handshake(&mut self, now: Instant, slot: Slot, src: SocketAddr, keypair: Keypair) {
        let initiator = keypair.initiator;
        self.peers.install_keypair(slot, keypair);
        let Some(p) = self.peers.get_mut(slot) else {
            return;
        };
        p.endpoint = Some(src);
        p.last_handshake = Some(now);
        p.timers.session_derived(now);
        p.timers.any_authenticated_packet_received();
        p.timers.any_authenticated_packet_traversal(now);
        if initiator {
            p.timers.handshake_complete();
        } else {
            p.timers.any_authenticated_packet_sent();
        }
        let peer = p.keys.remote;
        self.stats.handshakes_completed = self.stats.handshakes_completed.saturating_add(1);
        self.events.push(DeviceEvent::HandshakeCompleted {
            peer,
            endpoint: src,
            initiator,
        });
    }

    fn receive_data(
        &mut self,
        now: Instant,
        src: SocketAddr,
        receiver: u32,
        counter: u64,
        sealed: Sealed<'_>,
    ) -> Result<Action, DeviceError> {
        let (slot, p) = self
            .peers
            .by_index_mut(receiver)
            .ok_or(DropReason::UnknownIndex)?;
        let (_, kp) = p.keypair_mut(receiver).ok_or(DropReason::UnknownIndex)?;
        let (len, plain): (usize, &[u8]) = match sealed {
            Sealed::Copy { sealed, out } => {
                let len = kp.open_into(now, counter, sealed, out)?;
                (len, out)
            }
            Sealed::InPlace(buf) => {
                let len = kp.open_in_place(now, counter, buf)?;
                (len, buf)
            }
        };
        let plain = plain.get(..len).ok_or(DropReason::Malformed)?;
        self.accept_data(now, src, slot, receiver, counter, plain)
    }

    /// A transport-data packet that decrypted to `plain` on the keypair `receiver` of `slot`:
    /// the inner packet's checks, then the replay mark and everything an authenticated
    /// packet does (session confirmed, roaming, timers, statistics).
    pub(super) fn accept_data(
        &mut self,
        now: Instant,
        src: SocketAddr,
        slot: Slot,
        receiver: u32,
        counter: u64,
        plain: &[u8],
    ) -> Result<Action, DeviceError> {
        // Split borrows: the keypair found here stays in hand for the source check and the
        // replay mark.
        let Device {
            peers,
            routes,
            schedule,
            ..
        } = self;
        let p = peers.get_mut(slot).ok_or(DropReason::UnknownIndex)?;
        let (which, kp) = p.keypair_mut(receiver).ok_or(DropReason::UnknownIndex)?;
        let len = plain.len();
        // Authenticated from here on. Check the inner packet before touching any peer state
        // (not even the replay window): a rejected packet changes nothing.
        let inner = if len == 0 {
            None
        } else {
            let Some((source, ip_len)) = wire::inner_ip(plain, true) else {
                return Err(DropReason::Malformed.into());
            };
            if ip_len > len || ip_len == 0 {
                return Err(DropReason::Malformed.into());
            }
            if routes.lookup(source) != Some(slot) {
                return Err(DropReason::SourceNotAllowed.into());
            }
            Some((source, ip_len))
        };
        if !kp.mark_received(counter) {
            return Err(DropReason::ReplayedCounter.into());
        }
        let mut freed = Vec::new();
        let mut confirmed = false;
        if which == 2 {
            p.promote_next(&mut freed);
            p.timers.handshake_complete();
            confirmed = true;
        }
        // Roaming: only an authenticated packet may move the endpoint.
        let roamed = p.endpoint != Some(src);
        p.endpoint = Some(src);
        let peer = p.keys.remote;
        p.timers.any_authenticated_packet_received();
        p.timers.any_authenticated_packet_traversal(now);
        if inner.is_some() {
            p.timers.data_received(now);
            p.rx_bytes = p.rx_bytes.saturating_add(len as u64);
        }
        // WG §6.2: as initiator, rekey shortly before the session expires on receive.
        let lastminute = p
            .current()
            .is_some_and(|k| k.initiator && k.age_ns(now) >= REKEY_ON_RECEIVE_AFTER_NS)
            && !p.timers.sent_lastminute_handshake;
        if lastminute {
            p.timers.sent_lastminute_handshake = true;
        }
        if freed.is_empty() && !roamed && !confirmed && !lastminute {
            // The common case: nothing else to do but keep the schedule entry a lower bound.
            schedule.update(slot, p.timers.next());
        } else {
            self.peers.release(&freed);
            if roamed {
                self.events.push(DeviceEvent::EndpointChanged {
                    peer,
                    endpoint: src,
                });
            }
            if confirmed {
                self.flush_staged(now, slot);
            }
            if lastminute {
                self.queue_initiation(now, slot, false);
            }
            self.reschedule(slot);
        }
        Ok(match inner {
            Some((source, ip_len)) => Action::WriteToTunnel {
                len: ip_len,
                source,
            },
            None => Action::Done,
        })
    }
}
