//! The in-place TLS record layer against hostile or unusual servers: a rustls server finishes
//! the handshake, hands its traffic keys over to the test, and the test then seals hand-made
//! records (empty floods, warning alerts, padded plaintext, wrong versions, KeyUpdates...) and
//! decrypts what the client sends back (its alerts, or the absence of anything after its
//! close_notify). Also: records split at every byte, and application data in the same read as
//! the handshake's last record.

mod transport_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::{
    AlertDescription, ConnectionTrafficSecrets, InvalidMessage, PeerMisbehaved, ProtocolVersion,
    ServerConfig, ServerConnection, StreamOwned, SupportedProtocolVersion,
};
use spinwire_engine::transport::{
    CloseStatus, Flush, Handshake, ReadStatus, Security, TlsConfig, Transport, TransportError,
    TransportOptions,
};
use transport_support::{wait_for_unread_bytes, Pki, DEADLINE};

const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// Content types on the wire.
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APP_DATA: u8 = 23;

/// One direction's record protection, as the server sees it (keys from rustls).
struct Dir {
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
    /// TLS 1.2 AES-GCM: explicit nonce in the record.
    gcm12: bool,
    tls12: bool,
}

impl Dir {
    fn new(seq: u64, secrets: ConnectionTrafficSecrets, tls12: bool) -> Dir {
        let (alg, key, iv, gcm) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv, true),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv, true),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv, false)
            }
            _ => panic!("unexpected cipher suite"),
        };
        Dir {
            key: LessSafeKey::new(UnboundKey::new(alg, key.as_ref()).unwrap()),
            iv: iv.as_ref().try_into().unwrap(),
            seq,
            gcm12: gcm && tls12,
            tls12,
        }
    }

    fn nonce(&self) -> [u8; 12] {
        let mut n = self.iv;
        for (a, b) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *a ^= b;
        }
        n
    }

    /// A TLS 1.3 record whose inner plaintext is `inner` (content ‖ type ‖ padding).
    fn seal13(&mut self, inner: &[u8]) -> Vec<u8> {
        let len = inner.len() + 16;
        let mut rec = vec![APP_DATA, 3, 3, (len >> 8) as u8, len as u8];
        let hdr: [u8; 5] = rec[..5].try_into().unwrap();
        let mut body = inner.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(self.nonce()),
                Aad::from(hdr),
                &mut body,
            )
            .unwrap();
        self.seq += 1;
        rec.extend_from_slice(&body);
        rec
    }

    /// A TLS 1.2 record of type `typ` with header (and AAD) version `ver`.
    fn seal12(&mut self, typ: u8, ver: [u8; 2], plain: &[u8]) -> Vec<u8> {
        let mut aad = [0u8; 13];
        aad[..8].copy_from_slice(&self.seq.to_be_bytes());
        aad[8] = typ;
        aad[9..11].copy_from_slice(&ver);
        aad[11..].copy_from_slice(&(plain.len() as u16).to_be_bytes());
        let nonce = self.nonce();
        let mut explicit = Vec::new();
        if self.gcm12 {
            explicit.extend_from_slice(&nonce[4..]);
        }
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .unwrap();
        self.seq += 1;
        let len = explicit.len() + body.len();
        let mut rec = vec![typ, ver[0], ver[1], (len >> 8) as u8, len as u8];
        rec.extend_from_slice(&explicit);
        rec.extend_from_slice(&body);
        rec
    }

    /// A record of the connection's version carrying `plain` of type `typ`.
    fn seal(&mut self, typ: u8, plain: &[u8]) -> Vec<u8> {
        if self.tls12 {
            self.seal12(typ, [3, 3], plain)
        } else {
            let mut inner = plain.to_vec();
            inner.push(typ);
            self.seal13(&inner)
        }
    }

    /// Opens one whole record; `None` if it does not authenticate.
    fn open(&mut self, rec: &[u8]) -> Option<(u8, Vec<u8>)> {
        let hdr: [u8; 5] = rec[..5].try_into().unwrap();
        if self.tls12 {
            let (nonce, body) = if self.gcm12 {
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(&self.iv[..4]);
                nonce[4..].copy_from_slice(&rec[5..13]);
                (nonce, &rec[13..])
            } else {
                (self.nonce(), &rec[5..])
            };
            let mut aad = [0u8; 13];
            aad[..8].copy_from_slice(&self.seq.to_be_bytes());
            aad[8..11].copy_from_slice(&hdr[..3]);
            aad[11..].copy_from_slice(&((body.len() - 16) as u16).to_be_bytes());
            let mut body = body.to_vec();
            let plain = self
                .key
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    &mut body,
                )
                .ok()?
                .to_vec();
            self.seq += 1;
            Some((hdr[0], plain))
        } else {
            let mut body = rec[5..].to_vec();
            let plain = self
                .key
                .open_in_place(
                    Nonce::assume_unique_for_key(self.nonce()),
                    Aad::from(hdr),
                    &mut body,
                )
                .ok()?;
            self.seq += 1;
            let at = plain.iter().rposition(|&b| b != 0)?;
            Some((plain[at], plain[..at].to_vec()))
        }
    }
}

