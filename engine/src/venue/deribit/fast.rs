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
    let room = out.len();
    let mut slots = out.iter_mut();
    let i = side_rows(b, i + 8, Side::Bid, head, &mut slots)?;
    if !starts_with_at(b, i, b",\"asks\":") {
        return None;
    }
    let i = side_rows(b, i + 8, Side::Ask, head, &mut slots)?;
    Some((i, room - slots.len()))
}

/// `[` rows `]` of one side at `b[i..]`, written to the next of `slots`: the index after the
/// `]`. `None` also when the rows outnumber the slots.
#[inline(always)]
fn side_rows(
    b: &[u8],
    mut i: usize,
    side: Side,
    head: &BookRow,
    slots: &mut std::slice::IterMut<'_, MdRecord>,
) -> Option<usize> {
    // `[]` or `[[`.
    match word(b, i) as u16 {
        0x5d5b => return Some(i + 2),
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
        *slots.next()? = MdRecord::Book(BookRow {
            price,
            amount,
            side,
            action,
            ..*head
        });
        rest = rest.get(len + 1..)?;
        // `]` ends the side, `,` continues it.
        match next {
            b',' => {}
            b']' => return Some(b.len() - rest.len()),
            _ => return None,
        }
    }
}

/// Bytes a row with short numbers spans, the `,` or `]` after it included (at most 29).
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
/// One classification of the whole window (which bytes are digits) gives every position: the
/// price ends at the first non-digit after the action (or at the second, when the first is its
/// dot), the amount likewise after the `,`, and must end at a `]`; both numbers are converted
/// together from 16 bytes around their dots ([`swar::units2`]).
#[inline(always)]
fn row_short(win: &[u8; ROW_WINDOW]) -> Option<(BookAction, Fixed, Fixed, usize, u8)> {
    const LAST: usize = ROW_WINDOW - 1;
    let (action, j) = action_at(win, 0)?;
    // Bit 31: a stop for numbers that run to the end of the window (see `decimal_in`).
    let m = (swar::nondigits32(win) | 1 << 31) & (u32::MAX << j);
    let (price, end, m) = swar::decimal_in(win, j, m)?;
    // The price ends within 8 bytes of j <= 10.
    debug_assert!(end <= 18);
    if win[end & LAST] != b',' {
        return None;
    }
    // The amount ends within 8 bytes of its start and its dot or end by byte 24: end <= 27
    // leaves a byte after the `]`.
    let (amount, end, _) = swar::decimal_in(win, end + 1, m)?;
    if win[end & LAST] != b']' {
        return None;
    }
    let (price, amount) = swar::units2(price, amount);
    // Below 10^16: far inside the range.
    Some((
        action,
        Fixed::from_raw(price as i64),
        Fixed::from_raw(amount as i64),
        end + 1,
        win[(end + 1) & LAST],
    ))
}

