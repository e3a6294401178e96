//! The strategy-facing order types: what strategies push on the OrderRequest ring and what the
//! engine sends back on the OrderEvent ring. All `Copy`, no heap, fixed size.
//!
//! # Identities
//! - [`OrderRequest`]s name an order by the strategy's own `tag` (any `u64` the strategy picks,
//!   unique among its live orders). The strategy never has to wait for an id before it can
//!   cancel or edit.
//! - The engine mints a [`ClientOrderId`] per new order, unique across runs (the journal
//!   remembers the last one), and sends it to the venue as the order's label
//!   ([`ClientOrderId::write_label`], at most [`LABEL_LEN`] characters, inside Deribit's 64).
//!   Every [`OrderEvent`] carries both the tag and the id.

use crate::md::{Direction, Fixed, InstrumentId};
use crate::venue::deribit::{OrderType, TimeInForce};

/// An engine-minted client order id, unique across runs; sent to the venue as the label.
///
/// Invariant: none beyond `u64`; `0` is never minted (it means "no id yet").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ClientOrderId(pub u64);

/// Length of a label written by [`ClientOrderId::write_label`]: `sw` + 16 hex digits.
pub const LABEL_LEN: usize = 18;

impl ClientOrderId {
    /// Writes the label `sw` + 16 lower-case hex digits (e.g. `sw00000193a2b4c5d6`).
    pub fn write_label(self, out: &mut [u8; LABEL_LEN]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out[0] = b's';
        out[1] = b'w';
        for i in 0..16 {
            out[2 + i] = HEX[((self.0 >> (60 - 4 * i)) & 0xF) as usize];
        }
    }

    /// Parses a label written by [`ClientOrderId::write_label`]; `None` for any other text
    /// (orders of other clients on the same account).
    pub fn parse_label(label: &[u8]) -> Option<ClientOrderId> {
        if label.len() != LABEL_LEN || &label[..2] != b"sw" {
            return None;
        }
        let mut v = 0u64;
        for &c in &label[2..] {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            v = (v << 4) | d as u64;
        }
        (v != 0).then_some(ClientOrderId(v))
    }
}

/// A new order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewOrder {
    /// The strategy's handle for this order (unique among its live orders).
    pub tag: u64,
    /// Instrument (an id of the engine's instrument table).
    pub instrument: InstrumentId,
    /// Buy or sell.
    pub direction: Direction,
    /// Limit or market.
    pub order_type: OrderType,
    /// Limit price (`None` for market orders).
    pub price: Option<Fixed>,
    /// Amount (positive).
    pub amount: Fixed,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Post-only (rejected rather than repriced if it would take liquidity).
    pub post_only: bool,
    /// Reduce-only.
    pub reduce_only: bool,
    /// How long after the request the order may still be sent (first send or re-send after a
    /// drop), ms; `0`: no limit. An order whose time-to-live has passed is reported
    /// [`OrderEventKind::Expired`] instead of being sent.
    pub ttl_ms: u32,
}

/// What a strategy asks of the engine (the OrderRequest ring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderRequest {
    /// Place a new order.
    New(NewOrder),
    /// Cancel the order with this tag.
    Cancel {
        /// The order's tag.
        tag: u64,
    },
    /// Change the amount and/or price of the order with this tag.
    Edit {
        /// The order's tag.
        tag: u64,
        /// New amount.
        amount: Fixed,
        /// New price (`None`: unchanged).
        price: Option<Fixed>,
    },
    /// Cancel every open order of this engine (of one instrument, or all).
    CancelAll {
        /// Only this instrument's orders (`None`: all).
        instrument: Option<InstrumentId>,
    },
}

/// Why the engine refused or dropped a request itself (as opposed to the venue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalReason {
    /// The client-side rate limit is exhausted and the request queue is full.
    RateLimited,
    /// The in-flight order table is full.
    TooManyOrders,
    /// A live order already has this tag.
    DuplicateTag,
    /// No live order has this tag.
    UnknownTag,
    /// The instrument id is not in the engine's instrument table.
    UnknownInstrument,
    /// The request is invalid (non-positive amount, a limit order without a price, ...).
    Invalid,
    /// The journal could not record the intent (full or failed): nothing was sent.
    JournalUnavailable,
    /// The session has failed for good (bad credentials, banned): nothing can be sent.
    SessionFailed,
}

