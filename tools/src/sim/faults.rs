//! Fault injection: the `--faults SPEC` grammar, schedules, and per-connection firing state.
//!
//! See the module documentation of [`crate::sim`] for the grammar and the list of faults.

use std::fmt;
use std::time::{Duration, Instant};

use super::market::Rng;

/// What a fault does when it fires.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Abortive close: TCP RST (SO_LINGER 0), pending output discarded.
    Rst,
    /// Orderly close: TLS close_notify (wss) then TCP FIN, no WebSocket close frame.
    Fin,
    /// Stop reading and writing but keep the socket open (until the simulator stops).
    HalfOpen,
    /// Stop reading and writing for `span`, then carry on: requests already received are
    /// executed late, even if the client gave up on the connection meanwhile (what it sent
    /// before closing is still read).
    Stall {
        /// How long nothing is read or written.
        span: Duration,
    },
    /// Hold every outgoing frame back by `delay` plus a uniform random `0..jitter`, for `span`
    /// (forever when `None`).
    Delay {
        /// Fixed delay.
        delay: Duration,
        /// Upper bound of the added random delay.
        jitter: Duration,
        /// How long the delay lasts.
        span: Option<Duration>,
    },
    /// Multiply the market-data rate (all connections) by `factor` for `span`.
    Burst {
        /// Rate multiplier.
        factor: f64,
        /// Duration of the burst.
        span: Duration,
    },
    /// Do not send the next book change (the client sees a `prev_change_id` gap).
    Gap,
    /// Ignore the next `public/test`: no answer, and it does not count for the heartbeat.
    IgnoreTest,
    /// Withhold the response to the next `private/buy`/`private/sell`, then reset the
    /// connection; `executed` says whether the venue executes the order first.
    Withhold {
        /// Execute the order before dropping the connection.
        executed: bool,
    },
    /// Withhold the response to the next cancel (`private/cancel`, `private/cancel_by_label`,
    /// `private/cancel_all`, `private/cancel_all_by_instrument`), then reset the connection;
    /// `executed` says whether the venue cancels first.
    WithholdCancel {
        /// Execute the cancel before dropping the connection.
        executed: bool,
    },
    /// Withhold the response to the next `private/edit`, then reset the connection;
    /// `executed` says whether the venue applies the edit first.
    WithholdEdit {
        /// Apply the edit before dropping the connection.
        executed: bool,
    },
    /// When this connection closes, fill the account's resting orders (before
    /// cancel-on-disconnect would cancel them): fills the client learns of only after reconnect.
    FillGap,
    /// Reject the next `public/auth` with 13004 invalid_credentials.
    RejectAuth,
    /// Expire this connection's tokens now (private calls then get 13009).
    ExpireTokens,
    /// Answer the next request with 10028 too_many_requests.
    Throttle,
    /// Send a frame with reserved bits set (a WebSocket protocol violation).
    Malformed,
    /// Send a frame header announcing a 256 MiB payload.
    Oversized,
    /// Send a text frame that is not valid UTF-8.
    BadUtf8,
    /// Send a text frame that is not valid JSON.
    BadJson,
    /// Close the TCP connection without a TLS close_notify (same as `fin` on plain ws).
    TlsNoCloseNotify,
}

/// Which connections a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every connection (each on its own schedule).
    All,
    /// The connection with this id (1-based, in accept order).
    Conn(u64),
}

/// When a rule fires on a connection. All given conditions must hold at a check; checks run
/// on every loop turn of the connection (at least every millisecond).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schedule {
    /// After this many messages were sent on the connection.
    pub after: Option<u64>,
    /// At this time after the simulator started.
    pub at: Option<Duration>,
    /// Repeatedly, this long after the connection opened and after each firing.
    pub every: Option<Duration>,
    /// With this probability per check.
    pub p: Option<f64>,
    /// Once this many order requests (`private/buy`, `sell`, `edit`, the cancels) were
    /// received on the connection; checked right after each one, so the fault lands in the
    /// middle of a burst of orders.
    pub orders: Option<u64>,
    /// At most this many times per connection (default 1, unlimited with `every` or `p`).
    pub times: Option<u32>,
}

/// One fault rule: what, when, where.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// The fault.
    pub kind: FaultKind,
    /// When it fires.
    pub schedule: Schedule,
    /// Where it applies.
    pub target: Target,
}

