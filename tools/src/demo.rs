//! `spinwire demo`: the whole system in one command.
//!
//! Starts the Deribit simulator in-process on loopback over TLS (a CA generated for this run,
//! trusted by this process only: its file lives in a private temporary directory that is
//! removed at the end, and credentials are made up and set in-process), the engine (pinned
//! when the machine has a core for every busy thread, see [`CorePlan`]) and the example quoting
//! strategy ([`QuotingStrategy`]) on its own thread. It runs for `--seconds`, shows one live
//! progress line on stderr (refreshed about 4 times a second), injects a few faults at fixed
//! points of the run (a TCP reset at 25 %, a book gap at 45 %, a withheld order answer followed
//! by a reset at 65 %) unless `--no-faults`, then prints a summary table on stdout, writes a
//! latency report (`.hgrm` per stage, V2 interval log, SVG, `index.html`, `run.json`) and, with
//! `--summary-json`, the summary as JSON.
//!
//! With `--url URL` it runs against an external Deribit endpoint instead (credentials from
//! `SPINWIRE_CLIENT_ID` / `SPINWIRE_CLIENT_SECRET`, public data without them); no faults are
//! injected there, and the strategy only quotes with `--quote`.
//!
//! With `--sessions N` (default 1) the one engine thread runs N sessions, each subscribed to
//! the demo's channels: session 0 is the quoting strategy's (orders, journal,
//! cancel-on-disconnect); sessions 1.. take market data only and are consumed by one more
//! thread. The summary counts every session (`sessions` in the JSON, top-level counts are the
//! totals).
//!
//! Threads: the engine thread formats and prints nothing; it records the engine-side latency
//! stages (socket → frame → record → ring, order → wire, order round trip, reconnect downtime)
//! of every session into its recorders. The strategy thread pops session 0's rings, runs the
//! strategy and records ring → popped and wire → popped (venue send time `sw_send_ns`, wall
//! clock) into its own [`Recorder`]: these two stages are the quoting strategy's. The
//! market-data thread (N > 1) pops the other sessions' rings and counts. The calling thread
//! collects the recorders, writes the interval log, injects faults and prints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use spinwire_engine::handoff::{CorePlan, Engine, HandoffError, IdleWait, StrategyEnds};
use spinwire_engine::latency::{
    realtime_ns, Clock, Collector, HistogramConfig, LatencyError, Recorder, Stage, StageHistograms,
};
use spinwire_engine::md::{Fixed, InstrumentId, InstrumentTable};
use spinwire_engine::orders::journal::JournalConfig;
use spinwire_engine::orders::{OrderRateLimit, OrderStats, OrdersConfig};
use spinwire_engine::session::driver::DriverConfig;
use spinwire_engine::session::{
    BackoffConfig, CredentialError, Credentials, FatalReason, SessionConfig,
};
use spinwire_engine::strategy::{QuoteConfig, QuotingStrategy, StrategyCounters};
use spinwire_engine::venue::deribit::CodScope;
use spinwire_latency_reports::{ReportError, RunInfo, RunWriter, StageData};

use crate::sim::{FaultKind, SimConfig, SimError, SimHandle, Simulator, Target, TlsSetup};

/// Instruments of the demo on the simulator, with the order amount when the strategy quotes it
/// (a multiple of the simulator's contract size, 10 for BTC). Orders are on one currency per
/// session (Deribit reconciles by currency), so ETH is market data only.
const SIM_INSTRUMENTS: [(&str, Option<i64>); 2] =
    [("BTC-PERPETUAL", Some(10)), ("ETH-PERPETUAL", None)];

/// Options of `spinwire demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How long to run.
    pub seconds: f64,
    /// Inject faults (simulator only).
    pub faults: bool,
    /// Write the summary as JSON here.
    pub summary_json: Option<PathBuf>,
    /// Write the report into this directory (default `latency-reports/out/<run>/`).
    pub report_dir: Option<PathBuf>,
    /// Market-data events per second of the simulator.
    pub rate: u64,
    /// Run against this external venue URL instead of the simulator.
    pub url: Option<String>,
    /// CA to trust for the external venue (default: system roots).
    pub ca_file: Option<PathBuf>,
    /// Quote on the external venue too (always on with the simulator).
    pub quote: bool,
    /// Show the live progress line.
    pub progress: bool,
    /// Sessions on the engine thread (`1..=`[`MAX_SESSIONS`](crate::tap::MAX_SESSIONS)):
    /// session 0 quotes, the others take market data only.
    pub sessions: usize,
    /// Raised (e.g. on Ctrl-C) to end the run early; the summary and report are still written.
    pub interrupt: Option<Arc<AtomicBool>>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            seconds: 10.0,
            faults: true,
            summary_json: None,
            report_dir: None,
            rate: 5_000,
            url: None,
            ca_file: None,
            quote: false,
            progress: true,
            sessions: 1,
            interrupt: None,
        }
    }
}

