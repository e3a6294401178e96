//! The client session codec: the decoder, the encoder with its mask keys, and the close handshake.
//!
//! [`Codec`] is what a connection holds once the HTTP upgrade is done. It owns the read side
//! ([`Decoder`]) and knows the protocol state, so it can answer the server by itself:
//!
//! - **Ping** → [`next_message`](Codec::next_message) returns the ping *and* queues a pong with
//!   the same payload. Write it with [`poll_transmit`](Codec::poll_transmit). If several pings
//!   arrive before `poll_transmit`, only the latest is answered (RFC 6455 §5.5.3 allows that).
//! - **Close** from the server → the codec queues the reply (the server's code echoed, or 1000
//!   when the close had none) for `poll_transmit`; after it is written the state is
//!   [`CloseState::Closed`]: wait for the server to close TCP (or close it after a short grace).
//! - **Protocol error** → `next_message` returns it and queues a close frame with the error's
//!   code (1002, 1007 or 1009); after `poll_transmit` writes it, close TCP.
//!
//! Sending: [`encode_text`](Codec::encode_text), [`encode_binary`](Codec::encode_binary),
//! [`encode_ping`](Codec::encode_ping), [`encode_pong`](Codec::encode_pong),
//! [`encode_close`](Codec::encode_close) write masked frames into a caller-lent buffer. Data and
//! pings are refused ([`EncodeError::Closing`]) once a close was sent or received. The same
//! methods live on the [`Sender`], which [`Codec::next_message_and_sender`] hands out next to a
//! message that still borrows the read buffer (to answer from it without copying).

use super::decoder::{Config, ConfigError, Decoder, Message};
use super::frame::{
    client_frame_len, close_code, encode_close, encode_frame, encode_frame_in_place, EncodeError,
    OpCode, ProtocolError, MAX_CONTROL_PAYLOAD,
};
use super::mask::MaskKeyGen;

/// Where the closing handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseState {
    /// Both directions open.
    Open,
    /// We sent a close frame; messages are still decoded until the server's close arrives.
    CloseSent,
    /// The server sent a close frame; our reply is queued for [`Codec::poll_transmit`].
    CloseReceived,
    /// Close frames went both ways: send nothing more; wait for the server to close TCP.
    Closed,
    /// The server broke the protocol. A close frame with the error's code is queued (unless one
    /// was sent already); after [`Codec::poll_transmit`], close TCP.
    Failed(ProtocolError),
}

/// A close frame waiting for [`Codec::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QueuedClose {
    /// A code valid on the wire.
    code: u16,
    /// ASCII, at most 123 bytes.
    reason: &'static str,
}

/// The send side of a [`Codec`]: mask keys, the closing handshake, and the queued pong / close.
///
/// Reached through [`Codec::sender`] or, while a received message is still borrowed (to echo it,
/// say), through [`Codec::next_message_and_sender`].
#[derive(Debug)]
pub struct Sender {
    /// Mask keys for every frame sent.
    keys: MaskKeyGen,
    /// The closing handshake.
    state: CloseState,
    /// Payload of the pong owed for the latest ping. Only `pong[..pong_len]` is meaningful.
    pong: [u8; MAX_CONTROL_PAYLOAD],
    /// Length of the owed pong's payload (at most 125).
    pong_len: u8,
    /// Whether a pong is owed.
    pong_pending: bool,
    /// A close frame to send (reply to the server's close, or failure).
    close_pending: Option<QueuedClose>,
}

/// A client WebSocket session after the handshake. See the [module docs](self).
#[derive(Debug)]
pub struct Codec {
    /// The read side.
    decoder: Decoder,
    /// The send side and the protocol state.
    sender: Sender,
}

