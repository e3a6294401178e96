//! The order path's hot segment: an order request popped from the OrderRequest ring → the
//! `private/buy` bytes written into the transmit buffer (`Session::handle_order` +
//! `Session::poll_transmit`: validation, id minting, the journal intent and `Sent` records,
//! the rate-limit check, the JSON-RPC encoding).
//!
//! - `orders/request_to_bytes/no_journal`: without a journal;
//! - `orders/request_to_bytes/journal`: with a journal in a temporary file (the default flush
//!   policy: the flusher thread `msync`s every millisecond, the engine thread never waits).
//!
//! Each timed batch sends 256 orders on a live sans-IO session; between batches (untimed) the
//! orders are answered as filled so their table slots free up. Before timing, the bytes of an
//! order are checked to be a `private/buy` carrying the order's label.
//!
//! Run: `cargo bench -p spinwire-bench --bench orders` (add `-- --warm-up-time 1
//! --measurement-time 3` for a short run); `cargo test -p spinwire-bench --bench orders` runs
//! each benchmark once as a check.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spinwire_engine::md::{Direction, Fixed, InstrumentId, MdRecord};
use spinwire_engine::orders::journal::JournalConfig;
use spinwire_engine::orders::{
    ClientOrderId, NewOrder, OrderRateLimit, OrderRequest, OrdersConfig, LABEL_LEN,
};
use spinwire_engine::session::{Credentials, Session, SessionConfig, SessionState};
use spinwire_engine::venue::deribit::{CodScope, OrderType, TimeInForce};
use spinwire_ringbuf::{channel, Consumer, Producer};

const INST: &str = "BTC-PERPETUAL";
const BATCH: u64 = 256;

fn config(journal: Option<JournalConfig>) -> SessionConfig {
    SessionConfig {
        credentials: Some(Credentials::new("bench", "bench-secret")),
        heartbeat: None,
        ping_after: Duration::from_secs(3600),
        setup_timeout: Duration::from_secs(3600),
        orders: OrdersConfig {
            currency: "BTC".into(),
            instruments: vec![INST.into()],
            cancel_on_disconnect: Some(CodScope::Connection),
            rate: OrderRateLimit {
                per_second: u32::MAX,
                burst: u32::MAX,
            },
            query_rate: OrderRateLimit::default(),
            max_orders: 1024,
            queue: 1024,
            journal,
            label_base: 0x10_0000,
            mint: None,
            resend_grace: Duration::from_secs(2),
        },
        ..SessionConfig::default()
    }
}

fn rpc_id(msg: &[u8]) -> u64 {
    let at = msg.windows(5).position(|w| w == b"\"id\":").expect("id") + 5;
    msg[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |v, &b| v * 10 + (b - b'0') as u64)
}

fn label(id: u64) -> String {
    let mut l = [0u8; LABEL_LEN];
    ClientOrderId(id).write_label(&mut l);
    String::from_utf8(l.to_vec()).expect("ascii")
}

/// A live session with the order path, its ring and the state to answer orders.
struct Bench {
    s: Session,
    now: u64,
    buf: Vec<u8>,
    text: String,
    tx: Producer<OrderRequest>,
    rx: Consumer<OrderRequest>,
    next_tag: u64,
    next_id: u64,
    /// (rpc id, client order id) of the orders sent and not yet answered.
    open: Vec<(u64, u64)>,
}