/// Why the demo failed; the text is the one line printed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The simulator could not start.
    #[error("simulator: {0}")]
    Sim(#[from] SimError),
    /// The engine could not start or stop cleanly.
    #[error("engine: {0}")]
    Engine(#[from] HandoffError),
    /// Credentials in the environment are unusable.
    #[error("credentials: {0}")]
    Credentials(#[from] CredentialError),
    /// Histograms could not be set up.
    #[error("latency: {0}")]
    Latency(#[from] LatencyError),
    /// The report could not be written.
    #[error("report: {0}")]
    Report(#[from] ReportError),
    /// A file could not be written or a directory created.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The options are inconsistent.
    #[error("{0}")]
    Usage(String),
    /// The strategy thread panicked (a bug).
    #[error("the strategy thread panicked")]
    StrategyPanicked,
    /// A session never went live or failed for good (the text says which, why and what to
    /// try); the summary and report were still written.
    #[error("{0}")]
    Failed(String),
}

/// Per-stage percentiles of the summary, ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagePercentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

/// One session's share of a demo run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// Index (0-based; 0 is the quoting strategy's session).
    pub session: usize,
    /// The session's name in the engine (`deribit-INDEX`).
    pub name: String,
    /// Whether the quoting strategy drove it (else market data only).
    pub quoting: bool,
    /// Venue messages the engine handled for it.
    pub messages: u64,
    /// Market-data records popped from its ring.
    pub records: u64,
    /// Reconnects (live again after a drop).
    pub reconnects: u64,
    /// Records dropped on its full MarketData ring.
    pub ring_drops: u64,
}

/// What a demo run did.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// Run name (the report directory's last component by default).
    pub run: String,
    /// Seconds it ran.
    pub seconds: f64,
    /// Venue messages the engine handled (all sessions).
    pub messages: u64,
    /// Market-data records popped (all sessions).
    pub records: u64,
    /// Reconnects (a session live again after a drop; all sessions).
    pub reconnects: u64,
    /// Records dropped on a full MarketData ring (all sessions).
    pub ring_drops: u64,
    /// Per session, by index.
    pub sessions: Vec<SessionSummary>,
    /// The strategy's counters (requests pushed, events seen, requotes, ...).
    pub strategy: StrategyCounters,
    /// The engine's order counters (orders sent to the venue, accepted, ...) of the quoting
    /// session (the only one that places orders).
    pub orders: OrderStats,
    /// Faults injected, with the second they were injected at.
    pub faults: Vec<(f64, &'static str)>,
    /// Per stage with values.
    pub latency: Vec<(Stage, StagePercentiles)>,
    /// Where the report went.
    pub report_dir: PathBuf,
    /// The placement chosen and why.
    pub placement: String,
    /// Whether engine and strategy had cores of their own.
    pub dedicated: bool,
}

impl DemoSummary {
    /// The summary as JSON (what `--summary-json` writes). In `orders`, `sent` counts the new
    /// orders the strategy placed and `requests_written` every request the engine wrote (new
    /// orders, resends, cancels, edits); the other counts are the engine's (what the venue
    /// answered, reconciliation included). `strategy` has the strategy's own view. Top-level
    /// `messages`, `records`, `reconnects` and `ring_drops` are totals over `sessions`, which
    /// has each session's counts.
    pub fn to_json(&self) -> Value {
        let mut latency = Map::new();
        for (stage, p) in &self.latency {
            latency.insert(
                stage.name().into(),
                json!({"count": p.count, "p50": p.p50, "p99": p.p99, "p999": p.p999,
                       "max": p.max}),
            );
        }
        let s = &self.strategy;
        let o = &self.orders;
        json!({
            "run": self.run,
            "seconds": self.seconds,
            "messages": self.messages,
            "records": self.records,
            "reconnects": self.reconnects,
            "ring_drops": self.ring_drops,
            "sessions": self.sessions.iter().map(|x| json!({
                "session": x.session,
                "name": x.name,
                "quoting": x.quoting,
                "messages": x.messages,
                "records": x.records,
                "reconnects": x.reconnects,
                "ring_drops": x.ring_drops,
            })).collect::<Vec<_>>(),
            "orders": {
                "sent": s.sent,
                "requests_written": o.sent,
                "accepted": o.accepted,
                "rejected": o.rejected,
                "refused": o.refused,
                "filled": o.filled,
                "partially_filled": o.partially_filled,
                "cancelled": o.cancelled,
                "expired": o.expired,
                "resent": o.resent,
                "unknown": o.unknown,
                "changes_rejected": o.changes_rejected,
                "overflow_high_water": o.overflow_high_water,
                "journal_errors": o.journal_errors,
            },
            "strategy": {
                "records": s.records,
                "orders_pushed": s.sent,
                "cancels_pushed": s.cancels_sent,
                "push_failed": s.push_failed,
                "requotes": s.requotes,
                "accepted": s.accepted,
                "rejected": s.rejected,
                "filled": s.filled,
                "cancelled": s.cancelled,
                "expired": s.expired,
                "resent": s.resent,
                "stale_books": s.stale,
            },
            "latency_ns": latency,
            "faults": self.faults.iter().map(|(t, f)| json!({"at_s": t, "fault": f}))
                .collect::<Vec<_>>(),
            "placement": {"dedicated": self.dedicated, "reason": self.placement},
            "report_dir": self.report_dir.display().to_string(),
        })
    }
}

/// Counters the strategy thread publishes for the progress line (relaxed stores, once per
/// loop turn with work).
#[derive(Debug, Default)]
struct Live {
    records: AtomicU64,
    reconnects: AtomicU64,
    ring_drops: AtomicU64,
    orders_live: AtomicU64,
    orders_in_flight: AtomicU64,
    /// The market-data thread's totals over sessions 1..
    md_records: AtomicU64,
    md_reconnects: AtomicU64,
    md_ring_drops: AtomicU64,
}

/// Runs the demo; progress and fault notes go to `log` (stderr), the summary table to `out`.
///
/// # Errors
/// [`DemoError`].
pub fn run(
    opts: &DemoOptions,
    out: &mut impl Write,
    log: &mut impl Write,
) -> Result<DemoSummary, DemoError> {
    if !(opts.seconds.is_finite() && opts.seconds > 0.0) {
        return Err(DemoError::Usage(format!(
            "--seconds must be a positive number, got {}",
            opts.seconds
        )));
    }
    if let Some(path) = &opts.summary_json {
        // Written after the run: a path that cannot be written must fail before it.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|source| DemoError::Io {
                path: path.clone(),
                source,
            })?;
    }
    let n_sessions = crate::tap::check_sessions(opts.sessions).map_err(DemoError::Usage)?;
    let started_wall = SystemTime::now();
    let run_name = run_name(started_wall);
    let report_dir = opts
        .report_dir
        .clone()
        .unwrap_or_else(|| Path::new("latency-reports/out").join(&run_name));

    // --- venue ---------------------------------------------------------------------------
    let mut tmp = None;
    let mut sim: Option<SimHandle> = None;
    let (url, ca_file, credentials, quote) = match &opts.url {
        Some(url) => (
            url.clone(),
            opts.ca_file.clone(),
            Credentials::from_env()?,
            opts.quote,
        ),
        None => {
            let dir = TempDir::new()?;
            let (id, secret) = made_up_credentials();
            let cfg = SimConfig {
                tls: Some(TlsSetup::SelfSigned(dir.path().to_path_buf())),
                rate: opts.rate,
                instruments: SIM_INSTRUMENTS.iter().map(|(n, _)| n.to_string()).collect(),
                credentials: vec![(id.clone(), secret.clone())],
                min_heartbeat: Duration::from_secs(1),
                // Room for every session and a reconnect of each.
                max_conns_per_ip: SimConfig::default()
                    .max_conns_per_ip
                    .max(2 * n_sessions + 4),
                ..SimConfig::default()
            };
            let handle = Simulator::start(cfg)?;
            let url = handle.url();
            let ca = handle.ca_file().cloned();
            sim = Some(handle);
            tmp = Some(dir);
            (url, ca, Some(Credentials::new(id, secret)), true)
        }
    };
    let authed = credentials.is_some();
    let quote = quote && authed;
    let instruments: Vec<(&str, Option<i64>)> = if opts.url.is_some() {
        vec![SIM_INSTRUMENTS[0]]
    } else {
        SIM_INSTRUMENTS.to_vec()
    };
    let interval = if authed { "raw" } else { "100ms" };
    let mut channels = Vec::new();
    for (name, _) in &instruments {
        channels.push(format!("book.{name}.{interval}"));
        channels.push(format!("trades.{name}.{interval}"));
    }

    // --- placement and engine --------------------------------------------------------------
    // Busy threads: engine + strategy, the market-data thread of sessions 1.. (if any), and
    // the simulator's generator and connection threads.
    let busy = 2 + usize::from(n_sessions > 1) + if sim.is_some() { 2 } else { 0 };
    let plan = CorePlan::choose(busy);
    let _ = writeln!(log, "spinwire demo: {}", plan.reason);
    let _ = writeln!(
        log,
        "spinwire demo: venue {url}{}, {} s, {n_sessions} session{}{}",
        if sim.is_some() {
            " (in-process simulator, TLS with a CA trusted by this process only)"
        } else {
            ""
        },
        opts.seconds,
        if n_sessions == 1 { "" } else { "s" },
        if opts.faults && sim.is_some() {
            ", faults at 25/45/65 %"
        } else {
            ""
        }
    );
    let mut session = SessionConfig {
        credentials,
        heartbeat: Some(Duration::from_secs(if sim.is_some() { 1 } else { 10 })),
        ping_after: Duration::from_secs(2),
        dead_after: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(3),
        setup_timeout: Duration::from_secs(3),
        ..SessionConfig::default()
    };
    if sim.is_some() {
        session.backoff = BackoffConfig {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            budget: 32,
            budget_window: Duration::from_secs(60),
            reset_after: Duration::from_secs(1),
        };
    }
    if quote {
        // The order path: the quoted instruments first (so instrument ids follow the order of
        // `instruments`, as the table below assumes), cancel-on-disconnect, a journal in the
        // run's private directory (flushed at shutdown), a rate limit the simulator allows.
        session.orders = OrdersConfig {
            currency: "BTC".into(),
            instruments: instruments
                .iter()
                .filter(|(_, a)| a.is_some())
                .map(|(n, _)| n.to_string())
                .collect(),
            cancel_on_disconnect: Some(CodScope::Connection),
            rate: OrderRateLimit {
                per_second: 50,
                burst: 100,
            },
            journal: tmp.as_ref().map(|t: &TempDir| JournalConfig {
                capacity: 1 << 16,
                ..JournalConfig::new(t.path().join("orders.journal"))
            }),
            ..OrdersConfig::default()
        };
    }
    let mut dc = DriverConfig::new(url.clone());
    dc.ca_file = ca_file;
    // Latency: the engine records its stages (socket → ring, orders, reconnect downtime) and
    // the strategy its own (ring → popped, wire → popped), all on the driver's clock.
    let hist_cfg = HistogramConfig {
        interval_ns: 500_000_000,
        ..HistogramConfig::default()
    };
    let mut collector = Collector::new(hist_cfg)?;
    // Sessions 1.. take market data only: the same session settings without the order path.
    let md_session = SessionConfig {
        orders: OrdersConfig::default(),
        ..session.clone()
    };
    let mut builder = Engine::builder().session("deribit-0", dc.clone(), session, &channels);
    for i in 1..n_sessions {
        builder = builder.session(
            format!("deribit-{i}"),
            dc.clone(),
            md_session.clone(),
            &channels,
        );
    }
    let mut engine = builder
        .core(plan.engine_core)
        .poll_mode(plan.mode)
        .md_ring(1 << 16)
        .spawn_with_latency(&mut collector)?;
    let ends = engine.strategies.remove(0);
    let md_ends = std::mem::take(&mut engine.strategies);

    // --- strategy thread ---------------------------------------------------------------------
    let clock = ends.clock;
    let recorder = collector.recorder(clock.now_ns())?;
    let live = Arc::new(Live::default());
    let wind_down = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // Instrument ids: the session numbers the subscribed channels' instruments in order.
    let mut table = InstrumentTable::with_capacity(instruments.len())
        .map_err(|e| DemoError::Usage(e.to_string()))?;
    let mut quoted = Vec::new();
    for (name, amount) in &instruments {
        let id = table
            .insert(name)
            .map_err(|e| DemoError::Usage(e.to_string()))?;
        if let (true, Some(amount)) = (quote, amount) {
            quoted.push((id, Fixed::from_int(*amount).unwrap_or(Fixed::ZERO)));
        }
    }
    let md_thread = if md_ends.is_empty() {
        None
    } else {
        let live = live.clone();
        let stop = stop.clone();
        Some(
            std::thread::Builder::new()
                .name("spinwire-md".into())
                .spawn(move || md_loop(md_ends, &live, &stop))
                .map_err(|e| DemoError::Io {
                    path: "market-data thread".into(),
                    source: e,
                })?,
        )
    };
    let strategy_thread = {
        let ctx = StrategyCtx {
            ends,
            recorder,
            clock,
            live: live.clone(),
            wind_down: wind_down.clone(),
            stop: stop.clone(),
            quoted,
            core: plan.strategy_core,
            wait: IdleWait::for_plan(&plan),
        };
        std::thread::Builder::new()
            .name("spinwire-strategy".into())
            .spawn(move || strategy_loop(ctx))
            .map_err(|e| DemoError::Io {
                path: "strategy thread".into(),
                source: e,
            })?
    };

    // --- run: collect, inject, show --------------------------------------------------------
    let base = UNIX_EPOCH + Duration::from_nanos(clock.wall_at_epoch_ns());
    let info = RunInfo::new(run_name.clone())
        .with("command", "spinwire demo")
        .with("seconds", opts.seconds)
        .with(
            "venue",
            if sim.is_some() {
                format!("in-process simulator {url}")
            } else {
                url.clone()
            },
        )
        .with("sim_rate_per_s", if sim.is_some() { opts.rate } else { 0 })
        .with("faults", opts.faults && sim.is_some())
        .with("channels", channels.join(","))
        .with("sessions", n_sessions)
        .with("placement", plan.reason.clone())
        .with("engine_poll_mode", format!("{:?}", plan.mode))
        .with("clock", clock.source().name())
        .with("quoting", quote);
    let mut writer = RunWriter::create_at(&report_dir, info, base)?;
    let mut write_error: Option<ReportError> = None;
    let mut on_interval = |_: usize, h: &StageHistograms| {
        for stage in Stage::ALL {
            let hist = h.histogram(stage);
            if hist.is_empty() || write_error.is_some() {
                continue;
            }
            let start = Duration::from_nanos(h.start_ns());
            let len = Duration::from_nanos(h.end_ns().saturating_sub(h.start_ns()));
            if let Err(e) = writer.write_interval(stage.name(), hist, start, len) {
                write_error = Some(e);
            }
        }
    };

    let t0 = Instant::now();
    let run_for = Duration::from_secs_f64(opts.seconds);
    let fault_plan: [(f64, FaultKind, &'static str); 3] = [
        (0.25, FaultKind::Rst, "rst"),
        (0.45, FaultKind::Gap, "gap"),
        (0.65, FaultKind::Withhold { executed: true }, "withhold"),
    ];
    let mut next_fault = 0;
    let mut faults = Vec::new();
    let mut last_progress = Instant::now();
    let mut last_records = 0u64;
    let mut rate = 0.0f64;
    let mut shown = false;
    let interrupted = || {
        opts.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    };
    while t0.elapsed() < run_for && !engine.control.is_finished() && !interrupted() {
        std::thread::sleep(Duration::from_millis(20));
        collector.poll(&mut on_interval);
        let elapsed = t0.elapsed();
        if let (true, Some(sim)) = (opts.faults, sim.as_ref()) {
            while next_fault < fault_plan.len()
                && elapsed.as_secs_f64() >= fault_plan[next_fault].0 * opts.seconds
            {
                let (_, kind, name) = &fault_plan[next_fault];
                let n = sim.inject(Target::All, kind.clone());
                faults.push((elapsed.as_secs_f64(), *name));
                if opts.progress {
                    let _ = write!(log, "\r\x1b[2K");
                }
                let _ = writeln!(
                    log,
                    "spinwire demo: {:5.2}s injected {name} ({n} connection{})",
                    elapsed.as_secs_f64(),
                    if n == 1 { "" } else { "s" }
                );
                next_fault += 1;
            }
        }
        if opts.progress && last_progress.elapsed() >= Duration::from_millis(250) {
            let records =
                live.records.load(Ordering::Relaxed) + live.md_records.load(Ordering::Relaxed);
            let dt = last_progress.elapsed().as_secs_f64();
            rate = (records - last_records) as f64 / dt;
            last_records = records;
            last_progress = Instant::now();
            let w2s = collector.totals().histogram(Stage::WireToStrategy);
            let _ = write!(
                log,
                "\r\x1b[2K{:5.1}s {:>9.0} msg/s  wire->strategy p50 {} p99 {} p99.9 {}  \
                 reconnects {}  orders live {} in flight {}  ring drops {}",
                elapsed.as_secs_f64(),
                rate,
                fmt_ns(w2s.value_at_quantile(0.5)),
                fmt_ns(w2s.value_at_quantile(0.99)),
                fmt_ns(w2s.value_at_quantile(0.999)),
                live.reconnects.load(Ordering::Relaxed)
                    + live.md_reconnects.load(Ordering::Relaxed),
                live.orders_live.load(Ordering::Relaxed),
                live.orders_in_flight.load(Ordering::Relaxed),
                live.ring_drops.load(Ordering::Relaxed)
                    + live.md_ring_drops.load(Ordering::Relaxed),
            );
            let _ = log.flush();
            shown = true;
        }
    }
    let _ = rate;
    if shown {
        let _ = writeln!(log);
    }
    let seconds = t0.elapsed().as_secs_f64();

    // --- wind down: cancel quotes, log out, stop the strategy --------------------------------
    wind_down.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    collector.poll(&mut on_interval);
    let stats = engine.control.shutdown();
    stop.store(true, Ordering::Relaxed);
    let strategy = strategy_thread
        .join()
        .map_err(|_| DemoError::StrategyPanicked)?;
    let md_counts = match md_thread {
        Some(t) => t.join().map_err(|_| DemoError::StrategyPanicked)?,
        None => Vec::new(),
    };
    collector.poll(&mut on_interval);
    if let Some(sim) = sim.take() {
        drop(sim.shutdown());
    }
    drop(tmp);
    let stats = stats?;
    if let Some(e) = write_error {
        return Err(e.into());
    }

    // --- report and summary ----------------------------------------------------------------
    let totals = collector.totals();
    let mut stages = Vec::new();
    let mut latency = Vec::new();
    for stage in Stage::ALL {
        let h = totals.histogram(stage);
        if h.is_empty() && stage != Stage::WireToStrategy {
            continue;
        }
        stages.push(
            StageData::new(stage.name(), h)
                .description(stage.description())
                .out_of_range(totals.out_of_range(stage).total()),
        );
        latency.push((
            stage,
            StagePercentiles {
                count: h.len(),
                p50: h.value_at_quantile(0.5),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
            },
        ));
    }
    writer.finish(&stages)?;
    let session = stats.sessions.first();
    let sessions: Vec<SessionSummary> = stats
        .sessions
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (records, reconnects) = if i == 0 {
                (strategy.records, strategy.reconnects)
            } else {
                md_counts
                    .get(i - 1)
                    .map_or((0, 0), |c| (c.records, c.reconnects))
            };
            SessionSummary {
                session: i,
                name: s.name.clone(),
                quoting: i == 0 && quote,
                messages: s.session.messages,
                records,
                reconnects,
                ring_drops: s.driver.records_dropped,
            }
        })
        .collect();
    let summary = DemoSummary {
        run: run_name,
        seconds,
        messages: sessions.iter().map(|s| s.messages).sum(),
        records: sessions.iter().map(|s| s.records).sum(),
        reconnects: sessions.iter().map(|s| s.reconnects).sum(),
        ring_drops: sessions.iter().map(|s| s.ring_drops).sum(),
        sessions,
        strategy,
        orders: session.map_or_else(OrderStats::default, |s| s.orders),
        faults,
        latency,
        report_dir: report_dir.clone(),
        placement: plan.reason.clone(),
        dedicated: plan.dedicated,
    };
    print_summary(out, &summary);
    if let Some(path) = &opts.summary_json {
        let text = serde_json::to_string_pretty(&summary.to_json()).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(|source| DemoError::Io {
            path: path.clone(),
            source,
        })?;
    }
    // The summary and report are written; now the run's verdict: a session that never went
    // live, or failed for good, fails the run (a script must not read "messages 0" as success).
    if let Some((i, s)) = stats
        .sessions
        .iter()
        .enumerate()
        .find(|(_, s)| s.state == spinwire_engine::session::SessionState::Failed)
    {
        let why = match (s.driver.fatal, &s.last_error) {
            (Some((FatalReason::InvalidCredentials, code)), _) => format!(
                "the venue refused the credentials (error {code}): check SPINWIRE_CLIENT_ID and \
                 SPINWIRE_CLIENT_SECRET"
            ),
            (Some((reason, code)), _) => format!("{reason:?} (error {code})"),
            (None, Some(e)) => e.clone(),
            (None, None) => "a fatal answer from the venue".to_owned(),
        };
        return Err(DemoError::Failed(format!(
            "session {i} failed for good on {url}: {why}"
        )));
    }
    if let Some(line) = crate::tap::never_live_line(&stats.sessions, &url) {
        return Err(DemoError::Failed(line));
    }
    Ok(summary)
}

