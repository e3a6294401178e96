//! Server side of WebSocket (RFC 6455): the HTTP upgrade and the frame codec.
//!
//! Client frames must be masked; server frames are sent unmasked. Fragmented messages are
//! reassembled; control frames may interleave. Anything that breaks the RFC is reported as a
//! [`WsError`] carrying the close code the server answers with.

use base64::Engine as _;

/// The GUID of RFC 6455 §1.3, appended to `Sec-WebSocket-Key` before hashing.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Frame opcodes used by the simulator.
pub mod opcode {
    /// Continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// UTF-8 text message.
    pub const TEXT: u8 = 0x1;
    /// Binary message.
    pub const BINARY: u8 = 0x2;
    /// Close control frame.
    pub const CLOSE: u8 = 0x8;
    /// Ping control frame.
    pub const PING: u8 = 0x9;
    /// Pong control frame.
    pub const PONG: u8 = 0xA;
}

/// What the HTTP upgrade request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The request target (path and query).
    pub path: String,
    /// `Sec-WebSocket-Key` as sent.
    pub key: String,
    /// Length of the request head in bytes, including the final blank line.
    pub head_len: usize,
}

/// Why an upgrade request was refused; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The head is not a well-formed HTTP/1.1 GET upgrade to WebSocket version 13 (HTTP 400).
    #[error("bad upgrade request: {0}")]
    BadRequest(&'static str),
    /// The head is larger than the server accepts (HTTP 431).
    #[error("request head too large")]
    TooLarge,
}

/// Largest request head accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// Parses an upgrade request from the start of `buf`. `Ok(None)`: the head is not complete yet.
pub fn parse_upgrade(buf: &[u8]) -> Result<Option<UpgradeRequest>, HandshakeError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(HandshakeError::TooLarge);
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| HandshakeError::BadRequest("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, path, version) = (parts.next(), parts.next(), parts.next());
    if method != Some("GET") {
        return Err(HandshakeError::BadRequest("method must be GET"));
    }
    if version != Some("HTTP/1.1") {
        return Err(HandshakeError::BadRequest("version must be HTTP/1.1"));
    }
    let path = path.ok_or(HandshakeError::BadRequest("missing request target"))?;
    let (mut key, mut upgrade, mut connection, mut ws_version) = (None, false, false, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(HandshakeError::BadRequest("malformed header line"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "sec-websocket-key" => key = Some(value.to_string()),
            "upgrade" => upgrade = value.eq_ignore_ascii_case("websocket"),
            "connection" => {
                connection = value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            }
            "sec-websocket-version" => ws_version = Some(value.to_string()),
            _ => {}
        }
    }
    if !upgrade || !connection {
        return Err(HandshakeError::BadRequest("not a websocket upgrade"));
    }
    if ws_version.as_deref() != Some("13") {
        return Err(HandshakeError::BadRequest(
            "Sec-WebSocket-Version must be 13",
        ));
    }
    let key = key.ok_or(HandshakeError::BadRequest("missing Sec-WebSocket-Key"))?;
    Ok(Some(UpgradeRequest {
        path: path.to_string(),
        key,
        head_len: end + 4,
    }))
}

/// The `Sec-WebSocket-Accept` value for a key.
pub fn accept_key(key: &str) -> String {
    let mut input = key.as_bytes().to_vec();
    input.extend_from_slice(WS_GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The `101 Switching Protocols` response for a key.
pub fn switching_protocols(key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    )
    .into_bytes()
}

/// A plain HTTP error response that ends the connection.
pub fn http_error(status: u16, reason: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Appends an unmasked server frame.
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    write_frame_header(out, 0x80 | opcode, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// Appends a frame header with the given first byte (FIN/RSV/opcode) and payload length.
pub fn write_frame_header(out: &mut Vec<u8>, first: u8, len: u64) {
    out.push(first);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as u64 {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// Appends a close frame with a status code and reason.
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    write_frame(out, opcode::CLOSE, &payload);
}

/// A complete message or control frame received from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    /// A text message (UTF-8 validated).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping with its payload (to be answered with a pong).
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close frame with its status code (1005 when absent).
    Close(u16),
}

/// A protocol violation by the client; the server closes with [`WsError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// A framing rule was broken (unmasked frame, reserved bits, bad opcode, bad control frame).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A message is larger than the configured limit.
    #[error("message too big: {0} bytes")]
    TooBig(u64),
    /// A text message is not valid UTF-8.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
}

impl WsError {
    /// The RFC 6455 close code for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => 1002,
            WsError::TooBig(_) => 1009,
            WsError::InvalidUtf8 => 1007,
        }
    }
}

/// Incremental decoder of client frames.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Bytes received and not yet consumed.
    buf: Vec<u8>,
    /// Read offset into `buf`; bytes before it are consumed.
    pos: usize,
    /// Payload of a fragmented message being reassembled, with its opcode.
    partial: Option<(u8, Vec<u8>)>,
    /// Largest message accepted, in bytes.
    max_message: usize,
}

