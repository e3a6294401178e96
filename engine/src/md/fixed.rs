//! Exact decimal fixed-point numbers for prices and amounts.
//!
//! # Decision
//! Prices and amounts are [`Fixed`]: an `i64` count of 10^-8 units, parsed straight from the
//! decimal text of the JSON number, never through `f64`. `60000.5` is exactly `6_000_050_000_000`
//! units; equal texts give equal values and a value written back ([`Fixed::write_to`]) is the
//! shortest exact decimal text.
//!
//! # Limits
//! - Range: ±92_233_720_368.547_758_07 (`i64::MAX` units). Deribit prices (BTC ~1e5) and amounts
//!   (USD notionals ~1e9) fit with room to spare.
//! - Precision: 8 decimal places. Deribit's ticks (0.5, 0.05, 0.0001 for options, 1e-8 fees) are
//!   all multiples of 10^-8.
//! - A number that does not fit is an error, never a rounded or wrapped value: more than 8
//!   significant decimal places ([`NumError::Inexact`]: `0.000000001`, but `1.000000000000` is
//!   fine) or a magnitude past the range ([`NumError::Overflow`]: `1e11`, `1e400`).
//! - Exponents are accepted and exact: `1.6e-7` is 16 units.
//!
//! Derived values that are not on any grid (an order's `average_price`, a fee rate) are read as
//! `f64` where they are read at all; see the venue codecs.

use super::swar::POW10;
use std::fmt;
use std::str::FromStr;

/// Why a JSON number could not be read as the wanted number type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumError {
    /// Not a JSON number (`-`, `1.`, `.5`, `1e`, `+1`, `0x10`, empty).
    #[error("not a valid JSON number")]
    Syntax,
    /// The magnitude is past the type's range.
    #[error("number out of range")]
    Overflow,
    /// More decimal places than the type holds (for [`Fixed`]: 8).
    #[error("number has more than 8 decimal places")]
    Inexact,
    /// A fraction, an exponent or a sign where an unsigned integer is required.
    #[error("number is not an unsigned integer")]
    NotAnInteger,
}

/// An exact decimal number: a signed count of 10^-8 units (see the [module docs](self)).
///
/// Invariant: none beyond `i64`; every `i64` is a valid value.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Fixed(i64);

/// Decimal places of [`Fixed`].
pub const FIXED_DECIMALS: u32 = 8;
/// Units per 1.0 of [`Fixed`] (10^8).
pub const FIXED_SCALE: i64 = 100_000_000;

impl Fixed {
    /// Zero.
    pub const ZERO: Fixed = Fixed(0);
    /// The largest value (`92233720368.54775807`).
    pub const MAX: Fixed = Fixed(i64::MAX);
    /// The smallest value (`-92233720368.54775808`).
    pub const MIN: Fixed = Fixed(i64::MIN);

    /// The value `raw × 10^-8`.
    #[inline]
    pub const fn from_raw(raw: i64) -> Fixed {
        Fixed(raw)
    }

    /// The count of 10^-8 units.
    #[inline]
    pub const fn raw(self) -> i64 {
        self.0
    }

    /// A whole number, or `None` past the range (|v| > 92_233_720_368).
    #[inline]
    pub const fn from_int(v: i64) -> Option<Fixed> {
        match v.checked_mul(FIXED_SCALE) {
            Some(r) => Some(Fixed(r)),
            None => None,
        }
    }

    /// `mantissa × 10^-decimals` exactly, or `None` when it does not fit (more than 8 decimals
    /// with a non-zero remainder, or out of range). `Fixed::from_parts(600005, 1)` is `60000.5`.
    pub const fn from_parts(mantissa: i64, decimals: u32) -> Option<Fixed> {
        if decimals <= FIXED_DECIMALS {
            match mantissa.checked_mul(POW10[(FIXED_DECIMALS - decimals) as usize] as i64) {
                Some(r) => Some(Fixed(r)),
                None => None,
            }
        } else if decimals - FIXED_DECIMALS < 19 {
            let d = POW10[(decimals - FIXED_DECIMALS) as usize] as i64;
            if mantissa % d == 0 {
                Some(Fixed(mantissa / d))
            } else {
                None
            }
        } else if mantissa == 0 {
            Some(Fixed(0))
        } else {
            None
        }
    }

