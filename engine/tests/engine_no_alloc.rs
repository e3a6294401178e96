//! The engine thread allocates nothing in steady state: 100,000 WebSocket frames received
//! through the reactor, TCP transport, handshake'd connection and codec — each echoed back
//! (encode + mask + transport write) — after a warm-up, with zero heap allocations on the
//! engine thread, counted by a global allocator.
//!
//! Plain TCP here; the same over TLS (one record per frame) is in `tls_no_alloc.rs`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use spinwire_engine::connection::{ConnectionConfig, WsConnection};
use spinwire_engine::reactor::{PollMode, Reactor};
use spinwire_engine::transport::Security;
use spinwire_engine::ws::HandshakeRequest;

mod alloc_support;
mod ws_drive_support;

#[global_allocator]
static GLOBAL: alloc_support::CountingAlloc = alloc_support::CountingAlloc;

const WARMUP: u64 = 10_000;
const MEASURED: u64 = 100_000;

/// A server frame (unmasked) carrying a Deribit-like JSON text of about 120 bytes.
fn server_frame(seq: u64) -> Vec<u8> {
    let text = format!(
        r#"{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"book.BTC-PERPETUAL.raw","data":{{"change_id":{seq}}}}}}}"#
    );
    let mut frame = vec![0x81, text.len() as u8];
    assert!(text.len() < 126);
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// A WebSocket server on loopback: answers the upgrade, streams `count` text frames then a
/// close frame, and drains whatever the client sends (its echoes and close reply).
fn streaming_server(count: u64) -> (std::net::SocketAddr, std::thread::JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_nodelay(true).unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            sock.read_exact(&mut byte).unwrap();
            request.push(byte[0]);
        }
        let request = String::from_utf8(request).unwrap();
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("key");
        let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
        write!(
            sock,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .unwrap();
        // Drain the client's echoes on another thread so neither side blocks the other.
        let mut reader = sock.try_clone().unwrap();
        let drain = std::thread::spawn(move || {
            let mut total = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n as u64,
                }
            }
        });
        let mut batch = Vec::with_capacity(64 * 1024);
        for seq in 0..count {
            batch.extend_from_slice(&server_frame(seq));
            if batch.len() > 60 * 1024 {
                sock.write_all(&batch).unwrap();
                batch.clear();
            }
        }
        batch.extend_from_slice(&[0x88, 0x02, 0x03, 0xe8]); // close 1000
        sock.write_all(&batch).unwrap();
        // The server closes TCP first (RFC 6455 §7.1.1); the drain thread still reads the
        // client's echoes and close reply until the client closes its side.
        sock.shutdown(std::net::Shutdown::Write).unwrap();
        drain.join().unwrap()
    });
    (addr, handle)
}

#[test]
fn engine_thread_allocates_nothing_while_100k_frames_pass_and_are_echoed() {
    let total = WARMUP + MEASURED;
    let (addr, server) = streaming_server(total);
    let config = ConnectionConfig::default();
    let request = HandshakeRequest::new("127.0.0.1", addr.port(), "/ws");
    let mut reactor: Reactor<WsConnection> =
        Reactor::new(4, 256, PollMode::Blocking(Some(Duration::from_millis(5)))).unwrap();
    let token = reactor
        .insert_with(|token, registry| {
            let mut conn = WsConnection::connect(addr, Security::Plain, &request, &config)
                .map_err(|e| e.to_string())?;
            conn.register(registry, token).map_err(|e| e.to_string())?;
            Ok::<_, String>(conn)
        })
        .unwrap();

    // Every frame is echoed.
    let (received, allocations) =
        ws_drive_support::drive_counting(&mut reactor, token, WARMUP, total, 1);
    assert_eq!(received, total);
    assert_eq!(
        allocations, 0,
        "{allocations} allocations on the engine thread while {MEASURED} frames were received \
         and echoed"
    );
    let echoed = server.join().unwrap();
    // Every echo went out: each is the same text with a 6-byte masked client header (2 + 4).
    let expected: u64 = (0..total).map(|s| server_frame(s).len() as u64 + 4).sum();
    assert!(
        echoed >= expected,
        "server got {echoed} bytes of echoes, expected at least {expected}"
    );
}

#[test]
fn the_counting_allocator_does_count() {
    let (v, allocations) = alloc_support::count_allocations(|| std::hint::black_box(vec![1u8; 32]));
    drop(v);
    assert!(allocations > 0);
}
