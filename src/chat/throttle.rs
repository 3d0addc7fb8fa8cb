//! The rekey/handshake throttle: at most `max` events in any sliding `period`. One type serves
//! both ends of the chat protocol: a [`Chat`](crate::chat::Chat) counts the rekey handshakes it
//! starts or answers (and, separately, the confirmations it repeats for a retransmitted message
//! 3), and the keyless [relay](crate::chat::relay) counts the handshake-initiation frames of each
//! chat it routes.
//!
//! Why a sliding window of timestamps rather than a token bucket: the limit is small (3 rekeys,
//! 6 handshake frames) and must hold over *every* period, so a burst right after a quiet spell
//! cannot exceed it; keeping the last `max` instants is exact and costs `8 × max` bytes.

use alloc::vec::Vec;

use crate::time::{Duration, Instant};

/// A sliding-window rate limit over the last `max` events.
#[derive(Clone, Debug)]
pub(crate) struct Throttle {
    max: u32,
    period: Duration,
    /// The most recent events (at most `max`), in no particular order.
    log: Vec<Instant>,
}

impl Throttle {
    /// A throttle that allows `max` events per sliding `period`.
    pub(crate) const fn new(max: u32, period: Duration) -> Self {
        Throttle {
            max,
            period,
            log: Vec::new(),
        }
    }

    /// Whether one more event at `now` stays within the limit.
    pub(crate) fn allows(&self, now: Instant) -> bool {
        let recent = self
            .log
            .iter()
            .filter(|t| now < t.saturating_add(self.period))
            .count();
        recent < self.max as usize
    }

    /// The earliest instant at which [`Throttle::allows`] holds again (`Instant::ZERO` when
    /// it holds at any time).
    pub(crate) fn free_at(&self) -> Instant {
        if self.log.len() < self.max as usize {
            return Instant::ZERO;
        }
        // The log holds exactly the last `max` events: one more fits once the oldest expires.
        self.log
            .iter()
            .min()
            .map_or(Instant::ZERO, |t| t.saturating_add(self.period))
    }

    /// Records an event at `now`; the oldest is forgotten once `max` are kept.
    pub(crate) fn record(&mut self, now: Instant) {
        if self.log.len() >= self.max as usize {
            if let Some(oldest) = self
                .log
                .iter()
                .enumerate()
                .min_by_key(|(_, t)| **t)
                .map(|(i, _)| i)
            {
                self.log.swap_remove(oldest);
            }
        }
        self.log.push(now);
    }

    /// Records an event at `now` if the limit allows it; returns whether it did.
    pub(crate) fn try_record(&mut self, now: Instant) -> bool {
        let ok = self.allows(now);
        if ok {
            self.record(now);
        }
        ok
    }

    /// The recorded events (for sealing a chat's state).
    pub(crate) fn events(&self) -> impl Iterator<Item = Instant> + '_ {
        self.log.iter().copied()
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.log
            .capacity()
            .saturating_mul(core::mem::size_of::<Instant>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_max_events_per_sliding_period() {
        let mut t = Throttle::new(2, Duration::from_secs(10));
        let s = Instant::from_secs;
        assert!(t.try_record(s(1)) && t.try_record(s(5)));
        assert!(!t.try_record(s(6)));
        assert_eq!(t.free_at(), s(11));
        assert!(!t.allows(s(10)) && t.allows(s(11)));
        assert!(t.try_record(s(11)));
        assert!(!t.allows(s(14)));
        assert_eq!(t.free_at(), s(15));
        assert_eq!(t.events().count(), 2, "never more than max kept");
    }

    #[test]
    fn free_at_is_zero_until_the_limit_is_reached() {
        let mut t = Throttle::new(3, Duration::from_secs(30));
        t.record(Instant::from_secs(100));
        assert_eq!(t.free_at(), Instant::ZERO);
    }
}
