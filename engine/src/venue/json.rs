//! A small zero-allocation JSON scanner (RFC 8259), the core of the venue codecs.
//!
//! Two levels:
//! - [`Scanner`]: a cursor over the text for hot-path decoders that read values in place as
//!   they meet them (objects by closure, [`Scanner::object`]; arrays, [`Scanner::array`]; typed
//!   reads: [`Scanner::u64`], [`Scanner::fixed`], [`Scanner::string`], ...) and skip what they do
//!   not know ([`Scanner::skip`]).
//! - [`Value`]: a validated, borrowed span of one JSON value with lookups ([`Value::get`]),
//!   iteration ([`Value::members`], [`Value::elements`]) and typed reads, for cold paths
//!   (responses) where re-scanning a span is cheaper than any allocation.
//!
//! Strings come back as [`JsonStr`]: the raw text between the quotes, borrowed, with escapes
//! left in place; [`JsonStr::as_str`] is free when there were none, and
//! [`JsonStr::unescape_into`] / [`JsonStr::eq_str`] decode without allocating.
//!
//! Guarantees: no allocation, no panic on any input, nesting limited to [`MAX_DEPTH`] (so
//! recursion is bounded), strict grammar (no trailing commas, no leading zeros, no lone UTF-16
//! surrogates in `\u` escapes). Numbers are checked for syntax only until a typed read asks
//! for a range.
//!
//! ```
//! use spinwire_engine::venue::json::Value;
//! let v = Value::parse(r#"{"id":7,"result":{"scope":"session:a b","list":[1,2]}}"#)?;
//! assert_eq!(v.get("id").map(|id| id.u64()), Some(Ok(7)));
//! let result = v.get("result").unwrap();
//! assert!(result.get("scope").unwrap().str()?.eq_str("session:a b"));
//! assert_eq!(result.get("list").unwrap().elements().count(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use crate::md::{parse_u64_prefix, Fixed, NumError};

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: u32 = 64;

/// The text is not valid JSON (or nests too deep).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// A byte that the grammar does not allow here.
    #[error("invalid JSON at byte {offset}")]
    Syntax {
        /// Byte offset of the offending byte.
        offset: u32,
    },
    /// The text ends inside a value (a truncated message).
    #[error("JSON text ends early (truncated)")]
    Truncated,
    /// Arrays and objects nest deeper than [`MAX_DEPTH`].
    #[error("JSON nests deeper than {MAX_DEPTH} levels at byte {offset}")]
    TooDeep {
        /// Byte offset of the opening bracket past the limit.
        offset: u32,
    },
}

/// A typed read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The text is not valid JSON.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// The value is valid JSON of another type than the one asked for.
    #[error("value has the wrong JSON type")]
    WrongType,
    /// The number does not fit the type asked for.
    #[error(transparent)]
    Number(NumError),
}

impl ReadError {
    /// The JSON error inside (a type or number error, which only typed reads raise, maps to a
    /// syntax error at offset 0).
    fn into_json(self) -> JsonError {
        match self {
            ReadError::Json(j) => j,
            _ => JsonError::Syntax { offset: 0 },
        }
    }
}

/// The JSON type of a [`Value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

/// A JSON string as it appears in the text: borrowed, escapes not yet decoded.
///
/// Invariant: `raw` is the validated text between the quotes; `escaped` is true iff it holds a
/// backslash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct JsonStr<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> JsonStr<'a> {
    /// The empty string.
    pub const EMPTY: JsonStr<'static> = JsonStr {
        raw: "",
        escaped: false,
    };

    /// A string without escapes (for building expected values); `None` if `s` holds a quote, a
    /// backslash or a control character.
    pub fn plain(s: &'a str) -> Option<JsonStr<'a>> {
        if s.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20) {
            None
        } else {
            Some(JsonStr {
                raw: s,
                escaped: false,
            })
        }
    }

    /// The text between the quotes, escapes as they were (`a\"b`).
    #[inline]
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the string holds escapes.
    #[inline]
    pub fn has_escapes(&self) -> bool {
        self.escaped
    }

    /// The string itself when it holds no escapes (free), else `None`: use
    /// [`unescape_into`](Self::unescape_into).
    #[inline]
    pub fn as_str(&self) -> Option<&'a str> {
        if self.escaped {
            None
        } else {
            Some(self.raw)
        }
    }

    /// The decoded characters.
    pub fn chars(&self) -> JsonChars<'a> {
        JsonChars {
            rest: self.raw.as_bytes(),
            raw: self.raw,
            pos: 0,
        }
    }

    /// Decodes into `out` and returns the decoded text, or `None` when `out` is too small (the
    /// decoded length never exceeds `raw().len()`).
    pub fn unescape_into<'b>(&self, out: &'b mut [u8]) -> Option<&'b str> {
        if !self.escaped {
            let n = self.raw.len();
            out.get_mut(..n)?.copy_from_slice(self.raw.as_bytes());
            return std::str::from_utf8(&out[..n]).ok();
        }
        let mut n = 0;
        for c in self.chars() {
            let len = c.len_utf8();
            c.encode_utf8(out.get_mut(n..n + len)?);
            n += len;
        }
        std::str::from_utf8(&out[..n]).ok()
    }

    /// Whether the decoded string equals `s` (no allocation).
    #[inline]
    pub fn eq_str(&self, s: &str) -> bool {
        if self.escaped {
            self.chars().eq(s.chars())
        } else {
            self.raw == s
        }
    }

    /// The decoded string as an owned `String` (allocates: cold paths only).
    pub fn to_owned_string(&self) -> String {
        self.chars().collect()
    }
}

