//! `spinwire tap --raw URL`: connect with spinwire's engine (transport + WebSocket codec), print
//! every received message, and exit after a count or a time.
//!
//! `spinwire tap --venue deribit --url URL --subscribe CHANNEL... [--sessions N]`
//! ([`run_venue`]): run N full sessions (default 1), each subscribed to the same channels, on
//! one engine thread ([`Engine`]) and print what they deliver: one JSON object per market-data
//! record on stdout (`session`, `channel`, `instrument`, `kind`, and for books `change_id`,
//! `prev_change_id`, `snapshot`), session events as JSON lines on stderr (`event`: `start`,
//! `connected`, `authenticated`, `subscribed`, `live`, `disconnected` with `cause`,
//! `reconnecting`, `gap`, `token_refreshed`, `alert`, `fatal`, ...). Every record and every
//! event carries `"session": INDEX` (0-based, also with one session). The engine thread
//! formats nothing: this thread pops records and events from the rings, formats and writes
//! them, and runs the alert rules (per session). Exit 0 after `--count` records (all sessions
//! together) or `--seconds`; a fatal error in any session stops every session and ends the run
//! with a non-zero status and one `spinwire tap: fatal: session I: ...` line. Secrets and
//! tokens are never written.
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
    ConnError, ConnectionConfig, Drive, Endpoint, EndpointError, Event, Phase, WsConnection,
};
use spinwire_engine::reactor::{PollMode, Reactor};
use spinwire_engine::transport::TransportError;
use spinwire_engine::ws::Message;

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
    /// How long the connection may take to open (TCP, TLS and the WebSocket upgrade).
    pub connect_timeout: Duration,
}

