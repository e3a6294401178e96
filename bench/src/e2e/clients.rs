//! The three clients and their strategy threads.
//!
//! - [`Client::Spinwire`]: a [`Driver`] (one session, its reactor in the chosen [`Mode`]) on the
//!   I/O core, pushing decoded [`MdRecord`]s onto its MarketData ring; the strategy pops them.
//! - [`Client::Tokio`]: tokio-tungstenite on a current-thread tokio runtime on the I/O core,
//!   each text message deserialized by serde_json into owned structs (`#[derive(Deserialize)]`,
//!   the usual way) and sent to the strategy over `std::sync::mpsc` (what a typical user picks:
//!   the standard library's channel, unbounded; since Rust 1.67 it is crossbeam's
//!   implementation). The runtime waits in epoll, as tokio does.
//! - [`Client::Floor`]: a bare mio read loop over plain TCP that copies the raw bytes (one
//!   message per line) into a spinwire `u8` ring; the strategy finds each line's end and reads
//!   `sw_send_ns` from its last digits ([`trailing_send_ns`]). No TLS, no WebSocket, no JSON.
//!
//! Every strategy waits the same way ([`Mode`]: spin, or yield when empty), counts the stream
//! messages (snapshots excluded) and records, per message, wire-to-strategy latency
//! = `realtime_ns()` when the message's last part is popped − `sw_send_ns`.

use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use spinwire_engine::latency::realtime_ns;
use spinwire_engine::md::{BookFlags, MdRecord};
use spinwire_engine::reactor::PollMode;
use spinwire_engine::session::driver::{Driver, DriverConfig};
use spinwire_engine::session::SessionConfig;

use super::feeder::{FeedConfig, FeedShared, FeedStats, Feeder, Pace, Wire};
use super::stream::{channels, trailing_send_ns};
use super::E2eError;

/// Which client receives the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// spinwire's session driver and MarketData ring.
    Spinwire,
    /// tokio-tungstenite + serde_json + `std::sync::mpsc`.
    Tokio,
    /// Bare mio read loop into a byte ring (plain TCP only).
    Floor,
}

impl Client {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Client::Spinwire => "spinwire",
            Client::Tokio => "tokio-tungstenite",
            Client::Floor => "floor (mio+ring)",
        }
    }
}

/// How the I/O thread and the strategy wait for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Busy-spin (engine: [`PollMode::BusySpin`]; strategy: `spin_loop`). Needs a core each.
    Spin,
    /// Spin, yielding the core when nothing was ready (engine: [`PollMode::SpinYield`]).
    Yield,
    /// The engine waits in epoll ([`PollMode::Blocking`] with no cap: until readiness or the
    /// session's next deadline, as the floor and tokio wait until readiness); the strategy
    /// yields when empty.
    Block,
}

impl Mode {
    /// `spin`, `yield` or `block`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Spin => "spin",
            Mode::Yield => "yield",
            Mode::Block => "block",
        }
    }

    fn poll_mode(self) -> PollMode {
        match self {
            Mode::Spin => PollMode::BusySpin,
            Mode::Yield => PollMode::SpinYield,
            Mode::Block => PollMode::Blocking(None),
        }
    }

    #[inline]
    fn idle(self) {
        match self {
            Mode::Spin => std::hint::spin_loop(),
            Mode::Yield | Mode::Block => thread::yield_now(),
        }
    }
}