impl Codec {
    /// A codec with the given limits and mask keys seeded from the OS. Allocates its two buffers
    /// (see [`Decoder::new`]); nothing afterwards.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        Self::with_mask_keys(config, MaskKeyGen::from_os())
    }

    /// A codec with a given mask-key generator (a fixed seed makes the output reproducible).
    pub fn with_mask_keys(config: Config, keys: MaskKeyGen) -> Result<Self, ConfigError> {
        Ok(Self {
            decoder: Decoder::new(config)?,
            sender: Sender {
                keys,
                state: CloseState::Open,
                pong: [0; MAX_CONTROL_PAYLOAD],
                pong_len: 0,
                pong_pending: false,
                close_pending: None,
            },
        })
    }

    /// Back to the state of a new codec, for a new connection, keeping both buffers (nothing is
    /// allocated or zeroed) and the mask-key generator.
    pub fn reset(&mut self) {
        self.decoder.reset();
        let s = &mut self.sender;
        s.state = CloseState::Open;
        s.pong_len = 0;
        s.pong_pending = false;
        s.close_pending = None;
    }

    /// Where the closing handshake stands.
    pub fn state(&self) -> CloseState {
        self.sender.state
    }

    /// Whether the session is over ([`Sender::is_finished`]): time to close TCP.
    pub fn is_finished(&self) -> bool {
        self.sender.is_finished()
    }

    /// Whether [`poll_transmit`](Self::poll_transmit) has a pong or a close frame to write.
    pub fn wants_transmit(&self) -> bool {
        self.sender.wants_transmit()
    }

    /// The read side, for its accessors.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The send side.
    pub fn sender(&mut self) -> &mut Sender {
        &mut self.sender
    }

    /// The free tail of the read buffer ([`Decoder::spare`]).
    #[inline]
    pub fn spare(&mut self) -> &mut [u8] {
        self.decoder.spare()
    }

    /// Marks `n` bytes written into [`spare`](Self::spare) as received ([`Decoder::commit`]).
    #[inline]
    pub fn commit(&mut self, n: usize) {
        self.decoder.commit(n);
    }

    /// Copies bytes received elsewhere (e.g. the handshake's leftover) into the read buffer
    /// ([`Decoder::feed`]); returns how many fit.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        self.decoder.feed(bytes)
    }

    /// Decodes the next message ([`Decoder::next_message`]) and keeps the protocol state: queues a
    /// pong for a ping, a close reply for a close, a failing close for a protocol error. Call
    /// [`poll_transmit`](Self::poll_transmit) when [`wants_transmit`](Self::wants_transmit).
    #[inline]
    pub fn next_message(&mut self) -> Result<Option<Message<'_>>, ProtocolError> {
        self.next_message_and_sender().0
    }

    /// [`next_message`](Self::next_message), plus the [`Sender`], usable while the message is
    /// still borrowed from the read buffer:
    ///
    /// ```
    /// # use spinwire_engine::ws::{Codec, Config, Message};
    /// # let mut codec = Codec::new(Config::default())?;
    /// # codec.feed(&[0x81, 2, b'h', b'i']);
    /// # let mut out = [0u8; 64];
    /// // An echo: the text is encoded straight from the read buffer, without a copy.
    /// let (message, sender) = codec.next_message_and_sender();
    /// if let Some(Message::Text(text)) = message? {
    ///     let n = sender.encode_text(&mut out, text)?;
    ///     assert_eq!(n, 6 + 2);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn next_message_and_sender(
        &mut self,
    ) -> (Result<Option<Message<'_>>, ProtocolError>, &mut Sender) {
        let result = self.decoder.next_message();
        self.sender.on_received(&result);
        (result, &mut self.sender)
    }

    /// Writes queued control frames ([`Sender::poll_transmit`]).
    #[inline]
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<usize, EncodeError> {
        self.sender.poll_transmit(out)
    }

    /// Writes a masked frame ([`Sender::encode`]).
    #[inline]
    pub fn encode(
        &mut self,
        out: &mut [u8],
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
    ) -> Result<usize, EncodeError> {
        self.sender.encode(out, opcode, fin, payload)
    }

    /// Writes a masked text frame ([`Sender::encode_text`]).
    #[inline]
    pub fn encode_text(&mut self, out: &mut [u8], text: &str) -> Result<usize, EncodeError> {
        self.sender.encode_text(out, text)
    }

    /// Writes a masked binary frame ([`Sender::encode_binary`]).
    #[inline]
    pub fn encode_binary(&mut self, out: &mut [u8], data: &[u8]) -> Result<usize, EncodeError> {
        self.sender.encode_binary(out, data)
    }

    /// Writes a masked ping ([`Sender::encode_ping`]).
    #[inline]
    pub fn encode_ping(&mut self, out: &mut [u8], payload: &[u8]) -> Result<usize, EncodeError> {
        self.sender.encode_ping(out, payload)
    }

    /// Writes a masked pong ([`Sender::encode_pong`]).
    #[inline]
    pub fn encode_pong(&mut self, out: &mut [u8], payload: &[u8]) -> Result<usize, EncodeError> {
        self.sender.encode_pong(out, payload)
    }

    /// Completes a frame serialized in place ([`Sender::finish_in_place`]).
    #[inline]
    pub fn finish_in_place(
        &mut self,
        out: &mut [u8],
        opcode: OpCode,
        payload_len: usize,
    ) -> Result<std::ops::Range<usize>, EncodeError> {
        self.sender.finish_in_place(out, opcode, payload_len)
    }

    /// Writes a close frame and moves the closing handshake ([`Sender::encode_close`]).
    pub fn encode_close(
        &mut self,
        out: &mut [u8],
        code: u16,
        reason: &str,
    ) -> Result<usize, EncodeError> {
        self.sender.encode_close(out, code, reason)
    }

    /// The buffer size that always fits one encoded frame of `payload_len` bytes.
    pub const fn frame_len(payload_len: usize) -> usize {
        client_frame_len(payload_len)
    }
}

