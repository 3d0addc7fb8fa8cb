//! The receive path of the [`Device`]: mac checks and cookies, initiations, responses,
//! transport data. Every check runs before any peer state changes.

use super::cookie::mac1_valid;
use super::device::{Action, Device, Event};
use super::error::{DropReason, Error};
use super::handshake;
use super::session::Keypair;
use super::timers::{INITIATION_MIN_GAP, KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME, REKEY_TIMEOUT};
use super::wire::{
    self, Message, COOKIE_REPLY_LEN, DATA_HEADER_LEN, DATA_OVERHEAD, INITIATION_LEN, RESPONSE_LEN,
};
use crate::crypto::x25519::StaticSecret;
use crate::time::Instant;
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
    pub(super) fn decapsulate_inner(
        &mut self,
        now: Instant,
        src: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Result<Action, Error> {
        match wire::parse(datagram)? {
            Message::Data {
                receiver,
                counter,
                sealed,
            } => {
                let needed = sealed.len().saturating_sub(16);
                if out.len() < needed {
                    return Err(Error::BufferTooSmall { needed });
                }
                self.receive_data(now, src, receiver, counter, Sealed::Copy { sealed, out })
            }
            Message::Initiation(msg) => {
                if out.len() < RESPONSE_LEN {
                    return Err(Error::BufferTooSmall {
                        needed: RESPONSE_LEN,
                    });
                }
                if let Some(a) = self.check_macs(now, src, msg, out)? {
                    return Ok(a);
                }
                self.receive_initiation(now, src, msg, out)
            }
            Message::Response(msg) => {
                if out.len() < DATA_OVERHEAD.max(COOKIE_REPLY_LEN) {
                    return Err(Error::BufferTooSmall {
                        needed: DATA_OVERHEAD.max(COOKIE_REPLY_LEN),
                    });
                }
                if let Some(a) = self.check_macs(now, src, msg, out)? {
                    return Ok(a);
                }
                self.receive_response(now, src, msg, out)
            }
            Message::CookieReply(msg) => {
                let receiver = wire::u32_at(msg, wire::cookie::RECEIVER);
                let slot = *self
                    .indices
                    .get(&receiver)
                    .ok_or(DropReason::UnknownIndex)?;
                let p = self.peer_mut(slot).ok_or(DropReason::UnknownIndex)?;
                let key = p.keys.cookie_key;
                if !p.cookies.consume_reply(now, &key, msg) {
                    return Err(DropReason::Unexpected.into());
                }
                self.stats.cookie_replies_received += 1;
                Ok(Action::Done)
            }
        }
    }

    /// [`Device::decapsulate_in_place`] without the drop count: transport data is opened
    /// where it lies; a handshake message (at most 148 bytes) is copied out first and takes
    /// the ordinary path, its reply written into `buf`.
    pub(super) fn decapsulate_in_place_inner(
        &mut self,
        now: Instant,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Action, Error> {
        let datagram = buf
            .get(..len)
            .ok_or(Error::BufferTooSmall { needed: len })?;
        let (receiver, counter) = match wire::parse(datagram)? {
            Message::Data {
                receiver, counter, ..
            } => (receiver, counter),
            _ => {
                let mut copy = [0u8; INITIATION_LEN];
                let copy = copy.get_mut(..len).ok_or(DropReason::Malformed)?;
                copy.copy_from_slice(datagram);
                return self.decapsulate_inner(now, src, copy, buf);
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
    ) -> Result<Option<Action>, Error> {
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
                .ok_or(Error::BufferTooSmall {
                    needed: COOKIE_REPLY_LEN,
                })?;
            dst.copy_from_slice(&reply);
            self.stats.count(DropReason::CookieRequired);
            self.stats.cookie_replies_sent += 1;
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
    ) -> Result<Action, Error> {
        let half = handshake::open_initiation_static(&self.identity, msg)?;
        // The peer is the one whose key decrypted, never the one at the source address.
        let slot = *self
            .by_key
            .get(&half.remote_static)
            .ok_or(DropReason::UnknownPeer)?;
        let p = self.peer(slot).ok_or(DropReason::UnknownPeer)?;
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
        let local_index = self.new_index(slot);
        let ephemeral = StaticSecret::random(&mut self.rng);
        let mut resp = [0u8; RESPONSE_LEN];
        let Some(p) = self.peer_mut(slot) else {
            return Err(DropReason::UnknownPeer.into());
        };
        let Some(keys) =
            handshake::create_response(&opened, &p.keys, local_index, ephemeral, &mut resp)
        else {
            self.indices.remove(&local_index);
            return Err(DropReason::HandshakeDecrypt.into());
        };
        p.cookies.stamp(now, &p.keys.mac1_key.clone(), &mut resp);
        p.latest_timestamp = Some(opened.timestamp);
        p.last_initiation_consumed = Some(now);
        p.endpoint = Some(src);
        let mut freed = Vec::new();
        p.add_keypair(
            Keypair::new(
                keys.send,
                keys.recv,
                local_index,
                opened.remote_index,
                now,
                false,
            ),
            &mut freed,
        );
        p.last_handshake = Some(now);
        p.timers.any_authenticated_packet_received();
        p.timers.any_authenticated_packet_traversal(now);
        p.timers.any_authenticated_packet_sent();
        p.timers.session_derived(now);
        let peer = p.keys.remote;
        self.stats.handshakes_completed += 1;
        self.free_indices(&freed);
        self.push_event(Event::HandshakeCompleted {
            peer,
            endpoint: src,
            initiator: false,
        });
        self.reschedule(slot);
        let dst = out.get_mut(..RESPONSE_LEN).ok_or(Error::BufferTooSmall {
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
    ) -> Result<Action, Error> {
        let receiver = wire::u32_at(msg, wire::resp::RECEIVER);
        let slot = *self
            .indices
            .get(&receiver)
            .ok_or(DropReason::UnknownIndex)?;
        let p = self.peers.get_mut(slot as usize).and_then(Option::as_mut);
        let p = p.ok_or(DropReason::UnknownIndex)?;
        let state = p
            .handshake
            .as_ref()
            .filter(|h| h.local_index == receiver)
            .ok_or(DropReason::Unexpected)?;
        let keys = handshake::consume_response(&self.identity, &p.keys, state, msg)?;
        let remote_index = wire::u32_at(msg, wire::resp::SENDER);
        p.handshake = None;
        let mut freed = Vec::new();
        p.add_keypair(
            Keypair::new(keys.send, keys.recv, receiver, remote_index, now, true),
            &mut freed,
        );
        p.endpoint = Some(src);
        p.last_handshake = Some(now);
        p.timers.session_derived(now);
        p.timers.handshake_complete();
        p.timers.any_authenticated_packet_received();
        p.timers.any_authenticated_packet_traversal(now);
        let peer = p.keys.remote;
        self.stats.handshakes_completed += 1;
        self.free_indices(&freed);
        self.push_event(Event::HandshakeCompleted {
            peer,
            endpoint: src,
            initiator: true,
        });
        // Confirm the session to the responder: staged packets, or a keepalive.
        let action = if self.peer(slot).is_some_and(|p| p.staged.is_empty()) {
            let len = self.seal_data(now, slot, &[], out)?;
            Action::WriteToNetwork { to: src, len }
        } else {
            self.flush_staged(now, slot);
            Action::Done
        };
        self.reschedule(slot);
        Ok(action)
    }

    fn receive_data(
        &mut self,
        now: Instant,
        src: SocketAddr,
        receiver: u32,
        counter: u64,
        sealed: Sealed<'_>,
    ) -> Result<Action, Error> {
        // Split borrows: the keypair found here stays in hand for the source check and the
        // replay mark, so the peer and keypair are looked up once per packet.
        let Device {
            indices,
            peers,
            routes,
            deadlines,
            ..
        } = self;
        let slot = *indices.get(&receiver).ok_or(DropReason::UnknownIndex)?;
        let p = peers.get_mut(slot as usize).and_then(Option::as_mut);
        let p = p.ok_or(DropReason::UnknownIndex)?;
        let (which, kp) = p.keypair_mut(receiver).ok_or(DropReason::UnknownIndex)?;
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
        let lastminute = p.current.as_ref().is_some_and(|k| {
            k.initiator
                && now.saturating_duration_since(k.created)
                    >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
        }) && !p.timers.sent_lastminute_handshake;
        if lastminute {
            p.timers.sent_lastminute_handshake = true;
        }
        if freed.is_empty() && !roamed && !confirmed && !lastminute {
            // The common case: nothing else to do but keep the deadline a lower bound.
            Self::reschedule_peer(deadlines, slot, p);
        } else {
            self.free_indices(&freed);
            if roamed {
                self.push_event(Event::EndpointChanged {
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
