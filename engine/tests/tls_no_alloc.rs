//! The TLS record path allocates nothing in steady state, and the transport's own record layer
//! (in place, after rustls hands over the traffic secrets) talks to a real rustls server in
//! every suite rustls' `ring` provider offers, through server KeyUpdates and session tickets.
//!
//! Allocations are counted on the client thread only (thread-local counter), over thousands of
//! received messages (one TLS record each) and a few sent ones, after a warm-up.

mod alloc_support;
mod transport_support;
mod ws_drive_support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned, SupportedCipherSuite};
use spinwire_engine::reactor::{PollMode, Reactor};
use spinwire_engine::transport::{
    CloseStatus, ReadStatus, Security, TlsConfig, Transport, TransportOptions,
};
use transport_support::{Pki, DEADLINE};

#[global_allocator]
static GLOBAL: alloc_support::CountingAlloc = alloc_support::CountingAlloc;

/// Bytes of one server message (one TLS record each).
const MSG: usize = 200;
/// Server messages per batch; the client answers each batch with one message.
const BATCH: usize = 500;
/// Bytes of the client's answer.
const ANSWER: usize = 40;
/// Batches before counting starts (session tickets, first-use paths).
const WARMUP_BATCHES: usize = 2;
/// Batches counted: 5,000 messages received, 10 sent.
const COUNTED_BATCHES: usize = 10;

/// Server message `i` of batch `b`: its numbers, then a fill byte.
fn message(b: usize, i: usize) -> [u8; MSG] {
    let mut m = [(b * 31 + i) as u8; MSG];
    m[..4].copy_from_slice(&(b as u32).to_le_bytes());
    m[4..8].copy_from_slice(&(i as u32).to_le_bytes());
    m
}

/// A rustls server (buffered API, blocking socket) that sends `batches` batches of `BATCH`
/// messages, each written and flushed alone (one record each), reads the client's answer to
/// each, refreshes its traffic keys (KeyUpdate, asking for the client's) before the batches in
/// `key_updates`, then sends close_notify and waits for the client's. Returns the answers'
/// bytes, or what went wrong.
fn batch_server(
    config: Arc<ServerConfig>,
    batches: usize,
    key_updates: &'static [usize],
) -> (SocketAddr, JoinHandle<Result<usize, String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        sock.set_nodelay(true).unwrap();
        let mut s = StreamOwned::new(ServerConnection::new(config).unwrap(), sock);
        let mut answers = 0;
        for b in 0..batches {
            if key_updates.contains(&b) {
                s.conn.refresh_traffic_keys().map_err(|e| e.to_string())?;
            }
            for i in 0..BATCH {
                s.write_all(&message(b, i)).map_err(|e| e.to_string())?;
                s.flush().map_err(|e| e.to_string())?;
            }
            let mut answer = [0u8; ANSWER];
            s.read_exact(&mut answer)
                .map_err(|e| format!("batch {b} answer: {e}"))?;
            if answer != [b as u8; ANSWER] {
                return Err(format!("batch {b}: wrong answer {answer:?}"));
            }
            answers += ANSWER;
        }
        s.conn.send_close_notify();
        s.flush().map_err(|e| e.to_string())?;
        // rustls reads 0 only on the client's close_notify (a bare FIN is an error).
        let mut rest = [0u8; 16];
        match s.read(&mut rest) {
            Ok(0) => Ok(answers),
            Ok(n) => Err(format!("{n} unexpected bytes after the last batch")),
            Err(e) => Err(format!("waiting for the client's close_notify: {e}")),
        }
    });
    (addr, handle)
}

/// A TLS client through the reactor (blocking mode), handshake done.
fn connect(addr: SocketAddr, config: &TlsConfig) -> (Reactor<Transport>, mio::Token) {
    let security = Security::Tls {
        config,
        host: "localhost",
    };
    transport_support::handshaken_transport(addr, security)
}

