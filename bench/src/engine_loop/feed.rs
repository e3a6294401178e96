//! A paced market-data feeder for many connections at once: `N` WebSocket connections on one
//! thread, each served its own [`MdStream`] (book changes and trades of two instruments, in the
//! simulator's format), at a total rate shared round-robin — message `i` goes to connection
//! `i % N`, written alone at its due time (`start + i / rate`). The wire pattern is therefore the
//! same whatever `N`: one message per write, `rate` writes per second in total; only the number
//! of connections they are spread over changes.
//!
//! It speaks what a public market-data session needs: the upgrade, `public/subscribe`
//! (answered, then a snapshot per book channel, carrying the `change_id` the stream chains on
//! from), any other request answered with an empty result, pings, close.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use spinwire_engine::latency::realtime_ns;
use spinwire_tools::sim::ws::WsMessage;

use super::peer::{wait_fd, PeerConn};
use crate::e2e::stream::MdStream;

/// Settings of a [`MultiFeed`].
#[derive(Debug, Clone, Copy)]
pub struct MultiFeedConfig {
    /// Connections to accept before streaming.
    pub connections: usize,
    /// Messages per second, all connections together.
    pub rate: u64,
    /// Messages to send in total (snapshots and answers not counted).
    pub messages: u64,
    /// Seed of connection 0's stream (connection `k` uses `seed + k`).
    pub seed: u64,
}

/// What the feeder shares with the harness.
#[derive(Debug, Default)]
pub struct MultiFeedShared {
    /// Connections whose first subscription was answered (with its snapshots).
    pub subscribed: AtomicUsize,
    /// Raised by the harness: start streaming.
    pub go: AtomicBool,
    /// Stream messages written so far.
    pub sent: AtomicU64,
    /// Messages that went out later than 1 ms after their due time.
    pub late: AtomicU64,
    /// Raised by the feeder once every message was written (or it failed).
    pub done: AtomicBool,
    /// Raised by the harness: close every connection and end.
    pub stop: AtomicBool,
    /// Nanoseconds from the first stream message to the last.
    pub send_ns: AtomicU64,
}

