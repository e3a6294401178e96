//! Allocation-free JSON number formatting for the market-data path.
//!
//! Prices are fixed-point integers in units of 10^-4 ([`PRICE_SCALE`]); amounts are whole
//! units. Both are written as JSON numbers with at least one decimal (`65000.5`, `20.0`), the
//! way Deribit prints them.

/// Fixed-point scale of every price inside the simulator: `price_e4 = price * 10_000`.
pub const PRICE_SCALE: i64 = 10_000;

/// Appends a decimal integer.
#[inline]
pub fn push_int<I: itoa::Integer>(out: &mut Vec<u8>, v: I) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

/// Appends a fixed-point price (`price_e4 / 10_000`) with trailing zeros trimmed but at least
/// one decimal digit.
#[inline]
pub fn push_price(out: &mut Vec<u8>, price_e4: i64) {
    if price_e4 < 0 {
        out.push(b'-');
    }
    let abs = price_e4.unsigned_abs();
    let int = abs / PRICE_SCALE as u64;
    let mut frac = abs % PRICE_SCALE as u64;
    push_int(out, int);
    out.push(b'.');
    if frac == 0 {
        out.push(b'0');
        return;
    }
    let mut digits = [b'0'; 4];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    let mut len = 4;
    while len > 1 && digits[len - 1] == b'0' {
        len -= 1;
    }
    out.extend_from_slice(&digits[..len]);
}

/// Appends a whole amount as a JSON number with one decimal (`20.0`).
#[inline]
pub fn push_amount(out: &mut Vec<u8>, amount: i64) {
    push_int(out, amount);
    out.extend_from_slice(b".0");
}

/// Appends `s` as a JSON string (quoted, escaped).
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &c in s.as_bytes() {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 0xf) as usize]);
            }
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

/// Converts a fixed-point price to `f64` (for serde-built, cold-path messages).
pub fn price_f64(price_e4: i64) -> f64 {
    price_e4 as f64 / PRICE_SCALE as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(p: i64) -> String {
        let mut v = Vec::new();
        push_price(&mut v, p);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn prices_print_with_trimmed_decimals() {
        assert_eq!(price(650_005_000), "65000.5");
        assert_eq!(price(30_000_500), "3000.05");
        assert_eq!(price(1_000_000), "100.0");
        assert_eq!(price(1), "0.0001");
        assert_eq!(price(-15_000), "-1.5");
    }

    #[test]
    fn strings_are_escaped() {
        let mut v = Vec::new();
        push_str(&mut v, "a\"b\\c\n");
        assert_eq!(v, b"\"a\\\"b\\\\c\\u000a\"");
    }
}
