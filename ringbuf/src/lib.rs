//! A bounded, lock-free, single-producer single-consumer (SPSC) ring: spinwire's handoff between
//! the engine thread and strategy threads.
//!
//! [`channel`] allocates the ring once and returns its two ends. The [`Producer`] moves values in
//! with [`push`](Producer::push) (or copies a batch with [`push_slice`](Producer::push_slice));
//! the [`Consumer`] moves them out with [`pop`](Consumer::pop) (or copies a batch out with
//! [`pop_into`](Consumer::pop_into)). Each end can be moved to another thread; neither can be
//! shared.
//!
//! # Guarantees
//!
//! - **No allocation after [`channel`].** Pushing and popping never allocate, never lock, never
//!   block and never format: every call returns at once (wait-free). A full ring hands the value
//!   back in [`Full`]; an empty one returns `None`. Waiting, dropping or counting is the caller's
//!   policy.
//! - **FIFO, exactly once.** Values come out in the order they went in, each once.
//! - **Batches publish once.** [`push_slice`](Producer::push_slice) and
//!   [`pop_into`](Consumer::pop_into) move as many values as fit with one atomic store.
//! - **Leftovers are dropped exactly once**, when the last of the two ends is dropped.
//! - **Abandonment is visible.** [`is_abandoned`](Consumer::is_abandoned) turns true when the
//!   other end has been dropped; after it does, everything the producer pushed is still there to
//!   pop.
//!
//! # How it works
//!
//! The ring holds `capacity` slots, a power of two, indexed by two monotonically increasing
//! `usize` counters masked with `capacity - 1`: `head` (next slot to read; written only by the
//! consumer) and `tail` (next slot to write; written only by the producer). Each lives on its own
//! cache line. Each end keeps its own index locally plus a cached copy of the other end's, and
//! reloads the other end's atomic only when the cached copy says the ring is full (producer) or
//! empty (consumer), so in steady state a push or pop touches one shared line: its own index,
//! with a `Release` store that publishes the slot.
//!
//! # Throughput one value at a time
//!
//! When the consumer keeps up with the producer, every value is announced by its own `tail`
//! store and fetched by its own `tail` load, so each one costs cache-line transfers between the
//! two cores, and how many depends on how hard the consumer polls: every empty
//! [`pop`](Consumer::pop) loads `tail`, taking that line away from a producer that is still
//! writing. A consumer that has found the ring empty 8 times in a row is waiting, not keeping
//! pace, and from then on each empty poll also prefetches the next slot, which is what keeps
//! the one-way latency near the bare cache-line floor; prefetching earlier pulled the slot's
//! line away from the producer between its writes (a third of the 8-byte single-item
//! throughput, measured). Once the producer gets ahead, the consumer finds many values per
//! `tail` load and reads whole lines the producer has finished, and the cost per value drops
//! several-fold. Which of the two regimes a pair of threads settles in depends on the host and
//! on the caller's wait policy, not only on the ring: a consumer that backs off a little
//! between empty polls, or that drains with [`pop_into`](Consumer::pop_into), tends to get the
//! second.
//!
//! # Example
//!
//! ```
//! use spinwire_ringbuf::{channel, Full};
//!
//! let (mut tx, mut rx) = channel::<u64>(3); // rounded up to 4
//! assert_eq!(tx.capacity(), 4);
//!
//! for i in 0..4 {
//!     tx.push(i).unwrap();
//! }
//! // A full ring gives the value back.
//! assert_eq!(tx.push(99), Err(Full(99)));
//!
//! let strategy = std::thread::spawn(move || {
//!     let mut seen = Vec::new();
//!     loop {
//!         match rx.pop() {
//!             Some(v) => seen.push(v),
//!             // The producer is gone and everything it pushed has been taken.
//!             None if rx.is_abandoned() && rx.is_empty() => break,
//!             None => std::hint::spin_loop(),
//!         }
//!     }
//!     seen
//! });
//!
//! // Batches: as many as fit, published at once.
//! let mut sent = 0;
//! let batch = [4, 5, 6, 7, 8, 9];
//! while sent < batch.len() {
//!     sent += tx.push_slice(&batch[sent..]);
//! }
//! drop(tx);
//!
//! assert_eq!(strategy.join().unwrap(), (0..10).collect::<Vec<u64>>());
//! ```
//!
//! # Testing
//!
//! The ring's atomics and cells come from a small shim that swaps in [loom](https://docs.rs/loom)'s
//! models under `--cfg loom`; `tools/ci/loom.sh` runs the model tests in `tests/loom.rs` and
//! `tools/ci/miri.sh` runs the ordinary tests under Miri.
#![deny(missing_docs, missing_debug_implementations)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    rust_2018_idioms,
    clippy::undocumented_unsafe_blocks,
    clippy::unnecessary_safety_comment
)]

