//! The order-proof harness: the engine's session driver (with its order path) against the
//! in-process simulator, a strategy side that places, cancels and edits orders by tag and
//! collects every `OrderEvent`, and the ledger comparison
//! ([`spinwire_tools::sim::check`]). Included by the `orders_*` tests with
//! `#[path = "sim_util/orders.rs"] mod orders_harness;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use spinwire_engine::md::{Direction, Fixed, InstrumentId};
use spinwire_engine::orders::{
    ClientOrderId, NewOrder, OrderEvent, OrderEventKind, OrderRequest, LABEL_LEN,
};
use spinwire_engine::session::driver::{Driver, DriverConfig, DriverHandle};
use spinwire_engine::session::{
    BackoffConfig, Credentials, EventKind, SessionConfig, SessionEvent,
};
use spinwire_engine::venue::deribit::{OrderType, TimeInForce};
use spinwire_tools::sim::check::{check, Agreement, EngineFill, EngineOrder, Outcome};
use spinwire_tools::sim::{Ledger, SimConfig, SimHandle, Simulator};

/// The account the engine logs in with.
pub const ID: &str = "orders-client";
/// Its secret.
pub const SECRET: &str = "orders-secret-value";
/// The one instrument traded.
pub const INSTRUMENT: &str = "BTC-PERPETUAL";
/// Where the simulator's BTC book is centred (it stays there with `rate: 0`).
pub const MID: f64 = 60_000.0;
/// BTC tick.
pub const TICK: f64 = 0.5;
/// Every label the engine mints starts with this.
pub const LABEL_PREFIX: &str = "sw";

/// A simulator with one account, one instrument, a still market (`rate` 0: resting orders
/// only fill through faults or crossing orders), a low heartbeat minimum and a request
/// limit above anything the engine's own limiter lets through.
pub fn sim_config() -> SimConfig {
    SimConfig {
        credentials: vec![(ID.into(), SECRET.into())],
        rate: 0,
        instruments: vec![INSTRUMENT.into()],
        min_heartbeat: Duration::from_millis(50),
        ..SimConfig::default()
    }
}

/// A session with orders on [`INSTRUMENT`], fast heartbeats, reconnects and timeouts (so a
/// half-open connection is found dead within about a second), an order rate limit of 200/s,
/// and cancel-on-disconnect off (tests that want it turn it on).
pub fn session_config() -> SessionConfig {
    let mut s = SessionConfig {
        credentials: Some(Credentials::new(ID, SECRET)),
        heartbeat: Some(Duration::from_millis(200)),
        ping_after: Duration::from_millis(300),
        dead_after: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(2),
        setup_timeout: Duration::from_secs(2),
        backoff: BackoffConfig {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            budget: 32,
            budget_window: Duration::from_secs(60),
            reset_after: Duration::from_secs(2),
        },
        rate_limit_retry: Duration::from_millis(100),
        ..SessionConfig::default()
    };
    s.orders.currency = "BTC".into();
    s.orders.instruments = vec![INSTRUMENT.into()];
    s.orders.rate.per_second = 200;
    s.orders.rate.burst = 200;
    s.orders.max_orders = 4096;
    s.orders.queue = 4096;
    s
}

/// A price `ticks` ticks from [`MID`].
pub fn px(ticks: i64) -> Fixed {
    fixed(MID + ticks as f64 * TICK)
}

/// A decimal as [`Fixed`].
pub fn fixed(v: f64) -> Fixed {
    Fixed::from_raw((v * 1e8).round() as i64)
}

/// The label the engine sends for `id`.
pub fn label_of(id: ClientOrderId) -> String {
    let mut l = [0u8; LABEL_LEN];
    id.write_label(&mut l);
    String::from_utf8_lossy(&l).into_owned()
}

/// What the strategy side knows of one order (by tag).
#[derive(Debug, Clone)]
pub struct Tracked {
    /// The engine's id, once an event carried one.
    pub id: ClientOrderId,
    /// Every event received for the tag, in order.
    pub events: Vec<OrderEvent>,
    /// The view the ledger checker compares.
    pub view: EngineOrder,
    /// Whether the venue accepted it at some point (a later `Rejected` is about a cancel or
    /// an edit, not the order).
    pub accepted: bool,
}

impl Tracked {
    fn new() -> Tracked {
        Tracked {
            id: ClientOrderId(0),
            events: Vec::new(),
            view: EngineOrder::new(""),
            accepted: false,
        }
    }

