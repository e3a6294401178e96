//! The logger thread: every session event pushed on its ring is logged once, at the right level,
//! off the pushing thread; alerts are raised over the stream; stopping drains the ring.

use std::io::Write;
use std::sync::{Arc, Mutex};

use spinwire_engine::logger::{EventLogger, LoggerConfig};
use spinwire_engine::md::InstrumentId;
use spinwire_engine::session::alerts::AlertLimits;
use spinwire_engine::session::{DisconnectCause, EventKind, FatalReason, SessionEvent};

/// A `tracing` writer that keeps every byte and the name of the thread that wrote it.
#[derive(Clone, Default)]
struct Capture {
    bytes: Arc<Mutex<Vec<u8>>>,
    threads: Arc<Mutex<Vec<String>>>,
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.lock().unwrap().extend_from_slice(buf);
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        self.threads.lock().unwrap().push(name);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn with_capture<R>(f: impl FnOnce() -> R) -> (R, String, Vec<String>) {
    let cap = Capture::default();
    let writer = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let r = tracing::subscriber::with_default(subscriber, f);
    let out = String::from_utf8(cap.bytes.lock().unwrap().clone()).unwrap();
    let threads = cap.threads.lock().unwrap().clone();
    (r, out, threads)
}

fn ev(at_ms: u64, kind: EventKind) -> SessionEvent {
    SessionEvent {
        at_ns: at_ms * 1_000_000,
        kind,
    }
}

#[test]
fn every_event_is_logged_once_at_its_level_on_the_logger_thread() {
    let ((stats, pushed), out, threads) = with_capture(|| {
        let (mut tx, rx) = spinwire_ringbuf::channel::<SessionEvent>(64);
        let mut config = LoggerConfig::new("deribit-main");
        config.instruments = vec!["BTC-PERPETUAL".into()];
        let logger = EventLogger::spawn(config, rx).unwrap();
        let events = [
            ev(1, EventKind::Connected { connection: 1 }),
            ev(
                2,
                EventKind::Live {
                    downtime_ns: 1_500_000,
                },
            ),
            ev(
                3,
                EventKind::Gap {
                    instrument: InstrumentId(0),
                    expected_prev: 10,
                    got_prev: 12,
                },
            ),
            ev(
                4,
                EventKind::Disconnected {
                    cause: DisconnectCause::PeerClosed { code: 1001 },
                },
            ),
            ev(
                5,
                EventKind::Fatal {
                    reason: FatalReason::InvalidCredentials,
                    code: 13004,
                },
            ),
        ];
        for e in events {
            tx.push(e).unwrap();
        }
        (logger.stop(), events.len())
    });
    assert_eq!(stats.events, pushed as u64);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("INFO") && l.contains("connected")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("book gap") && l.contains("BTC-PERPETUAL")),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l.contains("WARN")
            && l.contains("disconnected")
            && l.contains("close_code=1001")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ERROR") && l.contains("fatal") && l.contains("13004")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.contains("session=\"deribit-main\"") || l.contains("session=deribit-main")),
        "{out}"
    );
    assert!(!threads.is_empty());
    assert!(
        threads.iter().all(|t| t == "spinwire-log"),
        "written from {threads:?}"
    );
}

#[test]
fn reconnect_storm_raises_an_alert() {
    let (stats, out, _) = with_capture(|| {
        let (mut tx, rx) = spinwire_ringbuf::channel::<SessionEvent>(64);
        let mut config = LoggerConfig::new("s");
        config.limits = AlertLimits {
            reconnects_per_minute: 2,
            ..AlertLimits::default()
        };
        let logger = EventLogger::spawn(config, rx).unwrap();
        for i in 0..4 {
            tx.push(ev(
                i * 1000,
                EventKind::Reconnecting {
                    attempt: i as u32 + 1,
                    delay_ns: 0,
                },
            ))
            .unwrap();
        }
        logger.stop()
    });
    assert_eq!(stats.events, 4);
    assert!(stats.alerts >= 1, "{stats:?}");
    assert!(
        out.lines()
            .any(|l| l.contains("alert") && l.contains("reconnects_per_minute")),
        "{out}"
    );
}

#[test]
fn logger_ends_by_itself_when_the_engine_side_is_gone_and_drained() {
    let (mut tx, rx) = spinwire_ringbuf::channel::<SessionEvent>(8);
    let logger = EventLogger::spawn(LoggerConfig::new("s"), rx).unwrap();
    tx.push(ev(1, EventKind::HeartbeatMissed)).unwrap();
    drop(tx);
    // `stop` joins; the thread must have ended (or end now) having logged the one event.
    assert_eq!(logger.stop().events, 1);
}
