//! The SPSC ring against its baselines, between two pinned threads.
//!
//! - `ring_oneway/{8B,64B}/{spinwire,rtrb,arrayqueue}`: one-way latency, measured as a ping-pong
//!   round trip over two rings (there and back) divided by two.
//! - `ring_oneway/floor`: the same ping-pong on two bare cache lines (`CachePadded<AtomicU64>`,
//!   each side spins until it sees the other's value): the hardware's cache-line transfer time,
//!   which no queue can beat.
//! - `ring_throughput/{8B,64B}/{spinwire,rtrb,arrayqueue}`: one thread pushes items one at a time,
//!   the other pops them one at a time; time per item (and items/s).
//! - `ring_throughput/{8B,64B}/spinwire_batch32`: the same with `push_slice`/`pop_into` in
//!   batches of up to 32, to show what batch publishing buys.
//!
//! Queues: `spinwire_ringbuf::channel`, `rtrb::RingBuffer` (0.4) and
//! `crossbeam_queue::ArrayQueue` (shared through an `Arc`), all with capacity 1024. Items are
//! `u64` (8 B) or `[u64; 8]` (64 B); the first word carries a sequence number.
//!
//! The two threads are pinned to cores 0 and 1 (the bench prints a note and runs unpinned when
//! there are fewer than two cores). Before timing, every queue carries a few thousand items
//! across threads and they are checked to arrive in order. Cross-thread setup uses `iter_custom`
//! with a `Barrier`, and one untimed round trip so both threads are spinning when the clock
//! starts.
//!
//! Run: `cargo bench -p spinwire-bench --bench ring` (add
//! `-- --warm-up-time 1 --measurement-time 3` for a short run); `cargo test -p spinwire-bench
//! --bench ring` runs each benchmark once as a check.

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use core_affinity::CoreId;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

/// Capacity of every queue under test.
const CAPACITY: usize = 1024;

/// Items sent through each queue by the sanity check.
const SANITY_ITEMS: u64 = 5_000;

/// Largest batch for the `spinwire_batch32` throughput variant.
const BATCH: usize = 32;

// ---------------------------------------------------------------------------------------------
// Pinning and waiting.

/// The cores for the two threads (main, worker), or `None` to run unpinned.
fn cores() -> Option<(CoreId, CoreId)> {
    static CORES: OnceLock<Option<(CoreId, CoreId)>> = OnceLock::new();
    *CORES.get_or_init(|| {
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        if ids.len() < 2 {
            eprintln!(
                "ring bench: {} core(s) visible, fewer than 2: threads are NOT pinned, \
                 numbers are not comparable to a pinned run",
                ids.len()
            );
            return None;
        }
        let pair = (ids[0], ids[1]);
        eprintln!(
            "ring bench: main thread on core {}, worker on core {}",
            pair.0.id, pair.1.id
        );
        Some(pair)
    })
}

fn pin_main() {
    if let Some((main, _)) = cores() {
        if !core_affinity::set_for_current(main) {
            eprintln!(
                "ring bench: could not pin the main thread to core {}",
                main.id
            );
        }
    }
}

fn pin_worker() {
    if let Some((_, worker)) = cores() {
        if !core_affinity::set_for_current(worker) {
            eprintln!(
                "ring bench: could not pin the worker thread to core {}",
                worker.id
            );
        }
    }
}

/// One failed attempt: spin, and every so often yield in case the other thread is descheduled
/// (the machine may be shared). On pinned, idle cores the yield is never reached while timing.
#[inline(always)]
fn wait(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if *spins % 4096 == 0 {
        thread::yield_now();
    } else {
        spin_loop();
    }
}

// ---------------------------------------------------------------------------------------------
// Items.

/// A `Copy` payload that carries a sequence number.
trait Item: Copy + Send + 'static {
    /// Label used in benchmark ids.
    const LABEL: &'static str;
    fn with_seq(seq: u64) -> Self;
    fn seq(&self) -> u64;
}

impl Item for u64 {
    const LABEL: &'static str = "8B";
    #[inline(always)]
    fn with_seq(seq: u64) -> Self {
        seq
    }
    #[inline(always)]
    fn seq(&self) -> u64 {
        *self
    }
}

/// 64 bytes, like a decoded market-data record.
#[derive(Clone, Copy)]
struct Item64([u64; 8]);