/// Receives one batch into `buf` (exactly `BATCH * MSG` bytes), then answers it. Allocates
/// nothing itself: `buf` is the caller's.
fn exchange_batch(reactor: &mut Reactor<Transport>, token: mio::Token, b: usize, buf: &mut [u8]) {
    let want = BATCH * MSG;
    let mut got = 0;
    let start = Instant::now();
    // The handshake (or the previous batch) may have left records buffered: read before
    // waiting for an event.
    let mut first = true;
    while got < want {
        assert!(
            start.elapsed() < DEADLINE,
            "batch {b} timed out at {got} bytes"
        );
        let mut read = |t: &mut Transport| loop {
            let status = t.read_plaintext(&mut buf[got..want]).unwrap();
            got += status.read();
            match status {
                ReadStatus::More { .. } if got < want => continue,
                ReadStatus::More { .. } | ReadStatus::Drained { .. } => break,
                ReadStatus::PeerClosed { .. } => panic!("server closed in batch {b}"),
            }
        };
        if first {
            read(reactor.get_mut(token).unwrap());
            first = false;
        } else {
            reactor.turn(|_, t, _, _| read(t)).unwrap();
        }
    }
    for (i, m) in buf[..want].chunks_exact(MSG).enumerate() {
        assert!(m == message(b, i), "batch {b} message {i} corrupted");
    }
    let t = reactor.get_mut(token).unwrap();
    assert_eq!(t.write_plaintext(&[b as u8; ANSWER]).unwrap(), ANSWER);
    t.flush().unwrap();
}

/// Reads to the server's close_notify, then closes our side.
fn finish(reactor: &mut Reactor<Transport>, token: mio::Token) {
    let mut buf = [0u8; 64];
    // True once the server's close_notify is in.
    let mut check = |t: &mut Transport| match t.read_plaintext(&mut buf).unwrap() {
        ReadStatus::PeerClosed { read: 0 } => true,
        ReadStatus::Drained { read: 0 } => false,
        other => panic!("unexpected data after the last batch: {other:?}"),
    };
    let mut closed = check(reactor.get_mut(token).unwrap());
    let start = Instant::now();
    while !closed {
        assert!(
            start.elapsed() < DEADLINE,
            "no close_notify from the server"
        );
        reactor.turn(|_, t, _, _| closed |= check(t)).unwrap();
    }
    let t = reactor.get_mut(token).unwrap();
    while t.close().unwrap() == CloseStatus::Pending {
        thread::sleep(Duration::from_millis(1));
    }
}

/// Runs warm-up plus counted batches against `server_config`; returns the allocations counted
/// and the suite/version the client negotiated.
fn allocations_over_batches(
    server_config: Arc<ServerConfig>,
    client: &TlsConfig,
) -> (u64, rustls::ProtocolVersion) {
    let batches = WARMUP_BATCHES + COUNTED_BATCHES;
    let (addr, server) = batch_server(server_config, batches, &[]);
    let (mut reactor, token) = connect(addr, client);
    let version = reactor.get(token).unwrap().tls_version().unwrap();
    let mut buf = vec![0u8; BATCH * MSG];
    for b in 0..WARMUP_BATCHES {
        exchange_batch(&mut reactor, token, b, &mut buf);
    }
    alloc_support::start_counting();
    for b in WARMUP_BATCHES..batches {
        exchange_batch(&mut reactor, token, b, &mut buf);
    }
    let allocations = alloc_support::stop_counting();
    finish(&mut reactor, token);
    assert_eq!(server.join().unwrap(), Ok(batches * ANSWER));
    (allocations, version)
}

/// A provider offering only `suite` (rustls' `ring` provider otherwise).
fn only(suite: SupportedCipherSuite) -> rustls::crypto::CryptoProvider {
    rustls::crypto::CryptoProvider {
        cipher_suites: vec![suite],
        ..rustls::crypto::ring::default_provider()
    }
}