/// One run: a feeder and one client.
#[derive(Debug, Clone, Copy)]
pub struct RunSpec {
    /// The client.
    pub client: Client,
    /// `wss` instead of `ws` (ignored by the floor, which is always plain TCP).
    pub tls: bool,
    /// Feeder pace.
    pub pace: Pace,
    /// Stream messages to send.
    pub messages: u64,
    /// Messages at the start left out of the histogram.
    pub warmup: u64,
    /// Waiting mode of the I/O and strategy threads.
    pub mode: Mode,
    /// Pin the I/O thread to core 0 and the strategy to core 1 (the feeder is not pinned).
    pub pin: bool,
    /// Seed of the stream.
    pub seed: u64,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The client.
    pub client: Client,
    /// The wire it was fed over.
    pub wire: Wire,
    /// Waiting mode.
    pub mode: Mode,
    /// Wire-to-strategy latency of the messages after the warm-up, ns.
    pub hist: Histogram<u64>,
    /// Stream messages the strategy got.
    pub received: u64,
    /// What the feeder did.
    pub feed: FeedStats,
    /// Records (spinwire) or byte chunks (floor) the I/O thread could not push: full ring.
    pub ring_drops: u64,
    /// Book gaps the session saw (spinwire only).
    pub gaps: u64,
    /// Messages the client could not decode.
    pub malformed: u64,
    /// Nanoseconds from the first message's `sw_send_ns` to the last message's pop.
    pub span_ns: u64,
    /// What the scheduler did to the run's threads (Linux `schedstat`; zero elsewhere): where
    /// the tail comes from on a shared machine.
    pub sched: RunSched,
}

/// Scheduler counters of one thread over a run, from `/proc/thread-self/schedstat` and
/// `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sched {
    /// CPU time, ns.
    pub cpu_ns: u64,
    /// Time runnable but waiting for a CPU (another thread had it), ns.
    pub wait_ns: u64,
    /// Times the thread was switched out while it still wanted to run (preempted).
    pub preempted: u64,
}

impl Sched {
    /// The counters of thread `tid` of this process now (zero when unavailable).
    fn of(tid: &str) -> Sched {
        let read = |file: &str| std::fs::read_to_string(format!("/proc/self/task/{tid}/{file}"));
        let mut s = Sched::default();
        if let Ok(text) = read("schedstat") {
            let mut f = text
                .split_whitespace()
                .map(|v| v.parse::<u64>().unwrap_or(0));
            s.cpu_ns = f.next().unwrap_or(0);
            s.wait_ns = f.next().unwrap_or(0);
        }
        if let Ok(text) = read("status") {
            s.preempted = text
                .lines()
                .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
        }
        s
    }

    /// The counters of this process's live thread named `name` (the first one), if any.
    fn of_named(name: &str) -> Option<Sched> {
        // The kernel keeps the first 15 bytes of a thread's name.
        let wanted = &name.as_bytes()[..name.len().min(15)];
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        for task in tasks.flatten() {
            let tid = task.file_name();
            let Some(tid) = tid.to_str() else { continue };
            // A thread may end while we look: skip it.
            let Ok(comm) = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")) else {
                continue;
            };
            if comm.trim_end().as_bytes() == wanted {
                return Some(Sched::of(tid));
            }
        }
        None
    }

    /// The calling thread's counters.
    fn current() -> Sched {
        Sched::of(&gettid().to_string())
    }

    /// `self - earlier`, counter by counter.
    fn since(self, earlier: Sched) -> Sched {
        Sched {
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            wait_ns: self.wait_ns.saturating_sub(earlier.wait_ns),
            preempted: self.preempted.saturating_sub(earlier.preempted),
        }
    }
}

/// The calling thread's id.
fn gettid() -> libc::pid_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Scheduler counters of the run's three threads, from the client's start to the strategy's
/// last message (the I/O and feeder threads are sampled by the main thread, the strategy by
/// itself).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSched {
    /// The client's I/O thread (spinwire's session driver, the tokio runtime, the floor loop).
    pub io: Sched,
    /// The strategy thread.
    pub strategy: Sched,
    /// The feeder (server) thread.
    pub feeder: Sched,
}

/// Samples the I/O and feeder threads by name at the start of a run and diffs at its end.
struct SchedWatch {
    io_name: &'static str,
    io: Sched,
    feeder: Sched,
}

impl SchedWatch {
    fn start(io_name: &'static str) -> SchedWatch {
        SchedWatch {
            io_name,
            io: Sched::of_named(io_name).unwrap_or_default(),
            feeder: Sched::of_named(super::feeder::FEEDER_THREAD).unwrap_or_default(),
        }
    }