/// A fault specification could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpecError(pub String);

impl fmt::Display for FaultSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad fault spec: {}", self.0)
    }
}

impl std::error::Error for FaultSpecError {}

/// Parses a duration: `250ms`, `2s`, `1.5s`, `500us`.
pub fn parse_duration(s: &str) -> Result<Duration, FaultSpecError> {
    let err = || FaultSpecError(format!("bad duration {s:?} (use e.g. 250ms, 2s, 500us)"));
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(err());
    };
    let v: f64 = num.parse().map_err(|_| err())?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(v * mul))
}

/// Parses a whole `--faults` specification: rules separated by `;`.
pub fn parse_spec(spec: &str) -> Result<Vec<FaultRule>, FaultSpecError> {
    spec.split(';')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(parse_rule)
        .collect()
}

/// Parses one rule: `NAME[(ARG,...)][@COND,...]`.
pub fn parse_rule(rule: &str) -> Result<FaultRule, FaultSpecError> {
    let (head, conds) = match rule.split_once('@') {
        Some((h, c)) => (h.trim(), Some(c.trim())),
        None => (rule.trim(), None),
    };
    let (name, args) = match head.split_once('(') {
        Some((n, rest)) => {
            let inner = rest
                .strip_suffix(')')
                .ok_or_else(|| FaultSpecError(format!("missing ')' in {head:?}")))?;
            (n.trim(), Some(inner))
        }
        None => (head, None),
    };
    let mut kv = Vec::new();
    if let Some(a) = args {
        for pair in a.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| FaultSpecError(format!("argument {pair:?} is not key=value")))?;
            kv.push((k.trim(), v.trim()));
        }
    }
    let kind = parse_kind(name, &kv)?;
    let mut schedule = Schedule::default();
    let mut target = Target::All;
    if let Some(c) = conds {
        for cond in c.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = cond
                .split_once('=')
                .ok_or_else(|| FaultSpecError(format!("condition {cond:?} is not key=value")))?;
            let bad = || FaultSpecError(format!("bad value in condition {cond:?}"));
            match k.trim() {
                "after" => schedule.after = Some(v.parse().map_err(|_| bad())?),
                "at" => schedule.at = Some(parse_duration(v)?),
                "every" => {
                    let d = parse_duration(v)?;
                    if d.is_zero() {
                        return Err(bad());
                    }
                    schedule.every = Some(d);
                }
                "p" => {
                    let p: f64 = v.parse().map_err(|_| bad())?;
                    if !(0.0..=1.0).contains(&p) {
                        return Err(bad());
                    }
                    schedule.p = Some(p);
                }
                "times" => schedule.times = Some(v.parse().map_err(|_| bad())?),
                "orders" => schedule.orders = Some(v.parse().map_err(|_| bad())?),
                "conn" => {
                    target = if v == "all" {
                        Target::All
                    } else {
                        Target::Conn(v.parse().map_err(|_| bad())?)
                    }
                }
                other => return Err(FaultSpecError(format!("unknown condition {other:?}"))),
            }
        }
    }
    Ok(FaultRule {
        kind,
        schedule,
        target,
    })
}

