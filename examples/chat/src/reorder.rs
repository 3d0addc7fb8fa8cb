//! Messages shown in the order their sender sent them.
//!
//! The chat machine opens a frame whenever it arrives (within its skipped-key window), and
//! relays deliver each sender's frames in order, except around a fail-over: when the
//! recipient's node dies, the sending node publishes its copies of unacknowledged frames again
//! after the recipient rejoins, and frames sent since may arrive before them. A sender's
//! frames carry consecutive counters in each epoch (in their clear header), so the app holds
//! a frame that comes after a gap, unopened and unacknowledged, until the gap is filled or
//! until [`Reorder::deadline`] passes (a message the sender was told failed, or one lost
//! beyond every copy), then hands over what it holds in order.
//!
//! ```
//! use chat_examples::reorder::Reorder;
//! use std::time::{Duration, Instant};
//! let t0 = Instant::now();
//! let mut r = Reorder::new(Duration::from_secs(2));
//! assert_eq!(r.push(t0, 0, 0, "a"), ["a"]);
//! assert!(r.push(t0, 0, 2, "c").is_empty()); // 1 is missing: held
//! assert_eq!(r.push(t0, 0, 1, "b"), ["b", "c"]);
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A sender's messages, released in (epoch, counter) order (see the module documentation).
#[derive(Debug)]
pub struct Reorder<T> {
    /// The (epoch, counter) expected next, once a message was shown.
    expected: Option<(u32, u64)>,
    held: BTreeMap<(u32, u64), T>,
    /// When what is held is shown anyway.
    until: Option<Instant>,
    hold: Duration,
}

impl<T> Reorder<T> {
    /// Holds a message after a gap for at most `hold`.
    pub fn new(hold: Duration) -> Self {
        Reorder {
            expected: None,
            held: BTreeMap::new(),
            until: None,
            hold,
        }
    }

    /// Message `counter` of `epoch` was opened: returns what may be shown now, in order.
    pub fn push(&mut self, now: Instant, epoch: u32, counter: u64, item: T) -> Vec<T> {
        let key = (epoch, counter);
        let in_order = match self.expected {
            None => true,
            Some(next) if key == next => true,
            // Late (it was given up on, or an older epoch's frame in its grace): show it.
            Some(next) if key < next => return vec![item],
            // The sender's next epoch, from its start, with nothing held before it.
            Some((e, _)) => {
                epoch > e && counter == 0 && self.held.keys().next().is_none_or(|k| *k > key)
            }
        };
        if !in_order {
            self.held.insert(key, item);
            self.until.get_or_insert(now + self.hold);
            return Vec::new();
        }
        let mut out = vec![item];
        self.expected = Some((epoch, counter.saturating_add(1)));
        self.release_consecutive(&mut out);
        out
    }

    /// The sender's frames go on from `(epoch, counter)` at the earliest (a new epoch is up,
    /// its chains start at 0): what comes before it is late from now on, and what follows it
    /// waits for it. Never moves back. Returns what may be handed over now, in order (the late
    /// ones held so far first).
    ///
    /// ```
    /// use chat_examples::reorder::Reorder;
    /// use std::time::{Duration, Instant};
    /// let t0 = Instant::now();
    /// let mut r = Reorder::new(Duration::from_secs(3));
    /// assert!(r.expect_at_least(5, 0).is_empty()); // epoch 5 is up
    /// assert!(r.push(t0, 5, 1, "b").is_empty()); // 0 has not come: held
    /// assert_eq!(r.push(t0, 5, 0, "a"), ["a", "b"]);
    /// ```
    pub fn expect_at_least(&mut self, epoch: u32, counter: u64) -> Vec<T> {
        let key = (epoch, counter);
        if self.expected.is_some_and(|e| e >= key) {
            return Vec::new();
        }
        self.expected = Some(key);
        let later = self.held.split_off(&key);
        let mut out: Vec<T> = std::mem::replace(&mut self.held, later)
            .into_values()
            .collect();
        self.release_consecutive(&mut out);
        out
    }

    /// What is held, in order.
    pub fn held(&self) -> impl Iterator<Item = &T> {
        self.held.values()
    }

    /// What is held, in order, to change in place.
    pub fn held_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.held.values_mut()
    }

    /// When [`Reorder::expire`] should be called, while something is held.
    pub fn deadline(&self) -> Option<Instant> {
        self.until
    }

    /// At or after the deadline: everything held, in order (the gap is given up on).
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        if self.until.is_none_or(|t| now < t) {
            return Vec::new();
        }
        self.until = None;
        let held = std::mem::take(&mut self.held);
        let mut out = Vec::with_capacity(held.len());
        for ((epoch, counter), item) in held {
            self.expected = Some((epoch, counter.saturating_add(1)));
            out.push(item);
        }
        out
    }

    fn release_consecutive(&mut self, out: &mut Vec<T>) {
        while let Some(next) = self.expected {
            let Some(item) = self.held.remove(&next) else {
                break;
            };
            out.push(item);
            self.expected = Some((next.0, next.1.saturating_add(1)));
        }
        if self.held.is_empty() {
            self.until = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_holds_later_messages_until_it_fills_or_the_deadline() {
        let t0 = Instant::now();
        let hold = Duration::from_secs(2);
        let mut r = Reorder::new(hold);
        assert_eq!(
            r.push(t0, 3, 10, 10),
            [10],
            "the first message sets the start"
        );
        assert!(r.push(t0, 3, 13, 13).is_empty());
        assert!(r.push(t0, 3, 12, 12).is_empty());
        assert_eq!(r.deadline(), Some(t0 + hold));
        assert_eq!(r.push(t0, 3, 11, 11), [11, 12, 13]);
        assert_eq!(r.deadline(), None);
        // 14 never comes: 15 and 16 are shown at the deadline, in order.
        assert!(r.push(t0, 3, 16, 16).is_empty());
        assert!(r.push(t0, 3, 15, 15).is_empty());
        assert!(r.expire(t0 + hold - Duration::from_millis(1)).is_empty());
        assert_eq!(r.expire(t0 + hold), [15, 16]);
        assert_eq!(r.push(t0, 3, 17, 17), [17]);
        // A late one is shown at once.
        assert_eq!(r.push(t0, 3, 14, 14), [14]);
    }

    #[test]
    fn a_new_epoch_from_its_start_goes_on_and_a_later_start_waits() {
        let t0 = Instant::now();
        let mut r = Reorder::new(Duration::from_secs(1));
        assert_eq!(r.push(t0, 0, 0, "e0c0"), ["e0c0"]);
        assert_eq!(r.push(t0, 1, 0, "e1c0"), ["e1c0"]);
        assert!(
            r.push(t0, 2, 1, "e2c1").is_empty(),
            "epoch 2's first message is missing"
        );
        assert_eq!(r.push(t0, 2, 0, "e2c0"), ["e2c0", "e2c1"]);
        // An old epoch's frame in its grace is shown at once.
        assert_eq!(r.push(t0, 1, 1, "e1c1"), ["e1c1"]);
    }
}