/// What the strategy thread owns.
struct StrategyCtx {
    ends: StrategyEnds,
    recorder: Recorder,
    clock: Clock,
    live: Arc<Live>,
    wind_down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    quoted: Vec<(InstrumentId, Fixed)>,
    core: Option<usize>,
    wait: IdleWait,
}

/// The strategy thread: pops the rings, runs the strategy, records its latency stages.
fn strategy_loop(ctx: StrategyCtx) -> StrategyCounters {
    let StrategyCtx {
        mut ends,
        mut recorder,
        clock,
        live,
        wind_down,
        stop,
        quoted,
        core,
        mut wait,
    } = ctx;
    if let Some(c) = core {
        // Best effort: the plan only names cores of this process's CPU set.
        let _ = spinwire_engine::sys::pin_current_thread(c);
    }
    let mut strategy = QuotingStrategy::new(QuoteConfig::default());
    for (id, amount) in &quoted {
        strategy.quote(*id, *amount);
    }
    let StrategyEnds {
        md,
        session_events,
        order_events,
        orders,
        push_times,
        ..
    } = &mut ends;
    let mut push = |r| orders.push(r).is_ok();
    let mut winding = false;
    loop {
        let mut busy = false;
        while let Some(e) = order_events.pop() {
            busy = true;
            strategy.on_order_event(&e);
        }
        while let Some(e) = session_events.pop() {
            busy = true;
            strategy.on_session_event(&e);
        }
        let now = clock.now_ns();
        let mut n = 0;
        while let Some(r) = md.pop() {
            if let Some((pushed, popped)) = push_times.as_mut().and_then(|p| p.popped()) {
                recorder.record_between(Stage::RingToStrategy, pushed, popped);
            }
            let sent = r.sw_send_ns();
            if sent != 0 {
                recorder.record_between(Stage::WireToStrategy, sent, realtime_ns());
            }
            strategy.on_record(now, &r, &mut push);
            n += 1;
            if n == 256 {
                break;
            }
        }
        busy |= n > 0;
        if !winding && wind_down.load(Ordering::Relaxed) {
            winding = true;
            if !quoted.is_empty() {
                strategy.stop_quoting();
                strategy.cancel_all(&mut push);
            }
        }
        recorder.maybe_rotate(now);
        if busy {
            let c = strategy.counters();
            live.records.store(c.records, Ordering::Relaxed);
            live.reconnects.store(c.reconnects, Ordering::Relaxed);
            live.ring_drops.store(c.ring_drops, Ordering::Relaxed);
            live.orders_live
                .store(strategy.live_orders() as u64, Ordering::Relaxed);
            live.orders_in_flight
                .store(strategy.in_flight() as u64, Ordering::Relaxed);
            wait.reset();
        } else if stop.load(Ordering::Relaxed) {
            break;
        } else {
            wait.idle();
        }
    }
    recorder.finish(clock.now_ns());
    *strategy.counters()
}

