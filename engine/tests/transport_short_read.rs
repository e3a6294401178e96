//! A short socket read ends a read as drained (one system call less per wake-up), unless the
//! readiness event said the peer closed: then the read goes on to the end of the stream, so a
//! FIN that came with the last data is never missed.

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

use mio::{Events, Poll, Token};
use spinwire_engine::transport::{Handshake, ReadStatus, Security, Transport, TransportOptions};

/// A client transport whose peer sent `data` and then FIN, both already in its receive queue;
/// returns it with the readiness event's read-closed flag.
fn client_after_data_and_fin(data: &'static [u8]) -> (Transport, bool) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(data).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // Keep the socket open until the client has read: FIN only, no reset.
        std::thread::sleep(Duration::from_millis(300));
    });
    let mut t = Transport::connect(addr, Security::Plain, TransportOptions::default()).unwrap();
    let mut poll = Poll::new().unwrap();
    t.register(poll.registry(), Token(0)).unwrap();
    let mut events = Events::with_capacity(8);
    let mut read_closed = false;
    let mut open = false;
    // Connected, then both the data and the FIN are queued before the read.
    while !open {
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        open = matches!(t.handshake().unwrap(), Handshake::Done);
    }
    std::thread::sleep(Duration::from_millis(100));
    poll.poll(&mut events, Some(Duration::from_millis(100)))
        .unwrap();
    for e in events.iter() {
        read_closed |= e.is_read_closed();
    }
    drop(server);
    (t, read_closed)
}

#[test]
fn a_short_read_ends_the_read_and_a_reported_fin_is_read_to_the_end() {
    // The loop passes the event's FIN flag on: data and the end of the stream in one read.
    let (mut t, read_closed) = client_after_data_and_fin(b"last words");
    assert!(read_closed, "the readiness event reports the FIN");
    t.set_short_read_drains(true);
    t.note_read_closed();
    let mut buf = [0u8; 4096];
    let status = t.read_plaintext(&mut buf).unwrap();
    assert_eq!(status, ReadStatus::PeerClosed { read: 10 });
    assert_eq!(&buf[..10], b"last words");

    // Without the flag passed on, the short read alone ends the read: the FIN behind it is
    // not looked for (this is why the flag must be passed on), and nothing else is read.
    let (mut t, _) = client_after_data_and_fin(b"last words");
    t.set_short_read_drains(true);
    let status = t.read_plaintext(&mut buf).unwrap();
    assert_eq!(status, ReadStatus::Drained { read: 10 });
    // The next read sees the FIN.
    assert_eq!(
        t.read_plaintext(&mut buf).unwrap(),
        ReadStatus::PeerClosed { read: 0 }
    );

    // Off (the default): read until the socket says end of stream or `WouldBlock`.
    let (mut t, _) = client_after_data_and_fin(b"last words");
    let status = t.read_plaintext(&mut buf).unwrap();
    assert_eq!(status, ReadStatus::PeerClosed { read: 10 });
}
