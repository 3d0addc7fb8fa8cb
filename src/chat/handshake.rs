//! The handshake side of the chat machine: Noise XX messages with identity payloads, the
//! rekey tie-break, key confirmation, and installing a new epoch.

use crate::crypto::ed25519::{IdentityPublic, SIGNATURE_LEN};
use crate::crypto::kdf::sha256;
use crate::crypto::x25519::StaticSecret as X25519Secret;
use crate::time::Instant;

use super::epochs::{Epoch, Pending, Unconfirmed};
use super::error::ChatError;
use super::event::ChatEvent;
use super::machine::Chat;
use super::noise::{Handshake, Role};
use super::wire::{data_frame_len, FrameHeader, FrameKind, HEADER_LEN, IDENTITY_PAYLOAD_LEN};

/// Protocol label, first part of the prologue.
const PROLOGUE_LABEL: &[u8] = b"sealwire/chat/1";
/// Domain separator of the identity signature over the Noise static key.
const STATIC_SIG_LABEL: &[u8] = b"sealwire/chat/1 static";
/// How many times an initiator re-sends message 3 before abandoning an unconfirmed epoch.
const MSG3_RESENDS: u8 = 3;

fn prologue(chat_id: &[u8; 16], epoch: u32) -> [u8; 35] {
    let mut p = [0u8; 35];
    p[..15].copy_from_slice(PROLOGUE_LABEL);
    p[15..31].copy_from_slice(chat_id);
    p[31..].copy_from_slice(&epoch.to_be_bytes());
    p
}

/// The bytes an identity key signs: `"sealwire/chat/1 static" ‖ noise_static_pub ‖ chat_id ‖ epoch`.
fn static_signature_message(static_pub: &[u8; 32], chat_id: &[u8; 16], epoch: u32) -> [u8; 74] {
    let mut m = [0u8; 74];
    m[..22].copy_from_slice(STATIC_SIG_LABEL);
    m[22..54].copy_from_slice(static_pub);
    m[54..70].copy_from_slice(chat_id);
    m[70..].copy_from_slice(&epoch.to_be_bytes());
    m
}

impl<R: rand_core::CryptoRng> Chat<R> {
    fn identity_payload(&self, static_pub: &[u8; 32], epoch: u32) -> [u8; IDENTITY_PAYLOAD_LEN] {
        let msg = static_signature_message(static_pub, self.config.chat_id.as_bytes(), epoch);
        let sig = self.identity.sign(&msg);
        let mut p = [0u8; IDENTITY_PAYLOAD_LEN];
        p[..32].copy_from_slice(self.identity.public().as_bytes());
        p[32..].copy_from_slice(&sig);
        p
    }

    /// Checks the peer's identity payload against the Noise static key it just proved, the pin
    /// and the identity of earlier epochs.
    fn verify_identity(
        &self,
        payload: &[u8],
        remote_static: &[u8; 32],
        epoch: u32,
    ) -> Result<IdentityPublic, ChatError> {
        let (id, sig) = payload
            .split_first_chunk::<32>()
            .ok_or(ChatError::HandshakeFailed)?;
        let sig: &[u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| ChatError::HandshakeFailed)?;
        let msg = static_signature_message(remote_static, self.config.chat_id.as_bytes(), epoch);
        let id =
            IdentityPublic::parse_verified(*id, &msg, sig).ok_or(ChatError::HandshakeFailed)?;
        let expected = self.peer.or(self.config.pinned_peer);
        if expected.is_some_and(|e| !crate::crypto::ct_eq(e.as_bytes(), id.as_bytes())) {
            return Err(ChatError::IdentityMismatch);
        }
        Ok(id)
    }

    /// A handshake for `epoch` with a fresh Noise static key and a fresh ephemeral key.
    fn new_handshake(&mut self, role: Role, epoch: u32) -> Handshake {
        let s = X25519Secret::random(&mut self.rng);
        let e = X25519Secret::random(&mut self.rng);
        Handshake::new(role, &prologue(self.config.chat_id.as_bytes(), epoch), s, e)
    }