/// What the client sent after the handshake, record by record (`None`: did not decrypt).
type Sent = Vec<Option<(u8, Vec<u8>)>>;

/// Reads everything the client sends until EOF (or the socket timeout) and opens each record.
fn client_sent(sock: &mut TcpStream, rx: &mut Dir) -> Sent {
    let mut all = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    let mut records = Vec::new();
    let mut at = 0;
    while at + 5 <= all.len() {
        let len = usize::from(u16::from_be_bytes([all[at + 3], all[at + 4]]));
        if at + 5 + len > all.len() {
            break;
        }
        records.push(rx.open(&all[at..at + 5 + len]));
        at += 5 + len;
    }
    records
}

/// The alerts among what the client sent: `(level, description)`.
fn alerts(sent: &Sent) -> Vec<(u8, u8)> {
    sent.iter()
        .flatten()
        .filter(|(typ, body)| *typ == ALERT && body.len() == 2)
        .map(|(_, body)| (body[0], body[1]))
        .collect()
}

/// A server config (certificate for `localhost`) that lets the test take the traffic keys.
fn extractable(pki: &Pki, versions: &[&'static SupportedProtocolVersion]) -> Arc<ServerConfig> {
    let config = pki.server_config_versions(&["localhost"], versions);
    let mut config = Arc::try_unwrap(config).ok().unwrap();
    config.enable_secret_extraction = true;
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

fn connect(addr: SocketAddr, client: &TlsConfig, options: TransportOptions) -> Transport {
    let mut t = Transport::connect(
        addr,
        Security::Tls {
            config: client,
            host: "localhost",
        },
        options,
    )
    .unwrap();
    let start = Instant::now();
    while t.handshake().unwrap() != Handshake::Done {
        assert!(start.elapsed() < DEADLINE, "handshake timed out");
        thread::sleep(Duration::from_micros(100));
    }
    t
}

/// How a client's reading ended.
#[derive(Debug)]
struct Outcome {
    data: Vec<u8>,
    end: Result<(), TransportError>,
}

/// Reads until an error or a clean close (`Ok(())`).
fn read_to_end(t: &mut Transport) -> Outcome {
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE, "client read timed out");
        match t.read_plaintext(&mut buf) {
            Ok(ReadStatus::PeerClosed { read }) => {
                data.extend_from_slice(&buf[..read]);
                return Outcome { data, end: Ok(()) };
            }
            Ok(status) => {
                data.extend_from_slice(&buf[..status.read()]);
                if matches!(status, ReadStatus::Drained { .. }) {
                    thread::sleep(Duration::from_micros(200));
                }
            }
            Err(e) => return Outcome { data, end: Err(e) },
        }
    }
}

/// Runs a handshake with a rustls server, then lets `script` write hand-made records with the
/// server's keys (`tx`; `tls12` says which version was negotiated). The client reads until it
/// fails or sees close_notify, then closes; the server reports every record the client sent.
fn scenario<F>(versions: &[&'static SupportedProtocolVersion], script: F) -> (Outcome, Sent)
where
    F: FnOnce(&mut Dir) -> Vec<u8> + Send + 'static,
{
    let (pki, addr, server) = scripted_server(versions, script);
    let client = pki.client_config();
    let mut t = connect(addr, &client, TransportOptions::default());
    let outcome = read_to_end(&mut t);
    while t.close().unwrap() == CloseStatus::Pending {
        thread::sleep(Duration::from_micros(100));
    }
    drop(t);
    (outcome, server.join().unwrap())
}

/// A rustls server on loopback that, after the handshake, writes what `script` seals with its
/// keys, then returns every record the client sent until it closed.
fn scripted_server<F>(
    versions: &[&'static SupportedProtocolVersion],
    script: F,
) -> (Pki, SocketAddr, JoinHandle<Sent>)
where
    F: FnOnce(&mut Dir) -> Vec<u8> + Send + 'static,
{
    let pki = Pki::new("faults-ca");
    let config = extractable(&pki, versions);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        let (mut tx, mut rx) = server_handshake(config, &mut sock);
        let records = script(&mut tx);
        // The client may give up (and close) before reading everything.
        let _ = sock.write_all(&records);
        client_sent(&mut sock, &mut rx)
    });
    (pki, addr, server)
}

/// The blocking rustls server handshake; returns the server's (send, receive) directions.
fn server_handshake(config: Arc<ServerConfig>, sock: &mut TcpStream) -> (Dir, Dir) {
    let mut conn = ServerConnection::new(config).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(sock).unwrap();
    }
    while conn.wants_write() {
        conn.write_tls(sock).unwrap();
    }
    let tls12 = conn.protocol_version() == Some(ProtocolVersion::TLSv1_2);
    let secrets = conn.dangerous_extract_secrets().unwrap();
    (
        Dir::new(secrets.tx.0, secrets.tx.1, tls12),
        Dir::new(secrets.rx.0, secrets.rx.1, tls12),
    )
}

