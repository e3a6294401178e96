//! Single-item ring throughput in interleaved rounds (a companion to the criterion bench
//! `ring_throughput`, which runs each queue once and is at the mercy of a noisy neighbour):
//! a pinned producer pushes N 8-byte (or 64-byte) items one at a time, a pinned consumer pops
//! them one at a time; spinwire-ringbuf, rtrb and crossbeam's ArrayQueue run in turn, ROUNDS
//! times, and the median ns/item of each is printed with its ratio to the others.
//!
//! Two reference figures come from the same rounds: `batch32`, spinwire moving the same items
//! with `push_slice`/`pop_into` of up to 32 (one index publication per batch, so what is left is
//! the cost of moving the data), and `floor`, the one-way time of a bare cache-line ping-pong
//! between the same two cores. The floor tells which state the host is in: on the 2-vCPU KVM
//! guest it has been seen at ~21 ns and, while the host is busy, at ~170-200 ns, and the
//! single-item ratios differ between the two states (see "Throughput one value at a time" in
//! the spinwire-ringbuf crate docs).
//! Under a compile load, `chrt -f 10` on the command makes rounds comparable.
//!
//! ```text
//! cargo run --release -p spinwire-bench --example ring_throughput_rounds [-- ROUNDS [ITEMS]]
//! ```
//!
//! Needs 2 cores; pins to cores 0 and 1.

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

const CAPACITY: usize = 4096;

fn pin(core: usize) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        eprintln!("ring_throughput_rounds: could not pin to core {core}");
        std::process::exit(2);
    }
}

/// A queue under test: its two ends and single-item operations.
trait Queue<T: Copy + Send + 'static> {
    type Tx: Send + 'static;
    type Rx;
    const NAME: &'static str;
    fn new() -> (Self::Tx, Self::Rx);
    fn push(tx: &mut Self::Tx, v: T) -> bool;
    fn pop(rx: &mut Self::Rx) -> Option<T>;
}

struct Spinwire;
impl<T: Copy + Send + 'static> Queue<T> for Spinwire {
    type Tx = spinwire_ringbuf::Producer<T>;
    type Rx = spinwire_ringbuf::Consumer<T>;
    const NAME: &'static str = "spinwire";
    fn new() -> (Self::Tx, Self::Rx) {
        spinwire_ringbuf::channel(CAPACITY)
    }
    #[inline(always)]
    fn push(tx: &mut Self::Tx, v: T) -> bool {
        tx.push(v).is_ok()
    }
    #[inline(always)]
    fn pop(rx: &mut Self::Rx) -> Option<T> {
        rx.pop()
    }
}

struct Rtrb;
impl<T: Copy + Send + 'static> Queue<T> for Rtrb {
    type Tx = rtrb::Producer<T>;
    type Rx = rtrb::Consumer<T>;
    const NAME: &'static str = "rtrb";
    fn new() -> (Self::Tx, Self::Rx) {
        rtrb::RingBuffer::new(CAPACITY)
    }
    #[inline(always)]
    fn push(tx: &mut Self::Tx, v: T) -> bool {
        tx.push(v).is_ok()
    }
    #[inline(always)]
    fn pop(rx: &mut Self::Rx) -> Option<T> {
        rx.pop().ok()
    }
}

struct ArrayQueue;
impl<T: Copy + Send + 'static> Queue<T> for ArrayQueue {
    type Tx = Arc<crossbeam_queue::ArrayQueue<T>>;
    type Rx = Arc<crossbeam_queue::ArrayQueue<T>>;
    const NAME: &'static str = "arrayqueue";
    fn new() -> (Self::Tx, Self::Rx) {
        let q = Arc::new(crossbeam_queue::ArrayQueue::new(CAPACITY));
        (q.clone(), q)
    }
    #[inline(always)]
    fn push(tx: &mut Self::Tx, v: T) -> bool {
        tx.push(v).is_ok()
    }
    #[inline(always)]
    fn pop(rx: &mut Self::Rx) -> Option<T> {
        rx.pop()
    }
}

/// Moves `items` values through `Q`; ns per item.
fn run<T, Q>(items: u64, make: fn(u64) -> T, seq: fn(&T) -> u64) -> f64
where
    T: Copy + Send + 'static,
    Q: Queue<T>,
{
    let (mut tx, mut rx) = Q::new();
    let barrier = Arc::new(Barrier::new(2));
    let b = barrier.clone();
    let producer = thread::spawn(move || {
        pin(1);
        b.wait();
        for i in 0..items {
            while !Q::push(&mut tx, make(i)) {
                spin_loop();
            }
        }
    });
    barrier.wait();
    let start = Instant::now();
    for i in 0..items {
        let v = loop {
            if let Some(v) = Q::pop(&mut rx) {
                break v;
            }
            spin_loop();
        };
        assert_eq!(seq(&v), i, "{}: out of order", Q::NAME);
        black_box(v);
    }
    let ns = start.elapsed().as_nanos() as f64 / items as f64;
    producer.join().expect("producer");
    ns
}

