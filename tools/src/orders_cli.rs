//! `spinwire orders`: run an engine session that places limit orders (and cancels and edits
//! some of them), print every `OrderEvent` as one JSON line on stdout and a final summary
//! line, and exit 0 once every order has a final outcome.
//!
//! With `--journal` the engine records every order in an append-only journal; started again
//! on the same journal after a crash (`kill -9`), it replays it and reconciles the orders of
//! the earlier run with the venue before sending anything new; their events are printed with
//! `"resolved":true` and the summary counts them as `restored`. An event is printed only once
//! the engine has marked it consumed in the journal (`OrderEventsMarked`): the events of the
//! earlier run that were not are replayed on the restart instead, so across a `kill -9` each
//! is printed once.
//!
//! The strategy side here is deliberately simple: order `k` (0-based) is a buy when `k` is
//! even and a sell when odd; every `--cross-every`-th order crosses the spread by 10 ticks
//! (fills at once), the others rest 1–8 ticks away from the reference price on their own
//! side. Every `--cancel-every`-th order is cancelled once accepted and every
//! `--edit-every`-th is edited (amount doubled, one tick further away). With `--cancel-at-end`
//! the orders still open at the end are cancelled (cancel-all) before the exit.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Map, Value};
use spinwire_engine::md::{BookAction, BookFlags, Direction, Fixed, InstrumentId, MdRecord, Side};
use spinwire_engine::orders::journal::JournalConfig;
use spinwire_engine::orders::{
    ClientOrderId, NewOrder, OrderEvent, OrderEventKind, OrderRequest, LABEL_LEN,
};
use spinwire_engine::session::driver::{Driver, DriverConfig, DriverHandle};
use spinwire_engine::session::{AuthMethod, Credentials, EventKind, SessionConfig};
use spinwire_engine::venue::deribit::{CodScope, OrderType, TimeInForce};

/// Arguments of `spinwire orders`.
#[derive(Args, Debug)]
pub struct OrdersArgs {
    /// The venue's WebSocket API URL (Deribit JSON-RPC v2), e.g. wss://test.deribit.com/ws/api/v2.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// PEM file with the CA to trust for wss:// (default: the system's root certificates).
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// Order journal: orders survive a crash and are reconciled on the next start. Without it
    /// a crash forgets the orders in flight.
    #[arg(long, value_name = "PATH")]
    pub journal: Option<PathBuf>,
    /// Instrument to trade.
    #[arg(long, default_value = "BTC-PERPETUAL")]
    pub instrument: String,
    /// Orders to place (0: only reconcile the journal's orders).
    #[arg(long, value_name = "N")]
    pub count: u64,
    /// Orders placed per second by this strategy.
    #[arg(long, value_name = "R", default_value_t = 20.0, value_parser = positive)]
    pub rate: f64,
    /// Give up (exit 1) after S seconds without every order final.
    #[arg(long, value_name = "S", default_value_t = 30.0, value_parser = positive)]
    pub seconds: f64,
    /// Time-to-live of each order, ms: never sent (or sent again) later than this after the
    /// request; 0: no limit.
    #[arg(long, value_name = "T", default_value_t = 0)]
    pub ttl_ms: u32,
    /// Cancel every K-th order once accepted (0: none).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub cancel_every: u64,
    /// Edit every K-th order once accepted (0: none).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub edit_every: u64,
    /// Every K-th order crosses the spread (0: none).
    #[arg(long, value_name = "K", default_value_t = 5)]
    pub cross_every: u64,
    /// Reference price (default: the mid of the first book snapshot).
    #[arg(long, value_name = "P")]
    pub price: Option<f64>,
    /// The instrument's tick size.
    #[arg(long, default_value_t = 0.5, value_parser = positive)]
    pub tick: f64,
    /// Amount of each order.
    #[arg(long, default_value_t = 10.0, value_parser = positive)]
    pub amount: f64,
    /// Tag of the first order (tags must not repeat those of a journal's live orders).
    #[arg(long, default_value_t = 1)]
    pub first_tag: u64,
    /// Arm cancel-on-disconnect (connection scope) on every connect.
    #[arg(long)]
    pub cancel_on_disconnect: bool,
    /// Once every order is final, cancel those still open (cancel-all) and wait for the
    /// cancels before exiting: nothing is left resting at the venue.
    #[arg(long)]
    pub cancel_at_end: bool,
    /// Client-side limit of order requests per second (burst the same; at least 1).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub order_rate: u32,
    /// Heartbeat interval asked of the venue, seconds (Deribit: at least 10).
    #[arg(long, value_name = "S", default_value_t = 10.0, value_parser = positive)]
    pub heartbeat: f64,
    /// Authenticate with client_credentials (sends the secret) instead of client_signature.
    #[arg(long)]
    pub client_credentials: bool,
    /// Print session events (JSON) on stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

/// One order as this strategy follows it.
#[derive(Debug, Default)]
struct Followed {
    /// Placed by this run (false: learned from the journal of an earlier run).
    own: bool,
    /// Index among this run's orders.
    index: u64,
    /// Last outcome: `pending`, `open`, `filled`, `cancelled`, `rejected`, `expired`,
    /// `refused`.
    outcome: &'static str,
    accepted: bool,
    /// A cancel or edit was asked and its answer not seen yet.
    change_pending: bool,
    cancel_sent: bool,
    edit_sent: bool,
    price: f64,
    fills: u64,
}

impl Followed {
    fn is_final(&self) -> bool {
        self.outcome != "pending" && !(self.change_pending && self.outcome == "open")
    }
}

/// Runs `spinwire orders`.
pub fn main(args: &OrdersArgs) -> ExitCode {
    match run(args, &mut std::io::stdout().lock()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("spinwire orders: {e}");
            ExitCode::FAILURE
        }
    }
}

