//! Shared test support: a private CA (rcgen), rustls/plain servers on loopback running in
//! threads, and a reactor-driven client that records what happened.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use spinwire_engine::reactor::{PollMode, Reactor};
use spinwire_engine::transport::{
    CloseStatus, Handshake, ReadStatus, Security, TlsConfig, Transport, TransportError,
    TransportOptions,
};

/// How long any test may wait for its connections before failing.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// Server-side socket timeout, so a broken client cannot hang a server thread.
const SERVER_TIMEOUT: Duration = Duration::from_secs(20);

/// A private certificate authority.
pub struct Pki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A fresh CA called `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self {
            ca_pem: ca.pem(),
            ca,
        }
    }

    /// A client config trusting only this CA.
    pub fn client_config(&self) -> TlsConfig {
        TlsConfig::builder()
            .ca_pem(self.ca_pem.as_bytes())
            .build()
            .unwrap()
    }

    /// A server config with a certificate for `names`, signed by this CA, offering http/1.1.
    pub fn server_config(&self, names: &[&str]) -> Arc<ServerConfig> {
        self.server_config_versions(names, rustls::DEFAULT_VERSIONS)
    }

    /// Like [`Pki::server_config`], limited to the given protocol versions.
    pub fn server_config_versions(
        &self,
        names: &[&str],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ServerConfig> {
        self.server_config_with(names, versions, rustls::crypto::ring::default_provider())
    }

    /// Like [`Pki::server_config_versions`], with the given crypto provider (e.g. one cipher
    /// suite only).
    pub fn server_config_with(
        &self,
        names: &[&str],
        versions: &[&'static rustls::SupportedProtocolVersion],
        provider: rustls::crypto::CryptoProvider,
    ) -> Arc<ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// How a test server ends a connection after the client's first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Send the payload, a TLS close_notify, then FIN.
    CloseNotify,
    /// Send the payload, then FIN without close_notify.
    FinOnly,
    /// Send nothing more; reset the connection (SO_LINGER 0).
    Reset,
}

/// What a server thread saw.
#[derive(Debug)]
pub enum ServerSaw {
    /// The client closed cleanly (close_notify for TLS, FIN for plain) after sending this many
    /// bytes.
    CleanClose(usize),
    /// The connection ended with this error text after this many bytes.
    Error(String, usize),
    /// The server ended the connection as told.
    Ended,
}

fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

fn accept(listener: &TcpListener) -> TcpStream {
    let (sock, _) = listener.accept().unwrap();
    sock.set_read_timeout(Some(SERVER_TIMEOUT)).unwrap();
    sock.set_write_timeout(Some(SERVER_TIMEOUT)).unwrap();
    sock
}

/// Echoes everything over `stream` until the client closes; reports how it ended.
fn echo<S: Read + Write>(stream: &mut S) -> ServerSaw {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return ServerSaw::CleanClose(total),
            Ok(n) => {
                total += n;
                if let Err(e) = stream.write_all(&buf[..n]).and_then(|()| stream.flush()) {
                    return ServerSaw::Error(e.to_string(), total);
                }
            }
            Err(e) => return ServerSaw::Error(e.to_string(), total),
        }
    }
}

/// A TLS echo server accepting `connections` connections, each on its own thread.
pub fn tls_echo_server(
    config: Arc<ServerConfig>,
    connections: usize,
) -> (SocketAddr, JoinHandle<Vec<ServerSaw>>) {
    let listener = bind();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                let sock = accept(&listener);
                let config = Arc::clone(&config);
                thread::spawn(move || {
                    let conn = ServerConnection::new(config).unwrap();
                    let mut stream = StreamOwned::new(conn, sock);
                    let saw = echo(&mut stream);
                    if matches!(saw, ServerSaw::CleanClose(_)) {
                        stream.conn.send_close_notify();
                        let _ = stream.flush();
                    }
                    saw
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    (addr, handle)
}

/// A plain TCP echo server accepting `connections` connections.
pub fn plain_echo_server(connections: usize) -> (SocketAddr, JoinHandle<Vec<ServerSaw>>) {
    let listener = bind();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                let mut sock = accept(&listener);
                thread::spawn(move || echo(&mut sock))
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    (addr, handle)
}

/// Sets SO_LINGER {on, 0}: closing then sends RST instead of FIN.
pub fn set_linger_zero(sock: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is open for the duration of the call; `linger` is a valid,
    // initialised struct whose exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

/// Reads exactly `n` bytes (the client's trigger message).
fn read_n<S: Read>(stream: &mut S, n: usize) -> io::Result<()> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf)
}

/// A server that waits for `trigger_len` bytes from the client, sends `payload`, then ends the
/// connection as `ending` says. `config: None` is plain TCP.
pub fn ending_server(
    config: Option<Arc<ServerConfig>>,
    trigger_len: usize,
    payload: &'static [u8],
    ending: Ending,
) -> (SocketAddr, JoinHandle<ServerSaw>) {
    let listener = bind();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let sock = accept(&listener);
        match config {
            Some(config) => {
                let conn = ServerConnection::new(config).unwrap();
                let mut stream = StreamOwned::new(conn, sock);
                if let Err(e) = read_n(&mut stream, trigger_len) {
                    return ServerSaw::Error(e.to_string(), 0);
                }
                match ending {
                    Ending::CloseNotify => {
                        stream.write_all(payload).unwrap();
                        stream.conn.send_close_notify();
                        stream.flush().unwrap();
                        stream.sock.shutdown(std::net::Shutdown::Write).unwrap();
                    }
                    Ending::FinOnly => {
                        stream.write_all(payload).unwrap();
                        stream.flush().unwrap();
                        stream.sock.shutdown(std::net::Shutdown::Write).unwrap();
                    }
                    Ending::Reset => set_linger_zero(&stream.sock),
                }
                // Keep the socket open until the client has seen the FIN (it closes, we read
                // EOF or an error), except for the reset, which happens on drop.
                if ending != Ending::Reset {
                    let mut rest = [0u8; 64];
                    let _ = stream.sock.read(&mut rest);
                }
                ServerSaw::Ended
            }
            None => {
                let mut sock = sock;
                if let Err(e) = read_n(&mut sock, trigger_len) {
                    return ServerSaw::Error(e.to_string(), 0);
                }
                match ending {
                    Ending::CloseNotify | Ending::FinOnly => {
                        sock.write_all(payload).unwrap();
                        sock.shutdown(std::net::Shutdown::Write).unwrap();
                        let mut rest = [0u8; 64];
                        let _ = sock.read(&mut rest);
                    }
                    Ending::Reset => set_linger_zero(&sock),
                }
                ServerSaw::Ended
            }
        }
    });
    (addr, handle)
}

/// An address nothing listens on (bound, then released).
pub fn refused_addr() -> SocketAddr {
    let listener = bind();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// How a client's connection ended.
#[derive(Debug)]
pub enum End {
    /// `read_plaintext` reported a clean peer close.
    PeerClosed,
    /// An operation failed.
    Failed(TransportError),
}

/// A reactor slot: a transport plus what to send and what came back.
pub struct Client {
    pub transport: Transport,
    pub to_send: Vec<u8>,
    pub sent: usize,
    pub received: Vec<u8>,
    read_buf: Vec<u8>,
    pub established: bool,
    /// Set to make `pump` close the transport instead of writing.
    pub closing: bool,
    /// `close()` returned `Done`.
    pub closed: bool,
    pub end: Option<End>,
    /// Events dispatched to this slot.
    pub events: usize,
    /// Times `write_plaintext` took nothing (outgoing queue full).
    pub write_refusals: usize,
}

impl Client {
    /// A client around `transport` that will send `to_send` and read with a `read_buf`-byte
    /// buffer.
    pub fn new(transport: Transport, to_send: Vec<u8>, read_buf: usize) -> Self {
        Self {
            transport,
            to_send,
            sent: 0,
            received: Vec::new(),
            read_buf: vec![0; read_buf],
            established: false,
            closing: false,
            closed: false,
            end: None,
            events: 0,
            write_refusals: 0,
        }
    }

    /// Does everything the transport allows right now: handshake, queue and flush output, read
    /// until drained.
    pub fn pump(&mut self) {
        if matches!(self.end, Some(End::Failed(_))) || (self.end.is_some() && !self.closing) {
            return;
        }
        if !self.established {
            match self.transport.handshake() {
                Ok(Handshake::InProgress) => return,
                Ok(Handshake::Done) => self.established = true,
                Err(e) => {
                    self.end = Some(End::Failed(e));
                    return;
                }
            }
        }
        if self.closing {
            if self.closed {
                // Nothing left to do but read the peer's close.
            } else {
                match self.transport.close() {
                    Ok(CloseStatus::Done) => self.closed = true,
                    Ok(CloseStatus::Pending) => {}
                    Err(e) => {
                        self.end = Some(End::Failed(e));
                        return;
                    }
                }
            }
        } else {
            self.write_and_flush();
        }
        if self.end.is_none() {
            self.read_all();
        }
    }

    /// Queues what is left to send and flushes.
    fn write_and_flush(&mut self) {
        while self.sent < self.to_send.len() {
            match self.transport.write_plaintext(&self.to_send[self.sent..]) {
                Ok(0) => {
                    self.write_refusals += 1;
                    break;
                }
                Ok(n) => self.sent += n,
                Err(e) => {
                    self.end = Some(End::Failed(e));
                    return;
                }
            }
        }
        if let Err(e) = self.transport.flush() {
            self.end = Some(End::Failed(e));
        }
    }

    /// Reads until the transport says to wait.
    fn read_all(&mut self) {
        loop {
            match self.transport.read_plaintext(&mut self.read_buf) {
                Ok(ReadStatus::More { read }) => {
                    self.received.extend_from_slice(&self.read_buf[..read]);
                }
                Ok(ReadStatus::Drained { read }) => {
                    self.received.extend_from_slice(&self.read_buf[..read]);
                    break;
                }
                Ok(ReadStatus::PeerClosed { read }) => {
                    self.received.extend_from_slice(&self.read_buf[..read]);
                    self.end = Some(End::PeerClosed);
                    break;
                }
                Err(e) => {
                    self.end = Some(End::Failed(e));
                    break;
                }
            }
        }
    }
}

/// A reactor for test clients.
pub fn reactor(mode: PollMode) -> Reactor<Client> {
    Reactor::new(16, 64, mode).unwrap()
}

/// The blocking mode tests use by default.
pub fn blocking() -> PollMode {
    PollMode::Blocking(Some(Duration::from_millis(20)))
}

/// Connects a client to `addr` and puts it in a slot; it will send `to_send` once established
/// and read with a `read_buf`-byte buffer.
pub fn add_client(
    reactor: &mut Reactor<Client>,
    addr: SocketAddr,
    security: Security<'_>,
    to_send: Vec<u8>,
    read_buf: usize,
) -> mio::Token {
    reactor
        .insert_with(|token, registry| {
            let mut transport = Transport::connect(addr, security, TransportOptions::default())?;
            transport.register(registry, token).unwrap();
            Ok::<_, TransportError>(Client::new(transport, to_send, read_buf))
        })
        .unwrap()
}

/// Turns the reactor (and visits every client after each turn) until `done` holds.
pub fn drive(reactor: &mut Reactor<Client>, mut done: impl FnMut(&mut Reactor<Client>) -> bool) {
    let start = Instant::now();
    while !done(reactor) {
        assert!(start.elapsed() < DEADLINE, "test timed out");
        reactor
            .turn(|_, client, _, _| {
                client.events += 1;
                client.pump();
            })
            .unwrap();
        for (_, client) in reactor.iter_mut() {
            client.pump();
        }
    }
}

/// Drives until the client in `token` has ended, and returns how.
pub fn drive_to_end(reactor: &mut Reactor<Client>, token: mio::Token) -> &mut Client {
    drive(reactor, |r| r.get(token).unwrap().end.is_some());
    reactor.get_mut(token).unwrap()
}

/// A deterministic, non-repeating-looking payload of `len` bytes.
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Sends the client's payload, waits for all of it to come back, closes (close_notify + FIN)
/// and waits for the server's close; returns the client.
pub fn echo_round_trip(reactor: &mut Reactor<Client>, token: mio::Token) -> &mut Client {
    drive(reactor, |r| {
        let c = r.get(token).unwrap();
        c.end.is_some() || c.received.len() >= c.to_send.len()
    });
    reactor.get_mut(token).unwrap().closing = true;
    drive(reactor, |r| {
        let c = r.get(token).unwrap();
        c.end.is_some() && c.closed
    });
    reactor.get_mut(token).unwrap()
}

/// A server that completes the handshake (TLS) and then reads nothing until `go` is received;
/// after that it reads exactly `expect` bytes and returns them.
pub fn stalled_reader(
    config: Option<Arc<ServerConfig>>,
    expect: usize,
) -> (SocketAddr, std::sync::mpsc::Sender<()>, JoinHandle<Vec<u8>>) {
    let listener = bind();
    let addr = listener.local_addr().unwrap();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let handle = thread::spawn(move || {
        let mut sock = accept(&listener);
        let mut data = vec![0u8; expect];
        match config {
            Some(config) => {
                let mut conn = ServerConnection::new(config).unwrap();
                while conn.is_handshaking() {
                    conn.complete_io(&mut sock).unwrap();
                }
                go_rx.recv().unwrap();
                let mut stream = StreamOwned::new(conn, sock);
                stream.read_exact(&mut data).unwrap();
            }
            None => {
                go_rx.recv().unwrap();
                sock.read_exact(&mut data).unwrap();
            }
        }
        data
    });
    (addr, go_tx, handle)
}

/// A TLS server that, once it has read the 2-byte trigger, sends `blob`, then reads exactly
/// `expect` bytes, sends close_notify and returns what it read.
pub fn send_then_read_server(
    config: Arc<ServerConfig>,
    blob: Vec<u8>,
    expect: usize,
) -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let listener = bind();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let sock = accept(&listener);
        let mut stream = StreamOwned::new(ServerConnection::new(config).unwrap(), sock);
        read_n(&mut stream, 2).unwrap();
        stream.write_all(&blob).unwrap();
        stream.flush().unwrap();
        let mut got = vec![0u8; expect];
        stream.read_exact(&mut got).unwrap();
        stream.conn.send_close_notify();
        stream.flush().unwrap();
        let mut rest = [0u8; 64];
        let _ = stream.sock.read(&mut rest);
        got
    });
    (addr, handle)
}

/// Waits until the kernel holds at least `n` unread bytes for `sock`.
pub fn wait_for_unread_bytes(sock: &mio::net::TcpStream, n: usize) {
    let start = Instant::now();
    loop {
        let mut available: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the valid pointer; the fd is open.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut available) };
        assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
        if available as usize >= n {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "only {available} bytes arrived");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A bare transport connected to `addr` in a reactor of its own (blocking mode, 20 ms), with
/// the handshake done.
pub fn handshaken_transport(
    addr: SocketAddr,
    security: Security<'_>,
) -> (Reactor<Transport>, mio::Token) {
    let mut reactor: Reactor<Transport> =
        Reactor::new(4, 64, PollMode::Blocking(Some(Duration::from_millis(20)))).unwrap();
    let token = reactor
        .insert_with(|token, registry| {
            let mut t = Transport::connect(addr, security, TransportOptions::default())?;
            t.register(registry, token).unwrap();
            Ok::<_, TransportError>(t)
        })
        .unwrap();
    let start = Instant::now();
    let mut established = false;
    while !established {
        assert!(start.elapsed() < DEADLINE, "handshake timed out");
        reactor
            .turn(|_, t, _, _| established = t.handshake().unwrap() == Handshake::Done)
            .unwrap();
    }
    (reactor, token)
}
