//! The fast path for book notifications laid out exactly as Deribit and the simulator write
//! them (compact, members in Deribit's order).
//!
//! It matches the fixed parts of the text as literals, 8 bytes at a time, and reads only the
//! variable parts (channel, numbers, rows), numbers a word at a time ([`crate::md::swar`]).
//! Anything else — another member order, whitespace, an unknown member, a number it does not
//! read in one go that the exact parser then refuses, any error — returns `None` and the general
//! decoder reads the message from the start, so both paths give the same result for every input
//! (tests check this on mutated and on random messages). The fast path exists for speed only.
//!
//! The message it reads, with `…` the variable parts:
//!
//! ```text
//! {"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.….raw","data":
//! {"type":"change","timestamp":…,"prev_change_id":…,"instrument_name":"…","change_id":…,
//! "bids":[["change",…,…],…],"asks":[…],"sw_send_ns":…}}}
//! ```
//!
//! (`type` may be `snapshot` without `prev_change_id`; the interval `raw`, `100ms` or `agg2`;
//! `sw_send_ns` is the simulator's and optional.)

use crate::md::swar::{self, first_flag, starts_with_at, word};
use crate::md::{
    parse_u64_prefix, BookAction, BookFlags, BookRow, Fixed, InstrumentTable, MdRecord, Side,
    MAX_NAME_LEN,
};

use super::channel::Interval;
use super::decode::{BookUpdate, Incoming};

/// A cursor over the message bytes. `i` may point past the end (reads there see zeros and
/// match nothing).
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

/// `["change` as a little-endian word.
const CHANGE: u64 = u64::from_le_bytes(*b"[\"change");
/// `["delete` as a little-endian word.
const DELETE: u64 = u64::from_le_bytes(*b"[\"delete");
/// `["new",` in the low 7 bytes of a word.
const NEW: u64 = u64::from_le_bytes(*b"[\"new\",\0");
/// `",` as a little-endian 16-bit word.
const QUOTE_COMMA: u64 = u16::from_le_bytes(*b"\",") as u64;

impl<'a> Cur<'a> {
    /// Skips `l` if the text continues with it.
    #[inline(always)]
    fn lit<const N: usize>(&mut self, l: &[u8; N]) -> Option<()> {
        if starts_with_at(self.b, self.i, l) {
            self.i += N;
            Some(())
        } else {
            None
        }
    }

    /// An unsigned integer; what follows is checked by the next literal (which never starts
    /// with a digit, `.`, `e` or `E`).
    #[inline(always)]
    fn u64(&mut self) -> Option<u64> {
        match swar::u64_at(self.b, self.i) {
            Some((v, end)) => {
                self.i = end;
                Some(v)
            }
            None => self.u64_slow(),
        }
    }

    /// [`u64`](Self::u64) for what the word-wise reader does not take (20 digits).
    #[cold]
    #[inline(never)]
    fn u64_slow(&mut self) -> Option<u64> {
        let (v, n) = parse_u64_prefix(self.b.get(self.i..)?).ok()?;
        self.i += n;
        Some(v)
    }

    /// `,"bids":[`rows`],"asks":[`rows`]`, each row `["action",price,amount]`, into `out`;
    /// returns the count.
    #[inline(always)]
    fn rows(&mut self, head: &BookRow, out: &mut [MdRecord]) -> Option<usize> {
        let (i, n) = both_sides(self.b, self.i, head, out)?;
        self.i = i;
        Some(n)
    }
}

/// [`Cur::rows`] at `b[i..]`: the index after the asks and the count. Out of line: the loops
/// keep their state in registers, apart from the header.
#[inline(never)]
fn both_sides(b: &[u8], i: usize, head: &BookRow, out: &mut [MdRecord]) -> Option<(usize, usize)> {
    if !starts_with_at(b, i, b",\"bids\":") {
        return None;
    }
    let (i, n) = side_rows(b, i + 8, Side::Bid, head, out, 0)?;
    if !starts_with_at(b, i, b",\"asks\":") {
        return None;
    }
    side_rows(b, i + 8, Side::Ask, head, out, n)
}

