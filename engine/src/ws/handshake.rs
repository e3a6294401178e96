//! The client opening handshake (RFC 6455 §4.1) as a sans-IO state machine.
//!
//! ```text
//!  ClientHandshake::start(&request, out) ──> request bytes in `out` (the caller sends them)
//!  feed(response bytes) ──> NeedMore ──> feed(...) ──> Done { leftover_len } | Err(HandshakeError)
//! ```
//!
//! The caller owns the I/O: it writes the request bytes however its transport likes (partial
//! writes, `WouldBlock`, TLS), and feeds whatever response bytes arrive, in pieces of any size
//! (one byte at a time works). When the response header is complete and valid, the answer is
//! [`HandshakeStatus::Done`]: the last `leftover_len` bytes of the piece just fed came *after* the
//! header. They are WebSocket frames the server sent right behind its `101` and belong to the
//! frame decoder ([`Codec::feed`](super::Codec::feed)).
//!
//! # Why not tungstenite's `ClientHandshake` / `MidHandshake`
//!
//! tungstenite's machine drives a `Read + Write` stream itself and, when it completes, moves the
//! bytes it read past the response into the `WebSocket` it builds
//! (`WebSocket::from_partially_read`). That `WebSocket` never hands them back: `into_inner()`
//! returns the stream and drops the codec's read buffer (tungstenite-rs issue #555, whose fix in
//! PR #556 is unreleased). spinwire decodes frames with its own codec, so it would lose a frame a
//! server sends right after its `101` — the first message of many market-data feeds. This module
//! therefore only borrows tungstenite's key functions ([`generate_key`], [`derive_accept_key`])
//! and parses the response with `httparse`, keeping the I/O and the leftover bytes with the caller.
//!
//! The handshake is a cold path: it allocates (the key strings, a response buffer of
//! [`MAX_RESPONSE_HEADER_LEN`] bytes) once per connection attempt.

use tungstenite::handshake::{client::generate_key, derive_accept_key};

/// The largest response header accepted; a larger one is [`HandshakeError::HeaderTooLarge`].
pub const MAX_RESPONSE_HEADER_LEN: usize = 8 * 1024;

/// The most response header lines parsed.
const MAX_HEADERS: usize = 64;

/// What to ask the server for.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeRequest<'a> {
    /// Host name or IP literal (IPv6 in brackets), ASCII. Sent in `Host`.
    pub host: &'a str,
    /// TCP port. Added to `Host` unless it is 80 or 443 (the defaults of `ws://` and `wss://`).
    pub port: u16,
    /// Path and query, starting with `/`, already percent-encoded (e.g. `/ws/api/v2`,
    /// `/stream?streams=btcusdt@trade`).
    pub path: &'a str,
    /// Subprotocols to offer in `Sec-WebSocket-Protocol`, in order of preference; empty: none.
    pub protocols: &'a [&'a str],
    /// More headers (e.g. `User-Agent`, `Origin`, an API key). They may not repeat the
    /// handshake's own: `Host`, `Upgrade`, `Connection`, `Sec-WebSocket-*`.
    pub extra_headers: &'a [(&'a str, &'a str)],
}

impl<'a> HandshakeRequest<'a> {
    /// A request for `path` on `host:port` with no subprotocol and no extra header.
    pub const fn new(host: &'a str, port: u16, path: &'a str) -> Self {
        Self {
            host,
            port,
            path,
            protocols: &[],
            extra_headers: &[],
        }
    }
}

/// Progress of the handshake after [`ClientHandshake::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// The response header is not complete yet: feed more bytes.
    NeedMore,
    /// The server accepted the upgrade. The last `leftover_len` bytes of the piece just fed follow
    /// the response header: hand them to the frame decoder.
    Done {
        /// How many bytes at the end of the last piece fed are WebSocket data.
        leftover_len: usize,
    },
}

