//! The decoder for what Deribit sends: classification, market data into md records.

use crate::md::{
    BookAction, BookFlags, BookRow, Direction, Fixed, InstrumentId, InstrumentTable, MdRecord,
    NumError, Side, Trade, TradeFlags,
};
use crate::venue::json::{JsonError, JsonStr, ReadError, Scanner, Value};

use super::channel::{Channel, Interval};
use super::types::{FromValue, Items, Order, Response, RpcError, UserTrade};

/// Why a message could not be decoded. Small and `Copy`: the hot-path error tier.
///
/// Every variant means the message is malformed or not what the session subscribed to: count
/// it, and treat the instrument's book as stale when the message was a book message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The text is not valid JSON (or nests too deep).
    #[error(transparent)]
    Json(#[from] JsonError),
    /// A field holds a value of the wrong JSON type.
    #[error("field `{field}` has the wrong JSON type")]
    WrongType {
        /// The field.
        field: &'static str,
    },
    /// A number does not fit (see [`crate::md::fixed`] for prices and amounts).
    #[error("field `{field}`: {error}")]
    Number {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        error: NumError,
    },
    /// A required field is absent.
    #[error("required field `{field}` is missing")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A field holds a value outside its set (an unknown book action, order state, ...).
    #[error("field `{field}` has an unexpected value")]
    BadValue {
        /// The field.
        field: &'static str,
    },
    /// A market-data channel names an instrument that is not in the [`InstrumentTable`].
    #[error("market data for an instrument not in the instrument table")]
    UnknownInstrument,
    /// The message holds more records than the output slice takes: lend a larger one.
    #[error("message holds more than {capacity} records (the output slice's length)")]
    OutputFull {
        /// Length of the output slice.
        capacity: usize,
    },
    /// Neither a notification (`method`) nor a response (`id` with `result` or `error`).
    #[error("not a JSON-RPC notification or response")]
    NotJsonRpc,
}

impl DecodeError {
    /// Attaches `field` to a typed-read error.
    #[inline]
    pub(crate) fn at(field: &'static str) -> impl Fn(ReadError) -> DecodeError {
        move |e| match e {
            ReadError::Json(j) => DecodeError::Json(j),
            ReadError::WrongType => DecodeError::WrongType { field },
            ReadError::Number(error) => DecodeError::Number { field, error },
        }
    }
}

impl From<ReadError> for DecodeError {
    fn from(e: ReadError) -> DecodeError {
        DecodeError::at("value")(e)
    }
}

/// Kind of a `heartbeat` notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatKind {
    /// `test_request`: answer with `public/test` now, or the server closes the connection.
    TestRequest,
    /// `heartbeat`: the server's own keep-alive; nothing to answer.
    Heartbeat,
}

/// A book message's header; its rows went to the output slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookUpdate {
    /// Instrument.
    pub instrument: InstrumentId,
    /// Channel interval.
    pub interval: Interval,
    /// `type: snapshot` (the book is replaced) rather than `change`.
    pub snapshot: bool,
    /// `change_id`.
    pub change_id: u64,
    /// `prev_change_id` (0 for a snapshot). A change whose `prev_change_id` is not the last
    /// `change_id` seen is a gap.
    pub prev_change_id: u64,
    /// Exchange timestamp, ms.
    pub timestamp_ms: u64,
    /// Simulator send time, ns (0 when absent).
    pub sw_send_ns: u64,
    /// Rows written to the output slice (`out[..rows]`, each an [`MdRecord::Book`]). May be 0:
    /// a change without rows still moves `change_id`.
    pub rows: usize,
}

/// A trades message; its trades went to the output slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradesUpdate {
    /// Instrument.
    pub instrument: InstrumentId,
    /// Channel interval.
    pub interval: Interval,
    /// Trades written to the output slice (`out[..trades]`, each an [`MdRecord::Trade`]).
    pub trades: usize,
}