impl fmt::Debug for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.raw)
    }
}

impl fmt::Display for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => f.write_str(s),
            None => self.chars().try_for_each(|c| fmt::Write::write_char(f, c)),
        }
    }
}

/// Iterator over the decoded characters of a [`JsonStr`].
#[derive(Debug, Clone)]
pub struct JsonChars<'a> {
    raw: &'a str,
    rest: &'a [u8],
    pos: usize,
}

fn hex4(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(..4)? {
        let d = (c as char).to_digit(16)?;
        v = v * 16 + d;
    }
    Some(v)
}

impl Iterator for JsonChars<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let b = *self.rest.get(self.pos)?;
        if b != b'\\' {
            let c = self.raw.get(self.pos..)?.chars().next()?;
            self.pos += c.len_utf8();
            return Some(c);
        }
        let e = *self.rest.get(self.pos + 1)?;
        self.pos += 2;
        Some(match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(self.rest.get(self.pos..)?)?;
                self.pos += 4;
                if (0xD800..0xDC00).contains(&hi) {
                    // Validated text: a low surrogate escape follows.
                    let lo = hex4(self.rest.get(self.pos + 2..)?)?;
                    self.pos += 6;
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00)))
                        .unwrap_or('\u{FFFD}')
                } else {
                    char::from_u32(hi).unwrap_or('\u{FFFD}')
                }
            }
            _ => '\u{FFFD}',
        })
    }
}

/// A cursor over JSON text. See the [module docs](self).
///
/// Invariant: `pos <= text.len()`; `depth` is the count of arrays/objects entered and not yet
/// left, never above [`MAX_DEPTH`].
#[derive(Debug, Clone)]
pub struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    depth: u32,
}

/// Index of the first byte at or after `i` that ends a run of plain string bytes (`"`, `\`, or
/// a control byte), or `b.len()`. Eight bytes at a time (SWAR): in each word, a byte equal to
/// `"` or `\` or below 0x20 sets its high bit in the mask; the lowest set bit is exact (borrows
/// only disturb bytes above it).
#[inline(always)]
pub(crate) fn find_special(b: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(arr) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_le_bytes(arr);
        let q = w ^ (LO * b'"' as u64);
        let bs = w ^ (LO * b'\\' as u64);
        let m = (q.wrapping_sub(LO) & !q)
            | (bs.wrapping_sub(LO) & !bs)
            | (w.wrapping_sub(LO * 0x20) & !w);
        let m = m & HI;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    b.len()
}

#[inline]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t')
}