fn session_config(args: &OrdersArgs) -> Result<SessionConfig, String> {
    let mut creds = Credentials::from_env()
        .map_err(|e| e.to_string())?
        .ok_or("set SPINWIRE_CLIENT_ID and SPINWIRE_CLIENT_SECRET: orders need an account")?;
    if args.client_credentials {
        creds.method = AuthMethod::ClientCredentials;
    }
    let hb = Duration::from_secs_f64(args.heartbeat);
    let mut s = SessionConfig {
        credentials: Some(creds),
        heartbeat: Some(hb),
        ping_after: hb.max(Duration::from_millis(1)),
        dead_after: (hb / 2).max(Duration::from_millis(1)),
        ..SessionConfig::default()
    };
    let currency = args
        .instrument
        .split(['-', '_'])
        .next()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| format!("cannot tell the currency of {:?}", args.instrument))?;
    s.orders.currency = currency.to_string();
    s.orders.instruments = vec![args.instrument.clone()];
    s.orders.cancel_on_disconnect = args.cancel_on_disconnect.then_some(CodScope::Connection);
    s.orders.rate.per_second = args.order_rate.max(1);
    s.orders.rate.burst = args.order_rate.max(1);
    s.orders.max_orders = (args.count as usize + 64).max(1024);
    s.orders.queue = (args.count as usize + 64).max(256);
    s.orders.journal = args.journal.as_ref().map(JournalConfig::new);
    Ok(s)
}

fn fixed(v: f64) -> Fixed {
    Fixed::from_raw((v * 1e8).round() as i64)
}

fn label(id: ClientOrderId) -> String {
    let mut l = [0u8; LABEL_LEN];
    id.write_label(&mut l);
    String::from_utf8_lossy(&l).into_owned()
}

/// The JSON line of one event.
fn event_json(e: &OrderEvent) -> Value {
    let mut m = Map::new();
    m.insert("tag".into(), json!(e.tag));
    m.insert(
        "label".into(),
        if e.id == ClientOrderId(0) {
            Value::Null
        } else {
            json!(label(e.id))
        },
    );
    m.insert("resolved".into(), json!(e.resolved));
    m.insert("at_ns".into(), json!(e.at_ns));
    let kind = match e.kind {
        OrderEventKind::Accepted => "accepted",
        OrderEventKind::Rejected { code, reason } => {
            m.insert("code".into(), json!(code));
            m.insert("reason".into(), json!(reason.as_str()));
            "rejected"
        }
        OrderEventKind::Refused { reason } => {
            m.insert("reason".into(), json!(format!("{reason:?}")));
            "refused"
        }
        OrderEventKind::PartiallyFilled(f) | OrderEventKind::Filled(f) => {
            m.insert("price".into(), json!(f.price.to_f64()));
            m.insert("amount".into(), json!(f.amount.to_f64()));
            m.insert("filled_total".into(), json!(f.filled_total.to_f64()));
            m.insert("trade_seq".into(), json!(f.trade_seq));
            if matches!(e.kind, OrderEventKind::Filled(_)) {
                "filled"
            } else {
                "partially_filled"
            }
        }
        OrderEventKind::Cancelled => "cancelled",
        OrderEventKind::Edited { amount, price } => {
            m.insert("amount".into(), json!(amount.to_f64()));
            m.insert("price".into(), json!(price.map(Fixed::to_f64)));
            "edited"
        }
        OrderEventKind::ChangeRejected {
            cancel,
            code,
            reason,
        } => {
            m.insert(
                "change".into(),
                json!(if cancel { "cancel" } else { "edit" }),
            );
            m.insert("code".into(), json!(code));
            m.insert("reason".into(), json!(reason.as_str()));
            "change_rejected"
        }
        OrderEventKind::Expired => "expired",
        OrderEventKind::Unknown => "unknown",
        OrderEventKind::Resent => "resent",
    };
    m.insert("kind".into(), json!(kind));
    Value::Object(m)
}