    /// Reads the peer's signed message (2 as initiator, 3 as responder) on a copy of the
    /// handshake in flight, and checks its identity payload. The copy is returned only when
    /// everything verified, so a forged message leaves the handshake as it was.
    fn read_signed(
        &self,
        hs: &Handshake,
        epoch: u32,
        body: &[u8],
    ) -> Result<(Handshake, IdentityPublic), ChatError> {
        let mut hs = hs.clone();
        let payload = match hs.role() {
            Role::Initiator => hs.read_msg2(body),
            Role::Responder => hs.read_msg3(body),
        }
        .map_err(|_| ChatError::HandshakeFailed)?;
        let rs = hs.remote_static().ok_or(ChatError::HandshakeFailed)?;
        // A valid signature by the wrong identity proves only that *someone* answered: anyone
        // with an Ed25519 key can make one, so it is rejected like a forgery and the genuine
        // peer's message can still complete the handshake.
        let peer = self.verify_identity(&payload, &rs, epoch)?;
        Ok((hs, peer))
    }

    fn frame(&self, kind: FrameKind, epoch: u32, body: &[u8]) -> alloc::vec::Vec<u8> {
        let h = FrameHeader {
            kind,
            chat_id: self.config.chat_id,
            epoch,
            counter: 0,
        };
        let mut out = alloc::vec::Vec::with_capacity(HEADER_LEN.saturating_add(body.len()));
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(body);
        out
    }

    pub(super) fn start_handshake(&mut self, now: Instant, epoch: u32) -> Result<(), ChatError> {
        if !self.transmit.has_room(1) {
            return Err(ChatError::Capacity);
        }
        let mut hs = self.new_handshake(Role::Initiator, epoch);
        let body = hs.write_msg1().map_err(|_| ChatError::HandshakeFailed)?;
        let frame = self.frame(FrameKind::HandshakeInit, epoch, &body);
        if epoch > 0 {
            self.throttle.record(now);
        }
        self.transmit.push(frame.clone());
        self.epochs.begin(Pending {
            epoch,
            hs,
            started: now,
            last_sent: frame,
        });
        Ok(())
    }

