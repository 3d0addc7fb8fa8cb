//! The node-wide cache of seen ephemeral keys ([docs/fabstir-wire.md §7.1]).
//!
//! Why: the SDK's init carries no freshness (no node nonce, no timestamp), so a captured init
//! replays verbatim on any connection. The cache is keyed on the *decoded* point (its canonical
//! 33-byte compressed form), so re-encodings of the same init (upper-case hex, `0x`, a
//! malleated signature) hit the same entry. Entries live for the key lifetime; the cache is
//! bounded and fails closed (`CAPACITY`) rather than forgetting live entries. Each client
//! address may hold only a share of it, so one client re-keying at a high rate (the SDK sends
//! an init before every prompt) runs into its own quota, not into everyone's capacity.
//!
//! A restart would empty the cache and let every init recorded within the key lifetime in
//! again (and its prompt run again under the victim's address), so the cache can be exported
//! and restored ([`ReplayCache::export`], [`ReplayCache::restore`]): entries carry their
//! remaining lifetime, and the export its wall-clock time, so that a restored entry expires
//! when it would have without the restart.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use crate::crypto::secp256k1::Address;
use crate::time::{Duration, Instant, WallTime};

/// Canonical compressed encoding of an ephemeral public key.
pub(crate) type EphKey = [u8; 33];

/// Why a key does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// The whole cache holds live entries.
    Node,
    /// This client already holds its quota of live entries.
    Client,
}

/// Why an exported state was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RestoreError {
    /// Not a state this version wrote (magic, version, length).
    Malformed,
    /// More live entries than the cache may hold.
    TooMany,
}

/// `"SWRP"`, format version 1.
const MAGIC: [u8; 5] = *b"SWRP\x01";
/// Magic, wall-clock seconds (u64 BE), nanoseconds (u32 BE), entry count (u64 BE).
const HEADER_LEN: usize = 5 + 8 + 4 + 8;
/// Ephemeral key, client address, remaining lifetime in ns (u64 BE).
const ENTRY_LEN: usize = 33 + 20 + 8;