use core::cell::Cell;
use core::fmt;
use core::mem::{needs_drop, MaybeUninit};

use crossbeam_utils::CachePadded;

/// Empty `tail` reloads in a row after which an empty [`Consumer::pop`] or
/// [`Consumer::pop_into`] starts prefetching the next slot (see [`Consumer::found_empty`]).
const PREFETCH_AFTER: u32 = 8;

mod primitive;
mod slots;

use primitive::{Arc, AtomicBool, AtomicUsize, Ordering};
use slots::Slots;

/// Creates a ring that holds `capacity` values and returns its two ends.
///
/// `capacity` is rounded up to the next power of two; `0` is rounded up to `1`, as
/// [`usize::next_power_of_two`] does (a ring that can never hold anything would be of no use, and
/// asking for "no particular size" should not be a crash). [`Producer::capacity`] reports the
/// rounded value. All memory is allocated here and never again.
///
/// Zero-sized types work: they take no slot memory, and counts, order and drops behave as for
/// any other type.
///
/// # Panics
///
/// If the rounded capacity does not fit in a `usize`, or the slots would take more than
/// `isize::MAX` bytes; see [`try_channel`] for the non-panicking form.
///
/// # Example
///
/// ```
/// let (mut tx, mut rx) = spinwire_ringbuf::channel::<&str>(0);
/// assert_eq!(tx.capacity(), 1);
/// tx.push("only one").unwrap();
/// assert!(tx.is_full());
/// assert_eq!(rx.pop(), Some("only one"));
/// ```
#[must_use]
pub fn channel<T: Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    match try_channel(capacity) {
        Ok(ends) => ends,
        Err(e) => panic!("spinwire_ringbuf::channel: {e}"),
    }
}

/// Like [`channel`], but returns an error instead of panicking when the capacity is too large.
///
/// # Errors
///
/// [`CapacityError`] if `capacity` rounded up to a power of two does not fit in a `usize` or the
/// slots would take more than `isize::MAX` bytes.
///
/// # Example
///
/// ```
/// assert!(spinwire_ringbuf::try_channel::<u64>(usize::MAX).is_err());
/// assert!(spinwire_ringbuf::try_channel::<u64>(1000).is_ok());
/// ```
pub fn try_channel<T: Send>(capacity: usize) -> Result<(Producer<T>, Consumer<T>), CapacityError> {
    let rounded = capacity
        .max(1)
        .checked_next_power_of_two()
        .ok_or(CapacityError {
            requested: capacity,
        })?;
    if slots::layout::<T>(rounded).is_none() {
        return Err(CapacityError {
            requested: capacity,
        });
    }
    Ok(channel_starting_at(rounded, 0))
}

/// Builds the ring with both indices starting at `start` (always 0 outside unit tests, which use
/// it to run the indices across `usize::MAX`).
fn channel_starting_at<T>(capacity: usize, start: usize) -> (Producer<T>, Consumer<T>) {
    debug_assert!(capacity.is_power_of_two());
    let slots = Slots::new(capacity);
    let mask = capacity - 1;
    let shared = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(start)),
        tail: CachePadded::new(AtomicUsize::new(start)),
        abandoned: AtomicBool::new(false),
        slots,
        mask,
    });
    let producer = Producer {
        shared: Arc::clone(&shared),
        tail: start,
        cached_head: Cell::new(start),
        mask,
    };
    let consumer = Consumer {
        shared,
        head: start,
        cached_tail: Cell::new(start),
        mask,
        idle: Cell::new(0),
    };
    (producer, consumer)
}

/// The part of the ring both ends point to.
struct Shared<T> {
    /// Index of the next slot the consumer will read.
    ///
    /// Written only by the consumer, with `Release`, after it has finished reading the slots it
    /// gives back; the producer loads it with `Acquire` before reusing those slots.
    /// Invariant: `tail.wrapping_sub(head) <= capacity` at all times.
    head: CachePadded<AtomicUsize>,

