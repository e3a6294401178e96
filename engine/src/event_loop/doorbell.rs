//! Telling the engine a strategy pushed, and waking it when it is parked: the [`Doorbell`] and
//! the strategy-side senders that ring it.
//!
//! A strategy pushes an order request or a control command onto its SPSC ring, then sets its
//! session's bit in the doorbell's pending words. Each turn the engine takes those words (one
//! load each while nothing is pending) and visits only the sessions whose bits were set, so an
//! idle turn costs the same with 1 session or 64. While the engine waits in `epoll_wait`
//! (blocking mode, or a parked spin-then-park) the push must also wake it. The protocol
//! (Dekker's, with one flag):
//!
//! - engine, before a kernel wait: `parked = true`; a `SeqCst` fence; look at the pending
//!   words once more; wait only if all are zero; after the wait `parked = false`;
//! - strategy, after each push: set its bit with a `SeqCst` read-modify-write (a full fence);
//!   if `parked` is set, swap it to `false` and, if it was still set, write the engine's
//!   eventfd ([`mio::Waker`]).
//!
//! Each side's write comes before its read in the single `SeqCst` order, so at least one side
//! sees the other: either the engine sees the pending bit and does not wait, or the strategy
//! sees `parked` and wakes it. While the engine spins `parked` stays `false`: a push then
//! costs the read-modify-write of the pending word and a load, never a system call.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use mio::Waker;
use spinwire_ringbuf::{Full, Producer};

use crate::orders::OrderRequest;

use super::control::ControlRequest;

/// The engine's pending words and "I am about to wait in the kernel" flag, and the waker that
/// ends the wait. Shared (`Arc`) by the engine thread and every strategy sender of that engine.
#[derive(Debug)]
pub struct Doorbell {
    /// Set by the engine right before a kernel wait, cleared after it (or by the strategy that
    /// wakes it). Alone on its cache line: strategies read it after every push.
    parked: CachePadded<AtomicBool>,
    /// Bit `i % 64` of word `i / 64`: session `i`'s strategy pushed since the engine last
    /// took the word.
    pending: Box<[CachePadded<AtomicU64>]>,
    /// Writes the engine's eventfd.
    waker: Arc<Waker>,
    /// Wake-ups sent by strategies (system calls made on their side).
    rung: AtomicU64,
}

impl Doorbell {
    /// A doorbell for up to `sessions` sessions that wakes the poll `waker` belongs to.
    pub fn new(waker: Arc<Waker>, sessions: usize) -> Doorbell {
        let words = sessions.max(1).div_ceil(64);
        Doorbell {
            parked: CachePadded::new(AtomicBool::new(false)),
            pending: (0..words)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
            waker,
            rung: AtomicU64::new(0),
        }
    }

    /// Number of pending words.
    #[inline]
    pub fn words(&self) -> usize {
        self.pending.len()
    }

    /// Engine side: takes pending word `word` (its bits are sessions whose strategies pushed).
    /// One load while nothing is pending.
    #[inline]
    pub fn take(&self, word: usize) -> u64 {
        let w = &self.pending[word];
        if w.load(Ordering::Relaxed) == 0 {
            0
        } else {
            w.swap(0, Ordering::Acquire)
        }
    }

    /// Engine side: about to wait in the kernel. Then look at [`Doorbell::any_pending`] once
    /// more, and call [`Doorbell::unpark`] after the wait (or instead of it): see the
    /// [module docs](self).
    #[inline]
    pub fn park(&self) {
        self.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Engine side, after [`Doorbell::park`]: whether a strategy pushed meanwhile.
    #[inline]
    pub fn any_pending(&self) -> bool {
        self.pending.iter().any(|w| w.load(Ordering::SeqCst) != 0)
    }

    /// Engine side: the wait is over (or was cancelled).
    #[inline]
    pub fn unpark(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }

    /// Strategy side, after a push for session `word * 64 + bit`: marks it pending and wakes
    /// the engine when it is parked.
    #[inline]
    pub fn ring(&self, word: usize, mask: u64) {
        self.pending[word].fetch_or(mask, Ordering::SeqCst);
        self.wake_if_parked();
    }

    /// Wakes the engine if it is parked (after the caller's own `SeqCst` write).
    #[inline]
    fn wake_if_parked(&self) {
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::AcqRel) {
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
    /// The session's pending word.
    word: usize,
    /// The session's bit in it.
    mask: u64,
}

/// The strategy's end of the OrderRequest ring.
pub type OrderSender = WakingSender<OrderRequest>;
/// The strategy's end of the Control ring.
pub type ControlSender = WakingSender<ControlRequest>;

impl<T: Copy + Send> WakingSender<T> {
    /// Wraps session `session`'s ring producer.
    pub fn new(tx: Producer<T>, bell: Arc<Doorbell>, session: usize) -> WakingSender<T> {
        WakingSender {
            tx,
            bell,
            word: session / 64,
            mask: 1 << (session % 64),
        }
    }

    /// Pushes `value` and wakes the engine if it is parked; a full ring gives it back.
    ///
    /// # Errors
    /// [`Full`] with the value when the ring has no room (the engine has not popped yet).
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), Full<T>> {
        self.tx.push(value)?;
        self.bell.ring(self.word, self.mask);
        Ok(())
    }

    /// Wakes the engine if it is parked, without pushing anything: for a strategy that took
    /// order events and wants the engine's consumed mark
    /// ([`OrderEventsMarked`](crate::session::driver::OrderEventsMarked)) on its next turn
    /// rather than after its current wait. Costs what a push's wake-up costs.
    #[inline]
    pub fn wake_engine(&self) {
        self.bell.ring(self.word, self.mask);
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