impl Sender {
    /// Updates the protocol state after the decoder produced `result`.
    #[inline]
    fn on_received(&mut self, result: &Result<Option<Message<'_>>, ProtocolError>) {
        match result {
            Ok(Some(Message::Ping(payload))) => {
                if self.state == CloseState::Open {
                    self.pong[..payload.len()].copy_from_slice(payload);
                    self.pong_len = payload.len() as u8;
                    self.pong_pending = true;
                }
            }
            Ok(Some(Message::Close(frame))) => match self.state {
                CloseState::Open => {
                    let code = frame.map_or(close_code::NORMAL, |f| f.code);
                    self.state = CloseState::CloseReceived;
                    self.pong_pending = false;
                    self.close_pending = Some(QueuedClose { code, reason: "" });
                }
                CloseState::CloseSent => self.state = CloseState::Closed,
                _ => {}
            },
            Err(e) => {
                let already_sent = matches!(
                    self.state,
                    CloseState::CloseSent | CloseState::Closed | CloseState::Failed(_)
                );
                self.pong_pending = false;
                if !already_sent {
                    self.close_pending = Some(QueuedClose {
                        code: e.close_code(),
                        reason: e.reason(),
                    });
                }
                self.state = CloseState::Failed(*e);
            }
            Ok(_) => {}
        }
    }

    /// Where the closing handshake stands.
    pub fn state(&self) -> CloseState {
        self.state
    }

