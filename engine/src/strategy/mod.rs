//! The example quoting strategy (used by `engine/examples/quoting_strategy.rs` and
//! `spinwire demo`): top of book from book rows, a bid and an ask around mid, cancel and replace
//! on a mid move, orders tracked from their events.
//!
//! The logic is sans-IO: [`QuotingStrategy::on_record`], [`QuotingStrategy::on_session_event`]
//! and [`QuotingStrategy::on_order_event`] take what the strategy thread popped, and requests go
//! out through a caller-supplied `push` closure (the OrderRequest ring's producer in practice;
//! it returns `false` when the ring is full, and the strategy then tries again later). Time is
//! passed in. Nothing allocates after [`QuotingStrategy::new`].
//!
//! # Book
//! [`Book`] keeps up to [`MAX_LEVELS`] levels per side (sorted arrays), replaced by each
//! snapshot and updated by changes. A book is *synced* from its snapshot on, and stops being
//! synced on a gap, dropped records or a disconnect (the session resends a snapshot).
//!
//! # Quoting
//! For each instrument enabled with [`QuotingStrategy::quote`]: once a book message is complete
//! (its last row) and the book is synced with both sides present, the strategy joins the best
//! bid and the best ask with post-only limit orders. When the mid moves and at least
//! [`QuoteConfig::requote_interval_ns`] has passed since the last requote, each side whose
//! order rests at another price is cancelled and replaced at the new best price. A side with a
//! request still unanswered is left alone until the answer arrives.

use crate::md::{BookAction, BookFlags, BookRow, Direction, Fixed, InstrumentId, MdRecord, Side};
use crate::orders::{NewOrder, OrderEvent, OrderEventKind, OrderRequest};
use crate::session::{EventKind, SessionEvent};
use crate::venue::deribit::{OrderType, TimeInForce};

/// Levels kept per book side; rows beyond are ignored (far from the top).
pub const MAX_LEVELS: usize = 256;
/// Orders tracked at once (live or in flight); further quotes wait.
pub const MAX_TRACKED: usize = 64;

/// One side of a book: `(price, amount)` sorted best first.
#[derive(Debug, Clone)]
struct Levels {
    /// Best first: descending prices for bids, ascending for asks. Capacity [`MAX_LEVELS`],
    /// never exceeded.
    rows: Vec<(Fixed, Fixed)>,
    /// Bids (descending) or asks (ascending).
    side: Side,
}

impl Levels {
    fn new(side: Side) -> Levels {
        Levels {
            rows: Vec::with_capacity(MAX_LEVELS),
            side,
        }
    }

    /// Index where `price` is or would go.
    fn find(&self, price: Fixed) -> Result<usize, usize> {
        match self.side {
            Side::Bid => self.rows.binary_search_by(|(p, _)| price.cmp(p)),
            Side::Ask => self.rows.binary_search_by(|(p, _)| p.cmp(&price)),
        }
    }

    fn set(&mut self, price: Fixed, amount: Fixed) {
        match self.find(price) {
            Ok(i) => self.rows[i].1 = amount,
            Err(i) if i < MAX_LEVELS => {
                if self.rows.len() == MAX_LEVELS {
                    self.rows.pop();
                }
                self.rows.insert(i, (price, amount));
            }
            Err(_) => {}
        }
    }

    fn remove(&mut self, price: Fixed) {
        if let Ok(i) = self.find(price) {
            self.rows.remove(i);
        }
    }

    fn best(&self) -> Option<(Fixed, Fixed)> {
        self.rows.first().copied()
    }
}

/// An order book built from [`BookRow`]s.
#[derive(Debug, Clone)]
pub struct Book {
    bids: Levels,
    asks: Levels,
    /// From a snapshot on, until a gap, a drop or a disconnect.
    synced: bool,
}

impl Default for Book {
    fn default() -> Self {
        Book::new()
    }
}

impl Book {
    /// An empty, unsynced book (allocates its level arrays).
    pub fn new() -> Book {
        Book {
            bids: Levels::new(Side::Bid),
            asks: Levels::new(Side::Ask),
            synced: false,
        }
    }

    /// Applies one row: the first row of a snapshot clears the book and makes it synced.
    pub fn apply(&mut self, row: &BookRow) {
        if row.flags.contains(BookFlags::SNAPSHOT) && row.flags.contains(BookFlags::FIRST) {
            self.bids.rows.clear();
            self.asks.rows.clear();
            self.synced = true;
        }
        let levels = match row.side {
            Side::Bid => &mut self.bids,
            Side::Ask => &mut self.asks,
        };
        match row.action {
            BookAction::New | BookAction::Change if row.amount > Fixed::ZERO => {
                levels.set(row.price, row.amount)
            }
            _ => levels.remove(row.price),
        }
    }