/// A classified incoming message. Borrowed from the message text.
#[derive(Debug, Clone, Copy)]
pub enum Incoming<'a> {
    /// `book.{instrument}.{interval}` notification.
    Book(BookUpdate),
    /// `trades.{instrument}.{interval}` notification.
    Trades(TradesUpdate),
    /// `user.orders.{instrument}.{interval}` notification: one order (`raw`) or several.
    UserOrders {
        /// Instrument name from the channel.
        instrument: &'a str,
        /// The orders, decoded on iteration.
        orders: Items<'a, Order<'a>>,
    },
    /// `user.trades.{instrument}.{interval}` notification.
    UserTrades {
        /// Instrument name from the channel.
        instrument: &'a str,
        /// The fills, decoded on iteration.
        trades: Items<'a, UserTrade<'a>>,
    },
    /// A notification on a channel the codec does not decode (passed through).
    Subscription {
        /// The channel name.
        channel: JsonStr<'a>,
        /// `params.data`.
        data: Value<'a>,
    },
    /// A `heartbeat` notification.
    Heartbeat(HeartbeatKind),
    /// A response to one of our requests.
    Response(Response<'a>),
    /// A notification with another `method` (passed through).
    Notification {
        /// The method.
        method: JsonStr<'a>,
        /// Its `params`, if any.
        params: Option<Value<'a>>,
    },
}

/// Decodes one WebSocket text message from Deribit.
///
/// Market data is written into `out` (book rows or trades, in message order, flagged first and
/// last) and the returned [`Incoming::Book`] / [`Incoming::Trades`] says how many; nothing is
/// written past that count and, on error, nothing in `out` is meaningful (records are only
/// valid once the whole message decoded: all or nothing). Responses and private notifications
/// are returned as views borrowed from `text`.
///
/// Unknown fields are skipped anywhere (`usIn`, `usOut`, `usDiff`, `testnet`, new fields), and
/// member order does not matter. No allocation, no panic on any input.
///
/// # Errors
/// See [`DecodeError`].
#[inline]
pub fn decode<'a>(
    text: &'a str,
    instruments: &InstrumentTable,
    out: &mut [MdRecord],
) -> Result<Incoming<'a>, DecodeError> {
    // Book notifications in Deribit's own compact layout take a literal-matching fast path;
    // everything else (and anything it does not recognise) takes the general one.
    if let Some(incoming) = super::fast::book(text, instruments, out) {
        return Ok(incoming);
    }
    decode_general(text, instruments, out)
}

/// [`decode`] without its fast path for book notifications in Deribit's layout: the same result
/// for every input, slower for those. For tests and benchmarks.
pub fn decode_general<'a>(
    text: &'a str,
    instruments: &InstrumentTable,
    out: &mut [MdRecord],
) -> Result<Incoming<'a>, DecodeError> {
    let mut sc = Scanner::new(text);
    if sc.peek() != Some(b'{') {
        return Err(match sc.peek() {
            None => JsonError::Truncated.into(),
            Some(_) => match sc.value() {
                Ok(_) => DecodeError::NotJsonRpc,
                Err(e) => e.into(),
            },
        });
    }
    let mut method: Option<JsonStr<'a>> = None;
    let mut subscription = false;
    let mut params: Option<Value<'a>> = None;
    let mut id: Option<Value<'a>> = None;
    let mut result: Option<Value<'a>> = None;
    let mut error: Option<Value<'a>> = None;
    let mut decoded: Option<Incoming<'a>> = None;
    sc.object(|sc, key| -> Result<(), DecodeError> {
        match key.raw().as_bytes() {
            b"method" => {
                let m = sc.string().map_err(DecodeError::at("method"))?;
                subscription = m.raw() == "subscription";
                method = Some(m);
            }
            b"params" if subscription => {
                decoded = Some(subscription_params(sc, instruments, out)?);
            }
            b"params" => params = Some(sc.value()?),
            b"id" => id = Some(sc.value()?),
            b"result" => result = Some(sc.value()?),
            b"error" => error = Some(sc.value()?),
            _ => sc.skip()?,
        }
        Ok(())
    })?;
    sc.finish()?;

    if let Some(m) = method {
        return match m.raw() {
            "subscription" => {
                if let Some(d) = decoded {
                    Ok(d)
                } else if let Some(p) = params {
                    subscription_params(&mut Scanner::new(p.raw()), instruments, out)
                } else {
                    Err(DecodeError::MissingField { field: "params" })
                }
            }
            "heartbeat" => {
                let p = params.ok_or(DecodeError::MissingField { field: "params" })?;
                let t = p
                    .get("type")
                    .ok_or(DecodeError::MissingField { field: "type" })?
                    .str()
                    .map_err(DecodeError::at("type"))?;
                match t.raw() {
                    "test_request" => Ok(Incoming::Heartbeat(HeartbeatKind::TestRequest)),
                    "heartbeat" => Ok(Incoming::Heartbeat(HeartbeatKind::Heartbeat)),
                    _ => Err(DecodeError::BadValue { field: "type" }),
                }
            }
            _ => Ok(Incoming::Notification { method: m, params }),
        };
    }
    if id.is_none() && result.is_none() && error.is_none() {
        return Err(DecodeError::NotJsonRpc);
    }
    let id = match id {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) => Some(v.u64().map_err(DecodeError::at("id"))?),
    };
    let outcome = match (error, result) {
        (Some(e), _) => Err(RpcError::from_value(e)?),
        (None, Some(r)) => Ok(r),
        (None, None) => return Err(DecodeError::MissingField { field: "result" }),
    };
    Ok(Incoming::Response(Response { id, outcome }))
}

