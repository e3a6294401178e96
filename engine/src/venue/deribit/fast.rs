//! The fast path for book notifications laid out exactly as Deribit and the simulator write
//! them (compact, members in Deribit's order).
//!
//! It matches the fixed parts of the text as literals and reads only the variable parts
//! (channel, numbers, rows). Anything else — another member order, whitespace, an unknown
//! member, any error — returns `None` and the general decoder reads the message from the
//! start, so both paths give the same result for every input (a test checks this on mutated
//! messages). The fast path exists for speed only.

use crate::md::{
    parse_u64_prefix, BookAction, BookFlags, BookRow, Fixed, InstrumentTable, MdRecord, Side,
};

use super::channel::Interval;
use super::decode::{BookUpdate, Incoming};
use crate::venue::json::find_special;

/// A cursor over the message bytes.
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    #[inline(always)]
    fn lit(&mut self, l: &[u8]) -> Option<()> {
        if self.b.get(self.i..)?.starts_with(l) {
            self.i += l.len();
            Some(())
        } else {
            None
        }
    }

    #[inline(always)]
    fn try_lit(&mut self, l: &[u8]) -> bool {
        self.lit(l).is_some()
    }

    #[inline(always)]
    fn u64(&mut self) -> Option<u64> {
        let (v, n) = parse_u64_prefix(self.b.get(self.i..)?).ok()?;
        self.i += n;
        Some(v)
    }

    #[inline(always)]
    fn fixed(&mut self) -> Option<Fixed> {
        let (v, n) = Fixed::parse_prefix(self.b.get(self.i..)?).ok()?;
        self.i += n;
        Some(v)
    }

    /// `[` rows `]`, each `["action",price,amount]`.
    #[inline(always)]
    fn rows(
        &mut self,
        side: Side,
        head: &BookRow,
        out: &mut [MdRecord],
        n: &mut usize,
    ) -> Option<()> {
        self.lit(b"[")?;
        if self.try_lit(b"]") {
            return Some(());
        }
        loop {
            // Dispatch on the action's first letter, then match the rest as one literal.
            let action = match self.b.get(self.i + 2) {
                Some(b'c') if self.try_lit(b"[\"change\",") => BookAction::Change,
                Some(b'n') if self.try_lit(b"[\"new\",") => BookAction::New,
                Some(b'd') if self.try_lit(b"[\"delete\",") => BookAction::Delete,
                _ => return None,
            };
            let price = self.fixed()?;
            self.lit(b",")?;
            let amount = self.fixed()?;
            self.lit(b"]")?;
            // `sw_send_ns` and the flags are filled in once the message is complete.
            *out.get_mut(*n)? = MdRecord::Book(BookRow {
                price,
                amount,
                side,
                action,
                ..*head
            });
            *n += 1;
            if self.try_lit(b"]") {
                return Some(());
            }
            self.lit(b",")?;
        }
    }
}

const PREFIX: &[u8] =
    b"{\"jsonrpc\":\"2.0\",\"method\":\"subscription\",\"params\":{\"channel\":\"book.";

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
    // Channel `book.{instrument}.{interval}`: up to the closing quote (no escapes).
    let start = c.i;
    let end = find_special(b, start);
    if b.get(end) != Some(&b'"') {
        return None;
    }
    let chan = b.get(start..end)?;
    let (inst, interval) = if let Some(i) = chan.strip_suffix(b".raw") {
        (i, Interval::Raw)
    } else if let Some(i) = chan.strip_suffix(b".100ms") {
        (i, Interval::Ms100)
    } else if let Some(i) = chan.strip_suffix(b".agg2") {
        (i, Interval::Agg2)
    } else {
        return None;
    };
    if inst.is_empty() || inst.contains(&b'.') {
        return None;
    }
    let instrument = instruments.get(inst)?;
    c.i = end;
    c.lit(b"\",\"data\":{\"type\":\"")?;
    let snapshot = if c.try_lit(b"change\",\"timestamp\":") {
        false
    } else if c.try_lit(b"snapshot\",\"timestamp\":") {
        true
    } else {
        return None;
    };
    let timestamp_ms = c.u64()?;
    let prev = if c.try_lit(b",\"prev_change_id\":") {
        Some(c.u64()?)
    } else {
        None
    };
    if !snapshot && prev.is_none() {
        return None;
    }
    c.lit(b",\"instrument_name\":\"")?;
    c.lit(inst)?;
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
        flags: BookFlags::empty(),
    };
    let mut n = 0;
    c.lit(b",\"bids\":")?;
    c.rows(Side::Bid, &head, out, &mut n)?;
    c.lit(b",\"asks\":")?;
    c.rows(Side::Ask, &head, out, &mut n)?;
    let sw_send_ns = if c.try_lit(b",\"sw_send_ns\":") {
        c.u64()?
    } else {
        0
    };
    c.lit(b"}}}")?;
    if c.i != b.len() {
        return None;
    }
    let base = if snapshot {
        BookFlags::SNAPSHOT
    } else {
        BookFlags::empty()
    };
    for (k, rec) in out.get_mut(..n)?.iter_mut().enumerate() {
        if let MdRecord::Book(r) = rec {
            r.sw_send_ns = sw_send_ns;
            let mut f = base;
            if k == 0 {
                f = f.with(BookFlags::FIRST);
            }
            if k + 1 == n {
                f = f.with(BookFlags::LAST);
            }
            r.flags = f;
        }
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