/// What the market-data thread counted for one session.
#[derive(Debug, Clone, Copy, Default)]
struct MdCounts {
    records: u64,
    reconnects: u64,
    ring_drops: u64,
}

/// The market-data thread of sessions 1..: pops every ring of every session in turn (records
/// in bounded batches, so no session starves the others), counts records, reconnects and
/// ring drops the way the strategy does, and ends once `stop` is raised and the rings are
/// empty. Shares cores with the rest, so it waits with [`IdleWait::shared`].
fn md_loop(mut sessions: Vec<StrategyEnds>, live: &Live, stop: &AtomicBool) -> Vec<MdCounts> {
    use spinwire_engine::session::EventKind;
    let mut counts = vec![MdCounts::default(); sessions.len()];
    let mut wait = IdleWait::shared();
    loop {
        let mut busy = false;
        for (ends, c) in sessions.iter_mut().zip(counts.iter_mut()) {
            while ends.order_events.pop().is_some() {
                busy = true;
            }
            while let Some(e) = ends.session_events.pop() {
                busy = true;
                match e.kind {
                    EventKind::RecordsDropped { records, .. } => {
                        c.ring_drops += u64::from(records);
                    }
                    EventKind::Live { downtime_ns } if downtime_ns > 0 => c.reconnects += 1,
                    _ => {}
                }
            }
            let mut n = 0;
            while n < 256 && ends.md.pop().is_some() {
                // Keeps the push-time stamps in step with the records.
                if let Some(p) = ends.push_times.as_mut() {
                    let _ = p.popped();
                }
                n += 1;
            }
            c.records += n;
            busy |= n > 0;
        }
        if busy {
            let sum = |f: fn(&MdCounts) -> u64| counts.iter().map(f).sum::<u64>();
            live.md_records.store(sum(|c| c.records), Ordering::Relaxed);
            live.md_reconnects
                .store(sum(|c| c.reconnects), Ordering::Relaxed);
            live.md_ring_drops
                .store(sum(|c| c.ring_drops), Ordering::Relaxed);
            wait.reset();
        } else if stop.load(Ordering::Relaxed) {
            break;
        } else {
            wait.idle();
        }
    }
    counts
}