/// Up to this many bytes of the venue's reason text are kept in an event.
pub const REASON_LEN: usize = 40;

/// A short reason text, truncated to [`REASON_LEN`] bytes (on a UTF-8 boundary).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReasonText {
    len: u8,
    bytes: [u8; REASON_LEN],
}

impl ReasonText {
    /// Copies `s`, truncated to [`REASON_LEN`] bytes on a character boundary.
    pub fn new(s: &str) -> ReasonText {
        let mut end = s.len().min(REASON_LEN);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; REASON_LEN];
        bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        ReasonText {
            len: end as u8,
            bytes,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl Default for ReasonText {
    fn default() -> Self {
        ReasonText::new("")
    }
}

impl std::fmt::Debug for ReasonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One fill of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// Fill price.
    pub price: Fixed,
    /// Amount filled by this fill.
    pub amount: Fixed,
    /// Amount filled so far, this fill included.
    pub filled_total: Fixed,
    /// The venue's trade sequence number for the instrument (orders fills, detects doubles).
    pub trade_seq: u64,
}

/// What happened to an order (the OrderEvent ring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEventKind {
    /// The venue accepted the order (it rests, or filled at once: fills follow).
    Accepted,
    /// The venue refused it.
    Rejected {
        /// The venue's error code.
        code: i64,
        /// The venue's reason text.
        reason: ReasonText,
    },
    /// The engine refused or dropped the request itself; nothing reached the venue.
    Refused {
        /// Why.
        reason: LocalReason,
    },
    /// Part of the order filled.
    PartiallyFilled(Fill),
    /// The order is completely filled.
    Filled(Fill),
    /// The order was cancelled (by request, cancel-on-disconnect, or the venue).
    Cancelled,
    /// An edit was accepted.
    Edited {
        /// Amount now.
        amount: Fixed,
        /// Price now.
        price: Option<Fixed>,
    },
    /// The order was never received by the venue and its time-to-live has passed: it will not
    /// be sent.
    Expired,
    /// The connection dropped while the order's fate was open: the engine will find out after
    /// reconnect (an event with the outcome follows, and `resolved` says so).
    Unknown,
    /// An order in [`OrderEventKind::Unknown`] was found never received and was sent again
    /// (same label).
    Resent,
    /// The venue refused a cancel or an edit of a live order (the order itself stands).
    ChangeRejected {
        /// A cancel (else an edit).
        cancel: bool,
        /// The venue's error code.
        code: i64,
        /// The venue's reason text.
        reason: ReasonText,
    },
}

/// An order event: when, which order, what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderEvent {
    /// When, ns on the engine's clock.
    pub at_ns: u64,
    /// The strategy's tag (of the request, for refusals of cancel/edit/cancel-all too).
    pub tag: u64,
    /// The engine's id (`ClientOrderId(0)` for a refused request that never got one).
    pub id: ClientOrderId,
    /// The outcome was learned by reconciliation after a reconnect or a restart.
    pub resolved: bool,
    /// What.
    pub kind: OrderEventKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_round_trips_and_fits_deribit() {
        for v in [1u64, 0x193a_2b4c_5d6e, u64::MAX] {
            let mut l = [0u8; LABEL_LEN];
            ClientOrderId(v).write_label(&mut l);
            assert_eq!(ClientOrderId::parse_label(&l), Some(ClientOrderId(v)));
        }
        const { assert!(LABEL_LEN <= crate::venue::deribit::MAX_LABEL_CHARS) };
    }

    #[test]
    fn foreign_labels_are_not_ours() {
        for l in [
            &b""[..],
            b"my-order",
            b"sw0000000000000000",
            b"swXYZ0000000000001",
        ] {
            assert_eq!(ClientOrderId::parse_label(l), None, "{l:?}");
        }
    }

    #[test]
    fn reason_text_truncates_on_a_char_boundary() {
        let r = ReasonText::new(&"é".repeat(30));
        assert!(r.as_str().len() <= REASON_LEN);
        assert_eq!(r.as_str(), "é".repeat(20));
    }
}