    /// The nearest `f64` (for display and statistics; not for arithmetic that must be exact).
    #[inline]
    pub fn to_f64(self) -> f64 {
        // Split so that values below 2^53 units convert exactly before the final division.
        let int = self.0 / FIXED_SCALE;
        let frac = self.0 % FIXED_SCALE;
        int as f64 + frac as f64 / FIXED_SCALE as f64
    }

    /// Parses the JSON number at the start of `text` and returns it with the count of bytes it
    /// took. Stops at the first byte that cannot continue a number; the caller checks what
    /// follows. Never panics, never allocates.
    ///
    /// # Errors
    /// [`NumError::Syntax`] when `text` does not start with a JSON number, [`NumError::Overflow`]
    /// / [`NumError::Inexact`] when it does not fit.
    #[inline(always)]
    pub fn parse_prefix(text: &[u8]) -> Result<(Fixed, usize), NumError> {
        if let Some(r) = Fixed::parse_short(text) {
            return Ok(r);
        }
        // Fast path: at most 18 integer digits, at most 8 decimals, no exponent: plain integer
        // arithmetic that cannot overflow before the final checked scaling.
        let neg = text.first() == Some(&b'-');
        let start = neg as usize;
        let digits = text.get(start..).unwrap_or(&[]);
        let (int, nint) = leading_digits(digits, 18);
        let mut i = start + nint;
        let leading_zero = nint > 1 && digits.first() == Some(&b'0');
        if nint > 0 && !leading_zero {
            let mut frac: u64 = 0;
            let mut nfrac = 0;
            let mut ok = true;
            if text.get(i) == Some(&b'.') {
                i += 1;
                (frac, nfrac) =
                    leading_digits(text.get(i..).unwrap_or(&[]), FIXED_DECIMALS as usize);
                i += nfrac;
                ok = nfrac > 0;
            }
            ok &= !matches!(text.get(i), Some(b'0'..=b'9' | b'e' | b'E' | b'.'));
            if ok {
                let units = int
                    .checked_mul(FIXED_SCALE as u64)
                    .and_then(|u| u.checked_add(frac * POW10[FIXED_DECIMALS as usize - nfrac]));
                let v = match units {
                    Some(u) if !neg && u <= i64::MAX as u64 => Some(u as i64),
                    Some(u) if neg && u <= i64::MAX as u64 + 1 => Some((u as i64).wrapping_neg()),
                    _ => None,
                };
                if let Some(v) = v {
                    return Ok((Fixed(v), i));
                }
            }
        }
        Fixed::parse_prefix_general(text)
    }

    /// The short-number path of [`parse_prefix`](Self::parse_prefix): a non-negative number of
    /// at most 7 digits with at most one `.` that ends within the first 8 bytes (prices and
    /// amounts like `60000.5`, `120.0`), read in one 8-byte word without a branch per digit.
    /// `None` for anything else (the other paths then decide).
    #[inline(always)]
    fn parse_short(text: &[u8]) -> Option<(Fixed, usize)> {
        const LO: u64 = 0x0101_0101_0101_0101;
        let arr = <[u8; 8]>::try_from(text.get(..8)?).ok()?;
        let w = u64::from_le_bytes(arr);
        // Non-zero bytes of `nd` are non-digits. Carries from bytes >= 0xFA only disturb bytes
        // above a non-digit, which are past the number's end.
        let nd = ((w & (0xF0 * LO)) ^ (0x30 * LO))
            | ((w.wrapping_add(6 * LO) & (0xF0 * LO)) ^ (0x30 * LO));
        let first = (nd.trailing_zeros() / 8) as usize;
        if first == 0 || first >= 7 || (first > 1 && arr[0] == b'0') {
            return None;
        }
        // Digit values from the low nibbles (no borrows between bytes).
        let d = w & (0x0F * LO);
        let low = (1u64 << (8 * first)) - 1;
        let (digits, k, nfrac, end) = if arr[first] == b'.' {
            // The next non-digit after the dot ends the number.
            let above = nd & !((low << 8) | 0xFF);
            if above == 0 {
                return None;
            }
            let end = (above.trailing_zeros() / 8) as usize;
            let nfrac = end - first - 1;
            if nfrac == 0 {
                return None;
            }
            // Drop the dot: the fraction's bytes move down one place.
            let frac_mask = ((1u64 << (8 * (end - 1))) - 1) & !low;
            ((d & low) | ((d >> 8) & frac_mask), end - 1, nfrac, end)
        } else {
            (d & low, first, 0, first)
        };
        if matches!(arr.get(end), Some(b'e' | b'E' | b'.')) {
            return None;
        }
        // k (1..=7) digits to a number: shift them to the top bytes, then three multiplies.
        let v = digits << (8 * (8 - k));
        let v = ((v & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561)) >> 8;
        let v = ((v & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601)) >> 16;
        let v = ((v & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001)) >> 32;
        // v < 10^7 and nfrac <= 5: no overflow.
        Some((
            Fixed((v * POW10[FIXED_DECIMALS as usize - nfrac]) as i64),
            end,
        ))
    }

