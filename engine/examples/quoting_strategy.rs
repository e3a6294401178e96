//! The example strategy on the handoff API: one engine thread runs a Deribit session, this
//! thread is the strategy — it keeps the top of book from the book rows, quotes a post-only bid
//! and ask at the top, cancels and replaces them when the mid moves, tracks its orders from
//! their events, and records wire-to-strategy latency (venue send time → popped) into an HDR
//! histogram. The same logic (`spinwire_engine::strategy`) runs in `spinwire demo`.
//!
//! ```text
//! # a venue: the simulator on loopback over TLS
//! cargo run --release -p spinwire-tools -- sim --listen 127.0.0.1:8443 \
//!     --tls-self-signed /tmp/sw-sim --credentials demo:demo-secret
//! # the strategy
//! SPINWIRE_CLIENT_ID=demo SPINWIRE_CLIENT_SECRET=demo-secret \
//! cargo run --release -p spinwire-engine --example quoting_strategy -- \
//!     wss://127.0.0.1:8443/ws/api/v2 --ca-file /tmp/sw-sim/ca.pem --seconds 10
//! ```
//!
//! Without credentials it subscribes to the public `100ms` book and only watches. Orders go out
//! only with credentials (use a test account against a real venue).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use spinwire_engine::handoff::{CorePlan, Engine, IdleWait};
use spinwire_engine::latency::{
    read_monotonic_ns, realtime_ns, HistogramConfig, Stage, StageHistograms,
};
use spinwire_engine::md::{Fixed, InstrumentId};
use spinwire_engine::orders::{OrderRateLimit, OrdersConfig};
use spinwire_engine::session::driver::DriverConfig;
use spinwire_engine::session::{Credentials, EventKind, SessionConfig};
use spinwire_engine::strategy::{QuoteConfig, QuotingStrategy};

const INSTRUMENT: &str = "BTC-PERPETUAL";

struct Args {
    url: String,
    ca_file: Option<PathBuf>,
    seconds: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut url = None;
    let mut ca_file = None;
    let mut seconds = 10.0;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ca-file" => ca_file = Some(PathBuf::from(it.next().ok_or("--ca-file PATH")?)),
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or("--seconds N (a positive number)")?
            }
            _ if url.is_none() && !a.starts_with('-') => url = Some(a),
            _ => return Err(format!("unexpected argument {a:?}")),
        }
    }
    Ok(Args {
        url: url.ok_or("usage: quoting_strategy URL [--ca-file PATH] [--seconds N]")?,
        ca_file,
        seconds,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let credentials = match Credentials::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("credentials: {e}");
            return ExitCode::FAILURE;
        }
    };
    let trading = credentials.is_some();
    let interval = if trading { "raw" } else { "100ms" };
    let channels = [
        format!("book.{INSTRUMENT}.{interval}"),
        format!("trades.{INSTRUMENT}.{interval}"),
    ];
    let mut session = SessionConfig {
        credentials,
        ..SessionConfig::default()
    };
    if trading {
        session.orders = OrdersConfig {
            currency: "BTC".into(),
            instruments: vec![INSTRUMENT.into()],
            rate: OrderRateLimit {
                per_second: 20,
                burst: 40,
            },
            ..OrdersConfig::default()
        };
    }
    let mut driver = DriverConfig::new(args.url.clone());
    driver.ca_file = args.ca_file;

    // Engine + this strategy thread, + the simulator's two busy threads when the venue is on
    // this machine: pin and spin only when each has a core of its own.
    let local = ["://127.0.0.1", "://localhost", "://[::1]"]
        .iter()
        .any(|h| args.url.contains(h));
    let plan = CorePlan::choose(if local { 4 } else { 2 });
    eprintln!("quoting_strategy: {}", plan.reason);
    let mut engine = match Engine::builder()
        .session("deribit", driver, session, &channels)
        .core(plan.engine_core)
        .poll_mode(plan.mode)
        .spawn()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("quoting_strategy: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(core) = plan.strategy_core {
        if let Err(e) = spinwire_engine::sys::pin_current_thread(core) {
            eprintln!("quoting_strategy: strategy not pinned: {e}");
        }
    }
    let ends = &mut engine.strategies[0];
    let mut strategy = QuotingStrategy::new(QuoteConfig::default());
    if trading {
        // The order instrument is the first in the session's table (id 0).
        strategy.quote(InstrumentId(0), Fixed::from_int(10).unwrap_or(Fixed::ZERO));
    }
    let mut latency = match StageHistograms::new(&HistogramConfig::default()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("quoting_strategy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut wait = IdleWait::for_plan(&plan);
    let mut push = |r| ends.orders.push(r).is_ok();
    let end = Instant::now() + Duration::from_secs_f64(args.seconds);
    while Instant::now() < end && !engine.control.is_finished() {
        let mut busy = false;
        while let Some(e) = ends.order_events.pop() {
            busy = true;
            strategy.on_order_event(&e);
        }
        while let Some(e) = ends.session_events.pop() {
            busy = true;
            if let EventKind::Fatal { reason, code } = e.kind {
                eprintln!("quoting_strategy: session failed: {reason:?} ({code})");
            }
            strategy.on_session_event(&e);
        }
        let now = read_monotonic_ns();
        while let Some(r) = ends.md.pop() {
            busy = true;
            if r.sw_send_ns() != 0 {
                latency.record_between(Stage::WireToStrategy, r.sw_send_ns(), realtime_ns());
            }
            strategy.on_record(now, &r, &mut push);
        }
        if busy {
            wait.reset();
        } else {
            wait.idle();
        }
    }
    strategy.stop_quoting();
    if trading {
        strategy.cancel_all(&mut push);
        // Give the engine a moment to send the cancel before logging out.
        std::thread::sleep(Duration::from_millis(200));
        while let Some(e) = ends.order_events.pop() {
            strategy.on_order_event(&e);
        }
    }
    let stats = match engine.control.shutdown() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("quoting_strategy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let c = strategy.counters();
    let h = latency.histogram(Stage::WireToStrategy);
    let s = &stats.sessions[0];
    println!(
        "records {}  dropped {}  reconnects {}  requotes {}  orders sent {} accepted {} \
         filled {} cancelled {} rejected {}",
        c.records,
        s.driver.records_dropped,
        c.reconnects,
        c.requotes,
        s.orders.sent,
        c.accepted,
        c.filled,
        c.cancelled,
        c.rejected
    );
    if h.is_empty() {
        println!("wire-to-strategy: no venue send times (sw_send_ns) in this venue's messages");
    } else {
        println!(
            "wire-to-strategy ns: p50 {} p99 {} p99.9 {} max {} ({} values)",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            h.len()
        );
    }
    ExitCode::SUCCESS
}