/// Moves `items` values through spinwire in batches of up to 32 (`push_slice`/`pop_into`);
/// ns per item.
fn run_batch32<T>(items: u64, make: fn(u64) -> T, seq: fn(&T) -> u64) -> f64
where
    T: Copy + Send + Default + 'static,
{
    let (mut tx, mut rx) = spinwire_ringbuf::channel::<T>(CAPACITY);
    let barrier = Arc::new(Barrier::new(2));
    let b = barrier.clone();
    let producer = thread::spawn(move || {
        pin(1);
        b.wait();
        let mut buf = [T::default(); 32];
        let mut next = 0;
        while next < items {
            let n = (items - next).min(32) as usize;
            for (k, slot) in buf[..n].iter_mut().enumerate() {
                *slot = make(next + k as u64);
            }
            let mut sent = 0;
            while sent < n {
                let w = tx.push_slice(&buf[sent..n]);
                if w == 0 {
                    spin_loop();
                }
                sent += w;
            }
            next += n as u64;
        }
    });
    barrier.wait();
    let start = Instant::now();
    let mut buf = [T::default(); 32];
    let mut next = 0;
    while next < items {
        let n = rx.pop_into(&mut buf);
        if n == 0 {
            spin_loop();
            continue;
        }
        for v in &buf[..n] {
            assert_eq!(seq(v), next, "spinwire batch32: out of order");
            next += 1;
        }
        black_box(&buf);
    }
    let ns = start.elapsed().as_nanos() as f64 / items as f64;
    producer.join().expect("producer");
    ns
}

/// One-way time of a bare cache-line ping-pong between cores 0 and 1 on raw atomics: the median
/// over 2000 samples of the mean of 16 round trips / 2, in ns.
fn floor_oneway_ns() -> f64 {
    const BATCH: u64 = 16;
    const SAMPLES: usize = 2000;
    let ping = Arc::new(crossbeam_utils::CachePadded::new(AtomicU64::new(0)));
    let pong = Arc::new(crossbeam_utils::CachePadded::new(AtomicU64::new(0)));
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let total = (SAMPLES as u64 + 200) * BATCH;
    let barrier = Arc::new(Barrier::new(2));
    let b = barrier.clone();
    let echo = thread::spawn(move || {
        pin(1);
        b.wait();
        for i in 1..=total {
            while ping2.load(Ordering::Acquire) != i {
                spin_loop();
            }
            pong2.store(i, Ordering::Release);
        }
    });
    barrier.wait();
    let mut samples = Vec::with_capacity(SAMPLES + 200);
    let mut n = 0;
    for _ in 0..SAMPLES + 200 {
        let t0 = Instant::now();
        for _ in 0..BATCH {
            n += 1;
            ping.store(n, Ordering::Release);
            while pong.load(Ordering::Acquire) != n {
                spin_loop();
            }
        }
        samples.push(t0.elapsed().as_nanos() as f64 / (2 * BATCH) as f64);
    }
    echo.join().expect("echo");
    median(&mut samples[200..])
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn report<T: Copy + Send + Default + 'static>(
    label: &str,
    rounds: usize,
    items: u64,
    make: fn(u64) -> T,
    seq: fn(&T) -> u64,
) {
    let (mut s, mut r, mut a, mut b, mut f) = (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        f.push(floor_oneway_ns());
        // The three queues take turns going first: a queue's place in the round must not
        // decide its figure (seen here: whichever ran right after the floor ran slower).
        for k in 0..3 {
            match (round + k) % 3 {
                0 => s.push(run::<T, Spinwire>(items, make, seq)),
                1 => r.push(run::<T, Rtrb>(items, make, seq)),
                _ => a.push(run::<T, ArrayQueue>(items, make, seq)),
            }
        }
        b.push(run_batch32(items, make, seq));
    }
    let (s, r, a) = (median(&mut s), median(&mut r), median(&mut a));
    let (b, f) = (median(&mut b), median(&mut f));
    println!(
        "{label:>4}: spinwire {s:6.1} ns/item  rtrb {r:6.1}  arrayqueue {a:6.1}  | rtrb/spinwire {:.2}x  arrayqueue/spinwire {:.2}x  | batch32 {b:5.1}  floor one-way {f:5.1} ns",
        r / s,
        a / s
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let items: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    pin(0);
    println!(
        "median of {rounds} interleaved rounds of {items} items, single push/pop, cores 0 and 1"
    );
    report::<u64>("8B", rounds, items, |i| i, |v| *v);
    report::<[u64; 8]>("64B", rounds, items, |i| [i; 8], |v| v[0]);
}