    /// Index of the next slot the producer will write.
    ///
    /// Written only by the producer, with `Release`, after it has written the slots it publishes;
    /// the consumer loads it with `Acquire` before reading them. Slots with (wrapping) indices in
    /// `head..tail` hold initialized values; all others are uninitialized.
    tail: CachePadded<AtomicUsize>,

    /// Set (with `Release`) by whichever end is dropped first; read with `Acquire`.
    abandoned: AtomicBool,

    /// The slots, cache-line aligned; `slots.len()` is the capacity, a power of two. Slot
    /// `i & mask` belongs to the producer while `i` is outside `head..tail` and to the consumer
    /// while it is inside.
    slots: Slots<T>,

    /// `slots.len() - 1`.
    mask: usize,
}

impl<T> Shared<T> {
    /// Moves `value` into slot `idx`.
    ///
    /// # Safety
    ///
    /// `idx < capacity`, the slot is uninitialized, and the caller (the producer) owns it: its
    /// index is not in `head..tail`.
    #[inline(always)]
    unsafe fn write(&self, idx: usize, value: T) {
        debug_assert!(idx < self.slots.len());
        // SAFETY: `idx < slots.len()` (caller's contract).
        let cell = unsafe { self.slots.get_unchecked(idx) };
        // SAFETY: the producer owns the slot, so no one else reads or writes it now.
        cell.with_mut(|p| unsafe { p.write(MaybeUninit::new(value)) });
    }

    /// Moves the value out of slot `idx`, leaving it logically uninitialized.
    ///
    /// # Safety
    ///
    /// `idx < capacity`, the slot is initialized, the caller (the consumer) owns it (its index is
    /// in `head..tail`) and will publish a `head` past it, so the value is not read again.
    #[inline(always)]
    unsafe fn read(&self, idx: usize) -> T {
        debug_assert!(idx < self.slots.len());
        // SAFETY: `idx < slots.len()` (caller's contract).
        let cell = unsafe { self.slots.get_unchecked(idx) };
        // SAFETY: the slot is initialized and owned by the consumer; the caller makes sure this
        // copy is the only one that will be used.
        cell.with(|p| unsafe { (*p).assume_init_read() })
    }

    /// Hints the CPU to start fetching slot `idx`, the next one the consumer will read, while
    /// it finds the ring empty. A consumer spinning on an empty ring then pulls the slot's cache
    /// line together with the producer's index instead of one after the other, which takes
    /// about one cache-line transfer off every hand-over. A hint only: it reads nothing in the
    /// Rust sense, cannot fault, and is compiled out under loom and Miri and off x86_64.
    #[inline(always)]
    fn prefetch(&self, idx: usize) {
        #[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
        {
            debug_assert!(idx < self.slots.len());
            // `wrapping_add`: forming the address needs no `unsafe`, and it stays in the buffer.
            let p = self.slots.base().wrapping_add(idx).cast::<i8>();
            // SAFETY: PREFETCHT0 is a cache hint: it never dereferences in the Rust sense, never
            // faults (not even for an invalid address), and needs only SSE, which every x86_64
            // CPU has.
            unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p) };
        }
        #[cfg(not(all(target_arch = "x86_64", not(loom), not(miri))))]
        let _ = idx;
    }

    /// A shared reference to the value in slot `idx`.
    ///
    /// # Safety
    ///
    /// `idx < capacity`, the slot is initialized and owned by the consumer, and stays so while
    /// the returned reference lives (the consumer does not advance `head` past it meanwhile).
    #[inline(always)]
    unsafe fn get_ref(&self, idx: usize) -> &T {
        debug_assert!(idx < self.slots.len());
        // SAFETY: `idx < slots.len()` (caller's contract).
        let cell = unsafe { self.slots.get_unchecked(idx) };
        // SAFETY: initialized, and neither end writes the slot while the consumer owns it and
        // the reference lives (caller's contract).
        cell.with(|p| unsafe { (*p).assume_init_ref() })
    }

    /// Copies `src` into the slots starting at index `start` (masked), wrapping at the end.
    ///
    /// # Safety
    ///
    /// `start < capacity`, `src.len() <= capacity`, and the producer owns all `src.len()` slots
    /// from `start` on (they are free).
    #[inline(always)]
    unsafe fn copy_in(&self, start: usize, src: &[T])
    where
        T: Copy,
    {
        debug_assert!(start < self.slots.len());
        debug_assert!(src.len() <= self.slots.len());
        #[cfg(not(loom))]
        {
            let first = src.len().min(self.slots.len() - start);
            let base = self.slots.base();
            // SAFETY: `base` addresses the slots as `T`s (see `Slots::base`).
            // `start + first <= capacity` and `src.len() - first <= start`, so both runs stay in
            // the slot buffer; the producer owns those slots; `src` is a distinct borrow so the
            // ranges do not overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(src.as_ptr(), base.add(start), first);
                core::ptr::copy_nonoverlapping(src.as_ptr().add(first), base, src.len() - first);
            }
        }
        #[cfg(loom)]
        for (i, value) in src.iter().enumerate() {
            // SAFETY: in bounds after masking and owned by the producer (caller's contract).
            unsafe { self.write((start + i) & self.mask, *value) };
        }
    }

    /// Copies `dst.len()` values out of the slots starting at index `start` (masked), wrapping.
    ///
    /// # Safety
    ///
    /// `start < capacity`, `dst.len() <= capacity`, and the consumer owns all `dst.len()` slots
    /// from `start` on (they are initialized).
    #[inline(always)]
    unsafe fn copy_out(&self, start: usize, dst: &mut [T])
    where
        T: Copy,
    {
        debug_assert!(start < self.slots.len());
        debug_assert!(dst.len() <= self.slots.len());
        #[cfg(not(loom))]
        {
            let first = dst.len().min(self.slots.len() - start);
            let base = self.slots.base();
            // SAFETY: as in `copy_in`, both runs stay in the slot buffer; the slots are
            // initialized and owned by the consumer; `dst` is a unique borrow of other memory.
            unsafe {
                core::ptr::copy_nonoverlapping(base.add(start), dst.as_mut_ptr(), first);
                core::ptr::copy_nonoverlapping(
                    base,
                    dst.as_mut_ptr().add(first),
                    dst.len() - first,
                );
            }
        }
        #[cfg(loom)]
        for (i, out) in dst.iter_mut().enumerate() {
            // SAFETY: in bounds after masking, initialized and owned by the consumer (caller's
            // contract); `T: Copy`, so reading it leaves nothing to drop twice.
            *out = unsafe { self.read((start + i) & self.mask) };
        }
    }
}