impl<'a> Scanner<'a> {
    /// A scanner at the start of `text`.
    #[inline]
    pub fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            pos: 0,
            depth: 0,
        }
    }

    /// Byte offset of the cursor.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The text from the cursor on (for hand-written fast paths over known layouts).
    #[inline]
    pub fn remaining(&self) -> &'a [u8] {
        self.bytes().get(self.pos..).unwrap_or(&[])
    }

    /// Moves the cursor `n` bytes forward (clamped to the end of the text). For fast paths that
    /// matched complete values in [`remaining`](Self::remaining): the caller must only step
    /// over whole, balanced values, or the next read fails with a syntax error.
    #[inline]
    pub fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.text.len());
    }

    #[inline(always)]
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    #[inline(always)]
    fn at(&self, i: usize) -> Option<u8> {
        self.bytes().get(i).copied()
    }

    /// Skips whitespace.
    #[inline(always)]
    pub fn skip_ws(&mut self) {
        while let Some(c) = self.at(self.pos) {
            if is_ws(c) {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// The next non-whitespace byte, not consumed.
    #[inline(always)]
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.at(self.pos)
    }

    /// The error for the byte at `i`.
    #[inline]
    fn err_at(&self, i: usize) -> JsonError {
        if i >= self.text.len() {
            JsonError::Truncated
        } else {
            JsonError::Syntax {
                offset: i.min(u32::MAX as usize) as u32,
            }
        }
    }

    #[inline]
    fn err(&self) -> JsonError {
        self.err_at(self.pos)
    }

    #[inline(always)]
    fn expect(&mut self, c: u8) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err())
        }
    }

    #[inline]
    fn enter(&mut self) -> Result<(), JsonError> {
        if self.depth >= MAX_DEPTH {
            return Err(JsonError::TooDeep {
                offset: self.pos.min(u32::MAX as usize) as u32,
            });
        }
        self.depth += 1;
        Ok(())
    }

    #[inline]
    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Consumes `{`; returns whether a member follows (`false`: the object was `{}` and is
    /// consumed whole). Pair with [`key`](Self::key) and [`next_member`](Self::next_member).
    ///
    /// # Errors
    /// [`ReadError::WrongType`] when the value is not an object (nothing consumed), else JSON
    /// errors.
    #[inline]
    pub fn begin_object(&mut self) -> Result<bool, ReadError> {
        match self.peek() {
            Some(b'{') => {}
            Some(_) => return Err(ReadError::WrongType),
            None => return Err(JsonError::Truncated.into()),
        }
        self.enter()?;
        self.pos += 1;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.leave();
            return Ok(false);
        }
        Ok(true)
    }

    /// Reads a member's key and the `:` after it; the cursor is then at the value.
    #[inline]
    pub fn key(&mut self) -> Result<JsonStr<'a>, JsonError> {
        if self.peek() != Some(b'"') {
            return Err(self.err());
        }
        let k = self.string_at_quote()?;
        self.expect(b':')?;
        self.skip_ws();
        Ok(k)
    }

    /// After a member's value: consumes `,` (returns `true`: another member follows) or `}`
    /// (returns `false`: the object is done).
    #[inline]
    pub fn next_member(&mut self) -> Result<bool, JsonError> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(b'}') => {
                self.pos += 1;
                self.leave();
                Ok(false)
            }
            _ => Err(self.err()),
        }
    }

    /// Consumes `[`; returns whether an element follows (`false`: `[]`, consumed whole).
    ///
    /// # Errors
    /// [`ReadError::WrongType`] when the value is not an array (nothing consumed).
    #[inline]
    pub fn begin_array(&mut self) -> Result<bool, ReadError> {
        match self.peek() {
            Some(b'[') => {}
            Some(_) => return Err(ReadError::WrongType),
            None => return Err(JsonError::Truncated.into()),
        }
        self.enter()?;
        self.pos += 1;
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.leave();
            return Ok(false);
        }
        Ok(true)
    }

    /// After an element: consumes `,` (returns `true`) or `]` (returns `false`).
    #[inline]
    pub fn next_element(&mut self) -> Result<bool, JsonError> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(b']') => {
                self.pos += 1;
                self.leave();
                Ok(false)
            }
            _ => Err(self.err()),
        }
    }

    /// Walks the object at the cursor: `f(scanner, key)` is called with the cursor at each
    /// member's value and must consume that value (read it or [`skip`](Self::skip) it).
    ///
    /// # Errors
    /// `ReadError::WrongType` (converted into `E`) when the value is not an object, JSON errors,
    /// and whatever `f` returns.
    #[inline]
    pub fn object<E: From<ReadError> + From<JsonError>>(
        &mut self,
        mut f: impl FnMut(&mut Self, JsonStr<'a>) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.begin_object()? {
            return Ok(());
        }
        loop {
            let k = self.key()?;
            f(self, k)?;
            if !self.next_member()? {
                return Ok(());
            }
        }
    }

    /// Walks the array at the cursor: `f(scanner)` is called at each element and must consume
    /// it.
    ///
    /// # Errors
    /// As [`object`](Self::object).
    #[inline]
    pub fn array<E: From<ReadError> + From<JsonError>>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.begin_array()? {
            return Ok(());
        }
        loop {
            self.skip_ws();
            f(self)?;
            if !self.next_element()? {
                return Ok(());
            }
        }
    }

    /// Reads a string.
    #[inline]
    pub fn string(&mut self) -> Result<JsonStr<'a>, ReadError> {
        match self.peek() {
            Some(b'"') => Ok(self.string_at_quote()?),
            Some(_) => Err(ReadError::WrongType),
            None => Err(JsonError::Truncated.into()),
        }
    }

    /// Scans the string whose opening quote is at the cursor.
    #[inline]
    fn string_at_quote(&mut self) -> Result<JsonStr<'a>, JsonError> {
        let b = self.bytes();
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            i = find_special(b, i);
            match b.get(i) {
                None => return Err(JsonError::Truncated),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    i = self.escape_end(i)?;
                }
                Some(&c) if c < 0x20 => return Err(self.err_at(i)),
                Some(_) => i += 1,
            }
        }
        let raw = self.text.get(start..i).ok_or(self.err_at(start))?;
        self.pos = i + 1;
        Ok(JsonStr { raw, escaped })
    }

    /// Validates the escape whose backslash is at `i`; returns the index after it.
    fn escape_end(&self, i: usize) -> Result<usize, JsonError> {
        let b = self.bytes();
        match b.get(i + 1) {
            None => Err(JsonError::Truncated),
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
            Some(b'u') => {
                let Some(hex) = b.get(i + 2..i + 6) else {
                    return Err(JsonError::Truncated);
                };
                let Some(u) = hex4(hex) else {
                    return Err(self.err_at(i + 2));
                };
                match u {
                    0xD800..=0xDBFF => {
                        // A high surrogate must be followed by an escaped low surrogate.
                        match (b.get(i + 6), b.get(i + 7)) {
                            (Some(b'\\'), Some(b'u')) => {}
                            (None, _) | (Some(b'\\'), None) => return Err(JsonError::Truncated),
                            _ => return Err(self.err_at(i + 6)),
                        }
                        let Some(hex) = b.get(i + 8..i + 12) else {
                            return Err(JsonError::Truncated);
                        };
                        match hex4(hex) {
                            Some(0xDC00..=0xDFFF) => Ok(i + 12),
                            _ => Err(self.err_at(i + 8)),
                        }
                    }
                    0xDC00..=0xDFFF => Err(self.err_at(i + 2)),
                    _ => Ok(i + 6),
                }
            }
            Some(_) => Err(self.err_at(i + 1)),
        }
    }

    /// Reads a number as exact [`Fixed`].
    #[inline]
    pub fn fixed(&mut self) -> Result<Fixed, ReadError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => {}
            Some(_) => return Err(ReadError::WrongType),
            None => return Err(JsonError::Truncated.into()),
        }
        match Fixed::parse_prefix(&self.bytes()[self.pos..]) {
            Ok((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            Err(NumError::Syntax) => Err(self.number_syntax_error().into()),
            Err(e) => Err(ReadError::Number(e)),
        }
    }

    /// Reads an unsigned integer.
    #[inline]
    pub fn u64(&mut self) -> Result<u64, ReadError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => {}
            Some(_) => return Err(ReadError::WrongType),
            None => return Err(JsonError::Truncated.into()),
        }
        match parse_u64_prefix(&self.bytes()[self.pos..]) {
            Ok((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            Err(NumError::Syntax) => Err(self.number_syntax_error().into()),
            Err(e) => Err(ReadError::Number(e)),
        }
    }

    /// Reads a signed integer.
    pub fn i64(&mut self) -> Result<i64, ReadError> {
        let neg = self.peek() == Some(b'-');
        if neg {
            // Validate the whole number first so that "-x" is a syntax error.
            let mut probe = self.clone();
            probe.skip_number()?;
            self.pos += 1;
        }
        let v = self.u64()?;
        if neg {
            if v > i64::MAX as u64 + 1 {
                return Err(ReadError::Number(NumError::Overflow));
            }
            Ok((v as i64).wrapping_neg())
        } else if v > i64::MAX as u64 {
            Err(ReadError::Number(NumError::Overflow))
        } else {
            Ok(v as i64)
        }
    }

    /// Reads a number as the nearest `f64` (for values that are not on any decimal grid).
    pub fn f64(&mut self) -> Result<f64, ReadError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => {}
            Some(_) => return Err(ReadError::WrongType),
            None => return Err(JsonError::Truncated.into()),
        }
        let start = self.pos;
        self.skip_number()?;
        let text = self.text.get(start..self.pos).ok_or(self.err_at(start))?;
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(ReadError::Number(NumError::Overflow)),
        }
    }

    /// Reads `true` or `false`.
    #[inline]
    pub fn bool(&mut self) -> Result<bool, ReadError> {
        match self.peek() {
            Some(b't') => {
                self.literal(b"true")?;
                Ok(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Ok(false)
            }
            Some(b'n' | b'"' | b'-' | b'0'..=b'9' | b'[' | b'{') => Err(ReadError::WrongType),
            Some(_) => Err(self.err().into()),
            None => Err(JsonError::Truncated.into()),
        }
    }

    /// Consumes `null` if it is next and returns whether it was.
    #[inline]
    pub fn null(&mut self) -> Result<bool, JsonError> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn literal(&mut self, lit: &[u8]) -> Result<(), JsonError> {
        for (k, &c) in lit.iter().enumerate() {
            match self.at(self.pos + k) {
                Some(x) if x == c => {}
                None => return Err(JsonError::Truncated),
                Some(_) => return Err(self.err_at(self.pos + k)),
            }
        }
        self.pos += lit.len();
        Ok(())
    }

    /// The syntax error inside the number at the cursor.
    fn number_syntax_error(&self) -> JsonError {
        let mut probe = self.clone();
        match probe.skip_number() {
            Err(e) => e,
            Ok(()) => self.err(),
        }
    }

    /// Skips a number, checking its syntax only.
    fn skip_number(&mut self) -> Result<(), JsonError> {
        let b = self.bytes();
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = b.get(i) {
                    i += 1;
                }
            }
            _ => return Err(self.err_at(i)),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let s = i;
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
            if i == s {
                return Err(self.err_at(i));
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let s = i;
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
            if i == s {
                return Err(self.err_at(i));
            }
        }
        self.pos = i;
        Ok(())
    }

    /// Skips one value of any type, validating it.
    pub fn skip(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => self
                .object(|s, _| s.skip().map_err(ReadError::Json))
                .map_err(ReadError::into_json),
            Some(b'[') => self
                .array(|s| s.skip().map_err(ReadError::Json))
                .map_err(ReadError::into_json),
            Some(b'"') => self.string_at_quote().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.skip_number(),
            Some(_) => Err(self.err()),
            None => Err(JsonError::Truncated),
        }
    }

    /// Skips one value and returns it as a [`Value`] span.
    pub fn value(&mut self) -> Result<Value<'a>, JsonError> {
        let kind = match self.peek() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            Some(b'-' | b'0'..=b'9') => Kind::Number,
            Some(_) => return Err(self.err()),
            None => return Err(JsonError::Truncated),
        };
        let start = self.pos;
        self.skip()?;
        let raw = self.text.get(start..self.pos).ok_or(self.err_at(start))?;
        Ok(Value { kind, raw })
    }

    /// Checks that only whitespace remains.
    pub fn finish(&mut self) -> Result<(), JsonError> {
        if self.peek().is_some() {
            Err(self.err())
        } else {
            Ok(())
        }
    }
}

