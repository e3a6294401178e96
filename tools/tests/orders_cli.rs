//! `spinwire orders` as a user runs it: places, cancels and edits orders against the
//! simulator, prints one JSON line per order event and a summary, exits 0 once every order is
//! final; refuses clearly without credentials.

#[path = "sim_util/orders_cli.rs"]
mod orders_cli_harness;
#[path = "sim_util/orders.rs"]
mod orders_harness;

use std::process::Command;
use std::time::Duration;

use orders_cli_harness::*;
use orders_harness::{journal_path, sim_config, LABEL_PREFIX};
use spinwire_tools::sim::check::{check, EngineOrder};
use spinwire_tools::sim::Simulator;

#[test]
fn orders_command_places_cancels_and_edits_then_exits_once_all_are_final() {
    let sim = Simulator::start(sim_config()).expect("simulator starts");
    let journal = journal_path("cli");
    let p = spawn_orders(
        &sim,
        &journal,
        &[
            "--count",
            "20",
            "--rate",
            "200",
            "--cancel-every",
            "3",
            "--edit-every",
            "4",
            "--cross-every",
            "5",
        ],
    );
    let mut lines = Vec::new();
    let (ok, err) = p.finish(&mut lines, Duration::from_secs(30));
    assert!(ok, "exit status: {err}\n{}", lines.join("\n"));
    let s = summary(&lines).expect("a summary line");
    assert_eq!(s["placed"], 20, "{s}");
    assert_eq!(s["pending"], 0, "{s}");
    assert_eq!(s["restored"], 0, "{s}");
    assert_eq!(s["final"], 20, "{s}");
    // Orders 5, 10, 15, 20 cross the spread (filled at once); 3, 6, 9, 12, 18 are cancelled
    // once accepted (15 filled first). Resting orders may also be filled by a crossing one.
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    assert!(n("filled") >= 4, "{s}");
    assert!(n("cancelled") >= 4, "{s}");
    assert_eq!(n("filled") + n("cancelled") + n("open"), 20, "{s}");
    assert!(lines.iter().any(|l| l.contains("\"kind\":\"edited\"")));
    let orders: Vec<EngineOrder> = fold(&lines).into_values().map(|(o, _)| o).collect();
    let a = check(&sim.ledger(), &orders, LABEL_PREFIX);
    assert!(a.is_clean(), "{a}\n{}", a.problems());
    assert_eq!(a.orders, 20);
    let _ = std::fs::remove_dir_all(journal.parent().unwrap());
}

#[test]
fn orders_command_with_cancel_at_end_leaves_nothing_resting() {
    let sim = Simulator::start(sim_config()).expect("simulator starts");
    let journal = journal_path("cli-cancel-at-end");
    let p = spawn_orders(
        &sim,
        &journal,
        &["--count", "8", "--rate", "200", "--cancel-at-end"],
    );
    let mut lines = Vec::new();
    let (ok, err) = p.finish(&mut lines, Duration::from_secs(30));
    assert!(ok, "exit status: {err}\n{}", lines.join("\n"));
    let s = summary(&lines).expect("a summary line");
    assert_eq!(s["open"], 0, "{s}");
    assert_eq!(s["final"], 8, "{s}");
    let ledger = sim.ledger();
    for label in ledger.accepted_labels() {
        let filled = ledger.filled_amount(label) >= 10.0;
        assert!(
            filled || !ledger.cancels_for(label).is_empty(),
            "{label} left open"
        );
    }
    let orders: Vec<EngineOrder> = fold(&lines).into_values().map(|(o, _)| o).collect();
    let a = check(&ledger, &orders, LABEL_PREFIX);
    assert!(a.is_clean(), "{a}\n{}", a.problems());
    let _ = std::fs::remove_dir_all(journal.parent().unwrap());
}

#[test]
fn orders_command_without_credentials_says_which_variables_to_set() {
    let out = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args([
            "orders",
            "--url",
            "ws://127.0.0.1:9/ws/api/v2",
            "--count",
            "1",
        ])
        .env_remove("SPINWIRE_CLIENT_ID")
        .env_remove("SPINWIRE_CLIENT_SECRET")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SPINWIRE_CLIENT_ID") && err.contains("SPINWIRE_CLIENT_SECRET"),
        "{err}"
    );
}

#[test]
fn orders_help_names_the_journal_and_the_exit_rule() {
    let out = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["orders", "--help"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--journal",
        "--count",
        "--rate",
        "--seconds",
        "--ttl-ms",
        "--cancel-every",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn orders_for_an_unknown_instrument_end_saying_no_price_came_and_why() {
    let sim = Simulator::start(sim_config()).expect("simulator starts");
    let out = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["orders", "--url", &sim.url(), "--count", "3"])
        .args(["--instrument", "NOPE-PERP", "--seconds", "1.5"])
        .args(["--client-credentials", "--heartbeat", "0.2"])
        .env("SPINWIRE_CLIENT_ID", orders_harness::ID)
        .env("SPINWIRE_CLIENT_SECRET", orders_harness::SECRET)
        .output()
        .expect("run spinwire orders");
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.starts_with("spinwire orders:"))
        .unwrap_or_else(|| panic!("no verdict line: {log}"));
    assert!(
        line.contains("no order placed")
            && line.contains("refused the book subscription for NOPE-PERP")
            && line.contains("--price"),
        "{line}"
    );
    sim.shutdown();
}
