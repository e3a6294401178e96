//! Interop of spinwire's WebSocket client (`WsConnection`: transport + handshake + codec)
//! with an independent peer: the Python `websockets` library (engine/tests/peers/ws_peer.py),
//! over ws:// and over wss:// with a private CA made here by rcgen.
//!
//! The peer runs from ./.venv, which `tools/ci/setup.sh` creates (the test command runs it).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use spinwire_engine::connection::{ConnError, ConnectionConfig, Drive, Event, WsConnection};
use spinwire_engine::reactor::{PollMode, Reactor};
use spinwire_engine::transport::{Security, TlsConfig};
use spinwire_engine::ws::{Config, HandshakeRequest, Message, ProtocolError};

const DEADLINE: Duration = Duration::from_secs(20);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A private CA and a server certificate for 127.0.0.1 / localhost, as PEM files in a temp dir.
struct Pki {
    dir: PathBuf,
    ca_pem: String,
}

impl Pki {
    fn new(tag: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "spinwire interop CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let dir =
            std::env::temp_dir().join(format!("spinwire-interop-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        Self {
            dir,
            ca_pem: ca.pem(),
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Python peer, alive until dropped (it exits when its stdin closes).
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    lines: Receiver<String>,
}

impl Peer {
    fn start(pki: Option<&Pki>) -> Self {
        let python = workspace().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run `bash tools/ci/setup.sh` (the test command does) to install the \
             Python test peers",
            python.display()
        );
        let mut cmd = Command::new(python);
        cmd.arg(workspace().join("engine/tests/peers/ws_peer.py"));
        if let Some(pki) = pki {
            cmd.arg("--cert")
                .arg(pki.dir.join("server.pem"))
                .arg("--key")
                .arg(pki.dir.join("server.key"));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Python peer");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(DEADLINE)
            .expect("the Python peer did not start");
        let port = first
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the peer: {first}"));
        Self {
            stdin: child.stdin.take(),
            child,
            port,
            lines,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The next line the peer prints (e.g. `CLOSE 1009`).
    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(DEADLINE)
            .expect("no line from the peer")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the client saw, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Open,
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Close(Option<u16>),
}

/// How the connection ended.
#[derive(Debug)]
enum End {
    Clean,
    Failed(ConnError),
}

/// Connects to `path` on the peer, sends `to_send` once open (and closes with 1000 when
/// `close_after` messages have arrived), and runs until the connection ends.
fn run(
    peer: &Peer,
    tls: Option<&Pki>,
    path: &str,
    config: ConnectionConfig,
    to_send: &[Got],
    close_after: Option<usize>,
) -> (Vec<Got>, End) {
    let tls_config: Option<TlsConfig> = tls.map(|pki| {
        TlsConfig::builder()
            .ca_pem(pki.ca_pem.as_bytes())
            .build()
            .unwrap()
    });
    let security = match &tls_config {
        Some(config) => Security::Tls {
            config,
            host: "localhost",
        },
        None => Security::Plain,
    };
    let request = HandshakeRequest::new("localhost", peer.port, path);
    let mut reactor: Reactor<WsConnection> =
        Reactor::new(1, 64, PollMode::Blocking(Some(Duration::from_millis(10)))).unwrap();
    let token = reactor
        .insert_with(|token, registry| {
            let mut conn = WsConnection::connect(peer.addr(), security, &request, &config)
                .map_err(|e| e.to_string())?;
            conn.register(registry, token).map_err(|e| e.to_string())?;
            Ok::<_, String>(conn)
        })
        .unwrap();
    let mut got = Vec::new();
    let started = Instant::now();
    let mut again = true;
    loop {
        assert!(
            started.elapsed() < DEADLINE,
            "connection to {path} did not end; saw {got:?}"
        );
        let mut ready = again;
        reactor.turn(|_, _, _, _| ready = true).unwrap();
        if !ready {
            continue;
        }
        let conn = reactor.get_mut(token).unwrap();
        let mut data_messages = got
            .iter()
            .filter(|g| matches!(g, Got::Text(_) | Got::Binary(_)))
            .count();
        let result = conn.drive(|event, outbox| match event {
            Event::Open => {
                got.push(Got::Open);
                for m in to_send {
                    match m {
                        Got::Text(t) => outbox.send_text(t).unwrap(),
                        Got::Binary(b) => outbox.send_binary(b).unwrap(),
                        other => panic!("cannot send {other:?}"),
                    }
                }
            }
            Event::Message(m) => got.push(match m {
                Message::Text(t) => {
                    data_messages += 1;
                    Got::Text(t.to_owned())
                }
                Message::Binary(b) => {
                    data_messages += 1;
                    Got::Binary(b.to_owned())
                }
                Message::Ping(p) => Got::Ping(p.to_owned()),
                Message::Pong(_) => return,
                Message::Close(frame) => Got::Close(frame.map(|f| f.code)),
            }),
        });
        if close_after == Some(data_messages) {
            conn.close(1000, "done").unwrap();
        }
        match result {
            Ok(Drive::Again) => again = true,
            Ok(Drive::Wait) => again = false,
            Ok(Drive::Closed) => return (got, End::Clean),
            Err(e) => return (got, End::Failed(e)),
        }
    }
}

fn echo_both_kinds(tls: bool) {
    let pki = tls.then(|| Pki::new("echo"));
    let peer = Peer::start(pki.as_ref());
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let to_send = [
        Got::Text("héllo, wörld".into()),
        Got::Binary(binary.clone()),
    ];
    let (got, end) = run(
        &peer,
        pki.as_ref(),
        "/echo",
        ConnectionConfig::default(),
        &to_send,
        Some(2),
    );
    assert!(matches!(end, End::Clean), "{end:?}");
    assert_eq!(
        got,
        vec![
            Got::Open,
            Got::Text("héllo, wörld".into()),
            Got::Binary(binary),
            Got::Close(Some(1000)),
        ]
    );
}

#[test]
fn text_and_binary_are_echoed_by_websockets_over_ws() {
    echo_both_kinds(false);
}

#[test]
fn text_and_binary_are_echoed_by_websockets_over_wss() {
    echo_both_kinds(true);
}

fn fragmented(tls: bool) {
    let pki = tls.then(|| Pki::new("frag"));
    let peer = Peer::start(pki.as_ref());
    let (got, end) = run(
        &peer,
        pki.as_ref(),
        "/fragmented?n=7",
        ConnectionConfig::default(),
        &[],
        Some(1),
    );
    assert!(matches!(end, End::Clean), "{end:?}");
    let whole: String = (0..7).map(|i| format!("part{i}-")).collect();
    assert_eq!(got[..2], [Got::Open, Got::Text(whole)]);
}

#[test]
fn fragmented_message_from_websockets_arrives_whole_over_ws() {
    fragmented(false);
}

#[test]
fn fragmented_message_from_websockets_arrives_whole_over_wss() {
    fragmented(true);
}

#[test]
fn server_ping_is_answered_with_a_pong_websockets_accepts() {
    for tls in [false, true] {
        let pki = tls.then(|| Pki::new("ping"));
        let peer = Peer::start(pki.as_ref());
        let (got, end) = run(
            &peer,
            pki.as_ref(),
            "/ping",
            ConnectionConfig::default(),
            &[],
            Some(1),
        );
        assert!(matches!(end, End::Clean), "tls={tls}: {end:?}");
        assert_eq!(
            got[..3],
            [
                Got::Open,
                Got::Ping(b"are-you-there".to_vec()),
                Got::Text("pong-ok".into())
            ],
            "tls={tls}"
        );
    }
}

/// Limits of 64 KiB per frame and per message.
fn limited() -> ConnectionConfig {
    ConnectionConfig {
        ws: Config {
            max_frame_size: 64 * 1024,
            max_message_size: 64 * 1024,
            read_buffer_size: 64 * 1024,
        },
        ..ConnectionConfig::default()
    }
}

#[test]
fn message_exactly_at_the_size_limit_is_received() {
    for tls in [false, true] {
        let pki = tls.then(|| Pki::new("limit"));
        let peer = Peer::start(pki.as_ref());
        let (got, end) = run(
            &peer,
            pki.as_ref(),
            "/large?size=65536",
            limited(),
            &[],
            Some(1),
        );
        assert!(matches!(end, End::Clean), "tls={tls}: {end:?}");
        let expected: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(got[1], Got::Binary(expected), "tls={tls}");
        assert_eq!(peer.next_line(), "CLOSE 1000");
    }
}

#[test]
fn message_over_the_size_limit_fails_the_connection_with_1009() {
    for tls in [false, true] {
        let pki = tls.then(|| Pki::new("over"));
        let peer = Peer::start(pki.as_ref());
        let (got, end) = run(
            &peer,
            pki.as_ref(),
            "/large?size=65537",
            limited(),
            &[],
            None,
        );
        assert_eq!(got, vec![Got::Open], "tls={tls}");
        match end {
            End::Failed(ConnError::Protocol(
                e @ (ProtocolError::FrameTooLarge | ProtocolError::MessageTooLarge),
            )) => assert_eq!(e.close_code(), 1009),
            other => panic!("tls={tls}: expected a 1009 failure, got {other:?}"),
        }
        // The close frame with 1009 reached the peer.
        assert_eq!(peer.next_line(), "CLOSE 1009", "tls={tls}");
    }
}

#[test]
fn server_close_with_a_code_is_answered_and_ends_cleanly() {
    for tls in [false, true] {
        let pki = tls.then(|| Pki::new("close"));
        let peer = Peer::start(pki.as_ref());
        let (got, end) = run(
            &peer,
            pki.as_ref(),
            "/close?code=4000",
            ConnectionConfig::default(),
            &[],
            None,
        );
        assert!(matches!(end, End::Clean), "tls={tls}: {end:?}");
        assert_eq!(got, vec![Got::Open, Got::Close(Some(4000))], "tls={tls}");
    }
}

#[test]
fn abrupt_close_without_close_frame_is_reported_not_hidden() {
    for tls in [false, true] {
        let pki = tls.then(|| Pki::new("abort"));
        let peer = Peer::start(pki.as_ref());
        let (got, end) = run(
            &peer,
            pki.as_ref(),
            "/abort",
            ConnectionConfig::default(),
            &[],
            None,
        );
        assert_eq!(got, vec![Got::Open, Got::Text("bye".into())], "tls={tls}");
        match end {
            // Plain: FIN (or RST) with no close frame. TLS: the TCP connection ended without
            // close_notify, which the transport reports as such.
            End::Failed(ConnError::ClosedWithoutCloseFrame)
            | End::Failed(ConnError::Transport(_)) => {}
            other => panic!("tls={tls}: expected an abnormal-closure error, got {other:?}"),
        }
    }
}
