//! The `spinwire` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use spinwire_tools::sim::{faults, RateLimit, SimConfig, Simulator, TlsSetup};

mod orders_cli;

#[derive(Parser)]
#[command(
    name = "spinwire",
    version,
    about = "spinwire: low-latency WebSocket session engine tools",
    after_help = "Run without a command, spinwire runs `spinwire demo` (10 s against an \
                  in-process simulator). Also: `spinwire sim` (a Deribit venue on loopback) and \
                  `spinwire tap` (watch it through the engine)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once at startup: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the whole system for a few seconds: in-process simulator over TLS, the engine and
    /// the example quoting strategy, with faults, a live progress line, a summary and a
    /// latency report (the default command).
    #[command(allow_negative_numbers = true)]
    Demo(DemoArgs),
    /// Run a venue simulator (Deribit JSON-RPC v2 over ws/wss on /ws/api/v2).
    #[command(after_long_help = FAULTS_HELP)]
    Sim(SimArgs),
    /// Print latency percentile tables of run directories; with --compare, flag regressions
    /// (exit status 3).
    Report(spinwire_tools::report::ReportArgs),
    /// Connect to a WebSocket URL with spinwire's engine and print every message received: one
    /// line per message on stdout (text as is, binary as base64), connection events on stderr.
    /// With --venue deribit: run a full venue session and print decoded market data as JSON.
    #[command(allow_negative_numbers = true)]
    Tap(TapArgs),
    /// Run an engine session that places limit orders (some cancelled or edited), print each
    /// order event as a JSON line and a summary line; exit 0 once every order is final. With
    /// --journal, a restart after a crash reconciles the earlier run's orders first.
    /// Credentials: SPINWIRE_CLIENT_ID / SPINWIRE_CLIENT_SECRET.
    #[command(allow_negative_numbers = true)]
    Orders(orders_cli::OrdersArgs),
}

#[derive(Args, Default)]
struct DemoArgs {
    /// How long to run, seconds.
    #[arg(long, value_name = "N", default_value_t = 10.0, value_parser = parse_seconds)]
    seconds: f64,
    /// Do not inject faults.
    #[arg(long)]
    no_faults: bool,
    /// Write the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// Write the report into DIR (default: latency-reports/out/demo-DATE-TIME/).
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// Market-data events per second of the simulator.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    rate: u64,
    /// Run against an external venue instead of the simulator (credentials from
    /// SPINWIRE_CLIENT_ID / SPINWIRE_CLIENT_SECRET; public data without them).
    #[arg(long, value_name = "URL", requires = "venue")]
    url: Option<String>,
    /// The external venue's protocol (with --url).
    #[arg(long, value_enum, requires = "url")]
    venue: Option<Venue>,
    /// PEM file with the CA to trust for --url (default: system roots).
    #[arg(long, value_name = "PATH", requires = "url")]
    ca_file: Option<PathBuf>,
    /// With --url and credentials: also send post-only quotes (use a test account).
    #[arg(long, requires = "url")]
    quote: bool,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
    /// Sessions on the one engine thread (1 to 64), each with the demo's channels: session 0
    /// quotes, the others take market data only; the summary counts each one.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_sessions)]
    sessions: usize,
}

