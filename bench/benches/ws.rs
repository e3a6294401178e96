//! WebSocket decoding and masking: spinwire's codec against tungstenite.
//!
//! - `ws_decode/{64,256,1024}B/{spinwire,tungstenite}`: decode a batch of server text frames
//!   (unmasked, client role) from the same in-memory bytes, read in 16 KiB pieces like TLS
//!   records. spinwire: `Codec::spare`/`commit`/`next_message`; tungstenite: `WebSocket::read`
//!   over a `Read + Write` stream that loops over the prepared bytes.
//! - `ws_mask/{size}/{word,byte}`: masking throughput, word-wise vs the byte-wise reference.
//! - Before timing: both decoders are checked to yield the same messages, and the allocations
//!   per frame of each are counted (a counting global allocator, this thread only) and printed:
//!   `allocs/frame 256B spinwire=0.00 tungstenite=...`.
//!
//! Run: `cargo bench -p spinwire-bench --bench ws` (add `-- --warm-up-time 1 --measurement-time 3`
//! for a short run); `cargo test -p spinwire-bench --bench ws` runs each once as a check.

use std::hint::black_box;
use std::io::{self, Read, Write};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spinwire_bench::{count_allocations, CountingAlloc};
use spinwire_engine::ws::mask::{apply_mask, apply_mask_bytewise};
use spinwire_engine::ws::{Codec, Config, Message};
use tungstenite::protocol::{Role, WebSocket};

// ---------------------------------------------------------------------------------------------
// Counting allocator (this thread only, while enabled).

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------------------------------------
// Input: a batch of unmasked server text frames.

/// Frames per benchmark iteration.
const FRAMES: usize = 100;
/// Bytes per simulated read (one TLS record of plaintext).
const READ_CHUNK: usize = 16 * 1024;