fn print_summary(out: &mut impl Write, s: &DemoSummary) {
    let c = &s.orders;
    let _ = writeln!(out, "spinwire demo: {} ({:.1} s)", s.run, s.seconds);
    let _ = writeln!(
        out,
        "  messages {}  records {} ({:.0}/s)  reconnects {}  ring drops {}",
        s.messages,
        s.records,
        s.records as f64 / s.seconds.max(1e-9),
        s.reconnects,
        s.ring_drops
    );
    if s.sessions.len() > 1 {
        for x in &s.sessions {
            let _ = writeln!(
                out,
                "    session {} ({}, {}): messages {}  records {}  reconnects {}  ring drops {}",
                x.session,
                x.name,
                if x.quoting { "quoting" } else { "market data" },
                x.messages,
                x.records,
                x.reconnects,
                x.ring_drops
            );
        }
    }
    let _ = writeln!(
        out,
        "  orders: sent {} accepted {} rejected {} filled {} cancelled {} expired {} resent {} \
         (requotes {})",
        s.strategy.sent,
        c.accepted,
        c.rejected + c.refused,
        c.filled,
        c.cancelled,
        c.expired,
        c.resent,
        s.strategy.requotes
    );
    if !s.faults.is_empty() {
        let f: Vec<String> = s
            .faults
            .iter()
            .map(|(t, n)| format!("{n}@{t:.2}s"))
            .collect();
        let _ = writeln!(out, "  faults: {}", f.join(" "));
    }
    let _ = writeln!(
        out,
        "  {:<20} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "stage", "count", "p50", "p99", "p99.9", "max"
    );
    for (stage, p) in &s.latency {
        let _ = writeln!(
            out,
            "  {:<20} {:>9} {:>10} {:>10} {:>10} {:>10}",
            stage.name(),
            p.count,
            fmt_ns(p.p50),
            fmt_ns(p.p99),
            fmt_ns(p.p999),
            fmt_ns(p.max)
        );
    }
    let _ = writeln!(out, "  placement: {}", s.placement);
    let _ = writeln!(
        out,
        "  report: {}",
        s.report_dir
            .join(spinwire_latency_reports::INDEX_FILE)
            .display()
    );
}

