//! The device's timer schedule: one ordered set of `(deadline, slot)`, at most one entry per
//! peer, so the next deadline over all peers is the first entry (`O(log n)` to keep, `O(1)`
//! to read) and nothing ticks.
//!
//! A peer's entry is a *lower bound* of its next timer, not always the timer itself. Only a
//! deadline earlier than the entry moves it; a later one (the common case on the data path:
//! every packet pushes the persistent keepalive forward) leaves it alone, so the per-packet
//! path does no tree operation and no allocation. The early entry then just wakes
//! `handle_timeout`, which finds nothing due and schedules the real deadline. Every timer
//! still fires exactly at its deadline.

use super::peer_table::Slot;
use crate::time::Instant;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;

/// Deadlines by time, with each slot's current entry.
#[derive(Debug, Default)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct Schedule {
    deadlines: BTreeSet<(Instant, Slot)>,
    /// `entries[slot]`: the deadline under which `slot` sits in `deadlines`, if any.
    entries: Vec<Option<Instant>>,
}

impl Schedule {
    /// The earliest entry: when `handle_timeout` should run next.
    pub(crate) fn first(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Whether `slot` has an entry.
    #[inline]
    pub(crate) fn is_scheduled(&self, slot: Slot) -> bool {
        self.entries.get(slot as usize).is_some_and(Option::is_some)
    }

    /// Keeps `slot`'s entry a lower bound of its next timer `next` (`None`: nothing armed;
    /// a stale entry then only causes one early wake-up). Runs on every packet: unless `next`
    /// is earlier than the entry it only reads.
    #[inline]
    pub(crate) fn update(&mut self, slot: Slot, next: Option<Instant>) {
        let Some(next) = next else {
            return;
        };
        let entry = self.entries.get(slot as usize).copied().flatten();
        if entry.is_some_and(|t| t <= next) {
            return;
        }
        self.move_entry(slot, entry, next);
    }

    /// The slow part of [`update`](Self::update) (tree operations), kept out of the data path.
    #[cold]
    fn move_entry(&mut self, slot: Slot, entry: Option<Instant>, next: Instant) {
        if let Some(t) = entry {
            self.deadlines.remove(&(t, slot));
        }
        self.deadlines.insert((next, slot));
        let i = slot as usize;
        if self.entries.len() <= i {
            self.entries.resize(i.saturating_add(1), None);
        }
        if let Some(e) = self.entries.get_mut(i) {
            *e = Some(next);
        }
    }

    /// Takes the earliest entry if it is due at `now`: the caller runs that slot's timers and
    /// then [`update`](Self::update)s it again.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Slot> {
        let &(t, slot) = self.deadlines.first()?;
        if t > now {
            return None;
        }
        self.deadlines.remove(&(t, slot));
        self.clear_entry(slot);
        Some(slot)
    }

    /// Removes `slot` (its peer is gone).
    pub(crate) fn remove(&mut self, slot: Slot) {
        if let Some(t) = self.entries.get(slot as usize).copied().flatten() {
            self.deadlines.remove(&(t, slot));
        }
        self.clear_entry(slot);
    }

    fn clear_entry(&mut self, slot: Slot) {
        if let Some(e) = self.entries.get_mut(slot as usize) {
            *e = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_earlier_deadline_moves_an_entry() {
        let mut s = Schedule::default();
        let t = Instant::from_secs;
        s.update(3, Some(t(10)));
        s.update(1, Some(t(20)));
        assert_eq!(s.first(), Some(t(10)));
        // Later: the entry stays a lower bound.
        s.update(3, Some(t(30)));
        assert_eq!(s.first(), Some(t(10)));
        // Earlier: the entry moves.
        s.update(1, Some(t(5)));
        assert_eq!(s.first(), Some(t(5)));
        assert_eq!(s.deadlines.len(), 2, "one entry per slot");
        assert_eq!(s.pop_due(t(4)), None);
        assert_eq!(s.pop_due(t(10)), Some(1));
        assert_eq!(s.pop_due(t(10)), Some(3));
        assert_eq!(s.pop_due(t(10)), None);
        // A popped slot is scheduled afresh, even later than before.
        s.update(3, Some(t(30)));
        assert_eq!(s.first(), Some(t(30)));
        s.remove(3);
        assert_eq!(s.first(), None);
    }
}
