//! Deribit book-change decoding: spinwire's codec against serde_json.
//!
//! - `deribit_book_change/{1,5,20}rows/spinwire`: `venue::deribit::decode` of one
//!   `book.BTC-PERPETUAL.raw` change notification into `MdRecord`s (exact fixed-point prices,
//!   instrument id from an `InstrumentTable`, rows flagged first/last) in a reused slice.
//! - `.../spinwire_general`: the same without the fast path for Deribit's own layout
//!   (`decode_general`: what any other member order or spacing costs).
//! - `.../serde_json`: the idiomatic baseline, `serde_json::from_str` into
//!   `#[derive(Deserialize)]` structs for the same message (owned `String`s, `Vec` of
//!   `(Action, f64, f64)` rows).
//! - Before timing: both decoders are checked to read the same rows (prices and amounts agree),
//!   and the allocations per message of each are counted (a counting global allocator, this
//!   thread only) and printed: `allocs/msg 5rows spinwire=0.00 serde_json=...`.
//!
//! Messages are shaped as Deribit sends them (field order, `.0` amounts, integer ids) plus the
//! simulator's `sw_send_ns`.
//!
//! Run: `cargo bench -p spinwire-bench --bench deribit_decode` (add
//! `-- --warm-up-time 1 --measurement-time 3` for a short run);
//! `cargo test -p spinwire-bench --bench deribit_decode` runs each once as a check.
//! Instruction counts (repeatable where wall time is not): `examples/decode_ir.rs`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spinwire_bench::{count_allocations, CountingAlloc};
use spinwire_engine::md::{InstrumentTable, MdRecord};
use spinwire_engine::venue::deribit::{decode, decode_general, Incoming};

// ---------------------------------------------------------------------------------------------
// Counting allocator (this thread only, while enabled).

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[path = "support/deribit_book.rs"]
mod support;
use support::{book_change, instruments, serde_decode, Action, Kind};

// ---------------------------------------------------------------------------------------------
// Sanity checks and allocation counts (before timing).

fn check_and_count(rows: usize, table: &InstrumentTable, out: &mut [MdRecord]) {
    let probe = count_allocations(|| {
        black_box(Vec::<u8>::with_capacity(black_box(8)));
    });
    assert_eq!(probe, 1, "the counting allocator works");

    let text = book_change(rows);
    let Ok(Incoming::Book(general)) = decode_general(&text, table, out) else {
        panic!("spinwire's general path decodes the message");
    };
    let general_rows = out[..rows].to_vec();
    let Ok(Incoming::Book(b)) = decode(&text, table, out) else {
        panic!("spinwire decodes the message");
    };
    assert_eq!(b, general, "fast and general paths agree");
    assert_eq!(
        out[..rows],
        general_rows[..],
        "fast and general paths agree"
    );
    let theirs = serde_decode(&text);
    let d = &theirs.params.data;
    assert_eq!(b.rows, rows);
    assert_eq!((b.change_id, d.change_id), (71234567891, 71234567891));
    assert_eq!(Some(b.prev_change_id), d.prev_change_id);
    assert_eq!(d.kind, Kind::Change);
    let serde_rows: Vec<(Action, f64, f64)> = d.bids.iter().chain(&d.asks).copied().collect();
    assert_eq!(serde_rows.len(), rows);
    for (rec, (action, price, amount)) in out[..rows].iter().zip(serde_rows) {
        let MdRecord::Book(r) = rec else {
            panic!("book rows only")
        };
        assert_eq!(r.price.to_f64(), price);
        assert_eq!(r.amount.to_f64(), amount);
        assert_eq!(format!("{:?}", r.action), format!("{action:?}"));
    }

    const MSGS: u64 = 1000;
    let ours = count_allocations(|| {
        for _ in 0..MSGS {
            black_box(decode(black_box(&text), table, out).is_ok());
        }
    });
    let theirs = count_allocations(|| {
        for _ in 0..MSGS {
            black_box(serde_decode(black_box(&text)));
        }
    });
    println!(
        "allocs/msg {rows}rows ({} bytes) spinwire={:.2} serde_json={:.2}",
        text.len(),
        ours as f64 / MSGS as f64,
        theirs as f64 / MSGS as f64
    );
    assert_eq!(ours, 0, "spinwire must not allocate while decoding");
}

// ---------------------------------------------------------------------------------------------
// Benchmarks.

fn bench_book_change(c: &mut Criterion) {
    let table = instruments();
    let mut out = vec![MdRecord::default(); 256];
    for rows in [1usize, 5, 20] {
        check_and_count(rows, &table, &mut out);
        let text = book_change(rows);
        let mut group = c.benchmark_group(format!("deribit_book_change/{rows}rows"));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function("spinwire", |b| {
            b.iter(|| match decode(black_box(&text), &table, &mut out) {
                Ok(Incoming::Book(u)) => black_box(u.rows),
                _ => unreachable!("checked above"),
            })
        });
        group.bench_function("spinwire_general", |b| {
            b.iter(
                || match decode_general(black_box(&text), &table, &mut out) {
                    Ok(Incoming::Book(u)) => black_box(u.rows),
                    _ => unreachable!("checked above"),
                },
            )
        });
        group.bench_function("serde_json", |b| {
            b.iter(|| black_box(serde_decode(black_box(&text))))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_book_change);
criterion_main!(benches);