/// `[` rows `]` of one side at `b[i..]`, written from `out[n]` on: the index after the `]` and
/// the new count.
#[inline(always)]
fn side_rows(
    b: &[u8],
    mut i: usize,
    side: Side,
    head: &BookRow,
    out: &mut [MdRecord],
    mut n: usize,
) -> Option<(usize, usize)> {
    // `[]` or `[[`.
    match word(b, i) as u16 {
        0x5d5b => return Some((i + 2, n)),
        0x5b5b => i += 1,
        _ => return None,
    }
    // The rest of the text from the current row on (a slice: one length check per window).
    let mut rest = b.get(i..)?;
    loop {
        // A row and the byte after it lie within 32 bytes when its numbers are short: read
        // them from a fixed-size window (bounds known to the compiler); the rest (long
        // numbers, the end of the text) the checked way.
        let row = match rest.first_chunk::<ROW_WINDOW>() {
            Some(win) => row_short(win),
            None => None,
        };
        let (action, price, amount, len, next) = match row {
            Some(r) => r,
            None => row_slow(rest, 0)?,
        };
        *out.get_mut(n)? = MdRecord::Book(BookRow {
            price,
            amount,
            side,
            action,
            ..*head
        });
        n += 1;
        rest = rest.get(len + 1..)?;
        // `]` ends the side, `,` continues it.
        match next {
            b',' => {}
            b']' => return Some((b.len() - rest.len(), n)),
            _ => return None,
        }
    }
}

/// Bytes a row with short numbers spans, the `,` or `]` after it included (at most 27).
const ROW_WINDOW: usize = swar::WINDOW;

/// The action at the start of a row: `(action, bytes up to the price)`.
#[inline(always)]
fn action_at(b: &[u8], i: usize) -> Option<(BookAction, usize)> {
    let w = word(b, i);
    if w == CHANGE || w == DELETE {
        if word(b, i + 8) & 0xFFFF != QUOTE_COMMA {
            return None;
        }
        let a = if w == CHANGE {
            BookAction::Change
        } else {
            BookAction::Delete
        };
        Some((a, 10))
    } else if w & 0x00FF_FFFF_FFFF_FFFF == NEW {
        Some((BookAction::New, 7))
    } else {
        None
    }
}

/// A row with two short numbers at the start of `win`: `(action, price, amount, length, the
/// byte after it)`. `None` for anything else.
///
/// One classification of the whole window (which bytes are digits, which are `]`) gives every
/// position: the price ends at the first non-digit after the action (or at the second, when the
/// first is its dot), the amount likewise after the `,`; each number is then read from one
/// 8-byte word. The row's length comes from the first `]` alone, so the next row's loads need
/// not wait for the numbers (which are checked to end there).
#[inline(always)]
fn row_short(win: &[u8; ROW_WINDOW]) -> Option<(BookAction, Fixed, Fixed, usize, u8)> {
    const LAST: usize = ROW_WINDOW - 1;
    let (action, j) = action_at(win, 0)?;
    let (nondigits, closes) = swar::classify32(win, b']');
    // The row's `]`, and the byte after it (a `]` in the last byte leaves no room for it).
    let close = (closes & !(1 << LAST)).trailing_zeros() as usize;
    if close >= LAST {
        return None;
    }
    // Bit 31: a stop for numbers that run to the end of the window (see `decimal_in`).
    let m = (nondigits | 1 << 31) & (u32::MAX << j);
    let (price, end, m) = swar::decimal_in(win, j, m)?;
    // The price ends within 8 bytes of j <= 10: end + 1 <= 19 leaves 8 bytes for the amount.
    if win[end & LAST] != b',' || end > 18 {
        return None;
    }
    let (amount, end, _) = swar::decimal_in(win, end + 1, m)?;
    if end != close {
        return None;
    }
    // At most 8 digits each: far inside the range.
    Some((
        action,
        Fixed::from_raw(price as i64),
        Fixed::from_raw(amount as i64),
        close + 1,
        win[(close + 1) & LAST],
    ))
}

/// A row at `b[i..]` in Deribit's layout with any numbers (the exact parser): `(action, price,
/// amount, length, the byte after it)`. `None` for anything else.
#[cold]
#[inline(never)]
fn row_slow(b: &[u8], i: usize) -> Option<(BookAction, Fixed, Fixed, usize, u8)> {
    let (action, j) = action_at(b, i)?;
    let mut j = i + j;
    let (price, n) = Fixed::parse_prefix(b.get(j..)?).ok()?;
    j += n;
    if b.get(j) != Some(&b',') {
        return None;
    }
    j += 1;
    let (amount, n) = Fixed::parse_prefix(b.get(j..)?).ok()?;
    j += n;
    if b.get(j) != Some(&b']') {
        return None;
    }
    Some((action, price, amount, j + 1 - i, *b.get(j + 1)?))
}

