//! Alert rules over [`SessionEvent`]s: reconnects per minute, downtime, gap count, heartbeat
//! misses. Sans-IO and allocation-free: feed it every event (on the logger side of the
//! SessionEvent ring, or anywhere else) and it answers the alerts the event raises.

use super::{EventKind, SessionEvent};

/// One minute in ns.
const MINUTE: u64 = 60_000_000_000;

/// Thresholds; an alert is raised when a value exceeds its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertLimits {
    /// Reconnect attempts within the last minute.
    pub reconnects_per_minute: u32,
    /// Downtime of one outage (drop → `Live` again), ns.
    pub downtime_ns: u64,
    /// Book gaps since the start.
    pub gaps: u64,
    /// Heartbeat misses (idle pings) within the last minute.
    pub heartbeat_misses_per_minute: u32,
}

impl Default for AlertLimits {
    /// 5 reconnects a minute, 5 s of downtime, 10 gaps, 3 heartbeat misses a minute.
    fn default() -> Self {
        AlertLimits {
            reconnects_per_minute: 5,
            downtime_ns: 5_000_000_000,
            gaps: 10,
            heartbeat_misses_per_minute: 3,
        }
    }
}

/// Which rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertRule {
    /// Too many reconnects in a minute.
    ReconnectsPerMinute,
    /// An outage lasted too long.
    Downtime,
    /// Too many book gaps.
    Gaps,
    /// Too many heartbeat misses in a minute.
    HeartbeatMisses,
    /// The session failed for good (always raised).
    Fatal,
}

impl AlertRule {
    /// Lower-case name, for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertRule::ReconnectsPerMinute => "reconnects_per_minute",
            AlertRule::Downtime => "downtime",
            AlertRule::Gaps => "gaps",
            AlertRule::HeartbeatMisses => "heartbeat_misses_per_minute",
            AlertRule::Fatal => "fatal",
        }
    }
}

/// A raised alert: the rule, the observed value and the limit it crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    /// The rule.
    pub rule: AlertRule,
    /// The observed value (count, or ns for downtime).
    pub value: u64,
    /// The limit.
    pub limit: u64,
    /// Error level (fatal, or far over the limit) rather than warn.
    pub error: bool,
}

/// A sliding one-minute count over a fixed ring of timestamps.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Event times, ns; `len` of them valid, oldest at `head`.
    times: [u64; 64],
    head: usize,
    len: usize,
}

impl Window {
    const fn new() -> Window {
        Window {
            times: [0; 64],
            head: 0,
            len: 0,
        }
    }

    /// Records an event at `now` and returns the count within the last minute.
    fn record(&mut self, now: u64) -> u32 {
        while self.len > 0 && now.saturating_sub(self.times[self.head]) >= MINUTE {
            self.head = (self.head + 1) % self.times.len();
            self.len -= 1;
        }
        if self.len == self.times.len() {
            self.head = (self.head + 1) % self.times.len();
            self.len -= 1;
        }
        self.times[(self.head + self.len) % self.times.len()] = now;
        self.len += 1;
        self.len as u32
    }
}

/// Evaluates [`AlertLimits`] over the event stream.
#[derive(Debug, Clone)]
pub struct AlertRules {
    limits: AlertLimits,
    reconnects: Window,
    misses: Window,
    gaps: u64,
}

impl AlertRules {
    /// Rules with `limits`.
    pub fn new(limits: AlertLimits) -> AlertRules {
        AlertRules {
            limits,
            reconnects: Window::new(),
            misses: Window::new(),
            gaps: 0,
        }
    }

