//! The watching allocator: `std::alloc::System` plus a look at every block as it is freed.
//!
//! * **Scan.** While the current thread is *armed*, each block freed on it (by `dealloc`, or by
//!   `realloc`, which here always moves: see below) is searched for the registered needles
//!   before it goes back to `System`. A hit is counted against the secret the needle came from,
//!   with the size of the block and the offset of the needle in it.
//! * **Scrub.** Every freed block, on every thread, armed or not, is zeroed after the scan. So
//!   freed memory never holds stale bytes: a secret found in a block was written into it after
//!   the block was allocated, and the hit names the free that really left it behind (not a
//!   later allocation that happened to reuse, and only partly overwrite, leaked memory).
//! * **`realloc` always moves** (new block, copy, free the old one). A vector that grows while
//!   it holds a key leaves the key in the old block whenever the system allocator moves it,
//!   which depends on the heap's state: the test treats every growth as that worst case.
//!
//! Needles are 16 bytes (any 16 bytes of a 32-byte key are already 128 bits of it). They sit
//! in static arrays of atomics sorted by their first 8 bytes, behind a bitmap of their first
//! 3 bytes, so a scan costs one bitmap probe per byte and allocates nothing. Registration
//! happens only on a disarmed thread (the test's own), and scans only run on an armed one,
//! which is that same thread: the two never overlap.
//!
//! Reading a block that is being freed may read bytes the program never initialised. The
//! block arrives as a raw pointer through the allocator shim, so the compiler knows nothing of
//! its contents; it is read with plain loads, and only while it is still ours.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Bytes per needle.
pub const NEEDLE: usize = 16;
/// Most needles registered at once.
pub const MAX_NEEDLES: usize = 1 << 15;
/// Most secrets registered at once (each secret gives one or more needles).
pub const MAX_SECRETS: usize = 1 << 14;

#[allow(clippy::declare_interior_mutable_const)]
const U64_ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const U32_ZERO: AtomicU32 = AtomicU32::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const USIZE_ZERO: AtomicUsize = AtomicUsize::new(0);

/// Number of needles in use.
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Needle bytes 0..8 and 8..16 (little-endian words), sorted by `HEADS`.
static HEADS: [AtomicU64; MAX_NEEDLES] = [U64_ZERO; MAX_NEEDLES];
static TAILS: [AtomicU64; MAX_NEEDLES] = [U64_ZERO; MAX_NEEDLES];
/// The secret each needle belongs to.
static OWNERS: [AtomicU32; MAX_NEEDLES] = [U32_ZERO; MAX_NEEDLES];
/// One bit per value of a needle's first 3 bytes.
static FILTER: [AtomicU64; (1 << 24) / 64] = [U64_ZERO; (1 << 24) / 64];
/// Per secret: how many freed blocks held it, and the size of / offset in the first one.
static HITS: [AtomicU32; MAX_SECRETS] = [U32_ZERO; MAX_SECRETS];
static HIT_SIZE: [AtomicUsize; MAX_SECRETS] = [USIZE_ZERO; MAX_SECRETS];
static HIT_OFFSET: [AtomicUsize; MAX_SECRETS] = [USIZE_ZERO; MAX_SECRETS];
/// Per secret: the number of the last block it was counted in (a block counts once).
static LAST_BLOCK: [AtomicUsize; MAX_SECRETS] = [USIZE_ZERO; MAX_SECRETS];
/// Freed blocks scanned, and their bytes.
static SCANNED_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static SCANNED_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Print a backtrace at the first hit of each secret (`FREED_MEMORY_BACKTRACE=1`).
static BACKTRACES: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Scan the blocks this thread frees.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// Inside the hook (printing a backtrace): frees made by the hook itself are not scanned.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// The global allocator of this test binary.
pub struct Watch;

