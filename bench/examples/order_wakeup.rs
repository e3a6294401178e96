//! An order request pushed while the engine is parked → its `private/buy` bytes on the wire,
//! against one bare wake-up measured in the same run (issue 13: "p50 at most 1.5x one bare
//! wake-up (a waker fired → `epoll_wait` returns)").
//!
//! One engine (`Engine::builder()`, `PollMode::Blocking(None)`, one authenticated order session,
//! no market data, no heartbeat, no timer due for an hour) is connected to a minimal loopback
//! Deribit peer that runs on the measuring thread itself: it completes the upgrade, answers
//! `public/auth` and the subscriptions, and answers each `private/buy` as filled. Three kinds of
//! samples are interleaved (the order within each triple rotates), each after the measuring
//! thread slept 2-3 ms so that every other thread is blocked in `epoll_wait` with no timeout:
//!
//! - `order`: t0, push an `OrderRequest` onto the session's ring (the push rings the engine's
//!   doorbell: one eventfd write, since the engine is parked), then spin on the peer's socket
//!   (non-blocking `read`s) until the whole `private/buy` frame is in: t1. This is push → the
//!   engine woken, the request popped, encoded, framed, masked and written → the bytes readable
//!   on the other end of the loopback connection: "bytes written" as seen by a peer that
//!   busy-polls, late by at most one `read` call.
//! - `wake` (the target's baseline): t0, fire a `mio::Waker` of a thread blocked in
//!   `Poll::poll(None)`; that thread reads the clock as soon as `poll` returns (t1) and
//!   publishes it; the measuring thread spins on that.
//! - `wake+write` (the floor of the method used for `order`): the same bare wake-up, after which
//!   the woken thread writes as many bytes as the order frame has to a loopback TCP socket, and
//!   the measuring thread spins on `read` of the other end as for `order`.
//!
//! All times on the engine's clock (TSC where trusted). By default the measuring thread is
//! pinned to the first core the process may use and every woken thread (the engine, both
//! sleepers) to the second, so every sample is the same kind of wake-up: a thread parked on
//! another, idle core. With `--no-pin` the scheduler places them, and a woken thread sometimes
//! runs at once on the waker's core instead (much cheaper on a VM than waking an idle vCPU),
//! differently for each thread: the ratios then mostly say where each thread happened to wake.
//!
//! It also prints, from inside the woken threads, the engine's own `OrderToWire` stage (its
//! turn's clock read right after `epoll_wait` returned → the order's bytes written) and the
//! sleeper's poll return → its `write` returned: the loopback `write` itself is a large part of
//! both.
//!
//! ```text
//! cargo run --release -p spinwire-bench --example order_wakeup                 # 3000 samples of each
//! cargo run --release -p spinwire-bench --example order_wakeup -- --quick      # 300 of each, ~3 s
//! cargo run --release -p spinwire-bench --example order_wakeup -- --samples 5000 --no-pin
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use spinwire_bench::engine_loop::peer::PeerConn;
use spinwire_bench::engine_loop::threads::MachineCpu;
use spinwire_bench::engine_loop::{median, quantile, range};
use spinwire_engine::handoff::{Engine, StrategyEnds};
use spinwire_engine::latency::{Clock, Collector, HistogramConfig, Stage};
use spinwire_engine::md::{Direction, Fixed, InstrumentId};
use spinwire_engine::orders::{
    NewOrder, OrderEventKind, OrderRateLimit, OrderRequest, OrdersConfig,
};
use spinwire_engine::reactor::PollMode;
use spinwire_engine::session::driver::DriverConfig;
use spinwire_engine::session::{Credentials, EventKind, SessionConfig};
use spinwire_engine::venue::deribit::{OrderType, TimeInForce};
use spinwire_tools::sim::ws::WsMessage;

const INST: &str = "BTC-PERPETUAL";

