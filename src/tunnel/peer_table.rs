//! The device's peers: slots, the map from public key to slot, and the map from session
//! index (the `receiver` of every message sent to us) to slot, with index allocation.
//!
//! A peer keeps its slot for its lifetime, so the other tables (routes, the timer schedule)
//! refer to it by a small integer; a removed peer's slot is reused. Session indices are
//! random (WireGuard paper §5.4.1): sequential ones would tell an observer how many sessions
//! we hold; and an index names exactly one handshake or keypair while it is in the map.

use super::error::DeviceError;
use super::keypair::Keypair;
use super::peer::Peer;
use super::wiped::WipedVec;
use crate::crypto::x25519::PublicKey;
use alloc::collections::btree_map::{BTreeMap, Entry};
use alloc::vec::Vec;

/// A peer's place in the table (and in the device's other per-peer tables).
pub(crate) type Slot = u32;

/// Peers by slot, by public key and by session index.
// Fuzz targets clone an established device per input (cargo-fuzz builds with `--cfg
// fuzzing`); no other build can copy these keys.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct PeerTable {
    /// Peers hold keys (PSK, precomputed DH, handshake state): their block is zeroed when
    /// it grows and when the table goes.
    slots: WipedVec<Option<Peer>>,
    free: Vec<Slot>,
    by_key: BTreeMap<PublicKey, Slot>,
    by_index: BTreeMap<u32, Slot>,
    capacity: usize,
}

impl PeerTable {
    /// An empty table for at most `capacity` peers.
    pub(crate) fn new(capacity: usize) -> Self {
        PeerTable {
            slots: WipedVec::new(),
            free: Vec::new(),
            by_key: BTreeMap::new(),
            by_index: BTreeMap::new(),
            capacity,
        }
    }

    /// Number of peers.
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// The public keys, in key order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &PublicKey> + '_ {
        self.by_key.keys()
    }

    /// The slot of the peer with public key `key`.
    pub(crate) fn slot(&self, key: &PublicKey) -> Option<Slot> {
        self.by_key.get(key).copied()
    }

    /// The slot that owns session index `index` (a handshake in flight or a keypair).
    #[inline]
    pub(crate) fn slot_of_index(&self, index: u32) -> Option<Slot> {
        self.by_index.get(&index).copied()
    }

    /// The peer that owns session index `index`, with its slot.
    #[inline]
    pub(crate) fn by_index_mut(&mut self, index: u32) -> Option<(Slot, &mut Peer)> {
        let slot = self.slot_of_index(index)?;
        Some((slot, self.get_mut(slot)?))
    }

    #[inline]
    pub(crate) fn get(&self, slot: Slot) -> Option<&Peer> {
        self.slots.get(slot as usize)?.as_ref()
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, slot: Slot) -> Option<&mut Peer> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// Whether a peer with `key` could be added: not already present, and room left.
    pub(crate) fn check_room(&self, key: &PublicKey) -> Result<(), DeviceError> {
        if self.by_key.contains_key(key) {
            return Err(DeviceError::DuplicatePeer);
        }
        if self.by_key.len() >= self.capacity {
            return Err(DeviceError::TooManyPeers);
        }
        Ok(())
    }

    /// Adds `peer` under `key`; refuses a key already present and a full table.
    pub(crate) fn insert(&mut self, key: PublicKey, peer: Peer) -> Result<Slot, DeviceError> {
        self.check_room(&key)?;
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let s = Slot::try_from(self.slots.len()).map_err(|_| DeviceError::TooManyPeers)?;
                self.slots.push(None);
                s
            }
        };
        if let Some(entry) = self.slots.get_mut(slot as usize) {
            *entry = Some(peer);
        }
        self.by_key.insert(key, slot);
        Ok(slot)
    }

    /// Removes the peer with `key`, wiping its sessions and releasing their indices; its
    /// slot is free for reuse. Returns the slot it had.
    pub(crate) fn remove(&mut self, key: &PublicKey) -> Option<Slot> {
        let slot = self.by_key.remove(key)?;
        self.clear_sessions(slot);
        if let Some(entry) = self.slots.get_mut(slot as usize) {
            *entry = None;
        }
        self.free.push(slot);
        Some(slot)
    }

    /// A fresh random session index for `slot`, not in use by any peer.
    pub(crate) fn allocate_index<R: rand_core::CryptoRng>(
        &mut self,
        slot: Slot,
        rng: &mut R,
    ) -> u32 {
        loop {
            let index = rng.next_u32();
            if let Entry::Vacant(e) = self.by_index.entry(index) {
                e.insert(slot);
                return index;
            }
        }
    }

    /// Forgets session indices whose handshake or keypair is gone.
    pub(crate) fn release(&mut self, indices: &[u32]) {
        for i in indices {
            self.by_index.remove(i);
        }
    }

    /// Installs a keypair just derived for `slot` (see [`Peer::add_keypair`]), releasing the
    /// indices of the keypairs it displaced.
    pub(crate) fn install_keypair(&mut self, slot: Slot, keypair: Keypair) {
        let mut freed = Vec::new();
        if let Some(p) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) {
            p.add_keypair(keypair, &mut freed);
        }
        self.release(&freed);
    }

    /// Wipes every session of `slot` and its pending handshake, releasing their indices.
    pub(crate) fn clear_sessions(&mut self, slot: Slot) {
        let mut freed = Vec::new();
        if let Some(p) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) {
            p.clear_sessions(&mut freed);
        }
        self.release(&freed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::x25519::StaticSecret;
    use crate::tunnel::handshake::{Identity, PeerKeys};
    use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};

    fn peer(n: u8) -> (PublicKey, Peer) {
        let id = Identity::new(StaticSecret::from_bytes([1; 32]));
        let key = StaticSecret::from_bytes([n; 32]).public_key();
        (key, Peer::new(PeerKeys::new(&id, key, None), None))
    }

    #[test]
    fn slots_are_reused_and_capacity_and_duplicates_are_refused() {
        let mut t = PeerTable::new(2);
        let (ka, a) = peer(2);
        let (kb, b) = peer(3);
        let sa = t.insert(ka, a).unwrap();
        assert_eq!(
            t.insert(ka, peer(2).1).err(),
            Some(DeviceError::DuplicatePeer)
        );
        let sb = t.insert(kb, b).unwrap();
        assert_eq!(
            t.insert(peer(4).0, peer(4).1).err(),
            Some(DeviceError::TooManyPeers)
        );
        assert_ne!(sa, sb);
        assert_eq!(t.remove(&ka), Some(sa));
        assert!(t.get(sa).is_none() && t.slot(&ka).is_none());
        let (kc, c) = peer(5);
        assert_eq!(t.insert(kc, c).unwrap(), sa, "a freed slot is reused");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn indices_are_unique_until_released() {
        let mut t = PeerTable::new(4);
        let (k, p) = peer(2);
        let slot = t.insert(k, p).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let a = t.allocate_index(slot, &mut rng);
        let b = t.allocate_index(slot, &mut rng);
        assert_ne!(a, b);
        assert_eq!(
            (t.slot_of_index(a), t.slot_of_index(b)),
            (Some(slot), Some(slot))
        );
        t.release(&[a]);
        assert_eq!((t.slot_of_index(a), t.slot_of_index(b)), (None, Some(slot)));
    }
}
