//! Word-at-a-time (SWAR) helpers for the market-data fast paths: 8-byte loads, literal
//! comparison, digit classification and decimal conversion on plain `u64`s, one 32-byte
//! classification ([`nondigits32`]) and one conversion of two short decimals ([`units2`]) that
//! use SSE2 on x86-64 (their only `unsafe`: unaligned 16-byte loads inside a `&[u8; 32]` and
//! inside a mask table's rows) and words elsewhere; tests check both give the same results.
//!
//! Byte `k` of a word is `b[at + k]` (little-endian loads), so "the first byte" of a text is the
//! word's lowest byte.

/// `0x01` in every byte.
const LO: u64 = 0x0101_0101_0101_0101;
/// `0x80` in every byte.
const HI: u64 = 0x8080_8080_8080_8080;

/// Powers of ten up to 10^19.
pub(crate) const POW10: [u64; 20] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
    1_000_000_000_000_000_000,
    10_000_000_000_000_000_000,
];

/// The 8 bytes of `b` from `at`, as a little-endian word; bytes past the end of `b` read as 0
/// (which is no digit, no quote and no literal byte, so a match never runs past the end).
#[inline(always)]
pub(crate) fn word(b: &[u8], at: usize) -> u64 {
    match b.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        Some(c) => u64::from_le_bytes(*c),
        None => word_tail(b, at),
    }
}

/// [`word`] near the end of `b`.
#[cold]
#[inline(never)]
fn word_tail(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(rest) = b.get(at..) {
        for (d, s) in w.iter_mut().zip(rest) {
            *d = *s;
        }
    }
    u64::from_le_bytes(w)
}

/// Whether `b[at..]` starts with `lit`, compared 8 bytes at a time (the literal's words are
/// constants once inlined: a load, a xor and an or per word, one branch).
#[inline(always)]
pub(crate) fn starts_with_at<const N: usize>(b: &[u8], at: usize, lit: &[u8; N]) -> bool {
    match b.get(at..).and_then(<[u8]>::first_chunk::<N>) {
        Some(s) => eq_fixed(s, lit),
        None => false,
    }
}

/// `a == b` for two arrays of the same constant length, word by word.
#[inline(always)]
fn eq_fixed<const N: usize>(a: &[u8; N], b: &[u8; N]) -> bool {
    if N < 8 {
        return eq_short(a, b);
    }
    let mut diff = 0u64;
    let mut k = 0;
    while k + 8 <= N {
        diff |= load8(a, k) ^ load8(b, k);
        k += 8;
    }
    if k < N {
        // The last (overlapping) word.
        diff |= load8(a, N - 8) ^ load8(b, N - 8);
    }
    diff == 0
}

/// `a == b` for two slices of the same length (checked by the caller), word by word: for the
/// short names of instruments, where `memcmp`'s call costs more than the comparison.
#[inline(always)]
pub(crate) fn eq_same_len(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    if n < 8 {
        return eq_short(&a[..n], &b[..n]);
    }
    let mut diff = 0u64;
    let mut k = 0;
    while k + 8 <= n {
        diff |= load8(a, k) ^ load8(b, k);
        k += 8;
    }
    diff |= load8(a, n - 8) ^ load8(b, n - 8);
    diff == 0
}

/// `a == b` for slices of the same length below 8: two overlapping 4-, 2- or 1-byte loads.
#[inline(always)]
fn eq_short(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    let (x, y) = if n >= 4 {
        (
            load4(a, 0) as u64 | (load4(a, n - 4) as u64) << 32,
            load4(b, 0) as u64 | (load4(b, n - 4) as u64) << 32,
        )
    } else if n >= 2 {
        (
            load2(a, 0) as u64 | (load2(a, n - 2) as u64) << 16,
            load2(b, 0) as u64 | (load2(b, n - 2) as u64) << 16,
        )
    } else if n == 1 {
        (a[0] as u64, b[0] as u64)
    } else {
        (0, 0)
    };
    x == y
}

/// The 8 bytes of `b` at `k` (which the caller keeps in bounds; 0 otherwise).
#[inline(always)]
pub(crate) fn load8(b: &[u8], k: usize) -> u64 {
    b.get(k..)
        .and_then(<[u8]>::first_chunk::<8>)
        .map_or(0, |c| u64::from_le_bytes(*c))
}