impl Watch {
    /// Scans (if armed) and scrubs the block at `ptr` before it is freed.
    ///
    /// # Safety
    /// `ptr` points to a live block of `size` bytes that the caller is about to free.
    unsafe fn retire(&self, ptr: *mut u8, size: usize) {
        if size == 0 {
            return;
        }
        let armed = ARMED.try_with(|a| a.get()).unwrap_or(false)
            && !IN_HOOK.try_with(|h| h.get()).unwrap_or(true);
        // SAFETY: the block is live and ours until `System` takes it back; `size` is its size.
        let block = unsafe { std::slice::from_raw_parts_mut(std::hint::black_box(ptr), size) };
        if armed {
            scan(block);
        }
        block.fill(0);
        // The zeros are "read", so they cannot be dropped as dead stores before the free.
        std::hint::black_box(&*block);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments; `retire` only reads
// and zeroes a block the caller is freeing, before `System` gets it.
unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller frees this live block of `layout.size()` bytes.
        unsafe {
            self.retire(ptr, layout.size());
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Always a move, so the old block is retired like any freed block.
        // SAFETY: the caller guarantees `new_size` rounded to `layout.align()` fits `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size (GlobalAlloc::realloc's contract).
        let new = unsafe { System.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least this long.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// Searches `block` for every registered needle; records hits. Allocates nothing.
fn scan(block: &[u8]) {
    let block_no = SCANNED_BLOCKS.fetch_add(1, Relaxed) + 1;
    SCANNED_BYTES.fetch_add(block.len(), Relaxed);
    let count = COUNT.load(Relaxed);
    if count == 0 || block.len() < NEEDLE {
        return;
    }
    for (offset, w) in block.windows(NEEDLE).enumerate() {
        let p = usize::from(w[0]) | usize::from(w[1]) << 8 | usize::from(w[2]) << 16;
        if FILTER[p >> 6].load(Relaxed) & (1 << (p & 63)) == 0 {
            continue;
        }
        let head = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        let tail = u64::from_le_bytes([w[8], w[9], w[10], w[11], w[12], w[13], w[14], w[15]]);
        // The first needle whose head is >= this one, then every needle with this head.
        let (mut lo, mut hi) = (0, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if HEADS[mid].load(Relaxed) < head {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut i = lo;
        while i < count && HEADS[i].load(Relaxed) == head {
            if TAILS[i].load(Relaxed) == tail {
                hit(
                    OWNERS[i].load(Relaxed) as usize,
                    block_no,
                    block.len(),
                    offset,
                );
            }
            i += 1;
        }
    }
}

fn hit(secret: usize, block_no: usize, size: usize, offset: usize) {
    if secret >= MAX_SECRETS || LAST_BLOCK[secret].swap(block_no, Relaxed) == block_no {
        return;
    }
    if HITS[secret].fetch_add(1, Relaxed) == 0 {
        HIT_SIZE[secret].store(size, Relaxed);
        HIT_OFFSET[secret].store(offset, Relaxed);
        if BACKTRACES.load(Relaxed) {
            // Diagnostics only: printing allocates, so the hook's own frees are not scanned.
            let _ = IN_HOOK.try_with(|h| h.set(true));
            eprintln!(
                "freed_memory: secret #{secret} in a freed block of {size} bytes at offset \
                 {offset}, freed here:\n{}",
                std::backtrace::Backtrace::force_capture()
            );
            let _ = IN_HOOK.try_with(|h| h.set(false));
        }
    }
}

/// Replaces the registered needles with `needles` (`(bytes, secret)`); clears every hit.
/// Call on a disarmed thread only.
pub fn install(needles: &mut [([u8; NEEDLE], u32)]) {
    assert!(
        !ARMED.with(|a| a.get()),
        "needles are registered while disarmed"
    );
    assert!(needles.len() <= MAX_NEEDLES, "too many needles");
    COUNT.store(0, Relaxed);
    for f in &FILTER {
        f.store(0, Relaxed);
    }
    for (h, l) in HITS.iter().zip(&LAST_BLOCK) {
        h.store(0, Relaxed);
        l.store(0, Relaxed);
    }
    SCANNED_BLOCKS.store(0, Relaxed);
    SCANNED_BYTES.store(0, Relaxed);
    let head = |n: &[u8; NEEDLE]| u64::from_le_bytes(n[..8].try_into().unwrap());
    let tail = |n: &[u8; NEEDLE]| u64::from_le_bytes(n[8..].try_into().unwrap());
    // Sorted by the little-endian head word, which is what the scan's binary search compares.
    needles.sort_unstable_by_key(|(n, _)| (head(n), tail(n)));
    for (i, (n, owner)) in needles.iter().enumerate() {
        HEADS[i].store(head(n), Relaxed);
        TAILS[i].store(tail(n), Relaxed);
        OWNERS[i].store(*owner, Relaxed);
        let p = usize::from(n[0]) | usize::from(n[1]) << 8 | usize::from(n[2]) << 16;
        FILTER[p >> 6].fetch_or(1 << (p & 63), Relaxed);
    }
    COUNT.store(needles.len(), Relaxed);
    BACKTRACES.store(
        std::env::var_os("FREED_MEMORY_BACKTRACE").is_some_and(|v| v == "1"),
        Relaxed,
    );
}

/// Starts or stops scanning the blocks this thread frees.
pub fn arm(on: bool) {
    ARMED.with(|a| a.set(on));
}

/// `(secret, blocks, size of the first, offset in it)` for every secret found.
pub fn hits(secrets: usize) -> Vec<(usize, u32, usize, usize)> {
    (0..secrets.min(MAX_SECRETS))
        .filter_map(|s| {
            let n = HITS[s].load(Relaxed);
            (n > 0).then(|| (s, n, HIT_SIZE[s].load(Relaxed), HIT_OFFSET[s].load(Relaxed)))
        })
        .collect()
}

/// Freed blocks scanned since the last [`install`], and their total size.
pub fn scanned() -> (usize, usize) {
    (SCANNED_BLOCKS.load(Relaxed), SCANNED_BYTES.load(Relaxed))
}
