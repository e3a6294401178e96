//! The journal's records: the public [`JournalRecord`] and its explicit little-endian encoding
//! into fixed 128-byte slots (no transmute of Rust structs).
//!
//! # Slot layout (all integers little-endian)
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | sequence number (dense from 1 in each file) |
//! | 8..16 | Unix time of the append, ns |
//! | 16..24 | [`ClientOrderId`] |
//! | 24..32 | strategy tag |
//! | 32 | kind ([`RecordKind`] code) |
//! | 33..124 | kind-specific payload, zero-padded |
//! | 124..128 | CRC-32C of bytes 0..124 |

use crate::md::{Direction, Fixed, MAX_NAME_LEN};
use crate::orders::{ClientOrderId, Fill, ReasonText, REASON_LEN};
use crate::venue::deribit::{OrderType, TimeInForce};

/// Size of one record slot (and of the file header), bytes.
pub const RECORD_SIZE: usize = 128;
/// Longest venue order id a record holds, bytes (Deribit's look like `ETH-584849853`).
pub const VENUE_ORDER_ID_LEN: usize = 32;

const SEQ: usize = 0;
const AT: usize = 8;
const ID: usize = 16;
const TAG: usize = 24;
const KIND: usize = 32;
const P: usize = 33;
const CRC: usize = 124;

/// An instrument name as the journal keeps it (ids of the instrument table change across runs,
/// names do not): at most [`MAX_NAME_LEN`] bytes of UTF-8, not empty.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstrumentName {
    /// Invariant: `1 <= len <= MAX_NAME_LEN` and `bytes[..len]` is UTF-8.
    len: u8,
    /// The name, zero after `len`.
    bytes: [u8; MAX_NAME_LEN],
}

impl InstrumentName {
    /// Copies `name`; `None` when it is empty or longer than [`MAX_NAME_LEN`] bytes.
    pub fn new(name: &str) -> Option<InstrumentName> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_NAME_LEN];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(InstrumentName {
            len: name.len() as u8,
            bytes,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl std::fmt::Debug for InstrumentName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The venue's id of an accepted order: at most [`VENUE_ORDER_ID_LEN`] bytes of UTF-8, not empty.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VenueOrderId {
    /// Invariant: `1 <= len <= VENUE_ORDER_ID_LEN` and `bytes[..len]` is UTF-8.
    len: u8,
    /// The id, zero after `len`.
    bytes: [u8; VENUE_ORDER_ID_LEN],
}

impl VenueOrderId {
    /// Copies `id`; `None` when it is empty or longer than [`VENUE_ORDER_ID_LEN`] bytes.
    pub fn new(id: &str) -> Option<VenueOrderId> {
        if id.is_empty() || id.len() > VENUE_ORDER_ID_LEN {
            return None;
        }
        let mut bytes = [0u8; VENUE_ORDER_ID_LEN];
        bytes[..id.len()].copy_from_slice(id.as_bytes());
        Some(VenueOrderId {
            len: id.len() as u8,
            bytes,
        })
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl std::fmt::Debug for VenueOrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A new order as journaled before its bytes leave: everything needed to send it again after a
/// restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderIntent {
    /// Instrument, by name.
    pub instrument: InstrumentName,
    /// Buy or sell.
    pub direction: Direction,
    /// Limit or market.
    pub order_type: OrderType,
    /// Limit price (`None` for market orders).
    pub price: Option<Fixed>,
    /// Amount.
    pub amount: Fixed,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Post-only.
    pub post_only: bool,
    /// Reduce-only.
    pub reduce_only: bool,
    /// Until when the order may still be sent (first send or re-send), Unix ms; `0`: no limit.
    pub ttl_deadline_unix_ms: u64,
}

/// Why an order is done (the [`JournalRecord::Final`] record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinalReason {
    /// Completely filled.
    Filled,
    /// Cancelled (by request, cancel-on-disconnect or the venue).
    Cancelled,
    /// Rejected by the venue.
    Rejected,
    /// Never received by the venue and its time-to-live passed.
    Expired,
    /// Refused by the engine after its intent was journaled (nothing reached the venue).
    Refused,
}

/// The kind of a record (its code in byte 32 of the slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// [`JournalRecord::Intent`].
    Intent = 1,
    /// [`JournalRecord::Sent`].
    Sent = 2,
    /// [`JournalRecord::Accepted`].
    Accepted = 3,
    /// [`JournalRecord::Rejected`].
    Rejected = 4,
    /// [`JournalRecord::Fill`].
    Fill = 5,
    /// [`JournalRecord::CancelIntent`].
    CancelIntent = 6,
    /// [`JournalRecord::EditIntent`].
    EditIntent = 7,
    /// [`JournalRecord::Edited`].
    Edited = 8,
    /// [`JournalRecord::Cancelled`].
    Cancelled = 9,
    /// [`JournalRecord::Expired`].
    Expired = 10,
    /// [`JournalRecord::Resent`].
    Resent = 11,
    /// [`JournalRecord::Unknown`].
    Unknown = 12,
    /// [`JournalRecord::Final`].
    Final = 13,
    /// [`JournalRecord::Consumed`].
    Consumed = 14,
}

