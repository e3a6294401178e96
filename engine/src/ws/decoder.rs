//! The frame decoder: a preallocated read buffer the transport fills, and messages handed out as
//! slices borrowed from it.
//!
//! # Buffer contract
//!
//! ```text
//!  buf: [ consumed | unconsumed (start..end) | spare (end..) ]
//! ```
//!
//! The transport asks for [`Decoder::spare`], writes decrypted bytes into it, and reports how many
//! with [`Decoder::commit`]. Then [`Decoder::next_message`] is called until it returns `Ok(None)`
//! (it needs more bytes). Consumed bytes are reclaimed lazily: when everything is consumed the
//! indices just go back to 0, and otherwise the unconsumed tail (at most one partial frame, or
//! frames not yet asked for) is moved to the front only when the spare space runs short. The
//! buffer holds at least one frame of the maximum size plus its header, so a legal frame always
//! fits.
//!
//! # Zero copy, zero allocation
//!
//! A message in a single frame is handed out as a slice of the read buffer itself. A fragmented
//! message is copied fragment by fragment into a second buffer of `max_message_size` bytes and
//! handed out from there when its last fragment arrives. Both buffers are allocated in
//! [`Decoder::new`]; nothing is allocated afterwards.
//!
//! # UTF-8
//!
//! A text frame that arrives whole is validated in one SIMD pass (`simdutf8`). Text that arrives
//! in pieces (fragments, or a frame split across reads) is also checked piece by piece as it
//! comes, so that invalid UTF-8 fails the connection as early as RFC 6455 §8.1 allows; the final
//! SIMD pass over the whole message then yields the `&str`.

use super::frame::{
    close_code, parse_server_header, CloseFrame, FrameHeader, OpCode, ProtocolError,
};
use super::utf8::Utf8Validator;

/// Spare space below which [`Decoder::spare`] compacts the buffer (when there is anything to
/// reclaim): one full TLS record of plaintext.
const MIN_SPARE: usize = 16 * 1024;

/// Unconsumed bytes (a partial frame) up to this size are moved to the front of the buffer at
/// the next [`Decoder::spare`], so reads keep landing in the same few cache-hot kilobytes instead
/// of walking the whole buffer.
const SMALL_TAIL: usize = 2048;

/// The largest size [`Config`] accepts for any buffer (1 GiB): a typo guard.
pub const MAX_CONFIG_SIZE: usize = 1 << 30;

/// Size limits of a WebSocket session. Checked by [`Decoder::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The largest frame payload accepted; a larger frame fails the connection with 1009. The
    /// read buffer is made at least this large plus 14 bytes of header.
    pub max_frame_size: usize,
    /// The largest message accepted (the sum of its fragments); a larger one fails the connection
    /// with 1009. This is also the size of the reassembly buffer.
    pub max_message_size: usize,
    /// The read buffer's size when that is more than one maximal frame (more room lets a single
    /// read bring several frames).
    pub read_buffer_size: usize,
}

impl Default for Config {
    /// 1 MiB frames, 4 MiB messages, a read buffer of one maximal frame: enough for full order
    /// book snapshots on Deribit and Binance.
    fn default() -> Self {
        Self {
            max_frame_size: 1 << 20,
            max_message_size: 4 << 20,
            read_buffer_size: 64 * 1024,
        }
    }
}

/// A [`Config`] that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `max_frame_size` or `max_message_size` is 0: no message could ever be received. Use a
    /// positive limit.
    #[error("max_frame_size and max_message_size must be positive")]
    ZeroLimit,
    /// A size is over [`MAX_CONFIG_SIZE`] (1 GiB): almost certainly a typo. Use a smaller one.
    #[error("buffer sizes are limited to 1 GiB")]
    TooLarge,
}

/// A message, borrowed from the decoder's buffers until the next call that takes `&mut` decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (validated UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping; a pong with the same payload is due.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// A close frame, with its status code and reason when it had one. Nothing is decoded after it.
    Close(Option<CloseFrame<'a>>),
}

/// Payloads up to this size take the short-text path of [`text_from_utf8`].
const SHORT_TEXT: usize = 128;

/// Validates a whole text payload: short all-ASCII payloads (heartbeats, acks, small updates)
/// with one word-wise pass, everything else with SIMD (`simdutf8`).
#[inline]
fn text_from_utf8(bytes: &[u8]) -> Result<&str, ()> {
    if bytes.len() <= SHORT_TEXT && bytes.is_ascii() {
        // SAFETY: `is_ascii` just checked that every byte is below 0x80, and a sequence of ASCII
        // bytes is valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    simdutf8::basic::from_utf8(bytes).map_err(|_| ())
}

/// Records a protocol error in the decoder (decoding stops for good) and returns it. Assigns the
/// field directly, not through a `&mut self` method, so it compiles next to a live borrow of the
/// read buffer in the other arm of a `match`.
macro_rules! fail {
    ($decoder:ident, $e:expr) => {{
        let e = $e;
        $decoder.error = Some(e);
        return Err(e);
    }};
}

/// The kind of data message being reassembled from fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Text,
    Binary,
}