#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct ReplayCache {
    /// Key → (expiry, client).
    seen: BTreeMap<EphKey, (Instant, Address)>,
    /// Expiry order; may hold stale entries for keys removed early.
    order: VecDeque<(Instant, EphKey)>,
    /// Live entries per client address (absent when zero).
    per_client: BTreeMap<Address, usize>,
    capacity: usize,
    per_client_limit: usize,
    ttl: Duration,
    /// Keys recorded so far (inserted or restored): a change means the exported state is stale.
    inserts: u64,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize, per_client_limit: usize, ttl: Duration) -> Self {
        ReplayCache {
            seen: BTreeMap::new(),
            order: VecDeque::new(),
            per_client: BTreeMap::new(),
            capacity,
            per_client_limit,
            ttl,
            inserts: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    /// Keys recorded since the cache was built.
    pub(crate) fn inserts(&self) -> u64 {
        self.inserts
    }

    /// Whether `key` was seen within the key lifetime before `now`.
    pub(crate) fn contains(&self, now: Instant, key: &EphKey) -> bool {
        match self.seen.get(key) {
            Some(&(expires, _)) => expires > now,
            None => false,
        }
    }

    /// Drops entries whose lifetime is over.
    pub(crate) fn evict_expired(&mut self, now: Instant) {
        while let Some(&(expires, key)) = self.order.front() {
            if expires > now {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&key).map(|e| e.0) == Some(expires) {
                self.remove(&key);
            }
        }
    }

    /// Whether one more key of `client` fits (after expiring old ones). The per-client quota
    /// applies only once the cache is half full: a busy client is never refused while there
    /// is plenty of room, and under pressure the clients holding the most wait first.
    pub(crate) fn room_for(&mut self, now: Instant, client: &Address) -> Result<(), Full> {
        self.evict_expired(now);
        if self.seen.len() >= self.capacity {
            return Err(Full::Node);
        }
        let under_pressure = self.seen.len() >= self.capacity / 2;
        if under_pressure
            && self.per_client.get(client).copied().unwrap_or(0) >= self.per_client_limit
        {
            return Err(Full::Client);
        }
        Ok(())
    }

    /// Records `key` for `client` for the key lifetime (the caller checked
    /// [`Self::room_for`] and [`Self::contains`]).
    pub(crate) fn insert(&mut self, now: Instant, key: EphKey, client: Address) {
        self.record(now.saturating_add(self.ttl), key, client);
        self.compact();
    }

    /// Records `key` for `client` until `expires`.
    fn record(&mut self, expires: Instant, key: EphKey, client: Address) {
        if let Some((_, old)) = self.seen.insert(key, (expires, client)) {
            // A re-inserted key (an expired one seen again) no longer counts for its old owner.
            self.uncount(&old);
        }
        let n = self.per_client.entry(client).or_insert(0);
        // At most `seen.len()` entries per client: no overflow.
        *n = n.saturating_add(1);
        self.order.push_back((expires, key));
        // One per init the node accepted: u64 does not wrap in practice; saturate regardless.
        self.inserts = self.inserts.saturating_add(1);
    }

    /// Stale order entries (keys removed by `forget`) are bounded by compaction.
    fn compact(&mut self) {
        if self.order.len() > self.capacity.saturating_mul(2).saturating_add(16) {
            let seen = &self.seen;
            self.order
                .retain(|(expires, k)| seen.get(k).map(|e| e.0) == Some(*expires));
        }
    }

    /// Forgets `key` (an init the embedder rejected or never answered: it never opened a
    /// session, so a later identical init only reaches the embedder again).
    pub(crate) fn forget(&mut self, key: &EphKey) {
        self.remove(key);
    }

    fn remove(&mut self, key: &EphKey) {
        if let Some((_, client)) = self.seen.remove(key) {
            self.uncount(&client);
        }
    }

    fn uncount(&mut self, client: &Address) {
        if let Some(n) = self.per_client.get_mut(client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_client.remove(client);
            }
        }
    }

    /// The live entries with their remaining lifetime at `now`, stamped with the wall-clock
    /// time `wall` of the same moment.
    pub(crate) fn export(&self, now: Instant, wall: WallTime) -> Vec<u8> {
        let live = self.seen.iter().filter(|(_, (expires, _))| *expires > now);
        let count = live.clone().count();
        let mut out =
            Vec::with_capacity(HEADER_LEN.saturating_add(count.saturating_mul(ENTRY_LEN)));
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&wall.secs().to_be_bytes());
        out.extend_from_slice(&wall.subsec_nanos().to_be_bytes());
        out.extend_from_slice(&u64::try_from(count).unwrap_or(u64::MAX).to_be_bytes());
        for (key, (expires, client)) in live {
            out.extend_from_slice(key);
            out.extend_from_slice(client.as_bytes());
            let remaining = expires.saturating_duration_since(now).as_nanos();
            out.extend_from_slice(&u64::try_from(remaining).unwrap_or(u64::MAX).to_be_bytes());
        }
        out
    }

    /// Adds the entries of an [`export`](Self::export) made at wall-clock time `then`, each
    /// living what remained of its lifetime minus the wall-clock time passed since (nothing
    /// when the clock went backwards: an entry then lives longer, never shorter). A key
    /// already present keeps the later expiry. Refused, with nothing changed, when the state
    /// is malformed or holds more live entries than the cache may. Returns the entries added.
    pub(crate) fn restore(
        &mut self,
        now: Instant,
        wall: WallTime,
        state: &[u8],
    ) -> Result<usize, RestoreError> {
        let (header, body) = state
            .split_at_checked(HEADER_LEN)
            .ok_or(RestoreError::Malformed)?;
        let (magic, rest) = header.split_at(MAGIC.len());
        if magic != MAGIC {
            return Err(RestoreError::Malformed);
        }
        let (secs, rest) = rest.split_at(8);
        let (nanos, count) = rest.split_at(4);
        let be64 = |b: &[u8]| b.try_into().map(u64::from_be_bytes);
        let secs = be64(secs).map_err(|_| RestoreError::Malformed)?;
        let nanos = nanos
            .try_into()
            .map(u32::from_be_bytes)
            .map_err(|_| RestoreError::Malformed)?;
        let count = be64(count).map_err(|_| RestoreError::Malformed)?;
        if u64::try_from(body.len()).ok() != count.checked_mul(ENTRY_LEN as u64) {
            return Err(RestoreError::Malformed);
        }
        let elapsed = wall.saturating_duration_since(WallTime::from_unix(secs, nanos));
        let mut entries = Vec::new();
        for entry in body.chunks_exact(ENTRY_LEN) {
            let (key, rest) = entry.split_at(33);
            let (client, remaining) = rest.split_at(20);
            let (Ok(key), Ok(client), Ok(remaining)) = (
                EphKey::try_from(key),
                <[u8; 20]>::try_from(client),
                be64(remaining),
            ) else {
                return Err(RestoreError::Malformed);
            };
            let left = Duration::from_nanos(remaining).saturating_sub(elapsed);
            if left.is_zero() {
                continue; // it would have expired by now
            }
            if entries.len() >= self.capacity {
                return Err(RestoreError::TooMany);
            }
            entries.push((now.saturating_add(left), key, Address(client)));
        }
        self.evict_expired(now);
        let fresh = entries
            .iter()
            .filter(|(expires, key, _)| self.seen.get(key).is_none_or(|(have, _)| *have < *expires))
            .count();
        let new_keys = entries
            .iter()
            .filter(|(_, key, _)| !self.seen.contains_key(key))
            .count();
        if self.seen.len().saturating_add(new_keys) > self.capacity {
            return Err(RestoreError::TooMany);
        }
        for (expires, key, client) in entries {
            if self.seen.get(&key).is_none_or(|(have, _)| *have < expires) {
                self.record(expires, key, client);
            }
        }
        // Restored entries may expire before ones inserted earlier: keep the expiry order.
        let seen = &self.seen;
        let mut order: Vec<(Instant, EphKey)> = self
            .order
            .drain(..)
            .filter(|(expires, k)| seen.get(k).map(|e| e.0) == Some(*expires))
            .collect();
        order.sort_unstable();
        self.order = order.into();
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: Address = Address([0xa1; 20]);
    const BOB: Address = Address([0xb0; 20]);

    #[test]
    fn entries_expire_after_the_key_lifetime_and_capacity_fails_closed() {
        let mut c = ReplayCache::new(2, 2, Duration::from_secs(10));
        let t0 = Instant::from_secs(1);
        assert_eq!(c.room_for(t0, &ALICE), Ok(()));
        c.insert(t0, [1; 33], ALICE);
        c.insert(t0, [2; 33], BOB);
        assert!(c.contains(t0, &[1; 33]));
        assert_eq!(
            c.room_for(t0 + Duration::from_secs(9), &ALICE),
            Err(Full::Node)
        );
        let t1 = t0 + Duration::from_secs(10);
        assert!(!c.contains(t1, &[1; 33]));
        assert_eq!(c.room_for(t1, &ALICE), Ok(()));
        assert_eq!(c.len(), 0);
        assert!(c.per_client.is_empty());
    }

    /// Keys forgotten by the embedder leave stale entries in the expiry queue; compaction keeps
    /// that queue within 2 × capacity + 16 entries whatever the pattern, and never drops a live
    /// key's entry (each live key still expires on time and frees its room).
    #[test]
    fn the_expiry_queue_stays_bounded_and_keeps_live_keys() {
        let cap = 4;
        let mut c = ReplayCache::new(cap, cap, Duration::from_secs(10));
        let t0 = Instant::from_secs(1);
        let bound = 2 * cap + 16;
        // Two live keys, then many forgotten ones behind them.
        c.insert(t0, [1; 33], ALICE);
        c.insert(t0, [2; 33], BOB);
        for i in 0..200u8 {
            c.insert(t0, [i.wrapping_add(3); 33], ALICE);
            c.forget(&[i.wrapping_add(3); 33]);
            assert!(c.order.len() <= bound, "queue {} > {bound}", c.order.len());
        }
        assert_eq!(c.len(), 2);
        assert!(c.contains(t0, &[1; 33]) && c.contains(t0, &[2; 33]));
        // Fill the cache, then let everything expire: all its room comes back.
        c.insert(t0, [250; 33], BOB);
        c.insert(t0, [251; 33], BOB);
        assert_eq!(c.room_for(t0, &ALICE), Err(Full::Node));
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(c.room_for(t1, &ALICE), Ok(()));
        assert_eq!(c.len(), 0, "every live key expired through the queue");
    }

    #[test]
    fn forgotten_keys_do_not_count() {
        let mut c = ReplayCache::new(1, 1, Duration::from_secs(10));
        c.insert(Instant::ZERO, [1; 33], ALICE);
        c.forget(&[1; 33]);
        assert!(!c.contains(Instant::ZERO, &[1; 33]));
        assert_eq!(c.room_for(Instant::ZERO, &ALICE), Ok(()));
    }

    #[test]
    fn the_quota_applies_only_once_the_cache_is_half_full() {
        let mut c = ReplayCache::new(10, 2, Duration::from_secs(10));
        for i in 0..4u8 {
            assert_eq!(c.room_for(Instant::ZERO, &ALICE), Ok(()), "entry {i}");
            c.insert(Instant::ZERO, [i; 33], ALICE);
        }
        // 4 of 10: still room for anyone, quota or not.
        assert_eq!(c.room_for(Instant::ZERO, &ALICE), Ok(()));
        c.insert(Instant::ZERO, [4; 33], ALICE);
        // 5 of 10: half full; Alice is over her quota of 2, Bob is not.
        assert_eq!(c.room_for(Instant::ZERO, &ALICE), Err(Full::Client));
        assert_eq!(c.room_for(Instant::ZERO, &BOB), Ok(()));
    }

    #[test]
    fn one_client_fills_only_its_quota_and_gets_it_back_as_entries_expire() {
        let mut c = ReplayCache::new(6, 3, Duration::from_secs(10));
        for i in 0..3u8 {
            assert_eq!(c.room_for(Instant::from_secs(u64::from(i)), &ALICE), Ok(()));
            c.insert(Instant::from_secs(u64::from(i)), [i; 33], ALICE);
        }
        assert_eq!(c.room_for(Instant::from_secs(3), &ALICE), Err(Full::Client));
        // Everyone else still gets in.
        assert_eq!(c.room_for(Instant::from_secs(3), &BOB), Ok(()));
        c.insert(Instant::from_secs(3), [9; 33], BOB);
        // Alice's first entry expires at 10 s: room for exactly one more.
        assert_eq!(c.room_for(Instant::from_secs(10), &ALICE), Ok(()));
        c.insert(Instant::from_secs(10), [5; 33], ALICE);
        assert_eq!(
            c.room_for(Instant::from_secs(10), &ALICE),
            Err(Full::Client)
        );
        // Forgetting one of hers frees one.
        c.forget(&[5; 33]);
        assert_eq!(c.room_for(Instant::from_secs(10), &ALICE), Ok(()));
        assert_eq!(c.per_client.get(&ALICE), Some(&2));
        assert_eq!(c.per_client.get(&BOB), Some(&1));
    }
}

