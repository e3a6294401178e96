//! One-way latency percentiles (an HDR run, not criterion's mean): ping-pong between two pinned
//! threads over spinwire-ringbuf, rtrb and crossbeam's ArrayQueue, and the floor — a bare
//! cache-line ping-pong on raw atomics between the same two cores.
//!
//! ```text
//! cargo run --release -p spinwire-bench --example ring_oneway_p50 [-- ROUNDS]
//! ```
//!
//! Each sample is the mean one-way time of a batch of 16 round trips (round trip / 2), timed
//! with the TSC, so the clock read (~10 ns) is amortised; samples go into an HDR histogram and
//! p50/p99 are reported with the ratio to the floor's p50. The queues are measured in
//! interleaved rounds (default 5) so that a noisy neighbour hits all of them alike; the best
//! round's p50 of each is reported too. Needs 2 cores; pins to cores 0 and 1.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;

const BATCH: u64 = 16;
const SAMPLES: u64 = 20_000;
const WARMUP_SAMPLES: u64 = 2_000;

fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions; every x86_64 CPU has it.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// TSC ticks per nanosecond, measured against `Instant` over 100 ms.
fn ticks_per_ns() -> f64 {
    let (t0, i0) = (rdtsc(), Instant::now());
    thread::sleep(std::time::Duration::from_millis(100));
    (rdtsc() - t0) as f64 / i0.elapsed().as_nanos() as f64
}

/// Pins the calling thread to `core`. By id, not through `core_affinity::get_core_ids()`: that
/// lists only the cores in the caller's affinity mask, and a thread spawned by an already-pinned
/// thread inherits its single-core mask.
fn pin(core: usize) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        eprintln!("ring_oneway_p50: could not pin to core {core}");
        std::process::exit(2);
    }
}

/// The two directions of a ping-pong: `send` a sequence number, `recv` spins until one arrives.
trait Link: Send + 'static {
    fn send(&mut self, v: u64);
    fn recv(&mut self) -> u64;
}

struct SpinwireLink(
    spinwire_ringbuf::Producer<u64>,
    spinwire_ringbuf::Consumer<u64>,
);
impl Link for SpinwireLink {
    #[inline]
    fn send(&mut self, v: u64) {
        while self.0.push(v).is_err() {
            spin_loop();
        }
    }
    #[inline]
    fn recv(&mut self) -> u64 {
        loop {
            if let Some(v) = self.1.pop() {
                return v;
            }
            spin_loop();
        }
    }
}

struct RtrbLink(rtrb::Producer<u64>, rtrb::Consumer<u64>);
impl Link for RtrbLink {
    #[inline]
    fn send(&mut self, v: u64) {
        while self.0.push(v).is_err() {
            spin_loop();
        }
    }
    #[inline]
    fn recv(&mut self) -> u64 {
        loop {
            if let Ok(v) = self.1.pop() {
                return v;
            }
            spin_loop();
        }
    }
}

struct ArrayQueueLink(
    Arc<crossbeam_queue::ArrayQueue<u64>>,
    Arc<crossbeam_queue::ArrayQueue<u64>>,
);
impl Link for ArrayQueueLink {
    #[inline]
    fn send(&mut self, v: u64) {
        while self.0.push(v).is_err() {
            spin_loop();
        }
    }
    #[inline]
    fn recv(&mut self) -> u64 {
        loop {
            if let Some(v) = self.1.pop() {
                return v;
            }
            spin_loop();
        }
    }
}

/// The floor: each side owns one cache line and writes the sequence number into it; the other
/// spins reading it.
struct FloorLink {
    mine: Arc<CachePadded<AtomicU64>>,
    theirs: Arc<CachePadded<AtomicU64>>,
    next: u64,
}
impl Link for FloorLink {
    #[inline]
    fn send(&mut self, v: u64) {
        self.mine.store(v + 1, Ordering::Release);
    }
    #[inline]
    fn recv(&mut self) -> u64 {
        self.next += 1;
        loop {
            let v = self.theirs.load(Ordering::Acquire);
            if v == self.next {
                return v - 1;
            }
            spin_loop();
        }
    }
}