    /// Marks the book out of date until the next snapshot.
    pub fn mark_stale(&mut self) {
        self.synced = false;
    }

    /// Whether the book is current (from a snapshot on, no loss since).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Best bid `(price, amount)`.
    pub fn best_bid(&self) -> Option<(Fixed, Fixed)> {
        self.bids.best()
    }

    /// Best ask `(price, amount)`.
    pub fn best_ask(&self) -> Option<(Fixed, Fixed)> {
        self.asks.best()
    }

    /// `(best bid + best ask) / 2`, in raw units (may be a half unit below the exact mid).
    pub fn mid(&self) -> Option<Fixed> {
        let (b, _) = self.best_bid()?;
        let (a, _) = self.best_ask()?;
        Some(Fixed::from_raw(
            b.raw() / 2 + a.raw() / 2 + (b.raw() % 2 + a.raw() % 2) / 2,
        ))
    }
}

/// Quoting settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteConfig {
    /// Least time between two requotes of one instrument, ns of the caller's clock.
    pub requote_interval_ns: u64,
    /// Time-to-live of each order ([`NewOrder::ttl_ms`]): not (re)sent after this.
    pub ttl_ms: u32,
    /// Instruments the strategy can hold (ids `0..instruments`); rows of others are ignored.
    pub instruments: usize,
}

impl Default for QuoteConfig {
    /// Requote at most every 200 ms, 2 s time-to-live, 16 instruments.
    fn default() -> Self {
        QuoteConfig {
            requote_interval_ns: 200_000_000,
            ttl_ms: 2_000,
            instruments: 16,
        }
    }
}

/// Where a tracked order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackedState {
    /// Requested, no answer yet.
    Sent,
    /// Resting on the venue.
    Live,
    /// Cancel requested, no answer yet.
    Cancelling,
    /// The connection dropped with the order's fate open; reconciliation follows.
    Unknown,
}

/// An order the strategy tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    /// The strategy's tag.
    pub tag: u64,
    /// Instrument.
    pub instrument: InstrumentId,
    /// Buy (bid) or sell (ask).
    pub direction: Direction,
    /// Limit price.
    pub price: Fixed,
    /// Where it is.
    pub state: TrackedState,
}

/// What the strategy has seen and done (all counts since [`QuotingStrategy::new`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StrategyCounters {
    /// Market-data records handled.
    pub records: u64,
    /// New orders pushed on the OrderRequest ring.
    pub sent: u64,
    /// Cancels pushed.
    pub cancels_sent: u64,
    /// Requests the ring would not take (retried later).
    pub push_failed: u64,
    /// Orders accepted by the venue.
    pub accepted: u64,
    /// Orders rejected by the venue or refused by the engine.
    pub rejected: u64,
    /// Orders completely filled.
    pub filled: u64,
    /// Partial fills.
    pub partially_filled: u64,
    /// Orders cancelled.
    pub cancelled: u64,
    /// Orders expired (time-to-live passed before they could be sent again).
    pub expired: u64,
    /// Orders sent again after a reconnect.
    pub resent: u64,
    /// Orders whose fate was open after a disconnect.
    pub unknown: u64,
    /// Requotes (mid moves acted upon).
    pub requotes: u64,
    /// Times a book became stale (gap, drop, disconnect).
    pub stale: u64,
    /// Reconnects seen (`Live` after a drop).
    pub reconnects: u64,
    /// Records dropped by the engine because this strategy's ring was full.
    pub ring_drops: u64,
}

/// Per-instrument quoting state.
#[derive(Debug, Clone, Copy, Default)]
struct Quote {
    /// Quoting enabled, with this amount per order.
    amount: Option<Fixed>,
    /// Mid at the last requote.
    mid: Option<Fixed>,
    /// Caller's clock at the last requote.
    at_ns: u64,
    /// Tag of the current bid / ask order (0: none).
    bid: u64,
    /// Tag of the current ask order (0: none).
    ask: u64,
}

