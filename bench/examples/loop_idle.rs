//! Idle turn cost of the engine loop with N = 1, 8 and 64 sessions (issue 13: "one system call
//! per turn at every N; time per idle turn at N = 64 at most 1.5x N = 1").
//!
//! Three [`EventLoop`]s in [`PollMode::BusySpin`] (one per N) are built on the main thread, their
//! sessions connected to an in-process loopback WebSocket server that upgrades the connections
//! and then says nothing (`QuietServer`: no heartbeats, no data; its thread sleeps in
//! `epoll_wait` with no timeout). The sessions are public, ask for no heartbeat and ping only
//! after an hour of silence, so once `Live` nothing happens: a turn is the loop's own cost
//! (one `epoll_wait` with a zero timeout, one clock read, every session's idle check).
//!
//! Rounds are interleaved (N = 1, 8, 64, 1, 8, 64, ...), each `--turns` turns of one loop. Per
//! round it measures the main thread's CPU time (its CPU clock: exact, unlike wall time on a
//! shared machine), wall time, and the system calls the thread made (a perf counter on the
//! `raw_syscalls:sys_enter` tracepoint, when the kernel allows it) together with the loop's own
//! counters (turns, kernel waits). It prints the medians per N and the ratio N=64 / N=1 (median
//! of the per-round ratios, and their range).
//!
//! ```text
//! cargo run --release -p spinwire-bench --example loop_idle               # 10 rounds x 200k turns
//! cargo run --release -p spinwire-bench --example loop_idle -- --quick    # 3 rounds x 50k, ~3 s
//! ```
//!
//! Instructions per idle turn (user space, repeatable): `--ir` runs this binary under
//! callgrind once per N, counting only `loop_idle_turns`; by hand:
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect=loop_idle_turns \
//!   target/release/examples/loop_idle --callgrind 64 --turns 20000
//! ```
//!
//! System calls checked with strace (only the main thread, which runs every loop, is traced
//! without `-f`; the program prints how many turns that thread made in all, setup included):
//!
//! ```text
//! strace -c -o /tmp/loop_idle.strace target/release/examples/loop_idle --rounds 1 --turns 20000
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use spinwire_bench::engine_loop::peer::QuietServer;
use spinwire_bench::engine_loop::threads::{gettid, thread_cpu_ns, MachineCpu, SyscallCounter};
use spinwire_bench::engine_loop::{median, range};
use spinwire_engine::event_loop::{EventLoop, LoopConfig, LoopStats};
use spinwire_engine::latency::ClockChoice;
use spinwire_engine::reactor::PollMode;
use spinwire_engine::session::driver::{DriverConfig, DriverEnds, DriverError};
use spinwire_engine::session::{BackoffConfig, EventKind, SessionConfig};

/// Turns `turns` times. The only function callgrind counts in `--callgrind` mode;
/// `no_mangle` keeps its symbol stable for `--toggle-collect`.
#[no_mangle]
#[inline(never)]
extern "Rust" fn loop_idle_turns(lp: &mut EventLoop, turns: u64) -> Result<(), DriverError> {
    for _ in 0..turns {
        lp.turn()?;
    }
    Ok(())
}

struct Opts {
    sizes: Vec<usize>,
    rounds: usize,
    turns: u64,
    /// `--callgrind N`: one loop of N sessions, `turns` counted turns, nothing else.
    callgrind: Option<usize>,
    /// `--ir`: run this binary under callgrind for every size and print Ir per turn.
    ir: bool,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        sizes: vec![1, 8, 64],
        rounds: 10,
        turns: 200_000,
        callgrind: None,
        ir: false,
    };
    let mut turns_set = false;
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>, what: &str| -> Result<u64, String> {
        v.and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{what} needs a number"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => {
                o.rounds = 3;
                if !turns_set {
                    o.turns = 50_000;
                }
            }
            "--rounds" => o.rounds = num(args.next(), "--rounds")?.max(1) as usize,
            "--turns" => {
                o.turns = num(args.next(), "--turns")?.max(1);
                turns_set = true;
            }
            "--sessions" => {
                o.sizes = args
                    .next()
                    .ok_or("--sessions needs a list, e.g. 1,8,64")?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>().map_err(|e| format!("{s}: {e}")))
                    .collect::<Result<_, _>>()?;
                if o.sizes.is_empty() || o.sizes.contains(&0) {
                    return Err("--sessions: sizes must be at least 1".into());
                }
            }
            "--callgrind" => o.callgrind = Some(num(args.next(), "--callgrind")?.max(1) as usize),
            "--ir" => o.ir = true,
            "-h" | "--help" => {
                return Err("usage: loop_idle [--quick] [--rounds R] [--turns M] \
                            [--sessions 1,8,64] [--ir] | --callgrind N [--turns M]"
                    .into())
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(o)
}