#[cfg(test)]
mod state {
    //! Export and restore across a restart (the clock of the new process starts again).
    use super::*;

    const ALICE: Address = Address([0xa1; 20]);
    const BOB: Address = Address([0xb0; 20]);
    const W0: WallTime = WallTime::from_unix(1_700_000_000, 500);

    fn cache(capacity: usize) -> ReplayCache {
        ReplayCache::new(capacity, capacity, Duration::from_secs(100))
    }

    /// Restoring a state into a cache that already holds the same entries (same keys, same
    /// expiry) changes nothing and reports nothing added; a state that fills the cache
    /// exactly is accepted.
    #[test]
    fn restoring_what_is_already_held_adds_nothing_and_an_exact_fit_is_accepted() {
        let t = Instant::from_secs(1_000);
        let mut a = cache(2);
        a.insert(t, [1; 33], ALICE);
        a.insert(t, [2; 33], BOB);
        let state = a.export(t, W0);
        // Into an empty cache of exactly that capacity.
        let mut b = cache(2);
        assert_eq!(b.restore(t, W0, &state), Ok(2));
        let (len, inserts, queued) = (b.len(), b.inserts(), b.order.len());
        // Again, at the same instant and wall time: the same expiries.
        assert_eq!(b.restore(t, W0, &state), Ok(0));
        assert_eq!(
            (b.len(), b.inserts(), b.order.len()),
            (len, inserts, queued)
        );
    }

