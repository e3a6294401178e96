//! Randomized stress of the order promise: every fault of issue 6 with random timing, each
//! `SPINWIRE_STRESS_ROUNDS` times (default 2; `tools/ci/order-stress.sh` runs 20+ in
//! release). Each round starts a fresh simulator with a moving market, a fresh engine, a
//! burst of random orders (resting and crossing, buys and sells, cancels and edits of open
//! ones, random gaps between them) and the fault landing after a random number of order
//! requests; then the engine's final view is compared with the ledger. The seed is printed
//! (`SPINWIRE_STRESS_SEED` replays a run's random choices; thread timing still varies); the
//! counts are printed per fault and in total, and the test fails on any lost, duplicated,
//! missed or doubled order or fill. `SPINWIRE_STRESS_ONLY=NAME` runs only the faults whose
//! name contains NAME (e.g. `half-open`, `kill-9`).

#[path = "sim_util/orders_cli.rs"]
mod orders_cli_harness;
#[path = "sim_util/orders.rs"]
mod orders_harness;

use std::time::{Duration, Instant};

use orders_cli_harness::crash_round;
use orders_harness::*;
use spinwire_engine::md::Direction;
use spinwire_engine::orders::OrderEventKind;
use spinwire_engine::session::EventKind;
use spinwire_engine::venue::deribit::CodScope;
use spinwire_tools::sim::check::Agreement;
use spinwire_tools::sim::faults::parse_rule;

/// The faults, as simulator rule heads (the `@orders=K,conn=1` condition is added per round).
const FAULTS: [(&str, &str); 10] = [
    ("withhold-executed", "withhold(exec=1)"),
    ("withhold-not-executed", "withhold(exec=0)"),
    ("drop-during-cancel-executed", "withhold_cancel(exec=1)"),
    ("drop-during-cancel-not-executed", "withhold_cancel(exec=0)"),
    ("drop-during-edit-executed", "withhold_edit(exec=1)"),
    ("drop-during-edit-not-executed", "withhold_edit(exec=0)"),
    ("fills-while-disconnected", "fillgap"),
    ("half-open-mid-burst", "halfopen"),
    ("token-expiry-mid-burst", "expire"),
    ("reset-mid-burst", "rst"),
];

#[derive(Default)]
struct Tally {
    rounds: usize,
    agreement: Agreement,
    unfinished: usize,
    /// Rounds in which the connection dropped (the fault really happened).
    dropped: usize,
    /// `Unknown` events (orders whose fate the drop left open).
    unknown: usize,
    /// Events learned by reconciliation (`resolved`).
    resolved: usize,
    /// Authentications after the first (token expiry shows here, not as a drop).
    reauth: usize,
}

/// What one round saw besides the agreement.
struct Seen {
    finished: bool,
    dropped: bool,
    unknown: usize,
    resolved: usize,
    reauth: usize,
}

