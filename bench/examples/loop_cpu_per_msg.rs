//! Engine CPU per market-data message at a paced total rate (default 20,000 msg/s) spread over
//! N = 1, 8 and 32 sessions on one engine thread (issue 13: "at most 1.1x the N = 1 figure").
//!
//! The engine runs through `Engine::builder()` in `PollMode::Blocking(None)`, so the engine
//! thread uses CPU only for real work (it sleeps in `epoll_wait` between messages); one
//! strategy thread pops every ring of every session (sleeping 200 µs whenever all are empty).
//! The figure is the engine thread's CPU time over the streaming window (its CPU clock; the thread from
//! `EngineControl::tid`) divided by the messages sent in that window; the same
//! window also gives the engine thread's system calls (a perf counter on the
//! `raw_syscalls:sys_enter` tracepoint, when the kernel allows it; and, on the `syscalls:*`
//! tracepoints, how many were `epoll_wait`, `recvfrom`, and `recvfrom` that found nothing) and
//! its voluntary context switches (each one a wait in `epoll_wait` that slept: a wake-up), and
//! the whole machine's busy and steal time (`/proc/stat`), to tell a disturbed run.
//!
//! Two sources, both plain `ws://` over loopback:
//!
//! - `feed` (the headline figure): one feeder thread serving N connections, message `i` written
//!   alone to connection `i % N` at `start + i / rate`, each connection its own stream of
//!   book changes and trades of two instruments (the e2e benchmark's messages, subscribed as
//!   four channels per session). The wire pattern is the same for every N (one message per
//!   write, `rate` writes a second); only the number of sessions they are spread over changes.
//! - `sim`: the Deribit simulator (`spinwire_tools::sim`) with `rate` = the total: its market
//!   thread makes `rate` events a second over all its instruments (one instrument per session
//!   here, `book.X{k}-PERPETUAL.raw`, so each session gets about `rate / N`), and every
//!   connection is served by its own thread, which polls every millisecond and writes what is
//!   new in one batch. Batching therefore differs with N: at N = 1 one connection takes ~20
//!   messages per write, at N = 32 ~0.6. Messages counted from the simulator's `md_sent`.
//!
//! Runs are interleaved: for each round, N = 1, 8, 32 (each a fresh engine and source), and
//! the ratios are taken within a round, then the median over rounds.
//!
//! ```text
//! cargo run --release -p spinwire-bench --example loop_cpu_per_msg                 # feed + sim, 3 rounds x 3 s
//! cargo run --release -p spinwire-bench --example loop_cpu_per_msg -- --quick      # feed, 2 rounds x 1 s, ~7 s
//! cargo run --release -p spinwire-bench --example loop_cpu_per_msg -- --source feed --rounds 5 --seconds 3
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use spinwire_bench::e2e::stream::channels;
use spinwire_bench::engine_loop::feed::{MultiFeed, MultiFeedConfig};
use spinwire_bench::engine_loop::threads::{tid_named, MachineCpu, SyscallCounter, ThreadStat};
use spinwire_bench::engine_loop::{median, range};
use spinwire_engine::handoff::{Engine, EngineStats, StrategyEnds};
use spinwire_engine::md::MdRecord;
use spinwire_engine::reactor::PollMode;
use spinwire_engine::session::driver::DriverConfig;
use spinwire_engine::session::{BackoffConfig, Credentials, EventKind, SessionConfig};
use spinwire_tools::sim::{SimConfig, SimHandle, Simulator};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Source {
    Feed,
    Sim,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Feed => "feed",
            Source::Sim => "sim",
        }
    }
}