    /// An entry whose lifetime ends at the export's instant is not exported (a state holds
    /// live entries only: its length is the header plus one entry per live key).
    #[test]
    fn an_export_holds_only_entries_still_alive() {
        let mut c = cache(8);
        let t0 = Instant::from_secs(1);
        c.insert(t0, [1; 33], ALICE);
        c.insert(t0 + Duration::from_secs(1), [2; 33], BOB);
        let end_of_first = t0 + Duration::from_secs(100);
        assert_eq!(c.export(end_of_first, W0).len(), HEADER_LEN + ENTRY_LEN);
        assert_eq!(
            c.export(end_of_first - Duration::from_nanos(1), W0).len(),
            HEADER_LEN + 2 * ENTRY_LEN
        );
    }

    #[test]
    fn restored_entries_live_out_their_remaining_lifetime_and_no_longer() {
        let mut a = cache(8);
        a.insert(Instant::from_secs(1_000), [1; 33], ALICE); // expires at 1 100
        a.insert(Instant::from_secs(1_040), [2; 33], BOB); // expires at 1 140
        a.insert(Instant::from_secs(1_000), [3; 33], BOB);
        a.forget(&[3; 33]);
        // Exported at 1 050: 50 s and 90 s left; the forgotten key is not in it.
        let state = a.export(Instant::from_secs(1_050), W0);
        assert_eq!(state.len(), HEADER_LEN + 2 * ENTRY_LEN);

        // The new process starts 20 s of wall-clock time later, its clock at 5 s.
        let mut b = cache(8);
        let t = Instant::from_secs(5);
        let w = W0.saturating_add(Duration::from_secs(20));
        assert_eq!(b.restore(t, w, &state), Ok(2));
        assert_eq!(b.inserts(), 2);
        assert!(b.contains(t, &[1; 33]) && b.contains(t, &[2; 33]));
        assert!(!b.contains(t, &[3; 33]));
        // 30 s and 70 s were left.
        assert!(b.contains(t + Duration::from_secs(29), &[1; 33]));
        assert!(!b.contains(t + Duration::from_secs(30), &[1; 33]));
        assert!(b.contains(t + Duration::from_secs(69), &[2; 33]));
        b.evict_expired(t + Duration::from_secs(70));
        assert_eq!(b.len(), 0);
        assert!(b.per_client.is_empty());
        assert_eq!(b.room_for(t, &ALICE), Ok(()));

        // Restored after the whole lifetime: nothing is left to restore.
        let mut c = cache(8);
        let late = W0.saturating_add(Duration::from_secs(90));
        assert_eq!(c.restore(t, late, &state), Ok(0));
        // A wall clock that went backwards counts as no time passed (fail safe).
        let mut d = cache(8);
        let before = WallTime::from_unix(1_600_000_000, 0);
        assert_eq!(d.restore(t, before, &state), Ok(2));
        assert!(d.contains(t + Duration::from_secs(89), &[2; 33]));
    }