fn pairs(kind: &str) -> (Box<dyn Link>, Box<dyn Link>) {
    match kind {
        "spinwire" => {
            let (a_tx, b_rx) = spinwire_ringbuf::channel(1024);
            let (b_tx, a_rx) = spinwire_ringbuf::channel(1024);
            (
                Box::new(SpinwireLink(a_tx, a_rx)),
                Box::new(SpinwireLink(b_tx, b_rx)),
            )
        }
        "rtrb" => {
            let (a_tx, b_rx) = rtrb::RingBuffer::new(1024);
            let (b_tx, a_rx) = rtrb::RingBuffer::new(1024);
            (
                Box::new(RtrbLink(a_tx, a_rx)),
                Box::new(RtrbLink(b_tx, b_rx)),
            )
        }
        "arrayqueue" => {
            let ab = Arc::new(crossbeam_queue::ArrayQueue::new(1024));
            let ba = Arc::new(crossbeam_queue::ArrayQueue::new(1024));
            (
                Box::new(ArrayQueueLink(ab.clone(), ba.clone())),
                Box::new(ArrayQueueLink(ba, ab)),
            )
        }
        "floor" => {
            let a = Arc::new(CachePadded::new(AtomicU64::new(0)));
            let b = Arc::new(CachePadded::new(AtomicU64::new(0)));
            (
                Box::new(FloorLink {
                    mine: a.clone(),
                    theirs: b.clone(),
                    next: 0,
                }),
                Box::new(FloorLink {
                    mine: b,
                    theirs: a,
                    next: 0,
                }),
            )
        }
        _ => unreachable!(),
    }
}

/// One round: returns a histogram of one-way latency in TSC ticks (x100 for sub-tick precision).
fn round(kind: &str) -> Histogram<u64> {
    let (mut a, mut b) = pairs(kind);
    let total = (WARMUP_SAMPLES + SAMPLES) * BATCH;
    let barrier = Arc::new(Barrier::new(2));
    let echo_barrier = barrier.clone();
    let echo = thread::spawn(move || {
        pin(1);
        echo_barrier.wait();
        for _ in 0..total {
            let v = b.recv();
            b.send(v);
        }
    });
    pin(0);
    barrier.wait();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 100_000_000, 3).unwrap();
    let mut seq = 0u64;
    for sample in 0..WARMUP_SAMPLES + SAMPLES {
        let t0 = rdtsc();
        for _ in 0..BATCH {
            a.send(seq);
            let v = a.recv();
            assert_eq!(v, seq, "{kind}: out of order");
            seq += 1;
        }
        let ticks = rdtsc() - t0;
        if sample >= WARMUP_SAMPLES {
            // One-way = round trip / 2, per round trip of the batch; x100 keeps two decimals.
            let _ = hist.record((ticks * 100 / (2 * BATCH)).max(1));
        }
    }
    echo.join().unwrap();
    hist
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    if thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("ring_oneway_p50: needs 2 cores");
        std::process::exit(2);
    }
    let tpn = ticks_per_ns();
    let kinds = ["floor", "spinwire", "rtrb", "arrayqueue"];
    let mut all: Vec<Histogram<u64>> = kinds
        .iter()
        .map(|_| Histogram::new_with_bounds(1, 100_000_000, 3).unwrap())
        .collect();
    let mut best_p50 = [f64::MAX; 4];
    let only = std::env::var("KINDS").unwrap_or_default();
    for _ in 0..rounds {
        for (i, kind) in kinds.iter().enumerate() {
            if !only.is_empty() && !only.split(',').any(|k| k == *kind) {
                continue;
            }
            let started = Instant::now();
            let h = round(kind);
            eprintln!(
                "  {kind}: round done in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            best_p50[i] = best_p50[i].min(h.value_at_quantile(0.5) as f64 / 100.0 / tpn);
            all[i].add(&h).unwrap();
        }
    }
    let ns = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 100.0 / tpn;
    let floor_p50 = ns(&all[0], 0.5);
    println!(
        "one-way latency, 8-byte items, {rounds} interleaved rounds x {SAMPLES} samples \
         (each the mean of {BATCH} round trips / 2); TSC {tpn:.3} GHz"
    );
    println!(
        "{:<11} {:>9} {:>9} {:>12} {:>14} {:>14}",
        "queue", "p50 ns", "p99 ns", "p50/floor", "best-round p50", "best/floor best"
    );
    for (i, kind) in kinds.iter().enumerate() {
        if all[i].is_empty() {
            continue;
        }
        println!(
            "{:<11} {:>9.1} {:>9.1} {:>12.2} {:>14.1} {:>14.2}",
            kind,
            ns(&all[i], 0.5),
            ns(&all[i], 0.99),
            ns(&all[i], 0.5) / floor_p50,
            best_p50[i],
            best_p50[i] / best_p50[0]
        );
    }
}
