//! Driving `spinwire orders` as a child process (the crash test and the stress run): spawn it
//! against a simulator with a journal, read its JSON lines, kill it, fold its events into the
//! engine view the ledger checker compares. Included with
//! `#[path = "sim_util/orders_cli.rs"] mod orders_cli_harness;` next to `orders.rs`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use spinwire_tools::sim::check::{check, Agreement, EngineFill, EngineOrder, Outcome};
use spinwire_tools::sim::{SimConfig, SimHandle, Simulator};

use crate::orders_harness::{journal_path, ID, LABEL_PREFIX, SECRET};

/// A running `spinwire orders` with its stdout lines arriving on a channel.
pub struct Proc {
    /// The process.
    pub child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

/// Starts `spinwire orders` on `sim` with `journal` and `extra` arguments.
pub fn spawn_orders(sim: &SimHandle, journal: &Path, extra: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["orders", "--url", &sim.url(), "--journal"])
        .arg(journal)
        .args([
            "--instrument",
            "BTC-PERPETUAL",
            "--price",
            "60000",
            "--heartbeat",
            "0.2",
            "--order-rate",
            "200",
            "--client-credentials",
            "--seconds",
            "20",
        ])
        .args(extra)
        .env("SPINWIRE_CLIENT_ID", ID)
        .env("SPINWIRE_CLIENT_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spinwire orders starts");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    Proc {
        child,
        lines,
        stderr,
    }
}

impl Proc {
    /// Reads lines until `stop` says so (true) or `timeout` passes (false).
    pub fn read_until(
        &mut self,
        got: &mut Vec<String>,
        timeout: Duration,
        mut stop: impl FnMut(&[String]) -> bool,
    ) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if stop(got) {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(l) => got.push(l),
                Err(_) => return stop(got),
            }
        }
    }

    /// Waits for the process to end (killing it after `timeout`); collects the remaining
    /// lines; returns (exit success, stderr).
    pub fn finish(mut self, got: &mut Vec<String>, timeout: Duration) -> (bool, String) {
        let end = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break Some(s);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            while let Ok(l) = self.lines.try_recv() {
                got.push(l);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            got.push(l);
        }
        let err = self.stderr.join().unwrap_or_default();
        (status.is_some_and(|s| s.success()), err)
    }
}

/// The `kind` of an event line.
pub fn kind(l: &Value) -> &str {
    l["kind"].as_str().unwrap_or("")
}

/// Folds the event lines of both runs into the engine's view, per tag.
pub fn fold(lines: &[String]) -> BTreeMap<u64, (EngineOrder, bool)> {
    let mut view: BTreeMap<u64, (EngineOrder, bool)> = BTreeMap::new();
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
        let Some(tag) = v["tag"].as_u64() else {
            continue; // the summary line
        };
        let (o, accepted) = view
            .entry(tag)
            .or_insert_with(|| (EngineOrder::new(""), false));
        if let Some(label) = v["label"].as_str() {
            o.label = label.to_string();
        }
        let fill = || EngineFill {
            trade_seq: v["trade_seq"].as_u64().expect("fill has trade_seq"),
            amount: v["amount"].as_f64().expect("fill has amount"),
        };
        match kind(&v) {
            "accepted" => {
                *accepted = true;
                if !matches!(o.outcome, Outcome::Filled | Outcome::Cancelled) {
                    o.outcome = Outcome::Open;
                }
            }
            "rejected" if !*accepted => o.outcome = Outcome::Rejected,
            "refused" if !*accepted && v["label"].is_null() => o.outcome = Outcome::Refused,
            "partially_filled" => {
                *accepted = true;
                o.fills.push(fill());
                if !matches!(o.outcome, Outcome::Filled | Outcome::Cancelled) {
                    o.outcome = Outcome::Open;
                }
            }
            "filled" => {
                *accepted = true;
                o.fills.push(fill());
                o.outcome = Outcome::Filled;
            }
            "cancelled" => {
                *accepted = true;
                o.outcome = Outcome::Cancelled;
            }
            "edited" => {
                *accepted = true;
                o.edited = Some((v["amount"].as_f64().unwrap(), v["price"].as_f64()));
                if o.outcome == Outcome::Pending {
                    o.outcome = Outcome::Open;
                }
            }
            "change_rejected" if *accepted && o.outcome == Outcome::Pending => {
                o.outcome = Outcome::Open;
            }
            "expired" => o.outcome = Outcome::Expired,
            "unknown" | "resent" => o.outcome = Outcome::Pending,
            _ => {}
        }
    }
    view
}