/// Why `tap` failed; the text is the one line printed.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The URL, the CA file or the host name cannot be used (the text says which).
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// Nothing listens at the address.
    #[error("connection refused: {0} (is the server running on that port?)")]
    Refused(TransportError),
    /// The server's certificate was not trusted or does not match the host.
    #[error("TLS verification failed: {0} (for a private CA pass --ca-file PATH)")]
    Certificate(TransportError),
    /// The HTTP upgrade failed.
    #[error("WebSocket handshake with {url} failed: {source}{hint}")]
    Handshake {
        /// The URL tried.
        url: String,
        /// What went wrong (boxed: large, and a cold path).
        source: Box<ConnError>,
        /// What to try.
        hint: &'static str,
    },
    /// The connection did not open in time (or before the run's end): the server accepted
    /// and never answered, or answers another protocol.
    #[error("{url}: {what}{hint}")]
    NotOpen {
        /// The URL tried.
        url: String,
        /// What was still waiting.
        what: String,
        /// What to try.
        hint: &'static str,
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
    let endpoint = Endpoint::prepare(&opts.url, opts.ca_file.as_deref())?;
    let addr = endpoint.addr;
    let security = endpoint.security();
    let request = endpoint.request();
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

    let started = Instant::now();
    let deadline = opts
        .seconds
        .map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let mut messages = 0u64;
    let mut open = false;
    let mut closing_since: Option<Instant> = None;
    let mut again = true;
    let mut write_failed = false;
    loop {
        let done_by_count = opts.count.is_some_and(|n| messages >= n);
        let done_by_time = deadline.is_some_and(|d| Instant::now() >= d);
        let conn = reactor.get_mut(token).expect("the one slot");
        let too_slow = !open && started.elapsed() >= opts.connect_timeout;
        if !open && (too_slow || done_by_time || write_failed) {
            // Never opened: a failure, whatever ended the wait.
            let phase = conn.phase();
            conn.abort();
            let tls = opts.url.starts_with("wss://");
            let (what, hint) = match phase {
                Phase::Connecting if tls => (
                    "the TCP connect or the TLS handshake got no answer",
                    " (a wss:// URL to a plain port? try ws://)",
                ),
                Phase::Connecting => ("the TCP connect got no answer", " (is the host right?)"),
                _ => (
                    "the WebSocket upgrade got no answer",
                    if tls {
                        " (is the path right, is it a WebSocket server?)"
                    } else {
                        " (a ws:// URL to a TLS port? try wss://; or is the path wrong?)"
                    },
                ),
            };
            let waited = started.elapsed().as_secs_f64();
            return Err(TapError::NotOpen {
                url: opts.url.clone(),
                what: format!("not open after {waited:.1} s: {what}"),
                hint,
            });
        }
        if (done_by_count || done_by_time || write_failed) && closing_since.is_none() {
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
        e if !open => TapError::Handshake {
            url: url.to_owned(),
            hint: connect_hint(url, &e.to_string()),
            source: Box::new(e),
        },
        e => TapError::Lost(e),
    }
}

// ----- venue mode ----------------------------------------------------------------------------

use spinwire_engine::handoff::{Engine, HandoffError};
use spinwire_engine::md::{BookAction, BookFlags, InstrumentTable, MdRecord, Side};
use spinwire_engine::session::alerts::{AlertLimits, AlertRules};
use spinwire_engine::session::driver::{DriverConfig, DriverError};
use spinwire_engine::session::{
    AuthMethod, CredentialError, Credentials, DisconnectCause, EventKind, SessionConfig,
    SessionEvent, SessionState,
};

/// Most sessions `tap --venue` (and `demo`) run on one engine thread.
pub const MAX_SESSIONS: usize = 64;

/// Records popped from one session's ring before the next session's turn, so that with
/// several sessions and `--count` every session gets its share of the lines.
const POP_BATCH: usize = 256;

/// Options of `spinwire tap --venue deribit`.
#[derive(Debug, Clone)]
pub struct VenueTapOptions {
    /// `ws://` or `wss://` URL of the venue's WebSocket API.
    pub url: String,
    /// Channels to subscribe to (the same in every session).
    pub subscribe: Vec<String>,
    /// PEM file with the CA to trust (default: system roots).
    pub ca_file: Option<PathBuf>,
    /// Exit 0 after this many records (all sessions together).
    pub count: Option<u64>,
    /// Exit 0 after this long.
    pub seconds: Option<f64>,
    /// Credentials file (`client_id = ..`, `client_secret = ..`, mode 600); otherwise
    /// `SPINWIRE_CLIENT_ID` / `SPINWIRE_CLIENT_SECRET`; otherwise a public session.
    pub credentials_file: Option<PathBuf>,
    /// Send the secret (`client_credentials`) instead of signing (`client_signature`).
    pub client_credentials: bool,
    /// Ask for a `session:NAME` scope (with several sessions, session `i` asks for
    /// `session:NAME-i`).
    pub session_name: Option<String>,
    /// Log every event (state changes, malformed messages, requests) and final counters.
    pub verbose: bool,
    /// Session settings (timers, backoff); credentials are filled in from the options above.
    pub session: SessionConfig,
    /// Sessions to run on the one engine thread, each with the same channels
    /// (`1..=`[`MAX_SESSIONS`]).
    pub sessions: usize,
}

/// Why `tap --venue` failed; the text is the one line printed.
#[derive(Debug, thiserror::Error)]
pub enum VenueTapError {
    /// The options are unusable (e.g. `--sessions` out of range).
    #[error("{0}")]
    Usage(String),
    /// Credentials could not be loaded.
    #[error("{0}")]
    Credentials(#[from] CredentialError),
    /// A session's driver could not start, or the engine loop failed.
    #[error("{0}")]
    Driver(#[from] DriverError),
    /// The engine could not start or stop (other than a driver error).
    #[error("engine: {0}")]
    Engine(HandoffError),
    /// A session failed for good.
    #[error("fatal: {0}")]
    Fatal(String),
    /// A session never went live in the whole run (the text names it, the last connection
    /// error and what to try).
    #[error("{0}")]
    NeverLive(String),
    /// A session went live but the venue refused its subscriptions and no record came in
    /// the whole run (the text names the channels, the venue's code and what to try).
    #[error("{0}")]
    Unsubscribed(String),
    /// The engine thread panicked.
    #[error("the engine thread panicked")]
    Panicked,
}

impl From<HandoffError> for VenueTapError {
    fn from(e: HandoffError) -> Self {
        match e {
            // The driver's own text (a bad URL, a rejected certificate): the line users know.
            HandoffError::Driver { source, .. } => VenueTapError::Driver(*source),
            HandoffError::Panicked => VenueTapError::Panicked,
            e => VenueTapError::Engine(e),
        }
    }
}

/// What a venue tap run delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueTapSummary {
    /// Records printed (all sessions).
    pub records: u64,
    /// Records printed per session, by session index.
    pub per_session: Vec<u64>,
}

/// Checks a `--sessions` value: `1..=`[`MAX_SESSIONS`].
///
/// # Errors
/// A one-line message naming the flag and the range.
pub fn check_sessions(n: usize) -> Result<usize, String> {
    if (1..=MAX_SESSIONS).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "--sessions must be between 1 and {MAX_SESSIONS}, got {n}"
        ))
    }
}