fn parse_kind(name: &str, kv: &[(&str, &str)]) -> Result<FaultKind, FaultSpecError> {
    let get = |key: &str| kv.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let allow = |keys: &[&str]| -> Result<(), FaultSpecError> {
        match kv.iter().find(|(k, _)| !keys.contains(k)) {
            Some((k, _)) => Err(FaultSpecError(format!(
                "fault {name:?} takes no argument {k:?}"
            ))),
            None => Ok(()),
        }
    };
    let kind = match name {
        "rst" => FaultKind::Rst,
        "fin" => FaultKind::Fin,
        "halfopen" => FaultKind::HalfOpen,
        "stall" => {
            allow(&["for"])?;
            FaultKind::Stall {
                span: get("for")
                    .map(parse_duration)
                    .transpose()?
                    .unwrap_or(Duration::from_secs(1)),
            }
        }
        "delay" => {
            allow(&["d", "jitter", "for"])?;
            FaultKind::Delay {
                delay: get("d")
                    .map(parse_duration)
                    .transpose()?
                    .unwrap_or_default(),
                jitter: get("jitter")
                    .map(parse_duration)
                    .transpose()?
                    .unwrap_or_default(),
                span: get("for").map(parse_duration).transpose()?,
            }
        }
        "burst" => {
            allow(&["x", "for"])?;
            let factor: f64 = get("x")
                .unwrap_or("10")
                .parse()
                .map_err(|_| FaultSpecError("burst x must be a number".into()))?;
            if !(factor > 0.0 && factor.is_finite()) {
                return Err(FaultSpecError("burst x must be positive".into()));
            }
            FaultKind::Burst {
                factor,
                span: get("for")
                    .map(parse_duration)
                    .transpose()?
                    .unwrap_or(Duration::from_secs(1)),
            }
        }
        "gap" => FaultKind::Gap,
        "ignore_test" => FaultKind::IgnoreTest,
        "withhold" | "withhold_cancel" | "withhold_edit" => {
            allow(&["exec"])?;
            let executed = match get("exec").unwrap_or("1") {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => return Err(FaultSpecError(format!("{name} exec must be 0 or 1"))),
            };
            match name {
                "withhold" => FaultKind::Withhold { executed },
                "withhold_cancel" => FaultKind::WithholdCancel { executed },
                _ => FaultKind::WithholdEdit { executed },
            }
        }
        "fillgap" => FaultKind::FillGap,
        "reject_auth" => FaultKind::RejectAuth,
        "expire" => FaultKind::ExpireTokens,
        "throttle" => FaultKind::Throttle,
        "malformed" => FaultKind::Malformed,
        "oversized" => FaultKind::Oversized,
        "bad_utf8" => FaultKind::BadUtf8,
        "bad_json" => FaultKind::BadJson,
        "tls_no_close_notify" => FaultKind::TlsNoCloseNotify,
        other => return Err(FaultSpecError(format!("unknown fault {other:?}"))),
    };
    if !matches!(
        kind,
        FaultKind::Delay { .. }
            | FaultKind::Stall { .. }
            | FaultKind::Burst { .. }
            | FaultKind::Withhold { .. }
            | FaultKind::WithholdCancel { .. }
            | FaultKind::WithholdEdit { .. }
    ) && !kv.is_empty()
    {
        return Err(FaultSpecError(format!("fault {name:?} takes no arguments")));
    }
    Ok(kind)
}

/// Firing state of one rule on one connection.
#[derive(Debug, Clone)]
pub struct RuleState {
    /// The rule.
    pub rule: FaultRule,
    /// Times fired on this connection.
    pub fired: u32,
    /// Last firing (or connection start, for `every`).
    pub last: Instant,
}

/// The rules in force on one connection.
#[derive(Debug)]
pub struct ConnFaults {
    /// Per-rule state, in rule order.
    pub rules: Vec<RuleState>,
    /// How many of the global rules have been taken over (new rules can be added at run time).
    pub seen: usize,
    rng: Rng,
}

impl ConnFaults {
    /// No rules yet; `seed` drives `p=` conditions.
    pub fn new(seed: u64) -> Self {
        ConnFaults {
            rules: Vec::new(),
            seen: 0,
            rng: Rng::new(seed),
        }
    }

    /// Takes over rules added to the global list since the last call.
    pub fn sync(&mut self, global: &[FaultRule], conn: u64, now: Instant) {
        for rule in &global[self.seen.min(global.len())..] {
            if rule.target == Target::All || rule.target == Target::Conn(conn) {
                self.rules.push(RuleState {
                    rule: rule.clone(),
                    fired: 0,
                    last: now,
                });
            }
        }
        self.seen = global.len();
    }

    /// Whether a rule waits for an order count (then faults are checked after every order
    /// request, not only once per loop turn).
    pub fn counts_orders(&self) -> bool {
        self.rules.iter().any(|r| r.rule.schedule.orders.is_some())
    }

