//! Market-data throughput over loopback: a minimal hand-rolled WebSocket client counts the
//! notifications it receives from the simulator, and the simulator's own threads' CPU time is
//! read from /proc.
//!
//! The default run is short and modest so the suite stays fast in debug builds. Measure the
//! sustained rate in release with, e.g.:
//!
//! ```text
//! SIM_RATE=1500000 SIM_SECS=5 cargo test --release -p spinwire-tools \
//!     --test sim_throughput -- --nocapture
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use spinwire_tools::sim::{SimConfig, Simulator};

fn env_or(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sends one masked text frame.
fn send_text(sock: &mut TcpStream, text: &str) {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let p = text.as_bytes();
    let mut f = vec![0x81u8];
    if p.len() < 126 {
        f.push(0x80 | p.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(p.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(p.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    sock.write_all(&f).unwrap();
}

/// Counts complete server frames in `buf[*pos..]`, advancing `pos`; returns
/// `(text frames, payload bytes)`. Text payloads are checked to start with '{'.
fn count_frames(buf: &[u8], pos: &mut usize) -> (u64, u64) {
    let (mut n, mut bytes) = (0, 0);
    loop {
        let b = &buf[*pos..];
        if b.len() < 2 {
            return (n, bytes);
        }
        let (len, hdr) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => {
                let mut l = [0u8; 8];
                l.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(l) as usize, 10)
            }
            126 | 127 => return (n, bytes),
            l => (l as usize, 2),
        };
        if b.len() < hdr + len {
            return (n, bytes);
        }
        assert_eq!(b[1] & 0x80, 0, "server frames are unmasked");
        if b[0] & 0x0f == 1 {
            assert_eq!(b[hdr], b'{', "text payload is a JSON object");
            n += 1;
            bytes += len as u64;
        }
        *pos += hdr + len;
    }
}

/// CPU seconds used so far by this process's threads whose name starts with `prefix`.
fn thread_cpu_secs(prefix: &str) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    for t in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After the name: state is field 0, utime field 11, stime field 12.
        let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        total += (utime + stime) / ticks;
    }
    total
}

#[test]
fn market_data_reaches_a_loopback_client_at_the_configured_rate() {
    let rate = env_or("SIM_RATE", 50_000.0);
    let secs = env_or("SIM_SECS", 1.0);
    let sim = Simulator::start(SimConfig {
        rate: rate as u64,
        credentials: vec![("bench".into(), "bench-secret".into())],
        request_rate: spinwire_tools::sim::RateLimit {
            per_sec: 100.0,
            burst: 100.0,
        },
        ..SimConfig::default()
    })
    .unwrap();
    let mut sock = TcpStream::connect(sim.local_addr()).unwrap();
    sock.set_nodelay(true).unwrap();
    sock.write_all(
        b"GET /ws/api/v2 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut buf = vec![0u8; 4 << 20];
    let mut filled = 0;
    let head_end = loop {
        let n = sock.read(&mut buf[filled..]).unwrap();
        assert!(n > 0, "handshake answered");
        filled += n;
        if let Some(p) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    assert!(buf.starts_with(b"HTTP/1.1 101"));
    send_text(
        &mut sock,
        r#"{"jsonrpc":"2.0","id":1,"method":"public/auth","params":{"grant_type":"client_credentials","client_id":"bench","client_secret":"bench-secret"}}"#,
    );
    send_text(
        &mut sock,
        r#"{"jsonrpc":"2.0","id":2,"method":"public/subscribe","params":{"channels":["book.BTC-PERPETUAL.raw","book.ETH-PERPETUAL.raw","trades.BTC-PERPETUAL.raw","trades.ETH-PERPETUAL.raw"]}}"#,
    );
    let mut pos = head_end;
    let mut count = 0u64;
    let mut bytes = 0u64;
    let warmup = Duration::from_millis(300);
    let t_start = Instant::now();
    let mut measuring: Option<(Instant, u64, u64, f64, u64)> = None;
    let total = warmup + Duration::from_secs_f64(secs);
    while t_start.elapsed() < total {
        if measuring.is_none() && t_start.elapsed() >= warmup {
            measuring = Some((
                Instant::now(),
                count,
                bytes,
                thread_cpu_secs("sim-"),
                sim.stats().md_generated,
            ));
        }
        if pos > 0 && (buf.len() - filled) < (1 << 20) {
            buf.copy_within(pos..filled, 0);
            filled -= pos;
            pos = 0;
        }
        let n = sock.read(&mut buf[filled..]).unwrap();
        assert!(n > 0, "simulator kept the connection open");
        filled += n;
        let (c, b) = count_frames(&buf[..filled], &mut pos);
        count += c;
        bytes += b;
    }
    let (t0, c0, b0, cpu0, gen0) = measuring.expect("measured");
    let wall = t0.elapsed().as_secs_f64();
    let got = (count - c0) as f64 / wall;
    let mb = (bytes - b0) as f64 / wall / 1e6;
    let cpu = (thread_cpu_secs("sim-") - cpu0) / wall;
    let generated = (sim.stats().md_generated - gen0) as f64 / wall;
    println!(
        "sim throughput: configured {rate:.0} ev/s, generated {generated:.0} ev/s, \
         received {got:.0} msg/s ({mb:.1} MB/s payload) over {wall:.2} s; \
         simulator threads used {cpu:.2} cores"
    );
    assert!(
        got >= rate * 0.5,
        "received {got:.0} msg/s, configured {rate:.0}"
    );
    drop(sock);
    sim.shutdown();
}