/// Sessions that stay quiet once `Live`: public (no auth), no subscriptions, no heartbeat, a
/// ping only after an hour of silence, the "stable" timer (backoff reset) early, small rings.
fn quiet_session() -> (DriverConfig, SessionConfig) {
    (
        DriverConfig {
            md_ring: 1024,
            event_ring: 256,
            order_ring: 64,
            control_ring: 16,
            order_event_ring: 64,
            order_overflow: 64,
            ..DriverConfig::new("")
        },
        SessionConfig {
            heartbeat: None,
            ping_after: Duration::from_secs(3600),
            dead_after: Duration::from_secs(60),
            // Closing at the end is not measured: do not wait long for it.
            drain_timeout: Duration::from_millis(100),
            backoff: BackoffConfig {
                reset_after: Duration::from_millis(5),
                ..BackoffConfig::default()
            },
            ..SessionConfig::default()
        },
    )
}

/// One loop with its sessions' ring ends.
struct Bench {
    n: usize,
    lp: EventLoop,
    ends: Vec<DriverEnds>,
}

fn build(n: usize, url: &str) -> Result<Bench, String> {
    let mut lp = EventLoop::new(LoopConfig {
        mode: PollMode::BusySpin,
        clock: ClockChoice::Auto,
        max_sessions: n,
        instance: None,
    })
    .map_err(|e| format!("event loop: {e}"))?;
    let mut ends = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut dc, sc) = quiet_session();
        dc.url = url.to_string();
        let (_, e) = lp
            .add_session(dc, sc)
            .map_err(|e| format!("add session: {e}"))?;
        ends.push(e);
    }
    lp.start().map_err(|e| format!("start: {e}"))?;
    Ok(Bench { n, lp, ends })
}

/// Turns every loop until all their sessions are `Live` (then a little longer, so the timers
/// set on the way have fired).
fn bring_live(benches: &mut [Bench]) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(60);
    let mut live: Vec<Vec<bool>> = benches.iter().map(|b| vec![false; b.n]).collect();
    loop {
        let mut all = true;
        for (b, live) in benches.iter_mut().zip(live.iter_mut()) {
            b.lp.turn().map_err(|e| format!("turn: {e}"))?;
            for (i, e) in b.ends.iter_mut().enumerate() {
                while let Some(ev) = e.events.pop() {
                    match ev.kind {
                        EventKind::Live { .. } => live[i] = true,
                        EventKind::Disconnected { .. } => {
                            return Err(format!("N={} session {i}: {:?}", b.n, ev.kind))
                        }
                        _ => {}
                    }
                }
            }
            all &= live.iter().all(|&l| l);
        }
        if all {
            break;
        }
        if Instant::now() > end {
            return Err("sessions not Live within 60 s".into());
        }
    }
    // The backoff-reset timer fires 5 ms after Live: turn well past it.
    let settle = Instant::now() + Duration::from_millis(50);
    while Instant::now() < settle {
        for b in benches.iter_mut() {
            b.lp.turn().map_err(|e| format!("turn: {e}"))?;
        }
    }
    for b in benches.iter_mut() {
        for e in b.ends.iter_mut() {
            while e.events.pop().is_some() {}
        }
    }
    Ok(())
}

/// What one round of one loop measured.
#[derive(Clone, Copy)]
struct Round {
    cpu_ns: u64,
    wall_ns: u64,
    /// System calls of the thread, when counted.
    syscalls: Option<u64>,
    stats: LoopStats,
}

/// `b - a` for the counters this bench reads (the rest as in `b`).
fn delta(a: LoopStats, b: LoopStats) -> LoopStats {
    LoopStats {
        turns: b.turns - a.turns,
        kernel_waits: b.kernel_waits - a.kernel_waits,
        wakeups: b.wakeups - a.wakeups,
        events: b.events - a.events,
        ..b
    }
}

fn measure(
    b: &mut Bench,
    turns: u64,
    tid: i32,
    counter: &mut Option<SyscallCounter>,
) -> Result<Round, String> {
    let st0 = b.lp.stats();
    let cpu0 = thread_cpu_ns(tid);
    let sc0 = counter.as_mut().map(SyscallCounter::read);
    let w0 = Instant::now();
    loop_idle_turns(&mut b.lp, turns).map_err(|e| format!("turn: {e}"))?;
    let wall_ns = w0.elapsed().as_nanos() as u64;
    // The second read is itself counted: take it off.
    let sc1 = counter.as_mut().map(SyscallCounter::read);
    let cpu1 = thread_cpu_ns(tid);
    Ok(Round {
        cpu_ns: cpu1 - cpu0,
        wall_ns,
        syscalls: sc0.zip(sc1).map(|(a, b)| (b - a).saturating_sub(1)),
        stats: delta(st0, b.lp.stats()),
    })
}