    fn finish(self, strategy: Sched) -> RunSched {
        RunSched {
            io: Sched::of_named(self.io_name)
                .unwrap_or_default()
                .since(self.io),
            strategy,
            feeder: Sched::of_named(super::feeder::FEEDER_THREAD)
                .unwrap_or_default()
                .since(self.feeder),
        }
    }
}

impl RunResult {
    /// Stream messages lost on the way (sent − received).
    pub fn lost(&self) -> u64 {
        self.feed.sent.saturating_sub(self.received)
    }

    /// Messages per second through the client, first send to last pop.
    pub fn msgs_per_sec(&self) -> f64 {
        if self.span_ns == 0 {
            return 0.0;
        }
        self.received as f64 * 1e9 / self.span_ns as f64
    }
}

/// The strategy side's counters and histogram.
struct Probe {
    hist: Histogram<u64>,
    /// The strategy thread's scheduler counters over its loop.
    sched: Sched,
    seen: u64,
    warmup: u64,
    first_send: u64,
    last_pop: u64,
}

impl Probe {
    fn new(warmup: u64) -> Probe {
        Probe {
            // 1 ns .. 100 s, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid HDR bounds"),
            sched: Sched::default(),
            seen: 0,
            warmup,
            first_send: 0,
            last_pop: 0,
        }
    }

    /// A stream message was popped; it was sent at `send_ns`.
    #[inline]
    fn message(&mut self, send_ns: u64) {
        let now = realtime_ns();
        if self.seen == 0 {
            self.first_send = send_ns;
        }
        self.seen += 1;
        self.last_pop = now;
        if self.seen > self.warmup {
            self.hist
                .saturating_record(now.saturating_sub(send_ns).max(1));
        }
    }

    fn span_ns(&self) -> u64 {
        self.last_pop.saturating_sub(self.first_send)
    }
}

/// Runs the strategy loop: `poll` handles what is there and returns how many things it handled;
/// ends once `expected` messages were seen, or the feeder is done and nothing came for 2 s (a
/// client starved of CPU on a busy machine may still be reading the socket's backlog).
fn strategy_loop(
    probe: &mut Probe,
    expected: u64,
    shared: &FeedShared,
    mode: Mode,
    mut poll: impl FnMut(&mut Probe) -> usize,
) {
    let mut empty = 0u32;
    let mut idle_since: Option<Instant> = None;
    while probe.seen < expected {
        if poll(probe) > 0 {
            empty = 0;
            idle_since = None;
            continue;
        }
        empty = empty.wrapping_add(1);
        if empty % 1024 == 0 && shared.done.load(Ordering::Acquire) {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        mode.idle();
    }
}

/// Pins the calling thread to `core` when `pin` is set.
fn pin_to(pin: bool, core: usize) {
    if pin {
        // A failed pin (fewer cores) only costs precision; the run stays valid.
        let _ = core_affinity::set_for_current(core_affinity::CoreId { id: core });
    }
}

/// Runs `f` on a thread pinned to `core` (threads it spawns inherit the pin) and returns its
/// result.
fn on_core<T: Send + 'static>(
    pin: bool,
    core: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, E2eError> {
    thread::Builder::new()
        .name("e2e-launch".into())
        .spawn(move || {
            pin_to(pin, core);
            f()
        })
        .map_err(|e| E2eError::Setup(format!("spawn: {e}")))?
        .join()
        .map_err(|_| E2eError::Setup("launcher thread panicked".into()))
}

fn spawn_strategy<T: Send + 'static>(
    spec: &RunSpec,
    f: impl FnOnce(&mut Probe) -> T + Send + 'static,
) -> Result<thread::JoinHandle<(Probe, T)>, E2eError> {
    let (pin, warmup) = (spec.pin, spec.warmup);
    thread::Builder::new()
        .name("e2e-strategy".into())
        .spawn(move || {
            pin_to(pin, 1);
            let mut probe = Probe::new(warmup);
            let before = Sched::current();
            let t = f(&mut probe);
            probe.sched = Sched::current().since(before);
            (probe, t)
        })
        .map_err(|e| E2eError::Setup(format!("spawn strategy: {e}")))
}