    pub(super) fn on_msg1(
        &mut self,
        now: Instant,
        h: &FrameHeader,
        body: &[u8],
    ) -> Result<(), ChatError> {
        let their_e: [u8; 32] = body.try_into().map_err(|_| ChatError::Malformed)?;
        // Which epochs we answer (docs/chat-protocol.md §6). A message 1 for the current epoch
        // that is not the one which made it: the peer lost that epoch (crash and restore from
        // an older seal) and redoes it. One for a later epoch than the next: the peer moved on
        // while we were restored from an older seal. Answering either is safe: the epoch is
        // bound into the prologue and both signatures, and nothing changes unless the
        // handshake completes.
        let redo = match self.epochs.current() {
            Some(c) if h.epoch == c.number => {
                if c.peer_msg1_ephemeral == Some(their_e) {
                    return Err(ChatError::Replayed);
                }
                true
            }
            Some(c) if h.epoch < c.number => return Err(ChatError::Replayed),
            Some(_) => false,
            // No epoch yet: the first one may be above 0 if the peer rekeyed before its first
            // epoch was confirmed here.
            None => false,
        };
        if !self.transmit.has_room(1) {
            return Err(ChatError::Capacity);
        }
        let mut counts_against_throttle = h.epoch > 0 || redo;
        if let Some(pd) = self.epochs.pending().filter(|pd| pd.epoch == h.epoch) {
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
                        self.transmit.push(again);
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
        if counts_against_throttle && !self.throttle.allows(now) {
            return Err(ChatError::RekeyThrottled);
        }
        let mut hs = self.new_handshake(Role::Responder, h.epoch);
        hs.read_msg1(body).map_err(|_| ChatError::HandshakeFailed)?;
        let payload = self.identity_payload(&hs.local_static(), h.epoch);
        let body2 = hs
            .write_msg2(&payload)
            .map_err(|_| ChatError::HandshakeFailed)?;
        let frame = self.frame(FrameKind::HandshakeResponse, h.epoch, &body2);
        if counts_against_throttle {
            self.throttle.record(now);
        }
        self.transmit.push(frame.clone());
        self.epochs.begin(Pending {
            epoch: h.epoch,
            hs,
            started: now,
            last_sent: frame,
        });
        Ok(())
    }

    pub(super) fn on_msg2(
        &mut self,
        now: Instant,
        h: &FrameHeader,
        body: &[u8],
    ) -> Result<(), ChatError> {
        let pd = self.awaiting(h.epoch, Role::Initiator)?;
        if !self.transmit.has_room(1) || !self.events.has_room(3) {
            return Err(ChatError::Capacity);
        }
        let (mut hs, peer) = self.read_signed(&pd.hs, h.epoch, body)?;
        let my_payload = self.identity_payload(&hs.local_static(), h.epoch);
        let body3 = hs
            .write_msg3(&my_payload)
            .map_err(|_| ChatError::HandshakeFailed)?;
        let out = hs.finish().map_err(|_| ChatError::HandshakeFailed)?;
        let frame = self.frame(FrameKind::HandshakeFinish, h.epoch, &body3);
        self.epochs.take_pending();
        self.transmit.push(frame.clone());
        // Keep sending in the old epoch until the responder confirms it has the new keys.
        self.epochs.await_confirmation(Unconfirmed {
            epoch: Epoch::from_handshake(h.epoch, Role::Initiator, out, now, None),
            msg3_frame: frame,
            resend_at: now.saturating_add(self.config.rekey.handshake_timeout),
            resends_left: MSG3_RESENDS,
            peer,
        });
        Ok(())
    }

    pub(super) fn on_msg3(
        &mut self,
        now: Instant,
        h: &FrameHeader,
        body: &[u8],
    ) -> Result<(), ChatError> {
        let answering = self
            .epochs
            .pending()
            .is_some_and(|p| p.epoch == h.epoch && p.hs.role() == Role::Responder);
        if let Some(cur) = self.epochs.current().filter(|_| !answering) {
            if cur.number == h.epoch {
                // A retransmitted message 3 whose confirmation was lost: confirm again, at the
                // rekey throttle's rate at most (the initiator resends it 3 times, 10 s apart; a
                // relay replaying it must not make us spend counters and frames without end).
                if cur.msg3_digest == Some(sha256(&[body])) {
                    if !self.reconfirm.allows(now) {
                        return Err(ChatError::RekeyThrottled);
                    }
                    if !self.transmit.has_room(1) {
                        return Err(ChatError::Capacity);
                    }
                    self.send_confirmation()?;
                    self.reconfirm.record(now);
                    return Ok(());
                }
                return Err(ChatError::Replayed);
            }
        }
        let pd = self.awaiting(h.epoch, Role::Responder)?;
        if !self.transmit.has_room(2) || !self.events.has_room(3) {
            return Err(ChatError::Capacity);
        }
        let (hs, peer) = self.read_signed(&pd.hs, h.epoch, body)?;
        let out = hs.finish().map_err(|_| ChatError::HandshakeFailed)?;
        let remote_e = hs.remote_ephemeral();
        self.epochs.take_pending();
        let mut epoch =
            Epoch::from_handshake(h.epoch, Role::Responder, out, now, Some(sha256(&[body])));
        epoch.peer_msg1_ephemeral = remote_e;
        self.install(now, epoch, peer);
        // Tell the initiator we have the new keys (an empty data frame, not reported).
        self.send_confirmation()
    }

    fn send_confirmation(&mut self) -> Result<(), ChatError> {
        let mut frame = alloc::vec![0u8; data_frame_len(0)];
        self.seal_frame(FrameKind::Data, &[], &mut frame)?;
        self.transmit.push(frame);
        Ok(())
    }

    /// The handshake in flight that a message of `epoch` continues, if we play `role` in it;
    /// otherwise the message is stale or out of turn.
    fn awaiting(&self, epoch: u32, role: Role) -> Result<&Pending, ChatError> {
        self.epochs
            .pending()
            .filter(|pd| pd.epoch == epoch && pd.hs.role() == role)
            .ok_or_else(|| self.stale_or_unexpected(epoch))
    }

    fn stale_or_unexpected(&self, epoch: u32) -> ChatError {
        match self.epochs.current() {
            Some(c) if epoch <= c.number => ChatError::Replayed,
            _ => ChatError::UnexpectedHandshake,
        }
    }

    /// Makes `epoch` current (the old receive chain stays for the grace period) and reports
    /// it: the peer's identity and `Established` the first time, `Rekeyed` after.
    pub(super) fn install(&mut self, now: Instant, epoch: Epoch, peer: IdentityPublic) {
        let first = self.peer.is_none();
        self.peer = Some(peer);
        if first {
            self.events.push(ChatEvent::PeerIdentity { identity: peer });
        }
        let (number, handshake_hash) = (epoch.number, epoch.handshake_hash);
        self.epochs.install(now, epoch, self.config.rekey.grace);
        // A fresh epoch from a completed handshake: nothing of it was ever sealed before.
        self.awaiting_rekey = None;
        self.events.push(if first {
            ChatEvent::Established {
                epoch: number,
                handshake_hash,
            }
        } else {
            ChatEvent::Rekeyed {
                epoch: number,
                handshake_hash,
            }
        });
        if self.lease.is_some() {
            self.events.push(ChatEvent::SealAdvised);
        }
    }
}