/// Decodes `params` of a `subscription` notification (cursor at the object).
fn subscription_params<'a>(
    sc: &mut Scanner<'a>,
    instruments: &InstrumentTable,
    out: &mut [MdRecord],
) -> Result<Incoming<'a>, DecodeError> {
    if sc.peek() != Some(b'{') {
        sc.value()?;
        return Err(DecodeError::WrongType { field: "params" });
    }
    let mut channel: Option<(JsonStr<'a>, Channel<'a>)> = None;
    let mut data: Option<Value<'a>> = None;
    let mut decoded: Option<Incoming<'a>> = None;
    sc.object(|sc, key| -> Result<(), DecodeError> {
        match key.raw().as_bytes() {
            b"channel" => {
                let s = sc.string().map_err(DecodeError::at("channel"))?;
                // A channel name with escapes is no channel we subscribe to.
                let ch = s.as_str().map_or(Channel::Other(s.raw()), Channel::parse);
                channel = Some((s, ch));
            }
            b"data" => match channel {
                // The usual order (channel first): decode in place, one pass.
                Some((raw, ch)) => decoded = Some(channel_data(sc, raw, ch, instruments, out)?),
                None => data = Some(sc.value()?),
            },
            _ => sc.skip()?,
        }
        Ok(())
    })?;
    if let Some(d) = decoded {
        return Ok(d);
    }
    let (raw, ch) = channel.ok_or(DecodeError::MissingField { field: "channel" })?;
    let data = data.ok_or(DecodeError::MissingField { field: "data" })?;
    channel_data(&mut Scanner::new(data.raw()), raw, ch, instruments, out)
}

fn channel_data<'a>(
    sc: &mut Scanner<'a>,
    raw: JsonStr<'a>,
    channel: Channel<'a>,
    instruments: &InstrumentTable,
    out: &mut [MdRecord],
) -> Result<Incoming<'a>, DecodeError> {
    match channel {
        Channel::Book {
            instrument,
            interval,
        } => {
            let id = instruments
                .get(instrument.as_bytes())
                .ok_or(DecodeError::UnknownInstrument)?;
            book(sc, id, interval, out).map(Incoming::Book)
        }
        Channel::Trades {
            instrument,
            interval,
        } => {
            let id = instruments
                .get(instrument.as_bytes())
                .ok_or(DecodeError::UnknownInstrument)?;
            trades(sc, id, interval, out).map(Incoming::Trades)
        }
        Channel::UserOrders { instrument, .. } => Ok(Incoming::UserOrders {
            instrument,
            orders: Items::one_or_many(sc.value()?, "data")?,
        }),
        Channel::UserTrades { instrument, .. } => Ok(Incoming::UserTrades {
            instrument,
            trades: Items::one_or_many(sc.value()?, "data")?,
        }),
        Channel::Other(_) => Ok(Incoming::Subscription {
            channel: raw,
            data: sc.value()?,
        }),
    }
}