#[test]
fn tls13_steady_state_allocates_nothing_over_thousands_of_records() {
    let pki = Pki::new("test CA");
    let client = pki.client_config();
    let (allocations, version) =
        allocations_over_batches(pki.server_config(&["localhost"]), &client);
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations over {} received records and {COUNTED_BATCHES} sent",
        COUNTED_BATCHES * BATCH
    );
}

#[test]
fn every_offered_suite_carries_data_both_ways_without_allocating() {
    use rustls::crypto::ring::cipher_suite as cs;
    let pki = Pki::new("test CA");
    let client = pki.client_config();
    let tls13 = &[&rustls::version::TLS13][..];
    let tls12 = &[&rustls::version::TLS12][..];
    // rcgen's default key is ECDSA P-256, so TLS 1.2 negotiates the ECDHE_ECDSA suites.
    for (suite, versions, want) in [
        (
            cs::TLS13_AES_128_GCM_SHA256,
            tls13,
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            cs::TLS13_AES_256_GCM_SHA384,
            tls13,
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            tls13,
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            tls12,
            rustls::ProtocolVersion::TLSv1_2,
        ),
        (
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            tls12,
            rustls::ProtocolVersion::TLSv1_2,
        ),
        (
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            tls12,
            rustls::ProtocolVersion::TLSv1_2,
        ),
    ] {
        let config = pki.server_config_with(&["localhost"], versions, only(suite));
        let (allocations, version) = allocations_over_batches(config, &client);
        assert_eq!(version, want, "{:?}", suite.suite());
        assert_eq!(
            allocations,
            0,
            "{:?}: {allocations} allocations",
            suite.suite()
        );
    }
}

#[test]
fn server_key_updates_are_followed_and_answered_without_losing_a_byte() {
    let pki = Pki::new("test CA");
    let client = pki.client_config();
    // Two KeyUpdates asking for ours: the client must switch its receive keys at the right
    // record and its send keys after answering, or the server cannot read the next answer.
    let batches = 5;
    let (addr, server) = batch_server(pki.server_config(&["localhost"]), batches, &[1, 3]);
    let (mut reactor, token) = connect(addr, &client);
    let mut buf = vec![0u8; BATCH * MSG];
    for b in 0..batches {
        exchange_batch(&mut reactor, token, b, &mut buf);
    }
    finish(&mut reactor, token);
    assert_eq!(server.join().unwrap(), Ok(batches * ANSWER));
}

#[test]
fn large_messages_span_records_and_partial_reads_lose_nothing() {
    // 100 KiB each way in 7-byte reads: records split across reads, reads split across
    // records, and a 16 KiB-record upload.
    let pki = Pki::new("test CA");
    let client = pki.client_config();
    let blob: Vec<u8> = (0..100 * 1024).map(|i| (i * 7 + i / 251) as u8).collect();
    let (addr, server) = {
        let config = pki.server_config(&["localhost"]);
        let blob = blob.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            sock.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut s = StreamOwned::new(ServerConnection::new(config).unwrap(), sock);
            s.write_all(&blob).unwrap();
            s.flush().unwrap();
            let mut back = vec![0u8; blob.len()];
            s.read_exact(&mut back).unwrap();
            s.conn.send_close_notify();
            s.flush().unwrap();
            let mut rest = [0u8; 16];
            (back, s.read(&mut rest).map_err(|e| e.to_string()))
        });
        (addr, handle)
    };
    let (mut reactor, token) = connect(addr, &client);
    let mut got = Vec::new();
    let start = Instant::now();
    let mut first = true;
    while got.len() < blob.len() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out at {} bytes",
            got.len()
        );
        let mut read = |t: &mut Transport| loop {
            let mut small = [0u8; 7];
            let status = t.read_plaintext(&mut small).unwrap();
            got.extend_from_slice(&small[..status.read()]);
            if !matches!(status, ReadStatus::More { .. }) {
                break;
            }
        };
        if first {
            read(reactor.get_mut(token).unwrap());
            first = false;
        } else {
            reactor.turn(|_, t, _, _| read(t)).unwrap();
        }
    }
    assert!(got == blob, "download corrupted");
    let mut sent = 0;
    while sent < blob.len() {
        let t = reactor.get_mut(token).unwrap();
        sent += t.write_plaintext(&blob[sent..]).unwrap();
        t.flush().unwrap();
    }
    finish(&mut reactor, token);
    let (back, end) = server.join().unwrap();
    assert!(back == blob, "upload corrupted");
    assert_eq!(end, Ok(0), "the server saw our close_notify");
}

