//! End to end over loopback, criterion style: the time per message from the feeder's first
//! `sw_send_ns` to the strategy's last pop, with the feeder writing as fast as the socket takes,
//! for spinwire, tokio-tungstenite + serde_json + `std::sync::mpsc`, and the bare mio floor,
//! over `ws` and `wss`. Each timed call is a fresh connection fed `iters` messages; connection
//! setup is not timed. For percentiles, run `examples/e2e_hdr.rs`.
//!
//! ```text
//! cargo bench -p spinwire-bench --bench e2e
//! cargo test -p spinwire-bench --benches   # one quick pass, sanity checks included
//! ```
//!
//! Threads: I/O on core 0, strategy on core 1 (when there are 2 cores), feeder unpinned; all in
//! [`Mode::Yield`] (spin, yield when idle), because three threads share two cores here.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spinwire_bench::e2e::{remove_tls_files, run, Client, Mode, Pace, Percentiles, RunSpec};

const CASES: [(Client, bool); 5] = [
    (Client::Spinwire, false),
    (Client::Tokio, false),
    (Client::Floor, false),
    (Client::Spinwire, true),
    (Client::Tokio, true),
];

fn spec(client: Client, tls: bool, messages: u64) -> RunSpec {
    RunSpec {
        client,
        tls,
        pace: Pace::Max,
        messages,
        warmup: 0,
        mode: Mode::Yield,
        pin: std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2,
        seed: 11,
    }
}

fn case_name(client: Client, tls: bool) -> String {
    let wire = match (client, tls) {
        (Client::Floor, _) => "tcp",
        (_, true) => "wss",
        (_, false) => "ws",
    };
    let client = match client {
        Client::Spinwire => "spinwire",
        Client::Tokio => "tokio_tungstenite",
        Client::Floor => "floor",
    };
    format!("{client}/{wire}")
}

/// Before timing anything: every client gets every message of a short stream, nothing is
/// dropped, and the latencies are plausible (positive, below a second).
fn sanity_check() {
    for (client, tls) in CASES {
        let name = case_name(client, tls);
        let r = run(&spec(client, tls, 2_000)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.feed.sent, 2_000, "{name}: feeder sent everything");
        assert_eq!(r.received, 2_000, "{name}: strategy got every message");
        assert_eq!(r.ring_drops, 0, "{name}: no ring drops");
        assert_eq!(r.malformed, 0, "{name}: every message decoded");
        let p = Percentiles::of(&r.hist);
        assert_eq!(p.count, 2_000, "{name}: every message timed");
        assert!(
            p.p50 > 0 && p.max < 1_000_000_000,
            "{name}: plausible {p:?}"
        );
    }
}

fn e2e(c: &mut Criterion) {
    sanity_check();
    let mut g = c.benchmark_group("e2e_per_message");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for (client, tls) in CASES {
        g.bench_function(case_name(client, tls), |b| {
            b.iter_custom(|iters| {
                let r = run(&spec(client, tls, iters.max(1)))
                    .unwrap_or_else(|e| panic!("{}: {e}", case_name(client, tls)));
                assert_eq!(r.received, r.feed.sent, "no message lost");
                // Per message on average: the span covers `received` messages, criterion
                // divides by `iters`.
                Duration::from_nanos(r.span_ns)
            })
        });
    }
    g.finish();
    remove_tls_files();
}

criterion_group!(benches, e2e);
criterion_main!(benches);