/// The rustls error inside a TLS transport error.
fn tls_error(outcome: &Outcome) -> &rustls::Error {
    match &outcome.end {
        Err(TransportError::Tls { source, .. }) => source,
        other => panic!(
            "expected a TLS error, got {other:?} after {:?}",
            outcome.data
        ),
    }
}

fn fatal(desc: AlertDescription) -> (u8, u8) {
    (2, desc.into())
}

// ---- D1: floods of records without application data ----

#[test]
fn tls13_more_than_32_empty_records_in_a_row_are_fatal_with_unexpected_message() {
    let (outcome, sent) = scenario(TLS13, |tx| {
        let mut w = Vec::new();
        // 32 empty records, data, 32 more, data: tolerated (data resets the count).
        for round in 0..2u8 {
            for _ in 0..32 {
                w.extend(tx.seal(APP_DATA, b""));
            }
            w.extend(tx.seal(APP_DATA, &[b'a' + round]));
        }
        for _ in 0..33 {
            w.extend(tx.seal(APP_DATA, b""));
        }
        w.extend(tx.seal(APP_DATA, b"never"));
        w
    });
    assert_eq!(outcome.data, b"ab");
    assert_eq!(
        tls_error(&outcome),
        &rustls::Error::PeerMisbehaved(PeerMisbehaved::TooManyEmptyFragments)
    );
    assert_eq!(alerts(&sent), [fatal(AlertDescription::UnexpectedMessage)]);
}

#[test]
fn tls13_a_flood_of_200k_empty_records_is_cut_off_at_the_33rd() {
    let (outcome, sent) = scenario(TLS13, |tx| {
        let mut w = Vec::new();
        for _ in 0..200_000 {
            w.extend(tx.seal(APP_DATA, b""));
        }
        w
    });
    assert_eq!(
        tls_error(&outcome),
        &rustls::Error::PeerMisbehaved(PeerMisbehaved::TooManyEmptyFragments)
    );
    assert_eq!(alerts(&sent), [fatal(AlertDescription::UnexpectedMessage)]);
}

#[test]
fn tls12_more_than_four_warning_alerts_are_fatal() {
    let (outcome, sent) = scenario(TLS12, |tx| {
        let mut w = Vec::new();
        for _ in 0..4 {
            w.extend(tx.seal(ALERT, &[1, AlertDescription::NoRenegotiation.into()]));
        }
        w.extend(tx.seal(APP_DATA, b"ok"));
        // The count is over the connection's life: data does not reset it.
        w.extend(tx.seal(ALERT, &[1, AlertDescription::NoRenegotiation.into()]));
        w.extend(tx.seal(APP_DATA, b"never"));
        w
    });
    assert_eq!(outcome.data, b"ok");
    assert_eq!(
        tls_error(&outcome),
        &rustls::Error::PeerMisbehaved(PeerMisbehaved::TooManyWarningAlertsReceived)
    );
    assert_eq!(alerts(&sent), [fatal(AlertDescription::UnexpectedMessage)]);
}

#[test]
fn tls12_a_second_hello_request_is_fatal() {
    let (outcome, sent) = scenario(TLS12, |tx| {
        let mut w = tx.seal(HANDSHAKE, &[0, 0, 0, 0]);
        w.extend(tx.seal(APP_DATA, b"ok"));
        w.extend(tx.seal(HANDSHAKE, &[0, 0, 0, 0]));
        w
    });
    assert_eq!(outcome.data, b"ok");
    assert_eq!(
        tls_error(&outcome),
        &rustls::Error::PeerMisbehaved(PeerMisbehaved::TooManyRenegotiationRequests)
    );
    assert_eq!(alerts(&sent), [fatal(AlertDescription::UnexpectedMessage)]);
}

