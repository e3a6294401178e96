//! Shared support of the order-path tests: a sans-IO session with orders, a simulated clock,
//! and a hand-driven venue (the test answers each request itself).
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{json, Value};
use spinwire_engine::md::{Direction, Fixed, InstrumentId, MdRecord};
use spinwire_engine::orders::{
    ClientOrderId, NewOrder, OrderEvent, OrderEventKind, OrderRateLimit, OrderRequest,
    OrdersConfig, LABEL_LEN,
};
use spinwire_engine::session::{
    Action, BackoffConfig, Credentials, DisconnectCause, EventKind, Session, SessionConfig,
    SessionState,
};
use spinwire_engine::venue::deribit::{CodScope, OrderType, TimeInForce};

pub const MS: u64 = 1_000_000;
pub const S: u64 = 1_000 * MS;
pub const INST: &str = "BTC-PERPETUAL";
/// First client order id of the tests' sessions.
pub const BASE: u64 = 0x1000;

pub fn config() -> SessionConfig {
    SessionConfig {
        credentials: Some(Credentials::new("client-1", "very-secret-client-secret")),
        heartbeat: None,
        ping_after: Duration::from_secs(30),
        dead_after: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(3),
        setup_timeout: Duration::from_secs(10),
        backoff: BackoffConfig {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            budget: 32,
            budget_window: Duration::from_secs(60),
            reset_after: Duration::from_secs(30),
        },
        rate_limit_retry: Duration::from_millis(500),
        orders: OrdersConfig {
            currency: "BTC".into(),
            instruments: vec![INST.into()],
            cancel_on_disconnect: Some(CodScope::Connection),
            rate: OrderRateLimit {
                per_second: 100,
                burst: 100,
            },
            query_rate: OrderRateLimit {
                per_second: 20,
                burst: 100,
            },
            max_orders: 64,
            queue: 32,
            journal: None,
            label_base: BASE,
            mint: None,
            // Believe the first "not found" (the grace has its own test).
            resend_grace: Duration::ZERO,
        },
        ..SessionConfig::default()
    }
}

pub fn label(id: u64) -> String {
    let mut l = [0u8; LABEL_LEN];
    ClientOrderId(id).write_label(&mut l);
    String::from_utf8(l.to_vec()).unwrap()
}

pub fn px(v: i64) -> Fixed {
    Fixed::from_int(v).unwrap()
}

/// A limit buy of `amount` at `price`, tag `tag`.
pub fn buy(tag: u64, amount: i64, price: i64) -> OrderRequest {
    OrderRequest::New(NewOrder {
        tag,
        instrument: InstrumentId(0),
        direction: Direction::Buy,
        order_type: OrderType::Limit,
        price: Some(px(price)),
        amount: px(amount),
        time_in_force: TimeInForce::GoodTilCancelled,
        post_only: false,
        reduce_only: false,
        ttl_ms: 0,
    })
}

/// The Deribit order object.
pub fn order_obj(id: u64, state: &str, amount: i64, filled: i64, price: i64) -> Value {
    json!({
        "order_id": format!("BTC-{id}"), "order_state": state, "label": label(id),
        "instrument_name": INST, "direction": "buy", "order_type": "limit",
        "price": price as f64, "amount": amount as f64, "filled_amount": filled as f64,
        "average_price": if filled > 0 { price as f64 } else { 0.0 },
        "time_in_force": "good_til_cancelled", "post_only": false, "reduce_only": false,
        "creation_timestamp": 1, "last_update_timestamp": 2
    })
}

/// The Deribit user-trade object.
pub fn trade_obj(id: u64, seq: u64, amount: i64, price: i64, state: &str) -> Value {
    json!({
        "trade_id": format!("T{seq}"), "trade_seq": seq, "order_id": format!("BTC-{id}"),
        "label": label(id), "instrument_name": INST, "direction": "buy",
        "price": price as f64, "amount": amount as f64, "timestamp": 3, "state": state,
        "liquidity": "M"
    })
}

/// A session, a simulated clock and everything it produced.
pub struct Pair {
    pub s: Session,
    pub now: u64,
    /// Requests sent since the last `clear`.
    pub sent: Vec<Value>,
    /// Every request ever sent.
    pub history: Vec<Value>,
    pub actions: Vec<Action>,
    pub events: Vec<EventKind>,
    pub order_events: Vec<OrderEvent>,
    /// `drain` marks the order events it takes consumed (default); `false`: the strategy
    /// never took them (as if the process died with them on the ring).
    pub consume: bool,
}

impl Pair {
    pub fn new(cfg: SessionConfig) -> Pair {
        Pair {
            s: Session::new(cfg).unwrap(),
            now: 1_000 * S,
            sent: vec![],
            history: vec![],
            actions: vec![],
            events: vec![],
            order_events: vec![],
            consume: true,
        }
    }

