//! Waking a parked engine: the [`Doorbell`] and the strategy-side senders that ring it.
//!
//! A strategy pushes an order request or a control command onto its SPSC ring. While the engine
//! spins, it sees the push on its next turn and nothing else is needed. While it waits in
//! `epoll_wait` (blocking mode, or a parked spin-then-park), the push must wake it, or the
//! request waits for the next timer. The protocol (Dekker's, with one flag):
//!
//! - engine, before a kernel wait: `parked = true`; a `SeqCst` fence; look at every incoming
//!   ring once more; wait only if all are empty; after the wait `parked = false`;
//! - strategy, after each push: a `SeqCst` fence; if `parked` is set, swap it to `false` and,
//!   if it was still set, write the engine's eventfd ([`mio::Waker`]).
//!
//! The two fences order each side's store before its load, so at least one side sees the
//! other: either the engine sees the pushed request and does not wait, or the strategy sees
//! `parked` and wakes it. While the engine spins `parked` stays `false`: a push then costs a
//! fence and a load of a cache line the engine does not write, never a system call.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use mio::Waker;
use spinwire_ringbuf::{Full, Producer};

use crate::orders::OrderRequest;

use super::control::ControlRequest;

/// The engine's "I am about to wait in the kernel" flag and the waker that ends the wait.
/// Shared (`Arc`) by the engine thread and every strategy sender of that engine.
#[derive(Debug)]
pub struct Doorbell {
    /// Set by the engine right before a kernel wait, cleared after it (or by the strategy that
    /// wakes it). Alone on its cache line: strategies read it after every push.
    parked: CachePadded<AtomicBool>,
    /// Writes the engine's eventfd.
    waker: Arc<Waker>,
    /// Wake-ups sent by strategies (system calls made on their side).
    rung: AtomicU64,
}

impl Doorbell {
    /// A doorbell that wakes the poll `waker` belongs to.
    pub fn new(waker: Arc<Waker>) -> Doorbell {
        Doorbell {
            parked: CachePadded::new(AtomicBool::new(false)),
            waker,
            rung: AtomicU64::new(0),
        }
    }

    /// Engine side: about to wait in the kernel. Call [`Doorbell::unpark`] after the wait,
    /// and look at the incoming rings once more between the two: see the [module docs](self).
    #[inline]
    pub fn park(&self) {
        self.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Engine side: the wait is over (or was cancelled).
    #[inline]
    pub fn unpark(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }

    /// Strategy side, after a push: wakes the engine when it is parked.
    #[inline]
    pub fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            self.rung.fetch_add(1, Ordering::Relaxed);
            // An eventfd write fails only when its counter would overflow (2^64 - 2 unread
            // wake-ups): then the engine is awake anyway.
            let _ = self.waker.wake();
        }
    }

    /// Wakes the engine whether or not it is parked (a stop request: rare, one system call).
    pub fn wake_now(&self) {
        self.parked.store(false, Ordering::Relaxed);
        let _ = self.waker.wake();
    }

    /// Wake-ups strategies have sent so far.
    pub fn rung(&self) -> u64 {
        self.rung.load(Ordering::Relaxed)
    }
}

/// A strategy's end of an incoming ring (OrderRequest or Control) that wakes a parked engine
/// after each push; otherwise the same as the ring's [`Producer`].
#[derive(Debug)]
pub struct WakingSender<T> {
    tx: Producer<T>,
    bell: Arc<Doorbell>,
}

/// The strategy's end of the OrderRequest ring.
pub type OrderSender = WakingSender<OrderRequest>;
/// The strategy's end of the Control ring.
pub type ControlSender = WakingSender<ControlRequest>;

impl<T: Copy + Send> WakingSender<T> {
    /// Wraps a ring's producer.
    pub fn new(tx: Producer<T>, bell: Arc<Doorbell>) -> WakingSender<T> {
        WakingSender { tx, bell }
    }

    /// Pushes `value` and wakes the engine if it is parked; a full ring gives it back.
    ///
    /// # Errors
    /// [`Full`] with the value when the ring has no room (the engine has not popped yet).
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), Full<T>> {
        self.tx.push(value)?;
        self.bell.ring();
        Ok(())
    }

    /// Wakes the engine if it is parked, without pushing anything: for a strategy that took
    /// order events and wants the engine's consumed mark
    /// ([`OrderEventsMarked`](crate::session::driver::OrderEventsMarked)) on its next turn
    /// rather than after its current wait. Costs what a push's wake-up costs.
    #[inline]
    pub fn wake_engine(&self) {
        self.bell.ring();
    }

    /// Free slots.
    pub fn slots(&self) -> usize {
        self.tx.slots()
    }

    /// Items not yet popped by the engine.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// Whether the engine has popped everything.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// Whether the ring is full.
    pub fn is_full(&self) -> bool {
        self.tx.is_full()
    }

    /// The ring's capacity.
    pub fn capacity(&self) -> usize {
        self.tx.capacity()
    }

    /// Whether the engine side is gone.
    pub fn is_abandoned(&self) -> bool {
        self.tx.is_abandoned()
    }
}