/// A rustls server that sends `bursts` of KeyUpdate requests, each burst followed by one byte
/// of data, then close_notify. After each byte, the client sends one byte back, which the
/// server waits for (rustls, too, allows only 32 KeyUpdates without data in between: our
/// answers). Returns how the client's reading ended and how the server's did.
fn key_update_bursts(bursts: &'static [usize]) -> (Outcome, String) {
    let pki = Pki::new("faults-ca");
    let config = pki.server_config_versions(&["localhost"], TLS13);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut s = StreamOwned::new(ServerConnection::new(config).unwrap(), sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).unwrap();
        }
        for (i, &n) in bursts.iter().enumerate() {
            for _ in 0..n {
                s.conn.refresh_traffic_keys().unwrap();
            }
            s.write_all(&[b'0' + i as u8]).unwrap();
            s.flush().unwrap();
            let mut reply = [0u8; 1];
            if let Err(e) = s.read_exact(&mut reply) {
                return format!("Err({e})");
            }
        }
        s.conn.send_close_notify();
        s.flush().unwrap();
        let mut rest = Vec::new();
        format!("{:?}", s.read_to_end(&mut rest).map_err(|e| e.to_string()))
    });
    let client = pki.client_config();
    let mut t = connect(addr, &client, TransportOptions::default());
    let mut data = Vec::new();
    let mut buf = [0u8; 1024];
    let start = Instant::now();
    let end = loop {
        assert!(start.elapsed() < DEADLINE, "client read timed out");
        match t.read_plaintext(&mut buf) {
            Ok(status) => {
                data.extend_from_slice(&buf[..status.read()]);
                for _ in 0..status.read() {
                    assert_eq!(t.write_plaintext(b"x").unwrap(), 1);
                    t.flush().unwrap();
                }
                match status {
                    ReadStatus::PeerClosed { .. } => break Ok(()),
                    ReadStatus::Drained { .. } => thread::sleep(Duration::from_micros(200)),
                    ReadStatus::More { .. } => {}
                }
            }
            Err(e) => break Err(e),
        }
    };
    while t.close().unwrap() == CloseStatus::Pending {
        thread::sleep(Duration::from_micros(100));
    }
    drop(t);
    (Outcome { data, end }, server.join().unwrap())
}

#[test]
fn tls13_up_to_32_key_update_requests_between_data_are_answered() {
    let (outcome, server) = key_update_bursts(&[32, 32]);
    assert!(outcome.end.is_ok(), "{outcome:?}; server: {server}");
    assert_eq!(outcome.data, b"01");
    // The server read our 64 KeyUpdates and our close_notify.
    assert_eq!(server, "Ok(0)");
}

#[test]
fn tls13_more_than_32_key_update_requests_without_data_are_fatal() {
    let (outcome, server) = key_update_bursts(&[33, 1]);
    assert_eq!(
        tls_error(&outcome),
        &rustls::Error::PeerMisbehaved(PeerMisbehaved::TooManyKeyUpdateRequests)
    );
    assert!(server.contains("UnexpectedMessage"), "server saw {server}");
}

/// Sets `SO_SNDBUF` (which also stops the kernel from growing it).
fn set_send_buffer(sock: &mio::net::TcpStream, bytes: libc::c_int) {
    // SAFETY: SO_SNDBUF reads one c_int from the valid pointer and its given length; the fd is
    // open.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_SNDBUF: {}", std::io::Error::last_os_error());
}

#[test]
fn one_read_opens_at_most_64_records_and_says_more_until_all_buffered_records_are_read() {
    const RECORDS: usize = 1000;
    let pki = Pki::new("faults-ca");
    let config = extractable(&pki, TLS13);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (sent_tx, sent_rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        let (mut tx, mut rx) = server_handshake(config, &mut sock);
        let mut w = Vec::new();
        for i in 0..RECORDS {
            w.extend(tx.seal(APP_DATA, &[i as u8]));
        }
        sock.write_all(&w).unwrap();
        sent_tx.send(w.len()).unwrap();
        client_sent(&mut sock, &mut rx)
    });
    let client = pki.client_config();
    let mut t = connect(addr, &client, TransportOptions::default());
    // Edge-triggered readiness, as the reactor registers it.
    let mut poll = mio::Poll::new().unwrap();
    let mut events = mio::Events::with_capacity(8);
    t.register(poll.registry(), mio::Token(0)).unwrap();
    let bytes = sent_rx.recv().unwrap();
    wait_for_unread_bytes(t.socket(), bytes);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let first = t.read_plaintext(&mut buf).unwrap();
    assert_eq!(
        first,
        ReadStatus::More { read: 64 },
        "the first call's share"
    );
    got.extend_from_slice(&buf[..64]);
    let mut calls = 1;
    // The contract: after `More`, call again without waiting for an event.
    loop {
        let status = t.read_plaintext(&mut buf).unwrap();
        calls += 1;
        got.extend_from_slice(&buf[..status.read()]);
        assert!(status.read() <= 64);
        if let ReadStatus::Drained { .. } = status {
            break;
        }
    }
    assert!(calls >= RECORDS / 64, "{calls} calls");
    let expected: Vec<u8> = (0..RECORDS).map(|i| i as u8).collect();
    assert_eq!(got, expected);
    // And nothing was left behind waiting for an event that will not come.
    poll.poll(&mut events, Some(Duration::from_millis(20)))
        .unwrap();
    assert_eq!(
        t.read_plaintext(&mut buf).unwrap(),
        ReadStatus::Drained { read: 0 }
    );
    t.deregister(poll.registry()).unwrap();
    while t.close().unwrap() == CloseStatus::Pending {
        thread::sleep(Duration::from_micros(100));
    }
    drop(t);
    let sent = server.join().unwrap();
    assert_eq!(sent.len(), 1, "only close_notify: {sent:?}");
    assert_eq!(alerts(&sent), [(1, AlertDescription::CloseNotify.into())]);
}

