//! Reconnect pacing: exponential backoff with full jitter and a cap, first retry immediate, and a
//! connection-rate budget (at most N connection attempts per sliding window).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Reconnect policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Upper bound of the jitter window of the second attempt; doubles with each further one.
    pub base: Duration,
    /// Largest jitter window.
    pub cap: Duration,
    /// Most connection attempts per [`budget_window`](Self::budget_window) (Deribit: 32 per IP;
    /// keep well below). At most [`MAX_BUDGET`].
    pub budget: u32,
    /// The budget's sliding window.
    pub budget_window: Duration,
    /// After staying `Live` this long, the next drop is treated as a first failure again.
    pub reset_after: Duration,
}

/// Largest [`BackoffConfig::budget`] (the attempt history is a fixed array).
pub const MAX_BUDGET: usize = 64;

impl Default for BackoffConfig {
    /// 100 ms base, 30 s cap, 16 connections a minute, reset after 60 s `Live`.
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
            budget: 16,
            budget_window: Duration::from_secs(60),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// A small seeded PRNG (SplitMix64): deterministic jitter and nonces from a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rng {
    /// The state; any value is valid.
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (slight modulo bias, irrelevant for jitter).
    #[inline]
    pub fn below_or_eq(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            self.next_u64()
        } else {
            self.next_u64() % (max + 1)
        }
    }
}

/// Backoff state: consecutive failures and the recent connection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The policy.
    config: BackoffConfig,
    /// Consecutive attempts since the last reset (0: the next attempt is the first retry).
    failures: u32,
    /// Times (ns) of the most recent attempts, a ring of `config.budget` slots.
    /// Invariant: `history_len <= config.budget as usize <= MAX_BUDGET`.
    history: [u64; MAX_BUDGET],
    /// Slot of the next write in `history`.
    history_next: usize,
    /// Slots of `history` in use.
    history_len: usize,
}

impl Backoff {
    /// A fresh state; `config.budget` is clamped to `1..=MAX_BUDGET`.
    pub fn new(mut config: BackoffConfig) -> Backoff {
        config.budget = config.budget.clamp(1, MAX_BUDGET as u32);
        Backoff {
            config,
            failures: 0,
            history: [0; MAX_BUDGET],
            history_next: 0,
            history_len: 0,
        }
    }

    /// The policy.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// Consecutive failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets consecutive failures (the session stayed `Live`).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay (ns) before the next attempt after a drop at `now`, counting this failure:
    /// 0 for the first, then uniform in `0..=min(cap, base * 2^(n-1))`, and never earlier than
    /// the connection budget allows.
    pub fn next_delay(&mut self, now: u64, rng: &mut Rng) -> u64 {
        let n = self.failures;
        self.failures = self.failures.saturating_add(1);
        let jitter = if n == 0 {
            0
        } else {
            let base = self.config.base.as_nanos().min(u64::MAX as u128) as u64;
            let cap = self.config.cap.as_nanos().min(u64::MAX as u128) as u64;
            let window = base.saturating_mul(1u64 << (n - 1).min(62)).min(cap);
            rng.below_or_eq(window)
        };
        let budget_wait = self.budget_free_at(now).saturating_sub(now);
        jitter.max(budget_wait)
    }

    /// The earliest time a connection attempt fits the budget.
    pub fn budget_free_at(&self, now: u64) -> u64 {
        let budget = self.config.budget as usize;
        if self.history_len < budget {
            return now;
        }
        // The ring is full: the oldest attempt is at the next write slot.
        let oldest = self.history[self.history_next];
        let window = self.config.budget_window.as_nanos().min(u64::MAX as u128) as u64;
        oldest.saturating_add(window).max(now)
    }

    /// Records a connection attempt at `now`.
    pub fn record_attempt(&mut self, now: u64) {
        let budget = self.config.budget as usize;
        debug_assert!(self.history_next < budget);
        self.history[self.history_next] = now;
        self.history_next = (self.history_next + 1) % budget;
        self.history_len = (self.history_len + 1).min(budget);
    }
}

/// A connection-rate budget shared by every session to one venue (Deribit: 32 connections per
/// IP; Binance: 300 per 5 minutes per IP): at most `budget` connection attempts in any
/// `window`, counted over all the sessions holding it. Give each session's
/// [`SessionConfig::connection_budget`](super::SessionConfig::connection_budget) the same `Arc`.
///
/// Times are Unix milliseconds (the sessions' clocks need not share an epoch). Lock-free: a ring
/// of the last `budget` attempt times; two sessions recording at the same instant may overwrite
/// each other's slot, which can only make the budget look less used by one attempt.
#[derive(Debug)]
pub struct SharedBudget {
    /// Attempt times, Unix ms (0: none); the slot at `next % len` is the oldest.
    slots: Box<[AtomicU64]>,
    /// Attempts recorded so far.
    next: AtomicUsize,
    /// The window, ms.
    window_ms: u64,
}