fn rounds() -> usize {
    std::env::var("SPINWIRE_STRESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

fn seed() -> u64 {
    std::env::var("SPINWIRE_STRESS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// One in-process round of `fault`.
fn round(name: &str, fault: &str, rng: &mut Rng) -> (Seen, Agreement) {
    let mut sim_cfg = sim_config();
    sim_cfg.rate = 300;
    sim_cfg.seed = rng.next_u64();
    let mut s = session_config();
    if rng.chance(0.5) {
        s.orders.cancel_on_disconnect = Some(CodScope::Connection);
    }
    let mut run = OrderRun::start(sim_cfg, s);
    let burst = rng.range(10, 25);
    let at = rng.range(1, burst / 2 + 2);
    // The fault fires once `at` order requests (orders, cancels, edits) were received. A
    // `fillgap` needs a drop to show: a reset follows it.
    let spec = format!("{fault}@orders={at},conn=1");
    run.sim
        .schedule(parse_rule(&spec).expect("fault rule parses"));
    if fault == "fillgap" {
        run.sim
            .schedule(parse_rule(&format!("rst@orders={at},conn=1")).unwrap());
    }
    let mut placed: Vec<(u64, Direction)> = Vec::new();
    for _ in 0..burst {
        let buy = rng.chance(0.5);
        let dir = if buy { Direction::Buy } else { Direction::Sell };
        let ticks = if rng.chance(0.15) {
            20 // crosses the spread
        } else {
            -(rng.range(1, 9) as i64)
        };
        let ticks = if buy { ticks } else { -ticks };
        let ttl = if rng.chance(0.2) {
            rng.range(20, 400) as u32
        } else {
            0
        };
        let tag = run.limit(dir, ticks, 10.0, ttl);
        placed.push((tag, dir));
        run.pump();
        // Cancel or edit an open order now and then (the cancel/edit faults need them).
        if rng.chance(0.35) {
            let open: Vec<(u64, Direction)> = placed
                .iter()
                .copied()
                .filter(|(t, _)| run.order(*t).is_open())
                .collect();
            if !open.is_empty() {
                let (t, d) = open[rng.range(0, open.len() as u64) as usize];
                if rng.chance(0.5) {
                    run.cancel(t);
                } else {
                    let away = -(rng.range(2, 12) as i64);
                    run.edit(t, 20.0, if d == Direction::Buy { away } else { -away });
                }
            }
        }
        std::thread::sleep(Duration::from_micros(rng.range(0, 4000)));
    }
    // A withheld cancel or edit needs a cancel or edit after the fault fired: if the burst
    // had none, make one (on a fresh resting order), so every round exercises its fault.
    let needs_change = fault.starts_with("withhold_cancel") || fault.starts_with("withhold_edit");
    if needs_change && !run.wait(Duration::from_millis(200), |r| r.drops() > 0) {
        let tag = run.limit(Direction::Buy, -(rng.range(1, 9) as i64), 10.0, 0);
        if run.wait(Duration::from_secs(5), |r| r.order(tag).is_open()) {
            if fault.starts_with("withhold_cancel") {
                run.cancel(tag);
            } else {
                run.edit(tag, 20.0, -(rng.range(10, 20) as i64));
            }
            run.wait(Duration::from_secs(5), |r| r.drops() > 0);
        }
    }
    let finished = run.wait_final(Duration::from_secs(15));
    let a = run.settle(Duration::from_secs(3));
    if !finished || !a.is_clean() {
        let ledger = orders_cli_harness::ledger_lines(&run.ledger());
        eprintln!(
            "FAILED round of {name} ({spec}): final={finished} {a}\n{}\n{}\nledger:\n{}",
            a.problems(),
            run.dump_events(),
            relevant(&ledger, &a)
        );
    }
    let events = || run.orders.values().flat_map(|t| t.events.iter());
    let seen = Seen {
        finished,
        dropped: run.drops() > 0,
        unknown: events()
            .filter(|e| e.kind == OrderEventKind::Unknown)
            .count(),
        resolved: events().filter(|e| e.resolved).count(),
        reauth: run
            .session_events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Authenticated { .. }))
            .count()
            .saturating_sub(1),
    };
    run.stop();
    (seen, a)
}

#[test]
fn every_fault_with_random_timing_keeps_the_order_promise() {
    let n = rounds();
    let seed = seed();
    eprintln!("order stress: seed {seed} (SPINWIRE_STRESS_SEED), {n} rounds per fault");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut total = Tally::default();
    let mut lines = Vec::new();
    let only = std::env::var("SPINWIRE_STRESS_ONLY").unwrap_or_default();
    for (name, fault) in FAULTS {
        if !name.contains(only.as_str()) {
            continue;
        }
        let mut t = Tally::default();
        for _ in 0..n {
            let (seen, a) = round(name, fault, &mut rng);
            t.rounds += 1;
            t.unfinished += usize::from(!seen.finished);
            t.dropped += usize::from(seen.dropped);
            t.unknown += seen.unknown;
            t.resolved += seen.resolved;
            t.reauth += seen.reauth;
            t.agreement.add(&a);
        }
        lines.push(format!(
            "  {name:<32} rounds={} dropped={} reauth={} unknown={} resolved={} unfinished={} {}",
            t.rounds, t.dropped, t.reauth, t.unknown, t.resolved, t.unfinished, t.agreement
        ));
        total.rounds += t.rounds;
        total.unfinished += t.unfinished;
        total.agreement.add(&t.agreement);
    }
    // kill -9 and restart from the journal, killed after a random number of accepted orders.
    let mut t = Tally::default();
    let crash_rounds = if "kill-9-restart".contains(only.as_str()) {
        n
    } else {
        0
    };
    for _ in 0..crash_rounds {
        let kill_after = rng.range(3, 30) as usize;
        let mut cfg = sim_config();
        cfg.rate = 300;
        cfg.seed = rng.next_u64();
        let c = crash_round(cfg, kill_after, rng.chance(0.5));
        t.rounds += 1;
        t.dropped += usize::from(c.killed_mid_burst);
        t.unfinished += usize::from(!c.restart_ok);
        if !c.restart_ok || !c.agreement.is_clean() {
            eprintln!(
                "FAILED kill -9 round (after {kill_after} accepted): restart_ok={} {}\n{}\n{}",
                c.restart_ok,
                c.agreement,
                c.agreement.problems(),
                relevant(&c.diagnostics, &c.agreement)
            );
        }
        t.agreement.add(&c.agreement);
    }
    lines.push(format!(
        "  {:<32} rounds={} killed_mid_burst={} unfinished={} {}",
        "kill-9-restart", t.rounds, t.dropped, t.unfinished, t.agreement
    ));
    total.rounds += t.rounds;
    total.unfinished += t.unfinished;
    total.agreement.add(&t.agreement);
    let a = &total.agreement;
    eprintln!(
        "order stress: seed {seed}, {:.1} s\n{}\n  TOTAL rounds={} orders={} fills={} lost={} \
         duplicated={} fills_missed={} fills_doubled={} state_mismatch={} unfinished={}",
        started.elapsed().as_secs_f64(),
        lines.join("\n"),
        total.rounds,
        a.orders,
        a.fills,
        a.lost,
        a.duplicated,
        a.fills_missed,
        a.fills_doubled,
        a.state_mismatch,
        total.unfinished
    );
    assert!(
        a.is_clean() && total.unfinished == 0,
        "order stress failed (seed {seed}): {a} unfinished={}\n{}",
        total.unfinished,
        a.problems()
    );
}

/// The diagnostic lines that mention a label named in the problems (the whole output is
/// too long to read).
fn relevant(diagnostics: &str, a: &Agreement) -> String {
    let labels: Vec<&str> = a
        .details
        .iter()
        .filter_map(|d| d.split(':').next())
        .filter(|l| l.starts_with(LABEL_PREFIX))
        .collect();
    diagnostics
        .lines()
        .filter(|l| !l.contains('"') || labels.iter().any(|lab| l.contains(lab)))
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}
