//! A fixed-capacity table mapping instrument names to small ids.

use std::fmt;

use super::swar;

/// Longest instrument name the table holds, in bytes. Deribit names are 13-30 bytes
/// (`BTC-PERPETUAL`, `BTC_USDC-27DEC24-100000-C`).
pub const MAX_NAME_LEN: usize = 48;

/// Most instruments one table can hold (ids are `u16`).
pub const MAX_INSTRUMENTS: usize = u16::MAX as usize;

/// A small instrument id, assigned by an [`InstrumentTable`] in insertion order from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InstrumentId(pub u16);

impl InstrumentId {
    /// The id as an index (0-based, dense).
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Why a name could not be added to an [`InstrumentTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The table already holds its capacity: build a larger one.
    #[error("instrument table is full ({capacity} instruments)")]
    Full {
        /// The table's capacity.
        capacity: usize,
    },
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("instrument name is {len} bytes, more than {MAX_NAME_LEN}")]
    NameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name is empty or holds a byte that would need JSON escaping (`"`, `\`, control).
    #[error("instrument name is empty or holds a quote, backslash or control character")]
    InvalidName,
    /// The capacity asked of [`InstrumentTable::with_capacity`] is 0 or above
    /// [`MAX_INSTRUMENTS`].
    #[error("instrument table capacity must be 1..={MAX_INSTRUMENTS}")]
    BadCapacity,
}

#[derive(Clone, Copy)]
struct Name {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
}

impl Name {
    #[inline]
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// Maps instrument names to dense [`InstrumentId`]s.
///
/// Filled at subscribe time (cold: [`insert`](Self::insert)); read on the hot path
/// ([`get`](Self::get): one cheap word-wise hash of the name, linear probing, one comparison; no
/// allocation, no SipHash). All memory is allocated by [`with_capacity`](Self::with_capacity).
///
/// ```
/// use spinwire_engine::md::{InstrumentId, InstrumentTable};
/// let mut t = InstrumentTable::with_capacity(8)?;
/// let btc = t.insert("BTC-PERPETUAL")?;
/// assert_eq!(btc, InstrumentId(0));
/// assert_eq!(t.get(b"BTC-PERPETUAL"), Some(btc));
/// assert_eq!(t.name(btc), Some("BTC-PERPETUAL"));
/// assert_eq!(t.get(b"ETH-PERPETUAL"), None);
/// # Ok::<(), spinwire_engine::md::TableError>(())
/// ```
#[derive(Clone)]
pub struct InstrumentTable {
    /// Names by id. Invariant: `names.len() <= capacity`, and the vector never grows past the
    /// capacity it was created with (so it never reallocates).
    names: Vec<Name>,
    /// Open-addressing slots: 0 is empty, `id + 1` otherwise. Invariant: the length is a power
    /// of two at least twice `capacity`, so a probe always meets an empty slot.
    slots: Box<[u16]>,
    /// Most names the table takes.
    capacity: usize,
}

/// Hash of a name for the slot index: FxHash-style over 8-byte words (a rotate, a xor and a
/// multiply per word; the last word overlaps the one before, so no byte-wise tail), so a 13-25
/// byte Deribit name costs a handful of cycles. Not DoS-resistant, and it need not be: the table
/// only holds names the session chose.
#[inline]
fn name_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let n = bytes.len();
    let mut h = (n as u64).wrapping_mul(K);
    let mut mix = |w: u64| h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    if n >= 8 {
        let mut k = 0;
        while k + 8 < n {
            mix(swar::load8(bytes, k));
            k += 8;
        }
        mix(swar::load8(bytes, n - 8));
    } else if n >= 4 {
        let lo = u32::from_le_bytes(bytes.first_chunk::<4>().copied().unwrap_or_default());
        let hi = u32::from_le_bytes(bytes.last_chunk::<4>().copied().unwrap_or_default());
        mix(lo as u64 | (hi as u64) << 32);
    } else if n > 0 {
        mix(bytes[0] as u64 | (bytes[n / 2] as u64) << 8 | (bytes[n - 1] as u64) << 16);
    }
    // The multiply leaves its best bits at the top: fold them down for the mask.
    h ^ (h >> 29) ^ (h >> 47)
}

impl InstrumentTable {
    /// An empty table for up to `capacity` instruments.
    ///
    /// # Errors
    /// [`TableError::BadCapacity`] for 0 or more than [`MAX_INSTRUMENTS`].
    pub fn with_capacity(capacity: usize) -> Result<InstrumentTable, TableError> {
        if capacity == 0 || capacity > MAX_INSTRUMENTS {
            return Err(TableError::BadCapacity);
        }
        let slots = (capacity * 2).next_power_of_two();
        Ok(InstrumentTable {
            names: Vec::with_capacity(capacity),
            slots: vec![0u16; slots].into_boxed_slice(),
            capacity,
        })
    }

    /// Adds `name` (or finds it, when already present) and returns its id.
    ///
    /// # Errors
    /// [`TableError::Full`], [`TableError::NameTooLong`], [`TableError::InvalidName`].
    pub fn insert(&mut self, name: &str) -> Result<InstrumentId, TableError> {
        let b = name.as_bytes();
        if b.len() > MAX_NAME_LEN {
            return Err(TableError::NameTooLong { len: b.len() });
        }
        if b.is_empty() || b.iter().any(|&c| c == b'"' || c == b'\\' || c < 0x20) {
            return Err(TableError::InvalidName);
        }
        let mask = self.slots.len() - 1;
        let mut i = name_hash(b) as usize & mask;
        loop {
            match self.slots[i] {
                0 => break,
                s => {
                    if self.names[s as usize - 1].as_bytes() == b {
                        return Ok(InstrumentId(s - 1));
                    }
                }
            }
            i = (i + 1) & mask;
        }
        if self.names.len() >= self.capacity {
            return Err(TableError::Full {
                capacity: self.capacity,
            });
        }
        let id = self.names.len() as u16;
        let mut n = Name {
            len: b.len() as u8,
            bytes: [0; MAX_NAME_LEN],
        };
        n.bytes[..b.len()].copy_from_slice(b);
        self.names.push(n);
        self.slots[i] = id + 1;
        Ok(InstrumentId(id))
    }

    /// The id of `name`, if present. Hot path: no allocation.
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<InstrumentId> {
        if name.len() > MAX_NAME_LEN {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = name_hash(name) as usize & mask;
        // At most `capacity` occupied slots out of at least twice as many: the loop ends.
        loop {
            match self.slots[i] {
                0 => return None,
                s => {
                    let id = s - 1;
                    // Length first, then word-wise (no `memcmp` call for ~16 bytes).
                    if let Some(n) = self.names.get(id as usize) {
                        if n.len as usize == name.len() && swar::eq_same_len(n.as_bytes(), name) {
                            return Some(InstrumentId(id));
                        }
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// The name of `id`, if assigned.
    pub fn name(&self, id: InstrumentId) -> Option<&str> {
        self.names
            .get(id.index())
            .and_then(|n| std::str::from_utf8(n.as_bytes()).ok())
    }

    /// Number of instruments held.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Most instruments the table takes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// `(id, name)` of every instrument, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (InstrumentId, &str)> + '_ {
        self.names.iter().enumerate().map(|(i, n)| {
            (
                InstrumentId(i as u16),
                std::str::from_utf8(n.as_bytes()).unwrap_or(""),
            )
        })
    }
}

impl fmt::Debug for InstrumentTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(i, n)| (n, i.0)))
            .finish()
    }
}
