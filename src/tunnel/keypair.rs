//! A transport keypair: the two ChaCha20-Poly1305 keys of one completed handshake, the send
//! counter and the receive replay window (WireGuard paper §5.4.6).

use super::error::DropReason;
use super::replay::ReplayWindow;
use super::timers::{REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME_NS};
use super::wire::{DATA_HEADER_LEN, MSG_DATA};
use crate::crypto::aead::{TransportKey, TAG_LEN};
use crate::time::Instant;
use zeroize::Zeroizing;

/// One direction pair of transport keys.
///
/// The keys are [`TransportKey`]s, set up once per session (not per packet). A peer keeps
/// each keypair in a [`WipedBox`](super::wiped::WipedBox), whose whole block is zeroed when
/// the session goes: in the default build the keys also wipe themselves; with the `ring`
/// feature, whose prepared key (`LessSafeKey`, the raw ChaCha20 key words) has no `Drop`,
/// that zeroing is what wipes it. What ring still leaves unwiped is on the stack, never on
/// the heap: the temporaries while a key is built (once per session and direction, in
/// `TransportKey::new`) and the per-packet Poly1305 key it derives.
pub(crate) struct Keypair {
    send_key: TransportKey,
    recv_key: TransportKey,
    pub(crate) send_counter: u64,
    pub(crate) replay: ReplayWindow,
    pub(crate) local_index: u32,
    pub(crate) remote_index: u32,
    pub(crate) created: Instant,
    /// Whether we initiated the handshake that made it (only the initiator rekeys by age).
    pub(crate) initiator: bool,
    /// The raw keys (send, receive), lent to sealing and opening done outside the device
    /// ([`SealJob`](super::SealJob), [`Opening`](super::Opening)) and, in fuzz builds, what a
    /// clone is made from (a prepared key cannot be copied). Wiped on drop, with the block.
    raw: Zeroizing<[[u8; 32]; 2]>,
}

#[cfg(fuzzing)]
impl Clone for Keypair {
    fn clone(&self) -> Self {
        let [send, recv] = *self.raw;
        Keypair {
            replay: self.replay.clone(),
            send_counter: self.send_counter,
            ..Keypair::new(
                send,
                recv,
                self.local_index,
                self.remote_index,
                self.created,
                self.initiator,
            )
        }
    }
}

impl Keypair {
    pub(crate) fn new(
        send_key: [u8; 32],
        recv_key: [u8; 32],
        local_index: u32,
        remote_index: u32,
        created: Instant,
        initiator: bool,
    ) -> Self {
        Keypair {
            raw: Zeroizing::new([send_key, recv_key]),
            send_key: TransportKey::new(send_key),
            recv_key: TransportKey::new(recv_key),
            send_counter: 0,
            replay: ReplayWindow::default(),
            local_index,
            remote_index,
            created,
            initiator,
        }
    }

    /// Nanoseconds since the session was derived (zero if `now` is earlier). Compared with
    /// the `*_NS` constants: plain integers on the per-packet path, no `Duration` built.
    #[inline]
    pub(crate) fn age_ns(&self, now: Instant) -> u64 {
        now.as_nanos().saturating_sub(self.created.as_nanos())
    }

    /// Whether it may still send at `now` (WG §6.2: REJECT_AFTER_TIME, REJECT_AFTER_MESSAGES).
    #[inline]
    pub(crate) fn can_send(&self, now: Instant) -> bool {
        self.age_ns(now) < REJECT_AFTER_TIME_NS && self.send_counter < REJECT_AFTER_MESSAGES
    }

    /// Whether it may still receive at `now`.
    #[inline]
    pub(crate) fn can_receive(&self, now: Instant) -> bool {
        self.age_ns(now) < REJECT_AFTER_TIME_NS
    }

    /// Encrypts `payload` (already copied, padded, into `out[16..16+len]`) in place and writes
    /// the header and tag. `out` must be exactly `16 + len + 16` bytes.
    #[inline]
    pub(crate) fn seal_into(&mut self, out: &mut [u8]) -> Option<()> {
        let counter = self.send_counter;
        seal_datagram(&self.send_key, self.remote_index, counter, out)?;
        self.send_counter = counter.saturating_add(1);
        Some(())
    }

    /// A copy of the raw send key, for sealing outside the device.
    pub(crate) fn lend_send_key(&self) -> Zeroizing<[u8; 32]> {
        let [send, _] = &*self.raw;
        Zeroizing::new(*send)
    }

    /// A copy of the raw receive key, for opening outside the device.
    pub(crate) fn lend_recv_key(&self) -> Zeroizing<[u8; 32]> {
        let [_, recv] = &*self.raw;
        Zeroizing::new(*recv)
    }

    /// Authenticates and decrypts `sealed` (ciphertext ‖ tag) into `out[..len-16]`. The
    /// window is not changed: the caller marks the counter with [`Self::mark_received`] once
    /// the inner packet passed its checks too.
    pub(crate) fn open_into(
        &mut self,
        now: Instant,
        counter: u64,
        sealed: &[u8],
        out: &mut [u8],
    ) -> Result<usize, DropReason> {
        self.check_receivable(now, counter)?;
        let (ct, tag) = split_tag(sealed)?;
        let dst = out.get_mut(..ct.len()).ok_or(DropReason::Malformed)?;
        dst.copy_from_slice(ct);
        self.decrypt(counter, dst, &tag)?;
        Ok(dst.len())
    }