/// Decodes book `data` (cursor at the object) into `out`.
#[inline]
fn book(
    sc: &mut Scanner<'_>,
    instrument: InstrumentId,
    interval: Interval,
    out: &mut [MdRecord],
) -> Result<BookUpdate, DecodeError> {
    if sc.peek() != Some(b'{') {
        sc.value()?;
        return Err(DecodeError::WrongType { field: "data" });
    }
    let mut snapshot: Option<bool> = None;
    let mut change_id: Option<u64> = None;
    let mut prev_change_id: Option<u64> = None;
    let mut timestamp_ms: Option<u64> = None;
    let mut sw_send_ns = 0u64;
    let mut n = 0usize;
    sc.object(|sc, key| -> Result<(), DecodeError> {
        match key.raw().as_bytes() {
            b"bids" => rows(sc, Side::Bid, instrument, out, &mut n, "bids")?,
            b"asks" => rows(sc, Side::Ask, instrument, out, &mut n, "asks")?,
            b"change_id" => change_id = Some(sc.u64().map_err(DecodeError::at("change_id"))?),
            b"prev_change_id" => {
                prev_change_id = Some(sc.u64().map_err(DecodeError::at("prev_change_id"))?)
            }
            b"timestamp" => timestamp_ms = Some(sc.u64().map_err(DecodeError::at("timestamp"))?),
            b"sw_send_ns" => sw_send_ns = sc.u64().map_err(DecodeError::at("sw_send_ns"))?,
            b"type" => {
                let t = sc.string().map_err(DecodeError::at("type"))?;
                snapshot = Some(match t.raw().as_bytes() {
                    b"change" => false,
                    b"snapshot" => true,
                    _ => return Err(DecodeError::BadValue { field: "type" }),
                });
            }
            _ => sc.skip()?,
        }
        Ok(())
    })?;
    let snapshot = snapshot.ok_or(DecodeError::MissingField { field: "type" })?;
    let change_id = change_id.ok_or(DecodeError::MissingField { field: "change_id" })?;
    let timestamp_ms = timestamp_ms.ok_or(DecodeError::MissingField { field: "timestamp" })?;
    let prev_change_id = match (snapshot, prev_change_id) {
        (false, None) => {
            return Err(DecodeError::MissingField {
                field: "prev_change_id",
            })
        }
        (_, p) => p.unwrap_or(0),
    };
    let base = if snapshot {
        BookFlags::SNAPSHOT
    } else {
        BookFlags::empty()
    };
    for (i, rec) in out[..n].iter_mut().enumerate() {
        if let MdRecord::Book(r) = rec {
            r.change_id = change_id;
            r.prev_change_id = prev_change_id;
            r.timestamp_ms = timestamp_ms;
            r.sw_send_ns = sw_send_ns;
            let mut f = base;
            if i == 0 {
                f = f.with(BookFlags::FIRST);
            }
            if i + 1 == n {
                f = f.with(BookFlags::LAST);
            }
            r.flags = f;
        }
    }
    Ok(BookUpdate {
        instrument,
        interval,
        snapshot,
        change_id,
        prev_change_id,
        timestamp_ms,
        sw_send_ns,
        rows: n,
    })
}

/// Decodes an array of `[action, price, amount]` rows (cursor at the array) into `out[*n..]`.
#[inline]
fn rows(
    sc: &mut Scanner<'_>,
    side: Side,
    instrument: InstrumentId,
    out: &mut [MdRecord],
    n: &mut usize,
    field: &'static str,
) -> Result<(), DecodeError> {
    if sc.peek() != Some(b'[') {
        sc.value()?;
        return Err(DecodeError::WrongType { field });
    }
    if !sc.begin_array().map_err(DecodeError::at(field))? {
        return Ok(());
    }
    loop {
        sc.skip_ws();
        let (action, price, amount) = match row_fast(sc.remaining()) {
            Some((a, p, q, len)) => {
                sc.advance(len);
                (a, p, q)
            }
            None => row(sc, field)?,
        };
        let capacity = out.len();
        let slot = out
            .get_mut(*n)
            .ok_or(DecodeError::OutputFull { capacity })?;
        *slot = MdRecord::Book(BookRow {
            change_id: 0,
            prev_change_id: 0,
            price,
            amount,
            timestamp_ms: 0,
            sw_send_ns: 0,
            instrument,
            side,
            action,
            flags: BookFlags::empty(),
        });
        *n += 1;
        if !sc.next_element()? {
            return Ok(());
        }
    }
}