#[inline(always)]
fn load4(b: &[u8], k: usize) -> u32 {
    b.get(k..)
        .and_then(<[u8]>::first_chunk::<4>)
        .map_or(0, |c| u32::from_le_bytes(*c))
}

#[inline(always)]
fn load2(b: &[u8], k: usize) -> u16 {
    b.get(k..)
        .and_then(<[u8]>::first_chunk::<2>)
        .map_or(0, |c| u16::from_le_bytes(*c))
}

/// Classifies the bytes of `w`: returns `(t, nd)` where `t` holds each byte's value minus `'0'`
/// (`0..=9` in the bytes that are ASCII digits) and `nd` has `0x80` set in the bytes that are
/// not ASCII digits.
///
/// Exact up to and including the first non-digit byte, and past it for as long as the bytes are
/// digits or `.` (only a byte of `0x8A` or more, which is flagged itself, carries into the byte
/// above it): enough to find a number's end, and the end of its fraction after a dot.
#[inline(always)]
pub(crate) fn digits(w: u64) -> (u64, u64) {
    let t = w ^ (0x30 * LO);
    // t + 0x76 reaches 0x80 iff t >= 10 (digits: t <= 9, no carry).
    let nd = (t.wrapping_add(0x76 * LO) | t) & HI;
    (t, nd)
}

/// Index of the first byte flagged (`0x80`) in a mask such as [`digits`]' (8 when none).
#[inline(always)]
pub(crate) fn first_flag(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

/// The value of the decimal digits in the lowest `k` bytes of `t` (`0..=8`; digit values as in
/// [`digits`], most significant first). Bytes above `k` are ignored.
#[inline(always)]
pub(crate) fn value_of(t: u64, k: usize) -> u64 {
    debug_assert!(k <= 8);
    // Move the k digits to the top bytes (zeros below are leading zeros), then combine pairs,
    // quads and halves with one multiply each.
    let v = t.checked_shl(8 * (8 - k as u32)).unwrap_or(0);
    value_of8(v)
}

/// The value of 8 decimal digits, most significant in the lowest byte; only each byte's low
/// nibble is read, so ASCII digits and digit values (as in [`digits`]) both work, and zero bytes
/// are leading zeros.
#[inline(always)]
pub(crate) fn value_of8(v: u64) -> u64 {
    let v = ((v & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561)) >> 8;
    let v = ((v & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601)) >> 16;
    ((v & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001)) >> 32
}

/// The bit mask of the non-digits of `win`: bit `k` is set iff `win[k]` is not an ASCII digit.
/// Exact for every byte. SSE2 on x86-64 (16-byte compares), 8-byte words elsewhere.
#[inline(always)]
pub(crate) fn nondigits32(win: &[u8; WINDOW]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_set1_epi8,
            _mm_sub_epi8,
        };
        // SAFETY: SSE2 is part of the x86-64 baseline; both unaligned 16-byte loads lie within
        // `win` (32 bytes, offsets 0 and 16).
        unsafe {
            let lo = _mm_loadu_si128(win.as_ptr().cast());
            let hi = _mm_loadu_si128(win.as_ptr().add(16).cast());
            let zero = _mm_set1_epi8(b'0' as i8);
            let nine = _mm_set1_epi8(9);
            // A digit is at most 9 after subtracting '0' (unsigned bytes).
            let dlo = _mm_sub_epi8(lo, zero);
            let dhi = _mm_sub_epi8(hi, zero);
            let dlo = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(dlo, nine), dlo)) as u32;
            let dhi = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(dhi, nine), dhi)) as u32;
            !(dlo | dhi << 16)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        nondigits32_words(win)
    }
}

