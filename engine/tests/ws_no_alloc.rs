//! The WebSocket codec allocates nothing after construction: decoding (single frames, fragmented
//! messages, control frames), answering pings and encoding, for 100,000+ frames.
//!
//! A counting global allocator counts allocations made on this test's own thread while a
//! thread-local flag is set, so the test harness's other threads do not disturb the count.

use spinwire_engine::ws::{Codec, Config, Message};

mod alloc_support;

#[global_allocator]
static GLOBAL: alloc_support::CountingAlloc = alloc_support::CountingAlloc;

/// Counts the allocations `f` makes on this thread.
fn count_allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let (r, allocs) = alloc_support::count_allocations(f);
    (r, allocs as usize)
}

fn raw_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![b0];
    match payload.len() {
        n if n < 126 => v.push(n as u8),
        n => {
            v.push(126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    v.extend_from_slice(payload);
    v
}

/// One "round" of server traffic: 10 frames (6 messages).
fn round() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(raw_frame(0x81, br#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.raw"}}"#));
    b.extend(raw_frame(0x82, &[7u8; 300]));
    b.extend(raw_frame(0x01, "fragmented κόσμε ".as_bytes()));
    b.extend(raw_frame(0x89, b"ping-payload"));
    b.extend(raw_frame(0x00, b"text "));
    b.extend(raw_frame(0x80, b"message"));
    b.extend(raw_frame(0x02, &[1u8; 40]));
    b.extend(raw_frame(0x80, &[2u8; 40]));
    b.extend(raw_frame(0x8A, b"pong"));
    b.extend(raw_frame(0x81, b"{}"));
    b
}

const FRAMES_PER_ROUND: usize = 10;
const MESSAGES_PER_ROUND: usize = 7;

/// Feeds `bytes` in `chunk`-sized reads, decodes everything, answers pings, and encodes one
/// request per message. Returns (messages, bytes encoded).
fn run(codec: &mut Codec, bytes: &[u8], chunk: usize, out: &mut [u8]) -> (usize, usize) {
    let mut messages = 0;
    let mut encoded = 0;
    for piece in bytes.chunks(chunk) {
        let spare = codec.spare();
        spare[..piece.len()].copy_from_slice(piece);
        codec.commit(piece.len());
        loop {
            let len = match codec.next_message() {
                Ok(Some(Message::Text(s))) => s.len(),
                Ok(Some(Message::Binary(b) | Message::Ping(b) | Message::Pong(b))) => b.len(),
                Ok(Some(Message::Close(_))) => panic!("unexpected close"),
                Ok(None) => break,
                Err(e) => panic!("protocol error {e}"),
            };
            messages += 1;
            encoded += codec.poll_transmit(out).expect("pong fits");
            encoded += codec
                .encode_text(out, r#"{"jsonrpc":"2.0","id":42,"method":"public/test"}"#)
                .expect("fits");
            encoded += codec.encode_binary(out, &out_payload(len)).expect("fits");
        }
    }
    (messages, encoded)
}

/// A stack payload whose length depends on the message (exercises every length class).
fn out_payload(len: usize) -> [u8; 200] {
    [len as u8; 200]
}

#[test]
fn decoding_and_encoding_100k_frames_allocates_nothing_after_warm_up() {
    let mut codec = Codec::new(Config {
        max_frame_size: 64 * 1024,
        max_message_size: 64 * 1024,
        read_buffer_size: 128 * 1024,
    })
    .unwrap();
    let one = round();
    // 100 rounds per batch, read in uneven chunks so frames straddle reads.
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 100).collect();
    let mut out = vec![0u8; 4096];

    // Warm-up (also warms anything lazily initialized by std).
    let (warm, _) = run(&mut codec, &batch, 1500, &mut out);
    assert_eq!(warm, 100 * MESSAGES_PER_ROUND);

    let batches = 110;
    let ((messages, encoded), allocations) = count_allocations(|| {
        let mut messages = 0;
        let mut encoded = 0;
        for i in 0..batches {
            let chunk = [1500, 977, 4096, 64, 16_384][i % 5];
            let (m, e) = run(&mut codec, &batch, chunk, &mut out);
            messages += m;
            encoded += e;
        }
        (messages, encoded)
    });

    let frames = batches * 100 * FRAMES_PER_ROUND;
    assert!(frames >= 100_000);
    assert_eq!(
        messages,
        batches * 100 * MESSAGES_PER_ROUND,
        "every message decoded"
    );
    assert!(encoded > 0);
    assert_eq!(
        allocations, 0,
        "{allocations} allocations while handling {frames} frames"
    );
}

#[test]
fn the_counting_allocator_sees_allocations_on_this_thread() {
    // Guards the test above against a counter that never counts.
    let (v, allocations) = count_allocations(|| Vec::<u8>::with_capacity(std::hint::black_box(64)));
    drop(v);
    assert_eq!(allocations, 1);
}
