//! `kill -9` of the engine process in the middle of a burst of orders, then a restart from
//! its journal: across both runs of `spinwire orders`, the engine's final view agrees with
//! the simulator's ledger (0 orders lost, 0 duplicated, 0 fills missed or doubled).

#[path = "sim_util/orders_cli.rs"]
mod orders_cli_harness;
#[path = "sim_util/orders.rs"]
mod orders_harness;

use std::time::Duration;

use orders_cli_harness::*;
use orders_harness::{journal_path, sim_config};
use serde_json::Value;
use spinwire_tools::sim::check::Agreement;
use spinwire_tools::sim::Simulator;

fn kill_and_restart(cod: bool) -> (Agreement, Value) {
    let c = crash_round(sim_config(), 12, cod);
    assert!(c.killed_mid_burst, "{}", c.diagnostics);
    assert!(
        c.restart_ok && c.agreement.is_clean(),
        "restart ok={} {}\n{}\n{}",
        c.restart_ok,
        c.agreement,
        c.agreement.problems(),
        c.diagnostics
    );
    (
        c.agreement,
        c.summary.expect("the second run prints a summary"),
    )
}

#[test]
fn kill_9_mid_burst_then_restart_from_the_journal_loses_and_doubles_nothing() {
    let (a, s) = kill_and_restart(false);
    eprintln!("kill -9 (no cancel-on-disconnect): {a}; second run {s}");
    assert!(a.orders >= 22, "{a}");
}

#[test]
fn kill_9_with_cancel_on_disconnect_reconciles_the_cancels_after_restart() {
    let (a, s) = kill_and_restart(true);
    eprintln!("kill -9 (cancel-on-disconnect): {a}; second run {s}");
    assert!(a.orders >= 22, "{a}");
}

#[test]
fn restart_on_an_empty_journal_with_nothing_to_do_exits_cleanly() {
    let sim = Simulator::start(sim_config()).expect("simulator starts");
    let journal = journal_path("empty");
    let p = spawn_orders(&sim, &journal, &["--count", "0"]);
    let mut lines = Vec::new();
    let (ok, err) = p.finish(&mut lines, Duration::from_secs(20));
    assert!(ok, "{err}\n{}", lines.join("\n"));
    let s = summary(&lines).expect("summary");
    assert_eq!(s["orders"], 0, "{s}");
    assert!(sim.ledger().accepted_labels().is_empty());
}