/// Runs one feeder and one client to the end and returns what was measured.
///
/// # Errors
/// [`E2eError`] when a thread, a socket or a handshake fails.
pub fn run(spec: &RunSpec) -> Result<RunResult, E2eError> {
    let wire = match (spec.client, spec.tls) {
        (Client::Floor, _) => Wire::RawTcp,
        (_, true) => Wire::Wss,
        (_, false) => Wire::Ws,
    };
    let feeder = Feeder::start(FeedConfig {
        wire,
        pace: spec.pace,
        messages: spec.messages,
        seed: spec.seed,
    })?;
    let (probe, sched, ring_drops, gaps, malformed) = match spec.client {
        Client::Spinwire => run_spinwire(spec, &feeder)?,
        Client::Tokio => run_tokio(spec, &feeder)?,
        Client::Floor => run_floor(spec, &feeder)?,
    };
    let feed = feeder.finish()?;
    Ok(RunResult {
        client: spec.client,
        wire,
        mode: spec.mode,
        span_ns: probe.span_ns(),
        sched,
        received: probe.seen,
        hist: probe.hist,
        feed,
        ring_drops,
        gaps,
        malformed,
    })
}

type Outcome = (Probe, RunSched, u64, u64, u64);

fn run_spinwire(spec: &RunSpec, feeder: &Feeder) -> Result<Outcome, E2eError> {
    let mut dc = DriverConfig::new(feeder.url());
    dc.ca_file = feeder.ca_file().cloned();
    dc.mode = spec.mode.poll_mode();
    // The max pace keeps the socket full: a deeper ring rides out the strategy losing its core
    // for a few ms (a shared machine) instead of dropping.
    dc.md_ring = match spec.pace {
        Pace::Max => 1 << 20,
        Pace::Rate(_) => 1 << 16,
    };
    let sc = SessionConfig {
        heartbeat: None,
        ping_after: Duration::from_secs(60),
        ..SessionConfig::default()
    };
    let handle = on_core(spec.pin, 0, move || Driver::spawn(dc, sc, &channels()))?
        .map_err(|e| E2eError::Client(format!("spinwire driver: {e}")))?;
    let mut md = handle.md;
    let shared = feeder.shared().clone();
    let (expected, mode) = (spec.messages, spec.mode);
    let watch = SchedWatch::start("spinwire-session");
    let strategy = spawn_strategy(spec, move |probe| {
        // Batches of up to 256 records, one atomic store per batch.
        let mut batch = [MdRecord::default(); 256];
        strategy_loop(probe, expected, &shared, mode, |p| {
            let n = md.pop_into(&mut batch);
            for r in &batch[..n] {
                if !r.is_last() {
                    continue;
                }
                if let MdRecord::Book(b) = r {
                    if b.flags.contains(BookFlags::SNAPSHOT) {
                        continue;
                    }
                }
                p.message(r.sw_send_ns());
            }
            n
        });
    })?;
    let (probe, ()) = strategy
        .join()
        .map_err(|_| E2eError::Client("strategy thread panicked".into()))?;
    let sched = watch.finish(probe.sched);
    handle.stop.store(true, Ordering::Relaxed);
    feeder.shared().stop.store(true, Ordering::Relaxed);
    let (dstats, sstats) = handle
        .thread
        .join()
        .map_err(|_| E2eError::Client("spinwire driver thread panicked".into()))?
        .map_err(|e| E2eError::Client(format!("spinwire driver: {e}")))?;
    Ok((
        probe,
        sched,
        dstats.records_dropped,
        sstats.gaps,
        sstats.malformed,
    ))
}