/// One journal record: what happened to which order. Every variant carries the order's
/// [`ClientOrderId`] and the strategy's tag; the sequence number and the timestamp are added by
/// the journal ([`JournalEntry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalRecord {
    /// A new order, written before its bytes leave.
    Intent {
        /// The order's id.
        id: ClientOrderId,
        /// The strategy's tag.
        tag: u64,
        /// The order.
        intent: OrderIntent,
    },
    /// The request was written to the socket.
    Sent {
        /// The order's id.
        id: ClientOrderId,
        /// The strategy's tag.
        tag: u64,
        /// 1 for the first send, 2 for the first re-send, ...
        attempt: u32,
    },
    /// The venue accepted the order.
    Accepted {
        /// The order's id.
        id: ClientOrderId,
        /// The strategy's tag.
        tag: u64,
        /// The venue's order id.
        venue_order_id: VenueOrderId,
    },
    /// The venue refused the order.
    Rejected {
        /// The order's id.
        id: ClientOrderId,
        /// The strategy's tag.
        tag: u64,
        /// The venue's error code.
        code: i64,
        /// The venue's reason text (truncated).
        reason: ReasonText,
    },
    /// A fill.
    Fill {
        /// The order's id.
        id: ClientOrderId,
        /// The strategy's tag.
        tag: u64,
        /// The fill.
        fill: Fill,
    },
    /// A cancel request is about to be sent.
    CancelIntent {
        /// The order's id.
        id: ClientOrderId,
        /// The strategy's tag.
        tag: u64,
    },
    /// An edit request is about to be sent.
    EditIntent {
        /// The order's id.
        id: ClientOrderId,
        /// The strategy's tag.
        tag: u64,
        /// Amount asked for.
        amount: Fixed,
        /// Price asked for (`None`: unchanged).
        price: Option<Fixed>,
    },
    /// The venue accepted an edit.
    Edited {
        /// The order's id.
        id: ClientOrderId,
        /// The strategy's tag.
        tag: u64,
        /// Amount now.
        amount: Fixed,
        /// Price now (`None`: unchanged).
        price: Option<Fixed>,
    },
    /// The order was cancelled.
    Cancelled {
        /// The order's id.
        id: ClientOrderId,
        /// The strategy's tag.
        tag: u64,
    },
    /// The order was never received and its time-to-live passed: it will not be sent.
    Expired {
        /// The order's id.
        id: ClientOrderId,
        /// The strategy's tag.
        tag: u64,
    },
    /// The order was found never received and was sent again (same label).
    Resent {
        /// The order's id.
        id: ClientOrderId,
        /// The strategy's tag.
        tag: u64,
    },
    /// The connection dropped while the order's fate was open.
    Unknown {
        /// The order's id.
        id: ClientOrderId,
        /// The strategy's tag.
        tag: u64,
    },
    /// The order is done: recovery forgets it, and compaction drops its records once every
    /// event they caused was consumed ([`JournalRecord::Consumed`]).
    Final {
        /// The order's id.
        id: ClientOrderId,
        /// The strategy's tag.
        tag: u64,
        /// Why.
        reason: FinalReason,
    },
    /// The strategy has taken every order event caused by the records up to `upto_seq` (this
    /// file's sequence numbers) off the OrderEvent ring: after a restart only the events of
    /// later records are replayed. Names no order (id and tag 0). Written by the session
    /// driver at most once per loop turn, when the count of events taken moved.
    Consumed {
        /// Sequence number of the last record whose events the strategy has taken.
        upto_seq: u64,
    },
}

