//! TLS transport against rustls servers on loopback, driven by the reactor.

mod transport_support;

use std::time::Duration;

use rustls::CertificateError;
use spinwire_engine::reactor::PollMode;
use spinwire_engine::transport::{
    Flush, Handshake, Phase, Security, TlsConfig, Transport, TransportError, TransportOptions,
};
use transport_support::*;

fn tls<'a>(config: &'a TlsConfig, host: &'a str) -> Security<'a> {
    Security::Tls { config, host }
}

/// Echoes payloads of several sizes over TLS in the given reactor mode and checks every byte,
/// the ALPN result and the clean close seen by the server.
fn echo_in_mode(mode: PollMode, sizes: &[usize]) {
    let pki = Pki::new("test CA");
    let client_config = pki.client_config();
    let (addr, server) = tls_echo_server(pki.server_config(&["localhost"]), sizes.len());
    let mut reactor = reactor(mode);
    let tokens: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            add_client(
                &mut reactor,
                addr,
                tls(&client_config, "localhost"),
                payload(len, i as u8),
                4096,
            )
        })
        .collect();
    for (i, &token) in tokens.iter().enumerate() {
        let client = echo_round_trip(&mut reactor, token);
        assert!(
            matches!(client.end, Some(End::PeerClosed)),
            "size {}: ended with {:?}",
            sizes[i],
            client.end
        );
        assert_eq!(client.received.len(), sizes[i]);
        assert!(client.received == client.to_send, "echo differs");
        assert_eq!(client.transport.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(client.transport.phase(), Phase::Closed);
    }
    let saw = server.join().unwrap();
    for (s, &len) in saw.iter().zip(sizes) {
        assert!(
            matches!(s, ServerSaw::CleanClose(n) if *n == len),
            "server saw {s:?}, expected a clean close after {len} bytes"
        );
    }
}

#[test]
fn tls_echo_round_trips_small_and_large_payloads_in_blocking_mode() {
    echo_in_mode(blocking(), &[1, 100, 16 * 1024 + 1, 1024 * 1024]);
}

#[test]
fn tls_echo_round_trips_in_spin_yield_mode() {
    echo_in_mode(PollMode::SpinYield, &[10, 300 * 1024]);
}

#[test]
fn tls_echo_round_trips_in_busy_spin_mode() {
    echo_in_mode(PollMode::BusySpin, &[10, 64 * 1024]);
}

#[test]
fn tls_echo_round_trips_in_spin_then_park_mode() {
    echo_in_mode(
        PollMode::SpinThenPark {
            spins: 100,
            park: Duration::from_millis(5),
        },
        &[10, 64 * 1024],
    );
}

