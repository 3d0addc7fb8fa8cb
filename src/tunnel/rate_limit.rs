//! The handshake rate limits: the one global limiter that decides when the device is "under
//! load" (and so demands cookies), and the per-source token buckets that still apply to a
//! source that proved its address with a cookie.
//!
//! Why: a handshake costs the responder four X25519 operations. Cookies stop spoofed floods
//! (see [`cookie`](super::cookie)); the per-source limit stops one real host from taking every
//! handshake the responder can afford.

use crate::time::{Duration, Instant};
use alloc::collections::BTreeMap;
use core::net::{IpAddr, Ipv6Addr};

/// The one global handshake rate limiter: counts handshake messages per one-second window.
/// More than `limit` in the current window ⇒ under load until the window after next.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct RateLimiter {
    limit: u32,
    window_start: Instant,
    count: u32,
    under_load_until: Instant,
}

impl RateLimiter {
    pub(crate) fn new(limit: u32) -> Self {
        RateLimiter {
            limit,
            window_start: Instant::ZERO,
            count: 0,
            under_load_until: Instant::ZERO,
        }
    }

    /// Records one handshake message and returns whether we are under load.
    pub(crate) fn record(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        if self.count > self.limit {
            // Stay under load for a second after the flood stops (wireguard-go does the same).
            self.under_load_until = now.saturating_add(Duration::from_secs(1));
        }
        now < self.under_load_until
    }
}

/// Handshakes per second one source may send under load, even with a valid cookie.
pub(crate) const SOURCE_PACKETS_PER_SECOND: u64 = 20;
/// Burst allowance of the per-source limiter.
pub(crate) const SOURCE_BURST: u64 = 5;
const COST_NS: u64 = 1_000_000_000 / SOURCE_PACKETS_PER_SECOND;
const BUCKET_NS: u64 = COST_NS * SOURCE_BURST;

/// Per-source token buckets (the kernel's ratelimiter.c): under load, a source that proved
/// its address with a cookie still gets at most 20 handshakes per second (burst 5), so one
/// real host cannot monopolise the responder. IPv6 sources are grouped by /64.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct SourceLimiter {
    buckets: BTreeMap<IpAddr, (u64, Instant)>,
    capacity: usize,
}

impl SourceLimiter {
    pub(crate) fn new(capacity: usize) -> Self {
        SourceLimiter {
            buckets: BTreeMap::new(),
            capacity,
        }
    }

    /// Takes one token for `ip`; `false` if it has none left or the table is full of
    /// active sources (fail closed).
    pub(crate) fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        let key = match ip {
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !((1u128 << 64) - 1))),
            v4 => v4,
        };
        if let Some((tokens, last)) = self.buckets.get_mut(&key) {
            let refill =
                u64::try_from(now.saturating_duration_since(*last).as_nanos()).unwrap_or(u64::MAX);
            *tokens = tokens.saturating_add(refill).min(BUCKET_NS);
            *last = now;
            if *tokens >= COST_NS {
                *tokens = tokens.saturating_sub(COST_NS);
                return true;
            }
            return false;
        }
        if self.buckets.len() >= self.capacity {
            // Forget sources whose bucket has refilled completely: they are idle.
            self.buckets.retain(|_, (t, last)| {
                let idle = u64::try_from(now.saturating_duration_since(*last).as_nanos())
                    .unwrap_or(u64::MAX);
                t.saturating_add(idle) < BUCKET_NS
            });
            if self.buckets.len() >= self.capacity {
                return false;
            }
        }
        self.buckets.insert(key, (BUCKET_NS - COST_NS, now));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_limiter_allows_burst_then_twenty_per_second() {
        let mut l = SourceLimiter::new(2);
        let t = Instant::from_secs(1);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            assert!(l.allow(t, a));
        }
        assert!(!l.allow(t, a));
        assert!(!l.allow(t + Duration::from_millis(49), a));
        assert!(l.allow(t + Duration::from_millis(50), a));
        // Same /64 shares a bucket.
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let c: IpAddr = "2001:db8::2".parse().unwrap();
        for _ in 0..5 {
            assert!(l.allow(t, b));
        }
        assert!(!l.allow(t, c));
        // Table full of active sources: a new one is refused; once idle they are forgotten.
        assert!(!l.allow(t, "198.51.100.1".parse().unwrap()));
        assert!(l.allow(t + Duration::from_secs(2), "198.51.100.1".parse().unwrap()));
    }

    #[test]
    fn rate_limiter_switches_to_load() {
        let mut rl = RateLimiter::new(2);
        let t = Instant::from_secs(10);
        assert!(!rl.record(t));
        assert!(!rl.record(t));
        assert!(rl.record(t));
        assert!(rl.record(t + Duration::from_millis(500)));
        assert!(!rl.record(t + Duration::from_secs(3)));
    }

    /// An IPv6 source is limited by its /64: every address in it shares one bucket, an
    /// address of the next /64 has its own (a table with room, so no refusal comes from a
    /// full table).
    #[test]
    fn ipv6_sources_share_a_bucket_per_64() {
        let mut l = SourceLimiter::new(16);
        let t = Instant::from_secs(1);
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        for _ in 0..5 {
            assert!(l.allow(t, ip("2001:db8:0:7::1")));
        }
        for same in [
            "2001:db8:0:7::2",
            "2001:db8:0:7:ffff:ffff:ffff:ffff",
            "2001:db8:0:7::",
        ] {
            assert!(!l.allow(t, ip(same)), "{same} is in the exhausted /64");
        }
        for other in ["2001:db8:0:6::1", "2001:db8:0:8::1", "2001:db9:0:7::1"] {
            assert!(l.allow(t, ip(other)), "{other} is another /64");
        }
        // IPv4 sources are limited one address at a time.
        for _ in 0..5 {
            assert!(l.allow(t, ip("192.0.2.7")));
        }
        assert!(!l.allow(t, ip("192.0.2.7")));
        assert!(l.allow(t, ip("192.0.2.8")));
    }

    /// A full table forgets a source the moment its bucket is full again (idle), not before.
    #[test]
    fn a_source_is_forgotten_exactly_when_its_bucket_is_full() {
        let mut l = SourceLimiter::new(1);
        let t = Instant::from_secs(1);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert!(l.allow(t, a)); // a's bucket: one token short of full
        let refilled = t + Duration::from_nanos(COST_NS);
        assert!(
            !l.allow(refilled - Duration::from_nanos(1), b),
            "a is still active"
        );
        assert!(l.allow(refilled, b), "a's bucket is full: a is forgotten");
    }
}