impl Item for Item64 {
    const LABEL: &'static str = "64B";
    #[inline(always)]
    fn with_seq(seq: u64) -> Self {
        Item64([seq, 1, 2, 3, 4, 5, 6, 7])
    }
    #[inline(always)]
    fn seq(&self) -> u64 {
        self.0[0]
    }
}

const _: () = assert!(std::mem::size_of::<Item64>() == 64);

// ---------------------------------------------------------------------------------------------
// The queues behind one interface.

/// A bounded SPSC queue: a constructor and non-blocking push/pop on its two ends.
trait Queue<T: Item> {
    /// Label used in benchmark ids.
    const LABEL: &'static str;
    type Tx: Send + 'static;
    type Rx: Send + 'static;
    fn new(capacity: usize) -> (Self::Tx, Self::Rx);
    fn push(tx: &mut Self::Tx, value: T) -> Result<(), T>;
    fn pop(rx: &mut Self::Rx) -> Option<T>;
}

struct Spinwire;

impl<T: Item> Queue<T> for Spinwire {
    const LABEL: &'static str = "spinwire";
    type Tx = spinwire_ringbuf::Producer<T>;
    type Rx = spinwire_ringbuf::Consumer<T>;
    fn new(capacity: usize) -> (Self::Tx, Self::Rx) {
        spinwire_ringbuf::channel(capacity)
    }
    #[inline(always)]
    fn push(tx: &mut Self::Tx, value: T) -> Result<(), T> {
        tx.push(value).map_err(|full| full.0)
    }
    #[inline(always)]
    fn pop(rx: &mut Self::Rx) -> Option<T> {
        rx.pop()
    }
}

struct Rtrb;

impl<T: Item> Queue<T> for Rtrb {
    const LABEL: &'static str = "rtrb";
    type Tx = rtrb::Producer<T>;
    type Rx = rtrb::Consumer<T>;
    fn new(capacity: usize) -> (Self::Tx, Self::Rx) {
        rtrb::RingBuffer::new(capacity)
    }
    #[inline(always)]
    fn push(tx: &mut Self::Tx, value: T) -> Result<(), T> {
        tx.push(value).map_err(|rtrb::PushError::Full(v)| v)
    }
    #[inline(always)]
    fn pop(rx: &mut Self::Rx) -> Option<T> {
        rx.pop().ok()
    }
}

struct CrossbeamArrayQueue;

impl<T: Item> Queue<T> for CrossbeamArrayQueue {
    const LABEL: &'static str = "arrayqueue";
    type Tx = Arc<ArrayQueue<T>>;
    type Rx = Arc<ArrayQueue<T>>;
    fn new(capacity: usize) -> (Self::Tx, Self::Rx) {
        let q = Arc::new(ArrayQueue::new(capacity));
        (Arc::clone(&q), q)
    }
    #[inline(always)]
    fn push(tx: &mut Self::Tx, value: T) -> Result<(), T> {
        tx.push(value)
    }
    #[inline(always)]
    fn pop(rx: &mut Self::Rx) -> Option<T> {
        rx.pop()
    }
}

#[inline(always)]
fn push_spin<T: Item, Q: Queue<T>>(tx: &mut Q::Tx, mut value: T) {
    let mut spins = 0;
    loop {
        match Q::push(tx, value) {
            Ok(()) => return,
            Err(back) => {
                value = back;
                wait(&mut spins);
            }
        }
    }
}

#[inline(always)]
fn pop_spin<T: Item, Q: Queue<T>>(rx: &mut Q::Rx) -> T {
    let mut spins = 0;
    loop {
        if let Some(v) = Q::pop(rx) {
            return v;
        }
        wait(&mut spins);
    }
}

// ---------------------------------------------------------------------------------------------
// Sanity checks (before any timing).

/// Sends `SANITY_ITEMS` items one way across threads and asserts they arrive in order, then
/// bounces a few hundred through a ping-pong pair of queues.
fn sanity_check<T: Item, Q: Queue<T>>() {
    let (mut tx, mut rx) = Q::new(64);
    let producer = thread::spawn(move || {
        for i in 0..SANITY_ITEMS {
            push_spin::<T, Q>(&mut tx, T::with_seq(i));
        }
    });
    for i in 0..SANITY_ITEMS {
        let v = pop_spin::<T, Q>(&mut rx);
        assert_eq!(v.seq(), i, "{} {}: item out of order", Q::LABEL, T::LABEL);
    }
    producer.join().expect("sanity producer panicked");
    assert!(Q::pop(&mut rx).is_none(), "{}: extra item", Q::LABEL);

    let (mut there_tx, mut there_rx) = Q::new(CAPACITY);
    let (mut back_tx, mut back_rx) = Q::new(CAPACITY);
    let echo = thread::spawn(move || {
        for _ in 0..500 {
            let v = pop_spin::<T, Q>(&mut there_rx);
            push_spin::<T, Q>(&mut back_tx, v);
        }
    });
    for i in 0..500 {
        push_spin::<T, Q>(&mut there_tx, T::with_seq(i));
        assert_eq!(
            pop_spin::<T, Q>(&mut back_rx).seq(),
            i,
            "{}: echo mismatch",
            Q::LABEL
        );
    }
    echo.join().expect("sanity echo panicked");
}

