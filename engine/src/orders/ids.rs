//! One client-order-id space per engine: [`IdMint`].
//!
//! Every session of an engine mints its client order ids from the engine's one [`IdMint`], so
//! two sessions of the same engine never mint the same id, whatever their clocks say and even
//! when they share an account. Engines in different processes that share an account keep apart
//! by an **instance** number from their configuration, carried in the top byte of every id
//! ([`instance_base`]); a journal written under one instance is refused by another
//! ([`instance_of`] tells whose an id is).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bits of an instance-prefixed id below the instance byte.
pub const INSTANCE_SHIFT: u32 = 56;
/// Bits of an instance-prefixed id below its time base (16,384 ids per millisecond).
pub const INSTANCE_TIME_SHIFT: u32 = 14;
/// The epoch of instance-prefixed time bases: 2025-01-01T00:00:00Z, Unix ms. 42 bits of
/// milliseconds from there last until the year 2164.
pub const INSTANCE_EPOCH_MS: u64 = 1_735_689_600_000;

/// The first id of a run of engine `instance`: `max(floor, instance << 56 | (ms since 2025) <<
/// 14)`. Ids of different instances never meet: each lives below the next instance's byte
/// (16,384 ids per millisecond of the run's start, for 139 years).
pub const fn instance_base(instance: u8, floor: u64, unix_ms: u64) -> u64 {
    let ms = unix_ms.saturating_sub(INSTANCE_EPOCH_MS)
        & ((1 << (INSTANCE_SHIFT - INSTANCE_TIME_SHIFT)) - 1);
    let t = ((instance as u64) << INSTANCE_SHIFT) | (ms << INSTANCE_TIME_SHIFT);
    let b = if floor > t { floor } else { t };
    if b == 0 {
        1
    } else {
        b
    }
}

/// The instance an instance-prefixed id belongs to (its top byte).
pub const fn instance_of(id: u64) -> u8 {
    (id >> INSTANCE_SHIFT) as u8
}

/// The engine's client-order-id counter, shared by all its sessions (cloning shares it).
///
/// All sessions of an engine run on its one thread, so the counter is never contended; it is
/// atomic only so that the sessions stay `Send` (they are built on one thread and run on the
/// engine thread). Minting is one uncontended `fetch_add`.
#[derive(Debug, Clone)]
pub struct IdMint(Arc<AtomicU64>);

impl IdMint {
    /// A mint whose first id is `first` (at least 1).
    pub fn new(first: u64) -> IdMint {
        IdMint(Arc::new(AtomicU64::new(first.max(1))))
    }

    /// The next id (each id is handed out once).
    #[inline]
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }

    /// The id the next [`next`](IdMint::next) returns.
    #[inline]
    pub fn peek(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Makes every later id at least `floor` (a journal's floor, an id recovered from it).
    #[inline]
    pub fn raise_to(&self, floor: u64) {
        self.0.fetch_max(floor, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_counter_and_floors_only_raise_it() {
        let a = IdMint::new(10);
        let b = a.clone();
        assert_eq!(a.next(), 10);
        assert_eq!(b.next(), 11);
        b.raise_to(5);
        assert_eq!(a.next(), 12);
        a.raise_to(100);
        assert_eq!(b.next(), 100);
    }

    #[test]
    fn instances_live_in_their_own_byte() {
        let t = INSTANCE_EPOCH_MS + 1_000;
        let a = instance_base(1, 0, t);
        let b = instance_base(2, 0, t);
        assert_eq!(instance_of(a), 1);
        assert_eq!(instance_of(b), 2);
        assert_eq!(
            a & ((1 << INSTANCE_SHIFT) - 1),
            1_000 << INSTANCE_TIME_SHIFT
        );
        // A later start of the same instance starts above every id an earlier run could
        // mint in the time between (16,384 per ms).
        assert_eq!(instance_base(1, 0, t + 1), a + (1 << INSTANCE_TIME_SHIFT));
        // A journal's floor wins when it is higher.
        assert_eq!(instance_base(1, a + 7, t), a + 7);
        assert_eq!(instance_base(0, 0, 0), 1);
    }
}
