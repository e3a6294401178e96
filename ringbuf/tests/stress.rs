//! Two threads, one ring, millions of values: every sequence number arrives exactly once and in
//! order, through any mix of single and batch operations.
//!
//! Built for a shared machine with two cores: waiting spins briefly, then yields, so the test
//! never depends on having a core to itself.
#![cfg(not(loom))]

use std::hint::spin_loop;
use std::thread;

use spinwire_ringbuf::{channel, Consumer, Producer};

/// Number of values per test: millions in release, fewer in debug, a handful under Miri.
fn count(release: u64) -> u64 {
    if cfg!(miri) {
        2_000
    } else if cfg!(debug_assertions) {
        release / 4
    } else {
        release
    }
}

/// Spins a few times, then yields the core to whoever else needs it.
struct Backoff(u32);

impl Backoff {
    fn new() -> Self {
        Backoff(0)
    }

    fn wait(&mut self) {
        if self.0 < 32 {
            spin_loop();
            self.0 += 1;
        } else {
            thread::yield_now();
        }
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// A cheap deterministic pseudo-random sequence (xorshift), so each side mixes operations
/// differently from the other and from run to run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn produce(mut tx: Producer<u64>, n: u64, seed: u64) {
    let mut rng = Rng(seed);
    let mut backoff = Backoff::new();
    let mut batch = [0u64; 40];
    let mut next = 0u64;
    while next < n {
        let r = rng.next();
        let progressed = if r % 3 == 0 {
            let len = (1 + (r >> 8) % batch.len() as u64).min(n - next) as usize;
            for (i, slot) in batch[..len].iter_mut().enumerate() {
                *slot = next + i as u64;
            }
            let pushed = tx.push_slice(&batch[..len]);
            next += pushed as u64;
            pushed > 0
        } else if tx.push(next).is_ok() {
            next += 1;
            true
        } else {
            false
        };
        if progressed {
            backoff.reset();
        } else {
            // A consumer that panicked drops its end: stop instead of waiting forever.
            if tx.is_abandoned() {
                return;
            }
            backoff.wait();
        }
    }
}

fn consume(mut rx: Consumer<u64>, n: u64, seed: u64) {
    let mut rng = Rng(seed);
    let mut backoff = Backoff::new();
    let mut batch = [0u64; 40];
    let mut expected = 0u64;
    while expected < n {
        let r = rng.next();
        let progressed = if r % 3 == 0 {
            let len = 1 + ((r >> 8) % batch.len() as u64) as usize;
            let got = rx.pop_into(&mut batch[..len]);
            for &v in &batch[..got] {
                assert_eq!(v, expected, "out of order or duplicated");
                expected += 1;
            }
            got > 0
        } else if r % 7 == 1 {
            // Peek, then pop: both must see the same value.
            match rx.peek().copied() {
                Some(v) => {
                    assert_eq!(v, expected, "peek saw the wrong value");
                    assert_eq!(rx.pop(), Some(v), "pop disagreed with peek");
                    expected += 1;
                    true
                }
                None => false,
            }
        } else if let Some(v) = rx.pop() {
            assert_eq!(v, expected, "out of order or duplicated");
            expected += 1;
            true
        } else {
            false
        };
        if progressed {
            backoff.reset();
        } else {
            assert!(
                !(rx.is_abandoned() && rx.is_empty()),
                "producer gone after {expected} of {n} values"
            );
            backoff.wait();
        }
    }
    assert!(rx.pop().is_none(), "more values than were sent");
}

fn run(capacity: usize, n: u64, seed: u64) {
    let (tx, rx) = channel::<u64>(capacity);
    let producer = thread::spawn(move || produce(tx, n, seed));
    let consumer = thread::spawn(move || consume(rx, n, seed.rotate_left(17) | 1));
    producer.join().expect("producer panicked");
    consumer.join().expect("consumer panicked");
}

#[test]
fn two_threads_deliver_every_sequence_number_once_and_in_order() {
    run(1024, count(4_000_000), 0x9E37_79B9_7F4A_7C15);
}

#[test]
fn a_tiny_ring_under_constant_full_and_empty_transitions_loses_nothing() {
    run(2, count(400_000), 0x2545_F491_4F6C_DD1D);
}

#[test]
fn heap_values_cross_threads_intact() {
    let n = count(400_000);
    let (mut tx, mut rx) = channel::<Box<u64>>(64);
    let producer = thread::spawn(move || {
        let mut backoff = Backoff::new();
        for i in 0..n {
            let mut value = Box::new(i);
            loop {
                match tx.push(value) {
                    Ok(()) => break,
                    Err(_) if tx.is_abandoned() => return,
                    Err(full) => {
                        value = full.into_inner();
                        backoff.wait();
                    }
                }
            }
            backoff.reset();
        }
    });
    let mut backoff = Backoff::new();
    let mut expected = 0;
    while expected < n {
        match rx.pop() {
            Some(v) => {
                assert_eq!(*v, expected);
                expected += 1;
                backoff.reset();
            }
            None => backoff.wait(),
        }
    }
    producer.join().unwrap();
    assert!(rx.is_abandoned());
    assert!(rx.pop().is_none());
}
