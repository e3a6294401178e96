//! The client-side token bucket of matching-engine requests.

use super::config::OrderRateLimit;

/// A token bucket in milli-tokens, refilled from `now` (ns) on each use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    /// Milli-tokens held; invariant: `<= cap`.
    level: u64,
    /// Bucket size, milli-tokens (`burst * 1000`).
    cap: u64,
    /// Refill, milli-tokens per second (`per_second * 1000`).
    rate: u64,
    /// Time of the last refill, ns.
    at: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(limit: OrderRateLimit) -> TokenBucket {
        let cap = limit.burst.max(1) as u64 * 1000;
        TokenBucket {
            level: cap,
            cap,
            rate: limit.per_second.max(1) as u64 * 1000,
            at: 0,
        }
    }

    fn refill(&mut self, now: u64) {
        if now <= self.at {
            return;
        }
        let dt = now - self.at;
        // milli-tokens = dt_ns * rate / 1e9, without overflow for any dt.
        let add = (dt as u128 * self.rate as u128 / 1_000_000_000) as u64;
        if add > 0 {
            self.level = (self.level + add.min(self.cap)).min(self.cap);
            // Keep the remainder: advance `at` by the time the added tokens took.
            if self.level == self.cap {
                self.at = now;
            } else {
                self.at += (add as u128 * 1_000_000_000 / self.rate as u128) as u64;
            }
        }
    }

    /// Takes one token if there is one.
    #[inline]
    pub(crate) fn try_take(&mut self, now: u64) -> bool {
        self.refill(now);
        if self.level >= 1000 {
            self.level -= 1000;
            true
        } else {
            false
        }
    }

    /// When the next token will be there (ns), after a failed [`TokenBucket::try_take`].
    pub(crate) fn next_at(&self, now: u64) -> u64 {
        let missing = 1000u64.saturating_sub(self.level);
        let base = self.at.max(now.min(self.at));
        let wait = (missing as u128 * 1_000_000_000).div_ceil(self.rate as u128) as u64;
        base.saturating_add(wait).max(now + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn bucket_allows_the_burst_then_the_sustained_rate() {
        let mut b = TokenBucket::new(OrderRateLimit {
            per_second: 5,
            burst: 20,
        });
        let t0 = 10 * S;
        let mut n = 0;
        while b.try_take(t0) {
            n += 1;
        }
        assert_eq!(n, 20);
        assert!(b.next_at(t0) <= t0 + S / 5 && b.next_at(t0) > t0);
        // Over 10 s at 5/s: 50 more, not more.
        let mut sent = 0;
        let mut t = t0;
        while t < t0 + 10 * S {
            t += S / 100;
            while b.try_take(t) {
                sent += 1;
            }
        }
        assert!((49..=51).contains(&sent), "{sent}");
    }
}