    /// Folds one event into the view.
    pub fn apply(&mut self, e: &OrderEvent) {
        self.events.push(*e);
        if e.id != ClientOrderId(0) && self.id == ClientOrderId(0) {
            self.id = e.id;
            self.view.label = label_of(e.id);
        }
        let v = &mut self.view;
        match e.kind {
            OrderEventKind::Accepted => {
                self.accepted = true;
                if !matches!(v.outcome, Outcome::Filled | Outcome::Cancelled) {
                    v.outcome = Outcome::Open;
                }
            }
            OrderEventKind::Rejected { .. } => {
                if !self.accepted {
                    v.outcome = Outcome::Rejected;
                }
            }
            OrderEventKind::Refused { .. } => {
                // A refused cancel or edit names a live order: only a refused new order (no
                // id minted, nothing heard before) is the order's outcome.
                if e.id == ClientOrderId(0) && v.outcome == Outcome::Pending && !self.accepted {
                    v.outcome = Outcome::Refused;
                }
            }
            OrderEventKind::PartiallyFilled(f) => {
                self.accepted = true;
                v.fills.push(EngineFill {
                    trade_seq: f.trade_seq,
                    amount: f.amount.to_f64(),
                });
                if !matches!(v.outcome, Outcome::Filled | Outcome::Cancelled) {
                    v.outcome = Outcome::Open;
                }
            }
            OrderEventKind::Filled(f) => {
                self.accepted = true;
                v.fills.push(EngineFill {
                    trade_seq: f.trade_seq,
                    amount: f.amount.to_f64(),
                });
                v.outcome = Outcome::Filled;
            }
            OrderEventKind::Cancelled => {
                self.accepted = true;
                v.outcome = Outcome::Cancelled;
            }
            OrderEventKind::Edited { amount, price } => {
                // An edit is made on an open order: it also resolves an Unknown.
                self.accepted = true;
                v.edited = Some((amount.to_f64(), price.map(Fixed::to_f64)));
                if v.outcome == Outcome::Pending {
                    v.outcome = Outcome::Open;
                }
            }
            OrderEventKind::ChangeRejected { .. } => {
                // The order itself stands (a later event says if it filled or was cancelled).
                if self.accepted && v.outcome == Outcome::Pending {
                    v.outcome = Outcome::Open;
                }
            }
            OrderEventKind::Expired => v.outcome = Outcome::Expired,
            OrderEventKind::Unknown | OrderEventKind::Resent => v.outcome = Outcome::Pending,
        }
    }

    /// Whether the order has a final outcome (open at the venue counts).
    pub fn is_final(&self) -> bool {
        self.view.outcome != Outcome::Pending
    }

    /// Whether it is open at the venue as far as the engine knows.
    pub fn is_open(&self) -> bool {
        self.view.outcome == Outcome::Open
    }
}

/// One engine (driver thread) and one simulator, plus what the strategy side saw.
pub struct OrderRun {
    /// The simulator.
    pub sim: SimHandle,
    /// The driver's ring ends (`None` after [`OrderRun::stop`]).
    pub h: Option<DriverHandle>,
    /// Session events received.
    pub session_events: Vec<SessionEvent>,
    /// Orders by tag.
    pub orders: BTreeMap<u64, Tracked>,
    /// Next tag [`OrderRun::buy`]/[`OrderRun::sell`] use.
    pub next_tag: u64,
    /// Requests the OrderRequest ring would not take at once (retried).
    pub ring_full: u64,
}

impl OrderRun {
    /// Starts a simulator and an engine on it; waits until the session is `Live`.
    pub fn start(sim_cfg: SimConfig, session: SessionConfig) -> OrderRun {
        let sim = Simulator::start(sim_cfg).expect("simulator starts");
        let h = spawn_engine(&sim, session);
        let mut run = OrderRun {
            sim,
            h: Some(h),
            session_events: Vec::new(),
            orders: BTreeMap::new(),
            next_tag: 1,
            ring_full: 0,
        };
        assert!(
            run.wait(Duration::from_secs(10), |r| r.lives() >= 1),
            "the session never went Live: {:?}",
            run.session_events
        );
        run
    }

    /// Moves everything the engine sent onto the strategy side.
    pub fn pump(&mut self) {
        let Some(h) = self.h.as_mut() else { return };
        while let Some(e) = h.events.pop() {
            self.session_events.push(e);
        }
        while h.md.pop().is_some() {}
        while let Some(e) = h.order_events.pop() {
            self.orders
                .entry(e.tag)
                .or_insert_with(Tracked::new)
                .apply(&e);
        }
    }

    /// Pumps until `pred` holds (true) or `timeout` passes (false).
    pub fn wait(&mut self, timeout: Duration, mut pred: impl FnMut(&OrderRun) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            self.pump();
            if pred(self) {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Times the session went `Live`.
    pub fn lives(&self) -> usize {
        self.session_events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Live { .. }))
            .count()
    }