/// One validated JSON value, borrowed from the text. See the [module docs](self).
///
/// `Debug` prints the kind and length only, never the text: a value may hold credentials.
///
/// Invariant: `raw` is exactly one valid JSON value of type `kind`, without surrounding
/// whitespace.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Value<'a> {
    kind: Kind,
    raw: &'a str,
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({:?}, {} bytes)", self.kind, self.raw.len())
    }
}

impl<'a> Value<'a> {
    /// Parses a whole JSON text (one value, surrounding whitespace allowed).
    ///
    /// # Errors
    /// Any [`JsonError`].
    pub fn parse(text: &'a str) -> Result<Value<'a>, JsonError> {
        let mut s = Scanner::new(text);
        let v = s.value()?;
        s.finish()?;
        Ok(v)
    }

    /// The JSON type.
    #[inline]
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The value's JSON text.
    #[inline]
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether it is `null`.
    #[inline]
    pub fn is_null(&self) -> bool {
        self.kind == Kind::Null
    }

    #[inline]
    fn scanner(&self) -> Scanner<'a> {
        Scanner::new(self.raw)
    }

    /// The string.
    ///
    /// # Errors
    /// [`ReadError::WrongType`] if it is not a string.
    pub fn str(&self) -> Result<JsonStr<'a>, ReadError> {
        self.scanner().string()
    }

    /// The unsigned integer.
    ///
    /// # Errors
    /// [`ReadError::WrongType`], or [`ReadError::Number`] for a fraction, sign or overflow.
    pub fn u64(&self) -> Result<u64, ReadError> {
        self.scanner().u64()
    }

    /// The signed integer.
    ///
    /// # Errors
    /// As [`u64`](Self::u64).
    pub fn i64(&self) -> Result<i64, ReadError> {
        self.scanner().i64()
    }

    /// The number as exact [`Fixed`].
    ///
    /// # Errors
    /// [`ReadError::WrongType`], or [`ReadError::Number`] when it does not fit.
    pub fn fixed(&self) -> Result<Fixed, ReadError> {
        self.scanner().fixed()
    }

    /// The number as the nearest `f64`.
    ///
    /// # Errors
    /// [`ReadError::WrongType`], or [`ReadError::Number`] past `f64`'s range.
    pub fn f64(&self) -> Result<f64, ReadError> {
        self.scanner().f64()
    }

    /// The boolean.
    ///
    /// # Errors
    /// [`ReadError::WrongType`] if it is not `true`/`false`.
    pub fn bool(&self) -> Result<bool, ReadError> {
        self.scanner().bool()
    }

    /// The value of member `key` (the first one, if repeated); `None` when absent or when this
    /// is not an object.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.members().find(|(k, _)| k.eq_str(key)).map(|(_, v)| v)
    }

    /// The members of an object, in text order (empty when this is not an object).
    pub fn members(&self) -> Members<'a> {
        Members {
            sc: self.scanner(),
            state: if self.kind == Kind::Object {
                IterState::Start
            } else {
                IterState::Done
            },
        }
    }

    /// The elements of an array, in order (empty when this is not an array).
    pub fn elements(&self) -> Elements<'a> {
        Elements {
            sc: self.scanner(),
            state: if self.kind == Kind::Array {
                IterState::Start
            } else {
                IterState::Done
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IterState {
    Start,
    Next,
    Done,
}

/// Iterator over an object's `(key, value)` pairs; see [`Value::members`].
#[derive(Debug, Clone)]
pub struct Members<'a> {
    sc: Scanner<'a>,
    state: IterState,
}

impl<'a> Iterator for Members<'a> {
    type Item = (JsonStr<'a>, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let more = match self.state {
            IterState::Done => return None,
            IterState::Start => self.sc.begin_object().ok(),
            IterState::Next => self.sc.next_member().ok(),
        };
        // The span was validated when the value was made: errors cannot happen; stop if they do.
        let item = match more {
            Some(true) => self
                .sc
                .key()
                .ok()
                .and_then(|k| self.sc.value().ok().map(|v| (k, v))),
            _ => None,
        };
        self.state = if item.is_some() {
            IterState::Next
        } else {
            IterState::Done
        };
        item
    }
}