    /// Rules due at this check, each counted as fired. `msgs_sent`: messages sent on the
    /// connection; `orders_seen`: order requests received on it.
    pub fn due(
        &mut self,
        now: Instant,
        sim_start: Instant,
        msgs_sent: u64,
        orders_seen: u64,
    ) -> Vec<FaultKind> {
        let mut out = Vec::new();
        for st in &mut self.rules {
            let s = &st.rule.schedule;
            let limit = s.times.unwrap_or(if s.every.is_some() || s.p.is_some() {
                u32::MAX
            } else {
                1
            });
            if st.fired >= limit {
                continue;
            }
            if s.after.is_some_and(|n| msgs_sent < n) {
                continue;
            }
            if s.orders.is_some_and(|n| orders_seen < n) {
                continue;
            }
            if s.at.is_some_and(|t| now < sim_start + t) {
                continue;
            }
            if s.every.is_some_and(|p| now < st.last + p) {
                continue;
            }
            if let Some(p) = s.p {
                if !self.rng.chance(p) {
                    continue;
                }
            }
            st.fired += 1;
            st.last = now;
            out.push(st.rule.kind.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_with_arguments_and_conditions_parses() {
        let rules =
            parse_spec("rst@after=500; gap@every=2s ;delay(d=50ms,jitter=10ms)@at=3s,conn=2")
                .unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].kind, FaultKind::Rst);
        assert_eq!(rules[0].schedule.after, Some(500));
        assert_eq!(rules[1].schedule.every, Some(Duration::from_secs(2)));
        assert_eq!(
            rules[2].kind,
            FaultKind::Delay {
                delay: Duration::from_millis(50),
                jitter: Duration::from_millis(10),
                span: None
            }
        );
        assert_eq!(rules[2].target, Target::Conn(2));
    }

    #[test]
    fn unknown_fault_is_a_clear_error() {
        let e = parse_spec("explode@after=1").unwrap_err();
        assert!(e.to_string().contains("unknown fault \"explode\""), "{e}");
        assert!(parse_spec("rst(x=1)").is_err());
        assert!(parse_spec("gap@every=0s").is_err());
        assert!(parse_spec("gap@p=2").is_err());
    }

    #[test]
    fn rule_without_repeat_fires_once_after_its_message_count() {
        let t0 = Instant::now();
        let mut f = ConnFaults::new(1);
        f.sync(&parse_spec("gap@after=10").unwrap(), 1, t0);
        assert!(f.due(t0, t0, 9, 0).is_empty());
        assert_eq!(f.due(t0, t0, 10, 0), vec![FaultKind::Gap]);
        assert!(f.due(t0, t0, 11, 0).is_empty());
    }

    #[test]
    fn every_rule_repeats_and_conn_target_filters() {
        let t0 = Instant::now();
        let rules = parse_spec("gap@every=1s;rst@conn=3").unwrap();
        let mut f = ConnFaults::new(1);
        f.sync(&rules, 1, t0);
        assert_eq!(f.rules.len(), 1);
        assert!(f.due(t0, t0, 0, 0).is_empty());
        assert_eq!(f.due(t0 + Duration::from_secs(1), t0, 0, 0).len(), 1);
        assert!(f.due(t0 + Duration::from_millis(1500), t0, 0, 0).is_empty());
        assert_eq!(f.due(t0 + Duration::from_secs(2), t0, 0, 0).len(), 1);
    }

    #[test]
    fn withhold_variants_parse_for_orders_cancels_and_edits() {
        let rules =
            parse_spec("withhold(exec=0);withhold_cancel(exec=1);withhold_edit(exec=0)").unwrap();
        assert_eq!(rules[0].kind, FaultKind::Withhold { executed: false });
        assert_eq!(rules[1].kind, FaultKind::WithholdCancel { executed: true });
        assert_eq!(rules[2].kind, FaultKind::WithholdEdit { executed: false });
        let e = parse_spec("withhold_edit(exec=2)").unwrap_err();
        assert!(
            e.to_string().contains("withhold_edit exec must be 0 or 1"),
            "{e}"
        );
    }

    #[test]
    fn orders_condition_waits_for_the_order_count() {
        let t0 = Instant::now();
        let rules = parse_spec("halfopen@orders=5,conn=1").unwrap();
        assert_eq!(rules[0].schedule.orders, Some(5));
        let mut f = ConnFaults::new(1);
        f.sync(&rules, 1, t0);
        assert!(f.counts_orders());
        assert!(f.due(t0, t0, 100, 4).is_empty());
        assert_eq!(f.due(t0, t0, 100, 5), vec![FaultKind::HalfOpen]);
        assert!(f.due(t0, t0, 100, 6).is_empty());
        assert!(parse_spec("rst@orders=x").is_err());
        assert_eq!(
            parse_rule("stall(for=1500ms)@orders=3").unwrap().kind,
            FaultKind::Stall {
                span: Duration::from_millis(1500)
            }
        );
    }
}
