//! The feeder: a one-connection loopback server that serves the [`MdStream`] over `ws://`,
//! `wss://` (the simulator's rustls server transport, a self-signed CA), or raw TCP with one
//! message per line (for the floor client), paced or as fast as the socket takes.
//!
//! WebSocket mode speaks as much Deribit as a market-data client needs: the upgrade,
//! `public/subscribe` (answered, then a snapshot per book channel, carrying the current
//! `change_id` so the stream's changes chain on), `public/unsubscribe`, pings and close.
//! Streaming starts after the first subscription was answered; in raw mode, at once.
//!
//! Every message is stamped with `sw_send_ns` (`CLOCK_REALTIME`) right before the write that
//! carries it; the paced mode writes each message alone, the max mode writes batches and stamps
//! each message as it is encoded.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use spinwire_engine::latency::realtime_ns;
use spinwire_tools::sim::transport::Transport;
use spinwire_tools::sim::ws::{self, opcode, FrameDecoder, WsMessage};
use spinwire_tools::sim::TlsSetup;

use super::stream::MdStream;
use super::E2eError;

/// How the feeder frames the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// WebSocket over plain TCP.
    Ws,
    /// WebSocket over TLS 1.3 (rustls, ring).
    Wss,
    /// Plain TCP, one message per line, no handshake.
    RawTcp,
}

impl Wire {
    /// `ws`, `wss` or `tcp`.
    pub fn name(self) -> &'static str {
        match self {
            Wire::Ws => "ws",
            Wire::Wss => "wss",
            Wire::RawTcp => "tcp",
        }
    }
}

/// How fast the feeder sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// This many messages per second, each written alone at its due time (a late message is
    /// sent at once, with its real send time).
    Rate(u64),
    /// As fast as the socket takes them, in batches of up to 64 messages per write.
    Max,
}

/// Feeder settings.
#[derive(Debug, Clone, Copy)]
pub struct FeedConfig {
    /// Framing.
    pub wire: Wire,
    /// Pace.
    pub pace: Pace,
    /// Stream messages to send (snapshots not counted).
    pub messages: u64,
    /// Seed of the stream.
    pub seed: u64,
}

/// What the feeder did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FeedStats {
    /// Stream messages sent.
    pub sent: u64,
    /// Snapshots sent (one per book channel per subscription).
    pub snapshots: u64,
    /// Payload bytes of the stream messages.
    pub bytes: u64,
    /// Seconds from the first stream message to the last.
    pub send_secs: f64,
    /// Requests answered.
    pub requests: u64,
}

/// The state the feeder shares with the harness.
#[derive(Debug, Default)]
pub struct FeedShared {
    /// Raised by the harness: close the connection and end.
    pub stop: AtomicBool,
    /// Raised by the feeder once every stream message was written.
    pub done: AtomicBool,
    /// Stream messages written so far.
    pub sent: AtomicU64,
}

/// A running feeder. See the [module docs](self).
#[derive(Debug)]
pub struct Feeder {
    addr: SocketAddr,
    wire: Wire,
    ca_file: Option<PathBuf>,
    shared: Arc<FeedShared>,
    thread: Option<JoinHandle<Result<FeedStats, E2eError>>>,
}

/// The feeder thread's name (the harness finds its scheduler counters by it).
pub(crate) const FEEDER_THREAD: &str = "e2e-feeder";

/// Where this process writes its certificates.
fn tls_dir() -> PathBuf {
    std::env::temp_dir().join(format!("spinwire-e2e-{}", std::process::id()))
}

/// Removes the certificate files this process wrote for `wss` runs (call once no run is left).
pub fn remove_tls_files() {
    let _ = std::fs::remove_dir_all(tls_dir());
}

/// The TLS server configuration and the CA file clients trust, generated once per process
/// into [`tls_dir`].
fn tls_setup() -> Result<&'static (Arc<rustls::ServerConfig>, PathBuf), E2eError> {
    static TLS: OnceLock<Result<(Arc<rustls::ServerConfig>, PathBuf), String>> = OnceLock::new();
    TLS.get_or_init(|| {
        let dir = tls_dir();
        let (cfg, ca) = spinwire_tools::sim::tls::server_config(&TlsSetup::SelfSigned(dir))
            .map_err(|e| e.to_string())?;
        let ca = ca.ok_or("no CA file was written")?;
        Ok((cfg, ca))
    })
    .as_ref()
    .map_err(|e| E2eError::Setup(format!("TLS certificates: {e}")))
}

