//! The fixed-size market-data records.

use super::fixed::Fixed;
use super::instruments::InstrumentId;

/// Book side of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Bids (buy side).
    Bid,
    /// Asks (sell side).
    Ask,
}

/// What a book row does to its price level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BookAction {
    /// A level appears (every row of a snapshot is `New`).
    New,
    /// A level's amount changes; `amount` is the new level total.
    Change,
    /// A level disappears (`amount` is 0).
    Delete,
}

/// Direction of a trade (the aggressor's side) or of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

impl Direction {
    /// `"buy"` or `"sell"`, as venues spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Buy => "buy",
            Direction::Sell => "sell",
        }
    }
}

/// Flags of a [`BookRow`] (a bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BookFlags(u8);

impl BookFlags {
    /// The first row of its message.
    pub const FIRST: BookFlags = BookFlags(1);
    /// The last row of its message: the message is complete once this row is applied.
    pub const LAST: BookFlags = BookFlags(2);
    /// The row belongs to a snapshot: the book is replaced by the rows from `FIRST` to `LAST`.
    pub const SNAPSHOT: BookFlags = BookFlags(4);

    /// No flags.
    pub const fn empty() -> BookFlags {
        BookFlags(0)
    }
    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: BookFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// `self` with the flags of `other` added.
    pub const fn with(self, other: BookFlags) -> BookFlags {
        BookFlags(self.0 | other.0)
    }
}

/// Flags of a [`Trade`] (a bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TradeFlags(u8);

impl TradeFlags {
    /// The first trade of its message.
    pub const FIRST: TradeFlags = TradeFlags(1);
    /// The last trade of its message.
    pub const LAST: TradeFlags = TradeFlags(2);
    /// The venue's trade id was not a decimal `u64`; [`Trade::trade_id`] is a 64-bit FNV-1a hash
    /// of its text (stable, but not the venue's number).
    pub const ID_HASHED: TradeFlags = TradeFlags(4);
    /// The trade was a liquidation (Deribit's `liquidation` field was present).
    pub const LIQUIDATION: TradeFlags = TradeFlags(8);
    /// The trade was a block trade (Deribit's `block_trade_id` was present).
    pub const BLOCK_TRADE: TradeFlags = TradeFlags(16);

    /// No flags.
    pub const fn empty() -> TradeFlags {
        TradeFlags(0)
    }
    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: TradeFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// `self` with the flags of `other` added.
    pub const fn with(self, other: TradeFlags) -> TradeFlags {
        TradeFlags(self.0 | other.0)
    }
}

/// One row of a book snapshot or change message.
///
/// Every row carries its message's header (`change_id`, `prev_change_id`, timestamps) so that
/// rows can travel one by one over a ring; the rows of one message are contiguous, from the row
/// flagged [`BookFlags::FIRST`] to the one flagged [`BookFlags::LAST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookRow {
    /// The message's `change_id`.
    pub change_id: u64,
    /// The message's `prev_change_id` (0 in a snapshot, which has none).
    pub prev_change_id: u64,
    /// Price of the level.
    pub price: Fixed,
    /// Level total after the change (0 for [`BookAction::Delete`]).
    pub amount: Fixed,
    /// Exchange timestamp of the message, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Send time stamped by the spinwire simulator, ns since the Unix epoch (0 when absent).
    pub sw_send_ns: u64,
    /// Instrument.
    pub instrument: InstrumentId,
    /// Side of the level.
    pub side: Side,
    /// What happens to the level.
    pub action: BookAction,
    /// First/last row of the message, snapshot.
    pub flags: BookFlags,
}

/// One public trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trade {
    /// Venue's per-instrument trade sequence number.
    pub trade_seq: u64,
    /// Venue's trade id when decimal, else a hash of it (see [`TradeFlags::ID_HASHED`]).
    pub trade_id: u64,
    /// Trade price.
    pub price: Fixed,
    /// Trade amount.
    pub amount: Fixed,
    /// Exchange timestamp, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Send time stamped by the spinwire simulator, ns since the Unix epoch (0 when absent).
    pub sw_send_ns: u64,
    /// Instrument.
    pub instrument: InstrumentId,
    /// Aggressor's direction.
    pub direction: Direction,
    /// Deribit's tick direction: 0 plus tick, 1 zero-plus tick, 2 minus tick, 3 zero-minus tick
    /// (-1 when absent).
    pub tick_direction: i8,
    /// First/last of the message, id hashed, liquidation, block trade.
    pub flags: TradeFlags,
}

/// A decoded market-data record: what travels over the MarketData ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MdRecord {
    /// A book row.
    Book(BookRow),
    /// A public trade.
    Trade(Trade),
}

impl MdRecord {
    /// The instrument the record belongs to.
    pub const fn instrument(&self) -> InstrumentId {
        match self {
            MdRecord::Book(r) => r.instrument,
            MdRecord::Trade(t) => t.instrument,
        }
    }

    /// Send time stamped by the spinwire simulator (0 when absent).
    pub const fn sw_send_ns(&self) -> u64 {
        match self {
            MdRecord::Book(r) => r.sw_send_ns,
            MdRecord::Trade(t) => t.sw_send_ns,
        }
    }

    /// Whether this is the last record of its message.
    pub const fn is_last(&self) -> bool {
        match self {
            MdRecord::Book(r) => r.flags.contains(BookFlags::LAST),
            MdRecord::Trade(t) => t.flags.contains(TradeFlags::LAST),
        }
    }
}

impl Default for MdRecord {
    fn default() -> MdRecord {
        MdRecord::Book(BookRow {
            change_id: 0,
            prev_change_id: 0,
            price: Fixed::ZERO,
            amount: Fixed::ZERO,
            timestamp_ms: 0,
            sw_send_ns: 0,
            instrument: InstrumentId(0),
            side: Side::Bid,
            action: BookAction::New,
            flags: BookFlags::empty(),
        })
    }
}

// The records must stay within one cache line.
const _: () = assert!(std::mem::size_of::<BookRow>() <= 56);
const _: () = assert!(std::mem::size_of::<Trade>() <= 56);
const _: () = assert!(std::mem::size_of::<MdRecord>() <= 64);