/// Up to and including `book.`.
const PREFIX: &[u8; 67] =
    b"{\"jsonrpc\":\"2.0\",\"method\":\"subscription\",\"params\":{\"channel\":\"book.";

/// The end of the instrument name in the channel, from `start`: the first `.` (names hold
/// none). What lies before it is only a candidate: a name the table holds has no quote,
/// backslash or control byte, so a candidate that ran past the channel's closing quote is not
/// found. `None` for an empty name or none within [`MAX_NAME_LEN`] bytes.
#[inline(always)]
fn instrument_end(b: &[u8], start: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    let mut i = start;
    loop {
        let x = word(b, i) ^ (LO * b'.' as u64);
        // 0x80 in the bytes equal to `.`; exact for the lowest (bytes past the end read as 0).
        let m = x.wrapping_sub(LO) & !x & (LO << 7);
        if m != 0 {
            let end = i + first_flag(m);
            return (end > start && end - start <= MAX_NAME_LEN).then_some(end);
        }
        i += 8;
        if i - start > MAX_NAME_LEN {
            return None;
        }
    }
}

/// Decodes a compact book notification in Deribit's layout; `None` for anything else.
#[inline]
pub(super) fn book<'a>(
    text: &'a str,
    instruments: &InstrumentTable,
    out: &mut [MdRecord],
) -> Option<Incoming<'a>> {
    let b = text.as_bytes();
    let mut c = Cur { b, i: 0 };
    c.lit(PREFIX)?;
    // Channel `book.{instrument}.{interval}`: the instrument holds no `.` and no escape.
    let start = c.i;
    let end = instrument_end(b, start)?;
    let inst = b.get(start..end)?;
    let instrument = instruments.get(inst)?;
    c.i = end;
    let interval = if c.lit(b".raw\",\"data\":{\"type\":\"").is_some() {
        Interval::Raw
    } else if c.lit(b".100ms\",\"data\":{\"type\":\"").is_some() {
        Interval::Ms100
    } else if c.lit(b".agg2\",\"data\":{\"type\":\"").is_some() {
        Interval::Agg2
    } else {
        return None;
    };
    let snapshot = if c.lit(b"change\",\"timestamp\":").is_some() {
        false
    } else if c.lit(b"snapshot\",\"timestamp\":").is_some() {
        true
    } else {
        return None;
    };
    let timestamp_ms = c.u64()?;
    let prev = if c.lit(b",\"prev_change_id\":").is_some() {
        Some(c.u64()?)
    } else {
        None
    };
    if !snapshot && prev.is_none() {
        return None;
    }
    c.lit(b",\"instrument_name\":\"")?;
    // The same name as in the channel (length checked by the quote after it).
    if !swar::eq_same_len(b.get(c.i..c.i + inst.len())?, inst) {
        return None;
    }
    c.i += inst.len();
    c.lit(b"\",\"change_id\":")?;
    let change_id = c.u64()?;
    let prev_change_id = prev.unwrap_or(0);
    let head = BookRow {
        change_id,
        prev_change_id,
        price: Fixed::ZERO,
        amount: Fixed::ZERO,
        timestamp_ms,
        sw_send_ns: 0,
        instrument,
        side: Side::Bid,
        action: BookAction::New,
        flags: if snapshot {
            BookFlags::SNAPSHOT
        } else {
            BookFlags::empty()
        },
    };
    let n = c.rows(&head, out)?;
    let sw_send_ns = if c.lit(b",\"sw_send_ns\":").is_some() {
        c.u64()?
    } else {
        0
    };
    c.lit(b"}}}")?;
    if c.i != b.len() {
        return None;
    }
    let rows = out.get_mut(..n)?;
    if sw_send_ns != 0 {
        for rec in rows.iter_mut() {
            if let MdRecord::Book(r) = rec {
                r.sw_send_ns = sw_send_ns;
            }
        }
    }
    if let Some(MdRecord::Book(r)) = rows.first_mut() {
        r.flags = r.flags.with(BookFlags::FIRST);
    }
    if let Some(MdRecord::Book(r)) = rows.last_mut() {
        r.flags = r.flags.with(BookFlags::LAST);
    }
    Some(Incoming::Book(BookUpdate {
        instrument,
        interval,
        snapshot,
        change_id,
        prev_change_id,
        timestamp_ms,
        sw_send_ns,
        rows: n,
    }))
}
