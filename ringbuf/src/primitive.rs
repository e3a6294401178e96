//! The synchronization primitives the ring is built on, swapped for loom's models under
//! `--cfg loom` (the same arrangement as crossbeam-utils' `mod primitive`).
//!
//! Both builds expose the same names with the same API:
//!
//! - `AtomicBool`, `AtomicUsize`, `Ordering`: `std`'s in a normal build, `loom::sync::atomic`'s
//!   under loom;
//! - `Arc`: `std::sync::Arc` or `loom::sync::Arc`;
//! - `UnsafeCell`: loom's cell, or a zero-cost wrapper around `core::cell::UnsafeCell` that offers
//!   loom's closure-based `with` / `with_mut` API, so the ring's code compiles in both builds.
//!
//! Loom can only track accesses cell by cell, so under loom the batch copies go element by
//! element, while the normal build copies whole runs through a raw pointer.

#[cfg(loom)]
pub(crate) use loom::{
    cell::UnsafeCell,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
};

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc,
};

/// `core::cell::UnsafeCell` with loom's access API.
///
/// It has no constructor: the slot buffer is allocated uninitialized (see `slots.rs`), and a
/// cell of `MaybeUninit` needs no initialization.
///
/// `#[repr(transparent)]`, so a `[UnsafeCell<T>]` has exactly the layout of a `[T]`; the batch
/// copies rely on that (see `Slots::base`).
#[cfg(not(loom))]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Calls `f` with a pointer for reading the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Calls `f` with a pointer for writing the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
