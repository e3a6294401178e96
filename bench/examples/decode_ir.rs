//! Instructions per Deribit book-change decode, for callgrind: spinwire's `decode` (fast path),
//! its `decode_general`, and the serde_json derive baseline, on the messages of the
//! `deribit_decode` bench.
//!
//! Wall time on a shared, noisy machine moves by tens of percent; instruction counts do not.
//! Only the decode loop (`decode_ir_loop`) is counted: N messages of R rows plus the one decoded
//! as a check first, hence N + 1 below:
//!
//! ```text
//! cargo build --release -p spinwire-bench --example decode_ir
//! for d in spinwire general serde; do for r in 1 5 20; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect=decode_ir_loop \
//!     target/release/examples/decode_ir $d $r 10000 2>&1 | grep -o 'Collected : [0-9]*' |
//!     awk -v d=$d -v r=$r '{ printf "%s %2d rows: %.0f Ir/msg\n", d, r, $3 / 10001 }'
//! done; done
//! ```
//!
//! A fourth argument `nosw` drops the simulator's `sw_send_ns` member from the message (the
//! message as Deribit itself sends it).
//!
//! Without valgrind it prints ns/msg (wall time, for a rough look):
//! `target/release/examples/decode_ir spinwire 5 1000000`; `decode_ir interleaved ROWS ROUNDS`
//! alternates short batches of spinwire and serde_json (a few ms each) and prints the medians
//! of their ns/msg and the ratio, which a busy machine disturbs far less than one long run each.

use std::hint::black_box;
use std::time::Instant;

use spinwire_engine::md::{InstrumentTable, MdRecord};
use spinwire_engine::venue::deribit::{decode, decode_general, Incoming};

#[path = "../benches/support/deribit_book.rs"]
mod support;
use support::{book_change, instruments, serde_decode};

/// Which decoder to count.
#[derive(Clone, Copy)]
enum Decoder {
    Spinwire,
    General,
    Serde,
}

/// Decodes `text` `n` times with `decoder`. The only function callgrind counts (see the module
/// docs); `no_mangle` keeps its symbol name stable for `--toggle-collect`.
#[no_mangle]
#[inline(never)]
extern "Rust" fn decode_ir_loop(
    decoder: Decoder,
    text: &str,
    table: &InstrumentTable,
    out: &mut [MdRecord],
    n: u64,
) -> usize {
    let mut rows = 0usize;
    match decoder {
        Decoder::Spinwire => {
            for _ in 0..n {
                if let Ok(Incoming::Book(b)) = decode(black_box(text), table, out) {
                    rows += b.rows;
                }
            }
        }
        Decoder::General => {
            for _ in 0..n {
                if let Ok(Incoming::Book(b)) = decode_general(black_box(text), table, out) {
                    rows += b.rows;
                }
            }
        }
        Decoder::Serde => {
            for _ in 0..n {
                let d = black_box(serde_decode(black_box(text)));
                rows += d.params.data.bids.len() + d.params.data.asks.len();
            }
        }
    }
    rows
}

/// Median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Alternates batches of spinwire and serde_json decodes; prints the medians and their ratio.
fn interleaved(rows: usize, rounds: usize) {
    let table = instruments();
    let mut out = vec![MdRecord::default(); rows.max(1)];
    let text = book_change(rows);
    let batch = |d: Decoder, n: u64, out: &mut [MdRecord]| {
        let start = Instant::now();
        let total = decode_ir_loop(d, &text, &table, out, n);
        assert_eq!(total as u64, rows as u64 * n);
        start.elapsed().as_nanos() as f64 / n as f64
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        ours.push(batch(Decoder::Spinwire, 20_000, &mut out));
        theirs.push(batch(Decoder::Serde, 4_000, &mut out));
    }
    let (a, b) = (median(&mut ours), median(&mut theirs));
    println!(
        "{rows} rows: spinwire {a:.1} ns/msg, serde_json {b:.1} ns/msg (medians of {} batches): {:.2}x",
        ours.len(),
        b / a
    );
}

fn main() {
    let usage =
        "usage: decode_ir spinwire|general|serde ROWS N [nosw] | decode_ir interleaved ROWS ROUNDS";
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let no_sw = args.len() == 4 && args[3] == "nosw";
    if no_sw {
        args.pop();
    }
    let [decoder, rows, n] = <[String; 3]>::try_from(args).unwrap_or_else(|_| {
        eprintln!("{usage}");
        std::process::exit(2)
    });
    let decoder = match decoder.as_str() {
        "interleaved" => {
            match (rows.parse::<usize>(), n.parse::<usize>()) {
                (Ok(rows), Ok(rounds)) => interleaved(rows, rounds),
                _ => eprintln!("{usage}"),
            }
            return;
        }
        "spinwire" => Decoder::Spinwire,
        "general" => Decoder::General,
        "serde" => Decoder::Serde,
        _ => {
            eprintln!("{usage}");
            std::process::exit(2)
        }
    };
    let (Ok(rows), Ok(n)) = (rows.parse::<usize>(), n.parse::<u64>()) else {
        eprintln!("{usage}");
        std::process::exit(2)
    };
    let table = instruments();
    let mut out = vec![MdRecord::default(); rows.max(1)];
    let mut text = book_change(rows);
    if no_sw {
        let at = text.rfind(",\"sw_send_ns\":").expect("the member");
        text.replace_range(at..text.len() - 3, "");
    }
    // Check before counting: the message decodes to `rows` rows.
    let one = decode_ir_loop(decoder, &text, &table, &mut out, 1);
    assert_eq!(one, rows, "the decoder reads every row");
    let start = Instant::now();
    let total = decode_ir_loop(decoder, &text, &table, &mut out, n);
    let ns = start.elapsed().as_nanos() as f64 / n.max(1) as f64;
    assert_eq!(total as u64, rows as u64 * n);
    println!("{} bytes, {rows} rows: {ns:.1} ns/msg", text.len());
}