impl<T> Drop for Shared<T> {
    /// Drops the values still in the ring. Runs once, when the last end goes away.
    fn drop(&mut self) {
        if !needs_drop::<T>() {
            return;
        }
        // `Relaxed` suffices: the `Arc`'s final decrement makes every access either end made
        // happen before this point.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        let len = tail.wrapping_sub(head);
        debug_assert!(len <= self.slots.len());
        #[cfg(not(loom))]
        {
            let start = head & self.mask;
            let first = len.min(self.slots.len() - start);
            let base = self.slots.base();
            // SAFETY: slots `head..tail` (wrapping) are initialized, here as the two runs
            // `start..start + first` and `0..len - first`, both inside the buffer. We hold
            // `&mut self`, so nothing else can touch them, and they are dropped only here.
            // The second run is dropped by a guard, so a panicking destructor in the first run
            // does not leak it (a slice's `drop_in_place` already keeps going within a run),
            // which is what `Vec` does.
            unsafe {
                let _second = DropRun(core::ptr::slice_from_raw_parts_mut(base, len - first));
                core::ptr::drop_in_place(core::ptr::slice_from_raw_parts_mut(
                    base.add(start),
                    first,
                ));
            }
        }
        #[cfg(loom)]
        for i in 0..len {
            // SAFETY: masked index is in bounds.
            let cell = unsafe { self.slots.get_unchecked(head.wrapping_add(i) & self.mask) };
            // SAFETY: slot initialized (in `head..tail`), exclusively ours, dropped only here.
            cell.with_mut(|p| unsafe { (*p).assume_init_drop() });
        }
    }
}

/// Drops the initialized values of a run of slots when it goes out of scope, also during
/// unwinding.
///
/// Invariant: the pointer addresses initialized values that nothing else will use or drop.
#[cfg(not(loom))]
struct DropRun<T>(*mut [T]);

#[cfg(not(loom))]
impl<T> Drop for DropRun<T> {
    fn drop(&mut self) {
        // SAFETY: the values are initialized and ours alone to drop (type invariant).
        unsafe { core::ptr::drop_in_place(self.0) };
    }
}

/// The writing end of a ring, made by [`channel`].
///
/// It can be moved to another thread (it is [`Send`] when `T` is) but not shared (it is not
/// [`Sync`]). When it is dropped, [`Consumer::is_abandoned`] becomes true; values already pushed
/// remain available to the consumer.
pub struct Producer<T> {
    /// The ring, shared with the [`Consumer`].
    shared: Arc<Shared<T>>,