/// A JSON-looking ASCII payload of exactly `len` bytes.
fn payload(len: usize, seed: usize) -> String {
    let body = format!(r#"{{"channel":"book.BTC-PERPETUAL.raw","seq":{seed},"data":""#);
    let mut s = body;
    while s.len() < len - 2 {
        s.push((b'a' + (s.len() % 26) as u8) as char);
    }
    s.push_str("\"}");
    s.truncate(len);
    s
}

fn server_text_frame(text: &str) -> Vec<u8> {
    let mut v = vec![0x81];
    match text.len() {
        n if n < 126 => v.push(n as u8),
        n => {
            v.push(126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    v.extend_from_slice(text.as_bytes());
    v
}

/// `FRAMES` text frames of `size` payload bytes, and their payloads.
fn batch(size: usize) -> (Vec<u8>, Vec<String>) {
    let texts: Vec<String> = (0..FRAMES).map(|i| payload(size, i)).collect();
    let bytes = texts.iter().flat_map(|t| server_text_frame(t)).collect();
    (bytes, texts)
}

// ---------------------------------------------------------------------------------------------
// The two decoders.

/// spinwire: reads `READ_CHUNK`-sized pieces of the batch into the codec, decodes every frame.
struct Spinwire {
    codec: Codec,
    data: Vec<u8>,
}

impl Spinwire {
    fn new(data: Vec<u8>) -> Self {
        let codec = Codec::new(Config {
            max_frame_size: 64 * 1024,
            max_message_size: 64 * 1024,
            read_buffer_size: 128 * 1024,
        })
        .expect("valid config");
        Self { codec, data }
    }

    /// Decodes the whole batch once, calling `f` on each message.
    #[inline]
    fn decode_batch(&mut self, mut f: impl FnMut(&str)) {
        let mut pos = 0;
        while pos < self.data.len() {
            let spare = self.codec.spare();
            let n = spare.len().min(READ_CHUNK).min(self.data.len() - pos);
            spare[..n].copy_from_slice(&self.data[pos..pos + n]);
            self.codec.commit(n);
            pos += n;
            while let Some(m) = self.codec.next_message().expect("valid frames") {
                match m {
                    Message::Text(s) => f(s),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
}

/// An endless `Read + Write` stream: reads loop over `data` in pieces of at most `READ_CHUNK`;
/// writes are discarded.
struct LoopStream {
    data: Vec<u8>,
    pos: usize,
}

impl Read for LoopStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(READ_CHUNK).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.data.len();
        Ok(n)
    }
}

impl Write for LoopStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tungstenite_client(data: Vec<u8>) -> WebSocket<LoopStream> {
    WebSocket::from_raw_socket(LoopStream { data, pos: 0 }, Role::Client, None)
}

/// Reads one batch (`FRAMES` messages) with tungstenite, calling `f` on each text.
#[inline]
fn tungstenite_batch(ws: &mut WebSocket<LoopStream>, mut f: impl FnMut(&str)) {
    for _ in 0..FRAMES {
        match ws.read().expect("valid frames") {
            tungstenite::Message::Text(t) => f(t.as_str()),
            other => panic!("unexpected {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sanity checks and allocation counts (before timing).

fn check_and_count(size: usize) {
    // The counter counts: one allocation is seen as one.
    let probe = count_allocations(|| {
        black_box(Vec::<u8>::with_capacity(black_box(8)));
    });
    assert_eq!(probe, 1, "the counting allocator works");

    let (bytes, texts) = batch(size);

    let mut ours = Spinwire::new(bytes.clone());
    let mut got = Vec::new();
    ours.decode_batch(|s| got.push(s.to_owned()));
    assert_eq!(got, texts, "spinwire decodes the batch");

    let mut theirs = tungstenite_client(bytes);
    let mut got = Vec::new();
    tungstenite_batch(&mut theirs, |s| got.push(s.to_owned()));
    assert_eq!(got, texts, "tungstenite decodes the batch");

    // Warm, then count over 100 batches.
    const BATCHES: u64 = 100;
    ours.decode_batch(|s| {
        black_box(s);
    });
    tungstenite_batch(&mut theirs, |s| {
        black_box(s);
    });
    let ours_allocs = count_allocations(|| {
        for _ in 0..BATCHES {
            ours.decode_batch(|s| {
                black_box(s);
            });
        }
    });
    let theirs_allocs = count_allocations(|| {
        for _ in 0..BATCHES {
            tungstenite_batch(&mut theirs, |s| {
                black_box(s);
            });
        }
    });
    let frames = BATCHES * FRAMES as u64;
    println!(
        "allocs/frame {size}B spinwire={:.2} tungstenite={:.2} ({ours_allocs} and {theirs_allocs} allocations in {frames} frames)",
        ours_allocs as f64 / frames as f64,
        theirs_allocs as f64 / frames as f64
    );
    assert_eq!(ours_allocs, 0, "spinwire must not allocate while decoding");
}

// ---------------------------------------------------------------------------------------------
// Benchmarks.

fn bench_decode(c: &mut Criterion) {
    for size in [64usize, 256, 1024] {
        check_and_count(size);
        let (bytes, _) = batch(size);
        let mut group = c.benchmark_group(format!("ws_decode/{size}B"));
        group.throughput(Throughput::ElementsAndBytes {
            elements: FRAMES as u64,
            bytes: bytes.len() as u64,
        });

        let mut ours = Spinwire::new(bytes.clone());
        group.bench_function("spinwire", |b| {
            b.iter(|| {
                ours.decode_batch(|s| {
                    black_box(s);
                })
            })
        });

        let mut theirs = tungstenite_client(bytes);
        group.bench_function("tungstenite", |b| {
            b.iter(|| {
                tungstenite_batch(&mut theirs, |s| {
                    black_box(s);
                })
            })
        });
        group.finish();
    }
}

fn bench_mask(c: &mut Criterion) {
    for size in [64usize, 256, 1024, 4096, 16 * 1024, 64 * 1024] {
        let mut group = c.benchmark_group(format!("ws_mask/{size}"));
        group.throughput(Throughput::Bytes(size as u64));
        let mut buf: Vec<u8> = (0..size).map(|i| i as u8).collect();
        // Sanity: the two agree.
        let mut check = buf.clone();
        apply_mask(&mut buf, [1, 2, 3, 4]);
        apply_mask_bytewise(&mut check, [1, 2, 3, 4]);
        assert_eq!(buf, check);
        let key = black_box([0x37, 0xfa, 0x21, 0x3d]);
        group.bench_with_input(BenchmarkId::from_parameter("word"), &key, |b, &key| {
            b.iter(|| apply_mask(black_box(&mut buf), key))
        });
        group.bench_with_input(BenchmarkId::from_parameter("byte"), &key, |b, &key| {
            b.iter(|| apply_mask_bytewise(black_box(&mut buf), key))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_decode, bench_mask);
criterion_main!(benches);