impl JournalRecord {
    /// The order's id.
    pub const fn id(&self) -> ClientOrderId {
        match *self {
            JournalRecord::Intent { id, .. }
            | JournalRecord::Sent { id, .. }
            | JournalRecord::Accepted { id, .. }
            | JournalRecord::Rejected { id, .. }
            | JournalRecord::Fill { id, .. }
            | JournalRecord::CancelIntent { id, .. }
            | JournalRecord::EditIntent { id, .. }
            | JournalRecord::Edited { id, .. }
            | JournalRecord::Cancelled { id, .. }
            | JournalRecord::Expired { id, .. }
            | JournalRecord::Resent { id, .. }
            | JournalRecord::Unknown { id, .. }
            | JournalRecord::Final { id, .. } => id,
            JournalRecord::Consumed { .. } => ClientOrderId(0),
        }
    }

    /// The strategy's tag.
    pub const fn tag(&self) -> u64 {
        match *self {
            JournalRecord::Intent { tag, .. }
            | JournalRecord::Sent { tag, .. }
            | JournalRecord::Accepted { tag, .. }
            | JournalRecord::Rejected { tag, .. }
            | JournalRecord::Fill { tag, .. }
            | JournalRecord::CancelIntent { tag, .. }
            | JournalRecord::EditIntent { tag, .. }
            | JournalRecord::Edited { tag, .. }
            | JournalRecord::Cancelled { tag, .. }
            | JournalRecord::Expired { tag, .. }
            | JournalRecord::Resent { tag, .. }
            | JournalRecord::Unknown { tag, .. }
            | JournalRecord::Final { tag, .. } => tag,
            JournalRecord::Consumed { .. } => 0,
        }
    }

    /// The record's kind.
    pub const fn kind(&self) -> RecordKind {
        match self {
            JournalRecord::Intent { .. } => RecordKind::Intent,
            JournalRecord::Sent { .. } => RecordKind::Sent,
            JournalRecord::Accepted { .. } => RecordKind::Accepted,
            JournalRecord::Rejected { .. } => RecordKind::Rejected,
            JournalRecord::Fill { .. } => RecordKind::Fill,
            JournalRecord::CancelIntent { .. } => RecordKind::CancelIntent,
            JournalRecord::EditIntent { .. } => RecordKind::EditIntent,
            JournalRecord::Edited { .. } => RecordKind::Edited,
            JournalRecord::Cancelled { .. } => RecordKind::Cancelled,
            JournalRecord::Expired { .. } => RecordKind::Expired,
            JournalRecord::Resent { .. } => RecordKind::Resent,
            JournalRecord::Unknown { .. } => RecordKind::Unknown,
            JournalRecord::Final { .. } => RecordKind::Final,
            JournalRecord::Consumed { .. } => RecordKind::Consumed,
        }
    }
}

/// A record as read back: with the sequence number and timestamp the journal gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalEntry {
    /// Sequence number in its file (dense from 1; compaction renumbers).
    pub seq: u64,
    /// When it was appended, Unix ns.
    pub at_unix_ns: u64,
    /// The record.
    pub record: JournalRecord,
}

