//! The Autobahn|Testsuite client: runs every case a fuzzing server offers against spinwire's
//! WebSocket client (connection = transport + handshake + codec), echoing each message back as
//! the suite expects, then asks the server to write its reports.
//!
//! ```text
//! kosoku -m fuzzingserver -o target/autobahn -x '12.*' -x '13.*' 127.0.0.1:9001 &
//! cargo run --release -p spinwire-engine --example autobahn-client -- ws://127.0.0.1:9001
//! ```
//!
//! Options: `--agent NAME` (default `spinwire`), `--busy` (busy-poll instead of blocking waits;
//! only on a machine with a core to spare), `--case N` (run one case only).
//! `tools/ci/autobahn.sh` runs the whole thing and fails unless every case passes.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use spinwire_engine::connection::{
    ConnError, ConnectionConfig, Drive, Event, SendError, WsConnection, WsUrl,
};
use spinwire_engine::reactor::{PollMode, Reactor};
use spinwire_engine::transport::{resolve, Security, TransportOptions};
use spinwire_engine::ws::{Config, HandshakeRequest, Message};

/// Autobahn's largest messages are 16 MiB (cases 9.1.6, 9.2.6); leave room.
const MAX_MESSAGE: usize = 20 << 20;
/// Longest a single case may take before it is abandoned.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

struct Options {
    base: WsUrl,
    agent: String,
    busy: bool,
    only_case: Option<u32>,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let mut agent = "spinwire".to_owned();
    let mut busy = false;
    let mut only_case = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--agent" => agent = args.next().ok_or("--agent needs a value")?,
            "--busy" => busy = true,
            "--case" => {
                let n = args.next().ok_or("--case needs a number")?;
                only_case = Some(
                    n.parse()
                        .map_err(|_| format!("--case: `{n}` is not a number"))?,
                );
            }
            "-h" | "--help" => {
                return Err(
                    "usage: autobahn-client [--agent NAME] [--busy] [--case N] ws://HOST:PORT"
                        .into(),
                )
            }
            _ if url.is_none() => url = Some(arg),
            _ => return Err(format!("unexpected argument `{arg}`")),
        }
    }
    let url = url.unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let base = WsUrl::parse(&url).map_err(|e| e.to_string())?;
    if base.tls {
        return Err("the fuzzing server speaks ws://, not wss://".into());
    }
    Ok(Options {
        base,
        agent,
        busy,
        only_case,
    })
}

/// One text or binary message waiting for room in the send buffer.
enum Pending {
    Text(String),
    Binary(Vec<u8>),
}

/// What one connection ended with.
struct Outcome {
    /// Text messages received (for `/getCaseCount`).
    texts: Vec<String>,
    /// How it ended: `None` for a clean close.
    error: Option<ConnError>,
}

