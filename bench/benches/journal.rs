//! What journaling an order event costs the engine thread.
//!
//! - `journal/append/never`: one [`Journal::append`] (encode + CRC-32C + 128-byte copy into the
//!   shared mapping) with [`FlushPolicy::Never`].
//! - `journal/append/every_64`: the same with [`FlushPolicy::EveryN`]`(64)` (the flusher thread
//!   `msync`s every 64 records; the appender wakes it).
//! - `journal/append/interval_1ms`: the same with [`FlushPolicy::Interval`]`(1 ms)`.
//! - `journal/append/every_record`: the same with [`FlushPolicy::EveryRecord`] (an
//!   `msync(MS_SYNC)` per record: a disk flush).
//! - `journal/write_syscall_128`: the baseline: one `write(2)` of 128 bytes to a file (append),
//!   no flush.
//!
//! The journals live in the system temp dir (set `TMPDIR` to measure another disk). Each
//! measurement appends into a journal of 2^18 slots (32 MiB) and, when it fills, stops the clock,
//! opens a fresh one and goes on; so page faults of fresh pages are included, amortized as on
//! the engine thread. Records cycle through the kinds the order path writes most (Intent, Sent,
//! Accepted, Fill). Before timing, a journal is filled, read back and checked.
//!
//! Run: `cargo bench -p spinwire-bench --bench journal` (add `-- --warm-up-time 1
//! --measurement-time 3` for a short run); `cargo test -p spinwire-bench --bench journal` runs
//! each benchmark once as a check.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use spinwire_engine::md::{Direction, Fixed};
use spinwire_engine::orders::journal::{
    FlushPolicy, InstrumentName, Journal, JournalConfig, JournalRecord, OrderIntent, VenueOrderId,
};
use spinwire_engine::orders::{ClientOrderId, Fill};
use spinwire_engine::venue::deribit::{OrderType, TimeInForce};

/// Slots of each benchmark journal.
const CAPACITY: usize = 1 << 18;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("spinwire-bench-journal-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("create the bench directory");
    d
}

/// The records appended, in turn.
fn records() -> Vec<JournalRecord> {
    let id = ClientOrderId(0x193a_2b4c_5d6e_0001);
    let tag = 7;
    vec![
        JournalRecord::Intent {
            id,
            tag,
            intent: OrderIntent {
                instrument: InstrumentName::new("BTC-PERPETUAL").expect("name"),
                direction: Direction::Buy,
                order_type: OrderType::Limit,
                price: Fixed::from_int(60_000),
                amount: Fixed::from_int(10).expect("amount"),
                time_in_force: TimeInForce::GoodTilCancelled,
                post_only: true,
                reduce_only: false,
                ttl_deadline_unix_ms: 1_700_000_000_000,
            },
        },
        JournalRecord::Sent {
            id,
            tag,
            attempt: 1,
        },
        JournalRecord::Accepted {
            id,
            tag,
            venue_order_id: VenueOrderId::new("BTC-584849853").expect("venue id"),
        },
        JournalRecord::Fill {
            id,
            tag,
            fill: Fill {
                price: Fixed::from_int(60_000).expect("price"),
                amount: Fixed::from_int(10).expect("amount"),
                filled_total: Fixed::from_int(10).expect("amount"),
                trade_seq: 12_345,
            },
        },
    ]
}

fn open(path: &Path, flush: FlushPolicy) -> Journal {
    let _ = std::fs::remove_file(path);
    let mut c = JournalConfig::new(path);
    c.capacity = CAPACITY;
    c.flush = flush;
    Journal::open(c).expect("open the bench journal").0
}

/// Times `iters` appends, replacing the journal (clock stopped) whenever it fills.
fn timed_appends(path: &Path, flush: FlushPolicy, iters: u64) -> Duration {
    let recs = records();
    let mut j = open(path, flush);
    let mut total = Duration::ZERO;
    let mut left = iters;
    let mut k = 0usize;
    while left > 0 {
        if j.remaining() == 0 {
            drop(j);
            j = open(path, flush);
        }
        let n = left.min(j.remaining());
        let t = Instant::now();
        for _ in 0..n {
            let r = &recs[k & 3];
            k += 1;
            black_box(j.append(black_box(r))).expect("append");
        }
        total += t.elapsed();
        left -= n;
    }
    total
}

fn sanity_check(path: &Path) {
    let recs = records();
    let mut j = open(path, FlushPolicy::Never);
    for i in 0..1000 {
        j.append(&recs[i & 3]).expect("append");
    }
    drop(j);
    let r = Journal::inspect(path).expect("read back");
    assert_eq!(r.records_read(), 1000);
    assert_eq!(
        r.orders().len(),
        1,
        "one order (the id is the same in every record)"
    );
    assert_eq!(r.ignored_records(), 249, "the repeated Intents are ignored");
}

fn bench_journal(c: &mut Criterion) {
    if let Some(core) = core_affinity::get_core_ids().and_then(|v| v.into_iter().next()) {
        core_affinity::set_for_current(core);
    }
    let d = dir();
    let path = d.join("bench.jrnl");
    sanity_check(&path);

    let mut g = c.benchmark_group("journal");
    for (name, flush) in [
        ("append/never", FlushPolicy::Never),
        ("append/every_64", FlushPolicy::EveryN(64)),
        (
            "append/interval_1ms",
            FlushPolicy::Interval(Duration::from_millis(1)),
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| timed_appends(&path, flush, iters))
        });
    }

    let base = d.join("write.bin");
    g.bench_function("write_syscall_128", |b| {
        b.iter_custom(|iters| {
            let buf = [0x5au8; 128];
            let mut f: File = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&base)
                .expect("open the baseline file");
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CAPACITY as u64);
                let t = Instant::now();
                for _ in 0..n {
                    f.write_all(black_box(&buf)).expect("write");
                }
                total += t.elapsed();
                left -= n;
                f.set_len(0).expect("truncate");
                f = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&base)
                    .expect("reopen the baseline file");
            }
            total
        })
    });

    // A disk flush per record: milliseconds on some disks; fewer samples.
    g.sample_size(10);
    g.bench_function("append/every_record", |b| {
        b.iter_custom(|iters| timed_appends(&path, FlushPolicy::EveryRecord, iters))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&d);
}

criterion_group!(benches, bench_journal);
criterion_main!(benches);
