//! The server side of one loopback WebSocket connection ([`PeerConn`]: the HTTP upgrade, frames
//! in and out over a non-blocking socket, the simulator's codec) and a server that accepts
//! any number of them and then stays quiet ([`QuietServer`]).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use spinwire_tools::sim::ws::{self, opcode, FrameDecoder, WsMessage};

/// The server side of one WebSocket connection over a non-blocking loopback socket.
#[derive(Debug)]
pub struct PeerConn {
    sock: TcpStream,
    /// The request head, until the upgrade is complete.
    head: Vec<u8>,
    frames: FrameDecoder,
    /// Bytes to send, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    upgraded: bool,
    /// The client closed its side (EOF) or sent a close frame.
    closed: bool,
    chunk: Box<[u8; 64 * 1024]>,
}

impl PeerConn {
    /// Wraps an accepted socket (made non-blocking, `TCP_NODELAY`).
    ///
    /// # Errors
    /// The socket options could not be set.
    pub fn new(sock: std::net::TcpStream) -> io::Result<PeerConn> {
        sock.set_nonblocking(true)?;
        sock.set_nodelay(true)?;
        Ok(PeerConn::from_mio(TcpStream::from_std(sock)))
    }

    fn from_mio(sock: TcpStream) -> PeerConn {
        PeerConn {
            sock,
            head: Vec::new(),
            frames: FrameDecoder::new(1 << 20),
            out: Vec::with_capacity(64 * 1024),
            out_pos: 0,
            upgraded: false,
            closed: false,
            chunk: Box::new([0u8; 64 * 1024]),
        }
    }

    /// The socket's descriptor.
    pub fn fd(&self) -> i32 {
        self.sock.as_raw_fd()
    }

    /// Whether the upgrade is done (the 101 is queued or sent).
    pub fn upgraded(&self) -> bool {
        self.upgraded
    }