/// The quoting strategy; see the [module docs](self).
#[derive(Debug)]
pub struct QuotingStrategy {
    config: QuoteConfig,
    /// Indexed by [`InstrumentId::index`]; `config.instruments` entries.
    books: Vec<Book>,
    /// Indexed like `books`.
    quotes: Vec<Quote>,
    /// Live and in-flight orders; capacity [`MAX_TRACKED`], never exceeded.
    tracked: Vec<Tracked>,
    /// Next tag (never 0).
    next_tag: u64,
    counters: StrategyCounters,
}

impl QuotingStrategy {
    /// A strategy with empty books for `config.instruments` instruments, quoting none yet.
    pub fn new(config: QuoteConfig) -> QuotingStrategy {
        QuotingStrategy {
            books: (0..config.instruments).map(|_| Book::new()).collect(),
            quotes: vec![Quote::default(); config.instruments],
            tracked: Vec::with_capacity(MAX_TRACKED),
            next_tag: 1,
            counters: StrategyCounters::default(),
            config,
        }
    }

    /// Quotes `instrument` with orders of `amount` (a multiple of its contract size). Returns
    /// `false` when the id is beyond [`QuoteConfig::instruments`].
    pub fn quote(&mut self, instrument: InstrumentId, amount: Fixed) -> bool {
        match self.quotes.get_mut(instrument.index()) {
            Some(q) => {
                q.amount = Some(amount);
                true
            }
            None => false,
        }
    }

    /// Stops quoting every instrument (books are still kept); pair it with
    /// [`cancel_all`](QuotingStrategy::cancel_all) to take the quotes off.
    pub fn stop_quoting(&mut self) {
        for q in self.quotes.iter_mut() {
            q.amount = None;
        }
    }

    /// The book of `instrument`.
    pub fn book(&self, instrument: InstrumentId) -> Option<&Book> {
        self.books.get(instrument.index())
    }

    /// The counters.
    pub fn counters(&self) -> &StrategyCounters {
        &self.counters
    }

    /// Orders tracked now.
    pub fn tracked(&self) -> &[Tracked] {
        &self.tracked
    }

    /// Orders resting on the venue.
    pub fn live_orders(&self) -> usize {
        self.tracked
            .iter()
            .filter(|t| t.state == TrackedState::Live)
            .count()
    }

    /// Orders with a request unanswered (new, cancel, or unknown after a drop).
    pub fn in_flight(&self) -> usize {
        self.tracked.len() - self.live_orders()
    }

    /// Handles one market-data record popped at `now_ns` (caller's clock); may push requests.
    pub fn on_record(
        &mut self,
        now_ns: u64,
        record: &MdRecord,
        push: &mut impl FnMut(OrderRequest) -> bool,
    ) {
        self.counters.records += 1;
        let MdRecord::Book(row) = record else {
            return;
        };
        let i = row.instrument.index();
        let Some(book) = self.books.get_mut(i) else {
            return;
        };
        book.apply(row);
        if row.flags.contains(BookFlags::LAST) {
            self.requote(now_ns, row.instrument, push);
        }
    }

    /// Handles a session event: books go stale on gaps, drops and disconnects.
    pub fn on_session_event(&mut self, event: &SessionEvent) {
        match event.kind {
            EventKind::Gap { instrument, .. } => self.stale(Some(instrument)),
            EventKind::RecordsDropped {
                instrument,
                records,
            } => {
                self.counters.ring_drops += u64::from(records);
                self.stale(Some(instrument));
            }
            EventKind::Disconnected { .. } => self.stale(None),
            EventKind::Live { downtime_ns } if downtime_ns > 0 => self.counters.reconnects += 1,
            _ => {}
        }
    }

    fn stale(&mut self, instrument: Option<InstrumentId>) {
        for (i, b) in self.books.iter_mut().enumerate() {
            if instrument.is_none_or(|x| x.index() == i) && b.synced {
                b.mark_stale();
                self.counters.stale += 1;
            }
        }
    }