/// Decodes server frames from its own preallocated read buffer. See the [module docs](self).
#[derive(Debug)]
pub struct Decoder {
    /// The read buffer. Allocated once; its length never changes. Invariant:
    /// `buf.len() >= max_frame_size + 14`.
    buf: Box<[u8]>,
    /// First unconsumed byte. Invariant: `start <= end`.
    start: usize,
    /// End of the bytes the transport committed. Invariant: `end <= buf.len()`.
    end: usize,
    /// The reassembly buffer for fragmented messages, `max_message_size` bytes.
    frag: Box<[u8]>,
    /// Bytes of the fragmented message so far. Invariant: `frag_len <= frag.len()`, and
    /// `frag_len == 0` whenever `frag_kind` is `None`.
    frag_len: usize,
    /// The fragmented message in progress, if any.
    frag_kind: Option<DataKind>,
    /// UTF-8 state of the text message in progress (fragmented, or a frame only partly arrived).
    utf8: Utf8Validator,
    /// The header of the frame at `buf[start..]`, once parsed and checked, while its payload is
    /// still incomplete.
    current: Option<FrameHeader>,
    /// How many payload bytes of `current` were fed to `utf8` already (text frames only).
    validated: usize,
    /// `Config::max_frame_size`.
    max_frame_size: usize,
    /// `Config::max_message_size`.
    max_message_size: usize,
    /// The protocol error that stopped decoding; every later call returns it again.
    error: Option<ProtocolError>,
    /// A close frame was decoded: nothing after it is decoded.
    close_received: bool,
}