// ---- D2: user_canceled ----

#[test]
fn tls12_fatal_user_canceled_ends_the_connection() {
    let (outcome, sent) = scenario(TLS12, |tx| {
        let mut w = tx.seal(ALERT, &[2, AlertDescription::UserCanceled.into()]);
        w.extend(tx.seal(APP_DATA, b"still-here"));
        w.extend(tx.seal(ALERT, &[1, 0]));
        w
    });
    assert_eq!(outcome.data, b"");
    assert_eq!(
        tls_error(&outcome),
        &rustls::Error::AlertReceived(AlertDescription::UserCanceled)
    );
    // The server's alert was fatal: nothing is said back.
    assert_eq!(alerts(&sent), []);
}

#[test]
fn tls13_fatal_user_canceled_ends_the_connection() {
    let (outcome, _) = scenario(TLS13, |tx| {
        let mut w = tx.seal(ALERT, &[2, AlertDescription::UserCanceled.into()]);
        w.extend(tx.seal(APP_DATA, b"still-here"));
        w
    });
    assert_eq!(
        tls_error(&outcome),
        &rustls::Error::AlertReceived(AlertDescription::UserCanceled)
    );
}

#[test]
fn warning_user_canceled_is_ignored_in_both_versions() {
    for versions in [TLS12, TLS13] {
        let (outcome, sent) = scenario(versions, |tx| {
            let mut w = tx.seal(ALERT, &[1, AlertDescription::UserCanceled.into()]);
            w.extend(tx.seal(APP_DATA, b"still-here"));
            w.extend(tx.seal(ALERT, &[1, AlertDescription::CloseNotify.into()]));
            w
        });
        assert!(outcome.end.is_ok(), "{versions:?}: {outcome:?}");
        assert_eq!(outcome.data, b"still-here");
        assert_eq!(alerts(&sent), [(1, AlertDescription::CloseNotify.into())]);
    }
}

// ---- D3: TLS 1.3 inner plaintext limit ----

#[test]
fn tls13_inner_plaintext_over_2_14_plus_1_bytes_is_record_overflow_even_as_padding() {
    let (outcome, sent) = scenario(TLS13, |tx| {
        // Exactly 2^14 + 1 (content + type): fine.
        let mut inner = vec![b'a'; 16384];
        inner.push(APP_DATA);
        let mut w = tx.seal13(&inner);
        // 2^14 content + type + 239 bytes of padding: over the limit before unpadding.
        inner.extend(std::iter::repeat_n(0, 239));
        w.extend(tx.seal13(&inner));
        w
    });
    assert_eq!(outcome.data, vec![b'a'; 16384]);
    assert_eq!(tls_error(&outcome), &rustls::Error::PeerSentOversizedRecord);
    assert_eq!(alerts(&sent), [fatal(AlertDescription::RecordOverflow)]);
}

// ---- D4: alert descriptions ----

#[test]
fn tls13_all_zero_inner_plaintext_is_answered_with_unexpected_message() {
    let (outcome, sent) = scenario(TLS13, |tx| {
        let mut w = tx.seal13(b"ok\x17");
        w.extend(tx.seal13(&[0u8; 10]));
        w
    });
    assert_eq!(outcome.data, b"ok");
    assert_eq!(
        tls_error(&outcome),
        &rustls::Error::PeerMisbehaved(PeerMisbehaved::IllegalTlsInnerPlaintext)
    );
    assert_eq!(alerts(&sent), [fatal(AlertDescription::UnexpectedMessage)]);
}

#[test]
fn tls13_key_update_not_ending_its_record_is_answered_with_unexpected_message() {
    let (outcome, sent) = scenario(TLS13, |tx| {
        // KeyUpdate(update_not_requested) followed by a NewSessionTicket header in one record.
        tx.seal(HANDSHAKE, &[24, 0, 0, 1, 0, 4, 0, 0, 0])
    });
    assert_eq!(
        tls_error(&outcome),
        &rustls::Error::PeerMisbehaved(PeerMisbehaved::KeyEpochWithPendingFragment)
    );
    assert_eq!(alerts(&sent), [fatal(AlertDescription::UnexpectedMessage)]);
}

