//! The handshake side of the chat machine: Noise XX messages with identity payloads, the
//! rekey tie-break, key confirmation, and installing a new epoch.

use alloc::boxed::Box;

use crate::crypto::ed25519::{IdentityPublic, SIGNATURE_LEN};
use crate::crypto::kdf::sha256;
use crate::crypto::x25519::StaticSecret as X25519Secret;
use crate::time::Instant;

use super::error::Error;
use super::event::ChatEvent;
use super::machine::{
    Chat, Epoch, Pending, Previous, Unconfirmed, MSG3_RESENDS, PROLOGUE_LABEL, STATIC_SIG_LABEL,
};
use super::noise::{Handshake, HandshakeOutput, Role};
use super::ratchet::{ChainKey, RecvChain, SendChain};
use super::wire::{FrameHeader, FrameKind, IDENTITY_PAYLOAD_LEN};

fn prologue(chat_id: &[u8; 16], epoch: u32) -> [u8; 35] {
    let mut p = [0u8; 35];
    p[..15].copy_from_slice(PROLOGUE_LABEL);
    p[15..31].copy_from_slice(chat_id);
    p[31..].copy_from_slice(&epoch.to_be_bytes());
    p
}

/// The bytes an identity key signs: `"sealwire/chat/1 static" ‖ noise_static_pub ‖ chat_id ‖ epoch`.
pub(crate) fn static_signature_message(
    static_pub: &[u8; 32],
    chat_id: &[u8; 16],
    epoch: u32,
) -> [u8; 74] {
    let mut m = [0u8; 74];
    m[..22].copy_from_slice(STATIC_SIG_LABEL);
    m[22..54].copy_from_slice(static_pub);
    m[54..70].copy_from_slice(chat_id);
    m[70..].copy_from_slice(&epoch.to_be_bytes());
    m
}

impl<R: rand_core::CryptoRng> Chat<R> {
    pub(crate) fn identity_payload(
        &self,
        static_pub: &[u8; 32],
        epoch: u32,
    ) -> [u8; IDENTITY_PAYLOAD_LEN] {
        let msg = static_signature_message(static_pub, self.config.chat_id.as_bytes(), epoch);
        let sig = self.config.identity.sign(&msg);
        let mut p = [0u8; IDENTITY_PAYLOAD_LEN];
        p[..32].copy_from_slice(self.config.identity.public().as_bytes());
        p[32..].copy_from_slice(&sig);
        p
    }

    /// Checks the peer's identity payload against the Noise static key it just proved, the pin
    /// and the identity of earlier epochs.
    pub(crate) fn verify_identity(
        &self,
        payload: &[u8],
        remote_static: &[u8; 32],
        epoch: u32,
    ) -> Result<IdentityPublic, Error> {
        let (id, sig) = payload
            .split_first_chunk::<32>()
            .ok_or(Error::HandshakeFailed)?;
        let sig: &[u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| Error::HandshakeFailed)?;
        let msg = static_signature_message(remote_static, self.config.chat_id.as_bytes(), epoch);
        let id = IdentityPublic::parse_verified(*id, &msg, sig).ok_or(Error::HandshakeFailed)?;
        let expected = self.peer.or(self.config.pinned_peer);
        if expected.is_some_and(|e| !crate::crypto::ct_eq(e.as_bytes(), id.as_bytes())) {
            return Err(Error::IdentityMismatch);
        }
        Ok(id)
    }

    pub(crate) fn start_handshake(&mut self, now: Instant, epoch: u32) -> Result<(), Error> {
        if self.transmit.len() >= self.config.queue_capacity {
            return Err(Error::QueueFull);
        }
        let s = X25519Secret::random(&mut self.rng);
        let e = X25519Secret::random(&mut self.rng);
        let mut hs = Handshake::new(
            Role::Initiator,
            &prologue(self.config.chat_id.as_bytes(), epoch),
            s,
            e,
        );
        let body = hs.write_msg1().map_err(|_| Error::HandshakeFailed)?;
        let frame = self.frame(FrameKind::HandshakeInit, epoch, 0, &body);
        if epoch > 0 {
            self.log_rekey(now);
        }
        self.transmit.push_back(frame.clone());
        self.pending = Some(Box::new(Pending {
            epoch,
            hs,
            started: now,
            last_sent: frame,
        }));
        Ok(())
    }