/// Best bid and ask from book rows.
#[derive(Default)]
struct Top {
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
    complete: bool,
}

impl Top {
    fn apply(&mut self, r: &MdRecord) {
        let MdRecord::Book(b) = r else { return };
        if b.flags.contains(BookFlags::SNAPSHOT) && b.flags.contains(BookFlags::FIRST) {
            self.bids.clear();
            self.asks.clear();
        }
        let side = match b.side {
            Side::Bid => &mut self.bids,
            Side::Ask => &mut self.asks,
        };
        if b.action == BookAction::Delete || b.amount.raw() == 0 {
            side.remove(&b.price.raw());
        } else {
            side.insert(b.price.raw(), b.amount.raw());
        }
        if b.flags.contains(BookFlags::LAST) {
            self.complete = true;
        }
    }

    fn mid(&self) -> Option<f64> {
        let bid = *self.bids.keys().next_back()?;
        let ask = *self.asks.keys().next()?;
        self.complete
            .then(|| Fixed::from_raw(bid).to_f64() / 2.0 + Fixed::from_raw(ask).to_f64() / 2.0)
    }
}

struct Strategy<'a> {
    args: &'a OrdersArgs,
    orders: BTreeMap<u64, Followed>,
    placed: u64,
    reference: Option<f64>,
    lives: u64,
    drops: u64,
}

