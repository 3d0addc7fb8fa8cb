//! The node-wide cache of seen ephemeral keys (spec §7.1).
//!
//! Why: the SDK's init carries no freshness (no node nonce, no timestamp), so a captured init
//! replays verbatim on any connection. The cache is keyed on the *decoded* point (its canonical
//! 33-byte compressed form), so re-encodings of the same init (upper-case hex, `0x`, a
//! malleated signature) hit the same entry. Entries live for the key lifetime; the cache is
//! bounded and fails closed (`CAPACITY`) rather than forgetting live entries.

use alloc::collections::{BTreeMap, VecDeque};

use crate::time::{Duration, Instant};

/// Canonical compressed encoding of an ephemeral public key.
pub(crate) type EphKey = [u8; 33];

pub(crate) struct ReplayCache {
    seen: BTreeMap<EphKey, Instant>,
    /// Insertion order for expiry; may hold stale entries for keys removed early.
    order: VecDeque<(Instant, EphKey)>,
    capacity: usize,
    ttl: Duration,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        ReplayCache {
            seen: BTreeMap::new(),
            order: VecDeque::new(),
            capacity,
            ttl,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether `key` was seen within the key lifetime before `now`.
    pub(crate) fn contains(&self, now: Instant, key: &EphKey) -> bool {
        match self.seen.get(key) {
            Some(&at) => at + self.ttl > now,
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
            if self.seen.get(&key) == Some(&at) {
                self.seen.remove(&key);
            }
        }
    }

    /// Whether one more key fits (after expiring old ones).
    pub(crate) fn has_room(&mut self, now: Instant) -> bool {
        self.evict_expired(now);
        self.seen.len() < self.capacity
    }

    /// Records `key` (the caller checked [`Self::has_room`] and [`Self::contains`]).
    pub(crate) fn insert(&mut self, now: Instant, key: EphKey) {
        self.seen.insert(key, now);
        self.order.push_back((now, key));
        // Stale order entries (keys removed by `forget`) are bounded by compaction.
        if self.order.len() > self.capacity.saturating_mul(2).saturating_add(16) {
            let seen = &self.seen;
            self.order.retain(|(at, k)| seen.get(k) == Some(at));
        }
    }

    /// Forgets `key` (an init the embedder rejected or never answered: it never opened a
    /// session, so a later identical init only reaches the embedder again).
    pub(crate) fn forget(&mut self, key: &EphKey) {
        self.seen.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_key_lifetime_and_capacity_fails_closed() {
        let mut c = ReplayCache::new(2, Duration::from_secs(10));
        let t0 = Instant::from_secs(1);
        assert!(c.has_room(t0));
        c.insert(t0, [1; 33]);
        c.insert(t0, [2; 33]);
        assert!(c.contains(t0, &[1; 33]));
        assert!(!c.has_room(t0 + Duration::from_secs(9)));
        let t1 = t0 + Duration::from_secs(10);
        assert!(!c.contains(t1, &[1; 33]));
        assert!(c.has_room(t1));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn forgotten_keys_do_not_count() {
        let mut c = ReplayCache::new(1, Duration::from_secs(10));
        c.insert(Instant::ZERO, [1; 33]);
        c.forget(&[1; 33]);
        assert!(!c.contains(Instant::ZERO, &[1; 33]));
        assert!(c.has_room(Instant::ZERO));
    }
}