    /// Handles an order event.
    pub fn on_order_event(&mut self, event: &OrderEvent) {
        let pos = self.tracked.iter().position(|t| t.tag == event.tag);
        let c = &mut self.counters;
        let gone = match event.kind {
            OrderEventKind::Accepted => {
                c.accepted += 1;
                if let Some(p) = pos {
                    if self.tracked[p].state == TrackedState::Sent
                        || self.tracked[p].state == TrackedState::Unknown
                    {
                        self.tracked[p].state = TrackedState::Live;
                    }
                }
                false
            }
            OrderEventKind::Rejected { .. } | OrderEventKind::Refused { .. } => {
                // A refused cancel leaves a live order alone (its fate is reported separately);
                // a refused or rejected new order is gone.
                let new_order = pos.is_some_and(|p| self.tracked[p].state != TrackedState::Live);
                if new_order || pos.is_none() {
                    c.rejected += 1;
                }
                match pos.map(|p| self.tracked[p].state) {
                    Some(TrackedState::Cancelling) => {
                        // The cancel was refused: the order is gone already or will report.
                        if let Some(p) = pos {
                            self.tracked[p].state = TrackedState::Live;
                        }
                        false
                    }
                    _ => new_order,
                }
            }
            OrderEventKind::ChangeRejected { .. } => {
                // The order stands: it rests at its old price; the next mid move replaces it.
                if let Some(p) = pos {
                    if self.tracked[p].state == TrackedState::Cancelling {
                        self.tracked[p].state = TrackedState::Live;
                    }
                }
                false
            }
            OrderEventKind::PartiallyFilled(_) => {
                c.partially_filled += 1;
                false
            }
            OrderEventKind::Filled(_) => {
                c.filled += 1;
                true
            }
            OrderEventKind::Cancelled => {
                c.cancelled += 1;
                true
            }
            OrderEventKind::Expired => {
                c.expired += 1;
                true
            }
            OrderEventKind::Edited { price, .. } => {
                if let (Some(p), Some(price)) = (pos, price) {
                    self.tracked[p].price = price;
                }
                false
            }
            OrderEventKind::Unknown => {
                c.unknown += 1;
                if let Some(p) = pos {
                    self.tracked[p].state = TrackedState::Unknown;
                }
                false
            }
            OrderEventKind::Resent => {
                c.resent += 1;
                if let Some(p) = pos {
                    self.tracked[p].state = TrackedState::Sent;
                }
                false
            }
        };
        if gone {
            if let Some(p) = pos {
                let t = self.tracked.swap_remove(p);
                if let Some(q) = self.quotes.get_mut(t.instrument.index()) {
                    if q.bid == t.tag {
                        q.bid = 0;
                    }
                    if q.ask == t.tag {
                        q.ask = 0;
                    }
                }
            }
        }
    }

    /// Cancels every tracked order (e.g. before stopping): one `CancelAll`. Returns whether it
    /// was pushed.
    pub fn cancel_all(&mut self, push: &mut impl FnMut(OrderRequest) -> bool) -> bool {
        if push(OrderRequest::CancelAll { instrument: None }) {
            self.counters.cancels_sent += 1;
            for t in self.tracked.iter_mut() {
                t.state = TrackedState::Cancelling;
            }
            true
        } else {
            self.counters.push_failed += 1;
            false
        }
    }

    fn requote(
        &mut self,
        now_ns: u64,
        instrument: InstrumentId,
        push: &mut impl FnMut(OrderRequest) -> bool,
    ) {
        let i = instrument.index();
        let q = self.quotes[i];
        let Some(amount) = q.amount else { return };
        let book = &self.books[i];
        if !book.synced {
            return;
        }
        let (Some((bid, _)), Some((ask, _)), Some(mid)) =
            (book.best_bid(), book.best_ask(), book.mid())
        else {
            return;
        };
        let first = q.mid.is_none();
        if !first
            && (q.mid == Some(mid)
                || now_ns.saturating_sub(q.at_ns) < self.config.requote_interval_ns)
        {
            // Fill empty sides (after a fill or a reject) without waiting for a mid move.
            if q.bid != 0 && q.ask != 0 {
                return;
            }
        }
        let mut acted = false;
        for (direction, price) in [(Direction::Buy, bid), (Direction::Sell, ask)] {
            acted |= self.quote_side(instrument, direction, price, amount, push);
        }
        if acted {
            let q = &mut self.quotes[i];
            if q.mid.is_some() && q.mid != Some(mid) {
                self.counters.requotes += 1;
            }
            q.mid = Some(mid);
            q.at_ns = now_ns;
        }
    }

