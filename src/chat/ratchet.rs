//! The per-direction symmetric-key ratchet (Signal's KDF chain):
//! `MK = HMAC-SHA256(CK, 0x01)`, `CK' = HMAC-SHA256(CK, 0x02)`. One message key per counter;
//! a key is dropped (and wiped) as soon as it has been used, and the chain key is overwritten
//! at every step, so a later compromise cannot decrypt earlier messages.

use alloc::vec::Vec;
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::aead::{chacha_open_in_place, chacha_seal_in_place, TAG_LEN};
use crate::crypto::kdf::hmac_sha256;

use super::error::ChatError;

/// A message key: used for exactly one frame.
pub(crate) type MessageKey = Zeroizing<[u8; 32]>;

/// A chain key and the counter of the next message key it yields.
// Crate-private copies only where the original is then dropped (and wiped).
#[derive(Clone)]
pub(crate) struct ChainKey {
    key: Zeroizing<[u8; 32]>,
    index: u64,
}

impl ChainKey {
    pub(crate) fn new(key: Zeroizing<[u8; 32]>, index: u64) -> Self {
        ChainKey { key, index }
    }

    pub(crate) fn index(&self) -> u64 {
        self.index
    }

    pub(crate) fn key_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The message key for `self.index` and the chain key for the next index.
    pub(crate) fn step(&self) -> (MessageKey, ChainKey) {
        let mk = hmac_sha256(&self.key[..], &[&[0x01]]);
        let ck = hmac_sha256(&self.key[..], &[&[0x02]]);
        (
            mk,
            ChainKey {
                key: ck,
                index: self.index.wrapping_add(1),
            },
        )
    }
}

/// Encrypts `buf` in place under a message key (nonce 0: each key is used once) and returns
/// the tag.
pub(crate) fn seal_with(mk: &MessageKey, header: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
    chacha_seal_in_place(mk, &[0u8; 12], header, buf)
}