struct Opts {
    samples: usize,
    /// Pin the measuring thread to the first allowed core and every woken thread (engine,
    /// sleepers) to the second (default, when there are two).
    pin: bool,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        samples: 3000,
        pin: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.samples = 300,
            "--pin" => o.pin = true,
            "--no-pin" => o.pin = false,
            "--samples" => {
                o.samples = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--samples needs a number")?;
                o.samples = o.samples.max(10);
            }
            "-h" | "--help" => {
                return Err("usage: order_wakeup [--quick] [--samples N] [--no-pin]".into())
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(o)
}

/// The minimal Deribit peer: one connection, served on the calling thread.
struct Peer {
    conn: PeerConn,
    /// Orders answered so far (trade ids and sequence numbers).
    orders: u64,
    /// Requests other than the ones expected (printed once at the end).
    unexpected: Vec<String>,
}

/// What a request was.
enum Req {
    Order,
    Other,
}

impl Peer {
    /// Answers one request; returns what it was.
    fn answer(&mut self, text: &str) -> Req {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            self.unexpected.push(format!("not JSON: {text}"));
            return Req::Other;
        };
        let id = v["id"].as_u64().unwrap_or(0);
        let method = v["method"].as_str().unwrap_or("");
        let result = if method == "public/auth" {
            serde_json::json!({
                "access_token": "a", "refresh_token": "r", "expires_in": 86400,
                "scope": "connection", "token_type": "bearer",
            })
        } else if method.ends_with("/subscribe") {
            v["params"]["channels"].clone()
        } else if method == "private/buy" || method == "private/sell" {
            self.orders += 1;
            let n = self.orders;
            let label = v["params"]["label"].as_str().unwrap_or("");
            let amount = v["params"]["amount"].as_f64().unwrap_or(10.0);
            let direction = if method == "private/buy" {
                "buy"
            } else {
                "sell"
            };
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"order":{{"order_id":"BTC-{n}","order_state":"filled","label":"{label}","instrument_name":"{INST}","direction":"{direction}","amount":{amount:.1},"filled_amount":{amount:.1},"price":60000.0,"order_type":"limit"}},"trades":[{{"trade_id":"T{n}","trade_seq":{n},"order_id":"BTC-{n}","label":"{label}","direction":"{direction}","price":60000.0,"amount":{amount:.1},"timestamp":1}}]}}}}"#
            );
            self.conn.send_text(body.as_bytes());
            return Req::Order;
        } else {
            if self.unexpected.len() < 16 {
                self.unexpected.push(format!("{method}: {text}"));
            }
            if method.contains("/get_") {
                serde_json::json!([])
            } else {
                serde_json::json!("ok")
            }
        };
        let answer = serde_json::json!({
            "jsonrpc": "2.0", "id": id, "result": result,
            "usIn": 0, "usOut": 0, "usDiff": 0, "testnet": true,
        });
        self.conn.send_text(answer.to_string().as_bytes());
        Req::Other
    }

    /// Reads once and answers what is complete. Returns, for the first order request among
    /// them, the length of its frame and the clock reading taken as soon as it was decoded
    /// (before it is parsed and answered).
    fn service(&mut self, clock: &Clock) -> Result<Option<(usize, u64)>, String> {
        self.conn.read().map_err(|e| format!("peer read: {e}"))?;
        let mut order = None;
        while let Some(m) = self.conn.next_message().map_err(|e| format!("peer: {e}"))? {
            if let WsMessage::Text(t) = m {
                let seen = clock.now_ns();
                if let Req::Order = self.answer(&t) {
                    // Masked client frame: 2 or 4 header bytes, 4 mask bytes, the payload.
                    let header = if t.len() < 126 { 2 } else { 4 };
                    order.get_or_insert((header + 4 + t.len(), seen));
                }
            }
        }
        self.conn
            .flush_all()
            .map_err(|e| format!("peer write: {e}"))?;
        if self.conn.closed() {
            return Err("the engine closed the connection".into());
        }
        Ok(order)
    }
}

