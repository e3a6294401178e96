//! The slot buffer: `len` cells of `MaybeUninit<T>`, allocated once.
//!
//! In a normal build the buffer starts on a [`LINE`]-byte boundary and its size is rounded up
//! to a multiple of [`LINE`], so a 64-byte record occupies exactly one cache line instead of
//! straddling two, and the ring's slots never share a line (or an adjacent-line prefetch pair)
//! with unrelated heap data. Under loom it is a plain boxed slice: loom's cells are not
//! layout-compatible with `T`, and layout is not what loom checks.

use core::mem::MaybeUninit;

use crate::primitive::UnsafeCell;

/// One slot: a possibly-uninitialized `T` that either end may access through a shared reference.
pub(crate) type Slot<T> = UnsafeCell<MaybeUninit<T>>;

/// Alignment of the buffer and granularity of its size: 128 bytes, matching
/// `crossbeam_utils::CachePadded` on x86_64 (the adjacent-line prefetcher pulls lines in pairs).
pub(crate) const LINE: usize = 128;

/// The layout of a buffer of `len` slots of `T`, or `None` if it would exceed `isize::MAX`
/// bytes. Zero-sized `T` gives a zero-sized layout, which is never allocated.
pub(crate) fn layout<T>(len: usize) -> Option<std::alloc::Layout> {
    let size = core::mem::size_of::<T>().checked_mul(len)?;
    if size == 0 {
        return Some(std::alloc::Layout::new::<()>());
    }
    let size = size.checked_next_multiple_of(LINE)?;
    std::alloc::Layout::from_size_align(size, LINE.max(core::mem::align_of::<T>())).ok()
}

/// The owned slot buffer.
#[cfg(not(loom))]
pub(crate) struct Slots<T> {
    /// Start of the buffer. Invariant: points to `len` slots allocated with `layout::<T>(len)`
    /// by the global allocator, or is a dangling well-aligned pointer when that layout has size
    /// zero (zero-sized `T`). The slots' contents are managed by the ring, never dropped here.
    ptr: core::ptr::NonNull<Slot<T>>,
    /// Number of slots, at least one.
    len: usize,
}

#[cfg(not(loom))]
impl<T> Slots<T> {
    /// Allocates `len` uninitialized slots.
    ///
    /// # Panics
    ///
    /// If `layout::<T>(len)` is `None` (callers check it first); aborts through
    /// `handle_alloc_error` if the allocator fails, as `Box` does.
    pub(crate) fn new(len: usize) -> Self {
        assert!(len > 0, "a ring has at least one slot");
        let layout = layout::<T>(len).expect("slot buffer layout checked by the caller");
        let ptr = if layout.size() == 0 {
            core::ptr::NonNull::dangling()
        } else {
            // SAFETY: the layout has a non-zero size.
            let raw = unsafe { std::alloc::alloc(layout) };
            match core::ptr::NonNull::new(raw.cast::<Slot<T>>()) {
                Some(ptr) => ptr,
                None => std::alloc::handle_alloc_error(layout),
            }
        };
        Slots { ptr, len }
    }

    /// Number of slots.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The slot at `idx`, without a bounds check.
    ///
    /// # Safety
    ///
    /// `idx < self.len()`.
    #[inline(always)]
    pub(crate) unsafe fn get_unchecked(&self, idx: usize) -> &Slot<T> {
        debug_assert!(idx < self.len);
        // SAFETY: `idx < len` (caller's contract), so the pointer stays inside the buffer, which
        // lives as long as `self`. Slots may be uninitialized: a `MaybeUninit` needs no init.
        unsafe { &*self.ptr.as_ptr().add(idx) }
    }

    /// A pointer to slot 0 as a `T`, valid for reads and writes of all `len` slots (the caller
    /// must still respect which end owns which slot). `Slot<T>` is `repr(transparent)` over
    /// `MaybeUninit<T>`, which has `T`'s layout.
    #[inline(always)]
    pub(crate) fn base(&self) -> *mut T {
        self.ptr.as_ptr().cast::<T>()
    }
}

#[cfg(not(loom))]
impl<T> Drop for Slots<T> {
    fn drop(&mut self) {
        let layout = layout::<T>(self.len).expect("layout was valid at allocation");
        if layout.size() != 0 {
            // SAFETY: allocated in `new` with exactly this layout (type invariant), freed once.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast::<u8>(), layout) };
        }
    }
}

/// The owned slot buffer (loom build: a boxed slice).
#[cfg(loom)]
pub(crate) struct Slots<T>(Box<[Slot<T>]>);

#[cfg(loom)]
impl<T> Slots<T> {
    /// Allocates `len` uninitialized slots.
    pub(crate) fn new(len: usize) -> Self {
        assert!(len > 0, "a ring has at least one slot");
        Slots(
            (0..len)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
        )
    }

    /// Number of slots.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The slot at `idx` (bounds-checked here; loom builds are not about speed).
    ///
    /// # Safety
    ///
    /// `idx < self.len()`.
    pub(crate) unsafe fn get_unchecked(&self, idx: usize) -> &Slot<T> {
        debug_assert!(idx < self.0.len());
        &self.0[idx]
    }
}
