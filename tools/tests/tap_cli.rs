//! `spinwire tap --raw URL`: the built binary against real peers on loopback — a tungstenite
//! server, the venue simulator over wss with its own CA, a refused port, an HTTP server that
//! refuses the upgrade.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use spinwire_tools::sim::{SimConfig, Simulator, TlsSetup};
use tungstenite::Message;

fn tap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .arg("tap")
        .args(args)
        .output()
        .expect("run spinwire")
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A one-connection WebSocket server (tungstenite) that sends `messages`, then waits for the
/// client to close.
fn server(messages: Vec<Message>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut ws = tungstenite::accept(sock).unwrap();
        for m in messages {
            ws.send(m).unwrap();
        }
        // Answer the client's close (tungstenite replies by itself), then end.
        while ws.read().is_ok() {}
    });
    addr
}

#[test]
fn text_messages_are_printed_one_per_line_and_tap_exits_after_count() {
    let messages = (0..10).map(|i| Message::text(format!("m{i}"))).collect();
    let addr = server(messages);
    let out = tap(&["--raw", &format!("ws://{addr}/feed"), "--count", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_lines(&out), ["m0", "m1", "m2"]);
    let log = stderr(&out);
    assert!(log.contains("tap: open"), "{log}");
}

#[test]
fn binary_messages_are_printed_as_base64() {
    let addr = server(vec![
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text("after"),
    ]);
    let out = tap(&["--raw", &format!("ws://{addr}/"), "--count", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_lines(&out), ["AAEC/w==", "after"]);
}

#[test]
fn seconds_limit_ends_a_quiet_connection_with_status_zero() {
    let addr = server(vec![]);
    let started = Instant::now();
    let out = tap(&["--raw", &format!("ws://{addr}/"), "--seconds", "0.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout_lines(&out).is_empty());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn refused_connection_exits_nonzero_with_one_clear_line() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let out = tap(&["--raw", &format!("ws://{addr}/"), "--count", "1"]);
    assert!(!out.status.success());
    let log = stderr(&out);
    let last = log.lines().last().unwrap_or("");
    assert!(
        last.starts_with("spinwire tap: connection refused"),
        "{log}"
    );
    assert!(stdout_lines(&out).is_empty());
}

#[test]
fn untrusted_certificate_exits_nonzero_and_ca_file_makes_it_work() {
    let dir = std::env::temp_dir().join(format!("spinwire-tap-ca-{}", std::process::id()));
    let sim = Simulator::start(SimConfig {
        tls: Some(TlsSetup::SelfSigned(dir.clone())),
        ..SimConfig::default()
    })
    .unwrap();
    let url = format!("wss://localhost:{}/ws/api/v2", sim.local_addr().port());

    // The simulator's CA is not among the system roots: verification must fail, clearly.
    let out = tap(&["--raw", &url, "--seconds", "5"]);
    assert!(!out.status.success());
    let log = stderr(&out);
    let last = log.lines().last().unwrap_or("");
    assert!(
        last.starts_with("spinwire tap: TLS verification failed") && last.contains("UnknownIssuer"),
        "{log}"
    );

    // Trusting the simulator's CA, the same URL connects and upgrades.
    let ca = dir.join("ca.pem");
    let out = tap(&[
        "--raw",
        &url,
        "--ca-file",
        ca.to_str().unwrap(),
        "--seconds",
        "0.5",
    ]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("tap: open"), "{log}");
    sim.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn refused_upgrade_exits_nonzero_naming_the_handshake_and_status() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = sock.read(&mut buf);
        let _ = sock.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    });
    let out = tap(&["--raw", &format!("ws://{addr}/nope"), "--count", "1"]);
    assert!(!out.status.success());
    let log = stderr(&out);
    let last = log.lines().last().unwrap_or("");
    assert!(
        last.starts_with("spinwire tap: WebSocket handshake") && last.contains("404"),
        "{log}"
    );
}

#[test]
fn bad_url_is_refused_before_connecting() {
    let out = tap(&["--raw", "http://127.0.0.1:1/"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ws:// or wss://"), "{}", stderr(&out));
}

/// A server that accepts and never answers (holds the connection for `hold`).
fn silent_server(hold: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((sock, _)) = listener.accept() {
            std::thread::sleep(hold);
            drop(sock);
        }
    });
    addr
}

#[test]
fn a_server_that_never_answers_fails_the_run_at_the_connect_timeout_not_exit_0() {
    // Without a timeout the run would wait for --seconds, then exit 0 as if all went well.
    let addr = silent_server(Duration::from_secs(10));
    let started = Instant::now();
    let out = tap(&[
        "--raw",
        &format!("ws://{addr}/"),
        "--seconds",
        "8",
        "--connect-timeout",
        "0.4",
    ]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ended by the timeout"
    );
    let log = stderr(&out);
    let last = log.lines().last().unwrap_or("");
    assert!(
        last.contains("not open after") && last.contains("upgrade got no answer"),
        "{log}"
    );

    // The run's --seconds end before the connection opened: a failure too.
    let addr = silent_server(Duration::from_secs(10));
    let out = tap(&["--raw", &format!("ws://{addr}/"), "--seconds", "0.4"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("not open after"), "{}", stderr(&out));
}

#[test]
fn the_wrong_scheme_for_a_port_is_named_with_the_scheme_to_try() {
    let plain = Simulator::start(SimConfig {
        rate: 0,
        ..SimConfig::default()
    })
    .unwrap();
    let out = tap(&[
        "--raw",
        &plain.url().replace("ws://", "wss://"),
        "--connect-timeout",
        "0.4",
    ]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.lines().last().unwrap_or("").contains("try ws://"),
        "{log}"
    );
    plain.shutdown();

    let dir = std::env::temp_dir().join(format!("spinwire-tap-raw-tls-{}", std::process::id()));
    let tls = Simulator::start(SimConfig {
        rate: 0,
        tls: Some(TlsSetup::SelfSigned(dir.clone())),
        ..SimConfig::default()
    })
    .unwrap();
    let out = tap(&[
        "--raw",
        &tls.url().replace("wss://", "ws://"),
        "--connect-timeout",
        "2",
    ]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.lines().last().unwrap_or("").contains("try wss://"),
        "{log}"
    );
    tls.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