    /// The general path of [`parse_prefix`](Self::parse_prefix): any length, exponents.
    #[cold]
    #[inline(never)]
    fn parse_prefix_general(text: &[u8]) -> Result<(Fixed, usize), NumError> {
        let mut i = 0;
        let neg = text.first() == Some(&b'-');
        if neg {
            i = 1;
        }
        // Significant digits accumulate in `mant`; zeros are held back in `zeros` until a
        // non-zero digit follows, so long zero tails ("1.000000000000000000000") never overflow.
        let mut mant: u64 = 0;
        let mut zeros: u32 = 0;
        let mut overflow = false;
        // Decimal exponent of the last digit taken into `mant` (+ held-back zeros).
        let mut exp: i64 = 0;
        let mut frac_overflow = false;

        #[inline(always)]
        fn take(mant: &mut u64, zeros: &mut u32, overflow: &mut bool, d: u8) {
            if d == 0 {
                *zeros += 1;
                return;
            }
            if *mant != 0 || *zeros != 0 {
                let shift = *zeros as usize + 1;
                let scaled = if shift < POW10.len() {
                    mant.checked_mul(POW10[shift])
                } else if *mant == 0 {
                    Some(0)
                } else {
                    None
                };
                match scaled.and_then(|m| m.checked_add(d as u64)) {
                    Some(m) => *mant = m,
                    None => *overflow = true,
                }
            } else {
                *mant = d as u64;
            }
            *zeros = 0;
        }

        // Integer part: "0" or [1-9][0-9]*.
        match text.get(i) {
            Some(b'0') => i += 1,
            Some(c @ b'1'..=b'9') => {
                take(&mut mant, &mut zeros, &mut overflow, c - b'0');
                i += 1;
                while let Some(c @ b'0'..=b'9') = text.get(i) {
                    take(&mut mant, &mut zeros, &mut overflow, c - b'0');
                    i += 1;
                }
            }
            _ => return Err(NumError::Syntax),
        }
        // Fraction.
        if text.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            let int_overflow = overflow;
            while let Some(c @ b'0'..=b'9') = text.get(i) {
                take(&mut mant, &mut zeros, &mut overflow, c - b'0');
                exp -= 1;
                i += 1;
            }
            if i == start {
                return Err(NumError::Syntax);
            }
            // Twenty significant digits never fit; past the point they are too many decimals.
            frac_overflow = overflow && !int_overflow;
        }
        // Exponent.
        if let Some(b'e' | b'E') = text.get(i) {
            i += 1;
            let eneg = match text.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let start = i;
            let mut e: i64 = 0;
            while let Some(c @ b'0'..=b'9') = text.get(i) {
                // Saturate: anything past 10^9 is out of range for every non-zero mantissa.
                e = (e * 10 + (c - b'0') as i64).min(1_000_000_000);
                i += 1;
            }
            if i == start {
                return Err(NumError::Syntax);
            }
            exp += if eneg { -e } else { e };
        }
        if frac_overflow {
            return Err(NumError::Inexact);
        }
        if overflow {
            return Err(NumError::Overflow);
        }
        if mant == 0 {
            return Ok((Fixed(0), i));
        }
        // value = mant × 10^(zeros + exp); units = value × 10^8.
        let scale = zeros as i64 + exp + FIXED_DECIMALS as i64;
        let units: u64 = if scale >= 0 {
            if scale >= POW10.len() as i64 {
                return Err(NumError::Overflow);
            }
            mant.checked_mul(POW10[scale as usize])
                .ok_or(NumError::Overflow)?
        } else {
            let down = -scale;
            if down >= POW10.len() as i64 {
                return Err(NumError::Inexact);
            }
            let d = POW10[down as usize];
            if mant % d != 0 {
                return Err(NumError::Inexact);
            }
            mant / d
        };
        let v = if neg {
            if units > i64::MAX as u64 + 1 {
                return Err(NumError::Overflow);
            }
            (units as i64).wrapping_neg()
        } else {
            if units > i64::MAX as u64 {
                return Err(NumError::Overflow);
            }
            units as i64
        };
        Ok((Fixed(v), i))
    }

    /// Writes the shortest exact decimal text (`60000.5`, `20`, `-0.00000001`) into `out` and
    /// returns its length, or `None` when `out` is too small (28 bytes always suffice).
    pub fn write_to(self, out: &mut [u8]) -> Option<usize> {
        let mut tmp = [0u8; 28];
        let mut n = 0;
        if self.0 < 0 {
            tmp[0] = b'-';
            n = 1;
        }
        let abs = self.0.unsigned_abs();
        let int = abs / FIXED_SCALE as u64;
        let mut frac = abs % FIXED_SCALE as u64;
        n += write_u64(int, &mut tmp[n..]);
        if frac != 0 {
            tmp[n] = b'.';
            n += 1;
            let mut digits = [b'0'; FIXED_DECIMALS as usize];
            for d in digits.iter_mut().rev() {
                *d = b'0' + (frac % 10) as u8;
                frac /= 10;
            }
            let mut len = digits.len();
            while digits[len - 1] == b'0' {
                len -= 1;
            }
            tmp[n..n + len].copy_from_slice(&digits[..len]);
            n += len;
        }
        out.get_mut(..n)?.copy_from_slice(&tmp[..n]);
        Some(n)
    }
}