    /// Makes the side's order rest at `price`: cancel + new when it rests elsewhere, new when
    /// there is none. Returns whether a request went out.
    fn quote_side(
        &mut self,
        instrument: InstrumentId,
        direction: Direction,
        price: Fixed,
        amount: Fixed,
        push: &mut impl FnMut(OrderRequest) -> bool,
    ) -> bool {
        let i = instrument.index();
        let current = match direction {
            Direction::Buy => self.quotes[i].bid,
            Direction::Sell => self.quotes[i].ask,
        };
        if current != 0 {
            let Some(p) = self.tracked.iter().position(|t| t.tag == current) else {
                return false;
            };
            let t = self.tracked[p];
            if t.state != TrackedState::Live || t.price == price {
                return false;
            }
            if !push(OrderRequest::Cancel { tag: current }) {
                self.counters.push_failed += 1;
                return false;
            }
            self.counters.cancels_sent += 1;
            self.tracked[p].state = TrackedState::Cancelling;
        }
        if self.tracked.len() >= MAX_TRACKED {
            self.set_side(i, direction, 0);
            return current != 0;
        }
        let tag = self.next_tag;
        let order = NewOrder {
            tag,
            instrument,
            direction,
            order_type: OrderType::Limit,
            price: Some(price),
            amount,
            time_in_force: TimeInForce::GoodTilCancelled,
            post_only: true,
            reduce_only: false,
            ttl_ms: self.config.ttl_ms,
        };
        if !push(OrderRequest::New(order)) {
            self.counters.push_failed += 1;
            self.set_side(i, direction, 0);
            return current != 0;
        }
        self.next_tag += 1;
        self.counters.sent += 1;
        self.tracked.push(Tracked {
            tag,
            instrument,
            direction,
            price,
            state: TrackedState::Sent,
        });
        self.set_side(i, direction, tag);
        true
    }