    /// [`Self::open_into`] without the copy: `sealed` (ciphertext ‖ tag) is decrypted where
    /// it lies, the plaintext ending up in `sealed[..len-16]`.
    pub(crate) fn open_in_place(
        &mut self,
        now: Instant,
        counter: u64,
        sealed: &mut [u8],
    ) -> Result<usize, DropReason> {
        self.check_receivable(now, counter)?;
        open_sealed(&self.recv_key, counter, sealed)
    }

    /// The checks before any decryption: the session may still receive, and (cheap first)
    /// the counter is not a replay, so a replayed packet costs no decryption.
    pub(crate) fn check_receivable(&self, now: Instant, counter: u64) -> Result<(), DropReason> {
        if !self.can_receive(now) || counter >= REJECT_AFTER_MESSAGES {
            return Err(DropReason::SessionExpired);
        }
        if !self.replay.check(counter) {
            return Err(DropReason::ReplayedCounter);
        }
        Ok(())
    }

    fn decrypt(&self, counter: u64, ct: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), DropReason> {
        self.recv_key
            .open_in_place(counter, &[], ct, tag)
            .map_err(|_| DropReason::DecryptFailed)
    }

    /// Marks `counter` as received, once the packet is accepted as a whole.
    pub(crate) fn mark_received(&mut self, counter: u64) -> bool {
        self.replay.update(counter)
    }
}

/// Writes the data header (type 4, `remote_index`, `counter`) into `out[..16]` and seals
/// `out[16..len-16]` in place with `key` and the nonce of `counter`, the tag going into the
/// last 16 bytes. `None` when `out` is shorter than header and tag.
#[inline]
pub(crate) fn seal_datagram(
    key: &TransportKey,
    remote_index: u32,
    counter: u64,
    out: &mut [u8],
) -> Option<()> {
    let (header, rest) = out.split_first_chunk_mut::<DATA_HEADER_LEN>()?;
    let (body, tag) = rest.split_last_chunk_mut::<TAG_LEN>()?;
    header[..4].copy_from_slice(&MSG_DATA.to_le_bytes());
    header[4..8].copy_from_slice(&remote_index.to_le_bytes());
    header[8..].copy_from_slice(&counter.to_le_bytes());
    *tag = key.seal_in_place(counter, &[], body);
    Some(())
}

/// Authenticates and decrypts `sealed` (ciphertext ‖ tag) where it lies with `key` and the
/// nonce of `counter`, the plaintext ending up in `sealed[..len-16]`; returns its length.
#[inline]
pub(crate) fn open_sealed(
    key: &TransportKey,
    counter: u64,
    sealed: &mut [u8],
) -> Result<usize, DropReason> {
    let (ct_len, tag) = split_tag(sealed).map(|(ct, tag)| (ct.len(), tag))?;
    let ct = sealed.get_mut(..ct_len).ok_or(DropReason::Malformed)?;
    key.open_in_place(counter, &[], ct, &tag)
        .map_err(|_| DropReason::DecryptFailed)?;
    Ok(ct_len)
}

/// `ciphertext ‖ tag` split into the ciphertext and a copy of the tag.
fn split_tag(sealed: &[u8]) -> Result<(&[u8], [u8; TAG_LEN]), DropReason> {
    let ct_len = sealed
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(DropReason::Malformed)?;
    let (ct, tag) = sealed
        .split_at_checked(ct_len)
        .ok_or(DropReason::Malformed)?;
    let tag = tag.try_into().map_err(|_| DropReason::Malformed)?;
    Ok((ct, tag))
}

#[cfg(test)]
mod tests {
    use super::super::timers::REJECT_AFTER_TIME;
    use super::*;
    use crate::time::Duration;

    fn pair(now: Instant) -> (Keypair, Keypair) {
        (
            Keypair::new([1; 32], [2; 32], 10, 20, now, true),
            Keypair::new([2; 32], [1; 32], 20, 10, now, false),
        )
    }

    #[test]
    fn counters_at_the_reject_limit_are_refused_both_ways() {
        let now = Instant::from_secs(1);
        let (mut a, mut b) = pair(now);
        a.send_counter = REJECT_AFTER_MESSAGES - 1;
        assert!(a.can_send(now));
        let mut buf = [0u8; 32];
        a.seal_into(&mut buf).unwrap();
        assert!(!a.can_send(now), "REJECT_AFTER_MESSAGES reached");
        let mut out = [0u8; 16];
        assert_eq!(
            b.open_into(now, REJECT_AFTER_MESSAGES - 1, &buf[16..], &mut out),
            Ok(0)
        );
        assert_eq!(
            b.open_into(now, REJECT_AFTER_MESSAGES, &buf[16..], &mut out),
            Err(DropReason::SessionExpired)
        );
    }

    #[test]
    fn sessions_expire_at_reject_after_time() {
        let now = Instant::from_secs(1);
        let (a, _) = pair(now);
        assert!(a.can_send(now + REJECT_AFTER_TIME - Duration::from_nanos(1)));
        assert!(!a.can_send(now + REJECT_AFTER_TIME));
        assert!(!a.can_receive(now + REJECT_AFTER_TIME));
    }

    #[test]
    fn nonce_is_the_little_endian_counter_after_four_zero_bytes() {
        let n = crate::crypto::aead::counter_nonce(0x0102_0304_0506_0708);
        assert_eq!(n, [0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]);
    }
}
