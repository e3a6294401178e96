//! spinwire's criterion benchmarks (in `benches/`) and the helpers they share.
//!
//! | bench | what it compares |
//! |---|---|
//! | `ring` | spinwire-ringbuf vs rtrb vs crossbeam's `ArrayQueue`, and the cache-line floor |
//! | `ws` | WebSocket frame decode vs tungstenite; masking; allocations per frame |
//! | `deribit_decode` | Deribit book-change decode vs serde_json derive |
//! | `latency` | the cost of recording one latency value, and of reading the clock |
//! | `session` | reconnect-to-Live vs the sum of the bare handshakes |
//! | `e2e` | wire-to-strategy, end to end over loopback: spinwire vs tokio-tungstenite + serde_json vs a bare mio floor ([`e2e`]) |
//!
//! The engine-loop examples (`examples/loop_idle.rs`, `loop_cpu_per_msg.rs`,
//! `order_wakeup.rs`) share [`engine_loop`].
//!
//! Run one with `cargo bench -p spinwire-bench --bench NAME`; `cargo test -p spinwire-bench
//! --benches` runs each once as a test (what CI does). `examples/ring_oneway_p50.rs` is the
//! HDR percentile run of the ring's one-way latency; `examples/e2e_hdr.rs` the HDR run of the
//! end-to-end benchmark.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod e2e;
pub mod engine_loop;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// A global allocator that counts the allocations (and reallocations) a thread makes while
/// counting is on for that thread, so a bench can report allocations per operation. Install it in
/// a bench binary with `#[global_allocator] static GLOBAL: CountingAlloc = CountingAlloc;`.
#[derive(Debug, Clone, Copy)]
pub struct CountingAlloc;

thread_local! {
    /// Whether allocations on this thread are counted. `const` init: using it never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations counted on this thread.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: thread-locals may already be gone while a thread shuts down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; the counting touches only const-initialized thread-locals.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: `ptr` came from `System` (through this allocator) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns how many allocations it made on this thread. Counts only when the bench
/// binary installed [`CountingAlloc`] as its global allocator (otherwise always 0).
pub fn count_allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}
