//! Writes against a peer that stops reading: the outgoing queue fills, `write_plaintext` takes
//! less (never drops), and everything arrives once the peer reads again.

mod transport_support;

use spinwire_engine::sys;
use spinwire_engine::transport::Security;
use transport_support::*;

fn backpressure(tls: bool) {
    let pki = Pki::new("test CA");
    let client_config = pki.client_config();
    let len = 4 * 1024 * 1024;
    let server_config = tls.then(|| pki.server_config(&["localhost"]));
    let (addr, go, server) = stalled_reader(server_config, len);
    let security = if tls {
        Security::Tls {
            config: &client_config,
            host: "localhost",
        }
    } else {
        Security::Plain
    };
    let mut reactor = reactor(blocking());
    let token = add_client(&mut reactor, addr, security, payload(len, 3), 4096);
    // A fixed kernel send buffer (no auto-tuning up to megabytes) so the socket fills long
    // before 4 MiB. Not much smaller: with loopback's 64 KiB segments, a one-segment buffer
    // waits on the peer's delayed ACKs and the transfer crawls.
    let sock = reactor.get(token).unwrap().transport.socket();
    let set = sys::set_send_buffer(sock, 256 * 1024).unwrap();
    assert!(set >= 256 * 1024, "kernel set SO_SNDBUF to {set}");

    drive(&mut reactor, |r| {
        let c = r.get(token).unwrap();
        c.end.is_some() || c.write_refusals > 0
    });
    let c = reactor.get(token).unwrap();
    assert!(c.end.is_none(), "{:?}", c.end);
    assert!(c.sent < len, "everything fit; no back-pressure seen");
    assert!(c.transport.wants_write(), "queue full must mean bytes wait");
    assert!(c.transport.queued_out() > 0);

    go.send(()).unwrap();
    drive(&mut reactor, |r| {
        let c = r.get(token).unwrap();
        c.end.is_some() || (c.sent == len && !c.transport.wants_write())
    });
    let c = reactor.get(token).unwrap();
    // The peer closes once it has read everything: seeing that close before the last turn's
    // bookkeeping is fine, as long as every byte had been handed to the socket.
    assert!(
        c.end.is_none() || c.sent == len,
        "{:?} after {} bytes",
        c.end,
        c.sent
    );
    let got = server.join().unwrap();
    assert!(
        got == c.to_send,
        "bytes lost or reordered under back-pressure"
    );
}

#[test]
fn tls_write_queue_fills_then_drains_without_losing_bytes() {
    backpressure(true);
}

#[test]
fn plain_write_queue_fills_then_drains_without_losing_bytes() {
    backpressure(false);
}