    fn set_side(&mut self, i: usize, direction: Direction, tag: u64) {
        match direction {
            Direction::Buy => self.quotes[i].bid = tag,
            Direction::Sell => self.quotes[i].ask = tag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::ClientOrderId;

    fn px(v: i64) -> Fixed {
        Fixed::from_int(v).unwrap()
    }

    fn row(side: Side, price: i64, amount: i64, action: BookAction, flags: BookFlags) -> MdRecord {
        MdRecord::Book(BookRow {
            change_id: 1,
            prev_change_id: 0,
            price: px(price),
            amount: px(amount),
            timestamp_ms: 0,
            sw_send_ns: 0,
            instrument: InstrumentId(0),
            side,
            action,
            flags,
        })
    }

    fn snapshot(s: &mut QuotingStrategy, now: u64, out: &mut Vec<OrderRequest>) {
        let first = BookFlags::FIRST.with(BookFlags::SNAPSHOT);
        let last = BookFlags::LAST.with(BookFlags::SNAPSHOT);
        let mut push = |r| {
            out.push(r);
            true
        };
        for r in [
            row(Side::Bid, 99, 5, BookAction::New, first),
            row(Side::Bid, 98, 5, BookAction::New, BookFlags::SNAPSHOT),
            row(Side::Ask, 101, 5, BookAction::New, BookFlags::SNAPSHOT),
            row(Side::Ask, 102, 5, BookAction::New, last),
        ] {
            s.on_record(now, &r, &mut push);
        }
    }

    fn event(tag: u64, kind: OrderEventKind) -> OrderEvent {
        OrderEvent {
            at_ns: 0,
            tag,
            id: ClientOrderId(tag),
            resolved: false,
            kind,
        }
    }

    #[test]
    fn book_tracks_top_through_snapshot_and_changes() {
        let mut s = QuotingStrategy::new(QuoteConfig::default());
        snapshot(&mut s, 0, &mut Vec::new());
        let b = s.book(InstrumentId(0)).unwrap();
        assert!(b.is_synced());
        assert_eq!(b.best_bid(), Some((px(99), px(5))));
        assert_eq!(b.best_ask(), Some((px(101), px(5))));
        assert_eq!(b.mid(), Some(px(100)));
        let both = BookFlags::FIRST.with(BookFlags::LAST);
        let mut none = |_| true;
        s.on_record(
            0,
            &row(Side::Bid, 99, 0, BookAction::Delete, both),
            &mut none,
        );
        assert_eq!(
            s.book(InstrumentId(0)).unwrap().best_bid().unwrap().0,
            px(98)
        );
        s.on_record(0, &row(Side::Ask, 100, 3, BookAction::New, both), &mut none);
        assert_eq!(
            s.book(InstrumentId(0)).unwrap().best_ask().unwrap().0,
            px(100)
        );
    }

    #[test]
    fn quotes_both_sides_at_the_top_once_the_book_is_synced() {
        let mut s = QuotingStrategy::new(QuoteConfig::default());
        assert!(s.quote(InstrumentId(0), px(10)));
        let mut out = Vec::new();
        snapshot(&mut s, 0, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        let prices: Vec<_> = out
            .iter()
            .map(|r| match r {
                OrderRequest::New(n) => (n.direction, n.price.unwrap(), n.post_only),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            prices,
            [
                (Direction::Buy, px(99), true),
                (Direction::Sell, px(101), true)
            ]
        );
        assert_eq!(s.in_flight(), 2);
    }

    #[test]
    fn mid_move_cancels_and_replaces_live_orders_only_after_the_interval() {
        let cfg = QuoteConfig {
            requote_interval_ns: 1_000,
            ..QuoteConfig::default()
        };
        let mut s = QuotingStrategy::new(cfg);
        s.quote(InstrumentId(0), px(10));
        let mut out = Vec::new();
        snapshot(&mut s, 0, &mut out);
        s.on_order_event(&event(1, OrderEventKind::Accepted));
        s.on_order_event(&event(2, OrderEventKind::Accepted));
        assert_eq!(s.live_orders(), 2);
        out.clear();
        let both = BookFlags::FIRST.with(BookFlags::LAST);
        let new_bid = row(Side::Bid, 100, 1, BookAction::New, both);
        let mut push = |r| {
            out.push(r);
            true
        };
        s.on_record(500, &new_bid, &mut push);
        s.on_record(600, &new_bid, &mut push);
        let early = out.len();
        let mut push = |r| {
            out.push(r);
            true
        };
        s.on_record(
            2_000,
            &row(Side::Bid, 100, 2, BookAction::Change, both),
            &mut push,
        );
        assert_eq!(early, 0, "requoted before the interval");
        assert_eq!(out[0], OrderRequest::Cancel { tag: 1 });
        assert!(matches!(out[1], OrderRequest::New(n) if n.price == Some(px(100)) && n.tag == 3));
        assert_eq!(out.len(), 2, "the ask did not move: {out:?}");
        assert_eq!(s.counters().requotes, 1);
        s.on_order_event(&event(1, OrderEventKind::Cancelled));
        assert_eq!(s.counters().cancelled, 1);
        assert!(s.tracked().iter().all(|t| t.tag != 1));
    }

    #[test]
    fn a_stopped_strategy_keeps_its_books_but_sends_nothing() {
        let mut s = QuotingStrategy::new(QuoteConfig::default());
        s.quote(InstrumentId(0), px(10));
        s.stop_quoting();
        let mut out = Vec::new();
        snapshot(&mut s, 0, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(s.book(InstrumentId(0)).unwrap().mid(), Some(px(100)));
    }

    #[test]
    fn a_full_ring_is_counted_and_retried() {
        let mut s = QuotingStrategy::new(QuoteConfig::default());
        s.quote(InstrumentId(0), px(10));
        let first = BookFlags::FIRST.with(BookFlags::SNAPSHOT);
        let last = BookFlags::LAST.with(BookFlags::SNAPSHOT);
        let mut full = |_| false;
        s.on_record(0, &row(Side::Bid, 99, 5, BookAction::New, first), &mut full);
        s.on_record(0, &row(Side::Ask, 101, 5, BookAction::New, last), &mut full);
        assert_eq!(s.counters().push_failed, 2);
        assert_eq!(s.counters().sent, 0);
        let mut out = Vec::new();
        snapshot(&mut s, 1, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn stale_book_stops_quoting_until_the_next_snapshot() {
        let mut s = QuotingStrategy::new(QuoteConfig::default());
        s.quote(InstrumentId(0), px(10));
        snapshot(&mut s, 0, &mut Vec::new());
        s.on_order_event(&event(
            1,
            OrderEventKind::Filled(crate::orders::Fill {
                price: px(99),
                amount: px(10),
                filled_total: px(10),
                trade_seq: 1,
            }),
        ));
        s.on_session_event(&SessionEvent {
            at_ns: 0,
            kind: EventKind::RecordsDropped {
                instrument: InstrumentId(0),
                records: 7,
            },
        });
        assert!(!s.book(InstrumentId(0)).unwrap().is_synced());
        assert_eq!(s.counters().ring_drops, 7);
        let mut out = Vec::new();
        let both = BookFlags::FIRST.with(BookFlags::LAST);
        let mut push = |r| {
            out.push(r);
            true
        };
        s.on_record(
            0,
            &row(Side::Bid, 99, 1, BookAction::Change, both),
            &mut push,
        );
        assert!(out.is_empty(), "quoted on a stale book: {out:?}");
        snapshot(&mut s, 0, &mut out);
        assert_eq!(out.len(), 1, "refills the filled bid only: {out:?}");
        assert!(matches!(out[0], OrderRequest::New(n) if n.direction == Direction::Buy));
    }
}