/// The common compact row, `["change",60000.5,120.0]`, read straight from the bytes; `None`
/// for anything else (whitespace, other actions, extra elements, numbers that do not fit),
/// which [`row`] then reads (or reports) the general way.
#[inline(always)]
fn row_fast(b: &[u8]) -> Option<(BookAction, Fixed, Fixed, usize)> {
    let (action, mut j) = if b.starts_with(b"[\"change\",") {
        (BookAction::Change, 10)
    } else if b.starts_with(b"[\"new\",") {
        (BookAction::New, 7)
    } else if b.starts_with(b"[\"delete\",") {
        (BookAction::Delete, 10)
    } else {
        return None;
    };
    let (price, len) = Fixed::parse_prefix(b.get(j..)?).ok()?;
    j += len;
    if b.get(j) != Some(&b',') {
        return None;
    }
    j += 1;
    let (amount, len) = Fixed::parse_prefix(b.get(j..)?).ok()?;
    j += len;
    if b.get(j) != Some(&b']') {
        return None;
    }
    Some((action, price, amount, j + 1))
}

/// One `[action, price, amount, ...]` row, the general way (cursor at the row).
fn row(
    sc: &mut Scanner<'_>,
    field: &'static str,
) -> Result<(BookAction, Fixed, Fixed), DecodeError> {
    if !sc.begin_array().map_err(DecodeError::at(field))? {
        return Err(DecodeError::BadValue { field });
    }
    let action = match sc
        .string()
        .map_err(DecodeError::at("action"))?
        .raw()
        .as_bytes()
    {
        b"new" => BookAction::New,
        b"change" => BookAction::Change,
        b"delete" => BookAction::Delete,
        _ => return Err(DecodeError::BadValue { field: "action" }),
    };
    if !sc.next_element()? {
        return Err(DecodeError::MissingField { field: "price" });
    }
    let price = sc.fixed().map_err(DecodeError::at("price"))?;
    if !sc.next_element()? {
        return Err(DecodeError::MissingField { field: "amount" });
    }
    let amount = sc.fixed().map_err(DecodeError::at("amount"))?;
    // Positions past the third are not defined today: skip them.
    while sc.next_element()? {
        sc.skip()?;
    }
    Ok((action, price, amount))
}

