//! The bounded output queue every machine uses for its transmits and events, so that one rule
//! holds everywhere (crate docs, "Conventions"): a queue holds at most its configured capacity;
//! an output that does not fit is dropped and counted, never grown into; calls made by the
//! embedder check [`Outbox::has_room`] first and refuse with a capacity error instead.

use alloc::collections::VecDeque;

/// Queues of at most this many slots keep their storage when they drain; larger ones give it
/// back, so an idle machine holds no queue memory after a burst.
const KEEP_STORAGE: usize = 16;

/// A FIFO of at most `capacity` items that counts what it had to drop.
#[derive(Clone, Debug)]
pub(crate) struct Outbox<T> {
    items: VecDeque<T>,
    capacity: usize,
    dropped: u64,
}

impl<T> Outbox<T> {
    /// An empty queue that holds at most `capacity` items (0: every push is dropped).
    pub(crate) const fn new(capacity: usize) -> Self {
        Outbox {
            items: VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }

    /// Appends `item`, or drops it and counts the drop when the queue is full. Returns whether
    /// it was queued.
    pub(crate) fn push(&mut self, item: T) -> bool {
        if self.items.len() >= self.capacity {
            self.dropped = self.dropped.saturating_add(1);
            return false;
        }
        self.items.push_back(item);
        true
    }

    /// Whether `n` more items fit.
    pub(crate) fn has_room(&self, n: usize) -> bool {
        self.capacity.saturating_sub(self.items.len()) >= n
    }

    /// Takes the oldest item. A large queue that drains gives its storage back.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let item = self.items.pop_front();
        if item.is_none() && self.items.capacity() > KEEP_STORAGE {
            self.items = VecDeque::new();
        }
        item
    }

    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items dropped because the queue was full, since creation.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The waiting items, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.items.iter()
    }

    /// Removes every waiting item (dropped items are not counted: the caller discards them
    /// on purpose, e.g. when a session closes).
    pub(crate) fn clear(&mut self) {
        self.items = VecDeque::new();
    }

    /// Keeps only the items for which `keep` is true.
    pub(crate) fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        self.items.retain(keep);
    }

    /// Bytes of storage held for slots (not counting what the items own on the heap).
    pub(crate) fn storage_bytes(&self) -> usize {
        self.items
            .capacity()
            .saturating_mul(core::mem::size_of::<T>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_the_newest_item() {
        let mut q = Outbox::new(2);
        assert!(q.push(1) && q.push(2));
        assert!(!q.has_room(1));
        assert!(!q.push(3));
        assert_eq!(q.dropped(), 1);
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some(1), Some(2), None));
        assert!(q.has_room(2) && !q.has_room(3));
    }

    #[test]
    fn capacity_zero_queues_nothing() {
        let mut q = Outbox::new(0);
        assert!(!q.push(()));
        assert!(q.is_empty() && q.dropped() == 1);
    }

    #[test]
    fn a_large_queue_gives_its_storage_back_when_drained() {
        let mut q = Outbox::new(1000);
        for i in 0..100 {
            q.push(i);
        }
        while q.pop().is_some() {}
        assert_eq!(q.storage_bytes(), 0);
        let mut small = Outbox::new(8);
        small.push(1u64);
        small.pop();
        small.pop();
        assert!(small.storage_bytes() > 0, "small queues keep their slots");
    }
}