fn sanity_check_batch<T: Item>() {
    let (mut tx, mut rx) = spinwire_ringbuf::channel::<T>(64);
    let producer = thread::spawn(move || {
        let batch: Vec<T> = (0..SANITY_ITEMS).map(T::with_seq).collect();
        let mut sent = 0;
        let mut spins = 0;
        while sent < batch.len() {
            let end = (sent + BATCH).min(batch.len());
            match tx.push_slice(&batch[sent..end]) {
                0 => wait(&mut spins),
                n => sent += n,
            }
        }
    });
    let mut buf = [T::with_seq(u64::MAX); BATCH];
    let mut next = 0;
    let mut spins = 0;
    while next < SANITY_ITEMS {
        let n = rx.pop_into(&mut buf);
        if n == 0 {
            wait(&mut spins);
        }
        for v in &buf[..n] {
            assert_eq!(
                v.seq(),
                next,
                "spinwire batch {}: item out of order",
                T::LABEL
            );
            next += 1;
        }
    }
    producer.join().expect("sanity batch producer panicked");
}

fn sanity_check_floor() {
    let rounds = 1_000;
    let elapsed = floor_round_trips(rounds);
    assert!(elapsed > Duration::ZERO, "floor ping-pong did not run");
}

// ---------------------------------------------------------------------------------------------
// One-way latency.

/// Runs `iters` timed round trips through a pair of queues and returns half the elapsed time.
fn oneway_round_trips<T: Item, Q: Queue<T>>(iters: u64) -> Duration {
    let (mut there_tx, mut there_rx) = Q::new(CAPACITY);
    let (mut back_tx, mut back_rx) = Q::new(CAPACITY);
    let barrier = Arc::new(Barrier::new(2));
    let echo_barrier = Arc::clone(&barrier);
    let echo = thread::spawn(move || {
        pin_worker();
        echo_barrier.wait();
        // One untimed warm-up trip, then the timed ones.
        for _ in 0..=iters {
            let v = pop_spin::<T, Q>(&mut there_rx);
            push_spin::<T, Q>(&mut back_tx, v);
        }
    });
    barrier.wait();
    push_spin::<T, Q>(&mut there_tx, T::with_seq(u64::MAX));
    black_box(pop_spin::<T, Q>(&mut back_rx));

    let start = Instant::now();
    for i in 0..iters {
        push_spin::<T, Q>(&mut there_tx, T::with_seq(i));
        black_box(pop_spin::<T, Q>(&mut back_rx));
    }
    let elapsed = start.elapsed();
    echo.join().expect("echo thread panicked");
    elapsed / 2
}

/// The same ping-pong on two bare cache lines: the floor for any queue.
fn floor_round_trips(iters: u64) -> Duration {
    let ping = Arc::new(CachePadded::new(AtomicU64::new(0)));
    let pong = Arc::new(CachePadded::new(AtomicU64::new(0)));
    let barrier = Arc::new(Barrier::new(2));
    let (echo_ping, echo_pong, echo_barrier) =
        (Arc::clone(&ping), Arc::clone(&pong), Arc::clone(&barrier));
    let echo = thread::spawn(move || {
        pin_worker();
        echo_barrier.wait();
        for i in 1..=iters + 1 {
            let mut spins = 0;
            while echo_ping.load(Ordering::Acquire) != i {
                wait(&mut spins);
            }
            echo_pong.store(i, Ordering::Release);
        }
    });
    barrier.wait();
    let round = |i: u64| {
        ping.store(i, Ordering::Release);
        let mut spins = 0;
        while pong.load(Ordering::Acquire) != i {
            wait(&mut spins);
        }
    };
    round(1);

    let start = Instant::now();
    for i in 2..=iters + 1 {
        round(i);
    }
    let elapsed = start.elapsed();
    echo.join().expect("floor echo thread panicked");
    elapsed / 2
}