#[derive(Args)]
struct TapArgs {
    /// Print raw messages from this ws:// or wss:// URL.
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "venue",
        conflicts_with = "venue"
    )]
    raw: Option<String>,
    /// Run a venue session (auth, heartbeats, reconnects, book checks) and print decoded
    /// market data: one JSON object per record on stdout, session events as JSON on stderr.
    /// Credentials: --credentials-file, else SPINWIRE_CLIENT_ID / SPINWIRE_CLIENT_SECRET, else
    /// a public session.
    #[arg(long, value_enum, requires = "url")]
    venue: Option<Venue>,
    /// The venue's WebSocket API URL (with --venue).
    #[arg(long, value_name = "URL", requires = "venue")]
    url: Option<String>,
    /// A channel to subscribe to, e.g. book.BTC-PERPETUAL.raw (repeat for more; with --venue).
    #[arg(long = "subscribe", value_name = "CHANNEL", requires = "venue")]
    subscribe: Vec<String>,
    /// Credentials file with `client_id = ...` and `client_secret = ...` lines; must not be
    /// readable by group or others (with --venue).
    #[arg(long, value_name = "PATH", requires = "venue")]
    credentials_file: Option<PathBuf>,
    /// Authenticate with client_credentials (sends the secret) instead of client_signature.
    #[arg(long, requires = "venue")]
    client_credentials: bool,
    /// Ask for a `session:NAME` scope so reconnects resume the session.
    #[arg(long, value_name = "NAME", requires = "venue")]
    session_name: Option<String>,
    /// Heartbeat interval asked of the venue, seconds (Deribit: at least 10; with --venue).
    #[arg(long, value_name = "S", value_parser = parse_seconds, requires = "venue")]
    heartbeat: Option<f64>,
    /// Seconds a connection may take to open — TCP, TLS and the WebSocket upgrade (default
    /// 10). With --venue it is dropped and tried again; with --raw the run fails.
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    connect_timeout: Option<f64>,
    /// Seconds authentication and the subscriptions may take once the connection is open
    /// (default 10; with --venue).
    #[arg(long, value_name = "S", value_parser = parse_seconds, requires = "venue")]
    setup_timeout: Option<f64>,
    /// Log every session event (state changes included) and final counters.
    #[arg(short, long)]
    verbose: bool,
    /// PEM file with the CA to trust for wss:// (default: the system's root certificates).
    #[arg(long, value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// Exit (0) after N messages (records with --venue).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Exit (0) after S seconds (fractions allowed).
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    seconds: Option<f64>,
    /// Run N sessions (1 to 64) with the same channels on one engine thread; every record and
    /// event carries "session": INDEX (0-based). With --session-name, session I asks for
    /// session:NAME-I when N > 1 (with --venue).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_sessions, requires = "venue")]
    sessions: usize,
}

fn parse_sessions(s: &str) -> Result<usize, String> {
    let n = s
        .parse::<usize>()
        .map_err(|_| format!("`{s}` is not a number of sessions (1 to 64)"))?;
    spinwire_tools::tap::check_sessions(n)
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds (e.g. 5 or 0.5)")),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Venue {
    /// Deribit API v2.
    Deribit,
}

const FAULTS_HELP: &str = "\
FAULT SPEC (--faults):
  SPEC  := RULE (';' RULE)*
  RULE  := FAULT ['(' KEY=VALUE,... ')'] ['@' COND,...]
  COND  := after=N | orders=N | at=DUR | every=DUR | p=X | times=N | conn=N|all
           after: once N messages were sent on the connection; orders: once N order
           requests (buy/sell/edit/cancel) were received; at: DUR after start;
           every: repeatedly; p: probability per check (>= once per ms);
           times: max firings per connection (default 1, unlimited with every/p);
           conn: only the N-th accepted connection (1-based) or all (default)
  DUR   := NUMBER us|ms|s
  FAULT := rst                      TCP reset
         | fin                      orderly close without a WebSocket close frame
         | halfopen                 stop reading and writing, keep the socket open
         | stall(for=DUR)           stop reading and writing for DUR, then carry on
         | delay(d=DUR,jitter=DUR,for=DUR)  hold output back
         | burst(x=F,for=DUR)       multiply the market-data rate
         | gap                      skip one book change (prev_change_id gap)
         | ignore_test              swallow the next public/test (heartbeat then fails)
         | withhold(exec=0|1)       next order: execute or not, never answer, reset
         | withhold_cancel(exec=0|1)  the same for the next cancel
         | withhold_edit(exec=0|1)  the same for the next edit
         | fillgap                  on close, fill the account's resting orders
         | reject_auth              next public/auth gets 13004
         | expire                   the connection's tokens expire now
         | throttle                 next request gets 10028
         | malformed | oversized | bad_utf8 | bad_json   broken frame or message
         | tls_no_close_notify      TCP close without TLS close_notify
  Example: --faults 'rst@after=500;gap@every=2s;delay(d=20ms,jitter=5ms,for=1s)@at=3s,conn=1'";