/// [`nondigits32`] with 8-byte words (the portable version).
#[inline(always)]
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
pub(crate) fn nondigits32_words(win: &[u8; WINDOW]) -> u32 {
    // Gathers the eight 0x80 flags of a word into one byte.
    let gather = |flags: u64| ((flags >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32;
    let mut nd = 0u32;
    for k in 0..4 {
        let t = load8(win, 8 * k) ^ (0x30 * LO);
        // Exact per byte: (t & 0x7F) + 0x76 stays below 0x100.
        let flags = (((t & (0x7F * LO)) + (0x76 * LO)) | t) & HI;
        nd |= gather(flags) << (8 * k);
    }
    nd
}

/// A JSON unsigned integer of 1 to 19 digits at `b[at..]`, word at a time: `(value, end)` with
/// `end` the index of the first byte after its digits. `None` (the caller then takes its general
/// path) for anything else: no digit, a leading zero, 20 or more digits. What follows the digits
/// (`.`, `e`) is the caller's to check.
#[inline(always)]
pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let w0 = word(b, at);
    let (t0, nd0) = digits(w0);
    let lead_zero = w0 as u8 == b'0';
    if nd0 != 0 {
        let k = first_flag(nd0);
        if k == 0 || (lead_zero && k > 1) {
            return None;
        }
        return Some((value_of(t0, k), at + k));
    }
    if lead_zero {
        return None;
    }
    let hi = value_of8(t0);
    let (t1, nd1) = digits(word(b, at + 8));
    if nd1 != 0 {
        let k = first_flag(nd1);
        return Some((hi * POW10[k] + value_of(t1, k), at + 8 + k));
    }
    let mid = hi * 100_000_000 + value_of8(t1);
    let (t2, nd2) = digits(word(b, at + 16));
    let k = first_flag(nd2);
    if k > 3 {
        return None;
    }
    // At most 19 digits: below 10^19, no overflow.
    Some((mid * POW10[k] + value_of(t2, k), at + 16 + k))
}

/// Bytes of the window [`nondigits32`] and [`decimal_in`] work on.
pub(crate) const WINDOW: usize = 32;

/// A short decimal in a window: 16 bytes that hold its integer digits at the top of the first
/// 8 and its fraction digits after its dot (byte 8), and `mask` picks them out
/// ([`DIGIT_MASKS`]). [`units2`] converts two of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Short<'a> {
    /// The 16 bytes from 8 before the number's dot (or the byte after its digits).
    pub(crate) bytes: &'a [u8; 16],
    /// Row of [`DIGIT_MASKS`]: `8 * (integer digits - 1) + fraction digits`.
    pub(crate) mask: usize,
}

/// `0x0F` in the bytes of the digits of a short decimal laid out as in [`Short`], zero
/// elsewhere: row `8 * (i - 1) + f` keeps bytes `8 - i..8` (the `i` integer digits) and
/// `9..9 + f` (the `f` fraction digits, after the dot).
pub(crate) const DIGIT_MASKS: [[u8; 16]; 64] = {
    let mut t = [[0u8; 16]; 64];
    let mut r = 0;
    while r < 64 {
        let (i, f) = (r / 8 + 1, r % 8);
        let mut k = 8 - i;
        while k < 8 {
            t[r][k] = 0x0F;
            k += 1;
        }
        let mut k = 9;
        while k < 9 + f {
            t[r][k] = 0x0F;
            k += 1;
        }
        r += 1;
    }
    t
};

/// The non-negative decimal at `win[start..]` (digits, optionally a dot and more digits, within
/// 8 bytes; `start` from 7 to 24) as a [`Short`], given `m`: the window's non-digit bits from
/// `start` on, with bit 31 set whatever byte 31 is (a stop no short number reaches). Returns
/// `(number, end, m without the bits used)`, `end` being the index of the first byte after the
/// number (the caller checks it is the delimiter it expects). `None` for anything else: no
/// digit, a leading zero, a dot without fraction digits, a longer number, one whose 16 bytes
/// would not fit in the window (its dot or end past byte 24).
#[inline(always)]
pub(crate) fn decimal_in(
    win: &[u8; WINDOW],
    start: usize,
    m: u32,
) -> Option<(Short<'_>, usize, u32)> {
    debug_assert!((7..=WINDOW - 8).contains(&start) && m >> 31 == 1);
    const LAST: usize = WINDOW - 1;
    // With bit 31 set, every index below is at most 31.
    let a = m.trailing_zeros() as usize;
    if a == start || (win[start & LAST] == b'0' && a > start + 1) {
        return None;
    }
    // a > start >= 7, and a <= 24 for the 16 bytes to fit.
    let at = a.wrapping_sub(8);
    if at > WINDOW - 16 {
        return None;
    }
    let bytes = win[at..].first_chunk::<16>()?;
    if win[a & LAST] == b'.' {
        let m = m & (m - 1);
        let b = m.trailing_zeros() as usize;
        if b == a + 1 || b - start > 8 {
            return None;
        }
        // 1..=6 integer digits, 1..=6 fraction digits.
        let mask = (8 * (a - start - 1) + (b - a - 1)) & 63;
        Some((Short { bytes, mask }, b, m & (m - 1)))
    } else {
        let k = a - start;
        if k > 8 {
            return None;
        }
        Some((
            Short {
                bytes,
                mask: (8 * (k - 1)) & 63,
            },
            a,
            m & (m - 1),
        ))
    }
}

