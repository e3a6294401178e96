//! `spinwire tap --venue deribit`: the built binary against the in-process simulator — records
//! as JSON on stdout, session events as JSON on stderr, reconnects, fatal errors, credentials,
//! and no secret or token in any byte written.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use spinwire_tools::sim::{faults, SimConfig, SimHandle, Simulator, TlsSetup};

const ID: &str = "cli-client";
const SECRET: &str = "cli-secret-do-not-print-8d1f";

fn sim(extra: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut cfg = SimConfig {
        credentials: vec![(ID.into(), SECRET.into())],
        rate: 2000,
        instruments: vec!["BTC-PERPETUAL".into()],
        min_heartbeat: Duration::from_millis(50),
        ..SimConfig::default()
    };
    extra(&mut cfg);
    Simulator::start(cfg).expect("simulator starts")
}

fn tap(sim: &SimHandle, secret: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spinwire"));
    cmd.arg("tap")
        .args([
            "--venue",
            "deribit",
            "--url",
            &sim.url(),
            "--heartbeat",
            "0.2",
        ])
        .args(["--subscribe", "book.BTC-PERPETUAL.raw"])
        .args(["--subscribe", "trades.BTC-PERPETUAL.raw"])
        .args(args)
        .env("SPINWIRE_CLIENT_ID", ID)
        .env("SPINWIRE_CLIENT_SECRET", secret);
    if let Some(ca) = sim.ca_file() {
        cmd.arg("--ca-file").arg(ca);
    }
    cmd.output().expect("run spinwire")
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn events(out: &Output) -> Vec<String> {
    lines(&out.stderr)
        .iter()
        .map(|v| v["event"].as_str().unwrap().to_owned())
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether `text` holds something shaped like one of the simulator's tokens:
/// 13 digits, a dot, 32 hex digits.
fn has_token_shape(text: &[u8]) -> bool {
    text.windows(46).any(|w| {
        w[..13].iter().all(u8::is_ascii_digit)
            && w[13] == b'.'
            && w[14..].iter().all(|b| b.is_ascii_hexdigit())
    })
}

#[test]
fn records_are_printed_as_json_with_channel_instrument_and_change_ids_then_exit_0() {
    let sim = sim(|_| {});
    let out = tap(&sim, SECRET, &["--count", "200"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = lines(&out.stdout);
    assert_eq!(recs.len(), 200);
    let books: Vec<&Value> = recs.iter().filter(|r| r["kind"] == "book").collect();
    assert!(!books.is_empty());
    for r in &recs {
        assert_eq!(r["session"], 0, "one session is session 0: {r}");
    }
    for b in &books {
        assert_eq!(b["channel"], "book.BTC-PERPETUAL.raw");
        assert_eq!(b["instrument"], "BTC-PERPETUAL");
        assert!(b["change_id"].is_u64() && b["prev_change_id"].is_u64());
    }
    let ev = events(&out);
    for e in ["connected", "authenticated", "subscribed", "live"] {
        assert!(ev.iter().any(|x| x == e), "{e} missing: {ev:?}");
    }
    for e in lines(&out.stderr) {
        assert_eq!(e["session"], 0, "one session is session 0: {e}");
    }
    sim.shutdown();
}

#[test]
fn three_sessions_on_one_engine_thread_print_records_and_events_with_their_index() {
    let sim = sim(|_| {});
    let out = tap(&sim, SECRET, &["--sessions", "3", "--seconds", "1.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = lines(&out.stdout);
    let mut per_session = [0usize; 3];
    // Book records chain from each snapshot on, in every session on its own.
    let mut last: [Option<u64>; 3] = [None; 3];
    for r in &recs {
        let i = r["session"]
            .as_u64()
            .unwrap_or_else(|| panic!("record without a session index: {r}"))
            as usize;
        assert!(i < 3, "session index out of range: {r}");
        per_session[i] += 1;
        assert_eq!(r["instrument"], "BTC-PERPETUAL", "{r}");
        if r["kind"] != "book" {
            continue;
        }
        let (id, prev) = (r["change_id"].as_u64(), r["prev_change_id"].as_u64());
        if r["snapshot"] == true {
            last[i] = id;
        } else if Some(id.unwrap()) != last[i] {
            assert_eq!(prev, last[i], "session {i}: chain broken at {r}");
            last[i] = id;
        }
    }
    for (i, n) in per_session.iter().enumerate() {
        assert!(*n > 0, "no record from session {i}: {per_session:?}");
    }
    let evs = lines(&out.stderr);
    assert!(!evs.is_empty(), "{}", stderr(&out));
    for e in &evs {
        let i = e["session"]
            .as_u64()
            .unwrap_or_else(|| panic!("event without a session index: {e}"));
        assert!(i < 3, "session index out of range: {e}");
    }
    for i in 0..3u64 {
        for kind in ["start", "connected", "authenticated", "subscribed", "live"] {
            assert!(
                evs.iter().any(|e| e["session"] == i && e["event"] == kind),
                "session {i}: no {kind} event:\n{}",
                stderr(&out)
            );
        }
    }
    sim.shutdown();
}

#[test]
fn a_sessions_count_outside_1_to_64_is_refused_with_a_clear_error() {
    for n in ["0", "65", "many"] {
        let out = Command::new(env!("CARGO_BIN_EXE_spinwire"))
            .args([
                "tap",
                "--venue",
                "deribit",
                "--url",
                "ws://127.0.0.1:9/ws/api/v2",
            ])
            .args(["--subscribe", "book.BTC-PERPETUAL.raw", "--sessions", n])
            .output()
            .expect("run spinwire");
        assert!(!out.status.success(), "--sessions {n} was accepted");
        let log = stderr(&out);
        assert!(
            log.contains("--sessions") && log.contains("1") && log.contains("64"),
            "--sessions {n}: {log}"
        );
    }
}

#[test]
fn the_tap_survives_drops_by_reconnecting() {
    let sim = sim(|c| c.faults = faults::parse_spec("rst@after=300,conn=1").unwrap());
    let out = tap(&sim, SECRET, &["--count", "3000", "--seconds", "20"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ev = events(&out);
    assert!(ev.iter().any(|x| x == "disconnected"), "{ev:?}");
    assert!(ev.iter().any(|x| x == "reconnecting"), "{ev:?}");
    assert!(ev.iter().filter(|x| *x == "live").count() >= 2, "{ev:?}");
    let disc = lines(&out.stderr)
        .into_iter()
        .find(|v| v["event"] == "disconnected")
        .unwrap();
    assert!(disc["cause"].is_string());
    // Book records chain from each snapshot on.
    let mut last = None;
    for r in lines(&out.stdout).iter().filter(|r| r["kind"] == "book") {
        let (id, prev) = (r["change_id"].as_u64(), r["prev_change_id"].as_u64());
        if r["snapshot"] == true {
            last = id;
        } else if Some(id.unwrap()) != last {
            assert_eq!(prev, last, "chain broken at {r}");
            last = id;
        }
    }
    sim.shutdown();
}

#[test]
fn bad_credentials_end_the_tap_non_zero_with_one_clear_line() {
    let sim = sim(|_| {});
    let out = tap(&sim, "wrong-secret", &["--count", "10"]);
    assert!(!out.status.success());
    let log = stderr(&out);
    let last = log.lines().last().unwrap();
    assert!(last.starts_with("spinwire tap: fatal:"), "{log}");
    assert!(last.contains("13004"), "{last}");
    assert!(events(&out).iter().any(|x| x == "fatal"));
    sim.shutdown();
}

#[test]
fn the_tap_exits_0_after_the_given_seconds() {
    let sim = sim(|c| c.rate = 0);
    let t = std::time::Instant::now();
    let out = tap(&sim, SECRET, &["--seconds", "0.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(t.elapsed() < Duration::from_secs(5));
    sim.shutdown();
}

fn creds_file(mode: u32) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "spinwire-tap-creds-{}-{mode:o}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("deribit.creds");
    std::fs::write(&p, format!("client_id = {ID}\nclient_secret = {SECRET}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn a_credentials_file_readable_by_others_is_refused_with_a_clear_error() {
    let sim = sim(|_| {});
    let p = creds_file(0o644);
    let out = tap(
        &sim,
        "",
        &["--count", "1", "--credentials-file", p.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(log.contains("readable by group or others"), "{log}");
    assert!(!log.contains(SECRET));
    sim.shutdown();
}

#[test]
fn a_private_credentials_file_is_used() {
    let sim = sim(|_| {});
    let p = creds_file(0o600);
    let out = tap(
        &sim,
        "",
        &["--count", "20", "--credentials-file", p.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(events(&out).iter().any(|x| x == "authenticated"));
    sim.shutdown();
}

#[test]
fn no_secret_or_token_appears_in_any_output_at_the_most_verbose_level() {
    // Short token lifetime (refreshes), a reconnect (resumption with the refresh token), TLS,
    // and client_credentials (the secret crosses the wire) with a session scope.
    let dir = std::env::temp_dir().join(format!("spinwire-tap-secret-{}", std::process::id()));
    let sim = sim(|c| {
        c.token_ttl = Duration::from_secs(1);
        c.tls = Some(TlsSetup::SelfSigned(dir.clone()));
        c.faults = faults::parse_spec("rst@after=400,conn=1").unwrap();
    });
    let out = tap(
        &sim,
        SECRET,
        &[
            "-v",
            "--client-credentials",
            "--session-name",
            "tap",
            "--seconds",
            "3",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ev = events(&out);
    assert!(ev.iter().any(|x| x == "token_refreshed"), "{ev:?}");
    assert!(ev.iter().filter(|x| *x == "live").count() >= 2, "{ev:?}");
    assert!(ev.iter().any(|x| x == "stats"), "{ev:?}");
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(SECRET), "secret in {name}");
        assert!(!has_token_shape(bytes), "token in {name}");
    }
    // The check itself can fail: a token-shaped string is found.
    assert!(has_token_shape(
        b"x 1763790000123.0123456789abcdef0123456789abcdef y"
    ));
    sim.shutdown();
}

#[test]
fn an_untrusted_certificate_ends_the_tap_non_zero_instead_of_retrying() {
    let dir = std::env::temp_dir().join(format!("spinwire-tap-badcert-{}", std::process::id()));
    let sim = sim(|c| c.tls = Some(TlsSetup::SelfSigned(dir.clone())));
    // No --ca-file: the simulator's self-signed CA is not trusted. Were the certificate
    // retried like a dropped connection, the tap would run its 30 s and exit 0.
    let out = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["tap", "--venue", "deribit", "--url", &sim.url()])
        .args(["--subscribe", "book.BTC-PERPETUAL.raw", "--seconds", "30"])
        .env("SPINWIRE_CLIENT_ID", ID)
        .env("SPINWIRE_CLIENT_SECRET", SECRET)
        .output()
        .expect("run spinwire");
    assert!(!out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    let last = log.lines().last().unwrap_or("");
    assert!(last.starts_with("spinwire tap:"), "{log}");
    assert!(
        last.contains("certificate") && last.contains("UnknownIssuer"),
        "{last}"
    );
    assert!(events(&out).iter().any(|x| x == "fatal"), "{log}");
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `spinwire tap --venue deribit --url URL --subscribe book... ARGS`, public (no credentials).
fn tap_url(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["tap", "--venue", "deribit", "--url", url])
        .args(["--subscribe", "book.BTC-PERPETUAL.raw"])
        .args(args)
        .env_remove("SPINWIRE_CLIENT_ID")
        .env_remove("SPINWIRE_CLIENT_SECRET")
        .output()
        .expect("run spinwire")
}

/// The last line of stderr, which must be the run's one-line verdict.
fn verdict(out: &Output) -> String {
    let log = stderr(out);
    let last = log.lines().last().unwrap_or("").to_owned();
    assert!(last.starts_with("spinwire tap: "), "{log}");
    last
}

#[test]
fn a_run_that_never_went_live_exits_non_zero_saying_what_failed_and_what_to_try() {
    // Nothing listens: refused, retried for the whole run, then one line and a failure.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tap_url(
        &format!("ws://127.0.0.1:{port}/ws/api/v2"),
        &["--seconds", "0.5"],
    );
    assert!(!out.status.success(), "{}", stderr(&out));
    let last = verdict(&out);
    assert!(
        last.contains("never went live")
            && last.contains(&format!("127.0.0.1:{port} refused"))
            && last.contains("nothing listens there"),
        "{last}"
    );
    assert!(
        lines(&out.stderr)
            .iter()
            .any(|e| e["cause"] == "connection_refused"),
        "{}",
        stderr(&out)
    );

    // wss:// to a plain port: the TLS handshake gets no answer until the connect timeout.
    let plain = sim(|c| c.rate = 0);
    let url = plain.url().replace("ws://", "wss://");
    let out = tap_url(&url, &["--seconds", "1", "--connect-timeout", "0.3"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let last = verdict(&out);
    assert!(
        last.contains("did not open in time") && last.contains("try ws://"),
        "{last}"
    );
    plain.shutdown();

    // ws:// to a TLS port: the server drops the plain upgrade request.
    let dir = std::env::temp_dir().join(format!("spinwire-tap-tlsport-{}", std::process::id()));
    let tls = sim(|c| c.tls = Some(TlsSetup::SelfSigned(dir.clone())));
    let url = tls.url().replace("wss://", "ws://");
    let out = tap_url(&url, &["--seconds", "0.5"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(verdict(&out).contains("try wss://"), "{}", stderr(&out));
    tls.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_clean_exit_ends_with_the_logout_at_info_level_not_a_warning() {
    let sim = sim(|_| {});
    let out = tap(&sim, SECRET, &["--seconds", "0.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ev = lines(&out.stderr);
    let last_disconnect = ev
        .iter()
        .rev()
        .find(|e| e["event"] == "disconnected")
        .unwrap_or_else(|| panic!("no disconnected event: {}", stderr(&out)));
    assert_eq!(last_disconnect["cause"], "logout", "{last_disconnect}");
    assert_eq!(last_disconnect["level"], "info", "{last_disconnect}");
    assert!(
        !ev.iter()
            .any(|e| e["event"] == "disconnected" && e["level"] == "warn"),
        "a clean run loses no connection: {}",
        stderr(&out)
    );
    sim.shutdown();
}

#[test]
fn refused_subscriptions_with_no_data_end_the_run_non_zero_naming_channel_and_code() {
    let sim = sim(|_| {});
    // Public session, raw channel: the venue wants a login (13778).
    let out = tap_url(&sim.url(), &["--seconds", "0.5"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let last = verdict(&out);
    assert!(
        last.contains("book.BTC-PERPETUAL.raw")
            && last.contains("13778")
            && last.contains("SPINWIRE_CLIENT_ID"),
        "{last}"
    );
    // With credentials, a channel the venue does not know (-32602).
    let out = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .args(["tap", "--venue", "deribit", "--url", &sim.url()])
        .args(["--subscribe", "book.NOPE-PERPETUAL.raw", "--seconds", "0.5"])
        .env("SPINWIRE_CLIENT_ID", ID)
        .env("SPINWIRE_CLIENT_SECRET", SECRET)
        .output()
        .expect("run spinwire");
    assert!(!out.status.success(), "{}", stderr(&out));
    let last = verdict(&out);
    assert!(
        last.contains("book.NOPE-PERPETUAL.raw") && last.contains("-32602"),
        "{last}"
    );
    sim.shutdown();
}
