//! The WebSocket codec and handshake against RFC 6455, rule by rule (the rules Autobahn|Testsuite
//! checks), plus reads split at arbitrary boundaries.

use proptest::prelude::*;
use spinwire_engine::ws::{
    ClientHandshake, Codec, Config, Decoder, HandshakeError, HandshakeRequest, HandshakeStatus,
    Message, ProtocolError,
};

// ---------------------------------------------------------------------------------------------
// Helpers: server frames (unmasked) and an owned copy of messages.

/// An unmasked server frame with the given first byte (FIN/RSV/opcode) and payload.
fn raw_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
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

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONT: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const FIN: u8 = 0x80;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

fn own(m: Message<'_>) -> Owned {
    match m {
        Message::Text(s) => Owned::Text(s.to_owned()),
        Message::Binary(b) => Owned::Binary(b.to_vec()),
        Message::Ping(b) => Owned::Ping(b.to_vec()),
        Message::Pong(b) => Owned::Pong(b.to_vec()),
        Message::Close(c) => Owned::Close(c.map(|c| (c.code, c.reason.to_owned()))),
    }
}

fn config(max_frame: usize, max_message: usize) -> Config {
    Config {
        max_frame_size: max_frame,
        max_message_size: max_message,
        read_buffer_size: 0,
    }
}

fn decoder() -> Decoder {
    Decoder::new(config(64 * 1024, 256 * 1024)).unwrap()
}

/// Feeds `bytes` in pieces of `chunk` bytes through spare/commit, decoding after each piece.
/// Returns the messages and the first error.
fn decode_chunked(
    d: &mut Decoder,
    bytes: &[u8],
    chunk: usize,
) -> (Vec<Owned>, Option<ProtocolError>) {
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        let mut rest = piece;
        while !rest.is_empty() {
            let spare = d.spare();
            let n = rest.len().min(spare.len());
            spare[..n].copy_from_slice(&rest[..n]);
            d.commit(n);
            rest = &rest[n..];
            loop {
                match d.next_message() {
                    Ok(Some(m)) => out.push(own(m)),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
    }
    (out, None)
}

fn decode_all(bytes: &[u8]) -> (Vec<Owned>, Option<ProtocolError>) {
    decode_chunked(&mut decoder(), bytes, bytes.len())
}

fn expect_error(bytes: &[u8], want: ProtocolError, code: u16) {
    let (_, err) = decode_all(bytes);
    assert_eq!(err, Some(want));
    assert_eq!(want.close_code(), code);
    // Byte by byte, the same error comes out.
    let (_, err) = decode_chunked(&mut decoder(), bytes, 1);
    assert_eq!(err, Some(want), "byte-by-byte");
}

// ---------------------------------------------------------------------------------------------
// Data frames and fragmentation.

#[test]
fn single_frame_text_and_binary_messages_are_decoded() {
    let mut bytes = raw_frame(FIN | TEXT, "héllo".as_bytes());
    bytes.extend(raw_frame(FIN | BINARY, &[0, 1, 2, 255]));
    bytes.extend(raw_frame(FIN | TEXT, b""));
    let (msgs, err) = decode_all(&bytes);
    assert_eq!(err, None);
    assert_eq!(
        msgs,
        [
            Owned::Text("héllo".into()),
            Owned::Binary(vec![0, 1, 2, 255]),
            Owned::Text(String::new())
        ]
    );
}

#[test]
fn all_three_length_encodings_are_decoded() {
    for len in [125usize, 126, 65535, 65536] {
        let payload = vec![b'x'; len];
        let (msgs, err) = decode_all(&raw_frame(FIN | BINARY, &payload));
        assert_eq!(err, None);
        assert_eq!(msgs, [Owned::Binary(payload)]);
    }
}

#[test]
fn fragmented_text_is_reassembled() {
    let mut bytes = raw_frame(TEXT, b"fra");
    bytes.extend(raw_frame(CONT, b""));
    bytes.extend(raw_frame(CONT, b"gme"));
    bytes.extend(raw_frame(FIN | CONT, b"nted"));
    let (msgs, err) = decode_all(&bytes);
    assert_eq!(err, None);
    assert_eq!(msgs, [Owned::Text("fragmented".into())]);
}

#[test]
fn fragmented_binary_is_reassembled() {
    let mut bytes = raw_frame(BINARY, &[1, 2]);
    bytes.extend(raw_frame(FIN | CONT, &[3]));
    let (msgs, err) = decode_all(&bytes);
    assert_eq!(err, None);
    assert_eq!(msgs, [Owned::Binary(vec![1, 2, 3])]);
}

#[test]
fn control_frames_between_fragments_are_delivered_in_order() {
    let mut bytes = raw_frame(TEXT, b"a");
    bytes.extend(raw_frame(FIN | PING, b"p1"));
    bytes.extend(raw_frame(CONT, b"b"));
    bytes.extend(raw_frame(FIN | PONG, b"p2"));
    bytes.extend(raw_frame(FIN | CONT, b"c"));
    let (msgs, err) = decode_all(&bytes);
    assert_eq!(err, None);
    assert_eq!(
        msgs,
        [
            Owned::Ping(b"p1".to_vec()),
            Owned::Pong(b"p2".to_vec()),
            Owned::Text("abc".into())
        ]
    );
}

#[test]
fn close_between_fragments_ends_decoding() {
    let mut bytes = raw_frame(TEXT, b"a");
    bytes.extend(raw_frame(FIN | CLOSE, &1000u16.to_be_bytes()));
    bytes.extend(raw_frame(FIN | CONT, b"b"));
    let (msgs, err) = decode_all(&bytes);
    assert_eq!(err, None);
    assert_eq!(msgs, [Owned::Close(Some((1000, String::new())))]);
}

#[test]
fn continuation_without_a_started_message_is_a_protocol_error() {
    expect_error(
        &raw_frame(FIN | CONT, b"x"),
        ProtocolError::UnexpectedContinuation,
        1002,
    );
}

#[test]
fn new_data_frame_during_a_fragmented_message_is_a_protocol_error() {
    for op in [TEXT, BINARY] {
        let mut bytes = raw_frame(TEXT, b"a");
        bytes.extend(raw_frame(FIN | op, b"b"));
        expect_error(&bytes, ProtocolError::ExpectedContinuation, 1002);
    }
}

// ---------------------------------------------------------------------------------------------
// Header rules.

#[test]
fn masked_server_frame_is_a_protocol_error() {
    expect_error(
        &[0x81, 0x81, 1, 2, 3, 4, b'x'],
        ProtocolError::MaskedFrame,
        1002,
    );
}

#[test]
fn rsv_bits_without_an_extension_are_a_protocol_error() {
    for rsv in [0x40u8, 0x20, 0x10, 0x70] {
        expect_error(
            &raw_frame(FIN | rsv | TEXT, b"x"),
            ProtocolError::ReservedBits,
            1002,
        );
    }
}

#[test]
fn reserved_opcodes_are_a_protocol_error() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        expect_error(
            &raw_frame(FIN | op, b""),
            ProtocolError::ReservedOpcode(op),
            1002,
        );
    }
}