    /// The producer's own copy of `shared.tail`. The producer is its only writer, so this is
    /// always equal to it.
    tail: usize,

    /// The last value of `shared.head` the producer loaded. It may lag the real `head` (which only
    /// grows), so it can only under-estimate free space, never over-estimate it:
    /// `tail.wrapping_sub(cached_head) <= capacity` always holds. In a `Cell` so `&self` queries
    /// can refresh it.
    cached_head: Cell<usize>,

    /// `capacity - 1`, copied here to spare a pointer hop on every push.
    mask: usize,
}

// SAFETY: the producer is the only handle that writes slots or `tail`; moving it to another
// thread keeps it the only one. Values of `T` move from that thread to the consumer's, which
// requires `T: Send`. It is not `Sync` (the `Cell` sees to that), so no two threads ever use one
// producer at the same time.
unsafe impl<T: Send> Send for Producer<T> {}

impl<T> Producer<T> {
    /// Moves `value` into the ring.
    ///
    /// # Errors
    ///
    /// [`Full`] with `value` inside if the ring has no free slot; nothing is dropped.
    ///
    /// # Example
    ///
    /// ```
    /// use spinwire_ringbuf::{channel, Full};
    ///
    /// let (mut tx, _rx) = channel(1);
    /// assert_eq!(tx.push("a"), Ok(()));
    /// assert_eq!(tx.push("b"), Err(Full("b")));
    /// ```
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), Full<T>> {
        let tail = self.tail;
        if tail.wrapping_sub(self.cached_head.get()) > self.mask && self.refresh_head(tail) == 0 {
            return Err(Full(value));
        }
        // SAFETY: masked index is in bounds; `tail - head < capacity` (checked above against a
        // `head` no newer than the real one), so slot `tail` is free and ours.
        unsafe { self.shared.write(tail & self.mask, value) };
        let tail = tail.wrapping_add(1);
        self.tail = tail;
        self.shared.tail.store(tail, Ordering::Release);
        Ok(())
    }

    /// Copies as many values from the front of `src` as there is room for, publishes them all with
    /// one store, and returns how many it copied (`0` if the ring is full or `src` empty).
    ///
    /// # Example
    ///
    /// ```
    /// let (mut tx, mut rx) = spinwire_ringbuf::channel::<u8>(4);
    /// assert_eq!(tx.push_slice(b"hello"), 4);
    /// assert_eq!(tx.push_slice(b"o"), 0);
    /// assert_eq!(rx.pop(), Some(b'h'));
    /// ```
    #[inline]
    pub fn push_slice(&mut self, src: &[T]) -> usize
    where
        T: Copy,
    {
        let tail = self.tail;
        let mut free = self.capacity() - tail.wrapping_sub(self.cached_head.get());
        if free < src.len() {
            free = self.refresh_head(tail);
        }
        let n = free.min(src.len());
        if n == 0 {
            return 0;
        }
        // SAFETY: masked start is in bounds, `n <= free <= capacity`, and the `n` slots from
        // `tail` are free and ours.
        unsafe { self.shared.copy_in(tail & self.mask, &src[..n]) };
        let tail = tail.wrapping_add(n);
        self.tail = tail;
        self.shared.tail.store(tail, Ordering::Release);
        n
    }

    /// The number of free slots right now (it can only grow until the next push).
    #[inline]
    pub fn slots(&self) -> usize {
        self.refresh_head(self.tail)
    }

    /// Whether the ring has no free slot right now. Checks the consumer's index only when the
    /// cached copy says full.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.tail.wrapping_sub(self.cached_head.get()) > self.mask
            && self.refresh_head(self.tail) == 0
    }

    /// The number of values in the ring right now (pushed and not yet popped).
    #[inline]
    pub fn len(&self) -> usize {
        self.capacity() - self.slots()
    }

    /// Whether the consumer has taken everything pushed so far.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of slots: the requested capacity rounded up to a power of two.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Whether the [`Consumer`] has been dropped. Once true, it stays true; pushes still succeed
    /// while there is room, but nobody will read the values (they are dropped with the ring).
    #[inline]
    pub fn is_abandoned(&self) -> bool {
        self.shared.abandoned.load(Ordering::Acquire)
    }

    /// Reloads the consumer's index and returns the free slots it implies.
    ///
    /// The `Acquire` load pairs with the consumer's `Release` store of `head`: the consumer's
    /// reads of the slots it gave back happen before the producer overwrites them.
    #[inline]
    fn refresh_head(&self, tail: usize) -> usize {
        let head = self.shared.head.load(Ordering::Acquire);
        self.cached_head.set(head);
        let len = tail.wrapping_sub(head);
        debug_assert!(len <= self.capacity());
        self.capacity() - len
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // `Release`: everything pushed (and published) before this is visible to a consumer that
        // sees the flag.
        self.shared.abandoned.store(true, Ordering::Release);
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("is_abandoned", &self.is_abandoned())
            .finish()
    }
}