impl Strategy<'_> {
    fn new_order(&mut self, k: u64) -> OrderRequest {
        let a = self.args;
        let reference = self.reference.unwrap_or(0.0);
        let buy = k % 2 == 0;
        let cross = a.cross_every > 0 && k % a.cross_every == a.cross_every - 1;
        let ticks = if cross { -10.0 } else { 1.0 + (k % 8) as f64 };
        let r = (reference / a.tick).round() * a.tick;
        let price = if buy {
            r - ticks * a.tick
        } else {
            r + ticks * a.tick
        };
        let tag = a.first_tag + k;
        self.orders.insert(
            tag,
            Followed {
                own: true,
                index: k,
                outcome: "pending",
                price,
                ..Followed::default()
            },
        );
        OrderRequest::New(NewOrder {
            tag,
            instrument: InstrumentId(0),
            direction: if buy { Direction::Buy } else { Direction::Sell },
            order_type: OrderType::Limit,
            price: Some(fixed(price)),
            amount: fixed(a.amount),
            time_in_force: TimeInForce::GoodTilCancelled,
            post_only: false,
            reduce_only: false,
            ttl_ms: a.ttl_ms,
        })
    }

    /// Folds an event in; returns a follow-up request (a cancel or an edit) if one is due.
    fn apply(&mut self, e: &OrderEvent) -> Option<OrderRequest> {
        let a = self.args;
        let o = self.orders.entry(e.tag).or_insert_with(|| Followed {
            outcome: "pending",
            ..Followed::default()
        });
        match e.kind {
            OrderEventKind::Accepted => {
                o.accepted = true;
                if !matches!(o.outcome, "filled" | "cancelled") {
                    o.outcome = "open";
                }
            }
            OrderEventKind::Rejected { .. } => {
                if o.accepted {
                    o.change_pending = false;
                } else {
                    o.outcome = "rejected";
                }
            }
            OrderEventKind::Refused { .. } => {
                if e.id == ClientOrderId(0) && !o.accepted && o.outcome == "pending" {
                    o.outcome = "refused";
                } else {
                    o.change_pending = false;
                }
            }
            OrderEventKind::PartiallyFilled(_) => {
                o.accepted = true;
                o.fills += 1;
                if !matches!(o.outcome, "filled" | "cancelled") {
                    o.outcome = "open";
                }
            }
            OrderEventKind::Filled(_) => {
                o.accepted = true;
                o.fills += 1;
                o.outcome = "filled";
                o.change_pending = false;
            }
            OrderEventKind::Cancelled => {
                o.accepted = true;
                o.outcome = "cancelled";
                o.change_pending = false;
            }
            OrderEventKind::Edited { .. } | OrderEventKind::ChangeRejected { .. } => {
                // The order stands (an edit or a refused change also resolves an Unknown).
                o.change_pending = false;
                if o.accepted && o.outcome == "pending" {
                    o.outcome = "open";
                }
                if matches!(e.kind, OrderEventKind::Edited { .. }) && o.outcome == "pending" {
                    o.accepted = true;
                    o.outcome = "open";
                }
            }
            OrderEventKind::Expired => o.outcome = "expired",
            OrderEventKind::Unknown | OrderEventKind::Resent => o.outcome = "pending",
        }
        if !o.own || o.outcome != "open" || o.change_pending {
            return None;
        }
        let k = o.index + 1;
        if a.cancel_every > 0 && k % a.cancel_every == 0 && !o.cancel_sent {
            o.cancel_sent = true;
            o.change_pending = true;
            return Some(OrderRequest::Cancel { tag: e.tag });
        }
        if a.edit_every > 0 && k % a.edit_every == 0 && !o.edit_sent && !o.cancel_sent {
            o.edit_sent = true;
            o.change_pending = true;
            let away = if o.index % 2 == 0 { -a.tick } else { a.tick };
            return Some(OrderRequest::Edit {
                tag: e.tag,
                amount: fixed(a.amount * 2.0),
                price: Some(fixed(o.price + away)),
            });
        }
        None
    }

    fn all_final(&self) -> bool {
        self.placed == self.args.count && self.orders.values().all(Followed::is_final)
    }

    fn summary(&self) -> Value {
        let count = |f: &dyn Fn(&Followed) -> bool| self.orders.values().filter(|o| f(o)).count();
        let outcome = |name: &'static str| count(&|o| o.outcome == name);
        json!({"summary": {
            "orders": self.orders.len(),
            "placed": self.placed,
            "restored": count(&|o| !o.own),
            "final": count(&Followed::is_final),
            "pending": count(&|o| !o.is_final()),
            "open": outcome("open"),
            "filled": outcome("filled"),
            "cancelled": outcome("cancelled"),
            "rejected": outcome("rejected"),
            "expired": outcome("expired"),
            "refused": outcome("refused"),
            "fills": self.orders.values().map(|o| o.fills).sum::<u64>(),
            "lives": self.lives,
            "drops": self.drops,
        }})
    }
}

fn push(h: &mut DriverHandle, r: OrderRequest, backlog: &mut Vec<OrderRequest>) {
    if let Err(full) = h.orders.push(r) {
        backlog.push(full.0);
    }
}