/// `1.23µs`, `456ns`, `7.89ms`, `1.20s`.
fn fmt_ns(v: u64) -> String {
    match v {
        0..=999 => format!("{v}ns"),
        1_000..=999_999 => format!("{:.2}µs", v as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2}ms", v as f64 / 1e6),
        _ => format!("{:.2}s", v as f64 / 1e9),
    }
}

/// `demo-YYYYMMDD-HHMMSS` (UTC).
fn run_name(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "demo-{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Credentials for the in-process simulator: made up for this run, never written anywhere.
fn made_up_credentials() -> (String, String) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let x = t ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    let mix = |v: u64| {
        let v = (v ^ (v >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let v = (v ^ (v >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        v ^ (v >> 31)
    };
    (
        format!("demo-{:08x}", mix(x) as u32),
        format!("{:016x}{:016x}", mix(x ^ 1), mix(x ^ 2)),
    )
}

/// A private temporary directory (mode 700), removed on drop: holds the run's CA and server key.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, DemoError> {
        use std::os::unix::fs::DirBuilderExt;
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("spinwire-demo-{}-{t}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| DemoError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_are_utc_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_763_787_845); // 2025-11-22 05:04:05 UTC
        assert_eq!(run_name(t), "demo-20251122-050405");
        assert_eq!(run_name(UNIX_EPOCH), "demo-19700101-000000");
    }

    #[test]
    fn durations_print_in_their_unit() {
        assert_eq!(fmt_ns(999), "999ns");
        assert_eq!(fmt_ns(12_340), "12.34µs");
        assert_eq!(fmt_ns(5_000_000), "5.00ms");
        assert_eq!(fmt_ns(2_500_000_000), "2.50s");
    }

    #[test]
    fn bad_seconds_are_a_usage_error() {
        let opts = DemoOptions {
            seconds: 0.0,
            ..DemoOptions::default()
        };
        let e = run(&opts, &mut Vec::new(), &mut Vec::new()).unwrap_err();
        assert!(matches!(e, DemoError::Usage(_)), "{e}");
    }
}
