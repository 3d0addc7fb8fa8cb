//! Sealing and restoring a chat's complete state (see [`crate::seal`] for the envelope).
//!
//! Plaintext layout (all integers big-endian), inside the XChaCha20-Poly1305 envelope whose
//! authenticated context is `chat_id (16) ‖ epoch (u32) ‖ seal_seq (u64)` and magic `SWCH`:
//!
//! ```text
//! own_identity 32 | role 1 (0 initiator, 1 responder) | peer_identity 32
//! epoch: number 4 | age_ns 8 | handshake_hash 32 | msg3_digest_flag 1 | msg3_digest 32
//!        | msg1_e_flag 1 | peer_msg1_ephemeral 32 | send_ck 32 | send_index 8 (= lease end) | recv_chain
//! previous_flag 1 [ number 4 | grace_left_ns 8 | recv_chain ]
//! rekey_log_len 1 | rekey_age_ns 8 * len
//! sealed_at: unix_secs 8 | nanos 4            (absent in records of earlier builds)
//! recv_chain = ck 32 | index 8 | n 2 | (counter 8 | key 32) * n
//! ```
//!
//! Times are stored as ages relative to the moment of sealing and rebased on `now` at restore,
//! because the embedder's clock origin does not survive a restart; the wall-clock time of the
//! seal (`sealed_at`) lets the restore add the time the record spent on disk to every age, so
//! an epoch's 48 h expiry, a grace period and the rekey throttle run on across restarts (a
//! clock set back counts as no time passed).

use alloc::vec::Vec;
use zeroize::Zeroizing;

use crate::crypto::ed25519::{IdentityKey, IdentityPublic};
use crate::seal::{self, SealKey, UnsealWith};
use crate::time::{Duration, Instant, WallTime};

use super::config::ChatConfig;
use super::epochs::{Epoch, Epochs, Previous};
use super::error::ChatError;
use super::event::ChatEvent;
use super::machine::Chat;
use super::noise::Role;
use super::ratchet::{ChainKey, RecvChain, SendChain};

/// Magic of a sealed chat state record.
pub const SEALED_CHAT_MAGIC: [u8; 4] = *b"SWCH";

struct Writer(Zeroizing<Vec<u8>>);