    /// Whether the session is over: close frames went both ways, or the connection failed, and
    /// nothing is left for [`poll_transmit`](Self::poll_transmit). Time to close TCP.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, CloseState::Closed | CloseState::Failed(_)) && !self.wants_transmit()
    }

    /// Whether [`poll_transmit`](Self::poll_transmit) has a pong or a close frame to write.
    pub fn wants_transmit(&self) -> bool {
        self.pong_pending || self.close_pending.is_some()
    }

    /// Writes the queued control frames (the pong owed for the latest ping, then a close reply or
    /// failing close) into `out`; returns the bytes written, 0 when nothing is queued.
    ///
    /// A frame that does not fit stays queued: with nothing written, that is
    /// [`EncodeError::BufferTooSmall`] (a 131-byte buffer always fits one control frame).
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let mut written = 0;
        if self.pong_pending {
            let len = usize::from(self.pong_len);
            let key = self.keys.next_key();
            written += encode_frame(out, OpCode::Pong, true, &self.pong[..len], key)?;
            self.pong_pending = false;
        }
        if let Some(close) = self.close_pending {
            let key = self.keys.next_key();
            match encode_close(&mut out[written..], close.code, close.reason, key) {
                Ok(n) => {
                    written += n;
                    self.close_pending = None;
                    if self.state == CloseState::CloseReceived {
                        self.state = CloseState::Closed;
                    }
                }
                Err(e) if written == 0 => return Err(e),
                Err(_) => {}
            }
        }
        Ok(written)
    }

    /// Refuses to send anything but a close once the closing handshake started.
    #[inline]
    fn check_open(&self) -> Result<(), EncodeError> {
        if self.state == CloseState::Open {
            Ok(())
        } else {
            Err(EncodeError::Closing)
        }
    }

    /// Writes a masked frame into `out` (see [`encode_frame`]); returns its length. Data frames
    /// and pings need the session [`Open`](CloseState::Open) ([`EncodeError::Closing`]
    /// otherwise); a close must go through [`encode_close`](Self::encode_close)
    /// ([`EncodeError::CloseOpcode`]). Fragmented sends (`fin == false`, then continuations) are
    /// the caller's to order correctly.
    #[inline]
    pub fn encode(
        &mut self,
        out: &mut [u8],
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
    ) -> Result<usize, EncodeError> {
        if opcode == OpCode::Close {
            return Err(EncodeError::CloseOpcode);
        }
        self.check_open()?;
        encode_frame(out, opcode, fin, payload, self.keys.next_key())
    }

    /// Writes a masked text frame carrying `text` into `out`; returns its length.
    #[inline]
    pub fn encode_text(&mut self, out: &mut [u8], text: &str) -> Result<usize, EncodeError> {
        self.encode(out, OpCode::Text, true, text.as_bytes())
    }

    /// Writes a masked binary frame carrying `data` into `out`; returns its length.
    #[inline]
    pub fn encode_binary(&mut self, out: &mut [u8], data: &[u8]) -> Result<usize, EncodeError> {
        self.encode(out, OpCode::Binary, true, data)
    }

    /// Writes a masked ping (payload at most 125 bytes) into `out`; returns its length.
    #[inline]
    pub fn encode_ping(&mut self, out: &mut [u8], payload: &[u8]) -> Result<usize, EncodeError> {
        self.encode(out, OpCode::Ping, true, payload)
    }

    /// Writes a masked pong (payload at most 125 bytes) into `out`; returns its length. Pongs owed
    /// for pings are queued automatically; this is for unsolicited pongs (a heartbeat).
    #[inline]
    pub fn encode_pong(&mut self, out: &mut [u8], payload: &[u8]) -> Result<usize, EncodeError> {
        self.encode(out, OpCode::Pong, true, payload)
    }

    /// Completes a single-frame text or binary message whose payload the caller serialized at
    /// `out[MAX_CLIENT_HEADER_LEN..][..payload_len]` (see [`encode_frame_in_place`]); returns the
    /// range of `out` to send.
    ///
    /// [`MAX_CLIENT_HEADER_LEN`]: super::frame::MAX_CLIENT_HEADER_LEN
    #[inline]
    pub fn finish_in_place(
        &mut self,
        out: &mut [u8],
        opcode: OpCode,
        payload_len: usize,
    ) -> Result<std::ops::Range<usize>, EncodeError> {
        if opcode == OpCode::Close {
            return Err(EncodeError::CloseOpcode);
        }
        self.check_open()?;
        encode_frame_in_place(out, opcode, true, payload_len, self.keys.next_key())
    }

    /// Starts (or, after the server's close, completes) the closing handshake: writes a close
    /// frame with `code` and `reason` (at most 123 bytes) into `out`. After it nothing but the
    /// server's close is awaited; data cannot be sent any more.
    ///
    /// Errors: [`EncodeError::Closing`] when a close was sent already (by this call, a reply, or
    /// a failure); [`EncodeError::InvalidCloseCode`]; [`EncodeError::ControlFrameTooLong`];
    /// [`EncodeError::BufferTooSmall`].
    pub fn encode_close(
        &mut self,
        out: &mut [u8],
        code: u16,
        reason: &str,
    ) -> Result<usize, EncodeError> {
        let next = match self.state {
            CloseState::Open => CloseState::CloseSent,
            // The caller answers the server's close itself instead of the queued echo.
            CloseState::CloseReceived => CloseState::Closed,
            _ => return Err(EncodeError::Closing),
        };
        let n = encode_close(out, code, reason, self.keys.next_key())?;
        self.state = next;
        self.pong_pending = false;
        self.close_pending = None;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::mask::apply_mask_bytewise;

    fn codec() -> Codec {
        Codec::with_mask_keys(
            Config {
                max_frame_size: 1024,
                max_message_size: 4096,
                read_buffer_size: 0,
            },
            MaskKeyGen::from_seed(7),
        )
        .unwrap()
    }

    /// Unmasks one client frame: (first byte, payload).
    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        let len = usize::from(frame[1] & 0x7F);
        assert!(len < 126 && frame[1] & 0x80 != 0);
        let key: [u8; 4] = frame[2..6].try_into().unwrap();
        let mut p = frame[6..6 + len].to_vec();
        apply_mask_bytewise(&mut p, key);
        (frame[0], p)
    }

    #[test]
    fn received_text_can_be_echoed_while_still_borrowed() {
        let mut c = codec();
        c.feed(&[0x01, 2, b'h', b'e', 0x80, 3, b'l', b'l', b'o']);
        let mut out = [0u8; 64];
        let (message, sender) = c.next_message_and_sender();
        let Some(Message::Text(text)) = message.unwrap() else {
            panic!("expected text")
        };
        let n = sender.encode_text(&mut out, text).unwrap();
        assert_eq!(unmask(&out[..n]), (0x81, b"hello".to_vec()));
    }

    #[test]
    fn ping_queues_a_pong_with_the_same_payload() {
        let mut c = codec();
        c.feed(&[0x89, 3, b'a', b'b', b'c']);
        assert_eq!(c.next_message().unwrap(), Some(Message::Ping(b"abc")));
        assert!(c.wants_transmit());
        let mut out = [0u8; 64];
        let n = c.poll_transmit(&mut out).unwrap();
        assert_eq!(unmask(&out[..n]), (0x8A, b"abc".to_vec()));
        assert!(!c.wants_transmit());
        assert_eq!(c.poll_transmit(&mut out), Ok(0));
    }

    #[test]
    fn only_the_latest_ping_is_answered_when_several_arrive_before_transmit() {
        let mut c = codec();
        c.feed(&[0x89, 1, b'1', 0x89, 1, b'2']);
        c.next_message().unwrap();
        c.next_message().unwrap();
        let mut out = [0u8; 64];
        let n = c.poll_transmit(&mut out).unwrap();
        assert_eq!(unmask(&out[..n]), (0x8A, b"2".to_vec()));
    }

    #[test]
    fn server_close_is_echoed_and_ends_the_session() {
        let mut c = codec();
        c.feed(&[0x88, 2, 0x0F, 0xA0]); // 4000
        assert!(
            matches!(c.next_message().unwrap(), Some(Message::Close(Some(f))) if f.code == 4000)
        );
        assert_eq!(c.state(), CloseState::CloseReceived);
        let mut out = [0u8; 64];
        assert_eq!(c.encode_text(&mut out, "late"), Err(EncodeError::Closing));
        let n = c.poll_transmit(&mut out).unwrap();
        assert_eq!(unmask(&out[..n]), (0x88, vec![0x0F, 0xA0]));
        assert_eq!(c.state(), CloseState::Closed);
        assert!(c.is_finished());
    }

    #[test]
    fn close_without_code_is_answered_with_1000() {
        let mut c = codec();
        c.feed(&[0x88, 0]);
        assert_eq!(c.next_message().unwrap(), Some(Message::Close(None)));
        let mut out = [0u8; 64];
        let n = c.poll_transmit(&mut out).unwrap();
        assert_eq!(unmask(&out[..n]), (0x88, vec![0x03, 0xE8]));
    }

    #[test]
    fn no_data_is_sent_after_our_close() {
        let mut c = codec();
        let mut out = [0u8; 64];
        c.encode_close(&mut out, 1000, "bye").unwrap();
        assert_eq!(c.state(), CloseState::CloseSent);
        assert_eq!(c.encode_text(&mut out, "x"), Err(EncodeError::Closing));
        assert_eq!(c.encode_binary(&mut out, b"x"), Err(EncodeError::Closing));
        assert_eq!(c.encode_ping(&mut out, b"x"), Err(EncodeError::Closing));
        assert_eq!(
            c.encode_close(&mut out, 1000, ""),
            Err(EncodeError::Closing)
        );
        // Messages still arrive until the server's close, which completes the handshake unanswered.
        c.feed(&[0x81, 1, b'z', 0x88, 0]);
        assert_eq!(c.next_message().unwrap(), Some(Message::Text("z")));
        assert_eq!(c.next_message().unwrap(), Some(Message::Close(None)));
        assert_eq!(c.state(), CloseState::Closed);
        assert!(!c.wants_transmit());
        assert!(c.is_finished());
    }

    #[test]
    fn protocol_error_queues_a_close_with_its_code() {
        let mut c = codec();
        c.feed(&[0x81, 2, 0xC3, 0x28]); // invalid UTF-8
        assert_eq!(c.next_message(), Err(ProtocolError::InvalidUtf8));
        assert_eq!(c.state(), CloseState::Failed(ProtocolError::InvalidUtf8));
        let mut out = [0u8; 64];
        let n = c.poll_transmit(&mut out).unwrap();
        let (b0, payload) = unmask(&out[..n]);
        assert_eq!(b0, 0x88);
        assert_eq!(&payload[..2], &1007u16.to_be_bytes());
        assert!(c.is_finished());
        assert_eq!(c.encode_text(&mut out, "x"), Err(EncodeError::Closing));
    }

    #[test]
    fn queued_control_frame_that_does_not_fit_stays_queued() {
        let mut c = codec();
        c.feed(&[0x89, 3, b'a', b'b', b'c']);
        c.next_message().unwrap();
        let mut tiny = [0u8; 4];
        assert_eq!(
            c.poll_transmit(&mut tiny),
            Err(EncodeError::BufferTooSmall { needed: 9 })
        );
        assert!(c.wants_transmit());
    }

    #[test]
    fn encode_refuses_close_opcode_without_a_code() {
        let mut c = codec();
        let mut out = [0u8; 64];
        assert_eq!(
            c.encode(&mut out, OpCode::Close, true, b""),
            Err(EncodeError::CloseOpcode)
        );
        assert_eq!(c.state(), CloseState::Open);
    }

    #[test]
    fn caller_may_reply_to_a_server_close_with_its_own_code() {
        let mut c = codec();
        c.feed(&[0x88, 2, 0x03, 0xE9]);
        c.next_message().unwrap();
        let mut out = [0u8; 64];
        let n = c.encode_close(&mut out, 1000, "done").unwrap();
        assert_eq!(unmask(&out[..n]).1, b"\x03\xe8done");
        assert_eq!(c.state(), CloseState::Closed);
        assert!(!c.wants_transmit());
    }
}