fn bench_oneway<T: Item, Q: Queue<T>>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
) {
    sanity_check::<T, Q>();
    group.bench_function(format!("{}/{}", T::LABEL, Q::LABEL), |b| {
        b.iter_custom(oneway_round_trips::<T, Q>)
    });
}

fn oneway(c: &mut Criterion) {
    pin_main();
    let mut group = c.benchmark_group("ring_oneway");
    sanity_check_floor();
    group.bench_function("floor", |b| b.iter_custom(floor_round_trips));
    bench_oneway::<u64, Spinwire>(&mut group);
    bench_oneway::<u64, Rtrb>(&mut group);
    bench_oneway::<u64, CrossbeamArrayQueue>(&mut group);
    bench_oneway::<Item64, Spinwire>(&mut group);
    bench_oneway::<Item64, Rtrb>(&mut group);
    bench_oneway::<Item64, CrossbeamArrayQueue>(&mut group);
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// Throughput.

/// The worker pushes `iters` items one at a time, this thread pops them; returns the time from
/// the start signal to the last pop.
fn transfer<T: Item, Q: Queue<T>>(iters: u64) -> Duration {
    let (mut tx, mut rx) = Q::new(CAPACITY);
    let barrier = Arc::new(Barrier::new(2));
    let producer_barrier = Arc::clone(&barrier);
    let producer = thread::spawn(move || {
        pin_worker();
        producer_barrier.wait();
        for i in 0..iters {
            push_spin::<T, Q>(&mut tx, T::with_seq(i));
        }
    });
    barrier.wait();
    let start = Instant::now();
    for _ in 0..iters {
        black_box(pop_spin::<T, Q>(&mut rx));
    }
    let elapsed = start.elapsed();
    producer.join().expect("producer thread panicked");
    elapsed
}

/// Like [`transfer`] for spinwire, with `push_slice` / `pop_into` in batches of up to `BATCH`.
fn transfer_batch<T: Item>(iters: u64) -> Duration {
    let (mut tx, mut rx) = spinwire_ringbuf::channel::<T>(CAPACITY);
    let barrier = Arc::new(Barrier::new(2));
    let producer_barrier = Arc::clone(&barrier);
    let producer = thread::spawn(move || {
        pin_worker();
        producer_barrier.wait();
        let mut batch = [T::with_seq(0); BATCH];
        let mut next = 0u64;
        let mut spins = 0;
        while next < iters {
            let len = (iters - next).min(BATCH as u64) as usize;
            for (i, slot) in batch[..len].iter_mut().enumerate() {
                *slot = T::with_seq(next + i as u64);
            }
            let mut sent = 0;
            while sent < len {
                match tx.push_slice(&batch[sent..len]) {
                    0 => wait(&mut spins),
                    n => sent += n,
                }
            }
            next += len as u64;
        }
    });
    barrier.wait();
    let mut buf = [T::with_seq(0); BATCH];
    let mut received = 0u64;
    let mut spins = 0;
    let start = Instant::now();
    while received < iters {
        let want = (iters - received).min(BATCH as u64) as usize;
        match rx.pop_into(&mut buf[..want]) {
            0 => wait(&mut spins),
            n => {
                black_box(&buf[..n]);
                received += n as u64;
            }
        }
    }
    let elapsed = start.elapsed();
    producer.join().expect("batch producer thread panicked");
    elapsed
}

fn bench_throughput<T: Item, Q: Queue<T>>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
) {
    sanity_check::<T, Q>();
    group.bench_function(format!("{}/{}", T::LABEL, Q::LABEL), |b| {
        b.iter_custom(transfer::<T, Q>)
    });
}

fn throughput_for<T: Item>(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    bench_throughput::<T, Spinwire>(group);
    bench_throughput::<T, Rtrb>(group);
    bench_throughput::<T, CrossbeamArrayQueue>(group);
    sanity_check_batch::<T>();
    group.bench_function(format!("{}/spinwire_batch{BATCH}", T::LABEL), |b| {
        b.iter_custom(transfer_batch::<T>)
    });
}

fn throughput(c: &mut Criterion) {
    pin_main();
    let mut group = c.benchmark_group("ring_throughput");
    // One element per iteration: criterion reports items per second.
    group.throughput(Throughput::Elements(1));
    throughput_for::<u64>(&mut group);
    throughput_for::<Item64>(&mut group);
    group.finish();
}

criterion_group!(benches, oneway, throughput);
criterion_main!(benches);
