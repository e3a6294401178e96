//! The logger thread: session events leave the engine thread on an SPSC ring and are formatted
//! and written here, through [`tracing`], together with the alerts the
//! [`AlertRules`] raise over them.
//!
//! The engine thread formats nothing: it pushes small `Copy` [`SessionEvent`]s (which hold no
//! text, so no secret or token can reach a log through them) and goes on. This thread pops them,
//! feeds the alert rules, and emits one `tracing` event per session event at a level fit for it
//! (`debug` for state changes, `info` for progress, `warn` for drops, gaps and misses, `error`
//! for a fatal error), plus a `warn`/`error` event per alert. Which subscriber writes them, and
//! where, is the application's choice: the thread uses the subscriber that was current where
//! [`EventLogger::spawn`] was called.
//!
//! ```
//! use spinwire_engine::logger::{EventLogger, LoggerConfig};
//! use spinwire_engine::session::{EventKind, SessionEvent};
//!
//! let (mut tx, rx) = spinwire_ringbuf::channel::<SessionEvent>(64);
//! let logger = EventLogger::spawn(LoggerConfig::new("deribit"), rx).unwrap();
//! tx.push(SessionEvent { at_ns: 0, kind: EventKind::HeartbeatMissed }).unwrap();
//! let stats = logger.stop();
//! assert_eq!(stats.events, 1);
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use spinwire_ringbuf::Consumer;
use tracing::{debug, error, info, warn};

use crate::session::alerts::{Alert, AlertLimits, AlertRules};
use crate::session::{DisconnectCause, EventKind, SessionEvent};

/// Settings of an [`EventLogger`].
#[derive(Debug, Clone)]
pub struct LoggerConfig {
    /// Name of the session, in every log line (`session` field).
    pub session: String,
    /// Alert thresholds.
    pub limits: AlertLimits,
    /// How long the thread sleeps when the ring is empty (it is not latency-critical).
    pub idle_sleep: Duration,
    /// Instrument names by id (`InstrumentId.0`), to name instruments in gap and drop lines;
    /// ids past its end are logged by number.
    pub instruments: Vec<String>,
}

impl LoggerConfig {
    /// Default alert limits, 1 ms idle sleep, no instrument names.
    pub fn new(session: impl Into<String>) -> LoggerConfig {
        LoggerConfig {
            session: session.into(),
            limits: AlertLimits::default(),
            idle_sleep: Duration::from_millis(1),
            instruments: Vec::new(),
        }
    }
}

/// What the logger thread saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoggerStats {
    /// Session events logged.
    pub events: u64,
    /// Alerts raised.
    pub alerts: u64,
}

/// A running logger thread. [`EventLogger::stop`] drains the ring and joins it.
#[derive(Debug)]
pub struct EventLogger {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<LoggerStats>,
}

