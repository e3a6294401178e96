//! Steady-state allocations on the engine thread while messages flow through the transport and
//! the reactor. Counts heap allocations made by the client thread only (thread-local counter).
//!
//! Neither plain TCP nor TLS may allocate: after the handshake the transport protects TLS records
//! itself, in place (see `engine/tests/tls_no_alloc.rs` for every suite and key updates).

mod transport_support;

use std::net::SocketAddr;
use std::time::Instant;

use spinwire_engine::reactor::Reactor;
use spinwire_engine::transport::{ReadStatus, Security, TlsConfig, Transport};
use transport_support::*;

mod alloc_support;

#[global_allocator]
static GLOBAL: alloc_support::CountingAlloc = alloc_support::CountingAlloc;

const MESSAGE: usize = 64;
const WARMUP: usize = 50;
const ROUND_TRIPS: u64 = 2_000;

/// Connects, warms up, then counts allocations over `ROUND_TRIPS` ping-pongs of `MESSAGE`
/// bytes through the reactor. Returns the allocation count.
fn count_ping_pong(addr: SocketAddr, security: Security<'_>) -> u64 {
    let (mut reactor, token) = handshaken_transport(addr, security);

    let mut message = [0u8; MESSAGE];
    let mut buf = [0u8; 4096];
    let mut round_trip = |reactor: &mut Reactor<Transport>, i: usize| {
        message.fill(i as u8);
        let t = reactor.get_mut(token).unwrap();
        assert_eq!(t.write_plaintext(&message).unwrap(), MESSAGE);
        t.flush().unwrap();
        let mut got = 0;
        while got < MESSAGE {
            reactor
                .turn(|_, t, _, _| loop {
                    let status = t.read_plaintext(&mut buf[got..]).unwrap();
                    assert!(buf[got..got + status.read()].iter().all(|&b| b == i as u8));
                    got += status.read();
                    match status {
                        ReadStatus::More { .. } => continue,
                        ReadStatus::Drained { .. } => break,
                        ReadStatus::PeerClosed { .. } => panic!("peer closed"),
                    }
                })
                .unwrap();
            assert!(got <= MESSAGE);
        }
    };

    for i in 0..WARMUP {
        round_trip(&mut reactor, i);
    }
    alloc_support::start_counting();
    let timer = Instant::now();
    for i in 0..ROUND_TRIPS as usize {
        round_trip(&mut reactor, i);
    }
    let elapsed = timer.elapsed();
    let allocations = alloc_support::stop_counting();
    println!(
        "{}: {ROUND_TRIPS} round trips of {MESSAGE} B, mean {:.1} us (loopback, blocking reactor)",
        if matches!(security, Security::Plain) {
            "plain"
        } else {
            "TLS"
        },
        elapsed.as_secs_f64() * 1e6 / ROUND_TRIPS as f64
    );

    let t = reactor.get_mut(token).unwrap();
    t.close().unwrap();
    allocations
}

#[test]
fn plain_tcp_steady_state_allocates_nothing_on_the_engine_thread() {
    let (addr, server) = plain_echo_server(1);
    let allocations = count_ping_pong(addr, Security::Plain);
    assert_eq!(allocations, 0, "plain TCP allocated {allocations} times");
    server.join().unwrap();
}

#[test]
fn tls_steady_state_allocates_nothing_on_the_engine_thread() {
    let pki = Pki::new("test CA");
    let config: TlsConfig = pki.client_config();
    let (addr, server) = tls_echo_server(pki.server_config(&["localhost"]), 1);
    let allocations = count_ping_pong(
        addr,
        Security::Tls {
            config: &config,
            host: "localhost",
        },
    );
    assert_eq!(
        allocations, 0,
        "TLS allocated {allocations} times in {ROUND_TRIPS} round trips"
    );
    server.join().unwrap();
}
