//! The session's timers: a fixed table indexed by [`Timer`] (no heap, no allocation).

/// One of the session's timers. Each is armed at most once at a time (re-arming moves it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The transport (TCP + TLS + WebSocket upgrade) must be open by then.
    Connect,
    /// Authentication and subscription must be done (state `Live`) by then.
    Setup,
    /// No inbound traffic since this deadline's arming: send a WebSocket ping.
    Idle,
    /// A ping went out and nothing has arrived since: the peer is dead at this deadline.
    DeadPeer,
    /// Refresh the access token (about 80% of its lifetime).
    TokenRefresh,
    /// Backoff is over: connect again.
    Reconnect,
    /// The session has stayed `Live` long enough: reset the backoff.
    Stable,
    /// A request answered `10028 too_many_requests` may be sent again.
    Retry,
    /// A graceful logout has not closed the connection by then: close it.
    Drain,
    /// Connection rotation: replace the connection after it has been open this long.
    Rotate,
    /// The order tracker's next wake-up (a rate-limit token, a time-to-live, a resend grace,
    /// a recheck): mirrored here after every call into the session, so that the session's
    /// deadlines have one source.
    Orders,
}

impl Timer {
    /// Number of timers.
    pub const COUNT: usize = 11;
    /// Every timer, in the order [`TimerTable::expired`] reports them.
    pub const ALL: [Timer; Timer::COUNT] = [
        Timer::Connect,
        Timer::Setup,
        Timer::DeadPeer,
        Timer::Idle,
        Timer::TokenRefresh,
        Timer::Reconnect,
        Timer::Stable,
        Timer::Retry,
        Timer::Drain,
        Timer::Rotate,
        Timer::Orders,
    ];

    /// The timer's slot in the table.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Deadlines (ns on the caller's clock) of every [`Timer`]; `None` when not armed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerTable {
    /// Invariant: slot `t.index()` holds timer `t`'s deadline.
    deadlines: [Option<u64>; Timer::COUNT],
}

impl TimerTable {
    /// Arms (or moves) `timer` to fire at `at_ns`.
    #[inline]
    pub fn set(&mut self, timer: Timer, at_ns: u64) {
        self.deadlines[timer.index()] = Some(at_ns);
    }

    /// Disarms `timer`.
    #[inline]
    pub fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.deadlines = [None; Timer::COUNT];
    }

    /// The deadline of `timer`, when armed.
    #[inline]
    pub fn get(&self, timer: Timer) -> Option<u64> {
        self.deadlines[timer.index()]
    }

    /// Whether `timer` is armed.
    #[inline]
    pub fn is_set(&self, timer: Timer) -> bool {
        self.deadlines[timer.index()].is_some()
    }

    /// The earliest deadline of all armed timers.
    #[inline]
    pub fn next_timeout(&self) -> Option<u64> {
        self.deadlines.iter().flatten().copied().min()
    }

    /// The first timer (in [`Timer::ALL`] order) whose deadline is at or before `now`; it is
    /// disarmed before being returned, so calling this in a loop visits each expired timer once.
    #[inline]
    pub fn expired(&mut self, now: u64) -> Option<Timer> {
        for t in Timer::ALL {
            if let Some(at) = self.deadlines[t.index()] {
                if at <= now {
                    self.deadlines[t.index()] = None;
                    return Some(t);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_timeout_is_the_earliest_armed_deadline() {
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set(Timer::Idle, 50);
        t.set(Timer::Reconnect, 20);
        assert_eq!(t.next_timeout(), Some(20));
        t.stop(Timer::Reconnect);
        assert_eq!(t.next_timeout(), Some(50));
    }

    #[test]
    fn expired_returns_each_due_timer_once_and_disarms_it() {
        let mut t = TimerTable::default();
        t.set(Timer::Idle, 10);
        t.set(Timer::DeadPeer, 10);
        t.set(Timer::Stable, 100);
        assert_eq!(t.expired(10), Some(Timer::DeadPeer));
        assert_eq!(t.expired(10), Some(Timer::Idle));
        assert_eq!(t.expired(10), None);
        assert!(t.is_set(Timer::Stable));
    }

    #[test]
    fn every_timer_has_a_distinct_slot() {
        let mut seen = [false; Timer::COUNT];
        for t in Timer::ALL {
            assert!(!seen[t.index()]);
            seen[t.index()] = true;
        }
    }
}
