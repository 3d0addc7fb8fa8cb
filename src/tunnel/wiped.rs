//! Heap storage for values that hold secrets, zeroed as a whole before it is freed.
//!
//! Why: a value's own `Drop` wipes its key fields, but not everything in its heap block.
//! `Vec::push` grows by `realloc`, which frees the old block with every element still in it;
//! and a block also holds bytes no field owns (padding, the unused part of an enum such as a
//! `None` or ring's AES-sized key union), which the move into the block fills with whatever
//! was on the stack, key material included. [`WipedVec`] (the device's peer slots, the
//! wg-quick parser's peers) and [`WipedBox`] (one transport session, one stored peer
//! configuration) therefore zero their whole block, element bytes and spare bytes alike,
//! before it goes back to the allocator: on growth and on drop.

use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};
use zeroize::Zeroize;

/// A `Vec` whose old blocks are zeroed when it grows and whose block is zeroed when it is
/// dropped (after its elements, which wipe their own keys).
pub(crate) struct WipedVec<T>(Vec<T>);

impl<T> WipedVec<T> {
    /// An empty vector (no block yet).
    pub(crate) const fn new() -> Self {
        WipedVec(Vec::new())
    }

    /// `push`; when the vector is full, its elements move to a block twice as large (at
    /// least 4) and the old block is zeroed before it is freed.
    pub(crate) fn push(&mut self, item: T) {
        let v = &mut self.0;
        if v.len() == v.capacity() {
            let mut bigger = Vec::with_capacity(v.capacity().saturating_mul(2).max(4));
            // Moves every element out: `v` is now empty and its whole block is spare
            // capacity, zeroed here before `v` is replaced (and the block freed).
            bigger.append(v);
            wipe(v);
            *v = bigger;
        }
        v.push(item);
    }

    /// Hands the elements over in a plain `Vec` of exactly their number (the new owner
    /// wipes from then on); this vector is left empty, its block zeroed and freed.
    pub(crate) fn take_exact(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.0.len());
        out.append(&mut self.0);
        wipe(&mut self.0);
        self.0 = Vec::new();
        out
    }
}

/// Fuzz builds only (see `Device`): a copy in a block of its own.
#[cfg(fuzzing)]
impl<T: Clone> Clone for WipedVec<T> {
    fn clone(&self) -> Self {
        WipedVec(self.0.clone())
    }
}

impl<T> Default for WipedVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Deref for WipedVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> DerefMut for WipedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<T> Drop for WipedVec<T> {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Drops the elements of `v` and zeroes its whole block (which stays allocated).
pub(crate) fn wipe<T>(v: &mut Vec<T>) {
    v.clear();
    v.spare_capacity_mut().zeroize();
}

/// One value on the heap, like a `Box` (it never moves), whose block is zeroed as a whole
/// when it is dropped.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct WipedBox<T>(WipedVec<T>);

impl<T> WipedBox<T> {
    /// Moves `value` into a block of its exact size.
    pub(crate) fn new(value: T) -> Self {
        WipedBox(WipedVec(alloc::vec![value]))
    }

    /// The value (always there: `None` is unreachable, it only spares a panic path).
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        self.0.first()
    }

    /// The value, mutably (see [`get`](Self::get)).
    #[inline]
    pub(crate) fn get_mut(&mut self) -> Option<&mut T> {
        self.0.first_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_keeps_every_element_in_order() {
        let mut v = WipedVec::new();
        for i in 0..100u32 {
            v.push(i);
        }
        assert_eq!(&*v, &(0..100).collect::<Vec<_>>()[..]);
        let plain = v.take_exact();
        assert_eq!((plain.len(), plain.capacity()), (100, 100));
        assert!(v.is_empty());
    }

    #[test]
    fn a_box_holds_its_value() {
        let mut b = WipedBox::new([7u8; 32]);
        assert_eq!(b.get(), Some(&[7u8; 32]));
        if let Some(v) = b.get_mut() {
            v[0] = 1;
        }
        assert_eq!(b.get().map(|v| v[0]), Some(1));
    }
}