    /// Times the connection dropped.
    pub fn drops(&self) -> usize {
        self.session_events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Disconnected { .. }))
            .count()
    }

    /// Pushes a request (retrying while the ring is full).
    pub fn request(&mut self, r: OrderRequest) {
        let end = Instant::now() + Duration::from_secs(5);
        let mut r = r;
        loop {
            let h = self.h.as_mut().expect("engine running");
            match h.orders.push(r) {
                Ok(()) => return,
                Err(back) => {
                    self.ring_full += 1;
                    r = back.0;
                    assert!(Instant::now() < end, "the OrderRequest ring stays full");
                    self.pump();
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    /// Places a limit order `ticks` from [`MID`] (negative: below); returns its tag.
    pub fn limit(&mut self, direction: Direction, ticks: i64, amount: f64, ttl_ms: u32) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.orders.insert(tag, Tracked::new());
        self.request(OrderRequest::New(NewOrder {
            tag,
            instrument: InstrumentId(0),
            direction,
            order_type: OrderType::Limit,
            price: Some(px(ticks)),
            amount: fixed(amount),
            time_in_force: TimeInForce::GoodTilCancelled,
            post_only: false,
            reduce_only: false,
            ttl_ms,
        }));
        tag
    }

    /// A buy resting well below the market (never fills in a still market).
    pub fn resting_buy(&mut self) -> u64 {
        self.limit(Direction::Buy, -200, 10.0, 0)
    }

    /// A buy through the best ask (fills at once against synthetic liquidity).
    pub fn crossing_buy(&mut self) -> u64 {
        self.limit(Direction::Buy, 20, 10.0, 0)
    }

    /// Asks to cancel the order with `tag`.
    pub fn cancel(&mut self, tag: u64) {
        self.request(OrderRequest::Cancel { tag });
    }

    /// Asks to change the amount and price of the order with `tag`.
    pub fn edit(&mut self, tag: u64, amount: f64, ticks: i64) {
        self.request(OrderRequest::Edit {
            tag,
            amount: fixed(amount),
            price: Some(px(ticks)),
        });
    }

    /// The order with `tag`.
    pub fn order(&self, tag: u64) -> &Tracked {
        &self.orders[&tag]
    }

    /// Waits until the order with `tag` is open at the venue.
    pub fn wait_open(&mut self, tag: u64) {
        assert!(
            self.wait(Duration::from_secs(5), |r| r.order(tag).is_open()),
            "order {tag} never accepted: {:?}",
            self.order(tag).events
        );
    }

    /// Waits until every order has a final outcome.
    pub fn wait_final(&mut self, timeout: Duration) -> bool {
        self.wait(timeout, |r| r.orders.values().all(Tracked::is_final))
    }

    /// The engine's view, for the checker.
    pub fn views(&self) -> Vec<EngineOrder> {
        self.orders.values().map(|t| t.view.clone()).collect()
    }

    /// Compares with the ledger until they agree or `timeout` passes (events may still be on
    /// their way); returns the last comparison.
    pub fn settle(&mut self, timeout: Duration) -> Agreement {
        let end = Instant::now() + timeout;
        loop {
            self.pump();
            let a = check(&self.sim.ledger(), &self.views(), LABEL_PREFIX);
            if a.is_clean() || Instant::now() > end {
                return a;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for every outcome, then asserts the ledger agreement; returns it.
    pub fn assert_agreement(&mut self, what: &str) -> Agreement {
        let finished = self.wait_final(Duration::from_secs(15));
        let a = self.settle(Duration::from_secs(3));
        assert!(
            finished && a.is_clean(),
            "{what}: final={finished} {a}\n{}\nevents by tag:\n{}\nledger:\n{}",
            a.problems(),
            self.dump_events(),
            self.sim.ledger().to_json()
        );
        a
    }

    /// Every order's events, one tag per line.
    pub fn dump_events(&self) -> String {
        self.orders
            .iter()
            .map(|(tag, t)| {
                let kinds: Vec<String> = t
                    .events
                    .iter()
                    .map(|e| format!("{:?}{}", e.kind, if e.resolved { "(r)" } else { "" }))
                    .collect();
                format!("  {tag} {}: {}", t.view.label, kinds.join(", "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Raises the stop flag and joins the driver thread; the thread must end without error.
    pub fn stop(&mut self) {
        if let Some(h) = self.h.take() {
            h.request_stop();
            let r = h.thread.join().expect("driver thread does not panic");
            assert!(r.is_ok(), "driver ended with an error: {:?}", r.err());
        }
    }

    /// The ledger now.
    pub fn ledger(&self) -> Ledger {
        self.sim.ledger()
    }
}

impl Drop for OrderRun {
    fn drop(&mut self) {
        if let Some(h) = self.h.take() {
            h.request_stop();
            let _ = h.thread.join();
        }
    }
}

/// Spawns an engine (driver thread) on `sim` with `session`.
pub fn spawn_engine(sim: &SimHandle, session: SessionConfig) -> DriverHandle {
    let mut dc = DriverConfig::new(sim.url());
    dc.ca_file = sim.ca_file().cloned();
    Driver::spawn(dc, session, &[]).expect("driver starts")
}

/// A fresh journal path in a temporary directory.
pub fn journal_path(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "spinwire-orders-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d.join("orders.journal")
}

/// A small seeded generator (splitmix64) for random timing.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi` (`lo` when empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}