    #[test]
    fn a_restore_merges_keeps_the_expiry_order_and_fails_closed() {
        let mut a = cache(4);
        a.insert(Instant::from_secs(10), [1; 33], ALICE); // expires at 110
        let state = a.export(Instant::from_secs(10), W0); // 100 s left
        let mut b = cache(4);
        b.insert(Instant::ZERO, [9; 33], BOB); // expires at 100
        b.insert(Instant::ZERO, [1; 33], ALICE); // expires at 100: the state's is later
        assert_eq!(b.restore(Instant::from_secs(50), W0, &state), Ok(1));
        assert!(b.contains(Instant::from_secs(149), &[1; 33]));
        assert_eq!(b.per_client.get(&ALICE), Some(&1));
        // The key expiring first is evicted first, whatever the order of arrival.
        b.evict_expired(Instant::from_secs(100));
        assert_eq!(b.len(), 1);
        assert!(b.contains(Instant::from_secs(100), &[1; 33]));

        // More live entries than the cache holds: refused, nothing changed.
        let mut full = cache(1);
        full.insert(Instant::ZERO, [7; 33], BOB);
        assert_eq!(
            full.restore(Instant::ZERO, W0, &state),
            Err(RestoreError::TooMany)
        );
        assert_eq!((full.len(), full.inserts()), (1, 1));
        let mut big = cache(8);
        for k in 0..3u8 {
            big.insert(Instant::ZERO, [k; 33], ALICE);
        }
        let three = big.export(Instant::ZERO, W0);
        assert_eq!(
            cache(2).restore(Instant::ZERO, W0, &three),
            Err(RestoreError::TooMany)
        );

        // Anything that is not a state of this version.
        let mut c = cache(4);
        for bad in [
            &b""[..],
            &state[..HEADER_LEN - 1],
            &state[..state.len() - 1],
            &[state.as_slice(), &[0]].concat(),
            &[&b"SWRP\x02"[..], &state[5..]].concat(),
        ] {
            assert_eq!(
                c.restore(Instant::ZERO, W0, bad),
                Err(RestoreError::Malformed)
            );
        }
        assert_eq!(c.len(), 0);
    }
}

