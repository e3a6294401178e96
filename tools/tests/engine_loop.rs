//! One engine loop for many sessions, against the simulator run as a separate process (so the
//! test process's epoll instances are the engine's alone): eight sessions on one thread, one
//! epoll instance, no sleeping, a strategy's push waking a parked engine, a flooding session
//! beside quiet ones, one client-order-id space, and control commands.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spinwire_engine::event_loop::control::{
    ChannelName, Control, ControlKind, ControlOutcome, ControlRequest,
};
use spinwire_engine::handoff::{Engine, StrategyEnds};
use spinwire_engine::md::{Direction, Fixed, InstrumentId};
use spinwire_engine::orders::{NewOrder, OrderEventKind, OrderRequest, OrdersConfig};
use spinwire_engine::reactor::PollMode;
use spinwire_engine::session::driver::DriverConfig;
use spinwire_engine::session::{
    BackoffConfig, Credentials, EventKind, SessionConfig, SessionEvent, SessionState,
};
use spinwire_engine::venue::deribit::{OrderType, TimeInForce};

const ID: &str = "loop-client";
const SECRET: &str = "loop-secret-value";

/// `spinwire sim` in a child process; killed on drop.
struct Sim {
    child: Child,
    url: String,
}

impl Sim {
    fn start(rate: u64, extra: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spinwire"))
            .args(["sim", "--venue", "deribit", "--listen", "127.0.0.1:0"])
            .args(["--rate", &rate.to_string()])
            .args(["--instruments", "BTC-PERPETUAL,ETH-PERPETUAL"])
            .args(["--credentials", &format!("{ID}:{SECRET}")])
            .args(["--min-heartbeat", "50ms"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spinwire sim starts");
        let mut err = BufReader::new(child.stderr.take().expect("stderr"));
        let mut url = String::new();
        let mut line = String::new();
        while err.read_line(&mut line).expect("sim stderr") > 0 {
            if let Some(u) = line.trim().strip_prefix("spinwire sim: listening on ") {
                url = u.to_owned();
                break;
            }
            line.clear();
        }
        assert!(url.starts_with("ws://"), "no listening line from the sim");
        // Keep draining its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while err.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        Sim { child, url }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn session(heartbeat_ms: u64) -> SessionConfig {
    SessionConfig {
        credentials: Some(Credentials::new(ID, SECRET)),
        heartbeat: Some(Duration::from_millis(heartbeat_ms)),
        connect_timeout: Duration::from_secs(3),
        setup_timeout: Duration::from_secs(3),
        backoff: BackoffConfig {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            budget: 64,
            budget_window: Duration::from_secs(60),
            reset_after: Duration::from_secs(2),
        },
        ..SessionConfig::default()
    }
}

/// The epoll instances this process holds now.
fn epoll_instances() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy() == "anon_inode:[eventpoll]")
        .count()
}

/// The tests here count the process's epoll instances and read engine threads' state in
/// /proc: they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pops everything of every strategy; returns the events popped.
fn pump(strategies: &mut [StrategyEnds], records: &mut [u64]) -> Vec<(usize, SessionEvent)> {
    let mut out = Vec::new();
    for (i, s) in strategies.iter_mut().enumerate() {
        while s.md.pop().is_some() {
            records[i] += 1;
        }
        while let Some(e) = s.session_events.pop() {
            out.push((i, e));
        }
        while s.order_events.pop().is_some() {}
    }
    out
}

fn wait_all_live(strategies: &mut [StrategyEnds], events: &mut Vec<(usize, SessionEvent)>) {
    let n = strategies.len();
    let mut records = vec![0; n];
    let mut live = HashSet::new();
    let end = Instant::now() + Duration::from_secs(15);
    while live.len() < n && Instant::now() < end {
        for (i, e) in pump(strategies, &mut records) {
            if matches!(e.kind, EventKind::Live { .. }) {
                live.insert(i);
            }
            events.push((i, e));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(live.len(), n, "sessions live: {live:?}; events: {events:?}");
}

#[test]
fn eight_sessions_share_one_epoll_and_never_sleep() {
    let _serial = serial();
    let sim = Sim::start(800, &[]);
    let before = epoll_instances();
    let mut builder = Engine::builder().poll_mode(PollMode::Blocking(None));
    for i in 0..8 {
        let inst = if i % 2 == 0 { "BTC" } else { "ETH" };
        builder = builder.session(
            format!("s{i}"),
            DriverConfig::new(&sim.url),
            session(100),
            &[format!("book.{inst}-PERPETUAL.raw")],
        );
    }
    let mut engine = builder.spawn().expect("engine starts");
    let mut events = Vec::new();
    wait_all_live(&mut engine.strategies, &mut events);
    assert_eq!(
        epoll_instances() - before,
        1,
        "eight sessions, one epoll instance"
    );

    // Two seconds of data and heartbeats (a test request every 100 ms per session). Sample
    // what the engine thread is blocked in: an epoll wait, never a sleep.
    let tid = engine.control.tid();
    let mut records = vec![0u64; 8];
    let mut syscalls = std::collections::BTreeMap::<String, u32>::new();
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        events.extend(pump(&mut engine.strategies, &mut records));
        let sc =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).unwrap_or_default();
        let nr = sc.split_whitespace().next().unwrap_or("?").to_owned();
        *syscalls.entry(nr).or_default() += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    // x86-64 nanosleep 35, clock_nanosleep 230; aarch64 101, 115.
    for sleep in ["35", "230", "101", "115"] {
        assert!(
            !syscalls.contains_key(sleep),
            "the engine thread was seen in a sleep (syscall {sleep}): {syscalls:?}"
        );
    }
    let stats = engine.control.shutdown().expect("clean shutdown");
    assert_eq!(stats.engine.epoll_instances, 1);
    assert!(
        stats.engine.kernel_waits > 0,
        "blocking mode waits in epoll: {:?}",
        stats.engine
    );
    for (i, e) in &events {
        assert!(
            !matches!(
                e.kind,
                EventKind::Gap { .. } | EventKind::Disconnected { .. }
            ),
            "session {i}: {e:?}"
        );
    }
    answered_every_test_request(&stats.sessions);
    for (i, s) in stats.sessions.iter().enumerate() {
        assert_eq!(s.state, SessionState::Disconnected, "{}", s.name);
        assert!(records[i] > 0, "{}: no market data", s.name);
    }
}

/// Each session kept its one connection (the simulator closes one whose answer to a test
/// request is late) and answered at least 10 test requests (2 s at one per 100 ms).
fn answered_every_test_request(sessions: &[spinwire_engine::handoff::SessionFinal]) {
    for s in sessions {
        assert_eq!(s.session.connections, 1, "{}: never reconnected", s.name);
        assert!(
            s.session.tests_answered >= 10,
            "{}: {} test requests answered in 2 s at 100 ms",
            s.name,
            s.session.tests_answered
        );
    }
}

/// An engine in `Blocking(None)` with one session, once it is Live.
fn one_live_session(sim: &Sim, cfg: SessionConfig) -> Engine {
    let mut engine = Engine::builder()
        .session("one", DriverConfig::new(&sim.url), cfg, &[])
        .poll_mode(PollMode::Blocking(None))
        .spawn()
        .expect("engine starts");
    let mut events = Vec::new();
    wait_all_live(&mut engine.strategies, &mut events);
    engine
}

fn order_session() -> SessionConfig {
    let mut cfg = session(1000);
    cfg.orders = OrdersConfig {
        currency: "BTC".into(),
        instruments: vec!["BTC-PERPETUAL".into()],
        ..OrdersConfig::default()
    };
    cfg
}

fn far_bid(tag: u64) -> OrderRequest {
    OrderRequest::New(NewOrder {
        tag,
        instrument: InstrumentId(0),
        direction: Direction::Buy,
        order_type: OrderType::Limit,
        price: Some(Fixed::from_int(1_000).unwrap()),
        amount: Fixed::from_int(10).unwrap(),
        time_in_force: TimeInForce::GoodTilCancelled,
        post_only: true,
        reduce_only: false,
        ttl_ms: 0,
    })
}

#[test]
fn an_order_pushed_while_the_engine_is_parked_wakes_it() {
    let _serial = serial();
    // No market data at all, heartbeats every second: the engine waits in epoll for up to a
    // second at a time. An order must go out at once, woken by the strategy's push.
    let sim = Sim::start(0, &[]);
    let mut engine = one_live_session(&sim, order_session());
    let ends = &mut engine.strategies[0];
    let mut answered = Vec::new();
    for tag in 1..=5u64 {
        // Let the engine settle into its kernel wait.
        std::thread::sleep(Duration::from_millis(150));
        let t0 = Instant::now();
        assert!(ends.orders.push(far_bid(tag)).is_ok());
        let end = t0 + Duration::from_secs(5);
        loop {
            if let Some(e) = ends.order_events.pop() {
                if e.tag == tag && matches!(e.kind, OrderEventKind::Accepted) {
                    answered.push(t0.elapsed());
                    break;
                }
            }
            assert!(Instant::now() < end, "order {tag} not accepted");
            std::hint::spin_loop();
        }
    }
    let stats = engine.control.shutdown().expect("clean shutdown");
    assert!(
        stats.engine.wakeups >= 4,
        "the strategy's pushes woke the engine: {:?}",
        stats.engine
    );
    // Woken, not timed out: the engine's next deadline was up to a second away.
    let slowest = answered.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_millis(300),
        "accept times {answered:?}"
    );
}

#[test]
fn a_flooding_session_does_not_delay_seven_quiet_ones() {
    let _serial = serial();
    // One session takes every market-data message the simulator can make (raw books of both
    // instruments at 50,000 events/s); seven others only heartbeat at 100 ms. The quiet ones
    // must answer every test request in time (the simulator closes a connection whose answer
    // is late) and never reconnect.
    let sim = Sim::start(50_000, &[]);
    let mut builder = Engine::builder().poll_mode(PollMode::SpinThenPark {
        spins: 200,
        park: Duration::from_millis(1),
    });
    builder = builder.session(
        "flood",
        DriverConfig::new(&sim.url),
        session(1000),
        &[
            "book.BTC-PERPETUAL.raw".to_string(),
            "book.ETH-PERPETUAL.raw".to_string(),
            "trades.BTC-PERPETUAL.raw".to_string(),
        ],
    );
    for i in 0..7 {
        builder = builder.session(
            format!("quiet{i}"),
            DriverConfig::new(&sim.url),
            session(100),
            &[],
        );
    }
    let mut engine = builder.spawn().expect("engine starts");
    let mut events = Vec::new();
    wait_all_live(&mut engine.strategies, &mut events);
    let mut records = vec![0u64; 8];
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        events.extend(pump(&mut engine.strategies, &mut records));
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = engine.control.shutdown().expect("clean shutdown");
    assert!(records[0] > 20_000, "the flood: {} records", records[0]);
    for (i, e) in &events {
        if *i > 0 {
            assert!(
                !matches!(e.kind, EventKind::Disconnected { .. }),
                "quiet session {i}: {e:?}"
            );
        }
    }
    answered_every_test_request(&stats.sessions[1..]);
}

#[test]
fn sessions_of_one_engine_and_of_two_instances_never_share_a_client_order_id() {
    let _serial = serial();
    // Two engines started in the same millisecond, eight order sessions each, all on the same
    // account: every id differs.
    let sim = Sim::start(0, &[]);
    let build = |instance: u8| {
        let mut b = Engine::builder()
            .instance(instance)
            .poll_mode(PollMode::Blocking(Some(Duration::from_millis(1))));
        for i in 0..8 {
            b = b.session(
                format!("i{instance}s{i}"),
                DriverConfig::new(&sim.url),
                order_session(),
                &[],
            );
        }
        b
    };
    let (a, b) = (build(1), build(2));
    let mut engines = [a.spawn().expect("engine 1"), b.spawn().expect("engine 2")];
    let mut ids = HashSet::new();
    let mut count = 0;
    for (engine, instance) in engines.iter_mut().zip([1u8, 2]) {
        let mut events = Vec::new();
        wait_all_live(&mut engine.strategies, &mut events);
        for ends in engine.strategies.iter_mut() {
            for tag in 1..=3 {
                assert!(ends.orders.push(far_bid(tag)).is_ok());
            }
        }
        let end = Instant::now() + Duration::from_secs(10);
        let mut accepted = 0;
        while accepted < 24 && Instant::now() < end {
            for ends in engine.strategies.iter_mut() {
                while let Some(e) = ends.order_events.pop() {
                    if matches!(e.kind, OrderEventKind::Accepted) {
                        accepted += 1;
                        count += 1;
                        assert!(ids.insert(e.id.0), "id {:#x} minted twice", e.id.0);
                        assert_eq!(spinwire_engine::orders::ids::instance_of(e.id.0), instance,);
                    }
                }
                while ends.session_events.pop().is_some() {}
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(accepted, 24, "every order accepted");
    }
    assert_eq!(ids.len(), count);
    for e in engines {
        e.control.shutdown().expect("clean shutdown");
    }
}

#[test]
fn control_commands_subscribe_unsubscribe_resync_stop_and_start_a_session() {
    let _serial = serial();
    let sim = Sim::start(2000, &[]);
    let mut engine = one_live_session(&sim, session(1000));
    let ends = &mut engine.strategies[0];
    let book = ChannelName::new("book.BTC-PERPETUAL.raw").unwrap();
    let send = |ends: &mut StrategyEnds, tag: u32, command: Control| {
        assert!(ends.control.push(ControlRequest { tag, command }).is_ok());
    };
    // Waits for the answer to `tag` and returns it with the events seen meanwhile.
    let answer = |ends: &mut StrategyEnds, tag: u32, md: &mut u64| {
        let end = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            while ends.md.pop().is_some() {
                *md += 1;
            }
            while let Some(e) = ends.session_events.pop() {
                if let EventKind::Control {
                    tag: t,
                    command,
                    outcome,
                } = e.kind
                {
                    if t == tag {
                        return (command, outcome, seen);
                    }
                }
                seen.push(e.kind);
            }
            assert!(Instant::now() < end, "no answer to {tag}: {seen:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let mut md = 0u64;
    send(ends, 1, Control::Subscribe(book));
    let (kind, outcome, _) = answer(ends, 1, &mut md);
    assert_eq!(
        (kind, outcome),
        (ControlKind::Subscribe, ControlOutcome::Accepted)
    );
    let end = Instant::now() + Duration::from_secs(10);
    while md < 100 && Instant::now() < end {
        while ends.md.pop().is_some() {
            md += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(md >= 100, "records after a run-time subscribe: {md}");

    send(ends, 2, Control::Subscribe(book));
    assert_eq!(
        answer(ends, 2, &mut md).1,
        ControlOutcome::AlreadySubscribed
    );

    // Resync: the book goes stale and comes back from a snapshot.
    send(ends, 3, Control::Resync(book));
    assert_eq!(answer(ends, 3, &mut md).1, ControlOutcome::Accepted);
    let end = Instant::now() + Duration::from_secs(10);
    let mut resynced = false;
    while !resynced && Instant::now() < end {
        while ends.md.pop().is_some() {}
        while let Some(e) = ends.session_events.pop() {
            resynced |= matches!(e.kind, EventKind::Resynced { .. });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(resynced, "a resync ends with a fresh snapshot");

    send(ends, 4, Control::Unsubscribe(book));
    assert_eq!(answer(ends, 4, &mut md).1, ControlOutcome::Accepted);
    std::thread::sleep(Duration::from_millis(200));
    while ends.md.pop().is_some() {}
    std::thread::sleep(Duration::from_millis(300));
    let mut after = 0;
    while ends.md.pop().is_some() {
        after += 1;
    }
    assert_eq!(after, 0, "no records after the unsubscribe took effect");
    let trades = ChannelName::new("trades.BTC-PERPETUAL.raw").unwrap();
    send(ends, 5, Control::Unsubscribe(trades));
    assert_eq!(answer(ends, 5, &mut md).1, ControlOutcome::NotSubscribed);
    send(ends, 6, Control::Resync(trades));
    assert_eq!(answer(ends, 6, &mut md).1, ControlOutcome::NotSubscribed);

    // Stop: logged out and disconnected; start: live again.
    send(ends, 7, Control::Stop);
    let (_, outcome, _) = answer(ends, 7, &mut md);
    assert_eq!(outcome, ControlOutcome::Accepted);
    let end = Instant::now() + Duration::from_secs(10);
    let mut stopped = false;
    while !stopped && Instant::now() < end {
        while let Some(e) = ends.session_events.pop() {
            stopped |= matches!(
                e.kind,
                EventKind::StateChanged {
                    to: SessionState::Disconnected,
                    ..
                }
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(stopped, "stopped");
    send(ends, 8, Control::Stop);
    assert_eq!(answer(ends, 8, &mut md).1, ControlOutcome::WrongState);
    send(ends, 9, Control::Start);
    assert_eq!(answer(ends, 9, &mut md).1, ControlOutcome::Accepted);
    let mut live = Vec::new();
    wait_all_live(std::slice::from_mut(ends), &mut live);
    let stats = engine.control.shutdown().expect("clean shutdown");
    assert_eq!(stats.sessions[0].session.connections, 2);
    assert_eq!(stats.sessions[0].driver.control_commands, 9);
}

#[test]
fn sched_fifo_is_applied_to_the_engine_thread_or_refused_naming_the_setting() {
    let _serial = serial();
    use spinwire_engine::handoff::HandoffError;
    let sim = Sim::start(0, &[]);
    let build = |priority: i32| {
        Engine::builder()
            .session("rt", DriverConfig::new(&sim.url), session(1000), &[])
            .poll_mode(PollMode::Blocking(None))
            .sched_fifo(priority)
            .spawn()
    };
    match build(150) {
        Err(e @ HandoffError::Pin(_)) => {
            let text = e.to_string();
            assert!(text.contains("150") && text.contains("FIFO"), "{text}");
        }
        other => panic!("priority 150 must be refused, got {other:?}"),
    }
    match build(1) {
        Ok(engine) => {
            // Field 41 of the thread's stat line is its scheduling policy (1: SCHED_FIFO).
            let tid = engine.control.tid();
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
            let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
            let policy: u32 = after_comm.split(' ').nth(38).unwrap().parse().unwrap();
            assert_eq!(policy, 1, "the engine thread runs SCHED_FIFO");
            engine.control.shutdown().expect("clean shutdown");
        }
        // Not permitted here (no CAP_SYS_NICE, or an RT budget of 0 in this cgroup): refused
        // with the advice, never ignored.
        Err(e @ HandoffError::Pin(_)) => {
            let text = e.to_string();
            assert!(text.contains("FIFO"), "{text}");
        }
        Err(e) => panic!("unexpected: {e}"),
    }
}

#[test]
fn a_burst_larger_than_one_turns_batch_is_taken_whole_while_the_engine_waits() {
    let _serial = serial();
    // Heartbeats every 10 s: nothing but the strategy's pushes wakes the engine. One turn
    // takes 16 control commands; the other 24 must not wait for the next heartbeat.
    let sim = Sim::start(0, &[]);
    let mut engine = one_live_session(&sim, session(10_000));
    let ends = &mut engine.strategies[0];
    let t0 = Instant::now();
    for tag in 0..40u32 {
        let channel = ChannelName::new(&format!("trades.X{tag}-PERPETUAL.raw")).unwrap();
        let command = Control::Unsubscribe(channel);
        assert!(ends.control.push(ControlRequest { tag, command }).is_ok());
    }
    let mut answered = HashSet::new();
    while answered.len() < 40 && t0.elapsed() < Duration::from_secs(3) {
        while let Some(e) = ends.session_events.pop() {
            if let EventKind::Control { tag, outcome, .. } = e.kind {
                assert_eq!(outcome, ControlOutcome::NotSubscribed);
                answered.insert(tag);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(answered.len(), 40, "answered {} of 40", answered.len());
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    engine.control.shutdown().expect("clean shutdown");
}

#[test]
fn an_order_event_left_on_its_ring_does_not_keep_a_spin_then_park_engine_spinning() {
    let _serial = serial();
    let sim = Sim::start(0, &[]);
    let mut engine = Engine::builder()
        .session("lazy", DriverConfig::new(&sim.url), order_session(), &[])
        .poll_mode(PollMode::SpinThenPark {
            spins: 200,
            park: Duration::from_millis(50),
        })
        .spawn()
        .expect("engine starts");
    let mut events = Vec::new();
    wait_all_live(&mut engine.strategies, &mut events);
    let ends = &mut engine.strategies[0];
    // An invalid order: refused at once, its event left on the ring (the strategy never pops).
    let mut bad = far_bid(1);
    if let OrderRequest::New(o) = &mut bad {
        o.amount = Fixed::ZERO;
    }
    assert!(ends.orders.push(bad).is_ok());
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        !ends.order_events.is_empty(),
        "the refusal waits on the ring"
    );
    let stats = engine.control.shutdown().expect("clean shutdown");
    // Watching the untaken event costs a look every millisecond, not a spinning core.
    assert!(stats.engine.kernel_waits > 100, "{:?}", stats.engine);
    assert!(stats.engine.turns < 50_000, "{:?}", stats.engine);
}

#[test]
fn a_single_session_driver_waiting_in_epoll_stops_at_once_when_asked() {
    let _serial = serial();
    let sim = Sim::start(0, &[]);
    let mut dc = DriverConfig::new(&sim.url);
    dc.mode = PollMode::Blocking(None);
    // Heartbeats every 10 s: without a wake-up the stop would wait for the next one.
    let mut h = spinwire_engine::session::driver::Driver::spawn(dc, session(10_000), &[])
        .expect("driver starts");
    let end = Instant::now() + Duration::from_secs(10);
    let mut live = false;
    while !live && Instant::now() < end {
        while let Some(e) = h.events.pop() {
            live |= matches!(e.kind, EventKind::Live { .. });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(live, "not live");
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    h.request_stop();
    while !h.thread.is_finished() {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "the driver did not stop"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    let (_, stats) = h.thread.join().unwrap().expect("clean stop");
    assert_eq!(stats.connections, 1);
}
