//! The node-wide cache of seen ephemeral keys ([docs/fabstir-wire.md §7.1]).
//!
//! Why: the SDK's init carries no freshness (no node nonce, no timestamp), so a captured init
//! replays verbatim on any connection. The cache is keyed on the *decoded* point (its canonical
//! 33-byte compressed form), so re-encodings of the same init (upper-case hex, `0x`, a
//! malleated signature) hit the same entry. Entries live for the key lifetime; the cache is
//! bounded and fails closed (`CAPACITY`) rather than forgetting live entries. Each client
//! address may hold only a share of it, so one client re-keying at a high rate (the SDK sends
//! an init before every prompt) runs into its own quota, not into everyone's capacity.

use alloc::collections::{BTreeMap, VecDeque};

use crate::crypto::secp256k1::Address;
use crate::time::{Duration, Instant};

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

pub(crate) struct ReplayCache {
    seen: BTreeMap<EphKey, (Instant, Address)>,
    /// Insertion order for expiry; may hold stale entries for keys removed early.
    order: VecDeque<(Instant, EphKey)>,
    /// Live entries per client address (absent when zero).
    per_client: BTreeMap<Address, usize>,
    capacity: usize,
    per_client_limit: usize,
    ttl: Duration,
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
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether `key` was seen within the key lifetime before `now`.
    pub(crate) fn contains(&self, now: Instant, key: &EphKey) -> bool {
        match self.seen.get(key) {
            Some(&(at, _)) => at + self.ttl > now,
            None => false,
        }
    }

    /// Drops entries older than the key lifetime.
    pub(crate) fn evict_expired(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.order.front() {
            if at + self.ttl > now {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&key).map(|e| e.0) == Some(at) {
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

    /// Records `key` for `client` (the caller checked [`Self::room_for`] and
    /// [`Self::contains`]).
    pub(crate) fn insert(&mut self, now: Instant, key: EphKey, client: Address) {
        if let Some((_, old)) = self.seen.insert(key, (now, client)) {
            // A re-inserted key (an expired one seen again) no longer counts for its old owner.
            self.uncount(&old);
        }
        *self.per_client.entry(client).or_insert(0) += 1;
        self.order.push_back((now, key));
        // Stale order entries (keys removed by `forget`) are bounded by compaction.
        if self.order.len() > self.capacity.saturating_mul(2).saturating_add(16) {
            let seen = &self.seen;
            self.order
                .retain(|(at, k)| seen.get(k).map(|e| e.0) == Some(*at));
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