impl EventLogger {
    /// Starts the `spinwire-log` thread consuming `events`.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn spawn(
        config: LoggerConfig,
        mut events: Consumer<SessionEvent>,
    ) -> std::io::Result<EventLogger> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // The thread logs to the subscriber that is current where it is spawned (the global
        // default, or a scoped one in tests).
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let thread = std::thread::Builder::new()
            .name("spinwire-log".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let mut log = Log {
                        rules: AlertRules::new(config.limits),
                        stats: LoggerStats::default(),
                        config,
                    };
                    loop {
                        // Read the flag before draining: whatever was pushed before `stop` was
                        // raised is logged.
                        let stopping = flag.load(Ordering::Acquire);
                        let mut any = false;
                        while let Some(e) = events.pop() {
                            log.event(&e);
                            any = true;
                        }
                        if stopping || events.is_abandoned() && events.is_empty() {
                            break;
                        }
                        if !any {
                            std::thread::sleep(log.config.idle_sleep);
                        }
                    }
                    log.stats
                })
            })?;
        Ok(EventLogger { stop, thread })
    }

    /// Logs what is left on the ring, ends the thread and returns its counts.
    pub fn stop(self) -> LoggerStats {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

/// The logger thread's state.
struct Log {
    config: LoggerConfig,
    rules: AlertRules,
    stats: LoggerStats,
}

impl Log {
    fn instrument(&self, id: u16) -> &str {
        self.config
            .instruments
            .get(id as usize)
            .map_or("", String::as_str)
    }

    fn event(&mut self, e: &SessionEvent) {
        self.stats.events += 1;
        let s = self.config.session.as_str();
        let t_ms = e.at_ns / 1_000_000;
        match e.kind {
            EventKind::StateChanged { from, to } => {
                debug!(
                    session = s,
                    t_ms,
                    from = from.as_str(),
                    to = to.as_str(),
                    "state"
                )
            }
            EventKind::Connected { connection } => {
                info!(session = s, t_ms, connection, "connected")
            }
            EventKind::Authenticated {
                expires_in_s,
                resumed,
            } => info!(session = s, t_ms, expires_in_s, resumed, "authenticated"),
            EventKind::TokenRefreshed { expires_in_s } => {
                info!(session = s, t_ms, expires_in_s, "token refreshed")
            }
            EventKind::TokenRefreshFailed { code } => warn!(
                session = s,
                t_ms, code, "token refresh refused; authenticating again"
            ),
            EventKind::Subscribed { channels } => {
                info!(session = s, t_ms, channels, "subscribed")
            }
            EventKind::Live { downtime_ns } => {
                info!(session = s, t_ms, downtime_us = downtime_ns / 1000, "live")
            }
            EventKind::Disconnected { cause } => {
                let close_code = match cause {
                    DisconnectCause::PeerClosed { code } => code,
                    _ => 1006,
                };
                warn!(
                    session = s,
                    t_ms,
                    cause = cause.as_str(),
                    close_code,
                    "disconnected"
                )
            }
            EventKind::Reconnecting { attempt, delay_ns } => info!(
                session = s,
                t_ms,
                attempt,
                delay_ms = delay_ns / 1_000_000,
                "reconnecting"
            ),
            EventKind::HeartbeatMissed => warn!(
                session = s,
                t_ms, "inbound traffic stopped; ping sent (heartbeat missed)"
            ),
            EventKind::Gap {
                instrument,
                expected_prev,
                got_prev,
            } => warn!(
                session = s,
                t_ms,
                instrument = self.instrument(instrument.0),
                instrument_id = instrument.0,
                expected_prev,
                got_prev,
                "book gap; stale until resynced"
            ),
            EventKind::Resynced { instrument } => info!(
                session = s,
                t_ms,
                instrument = self.instrument(instrument.0),
                instrument_id = instrument.0,
                "book resynced"
            ),
            EventKind::RateLimited { request } => warn!(
                session = s,
                t_ms,
                request = request.as_str(),
                "rate limited (10028); retrying later"
            ),
            EventKind::RequestFailed { request, code } => warn!(
                session = s,
                t_ms,
                request = request.as_str(),
                code,
                "request failed"
            ),
            EventKind::RecordsDropped {
                instrument,
                records,
            } => warn!(
                session = s,
                t_ms,
                instrument = self.instrument(instrument.0),
                instrument_id = instrument.0,
                records,
                "market-data ring full; records dropped, book stale until resynced"
            ),
            EventKind::Malformed { error } => {
                warn!(session = s, t_ms, error = %error, "malformed message")
            }
            EventKind::Control {
                tag,
                command,
                outcome,
            } => info!(
                session = s,
                t_ms,
                tag,
                command = command.as_str(),
                outcome = outcome.as_str(),
                "control command"
            ),
            EventKind::Fatal { reason, code } => error!(
                session = s,
                t_ms,
                reason = ?reason,
                code,
                "fatal: the session stopped and will not reconnect"
            ),
        }
        if let Some(a) = self.rules.observe(e) {
            self.alert(t_ms, a);
        }
    }

    fn alert(&mut self, t_ms: u64, a: Alert) {
        self.stats.alerts += 1;
        let s = self.config.session.as_str();
        let rule = a.rule.as_str();
        if a.error {
            error!(
                session = s,
                t_ms,
                alert = rule,
                value = a.value,
                limit = a.limit,
                "alert"
            );
        } else {
            warn!(
                session = s,
                t_ms,
                alert = rule,
                value = a.value,
                limit = a.limit,
                "alert"
            );
        }
    }
}