#[derive(Args)]
struct SimArgs {
    /// Venue protocol to simulate.
    #[arg(long, value_enum, default_value = "deribit")]
    venue: Venue,
    /// Address to listen on, e.g. 127.0.0.1:8443 or localhost:8443 (port 0 picks a free one).
    #[arg(long, value_parser = parse_listen)]
    listen: SocketAddr,
    /// Serve wss with a fresh CA + server certificate written to DIR (ca.pem, server.pem,
    /// server.key); clients trust DIR/ca.pem.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["cert", "key"])]
    tls_self_signed: Option<PathBuf>,
    /// Serve wss with this PEM certificate chain (needs --key).
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Market-data events per second, all instruments together.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Instruments, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "BTC-PERPETUAL,ETH-PERPETUAL"
    )]
    instruments: Vec<String>,
    /// Accepted API key as CLIENT_ID:CLIENT_SECRET (repeatable).
    #[arg(long, value_name = "ID:SECRET")]
    credentials: Vec<String>,
    /// Fault rules (see below).
    #[arg(long, value_name = "SPEC")]
    faults: Option<String>,
    /// Write the ledger (JSON) here on shutdown (SIGINT/SIGTERM).
    #[arg(long, value_name = "FILE")]
    ledger: Option<PathBuf>,
    /// Seed of the synthetic market and random faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Access-token lifetime, e.g. 900s or 500ms.
    #[arg(long, default_value = "900s", value_parser = parse_dur)]
    token_ttl: Duration,
    /// Refresh-token lifetime, e.g. 3600s (never shorter than --token-ttl).
    #[arg(long, default_value = "3600s", value_parser = parse_dur)]
    refresh_ttl: Duration,
    /// Smallest heartbeat interval accepted (Deribit: 10s).
    #[arg(long, default_value = "10s", value_parser = parse_dur)]
    min_heartbeat: Duration,
    /// Requests per second allowed per connection (then 10028).
    #[arg(long, default_value_t = 100.0)]
    req_rate: f64,
    /// Request burst allowed per connection.
    #[arg(long, default_value_t = 500.0)]
    req_burst: f64,
    /// Simultaneous connections allowed per IP address (then HTTP 429).
    #[arg(long, default_value_t = 32)]
    max_conns_per_ip: usize,
    /// Synthetic price levels per book side.
    #[arg(long, default_value_t = 20)]
    depth: usize,
}

/// `HOST:PORT` for `sim --listen`: an IP address, or a host name resolved once (its first
/// address: `localhost` is 127.0.0.1 or ::1).
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("`{s}` is not HOST:PORT ({e})"))?;
    addrs
        .next()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