/// Frames the wss server streams; the client echoes every `ECHO_EVERY`-th.
const WS_FRAMES: u64 = 22_000;
/// Frames before counting starts.
const WS_WARMUP: u64 = 2_000;
/// The client echoes one frame in this many (a few sends among many receives).
const ECHO_EVERY: u64 = 1_000;

/// A Deribit-like text frame from the server (unmasked), about 120 bytes.
fn ws_frame(seq: u64) -> Vec<u8> {
    let text = format!(
        r#"{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"book.BTC-PERPETUAL.raw","data":{{"change_id":{seq}}}}}}}"#
    );
    assert!(text.len() < 126);
    let mut frame = vec![0x81, text.len() as u8];
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// A `wss` server (rustls): answers the upgrade, then streams `WS_FRAMES` text frames, each
/// written and flushed alone (one TLS record each, as a venue's feed arrives), reads the
/// client's echo after every `ECHO_EVERY`-th, then sends a close frame and waits for the
/// client's close reply and close_notify. Returns the echo bytes read.
fn wss_server(config: Arc<ServerConfig>) -> (SocketAddr, JoinHandle<Result<usize, String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        sock.set_nodelay(true).unwrap();
        let mut s = StreamOwned::new(ServerConnection::new(config).unwrap(), sock);
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).map_err(|e| e.to_string())?;
            request.push(byte[0]);
        }
        let request = String::from_utf8(request).map_err(|e| e.to_string())?;
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .ok_or("no key")?;
        let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
        write!(
            s,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        s.flush().map_err(|e| e.to_string())?;
        let mut echoed = 0;
        for seq in 0..WS_FRAMES {
            let frame = ws_frame(seq);
            s.write_all(&frame).map_err(|e| e.to_string())?;
            s.flush().map_err(|e| e.to_string())?;
            if seq % ECHO_EVERY == ECHO_EVERY - 1 {
                // The echo: the same text, masked, with a 6-byte header.
                let mut echo = vec![0u8; frame.len() + 4];
                s.read_exact(&mut echo)
                    .map_err(|e| format!("echo of {seq}: {e}"))?;
                if echo[0] != 0x81 || usize::from(echo[1] & 0x7f) != frame.len() - 2 {
                    return Err(format!("echo of {seq}: bad header {:?}", &echo[..2]));
                }
                echoed += echo.len();
            }
        }
        s.write_all(&[0x88, 0x02, 0x03, 0xe8]) // close 1000
            .map_err(|e| e.to_string())?;
        s.flush().map_err(|e| e.to_string())?;
        let mut reply = [0u8; 8]; // masked close reply: 2 + 4 + 2
        s.read_exact(&mut reply)
            .map_err(|e| format!("close reply: {e}"))?;
        s.conn.send_close_notify();
        s.flush().map_err(|e| e.to_string())?;
        let mut rest = [0u8; 16];
        match s.read(&mut rest) {
            // 0: the client's close_notify (rustls calls a bare FIN an error).
            Ok(0) => Ok(echoed),
            Ok(n) => Err(format!("{n} unexpected bytes after the close reply")),
            Err(e) => Err(format!("waiting for the client's close_notify: {e}")),
        }
    });
    (addr, handle)
}