impl FrameDecoder {
    /// A decoder accepting messages up to `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        FrameDecoder {
            buf: Vec::with_capacity(64 * 1024),
            pos: 0,
            partial: None,
            max_message,
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Decodes the next complete message; `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<WsMessage>, WsError> {
        loop {
            let avail = &self.buf[self.pos..];
            if avail.len() < 2 {
                return Ok(None);
            }
            let (b0, b1) = (avail[0], avail[1]);
            if b0 & 0x70 != 0 {
                return Err(WsError::Protocol("reserved bits set"));
            }
            if b1 & 0x80 == 0 {
                return Err(WsError::Protocol("client frame not masked"));
            }
            let fin = b0 & 0x80 != 0;
            let op = b0 & 0x0f;
            let (len, mut off) = match b1 & 0x7f {
                126 => {
                    if avail.len() < 4 {
                        return Ok(None);
                    }
                    (u16::from_be_bytes([avail[2], avail[3]]) as u64, 4)
                }
                127 => {
                    if avail.len() < 10 {
                        return Ok(None);
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&avail[2..10]);
                    (u64::from_be_bytes(b), 10)
                }
                n => (n as u64, 2),
            };
            let is_control = op & 0x8 != 0;
            if is_control && (len > 125 || !fin) {
                return Err(WsError::Protocol("bad control frame"));
            }
            let already = self.partial.as_ref().map_or(0, |(_, p)| p.len() as u64);
            if len + already > self.max_message as u64 {
                return Err(WsError::TooBig(len + already));
            }
            if avail.len() < off + 4 + len as usize {
                return Ok(None);
            }
            let mask = [avail[off], avail[off + 1], avail[off + 2], avail[off + 3]];
            off += 4;
            let start = self.pos + off;
            let end = start + len as usize;
            for (i, b) in self.buf[start..end].iter_mut().enumerate() {
                *b ^= mask[i & 3];
            }
            self.pos = end;
            let payload = &self.buf[start..end];
            match op {
                opcode::PING => return Ok(Some(WsMessage::Ping(payload.to_vec()))),
                opcode::PONG => return Ok(Some(WsMessage::Pong)),
                opcode::CLOSE => {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1005
                    };
                    return Ok(Some(WsMessage::Close(code)));
                }
                opcode::TEXT | opcode::BINARY => {
                    if self.partial.is_some() {
                        return Err(WsError::Protocol("new message inside a fragmented one"));
                    }
                    if fin {
                        return finish(op, payload.to_vec()).map(Some);
                    }
                    self.partial = Some((op, payload.to_vec()));
                }
                opcode::CONTINUATION => {
                    let Some((_, data)) = self.partial.as_mut() else {
                        return Err(WsError::Protocol("continuation without a message"));
                    };
                    data.extend_from_slice(payload);
                    if fin {
                        let (op, data) = self.partial.take().expect("checked above");
                        return finish(op, data).map(Some);
                    }
                }
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
        }
    }
}

fn finish(op: u8, data: Vec<u8>) -> Result<WsMessage, WsError> {
    if op == opcode::TEXT {
        String::from_utf8(data)
            .map(WsMessage::Text)
            .map_err(|_| WsError::InvalidUtf8)
    } else {
        Ok(WsMessage::Binary(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![first];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn upgrade_request_is_parsed_once_complete() {
        let req = b"GET /ws/api/v2 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(parse_upgrade(&req[..20]), Ok(None));
        let parsed = parse_upgrade(req).unwrap().unwrap();
        assert_eq!(parsed.path, "/ws/api/v2");
        assert_eq!(parsed.key, "abc");
        assert_eq!(parsed.head_len, req.len());
    }

    #[test]
    fn upgrade_without_version_13_is_refused() {
        let req = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: abc\r\n\r\n";
        assert!(matches!(
            parse_upgrade(req),
            Err(HandshakeError::BadRequest(_))
        ));
    }

    #[test]
    fn fragmented_text_is_reassembled_around_a_ping() {
        let mut d = FrameDecoder::new(1024);
        d.extend(&masked(0x01, b"hel"));
        d.extend(&masked(0x89, b"p"));
        d.extend(&masked(0x80, b"lo"));
        assert_eq!(d.next_message(), Ok(Some(WsMessage::Ping(b"p".to_vec()))));
        assert_eq!(d.next_message(), Ok(Some(WsMessage::Text("hello".into()))));
        assert_eq!(d.next_message(), Ok(None));
    }

    #[test]
    fn unmasked_client_frame_is_a_protocol_error() {
        let mut d = FrameDecoder::new(1024);
        d.extend(&[0x81, 0x01, b'a']);
        assert_eq!(d.next_message().unwrap_err().close_code(), 1002);
    }

    #[test]
    fn oversized_message_is_refused_from_its_header() {
        let mut d = FrameDecoder::new(100);
        d.extend(&masked(0x81, &[b'a'; 200])[..8]);
        assert_eq!(d.next_message(), Err(WsError::TooBig(200)));
    }

    #[test]
    fn invalid_utf8_text_is_refused() {
        let mut d = FrameDecoder::new(100);
        d.extend(&masked(0x81, &[0xff, 0xfe]));
        assert_eq!(d.next_message(), Err(WsError::InvalidUtf8));
    }

    #[test]
    fn server_frames_use_the_shortest_length_encoding() {
        let mut out = Vec::new();
        write_frame(&mut out, opcode::TEXT, &[b'x'; 300]);
        assert_eq!(&out[..4], &[0x81, 126, 1, 44]);
        assert_eq!(out.len(), 304);
    }
}
