//! The `spinwire sim` command: argument handling, serving, and the ledger file written on
//! SIGTERM.

mod sim_util;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use serde_json::json;
use sim_util::*;
use spinwire_tools::sim::Ledger;

fn spinwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spinwire"))
}

#[test]
fn sim_serves_until_sigterm_then_writes_the_ledger() {
    let dir = temp_dir("cli");
    let ledger = dir.join("ledger.json");
    let certs = dir.join("certs");
    let mut child = spinwire()
        .args([
            "sim",
            "--venue",
            "deribit",
            "--listen",
            "127.0.0.1:0",
            "--rate",
            "100",
        ])
        .args(["--instruments", "BTC-PERPETUAL,ETH-PERPETUAL"])
        .args(["--credentials", &format!("{ID}:{SECRET}")])
        .args(["--faults", "gap@every=1s"])
        .arg("--tls-self-signed")
        .arg(&certs)
        .arg("--ledger")
        .arg(&ledger)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spinwire");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("sim prints its address").unwrap();
        if let Some(u) = line.strip_prefix("spinwire sim: listening on ") {
            break u.to_string();
        }
    };
    let addr: SocketAddr = url
        .strip_prefix("wss://")
        .and_then(|r| r.strip_suffix("/ws/api/v2"))
        .expect("wss url")
        .parse()
        .unwrap();
    let mut c = Client::try_connect_to(addr, Some(&certs.join("ca.pem"))).unwrap();
    c.auth();
    let r = c.ok(
        "private/buy",
        json!({"instrument_name":"BTC-PERPETUAL","amount":10.0,"price":1000.0,"label":"cli"}),
    );
    assert_eq!(r["order"]["order_state"], "open");
    // SAFETY: `child.id()` is the pid of the child we spawned and still own.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let written: Ledger = serde_json::from_str(&std::fs::read_to_string(&ledger).unwrap()).unwrap();
    assert_eq!(written.accepted_count("cli"), 1);
}

#[test]
fn sim_refuses_an_unknown_fault_with_a_clear_message() {
    let out = spinwire()
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--faults",
            "explode@after=3",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown fault \"explode\""), "{err}");
}

#[test]
fn sim_help_documents_the_fault_grammar() {
    let out = spinwire().args(["sim", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "FAULT SPEC",
        "after=N",
        "withhold(exec=0|1)",
        "tls_no_close_notify",
    ] {
        assert!(help.contains(word), "help mentions {word}");
    }
}

#[test]
fn sim_refuses_a_bad_refresh_ttl_with_a_clear_message() {
    let out = spinwire()
        .args(["sim", "--listen", "127.0.0.1:0", "--refresh-ttl", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--refresh-ttl"), "{err}");
    assert!(err.contains("bad duration \"soon\""), "{err}");
    assert!(!err.contains("fault"), "not a fault spec: {err}");
}