impl SharedBudget {
    /// At most `budget` (at least 1) attempts per `window`.
    pub fn new(budget: u32, window: Duration) -> Arc<SharedBudget> {
        Arc::new(SharedBudget {
            slots: (0..budget.max(1)).map(|_| AtomicU64::new(0)).collect(),
            next: AtomicUsize::new(0),
            window_ms: window.as_millis().min(u64::MAX as u128) as u64,
        })
    }

    /// The earliest Unix ms at or after `now_ms` at which an attempt fits the budget.
    pub fn free_at_ms(&self, now_ms: u64) -> u64 {
        let i = self.next.load(Ordering::Acquire) % self.slots.len();
        match self.slots[i].load(Ordering::Acquire) {
            0 => now_ms,
            oldest => oldest.saturating_add(self.window_ms).max(now_ms),
        }
    }

    /// Records an attempt at `now_ms`.
    pub fn record_ms(&self, now_ms: u64) {
        let i = self.next.fetch_add(1, Ordering::AcqRel) % self.slots.len();
        self.slots[i].store(now_ms.max(1), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn cfg() -> BackoffConfig {
        BackoffConfig {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            budget: 4,
            budget_window: Duration::from_secs(10),
            reset_after: Duration::from_secs(5),
        }
    }

    #[test]
    fn first_retry_is_immediate_then_jitter_windows_double_up_to_the_cap() {
        let mut b = Backoff::new(BackoffConfig {
            budget: 64,
            ..cfg()
        });
        let mut rng = Rng::new(7);
        assert_eq!(b.next_delay(0, &mut rng), 0);
        for n in 1..10u32 {
            let window = ((100 * MS) << (n - 1)).min(1000 * MS);
            for _ in 0..50 {
                let mut probe = b.clone();
                probe.failures = n;
                assert!(probe.next_delay(0, &mut rng) <= window);
            }
        }
    }

    #[test]
    fn jitter_is_spread_over_the_whole_window() {
        let mut rng = Rng::new(1);
        let mut b = Backoff::new(BackoffConfig {
            budget: 64,
            ..cfg()
        });
        b.failures = 20;
        let (mut low, mut high) = (false, false);
        for _ in 0..200 {
            let mut p = b.clone();
            let d = p.next_delay(0, &mut rng);
            low |= d < 250 * MS;
            high |= d > 750 * MS;
        }
        assert!(low && high);
    }

    #[test]
    fn the_budget_delays_attempts_beyond_it_until_the_oldest_leaves_the_window() {
        let mut b = Backoff::new(cfg());
        let mut rng = Rng::new(3);
        for t in 0..4 {
            b.record_attempt(t * MS);
        }
        b.reset();
        let d = b.next_delay(5 * MS, &mut rng);
        assert_eq!(d, 10_000 * MS - 5 * MS);
        assert_eq!(b.budget_free_at(20_000 * MS), 20_000 * MS);
    }

    #[test]
    fn reset_makes_the_next_retry_immediate_again() {
        let mut b = Backoff::new(BackoffConfig {
            budget: 64,
            ..cfg()
        });
        let mut rng = Rng::new(3);
        b.next_delay(0, &mut rng);
        b.next_delay(0, &mut rng);
        b.reset();
        assert_eq!(b.next_delay(0, &mut rng), 0);
    }

    #[test]
    fn a_shared_budget_counts_attempts_of_every_holder() {
        let b = SharedBudget::new(3, Duration::from_secs(60));
        let other = Arc::clone(&b);
        assert_eq!(b.free_at_ms(1_000), 1_000);
        b.record_ms(1_000);
        other.record_ms(2_000);
        assert_eq!(b.free_at_ms(2_500), 2_500, "two of three used");
        b.record_ms(3_000);
        // Full: the next attempt waits for the oldest (1 000) to leave the window.
        assert_eq!(other.free_at_ms(3_500), 61_000);
        assert_eq!(b.free_at_ms(70_000), 70_000);
    }

    #[test]
    fn rng_is_deterministic_per_seed() {
        let (mut a, mut b, mut c) = (Rng::new(9), Rng::new(9), Rng::new(10));
        let x: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let y: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        let z: Vec<u64> = (0..4).map(|_| c.next_u64()).collect();
        assert_eq!(x, y);
        assert_ne!(x, z);
    }
}
