//! The synthetic market: instrument specifications, price-level books, the market-data event
//! log that connections read from, and a small deterministic RNG.
//!
//! A book level holds synthetic liquidity (`synth`) and a FIFO queue of resting user orders
//! (price-time priority: at one price the synthetic amount is older than any user order). The
//! public book publishes `synth + user_total` per price, so what a client sees is what it can
//! trade against.

use std::collections::{BTreeMap, VecDeque};

use super::fmt::PRICE_SCALE;

/// Static description of an instrument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstrumentSpec {
    /// Deribit instrument name, e.g. `BTC-PERPETUAL`.
    pub name: String,
    /// Currency of the instrument (the part before the first `-`), e.g. `BTC`.
    pub currency: String,
    /// Price increment in fixed-point units (10^-4).
    pub tick: i64,
    /// Contract size: amounts must be whole multiples of it (USD for perpetuals).
    pub contract: i64,
    /// Mid price the synthetic market starts from, fixed-point.
    pub base_price: i64,
}

impl InstrumentSpec {
    /// The specification the simulator uses for a name: BTC instruments trade in 0.5 ticks and
    /// 10 USD contracts around 60000, ETH in 0.05 ticks and 1 USD contracts around 3000, any
    /// other name in 0.01 ticks and unit contracts around 100.
    pub fn for_name(name: &str) -> InstrumentSpec {
        let currency = name.split('-').next().unwrap_or(name).to_string();
        let (tick, contract, base) = match currency.as_str() {
            "BTC" => (5_000, 10, 60_000),
            "ETH" => (500, 1, 3_000),
            _ => (100, 1, 100),
        };
        InstrumentSpec {
            name: name.to_string(),
            currency,
            tick,
            contract,
            base_price: base * PRICE_SCALE,
        }
    }
}

/// Book side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Buy orders.
    Bid,
    /// Sell orders.
    Ask,
}

/// Order or trade direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

impl Dir {
    /// `"buy"` or `"sell"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::Buy => "buy",
            Dir::Sell => "sell",
        }
    }
    /// The book side resting orders of this direction join.
    pub fn own_side(self) -> Side {
        match self {
            Dir::Buy => Side::Bid,
            Dir::Sell => Side::Ask,
        }
    }
    /// The book side an aggressor of this direction takes from.
    pub fn opposite_side(self) -> Side {
        match self {
            Dir::Buy => Side::Ask,
            Dir::Sell => Side::Bid,
        }
    }
}

/// Book row action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A price level appeared.
    New,
    /// A level's amount changed.
    Change,
    /// A level disappeared (amount 0).
    Delete,
}

impl Action {
    /// `"new"`, `"change"` or `"delete"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::New => "new",
            Action::Change => "change",
            Action::Delete => "delete",
        }
    }
}

/// What a market-data event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MdKind {
    /// One book row changed: `side`, `action`, `price`, `amount` (level total after the change),
    /// `id` = change_id, `aux` = prev_change_id.
    Book {
        /// Side of the level.
        side: Side,
        /// What happened to it.
        action: Action,
    },
    /// A public trade: `price`, `amount`, `id` = trade_id, `aux` = trade_seq.
    Trade {
        /// Aggressor direction.
        dir: Dir,
        /// Deribit tick direction: 0 plus, 1 zero-plus, 2 minus, 3 zero-minus.
        tick_dir: u8,
    },
}

/// One market-data event; fixed size, no heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MdEvent {
    /// Position in the log (dense, increasing).
    pub seq: u64,
    /// Venue timestamp, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Index of the instrument in the simulator's instrument list.
    pub inst: u16,
    /// Book row or trade.
    pub kind: MdKind,
    /// Price, fixed-point.
    pub price: i64,
    /// Amount (level total for book rows, traded amount for trades).
    pub amount: i64,
    /// change_id (book) or trade_id (trade).
    pub id: u64,
    /// prev_change_id (book) or trade_seq (trade).
    pub aux: u64,
    /// Mark/index price at the time of the event, fixed-point.
    pub mark: i64,
}

/// The ring of recent market-data events all connections read from.
#[derive(Debug)]
pub struct MdLog {
    /// Retained events, oldest first; `events[i].seq == first_seq() + i`.
    events: VecDeque<MdEvent>,
    /// Sequence number the next pushed event gets.
    next_seq: u64,
    /// Maximum retained events.
    cap: usize,
}

/// A reader asked for events older than the log retains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged {
    /// Oldest sequence still available.
    pub first_available: u64,
}

impl MdLog {
    /// An empty log retaining at most `cap` events.
    pub fn new(cap: usize) -> Self {
        MdLog {
            events: VecDeque::with_capacity(cap.min(1 << 16)),
            next_seq: 0,
            cap: cap.max(1),
        }
    }

    /// Sequence number the next event will get (one past the newest).
    pub fn head(&self) -> u64 {
        self.next_seq
    }

    /// Oldest retained sequence number.
    pub fn first_seq(&self) -> u64 {
        self.next_seq - self.events.len() as u64
    }

    /// Appends an event, assigning its sequence number; evicts the oldest when full.
    pub fn push(&mut self, mut ev: MdEvent) {
        ev.seq = self.next_seq;
        self.next_seq += 1;
        if self.events.len() == self.cap {
            self.events.pop_front();
        }
        self.events.push_back(ev);
    }

