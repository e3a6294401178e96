//! The WebSocket client protocol (RFC 6455), sans-IO: bytes in, bytes out, no sockets, no clock.
//!
//! - [`handshake`]: the opening handshake. [`ClientHandshake::start`] writes the HTTP upgrade
//!   request into a caller-lent buffer; [`ClientHandshake::feed`] takes response bytes as they
//!   arrive and ends in [`HandshakeStatus::Done`] with the count of bytes that already belong to
//!   the frame decoder.
//! - [`Codec`]: the session after the handshake. The transport writes plaintext into
//!   [`Codec::spare`] and calls [`Codec::commit`]; [`Codec::next_message`] hands out [`Message`]s
//!   borrowed from the codec's own preallocated buffers; pongs, close replies and failing closes
//!   are queued for [`Codec::poll_transmit`]; `encode_*` write masked frames into caller-lent
//!   buffers. No allocation after [`Codec::new`].
//! - [`frame`], [`mask`]: the wire format, the encoder, masking and mask keys.
//! - [`decoder`]: the read side on its own ([`Decoder`]), with the buffer contract.
//!
//! Errors come in two tiers: the handshake's [`HandshakeError`] (cold path, one variant per cause)
//! and the hot path's small `Copy` [`ProtocolError`] (carrying the close code to send) and
//! [`EncodeError`].
//!
//! # Example
//!
//! ```
//! use spinwire_engine::ws::{
//!     ClientHandshake, Codec, Config, HandshakeRequest, HandshakeStatus, Message,
//! };
//!
//! // 1. The upgrade request, written into our send buffer.
//! let mut send_buf = [0u8; 1024];
//! let request = HandshakeRequest::new("echo.example", 443, "/ws");
//! let (mut handshake, len) = ClientHandshake::start(&request, &mut send_buf)?;
//! let request_text = std::str::from_utf8(&send_buf[..len]).unwrap();
//! assert!(request_text.starts_with("GET /ws HTTP/1.1\r\n"));
//!
//! // (The transport sends `send_buf[..len]`; here the server's answer is simulated. It carries a
//! // first text frame right behind the 101.)
//! let key = request_text.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
//! let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
//! let mut received = format!(
//!     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
//!      Sec-WebSocket-Accept: {accept}\r\n\r\n"
//! ).into_bytes();
//! received.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
//!
//! // 2. Feed the response; what follows the header goes to the codec.
//! let mut codec = Codec::new(Config::default())?;
//! match handshake.feed(&received)? {
//!     HandshakeStatus::Done { leftover_len } => {
//!         codec.feed(&received[received.len() - leftover_len..]);
//!     }
//!     HandshakeStatus::NeedMore => unreachable!("the whole response was fed"),
//! }
//!
//! // 3. Decode (zero copy) and answer.
//! assert_eq!(codec.next_message()?, Some(Message::Text("hi")));
//! assert_eq!(codec.next_message()?, None);
//! let n = codec.encode_text(&mut send_buf, r#"{"method":"public/test"}"#)?;
//! assert_eq!(n, 6 + 24);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod codec;
pub mod decoder;
pub mod frame;
pub mod handshake;
pub mod mask;
mod utf8;

pub use codec::{CloseState, Codec, Sender};
pub use decoder::{Config, ConfigError, Decoder, Message};
pub use frame::{
    close_code, encode_close, encode_frame, encode_frame_in_place, CloseFrame, EncodeError, OpCode,
    ProtocolError,
};
pub use handshake::{ClientHandshake, HandshakeError, HandshakeRequest, HandshakeStatus};
pub use mask::MaskKeyGen;