/// 64-bit FNV-1a of a trade id that is not a decimal `u64`.
fn hash_id(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A trade id: a decimal string or number as `u64`, else hashed.
fn trade_id(sc: &mut Scanner<'_>) -> Result<(u64, bool), DecodeError> {
    match sc.peek() {
        Some(b'"') => {
            let s = sc.string().map_err(DecodeError::at("trade_id"))?;
            let raw = s.raw();
            match crate::md::parse_u64_prefix(raw.as_bytes()) {
                Ok((v, len)) if len == raw.len() && !raw.is_empty() => Ok((v, false)),
                _ => Ok((hash_id(raw), true)),
            }
        }
        _ => Ok((sc.u64().map_err(DecodeError::at("trade_id"))?, false)),
    }
}

/// Decodes trades `data` (cursor at the array of trade objects) into `out`.
fn trades(
    sc: &mut Scanner<'_>,
    instrument: InstrumentId,
    interval: Interval,
    out: &mut [MdRecord],
) -> Result<TradesUpdate, DecodeError> {
    if sc.peek() != Some(b'[') {
        sc.value()?;
        return Err(DecodeError::WrongType { field: "data" });
    }
    let mut n = 0usize;
    sc.array(|sc| -> Result<(), DecodeError> {
        if sc.peek() != Some(b'{') {
            sc.value()?;
            return Err(DecodeError::WrongType { field: "data" });
        }
        let mut trade_seq = None;
        let mut id = None;
        let mut timestamp_ms = None;
        let mut price = None;
        let mut amount = None;
        let mut direction = None;
        let mut tick_direction: i8 = -1;
        let mut sw_send_ns = 0;
        let mut flags = TradeFlags::empty();
        sc.object(|sc, key| -> Result<(), DecodeError> {
            match key.raw().as_bytes() {
                b"trade_seq" => trade_seq = Some(sc.u64().map_err(DecodeError::at("trade_seq"))?),
                b"trade_id" => id = Some(trade_id(sc)?),
                b"timestamp" => {
                    timestamp_ms = Some(sc.u64().map_err(DecodeError::at("timestamp"))?)
                }
                b"price" => price = Some(sc.fixed().map_err(DecodeError::at("price"))?),
                b"amount" => amount = Some(sc.fixed().map_err(DecodeError::at("amount"))?),
                b"direction" => direction = Some(direction_of(sc)?),
                b"tick_direction" => {
                    let t = sc.u64().map_err(DecodeError::at("tick_direction"))?;
                    if t > 3 {
                        return Err(DecodeError::BadValue {
                            field: "tick_direction",
                        });
                    }
                    tick_direction = t as i8;
                }
                b"sw_send_ns" => sw_send_ns = sc.u64().map_err(DecodeError::at("sw_send_ns"))?,
                b"liquidation" => {
                    if !sc.null()? {
                        sc.skip()?;
                        flags = flags.with(TradeFlags::LIQUIDATION);
                    }
                }
                b"block_trade_id" => {
                    if !sc.null()? {
                        sc.skip()?;
                        flags = flags.with(TradeFlags::BLOCK_TRADE);
                    }
                }
                _ => sc.skip()?,
            }
            Ok(())
        })?;
        let (trade_id, hashed) = id.ok_or(DecodeError::MissingField { field: "trade_id" })?;
        if hashed {
            flags = flags.with(TradeFlags::ID_HASHED);
        }
        let t = Trade {
            trade_seq: trade_seq.ok_or(DecodeError::MissingField { field: "trade_seq" })?,
            trade_id,
            price: price.ok_or(DecodeError::MissingField { field: "price" })?,
            amount: amount.ok_or(DecodeError::MissingField { field: "amount" })?,
            timestamp_ms: timestamp_ms.ok_or(DecodeError::MissingField { field: "timestamp" })?,
            sw_send_ns,
            instrument,
            direction: direction.ok_or(DecodeError::MissingField { field: "direction" })?,
            tick_direction,
            flags,
        };
        let capacity = out.len();
        let slot = out.get_mut(n).ok_or(DecodeError::OutputFull { capacity })?;
        *slot = MdRecord::Trade(t);
        n += 1;
        Ok(())
    })?;
    if let Some(MdRecord::Trade(t)) = out.first_mut().filter(|_| n > 0) {
        t.flags = t.flags.with(TradeFlags::FIRST);
    }
    if let Some(MdRecord::Trade(t)) = n.checked_sub(1).and_then(|i| out.get_mut(i)) {
        t.flags = t.flags.with(TradeFlags::LAST);
    }
    Ok(TradesUpdate {
        instrument,
        interval,
        trades: n,
    })
}

/// Reads `"buy"` / `"sell"`.
pub(crate) fn direction_of(sc: &mut Scanner<'_>) -> Result<Direction, DecodeError> {
    match sc.string().map_err(DecodeError::at("direction"))?.raw() {
        "buy" => Ok(Direction::Buy),
        "sell" => Ok(Direction::Sell),
        _ => Err(DecodeError::BadValue { field: "direction" }),
    }
}

/// Reads a [`Fixed`] from a [`Value`], naming `field` in errors.
pub(crate) fn fixed_of(v: Value<'_>, field: &'static str) -> Result<Fixed, DecodeError> {
    v.fixed().map_err(DecodeError::at(field))
}