/// The values in 10^-8 units of two short decimals (each below 10^16), in one go:
/// SSE2 on x86-64, [`value_of8`] elsewhere.
///
/// The 16 masked bytes of a number read as 16 digits (most significant first) give its
/// integer digits in the first 8 and, in the last 8, its fraction digits one place too far
/// right (the dot's byte is a zero): the value is `first * 10^8 + last * 10`.
#[inline(always)]
pub(crate) fn units2(x: Short<'_>, y: Short<'_>) -> (u64, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            _mm_add_epi64, _mm_and_si128, _mm_cvtsi128_si64, _mm_loadu_si128, _mm_madd_epi16,
            _mm_mul_epu32, _mm_mullo_epi16, _mm_packs_epi32, _mm_set1_epi16, _mm_set1_epi32,
            _mm_set1_epi64x, _mm_srli_epi16, _mm_srli_epi64, _mm_unpackhi_epi64,
        };
        let (xm, ym) = (&DIGIT_MASKS[x.mask & 63], &DIGIT_MASKS[y.mask & 63]);
        // SAFETY: SSE2 is part of the x86-64 baseline; the unaligned 16-byte loads read
        // 16-byte arrays (the numbers' bytes and their mask rows).
        unsafe {
            // Byte k of each 16-byte value is its digit k (low nibble; zero bytes are zeros).
            let a = _mm_and_si128(
                _mm_loadu_si128(x.bytes.as_ptr().cast()),
                _mm_loadu_si128(xm.as_ptr().cast()),
            );
            let b = _mm_and_si128(
                _mm_loadu_si128(y.bytes.as_ptr().cast()),
                _mm_loadu_si128(ym.as_ptr().cast()),
            );
            // Pairs: a 16-bit lane lo + 256 hi times 0x0A01 is 256 (10 lo + hi) + lo modulo
            // 2^16 (lo, hi <= 9), so its top byte is the pair's value.
            let pair = _mm_set1_epi16(0x0A01);
            let a = _mm_srli_epi16(_mm_mullo_epi16(a, pair), 8);
            let b = _mm_srli_epi16(_mm_mullo_epi16(b, pair), 8);
            // Quads: 100 times the lower lane plus the upper (<= 9999, 32-bit lanes).
            let quad = _mm_set1_epi32(0x0001_0064);
            let a = _mm_madd_epi16(a, quad);
            let b = _mm_madd_epi16(b, quad);
            // Both numbers' quads as 16-bit lanes (no saturation below 10^4), then eights:
            // [x first, x last, y first, y last] as 32-bit lanes (< 10^8).
            let eights = _mm_madd_epi16(_mm_packs_epi32(a, b), _mm_set1_epi32(0x0001_2710));
            // first * 10^8 + last * 10 in each 64-bit lane (< 10^16).
            let hi = _mm_mul_epu32(eights, _mm_set1_epi64x(100_000_000));
            let lo = _mm_mul_epu32(_mm_srli_epi64(eights, 32), _mm_set1_epi64x(10));
            let v = _mm_add_epi64(hi, lo);
            (
                _mm_cvtsi128_si64(v) as u64,
                _mm_cvtsi128_si64(_mm_unpackhi_epi64(v, v)) as u64,
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        units2_words(x, y)
    }
}

