//! Plain TCP (ws://) transport: echo, and the three ways a peer can go away.

mod transport_support;

use spinwire_engine::transport::{Phase, Security, TransportError};
use transport_support::*;

#[test]
fn plain_echo_round_trips_small_and_large_payloads() {
    let sizes = [1usize, 1000, 1024 * 1024];
    let (addr, server) = plain_echo_server(sizes.len());
    let mut reactor = reactor(blocking());
    for (i, &len) in sizes.iter().enumerate() {
        let token = add_client(
            &mut reactor,
            addr,
            Security::Plain,
            payload(len, i as u8),
            1500,
        );
        let c = echo_round_trip(&mut reactor, token);
        assert!(matches!(c.end, Some(End::PeerClosed)), "{:?}", c.end);
        assert!(c.received == c.to_send, "size {len}: echo differs");
        assert!(!c.transport.is_tls());
        assert_eq!(c.transport.alpn_protocol(), None);
        assert_eq!(c.transport.phase(), Phase::Closed);
    }
    for (saw, len) in server.join().unwrap().iter().zip(sizes) {
        assert!(
            matches!(saw, ServerSaw::CleanClose(n) if *n == len),
            "{saw:?}"
        );
    }
}

fn against(ending: Ending) -> Client {
    let (addr, server) = ending_server(None, 2, b"last words", ending);
    let mut reactor = reactor(blocking());
    let token = add_client(&mut reactor, addr, Security::Plain, b"go".to_vec(), 4096);
    drive(&mut reactor, |r| r.get(token).unwrap().end.is_some());
    let mut client = reactor.remove(token).unwrap();
    client.transport.deregister(reactor.registry()).unwrap();
    let _ = client.transport.close();
    server.join().unwrap();
    client
}

#[test]
fn plain_fin_is_a_clean_peer_close_after_the_data() {
    let c = against(Ending::FinOnly);
    assert!(matches!(c.end, Some(End::PeerClosed)), "{:?}", c.end);
    assert_eq!(c.received, b"last words");
}

#[test]
fn plain_reset_is_reported_as_reset() {
    let c = against(Ending::Reset);
    match &c.end {
        Some(End::Failed(e @ TransportError::Reset { .. })) => {
            assert!(e.to_string().contains("reset"), "{e}");
        }
        other => panic!("expected Reset, got {other:?}"),
    }
    // A dead transport refuses further use with a clear error.
    let mut c = c;
    assert!(matches!(
        c.transport.write_plaintext(b"x"),
        Err(TransportError::Closed { .. })
    ));
}
