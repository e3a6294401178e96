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
//! # TLS without per-connection buffering inside rustls
//!
//! TLS uses rustls 0.23's *unbuffered* client (`UnbufferedClientConnection`): incoming
//! ciphertext, outgoing ciphertext and not-yet-read plaintext live in three buffers allocated
//! once per transport, and rustls is driven through `process_tls_records` → `ReadTraffic` /
//! `EncodeTlsData` / `TransmitTlsData` / `WriteTraffic`. `complete_io` and the buffered
//! `ClientConnection` are not used: the buffered reader also resizes its deframing buffer as
//! it fills and empties (rustls `msgs/deframer/buffers.rs`, `prepare_read`).
//!
//! rustls 0.23 still allocates inside, once per TLS record, whatever API is used:
//!
//! - receiving: each decrypted application-data record is copied into a fresh `Vec`
//!   (`CommonState::take_received_plaintext`, `common_state.rs`: `bytes.into_vec()`), which
//!   `ReadTraffic::next_record` hands out and frees. Upstream removed this buffer for the
//!   unbuffered API in rustls PR #2746 (decrypt in place), not released in 0.23.
//! - sending: the ring AEAD encrypter builds each record in a fresh `Vec`
//!   (`PrefixedPayload::with_capacity` in `crypto/ring/tls13.rs` / `tls12.rs`), which
//!   `WriteTraffic::encrypt` copies into our buffer and frees.
//!
//! So steady state costs one allocation per TLS record in each direction, and nothing in this
//! module's own code (test: `engine/tests/transport_allocations.rs`). Plain TCP allocates
//! nothing.
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

mod buf;
mod error;
mod stream;
mod tls;

pub use error::{TlsConfigError, TransportError};
pub use stream::{
    CloseStatus, Flush, Handshake, Phase, ReadStatus, Security, Transport, TransportOptions,
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
