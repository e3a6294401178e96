//! An independent WebSocket client for the simulator tests: tungstenite's blocking client over
//! plain TCP or a rustls client stream, with JSON-RPC helpers. Nothing of spinwire's engine.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spinwire_tools::sim::{SimConfig, SimHandle, Simulator};
use tungstenite::{Message, WebSocket};

/// Test account.
pub const ID: &str = "test-client";
/// Its secret.
pub const SECRET: &str = "test-secret";

/// A config with one account, a quiet market and short heartbeat minimum.
pub fn config() -> SimConfig {
    SimConfig {
        credentials: vec![(ID.into(), SECRET.into())],
        rate: 0,
        min_heartbeat: Duration::from_millis(50),
        ..SimConfig::default()
    }
}

/// Starts a simulator.
pub fn start(cfg: SimConfig) -> SimHandle {
    Simulator::start(cfg).expect("simulator starts")
}

/// Plain or TLS client stream.
pub enum Stream {
    /// ws://
    Plain(TcpStream),
    /// wss://
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// What a read produced.
#[derive(Debug)]
pub enum Got {
    /// A JSON message.
    Json(Value),
    /// Nothing within the timeout.
    Timeout,
    /// The connection ended; the error says how.
    Closed(tungstenite::Error),
    /// A close frame with its code.
    CloseFrame(u16),
    /// A text message that is not JSON.
    NotJson(String),
}

/// A JSON-RPC client.
pub struct Client {
    pub ws: WebSocket<Stream>,
    sock: TcpStream,
    next_id: u64,
    /// Notifications received while waiting for responses.
    pub queue: VecDeque<Value>,
}

/// A rustls client config trusting the CA file.
pub fn tls_client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Opens a TCP (and TLS when the simulator serves wss) stream to the simulator.
pub fn raw_stream(sim: &SimHandle) -> (Stream, TcpStream) {
    raw_stream_to(sim.local_addr(), sim.ca_file().map(|p| p.as_path()))
}

/// Opens a TCP stream to `addr`, with TLS trusting `ca` when given.
pub fn raw_stream_to(addr: SocketAddr, ca: Option<&Path>) -> (Stream, TcpStream) {
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_nodelay(true).unwrap();
    let clone = sock.try_clone().unwrap();
    let stream = match ca {
        None => Stream::Plain(sock),
        Some(ca) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(tls_client_config(ca), name).unwrap();
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, sock)))
        }
    };
    (stream, clone)
}

impl Client {
    /// Connects and upgrades to WebSocket on /ws/api/v2.
    pub fn connect(sim: &SimHandle) -> Client {
        Self::try_connect(sim).expect("websocket handshake")
    }

    /// Connects; the handshake error when the server refuses.
    pub fn try_connect(sim: &SimHandle) -> Result<Client, tungstenite::Error> {
        Self::try_connect_to(sim.local_addr(), sim.ca_file().map(|p| p.as_path()))
    }

    /// Connects to an address (TLS trusting `ca` when given).
    pub fn try_connect_to(
        addr: SocketAddr,
        ca: Option<&Path>,
    ) -> Result<Client, tungstenite::Error> {
        let (stream, sock) = raw_stream_to(addr, ca);
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let url = format!("ws://localhost:{}/ws/api/v2", addr.port());
        let (ws, _resp) = tungstenite::client::client(url, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => {
                tungstenite::Error::Io(io::ErrorKind::WouldBlock.into())
            }
        })?;
        Ok(Client {
            ws,
            sock,
            next_id: 1,
            queue: VecDeque::new(),
        })
    }

    /// Sends a request; returns its id.
    pub fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(req.to_string()))
            .expect("send request");
        id
    }

    /// Sends raw text.
    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send text");
    }

    /// Reads the next message within `timeout`.
    pub fn read(&mut self, timeout: Duration) -> Got {
        self.sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .unwrap();
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    return match serde_json::from_str(t.as_str()) {
                        Ok(v) => Got::Json(v),
                        Err(_) => Got::NotJson(t.to_string()),
                    }
                }
                Ok(Message::Close(f)) => {
                    return Got::CloseFrame(f.map_or(1005, |f| u16::from(f.code)))
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Got::Timeout
                }
                Err(e) => return Got::Closed(e),
            }
        }
    }

    /// Waits for the response to `id`, queueing notifications that arrive first.
    pub fn response(&mut self, id: u64, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.read(left) {
                Got::Json(v) if v.get("id").and_then(Value::as_u64) == Some(id) => return Some(v),
                Got::Json(v) => self.queue.push_back(v),
                Got::Timeout => return None,
                other => panic!("connection ended while waiting for response {id}: {other:?}"),
            }
        }
    }

    /// Calls a method and returns the whole response object.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params);
        self.response(id, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no response to {method}"))
    }

    /// Calls a method and returns `result`, panicking on an error response.
    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params);
        assert!(r.get("error").is_none(), "{method} failed: {r}");
        r["result"].clone()
    }

    /// Calls a method that must fail; returns the error code.
    pub fn err_code(&mut self, method: &str, params: Value) -> i64 {
        let r = self.call(method, params);
        r["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("{method} should fail: {r}"))
    }

    /// Authenticates with client credentials; returns the result.
    pub fn auth(&mut self) -> Value {
        self.ok(
            "public/auth",
            json!({"grant_type": "client_credentials", "client_id": ID, "client_secret": SECRET}),
        )
    }

    /// Next notification whose method is `method` and (if given) channel is `channel`.
    pub fn notification(
        &mut self,
        method: &str,
        channel: Option<&str>,
        timeout: Duration,
    ) -> Option<Value> {
        let matches = |v: &Value| {
            v["method"] == method && channel.is_none_or(|c| v["params"]["channel"] == c)
        };
        if let Some(pos) = self.queue.iter().position(matches) {
            return self.queue.remove(pos);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.read(left) {
                Got::Json(v) if matches(&v) => return Some(v),
                Got::Json(v) => self.queue.push_back(v),
                Got::Timeout => return None,
                other => panic!("connection ended while waiting for {method}: {other:?}"),
            }
        }
    }

    /// Reads until the connection ends (or `timeout`); returns how it ended.
    pub fn wait_closed(&mut self, timeout: Duration) -> Got {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Got::Timeout;
            }
            match self.read(left) {
                Got::Json(_) | Got::NotJson(_) => continue,
                other => return other,
            }
        }
    }
}

/// Polls `f` until it is true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "spinwire-sim-{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