#[test]
fn tls13_key_update_value_2_is_answered_with_illegal_parameter() {
    let (outcome, sent) = scenario(TLS13, |tx| tx.seal(HANDSHAKE, &[24, 0, 0, 1, 2]));
    assert_eq!(
        tls_error(&outcome),
        &rustls::Error::InvalidMessage(InvalidMessage::InvalidKeyUpdate)
    );
    assert_eq!(alerts(&sent), [fatal(AlertDescription::IllegalParameter)]);
}

#[test]
fn tls13_warning_alert_is_fatal_and_answered_with_decode_error() {
    let (outcome, sent) = scenario(TLS13, |tx| {
        let mut w = tx.seal(ALERT, &[1, AlertDescription::UnsupportedExtension.into()]);
        w.extend(tx.seal(APP_DATA, b"never"));
        w
    });
    assert_eq!(outcome.data, b"");
    assert_eq!(
        tls_error(&outcome),
        &rustls::Error::AlertReceived(AlertDescription::UnsupportedExtension)
    );
    assert_eq!(alerts(&sent), [fatal(AlertDescription::DecodeError)]);
}

#[test]
fn tls12_warning_alerts_other_than_close_notify_are_ignored() {
    let (outcome, sent) = scenario(TLS12, |tx| {
        let mut w = tx.seal(ALERT, &[1, AlertDescription::NoRenegotiation.into()]);
        w.extend(tx.seal(APP_DATA, b"hello12"));
        w.extend(tx.seal(ALERT, &[1, 0]));
        w
    });
    assert!(outcome.end.is_ok(), "{outcome:?}");
    assert_eq!(outcome.data, b"hello12");
    assert_eq!(alerts(&sent), [(1, AlertDescription::CloseNotify.into())]);
}

// ---- D6: TLS 1.2 record version ----

#[test]
fn tls12_record_with_version_other_than_0303_is_refused_as_protocol_version() {
    let (outcome, sent) = scenario(TLS12, |tx| {
        let mut w = tx.seal12(APP_DATA, [3, 3], b"fine");
        // Header and AAD both say 0x0301: authentic, but not the negotiated version.
        w.extend(tx.seal12(APP_DATA, [3, 1], b"hello12"));
        w
    });
    assert_eq!(outcome.data, b"fine");
    assert_eq!(
        tls_error(&outcome),
        &rustls::Error::InvalidMessage(InvalidMessage::UnknownProtocolVersion)
    );
    assert_eq!(alerts(&sent), [fatal(AlertDescription::ProtocolVersion)]);
}

// ---- Minor: post-handshake message split across records ----

#[test]
fn tls13_post_handshake_message_split_across_records_is_refused_as_such() {
    let (outcome, sent) = scenario(TLS13, |tx| {
        // A 20-byte NewSessionTicket body: 2 bytes in the first record, 18 in the second.
        let mut w = tx.seal(HANDSHAKE, &[4, 0, 0, 20, 0, 0]);
        w.extend(tx.seal(HANDSHAKE, &[0u8; 18]));
        w
    });
    let error = tls_error(&outcome);
    assert!(
        matches!(error, rustls::Error::General(text) if text.contains("split across records")),
        "{error:?}"
    );
    assert_eq!(alerts(&sent), [fatal(AlertDescription::InternalError)]);
}

// ---- D5: nothing after our close_notify ----

/// The client fills its outgoing queue and the socket (the server does not read yet) and
/// calls `close`, which stays pending with close_notify queued. The server then sends
/// `records` (sealed by `script`) and starts reading. The client reads once the server's
/// records are in, then calls `close` until done (if the read did not fail). Returns the
/// read's result and what the client sent from its close_notify on.
fn close_while_stalled<F>(script: F) -> (Result<ReadStatus, TransportError>, Sent)
where
    F: FnOnce(&mut Dir) -> Vec<u8> + Send + 'static,
{
    let pki = Pki::new("faults-ca");
    let config = extractable(&pki, TLS13);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (sent_tx, sent_rx) = mpsc::channel::<usize>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let server: JoinHandle<Sent> = thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        let (mut tx, mut rx) = server_handshake(config, &mut sock);
        // rustls must not read the client's first records into its own buffer.
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let records = script(&mut tx);
        sock.write_all(&records).unwrap();
        sent_tx.send(records.len()).unwrap();
        let sent = client_sent(&mut sock, &mut rx);
        // Only what follows the client's close_notify.
        let at = sent
            .iter()
            .position(|r| matches!(r, Some((ALERT, body)) if body[..] == [1, 0]))
            .unwrap_or_else(|| {
                let summary: Vec<_> = sent
                    .iter()
                    .rev()
                    .take(4)
                    .map(|r| r.as_ref().map(|(t, b)| (*t, b.len())))
                    .collect();
                panic!(
                    "no close_notify among {} records; last: {summary:?}",
                    sent.len()
                )
            });
        sent[at..].to_vec()
    });
    let client = pki.client_config();
    // The smallest outgoing queue: what it holds is sure to fit the socket once drained.
    let options = TransportOptions {
        out_capacity: 0,
        ..TransportOptions::default()
    };
    let mut t = connect(addr, &client, options);
    ready_rx.recv().unwrap();
    set_send_buffer(t.socket(), 4096);
    let chunk = vec![0x5a; 16 * 1024];
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE, "the socket never filled");
        if t.write_plaintext(&chunk).unwrap() == 0 && t.flush().unwrap() == Flush::Pending {
            // Full for now; full for good once the receiver's window stopped growing.
            let queued = t.queued_out();
            thread::sleep(Duration::from_millis(50));
            if t.flush().unwrap() == Flush::Pending && t.queued_out() == queued {
                break;
            }
        }
    }
    assert_eq!(t.close().unwrap(), CloseStatus::Pending);
    go_tx.send(()).unwrap();
    let bytes = sent_rx.recv().unwrap();
    wait_for_unread_bytes(t.socket(), bytes);
    // Let the server drain the kernel's buffers, so that anything the client queues now
    // would reach it.
    thread::sleep(Duration::from_millis(300));
    let mut buf = vec![0u8; 1024];
    let read = t.read_plaintext(&mut buf);
    if read.is_ok() {
        let start = Instant::now();
        while t.close().unwrap() == CloseStatus::Pending {
            assert!(start.elapsed() < DEADLINE, "close never finished");
            thread::sleep(Duration::from_micros(100));
        }
    } else {
        let _ = t.close();
    }
    drop(t);
    (read, server.join().unwrap())
}