/// Why the handshake failed. Each variant says what the caller should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The request does not fit the buffer given to [`ClientHandshake::start`]: give one of at
    /// least `needed` bytes.
    #[error("request needs a {needed}-byte buffer")]
    RequestTooLarge {
        /// The request's length.
        needed: usize,
    },
    /// A request field cannot be sent (the text says which): fix the configuration.
    #[error("invalid handshake request: {0}")]
    InvalidRequest(&'static str),
    /// The response header exceeded [`MAX_RESPONSE_HEADER_LEN`]: this is not a WebSocket endpoint
    /// (or a hostile one). Close the connection; check the URL.
    #[error("response header larger than {MAX_RESPONSE_HEADER_LEN} bytes")]
    HeaderTooLarge,
    /// The response had more than 64 header lines: treat like [`HeaderTooLarge`](Self::HeaderTooLarge).
    #[error("response has too many header lines")]
    TooManyHeaders,
    /// The response is not HTTP (plain text on a TLS port, or the reverse?): close and check the
    /// URL, port and TLS setting.
    #[error("malformed HTTP response: {0}")]
    Malformed(httparse::Error),
    /// The server answered with HTTP/1.0, which cannot upgrade: close; the endpoint is wrong.
    #[error("response is not HTTP/1.1")]
    WrongHttpVersion,
    /// The server refused the upgrade with this status. 3xx: the endpoint moved (update the
    /// URL); 401/403: credentials or IP not allowed (do not retry blindly); 404: wrong path;
    /// 418/429: rate limited or banned (back off); 5xx: server trouble (reconnect with backoff).
    #[error("server answered {0} instead of 101")]
    Status(u16),
    /// 101 without `Upgrade: websocket`: not a WebSocket server; close.
    #[error("response lacks `Upgrade: websocket`")]
    MissingUpgrade,
    /// 101 without `upgrade` in `Connection`: not a WebSocket server; close.
    #[error("response lacks `Connection: upgrade`")]
    MissingConnectionUpgrade,
    /// 101 without `Sec-WebSocket-Accept`: not a WebSocket server (or a broken proxy); close.
    #[error("response lacks Sec-WebSocket-Accept")]
    MissingAccept,
    /// `Sec-WebSocket-Accept` is not the one derived from our key (a caching proxy replaying an
    /// old answer?): close and reconnect.
    #[error("Sec-WebSocket-Accept does not match the key")]
    BadAccept,
    /// The server picked an extension we did not offer (we offer none): close; the server is
    /// broken.
    #[error("server chose an extension that was not offered")]
    UnexpectedExtension,
    /// The server picked a subprotocol we did not offer: close; fix the offered list.
    #[error("server chose a subprotocol that was not offered")]
    UnexpectedProtocol,
    /// [`ClientHandshake::feed`] was called after `Done` or an error: start a new handshake.
    #[error("handshake already finished")]
    Finished,
}

/// Where the handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for (more of) the response header.
    Reading,
    /// Accepted; `header_len` bytes of `buf` are the response header.
    Done { header_len: usize },
    /// Failed; no more input is taken.
    Failed,
}

/// A client handshake in progress. See the [module docs](self).
#[derive(Debug)]
pub struct ClientHandshake {
    /// The `Sec-WebSocket-Accept` value the server must send back.
    accept: String,
    /// The offered subprotocols, joined with `,` (empty when none were offered).
    offered_protocols: String,
    /// The response bytes so far; [`MAX_RESPONSE_HEADER_LEN`] long. Only `buf[..len]` is data.
    buf: Box<[u8]>,
    /// Bytes of `buf` in use. Invariant: `len <= buf.len()`.
    len: usize,
    /// Progress.
    state: State,
    /// The subprotocol the server chose, as a range of `buf`.
    protocol: Option<(usize, usize)>,
}

/// Appends to a caller-lent buffer, counting what would not fit so the error can say how much
/// room was needed.
struct Writer<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.out.get_mut(self.pos..self.pos + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.pos += bytes.len();
    }

    fn put_u16(&mut self, mut v: u16) {
        let mut digits = [0u8; 5];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.put(&digits[i..]);
    }
}

/// RFC 7230 `tchar`: the bytes allowed in a token (header name, subprotocol).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks every field of `req` before anything is written.
fn validate_request(req: &HandshakeRequest<'_>) -> Result<(), HandshakeError> {
    use HandshakeError::InvalidRequest;
    if req.host.is_empty() {
        return Err(InvalidRequest("host is empty"));
    }
    if !req
        .host
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b"/?#@\\".contains(&b))
    {
        return Err(InvalidRequest(
            "host must be an ASCII name or IP literal (no spaces, controls, '/', '?', '#', '@')",
        ));
    }
    if !req.path.starts_with('/') {
        return Err(InvalidRequest("path must start with '/'"));
    }
    if !req.path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidRequest(
            "path must be percent-encoded ASCII without spaces or controls",
        ));
    }
    if req.protocols.iter().any(|p| !is_token(p)) {
        return Err(InvalidRequest("subprotocols must be HTTP tokens"));
    }
    for (name, value) in req.extra_headers {
        if !is_token(name) {
            return Err(InvalidRequest("header names must be HTTP tokens"));
        }
        let reserved = ["host", "upgrade", "connection"];
        if reserved.iter().any(|r| name.eq_ignore_ascii_case(r))
            || name.len() >= 14 && name[..14].eq_ignore_ascii_case("sec-websocket-")
        {
            return Err(InvalidRequest(
                "extra headers may not set Host, Upgrade, Connection or Sec-WebSocket-*",
            ));
        }
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7F) {
            return Err(InvalidRequest(
                "header values may not contain control characters (CR, LF, NUL...)",
            ));
        }
    }
    Ok(())
}