struct Opts {
    sizes: Vec<usize>,
    rate: u64,
    seconds: f64,
    rounds: usize,
    sources: Vec<Source>,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        sizes: vec![1, 8, 32],
        rate: 20_000,
        seconds: 3.0,
        rounds: 3,
        sources: vec![Source::Feed, Source::Sim],
    };
    let mut args = std::env::args().skip(1);
    let mut set = (false, false, false);
    while let Some(a) = args.next() {
        let mut val = |what: &str| args.next().ok_or(format!("{what} needs a value"));
        match a.as_str() {
            "--quick" => {
                if !set.0 {
                    o.rounds = 2;
                }
                if !set.1 {
                    o.seconds = 1.0;
                }
                if !set.2 {
                    o.sources = vec![Source::Feed];
                }
            }
            "--rounds" => {
                o.rounds = val("--rounds")?
                    .parse::<usize>()
                    .map_err(|e| e.to_string())?;
                o.rounds = o.rounds.max(1);
                set.0 = true;
            }
            "--seconds" => {
                o.seconds = val("--seconds")?
                    .parse::<f64>()
                    .map_err(|e| e.to_string())?;
                if !(o.seconds.is_finite() && o.seconds > 0.0) {
                    return Err("--seconds must be positive".into());
                }
                set.1 = true;
            }
            "--rate" => o.rate = val("--rate")?.parse::<u64>().map_err(|e| e.to_string())?,
            "--source" => {
                o.sources = match val("--source")?.as_str() {
                    "feed" => vec![Source::Feed],
                    "sim" => vec![Source::Sim],
                    "both" => vec![Source::Feed, Source::Sim],
                    s => return Err(format!("--source feed|sim|both, not {s:?}")),
                };
                set.2 = true;
            }
            "--sessions" => {
                o.sizes = val("--sessions")?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>().map_err(|e| format!("{s}: {e}")))
                    .collect::<Result<_, _>>()?;
                if o.sizes.is_empty() || o.sizes.contains(&0) {
                    return Err("--sessions: sizes must be at least 1".into());
                }
            }
            "-h" | "--help" => {
                return Err(
                    "usage: loop_cpu_per_msg [--quick] [--rounds R] [--seconds S] \
                            [--rate MSGS_PER_S] [--source feed|sim|both] [--sessions 1,8,32]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if o.rate == 0 {
        return Err("--rate must be at least 1".into());
    }
    Ok(o)
}

/// What the strategy thread has seen, shared with the harness.
#[derive(Default)]
struct Seen {
    records: AtomicU64,
    live: AtomicUsize,
    /// Gaps and dropped records.
    trouble: AtomicU64,
    disconnects: AtomicU64,
    stop: AtomicBool,
}

/// Pops every ring of every session until told to stop; sleeps 200 µs when all are empty.
fn strategy(mut ends: Vec<StrategyEnds>, seen: Arc<Seen>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("strategy".into())
        .spawn(move || {
            let mut batch = vec![MdRecord::default(); 512];
            while !seen.stop.load(Ordering::Relaxed) {
                let mut got = 0;
                for e in ends.iter_mut() {
                    loop {
                        let n = e.md.pop_into(&mut batch);
                        got += n;
                        seen.records.fetch_add(n as u64, Ordering::Relaxed);
                        if n < batch.len() {
                            break;
                        }
                    }
                    while let Some(ev) = e.session_events.pop() {
                        got += 1;
                        match ev.kind {
                            EventKind::Live { .. } => {
                                seen.live.fetch_add(1, Ordering::Release);
                            }
                            EventKind::Disconnected { .. } => {
                                seen.disconnects.fetch_add(1, Ordering::Relaxed);
                            }
                            EventKind::Gap { .. } | EventKind::RecordsDropped { .. } => {
                                seen.trouble.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {}
                        }
                    }
                    while e.order_events.pop().is_some() {
                        got += 1;
                    }
                }
                if got == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        })
        .expect("strategy thread")
}

/// One measured run.
struct Run {
    source: Source,
    n: usize,
    messages: u64,
    window: Closed,
    /// Engine-side counters of the whole run (setup included).
    stats: EngineStats,
    /// Gaps, dropped records and disconnects before the shutdown.
    trouble: u64,
    /// Where the message count comes from.
    note: String,
}

fn session_config(credentials: Option<Credentials>) -> SessionConfig {
    SessionConfig {
        credentials,
        heartbeat: None,
        ping_after: Duration::from_secs(60),
        dead_after: Duration::from_secs(30),
        // The shutdown is not measured: do not wait long for it (a public session's logout
        // waits this long even after its connection is closed).
        drain_timeout: Duration::from_millis(100),
        backoff: BackoffConfig {
            reset_after: Duration::from_millis(5),
            ..BackoffConfig::default()
        },
        ..SessionConfig::default()
    }
}

fn spawn_engine(
    url: &str,
    sessions: Vec<(SessionConfig, Vec<String>)>,
) -> Result<(Engine, Arc<Seen>, JoinHandle<()>), String> {
    let mut b = Engine::builder()
        .poll_mode(PollMode::Blocking(None))
        .md_ring(1 << 16)
        .event_ring(1024);
    for (k, (sc, ch)) in sessions.into_iter().enumerate() {
        b = b.session(format!("s{k}"), DriverConfig::new(url), sc, &ch);
    }
    let mut engine = b.spawn().map_err(|e| format!("engine: {e}"))?;
    let seen = Arc::new(Seen::default());
    let ends = std::mem::take(&mut engine.strategies);
    let t = strategy(ends, seen.clone());
    Ok((engine, seen, t))
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let end = Instant::now() + timeout;
    while !f() {
        if Instant::now() > end {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// What a window measured.
#[derive(Clone, Copy)]
struct Closed {
    /// The engine thread's CPU time and scheduler counters.
    cpu: ThreadStat,
    /// Its system calls, when counted.
    syscalls: Option<u64>,
    /// Its `epoll_wait`s, `recvfrom`s and failed (empty) `recvfrom`s, when counted.
    detail: Option<[u64; 3]>,
    /// Records the strategy popped.
    records: u64,
    wall_ns: u64,
    /// The whole machine meanwhile.
    machine: MachineCpu,
}

/// The engine thread's counters at the start of a window.
struct Window {
    tid: i32,
    stat: ThreadStat,
    counter: Option<SyscallCounter>,
    /// `epoll_wait` calls, `recvfrom` calls, `recvfrom` calls that failed (EAGAIN: nothing to
    /// read).
    detail: Option<[SyscallCounter; 3]>,
    records: u64,
    machine: MachineCpu,
    t0: Instant,
}

impl Window {
    fn open(engine: &Engine, seen: &Seen) -> Result<Window, String> {
        let tid = match engine.control.tid() {
            0 => tid_named("spinwire-engine").ok_or("no spinwire-engine thread")?,
            t => t,
        };
        let counter = SyscallCounter::on_thread(tid).ok();
        let detail = (|| {
            Ok::<_, String>([
                SyscallCounter::tracepoint(tid, "syscalls/sys_enter_epoll_wait", None)?,
                SyscallCounter::tracepoint(tid, "syscalls/sys_enter_recvfrom", None)?,
                SyscallCounter::tracepoint(tid, "syscalls/sys_exit_recvfrom", Some("ret < 0"))?,
            ])
        })()
        .ok();
        Ok(Window {
            tid,
            stat: ThreadStat::of(tid),
            counter,
            detail,
            records: seen.records.load(Ordering::Relaxed),
            machine: MachineCpu::now(),
            t0: Instant::now(),
        })
    }

    /// What happened since `open`.
    fn close(mut self, seen: &Seen) -> Closed {
        let syscalls = self.counter.as_mut().map(SyscallCounter::read);
        let detail = self
            .detail
            .as_mut()
            .map(|d| [d[0].read(), d[1].read(), d[2].read()]);
        Closed {
            cpu: ThreadStat::of(self.tid).since(self.stat),
            syscalls,
            detail,
            records: seen.records.load(Ordering::Relaxed) - self.records,
            wall_ns: self.t0.elapsed().as_nanos() as u64,
            machine: MachineCpu::now().since(self.machine),
        }
    }

    /// Gaps, dropped records and disconnects seen up to now (setup included).
    fn trouble(seen: &Seen) -> u64 {
        seen.trouble.load(Ordering::Relaxed) + seen.disconnects.load(Ordering::Relaxed)
    }
}

fn run_feed(n: usize, rate: u64, seconds: f64) -> Result<Run, String> {
    let messages = (rate as f64 * seconds) as u64;
    let feed = MultiFeed::start(MultiFeedConfig {
        connections: n,
        rate,
        messages,
        seed: 7,
    })
    .map_err(|e| format!("feeder: {e}"))?;
    let sessions = (0..n).map(|_| (session_config(None), channels())).collect();
    let (engine, seen, strat) = spawn_engine(&feed.url(), sessions)?;
    let setup = Duration::from_secs(30);
    wait_until("sessions Live", setup, || {
        seen.live.load(Ordering::Acquire) >= n
    })?;
    wait_until("subscriptions answered", setup, || {
        feed.shared().subscribed.load(Ordering::Acquire) >= n
    })?;
    // Snapshots in, timers set on the way fired.
    std::thread::sleep(Duration::from_millis(50));
    let w = Window::open(&engine, &seen)?;
    feed.shared().go.store(true, Ordering::Release);
    wait_until(
        "the feeder to finish",
        Duration::from_secs_f64(seconds * 3.0 + 30.0),
        || feed.shared().done.load(Ordering::Acquire),
    )?;
    // Until the strategy has had everything: nothing new for 20 ms.
    let mut last = seen.records.load(Ordering::Relaxed);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = seen.records.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let c = w.close(&seen);
    let trouble = Window::trouble(&seen);
    let sent = feed.shared().sent.load(Ordering::Relaxed);
    let late = feed.shared().late.load(Ordering::Relaxed);
    let send_ns = feed.shared().send_ns.load(Ordering::Relaxed);
    let stats = engine
        .control
        .shutdown()
        .map_err(|e| format!("shutdown: {e}"))?;
    seen.stop.store(true, Ordering::Relaxed);
    let _ = strat.join();
    let _ = feed.finish();
    let handled: u64 = stats.sessions.iter().map(|s| s.session.messages).sum();
    Ok(Run {
        source: Source::Feed,
        n,
        messages: sent,
        window: c,
        trouble,
        note: format!(
            "sent {sent} in {:.2} s ({late} late > 1 ms); engine handled {handled} = sent + {} setup",
            send_ns as f64 / 1e9,
            handled as i64 - sent as i64
        ),
        stats,
    })
}

fn run_sim(n: usize, rate: u64, seconds: f64) -> Result<Run, String> {
    let instruments: Vec<String> = (0..n).map(|k| format!("X{k:02}-PERPETUAL")).collect();
    let sim: SimHandle = Simulator::start(SimConfig {
        rate,
        instruments: instruments.clone(),
        credentials: vec![("bench".into(), "bench-secret-value".into())],
        max_conns_per_ip: n + 8,
        ..SimConfig::default()
    })
    .map_err(|e| format!("simulator: {e}"))?;
    let sessions = instruments
        .iter()
        .map(|i| {
            (
                session_config(Some(Credentials::new("bench", "bench-secret-value"))),
                vec![format!("book.{i}.raw")],
            )
        })
        .collect();
    let (engine, seen, strat) = spawn_engine(&sim.url(), sessions)?;
    wait_until("sessions Live", Duration::from_secs(30), || {
        seen.live.load(Ordering::Acquire) >= n
    })?;
    std::thread::sleep(Duration::from_millis(100));
    let sent0 = sim.stats().md_sent;
    let w = Window::open(&engine, &seen)?;
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let sent1 = sim.stats().md_sent;
    let c = w.close(&seen);
    let trouble = Window::trouble(&seen);
    let stats = engine
        .control
        .shutdown()
        .map_err(|e| format!("shutdown: {e}"))?;
    seen.stop.store(true, Ordering::Relaxed);
    let _ = strat.join();
    let generated = sim.stats().md_generated;
    drop(sim);
    let messages = sent1 - sent0;
    Ok(Run {
        source: Source::Sim,
        n,
        messages,
        window: c,
        trouble,
        note: format!(
            "simulator wrote {messages} notifications in the window ({:.0}/s; {generated} events made in all)",
            messages as f64 * 1e9 / c.wall_ns as f64
        ),
        stats,
    })
}

fn us_per_msg(r: &Run) -> f64 {
    r.window.cpu.cpu_ns as f64 / 1000.0 / r.messages.max(1) as f64
}

fn report(runs: &[Run], source: Source, sizes: &[usize], rounds: usize) {
    let of = |n: usize| -> Vec<&Run> {
        runs.iter()
            .filter(|r| r.source == source && r.n == n)
            .collect()
    };
    println!(
        "\nsource {}: engine thread CPU per message, median over {rounds} round(s) (min-max):",
        source.name()
    );
    println!(
        "{:>4}  {:>24}  {:>12}  {:>22}  {:>12}  {:>11}  {:>9}",
        "N",
        "CPU us/msg",
        "syscalls/msg",
        "epoll/recv/empty recv",
        "wake-ups/msg",
        "records/msg",
        "preempted"
    );
    for &n in sizes {
        let rs = of(n);
        if rs.is_empty() {
            continue;
        }
        let mut v: Vec<f64> = rs.iter().map(|r| us_per_msg(r)).collect();
        let (lo, hi) = range(&v);
        let msgs: u64 = rs.iter().map(|r| r.messages).sum::<u64>().max(1);
        let sys = if rs.iter().all(|r| r.window.syscalls.is_some()) {
            format!(
                "{:.2}",
                rs.iter().filter_map(|r| r.window.syscalls).sum::<u64>() as f64 / msgs as f64
            )
        } else {
            "n/a".into()
        };
        let detail = if rs.iter().all(|r| r.window.detail.is_some()) {
            let sum = |k: usize| {
                rs.iter()
                    .filter_map(|r| r.window.detail.map(|d| d[k]))
                    .sum::<u64>() as f64
                    / msgs as f64
            };
            format!("{:.2}/{:.2}/{:.2}", sum(0), sum(1), sum(2))
        } else {
            "n/a".into()
        };
        let wakes = rs.iter().map(|r| r.window.cpu.voluntary).sum::<u64>() as f64 / msgs as f64;
        let recs = rs.iter().map(|r| r.window.records).sum::<u64>() as f64 / msgs as f64;
        let pre: u64 = rs.iter().map(|r| r.window.cpu.preempted).sum();
        println!(
            "{:>4}  {:>8.2} ({:>5.2}-{:>5.2})  {:>12}  {:>22}  {:>12.3}  {:>11.2}  {:>9}",
            n,
            median(&mut v),
            lo,
            hi,
            sys,
            detail,
            wakes,
            recs,
            pre
        );
    }
    let base = sizes[0];
    for &n in &sizes[1..] {
        let a = of(n);
        let b = of(base);
        let mut ratios: Vec<f64> = a
            .iter()
            .zip(b.iter())
            .map(|(x, y)| us_per_msg(x) / us_per_msg(y))
            .collect();
        if ratios.is_empty() {
            continue;
        }
        let (lo, hi) = range(&ratios);
        let target = if source == Source::Feed {
            " (target <= 1.1x)"
        } else {
            ""
        };
        println!(
            "ratio N={n} / N={base}: {:.2}x (per-round {:.2}-{:.2}){target}",
            median(&mut ratios),
            lo,
            hi
        );
    }
}

fn run(o: &Opts) -> Result<(), String> {
    println!(
        "loop_cpu_per_msg: engine thread CPU per market-data message, {} msg/s in total over N",
        o.rate
    );
    println!(
        "  sessions on one engine thread (Engine::builder, Blocking(None)), one strategy thread"
    );
    println!(
        "  popping everything. CPU = the engine thread's CPU clock over the streaming window;"
    );
    println!("  syscalls = its system calls (perf tracepoint), of which epoll_wait, recvfrom and");
    println!("  empty recvfrom (EAGAIN); wake-ups = its voluntary context switches (epoll waits");
    println!("  that slept). Sources: feed = one message per write, paced,");
    println!("  round-robin over the N connections (same wire pattern for every N); sim = the");
    println!("  Deribit simulator, one instrument per session, batches per 1 ms connection poll.");
    let mut runs = Vec::new();
    for round in 0..o.rounds {
        for &n in &o.sizes {
            for &source in &o.sources {
                let r = match source {
                    Source::Feed => run_feed(n, o.rate, o.seconds)?,
                    Source::Sim => run_sim(n, o.rate, o.seconds)?,
                };
                let turns = r.stats.engine.turns;
                println!(
                    "  round {} {:>4} N={:<3} {:>6.2} us/msg (cpu {:.1} ms, utime+stime {} ms, \
                     in {:.2} s; machine busy {:.0}%, steal {:.1}%; engine preempted {}x); \
                     {} msgs, {} records, {} turns in all; {}{}",
                    round + 1,
                    source.name(),
                    n,
                    us_per_msg(&r),
                    r.window.cpu.cpu_ns as f64 / 1e6,
                    r.window.cpu.utime_stime_ns / 1_000_000,
                    r.window.wall_ns as f64 / 1e9,
                    r.window.machine.busy_pct(),
                    r.window.machine.steal_pct(),
                    r.window.cpu.preempted,
                    r.messages,
                    r.window.records,
                    turns,
                    r.note,
                    if r.trouble > 0 {
                        format!("  ({} gaps/drops/disconnects!)", r.trouble)
                    } else {
                        String::new()
                    }
                );
                runs.push(r);
            }
        }
    }
    for &s in &o.sources {
        report(&runs, s, &o.sizes, o.rounds);
    }
    Ok(())
}

fn main() {
    spinwire_bench::engine_loop::example_main("loop_cpu_per_msg", parse, run);
}