/// The value and count of the leading ASCII digits of `b`, reading at most `max` (at most 19,
/// so the value cannot overflow); more digits may follow.
///
/// The first eight digits are read one by one (short numbers, the common case, are done in a
/// few cycles); longer runs continue eight digits at a time (SWAR) while eight bytes are
/// readable.
#[inline(always)]
pub(crate) fn leading_digits(b: &[u8], max: usize) -> (u64, usize) {
    debug_assert!(max <= 19);
    let mut v: u64 = 0;
    let mut n = 0usize;
    let first = max.min(8);
    while n < first {
        match b.get(n) {
            Some(&c) if c.is_ascii_digit() => {
                v = v * 10 + (c - b'0') as u64;
                n += 1;
            }
            _ => return (v, n),
        }
    }
    while n + 8 <= max {
        let Some(Ok(arr)) = b.get(n..n + 8).map(<[u8; 8]>::try_from) else {
            break;
        };
        let w = u64::from_le_bytes(arr);
        // A byte is a digit iff its high nibble is 3 both as is and after adding 6 (carries
        // from non-digit bytes only disturb bytes above them, so the lowest flag is exact).
        const LO: u64 = 0x0101_0101_0101_0101;
        let hi = w & (0xF0 * LO);
        let hi6 = w.wrapping_add(6 * LO) & (0xF0 * LO);
        let bad = (hi ^ (0x30 * LO)) | (hi6 ^ (0x30 * LO));
        let k = (bad.trailing_zeros() / 8) as usize;
        if k == 0 {
            return (v, n);
        }
        // Keep the k digits, shifted to the top bytes (zero bytes below are leading zeros).
        let d = (w.wrapping_sub(0x30 * LO)) << (8 * (8 - k));
        let d = ((d & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561)) >> 8;
        let d = ((d & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601)) >> 16;
        let d = ((d & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001)) >> 32;
        v = v * POW10[k] + d;
        n += k;
        if k < 8 {
            return (v, n);
        }
    }
    while n < max {
        match b.get(n) {
            Some(&c) if c.is_ascii_digit() => {
                v = v * 10 + (c - b'0') as u64;
                n += 1;
            }
            _ => break,
        }
    }
    (v, n)
}