#[inline]
fn put_u64(b: &mut [u8; RECORD_SIZE], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[inline]
fn get_u64(b: &[u8; RECORD_SIZE], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[inline]
fn put_opt_fixed(b: &mut [u8; RECORD_SIZE], at: usize, v: Option<Fixed>) {
    if let Some(v) = v {
        b[at] = 1;
        put_u64(b, at + 1, v.raw() as u64);
    }
}

fn get_opt_fixed(b: &[u8; RECORD_SIZE], at: usize) -> Result<Option<Fixed>, &'static str> {
    match b[at] {
        0 => Ok(None),
        1 => Ok(Some(fixed(b, at + 1))),
        _ => Err("bad optional-price flag"),
    }
}

#[inline]
fn fixed(b: &[u8; RECORD_SIZE], at: usize) -> Fixed {
    Fixed::from_raw(get_u64(b, at) as i64)
}

/// Encodes `record` with its sequence number and timestamp into a full slot, checksum included.
/// `out` is overwritten entirely. Allocates nothing.
pub fn encode(record: &JournalRecord, seq: u64, at_unix_ns: u64, out: &mut [u8; RECORD_SIZE]) {
    *out = [0u8; RECORD_SIZE];
    put_u64(out, SEQ, seq);
    put_u64(out, AT, at_unix_ns);
    put_u64(out, ID, record.id().0);
    put_u64(out, TAG, record.tag());
    out[KIND] = record.kind() as u8;
    match *record {
        JournalRecord::Intent { intent, .. } => {
            let name = intent.instrument.as_str().as_bytes();
            out[P] = name.len() as u8;
            out[P + 1..P + 1 + name.len()].copy_from_slice(name);
            let q = P + 1 + MAX_NAME_LEN;
            out[q] = match intent.direction {
                Direction::Buy => 0,
                Direction::Sell => 1,
            };
            out[q + 1] = match intent.order_type {
                OrderType::Limit => 0,
                OrderType::Market => 1,
            };
            out[q + 2] = match intent.time_in_force {
                TimeInForce::GoodTilCancelled => 0,
                TimeInForce::GoodTilDay => 1,
                TimeInForce::FillOrKill => 2,
                TimeInForce::ImmediateOrCancel => 3,
            };
            out[q + 3] = u8::from(intent.post_only) << 1 | u8::from(intent.reduce_only) << 2;
            put_opt_fixed(out, q + 3 + 1, intent.price);
            put_u64(out, q + 13, intent.amount.raw() as u64);
            put_u64(out, q + 21, intent.ttl_deadline_unix_ms);
        }
        JournalRecord::Sent { attempt, .. } => {
            out[P..P + 4].copy_from_slice(&attempt.to_le_bytes());
        }
        JournalRecord::Accepted { venue_order_id, .. } => {
            let v = venue_order_id.as_str().as_bytes();
            out[P] = v.len() as u8;
            out[P + 1..P + 1 + v.len()].copy_from_slice(v);
        }
        JournalRecord::Rejected { code, reason, .. } => {
            put_u64(out, P, code as u64);
            let r = reason.as_str().as_bytes();
            out[P + 8] = r.len() as u8;
            out[P + 9..P + 9 + r.len()].copy_from_slice(r);
        }
        JournalRecord::Fill { fill, .. } => {
            put_u64(out, P, fill.price.raw() as u64);
            put_u64(out, P + 8, fill.amount.raw() as u64);
            put_u64(out, P + 16, fill.filled_total.raw() as u64);
            put_u64(out, P + 24, fill.trade_seq);
        }
        JournalRecord::EditIntent { amount, price, .. }
        | JournalRecord::Edited { amount, price, .. } => {
            put_u64(out, P, amount.raw() as u64);
            put_opt_fixed(out, P + 8, price);
        }
        JournalRecord::Final { reason, .. } => {
            out[P] = match reason {
                FinalReason::Filled => 0,
                FinalReason::Cancelled => 1,
                FinalReason::Rejected => 2,
                FinalReason::Expired => 3,
                FinalReason::Refused => 4,
            };
        }
        JournalRecord::Consumed { upto_seq } => put_u64(out, P, upto_seq),
        JournalRecord::CancelIntent { .. }
        | JournalRecord::Cancelled { .. }
        | JournalRecord::Expired { .. }
        | JournalRecord::Resent { .. }
        | JournalRecord::Unknown { .. } => {}
    }
    let crc = crc32c::crc32c(&out[..CRC]);
    out[CRC..].copy_from_slice(&crc.to_le_bytes());
}

/// Whether a slot's checksum matches its contents.
pub fn checksum_ok(b: &[u8; RECORD_SIZE]) -> bool {
    let mut c = [0u8; 4];
    c.copy_from_slice(&b[CRC..]);
    crc32c::crc32c(&b[..CRC]) == u32::from_le_bytes(c)
}

/// The sequence number field of a slot (checksum not checked).
pub fn seq_of(b: &[u8; RECORD_SIZE]) -> u64 {
    get_u64(b, SEQ)
}

/// Decodes a slot whose checksum is known good. Errors name what is wrong in the payload.
pub fn decode(b: &[u8; RECORD_SIZE]) -> Result<JournalEntry, &'static str> {
    let id = ClientOrderId(get_u64(b, ID));
    let tag = get_u64(b, TAG);
    let record = match b[KIND] {
        1 => {
            let len = b[P] as usize;
            if len == 0 || len > MAX_NAME_LEN {
                return Err("bad instrument name length");
            }
            let name = std::str::from_utf8(&b[P + 1..P + 1 + len])
                .map_err(|_| "instrument name is not UTF-8")?;
            let instrument = InstrumentName::new(name).ok_or("bad instrument name")?;
            let q = P + 1 + MAX_NAME_LEN;
            let direction = match b[q] {
                0 => Direction::Buy,
                1 => Direction::Sell,
                _ => return Err("bad direction"),
            };
            let order_type = match b[q + 1] {
                0 => OrderType::Limit,
                1 => OrderType::Market,
                _ => return Err("bad order type"),
            };
            let time_in_force = match b[q + 2] {
                0 => TimeInForce::GoodTilCancelled,
                1 => TimeInForce::GoodTilDay,
                2 => TimeInForce::FillOrKill,
                3 => TimeInForce::ImmediateOrCancel,
                _ => return Err("bad time in force"),
            };
            let flags = b[q + 3];
            if flags & !0b110 != 0 {
                return Err("bad order flags");
            }
            JournalRecord::Intent {
                id,
                tag,
                intent: OrderIntent {
                    instrument,
                    direction,
                    order_type,
                    price: get_opt_fixed(b, q + 4)?,
                    amount: fixed(b, q + 13),
                    time_in_force,
                    post_only: flags & 0b010 != 0,
                    reduce_only: flags & 0b100 != 0,
                    ttl_deadline_unix_ms: get_u64(b, q + 21),
                },
            }
        }
        2 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[P..P + 4]);
            JournalRecord::Sent {
                id,
                tag,
                attempt: u32::from_le_bytes(a),
            }
        }
        3 => {
            let len = b[P] as usize;
            if len == 0 || len > VENUE_ORDER_ID_LEN {
                return Err("bad venue order id length");
            }
            let v = std::str::from_utf8(&b[P + 1..P + 1 + len])
                .map_err(|_| "venue order id is not UTF-8")?;
            JournalRecord::Accepted {
                id,
                tag,
                venue_order_id: VenueOrderId::new(v).ok_or("bad venue order id")?,
            }
        }
        4 => {
            let len = b[P + 8] as usize;
            if len > REASON_LEN {
                return Err("bad reason length");
            }
            let r =
                std::str::from_utf8(&b[P + 9..P + 9 + len]).map_err(|_| "reason is not UTF-8")?;
            JournalRecord::Rejected {
                id,
                tag,
                code: get_u64(b, P) as i64,
                reason: ReasonText::new(r),
            }
        }
        5 => JournalRecord::Fill {
            id,
            tag,
            fill: Fill {
                price: fixed(b, P),
                amount: fixed(b, P + 8),
                filled_total: fixed(b, P + 16),
                trade_seq: get_u64(b, P + 24),
            },
        },
        6 => JournalRecord::CancelIntent { id, tag },
        7 => JournalRecord::EditIntent {
            id,
            tag,
            amount: fixed(b, P),
            price: get_opt_fixed(b, P + 8)?,
        },
        8 => JournalRecord::Edited {
            id,
            tag,
            amount: fixed(b, P),
            price: get_opt_fixed(b, P + 8)?,
        },
        9 => JournalRecord::Cancelled { id, tag },
        10 => JournalRecord::Expired { id, tag },
        11 => JournalRecord::Resent { id, tag },
        12 => JournalRecord::Unknown { id, tag },
        13 => JournalRecord::Final {
            id,
            tag,
            reason: match b[P] {
                0 => FinalReason::Filled,
                1 => FinalReason::Cancelled,
                2 => FinalReason::Rejected,
                3 => FinalReason::Expired,
                4 => FinalReason::Refused,
                _ => return Err("bad final reason"),
            },
        },
        14 if id.0 == 0 && tag == 0 => JournalRecord::Consumed {
            upto_seq: get_u64(b, P),
        },
        14 => return Err("consumed mark names an order"),
        _ => return Err("unknown record kind"),
    };
    Ok(JournalEntry {
        seq: get_u64(b, SEQ),
        at_unix_ns: get_u64(b, AT),
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_payload_fits_the_slot() {
        // name length + name + 4 enum/flag bytes + price flag + price + amount + ttl.
        const { assert!(P + 1 + MAX_NAME_LEN + 4 + 9 + 8 + 8 <= CRC) };
        const { assert!(P + 9 + REASON_LEN <= CRC) };
        const { assert!(P + 1 + VENUE_ORDER_ID_LEN <= CRC) };
    }

    #[test]
    fn a_flipped_bit_breaks_the_checksum() {
        let mut b = [0u8; RECORD_SIZE];
        let r = JournalRecord::Cancelled {
            id: ClientOrderId(7),
            tag: 3,
        };
        encode(&r, 1, 2, &mut b);
        assert!(checksum_ok(&b));
        for i in 0..RECORD_SIZE {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(!checksum_ok(&c), "byte {i}");
        }
    }
}
