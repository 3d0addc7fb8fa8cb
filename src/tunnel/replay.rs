//! The anti-replay sliding window (RFC 6479 style bitmap, sized like the Linux kernel's).
//!
//! Why: transport counters are nonces; accepting one twice would let an attacker replay
//! packets into the tunnel. Packets may still arrive out of order, so we remember the last
//! [`WINDOW_SIZE`] counters below the highest one seen. Checking is split from marking so a
//! packet is only marked after its tag verified: a forged packet cannot move the window.

/// Bits of the ring; one word is kept as slack so a whole word can be cleared at once.
const BITS_TOTAL: u64 = 8192;
const WORDS: usize = (BITS_TOTAL / 64) as usize;

/// Counters at most this far below the highest accepted one are still accepted once (8128,
/// the kernel's and wireguard-go's value).
pub const WINDOW_SIZE: u64 = BITS_TOTAL - 64;

/// Sliding window over received counters.
#[derive(Clone, Debug)]
pub(crate) struct ReplayWindow {
    /// Highest accepted counter + 1 (0 = nothing received yet).
    next: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            next: 0,
            bits: [0; WORDS],
        }
    }
}

impl ReplayWindow {
    /// Whether `counter` would be accepted (does not change the window).
    pub(crate) fn check(&self, counter: u64) -> bool {
        let c = counter.saturating_add(1);
        if c.saturating_add(WINDOW_SIZE) < self.next {
            return false;
        }
        if c > self.next {
            return true;
        }
        let word = ((c >> 6) as usize) % WORDS;
        let bit = 1u64 << (c & 63);
        self.bits.get(word).is_some_and(|w| w & bit == 0)
    }

    /// Marks `counter` as received; returns `false` (and changes nothing) if it is a replay
    /// or too old.
    pub(crate) fn update(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        let c = counter.saturating_add(1);
        if c > self.next {
            let cur = self.next >> 6;
            let new = c >> 6;
            // `c > next`, so `new >= cur`; the ring index wraps with the counter (WORDS
            // divides 2^64).
            let clear = new.saturating_sub(cur).min(WORDS as u64);
            for i in 1..=clear {
                let idx = (cur.wrapping_add(i) as usize) % WORDS;
                if let Some(w) = self.bits.get_mut(idx) {
                    *w = 0;
                }
            }
            self.next = c;
        }
        let word = ((c >> 6) as usize) % WORDS;
        if let Some(w) = self.bits.get_mut(word) {
            *w |= 1u64 << (c & 63);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_out_of_order_and_replays() {
        let mut w = ReplayWindow::default();
        assert!(w.update(0));
        assert!(!w.update(0));
        assert!(w.update(5));
        assert!(w.update(3));
        assert!(!w.update(3));
        assert!(!w.update(5));
        assert!(w.update(1));
    }

    #[test]
    fn window_edge_is_8128() {
        let mut w = ReplayWindow::default();
        assert!(w.update(10_000));
        assert!(w.check(10_000 - WINDOW_SIZE + 1));
        assert!(w.check(10_000 - WINDOW_SIZE));
        assert!(!w.check(10_000 - WINDOW_SIZE - 1));
        assert!(w.update(10_000 - WINDOW_SIZE));
        assert!(!w.update(10_000 - WINDOW_SIZE));
    }

    #[test]
    fn big_jump_clears_old_bits() {
        let mut w = ReplayWindow::default();
        for c in 0..200 {
            assert!(w.update(c));
        }
        assert!(w.update(1_000_000));
        for c in 1_000_000 - 100..1_000_000 {
            assert!(w.update(c), "{c}");
        }
        assert!(!w.update(150));
    }

    #[test]
    fn model_check_against_a_set() {
        // Independent model: a set of seen counters plus the window rule.
        let mut w = ReplayWindow::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut max: Option<u64> = None;
        let mut x: u64 = 0x1234_5678;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = max.unwrap_or(0);
            let c = (base + (x % 9000)).saturating_sub(8500);
            let too_old = max.is_some_and(|m| c + WINDOW_SIZE < m);
            let expect = !too_old && !seen.contains(&c);
            assert_eq!(w.update(c), expect, "counter {c} max {max:?}");
            if expect {
                seen.insert(c);
                max = Some(max.map_or(c, |m| m.max(c)));
            }
        }
    }
}