    /// Drains actions, transmits and events, as the driver does after each input.
    pub fn drain(&mut self) {
        while let Some(a) = self.s.poll_action() {
            self.actions.push(a);
        }
        let mut buf = [0u8; 4096];
        while let Some(n) = self.s.poll_transmit(self.now, &mut buf) {
            let v: Value = serde_json::from_slice(&buf[..n]).unwrap();
            self.history.push(v.clone());
            self.sent.push(v);
        }
        while let Some(e) = self.s.poll_event() {
            self.events.push(e.kind);
        }
        // The test is the strategy: it takes every event at once (a consumed mark).
        let mut upto = None;
        while let Some((e, seq)) = self.s.poll_order_event_seq() {
            self.order_events.push(e);
            upto = Some(seq);
        }
        if let (Some(seq), true) = (upto, self.consume) {
            self.s.order_events_consumed(seq);
        }
    }

    /// Moves the clock by `dt`, firing due timers on the way.
    pub fn advance(&mut self, dt: u64) {
        let end = self.now + dt;
        while let Some(t) = self.s.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.s.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
        self.drain();
    }

    pub fn recv(&mut self, text: &str) {
        let mut sink = |_: &[MdRecord]| {};
        self.s.handle_text(self.now, text, &mut sink);
        self.drain();
    }

    pub fn order(&mut self, r: OrderRequest) {
        self.s.handle_order(self.now, r);
        self.drain();
    }

    /// The last request of `method` ever sent.
    pub fn last(&self, method: &str) -> Value {
        self.history
            .iter()
            .rev()
            .find(|r| r["method"] == method)
            .unwrap_or_else(|| panic!("no {method} in {:?}", self.methods()))
            .clone()
    }

    pub fn methods(&self) -> Vec<String> {
        self.sent
            .iter()
            .map(|r| r["method"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn count(&self, method: &str) -> usize {
        self.sent.iter().filter(|r| r["method"] == method).count()
    }

    pub fn reply_to(&mut self, req: &Value, result: Value) {
        let id = req["id"].as_u64().unwrap();
        self.recv(&json!({"jsonrpc":"2.0","id":id,"result":result}).to_string());
    }

    pub fn reply(&mut self, method: &str, result: Value) {
        let r = self.last(method);
        self.reply_to(&r, result);
    }

    pub fn reply_err(&mut self, method: &str, code: i64, message: &str) {
        let id = self.last(method)["id"].as_u64().unwrap();
        self.recv(
            &json!({"jsonrpc":"2.0","id":id,"error":{"code":code,"message":message}}).to_string(),
        );
    }

    pub fn notify(&mut self, channel: &str, data: Value) {
        self.recv(
            &json!({"jsonrpc":"2.0","method":"subscription",
                    "params":{"channel":channel,"data":data}})
            .to_string(),
        );
    }

    pub fn notify_order(&mut self, order: Value) {
        self.notify(&format!("user.orders.{INST}.raw"), order);
    }

    pub fn notify_trades(&mut self, trades: Value) {
        self.notify(&format!("user.trades.{INST}.raw"), trades);
    }

    fn auth_ok(&mut self) {
        self.reply(
            "public/auth",
            json!({"access_token":"ACCESS","refresh_token":"REFRESH","expires_in":900,
                   "scope":"connection mainaccount","token_type":"bearer"}),
        );
    }

    fn open(&mut self) {
        self.s.handle_connected(self.now);
        self.drain();
    }

    /// Opens a connection, authenticates and confirms the user-channel subscriptions; the
    /// session then reconciles (arms cancel-on-disconnect, queries). Does not answer those.
    pub fn connect_to_reconcile(&mut self) {
        if self.s.state() == SessionState::Disconnected {
            self.s.connect(self.now).unwrap();
            self.drain();
        }
        self.open();
        self.auth_ok();
        let sub = self.last("private/subscribe");
        let channels = sub["params"]["channels"].clone();
        self.reply_to(&sub, channels);
    }

    /// Connects through to `Live` (answers cancel-on-disconnect; no order to reconcile).
    pub fn live(&mut self) {
        self.connect_to_reconcile();
        self.reply("private/enable_cancel_on_disconnect", json!("ok"));
        assert_eq!(self.s.state(), SessionState::Live, "{:?}", self.events);
    }

    /// The connection drops; the session backs off and asks for a new one.
    pub fn drop_connection(&mut self) {
        self.s
            .handle_disconnected(self.now, DisconnectCause::Abnormal);
        self.drain();
        assert_eq!(self.s.state(), SessionState::Backoff);
        self.actions.clear();
        for _ in 0..3000 {
            if self.actions.contains(&Action::Connect) {
                return;
            }
            self.advance(MS);
        }
        panic!("no reconnect: {:?}", self.actions);
    }

    pub fn clear(&mut self) {
        self.sent.clear();
        self.actions.clear();
        self.events.clear();
        self.order_events.clear();
    }

    /// Order event kinds of order `id`, with their `resolved` flag.
    pub fn kinds(&self, id: u64) -> Vec<(OrderEventKind, bool)> {
        self.order_events
            .iter()
            .filter(|e| e.id == ClientOrderId(id))
            .map(|e| (e.kind, e.resolved))
            .collect()
    }
}
