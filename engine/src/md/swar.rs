//! Word-at-a-time (SWAR) helpers for the market-data fast paths: 8-byte loads, literal
//! comparison, digit classification and decimal conversion on plain `u64`s, and one 32-byte
//! classification ([`classify32`]) that uses SSE2 on x86-64 (its only `unsafe`: two unaligned
//! loads inside a `&[u8; 32]`) and words elsewhere; a test checks both give the same masks.
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

/// Two bit masks of `win`: bit `k` of the first is set iff `win[k]` is not an ASCII digit, bit
/// `k` of the second iff `win[k]` is `c`. Exact for every byte. SSE2 on x86-64 (16-byte
/// compares), 8-byte words elsewhere.
#[inline(always)]
pub(crate) fn classify32(win: &[u8; WINDOW], c: u8) -> (u32, u32) {
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
            let c = _mm_set1_epi8(c as i8);
            // A digit is at most 9 after subtracting '0' (unsigned bytes).
            let dlo = _mm_sub_epi8(lo, zero);
            let dhi = _mm_sub_epi8(hi, zero);
            let dlo = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(dlo, nine), dlo)) as u32;
            let dhi = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(dhi, nine), dhi)) as u32;
            let clo = _mm_movemask_epi8(_mm_cmpeq_epi8(lo, c)) as u32;
            let chi = _mm_movemask_epi8(_mm_cmpeq_epi8(hi, c)) as u32;
            (!(dlo | dhi << 16), clo | chi << 16)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        classify32_words(win, c)
    }
}

/// [`classify32`] with 8-byte words (the portable version).
#[inline(always)]
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
pub(crate) fn classify32_words(win: &[u8; WINDOW], c: u8) -> (u32, u32) {
    // Gathers the eight 0x80 flags of a word into one byte.
    let gather = |flags: u64| ((flags >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32;
    let (mut nd, mut eq) = (0u32, 0u32);
    for k in 0..4 {
        let w = load8(win, 8 * k);
        let t = w ^ (0x30 * LO);
        // Exact per byte: (t & 0x7F) + 0x76 stays below 0x100.
        let flags = (((t & (0x7F * LO)) + (0x76 * LO)) | t) & HI;
        nd |= gather(flags) << (8 * k);
        // Exact per byte: a byte is `c` iff its xor with `c` is 0, iff adding 0x7F to its low
        // seven bits leaves the top bit clear and its own top bit is clear.
        let x = w ^ (c as u64 * LO);
        let flags = !(((x & (0x7F * LO)) + (0x7F * LO)) | x) & HI;
        eq |= gather(flags) << (8 * k);
    }
    (nd, eq)
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

/// Bytes of the window [`classify32`] and [`decimal_in`] work on.
pub(crate) const WINDOW: usize = 32;

/// `10^(9 - d)` for a fraction that ends `d` bytes after its dot (`d` = decimals + 1, 2..=7):
/// the scale from the digits to units of 10^-8.
const FRAC_SCALE: [u64; 8] = [0, 0, 10_000_000, 1_000_000, 100_000, 10_000, 1_000, 100];

/// The non-negative decimal at `win[start..]` (digits, optionally a dot and more digits, within
/// 8 bytes; `start` at most 24) as 10^-8 units, given `m`: the window's non-digit bits from
/// `start` on, with bit 31 set whatever byte 31 is (a stop no short number reaches). Returns
/// `(units, end, m without the bits used)`, `end` being the index of the first byte after the
/// number (the caller checks it is the delimiter it expects). `None` for anything else: no
/// digit, a leading zero, a dot without fraction digits, a longer number.
#[inline(always)]
pub(crate) fn decimal_in(win: &[u8; WINDOW], start: usize, m: u32) -> Option<(u64, usize, u32)> {
    debug_assert!(start <= WINDOW - 8 && m >> 31 == 1);
    const LAST: usize = WINDOW - 1;
    // With bit 31 set, every index below is at most 31.
    let a = m.trailing_zeros() as usize;
    if a == start || (a > start + 1 && win[start & LAST] == b'0') {
        return None;
    }
    let w = load8(win, start);
    if win[a & LAST] == b'.' {
        let m = m & (m - 1);
        let b = m.trailing_zeros() as usize;
        if b == a + 1 || b - start > 8 {
            return None;
        }
        // Drop the dot: the bytes above it move down one place, then the b - start - 1
        // digits go to the top bytes (what lies above them is shifted out).
        let low = (1u64 << (8 * (a - start))) - 1;
        let joined = (w & low) | ((w >> 8) & !low);
        let units = value_of8(joined << (72 - 8 * (b - start))) * FRAC_SCALE[(b - a) & 7];
        Some((units, b, m & (m - 1)))
    } else {
        let k = a - start;
        if k > 8 {
            return None;
        }
        // k = 1..=8 digits: shift them to the top bytes (zeros below are leading zeros).
        let units = value_of8(w << (64 - 8 * k)) * POW10[8];
        Some((units, a, m & (m - 1)))
    }
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
        let mut taken = 0;
        for t in texts(0x1234_5678_9abc_def1, 300_000) {
            let mut win = [0u8; WINDOW];
            let n = t.len().min(WINDOW);
            win[..n].copy_from_slice(&t[..n]);
            for at in 0..n.min(3) {
                let m = (classify32(&win, b']').0 | 1 << 31) & (u32::MAX << at);
                let Some((units, end, _)) = decimal_in(&win, at, m) else {
                    continue;
                };
                if !matches!(win.get(end), Some(b',' | b']')) {
                    continue;
                }
                taken += 1;
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
    fn window_masks_flag_exactly_the_non_digits_and_the_byte_asked_for() {
        for t in texts(0x5555_aaaa_1234_4321, 20_000) {
            let mut win = [0u8; WINDOW];
            for (k, c) in t.iter().cycle().take(32).enumerate() {
                win[k] = c.wrapping_add((k * 37 % 3) as u8);
            }
            let want = win
                .iter()
                .enumerate()
                .fold(0u32, |m, (k, c)| m | ((!c.is_ascii_digit() as u32) << k));
            let brackets = win
                .iter()
                .enumerate()
                .fold(0u32, |m, (k, &c)| m | ((c == b']') as u32) << k);
            assert_eq!(classify32(&win, b']'), (want, brackets), "{win:?}");
            assert_eq!(classify32_words(&win, b']'), (want, brackets), "{win:?}");
        }
        for c in 0..=255u8 {
            let win = [c; 32];
            let want = if c.is_ascii_digit() { 0 } else { u32::MAX };
            let eq = if c == b']' { u32::MAX } else { 0 };
            assert_eq!(classify32(&win, b']'), (want, eq), "{c:#x}");
            assert_eq!(classify32_words(&win, b']'), (want, eq), "{c:#x}");
            assert_eq!(classify32_words(&win, c), (want, u32::MAX), "{c:#x}");
        }
    }
}