    /// Whether the client is gone (EOF or a close frame).
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Reads what the socket has (one `read` when nothing is there); completes the upgrade
    /// once its head is in (queueing the 101). Returns the bytes read.
    ///
    /// # Errors
    /// A socket error, or a bad upgrade request.
    pub fn read(&mut self) -> io::Result<usize> {
        let mut total = 0;
        loop {
            match self.sock.read(&mut self.chunk[..]) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => {
                    total += n;
                    if self.upgraded {
                        self.frames.extend(&self.chunk[..n]);
                    } else {
                        self.head.extend_from_slice(&self.chunk[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !self.upgraded && !self.head.is_empty() {
            match ws::parse_upgrade(&self.head) {
                Ok(Some(req)) => {
                    self.out
                        .extend_from_slice(&ws::switching_protocols(&req.key));
                    self.upgraded = true;
                    self.frames.extend(&self.head[req.head_len..]);
                    self.head = Vec::new();
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::other(format!("upgrade: {e}"))),
            }
        }
        Ok(total)
    }

    /// The next complete message from the client, if one is in. Pings are answered (queued),
    /// a close frame is answered and marks the connection closed.
    ///
    /// # Errors
    /// A framing error by the client.
    pub fn next_message(&mut self) -> io::Result<Option<WsMessage>> {
        let m = self
            .frames
            .next_message()
            .map_err(|e| io::Error::other(format!("client frame: {e}")))?;
        match &m {
            Some(WsMessage::Ping(p)) => ws::write_frame(&mut self.out, opcode::PONG, p),
            Some(WsMessage::Close(_)) => {
                ws::write_close(&mut self.out, 1000, "");
                self.closed = true;
            }
            _ => {}
        }
        Ok(m)
    }

    /// Queues a text frame.
    pub fn send_text(&mut self, payload: &[u8]) {
        ws::write_frame(&mut self.out, opcode::TEXT, payload);
    }

    /// The queue of bytes to send (to append frames to directly).
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Writes what the socket takes; `true` once nothing is left.
    ///
    /// # Errors
    /// A socket error other than a full buffer.
    pub fn flush(&mut self) -> io::Result<bool> {
        while self.out_pos < self.out.len() {
            match self.sock.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(true)
    }

    /// Writes everything queued, waiting for the socket (in `poll`) while it is full.
    ///
    /// # Errors
    /// A socket error.
    pub fn flush_all(&mut self) -> io::Result<()> {
        while !self.flush()? {
            wait_fd(self.fd(), libc::POLLOUT, 10);
        }
        Ok(())
    }

    /// Shuts the socket down both ways.
    pub fn shutdown(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }

    /// The mio socket (to register it with a poll).
    pub fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.sock
    }
}

/// Waits up to `timeout_ms` (-1: forever) in `poll(2)` for `events` on `fd`.
pub fn wait_fd(fd: i32, events: libc::c_short, timeout_ms: i32) {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: `p` is one valid, initialized pollfd and the count passed is 1.
    unsafe {
        libc::poll(&mut p, 1, timeout_ms);
    }
}

/// What a [`QuietServer`] has done so far.
#[derive(Debug, Default)]
pub struct QuietShared {
    /// Connections upgraded.
    pub upgraded: AtomicUsize,
    /// Readiness events it was woken for (after the upgrades, nothing should come).
    pub events: AtomicU64,
    /// Text messages received (requests, all ignored).
    pub texts: AtomicU64,
    stop: AtomicBool,
}

/// A loopback WebSocket server that accepts connections, completes their upgrades and then
/// says nothing: no heartbeats, no data, no answers to requests (pings and close frames are
/// answered). Its thread sleeps in `epoll_wait` with no timeout, so it never wakes on its own.
#[derive(Debug)]
pub struct QuietServer {
    addr: SocketAddr,
    shared: Arc<QuietShared>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

impl QuietServer {
    /// Binds `127.0.0.1:0` and starts the server thread (`quiet-server`).
    ///
    /// # Errors
    /// The socket, the poll or the thread could not be made.
    pub fn start() -> io::Result<QuietServer> {
        let mut listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let shared = Arc::new(QuietShared::default());
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("quiet-server".into())
            .spawn(move || quiet_loop(poll, listener, &sh))?;
        Ok(QuietServer {
            addr,
            shared,
            waker,
            thread: Some(thread),
        })
    }

    /// The URL a session connects to.
    pub fn url(&self) -> String {
        format!("ws://{}/ws/api/v2", self.addr)
    }

    /// Its counters.
    pub fn shared(&self) -> &QuietShared {
        &self.shared
    }

    /// Waits until `n` connections are upgraded (or `timeout` passes); returns whether they are.
    pub fn wait_upgraded(&self, n: usize, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while self.shared.upgraded.load(Ordering::Acquire) < n {
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

impl Drop for QuietServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn quiet_loop(mut poll: Poll, listener: TcpListener, shared: &QuietShared) -> io::Result<()> {
    let mut events = Events::with_capacity(256);
    let mut conns: Vec<Option<PeerConn>> = Vec::new();
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        for ev in events.iter() {
            shared.events.fetch_add(1, Ordering::Relaxed);
            match ev.token() {
                WAKER => {}
                LISTENER => loop {
                    match listener.accept() {
                        Ok((sock, _)) => {
                            let _ = sock.set_nodelay(true);
                            let mut c = PeerConn::from_mio(sock);
                            let token = Token(conns.len());
                            poll.registry()
                                .register(c.socket_mut(), token, Interest::READABLE)?;
                            conns.push(Some(c));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                },
                Token(i) => {
                    let Some(Some(c)) = conns.get_mut(i) else {
                        continue;
                    };
                    let was = c.upgraded();
                    let ok = c.read().is_ok();
                    if !was && c.upgraded() {
                        shared.upgraded.fetch_add(1, Ordering::Release);
                    }
                    while let Ok(Some(m)) = c.next_message() {
                        if matches!(m, WsMessage::Text(_)) {
                            shared.texts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Replies are a few bytes on an idle socket: they always fit.
                    let _ = c.flush();
                    if !ok || c.closed() {
                        let mut c = conns[i].take().expect("present");
                        let _ = poll.registry().deregister(c.socket_mut());
                        c.shutdown();
                    }
                }
            }
        }
    }
}