#[test]
fn control_frame_over_125_bytes_is_a_protocol_error() {
    for op in [PING, PONG, CLOSE] {
        expect_error(
            &raw_frame(FIN | op, &[b'a'; 126]),
            ProtocolError::ControlFrameTooLong,
            1002,
        );
    }
    let (msgs, err) = decode_all(&raw_frame(FIN | PING, &[b'a'; 125]));
    assert_eq!((msgs.len(), err), (1, None));
}

#[test]
fn control_frame_without_fin_is_a_protocol_error() {
    for op in [PING, PONG, CLOSE] {
        expect_error(
            &raw_frame(op, b""),
            ProtocolError::FragmentedControlFrame,
            1002,
        );
    }
}

#[test]
fn payload_length_with_the_top_bit_set_is_a_protocol_error() {
    let mut bytes = vec![FIN | BINARY, 127];
    bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
    expect_error(&bytes, ProtocolError::InvalidLength, 1002);
}

// ---------------------------------------------------------------------------------------------
// UTF-8.

#[test]
fn invalid_utf8_in_a_text_frame_is_1007() {
    // Autobahn 6.3.1's payload: "κόσμε" with a UTF-16 surrogate.
    let bad = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64";
    expect_error(
        &raw_frame(FIN | TEXT, bad),
        ProtocolError::InvalidUtf8,
        1007,
    );
}