fn parse_dur(s: &str) -> Result<Duration, String> {
    // The fault grammar's duration parser; its error is about the value alone, not a fault.
    faults::parse_duration(s).map_err(|e| e.0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `cargo run --release` runs the demo.
    let command = cli.command.unwrap_or_else(|| {
        Command::Demo(DemoArgs {
            seconds: 10.0,
            rate: 5000,
            sessions: 1,
            ..DemoArgs::default()
        })
    });
    match command {
        Command::Demo(args) => run_demo(args),
        Command::Report(args) => spinwire_tools::report::main(&args),
        Command::Tap(args) => run_tap(args),
        Command::Orders(args) => orders_cli::main(&args),
        Command::Sim(args) => match run_sim(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spinwire sim: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run_demo(a: DemoArgs) -> ExitCode {
    let opts = spinwire_tools::demo::DemoOptions {
        seconds: a.seconds,
        faults: !a.no_faults,
        summary_json: a.summary_json,
        report_dir: a.report_dir,
        rate: a.rate,
        url: a.url,
        ca_file: a.ca_file,
        quote: a.quote,
        progress: !a.quiet,
        sessions: a.sessions,
        interrupt: None,
    };
    // Ctrl-C / SIGTERM end the run early, with its summary and report (and the simulator's
    // private CA directory removed). Blocked before any thread starts, taken by one thread.
    let mut opts = opts;
    if let Ok(set) = block_stop_signals() {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let raise = flag.clone();
        let spawned = std::thread::Builder::new()
            .name("spinwire-signals".into())
            .spawn(move || {
                if wait_for(&set).is_ok() {
                    raise.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            });
        if spawned.is_ok() {
            opts.interrupt = Some(flag);
        }
    }
    let r = spinwire_tools::demo::run(&opts, &mut std::io::stdout(), &mut std::io::stderr());
    match r {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spinwire demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_tap(args: TapArgs) -> ExitCode {
    let mut out = std::io::stdout().lock();
    if let (Some(Venue::Deribit), Some(url)) = (args.venue, args.url) {
        let mut session = spinwire_engine::session::SessionConfig::default();
        if let Some(h) = args.heartbeat {
            let h = Duration::from_secs_f64(h);
            session.heartbeat = Some(h);
            session.ping_after = h.max(Duration::from_millis(1));
            session.dead_after = (h / 2).max(Duration::from_millis(1));
        }
        if let Some(t) = args.connect_timeout {
            session.connect_timeout = Duration::from_secs_f64(t).max(Duration::from_millis(1));
        }
        if let Some(t) = args.setup_timeout {
            session.setup_timeout = Duration::from_secs_f64(t).max(Duration::from_millis(1));
        }
        let opts = spinwire_tools::tap::VenueTapOptions {
            url,
            subscribe: args.subscribe,
            ca_file: args.ca_file,
            count: args.count,
            seconds: args.seconds,
            credentials_file: args.credentials_file,
            client_credentials: args.client_credentials,
            session_name: args.session_name,
            verbose: args.verbose,
            session,
            sessions: args.sessions,
        };
        return match spinwire_tools::tap::run_venue(&opts, &mut out, &mut std::io::stderr()) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spinwire tap: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let opts = spinwire_tools::tap::TapOptions {
        url: args.raw.unwrap_or_default(),
        ca_file: args.ca_file,
        count: args.count,
        seconds: args.seconds,
        connect_timeout: Duration::from_secs_f64(args.connect_timeout.unwrap_or(10.0)),
    };
    match spinwire_tools::tap::run_raw(&opts, &mut out, &mut std::io::stderr()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spinwire tap: {e}");
            ExitCode::FAILURE
        }
    }
}

fn sim_config(a: SimArgs) -> Result<SimConfig, String> {
    let Venue::Deribit = a.venue;
    let mut credentials = Vec::new();
    for c in &a.credentials {
        let (id, secret) = c
            .split_once(':')
            .filter(|(i, s)| !i.is_empty() && !s.is_empty())
            .ok_or_else(|| format!("--credentials {c:?}: expected CLIENT_ID:CLIENT_SECRET"))?;
        credentials.push((id.to_string(), secret.to_string()));
    }
    let faults = match &a.faults {
        Some(spec) => faults::parse_spec(spec).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let tls = match (a.tls_self_signed, a.cert, a.key) {
        (Some(dir), _, _) => Some(TlsSetup::SelfSigned(dir)),
        (None, Some(cert), Some(key)) => Some(TlsSetup::Files { cert, key }),
        _ => None,
    };
    if !(a.req_rate > 0.0 && a.req_burst >= 1.0) {
        return Err("--req-rate must be > 0 and --req-burst >= 1".into());
    }
    Ok(SimConfig {
        listen: a.listen,
        tls,
        rate: a.rate,
        instruments: a.instruments,
        credentials,
        faults,
        ledger_path: a.ledger,
        seed: a.seed,
        token_ttl: a.token_ttl,
        refresh_ttl: a.refresh_ttl,
        min_heartbeat: a.min_heartbeat,
        request_rate: RateLimit {
            per_sec: a.req_rate,
            burst: a.req_burst,
        },
        max_conns_per_ip: a.max_conns_per_ip,
        depth: a.depth.max(1),
        ..SimConfig::default()
    })
}

fn run_sim(args: SimArgs) -> Result<(), String> {
    let cfg = sim_config(args)?;
    // Block SIGINT/SIGTERM before any thread starts so every thread inherits the mask and
    // the signals are only ever taken by `sigwait` below.
    let set = block_stop_signals().map_err(|e| format!("cannot block signals: {e}"))?;
    let handle = Simulator::start(cfg).map_err(|e| e.to_string())?;
    eprintln!("spinwire sim: listening on {}", handle.url());
    if let Some(ca) = handle.ca_file() {
        eprintln!("spinwire sim: clients trust {}", ca.display());
    }
    let sig = wait_for(&set).map_err(|e| format!("sigwait: {e}"))?;
    eprintln!("spinwire sim: signal {sig}, stopping");
    let ledger = handle.shutdown_checked().map_err(|e| e.to_string())?;
    eprintln!(
        "spinwire sim: stopped; ledger has {} entries",
        ledger.entries.len()
    );
    Ok(())
}

fn block_stop_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: `set` is fully initialized by sigemptyset before use; the pointers passed point
    // to live locals of the right types.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

fn wait_for(set: &libc::sigset_t) -> std::io::Result<i32> {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is an initialized signal set and `sig` a live out-parameter.
    let rc = unsafe { libc::sigwait(set, &mut sig) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(sig)
}