/// The reading end of a ring, made by [`channel`].
///
/// It can be moved to another thread (it is [`Send`] when `T` is) but not shared (it is not
/// [`Sync`]). When it is dropped, [`Producer::is_abandoned`] becomes true; values left in the
/// ring are dropped when the producer is dropped too.
pub struct Consumer<T> {
    /// The ring, shared with the [`Producer`].
    shared: Arc<Shared<T>>,

    /// The consumer's own copy of `shared.head`. The consumer is its only writer, so this is
    /// always equal to it.
    head: usize,

    /// The last value of `shared.tail` the consumer loaded. It may lag the real `tail` (which only
    /// grows), so it can only under-estimate the values available, never over-estimate them:
    /// `cached_tail.wrapping_sub(head) <= capacity` always holds. In a `Cell` so `&self` queries
    /// (and [`peek`](Consumer::peek)) can refresh it.
    cached_tail: Cell<usize>,

    /// `capacity - 1`, copied here to spare a pointer hop on every pop.
    mask: usize,

    /// Empty `tail` reloads in a row, counted up to [`PREFETCH_AFTER`] and reset to 0 by a
    /// reload that finds values. Invariant: `idle <= PREFETCH_AFTER`.
    idle: Cell<u32>,
}

// SAFETY: the consumer is the only handle that reads slots or writes `head`; moving it to another
// thread keeps it the only one. Values of `T` arrive from the producer's thread, which requires
// `T: Send`. It is not `Sync` (the `Cell` sees to that), so no two threads ever use one consumer at
// the same time; `peek`'s `&T` is only reachable through `&Consumer`, so it stays on this thread.
unsafe impl<T: Send> Send for Consumer<T> {}

