//! A fixed-capacity `u64 → u32` map (open addressing, linear probing, backward-shift delete):
//! client order ids and strategy tags to table slots, without allocating after creation.

/// Map from `u64` keys to `u32` values with a fixed capacity.
#[derive(Debug)]
pub(crate) struct Index {
    /// `(key, value)`; `value == EMPTY` marks a free cell. Length: a power of two at least
    /// twice the most entries ever held, so probes end.
    cells: Vec<(u64, u32)>,
    /// `cells.len() - 1`.
    mask: usize,
    len: usize,
}

const EMPTY: u32 = u32::MAX;

#[inline]
fn hash(k: u64) -> u64 {
    // A 64-bit finalizer (splitmix64): consecutive ids spread over the table.
    let mut x = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Index {
    /// Room for `max` entries.
    pub(crate) fn with_capacity(max: usize) -> Index {
        let n = (max.max(1) * 2).next_power_of_two();
        Index {
            cells: vec![(0, EMPTY); n],
            mask: n - 1,
            len: 0,
        }
    }

    #[inline]
    pub(crate) fn get(&self, k: u64) -> Option<u32> {
        let mut i = hash(k) as usize & self.mask;
        loop {
            let (ck, cv) = self.cells[i];
            if cv == EMPTY {
                return None;
            }
            if ck == k {
                return Some(cv);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Inserts or replaces; `false` when full.
    #[inline]
    pub(crate) fn insert(&mut self, k: u64, v: u32) -> bool {
        debug_assert!(v != EMPTY);
        let mut i = hash(k) as usize & self.mask;
        loop {
            let (ck, cv) = self.cells[i];
            if cv == EMPTY {
                if (self.len + 1) * 2 > self.cells.len() {
                    return false;
                }
                self.cells[i] = (k, v);
                self.len += 1;
                return true;
            }
            if ck == k {
                self.cells[i].1 = v;
                return true;
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    pub(crate) fn remove(&mut self, k: u64) -> Option<u32> {
        let mut i = hash(k) as usize & self.mask;
        loop {
            let (ck, cv) = self.cells[i];
            if cv == EMPTY {
                return None;
            }
            if ck == k {
                break;
            }
            i = (i + 1) & self.mask;
        }
        let out = self.cells[i].1;
        self.len -= 1;
        // Backward-shift deletion: move later cells of the probe run into the hole when their
        // home position allows it.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let (ck, cv) = self.cells[j];
            if cv == EMPTY {
                break;
            }
            let home = hash(ck) as usize & self.mask;
            // Distance from home to j and from home to hole, cyclically.
            let dj = j.wrapping_sub(home) & self.mask;
            let dh = hole.wrapping_sub(home) & self.mask;
            if dh <= dj {
                self.cells[hole] = self.cells[j];
                hole = j;
            }
        }
        self.cells[hole] = (0, EMPTY);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn index_agrees_with_a_hash_map_under_random_inserts_and_removes() {
        let mut idx = Index::with_capacity(64);
        let mut model = HashMap::new();
        let mut x = 12345u64;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 200;
            if x % 3 == 0 || model.len() >= 64 {
                assert_eq!(idx.remove(k), model.remove(&k), "step {step}");
            } else {
                assert!(idx.insert(k, step));
                model.insert(k, step);
            }
            for q in 0..200 {
                assert_eq!(idx.get(q), model.get(&q).copied(), "step {step} key {q}");
            }
        }
    }

    #[test]
    fn index_refuses_inserts_past_its_capacity() {
        let mut idx = Index::with_capacity(4);
        let mut n = 0;
        while idx.insert(n, 1) {
            n += 1;
        }
        assert!(n >= 4);
        assert_eq!(idx.get(0), Some(1));
    }
}