#[test]
fn invalid_utf8_fails_fast_inside_a_frame_that_has_not_fully_arrived() {
    // Autobahn 6.4.3/6.4.4: one frame sent in chunks; the chunk that makes it invalid must fail
    // the connection before the rest of the frame arrives.
    let payload =
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64";
    let frame = raw_frame(FIN | TEXT, payload);
    let mut d = decoder();
    d.feed(&frame[..2 + 11]); // header + the valid "κόσμε"
    assert_eq!(d.next_message(), Ok(None));
    d.feed(&frame[2 + 11..2 + 13]); // F4 90: cannot start valid UTF-8
    assert_eq!(d.next_message(), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn invalid_utf8_fails_fast_in_a_non_final_fragment() {
    // Autobahn 6.4.1/6.4.2: the fragment that makes the text invalid fails the connection at once,
    // before the final fragment arrives.
    let mut d = decoder();
    d.feed(&raw_frame(TEXT, "κόσμε".as_bytes()));
    assert_eq!(d.next_message(), Ok(None));
    d.feed(&raw_frame(CONT, b"\xf4\x90\x80\x80"));
    assert_eq!(d.next_message(), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn code_point_split_between_fragments_is_valid() {
    let euro = "€".as_bytes(); // E2 82 AC
    let mut bytes = raw_frame(TEXT, &euro[..1]);
    bytes.extend(raw_frame(CONT, &euro[1..2]));
    bytes.extend(raw_frame(FIN | CONT, &euro[2..]));
    assert_eq!(decode_all(&bytes), (vec![Owned::Text("€".into())], None));
}

#[test]
fn text_message_ending_inside_a_code_point_is_1007() {
    let mut bytes = raw_frame(TEXT, b"ok");
    bytes.extend(raw_frame(FIN | CONT, b"\xe2\x82"));
    expect_error(&bytes, ProtocolError::InvalidUtf8, 1007);
    expect_error(
        &raw_frame(FIN | TEXT, b"\xe2\x82"),
        ProtocolError::InvalidUtf8,
        1007,
    );
}

#[test]
fn binary_messages_are_not_utf8_checked() {
    let mut bytes = raw_frame(BINARY, b"\xff");
    bytes.extend(raw_frame(FIN | CONT, b"\xfe"));
    assert_eq!(
        decode_all(&bytes),
        (vec![Owned::Binary(vec![0xff, 0xfe])], None)
    );
}

// ---------------------------------------------------------------------------------------------
// Close frames.

#[test]
fn close_without_payload_has_no_code() {
    assert_eq!(
        decode_all(&raw_frame(FIN | CLOSE, b"")),
        (vec![Owned::Close(None)], None)
    );
}

#[test]
fn close_with_a_one_byte_payload_is_a_protocol_error() {
    expect_error(
        &raw_frame(FIN | CLOSE, b"\x03"),
        ProtocolError::CloseFrameTooShort,
        1002,
    );
}

#[test]
fn close_codes_are_checked_against_the_valid_ranges() {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"why");
        let (msgs, err) = decode_all(&raw_frame(FIN | CLOSE, &payload));
        assert_eq!(err, None, "{code}");
        assert_eq!(msgs, [Owned::Close(Some((code, "why".into())))]);
    }
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        expect_error(
            &raw_frame(FIN | CLOSE, &code.to_be_bytes()),
            ProtocolError::InvalidCloseCode(code),
            1002,
        );
    }
}

#[test]
fn close_reason_that_is_not_utf8_is_1007() {
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"\xce\xba\xed\xa0\x80");
    expect_error(
        &raw_frame(FIN | CLOSE, &payload),
        ProtocolError::InvalidCloseReason,
        1007,
    );
}

// ---------------------------------------------------------------------------------------------
// Size limits.

#[test]
fn frame_over_the_maximum_is_1009_as_soon_as_its_header_arrives() {
    let mut d = Decoder::new(config(1000, 10_000)).unwrap();
    // Only the header of a 1001-byte frame.
    d.feed(&[FIN | BINARY, 126, 0x03, 0xE9]);
    assert_eq!(d.next_message(), Err(ProtocolError::FrameTooLarge));
    assert_eq!(ProtocolError::FrameTooLarge.close_code(), 1009);
}

#[test]
fn message_over_the_maximum_is_1009_when_a_fragment_would_exceed_it() {
    let mut d = Decoder::new(config(1000, 1500)).unwrap();
    let mut bytes = raw_frame(BINARY, &[0; 1000]);
    bytes.extend(raw_frame(FIN | CONT, &[0; 501]));
    let (_, err) = decode_chunked(&mut d, &bytes, 4096);
    assert_eq!(err, Some(ProtocolError::MessageTooLarge));
    assert_eq!(ProtocolError::MessageTooLarge.close_code(), 1009);

    let mut d = Decoder::new(config(1000, 1500)).unwrap();
    let mut bytes = raw_frame(BINARY, &[0; 1000]);
    bytes.extend(raw_frame(FIN | CONT, &[0; 500]));
    let (msgs, err) = decode_chunked(&mut d, &bytes, 4096);
    assert_eq!((msgs.len(), err), (1, None));
}