impl<T> Consumer<T> {
    /// Moves the oldest value out of the ring, or returns `None` if it is empty.
    ///
    /// # Example
    ///
    /// ```
    /// let (mut tx, mut rx) = spinwire_ringbuf::channel(2);
    /// tx.push(1).unwrap();
    /// assert_eq!(rx.pop(), Some(1));
    /// assert_eq!(rx.pop(), None);
    /// ```
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        let head = self.head;
        if head == self.cached_tail.get() && self.refresh_tail(head) == 0 {
            self.found_empty(head);
            return None;
        }
        // SAFETY: masked index is in bounds; `head != tail`, so slot `head` is initialized and
        // ours; `head` is advanced and published right after, so it is not read again.
        let value = unsafe { self.shared.read(head & self.mask) };
        let head = head.wrapping_add(1);
        self.head = head;
        self.shared.head.store(head, Ordering::Release);
        Some(value)
    }

    /// Copies as many of the oldest values into the front of `dst` as are available, frees their
    /// slots with one store, and returns how many it copied (`0` if the ring is empty or `dst`
    /// empty). `dst[n..]` is left untouched.
    ///
    /// # Example
    ///
    /// ```
    /// let (mut tx, mut rx) = spinwire_ringbuf::channel::<u8>(8);
    /// tx.push_slice(b"abc");
    /// let mut buf = [0u8; 8];
    /// assert_eq!(rx.pop_into(&mut buf), 3);
    /// assert_eq!(&buf[..3], b"abc");
    /// ```
    #[inline]
    pub fn pop_into(&mut self, dst: &mut [T]) -> usize
    where
        T: Copy,
    {
        let head = self.head;
        let mut avail = self.cached_tail.get().wrapping_sub(head);
        if avail < dst.len() {
            avail = self.refresh_tail(head);
        }
        let n = avail.min(dst.len());
        if n == 0 {
            if !dst.is_empty() {
                // `tail` was reloaded (`avail < dst.len()`) and still says empty.
                self.found_empty(head);
            }
            return 0;
        }
        // SAFETY: masked start is in bounds, `n <= avail <= capacity`, and the `n` slots from
        // `head` are initialized and ours.
        unsafe { self.shared.copy_out(head & self.mask, &mut dst[..n]) };
        let head = head.wrapping_add(n);
        self.head = head;
        self.shared.head.store(head, Ordering::Release);
        n
    }

    /// A reference to the oldest value without removing it, or `None` if the ring is empty.
    ///
    /// The value stays in the ring: the next [`pop`](Consumer::pop) returns it. While the
    /// reference lives, the consumer cannot pop (that needs `&mut self`), so it stays valid.
    ///
    /// # Example
    ///
    /// ```
    /// let (mut tx, mut rx) = spinwire_ringbuf::channel(2);
    /// tx.push(String::from("fill")).unwrap();
    /// assert_eq!(rx.peek().map(String::as_str), Some("fill"));
    /// assert_eq!(rx.pop().as_deref(), Some("fill"));
    /// assert!(rx.peek().is_none());
    /// ```
    #[inline]
    pub fn peek(&self) -> Option<&T> {
        let head = self.head;
        if head == self.cached_tail.get() && self.refresh_tail(head) == 0 {
            return None;
        }
        // SAFETY: masked index in bounds; slot `head` is initialized and ours, and stays so while
        // `&self` is borrowed: only `&mut self` methods advance `head`, and the producer never
        // writes slots in `head..tail`.
        Some(unsafe { self.shared.get_ref(head & self.mask) })
    }

    /// The number of values available to pop right now (it can only grow until the next pop).
    #[inline]
    pub fn len(&self) -> usize {
        self.refresh_tail(self.head)
    }

    /// Whether there is nothing to pop right now. Checks the producer's index only when the
    /// cached copy says empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head == self.cached_tail.get() && self.refresh_tail(self.head) == 0
    }

    /// The number of slots: the requested capacity rounded up to a power of two.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Whether the [`Producer`] has been dropped. Once true, it stays true, and every value the
    /// producer pushed is visible: pop until `None` to drain it.
    #[inline]
    pub fn is_abandoned(&self) -> bool {
        self.shared.abandoned.load(Ordering::Acquire)
    }

    /// The ring was found empty at `head` after a `tail` reload. Once that has happened
    /// [`PREFETCH_AFTER`] times in a row, the consumer is waiting rather than keeping pace with
    /// a producer that is writing right now, and every further empty poll prefetches slot
    /// `head` (see [`Shared::prefetch`]): the slot's line then arrives together with `tail`
    /// and the one-way latency stays near the bare cache-line floor. Before that, prefetching
    /// would pull the line the producer is filling away from it between its writes: with
    /// 8-byte items and an eager consumer, that cost a third of the single-item throughput.
    #[inline(always)]
    fn found_empty(&self, head: usize) {
        let idle = self.idle.get();
        if idle >= PREFETCH_AFTER {
            self.shared.prefetch(head & self.mask);
        } else {
            self.idle.set(idle + 1);
        }
    }

    /// Reloads the producer's index and returns the number of values it implies; a reload that
    /// finds values resets the empty-poll count.
    ///
    /// The `Acquire` load pairs with the producer's `Release` store of `tail`: the producer's
    /// writes of the slots it published happen before the consumer reads them.
    #[inline]
    fn refresh_tail(&self, head: usize) -> usize {
        let tail = self.shared.tail.load(Ordering::Acquire);
        self.cached_tail.set(tail);
        let len = tail.wrapping_sub(head);
        if len != 0 {
            self.idle.set(0);
        }
        debug_assert!(len <= self.capacity());
        len
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        // `Release`: pairs with the producer's `Acquire` load in `is_abandoned`.
        self.shared.abandoned.store(true, Ordering::Release);
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("is_abandoned", &self.is_abandoned())
            .finish()
    }
}

/// The error from [`Producer::push`] on a full ring: the value, handed back untouched.
///
/// `Copy` when `T` is, so it costs nothing on the hot path; take the value back with `.0` or
/// [`into_inner`](Full::into_inner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Full<T>(pub T);

impl<T> Full<T> {
    /// The value that did not fit.
    #[inline]
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ring is full")
    }
}

impl<T: fmt::Debug> std::error::Error for Full<T> {}

