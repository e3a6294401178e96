//! Bad values and unusable paths are refused up front with a line that names them, instead of
//! being swallowed, ignored or found out after the run.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn spinwire(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(args)
        .env_remove("SPINWIRE_CLIENT_ID")
        .env_remove("SPINWIRE_CLIENT_SECRET")
        .output()
        .expect("run spinwire")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_negative_duration_is_named_as_a_bad_number_of_seconds() {
    for args in [
        &["tap", "--raw", "ws://127.0.0.1:9/", "--seconds", "-1"][..],
        &["demo", "--seconds", "-1"][..],
        &[
            "orders",
            "--url",
            "ws://127.0.0.1:9/",
            "--count",
            "1",
            "--seconds",
            "-1",
        ][..],
    ] {
        let out = spinwire(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("'-1' for '--seconds")
                && (err.contains("is not a number of seconds")
                    || err.contains("is not a positive number")),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn an_order_rate_of_zero_is_refused_not_ignored() {
    let out = spinwire(&[
        "orders",
        "--url",
        "ws://127.0.0.1:9/",
        "--count",
        "1",
        "--order-rate",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--order-rate"), "{}", stderr(&out));
}

#[test]
fn output_paths_that_cannot_be_written_fail_before_the_run() {
    let missing = std::env::temp_dir().join(format!("spinwire-missing-{}", std::process::id()));
    let ledger = missing.join("ledger.json");
    let t = Instant::now();
    let out = spinwire(&[
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--ledger",
        ledger.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ledger file"), "{}", stderr(&out));
    let summary = missing.join("summary.json");
    let out = spinwire(&[
        "demo",
        "--seconds",
        "30",
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("summary.json"), "{}", stderr(&out));
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "refused before the 30 s run"
    );
}

#[test]
fn the_simulator_listens_on_a_host_name_and_keeps_its_tls_key_private() {
    let dir = std::env::temp_dir().join(format!("spinwire-sim-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["sim", "--listen", "localhost:0", "--tls-self-signed"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spinwire sim starts");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening on wss://"), "{line}");
    let mode = std::fs::metadata(dir.join("server.key"))
        .expect("server.key written")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "server.key is readable by others: {mode:o}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