#[test]
fn tls12_echo_round_trips() {
    let pki = Pki::new("test CA");
    let client_config = pki.client_config();
    let server_config = pki.server_config_versions(&["localhost"], &[&rustls::version::TLS12]);
    let (addr, server) = tls_echo_server(server_config, 1);
    let mut reactor = reactor(blocking());
    let token = add_client(
        &mut reactor,
        addr,
        tls(&client_config, "localhost"),
        payload(200 * 1024, 7),
        1000,
    );
    let client = echo_round_trip(&mut reactor, token);
    assert!(
        matches!(client.end, Some(End::PeerClosed)),
        "{:?}",
        client.end
    );
    assert!(client.received == client.to_send);
    assert_eq!(
        client.transport.tls_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    server.join().unwrap();
}

#[test]
fn several_connections_share_one_reactor_by_token() {
    let pki = Pki::new("test CA");
    let client_config = pki.client_config();
    let (tls_addr, tls_server) = tls_echo_server(pki.server_config(&["localhost"]), 3);
    let (plain_addr, plain_server) = plain_echo_server(1);
    let mut reactor = reactor(blocking());
    let mut tokens = Vec::new();
    for i in 0..3u8 {
        tokens.push(add_client(
            &mut reactor,
            tls_addr,
            tls(&client_config, "localhost"),
            payload(50_000 + usize::from(i) * 1000, i),
            4096,
        ));
    }
    tokens.push(add_client(
        &mut reactor,
        plain_addr,
        Security::Plain,
        payload(70_000, 9),
        4096,
    ));
    // All four progress together on one loop.
    drive(&mut reactor, |r| {
        tokens.iter().all(|&t| {
            let c = r.get(t).unwrap();
            c.end.is_some() || c.received.len() >= c.to_send.len()
        })
    });
    for &t in &tokens {
        let c = reactor.get(t).unwrap();
        assert!(c.end.is_none(), "{:?}", c.end);
        assert!(
            c.received == c.to_send,
            "slot {t:?} got someone else's bytes"
        );
        assert!(c.events > 0, "slot {t:?} never received an event");
    }
    for &t in &tokens {
        echo_round_trip(&mut reactor, t);
    }
    assert_eq!(tls_server.join().unwrap().len(), 3);
    assert_eq!(plain_server.join().unwrap().len(), 1);
}

#[test]
fn server_certificate_from_unknown_ca_is_rejected_as_unknown_issuer() {
    let trusted = Pki::new("trusted CA");
    let other = Pki::new("other CA");
    let client_config = trusted.client_config();
    let (addr, server) = tls_echo_server(other.server_config(&["localhost"]), 1);
    let mut reactor = reactor(blocking());
    let token = add_client(
        &mut reactor,
        addr,
        tls(&client_config, "localhost"),
        b"secret".to_vec(),
        4096,
    );
    let client = drive_to_end(&mut reactor, token);
    assert!(!client.established, "handshake must not succeed");
    match &client.end {
        Some(End::Failed(TransportError::Certificate { host, reason })) => {
            assert_eq!(host, "localhost");
            assert_eq!(*reason, CertificateError::UnknownIssuer);
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
    let msg = match &client.end {
        Some(End::Failed(e)) => e.to_string(),
        _ => unreachable!(),
    };
    assert!(
        msg.contains("localhost") && msg.contains("UnknownIssuer"),
        "{msg}"
    );
    assert_eq!(client.transport.phase(), Phase::Closed);
    // The server learns why: rustls' alert reached it, and no application byte did.
    match &server.join().unwrap()[0] {
        ServerSaw::Error(e, 0) => assert!(e.contains("alert"), "server saw: {e}"),
        other => panic!("server should fail the handshake, saw {other:?}"),
    }
}

#[test]
fn server_certificate_for_another_name_is_rejected_as_not_valid_for_name() {
    let pki = Pki::new("test CA");
    let client_config = pki.client_config();
    let (addr, server) = tls_echo_server(pki.server_config(&["venue.example"]), 1);
    let mut reactor = reactor(blocking());
    let token = add_client(
        &mut reactor,
        addr,
        tls(&client_config, "localhost"),
        b"secret".to_vec(),
        4096,
    );
    let client = drive_to_end(&mut reactor, token);
    assert!(!client.established);
    match &client.end {
        Some(End::Failed(TransportError::Certificate { host, reason })) => {
            assert_eq!(host, "localhost");
            assert!(
                matches!(
                    reason,
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                ),
                "{reason:?}"
            );
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
    server.join().unwrap();
}

#[test]
fn connection_refused_is_reported_as_refused() {
    let pki = Pki::new("test CA");
    let client_config = pki.client_config();
    let addr = refused_addr();
    let mut reactor = reactor(blocking());
    let plain = add_client(&mut reactor, addr, Security::Plain, Vec::new(), 64);
    let secure = add_client(
        &mut reactor,
        addr,
        tls(&client_config, "localhost"),
        Vec::new(),
        64,
    );
    for token in [plain, secure] {
        let client = drive_to_end(&mut reactor, token);
        match &client.end {
            Some(End::Failed(TransportError::Refused { addr: a })) => assert_eq!(*a, addr),
            other => panic!("expected Refused, got {other:?}"),
        }
        let msg = match &client.end {
            Some(End::Failed(e)) => e.to_string(),
            _ => unreachable!(),
        };
        assert!(
            msg.contains("refused") && msg.contains(&addr.to_string()),
            "{msg}"
        );
    }
}

/// Runs one client against an `ending_server` and returns it after it ended.
fn against_ending(
    reactor: &mut spinwire_engine::reactor::Reactor<Client>,
    security: Security<'_>,
    ending: Ending,
    tls_server: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> mio::Token {
    let (addr, server) = ending_server(tls_server, 2, b"last words", ending);
    let token = add_client(reactor, addr, security, b"go".to_vec(), 4096);
    drive(reactor, |r| r.get(token).unwrap().end.is_some());
    // Let the server finish (it waits for our close, except on reset).
    let client = reactor.get_mut(token).unwrap();
    let _ = client.transport.close();
    server.join().unwrap();
    token
}

#[test]
fn server_close_notify_then_fin_is_a_clean_peer_close() {
    let pki = Pki::new("test CA");
    let client_config = pki.client_config();
    let mut reactor = reactor(blocking());
    let token = against_ending(
        &mut reactor,
        tls(&client_config, "localhost"),
        Ending::CloseNotify,
        Some(pki.server_config(&["localhost"])),
    );
    let client = reactor.get(token).unwrap();
    assert!(
        matches!(client.end, Some(End::PeerClosed)),
        "{:?}",
        client.end
    );
    assert_eq!(client.received, b"last words");
}

#[test]
fn server_fin_without_close_notify_is_truncation() {
    let pki = Pki::new("test CA");
    let client_config = pki.client_config();
    let mut reactor = reactor(blocking());
    let token = against_ending(
        &mut reactor,
        tls(&client_config, "localhost"),
        Ending::FinOnly,
        Some(pki.server_config(&["localhost"])),
    );
    let client = reactor.get(token).unwrap();
    // The data before the FIN is delivered, then the missing close_notify is an error.
    assert_eq!(client.received, b"last words");
    match &client.end {
        Some(End::Failed(e @ TransportError::Truncated { .. })) => {
            assert!(e.to_string().contains("close_notify"), "{e}");
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
fn server_reset_is_reported_as_reset() {
    let pki = Pki::new("test CA");
    let client_config = pki.client_config();
    let mut reactor = reactor(blocking());
    let token = against_ending(
        &mut reactor,
        tls(&client_config, "localhost"),
        Ending::Reset,
        Some(pki.server_config(&["localhost"])),
    );
    let client = reactor.get(token).unwrap();
    assert!(
        matches!(client.end, Some(End::Failed(TransportError::Reset { .. }))),
        "{:?}",
        client.end
    );
}

#[test]
fn client_close_sends_close_notify_and_fin_and_refuses_further_writes() {
    let pki = Pki::new("test CA");
    let client_config = pki.client_config();
    let (addr, server) = tls_echo_server(pki.server_config(&["localhost"]), 1);
    let mut reactor = reactor(blocking());
    let token = add_client(
        &mut reactor,
        addr,
        tls(&client_config, "localhost"),
        b"ping".to_vec(),
        4096,
    );
    let client = echo_round_trip(&mut reactor, token);
    assert!(
        matches!(client.end, Some(End::PeerClosed)),
        "{:?}",
        client.end
    );
    assert!(matches!(
        client.transport.write_plaintext(b"late"),
        Err(TransportError::Closed { .. })
    ));
    // The server's rustls read returned Ok(0): a close_notify, not a bare EOF.
    assert!(matches!(
        server.join().unwrap()[0],
        ServerSaw::CleanClose(4)
    ));
}

#[test]
fn io_before_the_handshake_completes_is_refused_without_killing_the_transport() {
    let pki = Pki::new("test CA");
    let client_config = pki.client_config();
    let (addr, server) = tls_echo_server(pki.server_config(&["localhost"]), 1);
    let mut t = Transport::connect(
        addr,
        tls(&client_config, "localhost"),
        TransportOptions::default(),
    )
    .unwrap();
    assert_eq!(t.phase(), Phase::Connecting);
    assert!(matches!(
        t.write_plaintext(b"x"),
        Err(TransportError::NotEstablished { .. })
    ));
    let mut buf = [0u8; 8];
    assert!(matches!(
        t.read_plaintext(&mut buf),
        Err(TransportError::NotEstablished { .. })
    ));
    // Still usable: finish the handshake and echo through the reactor.
    let mut reactor = reactor(blocking());
    let token = reactor
        .insert_with(|token, registry| {
            t.register(registry, token).unwrap();
            Ok::<_, ()>(Client::new(t, b"after".to_vec(), 64))
        })
        .unwrap();
    let client = echo_round_trip(&mut reactor, token);
    assert!(client.received == b"after");
    server.join().unwrap();
}

#[test]
fn invalid_host_name_is_rejected_before_connecting() {
    let pki = Pki::new("test CA");
    let client_config = pki.client_config();
    let err = Transport::connect(
        refused_addr(),
        tls(&client_config, "not a host name"),
        TransportOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, TransportError::InvalidHostName { host } if host == "not a host name"),
        "{err:?}"
    );
}

#[test]
fn write_while_input_is_pending_leaves_it_pending_and_loses_nothing() {
    let pki = Pki::new("test CA");
    let client_config = pki.client_config();
    let blob = payload(200 * 1024, 11);
    let upload = payload(100 * 1024, 12);
    let (addr, server) = send_then_read_server(
        pki.server_config(&["localhost"]),
        blob.clone(),
        upload.len(),
    );
    let mut reactor = reactor(blocking());
    // Handshake through the reactor, but read nothing yet.
    let token = add_client(
        &mut reactor,
        addr,
        tls(&client_config, "localhost"),
        Vec::new(),
        64,
    );
    let start = std::time::Instant::now();
    while !reactor.get(token).unwrap().established {
        assert!(start.elapsed() < DEADLINE, "handshake timed out");
        reactor
            .turn(|_, c, _, _| {
                c.established = c.transport.handshake().unwrap() == Handshake::Done;
            })
            .unwrap();
    }
    let c = reactor.get_mut(token).unwrap();
    assert_eq!(c.transport.write_plaintext(b"go").unwrap(), 2);
    assert_eq!(c.transport.flush().unwrap(), Flush::Done);
    // Wait until most of the blob sits in our socket, then read just 100 bytes of it: the
    // socket read pulls in several complete records, most of which stay encrypted in the
    // incoming buffer.
    wait_for_unread_bytes(c.transport.socket(), 64 * 1024);
    let mut received = Vec::new();
    let mut small = [0u8; 100];
    let status = c.transport.read_plaintext(&mut small).unwrap();
    assert!(
        matches!(
            status,
            spinwire_engine::transport::ReadStatus::More { read: 100 }
        ),
        "{status:?}"
    );
    received.extend_from_slice(&small);
    let pending_before = c.transport.buffered_plaintext();
    assert!(pending_before > 0, "the first record was only partly read");

    // Writing is independent of reading: the pending records stay as they are (the partly read
    // one decrypted, the rest still encrypted), and nothing is dropped.
    let sent = c.transport.write_plaintext(&upload).unwrap();
    assert!(sent > 0);
    assert_eq!(c.transport.buffered_plaintext(), pending_before);
    c.to_send = upload.clone();
    c.sent = sent;
    c.received = received;
    drive(&mut reactor, |r| r.get(token).unwrap().end.is_some());
    let c = reactor.get(token).unwrap();
    assert!(matches!(c.end, Some(End::PeerClosed)), "{:?}", c.end);
    assert_eq!(c.received.len(), blob.len(), "all of the blob arrives");
    assert!(c.received == blob, "blob corrupted");
    reactor.get_mut(token).unwrap().transport.close().unwrap();
    assert!(server.join().unwrap() == upload, "upload corrupted");
}