/// Lines reporting an accepted order.
pub fn accepted_lines(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|l| l.contains("\"kind\":\"accepted\""))
        .count()
}

/// The summary object of the last summary line.
pub fn summary(lines: &[String]) -> Option<Value> {
    lines
        .iter()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v.get("summary").cloned())
}

/// What one kill-and-restart round found.
pub struct CrashRound {
    /// The first run was killed before it finished its burst.
    pub killed_mid_burst: bool,
    /// The second run exited 0 (every order final).
    pub restart_ok: bool,
    /// The ledger comparison over both runs.
    pub agreement: Agreement,
    /// The second run's summary.
    pub summary: Option<Value>,
    /// Both runs' output and stderr and the ledger, for a failure message.
    pub diagnostics: String,
}

/// One round: `spinwire orders` places a burst of 60 orders (some cancelled, some edited)
/// with a journal, is killed with SIGKILL once `kill_after` orders were accepted, then runs
/// again on the same journal with 10 new orders and cancels what is left open before it
/// exits; the two runs' events are compared with the ledger.
pub fn crash_round(sim_cfg: SimConfig, kill_after: usize, cod: bool) -> CrashRound {
    let sim = Simulator::start(sim_cfg).expect("simulator starts");
    let journal = journal_path("crash");
    let mut common = vec!["--cancel-every", "4", "--edit-every", "7"];
    if cod {
        common.push("--cancel-on-disconnect");
    }
    let mut first_args = vec!["--count", "60", "--rate", "60"];
    first_args.extend(&common);
    let mut p = spawn_orders(&sim, &journal, &first_args);
    let mut first = Vec::new();
    let reached = p.read_until(&mut first, Duration::from_secs(20), |l| {
        accepted_lines(l) >= kill_after
    });
    // SIGKILL: no logout, no flush, no destructor.
    let _ = p.child.kill();
    let (_, err1) = p.finish(&mut first, Duration::from_secs(5));
    let killed_mid_burst = reached && summary(&first).is_none();
    // The second run cancels what is still open before it exits, so the market cannot fill
    // anything after the engine's last word.
    let mut second_args = vec![
        "--count",
        "10",
        "--rate",
        "100",
        "--first-tag",
        "1001",
        "--cancel-at-end",
    ];
    second_args.extend(&common);
    let p = spawn_orders(&sim, &journal, &second_args);
    let mut second = Vec::new();
    let (restart_ok, err2) = p.finish(&mut second, Duration::from_secs(40));
    let all: Vec<String> = first.iter().chain(second.iter()).cloned().collect();
    let orders: Vec<EngineOrder> = fold(&all).into_values().map(|(o, _)| o).collect();
    let ledger = sim.shutdown();
    let agreement = check(&ledger, &orders, LABEL_PREFIX);
    let diagnostics = format!(
        "first run (killed after {kill_after} accepted: reached={reached}) stderr:\n{err1}\n\
         second run stderr:\n{err2}\nfirst run:\n{}\nsecond run:\n{}\nledger:\n{}",
        first.join("\n"),
        second.join("\n"),
        ledger_lines(&ledger)
    );
    if let Some(dir) = journal.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    CrashRound {
        killed_mid_burst,
        restart_ok,
        agreement,
        summary: summary(&second),
        diagnostics,
    }
}

/// The ledger, one compact JSON entry per line.
pub fn ledger_lines(ledger: &spinwire_tools::sim::Ledger) -> String {
    ledger
        .entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}
