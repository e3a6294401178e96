//! Helpers of the engine-loop benchmarks (issue 13: one loop for many sessions):
//! `examples/loop_idle.rs` (idle turn cost at N = 1, 8, 64 sessions), `examples/loop_cpu_per_msg.rs`
//! (engine CPU per market-data message at a paced total rate spread over N sessions) and
//! `examples/order_wakeup.rs` (an order pushed while the engine is parked → its bytes on the
//! wire, against one bare wake-up).
//!
//! - [`threads`]: per-thread CPU time, scheduler counters and exact system-call counts;
//! - [`peer`]: the server side of a loopback WebSocket connection, and a server that accepts
//!   connections and then stays quiet;
//! - [`feed`]: a paced market-data feeder spreading one total rate over many connections.

pub mod feed;
pub mod peer;
pub mod threads;

/// An example's `main`: bad arguments exit 2 with the parser's message, a failed run exits 1
/// with `name: error`.
pub fn example_main<O>(
    name: &str,
    parse: impl FnOnce() -> Result<O, String>,
    run: impl FnOnce(&O) -> Result<(), String>,
) {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&o) {
        eprintln!("{name}: {e}");
        std::process::exit(1);
    }
}

/// The median of `v` (sorted in place); 0 for an empty slice.
pub fn median(v: &mut [f64]) -> f64 {
    quantile(v, 0.5)
}

/// The `q` quantile of `v` (nearest rank, sorted in place); 0 for an empty slice.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    v[i]
}

/// Smallest and largest of `v` (0, 0 for an empty slice).
pub fn range(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}