#[cfg(test)]
mod quota_model {
    use super::*;
    use alloc::collections::BTreeMap;

    /// The per-client counts always equal a recount of the live table, whatever mix of
    /// inserts (fresh, re-inserted after expiry, re-inserted after `forget`), forgets,
    /// expiry, compaction and times that step backwards.
    #[test]
    fn per_client_counts_equal_a_recount_under_random_operations() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let clients = [Address([1; 20]), Address([2; 20]), Address([3; 20])];
        let mut c = ReplayCache::new(8, 4, Duration::from_secs(5));
        let mut now = Instant::from_secs(100);
        for step in 0..20_000 {
            let r = next();
            match r % 6 {
                0 => now += Duration::from_millis(r % 3000),
                1 => {
                    now =
                        Instant::from_nanos(now.as_nanos().saturating_sub((r >> 8) % 2_000_000_000))
                }
                2 | 3 => {
                    let key = [(r >> 16) as u8 % 12; 33];
                    let client = clients[((r >> 24) % 3) as usize];
                    if !c.contains(now, &key) && c.room_for(now, &client).is_ok() {
                        c.insert(now, key, client);
                    }
                }
                4 => c.forget(&[(r >> 16) as u8 % 12; 33]),
                _ => c.evict_expired(now),
            }
            let mut recount: BTreeMap<Address, usize> = BTreeMap::new();
            for (_, client) in c.seen.values() {
                *recount.entry(*client).or_insert(0) += 1;
            }
            assert_eq!(c.per_client, recount, "step {step}");
            assert!(
                c.order.len() <= 2 * 8 + 16 + 1,
                "step {step}: order {}",
                c.order.len()
            );
        }
    }
}
