//! Loom models of the ring: every interleaving (up to the preemption bound) of two threads
//! pushing and popping, dropping ends, and cleaning up.
//!
//! Run with `tools/ci/loom.sh` (it sets `--cfg loom` and `LOOM_MAX_PREEMPTIONS`).
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc as StdArc;

use loom::thread;
use spinwire_ringbuf::{channel, Full};

/// Pushes `value`, yielding to the model scheduler while the ring is full.
fn push_blocking<T: Send>(tx: &mut spinwire_ringbuf::Producer<T>, mut value: T) {
    loop {
        match tx.push(value) {
            Ok(()) => return,
            Err(Full(back)) => {
                value = back;
                thread::yield_now();
            }
        }
    }
}

#[test]
fn values_cross_threads_in_order_through_a_two_slot_ring() {
    loom::model(|| {
        let (mut tx, mut rx) = channel::<u32>(2);
        let producer = thread::spawn(move || {
            for i in 0..3 {
                push_blocking(&mut tx, i);
            }
        });
        let mut expected = 0;
        while expected < 3 {
            match rx.pop() {
                Some(v) => {
                    assert_eq!(v, expected);
                    expected += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(rx.pop(), None);
    });
}

#[test]
fn batches_cross_threads_in_order() {
    loom::model(|| {
        let (mut tx, mut rx) = channel::<u32>(2);
        let producer = thread::spawn(move || {
            let values = [10, 11, 12];
            let mut sent = 0;
            while sent < values.len() {
                let n = tx.push_slice(&values[sent..]);
                if n == 0 {
                    thread::yield_now();
                }
                sent += n;
            }
        });
        let mut got = Vec::new();
        let mut buf = [0u32; 2];
        while got.len() < 3 {
            let n = rx.pop_into(&mut buf);
            if n == 0 {
                thread::yield_now();
            }
            got.extend_from_slice(&buf[..n]);
        }
        producer.join().unwrap();
        assert_eq!(got, [10, 11, 12]);
    });
}

#[test]
fn peek_sees_the_value_pop_then_returns() {
    loom::model(|| {
        let (mut tx, mut rx) = channel::<u32>(2);
        let producer = thread::spawn(move || {
            push_blocking(&mut tx, 1);
            push_blocking(&mut tx, 2);
        });
        for expected in [1, 2] {
            let peeked = loop {
                if let Some(v) = rx.peek() {
                    break *v;
                }
                thread::yield_now();
            };
            assert_eq!(peeked, expected);
            assert_eq!(rx.pop(), Some(expected));
        }
        producer.join().unwrap();
    });
}

#[test]
fn consumer_still_gets_every_value_after_the_producer_drops() {
    loom::model(|| {
        let (mut tx, mut rx) = channel::<u32>(2);
        let producer = thread::spawn(move || {
            push_blocking(&mut tx, 1);
            push_blocking(&mut tx, 2);
            drop(tx);
        });
        let mut got = Vec::new();
        loop {
            match rx.pop() {
                Some(v) => got.push(v),
                // The ring looked empty, but the producer may have pushed more before it
                // dropped: once abandonment is seen, every push is visible, so drain and stop.
                None if rx.is_abandoned() => {
                    while let Some(v) = rx.pop() {
                        got.push(v);
                    }
                    break;
                }
                None => thread::yield_now(),
            }
        }
        assert_eq!(got, [1, 2]);
        producer.join().unwrap();
    });
}

#[test]
fn producer_sees_the_consumer_drop() {
    loom::model(|| {
        let (mut tx, rx) = channel::<u32>(1);
        let consumer = thread::spawn(move || drop(rx));
        while !tx.is_abandoned() {
            let _ = tx.push(1);
            thread::yield_now();
        }
        consumer.join().unwrap();
    });
}

/// Counts its drops in a (non-model) shared counter that the model checks after joining.
struct Counted(StdArc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn leftovers_are_dropped_once_whichever_thread_drops_last() {
    loom::model(|| {
        let drops = StdArc::new(AtomicUsize::new(0));
        let (mut tx, mut rx) = channel::<Counted>(2);
        let d = StdArc::clone(&drops);
        let producer = thread::spawn(move || {
            push_blocking(&mut tx, Counted(StdArc::clone(&d)));
            push_blocking(&mut tx, Counted(d));
            drop(tx);
        });
        let consumer = thread::spawn(move || {
            // Take at most one value, then drop the consumer while the producer may still be
            // pushing: the two ends are dropped in either order.
            let popped = rx.pop();
            drop(rx);
            popped.is_some()
        });
        producer.join().unwrap();
        let popped_one = consumer.join().unwrap();
        // The popped value (if any) was dropped by the consumer thread; the rest by the ring.
        assert_eq!(drops.load(Ordering::SeqCst), 2, "popped one: {popped_one}");
    });
}