    pub(crate) fn on_msg1(
        &mut self,
        now: Instant,
        h: &FrameHeader,
        body: &[u8],
    ) -> Result<(), Error> {
        let their_e: [u8; 32] = body.try_into().map_err(|_| Error::Malformed)?;
        // Which epochs we answer (docs/chat-protocol.md §6). A message 1 for the current epoch
        // that is not the one which made it: the peer lost that epoch (crash and restore from
        // an older seal) and redoes it. One for a later epoch than the next: the peer moved on
        // while we were restored from an older seal. Answering either is safe: the epoch is
        // bound into the prologue and both signatures, and nothing changes unless the
        // handshake completes.
        let redo = match &self.current {
            Some(c) if h.epoch == c.number => {
                if c.peer_msg1_ephemeral == Some(their_e) {
                    return Err(Error::Replayed);
                }
                true
            }
            Some(c) if h.epoch < c.number => return Err(Error::Replayed),
            Some(_) => false,
            // No epoch yet: the first one may be above 0 if the peer rekeyed before its first
            // epoch was confirmed here.
            None => false,
        };
        if self.transmit.len() >= self.config.queue_capacity {
            return Err(Error::QueueFull);
        }
        let mut counts_against_throttle = h.epoch > 0 || redo;
        if let Some(pd) = self.pending.as_ref().filter(|pd| pd.epoch == h.epoch) {
            match pd.hs.role() {
                Role::Initiator => {
                    // Both sides started this epoch at once. Tie-break: the message 1 with the
                    // larger ephemeral key (bytes compared as big-endian numbers) wins; its
                    // sender stays initiator, the other side answers it.
                    if pd.hs.local_ephemeral() >= their_e {
                        // Ours wins: their message 1 is consumed, ours stands.
                        return Ok(());
                    }
                    counts_against_throttle = false;
                }
                Role::Responder => {
                    if pd.hs.remote_ephemeral() == Some(their_e) {
                        // A repeated message 1: repeat our message 2.
                        let again = pd.last_sent.clone();
                        self.transmit.push_back(again);
                        return Ok(());
                    }
                    // The initiator restarted: answer the new attempt instead (same throttle).
                }
            }
        }
        // A message 1 for the epoch we hold unconfirmed may be the peer starting afresh (it
        // never got our message 3), but it is unauthenticated: we answer it and keep our
        // unconfirmed keys until the new handshake completes (`install` then supersedes them),
        // so an injected message 1 cannot make us drop the epoch the peer already installed.
        if counts_against_throttle && !self.throttle_allows(now) {
            return Err(Error::RekeyThrottled);
        }
        let s = X25519Secret::random(&mut self.rng);
        let e = X25519Secret::random(&mut self.rng);
        let mut hs = Handshake::new(
            Role::Responder,
            &prologue(self.config.chat_id.as_bytes(), h.epoch),
            s,
            e,
        );
        hs.read_msg1(body).map_err(|_| Error::HandshakeFailed)?;
        let payload = self.identity_payload(&hs.local_static(), h.epoch);
        let body2 = hs
            .write_msg2(&payload)
            .map_err(|_| Error::HandshakeFailed)?;
        let frame = self.frame(FrameKind::HandshakeResponse, h.epoch, 0, &body2);
        if counts_against_throttle {
            self.log_rekey(now);
        }
        self.transmit.push_back(frame.clone());
        self.pending = Some(Box::new(Pending {
            epoch: h.epoch,
            hs,
            started: now,
            last_sent: frame,
        }));
        Ok(())
    }

    pub(crate) fn on_msg2(
        &mut self,
        now: Instant,
        h: &FrameHeader,
        body: &[u8],
    ) -> Result<(), Error> {
        let Some(pd) = &self.pending else {
            return Err(self.stale_or_unexpected(h.epoch));
        };
        if pd.epoch != h.epoch || pd.hs.role() != Role::Initiator {
            return Err(self.stale_or_unexpected(h.epoch));
        }
        if self.transmit.len() >= self.config.queue_capacity
            || self.events.len() + 3 > self.config.queue_capacity
        {
            return Err(Error::QueueFull);
        }
        // Work on a copy so a forged message 2 leaves the handshake as it was.
        let mut hs = pd.hs.clone();
        let payload = hs.read_msg2(body).map_err(|_| Error::HandshakeFailed)?;
        let rs = hs.remote_static().ok_or(Error::HandshakeFailed)?;
        // A valid signature by the wrong identity proves only that *someone* answered: anyone
        // with an Ed25519 key can make one, so it is rejected like a forgery (the handshake
        // was advanced on a copy) and the genuine peer's message can still complete it.
        let peer = self.verify_identity(&payload, &rs, h.epoch)?;
        let my_payload = self.identity_payload(&hs.local_static(), h.epoch);
        let body3 = hs
            .write_msg3(&my_payload)
            .map_err(|_| Error::HandshakeFailed)?;
        let out = hs.finish().map_err(|_| Error::HandshakeFailed)?;
        let frame = self.frame(FrameKind::HandshakeFinish, h.epoch, 0, &body3);
        self.pending = None;
        self.transmit.push_back(frame.clone());
        let epoch = build_epoch(h.epoch, Role::Initiator, out, now, None);
        // Keep sending in the old epoch until the responder confirms it has the new keys.
        self.unconfirmed = Some(Box::new(Unconfirmed {
            epoch,
            msg3_frame: frame,
            resend_at: now + self.config.rekey.handshake_timeout,
            resends_left: MSG3_RESENDS,
            peer,
        }));
        Ok(())
    }

