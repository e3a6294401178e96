//! Non-blocking TCP and TLS (rustls) for the engine thread.
//!
//! A [`Transport`] is one connection, plain (`ws://`) or TLS (`wss://`), driven by readiness
//! events from the [`reactor`](crate::reactor). It never blocks: connect is mio's non-blocking
//! connect to an address resolved beforehand with [`resolve`]; every read, write and handshake
//! step does what the socket allows and says what is left.
//!
//! The glue to the WebSocket layer is meant to be thin: plaintext comes out into the caller's
//! `&mut [u8]` ([`Transport::read_plaintext`], e.g. the frame decoder's spare buffer) and goes
//! in from the caller's `&[u8]` ([`Transport::write_plaintext`], e.g. the encoder's output).
//!
//! # TLS that allocates nothing per record
//!
//! The handshake runs on rustls 0.23's *unbuffered* client (`UnbufferedClientConnection`,
//! driven through `process_tls_records` with our own buffers; never `complete_io`). After the
//! handshake, rustls hands over the traffic secrets (`dangerous_into_kernel_connection`, the
//! API made for kTLS) and the transport protects records itself (`record.rs`, `ring` AEADs):
//! incoming records are decrypted in place in the incoming buffer and copied once into the
//! caller's `dst`; outgoing records are encrypted straight into the outgoing buffer. rustls
//! keeps the key schedule (TLS 1.3 KeyUpdate, both ways) and the session-ticket store.
//!
//! Why: rustls 0.23 allocates once per record in each direction whatever API is used — each
//! received application-data record is copied into a fresh `Vec`
//! (`CommonState::take_received_plaintext`) and the `ring` encrypter builds each sent record in
//! a fresh `Vec` (`PrefixedPayload::with_capacity`). Steady state now allocates nothing, plain
//! or TLS (tests: `engine/tests/tls_no_alloc.rs`, `engine/tests/transport_allocations.rs`).
//!
//! # Limits against hostile servers
//!
//! As rustls does: at most 32 empty application-data records in a row, 64 records without
//! application data of any kind in a row, 32 KeyUpdates without application data in between,
//! 4 warning alerts and 1 TLS 1.2 HelloRequest per connection; one more is fatal
//! (`PeerMisbehaved::TooMany…`, alert `unexpected_message`). One
//! [`read_plaintext`](Transport::read_plaintext) call opens at most 64 records, then returns
//! [`ReadStatus::More`] (call again without waiting for readiness). TLS 1.3 warning alerts
//! other than `user_canceled` are fatal (answered with `decode_error`); a fatal alert of any
//! description, `user_canceled` included, ends the connection. Nothing is sent after our
//! close_notify: a KeyUpdate request that arrives later renews the receiving keys unanswered.
//! Post-handshake messages split across records are refused (servers do not split them).
//! Tests: `engine/tests/tls_record_faults.rs`.
//!
//! # Example (plain TCP, blocking reactor mode)
//!
//! ```
//! use std::io::{Read, Write};
//! use std::time::Duration;
//! use spinwire_engine::reactor::{PollMode, Reactor};
//! use spinwire_engine::transport::{Handshake, ReadStatus, Security, Transport, TransportOptions};
//!
//! // An echo peer on loopback.
//! let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! let addr = listener.local_addr().unwrap();
//! let peer = std::thread::spawn(move || {
//!     let (mut s, _) = listener.accept().unwrap();
//!     let mut buf = [0u8; 5];
//!     s.read_exact(&mut buf).unwrap();
//!     s.write_all(&buf).unwrap();
//! });
//!
//! let mut reactor: Reactor<Transport> =
//!     Reactor::new(4, 16, PollMode::Blocking(Some(Duration::from_millis(10)))).unwrap();
//! let token = reactor
//!     .insert_with(|token, registry| {
//!         let mut t = Transport::connect(addr, Security::Plain, TransportOptions::default())?;
//!         t.register(registry, token).map_err(|e| e.to_string())?;
//!         Ok::<_, Box<dyn std::error::Error>>(t)
//!     })
//!     .unwrap();
//!
//! let mut sent = false;
//! let mut got = Vec::new();
//! while got.len() < 5 {
//!     reactor.turn(|_, t, _event, _| {
//!         if t.handshake().unwrap() == Handshake::InProgress {
//!             return;
//!         }
//!         if !sent {
//!             assert_eq!(t.write_plaintext(b"hello").unwrap(), 5);
//!             t.flush().unwrap();
//!             sent = true;
//!         }
//!         let mut buf = [0u8; 64];
//!         loop {
//!             let status = t.read_plaintext(&mut buf).unwrap();
//!             got.extend_from_slice(&buf[..status.read()]);
//!             if !matches!(status, ReadStatus::More { .. }) {
//!                 break;
//!             }
//!         }
//!     }).unwrap();
//! }
//! assert_eq!(got, b"hello");
//! let mut t = reactor.remove(token).unwrap();
//! t.deregister(reactor.registry()).unwrap();
//! t.close().unwrap();
//! peer.join().unwrap();
//! ```

use std::net::{SocketAddr, ToSocketAddrs};

#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_internals;
mod buf;
mod error;
mod record;
mod stream;
mod tls;

pub use error::{TlsConfigError, TransportError};
pub use stream::{
    AppliedSocketOptions, CloseStatus, Flush, Handshake, Phase, ReadStatus, Security,
    SocketOptions, Transport, TransportOptions,
};
pub use tls::{TlsConfig, TlsConfigBuilder};

/// Resolves `host:port` to socket addresses with the system resolver.
///
/// This blocks (DNS): run it before the engine loop or on another thread, never on the engine
/// thread; then pass an address to [`Transport::connect`] (try the next one on
/// [`TransportError::Refused`] / [`TransportError::Connect`]).
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, TransportError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| TransportError::Resolve {
            host: host.to_owned(),
            port,
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(TransportError::NoAddress {
            host: host.to_owned(),
            port,
        });
    }
    Ok(addrs)
}
