//! `spinwire demo`: a short run with and without faults writes a summary that adds up and a
//! complete latency report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spinwire-demo-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn demo(dir: &Path, extra: &[&str]) -> (Output, Value) {
    let json = dir.join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["demo", "--seconds", "3", "--summary-json"])
        .arg(&json)
        .arg("--report-dir")
        .arg(dir.join("report"))
        .args(extra)
        .output()
        .expect("run spinwire demo");
    assert!(
        out.status.success(),
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("summary json written");
    (out, serde_json::from_str(&text).expect("summary is JSON"))
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("{} is not a count in {v:#}", path.join(".")))
}

fn check_common(dir: &Path, out: &Output, v: &Value) {
    assert!(u(v, &["messages"]) > 0, "{v:#}");
    let _ = u(v, &["ring_drops"]);
    for k in [
        "sent",
        "accepted",
        "rejected",
        "filled",
        "cancelled",
        "expired",
        "resent",
    ] {
        let _ = u(v, &["orders", k]);
    }
    assert!(
        u(v, &["orders", "sent"]) > 0,
        "the strategy quoted nothing: {v:#}"
    );
    let w = ["latency_ns", "wire_to_strategy"];
    let p = |k: &str| u(v, &[w[0], w[1], k]);
    assert!(
        0 < p("p50") && p("p50") <= p("p99") && p("p99") <= p("p999") && p("p999") <= p("max"),
        "{v:#}"
    );
    for stage in ["socket_to_frame", "record_to_ring", "ring_to_strategy"] {
        assert!(u(v, &["latency_ns", stage, "count"]) > 0, "{stage}: {v:#}");
    }
    let report = dir.join("report");
    for f in [
        "index.html",
        "wire_to_strategy.hgrm",
        "intervals.hlog",
        "percentiles.svg",
        "run.json",
    ] {
        let len = std::fs::metadata(report.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .len();
        assert!(len > 0, "{f} is empty");
    }
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(
        html.contains("spinwire demo"),
        "settings missing from index.html"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("wire_to_strategy"),
        "no summary table:\n{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("msg/s"), "no progress line:\n{stderr}");
    assert!(
        stderr.contains("cores") || stderr.contains("core(s)"),
        "{stderr}"
    );
}

#[test]
fn demo_with_faults_reconnects_and_writes_summary_and_report() {
    let dir = scratch("faults");
    let (out, v) = demo(&dir, &[]);
    check_common(&dir, &out, &v);
    assert!(u(&v, &["reconnects"]) >= 1, "{v:#}");
    assert_eq!(v["faults"].as_array().map(Vec::len), Some(3), "{v:#}");
    assert!(
        u(&v, &["latency_ns", "reconnect_downtime", "max"]) > 0,
        "{v:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_without_faults_runs_clean() {
    let dir = scratch("clean");
    let (out, v) = demo(&dir, &["--no-faults"]);
    check_common(&dir, &out, &v);
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(1), "{v:#}");
    assert_eq!(
        v["sessions"][0]["messages"].as_u64(),
        Some(u(&v, &["messages"])),
        "{v:#}"
    );
    assert_eq!(u(&v, &["reconnects"]), 0, "{v:#}");
    assert_eq!(v["faults"].as_array().map(Vec::len), Some(0), "{v:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_with_three_sessions_counts_each_and_totals_them() {
    let dir = scratch("sessions");
    let (out, v) = demo(&dir, &["--no-faults", "--sessions", "3"]);
    check_common(&dir, &out, &v);
    let sessions = v["sessions"].as_array().expect("sessions array");
    assert_eq!(sessions.len(), 3, "{v:#}");
    for (i, s) in sessions.iter().enumerate() {
        assert_eq!(u(s, &["session"]), i as u64, "{v:#}");
        assert!(u(s, &["messages"]) > 0, "session {i}: {v:#}");
        assert!(u(s, &["records"]) > 0, "session {i}: {v:#}");
        assert_eq!(s["quoting"], i == 0, "{v:#}");
    }
    for k in ["messages", "records", "reconnects", "ring_drops"] {
        let sum: u64 = sessions.iter().map(|s| u(s, &[k])).sum();
        assert_eq!(u(&v, &[k]), sum, "{k} is not the total: {v:#}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_refuses_a_sessions_count_outside_1_to_64() {
    let out = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["demo", "--sessions", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--sessions"), "{stderr}");
}

#[test]
fn demo_rejects_a_non_positive_duration() {
    let out = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["demo", "--seconds", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--seconds"), "{stderr}");
}

#[test]
fn demo_interrupted_by_sigint_still_writes_its_summary_and_report() {
    let dir = scratch("sigint");
    let json = dir.join("summary.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["demo", "--seconds", "60", "--quiet", "--summary-json"])
        .arg(&json)
        .arg("--report-dir")
        .arg(dir.join("report"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: kill(2) with the pid of our own live child and a valid signal number.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let start = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        start.elapsed().as_secs() < 20,
        "did not stop soon after SIGINT"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(v["seconds"].as_f64().unwrap() < 30.0, "{v:#}");
    assert!(dir.join("report/index.html").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `spinwire demo --url URL --venue deribit --seconds 1 ARGS` with `env`, in `dir`.
fn demo_external(dir: &Path, url: &str, env: &[(&str, &str)], extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spinwire"));
    cmd.args(["demo", "--seconds", "1", "--venue", "deribit", "--url", url])
        .arg("--summary-json")
        .arg(dir.join("summary.json"))
        .arg("--report-dir")
        .arg(dir.join("report"))
        .args(extra)
        .env_remove("SPINWIRE_CLIENT_ID")
        .env_remove("SPINWIRE_CLIENT_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run spinwire demo")
}

fn last_stderr_line(out: &Output) -> String {
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    log.lines().last().unwrap_or("").to_owned()
}

#[test]
fn a_demo_that_never_went_live_or_failed_for_good_exits_non_zero_saying_why() {
    // Nothing listens: not "messages 0" and exit 0, but the reason, after the summary.
    let dir = scratch("refused");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = demo_external(&dir, &format!("ws://127.0.0.1:{port}/ws/api/v2"), &[], &[]);
    assert!(!out.status.success());
    let last = last_stderr_line(&out);
    assert!(
        last.starts_with("spinwire demo: session 0 never went live") && last.contains("refused"),
        "{last}"
    );
    assert!(
        dir.join("summary.json").exists(),
        "the summary is still written"
    );

    // Credentials the venue refuses, with --quote: failed for good, named as such.
    let sim = spinwire_tools::sim::Simulator::start(spinwire_tools::sim::SimConfig {
        credentials: vec![("right-id".into(), "right-secret".into())],
        rate: 100,
        ..spinwire_tools::sim::SimConfig::default()
    })
    .unwrap();
    let dir = scratch("badcreds");
    let out = demo_external(
        &dir,
        &sim.url(),
        &[
            ("SPINWIRE_CLIENT_ID", "wrong-id"),
            ("SPINWIRE_CLIENT_SECRET", "wrong-secret"),
        ],
        &["--quote"],
    );
    assert!(!out.status.success());
    let last = last_stderr_line(&out);
    assert!(
        last.contains("failed for good") && last.contains("refused the credentials"),
        "{last}"
    );
    assert!(!last.contains("wrong-secret"), "no secret in the output");
    sim.shutdown();
}