/// `--callgrind N`: the counted part of an `--ir` run.
fn callgrind_mode(n: usize, turns: u64) -> Result<(), String> {
    let server = QuietServer::start().map_err(|e| format!("quiet server: {e}"))?;
    let mut benches = vec![build(n, &server.url())?];
    bring_live(&mut benches)?;
    let b = &mut benches[0];
    let before = b.lp.stats();
    loop_idle_turns(&mut b.lp, turns).map_err(|e| format!("turn: {e}"))?;
    let d = delta(before, b.lp.stats());
    println!(
        "callgrind: N={n}: {} turns counted, {} kernel waits, {} readiness events",
        d.turns, d.kernel_waits, d.events
    );
    Ok(())
}

/// `--ir`: runs this binary under callgrind for every size; returns Ir per turn per size.
fn ir_mode(sizes: &[usize], turns: u64) -> Result<Vec<(usize, f64)>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut out = Vec::new();
    for &n in sizes {
        let o = Command::new("valgrind")
            .args([
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                "--toggle-collect=loop_idle_turns",
            ])
            .arg(&exe)
            .args(["--callgrind", &n.to_string(), "--turns", &turns.to_string()])
            .output()
            .map_err(|e| format!("valgrind: {e} (is valgrind installed?)"))?;
        let err = String::from_utf8_lossy(&o.stderr);
        let ir = err
            .lines()
            .find_map(|l| l.split("Collected :").nth(1))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("no 'Collected' line from callgrind for N={n}: {err}"))?;
        if !o.status.success() {
            return Err(format!("callgrind run for N={n} failed: {err}"));
        }
        out.push((n, ir as f64 / turns as f64));
    }
    Ok(out)
}