/// A thread blocked in `Poll::poll(None)` on a waker; on each wake-up it reads the clock at
/// once, optionally writes `write_len` bytes to a loopback socket, then publishes the reading.
struct Sleeper {
    waker: Arc<Waker>,
    stamp: Arc<AtomicU64>,
    /// Clock reading once the write returned (the same as `stamp` without a write).
    written: Arc<AtomicU64>,
    seq: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sleeper {
    fn start(
        name: &str,
        clock: Clock,
        core: Option<usize>,
        mut out: Option<(TcpStream, usize)>,
    ) -> Result<Sleeper, String> {
        let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).map_err(|e| e.to_string())?);
        let stamp = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let seq = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, wr, sq, sp) = (stamp.clone(), written.clone(), seq.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if let Some(c) = core {
                    let _ = spinwire_engine::sys::pin_current_thread(c);
                }
                let mut events = Events::with_capacity(8);
                let bytes = vec![b'x'; out.as_ref().map_or(0, |o| o.1)];
                loop {
                    if poll.poll(&mut events, None).is_err() {
                        continue;
                    }
                    let t = clock.now_ns();
                    if sp.load(Ordering::Relaxed) {
                        return;
                    }
                    let w = if let Some((s, _)) = out.as_mut() {
                        let _ = s.write_all(&bytes);
                        clock.now_ns()
                    } else {
                        t
                    };
                    st.store(t, Ordering::Release);
                    wr.store(w, Ordering::Release);
                    sq.fetch_add(1, Ordering::Release);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Sleeper {
            waker,
            stamp,
            written,
            seq,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn order(tag: u64) -> OrderRequest {
    OrderRequest::New(NewOrder {
        tag,
        instrument: InstrumentId(0),
        direction: Direction::Buy,
        order_type: OrderType::Limit,
        price: Fixed::from_int(60_000),
        amount: Fixed::from_int(10).expect("fits"),
        time_in_force: TimeInForce::GoodTilCancelled,
        post_only: false,
        reduce_only: false,
        ttl_ms: 0,
    })
}

/// A small deterministic jitter source (xorshift).
struct Jitter(u64);

impl Jitter {
    fn next_us(&mut self, max: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % max
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Order,
    Wake,
    WakeWrite,
}

/// Pops order and session events until `tag`'s order has ended (filled, or refused).
fn wait_order_done(
    ends: &mut StrategyEnds,
    peer: &mut Peer,
    clock: &Clock,
    tag: u64,
) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        while let Some(e) = ends.order_events.pop() {
            if e.tag != tag {
                continue;
            }
            match e.kind {
                OrderEventKind::Filled(_) => return Ok(()),
                OrderEventKind::Accepted | OrderEventKind::PartiallyFilled(_) => {}
                other => return Err(format!("order {tag}: {other:?}")),
            }
        }
        while let Some(e) = ends.session_events.pop() {
            if let EventKind::Disconnected { cause } = e.kind {
                return Err(format!("session disconnected: {cause:?}"));
            }
        }
        peer.service(clock)?;
        if Instant::now() > end {
            return Err(format!("order {tag} not filled within 5 s"));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn run(o: &Opts) -> Result<(), String> {
    println!("order_wakeup: an order pushed while the engine is parked (Blocking(None), no market");
    println!(
        "  data, no timer due) -> its private/buy frame readable by a busy-polling loopback peer,"
    );
    println!(
        "  vs one bare wake-up in the same run (mio Waker fired -> Poll::poll(None) returns in"
    );
    println!(
        "  the woken thread), vs that wake-up plus a loopback write of the same size read the"
    );
    println!("  same way as the order (the floor of the order's measuring method). Interleaved,");
    println!("  2-3 ms of sleep before each sample.");
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let url = format!(
        "ws://{}/ws/api/v2",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let session = SessionConfig {
        credentials: Some(Credentials::new("bench", "bench-secret-value")),
        heartbeat: None,
        ping_after: Duration::from_secs(3600),
        dead_after: Duration::from_secs(60),
        orders: OrdersConfig {
            currency: "BTC".into(),
            instruments: vec![INST.into()],
            cancel_on_disconnect: None,
            rate: OrderRateLimit {
                per_second: u32::MAX,
                burst: u32::MAX,
            },
            ..OrdersConfig::default()
        },
        ..SessionConfig::default()
    };
    let cores = spinwire_engine::sys::allowed_cores().unwrap_or_default();
    let (main_core, woken_core) = if o.pin && cores.len() >= 2 {
        println!(
            "  pinned: measuring thread on core {}, engine and woken threads on core {}",
            cores[0], cores[1]
        );
        (Some(cores[0]), Some(cores[1]))
    } else {
        println!(
            "  not pinned ({}): the scheduler places the woken threads",
            if o.pin {
                "fewer than two cores"
            } else {
                "--no-pin"
            }
        );
        (None, None)
    };
    // The engine's own OrderToWire stage: the turn's clock read (right after epoll_wait
    // returned) → the order's bytes written.
    let mut collector =
        Collector::new(HistogramConfig::default()).map_err(|e| format!("collector: {e}"))?;
    let mut engine = Engine::builder()
        .session("orders", DriverConfig::new(&url), session, &[])
        .core(woken_core)
        .poll_mode(PollMode::Blocking(None))
        .spawn_with_latency(&mut collector)
        .map_err(|e| format!("engine: {e}"))?;
    let (sock, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut peer = Peer {
        conn: PeerConn::new(sock).map_err(|e| format!("peer socket: {e}"))?,
        orders: 0,
        unexpected: Vec::new(),
    };
    let ends = &mut engine.strategies[0];
    let clock = ends.clock;
    // Set up: upgrade, auth, subscriptions, until Live.
    let end = Instant::now() + Duration::from_secs(10);
    let mut live = false;
    while !live {
        peer.service(&clock)?;
        while let Some(e) = ends.session_events.pop() {
            match e.kind {
                EventKind::Live { .. } => live = true,
                EventKind::Disconnected { cause } => {
                    return Err(format!("session disconnected during setup: {cause:?}"))
                }
                _ => {}
            }
        }
        if Instant::now() > end {
            return Err("the session did not go Live within 10 s".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // One order untimed: its frame length (for the wake+write floor), and a warm path.
    std::thread::sleep(Duration::from_millis(20));
    ends.orders.push(order(1)).map_err(|_| "order ring full")?;
    let frame_len = loop {
        if let Some((n, _)) = peer.service(&clock)? {
            break n;
        }
    };
    wait_order_done(ends, &mut peer, &clock, 1)?;

    // The bare wake-up, and the wake-up that writes a frame's worth to a socket we read.
    let wake = Sleeper::start("bare-wake", clock, woken_core, None)?;
    let l2 = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let a = TcpStream::connect(l2.local_addr().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let (mut b, _) = l2.accept().map_err(|e| e.to_string())?;
    a.set_nodelay(true).map_err(|e| e.to_string())?;
    b.set_nonblocking(true).map_err(|e| e.to_string())?;
    let wake_write = Sleeper::start("wake-write", clock, woken_core, Some((a, frame_len)))?;
    let mut rbuf = vec![0u8; 64 * 1024];
    // Pinned last: threads inherit the CPU set of the thread that starts them.
    if let Some(c) = main_core {
        spinwire_engine::sys::pin_current_thread(c).map_err(|e| e.to_string())?;
    }

    let mut jitter = Jitter(0x9E37_79B9_7F4A_7C15);
    let kinds = [Kind::Order, Kind::Wake, Kind::WakeWrite];
    let mut samples: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut tag = 1u64;
    let mut write_work = Vec::with_capacity(o.samples);
    let mut ww_seq = 0u64;
    let ends = &mut engine.strategies[0];
    let machine0 = MachineCpu::now();
    for i in 0..o.samples {
        for k in 0..3 {
            let kind = kinds[(i + k) % 3];
            std::thread::sleep(Duration::from_micros(2000 + jitter.next_us(1000)));
            let ns = match kind {
                Kind::Order => {
                    tag += 1;
                    let req = order(tag);
                    let t0 = clock.now_ns();
                    ends.orders.push(req).map_err(|_| "order ring full")?;
                    let t1 = loop {
                        if let Some((_, seen)) = peer.service(&clock)? {
                            break seen;
                        }
                    };
                    let d = t1.saturating_sub(t0);
                    wait_order_done(ends, &mut peer, &clock, tag)?;
                    d
                }
                Kind::Wake => {
                    let before = wake.seq.load(Ordering::Acquire);
                    let t0 = clock.now_ns();
                    let _ = wake.waker.wake();
                    while wake.seq.load(Ordering::Acquire) == before {
                        std::hint::spin_loop();
                    }
                    wake.stamp.load(Ordering::Acquire).saturating_sub(t0)
                }
                Kind::WakeWrite => {
                    let t0 = clock.now_ns();
                    let _ = wake_write.waker.wake();
                    let mut got = 0;
                    while got < frame_len {
                        match b.read(&mut rbuf) {
                            Ok(0) => return Err("wake-write socket closed".into()),
                            Ok(n) => got += n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(format!("wake-write read: {e}")),
                        }
                    }
                    let t1 = clock.now_ns();
                    // The thread publishes after its write returned: wait for that.
                    while wake_write.seq.load(Ordering::Acquire) == ww_seq {
                        std::hint::spin_loop();
                    }
                    ww_seq = wake_write.seq.load(Ordering::Acquire);
                    let (a, w) = (
                        wake_write.stamp.load(Ordering::Acquire),
                        wake_write.written.load(Ordering::Acquire),
                    );
                    write_work.push(w.saturating_sub(a) as f64);
                    t1.saturating_sub(t0)
                }
            };
            let slot = match kind {
                Kind::Order => 0,
                Kind::Wake => 1,
                Kind::WakeWrite => 2,
            };
            samples[slot].push(ns as f64);
        }
    }
    let machine = MachineCpu::now().since(machine0);
    drop(wake);
    drop(wake_write);
    let stats = engine
        .control
        .shutdown()
        .map_err(|e| format!("shutdown: {e}"))?;

    // Per-block ratios (blocks of 100 triples), to see how stable the p50 ratio is.
    let block = 100.min(o.samples);
    let mut block_ratios = Vec::new();
    for c in 0..o.samples / block {
        let r = c * block..(c + 1) * block;
        let mut a = samples[0][r.clone()].to_vec();
        let mut w = samples[1][r].to_vec();
        block_ratios.push(median(&mut a) / median(&mut w));
    }
    let names = ["order", "wake", "wake+write"];
    println!(
        "\n{} samples of each (order frame {frame_len} bytes), us:",
        o.samples
    );
    println!(
        "{:>11}  {:>7}  {:>7}  {:>7}  {:>7}  {:>7}",
        "", "p10", "p50", "p90", "p99", "max"
    );
    let mut p50 = [0.0; 3];
    for (k, v) in samples.iter_mut().enumerate() {
        p50[k] = quantile(v, 0.5);
        println!(
            "{:>11}  {:>7.2}  {:>7.2}  {:>7.2}  {:>7.2}  {:>7.2}",
            names[k],
            quantile(v, 0.1) / 1e3,
            p50[k] / 1e3,
            quantile(v, 0.9) / 1e3,
            quantile(v, 0.99) / 1e3,
            quantile(v, 1.0) / 1e3
        );
    }
    let (lo, hi) = range(&block_ratios);
    println!(
        "ratio p50 order / wake: {:.2}x (blocks of {block}: median {:.2}x, {:.2}-{:.2}) (target <= 1.5x)",
        p50[0] / p50[1],
        median(&mut block_ratios.clone()),
        lo,
        hi
    );
    println!(
        "ratio p50 order / (wake+write): {:.2}x   (wake+write) / wake: {:.2}x",
        p50[0] / p50[2],
        p50[2] / p50[1]
    );
    collector.poll(|_, _| {});
    let o2w = collector.totals().histogram(Stage::OrderToWire);
    println!(
        "inside the woken thread, p50: engine epoll return -> private/buy written {:.2} us \
         (its OrderToWire stage, {} orders); wake+write thread poll return -> write returned {:.2} us",
        o2w.value_at_quantile(0.5) as f64 / 1e3,
        o2w.len(),
        median(&mut write_work) / 1e3
    );
    println!(
        "machine while sampling: busy {:.0}%, steal {:.1}%",
        machine.busy_pct(),
        machine.steal_pct()
    );
    let e = stats.engine;
    let s = &stats.sessions[0];
    println!(
        "engine: {} turns, {} kernel waits, {} wake-ups by the strategy's pushes, {} parks \
         cancelled; {} orders sent, {} filled",
        e.turns, e.kernel_waits, e.wakeups, e.parks_cancelled, s.orders.sent, s.orders.filled
    );
    if !peer.unexpected.is_empty() {
        println!(
            "peer answered other requests generically: {:?}",
            peer.unexpected
        );
    }
    Ok(())
}

fn main() {
    spinwire_bench::engine_loop::example_main("order_wakeup", parse, run);
}