/// The loop of `spinwire orders`; `Ok(true)` when every order ended final.
fn run(args: &OrdersArgs, out: &mut impl Write) -> Result<bool, String> {
    let session = session_config(args)?;
    let mut dc = DriverConfig::new(args.url.clone());
    dc.ca_file = args.ca_file.clone();
    let channels: Vec<String> = if args.price.is_none() && args.count > 0 {
        vec![format!("book.{}.100ms", args.instrument)]
    } else {
        Vec::new()
    };
    let mut h = Driver::spawn(dc, session, &channels).map_err(|e| e.to_string())?;
    let mut st = Strategy {
        args,
        orders: BTreeMap::new(),
        placed: 0,
        reference: args.price,
        lives: 0,
        drops: 0,
    };
    let mut top = Top::default();
    let mut backlog: Vec<OrderRequest> = Vec::new();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.seconds);
    let mut first_live: Option<Instant> = None;
    let mut failed: Option<String> = None;
    let mut cancel_all_sent = false;
    // Order events printed (counted from the first popped), and popped but not yet printed.
    let mut printed = 0u64;
    // The venue's error code when it refused the book subscription (the reference price).
    let mut subscribe_refused: Option<i64> = None;
    let mut held: std::collections::VecDeque<OrderEvent> = std::collections::VecDeque::new();
    // Consecutive loop turns spent waiting for a mark.
    let mut held_spins = 0u32;
    let ok = loop {
        let mut busy = false;
        while let Some(ev) = h.events.pop() {
            busy = true;
            match ev.kind {
                EventKind::Live { .. } => {
                    st.lives += 1;
                    first_live.get_or_insert_with(Instant::now);
                }
                EventKind::Disconnected { .. } => st.drops += 1,
                EventKind::Fatal { reason, code } => {
                    failed = Some(format!("session failed: {reason:?} (code {code})"))
                }
                EventKind::RequestFailed {
                    request: spinwire_engine::session::RequestKind::Subscribe,
                    code,
                } => subscribe_refused = Some(code),
                _ => {}
            }
            if args.verbose {
                eprintln!("{{\"session_event\":{:?}}}", format!("{:?}", ev.kind));
            }
        }
        while let Some(r) = h.md.pop() {
            top.apply(&r);
        }
        if st.reference.is_none() {
            st.reference = top.mid();
        }
        // An event is acted on (printed) only once the engine has marked it consumed in the
        // journal: one popped but not yet marked is replayed after a crash, so printing it
        // first would print it twice across a kill -9 and a restart.
        let mut took = false;
        while let Some(e) = h.order_events.pop() {
            took = true;
            held.push_back(e);
        }
        if took {
            busy = true;
            // The engine marks what was taken on its next turn: let that be now, not after
            // its current wait, so the window between its mark and the print stays short.
            h.orders.wake_engine();
        }
        let marked = h.order_events_marked.get();
        while printed < marked {
            let Some(e) = held.pop_front() else { break };
            printed += 1;
            busy = true;
            let line = event_json(&e);
            writeln!(out, "{line}").map_err(|e| format!("stdout: {e}"))?;
            if let Some(follow) = st.apply(&e) {
                push(&mut h, follow, &mut backlog);
            }
        }
        if !held.is_empty() {
            // Waiting for the engine's mark (one of its loop turns, woken above): spin, not
            // yield, so the events are printed within microseconds of being marked (a kill
            // in between would lose them: they are not replayed). A yield here could hand
            // the core away for a whole time slice right when the mark comes.
            busy = true;
            if held_spins < 20_000 {
                held_spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        } else {
            held_spins = 0;
        }
        let _ = out.flush();
        let backlog_now = std::mem::take(&mut backlog);
        for r in backlog_now {
            push(&mut h, r, &mut backlog);
        }
        // Place at `rate` per second from the first time Live (the engine holds requests
        // until its reconciliation of a journal is done anyway).
        if let (Some(live), Some(_)) = (first_live, st.reference) {
            let due =
                ((live.elapsed().as_secs_f64() * args.rate).floor() as u64 + 1).min(args.count);
            while st.placed < due && backlog.is_empty() {
                let r = st.new_order(st.placed);
                st.placed += 1;
                push(&mut h, r, &mut backlog);
            }
        }
        if let Some(f) = &failed {
            eprintln!("spinwire orders: {f}");
            break false;
        }
        // Done when every order is final, and (with a journal) the reconciliation of the
        // earlier run's orders had a moment to report before an empty run ends.
        let settled = first_live.is_some_and(|t| t.elapsed() > Duration::from_millis(300));
        if st.all_final() && backlog.is_empty() && settled {
            let open = st.orders.values().any(|o| o.outcome == "open");
            if !(args.cancel_at_end && open) {
                break true;
            }
            if !cancel_all_sent {
                cancel_all_sent = true;
                push(
                    &mut h,
                    OrderRequest::CancelAll { instrument: None },
                    &mut backlog,
                );
            }
        }
        if Instant::now() > deadline {
            if st.placed == 0 && st.reference.is_none() {
                // Nothing was placed because no price ever came: say that, not "0 not final".
                let why = match (first_live, subscribe_refused) {
                    (None, _) => "the session never went live".to_owned(),
                    (Some(_), Some(code)) => format!(
                        "the venue refused the book subscription for {} (error {code}): is the \
                         instrument listed?",
                        args.instrument
                    ),
                    (Some(_), None) => format!("no book data for {} arrived", args.instrument),
                };
                eprintln!(
                    "spinwire orders: no order placed in {} s: no reference price, {why} \
                     (--price P places without market data)",
                    args.seconds
                );
            } else {
                eprintln!(
                    "spinwire orders: {} s passed with {} of {} placed orders not final",
                    args.seconds,
                    st.orders.values().filter(|o| !o.is_final()).count(),
                    st.placed
                );
            }
            break false;
        }
        if !busy {
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    writeln!(out, "{}", st.summary()).map_err(|e| format!("stdout: {e}"))?;
    let _ = out.flush();
    h.request_stop();
    match h.thread.join() {
        Ok(Ok(_)) => Ok(ok),
        Ok(Err(e)) => Err(format!("engine: {e}")),
        Err(_) => Err("the engine thread panicked".into()),
    }
}