#[test]
fn key_update_request_after_close_is_not_answered_while_closing() {
    let (read, after_close) = close_while_stalled(|tx| tx.seal(HANDSHAKE, &[24, 0, 0, 1, 1]));
    assert_eq!(read.unwrap(), ReadStatus::Drained { read: 0 });
    assert_eq!(
        after_close,
        [Some((ALERT, vec![1, 0]))],
        "nothing may follow close_notify"
    );
}

#[test]
fn a_failure_after_close_sends_no_alert_after_close_notify() {
    let (read, after_close) = close_while_stalled(|tx| {
        let mut w = tx.seal(HANDSHAKE, &[24, 0, 0, 1, 1]);
        // Sealed under the old key: the client, now on the next one, cannot open it.
        w.extend(tx.seal(APP_DATA, b"stale"));
        w
    });
    assert!(
        matches!(
            read,
            Err(TransportError::Tls {
                source: rustls::Error::DecryptError,
                ..
            })
        ),
        "{read:?}"
    );
    assert_eq!(
        after_close,
        [Some((ALERT, vec![1, 0]))],
        "nothing may follow close_notify"
    );
}

#[test]
fn key_update_request_after_close_completed_renews_keys_and_data_still_arrives() {
    let pki = Pki::new("faults-ca");
    let config = pki.server_config_versions(&["localhost"], TLS13);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut s = StreamOwned::new(ServerConnection::new(config).unwrap(), sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).unwrap();
        }
        // Wait for the client's close_notify, then ask for a key update and keep talking.
        let mut rest = Vec::new();
        let closed = s.read_to_end(&mut rest).map_err(|e| e.to_string());
        s.conn.refresh_traffic_keys().unwrap();
        s.write_all(b"after").unwrap();
        s.conn.send_close_notify();
        s.flush().unwrap();
        closed
    });
    let client = pki.client_config();
    let mut t = connect(addr, &client, TransportOptions::default());
    let start = Instant::now();
    while t.close().unwrap() == CloseStatus::Pending {
        assert!(start.elapsed() < DEADLINE);
        thread::sleep(Duration::from_micros(100));
    }
    let outcome = read_to_end(&mut t);
    assert_eq!(server.join().unwrap(), Ok(0));
    assert!(outcome.end.is_ok(), "{outcome:?}");
    assert_eq!(outcome.data, b"after");
}

// ---- Records split at every byte; data in the handshake's last read ----

