//! The per-stage recorders: recording never allocates after warm-up (a counting global allocator
//! counts allocations on the test's own thread), out-of-range values are counted instead of
//! panicking, and full intervals travel to the collector and back without losing a value.

use spinwire_engine::latency::{
    Collector, HistogramConfig, OutOfRange, Rotation, Stage, StageHistograms,
};

mod alloc_support;

#[global_allocator]
static GLOBAL: alloc_support::CountingAlloc = alloc_support::CountingAlloc;

/// Counts the allocations and deallocations `f` makes on this thread.
fn count_allocations<R>(f: impl FnOnce() -> R) -> (R, usize, usize) {
    let (r, allocs) = alloc_support::count_allocations(f);
    (r, allocs as usize, alloc_support::deallocations() as usize)
}

/// A small, fast configuration: 1 ns .. 10 s, 3 digits, 1 ms intervals, `spares` spares.
fn config(spares: usize) -> HistogramConfig {
    HistogramConfig {
        highest_ns: 10_000_000_000,
        significant_digits: 3,
        interval_ns: 1_000_000,
        spares,
    }
}

/// A value sequence spanning the whole range, including out-of-range ones.
fn value(i: u64) -> u64 {
    match i % 7 {
        0 => i % 1_000,
        1 => 20 + (i * 7919) % 50_000,
        2 => 1_000_000 + i,
        3 => u64::MAX - i,
        4 => 10_000_000_001,
        5 => 0,
        _ => (i * 2_654_435_761) % 9_000_000_000,
    }
}

#[test]
fn recording_and_rotating_never_allocate_after_warm_up() {
    let mut collector = Collector::new(config(2)).unwrap();
    let mut rec = collector.recorder(0).unwrap();
    // Warm-up: one pass through every path.
    for i in 0..1_000 {
        rec.record(Stage::ALL[(i % 8) as usize], value(i));
        rec.record_between(Stage::WireToStrategy, i + 5, i);
    }
    assert_eq!(rec.rotate(1), Rotation::HandedOver);
    collector.poll(|_, _| {});

    let mut now = 2;
    let mut recorded = 0u64;
    for round in 0..20u64 {
        let (handed, allocs, deallocs) = count_allocations(|| {
            let mut handed = 0;
            for i in 0..50_000u64 {
                let stage = Stage::ALL[(i % Stage::COUNT as u64) as usize];
                rec.record(stage, value(i + round));
                rec.record_between(Stage::RingToStrategy, now, now + (i % 3_000));
                rec.record_between(Stage::WireToStrategy, now + 10, now);
                now += 40;
                if rec.maybe_rotate(now) == Some(Rotation::HandedOver) {
                    handed += 1;
                }
            }
            handed
        });
        recorded += 150_000;
        assert_eq!((allocs, deallocs), (0, 0), "round {round}");
        assert!(handed >= 1, "2 ms of clock time per round must rotate");
        collector.poll(|_, _| {});
    }
    rec.finish(now);
    collector.poll(|_, _| {});
    let totals = collector.totals();
    let all: u64 = Stage::ALL.iter().map(|&s| totals.histogram(s).len()).sum();
    assert_eq!(all, recorded + 2_000);
}