#[test]
fn single_frame_over_the_message_maximum_is_1009() {
    let mut d = Decoder::new(config(1000, 100)).unwrap();
    d.feed(&raw_frame(FIN | TEXT, &[b'a'; 101]));
    assert_eq!(d.next_message(), Err(ProtocolError::MessageTooLarge));
}

const MIB16: usize = 16 << 20;

#[test]
fn sixteen_mib_text_message_in_one_frame_decodes_with_high_limits() {
    // Autobahn 9.1.6.
    let payload: Vec<u8> = (0..MIB16).map(|i| b'a' + (i % 26) as u8).collect();
    let bytes = raw_frame(FIN | TEXT, &payload);
    let mut d = Decoder::new(config(MIB16, MIB16)).unwrap();
    let (msgs, err) = decode_chunked(&mut d, &bytes, 64 * 1024);
    assert_eq!(err, None);
    assert_eq!(msgs.len(), 1);
    assert!(matches!(&msgs[0], Owned::Text(s) if s.as_bytes() == payload.as_slice()));
}

#[test]
fn sixteen_mib_binary_message_in_fragments_decodes_with_high_limits() {
    // Autobahn 9.3.x / 9.4.x: 4 MiB and larger messages in fragments of various sizes.
    let payload: Vec<u8> = (0..MIB16).map(|i| (i * 31) as u8).collect();
    let mut bytes = Vec::with_capacity(MIB16 + 1024);
    let chunks: Vec<&[u8]> = payload.chunks(1 << 20).collect();
    for (i, c) in chunks.iter().enumerate() {
        let op = if i == 0 { BINARY } else { CONT };
        let fin = if i + 1 == chunks.len() { FIN } else { 0 };
        bytes.extend(raw_frame(fin | op, c));
    }
    let mut d = Decoder::new(config(1 << 20, MIB16)).unwrap();
    let (msgs, err) = decode_chunked(&mut d, &bytes, 100_000);
    assert_eq!(err, None);
    assert_eq!(msgs, [Owned::Binary(payload)]);
}

#[test]
fn sixteen_mib_message_over_a_lower_limit_is_1009() {
    let mut d = Decoder::new(config(1 << 20, 8 << 20)).unwrap();
    let mut header = vec![FIN | TEXT, 127];
    header.extend_from_slice(&(MIB16 as u64).to_be_bytes());
    d.feed(&header);
    assert_eq!(d.next_message(), Err(ProtocolError::FrameTooLarge));
}

// ---------------------------------------------------------------------------------------------
// Arbitrary read boundaries.

/// One server-side event in a generated stream.
#[derive(Debug, Clone)]
enum Event {
    Text(String, Vec<usize>),
    Binary(Vec<u8>, Vec<usize>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn event() -> impl Strategy<Value = Event> {
    let cuts = proptest::collection::vec(0usize..200, 0..4);
    prop_oneof![
        ("\\PC{0,80}", cuts.clone()).prop_map(|(s, c)| Event::Text(s, c)),
        (proptest::collection::vec(any::<u8>(), 0..300), cuts)
            .prop_map(|(b, c)| Event::Binary(b, c)),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Event::Ping),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Event::Pong),
    ]
}

