//! The order path's state machine: the in-flight table, the request queue and rate limit,
//! responses and private notifications, disconnect → `Unknown`, and reconciliation. Sans-IO,
//! driven by [`crate::session::Session`]; every buffer is allocated in [`OrderTracker::new`].

use std::collections::VecDeque;

use crate::md::{Fixed, InstrumentId, InstrumentTable};
use crate::venue::deribit::{
    error_code, FromValue, Items, Order, OrderParams, OrderResponse, OrderState, OrderType,
    Request, RpcError, Sorting, UserTrade, UserTradesPage, UserTradesQuery,
};
use crate::venue::json::Value;

use super::config::{OrderStats, OrdersConfig};
use super::index::Index;
use super::journal::{
    FinalReason, InstrumentName, Journal, JournalRecord, OrderIntent, RecordKind, RecoveredState,
    Recovery, VenueOrderId,
};
use super::rate::TokenBucket;
use super::types::{
    ClientOrderId, Fill, LocalReason, NewOrder, OrderEvent, OrderEventKind, OrderRequest,
    ReasonText, LABEL_LEN,
};

/// JSON-RPC ids of order-path requests have this bit set (session ids never reach it); the low
/// 24 bits are the request-table index, the bits between a generation count. All below 2^53.
const ID_FLAG: u64 = 1 << 52;
const REQ_BITS: u32 = 24;
const REQ_MASK: u64 = (1 << REQ_BITS) - 1;
/// Recent trade sequence numbers remembered per order (duplicate detection).
const SEEN: usize = 16;
/// Longest venue order id kept (Deribit's are like `BTC-12345678901`).
const VENUE_ID_LEN: usize = 40;
/// Failed reconciliation queries of one order before it is left unresolved.
const MAX_QUERY_FAILURES: u8 = 3;
/// Trades asked for per `get_user_trades_by_instrument` page.
const TRADES_PAGE: u32 = 1000;

/// Where an order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Slot unused.
    Free,
    /// Not sent yet (queued: rate limit, not `Live`, or a resend after reconciliation).
    Pending,
    /// `buy`/`sell` written, not yet known to the venue's answer or notification.
    Sent,
    /// Accepted by the venue, resting (possibly partly filled).
    Open,
    /// Fate unknown (a disconnect with a request open, or a restart): to be queried.
    Unknown,
    /// The venue says final but fills are missing: waiting for them.
    Closing,
}

/// A cancel or edit the strategy asked for that has not gone out yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    Cancel,
    Edit { amount: Fixed, price: Option<Fixed> },
}

/// A request on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    New,
    Cancel,
    Edit { amount: Fixed, price: Option<Fixed> },
    Query,
    Trades,
    Cod,
}

/// How a final venue state is reported once the fills are complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Cancelled,
    Rejected,
    Filled,
}

/// One in-flight order. Invariant: `phase == Free` exactly when the slot is in neither index.
#[derive(Debug, Clone, Copy)]
struct Slot {
    phase: Phase,
    tag: u64,
    id: ClientOrderId,
    /// The intent; `amount` / `price` follow accepted edits.
    order: NewOrder,
    /// Until when (ns) the order may still be sent; `0`: no limit.
    deadline: u64,
    /// Until when (Unix ms) it may be sent, for a recovered order whose `deadline` follows
    /// from the Unix time ([`OrderTracker::set_unix_offset`]); `0`: none.
    deadline_unix_ms: u64,
    /// Fills with a trade sequence number at or below this were delivered before a restart.
    seq_floor: u64,
    /// An `Accepted` event was delivered.
    acked: bool,
    venue_id: [u8; VENUE_ID_LEN],
    venue_len: u8,
    /// Filled so far (delivered fills). Invariant: `0 <= filled <= order.amount`.
    filled: Fixed,
    /// What the venue last said was filled (fills may still be on their way).
    venue_filled: Fixed,
    /// Highest trade sequence number delivered.
    last_seq: u64,
    /// Recent trade sequence numbers delivered (ring; `seen_n` counts insertions).
    seen: [u64; SEEN],
    seen_n: u32,
    want: Change,
    /// The matching-engine request on the wire (`New`, `Cancel`, `Edit`).
    me_out: Option<Wire>,
    /// In the work queue.
    queued: bool,
    /// Its state must be queried (after a reconnect or restart).
    query_needed: bool,
    /// Its fills must be fetched.
    trades_needed: bool,
    /// A query or trades fetch is on the wire.
    q_out: bool,
    /// In the query queue.
    q_queued: bool,
    query_failures: u8,
    /// Being reconciled: its events carry `resolved: true`.
    resolving: bool,
    /// Found never received: sent again as a resend.
    resend: bool,
    /// Times the order was written (sends and resends).
    attempts: u32,
    /// The edit on the wire was already reported (seen in a notification before its answer).
    edit_reported: bool,
    /// The last event of the order was `Unknown`: its resolution must report something.
    unknown_reported: bool,
    /// When its `buy`/`sell` was last written, ns (0: not in this process).
    sent_at: u64,
    /// A "not found" came too early to be believed: query again at this time (0: none).
    recheck_at: u64,
    /// What to report when `Closing` ends.
    ending: Ending,
}

impl Slot {
    const FREE: Slot = Slot {
        phase: Phase::Free,
        tag: 0,
        id: ClientOrderId(0),
        order: NewOrder {
            tag: 0,
            instrument: InstrumentId(0),
            direction: crate::md::Direction::Buy,
            order_type: OrderType::Limit,
            price: None,
            amount: Fixed::ZERO,
            time_in_force: crate::venue::deribit::TimeInForce::GoodTilCancelled,
            post_only: false,
            reduce_only: false,
            ttl_ms: 0,
        },
        deadline: 0,
        deadline_unix_ms: 0,
        seq_floor: 0,
        acked: false,
        venue_id: [0; VENUE_ID_LEN],
        venue_len: 0,
        filled: Fixed::ZERO,
        venue_filled: Fixed::ZERO,
        last_seq: 0,
        seen: [0; SEEN],
        seen_n: 0,
        want: Change::None,
        me_out: None,
        queued: false,
        query_needed: false,
        trades_needed: false,
        q_out: false,
        q_queued: false,
        query_failures: 0,
        resolving: false,
        resend: false,
        attempts: 0,
        edit_reported: false,
        unknown_reported: false,
        sent_at: 0,
        recheck_at: 0,
        ending: Ending::Cancelled,
    };

    fn venue_id(&self) -> &str {
        std::str::from_utf8(&self.venue_id[..self.venue_len as usize]).unwrap_or("")
    }

    fn set_venue_id(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        let n = s.len().min(VENUE_ID_LEN);
        self.venue_id[..n].copy_from_slice(&s.as_bytes()[..n]);
        self.venue_len = n as u8;
    }

    fn has_seen(&self, seq: u64) -> bool {
        let n = (self.seen_n as usize).min(SEEN);
        self.seen[..n].contains(&seq)
    }

    fn remember(&mut self, seq: u64) {
        self.seen[self.seen_n as usize % SEEN] = seq;
        self.seen_n = self.seen_n.wrapping_add(1);
        self.last_seq = self.last_seq.max(seq);
    }

    fn expired(&self, now: u64) -> bool {
        self.deadline != 0 && now >= self.deadline
    }
}

/// A request on the wire: which slot (or none), what, and the id it went out with.
#[derive(Debug, Clone, Copy)]
struct Req {
    rpc_id: u64,
    slot: u32,
    id: ClientOrderId,
    wire: Wire,
    /// When it was encoded for sending, ns (for the round-trip latency of orders).
    sent_ns: u64,
}

/// Order round trips (request written → the venue's answer decoded) kept until the driver
/// takes them ([`OrderTracker::take_round_trips`]); more in one turn are counted, not kept.
const ROUND_TRIPS: usize = 64;

const NO_SLOT: u32 = u32::MAX;

/// What a response meant for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Not an order-path request.
    NotOurs,
    /// Handled.
    Done,
    /// Answered 10028: hold requests for the retry delay.
    RateLimited,
    /// Answered 13009: the token is no longer valid; authenticate again.
    Unauthorized,
    /// `enable_cancel_on_disconnect` failed with this code.
    CodFailed(i64),
    /// A reconciliation query failed with this code (retried, then left unresolved).
    QueryFailed(i64),
}