/// A book notification's `data`, deserialized the usual way.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // Fields a real strategy would read; decoding them is the cost measured.
struct BookData {
    #[serde(rename = "type")]
    kind: String,
    timestamp: u64,
    prev_change_id: Option<u64>,
    instrument_name: String,
    change_id: u64,
    bids: Vec<(String, f64, f64)>,
    asks: Vec<(String, f64, f64)>,
    sw_send_ns: u64,
}

/// One trade of a trades notification.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // As above.
struct TradeData {
    trade_seq: u64,
    trade_id: String,
    timestamp: u64,
    tick_direction: i8,
    price: f64,
    mark_price: f64,
    instrument_name: String,
    index_price: f64,
    direction: String,
    amount: f64,
    sw_send_ns: u64,
}

/// What the tokio client hands to its strategy.
#[derive(Debug)]
enum MdMsg {
    Book(BookData),
    Trades(Vec<TradeData>),
}

/// The envelope: `params.channel` says how to read `params.data`.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    params: Option<Params<'a>>,
}

#[derive(Deserialize)]
struct Params<'a> {
    channel: &'a str,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

/// Deserializes one notification; `Ok(None)` for anything else (responses).
fn parse_notification(text: &str) -> Result<Option<MdMsg>, serde_json::Error> {
    let env: Envelope<'_> = serde_json::from_str(text)?;
    let Some(p) = env.params else {
        return Ok(None);
    };
    if p.channel.starts_with("book.") {
        Ok(Some(MdMsg::Book(serde_json::from_str(p.data.get())?)))
    } else if p.channel.starts_with("trades.") {
        Ok(Some(MdMsg::Trades(serde_json::from_str(p.data.get())?)))
    } else {
        Ok(None)
    }
}