#[test]
fn out_of_range_values_are_clamped_and_counted_without_panicking() {
    let cfg = config(1);
    let mut h = StageHistograms::new(&cfg).unwrap();
    let highest = h.highest_ns();
    assert!(highest >= cfg.highest_ns);

    h.record(Stage::OrderRoundTrip, u64::MAX);
    h.record(Stage::OrderRoundTrip, highest + 1);
    h.record(Stage::OrderRoundTrip, highest);
    h.record(Stage::OrderRoundTrip, 0);
    h.record_between(Stage::WireToStrategy, 1_000, 10);
    h.record_between(Stage::WireToStrategy, 10, 1_000);
    h.record_between(Stage::WireToStrategy, u64::MAX, 0);

    assert_eq!(
        h.out_of_range(Stage::OrderRoundTrip),
        OutOfRange {
            above: 2,
            negative: 0
        }
    );
    let rt = h.histogram(Stage::OrderRoundTrip);
    assert_eq!(rt.len(), 4);
    assert_eq!(rt.count_at(highest), 3);
    assert_eq!(rt.min(), 0);

    let w = h.out_of_range(Stage::WireToStrategy);
    assert_eq!(
        w,
        OutOfRange {
            above: 0,
            negative: 2
        }
    );
    assert_eq!(w.total(), 2);
    let wh = h.histogram(Stage::WireToStrategy);
    assert_eq!(wh.len(), 3);
    assert_eq!(wh.count_at(0), 2);
    assert!(wh.equivalent(wh.max(), 990));

    // Other stages untouched.
    assert!(h.histogram(Stage::SocketToFrame).is_empty());
    assert_eq!(h.out_of_range(Stage::SocketToFrame), OutOfRange::default());
}

#[test]
fn invalid_configurations_are_errors_not_panics() {
    let bad = [
        HistogramConfig {
            highest_ns: 1,
            ..HistogramConfig::default()
        },
        HistogramConfig {
            significant_digits: 6,
            ..HistogramConfig::default()
        },
        HistogramConfig {
            interval_ns: 0,
            ..HistogramConfig::default()
        },
        HistogramConfig {
            spares: 0,
            ..HistogramConfig::default()
        },
    ];
    for cfg in bad {
        assert!(Collector::new(cfg).is_err(), "{cfg:?}");
    }
}

#[test]
fn default_range_covers_one_nanosecond_to_sixty_seconds_at_three_digits() {
    let cfg = HistogramConfig::default();
    let mut h = StageHistograms::new(&cfg).unwrap();
    assert!(h.highest_ns() >= 60_000_000_000);
    h.record(Stage::ReconnectDowntime, 59_999_999_999);
    h.record(Stage::SocketToFrame, 1);
    assert_eq!(h.out_of_range(Stage::ReconnectDowntime).above, 0);
    let v = h.histogram(Stage::ReconnectDowntime).max();
    assert!((v as f64 - 59_999_999_999.0).abs() / 6e10 < 0.001);
    assert_eq!(h.histogram(Stage::SocketToFrame).max(), 1);
}

#[test]
fn rotation_is_skipped_while_the_collector_is_behind_and_nothing_is_lost() {
    let mut collector = Collector::new(config(1)).unwrap();
    let mut rec = collector.recorder(0).unwrap();
    rec.record(Stage::RecordToRing, 100);
    assert_eq!(rec.rotate(10), Rotation::HandedOver);
    rec.record(Stage::RecordToRing, 200);
    // The only spare is with the collector, not polled yet.
    assert_eq!(rec.rotate(20), Rotation::Skipped);
    rec.record(Stage::RecordToRing, 300);
    assert_eq!(rec.current().skipped_rotations(), 1);

    let mut seen = Vec::new();
    assert_eq!(
        collector.poll(|src, i| seen.push((src, i.start_ns(), i.end_ns(), i.total_count()))),
        1
    );
    assert_eq!(seen, vec![(0, 0, 10, 1)]);
    // The spare is back: the next rotation hands the long interval over.
    assert_eq!(rec.rotate(30), Rotation::HandedOver);
    seen.clear();
    collector.poll(|src, i| seen.push((src, i.start_ns(), i.end_ns(), i.total_count())));
    assert_eq!(seen, vec![(0, 10, 30, 2)]);

    let t = collector.totals();
    assert_eq!(t.histogram(Stage::RecordToRing).len(), 3);
    assert_eq!(t.skipped_rotations(), 1);
    assert_eq!((t.start_ns(), t.end_ns()), (0, 30));
}

#[test]
fn maybe_rotate_waits_for_the_interval() {
    let mut collector = Collector::new(config(2)).unwrap();
    let mut rec = collector.recorder(5_000).unwrap();
    assert_eq!(rec.maybe_rotate(5_000 + 999_999), None);
    assert_eq!(
        rec.maybe_rotate(5_000 + 1_000_000),
        Some(Rotation::HandedOver)
    );
    assert_eq!(rec.current().start_ns(), 1_005_000);
    assert_eq!(rec.maybe_rotate(1_005_001), None);
}

