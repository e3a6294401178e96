//! What latency measurement costs the engine thread.
//!
//! - `latency/record`: one [`Recorder::record`] into a stage's counters (HdrHistogram layout,
//!   1 ns .. 60 s, 3 digits),
//!   values cycling through 4096 pseudo-random latencies of a busy stage (200 ns .. 5 µs; target:
//!   at most 10 ns per value).
//! - `latency/record_wide`: the same with latencies spread from 30 ns to 2 ms over thousands of
//!   histogram slots, so most records miss the L1 cache (a worst case).
//! - `latency/hdr_record`, `latency/hdr_record_wide`: the baseline, `hdrhistogram::Histogram::
//!   record` with the same bounds and values (what the recorder's counters replace).
//!
//! The record benchmarks record 4096 values per iteration and report the time per value.
//! - `latency/record_between`: `record_between(start, end)` with the busy-stage values.
//! - `latency/clock/tsc`: one `Clock::now_ns()` on the calibrated TSC (skipped, with a note, where
//!   the TSC is not usable).
//! - `latency/clock/monotonic`: one `Clock::now_ns()` on `CLOCK_MONOTONIC`.
//! - `latency/clock/realtime`: one `CLOCK_REALTIME` read (what a strategy would pay to compare
//!   with venue send times without the clock's wall anchor).
//!
//! The main thread is pinned to the first core when possible. Before timing, the recorder's
//! counts and the clocks' monotonicity are checked.
//!
//! Run: `cargo bench -p spinwire-bench --bench latency` (add `-- --warm-up-time 1
//! --measurement-time 3` for a short run); `cargo test -p spinwire-bench --bench latency` runs
//! each benchmark once as a check.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use spinwire_engine::latency::{
    realtime_ns, Clock, ClockChoice, Collector, HistogramConfig, Recorder, Stage,
};

/// Number of distinct values the record benchmarks cycle through (a power of two).
const VALUES: usize = 4096;

/// Pseudo-random latencies of a busy stage: 200 ns .. ~5 µs, a few hundred distinct histogram
/// slots (mostly in cache, as on a real engine thread).
fn narrow_values() -> Vec<u64> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..VALUES)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            200 + (r >> 32) % 800 + if r & 0xff == 0 { (r >> 8) % 4_000 } else { 0 }
        })
        .collect()
}

/// Pseudo-random latencies, 30 ns .. ~2 ms, log-spread: thousands of distinct histogram slots,
/// so most records miss the L1 cache (a worst case).
fn wide_values() -> Vec<u64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..VALUES)
        .map(|_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let shift = (r >> 60) as u32 % 16; // 2^0 .. 2^15 multiplier
            30 + ((r & 0x3f) << shift)
        })
        .collect()
}

fn pin() {
    if let Some(first) = core_affinity::get_core_ids().and_then(|ids| ids.first().copied()) {
        if !core_affinity::set_for_current(first) {
            eprintln!("latency bench: could not pin to core {}", first.id);
        }
    }
}

fn recorder() -> (Collector, Recorder) {
    let mut collector = Collector::new(HistogramConfig::default()).expect("default config");
    let rec = collector.recorder(0).expect("recorder");
    (collector, rec)
}

/// Sanity check before timing: every value lands, none out of range.
fn check_recorder(vals: &[u64]) {
    let (_c, mut rec) = recorder();
    for &v in vals {
        rec.record(Stage::SocketToFrame, v);
    }
    assert_eq!(rec.current().count(Stage::SocketToFrame), vals.len() as u64);
    assert_eq!(rec.current().out_of_range(Stage::SocketToFrame).total(), 0);
    let converted = rec
        .current()
        .to_histograms(&HistogramConfig::default())
        .expect("same configuration");
    let h = converted.histogram(Stage::SocketToFrame);
    assert_eq!(h.len(), vals.len() as u64);
    let max = *vals.iter().max().unwrap();
    assert!(h.equivalent(h.max(), max));
}

fn check_clock(clock: &Clock) {
    let mut last = clock.now_ns();
    for _ in 0..100_000 {
        let t = clock.now_ns();
        assert!(t >= last, "{} clock went backwards", clock.source());
        last = t;
    }
}

fn bench_record(c: &mut Criterion) {
    pin();
    let vals = wide_values();
    let narrow = narrow_values();
    check_recorder(&vals);
    check_recorder(&narrow);
    let mut g = c.benchmark_group("latency");

    // Each iteration records all VALUES values (criterion's per-iteration overhead is then
    // negligible); the reported time is per value (Throughput::Elements).
    g.throughput(criterion::Throughput::Elements(VALUES as u64));
    for (name, vals) in [("record", &narrow), ("record_wide", &vals)] {
        let (_c, mut rec) = recorder();
        g.bench_function(name, |b| {
            b.iter(|| {
                for &v in black_box(vals.as_slice()) {
                    rec.record(Stage::SocketToFrame, v);
                }
            })
        });
        black_box(rec.current().total_count());
    }

    // Baseline: the crate the hot counters replace, `hdrhistogram::Histogram::record`, with
    // the same bounds and values.
    for (name, vals) in [("hdr_record", &narrow), ("hdr_record_wide", &vals)] {
        let mut hdr =
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
        g.bench_function(name, |b| {
            b.iter(|| {
                for &v in black_box(vals.as_slice()) {
                    let _ = hdr.record(v);
                }
            })
        });
        black_box(hdr.len());
    }

    let (_c2, mut rec) = recorder();
    let starts: Vec<u64> = (0..VALUES as u64).map(|i| 1_000_000 + 100 * i).collect();
    g.bench_function("record_between", |b| {
        b.iter(|| {
            for (&t, &v) in black_box(starts.as_slice()).iter().zip(narrow.iter()) {
                rec.record_between(Stage::RingToStrategy, t, t + v);
            }
        })
    });
    black_box(rec.current().total_count());
    g.finish();
}

fn bench_clock(c: &mut Criterion) {
    pin();
    let mut g = c.benchmark_group("latency/clock");
    match Clock::new(ClockChoice::Tsc) {
        Ok(tsc) => {
            check_clock(&tsc);
            eprintln!(
                "latency bench: TSC at {:.3} GHz",
                tsc.tsc_hz().unwrap_or(0.0) / 1e9
            );
            g.bench_function("tsc", |b| b.iter(|| black_box(&tsc).now_ns()));
        }
        Err(e) => eprintln!("latency bench: latency/clock/tsc skipped: {e}"),
    }
    let mono = Clock::new(ClockChoice::Monotonic).expect("monotonic clock");
    check_clock(&mono);
    g.bench_function("monotonic", |b| b.iter(|| black_box(&mono).now_ns()));
    g.bench_function("realtime", |b| b.iter(realtime_ns));
    g.finish();
}

criterion_group!(benches, bench_record, bench_clock);
criterion_main!(benches);