    /// Copies up to `max` events starting at `from` into `out` (cleared first).
    pub fn read(&self, from: u64, max: usize, out: &mut Vec<MdEvent>) -> Result<(), Lagged> {
        out.clear();
        let first = self.first_seq();
        if from < first {
            return Err(Lagged {
                first_available: first,
            });
        }
        let start = (from - first) as usize;
        let end = (start + max).min(self.events.len());
        if start < end {
            out.extend(self.events.range(start..end).copied());
        }
        Ok(())
    }
}

/// One price level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Level {
    /// Synthetic liquidity (ahead of every user order at this price).
    pub synth: i64,
    /// Resting user orders, oldest first (internal order numbers).
    pub users: VecDeque<u64>,
    /// Sum of the remaining amounts of `users`.
    pub user_total: i64,
}

impl Level {
    /// Published amount of the level.
    pub fn total(&self) -> i64 {
        self.synth + self.user_total
    }
}

/// The book of one instrument plus its market-data counters.
#[derive(Debug, Clone)]
pub struct Book {
    /// Bid levels by price.
    pub bids: BTreeMap<i64, Level>,
    /// Ask levels by price.
    pub asks: BTreeMap<i64, Level>,
    /// Last published change_id.
    pub change_id: u64,
    /// Synthetic mid: synthetic bids are below it, synthetic asks above it.
    pub mid: i64,
    /// Last trade_seq published.
    pub trade_seq: u64,
    /// Price of the last trade (0 before the first).
    pub last_trade: i64,
    /// Tick direction of the last trade.
    pub last_tick_dir: u8,
}

impl Book {
    /// A book around `mid` with `depth` synthetic levels per side, amounts from `amount`.
    pub fn new(
        spec: &InstrumentSpec,
        depth: usize,
        first_change_id: u64,
        mut amount: impl FnMut() -> i64,
    ) -> Book {
        let mut book = Book {
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            change_id: first_change_id,
            mid: spec.base_price,
            trade_seq: 0,
            last_trade: 0,
            last_tick_dir: 0,
        };
        for k in 1..=depth as i64 {
            let bid = Level {
                synth: amount(),
                ..Level::default()
            };
            book.bids.insert(spec.base_price - k * spec.tick, bid);
            let ask = Level {
                synth: amount(),
                ..Level::default()
            };
            book.asks.insert(spec.base_price + k * spec.tick, ask);
        }
        book
    }

    /// The levels of one side.
    pub fn side(&self, side: Side) -> &BTreeMap<i64, Level> {
        match side {
            Side::Bid => &self.bids,
            Side::Ask => &self.asks,
        }
    }

    /// The levels of one side, mutably.
    pub fn side_mut(&mut self, side: Side) -> &mut BTreeMap<i64, Level> {
        match side {
            Side::Bid => &mut self.bids,
            Side::Ask => &mut self.asks,
        }
    }

    /// Published amount at a price (0 when absent).
    pub fn total(&self, side: Side, price: i64) -> i64 {
        self.side(side).get(&price).map_or(0, Level::total)
    }

    /// Best price of a side: highest bid, lowest ask.
    pub fn best(&self, side: Side) -> Option<i64> {
        match side {
            Side::Bid => self.bids.keys().next_back().copied(),
            Side::Ask => self.asks.keys().next().copied(),
        }
    }

    /// Published rows of a side, best first: `(price, amount)`.
    pub fn rows(&self, side: Side) -> Vec<(i64, i64)> {
        let it = self.side(side).iter().map(|(p, l)| (*p, l.total()));
        match side {
            Side::Bid => it.rev().collect(),
            Side::Ask => it.collect(),
        }
    }
}

/// SplitMix64: small, fast, deterministic for a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for a seed.
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
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> MdEvent {
        MdEvent {
            seq: 0,
            ts_ms: 0,
            inst: 0,
            kind: MdKind::Trade {
                dir: Dir::Buy,
                tick_dir: 0,
            },
            price: 1,
            amount: 1,
            id: 0,
            aux: 0,
            mark: 0,
        }
    }

    #[test]
    fn log_reads_in_order_and_reports_lag_after_eviction() {
        let mut log = MdLog::new(4);
        for _ in 0..6 {
            log.push(ev());
        }
        assert_eq!(log.head(), 6);
        assert_eq!(log.first_seq(), 2);
        let mut out = Vec::new();
        log.read(3, 10, &mut out).unwrap();
        assert_eq!(out.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(
            log.read(1, 10, &mut out),
            Err(Lagged { first_available: 2 })
        );
        log.read(6, 10, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn fresh_book_is_uncrossed_with_depth_levels() {
        let spec = InstrumentSpec::for_name("BTC-PERPETUAL");
        let book = Book::new(&spec, 5, 100, || 10);
        assert_eq!(book.bids.len(), 5);
        assert!(book.best(Side::Bid).unwrap() < book.best(Side::Ask).unwrap());
        assert_eq!(book.rows(Side::Bid)[0].0, spec.base_price - spec.tick);
    }

    #[test]
    fn rng_is_deterministic_per_seed() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert!((0..1000).all(|_| a.below(10) < 10));
    }
}