/// The order path of one session. See the [module docs](super).
#[derive(Debug)]
pub(crate) struct OrderTracker {
    enabled: bool,
    currency: String,
    cod: Option<crate::venue::deribit::CodScope>,
    queue_limit: usize,
    /// Instruments orders may use (by `InstrumentId.0`), with their names for the journal.
    allowed: Vec<Option<InstrumentName>>,
    /// `unix_ms - now_ns / 1e6` (for journal deadlines).
    unix_offset_ms: i64,
    /// The in-flight table. Length `max_orders`.
    slots: Vec<Slot>,
    /// Free slot indexes (stack). Capacity `max_orders`.
    free: Vec<u32>,
    by_id: Index,
    by_tag: Index,
    /// Slots with a matching-engine request to send, in order. Each slot at most once
    /// (`Slot::queued`), so it never grows past `max_orders`.
    work: VecDeque<u32>,
    /// Slots with a query or trades fetch to send. Each at most once (`Slot::q_queued`).
    qwork: VecDeque<u32>,
    /// Requests on the wire, by the low bits of their JSON-RPC id. Length `2 * max_orders + 2`.
    reqs: Vec<Option<Req>>,
    free_reqs: Vec<u32>,
    /// The resend grace, ns ([`OrdersConfig::resend_grace`]).
    resend_grace: u64,
    /// Slots with a `recheck_at` set.
    rechecks: u32,
    /// Round trips of matching-engine requests not yet taken; `round_trips_len` are valid.
    round_trips: [u64; ROUND_TRIPS],
    round_trips_len: usize,
    gen: u64,
    bucket: TokenBucket,
    /// Budget of reconciliation queries (`get_order_state_by_label`, trade fetches).
    qbucket: TokenBucket,
    /// Wake-up for the rate limit or a queued order's time-to-live, ns.
    wake_at: Option<u64>,
    /// The engine's id counter (shared by its sessions).
    mint: super::ids::IdMint,
    /// Events not yet taken, each with the sequence number of the journal record that caused
    /// it (the last record appended when it was emitted; 0 without a journal). Invariant: the
    /// numbers never decrease from front to back, and every record that caused an event
    /// further back has a larger number (each record is appended just before its event).
    events: VecDeque<(OrderEvent, u64)>,
    stats: OrderStats,
    journal: Option<Journal>,
    /// The last `Consumed` mark written (or recovered), a journal sequence number.
    consumed_mark: u64,
    /// Cancel-on-disconnect must be (re)armed on this connection.
    want_cod: bool,
    cod_out: bool,
    /// Reconciliation runs (between subscriptions done and `Live`).
    reconciling: bool,
    /// The session is `Failed`: new requests are refused.
    failed: bool,
}

