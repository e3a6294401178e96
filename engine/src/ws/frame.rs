//! WebSocket frames (RFC 6455 §5): opcodes, header parsing, the client-side encoder, close codes,
//! and the hot-path error types.
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```

use super::mask::apply_mask;

/// The largest header a client writes: 2 bytes + 8 of extended length + 4 of mask key.
pub const MAX_CLIENT_HEADER_LEN: usize = 14;

/// The largest payload a control frame (close, ping, pong) may carry.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode. The reserved values (3-7, 11-15) are rejected while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: the next fragment of a fragmented message.
    Continuation,
    /// 0x1: the first (or only) frame of a text message.
    Text,
    /// 0x2: the first (or only) frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// The opcode for a 4-bit value, or `None` for the reserved ones.
    #[inline]
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    #[inline]
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control frames: at most 125 bytes, never fragmented.
    #[inline]
    pub const fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// Close status codes (RFC 6455 §7.4.1 and the IANA registry).
pub mod close_code {
    /// 1000: normal closure.
    pub const NORMAL: u16 = 1000;
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: u16 = 1001;
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// 1005: "no status code was present" — reserved, never sent on the wire.
    pub const NO_STATUS: u16 = 1005;
    /// 1006: "closed abnormally" — reserved, never sent on the wire.
    pub const ABNORMAL: u16 = 1006;
    /// 1007: payload data inconsistent with the message type (e.g. invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// 1008: policy violation.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// 1009: message too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: u16 = 1010;
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: u16 = 1012;
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// 1014: bad gateway (IANA registry).
    pub const BAD_GATEWAY: u16 = 1014;

    /// Whether `code` may appear in a close frame on the wire.
    ///
    /// Valid: 1000-1003, 1007-1014 (1012-1014 are registered with IANA and used by servers during
    /// maintenance; Autobahn's invalid-code cases 7.9.x do not include them), and 3000-4999
    /// (registered and private use). Everything else — below 1000, 1004 (reserved), 1005/1006/1015
    /// (must never be sent), 1016-2999 (unassigned) and 5000 and up — is a protocol error.
    #[inline]
    pub const fn is_valid(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// A close frame's status code and reason, borrowed from the buffer it arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code; always valid on the wire ([`close_code::is_valid`]).
    pub code: u16,
    /// The reason, valid UTF-8, at most 123 bytes.
    pub reason: &'a str,
}

/// A protocol violation by the server. The connection must be failed: send a close frame with
/// [`close_code`](Self::close_code) and [`reason`](Self::reason), then close the TCP connection.
/// ([`Codec`](super::Codec) queues that close frame by itself.)
///
/// Small and `Copy`, with no heap data: it is returned on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A server frame had the MASK bit set (servers must not mask). Close 1002.
    #[error("server frame is masked")]
    MaskedFrame,
    /// RSV1-3 set, but no extension was negotiated. Close 1002.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// An opcode reserved for future use (3-7, 11-15). Close 1002.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame with more than 125 bytes of payload. Close 1002.
    #[error("control frame payload over 125 bytes")]
    ControlFrameTooLong,
    /// A control frame without FIN. Close 1002.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A continuation frame with no fragmented message in progress. Close 1002.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text/binary frame while a fragmented message was still in progress. Close 1002.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// A 64-bit payload length with the most significant bit set. Close 1002.
    #[error("64-bit payload length with the top bit set")]
    InvalidLength,
    /// A close frame with a 1-byte payload (a code needs 2). Close 1002.
    #[error("close frame payload of 1 byte")]
    CloseFrameTooShort,
    /// A close frame with a code that may not appear on the wire. Close 1002.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A text message that is not valid UTF-8 (detected as early as possible). Close 1007.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A close frame whose reason is not valid UTF-8. Close 1007.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// A frame larger than the configured `max_frame_size`. Close 1009.
    #[error("frame larger than the configured maximum")]
    FrameTooLarge,
    /// A message larger than the configured `max_message_size`. Close 1009.
    #[error("message larger than the configured maximum")]
    MessageTooLarge,
}

impl ProtocolError {
    /// The close code to send when failing the connection for this error.
    #[inline]
    pub const fn close_code(self) -> u16 {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason => close_code::INVALID_PAYLOAD,
            Self::FrameTooLarge | Self::MessageTooLarge => close_code::MESSAGE_TOO_BIG,
            _ => close_code::PROTOCOL_ERROR,
        }
    }

    /// A short reason to put in that close frame (ASCII, well under 123 bytes).
    #[inline]
    pub const fn reason(self) -> &'static str {
        match self {
            Self::MaskedFrame => "masked server frame",
            Self::ReservedBits => "reserved bits set",
            Self::ReservedOpcode(_) => "reserved opcode",
            Self::ControlFrameTooLong => "control frame too long",
            Self::FragmentedControlFrame => "fragmented control frame",
            Self::UnexpectedContinuation => "unexpected continuation",
            Self::ExpectedContinuation => "expected continuation",
            Self::InvalidLength => "invalid payload length",
            Self::CloseFrameTooShort => "close payload of 1 byte",
            Self::InvalidCloseCode(_) => "invalid close code",
            Self::InvalidUtf8 => "invalid UTF-8 in text",
            Self::InvalidCloseReason => "invalid UTF-8 in close reason",
            Self::FrameTooLarge => "frame too large",
            Self::MessageTooLarge => "message too large",
        }
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: the last frame of its message.
    pub fin: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// Header length in bytes (2, 4 or 10 for unmasked frames).
    pub header_len: usize,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// Parses the header of a server (unmasked) frame at the start of `buf`.
///
/// Returns `Ok(None)` while `buf` holds less than a whole header. Checks every rule that can be
/// checked from the header alone: no RSV bits, no reserved opcode, no MASK bit, control frames
/// with FIN and at most 125 bytes, no 64-bit length with the top bit set, and a payload no larger
/// than `max_frame_size`. Payload lengths encoded in more bytes than needed are accepted.
#[inline]
pub fn parse_server_header(
    buf: &[u8],
    max_frame_size: u64,
) -> Result<Option<FrameHeader>, ProtocolError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let raw_opcode = b0 & 0x0F;
    let Some(opcode) = OpCode::from_u8(raw_opcode) else {
        return Err(ProtocolError::ReservedOpcode(raw_opcode));
    };
    if b1 & 0x80 != 0 {
        return Err(ProtocolError::MaskedFrame);
    }
    let len7 = b1 & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::FragmentedControlFrame);
        }
        if len7 > MAX_CONTROL_PAYLOAD as u8 {
            return Err(ProtocolError::ControlFrameTooLong);
        }
    }
    let (header_len, payload_len) = match len7 {
        126 => {
            let Some(ext) = buf.get(2..4) else {
                return Ok(None);
            };
            (4, u64::from(u16::from_be_bytes([ext[0], ext[1]])))
        }
        127 => {
            let Some(ext) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut b = [0u8; 8];
            b.copy_from_slice(ext);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err(ProtocolError::InvalidLength);
            }
            (10, len)
        }
        n => (2, u64::from(n)),
    };
    if payload_len > max_frame_size {
        return Err(ProtocolError::FrameTooLarge);
    }
    Ok(Some(FrameHeader {
        fin,
        opcode,
        header_len,
        payload_len,
    }))
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The output buffer is too small; give one of at least `needed` bytes (nothing was written
    /// that the caller should send).
    #[error("output buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
    },
    /// A control frame with more than 125 bytes of payload (a close reason over 123 bytes).
    #[error("control frame payload over 125 bytes")]
    ControlFrameTooLong,
    /// A control frame without FIN: control frames cannot be fragmented.
    #[error("control frames cannot be fragmented")]
    FragmentedControlFrame,
    /// A close code that may not be sent ([`close_code::is_valid`]).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// A close frame was passed to a generic encode method of [`Codec`](super::Codec): use
    /// [`Codec::encode_close`](super::Codec::encode_close), which moves the closing handshake.
    #[error("close frames go through encode_close")]
    CloseOpcode,
    /// The connection is closing: after a close frame was sent or received, nothing but the close
    /// reply may be sent. Stop sending; finish the close.
    #[error("the connection is closing")]
    Closing,
}

/// The length of a masked client frame carrying `payload_len` bytes: header plus payload.
#[inline]
pub const fn client_frame_len(payload_len: usize) -> usize {
    client_header_len(payload_len) + payload_len
}

/// The length of a masked client frame's header for `payload_len` bytes (6, 8 or 14).
#[inline]
pub const fn client_header_len(payload_len: usize) -> usize {
    4 + if payload_len < 126 {
        2
    } else if payload_len <= u16::MAX as usize {
        4
    } else {
        10
    }
}

/// Writes a masked client frame header for `payload_len` bytes at the start of `out`, which must
/// be exactly [`client_header_len`]`(payload_len)` bytes long.
#[inline]
fn write_client_header(
    out: &mut [u8],
    opcode: OpCode,
    fin: bool,
    payload_len: usize,
    key: [u8; 4],
) {
    out[0] = (u8::from(fin) << 7) | opcode.as_u8();
    let key_at = if payload_len < 126 {
        out[1] = 0x80 | payload_len as u8;
        2
    } else if payload_len <= u16::MAX as usize {
        out[1] = 0x80 | 126;
        out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        out[1] = 0x80 | 127;
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    };
    out[key_at..key_at + 4].copy_from_slice(&key);
}

/// Encodes one masked client frame (header, then `payload` XORed with `mask_key`) at the start of
/// `out` and returns its length. Nothing is allocated.
///
/// Errors: [`EncodeError::BufferTooSmall`] when `out` is shorter than
/// [`client_frame_len`]`(payload.len())`; [`EncodeError::ControlFrameTooLong`] /
/// [`EncodeError::FragmentedControlFrame`] for a control frame over 125 bytes or without `fin`.
#[inline]
pub fn encode_frame(
    out: &mut [u8],
    opcode: OpCode,
    fin: bool,
    payload: &[u8],
    mask_key: [u8; 4],
) -> Result<usize, EncodeError> {
    check_control(opcode, fin, payload.len())?;
    let header_len = client_header_len(payload.len());
    let total = header_len + payload.len();
    let Some(frame) = out.get_mut(..total) else {
        return Err(EncodeError::BufferTooSmall { needed: total });
    };
    let (header, body) = frame.split_at_mut(header_len);
    write_client_header(header, opcode, fin, payload.len(), mask_key);
    body.copy_from_slice(payload);
    apply_mask(body, mask_key);
    Ok(total)
}

/// Encodes a frame whose payload the caller already wrote at `out[MAX_CLIENT_HEADER_LEN..][..payload_len]`
/// (e.g. a JSON request serialized straight into the send buffer): writes the header right
/// before the payload, masks the payload in place, and returns the frame's range in `out`.
///
/// Saves the copy [`encode_frame`] makes. Same errors as [`encode_frame`].
#[inline]
pub fn encode_frame_in_place(
    out: &mut [u8],
    opcode: OpCode,
    fin: bool,
    payload_len: usize,
    mask_key: [u8; 4],
) -> Result<std::ops::Range<usize>, EncodeError> {
    check_control(opcode, fin, payload_len)?;
    let end = MAX_CLIENT_HEADER_LEN + payload_len;
    let Some(region) = out.get_mut(..end) else {
        return Err(EncodeError::BufferTooSmall { needed: end });
    };
    let header_len = client_header_len(payload_len);
    let start = MAX_CLIENT_HEADER_LEN - header_len;
    let (head, body) = region.split_at_mut(MAX_CLIENT_HEADER_LEN);
    write_client_header(&mut head[start..], opcode, fin, payload_len, mask_key);
    apply_mask(body, mask_key);
    Ok(start..end)
}

#[inline]
fn check_control(opcode: OpCode, fin: bool, payload_len: usize) -> Result<(), EncodeError> {
    if opcode.is_control() {
        if !fin {
            return Err(EncodeError::FragmentedControlFrame);
        }
        if payload_len > MAX_CONTROL_PAYLOAD {
            return Err(EncodeError::ControlFrameTooLong);
        }
    }
    Ok(())
}

/// Encodes a masked close frame with `code` and `reason` (at most 123 bytes) into `out`.
///
/// Errors: [`EncodeError::InvalidCloseCode`] for a code that may not be sent,
/// [`EncodeError::ControlFrameTooLong`] for a reason over 123 bytes,
/// [`EncodeError::BufferTooSmall`].
pub fn encode_close(
    out: &mut [u8],
    code: u16,
    reason: &str,
    mask_key: [u8; 4],
) -> Result<usize, EncodeError> {
    if !close_code::is_valid(code) {
        return Err(EncodeError::InvalidCloseCode(code));
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    let len = 2 + reason.len();
    if len > MAX_CONTROL_PAYLOAD {
        return Err(EncodeError::ControlFrameTooLong);
    }
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..len].copy_from_slice(reason.as_bytes());
    encode_frame(out, OpCode::Close, true, &payload[..len], mask_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::mask::apply_mask_bytewise;

    #[test]
    fn header_shorter_than_two_bytes_needs_more() {
        assert_eq!(parse_server_header(&[], 1 << 20), Ok(None));
        assert_eq!(parse_server_header(&[0x81], 1 << 20), Ok(None));
    }

    #[test]
    fn extended_lengths_need_their_extra_bytes() {
        assert_eq!(parse_server_header(&[0x82, 126, 0x01], 1 << 20), Ok(None));
        assert_eq!(
            parse_server_header(&[0x82, 126, 0x01, 0x00], 1 << 20),
            Ok(Some(FrameHeader {
                fin: true,
                opcode: OpCode::Binary,
                header_len: 4,
                payload_len: 256
            }))
        );
        let mut h = vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(parse_server_header(&h, 1 << 20), Ok(None));
        h.push(0);
        assert_eq!(
            parse_server_header(&h, 1 << 20)
                .unwrap()
                .unwrap()
                .payload_len,
            65536
        );
    }

    #[test]
    fn length_with_top_bit_set_is_a_protocol_error() {
        let h = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            parse_server_header(&h, u64::MAX),
            Err(ProtocolError::InvalidLength)
        );
        assert_eq!(ProtocolError::InvalidLength.close_code(), 1002);
    }

    #[test]
    fn frame_over_the_limit_is_too_large() {
        let h = [0x82, 126, 0x01, 0x00];
        assert_eq!(
            parse_server_header(&h, 255),
            Err(ProtocolError::FrameTooLarge)
        );
        assert_eq!(ProtocolError::FrameTooLarge.close_code(), 1009);
        assert!(parse_server_header(&h, 256).unwrap().is_some());
    }

    #[test]
    fn reserved_bits_opcodes_and_mask_are_rejected() {
        assert_eq!(
            parse_server_header(&[0xC1, 0], 100),
            Err(ProtocolError::ReservedBits)
        );
        for op in [3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15] {
            assert_eq!(
                parse_server_header(&[0x80 | op, 0], 100),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
        assert_eq!(
            parse_server_header(&[0x81, 0x80], 100),
            Err(ProtocolError::MaskedFrame)
        );
    }

    #[test]
    fn control_frames_must_be_short_and_final() {
        assert_eq!(
            parse_server_header(&[0x09, 0], 100),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            parse_server_header(&[0x89, 126, 0, 126], 1000),
            Err(ProtocolError::ControlFrameTooLong)
        );
        assert!(parse_server_header(&[0x89, 125], 1000).unwrap().is_some());
    }

    #[test]
    fn close_code_validity_follows_rfc_and_iana() {
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(close_code::is_valid(c), "{c}");
        }
        for c in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!close_code::is_valid(c), "{c}");
        }
    }

    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        let hdr = frame[1] & 0x7F;
        assert!(frame[1] & 0x80 != 0, "client frames are masked");
        let (len, at) = match hdr {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let key: [u8; 4] = frame[at..at + 4].try_into().unwrap();
        let mut payload = frame[at + 4..].to_vec();
        assert_eq!(payload.len(), len);
        apply_mask_bytewise(&mut payload, key);
        (frame[0], payload)
    }

    #[test]
    fn encoded_frames_are_masked_and_round_trip_for_every_length_class() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = vec![0u8; client_frame_len(len)];
            let n = encode_frame(&mut out, OpCode::Binary, true, &payload, [9, 8, 7, 6]).unwrap();
            assert_eq!(n, out.len());
            let (b0, got) = unmask(&out);
            assert_eq!(b0, 0x82);
            assert_eq!(got, payload);
        }
    }

    #[test]
    fn in_place_encoding_equals_copying_encoding() {
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 3) as u8).collect();
            let mut a = vec![0u8; client_frame_len(len)];
            let n = encode_frame(&mut a, OpCode::Text, false, &payload, [1, 2, 3, 4]).unwrap();
            let mut b = vec![0u8; MAX_CLIENT_HEADER_LEN + len];
            b[MAX_CLIENT_HEADER_LEN..].copy_from_slice(&payload);
            let r = encode_frame_in_place(&mut b, OpCode::Text, false, len, [1, 2, 3, 4]).unwrap();
            assert_eq!(&a[..n], &b[r]);
        }
    }

    #[test]
    fn encoding_into_a_short_buffer_says_how_much_is_needed() {
        let mut out = [0u8; 10];
        assert_eq!(
            encode_frame(&mut out, OpCode::Text, true, b"hello", [0; 4]),
            Err(EncodeError::BufferTooSmall { needed: 11 })
        );
        assert_eq!(
            encode_frame_in_place(&mut out, OpCode::Text, true, 5, [0; 4]),
            Err(EncodeError::BufferTooSmall { needed: 19 })
        );
    }

    #[test]
    fn encoding_bad_control_frames_is_refused() {
        let mut out = [0u8; 256];
        assert_eq!(
            encode_frame(&mut out, OpCode::Ping, true, &[0; 126], [0; 4]),
            Err(EncodeError::ControlFrameTooLong)
        );
        assert_eq!(
            encode_frame(&mut out, OpCode::Pong, false, b"", [0; 4]),
            Err(EncodeError::FragmentedControlFrame)
        );
        assert_eq!(
            encode_close(&mut out, 1005, "", [0; 4]),
            Err(EncodeError::InvalidCloseCode(1005))
        );
        assert_eq!(
            encode_close(&mut out, 1000, &"x".repeat(124), [0; 4]),
            Err(EncodeError::ControlFrameTooLong)
        );
    }

    #[test]
    fn close_frame_carries_code_then_reason() {
        let mut out = [0u8; 64];
        let n = encode_close(&mut out, 1001, "bye", [5, 6, 7, 8]).unwrap();
        let (b0, payload) = unmask(&out[..n]);
        assert_eq!(b0, 0x88);
        assert_eq!(payload, b"\x03\xe9bye");
    }
}