/// Runs `tap --venue deribit`: `opts.sessions` sessions, each subscribed to the same
/// channels, run on one engine thread ([`Engine`]); this thread is the logger/consumer — it
/// pops records and events from every session's rings in turn, prints records as JSON lines
/// on `out` and events as JSON lines on `log` (each with `"session": INDEX`, 0-based), and
/// evaluates the alert rules per session. A fatal error in any session stops them all and
/// ends the run with [`VenueTapError::Fatal`] naming the session.
pub fn run_venue(
    opts: &VenueTapOptions,
    out: &mut impl Write,
    log: &mut impl Write,
) -> Result<VenueTapSummary, VenueTapError> {
    let n = check_sessions(opts.sessions).map_err(VenueTapError::Usage)?;
    let mut creds = match &opts.credentials_file {
        Some(path) => Some(Credentials::from_file(path)?),
        None => Credentials::from_env()?,
    };
    if let Some(c) = creds.as_mut() {
        if opts.client_credentials {
            c.method = AuthMethod::ClientCredentials;
        }
        c.session = opts.session_name.clone();
    }
    let authenticated = creds.is_some();
    let mut dc = DriverConfig::new(opts.url.clone());
    dc.ca_file = opts.ca_file.clone();
    let mut builder = Engine::builder().core(None);
    for i in 0..n {
        let mut session = opts.session.clone();
        session.credentials = creds.clone();
        if n > 1 {
            // One `session:NAME` scope per connection.
            if let Some(c) = session.credentials.as_mut() {
                c.session = c.session.take().map(|name| format!("{name}-{i}"));
            }
        }
        builder = builder.session(format!("deribit-{i}"), dc.clone(), session, &opts.subscribe);
    }
    let Engine {
        mut strategies,
        control,
    } = builder.spawn()?;
    for i in 0..n {
        let _ = writeln!(
            log,
            "{{\"event\":\"start\",\"session\":{i},\"sessions\":{n},\"url\":{},\"authenticated\":{authenticated},\"channels\":{}}}",
            json_str(&opts.url),
            opts.subscribe.len()
        );
    }

    // The consumer's own instrument table, filled in the same order as each session's (ids
    // match: every session inserts the same subscribed channels' instruments in order).
    let mut names = InstrumentTable::with_capacity(opts.subscribe.len().max(1))
        .map_err(|e| VenueTapError::Fatal(e.to_string()))?;
    for c in &opts.subscribe {
        if let Some(inst) = spinwire_engine::venue::deribit::Channel::parse(c).instrument() {
            if names.get(inst.as_bytes()).is_none() {
                let _ = names.insert(inst);
            }
        }
    }
    let book_channel = |inst: &str| {
        opts.subscribe
            .iter()
            .find(|c| {
                c.starts_with("book.")
                    && c[5..].starts_with(inst)
                    && c[5 + inst.len()..].starts_with('.')
            })
            .map(String::as_str)
            .unwrap_or("book")
    };
    let trade_channel = |inst: &str| {
        opts.subscribe
            .iter()
            .find(|c| {
                c.starts_with("trades.")
                    && c[7..].starts_with(inst)
                    && c[7 + inst.len()..].starts_with('.')
            })
            .map(String::as_str)
            .unwrap_or("trades")
    };

    let start = Instant::now();
    let deadline = opts
        .seconds
        .map(|s| start + Duration::from_secs_f64(s.max(0.0)));
    let mut alerts: Vec<AlertRules> = (0..n)
        .map(|_| AlertRules::new(AlertLimits::default()))
        .collect();
    let mut per_session = vec![0u64; n];
    // Where each session was before the run's stop: what a session that never went live
    // was stuck in.
    let mut progress = vec![Progress::default(); n];
    let mut records = 0u64;
    let mut fatal: Option<String> = None;
    let mut stopping = false;
    let mut write_failed = false;
    let mut line = String::with_capacity(256);
    let limit = opts.count.unwrap_or(u64::MAX);
    loop {
        let mut idle = true;
        for (i, ends) in strategies.iter_mut().enumerate() {
            while let Some(e) = ends.session_events.pop() {
                idle = false;
                if let (EventKind::Fatal { reason, code }, None) = (e.kind, &fatal) {
                    fatal = Some(format!("session {i}: {reason:?} (error {code})"));
                }
                if !stopping {
                    progress[i].observe(&e.kind);
                }
                log_event(log, i, &e, opts.verbose);
                if let Some(a) = alerts[i].observe(&e) {
                    let _ = writeln!(
                        log,
                        "{{\"event\":\"alert\",\"session\":{i},\"level\":\"{}\",\"rule\":\"{}\",\"value\":{},\"limit\":{}}}",
                        if a.error { "error" } else { "warn" },
                        a.rule.as_str(),
                        a.value,
                        a.limit
                    );
                }
            }
        }
        // Round robin in batches: with `--count`, no session takes every line.
        for (i, ends) in strategies.iter_mut().enumerate() {
            let mut popped = 0;
            while records < limit && popped < POP_BATCH && !write_failed {
                let Some(r) = ends.md.pop() else { break };
                idle = false;
                popped += 1;
                line.clear();
                let inst = names.name(r.instrument()).unwrap_or("?");
                format_record(
                    &mut line,
                    i,
                    &r,
                    inst,
                    book_channel(inst),
                    trade_channel(inst),
                );
                if writeln!(out, "{line}").is_err() {
                    // A closed stdout (e.g. `| head`) ends the run quietly.
                    write_failed = true;
                    break;
                }
                records += 1;
                per_session[i] += 1;
            }
        }
        let done =
            records >= limit || write_failed || deadline.is_some_and(|d| Instant::now() >= d);
        if (done || fatal.is_some()) && !stopping {
            stopping = true;
            control.request_stop();
        }
        if control.is_finished() {
            break;
        }
        if idle {
            let _ = out.flush();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let joined = control.shutdown();
    for (i, ends) in strategies.iter_mut().enumerate() {
        while let Some(e) = ends.session_events.pop() {
            if let (EventKind::Fatal { reason, code }, None) = (e.kind, &fatal) {
                fatal = Some(format!("session {i}: {reason:?} (error {code})"));
            }
            log_event(log, i, &e, opts.verbose);
        }
    }
    let _ = out.flush();
    let stats = joined?;
    if opts.verbose {
        for (i, s) in stats.sessions.iter().enumerate() {
            let (d, ss) = (&s.driver, &s.session);
            let _ = writeln!(
                log,
                "{{\"event\":\"stats\",\"session\":{i},\"name\":{},\"records\":{},\"records_dropped\":{},\"events_dropped\":{},\"messages\":{},\"malformed\":{},\"gaps\":{},\"connections\":{},\"heartbeat_misses\":{},\"tests_answered\":{}}}",
                json_str(&s.name),
                per_session.get(i).copied().unwrap_or(0),
                d.records_dropped,
                d.events_dropped,
                ss.messages,
                ss.malformed,
                ss.gaps,
                ss.connections,
                ss.heartbeat_misses,
                ss.tests_answered
            );
        }
    }
    if let Some(f) = fatal {
        return Err(VenueTapError::Fatal(f));
    }
    if let Some(line) = never_live(&stats.sessions, &progress, &opts.url) {
        return Err(VenueTapError::NeverLive(line));
    }
    if let Some(line) = refused_subscriptions(&progress, &per_session, &opts.subscribe) {
        return Err(VenueTapError::Unsubscribed(line));
    }
    Ok(VenueTapSummary {
        records,
        per_session,
    })
}

/// How far a session got, from its events before the run's stop.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// The last step of opening a connection it entered (connecting, TLS, upgrade, auth,
    /// subscribing).
    state: Option<SessionState>,
    /// Why its last connection ended.
    cause: Option<DisconnectCause>,
    /// The venue's error code for the last subscription it refused.
    subscribe_refused: Option<i64>,
}

impl Progress {
    fn observe(&mut self, kind: &EventKind) {
        match *kind {
            // The furthest step of the latest attempt (not Backoff or Disconnected after it).
            EventKind::StateChanged { to, .. }
                if matches!(
                    to,
                    SessionState::Connecting
                        | SessionState::TlsHandshake
                        | SessionState::WsHandshake
                        | SessionState::Authenticating
                        | SessionState::Subscribing
                ) =>
            {
                self.state = Some(to)
            }
            EventKind::Disconnected { cause } => self.cause = Some(cause),
            EventKind::RequestFailed {
                request: spinwire_engine::session::RequestKind::Subscribe,
                code,
            } => self.subscribe_refused = Some(code),
            _ => {}
        }
    }
}

/// One line for the first session that never went live in a run whose events were not
/// followed (the demo): its last connection error and what to try; `None` when every session
/// went live.
pub fn never_live_line(
    sessions: &[spinwire_engine::handoff::SessionFinal],
    url: &str,
) -> Option<String> {
    never_live(sessions, &[], url)
}

/// One line for the first session that never went live in the run: its last connection error,
/// or why its connections ended, or where it was stuck — and what to try; `None` when every
/// session went live.
fn never_live(
    sessions: &[spinwire_engine::handoff::SessionFinal],
    progress: &[Progress],
    url: &str,
) -> Option<String> {
    let (i, s) = sessions
        .iter()
        .enumerate()
        .find(|(_, s)| s.driver.lives == 0)?;
    let p = progress.get(i).copied().unwrap_or_default();
    let why = match (&s.last_error, p.cause, p.state) {
        (Some(e), _, _) => {
            return Some(format!(
                "session {i} never went live on {url}: {e}{}",
                connect_hint(url, e)
            ))
        }
        (None, Some(c), _) => match c {
            DisconnectCause::ConnectTimeout => "the connection did not open in time (TCP, TLS and \
                the WebSocket upgrade; --connect-timeout)"
                .to_owned(),
            DisconnectCause::SetupTimeout => "authentication and the subscriptions did not \
                complete in time"
                .to_owned(),
            c => format!("its connections ended: {}", c.as_str()),
        },
        (None, None, Some(state)) => format!("it was still {}", state.as_str()),
        (None, None, None) if s.session.connections > 0 => format!(
            "it connected {} time(s), but authentication or the subscriptions never completed",
            s.session.connections
        ),
        (None, None, None) => "it never started connecting".to_owned(),
    };
    let hint = match p.state {
        Some(SessionState::TlsHandshake) if url.starts_with("wss://") => {
            " (the TLS handshake got no answer: a wss:// URL to a plain port? try ws://)"
        }
        Some(SessionState::WsHandshake) => {
            " (the WebSocket upgrade got no answer: is the path right, is it a WebSocket server?)"
        }
        Some(SessionState::Connecting) => " (the TCP connect got no answer: is the host right?)",
        Some(SessionState::Authenticating) => {
            " (no answer to public/auth: check the credentials and the venue)"
        }
        Some(SessionState::Subscribing) => {
            " (no answer to the subscription, or a channel was refused: see request_failed above)"
        }
        _ => "",
    };
    Some(format!("session {i} never went live on {url}: {why}{hint}"))
}

/// One line for the first session whose subscriptions the venue refused and that printed no
/// record in the whole run; `None` otherwise.
fn refused_subscriptions(
    progress: &[Progress],
    records: &[u64],
    channels: &[String],
) -> Option<String> {
    let (i, code) = progress.iter().enumerate().find_map(|(i, p)| {
        match (p.subscribe_refused, records.get(i)) {
            (Some(code), Some(0)) => Some((i, code)),
            _ => None,
        }
    })?;
    // Deribit's codes (API v2 error list).
    let hint = match code {
        13778 => {
            " (raw_subscriptions_not_available_for_unauthorized: raw channels need an \
             authenticated session — set SPINWIRE_CLIENT_ID / SPINWIRE_CLIENT_SECRET — or \
             subscribe to the .100ms channels)"
        }
        -32602 => " (invalid params: a channel name the venue does not know — check each name)",
        13021 | 13009 => " (not allowed for these credentials)",
        _ => "",
    };
    Some(format!(
        "session {i}: the venue refused the subscription to {} (error {code}), no data in the \
         whole run{hint}",
        channels.join(", ")
    ))
}

/// What to try for a connection error, from its text and the URL's scheme.
pub fn connect_hint(url: &str, error: &str) -> &'static str {
    let tls = url.starts_with("wss://");
    if error.contains("refused") {
        " (nothing listens there: is the venue running, and are the host and port right?)"
    } else if error.contains("certificate") {
        " (check --ca-file, or the host name in the URL)"
    } else if tls && (error.contains("TLS") || error.contains("corrupt")) {
        " (a wss:// URL to a plain port? try ws://)"
    } else if !tls
        && (error.contains("handshake")
            || error.contains("HTTP")
            || error.contains("response")
            || error.contains("without a WebSocket close frame"))
    {
        " (a ws:// URL to a TLS port? try wss://)"
    } else if error.contains("timed out") || error.contains("timeout") {
        " (the server accepted but never answered: check the URL and the venue)"
    } else {
        ""
    }
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn format_record(
    line: &mut String,
    session: usize,
    r: &MdRecord,
    inst: &str,
    book: &str,
    trades: &str,
) {
    use std::fmt::Write as _;
    match r {
        MdRecord::Book(b) => {
            let side = match b.side {
                Side::Bid => "bid",
                Side::Ask => "ask",
            };
            let action = match b.action {
                BookAction::New => "new",
                BookAction::Change => "change",
                BookAction::Delete => "delete",
            };
            let _ = write!(
                line,
                "{{\"session\":{session},\"channel\":{},\"instrument\":{},\"kind\":\"book\",\"snapshot\":{},\"change_id\":{},\"prev_change_id\":{},\"side\":\"{side}\",\"action\":\"{action}\",\"price\":\"{}\",\"amount\":\"{}\",\"timestamp_ms\":{}}}",
                json_str(book),
                json_str(inst),
                b.flags.contains(BookFlags::SNAPSHOT),
                b.change_id,
                b.prev_change_id,
                b.price,
                b.amount,
                b.timestamp_ms
            );
        }
        MdRecord::Trade(t) => {
            let _ = write!(
                line,
                "{{\"session\":{session},\"channel\":{},\"instrument\":{},\"kind\":\"trade\",\"trade_seq\":{},\"direction\":\"{}\",\"price\":\"{}\",\"amount\":\"{}\",\"timestamp_ms\":{}}}",
                json_str(trades),
                json_str(inst),
                t.trade_seq,
                t.direction.as_str(),
                t.price,
                t.amount,
                t.timestamp_ms
            );
        }
    }
}

/// One JSON line per event. Without `verbose`, state changes are left out.
fn log_event(log: &mut impl Write, session: usize, e: &SessionEvent, verbose: bool) {
    let t = e.at_ns / 1_000_000;
    let s = session;
    let _ = match e.kind {
        EventKind::StateChanged { from, to } => {
            if !verbose {
                return;
            }
            writeln!(
                log,
                "{{\"event\":\"state\",\"session\":{s},\"t_ms\":{t},\"from\":\"{}\",\"to\":\"{}\"}}",
                from.as_str(),
                to.as_str()
            )
        }
        EventKind::Connected { connection } => writeln!(
            log,
            "{{\"event\":\"connected\",\"session\":{s},\"t_ms\":{t},\"connection\":{connection}}}"
        ),
        EventKind::Authenticated {
            expires_in_s,
            resumed,
        } => writeln!(
            log,
            "{{\"event\":\"authenticated\",\"session\":{s},\"t_ms\":{t},\"expires_in_s\":{expires_in_s},\"resumed\":{resumed}}}"
        ),
        EventKind::TokenRefreshed { expires_in_s } => writeln!(
            log,
            "{{\"event\":\"token_refreshed\",\"session\":{s},\"t_ms\":{t},\"expires_in_s\":{expires_in_s}}}"
        ),
        EventKind::TokenRefreshFailed { code } => writeln!(
            log,
            "{{\"event\":\"token_refresh_failed\",\"session\":{s},\"level\":\"warn\",\"t_ms\":{t},\"code\":{code}}}"
        ),
        EventKind::Subscribed { channels } => writeln!(
            log,
            "{{\"event\":\"subscribed\",\"session\":{s},\"t_ms\":{t},\"channels\":{channels}}}"
        ),
        EventKind::Live { downtime_ns } => writeln!(
            log,
            "{{\"event\":\"live\",\"session\":{s},\"t_ms\":{t},\"downtime_ms\":{}}}",
            downtime_ns / 1_000_000
        ),
        EventKind::Disconnected { cause } => {
            let code = match cause {
                DisconnectCause::PeerClosed { code } => code,
                DisconnectCause::Logout => 1000,
                _ => 1006,
            };
            // The end of our own logout is the normal end of a run, not a warning.
            let level = if cause == DisconnectCause::Logout {
                "info"
            } else {
                "warn"
            };
            writeln!(
                log,
                "{{\"event\":\"disconnected\",\"session\":{s},\"level\":\"{level}\",\"t_ms\":{t},\"cause\":\"{}\",\"close_code\":{code}}}",
                cause.as_str()
            )
        }
        EventKind::Reconnecting { attempt, delay_ns } => writeln!(
            log,
            "{{\"event\":\"reconnecting\",\"session\":{s},\"t_ms\":{t},\"attempt\":{attempt},\"delay_ms\":{}}}",
            delay_ns / 1_000_000
        ),
        EventKind::HeartbeatMissed => writeln!(
            log,
            "{{\"event\":\"heartbeat_missed\",\"session\":{s},\"level\":\"warn\",\"t_ms\":{t}}}"
        ),
        EventKind::Gap {
            instrument,
            expected_prev,
            got_prev,
        } => writeln!(
            log,
            "{{\"event\":\"gap\",\"session\":{s},\"level\":\"warn\",\"t_ms\":{t},\"instrument_id\":{},\"expected_prev_change_id\":{expected_prev},\"prev_change_id\":{got_prev}}}",
            instrument.0
        ),
        EventKind::Resynced { instrument } => writeln!(
            log,
            "{{\"event\":\"resynced\",\"session\":{s},\"t_ms\":{t},\"instrument_id\":{}}}",
            instrument.0
        ),
        EventKind::RateLimited { request } => writeln!(
            log,
            "{{\"event\":\"rate_limited\",\"session\":{s},\"level\":\"warn\",\"t_ms\":{t},\"request\":\"{}\"}}",
            request.as_str()
        ),
        EventKind::RequestFailed { request, code } => writeln!(
            log,
            "{{\"event\":\"request_failed\",\"session\":{s},\"level\":\"warn\",\"t_ms\":{t},\"request\":\"{}\",\"code\":{code}}}",
            request.as_str()
        ),
        EventKind::RecordsDropped {
            instrument,
            records,
        } => writeln!(
            log,
            "{{\"event\":\"records_dropped\",\"session\":{s},\"level\":\"warn\",\"t_ms\":{t},\"instrument_id\":{},\"records\":{records}}}",
            instrument.0
        ),
        EventKind::Malformed { error } => {
            writeln!(
                log,
                "{{\"event\":\"malformed\",\"session\":{s},\"level\":\"warn\",\"t_ms\":{t},\"error\":{}}}",
                json_str(&error.to_string())
            )
        }
        EventKind::Control {
            tag,
            command,
            outcome,
        } => writeln!(
            log,
            "{{\"event\":\"control\",\"session\":{s},\"t_ms\":{t},\"tag\":{tag},\"command\":\"{}\",\"outcome\":\"{}\"}}",
            command.as_str(),
            outcome.as_str()
        ),
        EventKind::Fatal { reason, code } => writeln!(
            log,
            "{{\"event\":\"fatal\",\"session\":{s},\"level\":\"error\",\"t_ms\":{t},\"reason\":\"{reason:?}\",\"code\":{code}}}"
        ),
    };
}