impl OrderTracker {
    /// Builds the tracker; registers the configured instruments in `instruments`. A
    /// `recovery` (from the journal) turns its orders into `Unknown` ones to reconcile.
    pub(crate) fn new(
        cfg: &OrdersConfig,
        instruments: &mut InstrumentTable,
        journal: Option<Journal>,
        recovery: Option<&Recovery>,
    ) -> Result<OrderTracker, &'static str> {
        let max = cfg.max_orders;
        if cfg.instruments.is_empty() {
            // Off: tiny buffers.
        } else if max == 0 || max >= (1 << REQ_BITS) / 2 - 2 {
            return Err("orders.max_orders must be in 1..8388606");
        } else if cfg.queue == 0 {
            return Err("orders.queue must be at least 1");
        } else if cfg.rate.per_second == 0 || cfg.rate.burst == 0 {
            return Err("orders.rate needs per_second and burst of at least 1");
        } else if cfg.query_rate.per_second == 0 || cfg.query_rate.burst == 0 {
            return Err("orders.query_rate needs per_second and burst of at least 1");
        }
        let max = if cfg.instruments.is_empty() { 1 } else { max };
        let mut allowed = vec![None; instruments.capacity().max(1)];
        for name in &cfg.instruments {
            allow(instruments, &mut allowed, name)?;
        }
        let nreq = 2 * max + 2;
        let mut base = cfg.label_base;
        if let Some(r) = recovery {
            base = base.max(r.next_id_floor());
        }
        let mut t = OrderTracker {
            enabled: !cfg.instruments.is_empty(),
            unix_offset_ms: 0,
            currency: cfg.currency.clone(),
            cod: cfg.cancel_on_disconnect,
            queue_limit: cfg.queue,
            allowed,
            slots: vec![Slot::FREE; max],
            free: (0..max as u32).rev().collect(),
            by_id: Index::with_capacity(max),
            by_tag: Index::with_capacity(max),
            work: VecDeque::with_capacity(max + 1),
            qwork: VecDeque::with_capacity(max + 1),
            reqs: vec![None; nreq],
            free_reqs: (0..nreq as u32).rev().collect(),
            round_trips: [0; ROUND_TRIPS],
            round_trips_len: 0,
            resend_grace: cfg.resend_grace.as_nanos().min(u64::MAX as u128) as u64,
            rechecks: 0,
            gen: 0,
            bucket: TokenBucket::new(cfg.rate),
            qbucket: TokenBucket::new(cfg.query_rate),
            wake_at: None,
            mint: {
                let m = cfg
                    .mint
                    .clone()
                    .unwrap_or_else(|| super::ids::IdMint::new(1));
                m.raise_to(base.max(1));
                m
            },
            events: VecDeque::with_capacity(
                4 * max + 64 + recovery.map_or(0, |r| r.replay().len()),
            ),
            stats: OrderStats::default(),
            journal,
            consumed_mark: recovery.and_then(|r| r.consumed_upto()).unwrap_or(0),
            want_cod: false,
            cod_out: false,
            reconciling: false,
            failed: false,
        };
        if let Some(r) = recovery {
            // What the stopped process's strategy had not taken, first.
            for ev in r.replay() {
                t.events.push_back((ev.event, ev.seq));
            }
            t.adopt_recovery(r, instruments)?;
        }
        Ok(t)
    }

    /// Recovered orders become `Unknown` orders reconciled after the first authentication;
    /// those whose end was journaled (only their `Final` record missing) end now.
    fn adopt_recovery(
        &mut self,
        r: &Recovery,
        instruments: &mut InstrumentTable,
    ) -> Result<(), &'static str> {
        for ro in r.orders() {
            if !self.enabled {
                return Err("the journal holds open orders but orders.instruments is empty");
            }
            let inst = allow(
                instruments,
                &mut self.allowed,
                ro.intent.instrument.as_str(),
            )?;
            let s = self
                .free
                .pop()
                .ok_or("the journal holds more open orders than orders.max_orders")?;
            let i = s as usize;
            let mut sl = Slot::FREE;
            sl.phase = Phase::Unknown;
            sl.tag = ro.tag;
            sl.id = ro.id;
            sl.order = NewOrder {
                tag: ro.tag,
                instrument: inst,
                direction: ro.intent.direction,
                order_type: ro.intent.order_type,
                price: ro.price,
                amount: ro.amount,
                time_in_force: ro.intent.time_in_force,
                post_only: ro.intent.post_only,
                reduce_only: ro.intent.reduce_only,
                ttl_ms: 0,
            };
            sl.deadline_unix_ms = ro.intent.ttl_deadline_unix_ms;
            sl.deadline = self.deadline_of(sl.deadline_unix_ms);
            if let Some(v) = ro.venue_order_id {
                sl.set_venue_id(v.as_str());
            }
            sl.acked = matches!(ro.state, RecoveredState::Accepted) || sl.venue_len > 0;
            sl.filled = ro.filled_total;
            sl.venue_filled = ro.filled_total;
            sl.seq_floor = ro.last_trade_seq.unwrap_or(0);
            sl.last_seq = sl.seq_floor;
            if ro.pending_cancel {
                sl.want = Change::Cancel;
            } else if let Some(e) = ro.pending_edit {
                sl.want = Change::Edit {
                    amount: e.amount,
                    price: e.price,
                };
            }
            sl.attempts = ro.attempts;
            sl.query_needed = true;
            sl.resolving = true;
            self.slots[i] = sl;
            self.by_id.insert(ro.id.0, s);
            self.by_tag.insert(ro.tag, s);
            self.mint.raise_to(ro.id.0 + 1);
            let ending = match ro.state {
                RecoveredState::Rejected => Some((
                    OrderEventKind::Rejected {
                        code: 0,
                        reason: ReasonText::new("rejected"),
                    },
                    FinalReason::Rejected,
                )),
                RecoveredState::Cancelled => {
                    Some((OrderEventKind::Cancelled, FinalReason::Cancelled))
                }
                RecoveredState::Expired => Some((OrderEventKind::Expired, FinalReason::Expired)),
                RecoveredState::Filled => None,
                _ => {
                    self.stats.unknown += 1;
                    self.slots[i].resolving = false;
                    self.emit(0, i, OrderEventKind::Unknown);
                    self.slots[i].resolving = true;
                    continue;
                }
            };
            // Its end was journaled before the stop: report it (unless the journal tracks
            // consumption: then the strategy took that event, or it is in the replay) and
            // write the `Final` record.
            match ending {
                Some((kind, reason)) => {
                    if !r.tracks_consumption() {
                        self.emit(0, i, kind);
                    }
                    self.finish(0, i, reason);
                }
                None => self.finish(0, i, FinalReason::Filled),
            }
        }
        Ok(())
    }

    /// Sets the Unix time offset (`unix_ms - now_ns / 1e6`): the journal's timestamps and
    /// recovered deadlines follow it.
    pub(crate) fn set_unix_offset(&mut self, offset_ms: i64) {
        self.unix_offset_ms = offset_ms;
        for i in 0..self.slots.len() {
            let d = self.slots[i].deadline_unix_ms;
            if self.slots[i].phase != Phase::Free && d != 0 {
                self.slots[i].deadline = self.deadline_of(d);
            }
        }
    }

    fn deadline_of(&self, unix_ms: u64) -> u64 {
        if unix_ms == 0 {
            return 0;
        }
        let ms = unix_ms as i64 - self.unix_offset_ms;
        (ms.max(0) as u64).saturating_mul(1_000_000).max(1)
    }

    /// Names of the instruments orders may use (their user channels are subscribed).
    pub(crate) fn instrument_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.allowed.iter().flatten().map(|n| n.as_str())
    }

    // ----- journal ---------------------------------------------------------------------------

    /// Appends a record of kind `kind` built from slot `i`; `false` when the journal could not
    /// take it (counted; for an intent, the order is refused).
    fn journal_append(&mut self, now: u64, i: usize, kind: RecordKind) -> bool {
        if self.journal.is_none() {
            return true;
        }
        let s = &self.slots[i];
        let (id, tag) = (s.id, s.tag);
        let rec = match kind {
            RecordKind::Intent => {
                let Some(instrument) = self
                    .allowed
                    .get(s.order.instrument.0 as usize)
                    .copied()
                    .flatten()
                else {
                    return false;
                };
                let ttl_deadline_unix_ms = if s.deadline == 0 {
                    0
                } else {
                    ((s.deadline / 1_000_000) as i64 + self.unix_offset_ms).max(1) as u64
                };
                JournalRecord::Intent {
                    id,
                    tag,
                    intent: OrderIntent {
                        instrument,
                        direction: s.order.direction,
                        order_type: s.order.order_type,
                        price: s.order.price,
                        amount: s.order.amount,
                        time_in_force: s.order.time_in_force,
                        post_only: s.order.post_only,
                        reduce_only: s.order.reduce_only,
                        ttl_deadline_unix_ms,
                    },
                }
            }
            RecordKind::Sent => JournalRecord::Sent {
                id,
                tag,
                attempt: s.attempts,
            },
            RecordKind::Accepted => match VenueOrderId::new(s.venue_id()) {
                Some(venue_order_id) => JournalRecord::Accepted {
                    id,
                    tag,
                    venue_order_id,
                },
                None => return true,
            },
            RecordKind::CancelIntent => JournalRecord::CancelIntent { id, tag },
            RecordKind::EditIntent => match s.want {
                Change::Edit { amount, price } => JournalRecord::EditIntent {
                    id,
                    tag,
                    amount,
                    price,
                },
                _ => return true,
            },
            RecordKind::Edited => JournalRecord::Edited {
                id,
                tag,
                amount: s.order.amount,
                price: s.order.price,
            },
            RecordKind::Cancelled => JournalRecord::Cancelled { id, tag },
            RecordKind::Expired => JournalRecord::Expired { id, tag },
            RecordKind::Resent => JournalRecord::Resent { id, tag },
            RecordKind::Unknown => JournalRecord::Unknown { id, tag },
            // Built by their own helpers (they carry data the slot does not).
            RecordKind::Rejected | RecordKind::Fill | RecordKind::Final | RecordKind::Consumed => {
                return true
            }
        };
        self.journal_record(now, rec)
    }

    fn journal_rejected(&mut self, now: u64, i: usize, code: i64, reason: ReasonText) {
        let s = &self.slots[i];
        let rec = JournalRecord::Rejected {
            id: s.id,
            tag: s.tag,
            code,
            reason,
        };
        self.journal_record(now, rec);
    }

    fn journal_fill(&mut self, now: u64, i: usize, fill: &Fill) {
        let s = &self.slots[i];
        let rec = JournalRecord::Fill {
            id: s.id,
            tag: s.tag,
            fill: *fill,
        };
        self.journal_record(now, rec);
    }

    fn journal_record(&mut self, _now: u64, rec: JournalRecord) -> bool {
        let Some(j) = self.journal.as_mut() else {
            return true;
        };
        if j.append(&rec).is_ok() {
            true
        } else {
            self.stats.journal_errors += 1;
            false
        }
    }

    /// Whether the order path is configured.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn stats(&self) -> OrderStats {
        self.stats
    }

    /// The next event, with the sequence number of the journal record that caused it.
    pub(crate) fn poll_event(&mut self) -> Option<(OrderEvent, u64)> {
        self.events.pop_front()
    }

    /// The strategy has taken every event whose record number is at most `upto_seq`: journals
    /// a [`JournalRecord::Consumed`] mark when it moved. No allocation.
    pub(crate) fn consumed(&mut self, upto_seq: u64) {
        if upto_seq <= self.consumed_mark || self.journal.is_none() {
            return;
        }
        if self.journal_record(0, JournalRecord::Consumed { upto_seq }) {
            self.consumed_mark = upto_seq;
        }
    }

    /// The last consumed mark written or recovered.
    pub(crate) fn consumed_mark(&self) -> u64 {
        self.consumed_mark
    }

    /// Sequence number of the last journal record (0: none, or no journal).
    fn last_seq(&self) -> u64 {
        self.journal.as_ref().map_or(0, |j| j.len())
    }

    /// Next wake-up the tracker needs (rate limit, time-to-live), ns.
    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        self.wake_at
    }

    /// Whether reconciliation (cancel-on-disconnect arming, queries, fill fetches) is running.
    pub(crate) fn reconciling(&self) -> bool {
        self.reconciling
    }

    /// The session failed for good: refuse what is queued and what comes.
    pub(crate) fn fail(&mut self, now: u64) {
        self.failed = true;
        while let Some(s) = self.work.pop_front() {
            let slot = &mut self.slots[s as usize];
            slot.queued = false;
            if slot.phase == Phase::Pending {
                self.refuse_slot(now, s as usize, LocalReason::SessionFailed);
            }
        }
    }

    // ----- requests ------------------------------------------------------------------------

    /// A strategy's request.
    pub(crate) fn request(&mut self, now: u64, req: OrderRequest) {
        match req {
            OrderRequest::New(o) => self.new_order(now, o),
            OrderRequest::Cancel { tag } => self.change(now, tag, Change::Cancel),
            OrderRequest::Edit { tag, amount, price } => {
                if amount <= Fixed::ZERO || price.is_some_and(|p| p <= Fixed::ZERO) {
                    self.refuse(now, tag, ClientOrderId(0), LocalReason::Invalid);
                    return;
                }
                self.change(now, tag, Change::Edit { amount, price })
            }
            OrderRequest::CancelAll { instrument } => {
                for i in 0..self.slots.len() {
                    let s = &self.slots[i];
                    if s.phase != Phase::Free
                        && s.phase != Phase::Closing
                        && instrument.is_none_or(|x| x == s.order.instrument)
                    {
                        let tag = s.tag;
                        self.change(now, tag, Change::Cancel);
                    }
                }
            }
        }
    }

    fn new_order(&mut self, now: u64, o: NewOrder) {
        let reason = if self.failed {
            Some(LocalReason::SessionFailed)
        } else if !self.enabled
            || self
                .allowed
                .get(o.instrument.0 as usize)
                .is_none_or(|a| a.is_none())
        {
            Some(LocalReason::UnknownInstrument)
        } else if o.amount <= Fixed::ZERO
            || match o.order_type {
                OrderType::Limit => o.price.is_none_or(|p| p <= Fixed::ZERO),
                OrderType::Market => o.price.is_some(),
            }
        {
            Some(LocalReason::Invalid)
        } else if self.by_tag.get(o.tag).is_some() {
            Some(LocalReason::DuplicateTag)
        } else if self.free.is_empty() {
            Some(LocalReason::TooManyOrders)
        } else if self.work.len() >= self.queue_limit {
            Some(LocalReason::RateLimited)
        } else {
            None
        };
        if let Some(r) = reason {
            self.refuse(now, o.tag, ClientOrderId(0), r);
            return;
        }
        let Some(s) = self.free.pop() else { return };
        // Taken now, whatever happens next: an id whose intent may have reached the journal
        // (an append that copied the record, then failed to flush it) is never minted again.
        // A gap in the ids is harmless.
        let id = ClientOrderId(self.mint.next());
        let slot = &mut self.slots[s as usize];
        *slot = Slot::FREE;
        slot.phase = Phase::Pending;
        slot.tag = o.tag;
        slot.id = id;
        slot.order = o;
        if o.ttl_ms != 0 {
            slot.deadline = now.saturating_add(o.ttl_ms as u64 * 1_000_000).max(1);
        }
        // Intent before the bytes exist.
        if !self.journal_append(now, s as usize, RecordKind::Intent) {
            self.slots[s as usize] = Slot::FREE;
            self.free.push(s);
            self.refuse(
                now,
                o.tag,
                ClientOrderId(0),
                LocalReason::JournalUnavailable,
            );
            return;
        }
        self.by_id.insert(id.0, s);
        self.by_tag.insert(o.tag, s);
        self.enqueue(s, false);
        let deadline = self.slots[s as usize].deadline;
        if deadline != 0 {
            self.wake(deadline);
        }
    }

    fn change(&mut self, now: u64, tag: u64, c: Change) {
        let Some(s) = self.by_tag.get(tag) else {
            self.refuse(now, tag, ClientOrderId(0), LocalReason::UnknownTag);
            return;
        };
        let i = s as usize;
        let slot = self.slots[i];
        if slot.want == Change::Cancel && matches!(c, Change::Edit { .. }) {
            // An edit after a cancel makes no sense: the cancel stands.
            self.refuse(now, tag, slot.id, LocalReason::Invalid);
            return;
        }
        match (slot.phase, c) {
            (Phase::Free, _) => {}
            (Phase::Pending, Change::Cancel) if !slot.resend => {
                // Never sent: cancelled here (a `Cancelled` record: its event is replayed
                // after a restart if the strategy had not taken it).
                self.journal_append(now, i, RecordKind::Cancelled);
                self.emit(now, i, OrderEventKind::Cancelled);
                self.stats.cancelled += 1;
                self.finish(now, i, FinalReason::Cancelled);
            }
            (Phase::Pending, Change::Edit { amount, price }) if !slot.resend => {
                let sl = &mut self.slots[i];
                sl.order.amount = amount;
                if price.is_some() {
                    sl.order.price = price;
                }
                let (a, p) = (sl.order.amount, sl.order.price);
                self.journal_append(now, i, RecordKind::Edited);
                self.stats.edited += 1;
                self.emit(
                    now,
                    i,
                    OrderEventKind::Edited {
                        amount: a,
                        price: p,
                    },
                );
            }
            (Phase::Closing, _) => {
                // Final at the venue already: the final event answers the request.
            }
            _ => {
                let kind = if c == Change::Cancel {
                    RecordKind::CancelIntent
                } else {
                    RecordKind::EditIntent
                };
                self.slots[i].want = c;
                self.journal_append(now, i, kind);
                let sl = &self.slots[i];
                if sl.phase == Phase::Open && sl.me_out.is_none() && !sl.query_needed {
                    self.enqueue(s, false);
                }
                // Otherwise sent once the order's state is known (accepted, reconciled).
            }
        }
    }

    fn enqueue(&mut self, s: u32, front: bool) {
        let slot = &mut self.slots[s as usize];
        if slot.queued {
            return;
        }
        slot.queued = true;
        if front {
            self.work.push_front(s);
        } else {
            self.work.push_back(s);
        }
    }

    fn enqueue_query(&mut self, s: u32) {
        let slot = &mut self.slots[s as usize];
        if slot.q_queued || slot.q_out {
            return;
        }
        slot.q_queued = true;
        self.qwork.push_back(s);
    }

    fn wake(&mut self, at: u64) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// The wake-up time passed: expire queued orders whose time-to-live is over.
    pub(crate) fn handle_timeout(&mut self, now: u64) {
        if self.wake_at.is_none_or(|w| w > now) {
            return;
        }
        self.wake_at = None;
        let mut next: Option<u64> = None;
        if self.rechecks > 0 {
            for s in 0..self.slots.len() {
                let at = self.slots[s].recheck_at;
                if at == 0 {
                    continue;
                }
                if at <= now {
                    self.slots[s].recheck_at = 0;
                    self.rechecks -= 1;
                    self.enqueue_query(s as u32);
                } else {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        for k in 0..self.work.len() {
            let s = self.work[k] as usize;
            let slot = &self.slots[s];
            if slot.phase == Phase::Pending && slot.deadline != 0 {
                if slot.expired(now) {
                    self.slots[s].queued = false;
                    self.expire(now, s);
                } else {
                    let at = slot.deadline;
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        self.work.retain(|&s| self.slots[s as usize].queued);
        if let Some(n) = next {
            self.wake(n);
        }
    }

    fn expire(&mut self, now: u64, i: usize) {
        self.journal_append(now, i, RecordKind::Expired);
        self.stats.expired += 1;
        self.emit(now, i, OrderEventKind::Expired);
        self.finish(now, i, FinalReason::Expired);
    }

    // ----- transmit ------------------------------------------------------------------------

    /// Encodes the next order-path request into `buf`. `live`: the session is `Live` (new
    /// orders, cancels and edits may go); otherwise only cancel-on-disconnect, reconciliation
    /// queries and resends do, and only while `reconciling`.
    pub(crate) fn transmit(
        &mut self,
        now: u64,
        buf: &mut [u8],
        instruments: &InstrumentTable,
        live: bool,
    ) -> Option<usize> {
        if !self.enabled || (!live && !self.reconciling) {
            return None;
        }
        if self.want_cod {
            if let Some(scope) = self.cod {
                let r = self.alloc_req(now, NO_SLOT, ClientOrderId(0), Wire::Cod)?;
                let n = Request::EnableCancelOnDisconnect { scope }.encode(r, buf);
                self.want_cod = false;
                match n {
                    Ok(n) => {
                        self.cod_out = true;
                        return Some(n);
                    }
                    Err(_) => {
                        self.release_req(r);
                    }
                }
            } else {
                self.want_cod = false;
            }
        }
        while let Some(&s) = self.qwork.front() {
            let i = s as usize;
            let sl = &self.slots[i];
            let due = sl.phase != Phase::Free && !sl.q_out && (sl.query_needed || sl.trades_needed);
            if due && !self.qbucket.try_take(now) {
                // Over the non-matching-engine budget: later (orders may still go).
                let at = self.qbucket.next_at(now);
                self.wake(at);
                break;
            }
            self.qwork.pop_front();
            self.slots[i].q_queued = false;
            if let Some(n) = self.transmit_query(now, i, buf, instruments) {
                return Some(n);
            }
        }
        loop {
            let &s = self.work.front()?;
            let i = s as usize;
            let slot = self.slots[i];
            let sendable = match slot.phase {
                Phase::Pending => live || slot.resend,
                Phase::Open => live && slot.want != Change::None && slot.me_out.is_none(),
                _ => false,
            };
            let stale = match slot.phase {
                Phase::Pending => false,
                Phase::Open => slot.want == Change::None || slot.me_out.is_some(),
                _ => true,
            };
            if stale {
                self.work.pop_front();
                self.slots[i].queued = false;
                continue;
            }
            if !sendable {
                return None;
            }
            if slot.phase == Phase::Pending && slot.expired(now) {
                self.work.pop_front();
                self.slots[i].queued = false;
                self.expire(now, i);
                continue;
            }
            if !self.bucket.try_take(now) {
                let at = self.bucket.next_at(now);
                self.wake(at);
                return None;
            }
            self.work.pop_front();
            self.slots[i].queued = false;
            match self.transmit_me(now, i, buf, instruments) {
                Some(n) => return Some(n),
                // Put back (no request entry free): try on a later call.
                None if self.slots[i].queued => return None,
                // Refused or nothing left to send: the next one.
                None => continue,
            }
        }
    }

    fn transmit_me(
        &mut self,
        now: u64,
        i: usize,
        buf: &mut [u8],
        instruments: &InstrumentTable,
    ) -> Option<usize> {
        let slot = self.slots[i];
        let wire = match (slot.phase, slot.want) {
            (Phase::Pending, _) => Wire::New,
            (_, Change::Cancel) => Wire::Cancel,
            (_, Change::Edit { amount, price }) => Wire::Edit { amount, price },
            (_, Change::None) => return None,
        };
        let Some(rpc) = self.alloc_req(now, i as u32, slot.id, wire) else {
            // No request entry free (cannot happen with the sizes chosen): retry later.
            self.enqueue(i as u32, true);
            return None;
        };
        let mut label = [0u8; LABEL_LEN];
        slot.id.write_label(&mut label);
        let label = std::str::from_utf8(&label).unwrap_or("");
        let r = match wire {
            Wire::New => {
                let name = instruments.name(slot.order.instrument).unwrap_or("");
                let p = OrderParams {
                    instrument_name: name,
                    amount: slot.order.amount,
                    order_type: slot.order.order_type,
                    price: slot.order.price,
                    label,
                    post_only: slot.order.post_only,
                    reject_post_only: slot.order.post_only,
                    reduce_only: slot.order.reduce_only,
                    time_in_force: slot.order.time_in_force,
                };
                match slot.order.direction {
                    crate::md::Direction::Buy => Request::Buy(p),
                    crate::md::Direction::Sell => Request::Sell(p),
                }
                .encode(rpc, buf)
            }
            Wire::Cancel => Request::Cancel {
                order_id: slot.venue_id(),
            }
            .encode(rpc, buf),
            Wire::Edit { amount, price } => Request::Edit(crate::venue::deribit::EditParams {
                order_id: slot.venue_id(),
                amount,
                price,
                post_only: None,
                reject_post_only: false,
            })
            .encode(rpc, buf),
            _ => return None,
        };
        let n = match r {
            Ok(n) => n,
            Err(_) => {
                self.release_req(rpc);
                if wire == Wire::New {
                    self.refuse_slot(now, i, LocalReason::Invalid);
                } else {
                    self.slots[i].want = Change::None;
                    self.stats.refused += 1;
                    self.emit(
                        now,
                        i,
                        OrderEventKind::Refused {
                            reason: LocalReason::Invalid,
                        },
                    );
                }
                return None;
            }
        };
        self.stats.sent += 1;
        let sl = &mut self.slots[i];
        sl.me_out = Some(wire);
        match wire {
            Wire::New => {
                sl.phase = Phase::Sent;
                sl.sent_at = now;
                sl.attempts += 1;
                let resend = sl.resend;
                sl.resend = false;
                if resend {
                    self.stats.resent += 1;
                    self.journal_append(now, i, RecordKind::Resent);
                    self.emit(now, i, OrderEventKind::Resent);
                    self.slots[i].resolving = false;
                }
                self.journal_append(now, i, RecordKind::Sent);
            }
            _ => sl.want = Change::None,
        }
        Some(n)
    }

    fn transmit_query(
        &mut self,
        now: u64,
        i: usize,
        buf: &mut [u8],
        instruments: &InstrumentTable,
    ) -> Option<usize> {
        let slot = self.slots[i];
        if slot.phase == Phase::Free || slot.q_out {
            return None;
        }
        let mut label = [0u8; LABEL_LEN];
        slot.id.write_label(&mut label);
        let label = std::str::from_utf8(&label).unwrap_or("");
        let (wire, r) = if slot.query_needed {
            let rpc = self.alloc_req(now, i as u32, slot.id, Wire::Query)?;
            (
                rpc,
                Request::GetOrderStateByLabel {
                    currency: &self.currency,
                    label,
                }
                .encode(rpc, buf),
            )
        } else if slot.trades_needed {
            let rpc = self.alloc_req(now, i as u32, slot.id, Wire::Trades)?;
            let name = instruments.name(slot.order.instrument).unwrap_or("");
            (
                rpc,
                Request::GetUserTradesByInstrument(UserTradesQuery {
                    instrument_name: name,
                    start_seq: (slot.last_seq > 0).then_some(slot.last_seq + 1),
                    end_seq: None,
                    count: Some(TRADES_PAGE),
                    sorting: Some(Sorting::Asc),
                })
                .encode(rpc, buf),
            )
        } else {
            return None;
        };
        match r {
            Ok(n) => {
                self.slots[i].q_out = true;
                self.stats.queries += 1;
                Some(n)
            }
            Err(_) => {
                self.release_req(wire);
                // Cannot be encoded (a tiny buffer): leave it unresolved.
                self.slots[i].query_needed = false;
                self.slots[i].trades_needed = false;
                None
            }
        }
    }

    fn alloc_req(&mut self, now: u64, slot: u32, id: ClientOrderId, wire: Wire) -> Option<u64> {
        let k = self.free_reqs.pop()?;
        self.gen = (self.gen + 1) & ((1 << (52 - REQ_BITS)) - 1);
        let rpc_id = ID_FLAG | (self.gen << REQ_BITS) | k as u64;
        self.reqs[k as usize] = Some(Req {
            rpc_id,
            slot,
            id,
            wire,
            sent_ns: now,
        });
        Some(rpc_id)
    }

    /// Hands the round trips (ns) measured since the last call to `f` and forgets them.
    pub(crate) fn take_round_trips(&mut self, mut f: impl FnMut(u64)) {
        for &rtt in &self.round_trips[..self.round_trips_len] {
            f(rtt);
        }
        self.round_trips_len = 0;
    }

    fn release_req(&mut self, rpc_id: u64) {
        let k = (rpc_id & REQ_MASK) as usize;
        if let Some(Some(r)) = self.reqs.get(k) {
            if r.rpc_id == rpc_id {
                self.reqs[k] = None;
                self.free_reqs.push(k as u32);
            }
        }
    }

    fn take_req(&mut self, rpc_id: u64) -> Option<Req> {
        if rpc_id & ID_FLAG == 0 {
            return None;
        }
        let k = (rpc_id & REQ_MASK) as usize;
        let r = (*self.reqs.get(k)?)?;
        if r.rpc_id != rpc_id {
            return None;
        }
        self.reqs[k] = None;
        self.free_reqs.push(k as u32);
        Some(r)
    }

    // ----- responses -----------------------------------------------------------------------

    /// A response to request `rpc_id`.
    pub(crate) fn on_response(
        &mut self,
        now: u64,
        rpc_id: u64,
        outcome: Result<Value<'_>, RpcError<'_>>,
    ) -> Handled {
        let Some(req) = self.take_req(rpc_id) else {
            return Handled::NotOurs;
        };
        if req.wire == Wire::Cod {
            self.cod_out = false;
            let h = match outcome {
                Ok(_) => Handled::Done,
                Err(e) if retry_later(e.code).is_some() => {
                    self.want_cod = true;
                    retry_later(e.code).unwrap_or(Handled::Done)
                }
                Err(e) => Handled::CodFailed(e.code),
            };
            self.check_reconciled();
            return h;
        }
        let i = req.slot as usize;
        if self
            .slots
            .get(i)
            .is_none_or(|s| s.id != req.id || s.phase == Phase::Free)
        {
            // The order finished meanwhile (a notification told first).
            self.check_reconciled();
            return Handled::Done;
        }
        if matches!(req.wire, Wire::New | Wire::Cancel | Wire::Edit { .. }) {
            if self.round_trips_len < ROUND_TRIPS {
                self.round_trips[self.round_trips_len] = now.saturating_sub(req.sent_ns);
                self.round_trips_len += 1;
            } else {
                self.stats.round_trips_dropped += 1;
            }
        }
        let h = match req.wire {
            Wire::New => self.on_new_response(now, i, outcome),
            Wire::Cancel | Wire::Edit { .. } => self.on_change_response(now, i, req.wire, outcome),
            Wire::Query => self.on_query_response(now, i, outcome),
            Wire::Trades => self.on_trades_response(now, i, outcome),
            Wire::Cod => Handled::Done,
        };
        self.check_reconciled();
        h
    }

    fn on_new_response(
        &mut self,
        now: u64,
        i: usize,
        outcome: Result<Value<'_>, RpcError<'_>>,
    ) -> Handled {
        self.slots[i].me_out = None;
        match outcome {
            Ok(v) => match OrderResponse::from_value(v) {
                Ok(r) => {
                    self.apply_order(now, i, &r.order, Some(r.trades));
                    Handled::Done
                }
                Err(_) => {
                    // Accepted, but the answer is unreadable: ask the venue.
                    self.mark_unknown(now, i, false);
                    self.enqueue_query(i as u32);
                    Handled::Done
                }
            },
            Err(e) => match e.code {
                error_code::TOO_MANY_REQUESTS | error_code::UNAUTHORIZED => {
                    // Not placed: back to the front of the queue, retried after the hold.
                    self.stats.venue_rate_limited +=
                        (e.code == error_code::TOO_MANY_REQUESTS) as u64;
                    let sl = &mut self.slots[i];
                    sl.phase = Phase::Pending;
                    sl.resend = sl.resolving;
                    self.enqueue(i as u32, true);
                    if e.code == error_code::TOO_MANY_REQUESTS {
                        Handled::RateLimited
                    } else {
                        Handled::Unauthorized
                    }
                }
                error_code::INTERNAL_SERVER_ERROR => {
                    // May or may not be placed: ask the venue.
                    self.mark_unknown(now, i, true);
                    self.enqueue_query(i as u32);
                    Handled::Done
                }
                code => {
                    let reason = reason_of(&e);
                    self.journal_rejected(now, i, code, reason);
                    self.stats.rejected += 1;
                    self.emit(now, i, OrderEventKind::Rejected { code, reason });
                    self.finish(now, i, FinalReason::Rejected);
                    Handled::Done
                }
            },
        }
    }

    fn on_change_response(
        &mut self,
        now: u64,
        i: usize,
        wire: Wire,
        outcome: Result<Value<'_>, RpcError<'_>>,
    ) -> Handled {
        self.slots[i].me_out = None;
        match outcome {
            Ok(v) => {
                if let Wire::Edit { .. } = wire {
                    match OrderResponse::from_value(v) {
                        Ok(r) => {
                            self.edited(now, i, &r.order, true);
                            self.apply_order(now, i, &r.order, Some(r.trades));
                        }
                        Err(_) => self.recheck(i),
                    }
                } else {
                    match Order::from_value(v) {
                        Ok(o) => self.apply_order(now, i, &o, None),
                        Err(_) => self.recheck(i),
                    }
                }
                Handled::Done
            }
            Err(e) => match e.code {
                error_code::TOO_MANY_REQUESTS | error_code::UNAUTHORIZED => {
                    self.stats.venue_rate_limited +=
                        (e.code == error_code::TOO_MANY_REQUESTS) as u64;
                    let sl = &mut self.slots[i];
                    if sl.want == Change::None {
                        sl.want = match wire {
                            Wire::Edit { amount, price } => Change::Edit { amount, price },
                            _ => Change::Cancel,
                        };
                    }
                    self.enqueue(i as u32, true);
                    if e.code == error_code::TOO_MANY_REQUESTS {
                        Handled::RateLimited
                    } else {
                        Handled::Unauthorized
                    }
                }
                error_code::NOT_OPEN_ORDER | error_code::ORDER_NOT_FOUND => {
                    // Already final: learn how.
                    self.recheck(i);
                    Handled::Done
                }
                code => {
                    self.stats.changes_rejected += 1;
                    let reason = reason_of(&e);
                    self.emit(
                        now,
                        i,
                        OrderEventKind::ChangeRejected {
                            cancel: wire == Wire::Cancel,
                            code,
                            reason,
                        },
                    );
                    Handled::Done
                }
            },
        }
    }

    fn recheck(&mut self, i: usize) {
        self.slots[i].query_needed = true;
        self.enqueue_query(i as u32);
    }

    /// The venue's order shows an edit (`force`: the edit's own answer, reported even when it
    /// changed nothing); otherwise reported only when amount or price changed.
    fn edited(&mut self, now: u64, i: usize, o: &Order<'_>, force: bool) {
        let sl = &mut self.slots[i];
        let changed = o.amount != sl.order.amount
            || (o.price.is_some()
                && sl.order.order_type == OrderType::Limit
                && o.price != sl.order.price);
        if !changed && (!force || sl.edit_reported) {
            sl.edit_reported = false;
            return;
        }
        sl.edit_reported = !force && matches!(sl.me_out, Some(Wire::Edit { .. }));
        if let Change::Edit { amount, price } = sl.want {
            if amount == o.amount && (price.is_none() || price == o.price) {
                // The edit asked for (on the wire at a drop) is what the venue shows.
                sl.want = Change::None;
            }
        }
        sl.order.amount = o.amount;
        if o.price.is_some() {
            sl.order.price = o.price;
        }
        let (amount, price) = (sl.order.amount, sl.order.price);
        self.journal_append(now, i, RecordKind::Edited);
        self.stats.edited += 1;
        self.emit(now, i, OrderEventKind::Edited { amount, price });
    }

    fn on_query_response(
        &mut self,
        now: u64,
        i: usize,
        outcome: Result<Value<'_>, RpcError<'_>>,
    ) -> Handled {
        self.slots[i].q_out = false;
        let v = match outcome {
            Ok(v) => v,
            Err(e) if retry_later(e.code).is_some() => {
                self.enqueue_query(i as u32);
                return retry_later(e.code).unwrap_or(Handled::Done);
            }
            Err(e) => {
                let sl = &mut self.slots[i];
                sl.query_failures += 1;
                if sl.query_failures < MAX_QUERY_FAILURES {
                    self.enqueue_query(i as u32);
                } else {
                    // Left unresolved (reported): it is queried again after the next reconnect.
                    sl.query_needed = false;
                }
                return Handled::QueryFailed(e.code);
            }
        };
        let mut label = [0u8; LABEL_LEN];
        self.slots[i].id.write_label(&mut label);
        let found = Items::<Order<'_>>::from_value(v).ok().and_then(|items| {
            items
                .iter()
                .flatten()
                .find(|o| o.label.raw().as_bytes() == label)
        });
        self.slots[i].query_needed = false;
        match found {
            Some(o) => {
                let sl = &mut self.slots[i];
                if sl.phase == Phase::Pending {
                    // Already decided to resend (a notification raced): nothing to adopt.
                    return Handled::Done;
                }
                self.apply_order(now, i, &o, None);
            }
            None => {
                let sl = &mut self.slots[i];
                if sl.sent_at == 0 {
                    // Recovered from the journal: the grace counts from this first answer.
                    sl.sent_at = now;
                }
                let due = sl.sent_at.saturating_add(self.resend_grace);
                let known = sl.acked || sl.venue_len > 0;
                if now < due && !known {
                    // Too early to believe: the dead connection may have delivered it.
                    sl.query_needed = true;
                    if sl.recheck_at == 0 {
                        self.rechecks += 1;
                    }
                    sl.recheck_at = due;
                    self.wake(due);
                } else {
                    self.not_received(now, i);
                }
            }
        }
        Handled::Done
    }

    fn not_received(&mut self, now: u64, i: usize) {
        let sl = self.slots[i];
        if sl.acked || sl.venue_len > 0 || sl.phase == Phase::Open || sl.phase == Phase::Closing {
            // Known to the venue before, gone now (archived): nothing more will happen to it.
            self.journal_append(now, i, RecordKind::Cancelled);
            self.stats.cancelled += 1;
            self.emit(now, i, OrderEventKind::Cancelled);
            self.finish(now, i, FinalReason::Cancelled);
            return;
        }
        if sl.want == Change::Cancel {
            // Never received and cancelled meanwhile: it will not be sent.
            self.journal_append(now, i, RecordKind::Cancelled);
            self.stats.cancelled += 1;
            self.emit(now, i, OrderEventKind::Cancelled);
            self.finish(now, i, FinalReason::Cancelled);
            return;
        }
        if sl.expired(now) {
            self.expire(now, i);
            return;
        }
        let s = &mut self.slots[i];
        s.phase = Phase::Pending;
        s.resend = true;
        if let Change::Edit { amount, price } = s.want {
            s.order.amount = amount;
            if price.is_some() {
                s.order.price = price;
            }
            s.want = Change::None;
        }
        // Resends go before anything queued meanwhile.
        self.enqueue(i as u32, true);
    }

    fn on_trades_response(
        &mut self,
        now: u64,
        i: usize,
        outcome: Result<Value<'_>, RpcError<'_>>,
    ) -> Handled {
        self.slots[i].q_out = false;
        let page = match outcome {
            Ok(v) => UserTradesPage::from_value(v).ok(),
            Err(e) => {
                if let Some(h) = retry_later(e.code) {
                    self.enqueue_query(i as u32);
                    return h;
                }
                self.slots[i].trades_needed = false;
                self.after_fills(now, i);
                return Handled::QueryFailed(e.code);
            }
        };
        let id = self.slots[i].id;
        let before = self.slots[i].last_seq;
        let mut more = false;
        if let Some(p) = page {
            more = p.has_more;
            for t in p.trades.iter().flatten() {
                self.on_trade(now, &t);
            }
        }
        if self.slots[i].id != id || self.slots[i].phase == Phase::Free {
            return Handled::Done;
        }
        let sl = &mut self.slots[i];
        if sl.filled < sl.venue_filled && more && sl.last_seq > before {
            self.enqueue_query(i as u32);
        } else {
            sl.trades_needed = false;
            self.after_fills(now, i);
        }
        Handled::Done
    }

    // ----- state from the venue --------------------------------------------------------------

    /// Applies an order object (response, notification, query) and its fills, if any.
    fn apply_order(
        &mut self,
        now: u64,
        i: usize,
        o: &Order<'_>,
        trades: Option<Items<'_, UserTrade<'_>>>,
    ) {
        let id = self.slots[i].id;
        {
            let sl = &mut self.slots[i];
            if let Some(oid) = o.order_id.as_str() {
                if sl.venue_len == 0 {
                    sl.set_venue_id(oid);
                }
            }
            if o.filled_amount > sl.venue_filled {
                sl.venue_filled = o.filled_amount;
            }
        }
        if o.order_state == OrderState::Rejected {
            let reason = ReasonText::new(o.cancel_reason.map_or("rejected", |r| r.raw()));
            self.journal_rejected(now, i, 0, reason);
            self.stats.rejected += 1;
            self.emit(now, i, OrderEventKind::Rejected { code: 0, reason });
            self.finish(now, i, FinalReason::Rejected);
            return;
        }
        if !self.slots[i].acked {
            self.slots[i].acked = true;
            self.journal_append(now, i, RecordKind::Accepted);
            self.stats.accepted += 1;
            self.emit(now, i, OrderEventKind::Accepted);
        }
        // An edit applied at the venue (its answer lost, or a notification first): adopt the
        // amount before any fill is checked against it.
        if o.amount > Fixed::ZERO {
            self.edited(now, i, o, false);
        }
        if let Some(t) = trades {
            for t in t.iter().flatten() {
                self.on_trade(now, &t);
            }
            if self.slots[i].id != id || self.slots[i].phase == Phase::Free {
                return;
            }
        }
        let sl = &mut self.slots[i];
        let ending = match o.order_state {
            OrderState::Open | OrderState::Untriggered | OrderState::Triggered => None,
            OrderState::Filled => Some(Ending::Filled),
            OrderState::Cancelled | OrderState::Archive => Some(Ending::Cancelled),
            OrderState::Rejected => Some(Ending::Rejected),
        };
        match ending {
            None => {
                if matches!(sl.phase, Phase::Sent | Phase::Unknown) {
                    sl.phase = Phase::Open;
                }
                if sl.me_out == Some(Wire::New) {
                    // The answer is still to come; the order is known accepted.
                } else if sl.phase == Phase::Open && sl.filled < sl.venue_filled {
                    sl.trades_needed = true;
                    self.enqueue_query(i as u32);
                } else {
                    self.after_fills(now, i);
                }
                let sl = &self.slots[i];
                if sl.phase == Phase::Open
                    && sl.want != Change::None
                    && sl.me_out.is_none()
                    && !sl.query_needed
                {
                    self.enqueue(i as u32, false);
                }
            }
            Some(e) => {
                sl.ending = e;
                sl.phase = Phase::Closing;
                if sl.filled < sl.venue_filled {
                    sl.trades_needed = true;
                    self.enqueue_query(i as u32);
                } else {
                    self.after_fills(now, i);
                }
            }
        }
    }

    /// Fills are as complete as they will get: report a final state, or end reconciliation.
    fn after_fills(&mut self, now: u64, i: usize) {
        let sl = self.slots[i];
        if sl.phase == Phase::Closing {
            if sl.filled < sl.venue_filled && (sl.trades_needed || sl.q_out) {
                return;
            }
            let reason = match sl.ending {
                Ending::Cancelled => {
                    self.journal_append(now, i, RecordKind::Cancelled);
                    self.stats.cancelled += 1;
                    self.emit(now, i, OrderEventKind::Cancelled);
                    FinalReason::Cancelled
                }
                Ending::Rejected => {
                    let reason = ReasonText::new("rejected");
                    self.journal_rejected(now, i, 0, reason);
                    self.stats.rejected += 1;
                    self.emit(now, i, OrderEventKind::Rejected { code: 0, reason });
                    FinalReason::Rejected
                }
                Ending::Filled => {
                    // The venue says filled but the fills delivered do not add up to the
                    // amount (fills the venue no longer lists): report it closed.
                    self.journal_append(now, i, RecordKind::Cancelled);
                    self.stats.cancelled += 1;
                    self.emit(now, i, OrderEventKind::Cancelled);
                    FinalReason::Cancelled
                }
            };
            self.finish(now, i, reason);
        } else if !sl.query_needed && !sl.trades_needed && !sl.q_out {
            if sl.unknown_reported && sl.phase == Phase::Open {
                // Resolved with nothing new: the venue holds the order, still open.
                self.emit(now, i, OrderEventKind::Accepted);
            }
            self.slots[i].resolving = false;
        }
    }

    /// One fill from any source; delivered once.
    fn on_trade(&mut self, now: u64, t: &UserTrade<'_>) {
        let Some(i) = self.slot_of(t.label.map(|l| l.raw()), t.order_id.raw()) else {
            return;
        };
        let sl = &mut self.slots[i];
        if sl.has_seen(t.trade_seq)
            || (t.trade_seq <= sl.seq_floor && sl.seq_floor != 0)
            || (sl.seen_n as usize >= SEEN && t.trade_seq < sl.last_seq && t.trade_seq != 0)
        {
            self.stats.duplicate_fills += 1;
            return;
        }
        let total = Fixed::from_raw(sl.filled.raw().saturating_add(t.amount.raw()));
        if t.amount <= Fixed::ZERO || total > sl.order.amount {
            // Beyond the order's amount: a double seen through another channel.
            self.stats.duplicate_fills += 1;
            return;
        }
        sl.remember(t.trade_seq);
        sl.filled = total;
        if total > sl.venue_filled {
            sl.venue_filled = total;
        }
        if sl.venue_len == 0 {
            if let Some(oid) = t.order_id.as_str() {
                sl.set_venue_id(oid);
            }
        }
        let fill = Fill {
            price: t.price,
            amount: t.amount,
            filled_total: total,
            trade_seq: t.trade_seq,
        };
        let full = total == sl.order.amount;
        if !sl.acked {
            sl.acked = true;
            self.journal_append(now, i, RecordKind::Accepted);
            self.stats.accepted += 1;
            self.emit(now, i, OrderEventKind::Accepted);
        }
        self.stats.fills += 1;
        self.journal_fill(now, i, &fill);
        if full {
            self.stats.filled += 1;
            self.emit(now, i, OrderEventKind::Filled(fill));
            self.finish(now, i, FinalReason::Filled);
        } else {
            self.stats.partially_filled += 1;
            self.emit(now, i, OrderEventKind::PartiallyFilled(fill));
            if self.slots[i].phase == Phase::Closing {
                self.after_fills(now, i);
            }
        }
    }

    fn slot_of(&self, label: Option<&str>, order_id: &str) -> Option<usize> {
        if let Some(id) = label.and_then(|l| ClientOrderId::parse_label(l.as_bytes())) {
            return self.by_id.get(id.0).map(|s| s as usize);
        }
        if order_id.is_empty() {
            return None;
        }
        // No label (cold): by the venue's id.
        self.slots
            .iter()
            .position(|s| s.phase != Phase::Free && s.venue_len > 0 && s.venue_id() == order_id)
    }

    /// A `user.orders` notification.
    pub(crate) fn on_user_orders(&mut self, now: u64, orders: Items<'_, Order<'_>>) {
        for o in orders.iter().flatten() {
            let Some(i) = self.slot_of(Some(o.label.raw()), o.order_id.raw()) else {
                continue;
            };
            let sl = self.slots[i];
            if sl.phase == Phase::Pending || sl.phase == Phase::Free {
                continue;
            }
            self.apply_order(now, i, &o, None);
        }
        self.check_reconciled();
    }

    /// A `user.trades` notification.
    pub(crate) fn on_user_trades(&mut self, now: u64, trades: Items<'_, UserTrade<'_>>) {
        for t in trades.iter().flatten() {
            self.on_trade(now, &t);
        }
        self.check_reconciled();
    }

    // ----- connection ----------------------------------------------------------------------

    /// The connection is gone: orders whose fate is open become `Unknown`; every other order
    /// the venue knows is queried again after the reconnect.
    pub(crate) fn on_disconnect(&mut self, now: u64) {
        if !self.enabled {
            return;
        }
        for r in self.reqs.iter_mut() {
            *r = None;
        }
        self.free_reqs.clear();
        self.free_reqs.extend((0..self.reqs.len() as u32).rev());
        self.qwork.clear();
        self.want_cod = false;
        self.cod_out = false;
        self.reconciling = false;
        for i in 0..self.slots.len() {
            let sl = self.slots[i];
            self.slots[i].q_queued = false;
            self.slots[i].q_out = false;
            match sl.phase {
                Phase::Free | Phase::Pending => {}
                _ => match sl.me_out {
                    Some(Wire::New) if !sl.acked => self.mark_unknown(now, i, true),
                    Some(w @ (Wire::Cancel | Wire::Edit { .. })) => {
                        let s = &mut self.slots[i];
                        if s.want == Change::None {
                            s.want = match w {
                                Wire::Edit { amount, price } => Change::Edit { amount, price },
                                _ => Change::Cancel,
                            };
                        }
                        self.mark_unknown(now, i, true);
                    }
                    _ => {
                        let s = &mut self.slots[i];
                        s.me_out = None;
                        s.query_needed = true;
                        s.resolving = true;
                    }
                },
            }
        }
    }

    fn mark_unknown(&mut self, now: u64, i: usize, event: bool) {
        let s = &mut self.slots[i];
        s.me_out = None;
        s.edit_reported = false;
        s.query_needed = true;
        s.resolving = true;
        if s.phase == Phase::Sent {
            s.phase = Phase::Unknown;
        }
        if event {
            self.stats.unknown += 1;
            self.journal_append(now, i, RecordKind::Unknown);
            let resolving = self.slots[i].resolving;
            self.slots[i].resolving = false;
            self.emit(now, i, OrderEventKind::Unknown);
            self.slots[i].resolving = resolving;
        }
    }

    /// The session is authenticated and subscribed on a new connection: arm
    /// cancel-on-disconnect and query every order whose state must be learned. Returns whether
    /// there is anything to wait for.
    pub(crate) fn begin_reconcile(&mut self) -> bool {
        if !self.enabled {
            return false;
        }
        self.want_cod = self.cod.is_some();
        for i in 0..self.slots.len() {
            let s = self.slots[i];
            if s.phase != Phase::Free && (s.query_needed || s.trades_needed) {
                self.enqueue_query(i as u32);
            }
        }
        self.reconciling = true;
        self.check_reconciled();
        self.reconciling
    }

    fn check_reconciled(&mut self) {
        if !self.reconciling
            || self.want_cod
            || self.cod_out
            || !self.qwork.is_empty()
            || self.rechecks > 0
        {
            return;
        }
        if self.slots.iter().any(|s| s.q_out) {
            return;
        }
        self.reconciling = false;
    }

    // ----- helpers -------------------------------------------------------------------------

    fn refuse(&mut self, now: u64, tag: u64, id: ClientOrderId, reason: LocalReason) {
        self.stats.refused += 1;
        let seq = self.last_seq();
        self.events.push_back((
            OrderEvent {
                at_ns: now,
                tag,
                id,
                resolved: false,
                kind: OrderEventKind::Refused { reason },
            },
            seq,
        ));
    }

    fn refuse_slot(&mut self, now: u64, i: usize, reason: LocalReason) {
        self.stats.refused += 1;
        self.emit(now, i, OrderEventKind::Refused { reason });
        self.finish(now, i, FinalReason::Refused);
    }

    fn emit(&mut self, now: u64, i: usize, kind: OrderEventKind) {
        self.slots[i].unknown_reported = kind == OrderEventKind::Unknown;
        let seq = self.last_seq();
        let s = &self.slots[i];
        // Never dropped: past its preallocated capacity the queue grows (cold).
        self.events.push_back((
            OrderEvent {
                at_ns: now,
                tag: s.tag,
                id: s.id,
                resolved: s.resolving,
                kind,
            },
            seq,
        ));
    }

    /// The order is final: frees its slot.
    fn finish(&mut self, now: u64, i: usize, reason: FinalReason) {
        let s = self.slots[i];
        if s.phase == Phase::Free {
            return;
        }
        self.journal_record(
            now,
            JournalRecord::Final {
                id: s.id,
                tag: s.tag,
                reason,
            },
        );
        if s.queued {
            self.work.retain(|&x| x as usize != i);
        }
        if s.q_queued {
            self.qwork.retain(|&x| x as usize != i);
        }
        self.by_id.remove(s.id.0);
        if self.by_tag.get(s.tag) == Some(i as u32) {
            self.by_tag.remove(s.tag);
        }
        if s.recheck_at != 0 {
            self.rechecks -= 1;
        }
        self.slots[i] = Slot::FREE;
        self.free.push(i as u32);
    }
}

/// Registers instrument `name` as one orders may use; returns its id.
fn allow(
    instruments: &mut InstrumentTable,
    allowed: &mut [Option<InstrumentName>],
    name: &str,
) -> Result<InstrumentId, &'static str> {
    let id = match instruments.get(name.as_bytes()) {
        Some(id) => id,
        None => instruments
            .insert(name)
            .map_err(|_| "orders.instruments: invalid name or instrument table full")?,
    };
    let slot = allowed
        .get_mut(id.0 as usize)
        .ok_or("orders.instruments: instrument table full")?;
    *slot = Some(InstrumentName::new(name).ok_or("orders.instruments: name too long")?);
    Ok(id)
}

/// Codes after which a request is sent again: `10028` (after the session's hold) and `13009`
/// (after the session authenticated again).
fn retry_later(code: i64) -> Option<Handled> {
    match code {
        error_code::TOO_MANY_REQUESTS => Some(Handled::RateLimited),
        error_code::UNAUTHORIZED => Some(Handled::Unauthorized),
        _ => None,
    }
}

/// The reason text of a venue error: `data.reason` when given, else the message.
fn reason_of(e: &RpcError<'_>) -> ReasonText {
    let r = e.reason().unwrap_or(e.message);
    ReasonText::new(r.raw())
}