#[test]
fn wss_connection_allocates_nothing_while_20k_frames_arrive_one_record_each() {
    use spinwire_engine::connection::{ConnectionConfig, WsConnection};
    use spinwire_engine::ws::HandshakeRequest;

    let pki = Pki::new("test CA");
    let client = pki.client_config();
    let (addr, server) = wss_server(pki.server_config(&["localhost"]));
    let config = ConnectionConfig::default();
    let request = HandshakeRequest::new("localhost", addr.port(), "/ws");
    let mut reactor: Reactor<WsConnection> =
        Reactor::new(4, 256, PollMode::Blocking(Some(Duration::from_millis(5)))).unwrap();
    let token = reactor
        .insert_with(|token, registry| {
            let security = Security::Tls {
                config: &client,
                host: "localhost",
            };
            let mut conn = WsConnection::connect(addr, security, &request, &config)
                .map_err(|e| e.to_string())?;
            conn.register(registry, token).map_err(|e| e.to_string())?;
            Ok::<_, String>(conn)
        })
        .unwrap();

    let (received, allocations) =
        ws_drive_support::drive_counting(&mut reactor, token, WS_WARMUP, WS_FRAMES, ECHO_EVERY);
    assert_eq!(received, WS_FRAMES);
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations on the engine thread while {} frames (one TLS record each) \
         arrived over wss and {} were echoed",
        WS_FRAMES - WS_WARMUP,
        (WS_FRAMES - WS_WARMUP) / ECHO_EVERY
    );
    let echoed = server.join().unwrap().expect("server");
    // Each echo is its frame's text, masked, behind a 6-byte header.
    let expected: u64 = (0..WS_FRAMES)
        .filter(|s| s % ECHO_EVERY == ECHO_EVERY - 1)
        .map(|s| ws_frame(s).len() as u64 + 4)
        .sum();
    assert_eq!(echoed as u64, expected);
}