/// Writes the decimal digits of `v` into `out` (at least 20 bytes long) and returns their count.
#[inline]
pub(crate) fn write_u64(mut v: u64, out: &mut [u8]) -> usize {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let n = tmp.len() - i;
    out[..n].copy_from_slice(&tmp[i..]);
    n
}

/// Parses an unsigned JSON integer at the start of `text` (digits only, no sign, fraction or
/// exponent) and returns it with the count of bytes it took.
///
/// # Errors
/// [`NumError::Syntax`] when `text` does not start with a JSON number, [`NumError::NotAnInteger`]
/// for a sign, fraction or exponent, [`NumError::Overflow`] past `u64::MAX`.
#[inline(always)]
pub fn parse_u64_prefix(text: &[u8]) -> Result<(u64, usize), NumError> {
    // Fast path: 1 to 19 digits (below 10^19, no overflow), not followed by more of a number.
    let (v, i) = leading_digits(text, 19);
    if i > 0
        && !(i > 1 && text.first() == Some(&b'0'))
        && !matches!(text.get(i), Some(b'0'..=b'9' | b'.' | b'e' | b'E'))
    {
        return Ok((v, i));
    }
    parse_u64_general(text)
}

#[cold]
#[inline(never)]
fn parse_u64_general(text: &[u8]) -> Result<(u64, usize), NumError> {
    let mut v: u64 = 0;
    let mut i = 0;
    match text.first() {
        Some(b'0') => i = 1,
        Some(b'1'..=b'9') => {
            let mut overflow = false;
            while let Some(c @ b'0'..=b'9') = text.get(i) {
                match v
                    .checked_mul(10)
                    .and_then(|x| x.checked_add((c - b'0') as u64))
                {
                    Some(x) => v = x,
                    None => overflow = true,
                }
                i += 1;
            }
            if overflow {
                return match text.get(i) {
                    Some(b'.' | b'e' | b'E') => Err(NumError::NotAnInteger),
                    _ => Err(NumError::Overflow),
                };
            }
        }
        Some(b'-') => {
            return match Fixed::parse_prefix(text) {
                Ok(_) | Err(NumError::Overflow | NumError::Inexact) => Err(NumError::NotAnInteger),
                Err(e) => Err(e),
            }
        }
        _ => return Err(NumError::Syntax),
    }
    match text.get(i) {
        Some(b'.' | b'e' | b'E') => match Fixed::parse_prefix(text) {
            Ok(_) | Err(NumError::Overflow | NumError::Inexact) => Err(NumError::NotAnInteger),
            Err(e) => Err(e),
        },
        _ => Ok((v, i)),
    }
}

impl FromStr for Fixed {
    type Err = NumError;

    /// Parses a complete JSON number (nothing before or after it).
    fn from_str(s: &str) -> Result<Fixed, NumError> {
        let (v, n) = Fixed::parse_prefix(s.as_bytes())?;
        if n == s.len() {
            Ok(v)
        } else {
            Err(NumError::Syntax)
        }
    }
}

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 28];
        let n = self.write_to(&mut buf).unwrap_or(0);
        f.write_str(std::str::from_utf8(&buf[..n]).unwrap_or("?"))
    }
}

impl fmt::Debug for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_zero_tails_do_not_overflow() {
        assert_eq!(
            "1.000000000000000000000000000".parse::<Fixed>(),
            Ok(Fixed::from_raw(FIXED_SCALE))
        );
        assert_eq!(
            "100000000000000000000e-20".parse::<Fixed>(),
            Ok(Fixed::from_raw(FIXED_SCALE))
        );
    }

    #[test]
    fn write_u64_writes_extremes() {
        let mut b = [0u8; 20];
        let n = write_u64(u64::MAX, &mut b);
        assert_eq!(&b[..n], b"18446744073709551615");
        let n = write_u64(0, &mut b);
        assert_eq!(&b[..n], b"0");
    }
}
