//! `spinwire tap --raw URL`: connect with spinwire's engine (transport + WebSocket codec), print
//! every received message, and exit after a count or a time.
//!
//! Output contract: stdout has one line per received data message — text as it came, binary as
//! standard base64 — and nothing else; stderr has `tap: ...` lines for connection events. A
//! refused connection, a failed TLS verification or a failed handshake ends the program with a
//! non-zero status and one line on stderr saying which.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use spinwire_engine::connection::{
    ConnError, ConnectionConfig, Drive, Event, UrlError, WsConnection, WsUrl,
};
use spinwire_engine::reactor::{PollMode, Reactor};
use spinwire_engine::transport::{resolve, Security, TlsConfig, TlsConfigError, TransportError};
use spinwire_engine::ws::{HandshakeRequest, Message};

/// Options of `spinwire tap --raw`.
#[derive(Debug, Clone)]
pub struct TapOptions {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// PEM file with the CA that signed the server's certificate (default: system roots).
    pub ca_file: Option<PathBuf>,
    /// Exit 0 after this many data messages.
    pub count: Option<u64>,
    /// Exit 0 after this long.
    pub seconds: Option<f64>,
}

/// Why `tap` failed; the text is the one line printed.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The URL cannot be used.
    #[error("bad URL: {0}")]
    Url(#[from] UrlError),
    /// The CA file or system roots could not be loaded.
    #[error("TLS setup failed: {0}")]
    TlsConfig(#[from] TlsConfigError),
    /// The host name did not resolve.
    #[error("{0}")]
    Resolve(TransportError),
    /// Nothing listens at the address.
    #[error("connection refused: {0} (is the server running on that port?)")]
    Refused(TransportError),
    /// The server's certificate was not trusted or does not match the host.
    #[error("TLS verification failed: {0} (for a private CA pass --ca-file PATH)")]
    Certificate(TransportError),
    /// The HTTP upgrade failed.
    #[error("WebSocket handshake with {url} failed: {source}")]
    Handshake {
        /// The URL tried.
        url: String,
        /// What went wrong.
        source: ConnError,
    },
    /// The connection failed after it was open.
    #[error("connection lost: {0}")]
    Lost(ConnError),
    /// The event loop itself failed.
    #[error("event loop: {0}")]
    Poll(std::io::Error),
}

/// How many data messages a run printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapSummary {
    /// Data messages printed.
    pub messages: u64,
}

/// Runs `tap --raw` with `out` as stdout and `log` as stderr.
pub fn run_raw(
    opts: &TapOptions,
    out: &mut impl Write,
    log: &mut impl Write,
) -> Result<TapSummary, TapError> {
    let url = WsUrl::parse(&opts.url)?;
    let tls = if url.tls {
        let builder = TlsConfig::builder();
        let builder = match &opts.ca_file {
            Some(path) => builder.ca_file(path),
            None => builder,
        };
        Some(builder.build()?)
    } else {
        None
    };
    let addr = *resolve(&url.host, url.port)
        .map_err(TapError::Resolve)?
        .first()
        .expect("resolve returns at least one address");
    let security = match &tls {
        Some(config) => Security::Tls {
            config,
            host: &url.host,
        },
        None => Security::Plain,
    };
    let request = HandshakeRequest::new(&url.host, url.port, &url.path);
    let config = ConnectionConfig::default();
    let mut reactor: Reactor<WsConnection> =
        Reactor::new(1, 64, PollMode::Blocking(Some(Duration::from_millis(10))))
            .map_err(TapError::Poll)?;
    let token = reactor
        .insert_with(|token, registry| {
            let mut conn = WsConnection::connect(addr, security, &request, &config)?;
            conn.register(registry, token).map_err(|e| {
                ConnError::Transport(TransportError::Io {
                    op: "register",
                    peer: addr,
                    source: e,
                })
            })?;
            Ok::<_, ConnError>(conn)
        })
        .map_err(|e| match e {
            spinwire_engine::reactor::InsertError::Init(e) => classify(&opts.url, e, false),
            other => TapError::Poll(std::io::Error::other(other.to_string())),
        })?;
    let _ = writeln!(log, "tap: connecting to {} ({addr})", opts.url);

    let deadline = opts
        .seconds
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut messages = 0u64;
    let mut open = false;
    let mut closing_since: Option<Instant> = None;
    let mut again = true;
    let mut write_failed = false;
    loop {
        let done_by_count = opts.count.is_some_and(|n| messages >= n);
        let done_by_time = deadline.is_some_and(|d| Instant::now() >= d);
        let conn = reactor.get_mut(token).expect("the one slot");
        if (done_by_count || done_by_time || write_failed) && closing_since.is_none() {
            if !open {
                conn.abort();
                return Ok(TapSummary { messages });
            }
            let _ = writeln!(log, "tap: done after {messages} messages; closing");
            let _ = conn.close(1000, "done");
            closing_since = Some(Instant::now());
        }
        if closing_since.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            // The server did not finish the closing handshake in time; our work is done.
            conn.abort();
            return Ok(TapSummary { messages });
        }
        let mut ready = again;
        reactor
            .turn(|_, _, _, _| ready = true)
            .map_err(TapError::Poll)?;
        if !ready {
            continue;
        }
        let conn = reactor.get_mut(token).expect("the one slot");
        let limit = opts.count.unwrap_or(u64::MAX);
        let result = conn.drive(|event, _| match event {
            Event::Open => {
                open = true;
                let _ = writeln!(log, "tap: open");
            }
            Event::Message(message) => {
                if messages >= limit {
                    return;
                }
                let written = match message {
                    Message::Text(text) => writeln!(out, "{text}"),
                    Message::Binary(data) => writeln!(
                        out,
                        "{}",
                        base64::engine::general_purpose::STANDARD.encode(data)
                    ),
                    Message::Close(frame) => {
                        let _ = match frame {
                            Some(f) => {
                                writeln!(log, "tap: server closed ({} {})", f.code, f.reason)
                            }
                            None => writeln!(log, "tap: server closed (no status)"),
                        };
                        return;
                    }
                    Message::Ping(_) | Message::Pong(_) => return,
                };
                messages += 1;
                // A closed stdout (e.g. `| head`) ends the run quietly.
                write_failed |= written.is_err();
            }
        });
        match result {
            Ok(Drive::Again) => again = true,
            Ok(Drive::Wait) => again = false,
            Ok(Drive::Closed) => {
                let _ = out.flush();
                let _ = writeln!(log, "tap: closed after {messages} messages");
                return Ok(TapSummary { messages });
            }
            Err(e) => {
                let _ = out.flush();
                if closing_since.is_some() {
                    // Whatever happens after our close does not matter.
                    return Ok(TapSummary { messages });
                }
                return Err(classify(&opts.url, e, open));
            }
        }
        if closing_since.is_none() {
            let _ = out.flush();
        }
    }
}

/// Maps a connection error to the one line a user needs.
fn classify(url: &str, e: ConnError, open: bool) -> TapError {
    match e {
        ConnError::Transport(t @ TransportError::Refused { .. }) => TapError::Refused(t),
        ConnError::Transport(t @ TransportError::Certificate { .. }) => TapError::Certificate(t),
        ConnError::Transport(t @ TransportError::Resolve { .. }) => TapError::Resolve(t),
        e if !open => TapError::Handshake {
            url: url.to_owned(),
            source: e,
        },
        e => TapError::Lost(e),
    }
}
