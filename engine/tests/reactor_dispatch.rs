//! The reactor's token → slot dispatch, stale events, waker and poll modes.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::Interest;
use spinwire_engine::reactor::{PollMode, Reactor};

/// A slot that records the events it got.
struct Probe {
    sock: TcpStream,
    readable: usize,
}

fn turn_until(reactor: &mut Reactor<Probe>, mut done: impl FnMut(&mut Reactor<Probe>) -> bool) {
    let start = Instant::now();
    while !done(reactor) {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out");
        reactor
            .turn(|_, probe, event, _| {
                if event.is_readable() {
                    probe.readable += 1;
                }
            })
            .unwrap();
    }
}

#[test]
fn events_reach_the_slot_registered_under_their_token() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut reactor =
        Reactor::new(8, 16, PollMode::Blocking(Some(Duration::from_millis(20)))).unwrap();
    let mut tokens = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..3 {
        let token = reactor
            .insert_with(|token, registry| {
                let mut sock = TcpStream::connect(addr)?;
                registry.register(&mut sock, token, Interest::READABLE)?;
                Ok::<_, std::io::Error>(Probe { sock, readable: 0 })
            })
            .unwrap();
        tokens.push(token);
        peers.push(listener.accept().unwrap().0);
    }
    // Only the second connection gets data.
    peers[1].write_all(b"x").unwrap();
    turn_until(&mut reactor, |r| r.get(tokens[1]).unwrap().readable > 0);
    assert_eq!(reactor.get(tokens[0]).unwrap().readable, 0);
    assert_eq!(reactor.get(tokens[2]).unwrap().readable, 0);
    for t in tokens {
        let mut p = reactor.remove(t).unwrap();
        reactor.registry().deregister(&mut p.sock).unwrap();
    }
    assert!(reactor.is_empty());
}

#[test]
fn events_for_a_removed_slot_are_dropped_as_stale() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut reactor =
        Reactor::new(2, 16, PollMode::Blocking(Some(Duration::from_millis(20)))).unwrap();
    let token = reactor
        .insert_with(|token, registry| {
            let mut sock = TcpStream::connect(addr)?;
            registry.register(&mut sock, token, Interest::READABLE)?;
            Ok::<_, std::io::Error>(Probe { sock, readable: 0 })
        })
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    // Remove the slot but keep the socket registered (the mistake the generation guards
    // against), then make it readable.
    let orphan = reactor.remove(token).unwrap();
    // Reuse the slot for a new occupant with nothing registered.
    let reused = reactor
        .insert_with(|_, _| {
            let sock = TcpStream::connect(addr)?;
            Ok::<_, std::io::Error>(Probe { sock, readable: 0 })
        })
        .unwrap();
    let _second_peer = listener.accept().unwrap();
    peer.write_all(b"x").unwrap();
    turn_until(&mut reactor, |r| r.stale_events() > 0);
    assert_eq!(
        reactor.get(reused).unwrap().readable,
        0,
        "old token reached the new occupant"
    );
    drop(orphan);
}

#[test]
fn waker_ends_an_unbounded_blocking_wait() {
    let mut reactor: Reactor<Probe> = Reactor::new(1, 4, PollMode::Blocking(None)).unwrap();
    let waker = reactor.waker().unwrap();
    let woke = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&woke);
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        flag.store(true, Ordering::SeqCst);
        waker.wake().unwrap();
    });
    let dispatched = reactor.turn(|_, _, _, _| {}).unwrap();
    assert_eq!(dispatched, 0, "waker events are not dispatched to slots");
    assert!(woke.load(Ordering::SeqCst), "returned before the wake");
    assert_eq!(reactor.wakeups(), 1);
    t.join().unwrap();
}

#[test]
fn spin_modes_return_at_once_when_nothing_is_ready() {
    for mode in [PollMode::BusySpin, PollMode::SpinYield] {
        let mut reactor: Reactor<Probe> = Reactor::new(1, 4, mode).unwrap();
        let start = Instant::now();
        for _ in 0..1000 {
            reactor.turn(|_, _, _, _| {}).unwrap();
        }
        // 1000 zero-timeout polls; a millisecond-rounded wait each would take >= 1 s.
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{mode:?}: {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn spin_then_park_waits_in_the_kernel_after_its_spins() {
    let park = Duration::from_millis(30);
    let mut reactor: Reactor<Probe> =
        Reactor::new(1, 4, PollMode::SpinThenPark { spins: 5, park }).unwrap();
    let start = Instant::now();
    for _ in 0..5 {
        reactor.turn(|_, _, _, _| {}).unwrap();
    }
    assert!(start.elapsed() < park, "spinning turns must not wait");
    let parked = Instant::now();
    reactor.turn(|_, _, _, _| {}).unwrap();
    assert!(
        parked.elapsed() >= park - Duration::from_millis(1),
        "{:?}",
        parked.elapsed()
    );
}