/// A rustls server that queues `blob` before the handshake (so it follows the server's last
/// handshake record at once: TLS 1.3 half-RTT data, TLS 1.2 data right after Finished), then
/// close_notify; with `bytewise`, a proxy forwards the server's bytes one at a time.
fn data_with_the_handshake(versions: &[&'static SupportedProtocolVersion], bytewise: bool) {
    let pki = Pki::new("faults-ca");
    let config = pki.server_config_versions(&["localhost"], versions);
    let mut config = Arc::try_unwrap(config).ok().unwrap();
    config.send_half_rtt_data = true;
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr = listener.local_addr().unwrap();
    let blob: Vec<u8> = (0..3000u32).map(|i| (i * 13 + i / 7) as u8).collect();
    let sent = blob.clone();
    let server = thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        sock.set_nodelay(true).unwrap();
        let mut conn = ServerConnection::new(config).unwrap();
        for chunk in sent.chunks(100) {
            conn.writer().write_all(chunk).unwrap();
        }
        let mut s = StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).unwrap();
        }
        s.conn.send_close_notify();
        s.flush().unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).map_err(|e| e.to_string())
    });
    let addr = if bytewise {
        let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        thread::spawn(move || {
            let (client, _) = proxy.accept().unwrap();
            client.set_nodelay(true).unwrap();
            let server = TcpStream::connect(server_addr).unwrap();
            server.set_nodelay(true).unwrap();
            server.set_read_timeout(Some(DEADLINE)).unwrap();
            let (mut up_from, mut up_to) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || {
                let _ = std::io::copy(&mut up_from, &mut up_to);
                let _ = up_to.shutdown(std::net::Shutdown::Write);
            });
            let (mut down_from, mut down_to) = (server, client);
            let mut byte = [0u8; 1];
            while let Ok(1) = down_from.read(&mut byte) {
                if down_to.write_all(&byte).is_err() {
                    break;
                }
                // Give the client time to read each byte on its own.
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(100) {}
            }
            let _ = down_to.shutdown(std::net::Shutdown::Write);
        });
        proxy_addr
    } else {
        server_addr
    };
    let client = pki.client_config();
    let mut t = connect(addr, &client, TransportOptions::default());
    let outcome = read_to_end(&mut t);
    let start = Instant::now();
    while t.close().unwrap() == CloseStatus::Pending {
        assert!(start.elapsed() < DEADLINE);
        thread::sleep(Duration::from_micros(100));
    }
    drop(t);
    assert!(
        outcome.end.is_ok(),
        "{versions:?} bytewise={bytewise}: {outcome:?}"
    );
    assert!(
        outcome.data == blob,
        "{versions:?} bytewise={bytewise}: data differs"
    );
    assert_eq!(server.join().unwrap(), Ok(0));
}

#[test]
fn tls13_half_rtt_data_in_the_handshakes_last_read_is_delivered() {
    data_with_the_handshake(TLS13, false);
}

#[test]
fn tls12_data_right_after_finished_is_delivered() {
    data_with_the_handshake(TLS12, false);
}

#[test]
fn tls13_records_split_at_every_byte_are_delivered() {
    data_with_the_handshake(TLS13, true);
}

#[test]
fn tls12_records_split_at_every_byte_are_delivered() {
    data_with_the_handshake(TLS12, true);
}

// ---- a fatal receive error held back behind delivered data blocks writes at once ----

/// The server sends a good record and a forged one in one write; the client reads (the good
/// data arrives, the failure is held back behind it), then tries to send an order. Returns
/// what the client's read, write and flush said, and every record the server got.
fn write_after_a_bad_record_held_back(
    versions: &'static [&'static SupportedProtocolVersion],
) -> (ReadStatus, Result<usize, TransportError>, Sent) {
    let (pki, addr, server) = scripted_server(versions, |tx| {
        let mut records = tx.seal(APP_DATA, b"fill: 10 @ 60000");
        let mut forged = tx.seal(APP_DATA, b"a record whose tag does not verify");
        let last = forged.len() - 1;
        forged[last] ^= 0x40;
        records.extend_from_slice(&forged);
        records
    });
    let client = pki.client_config();
    let mut t = connect(addr, &client, TransportOptions::default());
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let status = loop {
        assert!(start.elapsed() < DEADLINE, "client read timed out");
        match t.read_plaintext(&mut buf) {
            Ok(s) if s.read() > 0 => break s,
            Ok(_) => thread::sleep(Duration::from_micros(200)),
            Err(e) => panic!("the good record's data must come first: {e}"),
        }
    };
    assert_eq!(&buf[..status.read()], b"fill: 10 @ 60000");
    // The strategy reacts to the fill with an order: it must not leave.
    let written = t.write_plaintext(b"private/buy BTC-PERPETUAL 10");
    let _ = t.flush();
    let _ = t.close();
    drop(t);
    (status, written, server.join().unwrap())
}

#[test]
fn no_order_leaves_after_a_bad_record_held_back_behind_good_data() {
    for versions in [TLS13, TLS12] {
        let (_status, written, sent) = write_after_a_bad_record_held_back(versions);
        match &written {
            Err(TransportError::Tls { .. }) => {}
            other => panic!(
                "{versions:?}: the write must fail with the held-back TLS error, got {other:?}"
            ),
        }
        assert!(
            !sent.iter().flatten().any(
                |(typ, body)| *typ == APP_DATA && body.windows(11).any(|w| w == b"private/buy")
            ),
            "{versions:?}: the order reached the server: {sent:?}"
        );
        assert!(
            alerts(&sent).contains(&fatal(AlertDescription::BadRecordMac)),
            "{versions:?}: the server is told why: {sent:?}"
        );
    }
}