impl Feeder {
    /// Binds `127.0.0.1:0` and starts the feeder thread, which serves one connection.
    ///
    /// # Errors
    /// [`E2eError::Setup`] when the socket or the TLS setup fails.
    pub fn start(config: FeedConfig) -> Result<Feeder, E2eError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| E2eError::Setup(format!("bind 127.0.0.1:0: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| E2eError::Setup(format!("local_addr: {e}")))?;
        let (tls, ca_file) = match config.wire {
            Wire::Wss => {
                let (cfg, ca) = tls_setup()?;
                (Some(cfg.clone()), Some(ca.clone()))
            }
            _ => (None, None),
        };
        let shared = Arc::new(FeedShared::default());
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name(FEEDER_THREAD.into())
            .spawn(move || {
                let r = serve(listener, tls, config, &sh);
                // Whatever happened, the strategy may stop waiting once it is idle.
                sh.done.store(true, Ordering::Release);
                r
            })
            .map_err(|e| E2eError::Setup(format!("spawn feeder: {e}")))?;
        Ok(Feeder {
            addr,
            wire: config.wire,
            ca_file,
            shared,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL a WebSocket client connects to (`tcp://` address for raw mode).
    pub fn url(&self) -> String {
        match self.wire {
            Wire::Ws => format!("ws://{}/ws/api/v2", self.addr),
            Wire::Wss => format!("wss://localhost:{}/ws/api/v2", self.addr.port()),
            Wire::RawTcp => format!("tcp://{}", self.addr),
        }
    }

    /// The CA file a `wss` client must trust.
    pub fn ca_file(&self) -> Option<&PathBuf> {
        self.ca_file.as_ref()
    }

    /// The shared flags and counters.
    pub fn shared(&self) -> &Arc<FeedShared> {
        &self.shared
    }

    /// Stops the feeder (closing the connection) and returns its counters.
    ///
    /// # Errors
    /// What the feeder thread failed with.
    pub fn finish(mut self) -> Result<FeedStats, E2eError> {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| E2eError::Feeder("feeder thread panicked".into()))?,
            None => Err(E2eError::Feeder("feeder already finished".into())),
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Lowers this thread's timer slack to 1 ns so that paced sleeps end close to their deadline.
fn tight_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long by value; no pointers are involved.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Asks for a large socket send buffer, so the max pace writes big batches between wake-ups
/// (the kernel caps it at `net.core.wmem_max`; a refusal only costs throughput).
fn set_send_buffer(fd: i32, bytes: libc::c_int) {
    // SAFETY: `fd` is a live socket; the option value points to a `c_int` that outlives the
    // call and the length passed is its size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Waits up to `timeout_ms` for the socket to become writable (or readable: a request).
fn wait_socket(fd: i32, timeout_ms: i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT | libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid, initialized pollfd and the count passed is 1.
    unsafe {
        libc::poll(&mut p, 1, timeout_ms);
    }
}

/// The connection being served.
struct Conn {
    transport: Transport,
    fd: i32,
    /// Bytes not yet taken by the socket, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    inbuf: Vec<u8>,
    frames: FrameDecoder,
    closed: bool,
}

impl Conn {
    /// Pushes pending output; returns once everything was taken, waiting on the socket meanwhile
    /// (and answering requests, so a client that resubscribes is not deadlocked).
    fn flush_all(&mut self, st: &mut Server) -> Result<(), E2eError> {
        loop {
            self.transport
                .write_from(&self.out, &mut self.out_pos)
                .map_err(|e| E2eError::Feeder(format!("write: {e}")))?;
            if self.out_pos == self.out.len() && !self.transport.wants_write() {
                self.out.clear();
                self.out_pos = 0;
                return Ok(());
            }
            if st.shared.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            wait_socket(self.fd, 10);
            self.service(st)?;
            if self.closed {
                return Ok(());
            }
        }
    }

    /// Reads what arrived and answers requests (WebSocket mode only).
    fn service(&mut self, st: &mut Server) -> Result<(), E2eError> {
        if st.wire == Wire::RawTcp || self.closed {
            return Ok(());
        }
        self.inbuf.clear();
        let r = self
            .transport
            .read_available(&mut self.inbuf)
            .map_err(|e| E2eError::Feeder(format!("read: {e}")))?;
        if !self.inbuf.is_empty() {
            self.frames.extend(&self.inbuf);
        }
        loop {
            match self.frames.next_message() {
                Ok(Some(WsMessage::Text(t))) => st.request(&t, &mut self.out),
                Ok(Some(WsMessage::Ping(p))) => ws::write_frame(&mut self.out, opcode::PONG, &p),
                Ok(Some(WsMessage::Close(_))) => {
                    ws::write_close(&mut self.out, 1000, "");
                    self.closed = true;
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(E2eError::Feeder(format!("client frame: {e}"))),
            }
        }
        if r.eof {
            self.closed = true;
        }
        Ok(())
    }
}

/// Stream and protocol state.
struct Server {
    wire: Wire,
    stream: MdStream,
    shared: Arc<FeedShared>,
    /// Subscriptions answered so far.
    subscribed: u64,
    stats: FeedStats,
    /// Payload scratch.
    msg: Vec<u8>,
}

/// A JSON-RPC request from the client under test and the feeder's answer to it.
#[derive(Debug)]
pub struct RpcAnswer {
    /// The request's method (`public/subscribe`, `public/auth`, ...).
    pub method: String,
    /// The channels it names (`params.channels`), if any.
    pub channels: Vec<String>,
    /// The answer: a JSON-RPC result echoing the channels, with Deribit's timing fields.
    pub answer: String,
}

/// Parses a client's JSON-RPC request and makes the answer every feeder gives (a result
/// listing the request's channels); `None` for text that is not JSON.
pub fn answer_request(text: &str, testnet: bool) -> Option<RpcAnswer> {
    let v = serde_json::from_str::<serde_json::Value>(text).ok()?;
    let id = v["id"].as_u64().unwrap_or(0);
    let method = v["method"].as_str().unwrap_or("").to_owned();
    let channels: Vec<String> = v["params"]["channels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let us = realtime_ns() / 1000;
    let answer = serde_json::json!({
        "jsonrpc": "2.0", "id": id, "result": channels,
        "usIn": us, "usOut": us, "usDiff": 0, "testnet": testnet,
    })
    .to_string();
    Some(RpcAnswer {
        method,
        channels,
        answer,
    })
}

impl Server {
    /// Answers one JSON-RPC request; subscriptions get a snapshot per book channel.
    fn request(&mut self, text: &str, out: &mut Vec<u8>) {
        self.stats.requests += 1;
        let Some(RpcAnswer {
            method,
            channels,
            answer,
        }) = answer_request(text, false)
        else {
            return;
        };
        ws::write_frame(out, opcode::TEXT, answer.as_bytes());
        if method.ends_with("/subscribe") {
            self.subscribed += 1;
            for c in &channels {
                let inst = c
                    .strip_prefix("book.")
                    .and_then(|r| r.rsplit_once('.'))
                    .and_then(|(name, _)| self.stream.instrument_index(name));
                if let Some(k) = inst {
                    self.msg.clear();
                    self.stream.snapshot(k, &mut self.msg, realtime_ns());
                    ws::write_frame(out, opcode::TEXT, &self.msg);
                    self.stats.snapshots += 1;
                }
            }
        }
    }

    /// Appends the next stream message, framed, to `out`.
    #[inline]
    fn next(&mut self, out: &mut Vec<u8>) {
        self.msg.clear();
        self.stream.next_message(&mut self.msg, realtime_ns());
        self.stats.bytes += self.msg.len() as u64;
        match self.wire {
            Wire::RawTcp => {
                out.extend_from_slice(&self.msg);
                out.push(b'\n');
            }
            _ => ws::write_frame(out, opcode::TEXT, &self.msg),
        }
    }
}

fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    config: FeedConfig,
    shared: &Arc<FeedShared>,
) -> Result<FeedStats, E2eError> {
    tight_timer_slack();
    listener
        .set_nonblocking(true)
        .map_err(|e| E2eError::Feeder(format!("listener: {e}")))?;
    let started = Instant::now();
    let sock = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if shared.stop.load(Ordering::Relaxed) {
                    return Ok(FeedStats::default());
                }
                if started.elapsed() > Duration::from_secs(30) {
                    return Err(E2eError::Feeder("no client connected within 30 s".into()));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => return Err(E2eError::Feeder(format!("accept: {e}"))),
        }
    };
    let setup = |e: io::Error| E2eError::Feeder(format!("socket setup: {e}"));
    sock.set_nonblocking(true).map_err(setup)?;
    sock.set_nodelay(true).map_err(setup)?;
    let sock = mio::net::TcpStream::from_std(sock);
    let fd = sock.as_raw_fd();
    set_send_buffer(fd, 4 << 20);
    let transport = Transport::new(sock, tls.as_ref()).map_err(setup)?;
    let mut conn = Conn {
        transport,
        fd,
        out: Vec::with_capacity(1 << 20),
        out_pos: 0,
        inbuf: Vec::with_capacity(64 * 1024),
        frames: FrameDecoder::new(1 << 20),
        closed: false,
    };
    let mut st = Server {
        wire: config.wire,
        stream: MdStream::new(config.seed),
        shared: shared.clone(),
        subscribed: 0,
        stats: FeedStats::default(),
        msg: Vec::with_capacity(4096),
    };
    if config.wire != Wire::RawTcp {
        upgrade(&mut conn, shared, started)?;
        // Wait for the first subscription to be answered.
        while st.subscribed == 0 {
            if shared.stop.load(Ordering::Relaxed) || conn.closed {
                return Ok(st.stats);
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(E2eError::Feeder("no subscription within 30 s".into()));
            }
            wait_socket(fd, 1);
            conn.service(&mut st)?;
            conn.flush_all(&mut st)?;
        }
        // Let the client take the snapshots in before the clock starts.
        std::thread::sleep(Duration::from_millis(20));
    }
    stream(&mut conn, &mut st, config)?;
    shared.done.store(true, Ordering::Release);
    // Keep answering until told to stop or the client leaves.
    while !shared.stop.load(Ordering::Relaxed) && !conn.closed {
        wait_socket(fd, 1);
        conn.service(&mut st)?;
        conn.flush_all(&mut st)?;
        if conn.out.is_empty() {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    if config.wire != Wire::RawTcp && !conn.closed {
        ws::write_close(&mut conn.out, 1000, "done");
    }
    conn.transport.send_close_notify();
    let _ = conn
        .transport
        .write_from(&conn.out, &mut conn.out_pos)
        .and_then(|_| conn.transport.write_from(&[], &mut 0));
    conn.transport.shutdown();
    Ok(st.stats)
}

/// Reads the upgrade request (driving the TLS handshake meanwhile) and answers 101.
fn upgrade(conn: &mut Conn, shared: &FeedShared, started: Instant) -> Result<(), E2eError> {
    let mut head = Vec::new();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return Err(E2eError::Feeder("stopped during the handshake".into()));
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(E2eError::Feeder("no upgrade request within 30 s".into()));
        }
        let r = conn
            .transport
            .read_available(&mut head)
            .map_err(|e| E2eError::Feeder(format!("handshake read: {e}")))?;
        // Handshake records (TLS) go out with an empty write.
        conn.transport
            .write_from(&[], &mut 0)
            .map_err(|e| E2eError::Feeder(format!("handshake write: {e}")))?;
        match ws::parse_upgrade(&head) {
            Ok(Some(req)) => {
                conn.out
                    .extend_from_slice(&ws::switching_protocols(&req.key));
                // Anything after the head is the first frames.
                conn.frames.extend(&head[req.head_len..]);
                return Ok(());
            }
            Ok(None) if r.eof => {
                return Err(E2eError::Feeder("client left during the handshake".into()))
            }
            Ok(None) => wait_socket(conn.fd, 1),
            Err(e) => return Err(E2eError::Feeder(format!("upgrade: {e}"))),
        }
    }
}

fn stream(conn: &mut Conn, st: &mut Server, config: FeedConfig) -> Result<(), E2eError> {
    let mut first_ns = 0u64;
    match config.pace {
        Pace::Rate(rate) => {
            let period = 1e9 / rate.max(1) as f64;
            let start = Instant::now();
            for i in 0..config.messages {
                let due = start + Duration::from_nanos((i as f64 * period) as u64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if st.shared.stop.load(Ordering::Relaxed) || conn.closed {
                    break;
                }
                st.next(&mut conn.out);
                if i == 0 {
                    first_ns = realtime_ns();
                }
                conn.flush_all(st)?;
                st.stats.sent += 1;
                st.shared.sent.store(st.stats.sent, Ordering::Relaxed);
                if i % 16 == 0 {
                    conn.service(st)?;
                }
            }
        }
        Pace::Max => {
            const BATCH: u64 = 64;
            first_ns = realtime_ns();
            let mut i = 0;
            while i < config.messages {
                if st.shared.stop.load(Ordering::Relaxed) || conn.closed {
                    break;
                }
                let n = BATCH.min(config.messages - i);
                for _ in 0..n {
                    st.next(&mut conn.out);
                }
                conn.flush_all(st)?;
                i += n;
                st.stats.sent = i;
                st.shared.sent.store(i, Ordering::Relaxed);
                if i % (BATCH * 64) == 0 {
                    conn.service(st)?;
                }
            }
        }
    }
    st.stats.send_secs = realtime_ns().saturating_sub(first_ns) as f64 / 1e9;
    Ok(())
}