impl Writer {
    fn put(&mut self, b: &[u8]) {
        let want = self.0.len().saturating_add(b.len());
        if want > self.0.capacity() {
            // Grow by copying into a bigger wiped buffer; the old one is zeroed (spare room
            // included) when dropped. A plain reallocation would free it unwiped.
            let mut grown = Vec::with_capacity(want.max(self.0.capacity().saturating_mul(2)));
            grown.extend_from_slice(&self.0);
            self.0 = Zeroizing::new(grown);
        }
        self.0.extend_from_slice(b);
    }
    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_be_bytes());
    }
    fn recv(&mut self, r: &RecvChain) {
        self.put(r.chain.key_bytes());
        self.u64(r.chain.index());
        self.put(&(r.skipped.len().min(u16::MAX as usize) as u16).to_be_bytes());
        for (c, k) in r.skipped.iter().take(u16::MAX as usize) {
            self.u64(*c);
            self.put(&k[..]);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ChatError> {
        let (h, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(ChatError::SealedForeign)?;
        self.0 = rest;
        Ok(*h)
    }
    fn u8(&mut self) -> Result<u8, ChatError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, ChatError> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, ChatError> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, ChatError> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    fn key(&mut self) -> Result<Zeroizing<[u8; 32]>, ChatError> {
        Ok(Zeroizing::new(self.take::<32>()?))
    }
    fn recv(&mut self, per_chain: u32) -> Result<RecvChain, ChatError> {
        let ck = self.key()?;
        let index = self.u64()?;
        let n = self.u16()?;
        if u32::from(n) > per_chain {
            return Err(ChatError::SealedForeign);
        }
        let mut skipped = Vec::with_capacity(usize::from(n));
        let mut last = None;
        for _ in 0..n {
            let c = self.u64()?;
            if last.is_some_and(|l| c <= l) || c >= index {
                return Err(ChatError::SealedForeign);
            }
            last = Some(c);
            skipped.push((c, self.key()?));
        }
        Ok(RecvChain {
            chain: ChainKey::new(ck, index),
            skipped,
        })
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<R: rand_core::CryptoRng> Chat<R> {
    /// Seals the complete state under `key` as a versioned, authenticated record, and reserves
    /// a lease of `config.seal_lease` send counters: the record resumes sending after the
    /// lease, and this machine refuses ([`ChatError::LeaseExhausted`]) to send past it until
    /// sealed again. So restoring the newest record after a crash can never reuse a message key.
    /// A handshake in flight is not sealed (it is abandoned on restore). The identity key is
    /// not in the record: [`Chat::unseal`] takes it again (see the recipe in the
    /// [module documentation](crate::chat#sealed-state)).
    ///
    /// ```
    /// # use sealwire::chat::{Chat, ChatConfig, ChatId};
    /// # use sealwire::crypto::ed25519::IdentityKey;
    /// # use sealwire::seal::{SealKey, UnsealWith};
    /// # use sealwire::time::{Instant, WallTime};
    /// # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
    /// # let cfg = ChatConfig::new(ChatId::new([7; 16])); let now = Instant::ZERO;
    /// # let mut a = Chat::initiator(now, IdentityKey::from_seed([1; 32]), cfg.clone(), ChaCha20Rng::from_seed([1; 32])).unwrap();
    /// # let mut b = Chat::responder(IdentityKey::from_seed([2; 32]), cfg.clone(), ChaCha20Rng::from_seed([2; 32])).unwrap();
    /// # loop { let mut m = false;
    /// #   while let Some(f) = a.poll_transmit() { b.handle_frame(now, &f).unwrap(); m = true; }
    /// #   while let Some(f) = b.poll_transmit() { a.handle_frame(now, &f).unwrap(); m = true; }
    /// #   if !m { break; } }
    /// let key = SealKey::from_bytes([9; 32]);
    /// let wall = WallTime::from_unix(1_700_000_000, 0); // e.g. WallTime::now()
    /// let record = a.seal(now, wall, &key).unwrap();
    /// let mut restored = Chat::unseal(now, wall, IdentityKey::from_seed([1; 32]), cfg, &record,
    ///                                 UnsealWith::Key(&key), Some(a.seal_sequence()),
    ///                                 ChaCha20Rng::from_seed([3; 32])).unwrap();
    /// let _again = restored.seal(now, wall, &key).unwrap(); // re-seal before sending
    /// restored.send(now, b"after restore").unwrap();
    /// ```
    pub fn seal(
        &mut self,
        now: Instant,
        wall: WallTime,
        key: &SealKey,
    ) -> Result<Vec<u8>, ChatError> {
        if self.closed {
            return Err(ChatError::Closed);
        }
        let cur = self.epochs.current().ok_or(ChatError::NotEstablished)?;
        let seq = self.seal_seq.checked_add(1).ok_or(ChatError::Capacity)?;
        let lease_end = cur
            .send
            .chain
            .index()
            .saturating_add(self.config.seal_lease);
        let mut send = SendChain {
            chain: ChainKey::new(
                Zeroizing::new(*cur.send.chain.key_bytes()),
                cur.send.chain.index(),
            ),
        };
        send.advance_to(lease_end);

        let mut w = Writer(Zeroizing::new(Vec::with_capacity(512)));
        w.put(self.identity.public().as_bytes());
        w.u8(match self.role {
            Role::Initiator => 0,
            Role::Responder => 1,
        });
        w.put(self.peer.as_ref().map_or(&[0u8; 32], |p| p.as_bytes()));
        w.u32(cur.number);
        w.u64(ns(cur.age(now)));
        w.put(&cur.handshake_hash);
        w.u8(u8::from(cur.msg3_digest.is_some()));
        w.put(&cur.msg3_digest.unwrap_or([0u8; 32]));
        w.u8(u8::from(cur.peer_msg1_ephemeral.is_some()));
        w.put(&cur.peer_msg1_ephemeral.unwrap_or([0u8; 32]));
        w.put(send.chain.key_bytes());
        w.u64(send.chain.index());
        w.recv(&cur.recv);
        match self.epochs.previous() {
            Some(p) if now < p.until => {
                w.u8(1);
                w.u32(p.number);
                w.u64(ns(p.until.saturating_duration_since(now)));
                w.recv(&p.recv);
            }
            _ => w.u8(0),
        }
        let log: Vec<u64> = self
            .throttle
            .events()
            .map(|t| ns(now.saturating_duration_since(t)))
            .take(255)
            .collect();
        w.u8(log.len() as u8);
        for a in log {
            w.u64(a);
        }
        // The wall-clock time of this seal: a restore adds the time the chat spent on disk to
        // every age above, so an epoch expires on time across restarts.
        w.u64(wall.secs());
        w.u32(wall.subsec_nanos());

        let mut ctx = [0u8; 28];
        ctx[..16].copy_from_slice(self.config.chat_id.as_bytes());
        ctx[16..20].copy_from_slice(&cur.number.to_be_bytes());
        ctx[20..].copy_from_slice(&seq.to_be_bytes());
        let record = seal::seal(key, SEALED_CHAT_MAGIC, &ctx, &w.0, &mut self.rng);
        self.seal_seq = seq;
        self.lease = Some((cur.number, lease_end));
        Ok(record)
    }

    /// Restores a chat from a record made by [`Chat::seal`]. `identity` and `config` must
    /// carry the same identity key and chat id as the sealed chat (else
    /// [`ChatError::SealedForeign`]); if `seen_sequence` is given, a record older than it is
    /// refused ([`ChatError::SealedStale`]).
    ///
    /// The restored machine starts a fresh epoch at once (when the rekey throttle allows) and
    /// sends nothing under the restored epoch until that epoch is established
    /// ([`ChatError::AwaitingRekey`]): an older copy of the file, or a second instance on it,
    /// would otherwise hand out the same message keys twice. Only when `seen_sequence` is
    /// exactly the record's own sequence, i.e. the caller keeps the sequence of its last seal
    /// somewhere a rollback cannot reach and so proves this record is the newest, may it send
    /// under the restored epoch, and then only after it has been sealed again (its first
    /// counter is the old lease's end, and a new lease must be on disk before any key past it
    /// is used).
    // `now` and `wall` are one moment on the two clocks; the rest is what a restore needs.
    #[allow(clippy::too_many_arguments)]
    pub fn unseal(
        now: Instant,
        wall: WallTime,
        identity: IdentityKey,
        config: ChatConfig,
        record: &[u8],
        with: UnsealWith<'_>,
        seen_sequence: Option<u64>,
        rng: R,
    ) -> Result<Self, ChatError> {
        config.validate()?;
        let opened = seal::unseal(with, SEALED_CHAT_MAGIC, record, &config.kdf_limits)?;
        let ctx: &[u8; 28] = opened
            .context
            .try_into()
            .map_err(|_| ChatError::SealedForeign)?;
        let (chat_id, rest) = ctx
            .split_first_chunk::<16>()
            .ok_or(ChatError::SealedForeign)?;
        let (epoch, seq) = rest
            .split_first_chunk::<4>()
            .ok_or(ChatError::SealedForeign)?;
        let seq_bytes: [u8; 8] = (*seq).try_into().map_err(|_| ChatError::SealedForeign)?;
        let seq = u64::from_be_bytes(seq_bytes);
        if chat_id != config.chat_id.as_bytes() {
            return Err(ChatError::SealedForeign);
        }
        if let Some(seen) = seen_sequence {
            if seq < seen {
                return Err(ChatError::SealedStale { record: seq, seen });
            }
        }
        let per = config.window.per_chain;
        let mut r = Reader(&opened.plaintext);
        if r.take::<32>()? != *identity.public().as_bytes() {
            return Err(ChatError::SealedForeign);
        }
        let role = match r.u8()? {
            0 => Role::Initiator,
            1 => Role::Responder,
            _ => return Err(ChatError::SealedForeign),
        };
        let peer = IdentityPublic::from_bytes(r.take::<32>()?).ok_or(ChatError::SealedForeign)?;
        if config.pinned_peer.is_some_and(|p| p != peer) {
            return Err(ChatError::SealedForeign);
        }
        let number = r.u32()?;
        if number != u32::from_be_bytes(*epoch) {
            return Err(ChatError::SealedForeign);
        }
        let age = Duration::from_nanos(r.u64()?);
        let handshake_hash = r.take::<32>()?;
        let has_digest = r.u8()?;
        let digest = r.take::<32>()?;
        let has_e = r.u8()?;
        let msg1_e = r.take::<32>()?;
        let send_ck = r.key()?;
        let send_index = r.u64()?;
        let recv = r.recv(per)?;
        let previous = match r.u8()? {
            0 => None,
            1 => {
                let number = r.u32()?;
                let left = Duration::from_nanos(r.u64()?);
                Some((number, left, r.recv(per)?))
            }
            _ => return Err(ChatError::SealedForeign),
        };
        let n = r.u8()?;
        let mut rekey_ages = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            rekey_ages.push(Duration::from_nanos(r.u64()?));
        }
        // The seal's wall-clock time (absent from records of earlier builds: then the time
        // on disk is unknown and counted as zero).
        let on_disk = match r.0.len() {
            0 => Duration::ZERO,
            12 => {
                let (secs, nanos) = (r.u64()?, r.u32()?);
                wall.saturating_duration_since(WallTime::from_unix(secs, nanos))
            }
            _ => return Err(ChatError::SealedForeign),
        };
        let age = age.saturating_add(on_disk);
        let previous = previous.and_then(|(number, left, recv)| {
            let left = left.checked_sub(on_disk).filter(|l| !l.is_zero())?;
            Some(Previous {
                number,
                recv,
                until: now.saturating_add(left),
            })
        });
        // Rekeys older than the throttle's period no longer count (and could not be placed
        // before this process's clock origin anyway).
        let period = config.rekey.throttle_period;
        let rekeys = rekey_ages
            .into_iter()
            .map(|a| a.saturating_add(on_disk))
            .filter(|a| *a < period)
            .map(|a| now.saturating_sub(a))
            .collect::<Vec<_>>();
        let mut chat = Chat::blank(identity, config, rng, role)?;
        chat.peer = Some(peer);
        for t in rekeys {
            chat.throttle.record(t);
        }
        let current = Epoch {
            number,
            send: SendChain {
                chain: ChainKey::new(send_ck, send_index),
            },
            recv,
            established_at: now,
            head_start: age,
            handshake_hash,
            msg3_digest: (has_digest == 1).then_some(digest),
            peer_msg1_ephemeral: (has_e == 1).then_some(msg1_e),
        };
        chat.epochs = Epochs::restored(current, previous);
        chat.seal_seq = seq;
        // Nothing may be sent until a new lease is sealed; and nothing under this epoch at all
        // unless the caller proved the record is the newest (its own sequence): an older copy
        // of the file, or a second instance on it, would hand out the same lease again.
        chat.lease = Some((number, send_index));
        if seen_sequence != Some(seq) {
            chat.awaiting_rekey = Some(number);
        }
        chat.events.push(ChatEvent::SealAdvised);
        // The record may predate a rekey the peer completed (we crashed mid-handshake): start a
        // fresh epoch at once, which the peer accepts whichever side of that rekey it is on.
        if let Some(next) = number.checked_add(1) {
            if chat.throttle.allows(now) {
                chat.start_handshake(now, next)?;
            } else {
                // Several restores within the throttle period: rekey once it allows
                // (`poll_timeout` reports when).
                chat.rekey_due = true;
            }
        }
        Ok(chat)
    }
}