/// [`units2`] with 8-byte words (the portable version).
#[inline(always)]
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
pub(crate) fn units2_words(x: Short<'_>, y: Short<'_>) -> (u64, u64) {
    let v = |d: Short<'_>| {
        let mask = &DIGIT_MASKS[d.mask & 63];
        let first = load8(d.bytes, 0) & load8(mask, 0);
        let last = load8(d.bytes, 8) & load8(mask, 8);
        value_of8(first) * 100_000_000 + value_of8(last) * 10
    };
    (v(x), v(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_past_the_end_read_as_zero() {
        assert_eq!(word(b"abc", 0), u64::from_le_bytes(*b"abc\0\0\0\0\0"));
        assert_eq!(word(b"abc", 3), 0);
        assert_eq!(word(b"abc", 9), 0);
    }

    #[test]
    fn digit_classification_is_exact_up_to_the_first_non_digit_and_after_a_dot() {
        for c in 0..=255u8 {
            for (below, above) in [(b'5', 0u8), (b'7', 0xFF), (b'.', b'/'), (b'0', b':')] {
                let mut w = [above; 8];
                w[..3].fill(b'1');
                w[2] = below;
                w[3] = c;
                let (t, nd) = digits(u64::from_le_bytes(w));
                let flag = (nd >> (8 * 3 + 7)) & 1 == 1;
                assert_eq!(flag, !c.is_ascii_digit(), "byte {c:#x}");
                assert_eq!(nd & ((1 << 24) - 1) != 0, below == b'.');
                if c.is_ascii_digit() {
                    assert_eq!((t >> 24) as u8, c - b'0');
                }
            }
        }
    }

    #[test]
    fn literals_compare_whole() {
        let text = b"{\"jsonrpc\":\"2.0\",\"method\":\"x\"}";
        assert!(starts_with_at(
            text,
            0,
            b"{\"jsonrpc\":\"2.0\",\"method\":\""
        ));
        assert!(!starts_with_at(
            text,
            0,
            b"{\"jsonrpc\":\"2.0\",\"method\":\"y"
        ));
        assert!(starts_with_at(text, 1, b"\"json"));
        let x = text.len() - 3;
        assert!(!starts_with_at(text, x, b"x\"}?"));
        assert!(starts_with_at(text, x, b"x\"}"));
        assert!(!starts_with_at(text, x + 1, b"x\"}"));
        for n in 0..20 {
            let a: Vec<u8> = (0..n as u8).collect();
            let mut b = a.clone();
            assert!(eq_same_len(&a, &b));
            for i in 0..n {
                b[i] ^= 1;
                assert!(!eq_same_len(&a, &b), "{n} {i}");
                b[i] ^= 1;
            }
        }
    }

    #[test]
    fn integers_read_word_at_a_time() {
        for s in [
            "0,",
            "7}",
            "12345678,",
            "123456789,",
            "1700000000123,",
            "9999999999999999,",
            "1700000000123456789}}}",
            "9999999999999999999",
        ] {
            let digits = s.bytes().take_while(u8::is_ascii_digit).count();
            assert_eq!(
                u64_at(s.as_bytes(), 0),
                Some((s[..digits].parse().unwrap(), digits)),
                "{s}"
            );
        }
        for s in [
            "",
            "x",
            "01",
            "00",
            "-1",
            "012345678901",
            "12345678901234567890",
        ] {
            assert_eq!(u64_at(s.as_bytes(), 0), None, "{s}");
        }
    }

    /// A small deterministic generator of number-like text.
    fn texts(seed: u64, count: usize) -> impl Iterator<Item = Vec<u8>> {
        const ALPHABET: &[u8] = b"0123456789012345678901234567890.,]eE-+ x";
        let mut x = seed;
        (0..count).map(move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let mut r = x;
            (0..len)
                .map(|_| {
                    r = r.rotate_left(7).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    ALPHABET[(r >> 40) as usize % ALPHABET.len()]
                })
                .collect()
        })
    }

    #[test]
    fn window_decimals_agree_with_the_exact_parser_whenever_taken() {
        // Texts from byte 8 of the window (after a row's action, numbers start at 7 or 10).
        const AT: usize = 8;
        let mut taken = 0;
        for t in texts(0x1234_5678_9abc_def1, 300_000) {
            let mut win = [0u8; WINDOW];
            let n = t.len().min(WINDOW - AT);
            win[AT..AT + n].copy_from_slice(&t[..n]);
            for at in AT..AT + n.min(3) {
                let m = (nondigits32(&win) | 1 << 31) & (u32::MAX << at);
                let Some((number, end, _)) = decimal_in(&win, at, m) else {
                    continue;
                };
                if !matches!(win.get(end), Some(b',' | b']')) {
                    continue;
                }
                taken += 1;
                let (units, same) = units2(number, number);
                assert_eq!(units, same);
                assert_eq!(units2_words(number, number), (units, units));
                let exact = crate::md::Fixed::parse_prefix(&win[at..]);
                assert_eq!(
                    exact.map(|(v, n)| (v.raw(), at + n)),
                    Ok((units as i64, end)),
                    "{}",
                    String::from_utf8_lossy(&win[at..])
                );
            }
        }
        assert!(taken > 1000, "{taken}");
    }

    #[test]
    fn two_short_decimals_convert_like_the_word_version() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // The largest: 8 integer digits, and 7 fraction digits after the dot.
        let mut win = [b'9'; WINDOW];
        win[16] = b'.';
        let bytes = win[8..24].try_into().unwrap();
        let int8 = Short { bytes, mask: 56 };
        let frac7 = Short {
            bytes,
            mask: 56 + 7,
        };
        assert_eq!(
            units2(int8, frac7),
            (9_999_999_900_000_000, 9_999_999_999_999_990)
        );
        assert_eq!(units2_words(int8, frac7), units2(int8, frac7));
        // Any bytes, any layout: masked bytes never matter.
        for _ in 0..100_000 {
            for k in 0..4 {
                let r = next();
                for j in 0..8 {
                    win[8 * k + j] = if r >> (8 * j + 7) & 1 == 1 {
                        b'0' + ((r >> (8 * j)) % 10) as u8
                    } else {
                        (r >> (8 * j)) as u8
                    };
                }
            }
            let r = next();
            let (xa, ya) = ((r % 17) as usize, (r >> 16) as usize % 17);
            let x = Short {
                bytes: win[xa..xa + 16].try_into().unwrap(),
                mask: (r >> 8) as usize % 64,
            };
            let y = Short {
                bytes: win[ya..ya + 16].try_into().unwrap(),
                mask: (r >> 24) as usize % 64,
            };
            assert_eq!(units2(x, y), units2_words(x, y), "{x:?} {y:?}");
        }
    }

    #[test]
    fn word_integers_agree_with_the_exact_parser_whenever_taken() {
        let mut taken = 0;
        for t in texts(0x0fed_cba9_8765_4321, 300_000) {
            for at in 0..t.len().min(3) {
                let Some((v, end)) = u64_at(&t, at) else {
                    continue;
                };
                if matches!(t.get(end), Some(b'0'..=b'9' | b'.' | b'e' | b'E')) {
                    continue;
                }
                taken += 1;
                assert_eq!(
                    crate::md::parse_u64_prefix(&t[at..]).map(|(v, n)| (v, at + n)),
                    Ok((v, end)),
                    "{}",
                    String::from_utf8_lossy(&t[at..])
                );
            }
        }
        assert!(taken > 1000, "{taken}");
    }

    #[test]
    fn window_masks_flag_exactly_the_non_digits() {
        for t in texts(0x5555_aaaa_1234_4321, 20_000) {
            let mut win = [0u8; WINDOW];
            for (k, c) in t.iter().cycle().take(32).enumerate() {
                win[k] = c.wrapping_add((k * 37 % 3) as u8);
            }
            let want = win
                .iter()
                .enumerate()
                .fold(0u32, |m, (k, c)| m | ((!c.is_ascii_digit() as u32) << k));
            assert_eq!(nondigits32(&win), want, "{win:?}");
            assert_eq!(nondigits32_words(&win), want, "{win:?}");
        }
        for c in 0..=255u8 {
            let win = [c; 32];
            let want = if c.is_ascii_digit() { 0 } else { u32::MAX };
            assert_eq!(nondigits32(&win), want, "{c:#x}");
            assert_eq!(nondigits32_words(&win), want, "{c:#x}");
        }
    }
}