#[test]
fn a_record_corrupted_on_the_wire_fails_as_decrypt_error_and_tells_the_server() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let pki = Pki::new("test CA");
    let client = pki.client_config();
    let config = pki.server_config(&["localhost"]);
    // The server: handshake, read the client's "go" (the client has taken over the records by
    // then), arm the proxy, send a message, then report how the connection ended.
    let server_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr = server_listener.local_addr().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let arm = armed.clone();
    let server = thread::spawn(move || {
        let (sock, _) = server_listener.accept().unwrap();
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut s = StreamOwned::new(ServerConnection::new(config).unwrap(), sock);
        let mut go = [0u8; 2];
        s.read_exact(&mut go).unwrap();
        arm.store(true, Ordering::SeqCst);
        s.write_all(b"this record will be corrupted").unwrap();
        s.flush().unwrap();
        let mut rest = [0u8; 16];
        s.read(&mut rest).map_err(|e| e.to_string())
    });
    // A proxy that flips the last byte (a record's tag) of what the server sends once armed.
    let proxy_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy_listener.local_addr().unwrap();
    let proxy = thread::spawn(move || {
        let (mut to_client, _) = proxy_listener.accept().unwrap();
        let mut to_server = std::net::TcpStream::connect(server_addr).unwrap();
        let (mut c_in, mut s_out) = (
            to_client.try_clone().unwrap(),
            to_server.try_clone().unwrap(),
        );
        let up = thread::spawn(move || {
            let _ = std::io::copy(&mut c_in, &mut s_out);
            let _ = s_out.shutdown(std::net::Shutdown::Write);
        });
        let mut buf = vec![0u8; 64 * 1024];
        let mut flipped = false;
        loop {
            let n = match to_server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !flipped && armed.load(Ordering::SeqCst) {
                buf[n - 1] ^= 0x01;
                flipped = true;
            }
            if to_client.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(std::net::Shutdown::Write);
        up.join().unwrap();
        flipped
    });

    let (mut reactor, token) = connect(proxy_addr, &client);
    let t = reactor.get_mut(token).unwrap();
    assert_eq!(t.write_plaintext(b"go").unwrap(), 2);
    t.flush().unwrap();
    let start = Instant::now();
    let mut failure = None;
    let mut buf = [0u8; 256];
    while failure.is_none() {
        assert!(
            start.elapsed() < DEADLINE,
            "the corrupted record was accepted"
        );
        reactor
            .turn(|_, t, _, _| loop {
                match t.read_plaintext(&mut buf) {
                    Ok(ReadStatus::More { .. }) => continue,
                    Ok(ReadStatus::Drained { read }) => {
                        assert_eq!(read, 0, "plaintext from a corrupted record");
                        break;
                    }
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            })
            .unwrap();
    }
    let failure = failure.unwrap();
    assert!(
        matches!(
            &failure,
            spinwire_engine::transport::TransportError::Tls {
                source: rustls::Error::DecryptError,
                ..
            }
        ),
        "{failure:?}"
    );
    // The transport is dead now, and the server was told why.
    let t = reactor.get_mut(token).unwrap();
    assert!(t.write_plaintext(b"more").is_err());
    t.close().unwrap();
    let server_saw = server.join().unwrap();
    assert!(
        matches!(&server_saw, Err(e) if e.contains("BadRecordMac")),
        "server saw {server_saw:?}"
    );
    assert!(proxy.join().unwrap(), "the proxy flipped a byte");
}

#[test]
fn a_tls_reconnect_keeps_the_transport_buffers_and_the_new_connection_works() {
    use transport_support::{
        drive, echo_round_trip, payload, reactor, tls_echo_server, Client, End, ServerSaw,
    };
    let pki = Pki::new("test CA");
    let client_config = pki.client_config();
    let (addr, server) = tls_echo_server(pki.server_config(&["localhost"]), 2);
    let security = Security::Tls {
        config: &client_config,
        host: "localhost",
    };
    let options = TransportOptions::default();
    let mut reactor = reactor(PollMode::Blocking(Some(Duration::from_millis(20))));
    // First connection: 40 KiB echoed (both queues used), then a clean close.
    let token = reactor
        .insert_with(|token, registry| {
            let mut t = Transport::connect(addr, security, options)?;
            t.register(registry, token).unwrap();
            Ok::<_, spinwire_engine::transport::TransportError>(Client::new(
                t,
                payload(40 * 1024, 1),
                4096,
            ))
        })
        .unwrap();
    let first = echo_round_trip(&mut reactor, token);
    assert!(
        matches!(first.end, Some(End::PeerClosed)),
        "{:?}",
        first.end
    );
    assert!(first.received == first.to_send);
    let mut client = reactor.remove(token).unwrap();
    client.transport.deregister(reactor.registry()).unwrap();

    // The reconnect allocates rustls' handshake state, not the 64 KiB outgoing or the 96 KiB
    // incoming queue again.
    alloc_support::start_counting();
    client.transport.reconnect(addr, security, options).unwrap();
    alloc_support::stop_counting();
    let largest = alloc_support::largest_allocation();
    assert!(
        largest < 16 * 1024,
        "the reconnect allocated a {largest}-byte block: a transport buffer was not reused"
    );

    // The second connection starts from a clean state and carries data both ways.
    let mut second = Client::new(client.transport, payload(30 * 1024, 2), 4096);
    let token = reactor
        .insert_with(|token, registry| {
            second.transport.register(registry, token)?;
            Ok::<_, std::io::Error>(second)
        })
        .unwrap();
    drive(&mut reactor, |r| {
        r.get(token).unwrap().end.is_some() || {
            let c = r.get(token).unwrap();
            c.received.len() >= c.to_send.len()
        }
    });
    let second = echo_round_trip(&mut reactor, token);
    assert!(
        matches!(second.end, Some(End::PeerClosed)),
        "{:?}",
        second.end
    );
    assert!(
        second.received == second.to_send,
        "second connection's echo differs"
    );
    let saw = server.join().unwrap();
    assert!(
        saw.iter().all(|s| matches!(s, ServerSaw::CleanClose(_))),
        "server saw {saw:?}"
    );
}