fn client_tls(ca: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, E2eError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .map_err(|e| E2eError::Setup(format!("{}: {e}", ca.display())))?
    {
        let cert = cert.map_err(|e| E2eError::Setup(format!("{}: {e}", ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| E2eError::Setup(format!("{}: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| E2eError::Setup(format!("rustls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The tokio side: connect, subscribe, read, deserialize, send. Returns the messages it could
/// not deserialize.
async fn tokio_client(
    url: String,
    ca: Option<std::path::PathBuf>,
    tx: mpsc::Sender<MdMsg>,
) -> Result<u64, E2eError> {
    use tokio_tungstenite::tungstenite::Message;
    let connector = match &ca {
        Some(ca) => Some(tokio_tungstenite::Connector::Rustls(client_tls(ca)?)),
        None => None,
    };
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(&url, None, true, connector)
        .await
        .map_err(|e| E2eError::Client(format!("tokio-tungstenite connect {url}: {e}")))?;
    let (mut write, mut read) = ws.split();
    let sub = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "public/subscribe",
        "params": { "channels": channels() },
    });
    write
        .send(Message::text(sub.to_string()))
        .await
        .map_err(|e| E2eError::Client(format!("subscribe: {e}")))?;
    let mut malformed = 0;
    while let Some(msg) = read.next().await {
        match msg {
            Ok(Message::Text(t)) => match parse_notification(t.as_str()) {
                Ok(Some(m)) => {
                    if tx.send(m).is_err() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(_) => malformed += 1,
            },
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            // The feeder ends the run by closing: a reset after the close is not an error.
            Err(_) => break,
        }
    }
    Ok(malformed)
}

fn run_tokio(spec: &RunSpec, feeder: &Feeder) -> Result<Outcome, E2eError> {
    let (url, ca) = (feeder.url(), feeder.ca_file().cloned());
    let (tx, rx) = mpsc::channel::<MdMsg>();
    let pin = spec.pin;
    let io = thread::Builder::new()
        .name("e2e-tokio".into())
        .spawn(move || {
            pin_to(pin, 0);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|e| E2eError::Setup(format!("tokio runtime: {e}")))?;
            rt.block_on(tokio_client(url, ca, tx))
        })
        .map_err(|e| E2eError::Setup(format!("spawn tokio thread: {e}")))?;
    let shared = feeder.shared().clone();
    let (expected, mode) = (spec.messages, spec.mode);
    let watch = SchedWatch::start("e2e-tokio");
    let strategy = spawn_strategy(spec, move |probe| {
        strategy_loop(probe, expected, &shared, mode, |p| {
            let mut n = 0;
            while let Ok(m) = rx.try_recv() {
                n += 1;
                match m {
                    MdMsg::Book(b) if b.kind == "snapshot" => {}
                    MdMsg::Book(b) => p.message(b.sw_send_ns),
                    MdMsg::Trades(t) => {
                        if let Some(last) = t.last() {
                            p.message(last.sw_send_ns);
                        }
                    }
                }
            }
            n
        });
    })?;
    let (probe, ()) = strategy
        .join()
        .map_err(|_| E2eError::Client("strategy thread panicked".into()))?;
    let sched = watch.finish(probe.sched);
    feeder.shared().stop.store(true, Ordering::Relaxed);
    let malformed = io
        .join()
        .map_err(|_| E2eError::Client("tokio thread panicked".into()))??;
    Ok((probe, sched, 0, 0, malformed))
}

fn run_floor(spec: &RunSpec, feeder: &Feeder) -> Result<Outcome, E2eError> {
    let (mut tx, mut rx) = spinwire_ringbuf::channel::<u8>(1 << 22);
    let (addr, pin, mode) = (feeder.addr(), spec.pin, spec.mode);
    let io = thread::Builder::new()
        .name("e2e-floor".into())
        .spawn(move || -> Result<u64, E2eError> {
            pin_to(pin, 0);
            let err = |op: &str, e: io::Error| E2eError::Client(format!("floor {op}: {e}"));
            let sock = std::net::TcpStream::connect(addr).map_err(|e| err("connect", e))?;
            sock.set_nodelay(true).map_err(|e| err("nodelay", e))?;
            sock.set_nonblocking(true)
                .map_err(|e| err("nonblocking", e))?;
            let mut sock = mio::net::TcpStream::from_std(sock);
            let mut poll = mio::Poll::new().map_err(|e| err("epoll", e))?;
            poll.registry()
                .register(&mut sock, mio::Token(0), mio::Interest::READABLE)
                .map_err(|e| err("register", e))?;
            let mut events = mio::Events::with_capacity(8);
            let timeout = match mode {
                Mode::Block => None,
                _ => Some(Duration::ZERO),
            };
            let mut buf = vec![0u8; 64 * 1024];
            let mut full_waits = 0u64;
            loop {
                poll.poll(&mut events, timeout)
                    .map_err(|e| err("poll", e))?;
                // Read until WouldBlock whether or not an event came (edge-triggered).
                loop {
                    match sock.read(&mut buf) {
                        Ok(0) => return Ok(full_waits),
                        Ok(n) => {
                            let mut done = 0;
                            while done < n {
                                let k = tx.push_slice(&buf[done..n]);
                                if k == 0 {
                                    // The floor never drops bytes: lines would break.
                                    full_waits += 1;
                                    std::hint::spin_loop();
                                }
                                done += k;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                            return Ok(full_waits)
                        }
                        Err(e) => return Err(err("read", e)),
                    }
                }
                if mode == Mode::Yield && events.is_empty() {
                    thread::yield_now();
                }
            }
        })
        .map_err(|e| E2eError::Setup(format!("spawn floor thread: {e}")))?;
    let shared = feeder.shared().clone();
    let expected = spec.messages;
    let watch = SchedWatch::start("e2e-floor");
    let strategy = spawn_strategy(spec, move |probe| {
        let mut chunk = vec![0u8; 64 * 1024];
        // The last bytes of a line that continues in the next chunk.
        let mut tail = [0u8; 64];
        let mut tail_len = 0usize;
        let mut bad = 0u64;
        strategy_loop(probe, expected, &shared, mode, |p| {
            let n = rx.pop_into(&mut chunk);
            let data = &chunk[..n];
            let mut start = 0;
            for pos in memchr::memchr_iter(b'\n', data) {
                let ns = if start == 0 && tail_len > 0 {
                    let mut joined = [0u8; 128];
                    let take = pos.min(64);
                    joined[..tail_len].copy_from_slice(&tail[..tail_len]);
                    joined[tail_len..tail_len + take].copy_from_slice(&data[pos - take..pos]);
                    trailing_send_ns(&joined[..tail_len + take])
                } else {
                    trailing_send_ns(&data[start..pos])
                };
                tail_len = 0;
                match ns {
                    Some(ns) => p.message(ns),
                    None => bad += 1,
                }
                start = pos + 1;
            }
            if start < n {
                // Keep the last 64 bytes of the unfinished line.
                let rest = &data[start..];
                let keep = rest.len().min(64);
                if tail_len + keep > 64 {
                    let drop = tail_len + keep - 64;
                    tail.copy_within(drop..tail_len, 0);
                    tail_len -= drop;
                }
                tail[tail_len..tail_len + keep].copy_from_slice(&rest[rest.len() - keep..]);
                tail_len += keep;
            }
            n
        });
        bad
    })?;
    let (probe, bad) = strategy
        .join()
        .map_err(|_| E2eError::Client("strategy thread panicked".into()))?;
    let sched = watch.finish(probe.sched);
    feeder.shared().stop.store(true, Ordering::Relaxed);
    let full_waits = io
        .join()
        .map_err(|_| E2eError::Client("floor thread panicked".into()))??;
    let _ = full_waits;
    Ok((probe, sched, 0, 0, bad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::stream::MdStream;

    #[cfg(target_os = "linux")]
    #[test]
    fn scheduler_counters_see_a_named_threads_cpu_time() {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let worker = thread::Builder::new()
            .name("sched-probe-thread-long-name".into())
            .spawn(move || {
                let before = Sched::current();
                // Spin until the counters say 10 ms of CPU were used (not for a wall-clock
                // time: on a loaded machine a thread may get a third of a core or less).
                let start = Instant::now();
                while Sched::current().since(before).cpu_ns < 10_000_000
                    && start.elapsed() < Duration::from_secs(10)
                {
                    let spin = Instant::now();
                    while spin.elapsed() < Duration::from_millis(1) {
                        std::hint::black_box(spin.elapsed());
                    }
                }
                tx.send(Sched::current().since(before)).unwrap();
                // Stay alive until the main thread has looked it up by name.
                done_rx.recv().unwrap();
            })
            .unwrap();
        let own = rx.recv().unwrap();
        assert!(own.cpu_ns >= 10_000_000, "{own:?}");
        // Found by its (kernel-truncated) name from another thread.
        let seen = Sched::of_named("sched-probe-thread-long-name").expect("thread found");
        assert!(seen.cpu_ns >= own.cpu_ns, "{seen:?} vs {own:?}");
        assert!(Sched::of_named("no-such-thread").is_none());
        done_tx.send(()).unwrap();
        worker.join().unwrap();
    }

    #[test]
    fn the_serde_client_reads_every_kind_of_stream_message() {
        let mut s = MdStream::new(3);
        let mut out = Vec::new();
        for i in 0..300 {
            out.clear();
            s.next_message(&mut out, 1_000 + i);
            let m = parse_notification(std::str::from_utf8(&out).unwrap())
                .unwrap()
                .expect("a notification");
            let ns = match m {
                MdMsg::Book(b) => b.sw_send_ns,
                MdMsg::Trades(t) => t[0].sw_send_ns,
            };
            assert_eq!(ns, 1_000 + i);
        }
        out.clear();
        s.snapshot(1, &mut out, 5);
        match parse_notification(std::str::from_utf8(&out).unwrap()) {
            Ok(Some(MdMsg::Book(b))) => assert_eq!(b.kind, "snapshot"),
            other => panic!("not a book snapshot: {other:?}"),
        }
        assert!(
            parse_notification(r#"{"jsonrpc":"2.0","id":1,"result":[]}"#)
                .unwrap()
                .is_none()
        );
        assert!(parse_notification("not json").is_err());
    }
}