/// Iterator over an array's elements; see [`Value::elements`].
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    sc: Scanner<'a>,
    state: IterState,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        let more = match self.state {
            IterState::Done => return None,
            IterState::Start => self.sc.begin_array().ok(),
            IterState::Next => self.sc.next_element().ok(),
        };
        let item = match more {
            Some(true) => self.sc.value().ok(),
            _ => None,
        };
        self.state = if item.is_some() {
            IterState::Next
        } else {
            IterState::Done
        };
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surrogate_pairs_decode_and_lone_surrogates_are_rejected() {
        let v = Value::parse(r#""a\ud83d\ude00b\n""#).unwrap();
        let s = v.str().unwrap();
        assert!(s.eq_str("a😀b\n"));
        let mut buf = [0u8; 16];
        assert_eq!(s.unescape_into(&mut buf), Some("a😀b\n"));
        assert!(Value::parse(r#""\ud83d""#).is_err());
        assert!(Value::parse(r#""\ude00""#).is_err());
        assert!(Value::parse(r#""\ud83dx""#).is_err());
    }

    #[test]
    fn depth_limit_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert!(matches!(
            Value::parse(&deep),
            Err(JsonError::TooDeep { .. })
        ));
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(Value::parse(&ok).is_ok());
        let over = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(Value::parse(&over).is_err());
    }
}
