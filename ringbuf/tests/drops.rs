//! Every value put into the ring is dropped exactly once: by the user after a pop or a `Full`,
//! or by the ring itself when both ends are gone.
#![cfg(not(loom))]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use spinwire_ringbuf::{channel, Full};

/// A value that counts its drops in a shared counter.
#[derive(Debug)]
struct Counted {
    drops: Arc<AtomicUsize>,
    id: usize,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn counted(drops: &Arc<AtomicUsize>, id: usize) -> Counted {
    Counted {
        drops: Arc::clone(drops),
        id,
    }
}

#[test]
fn leftovers_are_dropped_once_when_the_producer_is_dropped_last() {
    let drops = counter();
    let (mut tx, rx) = channel(8);
    for i in 0..5 {
        tx.push(counted(&drops, i)).unwrap();
    }
    drop(rx);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "one end alive keeps the values"
    );
    drop(tx);
    assert_eq!(drops.load(Ordering::SeqCst), 5);
}

#[test]
fn leftovers_are_dropped_once_when_the_consumer_is_dropped_last() {
    let drops = counter();
    let (mut tx, mut rx) = channel(8);
    for i in 0..5 {
        tx.push(counted(&drops, i)).unwrap();
    }
    drop(tx);
    drop(rx.pop());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop(rx);
    assert_eq!(drops.load(Ordering::SeqCst), 5);
}

#[test]
fn leftovers_that_wrap_around_the_buffer_end_are_dropped_once() {
    let drops = counter();
    let (mut tx, mut rx) = channel(4);
    for i in 0..3 {
        tx.push(counted(&drops, i)).unwrap();
    }
    for _ in 0..3 {
        drop(rx.pop());
    }
    // Now head = tail = 3: the next four values occupy slots 3, 0, 1, 2.
    for i in 3..7 {
        tx.push(counted(&drops, i)).unwrap();
    }
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    drop(rx);
    drop(tx);
    assert_eq!(drops.load(Ordering::SeqCst), 7);
}

#[test]
fn popped_values_are_dropped_by_the_user_only() {
    let drops = counter();
    let (mut tx, mut rx) = channel(4);
    tx.push(counted(&drops, 0)).unwrap();
    tx.push(counted(&drops, 1)).unwrap();
    let first = rx.pop().unwrap();
    assert_eq!(first.id, 0);
    let peeked_id = rx.peek().unwrap().id;
    assert_eq!(peeked_id, 1);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "pop and peek must not drop"
    );
    drop(tx);
    drop(rx);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "only the leftover was dropped"
    );
    assert_eq!(first.id, 0, "the popped value is still intact");
    drop(first);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn full_gives_the_value_back_without_dropping_it() {
    let drops = counter();
    let (mut tx, rx) = channel(1);
    tx.push(counted(&drops, 0)).unwrap();
    let Full(back) = tx.push(counted(&drops, 1)).unwrap_err();
    assert_eq!(back.id, 1);
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(back);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop((tx, rx));
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn an_empty_ring_drops_nothing() {
    let drops = counter();
    let (mut tx, mut rx) = channel(4);
    tx.push(counted(&drops, 0)).unwrap();
    let v = rx.pop().unwrap();
    drop((tx, rx));
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(v);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn ends_dropped_on_different_threads_at_once_drop_leftovers_once() {
    let rounds = if cfg!(miri) { 5 } else { 200 };
    for round in 0..rounds {
        let drops = counter();
        let (mut tx, rx) = channel(8);
        for i in 0..6 {
            tx.push(counted(&drops, i)).unwrap();
        }
        let start = Arc::new(Barrier::new(2));
        let start2 = Arc::clone(&start);
        let t = std::thread::spawn(move || {
            start2.wait();
            drop(rx);
        });
        start.wait();
        drop(tx);
        t.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 6, "round {round}");
    }
}

/// Panics when dropped if `bomb` is set; counts every drop either way.
struct MaybePanics {
    drops: Arc<AtomicUsize>,
    bomb: bool,
}

impl Drop for MaybePanics {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if self.bomb {
            panic!("destructor panicked on purpose");
        }
    }
}

#[test]
fn a_panicking_destructor_does_not_leak_the_other_leftovers() {
    let drops = counter();
    let (mut tx, mut rx) = channel(4);
    // Put head at slot 2 so the leftovers wrap: slots 2, 3, 0, 1.
    for _ in 0..2 {
        tx.push(MaybePanics {
            drops: Arc::clone(&drops),
            bomb: false,
        })
        .ok()
        .unwrap();
        drop(rx.pop());
    }
    for i in 0..4 {
        tx.push(MaybePanics {
            drops: Arc::clone(&drops),
            bomb: i == 0,
        })
        .ok()
        .unwrap();
    }
    drop(rx);
    let result = catch_unwind(AssertUnwindSafe(move || drop(tx)));
    assert!(result.is_err(), "the destructor's panic propagates");
    assert_eq!(drops.load(Ordering::SeqCst), 2 + 4);
}