fn open_with(mk: &MessageKey, header: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> bool {
    chacha_open_in_place(mk, &[0u8; 12], header, buf, tag).is_ok()
}

/// The sending half of an epoch.
// Crate-private copies only where the original is then dropped (and wiped).
#[derive(Clone)]
pub(crate) struct SendChain {
    pub(crate) chain: ChainKey,
}

impl SendChain {
    /// Takes the next message key; the chain moves on. `None` when the counter space is spent.
    pub(crate) fn next_key(&mut self) -> Option<(u64, MessageKey)> {
        if self.chain.index == u64::MAX {
            return None;
        }
        let counter = self.chain.index;
        let (mk, next) = self.chain.step();
        self.chain = next;
        Some((counter, mk))
    }

    /// Ratchets forward to `index` without using the skipped keys (after a restore, to the end
    /// of the sealed lease).
    pub(crate) fn advance_to(&mut self, index: u64) {
        while self.chain.index < index {
            let (_mk, next) = self.chain.step();
            self.chain = next;
        }
    }
}

/// The receiving half of an epoch: the chain key and the keys skipped by out-of-order delivery,
/// kept sorted by counter.
// Crate-private copies only where the original is then dropped (and wiped).
#[derive(Clone)]
pub(crate) struct RecvChain {
    pub(crate) chain: ChainKey,
    pub(crate) skipped: Vec<(u64, MessageKey)>,
}

/// A successful open, not yet applied to the chain (so a failure anywhere leaves it unchanged).
pub(crate) enum Advance {
    /// A skipped key at this position in `skipped` was used.
    UsedSkipped(usize),
    /// The chain jumped: these keys were skipped, and this is the new chain key.
    Forward {
        skipped: Vec<(u64, MessageKey)>,
        next: ChainKey,
    },
}

impl RecvChain {
    pub(crate) fn new(chain: ChainKey) -> Self {
        RecvChain {
            chain,
            skipped: Vec::new(),
        }
    }

    /// Decrypts `buf` (in place) for `counter` without changing the chain; apply the returned
    /// [`Advance`] with [`RecvChain::commit`] once everything else has been accepted. On error
    /// `buf` is unchanged.
    pub(crate) fn open(
        &self,
        counter: u64,
        per_chain: u32,
        header: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<Advance, ChatError> {
        if counter < self.chain.index {
            // Only a key that was skipped and not yet used can open an old counter.
            let pos = self
                .skipped
                .binary_search_by_key(&counter, |(c, _)| *c)
                .map_err(|_| ChatError::Replayed)?;
            let (_, mk) = self.skipped.get(pos).ok_or(ChatError::Replayed)?;
            return if open_with(mk, header, buf, tag) {
                Ok(Advance::UsedSkipped(pos))
            } else {
                Err(ChatError::AuthenticationFailed)
            };
        }
        // `counter >= index` here.
        let gap = counter.saturating_sub(self.chain.index);
        if gap > u64::from(per_chain) || counter == u64::MAX {
            return Err(ChatError::Desync);
        }
        // Exactly the keys skipped: the vector never grows (a reallocation would free a block
        // holding keys, unwiped).
        let mut skipped = Vec::with_capacity(usize::try_from(gap).unwrap_or(0));
        let mut ck = ChainKey::new(self.chain.key.clone(), self.chain.index);
        while ck.index < counter {
            let (mk, next) = ck.step();
            skipped.push((ck.index, mk));
            ck = next;
        }
        let (mk, next) = ck.step();
        if open_with(&mk, header, buf, tag) {
            Ok(Advance::Forward { skipped, next })
        } else {
            Err(ChatError::AuthenticationFailed)
        }
    }

    /// Applies a successful open; keeps at most `per_chain` skipped keys (the oldest go).
    pub(crate) fn commit(&mut self, adv: Advance, per_chain: u32) {
        match adv {
            Advance::UsedSkipped(pos) => {
                if pos < self.skipped.len() {
                    // The removed key is wiped on drop; the shift leaves a stale copy of the
                    // last entry in the slot after the new end, wiped here.
                    drop(self.skipped.remove(pos));
                    self.wipe_spare(1);
                }
            }
            Advance::Forward { skipped, next } => {
                self.chain = next;
                let want = self.skipped.len().saturating_add(skipped.len());
                if want > self.skipped.capacity() {
                    // Grow by copying and dropping the old buffer (each key wiped, its spare
                    // room already clean), so no reallocation frees a block holding keys.
                    let mut grown =
                        Vec::with_capacity(want.max(self.skipped.capacity().saturating_mul(2)));
                    grown.extend(self.skipped.iter().map(|(c, k)| (*c, k.clone())));
                    self.skipped = grown;
                }
                // Copied, not moved: `skipped` then drops its own keys, wiping each (a move
                // would free its buffer with the bytes still in it).
                self.skipped
                    .extend(skipped.iter().map(|(c, k)| (*c, k.clone())));
                drop(skipped);
                self.trim(per_chain as usize);
            }
        }
    }

    /// Drops the oldest skipped keys until at most `max` remain.
    pub(crate) fn trim(&mut self, max: usize) {
        if let Some(excess) = self.skipped.len().checked_sub(max).filter(|e| *e > 0) {
            self.skipped.drain(..excess);
            self.wipe_spare(excess);
        }
    }

    /// Zeroes the first `n` unused slots after the skipped keys: a removal shifts the tail
    /// down and leaves stale copies of its keys there.
    fn wipe_spare(&mut self, n: usize) {
        let spare = self.skipped.spare_capacity_mut();
        let n = n.min(spare.len());
        if let Some(stale) = spare.get_mut(..n) {
            stale.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hex;

    #[test]
    fn chain_step_is_hmac_with_one_and_two() {
        let ck = ChainKey::new(Zeroizing::new([0x42; 32]), 0);
        let (mk, next) = ck.step();
        // Independently: HMAC-SHA256 through the hmac crate directly.
        use hmac::{Hmac, KeyInit, Mac};
        let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&[0x42; 32]).unwrap();
        m.update(&[1]);
        assert_eq!(
            hex::encode(&m.finalize().into_bytes()),
            hex::encode(&mk[..])
        );
        let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&[0x42; 32]).unwrap();
        m.update(&[2]);
        assert_eq!(
            hex::encode(&m.finalize().into_bytes()),
            hex::encode(next.key_bytes())
        );
        assert_eq!(next.index(), 1);
    }
}