/// A row at `b[i..]` in Deribit's layout with any numbers (the exact parser): `(action, price,
/// amount, length, the byte after it)`. `None` for anything else.
///
/// In the last bytes of the text (fewer than a window: the last row of a message without
/// `sw_send_ns`) it first tries [`row_short`] on a zero-padded copy: the zeros are neither
/// digits nor delimiters, so a row taken there lies within the text.
#[cold]
#[inline(never)]
fn row_slow(b: &[u8], i: usize) -> Option<(BookAction, Fixed, Fixed, usize, u8)> {
    let rest = b.get(i..)?;
    if rest.len() < ROW_WINDOW {
        let mut win = [0u8; ROW_WINDOW];
        win[..rest.len()].copy_from_slice(rest);
        if let Some(row) = row_short(&win) {
            return Some(row);
        }
    }
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

/// The simulator's member before the closing braces.
const SW_SEND: &[u8; 14] = b",\"sw_send_ns\":";

/// Bytes of `,"sw_send_ns":` with a 19-digit stamp (every time from 2001 to 2286) and `}}}`.
const SW_TAIL: usize = SW_SEND.len() + 19 + 3;

/// The stamp when `b` ends with `,"sw_send_ns":` and 19 digits and `}}}`, the simulator's
/// usual ending; `None` otherwise (the caller then reads the ending after the rows).
#[inline(always)]
fn sw_send_tail(b: &[u8]) -> Option<u64> {
    let at = b.len().checked_sub(SW_TAIL)?;
    if !starts_with_at(b, at, SW_SEND) || !starts_with_at(b, b.len() - 3, b"}}}") {
        return None;
    }
    match swar::u64_at(b, at + SW_SEND.len()) {
        Some((v, end)) if end == b.len() - 3 => Some(v),
        _ => None,
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
    // The simulator's stamp, when the text ends the usual way, goes into every row as it is
    // written (no second pass); the rows must then end where that ending starts.
    let tail = sw_send_tail(b);
    let head = BookRow {
        change_id,
        prev_change_id,
        price: Fixed::ZERO,
        amount: Fixed::ZERO,
        timestamp_ms,
        sw_send_ns: tail.unwrap_or(0),
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
    let rows = out.get_mut(..n)?;
    let sw_send_ns = match tail {
        Some(v) => {
            if c.i != b.len() - SW_TAIL {
                return None;
            }
            v
        }
        None => {
            let sw_send_ns = if c.lit(SW_SEND).is_some() {
                c.u64()?
            } else {
                0
            };
            c.lit(b"}}}")?;
            if c.i != b.len() {
                return None;
            }
            if sw_send_ns != 0 {
                for rec in rows.iter_mut() {
                    if let MdRecord::Book(r) = rec {
                        r.sw_send_ns = sw_send_ns;
                    }
                }
            }
            sw_send_ns
        }
    };
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

#[cfg(test)]
mod tests {
    use super::super::decode::decode_general;
    use super::*;

    /// A book change up to the end of its asks; the endings are the tests'.
    const HEAD: &str = concat!(
        r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.raw","#,
        r#""data":{"type":"change","timestamp":1700000000000,"prev_change_id":10,"#,
        r#""instrument_name":"BTC-PERPETUAL","change_id":11,"#,
        r#""bids":[["change",60000.5,120.0],["new",59999.0,10.0]],"asks":[["delete",60001.0,0.0]]"#
    );

    fn table() -> InstrumentTable {
        let mut t = InstrumentTable::with_capacity(8).unwrap();
        t.insert("BTC-PERPETUAL").unwrap();
        t
    }

    /// The fast path's outcome (`None`: it leaves the message to the general path).
    fn fast(text: &str) -> Option<String> {
        let mut out = [MdRecord::default(); 8];
        match book(text, &table(), &mut out)? {
            Incoming::Book(b) => Some(format!("{b:?} {:?}", &out[..b.rows])),
            other => Some(format!("{other:?}")),
        }
    }

    fn general(text: &str) -> String {
        let mut out = [MdRecord::default(); 8];
        match decode_general(text, &table(), &mut out) {
            Ok(Incoming::Book(b)) => format!("{b:?} {:?}", &out[..b.rows]),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn the_stamp_read_from_the_end_goes_into_every_row() {
        let text = format!(r#"{HEAD},"sw_send_ns":1700000000000123456}}}}}}"#);
        let mut out = [MdRecord::default(); 8];
        let Some(Incoming::Book(b)) = book(&text, &table(), &mut out) else {
            panic!("not taken: {text}");
        };
        assert_eq!((b.rows, b.sw_send_ns), (3, 1_700_000_000_000_123_456));
        for r in &out[..3] {
            assert_eq!(r.sw_send_ns(), 1_700_000_000_000_123_456);
        }
        assert_eq!(fast(&text), Some(general(&text)));
    }

    #[test]
    fn other_endings_read_as_the_general_path_reads_them_or_go_to_it() {
        let taken = [
            "}}}",
            r#","sw_send_ns":7}}}"#,
            r#","sw_send_ns":170000000000012345}}}"#,
            r#","sw_send_ns":17000000000001234567}}}"#,
        ];
        let refused = [
            r#","sw_send_ns":5,"sw_send_ns":1700000000000123456}}}"#,
            r#","x":1,"sw_send_ns":1700000000000123456}}}"#,
            r#"],"sw_send_ns":1700000000000123456}}}"#,
            r#","sw_send_ns":1700000000000123456}}}}"#,
            r#","sw_send_ns":1700000000000123456}} }"#,
            r#","sw_send_ns":01700000000000123456}}}"#,
            r#","sw_send_ns":1700000000000123456.0}}}"#,
            r#" ,"sw_send_ns":1700000000000123456}}}"#,
            r#","sw_send_ns":1700000000000123456}}"#,
        ];
        for ending in taken {
            let text = format!("{HEAD}{ending}");
            assert_eq!(fast(&text), Some(general(&text)), "{text}");
        }
        for ending in refused {
            let text = format!("{HEAD}{ending}");
            assert_eq!(fast(&text), None, "{text}");
        }
        // Texts that end in or right after a row (read from a zero-padded copy).
        for cut in 1..12 {
            let text = &HEAD[..HEAD.len() - cut];
            assert_eq!(fast(text), None, "{text}");
        }
    }

    #[test]
    fn rows_whose_numbers_do_not_fit_the_window_are_read_exactly() {
        for (row, price, amount) in [
            // The amount's end past byte 24 of its row.
            (
                r#"["change",60000.25,12345678]"#,
                6_000_025_000_000,
                1_234_567_800_000_000,
            ),
            (
                r#"["change",60000.25,123456.5]"#,
                6_000_025_000_000,
                12_345_650_000_000,
            ),
            // Longer than 8 bytes.
            (
                r#"["new",60000.125,1234567.25]"#,
                6_000_012_500_000,
                123_456_725_000_000,
            ),
            (r#"["new",1,2]"#, 100_000_000, 200_000_000),
        ] {
            let text = HEAD.replace(r#"["new",59999.0,10.0]"#, row) + "}}}";
            let mut out = [MdRecord::default(); 8];
            let Some(Incoming::Book(b)) = book(&text, &table(), &mut out) else {
                panic!("not taken: {text}");
            };
            assert_eq!(b.rows, 3);
            let MdRecord::Book(r) = out[1] else {
                panic!("{:?}", out[1]);
            };
            assert_eq!((r.price.raw(), r.amount.raw()), (price, amount), "{row}");
            assert_eq!(fast(&text), Some(general(&text)));
        }
    }
}