/// The wire bytes and the expected messages for a list of events. Data messages are cut into
/// fragments at the given offsets, with a ping between the fragments when `interleave` is set.
fn wire(events: &[Event], interleave: bool) -> (Vec<u8>, Vec<Owned>) {
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for ev in events {
        let (op, payload, cuts, msg) = match ev {
            Event::Text(s, c) => (TEXT, s.as_bytes(), c, Owned::Text(s.clone())),
            Event::Binary(b, c) => (BINARY, b.as_slice(), c, Owned::Binary(b.clone())),
            Event::Ping(p) => {
                bytes.extend(raw_frame(FIN | PING, p));
                expected.push(Owned::Ping(p.clone()));
                continue;
            }
            Event::Pong(p) => {
                bytes.extend(raw_frame(FIN | PONG, p));
                expected.push(Owned::Pong(p.clone()));
                continue;
            }
        };
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (payload.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut last = 0;
        let mut pieces = Vec::new();
        for c in cuts {
            pieces.push(&payload[last..c]);
            last = c;
        }
        pieces.push(&payload[last..]);
        for (i, piece) in pieces.iter().enumerate() {
            let fin = if i + 1 == pieces.len() { FIN } else { 0 };
            let opcode = if i == 0 { op } else { CONT };
            bytes.extend(raw_frame(fin | opcode, piece));
            if interleave && fin == 0 {
                bytes.extend(raw_frame(FIN | PING, b"mid"));
                expected.push(Owned::Ping(b"mid".to_vec()));
            }
        }
        expected.push(msg);
    }
    (bytes, expected)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn stream_split_at_random_points_decodes_to_the_same_messages(
        events in proptest::collection::vec(event(), 0..12),
        splits in proptest::collection::vec(1usize..64, 1..40),
        interleave in any::<bool>(),
    ) {
        let (bytes, expected) = wire(&events, interleave);
        let mut d = Decoder::new(config(1024, 4096)).unwrap();
        let mut got = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < bytes.len() {
            let n = splits[i % splits.len()].min(bytes.len() - at);
            i += 1;
            let spare = d.spare();
            let n = n.min(spare.len());
            spare[..n].copy_from_slice(&bytes[at..at + n]);
            d.commit(n);
            at += n;
            while let Some(m) = d.next_message().expect("valid stream") {
                got.push(own(m));
            }
        }
        prop_assert_eq!(d.buffered(), 0);
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn small_read_buffer_keeps_working_across_many_wraps() {
    // A buffer barely over one frame: every partial frame must be compacted to the front.
    let mut d = Decoder::new(config(300, 300)).unwrap();
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for i in 0..500usize {
        let payload = vec![i as u8; (i * 37) % 301];
        bytes.extend(raw_frame(FIN | BINARY, &payload));
        expected.push(Owned::Binary(payload));
    }
    for chunk in [1usize, 7, 100, 299, 314, 1000] {
        let mut d2 = Decoder::new(config(300, 300)).unwrap();
        let (msgs, err) = decode_chunked(&mut d2, &bytes, chunk);
        assert_eq!(err, None, "chunk {chunk}");
        assert_eq!(msgs, expected, "chunk {chunk}");
    }
    let (msgs, _) = decode_chunked(&mut d, &bytes, 64);
    assert_eq!(msgs.len(), 500);
}

// ---------------------------------------------------------------------------------------------
// Handshake.

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn handshake() -> ClientHandshake {
    let mut out = [0u8; 512];
    ClientHandshake::start_with_key(
        &HandshakeRequest::new("localhost", 9001, "/"),
        KEY,
        &mut out,
    )
    .unwrap()
    .0
}

fn response(status_line: &str, headers: &[&str]) -> Vec<u8> {
    let mut s = format!("{status_line}\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

fn good_headers() -> Vec<String> {
    vec![
        "Upgrade: websocket".into(),
        "Connection: Upgrade".into(),
        format!("Sec-WebSocket-Accept: {ACCEPT}"),
    ]
}

fn good_response() -> Vec<u8> {
    let h = good_headers();
    response(
        "HTTP/1.1 101 Switching Protocols",
        &h.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

#[test]
fn handshake_response_fed_byte_by_byte_completes_on_the_last_byte() {
    let resp = good_response();
    let mut h = handshake();
    for (i, b) in resp.iter().enumerate() {
        let status = h.feed(std::slice::from_ref(b)).unwrap();
        if i + 1 < resp.len() {
            assert_eq!(status, HandshakeStatus::NeedMore, "byte {i}");
        } else {
            assert_eq!(status, HandshakeStatus::Done { leftover_len: 0 });
        }
    }
}

#[test]
fn frames_sent_right_after_the_101_are_handed_to_the_decoder() {
    let mut stream = good_response();
    let header_len = stream.len();
    stream.extend(raw_frame(FIN | TEXT, b"first"));
    stream.extend(raw_frame(FIN | BINARY, b"second"));
    // Any split of the stream: the bytes past the header reach the decoder intact.
    for split in [
        1usize,
        3,
        header_len - 1,
        header_len,
        header_len + 1,
        stream.len(),
    ] {
        let mut h = handshake();
        let mut codec = Codec::new(config(1024, 1024)).unwrap();
        let mut done = false;
        for piece in stream.chunks(split) {
            if done {
                codec.feed(piece);
                continue;
            }
            if let HandshakeStatus::Done { leftover_len } = h.feed(piece).unwrap() {
                codec.feed(&piece[piece.len() - leftover_len..]);
                done = true;
            }
        }
        assert!(done, "split {split}");
        let mut msgs = Vec::new();
        while let Some(m) = codec.next_message().unwrap() {
            msgs.push(own(m));
        }
        assert_eq!(
            msgs,
            [
                Owned::Text("first".into()),
                Owned::Binary(b"second".to_vec())
            ],
            "split {split}"
        );
    }
}

fn feed_response(resp: &[u8]) -> Result<HandshakeStatus, HandshakeError> {
    let mut h = handshake();
    h.feed(resp)
}

fn without(name: &str) -> Vec<u8> {
    let h: Vec<String> = good_headers()
        .into_iter()
        .filter(|l| !l.starts_with(name))
        .collect();
    response(
        "HTTP/1.1 101 Switching Protocols",
        &h.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

fn with_extra(extra: &str) -> Vec<u8> {
    let mut h = good_headers();
    h.push(extra.into());
    response(
        "HTTP/1.1 101 Switching Protocols",
        &h.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

#[test]
fn non_101_status_is_reported_with_its_code() {
    for (line, code) in [
        ("HTTP/1.1 200 OK", 200u16),
        ("HTTP/1.1 403 Forbidden", 403),
        ("HTTP/1.1 429 Too Many Requests", 429),
        ("HTTP/1.1 503 Service Unavailable", 503),
    ] {
        assert_eq!(
            feed_response(&response(line, &["Content-Length: 0"])),
            Err(HandshakeError::Status(code))
        );
    }
}

#[test]
fn missing_upgrade_header_is_refused() {
    assert_eq!(
        feed_response(&without("Upgrade")),
        Err(HandshakeError::MissingUpgrade)
    );
    let mut h = good_headers();
    h[0] = "Upgrade: h2c".into();
    let resp = response(
        "HTTP/1.1 101 X",
        &h.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(feed_response(&resp), Err(HandshakeError::MissingUpgrade));
}

#[test]
fn missing_connection_upgrade_is_refused() {
    assert_eq!(
        feed_response(&without("Connection")),
        Err(HandshakeError::MissingConnectionUpgrade)
    );
    let mut h = good_headers();
    h[1] = "Connection: keep-alive".into();
    let resp = response(
        "HTTP/1.1 101 X",
        &h.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(
        feed_response(&resp),
        Err(HandshakeError::MissingConnectionUpgrade)
    );
}

#[test]
fn missing_or_wrong_accept_is_refused() {
    assert_eq!(
        feed_response(&without("Sec-WebSocket-Accept")),
        Err(HandshakeError::MissingAccept)
    );
    let mut h = good_headers();
    h[2] = "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let resp = response(
        "HTTP/1.1 101 X",
        &h.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(feed_response(&resp), Err(HandshakeError::BadAccept));
}

#[test]
fn extension_we_did_not_offer_is_refused() {
    assert_eq!(
        feed_response(&with_extra("Sec-WebSocket-Extensions: permessage-deflate")),
        Err(HandshakeError::UnexpectedExtension)
    );
}

#[test]
fn subprotocol_we_did_not_offer_is_refused() {
    assert_eq!(
        feed_response(&with_extra("Sec-WebSocket-Protocol: wamp.2.json")),
        Err(HandshakeError::UnexpectedProtocol)
    );
}

#[test]
fn http_1_0_response_is_refused() {
    let h = good_headers();
    let resp = response(
        "HTTP/1.0 101 Switching Protocols",
        &h.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(feed_response(&resp), Err(HandshakeError::WrongHttpVersion));
}

#[test]
fn garbage_instead_of_http_is_malformed_as_soon_as_it_arrives() {
    let mut h = handshake();
    // A TLS alert where HTTP was expected.
    assert!(matches!(
        h.feed(&[0x15, 0x03, 0x03, 0x00, 0x02]),
        Err(HandshakeError::Malformed(_))
    ));
    assert_eq!(h.feed(b"HTTP/1.1"), Err(HandshakeError::Finished));
}

#[test]
fn endless_response_header_is_refused() {
    let mut h = handshake();
    h.feed(b"HTTP/1.1 101 Switching Protocols\r\nX-Long: ")
        .unwrap();
    let mut result = Ok(HandshakeStatus::NeedMore);
    for _ in 0..100 {
        result = h.feed(&[b'z'; 512]);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(HandshakeError::HeaderTooLarge));
}