/// Whether the comma-separated `value` contains `token`, ignoring case and optional whitespace.
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

impl ClientHandshake {
    /// Starts a handshake with a fresh random key: writes the upgrade request into `out` and
    /// returns the machine and the request's length (send `out[..len]`).
    ///
    /// Errors: [`HandshakeError::InvalidRequest`] for a field that cannot be sent,
    /// [`HandshakeError::RequestTooLarge`] when `out` is too small.
    pub fn start(
        request: &HandshakeRequest<'_>,
        out: &mut [u8],
    ) -> Result<(Self, usize), HandshakeError> {
        Self::start_with_key(request, &generate_key(), out)
    }

    /// [`start`](Self::start) with a given `Sec-WebSocket-Key` (base64 of 16 bytes, 24
    /// characters): for tests and reproducible captures. Use `start` otherwise: the key must be
    /// random per connection.
    pub fn start_with_key(
        request: &HandshakeRequest<'_>,
        key: &str,
        out: &mut [u8],
    ) -> Result<(Self, usize), HandshakeError> {
        validate_request(request)?;
        if key.len() != 24
            || !key.ends_with("==")
            || !key[..22]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        {
            return Err(HandshakeError::InvalidRequest(
                "Sec-WebSocket-Key must be the base64 of 16 bytes",
            ));
        }
        let mut w = Writer { out, pos: 0 };
        w.put(b"GET ");
        w.put(request.path.as_bytes());
        w.put(b" HTTP/1.1\r\nHost: ");
        w.put(request.host.as_bytes());
        if request.port != 80 && request.port != 443 {
            w.put(b":");
            w.put_u16(request.port);
        }
        w.put(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ");
        w.put(key.as_bytes());
        w.put(b"\r\n");
        if !request.protocols.is_empty() {
            w.put(b"Sec-WebSocket-Protocol: ");
            for (i, p) in request.protocols.iter().enumerate() {
                if i > 0 {
                    w.put(b", ");
                }
                w.put(p.as_bytes());
            }
            w.put(b"\r\n");
        }
        for (name, value) in request.extra_headers {
            w.put(name.as_bytes());
            w.put(b": ");
            w.put(value.as_bytes());
            w.put(b"\r\n");
        }
        w.put(b"\r\n");
        if w.pos > w.out.len() {
            return Err(HandshakeError::RequestTooLarge { needed: w.pos });
        }
        let len = w.pos;
        let handshake = Self {
            accept: derive_accept_key(key.as_bytes()),
            offered_protocols: request.protocols.join(","),
            buf: vec![0u8; MAX_RESPONSE_HEADER_LEN].into_boxed_slice(),
            len: 0,
            state: State::Reading,
            protocol: None,
        };
        Ok((handshake, len))
    }

    /// Feeds the next piece of the server's response (any size, even one byte).
    ///
    /// `Ok(NeedMore)`: feed more. `Ok(Done { leftover_len })`: the server accepted; the last
    /// `leftover_len` bytes of `bytes` are WebSocket frames for the decoder. `Err`: the upgrade
    /// failed (see [`HandshakeError`]); further calls return [`HandshakeError::Finished`].
    pub fn feed(&mut self, bytes: &[u8]) -> Result<HandshakeStatus, HandshakeError> {
        if self.state != State::Reading {
            return Err(HandshakeError::Finished);
        }
        let result = self.feed_reading(bytes);
        match result {
            Ok(HandshakeStatus::NeedMore) => {}
            Ok(HandshakeStatus::Done { .. }) => {}
            Err(_) => self.state = State::Failed,
        }
        result
    }

    fn feed_reading(&mut self, bytes: &[u8]) -> Result<HandshakeStatus, HandshakeError> {
        let old = self.len;
        let take = bytes.len().min(self.buf.len() - old);
        self.buf[old..old + take].copy_from_slice(&bytes[..take]);
        self.len += take;
        // Re-parsed from the start on every piece (a cold path, at most 8 KiB): httparse reports
        // garbage as soon as it arrives.
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let header_len = match response.parse(&self.buf[..self.len]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return if self.len == self.buf.len() {
                    Err(HandshakeError::HeaderTooLarge)
                } else {
                    Ok(HandshakeStatus::NeedMore)
                };
            }
            Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
            Err(e) => return Err(HandshakeError::Malformed(e)),
        };
        // Every earlier piece ended before the header's final line feed, so the header ends
        // inside this piece: `old < header_len <= old + take`.
        debug_assert!(old < header_len && header_len <= old + take);
        let leftover_len = bytes.len() - (header_len - old);

        if response.version != Some(1) {
            return Err(HandshakeError::WrongHttpVersion);
        }
        let code = response.code.unwrap_or(0);
        if code != 101 {
            return Err(HandshakeError::Status(code));
        }
        let mut upgrade = false;
        let mut connection = false;
        let mut accept_seen = false;
        let mut protocol = None;
        let base = self.buf.as_ptr() as usize;
        for h in response.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("upgrade") {
                upgrade |= has_token(h.value, "websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                connection |= has_token(h.value, "upgrade");
            } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
                if accept_seen || h.value.trim_ascii() != self.accept.as_bytes() {
                    return Err(HandshakeError::BadAccept);
                }
                accept_seen = true;
            } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
                if !h.value.trim_ascii().is_empty() {
                    return Err(HandshakeError::UnexpectedExtension);
                }
            } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
                let chosen = h.value.trim_ascii();
                let offered = self
                    .offered_protocols
                    .split(',')
                    .any(|p| !p.is_empty() && p.as_bytes() == chosen);
                if !offered || protocol.is_some() {
                    return Err(HandshakeError::UnexpectedProtocol);
                }
                let at = chosen.as_ptr() as usize - base;
                protocol = Some((at, at + chosen.len()));
            }
        }
        if !upgrade {
            return Err(HandshakeError::MissingUpgrade);
        }
        if !connection {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        if !accept_seen {
            return Err(HandshakeError::MissingAccept);
        }
        self.protocol = protocol;
        self.state = State::Done { header_len };
        Ok(HandshakeStatus::Done { leftover_len })
    }

    /// Whether the server accepted the upgrade.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done { .. })
    }

    /// The subprotocol the server chose, once done (`None` if it chose none).
    pub fn protocol(&self) -> Option<&str> {
        let (a, b) = self.protocol?;
        std::str::from_utf8(&self.buf[a..b]).ok()
    }

    /// The response bytes received so far, up to the end of the header once done (for logs: on
    /// [`HandshakeError::Status`] it shows the server's answer).
    pub fn response(&self) -> &[u8] {
        match self.state {
            State::Done { header_len } => &self.buf[..header_len],
            _ => &self.buf[..self.len],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6455 §1.3's example key and its accept value.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn start(req: &HandshakeRequest<'_>) -> (ClientHandshake, String) {
        let mut out = [0u8; 1024];
        let (h, n) = ClientHandshake::start_with_key(req, KEY, &mut out).unwrap();
        (h, String::from_utf8(out[..n].to_vec()).unwrap())
    }

    #[test]
    fn request_has_the_mandatory_headers() {
        let (_, req) = start(&HandshakeRequest::new("www.deribit.com", 443, "/ws/api/v2"));
        assert_eq!(
            req,
            "GET /ws/api/v2 HTTP/1.1\r\nHost: www.deribit.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
    }

    #[test]
    fn non_default_port_goes_into_host_and_extras_are_appended() {
        let req = HandshakeRequest {
            protocols: &["json", "v2.proto"],
            extra_headers: &[("User-Agent", "spinwire/0.1")],
            ..HandshakeRequest::new("stream.binance.com", 9443, "/ws/btcusdt@trade")
        };
        let (_, text) = start(&req);
        assert!(text.contains("Host: stream.binance.com:9443\r\n"), "{text}");
        assert!(text.contains("Sec-WebSocket-Protocol: json, v2.proto\r\n"));
        assert!(text.ends_with("User-Agent: spinwire/0.1\r\n\r\n"));
    }

    #[test]
    fn random_key_is_accepted_by_its_own_derivation() {
        let mut out = [0u8; 512];
        let (h, n) =
            ClientHandshake::start(&HandshakeRequest::new("h", 80, "/"), &mut out).unwrap();
        let text = std::str::from_utf8(&out[..n]).unwrap();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        assert_eq!(h.accept, derive_accept_key(key.as_bytes()));
    }

    #[test]
    fn request_too_large_for_the_buffer_says_how_much_is_needed() {
        let mut out = [0u8; 20];
        let err =
            ClientHandshake::start_with_key(&HandshakeRequest::new("h", 80, "/"), KEY, &mut out)
                .unwrap_err();
        let mut big = [0u8; 512];
        let (_, n) =
            ClientHandshake::start_with_key(&HandshakeRequest::new("h", 80, "/"), KEY, &mut big)
                .unwrap();
        assert_eq!(err, HandshakeError::RequestTooLarge { needed: n });
    }

    #[test]
    fn unusable_request_fields_are_refused() {
        let mut out = [0u8; 512];
        let bad = [
            HandshakeRequest::new("", 80, "/"),
            HandshakeRequest::new("a b", 80, "/"),
            HandshakeRequest::new("h", 80, "no-slash"),
            HandshakeRequest::new("h", 80, "/a\r\nX: y"),
            HandshakeRequest {
                protocols: &["bad proto"],
                ..HandshakeRequest::new("h", 80, "/")
            },
            HandshakeRequest {
                extra_headers: &[("Sec-WebSocket-Extensions", "permessage-deflate")],
                ..HandshakeRequest::new("h", 80, "/")
            },
            HandshakeRequest {
                extra_headers: &[("X-Ok", "evil\r\nInjected: 1")],
                ..HandshakeRequest::new("h", 80, "/")
            },
            HandshakeRequest {
                extra_headers: &[("Bad Name", "v")],
                ..HandshakeRequest::new("h", 80, "/")
            },
        ];
        for req in bad {
            assert!(
                matches!(
                    ClientHandshake::start_with_key(&req, KEY, &mut out),
                    Err(HandshakeError::InvalidRequest(_))
                ),
                "{req:?}"
            );
        }
        assert!(matches!(
            ClientHandshake::start_with_key(
                &HandshakeRequest::new("h", 80, "/"),
                "short",
                &mut out
            ),
            Err(HandshakeError::InvalidRequest(_))
        ));
    }

    fn ok_response() -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        )
    }

    #[test]
    fn valid_response_in_one_piece_is_done_with_no_leftover() {
        let (mut h, _) = start(&HandshakeRequest::new("h", 80, "/"));
        assert_eq!(
            h.feed(ok_response().as_bytes()),
            Ok(HandshakeStatus::Done { leftover_len: 0 })
        );
        assert!(h.is_done());
        assert_eq!(h.response(), ok_response().as_bytes());
        assert_eq!(h.feed(b"x"), Err(HandshakeError::Finished));
    }

    #[test]
    fn header_names_and_tokens_match_case_insensitively_in_lists() {
        let (mut h, _) = start(&HandshakeRequest::new("h", 80, "/"));
        let resp = format!(
            "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive , UPGRADE\r\n\
             sec-websocket-accept: {ACCEPT}\r\n\r\n"
        );
        assert!(matches!(
            h.feed(resp.as_bytes()),
            Ok(HandshakeStatus::Done { .. })
        ));
    }

    #[test]
    fn chosen_subprotocol_must_be_one_we_offered() {
        let req = HandshakeRequest {
            protocols: &["a", "b"],
            ..HandshakeRequest::new("h", 80, "/")
        };
        let with = |p: &str| {
            format!(
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: {p}\r\n\r\n"
            )
        };
        let (mut h, _) = start(&req);
        assert!(matches!(
            h.feed(with("b").as_bytes()),
            Ok(HandshakeStatus::Done { .. })
        ));
        assert_eq!(h.protocol(), Some("b"));
        let (mut h, _) = start(&req);
        assert_eq!(
            h.feed(with("c").as_bytes()),
            Err(HandshakeError::UnexpectedProtocol)
        );
        let (mut h, _) = start(&HandshakeRequest::new("h", 80, "/"));
        assert_eq!(
            h.feed(with("a").as_bytes()),
            Err(HandshakeError::UnexpectedProtocol)
        );
    }

    #[test]
    fn oversized_response_header_is_refused() {
        let (mut h, _) = start(&HandshakeRequest::new("h", 80, "/"));
        assert_eq!(
            h.feed(b"HTTP/1.1 101 OK\r\n"),
            Ok(HandshakeStatus::NeedMore)
        );
        let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut result = Ok(HandshakeStatus::NeedMore);
        for _ in 0..200 {
            result = h.feed(line);
            if result.is_err() {
                break;
            }
        }
        // 64 header lines are reached before 8 KiB with these lines.
        assert_eq!(result, Err(HandshakeError::TooManyHeaders));

        let (mut h, _) = start(&HandshakeRequest::new("h", 80, "/"));
        h.feed(b"HTTP/1.1 101 OK\r\nX-Big: ").unwrap();
        let chunk = [b'a'; 1000];
        let mut result = Ok(HandshakeStatus::NeedMore);
        for _ in 0..10 {
            result = h.feed(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(HandshakeError::HeaderTooLarge));
    }
}
