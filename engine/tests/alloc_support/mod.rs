//! Shared test support: a counting global allocator for the zero-allocation tests. It counts the
//! allocations (and reallocations) and frees made by a thread while counting is on for that
//! thread, so the test harness's other threads do not disturb the count.
//!
//! Use in a test file: `mod alloc_support;` and
//! `#[global_allocator] static GLOBAL: alloc_support::CountingAlloc = alloc_support::CountingAlloc;`
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to the system allocator, counting per thread while counting is on.
pub struct CountingAlloc;

thread_local! {
    /// Whether this thread's allocations are counted. `const` init: using it never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations and reallocations counted on this thread.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Frees counted on this thread.
    static DEALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// The largest allocation (or reallocation) counted on this thread, in bytes.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(counter: &'static std::thread::LocalKey<Cell<u64>>) {
    // `try_with`: thread-locals may already be gone while a thread shuts down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = counter.try_with(|n| n.set(n.get() + 1));
    }
}

fn note_size(bytes: usize) {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = LARGEST.try_with(|n| n.set(n.get().max(bytes)));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; the counting touches only const-initialized thread-locals.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCATIONS);
        note_size(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCATIONS);
        note_size(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(&ALLOCATIONS);
        note_size(new_size);
        // SAFETY: `ptr` came from `System` (through this allocator) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(&DEALLOCATIONS);
        // SAFETY: `ptr` came from `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Resets this thread's counters and starts counting.
pub fn start_counting() {
    ALLOCATIONS.with(|n| n.set(0));
    LARGEST.with(|n| n.set(0));
    DEALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
}

/// Stops counting on this thread and returns the allocations counted since [`start_counting`].
pub fn stop_counting() -> u64 {
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// The largest allocation counted on this thread since the last [`start_counting`], in bytes.
pub fn largest_allocation() -> usize {
    LARGEST.with(Cell::get)
}

/// Frees counted on this thread since the last [`start_counting`].
pub fn deallocations() -> u64 {
    DEALLOCATIONS.with(Cell::get)
}

/// Runs `f` and returns its result with the allocations it made on this thread.
pub fn count_allocations<R>(f: impl FnOnce() -> R) -> (R, u64) {
    start_counting();
    let r = f();
    (r, stop_counting())
}