fn run(o: &Opts) -> Result<(), String> {
    if let Some(n) = o.callgrind {
        return callgrind_mode(n, o.turns);
    }
    println!("loop_idle: the engine loop's idle turn, BusySpin, N sessions connected to a quiet");
    println!("  loopback WebSocket server (Live, no traffic, no timers due). Per round: --turns");
    println!(
        "  turns of one loop, rounds interleaved over N. cpu = the thread's CPU clock per turn"
    );
    println!(
        "  (what the turn costs), wall = elapsed per turn (adds preemption by other tenants);"
    );
    println!("  syscalls = the thread's system calls per turn (perf raw_syscalls:sys_enter");
    println!(
        "  counter), epoll_wait = the loop's own count (exactly one per turn by construction)."
    );
    let server = QuietServer::start().map_err(|e| format!("quiet server: {e}"))?;
    let url = server.url();
    let mut benches = Vec::new();
    for &n in &o.sizes {
        benches.push(build(n, &url)?);
    }
    let total: usize = o.sizes.iter().sum();
    bring_live(&mut benches)?;
    let upgraded = server
        .shared()
        .upgraded
        .load(std::sync::atomic::Ordering::Relaxed);
    if upgraded != total {
        return Err(format!("{upgraded} of {total} connections upgraded"));
    }
    let tid = gettid();
    let mut counter = match SyscallCounter::on_current_thread() {
        Ok(c) => Some(c),
        Err(e) => {
            println!("  (system calls not counted: {e}; use the strace command in the docs)");
            None
        }
    };
    // Warm-up: every loop, a few rounds' worth of turns.
    for b in benches.iter_mut() {
        loop_idle_turns(&mut b.lp, o.turns.min(100_000)).map_err(|e| format!("turn: {e}"))?;
    }
    let quiet0 = server
        .shared()
        .events
        .load(std::sync::atomic::Ordering::Relaxed);
    let machine0 = MachineCpu::now();
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); benches.len()];
    for _ in 0..o.rounds {
        for (k, b) in benches.iter_mut().enumerate() {
            rounds[k].push(measure(b, o.turns, tid, &mut counter)?);
        }
    }
    let quiet_events = server
        .shared()
        .events
        .load(std::sync::atomic::Ordering::Relaxed)
        - quiet0;
    println!(
        "\n{} rounds x {} turns per N; medians over rounds (min-max):",
        o.rounds, o.turns
    );
    println!(
        "{:>4}  {:>22}  {:>22}  {:>12}  {:>12}  {:>9}",
        "N", "cpu ns/turn", "wall ns/turn", "syscalls", "epoll_wait", "events"
    );
    let mut cpu_medians = Vec::new();
    for (b, rs) in benches.iter().zip(&rounds) {
        let per = |f: &dyn Fn(&Round) -> f64| -> Vec<f64> { rs.iter().map(f).collect() };
        let mut cpu = per(&|r| r.cpu_ns as f64 / r.stats.turns as f64);
        let mut wall = per(&|r| r.wall_ns as f64 / r.stats.turns as f64);
        let (clo, chi) = range(&cpu);
        let (wlo, whi) = range(&wall);
        let turns: u64 = rs.iter().map(|r| r.stats.turns).sum();
        let waits: u64 = rs.iter().map(|r| r.stats.kernel_waits).sum();
        let events: u64 = rs.iter().map(|r| r.stats.events).sum();
        let sys = if rs.iter().all(|r| r.syscalls.is_some()) {
            let s: u64 = rs.iter().filter_map(|r| r.syscalls).sum();
            // The loop's contract: exactly one system call (its epoll_wait) per idle turn,
            // whatever N. Anything else is a regression, not noise.
            if s != turns {
                return Err(format!(
                    "N={}: {s} system calls in {turns} idle turns (expected one per turn)",
                    b.n
                ));
            }
            format!("{:.4}/turn", s as f64 / turns as f64)
        } else {
            "n/a".to_string()
        };
        let cm = median(&mut cpu);
        cpu_medians.push(cm);
        println!(
            "{:>4}  {:>8.1} ({:>5.1}-{:>5.1})  {:>8.1} ({:>5.1}-{:>5.1})  {:>12}  {:>7}/turn  {:>9}",
            b.n,
            cm,
            clo,
            chi,
            median(&mut wall),
            wlo,
            whi,
            sys,
            // One epoll_wait per turn is the loop's contract; kernel waits would be non-zero
            // timeouts (none in BusySpin).
            if waits == 0 { "1" } else { "1 (!)" },
            events
        );
    }
    let machine = MachineCpu::now().since(machine0);
    println!(
        "machine during the rounds: busy {:.0}% (this thread spins: 50% of 2 CPUs), steal {:.1}%",
        machine.busy_pct(),
        machine.steal_pct()
    );
    println!("quiet server woken {quiet_events} times during the rounds (0: nothing reached the sessions)");
    let first = 0;
    for k in 1..benches.len() {
        let mut ratios: Vec<f64> = rounds[k]
            .iter()
            .zip(&rounds[first])
            .map(|(a, b)| {
                (a.cpu_ns as f64 / a.stats.turns as f64) / (b.cpu_ns as f64 / b.stats.turns as f64)
            })
            .collect();
        let (lo, hi) = range(&ratios);
        let mut wall_ratios: Vec<f64> = rounds[k]
            .iter()
            .zip(&rounds[first])
            .map(|(a, b)| {
                (a.wall_ns as f64 / a.stats.turns as f64)
                    / (b.wall_ns as f64 / b.stats.turns as f64)
            })
            .collect();
        let target = if benches[k].n == 64 && benches[first].n == 1 {
            " (target <= 1.5x)"
        } else {
            ""
        };
        println!(
            "ratio N={} / N={}: cpu {:.2}x (per-round {:.2}-{:.2}), wall {:.2}x{target}",
            benches[k].n,
            benches[first].n,
            median(&mut ratios),
            lo,
            hi,
            median(&mut wall_ratios),
        );
    }
    if o.ir {
        let turns = 20_000;
        match ir_mode(&o.sizes, turns) {
            Ok(irs) => {
                println!(
                    "\ninstructions per idle turn (callgrind, user space, {turns} turns counted):"
                );
                for (n, ir) in &irs {
                    println!("{n:>4}  {ir:>8.1} Ir/turn");
                }
                if irs.len() > 1 {
                    println!(
                        "ratio N={} / N={}: {:.2}x",
                        irs[irs.len() - 1].0,
                        irs[0].0,
                        irs[irs.len() - 1].1 / irs[0].1
                    );
                }
            }
            Err(e) => println!("\ninstructions not counted: {e}"),
        }
    }
    // Close the sessions before the server goes (a few turns; not timed).
    for b in benches.iter_mut() {
        b.lp.stop();
    }
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end && !benches.iter().all(|b| b.lp.finished(true)) {
        for b in benches.iter_mut() {
            let _ = b.lp.turn();
        }
    }
    let all_turns: u64 = benches.iter().map(|b| b.lp.stats().turns).sum();
    println!(
        "main thread (tid {tid}) turned the loops {all_turns} times in all (setup, warm-up and closing included): \
         compare with epoll_wait in `strace -c` of this run"
    );
    Ok(())
}

fn main() {
    spinwire_bench::engine_loop::example_main("loop_idle", parse, run);
}