#[test]
fn intervals_from_several_threads_add_up_in_the_collector() {
    let mut collector = Collector::new(config(2)).unwrap();
    let recorders: Vec<_> = (0..2).map(|_| collector.recorder(0).unwrap()).collect();
    let handles: Vec<_> = recorders
        .into_iter()
        .enumerate()
        .map(|(k, mut rec)| {
            std::thread::spawn(move || {
                let stage = if k == 0 {
                    Stage::SocketToFrame
                } else {
                    Stage::RingToStrategy
                };
                let mut now = 0;
                for i in 0..200_000u64 {
                    rec.record(stage, 50 + i % 1_000);
                    now += 50;
                    rec.maybe_rotate(now);
                }
                rec.finish(now);
            })
        })
        .collect();
    let mut per_source = [0u64; 2];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        collector.poll(|src, i| per_source[src] += i.total_count());
        if collector.all_finished() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "recorders never finished"
        );
        std::thread::yield_now();
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(per_source, [200_000, 200_000]);
    let t = collector.totals();
    assert_eq!(t.histogram(Stage::SocketToFrame).len(), 200_000);
    assert_eq!(t.histogram(Stage::RingToStrategy).len(), 200_000);
    assert_eq!(t.histogram(Stage::RingToStrategy).min(), 50);
    assert!(t
        .histogram(Stage::RingToStrategy)
        .equivalent(t.histogram(Stage::RingToStrategy).max(), 1_049));
}

#[test]
fn the_allocation_counter_sees_allocations_on_this_thread() {
    // Guards the no-allocation test above against a counter that never counts.
    let (v, allocs, deallocs) = count_allocations(|| {
        let v: Vec<u64> = Vec::with_capacity(16);
        std::hint::black_box(v.capacity())
    });
    assert_eq!(v, 16);
    assert_eq!((allocs, deallocs), (1, 1));
}

/// The recorder's flat counters use HdrHistogram's bucket layout: after the collector converts
/// them, every value's count sits in exactly the HdrHistogram slot the value itself would have
/// gone to, for several precisions and ranges, at every bucket boundary and in between.
#[test]
fn hot_counters_land_in_the_same_hdr_slot_as_the_value_itself() {
    use spinwire_engine::latency::HotHistograms;
    for (highest_ns, digits) in [
        (60_000_000_000u64, 3u8),
        (10_000_000, 2),
        (1 << 40, 4),
        (1000, 1),
    ] {
        let cfg = HistogramConfig {
            highest_ns,
            significant_digits: digits,
            interval_ns: 1_000_000,
            spares: 1,
        };
        let mut values = vec![0u64, 1, 2, 3, highest_ns];
        let mut p = 1u64;
        while p < highest_ns {
            values.extend([p - 1, p, p + 1, p + p / 3]);
            p <<= 1;
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x % (highest_ns + 1));
        }
        let mut hot = HotHistograms::new(&cfg).unwrap();
        let mut reference = StageHistograms::new(&cfg).unwrap();
        for &v in &values {
            hot.record(Stage::OrderRoundTrip, v);
            reference.record(Stage::OrderRoundTrip, v);
        }
        assert_eq!(hot.count(Stage::OrderRoundTrip), values.len() as u64);
        let converted = hot.to_histograms(&cfg).unwrap();
        let (a, b) = (
            converted.histogram(Stage::OrderRoundTrip),
            reference.histogram(Stage::OrderRoundTrip),
        );
        assert_eq!(a.len(), b.len(), "{highest_ns} {digits}");
        for v in b.iter_recorded() {
            assert_eq!(
                a.count_at(v.value_iterated_to()),
                v.count_at_value(),
                "highest {highest_ns}, {digits} digits: slot of {}",
                v.value_iterated_to()
            );
        }
        assert_eq!(a.max(), b.max());
        assert_eq!(a.min(), b.min());
    }
}