/// The error from [`try_channel`] when the requested capacity cannot be allocated: rounded up
/// to a power of two it overflows `usize`, or the slots would exceed `isize::MAX` bytes.
/// Ask for a smaller ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityError {
    /// The capacity that was asked for.
    pub requested: usize,
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ring capacity {} is too large (rounded up to a power of two it overflows, or the \
             slots exceed isize::MAX bytes)",
            self.requested
        )
    }
}

impl std::error::Error for CapacityError {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn indices_wrap_across_usize_max_without_losing_order() {
        let start = usize::MAX - 5;
        let (mut tx, mut rx) = channel_starting_at::<u32>(4, start);
        let mut next_in = 0u32;
        let mut next_out = 0u32;
        // Single and batch operations carry both indices across usize::MAX.
        for round in 0..6 {
            if round % 2 == 0 {
                while tx.push(next_in).is_ok() {
                    next_in += 1;
                }
                assert!(tx.is_full());
                assert_eq!(rx.len(), 4);
                while let Some(v) = rx.pop() {
                    assert_eq!(v, next_out);
                    next_out += 1;
                }
            } else {
                let batch: Vec<u32> = (next_in..next_in + 3).collect();
                assert_eq!(tx.push_slice(&batch), 3);
                next_in += 3;
                let mut out = [0u32; 8];
                assert_eq!(rx.pop_into(&mut out), 3);
                assert_eq!(&out[..3], &batch[..]);
                next_out += 3;
            }
            assert!(rx.is_empty());
            assert_eq!(tx.slots(), 4);
        }
        assert_eq!(next_in, next_out);
        assert!(tx.tail < start, "the tail index must have wrapped");
    }

    #[test]
    fn leftovers_across_usize_max_are_dropped_once() {
        let counter = std::sync::Arc::new(AtomicUsize::new(0));
        struct Counted(std::sync::Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (mut tx, mut rx) = channel_starting_at::<Counted>(4, usize::MAX - 1);
        for _ in 0..4 {
            assert!(tx.push(Counted(counter.clone())).is_ok());
        }
        drop(rx.pop());
        assert!(tx.push(Counted(counter.clone())).is_ok());
        assert_eq!(counter.load(Ordering::Relaxed), 1);
        drop(tx);
        drop(rx);
        assert_eq!(counter.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn slot_buffer_starts_on_a_cache_line_and_fills_whole_lines() {
        let (tx, _rx) = channel::<[u64; 8]>(4);
        assert_eq!(tx.shared.slots.base() as usize % slots::LINE, 0);
        let (tx, _rx) = channel::<u8>(3);
        assert_eq!(tx.shared.slots.base() as usize % slots::LINE, 0);
        assert_eq!(slots::layout::<u8>(4).unwrap().size(), slots::LINE);
        assert_eq!(slots::layout::<[u64; 8]>(4).unwrap().size(), 256);
        assert_eq!(slots::layout::<()>(1 << 40).unwrap().size(), 0);
        assert!(slots::layout::<u64>(usize::MAX / 4).is_none());
    }

    #[test]
    fn ring_indices_live_on_separate_cache_lines() {
        let (tx, _rx) = channel::<u8>(8);
        let head = &*tx.shared.head as *const AtomicUsize as usize;
        let tail = &*tx.shared.tail as *const AtomicUsize as usize;
        assert!(head.abs_diff(tail) >= 128);
        assert_eq!(head % 128, 0);
        assert_eq!(tail % 128, 0);
    }

    #[test]
    fn the_consumer_prefetches_only_after_waiting_and_stops_when_values_arrive() {
        let (mut tx, mut rx) = channel::<u64>(8);
        let mut buf = [0u64; 4];
        // Empty polls count up to the threshold and no further, through both pop paths.
        for i in 1..=PREFETCH_AFTER {
            if i % 2 == 0 {
                assert_eq!(rx.pop_into(&mut buf), 0);
            } else {
                assert_eq!(rx.pop(), None);
            }
            assert_eq!(rx.idle.get(), i);
        }
        assert_eq!(rx.pop(), None);
        assert_eq!(rx.idle.get(), PREFETCH_AFTER, "the count saturates");
        // A reload that finds a value means the producer is active again: start over.
        tx.push(7).unwrap();
        assert_eq!(rx.pop(), Some(7));
        assert_eq!(rx.idle.get(), 0);
        // An empty destination is not an empty ring.
        tx.push(8).unwrap();
        assert_eq!(rx.pop_into(&mut []), 0);
        assert_eq!(rx.idle.get(), 0);
        assert_eq!(rx.pop(), Some(8));
    }
}
