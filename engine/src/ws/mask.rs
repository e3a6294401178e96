//! Client-side payload masking (RFC 6455 §5.3) and the mask-key source.
//!
//! Every frame a client sends is masked: payload byte `i` is XORed with `key[i % 4]`. Masking is
//! the only per-byte work the send path does, so [`apply_mask`] works a 64-bit word at a time (the
//! 4-byte key repeated twice) with a byte-wise tail; [`apply_mask_bytewise`] is the reference it is
//! tested against.
//!
//! Mask keys come from [`MaskKeyGen`], a wyrand generator seeded once from the OS (through std's
//! `RandomState`): no allocation and no syscall per frame.

use std::hash::{BuildHasher, Hasher};

/// XORs `buf` in place with the repeating 4-byte `key`, starting at key phase 0.
///
/// Works on 8-byte words (unaligned loads and stores of `u64`, which the compiler lowers to plain
/// moves or SIMD on x86-64 and aarch64) and finishes the last `buf.len() % 8` bytes one at a time.
/// Because 8 is a multiple of 4, every word starts at key phase 0, so the key never needs rotating.
/// Equal to [`apply_mask_bytewise`] for every length, alignment and key (property-tested).
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    // Four words per step gives the optimizer a 32-byte body to vectorize.
    let mut blocks = buf.chunks_exact_mut(32);
    for block in &mut blocks {
        for lane in block.chunks_exact_mut(8) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(lane);
            let v = u64::from_ne_bytes(bytes) ^ word;
            lane.copy_from_slice(&v.to_ne_bytes());
        }
    }
    let rest = blocks.into_remainder();
    let mut words = rest.chunks_exact_mut(8);
    for lane in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(lane);
        let v = u64::from_ne_bytes(bytes) ^ word;
        lane.copy_from_slice(&v.to_ne_bytes());
    }
    // The tail starts at a multiple of 8, hence at key phase 0.
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// The byte-at-a-time reference for [`apply_mask`]: `buf[i] ^= key[i % 4]`.
///
/// Kept public so tests and benchmarks can compare against it; use [`apply_mask`] otherwise.
#[inline]
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// A fast source of frame mask keys: wyrand, seeded once from OS randomness.
///
/// RFC 6455 §10.3 asks for keys a script on the page cannot predict, to stop cache-poisoning
/// attacks through intermediaries that misread WebSocket traffic as HTTP. spinwire has no hostile
/// scripts in-process, so a non-cryptographic generator seeded from the OS is enough; it costs a
/// multiply and an add per key, with no allocation and no syscall.
#[derive(Debug, Clone)]
pub struct MaskKeyGen {
    /// wyrand state; any value is valid (the increment makes the sequence visit all of them).
    state: u64,
}

impl MaskKeyGen {
    /// A generator seeded from the OS through std's `RandomState` (one `getrandom` per thread, the
    /// first time std needs it; no allocation).
    pub fn from_os() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x5350_494e_5749_5245); // "SPINWIRE": any constant; the seed is in the keys.
        Self::from_seed(hasher.finish())
    }

    /// A generator with a fixed seed: the same keys every run (tests, reproducible benches).
    pub const fn from_seed(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        (t as u64) ^ ((t >> 64) as u64)
    }

    /// The next 4-byte mask key.
    #[inline]
    pub fn next_key(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_ne_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masking_twice_restores_the_payload() {
        let original: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut buf = original.clone();
        apply_mask(&mut buf, [1, 2, 3, 4]);
        assert_ne!(buf, original);
        apply_mask(&mut buf, [1, 2, 3, 4]);
        assert_eq!(buf, original);
    }

    #[test]
    fn masking_matches_the_rfc_example() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        let mut buf = *b"Hello";
        apply_mask(&mut buf, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(buf, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn key_generator_with_the_same_seed_repeats_and_different_seeds_differ() {
        let mut a = MaskKeyGen::from_seed(42);
        let mut b = MaskKeyGen::from_seed(42);
        let mut c = MaskKeyGen::from_seed(43);
        let ka: Vec<_> = (0..16).map(|_| a.next_key()).collect();
        let kb: Vec<_> = (0..16).map(|_| b.next_key()).collect();
        let kc: Vec<_> = (0..16).map(|_| c.next_key()).collect();
        assert_eq!(ka, kb);
        assert_ne!(ka, kc);
        // Not stuck: 16 keys are not all the same.
        assert!(ka.iter().any(|k| *k != ka[0]));
    }

    #[test]
    fn os_seeded_generators_differ() {
        let mut a = MaskKeyGen::from_os();
        let mut b = MaskKeyGen::from_os();
        assert_ne!(a.next_u64(), b.next_u64());
    }

    proptest! {
        #[test]
        fn word_wise_mask_equals_byte_wise_for_any_length_offset_and_key(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            offset in 0usize..16,
            key in any::<[u8; 4]>(),
        ) {
            // Place the payload at `offset` inside a larger buffer to vary its alignment.
            let mut fast = vec![0u8; offset + data.len()];
            fast[offset..].copy_from_slice(&data);
            let mut slow = fast.clone();
            apply_mask(&mut fast[offset..], key);
            apply_mask_bytewise(&mut slow[offset..], key);
            prop_assert_eq!(fast, slow);
        }
    }
}