impl Bench {
    fn new(journal: Option<JournalConfig>) -> Bench {
        let mut s = Session::new(config(journal)).expect("session");
        let now = 1_000_000_000_000u64;
        let mut buf = vec![0u8; 4096];
        s.connect(now).expect("connect");
        while s.poll_action().is_some() {}
        s.handle_connected(now);
        let mut sink = |_: &[MdRecord]| {};
        // Answer auth, subscribe and cancel-on-disconnect until live.
        for _ in 0..10 {
            while let Some(n) = s.poll_transmit(now, &mut buf) {
                let msg = std::str::from_utf8(&buf[..n]).expect("utf8").to_owned();
                let id = rpc_id(msg.as_bytes());
                let result = if msg.contains("public/auth") {
                    r#"{"access_token":"a","refresh_token":"r","expires_in":86400,"scope":"connection"}"#.to_owned()
                } else if msg.contains("subscribe") {
                    format!(r#"["user.orders.{INST}.raw","user.trades.{INST}.raw"]"#)
                } else {
                    r#""ok""#.to_owned()
                };
                let reply = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#);
                s.handle_text(now, &reply, &mut sink);
            }
        }
        assert_eq!(s.state(), SessionState::Live, "bench session must be live");
        while s.poll_event().is_some() {}
        let (tx, rx) = channel(2048);
        Bench {
            s,
            now,
            buf,
            text: String::with_capacity(4096),
            tx,
            rx,
            next_tag: 1,
            next_id: 0x10_0000,
            open: Vec::with_capacity(BATCH as usize),
        }
    }

    /// Pushes a batch of requests onto the ring (untimed).
    fn fill_ring(&mut self) {
        for _ in 0..BATCH {
            let tag = self.next_tag;
            self.next_tag += 1;
            let r = OrderRequest::New(NewOrder {
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
            });
            assert!(self.tx.push(r).is_ok());
        }
    }

    /// The timed part: pop → handle_order → poll_transmit, for the whole batch.
    fn send_batch(&mut self) -> Duration {
        let t0 = Instant::now();
        while let Some(r) = self.rx.pop() {
            self.s.handle_order(self.now, r);
            let n = self
                .s
                .poll_transmit(self.now, &mut self.buf)
                .expect("written");
            black_box(&self.buf[..n]);
            self.open.push((rpc_id(&self.buf[..n]), self.next_id));
            self.next_id += 1;
        }
        t0.elapsed()
    }

    /// Answers every open order as filled (untimed), freeing the table.
    fn answer(&mut self) {
        let mut sink = |_: &[MdRecord]| {};
        for (k, &(rpc, id)) in self.open.iter().enumerate() {
            self.text.clear();
            let l = label(id);
            write!(
                self.text,
                r#"{{"jsonrpc":"2.0","id":{rpc},"result":{{"order":{{"order_id":"BTC-{id}","order_state":"filled","label":"{l}","instrument_name":"{INST}","amount":10.0,"filled_amount":10.0}},"trades":[{{"trade_id":"T{id}","trade_seq":{seq},"order_id":"BTC-{id}","label":"{l}","direction":"buy","price":60000.0,"amount":10.0,"timestamp":1}}]}}}}"#,
                seq = id * 4 + k as u64
            )
            .expect("write");
            self.s.handle_text(self.now, &self.text, &mut sink);
        }
        self.open.clear();
        while self.s.poll_order_event().is_some() {}
        while self.s.poll_event().is_some() {}
        self.now += 1_000_000;
    }

    fn sanity(&mut self) {
        self.fill_ring();
        let r = self.rx.pop().expect("request");
        self.s.handle_order(self.now, r);
        let n = self
            .s
            .poll_transmit(self.now, &mut self.buf)
            .expect("written");
        let msg = std::str::from_utf8(&self.buf[..n]).expect("utf8");
        assert!(msg.contains(r#""method":"private/buy""#), "{msg}");
        assert!(msg.contains(&label(self.next_id)), "{msg}");
        self.open.push((rpc_id(&self.buf[..n]), self.next_id));
        self.next_id += 1;
        self.send_batch();
        self.answer();
        assert_eq!(self.s.order_stats().filled, BATCH);
    }
}

fn temp_journal() -> (PathBuf, JournalConfig) {
    let dir = std::env::temp_dir().join(format!("spinwire-bench-orders-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut j = JournalConfig::new(dir.join("orders.jrnl"));
    j.capacity = 1 << 22;
    (dir, j)
}

fn bench_orders(c: &mut Criterion) {
    let mut g = c.benchmark_group("orders/request_to_bytes");
    g.throughput(Throughput::Elements(BATCH));
    for with_journal in [false, true] {
        let (dir, journal) = if with_journal {
            let (d, j) = temp_journal();
            (Some(d), Some(j))
        } else {
            (None, None)
        };
        let mut b = Bench::new(journal);
        b.sanity();
        let name = if with_journal {
            "journal"
        } else {
            "no_journal"
        };
        g.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    b.fill_ring();
                    total += b.send_batch();
                    b.answer();
                }
                total
            })
        });
        drop(b);
        if let Some(d) = dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    g.finish();
}

criterion_group!(benches, bench_orders);
criterion_main!(benches);