    pub(crate) fn on_msg3(
        &mut self,
        now: Instant,
        h: &FrameHeader,
        body: &[u8],
    ) -> Result<(), Error> {
        let answering = self
            .pending
            .as_ref()
            .is_some_and(|p| p.epoch == h.epoch && p.hs.role() == Role::Responder);
        if let Some(cur) = self.current.as_ref().filter(|_| !answering) {
            if cur.number == h.epoch {
                // A retransmitted message 3 whose confirmation was lost: confirm again.
                if cur.msg3_digest == Some(sha256(&[body])) {
                    self.send_confirmation(now)?;
                    return Ok(());
                }
                return Err(Error::Replayed);
            }
        }
        let Some(pd) = &self.pending else {
            return Err(self.stale_or_unexpected(h.epoch));
        };
        if pd.epoch != h.epoch || pd.hs.role() != Role::Responder {
            return Err(self.stale_or_unexpected(h.epoch));
        }
        if self.transmit.len() + 1 >= self.config.queue_capacity
            || self.events.len() + 3 > self.config.queue_capacity
        {
            return Err(Error::QueueFull);
        }
        let mut hs = pd.hs.clone();
        let payload = hs.read_msg3(body).map_err(|_| Error::HandshakeFailed)?;
        let rs = hs.remote_static().ok_or(Error::HandshakeFailed)?;
        // A valid signature by the wrong identity proves only that *someone* answered: anyone
        // with an Ed25519 key can make one, so it is rejected like a forgery (the handshake
        // was advanced on a copy) and the genuine peer's message can still complete it.
        let peer = self.verify_identity(&payload, &rs, h.epoch)?;
        let out = hs.finish().map_err(|_| Error::HandshakeFailed)?;
        let remote_e = hs.remote_ephemeral();
        self.pending = None;
        let mut epoch = build_epoch(h.epoch, Role::Responder, out, now, Some(sha256(&[body])));
        epoch.peer_msg1_ephemeral = remote_e;
        self.install(now, epoch, peer);
        // Tell the initiator we have the new keys (an empty data frame, not reported).
        self.send_confirmation(now)
    }

    pub(crate) fn send_confirmation(&mut self, now: Instant) -> Result<(), Error> {
        let mut frame = alloc::vec![0u8; super::wire::data_frame_len(0)];
        self.seal_frame(now, FrameKind::Data, &[], &mut frame)?;
        self.transmit.push_back(frame);
        Ok(())
    }

    pub(crate) fn stale_or_unexpected(&self, epoch: u32) -> Error {
        match &self.current {
            Some(c) if epoch <= c.number => Error::Replayed,
            _ => Error::UnexpectedHandshake,
        }
    }

    /// Makes `epoch` current; the old receive chain stays for the grace period.
    pub(crate) fn install(&mut self, now: Instant, epoch: Epoch, peer: IdentityPublic) {
        if self
            .unconfirmed
            .as_ref()
            .is_some_and(|u| u.epoch.number <= epoch.number)
        {
            // Superseded by the epoch being installed.
            self.unconfirmed = None;
        }
        let first = self.peer.is_none();
        self.peer = Some(peer);
        if first {
            self.events
                .push_back(ChatEvent::PeerIdentity { identity: peer });
        }
        let number = epoch.number;
        let hh = epoch.handshake_hash;
        if let Some(old) = self.current.replace(epoch) {
            // The old send chain is dropped (wiped) here.
            self.previous = Some(Box::new(Previous {
                number: old.number,
                recv: old.recv,
                until: now + self.config.rekey.grace,
            }));
        }
        self.events.push_back(if first {
            ChatEvent::Established {
                epoch: number,
                handshake_hash: hh,
            }
        } else {
            ChatEvent::Rekeyed {
                epoch: number,
                handshake_hash: hh,
            }
        });
        if self.lease.is_some() {
            self.events.push_back(ChatEvent::SealAdvised);
        }
    }
}

pub(crate) fn build_epoch(
    number: u32,
    role: Role,
    out: HandshakeOutput,
    now: Instant,
    msg3_digest: Option<[u8; 32]>,
) -> Epoch {
    let HandshakeOutput {
        handshake_hash,
        initiator_to_responder,
        responder_to_initiator,
        ..
    } = out;
    let (send, recv) = match role {
        Role::Initiator => (initiator_to_responder, responder_to_initiator),
        Role::Responder => (responder_to_initiator, initiator_to_responder),
    };
    Epoch {
        number,
        send: SendChain {
            chain: ChainKey::new(send, 0),
        },
        recv: RecvChain::new(ChainKey::new(recv, 0)),
        established_at: now,
        handshake_hash,
        msg3_digest,
        peer_msg1_ephemeral: None,
    }
}