    /// Feeds one event; returns the alert it raises, if any.
    pub fn observe(&mut self, e: &SessionEvent) -> Option<Alert> {
        let l = self.limits;
        match e.kind {
            EventKind::Reconnecting { .. } => {
                let n = self.reconnects.record(e.at_ns);
                (n > l.reconnects_per_minute).then_some(Alert {
                    rule: AlertRule::ReconnectsPerMinute,
                    value: n as u64,
                    limit: l.reconnects_per_minute as u64,
                    error: n > 2 * l.reconnects_per_minute,
                })
            }
            EventKind::HeartbeatMissed => {
                let n = self.misses.record(e.at_ns);
                (n > l.heartbeat_misses_per_minute).then_some(Alert {
                    rule: AlertRule::HeartbeatMisses,
                    value: n as u64,
                    limit: l.heartbeat_misses_per_minute as u64,
                    error: false,
                })
            }
            EventKind::Live { downtime_ns } => (downtime_ns > l.downtime_ns).then_some(Alert {
                rule: AlertRule::Downtime,
                value: downtime_ns,
                limit: l.downtime_ns,
                error: downtime_ns > 2 * l.downtime_ns,
            }),
            EventKind::Gap { .. } => {
                self.gaps += 1;
                (self.gaps > l.gaps).then_some(Alert {
                    rule: AlertRule::Gaps,
                    value: self.gaps,
                    limit: l.gaps,
                    error: false,
                })
            }
            EventKind::Fatal { code, .. } => Some(Alert {
                rule: AlertRule::Fatal,
                value: code.unsigned_abs(),
                limit: 0,
                error: true,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::md::InstrumentId;
    use crate::session::FatalReason;

    fn ev(at_ns: u64, kind: EventKind) -> SessionEvent {
        SessionEvent { at_ns, kind }
    }

    const RECONNECT: EventKind = EventKind::Reconnecting {
        attempt: 1,
        delay_ns: 0,
    };

    #[test]
    fn reconnects_over_the_limit_within_a_minute_raise_an_alert() {
        let mut r = AlertRules::new(AlertLimits::default());
        for i in 0..5 {
            assert_eq!(r.observe(&ev(i, RECONNECT)), None);
        }
        let a = r.observe(&ev(5, RECONNECT)).unwrap();
        assert_eq!(
            (a.rule, a.value, a.limit),
            (AlertRule::ReconnectsPerMinute, 6, 5)
        );
    }

    #[test]
    fn reconnects_spread_over_minutes_raise_nothing() {
        let mut r = AlertRules::new(AlertLimits::default());
        for i in 0..20 {
            assert_eq!(r.observe(&ev(i * 20_000_000_000, RECONNECT)), None);
        }
    }

    #[test]
    fn a_long_outage_raises_a_downtime_alert() {
        let mut r = AlertRules::new(AlertLimits::default());
        assert_eq!(r.observe(&ev(0, EventKind::Live { downtime_ns: 1 })), None);
        let a = r
            .observe(&ev(
                0,
                EventKind::Live {
                    downtime_ns: 6_000_000_000,
                },
            ))
            .unwrap();
        assert_eq!(a.rule, AlertRule::Downtime);
    }

    #[test]
    fn gaps_over_the_limit_and_heartbeat_misses_raise_alerts() {
        let mut r = AlertRules::new(AlertLimits {
            gaps: 1,
            heartbeat_misses_per_minute: 1,
            ..AlertLimits::default()
        });
        let gap = EventKind::Gap {
            instrument: InstrumentId(0),
            expected_prev: 1,
            got_prev: 2,
        };
        assert_eq!(r.observe(&ev(0, gap)), None);
        assert_eq!(r.observe(&ev(0, gap)).unwrap().rule, AlertRule::Gaps);
        assert_eq!(r.observe(&ev(0, EventKind::HeartbeatMissed)), None);
        assert_eq!(
            r.observe(&ev(1, EventKind::HeartbeatMissed)).unwrap().rule,
            AlertRule::HeartbeatMisses
        );
    }

    #[test]
    fn a_fatal_error_always_raises_an_error_alert() {
        let mut r = AlertRules::new(AlertLimits::default());
        let a = r
            .observe(&ev(
                0,
                EventKind::Fatal {
                    reason: FatalReason::InvalidCredentials,
                    code: 13004,
                },
            ))
            .unwrap();
        assert!(a.error);
        assert_eq!(a.rule, AlertRule::Fatal);
    }
}