/// Connects to `path`, echoes every message (when `echo`), and runs until the connection ends.
fn run_connection(opts: &Options, path: &str, echo: bool) -> Result<Outcome, String> {
    let addr = *resolve(&opts.base.host, opts.base.port)
        .map_err(|e| e.to_string())?
        .first()
        .ok_or("no address")?;
    let config = ConnectionConfig {
        ws: Config {
            max_frame_size: MAX_MESSAGE,
            max_message_size: MAX_MESSAGE,
            read_buffer_size: MAX_MESSAGE + 14,
        },
        transport: TransportOptions {
            out_capacity: 1 << 20,
            ..TransportOptions::default()
        },
        send_buffer_size: MAX_MESSAGE + 14,
        ..ConnectionConfig::default()
    };
    let request = HandshakeRequest::new(&opts.base.host, opts.base.port, path);
    let mode = if opts.busy {
        PollMode::BusySpin
    } else {
        PollMode::Blocking(Some(Duration::from_millis(20)))
    };
    let mut reactor: Reactor<WsConnection> =
        Reactor::new(1, 64, mode).map_err(|e| format!("reactor: {e}"))?;
    let token = reactor
        .insert_with(|token, registry| {
            let mut conn = WsConnection::connect(addr, Security::Plain, &request, &config)
                .map_err(|e| e.to_string())?;
            conn.register(registry, token)
                .map_err(|e| format!("register: {e}"))?;
            Ok::<_, String>(conn)
        })
        .map_err(|e| e.to_string())?;

    let mut texts = Vec::new();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let started = Instant::now();
    let mut again = true; // drive once up front: the connect may already be under way
    loop {
        if started.elapsed() > CASE_TIMEOUT {
            let conn = reactor.get_mut(token).expect("slot");
            conn.abort();
            return Ok(Outcome {
                texts,
                error: Some(ConnError::Closed),
            });
        }
        let mut ready = again;
        reactor
            .turn(|_, _, _, _| ready = true)
            .map_err(|e| format!("poll: {e}"))?;
        if !ready {
            continue;
        }
        let conn = reactor.get_mut(token).expect("slot");
        // Retry echoes that did not fit before, in order, before reading anything new.
        while let Some(p) = pending.front() {
            let sent = match p {
                Pending::Text(t) => conn.send_text(t),
                Pending::Binary(b) => conn.send_binary(b),
            };
            match sent {
                Ok(()) => {
                    pending.pop_front();
                }
                Err(SendError::Full) => break,
                Err(_) => {
                    pending.clear();
                    break;
                }
            }
        }
        let result = conn.drive(|event, outbox| {
            let Event::Message(message) = event else {
                return;
            };
            match message {
                Message::Text(t) => {
                    if !echo {
                        texts.push(t.to_owned());
                    } else if !pending.is_empty() || outbox.send_text(t) == Err(SendError::Full) {
                        pending.push_back(Pending::Text(t.to_owned()));
                    }
                }
                Message::Binary(b)
                    if echo
                        && (!pending.is_empty()
                            || outbox.send_binary(b) == Err(SendError::Full)) =>
                {
                    pending.push_back(Pending::Binary(b.to_owned()));
                }
                _ => {}
            }
        });
        match result {
            Ok(Drive::Again) => again = true,
            Ok(Drive::Wait) => again = !pending.is_empty(),
            Ok(Drive::Closed) => return Ok(Outcome { texts, error: None }),
            Err(e) => {
                return Ok(Outcome {
                    texts,
                    error: Some(e),
                })
            }
        }
    }
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("autobahn-client: {e}");
            return ExitCode::from(2);
        }
    };
    let count = match run_connection(&opts, "/getCaseCount", false) {
        Ok(o) => match o.texts.first().and_then(|t| t.trim().parse::<u32>().ok()) {
            Some(n) => n,
            None => {
                eprintln!(
                    "autobahn-client: no case count from the server ({:?})",
                    o.error
                );
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("autobahn-client: cannot reach the fuzzing server: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("autobahn-client: {count} cases");
    let cases: Vec<u32> = match opts.only_case {
        Some(c) => vec![c],
        None => (1..=count).collect(),
    };
    for case in cases {
        let path = format!("/runCase?case={case}&agent={}", opts.agent);
        let started = Instant::now();
        match run_connection(&opts, &path, true) {
            Ok(outcome) => {
                let how = match &outcome.error {
                    None => "closed cleanly".to_owned(),
                    Some(e) => e.to_string(),
                };
                println!(
                    "case {case:>3}: {:>7.1} ms, {how}",
                    started.elapsed().as_secs_f64() * 1e3
                );
            }
            Err(e) => {
                eprintln!("autobahn-client: case {case}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let path = format!("/updateReports?agent={}", opts.agent);
    if let Err(e) = run_connection(&opts, &path, false) {
        eprintln!("autobahn-client: updateReports: {e}");
        return ExitCode::FAILURE;
    }
    println!("autobahn-client: reports requested");
    ExitCode::SUCCESS
}