/// A running feeder. See the [module docs](self).
#[derive(Debug)]
pub struct MultiFeed {
    addr: SocketAddr,
    shared: Arc<MultiFeedShared>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl MultiFeed {
    /// Binds `127.0.0.1:0` and starts the feeder thread (`multi-feeder`).
    ///
    /// # Errors
    /// The socket or the thread could not be made.
    pub fn start(config: MultiFeedConfig) -> io::Result<MultiFeed> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(MultiFeedShared::default());
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("multi-feeder".into())
            .spawn(move || {
                let r = serve(listener, config, &sh);
                sh.done.store(true, Ordering::Release);
                r
            })?;
        Ok(MultiFeed {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// The URL sessions connect to.
    pub fn url(&self) -> String {
        format!("ws://{}/ws/api/v2", self.addr)
    }

    /// Flags and counters.
    pub fn shared(&self) -> &MultiFeedShared {
        &self.shared
    }

    /// Stops the feeder (closing every connection) and waits for its thread.
    ///
    /// # Errors
    /// What the feeder thread failed with.
    pub fn finish(mut self) -> io::Result<()> {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("feeder thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for MultiFeed {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection and its stream.
struct Conn {
    peer: PeerConn,
    stream: MdStream,
    subscribed: bool,
    msg: Vec<u8>,
}

impl Conn {
    /// Reads and answers what the client sent.
    fn service(&mut self, shared: &MultiFeedShared) -> io::Result<()> {
        if self.peer.closed() {
            return Ok(());
        }
        self.peer.read()?;
        while let Some(m) = self.peer.next_message()? {
            if let WsMessage::Text(t) = m {
                self.request(&t, shared);
            }
        }
        Ok(())
    }

    /// Answers one JSON-RPC request; a subscription gets a snapshot per book channel.
    fn request(&mut self, text: &str, shared: &MultiFeedShared) {
        let Some(crate::e2e::RpcAnswer {
            method,
            channels,
            answer,
        }) = crate::e2e::answer_request(text, true)
        else {
            return;
        };
        self.peer.send_text(answer.as_bytes());
        if method.ends_with("/subscribe") {
            for c in &channels {
                let inst = c
                    .strip_prefix("book.")
                    .and_then(|r| r.rsplit_once('.'))
                    .and_then(|(name, _)| self.stream.instrument_index(name));
                if let Some(k) = inst {
                    self.msg.clear();
                    self.stream.snapshot(k, &mut self.msg, realtime_ns());
                    let msg = std::mem::take(&mut self.msg);
                    self.peer.send_text(&msg);
                    self.msg = msg;
                }
            }
            if !self.subscribed {
                self.subscribed = true;
                shared.subscribed.fetch_add(1, Ordering::Release);
            }
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

/// Waits up to `timeout_ms` for input on any of `conns`.
fn wait_any(conns: &[Conn], timeout_ms: i32) {
    let mut fds: Vec<libc::pollfd> = conns
        .iter()
        .map(|c| libc::pollfd {
            fd: c.peer.fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a live array of initialized pollfds and its length is passed.
    unsafe {
        libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms);
    }
}

fn serve(
    listener: TcpListener,
    config: MultiFeedConfig,
    shared: &MultiFeedShared,
) -> io::Result<()> {
    tight_timer_slack();
    listener.set_nonblocking(true)?;
    let n = config.connections.max(1);
    let started = Instant::now();
    let mut conns: Vec<Conn> = Vec::with_capacity(n);
    // Accept and set up every connection, answering requests meanwhile.
    while conns.len() < n || shared.subscribed.load(Ordering::Acquire) < n {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(io::Error::other(format!(
                "{} of {n} connections set up within 30 s",
                shared.subscribed.load(Ordering::Relaxed)
            )));
        }
        loop {
            match listener.accept() {
                Ok((s, _)) => conns.push(Conn {
                    peer: PeerConn::new(s)?,
                    stream: MdStream::new(config.seed + conns.len() as u64),
                    subscribed: false,
                    msg: Vec::with_capacity(4096),
                }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        for c in conns.iter_mut() {
            c.service(shared)?;
            c.peer.flush_all()?;
        }
        if conns.len() < n {
            wait_fd(listener_fd(&listener), libc::POLLIN, 1);
        } else {
            wait_any(&conns, 1);
        }
    }
    // Wait for the harness, keeping the connections answered.
    while !shared.go.load(Ordering::Acquire) {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        wait_any(&conns, 1);
        for c in conns.iter_mut() {
            c.service(shared)?;
            c.peer.flush_all()?;
        }
    }
    let period = 1e9 / config.rate.max(1) as f64;
    let start = Instant::now();
    let mut first_ns = 0;
    let mut late = 0;
    for i in 0..config.messages {
        let due = start + Duration::from_nanos((i as f64 * period) as u64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if now - due > Duration::from_millis(1) {
            late += 1;
        }
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let c = &mut conns[(i % n as u64) as usize];
        if c.peer.closed() {
            continue;
        }
        c.msg.clear();
        let ns = realtime_ns();
        c.stream.next_message(&mut c.msg, ns);
        if i == 0 {
            first_ns = ns;
        }
        let msg = std::mem::take(&mut c.msg);
        c.peer.send_text(&msg);
        c.msg = msg;
        c.peer.flush_all()?;
        shared.sent.store(i + 1, Ordering::Relaxed);
        if i % 64 == 0 {
            c.service(shared)?;
        }
    }
    shared
        .send_ns
        .store(realtime_ns().saturating_sub(first_ns), Ordering::Relaxed);
    shared.late.store(late, Ordering::Relaxed);
    shared.done.store(true, Ordering::Release);
    // Keep answering (a logout, a close) until told to stop.
    while !shared.stop.load(Ordering::Relaxed) {
        wait_any(&conns, 1);
        for c in conns.iter_mut() {
            c.service(shared)?;
            c.peer.flush_all()?;
        }
        if conns.iter().all(|c| c.peer.closed()) {
            break;
        }
    }
    for c in conns.iter_mut() {
        if !c.peer.closed() {
            spinwire_tools::sim::ws::write_close(c.peer.out(), 1000, "done");
            let _ = c.peer.flush();
        }
        c.peer.shutdown();
    }
    Ok(())
}

fn listener_fd(l: &TcpListener) -> i32 {
    use std::os::fd::AsRawFd;
    l.as_raw_fd()
}
