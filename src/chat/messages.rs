//! The message side of the chat machine: sealing data and close frames under the current send
//! chain (within the sealed counter lease), opening them with the receive chain the epoch
//! table names, and the desync rule for frames that jump beyond what is accepted.

use core::ops::Range;

use crate::time::Instant;

use super::epochs::Slot;
use super::error::ChatError;
use super::event::{ChatEvent, CloseReason};
use super::machine::Chat;
use super::ratchet::seal_with;
use super::wire::{data_frame_len, FrameHeader, FrameKind, HEADER_LEN, TAG_LEN};

impl<R: rand_core::CryptoRng> Chat<R> {
    /// Encrypts into `out` (header ‖ ciphertext ‖ tag). Nothing changes unless it succeeds.
    pub(super) fn seal_frame(
        &mut self,
        kind: FrameKind,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<(u64, usize), ChatError> {
        let needed = data_frame_len(plaintext.len());
        if out.len() < needed {
            return Err(ChatError::BufferTooSmall { needed });
        }
        if self.closed {
            return Err(ChatError::Closed);
        }
        if plaintext.len() > self.config.max_message_len {
            return Err(ChatError::MessageTooLarge);
        }
        let (lease, awaiting) = (self.lease, self.awaiting_rekey);
        let Some(cur) = self.epochs.current_mut() else {
            return Err(ChatError::NotEstablished);
        };
        if awaiting == Some(cur.number) {
            return Err(ChatError::AwaitingRekey);
        }
        if let Some((e, end)) = lease {
            // Data stops one short of the lease's end: its last counter is the close's.
            let last = match kind {
                FrameKind::Close => end,
                _ => end.saturating_sub(1),
            };
            if e == cur.number && cur.send.chain.index() >= last {
                return Err(ChatError::LeaseExhausted);
            }
        }
        let (counter, mk) = cur.send.next_key().ok_or(ChatError::Desync)?;
        let header = FrameHeader {
            kind,
            chat_id: self.config.chat_id,
            epoch: cur.number,
            counter,
        }
        .encode();
        let (head, rest) = out.split_at_mut(HEADER_LEN);
        head.copy_from_slice(&header);
        let (body, tail) = rest.split_at_mut(plaintext.len());
        body.copy_from_slice(plaintext);
        let tag = seal_with(&mk, &header, body);
        if let Some(t) = tail.get_mut(..TAG_LEN) {
            t.copy_from_slice(&tag);
        }
        if let Some((e, end)) = lease {
            let half = self.config.seal_lease / 2;
            if e == cur.number && counter.saturating_add(1).saturating_add(half) == end {
                self.events.push(ChatEvent::SealAdvised);
            }
        }
        Ok((counter, needed))
    }

    pub(super) fn after_send(&mut self, now: Instant) {
        let Some(cur) = self.epochs.current() else {
            return;
        };
        if cur.send.chain.index() >= self.config.rekey.after_messages && !self.epochs.handshaking()
        {
            let _ = self.rekey(now);
        }
    }

    /// Authenticates and decrypts a data or close frame in `frame` (whole frame, in place).
    /// Returns the plaintext range. The chain advances only on success.
    pub(super) fn open_authenticated(
        &mut self,
        now: Instant,
        h: &FrameHeader,
        frame: &mut [u8],
    ) -> Result<(u32, u64, Range<usize>), ChatError> {
        let (header, rest) = frame
            .split_at_mut_checked(HEADER_LEN)
            .ok_or(ChatError::Malformed)?;
        let ct_len = rest
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(ChatError::Malformed)?;
        let (ct, tag) = rest.split_at_mut(ct_len);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| ChatError::Malformed)?;
        let slot = match self.epochs.lookup(now, h.epoch) {
            Ok(slot) => slot,
            // An epoch we never agreed on, never authenticated: see `on_desync`.
            Err(ChatError::Desync) => return Err(self.on_desync(now)),
            Err(e) => return Err(e),
        };
        let chain = self.epochs.recv(slot).ok_or(ChatError::NotEstablished)?;
        let adv = match chain.open(h.counter, self.config.window.per_chain, header, ct, &tag) {
            Ok(a) => a,
            // A counter beyond the window, never authenticated: see `on_desync`.
            Err(ChatError::Desync) => return Err(self.on_desync(now)),
            Err(e) => return Err(e),
        };
        if h.kind == FrameKind::Close && ct.len() != 1 {
            return Err(ChatError::Malformed);
        }
        self.epochs.commit(slot, adv, self.config.window);
        if slot == Slot::Unconfirmed {
            // Any authenticated frame in the new epoch proves the responder has its keys.
            if let Some(u) = self.epochs.take_unconfirmed() {
                // Copied out, not moved: the box then drops the epoch's keys, wiping them (a
                // move would free the box with the key bytes still in it).
                let (epoch, peer) = (u.epoch.clone(), u.peer);
                drop(u);
                self.install(now, epoch, peer);
            }
        }
        if h.kind == FrameKind::Close {
            let code = ct.first().copied().unwrap_or(0);
            self.wipe();
            self.events.push(ChatEvent::Closed {
                reason: CloseReason::from_code(code),
                by_peer: true,
            });
            return Ok((h.epoch, h.counter, HEADER_LEN..HEADER_LEN));
        }
        Ok((
            h.epoch,
            h.counter,
            HEADER_LEN..HEADER_LEN.saturating_add(ct_len),
        ))
    }

    /// A data or close frame that would need a jump beyond what we accept (a counter more than
    /// the window ahead, or an epoch more than one ahead) was never authenticated, so it
    /// changes nothing and closes nothing; the one thing it may do is start a rekey within the
    /// throttle ([`Chat::rekey`]'s rules), which resynchronises a peer that really lost a window
    /// of frames. The reasons are the desync rule of the [module documentation](crate::chat).
    fn on_desync(&mut self, now: Instant) -> ChatError {
        let _ = self.rekey(now);
        ChatError::Desync
    }
}