impl Decoder {
    /// Allocates the read buffer (`max(read_buffer_size, max_frame_size + 14)` bytes) and the
    /// reassembly buffer (`max_message_size` bytes). The only allocations this decoder makes.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        if config.max_frame_size == 0 || config.max_message_size == 0 {
            return Err(ConfigError::ZeroLimit);
        }
        if config.max_frame_size > MAX_CONFIG_SIZE
            || config.max_message_size > MAX_CONFIG_SIZE
            || config.read_buffer_size > MAX_CONFIG_SIZE
        {
            return Err(ConfigError::TooLarge);
        }
        let capacity = config
            .read_buffer_size
            .max(config.max_frame_size + super::frame::MAX_CLIENT_HEADER_LEN);
        Ok(Self {
            buf: vec![0u8; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
            frag: vec![0u8; config.max_message_size].into_boxed_slice(),
            frag_len: 0,
            frag_kind: None,
            utf8: Utf8Validator::default(),
            current: None,
            validated: 0,
            max_frame_size: config.max_frame_size,
            max_message_size: config.max_message_size,
            error: None,
            close_received: false,
        })
    }

    /// Back to the state of a new decoder (nothing buffered, no message in progress, no
    /// error), keeping both buffers as they are: nothing is allocated or zeroed.
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.frag_len = 0;
        self.frag_kind = None;
        self.utf8.reset();
        self.current = None;
        self.validated = 0;
        self.error = None;
        self.close_received = false;
    }

    /// The read buffer's size in bytes.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes committed but not yet decoded into messages.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Whether a close frame was decoded (nothing more will be).
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// The free tail of the read buffer, for the transport to write received bytes into; follow
    /// with [`commit`](Self::commit).
    ///
    /// May first move unconsumed bytes to the front of the buffer (when the tail is short). Empty
    /// only when the buffer is full of committed bytes that `next_message` has not consumed yet:
    /// call it until it returns `Ok(None)` first.
    #[inline]
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            let need = match self.current {
                Some(h) => {
                    (h.header_len + h.payload_len as usize).saturating_sub(self.end - self.start)
                }
                None => 0,
            };
            let pending = self.end - self.start;
            if pending <= SMALL_TAIL || self.buf.len() - self.end < need.max(MIN_SPARE) {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes written at the start of [`spare`](Self::spare) as received.
    ///
    /// `n` larger than the spare space is a caller bug: it is clamped (debug builds assert).
    #[inline]
    pub fn commit(&mut self, n: usize) {
        let room = self.buf.len() - self.end;
        debug_assert!(
            n <= room,
            "commit({n}) with only {room} bytes of spare space"
        );
        self.end += n.min(room);
    }

    /// Copies as much of `bytes` as fits into the spare space and commits it; returns how many
    /// bytes were taken. For bytes already received elsewhere, e.g. those the handshake read past
    /// the HTTP response ([`HandshakeStatus::Done`](super::HandshakeStatus::Done)).
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let spare = self.spare();
        let n = bytes.len().min(spare.len());
        spare[..n].copy_from_slice(&bytes[..n]);
        self.commit(n);
        n
    }

    /// Checks a new frame header against the message state (fragmentation order and message size).
    #[inline]
    fn check_sequence(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        let len = h.payload_len as usize;
        match h.opcode {
            OpCode::Continuation => {
                if self.frag_kind.is_none() {
                    return Err(ProtocolError::UnexpectedContinuation);
                }
                if len > self.max_message_size - self.frag_len {
                    return Err(ProtocolError::MessageTooLarge);
                }
            }
            OpCode::Text | OpCode::Binary => {
                if self.frag_kind.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                if len > self.max_message_size {
                    return Err(ProtocolError::MessageTooLarge);
                }
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {}
        }
        Ok(())
    }

    /// Whether the payload of `h` is (part of) a text message.
    #[inline]
    fn is_text(&self, h: &FrameHeader) -> bool {
        match h.opcode {
            OpCode::Text => true,
            OpCode::Continuation => self.frag_kind == Some(DataKind::Text),
            _ => false,
        }
    }

    /// Decodes the next complete message from the committed bytes.
    ///
    /// `Ok(None)`: more bytes are needed (or a close frame was already decoded). `Err`: the server
    /// broke the protocol; the connection must be failed with the error's close code, and every
    /// later call returns the same error. Never allocates; single-frame messages borrow straight
    /// from the read buffer. Text is validated as it arrives, so invalid UTF-8 is reported as soon
    /// as the bytes that make it invalid are committed, even mid-frame.
    pub fn next_message(&mut self) -> Result<Option<Message<'_>>, ProtocolError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        loop {
            if self.close_received {
                return Ok(None);
            }
            let avail = self.end - self.start;
            let header = match self.current {
                Some(h) => h,
                None => {
                    let parsed = parse_server_header(
                        &self.buf[self.start..self.end],
                        self.max_frame_size as u64,
                    );
                    let h = match parsed {
                        Ok(Some(h)) => h,
                        Ok(None) => return Ok(None),
                        Err(e) => fail!(self, e),
                    };
                    if let Err(e) = self.check_sequence(&h) {
                        fail!(self, e);
                    }
                    if h.opcode == OpCode::Text {
                        self.utf8.reset();
                    }
                    self.validated = 0;
                    h
                }
            };
            // `payload_len <= max_frame_size <= MAX_CONFIG_SIZE`, so it fits in usize.
            let payload_len = header.payload_len as usize;
            let total = header.header_len + payload_len;
            let p0 = self.start + header.header_len;
            if avail < total {
                // Incomplete frame: remember its header; validate the text that is there already.
                self.current = Some(header);
                if self.is_text(&header) {
                    let have = avail.saturating_sub(header.header_len);
                    if have > self.validated {
                        let fed = self.utf8.feed(&self.buf[p0 + self.validated..p0 + have]);
                        if fed.is_err() {
                            fail!(self, ProtocolError::InvalidUtf8);
                        }
                        self.validated = have;
                    }
                }
                return Ok(None);
            }

            // The whole frame is here: consume it.
            self.current = None;
            self.start += total;
            let p1 = p0 + payload_len;
            match (header.opcode, header.fin) {
                (OpCode::Text, true) => match text_from_utf8(&self.buf[p0..p1]) {
                    Ok(s) => return Ok(Some(Message::Text(s))),
                    Err(_) => fail!(self, ProtocolError::InvalidUtf8),
                },
                (OpCode::Binary, true) => return Ok(Some(Message::Binary(&self.buf[p0..p1]))),
                (OpCode::Ping, _) => return Ok(Some(Message::Ping(&self.buf[p0..p1]))),
                (OpCode::Pong, _) => return Ok(Some(Message::Pong(&self.buf[p0..p1]))),
                (OpCode::Close, _) => {
                    self.close_received = true;
                    return match payload_len {
                        0 => Ok(Some(Message::Close(None))),
                        1 => fail!(self, ProtocolError::CloseFrameTooShort),
                        _ => {
                            let code = u16::from_be_bytes([self.buf[p0], self.buf[p0 + 1]]);
                            if !close_code::is_valid(code) {
                                fail!(self, ProtocolError::InvalidCloseCode(code));
                            }
                            match std::str::from_utf8(&self.buf[p0 + 2..p1]) {
                                Ok(reason) => {
                                    Ok(Some(Message::Close(Some(CloseFrame { code, reason }))))
                                }
                                Err(_) => fail!(self, ProtocolError::InvalidCloseReason),
                            }
                        }
                    };
                }
                (OpCode::Text | OpCode::Binary | OpCode::Continuation, fin) => {
                    // A fragment: append it to the reassembly buffer (size checked in
                    // `check_sequence`).
                    let text = self.is_text(&header);
                    if header.opcode != OpCode::Continuation {
                        self.frag_kind = Some(if text {
                            DataKind::Text
                        } else {
                            DataKind::Binary
                        });
                        self.frag_len = 0;
                    }
                    if text {
                        let fed = self.utf8.feed(&self.buf[p0 + self.validated..p1]);
                        if fed.is_err() {
                            fail!(self, ProtocolError::InvalidUtf8);
                        }
                    }
                    let at = self.frag_len;
                    self.frag[at..at + payload_len].copy_from_slice(&self.buf[p0..p1]);
                    self.frag_len += payload_len;
                    if !fin {
                        continue;
                    }
                    let len = self.frag_len;
                    self.frag_kind = None;
                    self.frag_len = 0;
                    if !text {
                        return Ok(Some(Message::Binary(&self.frag[..len])));
                    }
                    if !self.utf8.is_complete() {
                        fail!(self, ProtocolError::InvalidUtf8);
                    }
                    // Validated piece by piece above (to fail fast); one SIMD pass yields the `&str`.
                    match text_from_utf8(&self.frag[..len]) {
                        Ok(s) => return Ok(Some(Message::Text(s))),
                        Err(_) => fail!(self, ProtocolError::InvalidUtf8),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Config {
        Config {
            max_frame_size: 1024,
            max_message_size: 4096,
            read_buffer_size: 0,
        }
    }

    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![b0];
        match payload.len() {
            n if n < 126 => v.push(n as u8),
            n if n <= 0xFFFF => {
                v.push(126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut c = small();
        c.max_frame_size = 0;
        assert_eq!(Decoder::new(c).unwrap_err(), ConfigError::ZeroLimit);
        let mut c = small();
        c.max_message_size = MAX_CONFIG_SIZE + 1;
        assert_eq!(Decoder::new(c).unwrap_err(), ConfigError::TooLarge);
    }

    #[test]
    fn read_buffer_holds_at_least_one_maximal_frame() {
        let d = Decoder::new(small()).unwrap();
        assert_eq!(d.capacity(), 1024 + 14);
    }

    #[test]
    fn single_frame_text_borrows_from_the_read_buffer() {
        let mut d = Decoder::new(small()).unwrap();
        d.feed(&frame(0x81, b"hello"));
        let buf_range = d.buf.as_ptr_range();
        match d.next_message().unwrap() {
            Some(Message::Text(s)) => {
                assert_eq!(s, "hello");
                assert!(
                    buf_range.contains(&s.as_ptr()),
                    "not borrowed from the read buffer"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.next_message(), Ok(None));
    }

    #[test]
    fn consumed_space_is_reclaimed_when_everything_is_read() {
        let mut d = Decoder::new(small()).unwrap();
        let f = frame(0x82, &[7; 100]);
        for _ in 0..100 {
            assert_eq!(d.feed(&f), f.len());
            assert_eq!(d.next_message().unwrap(), Some(Message::Binary(&[7; 100])));
        }
        assert_eq!(d.spare().len(), d.capacity());
    }

    #[test]
    fn partial_frame_is_moved_to_the_front_when_the_tail_is_short() {
        let mut d = Decoder::new(small()).unwrap();
        let big = frame(0x82, &[1; 1000]);
        let tiny = frame(0x82, &[2; 10]);
        // One small frame consumed, then the big one arrives only partly: it must still fit.
        d.feed(&tiny);
        d.feed(&big[..500]);
        assert_eq!(d.next_message().unwrap(), Some(Message::Binary(&[2; 10])));
        assert_eq!(d.next_message().unwrap(), None);
        let n = d.feed(&big[500..]);
        assert_eq!(n, big.len() - 500);
        assert_eq!(
            d.next_message().unwrap(),
            Some(Message::Binary(&[1; 1000][..]))
        );
    }

    #[test]
    fn errors_are_sticky() {
        let mut d = Decoder::new(small()).unwrap();
        d.feed(&[0x83, 0]);
        assert_eq!(d.next_message(), Err(ProtocolError::ReservedOpcode(3)));
        d.feed(&frame(0x81, b"ok"));
        assert_eq!(d.next_message(), Err(ProtocolError::ReservedOpcode(3)));
    }

    #[test]
    fn nothing_is_decoded_after_a_close() {
        let mut d = Decoder::new(small()).unwrap();
        let mut bytes = frame(0x88, b"\x03\xe8");
        bytes.extend(frame(0x81, b"late"));
        d.feed(&bytes);
        assert_eq!(
            d.next_message().unwrap(),
            Some(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: ""
            })))
        );
        assert!(d.close_received());
        assert_eq!(d.next_message(), Ok(None));
    }
}
