//! [`Transport`]: a non-blocking TCP connection, optionally TLS: rustls' unbuffered client for the
//! handshake, then records protected in place by `record.rs` with the keys rustls hands over.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::pki_types::ServerName;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{AlertDescription, HandshakeType, SupportedCipherSuite};
use socket2::{Domain, Protocol, Socket, Type};

use super::buf::ByteQueue;
use super::error::TransportError;
use super::record::{
    self, Fatal, Header, Keys, Opened, Version, ALERT, APPLICATION_DATA, HANDSHAKE, HEADER_LEN,
    MAX_PLAINTEXT,
};
use super::tls::TlsConfig;
use crate::sys;

/// Upper bound on what TLS adds to one record with the ring suites rustls offers: 5 header
/// bytes, 8 explicit-nonce bytes (TLS 1.2 AES-GCM), 16 tag bytes, 1 inner content type (TLS 1.3).
const MAX_RECORD_OVERHEAD: usize = 32;
/// Largest record rustls accepts on the wire (payload limit plus header).
const MAX_WIRE_RECORD: usize = MAX_PLAINTEXT + 2048 + 5;
/// Records [`Transport::read_plaintext`] opens at most per call before it returns
/// [`ReadStatus::More`], so that a peer streaming records (empty ones, control records, or data
/// into a large `dst`) cannot keep one call, and the other sessions of the engine thread,
/// waiting: 64 full records are 1 MiB of plaintext.
const RECORDS_PER_READ: usize = 64;
/// Consecutive empty application-data records tolerated (rustls'
/// `ALLOWED_CONSECUTIVE_EMPTY_FRAGMENTS_MAX`, BoringSSL's `kMaxEmptyRecords`); one more is fatal.
const MAX_EMPTY_RECORDS: u8 = 32;
/// Consecutive records without application data of any kind (empty records, ignored alerts,
/// session tickets, KeyUpdates, HelloRequests) tolerated; one more is fatal. Twice the empty
/// record limit, so that the specific limits below are met first.
const MAX_IDLE_RECORDS: u8 = 64;
/// Warning alerts tolerated over the connection's life (rustls, BoringSSL's
/// `kMaxWarningAlerts`); one more is fatal.
const MAX_WARNING_ALERTS: u8 = 4;
/// KeyUpdates tolerated without application data in between, requesting ours or not (rustls
/// counts both kinds, like BoringSSL's `kMaxKeyUpdates`); one more is fatal.
const MAX_KEY_UPDATES: u8 = 32;
/// TLS 1.2 HelloRequests tolerated over the connection's life (ignored: no renegotiation;
/// rustls allows one too); one more is fatal.
const MAX_HELLO_REQUESTS: u8 = 1;
/// Outgoing space application data never uses, kept for the small records rustls may have to
/// send at any time (close_notify, a KeyUpdate answer, a fatal alert), so encoding them cannot
/// fail for want of room.
const CONTROL_RESERVE: usize = 1024;
/// Smallest outgoing buffer: one full record plus the control reserve.
const MIN_OUT_CAPACITY: usize = MAX_PLAINTEXT + MAX_RECORD_OVERHEAD + CONTROL_RESERVE;

/// Buffer sizes of a [`Transport`]. All buffers are allocated once, in [`Transport::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportOptions {
    /// Bytes queued for the socket (TLS records, or plaintext in plain mode). When full,
    /// [`Transport::write_plaintext`] accepts less and [`Transport::flush`] must make room.
    /// Raised to at least one full TLS record plus a small control reserve (17.4 KiB).
    pub out_capacity: usize,
    /// TLS only: ciphertext read from the socket and not yet decrypted (records are decrypted in
    /// place here, and their plaintext is read from here). Must hold the largest handshake
    /// message the server sends (certificate chains; rustls caps them at 64 KiB) plus one
    /// record; raised to at least one maximum-size record (18 KiB).
    pub tls_in_capacity: usize,
}

impl Default for TransportOptions {
    /// 64 KiB out, 96 KiB TLS in.
    fn default() -> Self {
        Self {
            out_capacity: 64 * 1024,
            tls_in_capacity: 96 * 1024,
        }
    }
}

/// Kernel options for a [`Transport`]'s TCP socket, set on every new socket (by
/// [`Transport::connect_with`] and each [`Transport::reconnect`]) before its connect is issued,
/// so that the window scale the SYN advertises already follows the receive buffer. `None`, the
/// default, leaves the kernel's default (and, for the buffers, its auto-tuning) alone.
///
/// A value the kernel refuses fails the connect with [`TransportError::Socket`], which names
/// the option, the value asked for and the OS reason; no connect is issued then. A buffer size
/// the kernel adjusts (doubled, capped at the sysctl maximum) is not an error: see
/// [`Transport::applied_socket_options`] for what it really set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// `SO_BUSY_POLL`, in microseconds (see [`sys::set_busy_poll`]). Older kernels refuse to
    /// raise it without `CAP_NET_ADMIN` (socket(7)); values above `i32::MAX` are refused.
    pub busy_poll_us: Option<u32>,
    /// `SO_RCVBUF`, in bytes (see [`sys::set_recv_buffer`]): turns receive-buffer auto-tuning
    /// off for the socket; the kernel doubles the value and caps it at `net.core.rmem_max`.
    pub recv_buffer: Option<usize>,
    /// `SO_SNDBUF`, in bytes (see [`sys::set_send_buffer`]): turns send-buffer auto-tuning off
    /// for the socket; the kernel doubles the value and caps it at `net.core.wmem_max`.
    pub send_buffer: Option<usize>,
}

/// The [`SocketOptions`] a [`Transport`]'s current socket was given, as the kernel reported
/// them back with `getsockopt` right after setting them: `None` for an option left at the
/// kernel default. Buffer sizes are in the kernel's accounting (about twice what was asked, or
/// twice the sysctl cap), so do not feed them back as requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppliedSocketOptions {
    /// `SO_BUSY_POLL` read back, in microseconds.
    pub busy_poll_us: Option<u32>,
    /// `SO_RCVBUF` read back, in bytes.
    pub recv_buffer: Option<usize>,
    /// `SO_SNDBUF` read back, in bytes.
    pub send_buffer: Option<usize>,
}

/// Plain TCP (`ws://`) or TLS (`wss://`).
#[derive(Debug, Clone, Copy)]
pub enum Security<'a> {
    /// No encryption.
    Plain,
    /// TLS with `config`; `host` is sent as SNI and checked against the certificate.
    Tls {
        /// Trust roots and TLS settings.
        config: &'a TlsConfig,
        /// The server's host name (or IP address literal).
        host: &'a str,
    },
}

/// Where a [`Transport`] is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect issued, not yet complete.
    Connecting,
    /// TCP connected, TLS handshake in progress.
    Handshaking,
    /// Ready for application data.
    Established,
    /// [`Transport::close`] was called; queued bytes (and the close_notify) are still being sent.
    Closing,
    /// Our side is shut down (after `close`), or an error ended the transport.
    Closed,
}

/// Progress of [`Transport::handshake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Still connecting / handshaking: call again on the next readiness event.
    InProgress,
    /// Established: application data may flow.
    Done,
}

/// Result of [`Transport::read_plaintext`]. Every variant says how many bytes went into `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// The socket is drained (`WouldBlock`): wait for the next readable event.
    Drained {
        /// Bytes written to the front of `dst`.
        read: usize,
    },
    /// Stopped before draining: `dst` is full, an error is pending behind the bytes
    /// delivered, or (TLS) the call opened its share of records (64) and returns so that other
    /// connections get their turn; `read` may then be 0. Call again (after consuming) without
    /// waiting for an event — with edge-triggered readiness no new event may come for bytes
    /// that are already buffered.
    More {
        /// Bytes written to the front of `dst`.
        read: usize,
    },
    /// The peer closed its sending side cleanly: TLS `close_notify` received, or FIN in plain
    /// mode. Everything it sent has been delivered (these are the last bytes). Writing is still
    /// possible; call [`Transport::close`] when done.
    PeerClosed {
        /// Bytes written to the front of `dst`.
        read: usize,
    },
}

impl ReadStatus {
    /// Bytes written to the front of `dst`.
    pub fn read(&self) -> usize {
        match *self {
            Self::Drained { read } | Self::More { read } | Self::PeerClosed { read } => read,
        }
    }
}

/// Result of [`Transport::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued was handed to the kernel.
    Done,
    /// The kernel send buffer is full; the rest goes out on a later writable event.
    Pending,
}

/// Result of [`Transport::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseStatus {
    /// Queued data and close_notify are sent and the write side is shut down (FIN sent).
    Done,
    /// Still flushing: call `close` again on the next writable event.
    Pending,
}

/// TLS state of a [`Transport`].
struct Tls {
    /// Who protects the records: rustls during the handshake, [`Traffic`] afterwards.
    state: TlsState,
    /// Server name, for error messages.
    host: Box<str>,
    /// Ciphertext read from the socket. Invariants: after the handshake it starts at a record
    /// boundary, and while `pending` is `Some` its first record has been decrypted in place and
    /// holds the plaintext being delivered; during the handshake, rustls may hold a partly
    /// joined handshake message at its front, and `discard` bytes are consumed from its front
    /// before the next `process_tls_records` call.
    incoming: ByteQueue,
    /// The decrypted record at the front of `incoming` whose plaintext is not all delivered.
    pending: Option<Pending>,
    /// Handshake only: bytes at the front of `incoming` shown to rustls so far, whole records
    /// only, one more each time it needs input. rustls must not see the records after the one
    /// that ends the handshake (a TLS 1.2 server's first application data follows its Finished
    /// in the same read): those are ours to decrypt after the hand-over.
    hs_fed: usize,
    /// close_notify received: nothing after it is read.
    peer_closed: bool,
    /// Our close_notify has been encoded into the outgoing queue: nothing may be sent after it
    /// (no KeyUpdate answer, no fatal alert).
    close_notify_queued: bool,
    /// The alert chosen when the record layer met a fatal error (`Some(None)`: none to send,
    /// e.g. the peer's own fatal alert); sent by [`queue_fatal_alert`] instead of the one
    /// [`record::alert_for`] would pick from the error alone.
    read_alert: Option<Option<AlertDescription>>,
}

/// Counters against floods of records that carry no application data: each such record is
/// cheap to send and costs us a decryption (rustls' `TemperCounters` and its empty-fragment
/// limit). Exceeding one is fatal ([`rustls::PeerMisbehaved`]`::TooMany…`, alert
/// `unexpected_message`).
#[derive(Debug, Default)]
struct Temper {
    /// Empty application-data records since the last non-empty one; at most
    /// [`MAX_EMPTY_RECORDS`].
    empty_records: u8,
    /// Records without application data since the last one with some; at most
    /// [`MAX_IDLE_RECORDS`].
    idle_records: u8,
    /// Warning alerts received (never reset); at most [`MAX_WARNING_ALERTS`].
    warning_alerts: u8,
    /// KeyUpdates since the last application data; at most [`MAX_KEY_UPDATES`].
    key_updates: u8,
    /// HelloRequests received (never reset); at most [`MAX_HELLO_REQUESTS`].
    hello_requests: u8,
}

impl Temper {
    /// Counts one more in `counter`; past `max` it is `error`.
    fn bump(counter: &mut u8, max: u8, error: rustls::PeerMisbehaved) -> Result<(), rustls::Error> {
        if *counter >= max {
            return Err(rustls::Error::PeerMisbehaved(error));
        }
        *counter += 1;
        Ok(())
    }

    /// A record with application data arrived: the per-burst counters start again.
    fn data(&mut self) {
        self.empty_records = 0;
        self.idle_records = 0;
        self.key_updates = 0;
    }

    /// A record without application data (any type) arrived.
    fn idle(&mut self) -> Result<(), rustls::Error> {
        Self::bump(
            &mut self.idle_records,
            MAX_IDLE_RECORDS,
            rustls::PeerMisbehaved::TooManyEmptyFragments,
        )
    }

    /// An empty application-data record arrived.
    fn empty(&mut self) -> Result<(), rustls::Error> {
        Self::bump(
            &mut self.empty_records,
            MAX_EMPTY_RECORDS,
            rustls::PeerMisbehaved::TooManyEmptyFragments,
        )
    }

    /// A warning alert (other than close_notify) arrived.
    fn warning_alert(&mut self) -> Result<(), rustls::Error> {
        Self::bump(
            &mut self.warning_alerts,
            MAX_WARNING_ALERTS,
            rustls::PeerMisbehaved::TooManyWarningAlertsReceived,
        )
    }

    /// A KeyUpdate arrived.
    fn key_update(&mut self) -> Result<(), rustls::Error> {
        Self::bump(
            &mut self.key_updates,
            MAX_KEY_UPDATES,
            rustls::PeerMisbehaved::TooManyKeyUpdateRequests,
        )
    }

    /// A TLS 1.2 HelloRequest arrived.
    fn hello_request(&mut self) -> Result<(), rustls::Error> {
        Self::bump(
            &mut self.hello_requests,
            MAX_HELLO_REQUESTS,
            rustls::PeerMisbehaved::TooManyRenegotiationRequests,
        )
    }
}

/// A decrypted record at the front of the incoming buffer. Invariant:
/// `start <= end <= record_len <= incoming.len()`; offsets are from the front of the live bytes.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// First plaintext byte not yet delivered.
    start: usize,
    /// End of the plaintext.
    end: usize,
    /// Bytes the whole record takes (header, ciphertext, tag); consumed once delivered.
    record_len: usize,
}

/// Who protects the records.
enum TlsState {
    /// Handshake: rustls' unbuffered client does everything.
    Handshaking(Box<UnbufferedClientConnection>),
    /// Established: our own in-place record layer (see [`Traffic`]).
    Traffic(Box<Traffic>),
    /// Between the two, while rustls hands over; stays so only if that failed (the transport is
    /// then dead).
    Gone,
}

/// Record protection after the handshake, with the traffic secrets rustls hands over
/// (`dangerous_into_kernel_connection`, the API made for kTLS).
///
/// rustls 0.23's unbuffered API copies every received record into a fresh `Vec`
/// (`CommonState::take_received_plaintext`) and its `ring` encrypter builds every sent record in
/// a fresh `Vec`; this decrypts in place in the incoming buffer and encrypts straight into the
/// outgoing one, so the steady state allocates nothing. rustls keeps the key schedule
/// (KeyUpdate) and the session-ticket store.
struct Traffic {
    /// rustls' remains: next traffic secrets on KeyUpdate, session tickets.
    kernel: KernelConnection<ClientConnectionData>,
    /// Record format.
    version: Version,
    /// The negotiated version, as rustls names it.
    protocol: rustls::ProtocolVersion,
    /// The ALPN protocol the server chose.
    alpn: Option<Box<[u8]>>,
    /// Keys for records from the server.
    rx: Keys,
    /// Keys for records to the server.
    tx: Keys,
    /// Records sealed under one key before it must change: the suite's confidentiality limit
    /// less a margin for the control records that may follow. TLS 1.3 then sends a KeyUpdate;
    /// TLS 1.2 gives up ([`TransportError::KeysExhausted`]).
    tx_limit: u64,
    /// Flood counters for records without application data.
    temper: Temper,
}

impl Traffic {
    /// Takes over from rustls once the handshake is done and nothing is left to send.
    fn take_over(conn: UnbufferedClientConnection) -> Result<Traffic, rustls::Error> {
        let protocol = conn
            .protocol_version()
            .ok_or(rustls::Error::HandshakeNotComplete)?;
        let version = Version::of(protocol)
            .ok_or_else(|| rustls::Error::General(format!("no record layer for {protocol:?}")))?;
        let alpn = conn.alpn_protocol().map(Box::from);
        let (secrets, kernel) = conn.dangerous_into_kernel_connection()?;
        let limit = match kernel.negotiated_cipher_suite() {
            SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
            SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
        };
        Ok(Traffic {
            version,
            protocol,
            alpn,
            rx: Keys::new(version, secrets.rx.0, secrets.rx.1)?,
            tx: Keys::new(version, secrets.tx.0, secrets.tx.1)?,
            tx_limit: limit.saturating_sub(TX_LIMIT_MARGIN),
            temper: Temper::default(),
            kernel,
        })
    }
}

/// Records kept back from a key's confidentiality limit for alerts and a KeyUpdate.
const TX_LIMIT_MARGIN: u64 = 1024;

/// One non-blocking connection: plain TCP or TLS (rustls' unbuffered API for the handshake,
/// then an in-place record layer with the keys rustls hands over; see the module docs).
///
/// Plaintext comes out into a caller's `&mut [u8]` ([`Transport::read_plaintext`]) and goes in
/// from a caller's `&[u8]` ([`Transport::write_plaintext`]); ciphertext lives in buffers
/// allocated once in [`Transport::connect`]. Nothing here blocks: every call does what the
/// socket allows and reports what is left. Driving it:
///
/// 1. [`Transport::connect`] with a resolved address, then [`Transport::register`] (readable and
///    writable interest, edge-triggered, kept for the connection's life).
/// 2. On every event, [`Transport::handshake`] until it returns [`Handshake::Done`]; then read
///    at once, without waiting for another event (the handshake may already have pulled
///    application data off the socket).
/// 3. On readable (and whenever [`ReadStatus::More`] was returned), `read_plaintext` until
///    [`ReadStatus::Drained`]. Queue output with `write_plaintext`, then [`Transport::flush`];
///    on writable, flush again while [`Transport::wants_write`].
/// 4. [`Transport::close`] (close_notify, then FIN) until [`CloseStatus::Done`], then
///    [`Transport::deregister`] and drop.
///
/// Errors are [`TransportError`]s; apart from caller mistakes they leave the transport in
/// [`Phase::Closed`].
pub struct Transport {
    /// The socket, non-blocking, TCP_NODELAY on, with `socket_options` applied.
    sock: TcpStream,
    /// Kernel options requested for every socket of this transport (reconnects included).
    socket_options: SocketOptions,
    /// What the kernel reported for `socket_options` on the current socket.
    applied: AppliedSocketOptions,
    /// Where it connects to.
    peer: SocketAddr,
    /// Life-cycle phase.
    phase: Phase,
    /// An error ended the transport; everything but `close` now answers `Closed`.
    failed: bool,
    /// Bytes for the socket: TLS records, or plaintext in plain mode.
    out: ByteQueue,
    /// `Some` for TLS.
    tls: Option<Tls>,
    /// An error met after bytes were already delivered by `read_plaintext`; returned next call.
    deferred: Option<TransportError>,
    /// Plain mode: the peer sent FIN.
    plain_peer_closed: bool,
    /// A socket read that returned fewer bytes than it asked for ends the read as `Drained`
    /// (the receive queue was empty at that moment) instead of reading again for a
    /// `WouldBlock`: one system call less per wake-up. Only for a caller whose readiness events
    /// tell it about a peer's FIN or an error ([`Transport::note_read_closed`]), since a FIN
    /// that arrived with the last data raises no new edge.
    short_read_drains: bool,
    /// The readiness event said the peer closed its side or the socket has an error: read
    /// until end of stream or `WouldBlock`, whatever the read sizes. Until the next connect.
    read_closed: bool,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("peer", &self.peer)
            .field("phase", &self.phase)
            .field("tls", &self.tls.as_ref().map(|t| &*t.host))
            .field("queued_out", &self.out.len())
            .finish_non_exhaustive()
    }
}

/// What one handshake `process` pass stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// rustls needs more bytes from the socket.
    NeedInput,
    /// rustls may send application data: the handshake is over and nothing is left to send.
    Writable,
}

/// The rustls client for `security` (`None` for plain TCP) and the host it checks; fails on a
/// host name that is neither a DNS name nor an IP literal.
fn client_for<'a>(
    security: Security<'a>,
) -> Result<Option<(UnbufferedClientConnection, &'a str)>, TransportError> {
    let Security::Tls { config, host } = security else {
        return Ok(None);
    };
    let name =
        ServerName::try_from(host.to_owned()).map_err(|_| TransportError::InvalidHostName {
            host: host.to_owned(),
        })?;
    let conn = UnbufferedClientConnection::new(Arc::clone(config.client_config()), name)
        .map_err(|e| TransportError::from_tls(host, e))?;
    Ok(Some((conn, host)))
}

/// Creates a non-blocking TCP socket for `addr`, sets TCP_NODELAY and `options` on it, then
/// issues the connect (as mio's `TcpStream::connect` does, but with the options in place first:
/// the SYN's window scale is derived from the receive buffer). A refused option fails before
/// any connect is issued.
fn connect_socket(
    addr: SocketAddr,
    options: SocketOptions,
) -> Result<(TcpStream, AppliedSocketOptions), TransportError> {
    // `Socket::new` sets close-on-exec, as mio does.
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .and_then(|sock| sock.set_nonblocking(true).map(|()| sock))
        .map_err(|e| TransportError::from_connect(addr, e))?;
    let socket_error = |source| TransportError::Socket { addr, source };
    sys::set_tcp_nodelay(&sock, true).map_err(socket_error)?;
    let applied = apply_socket_options(&sock, options).map_err(socket_error)?;
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(TransportError::from_connect(addr, e)),
    }
    let sock = TcpStream::from_std(std::net::TcpStream::from(OwnedFd::from(sock)));
    Ok((sock, applied))
}

/// Sets each option of `options` that is `Some` on `sock` and returns what the kernel reports
/// for it; stops at the first refusal.
fn apply_socket_options(
    sock: &Socket,
    options: SocketOptions,
) -> Result<AppliedSocketOptions, sys::SysError> {
    Ok(AppliedSocketOptions {
        recv_buffer: options
            .recv_buffer
            .map(|bytes| sys::set_recv_buffer(sock, bytes))
            .transpose()?,
        send_buffer: options
            .send_buffer
            .map(|bytes| sys::set_send_buffer(sock, bytes))
            .transpose()?,
        busy_poll_us: options
            .busy_poll_us
            .map(|micros| sys::set_busy_poll(sock, micros))
            .transpose()?,
    })
}

/// The outgoing queue's size for `options`.
fn out_capacity(options: TransportOptions) -> usize {
    options.out_capacity.max(MIN_OUT_CAPACITY)
}

/// The TLS incoming queue's size for `options`.
fn tls_in_capacity(options: TransportOptions) -> usize {
    options.tls_in_capacity.max(MAX_WIRE_RECORD)
}

impl Tls {
    /// A handshake about to start with `conn`, and an empty incoming queue of `in_capacity`.
    fn new(conn: UnbufferedClientConnection, host: &str, in_capacity: usize) -> Tls {
        Tls {
            state: TlsState::Handshaking(Box::new(conn)),
            host: host.into(),
            incoming: ByteQueue::new(in_capacity),
            pending: None,
            hs_fed: 0,
            peer_closed: false,
            close_notify_queued: false,
            read_alert: None,
        }
    }

    /// Starts over with a new handshake on `conn`, keeping the incoming queue's memory.
    fn restart(&mut self, conn: UnbufferedClientConnection, host: &str) {
        self.state = TlsState::Handshaking(Box::new(conn));
        if &*self.host != host {
            self.host = host.into();
        }
        self.incoming.clear();
        self.pending = None;
        self.hs_fed = 0;
        self.peer_closed = false;
        self.close_notify_queued = false;
        self.read_alert = None;
    }
}

impl Transport {
    /// Starts a non-blocking connect to an already-resolved address (see
    /// [`resolve`](super::resolve), which must run before the loop, off the engine thread) and
    /// sets TCP_NODELAY. Returns at once, in [`Phase::Connecting`]. The socket keeps the
    /// kernel's defaults otherwise; [`connect_with`](Self::connect_with) sets more options.
    ///
    /// For TLS, `host` must be a DNS name or IP literal; the rustls client is created here, so a
    /// bad name fails before any socket exists.
    pub fn connect(
        addr: SocketAddr,
        security: Security<'_>,
        options: TransportOptions,
    ) -> Result<Self, TransportError> {
        Self::connect_with(addr, security, options, SocketOptions::default())
    }

    /// As [`connect`](Self::connect), with the kernel options `socket` set on the socket before
    /// its connect is issued, and again on the new socket of every [`reconnect`](Self::reconnect).
    /// [`applied_socket_options`](Self::applied_socket_options) tells what the kernel set.
    ///
    /// # Errors
    /// As [`connect`](Self::connect); an option the kernel (or its `int` range) refuses is
    /// [`TransportError::Socket`], naming the option, the value and the OS reason, and no
    /// connect is issued.
    pub fn connect_with(
        addr: SocketAddr,
        security: Security<'_>,
        options: TransportOptions,
        socket: SocketOptions,
    ) -> Result<Self, TransportError> {
        let tls = client_for(security)?
            .map(|(conn, host)| Tls::new(conn, host, tls_in_capacity(options)));
        let out = ByteQueue::new(out_capacity(options));
        let (sock, applied) = connect_socket(addr, socket)?;
        Ok(Self {
            sock,
            socket_options: socket,
            applied,
            peer: addr,
            phase: Phase::Connecting,
            failed: false,
            out,
            tls,
            deferred: None,
            plain_peer_closed: false,
            short_read_drains: false,
            read_closed: false,
        })
    }

    /// Lets a short socket read end a read as drained (see the field's docs): call only when
    /// every readiness event that reports the peer's FIN or an error (mio's
    /// `is_read_closed()` / `is_error()`) is passed on with [`Transport::note_read_closed`].
    pub fn set_short_read_drains(&mut self, on: bool) {
        self.short_read_drains = on;
    }

    /// A readiness event reported the peer's FIN or a socket error: from now until the next
    /// connect, reads go on until end of stream or `WouldBlock`.
    pub fn note_read_closed(&mut self) {
        self.read_closed = true;
    }

    /// Whether a short read may end a read now.
    #[inline]
    fn short_read_ends(&self) -> bool {
        self.short_read_drains && !self.read_closed
    }

    /// Starts a new connection to `addr` in place of this one, as [`connect`](Self::connect)
    /// does, but keeps the outgoing queue and the TLS incoming queue (160 KiB with the default
    /// options) instead of allocating and zeroing new ones: a reconnect then allocates only
    /// rustls' handshake state. Whatever the old connection had queued or received is
    /// discarded; its socket is closed once the new connect has been issued. The new socket
    /// gets the [`SocketOptions`] this transport was created with
    /// ([`connect_with`](Self::connect_with)), before its connect.
    ///
    /// # Errors
    /// As [`connect`](Self::connect); the transport is then left as it was (closed, if the
    /// caller closed it), with its buffers, ready for another attempt.
    pub fn reconnect(
        &mut self,
        addr: SocketAddr,
        security: Security<'_>,
        options: TransportOptions,
    ) -> Result<(), TransportError> {
        let client = client_for(security)?;
        // The new socket replaces (and so closes) the old one only once its connect is out.
        let (sock, applied) = connect_socket(addr, self.socket_options)?;
        self.sock = sock;
        self.applied = applied;
        self.peer = addr;
        self.phase = Phase::Connecting;
        self.failed = false;
        self.deferred = None;
        self.plain_peer_closed = false;
        self.read_closed = false;
        if self.out.capacity() == out_capacity(options) {
            self.out.clear();
        } else {
            self.out = ByteQueue::new(out_capacity(options));
        }
        let in_capacity = tls_in_capacity(options);
        self.tls = match (client, self.tls.take()) {
            (None, _) => None,
            (Some((conn, host)), Some(mut tls)) if tls.incoming.capacity() == in_capacity => {
                tls.restart(conn, host);
                Some(tls)
            }
            (Some((conn, host)), _) => Some(Tls::new(conn, host, in_capacity)),
        };
        Ok(())
    }

    /// Registers the socket under `token` for readable and writable readiness (edge-triggered;
    /// kept for the whole connection, so no reregistration is ever needed).
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut self.sock,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// Removes the socket from `registry` (before dropping the transport or its slot).
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        registry.deregister(&mut self.sock)
    }

    /// The address this transport connects to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The socket, for [`sys`](crate::sys) options (`SO_BUSY_POLL`, `SO_RCVBUF`, ...).
    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// What the kernel set for the [`SocketOptions`] on the current socket, read back right
    /// after setting them (all `None` when none were asked for).
    pub fn applied_socket_options(&self) -> AppliedSocketOptions {
        self.applied
    }

    /// Current life-cycle phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True for TLS (`wss://`), false for plain TCP.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// True while bytes wait in the outgoing queue: flush on the next writable event.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Bytes waiting in the outgoing queue (ciphertext for TLS).
    pub fn queued_out(&self) -> usize {
        self.out.len()
    }

    /// Bytes of decrypted plaintext waiting: `read_plaintext` returns them before touching the
    /// socket. Non-zero after a read that filled `dst` mid-record.
    pub fn buffered_plaintext(&self) -> usize {
        self.tls
            .as_ref()
            .and_then(|t| t.pending)
            .map_or(0, |p| p.end - p.start)
    }

    /// The ALPN protocol the server chose, if any (TLS only).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.tls.as_ref()?.state {
            TlsState::Handshaking(conn) => conn.alpn_protocol(),
            TlsState::Traffic(t) => t.alpn.as_deref(),
            TlsState::Gone => None,
        }
    }

    /// The negotiated TLS version, once known.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.tls.as_ref()?.state {
            TlsState::Handshaking(conn) => conn.protocol_version(),
            TlsState::Traffic(t) => Some(t.protocol),
            TlsState::Gone => None,
        }
    }

    /// Advances connecting and the TLS handshake as far as the socket allows. Call on every
    /// readiness event until it returns [`Handshake::Done`]; spurious calls are harmless.
    ///
    /// Connect completion follows mio's procedure: `take_error()` (a refused connect shows up
    /// here as [`TransportError::Refused`]), then `peer_addr()` (`NotConnected` means not yet).
    /// A rejected server certificate is [`TransportError::Certificate`]; rustls' alert is sent
    /// to the server on a best-effort basis. After `Done`, call
    /// [`read_plaintext`](Transport::read_plaintext) right away: bytes that arrived with the
    /// end of the handshake raise no new readiness event.
    pub fn handshake(&mut self) -> Result<Handshake, TransportError> {
        if self.failed {
            return Err(TransportError::Closed { peer: self.peer });
        }
        let result = self.advance_handshake();
        result.map_err(|e| self.fail(e))
    }

    /// Body of [`Transport::handshake`].
    fn advance_handshake(&mut self) -> Result<Handshake, TransportError> {
        if self.phase == Phase::Connecting {
            if !self.finish_connect()? {
                return Ok(Handshake::InProgress);
            }
            self.phase = if self.tls.is_some() {
                Phase::Handshaking
            } else {
                Phase::Established
            };
        }
        match self.phase {
            Phase::Connecting => Ok(Handshake::InProgress),
            Phase::Established => Ok(Handshake::Done),
            Phase::Closing | Phase::Closed => Err(TransportError::Closed { peer: self.peer }),
            Phase::Handshaking => self.drive_tls_handshake(),
        }
    }

    /// Steps 4 and 5 of mio's connect procedure. `Ok(true)` once connected.
    fn finish_connect(&mut self) -> Result<bool, TransportError> {
        match self.sock.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return Err(TransportError::from_connect(self.peer, e)),
        }
        match self.sock.peer_addr() {
            Ok(_) => Ok(true),
            Err(e)
                if e.kind() == io::ErrorKind::NotConnected
                    || e.raw_os_error() == Some(libc::EINPROGRESS) =>
            {
                Ok(false)
            }
            Err(e) => Err(TransportError::from_connect(self.peer, e)),
        }
    }

    /// Runs the TLS handshake until it completes or the socket has nothing more. When it
    /// completes, rustls hands the traffic secrets over to our record layer.
    fn drive_tls_handshake(&mut self) -> Result<Handshake, TransportError> {
        let Some(tls) = self.tls.as_mut() else {
            self.phase = Phase::Established;
            return Ok(Handshake::Done);
        };
        loop {
            let TlsState::Handshaking(conn) = &mut tls.state else {
                return Err(TransportError::Closed { peer: self.peer });
            };
            let step = process_handshake(
                conn,
                &mut tls.incoming,
                &mut tls.hs_fed,
                &mut self.out,
                &tls.host,
                self.peer,
            )?;
            // Send what rustls produced (ClientHello, Finished) before waiting for the server.
            flush_out(&mut self.sock, &mut self.out, self.peer)?;
            if step == Step::Writable && !conn.is_handshaking() {
                if tls.hs_fed != 0 {
                    // rustls still holds part of a handshake message (a session ticket split
                    // across records): it cannot hand over mid-message.
                    return Err(TransportError::UnexpectedTlsState {
                        host: tls.host.to_string(),
                        state: "handshake message split across records at hand-over".to_owned(),
                    });
                }
                let TlsState::Handshaking(conn) = std::mem::replace(&mut tls.state, TlsState::Gone)
                else {
                    return Err(TransportError::Closed { peer: self.peer });
                };
                let traffic = Traffic::take_over(*conn)
                    .map_err(|e| TransportError::from_tls(&tls.host, e))?;
                tls.state = TlsState::Traffic(Box::new(traffic));
                self.phase = Phase::Established;
                return Ok(Handshake::Done);
            }
            match fill(&mut self.sock, &mut tls.incoming, self.peer, &tls.host)? {
                Filled::Data { .. } => {}
                Filled::WouldBlock => return Ok(Handshake::InProgress),
                Filled::Eof => return Err(TransportError::Truncated { peer: self.peer }),
            }
        }
    }

    /// Reads plaintext into `dst`: first anything already decrypted, then the socket until it
    /// would block or `dst` is full. See [`ReadStatus`] for what to do next.
    ///
    /// Peer closes are told apart: a clean close (TLS close_notify; FIN in plain mode) is
    /// [`ReadStatus::PeerClosed`]; FIN without close_notify is [`TransportError::Truncated`]; a
    /// reset is [`TransportError::Reset`]. An error met after some bytes were delivered is held
    /// back and returned by the next call (the status is then [`ReadStatus::More`]). An empty
    /// `dst` returns `More { read: 0 }`.
    pub fn read_plaintext(&mut self, dst: &mut [u8]) -> Result<ReadStatus, TransportError> {
        if let Some(e) = self.deferred.take() {
            return Err(self.fail(e));
        }
        self.check_readable()?;
        let result = if self.tls.is_some() {
            self.read_tls(dst)
        } else {
            self.read_plain(dst)
        };
        match result {
            Ok(status) => Ok(status),
            Err((e, 0)) => Err(self.fail(e)),
            Err((e, read)) => {
                self.deferred = Some(e);
                Ok(ReadStatus::More { read })
            }
        }
    }

    /// Plain-mode read. Errors carry the number of bytes already delivered.
    fn read_plain(&mut self, dst: &mut [u8]) -> Result<ReadStatus, (TransportError, usize)> {
        if self.plain_peer_closed {
            return Ok(ReadStatus::PeerClosed { read: 0 });
        }
        let mut filled = 0;
        loop {
            if filled == dst.len() {
                return Ok(ReadStatus::More { read: filled });
            }
            match self.sock.read(&mut dst[filled..]) {
                Ok(0) => {
                    self.plain_peer_closed = true;
                    return Ok(ReadStatus::PeerClosed { read: filled });
                }
                Ok(n) => {
                    let asked = dst.len() - filled;
                    filled += n;
                    if n < asked && self.short_read_ends() {
                        // The receive queue is empty: no `WouldBlock` read needed.
                        return Ok(ReadStatus::Drained { read: filled });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(ReadStatus::Drained { read: filled })
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err((TransportError::from_io("read", self.peer, e), filled)),
            }
        }
    }

    /// TLS read. Errors carry the number of bytes already delivered.
    fn read_tls(&mut self, dst: &mut [u8]) -> Result<ReadStatus, (TransportError, usize)> {
        let peer = self.peer;
        let short_read_ends = self.short_read_ends();
        let Some(tls) = self.tls.as_mut() else {
            return Ok(ReadStatus::Drained { read: 0 });
        };
        let Tls {
            state,
            host,
            incoming,
            pending,
            peer_closed,
            close_notify_queued,
            read_alert,
            ..
        } = tls;
        let TlsState::Traffic(traffic) = state else {
            return Err((TransportError::NotEstablished { peer }, 0));
        };
        let mut filled = 0;
        let mut records = 0;
        // The socket returned less than asked: its receive queue is empty.
        let mut drained = false;
        loop {
            if let Some(p) = pending.as_mut() {
                let plain = &incoming.filled()[p.start..p.end];
                let n = plain.len().min(dst.len() - filled);
                dst[filled..filled + n].copy_from_slice(&plain[..n]);
                filled += n;
                p.start += n;
                if p.start < p.end {
                    return Ok(ReadStatus::More { read: filled });
                }
                incoming.consume(p.record_len);
                *pending = None;
            }
            if *peer_closed {
                return Ok(ReadStatus::PeerClosed { read: filled });
            }
            if filled == dst.len() || records == RECORDS_PER_READ {
                // `dst` is full, or this call has done its share of work: the caller comes back
                // at once (`More`), after the other sessions had their turn.
                return Ok(ReadStatus::More { read: filled });
            }
            let next = open_record(
                traffic,
                incoming,
                &mut self.out,
                pending,
                peer_closed,
                *close_notify_queued,
            )
            .map_err(|Fatal { error, alert }| {
                *read_alert = Some(alert);
                (TransportError::from_tls(host, error), filled)
            })?;
            if next != Next::NeedInput {
                records += 1;
            }
            match next {
                Next::Record => {}
                Next::Answered => {
                    // A KeyUpdate answer: send it now if the socket takes it.
                    flush_out(&mut self.sock, &mut self.out, peer).map_err(|e| (e, filled))?;
                }
                Next::NeedInput => {
                    if drained {
                        return Ok(ReadStatus::Drained { read: filled });
                    }
                    match fill(&mut self.sock, incoming, peer, host).map_err(|e| (e, filled))? {
                        Filled::Data { short } => drained = short && short_read_ends,
                        Filled::WouldBlock => return Ok(ReadStatus::Drained { read: filled }),
                        Filled::Eof => return Err((TransportError::Truncated { peer }, filled)),
                    }
                }
            }
        }
    }

    /// Queues `src` for sending (encrypting it for TLS) and returns how many bytes were taken.
    ///
    /// Never drops bytes: whatever is not taken (the outgoing queue is full) must be offered
    /// again. It does not send by itself unless the queue is too full to take `src`, in which
    /// case it flushes first; call [`Transport::flush`] after queueing a turn's output. TLS puts
    /// each call's bytes into records of their own (up to 16 KiB each): queue a message whole.
    pub fn write_plaintext(&mut self, src: &[u8]) -> Result<usize, TransportError> {
        self.take_deferred()?;
        self.check_writable()?;
        if src.is_empty() {
            return Ok(0);
        }
        let result = self.queue(src);
        result.map_err(|e| self.fail(e))
    }

    /// Body of [`Transport::write_plaintext`].
    fn queue(&mut self, src: &[u8]) -> Result<usize, TransportError> {
        let Some(tls) = self.tls.as_mut() else {
            if self.out.free() < src.len() {
                flush_out(&mut self.sock, &mut self.out, self.peer)?;
            }
            return Ok(self.out.push(src));
        };
        let TlsState::Traffic(traffic) = &mut tls.state else {
            return Err(TransportError::NotEstablished { peer: self.peer });
        };
        let wanted = src.len().min(MAX_PLAINTEXT) + MAX_RECORD_OVERHEAD + CONTROL_RESERVE;
        if self.out.free() < wanted {
            flush_out(&mut self.sock, &mut self.out, self.peer)?;
        }
        seal_app_data(traffic, &mut self.out, src, &tls.host)
    }

    /// Sends queued bytes until the queue is empty or the socket would block.
    pub fn flush(&mut self) -> Result<Flush, TransportError> {
        self.take_deferred()?;
        if self.failed {
            return Err(TransportError::Closed { peer: self.peer });
        }
        if self.phase == Phase::Connecting {
            return Ok(Flush::Pending);
        }
        let result = flush_out(&mut self.sock, &mut self.out, self.peer);
        result.map_err(|e| self.fail(e))
    }

    /// Closes gracefully: queues a TLS close_notify (TLS), sends everything queued, then shuts
    /// down the write side (FIN). Call again on writable while it returns
    /// [`CloseStatus::Pending`]. Reading stays possible until the peer closes too. Before the
    /// connection is established, or after an error, it just shuts the socket down.
    pub fn close(&mut self) -> Result<CloseStatus, TransportError> {
        if self.failed {
            // Dead already: just let the peer know (the socket may refuse if it was reset).
            let _ = self.sock.shutdown(Shutdown::Both);
            return Ok(CloseStatus::Done);
        }
        match self.phase {
            Phase::Connecting | Phase::Handshaking => {
                // Nothing to say goodbye with; a socket that never connected may refuse
                // shutdown, which changes nothing.
                let _ = self.sock.shutdown(Shutdown::Both);
                self.phase = Phase::Closed;
                return Ok(CloseStatus::Done);
            }
            Phase::Closed => return Ok(CloseStatus::Done),
            Phase::Established => {
                if let Some(tls) = self.tls.as_mut() {
                    if let Err(e) = queue_close_notify(tls, &mut self.out) {
                        return Err(self.fail(e));
                    }
                }
                self.phase = Phase::Closing;
            }
            Phase::Closing => {}
        }
        match flush_out(&mut self.sock, &mut self.out, self.peer) {
            Ok(Flush::Pending) => Ok(CloseStatus::Pending),
            Ok(Flush::Done) => match self.sock.shutdown(Shutdown::Write) {
                Ok(()) => {
                    self.phase = Phase::Closed;
                    Ok(CloseStatus::Done)
                }
                // The peer already reset or closed the connection: we are closed either way.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    self.phase = Phase::Closed;
                    Ok(CloseStatus::Done)
                }
                Err(e) => Err(self.fail(TransportError::from_io("shutdown", self.peer, e))),
            },
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Reads are allowed once established, also while and after closing our side.
    fn check_readable(&self) -> Result<(), TransportError> {
        match self.phase {
            _ if self.failed => Err(TransportError::Closed { peer: self.peer }),
            Phase::Connecting | Phase::Handshaking => {
                Err(TransportError::NotEstablished { peer: self.peer })
            }
            Phase::Established | Phase::Closing | Phase::Closed => Ok(()),
        }
    }

    /// Writes are allowed only while established.
    /// A fatal receive error held back behind bytes already delivered (a bad record MAC, a
    /// fatal alert, after good data in the same read) ends the transport at once for writes
    /// too: nothing the caller queues in reaction to the delivered bytes (an order) may leave
    /// after it. The peer gets the alert.
    fn take_deferred(&mut self) -> Result<(), TransportError> {
        match self.deferred.take() {
            Some(e) => Err(self.fail(e)),
            None => Ok(()),
        }
    }

    fn check_writable(&self) -> Result<(), TransportError> {
        match self.phase {
            _ if self.failed => Err(TransportError::Closed { peer: self.peer }),
            Phase::Connecting | Phase::Handshaking => {
                Err(TransportError::NotEstablished { peer: self.peer })
            }
            Phase::Established => Ok(()),
            Phase::Closing | Phase::Closed => Err(TransportError::Closed { peer: self.peer }),
        }
    }

    /// Marks the transport dead after a real failure (caller mistakes leave it alone). For TLS
    /// failures, rustls has queued an alert for the server; it is sent if the socket takes it.
    fn fail(&mut self, e: TransportError) -> TransportError {
        if matches!(
            e,
            TransportError::NotEstablished { .. } | TransportError::Closed { .. }
        ) {
            return e;
        }
        if !self.failed {
            self.failed = true;
            self.phase = Phase::Closed;
            if matches!(
                e,
                TransportError::Tls { .. } | TransportError::Certificate { .. }
            ) {
                if let Some(tls) = self.tls.as_mut() {
                    queue_fatal_alert(tls, &mut self.out, &e);
                    // Best effort: the connection is over whatever happens to the alert.
                    let _ = flush_out(&mut self.sock, &mut self.out, self.peer);
                }
            }
            if let (TransportError::KeysExhausted { .. }, Some(tls)) = (&e, self.tls.as_mut()) {
                // TLS 1.2 at its key's limit: end cleanly, with close_notify (the last
                // sequence number was kept for it), so the peer sees no truncation.
                let _ = queue_close_notify(tls, &mut self.out);
                let _ = flush_out(&mut self.sock, &mut self.out, self.peer);
            }
        }
        e
    }
}

/// Seals our close_notify into `out` once (nothing is sent after it); a no-op before the
/// record layer took over or when it is already queued.
fn queue_close_notify(tls: &mut Tls, out: &mut ByteQueue) -> Result<(), TransportError> {
    if let TlsState::Traffic(traffic) = &mut tls.state {
        if !tls.close_notify_queued {
            seal_control(
                traffic,
                out,
                ALERT,
                &[ALERT_LEVEL_WARNING, AlertDescription::CloseNotify.into()],
            )?;
            tls.close_notify_queued = true;
        }
    }
    Ok(())
}

/// Outcome of one socket read into the incoming TLS buffer.
enum Filled {
    /// Some bytes arrived.
    Data {
        /// Fewer than there was room for: the socket's receive queue is empty now.
        short: bool,
    },
    /// Nothing to read now.
    WouldBlock,
    /// The peer sent FIN.
    Eof,
}

/// Reads once from the socket into the free tail of `incoming`.
fn fill(
    sock: &mut TcpStream,
    incoming: &mut ByteQueue,
    peer: SocketAddr,
    host: &str,
) -> Result<Filled, TransportError> {
    // Compact only when the tail is short of one full record: the bytes moved are at most the
    // tail of an incomplete record (or a handshake message being joined).
    incoming.reserve_tail(incoming.free().min(MAX_WIRE_RECORD));
    if incoming.spare_mut().is_empty() {
        return Err(TransportError::IncomingOverflow {
            host: host.to_owned(),
            capacity: incoming.capacity(),
        });
    }
    loop {
        match sock.read(incoming.spare_mut()) {
            Ok(0) => return Ok(Filled::Eof),
            Ok(n) => {
                let short = n < incoming.spare_mut().len();
                incoming.commit(n);
                return Ok(Filled::Data { short });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Filled::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(TransportError::from_io("read", peer, e)),
        }
    }
}

/// Writes the outgoing queue to the socket until it is empty or the socket would block.
fn flush_out(
    sock: &mut TcpStream,
    out: &mut ByteQueue,
    peer: SocketAddr,
) -> Result<Flush, TransportError> {
    while !out.is_empty() {
        match sock.write(out.filled()) {
            Ok(0) => {
                return Err(TransportError::from_io(
                    "write",
                    peer,
                    io::ErrorKind::WriteZero.into(),
                ))
            }
            Ok(n) => out.consume(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Pending),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(TransportError::from_io("write", peer, e)),
        }
    }
    Ok(Flush::Done)
}

/// Alert level byte: warning (close_notify, user_canceled).
const ALERT_LEVEL_WARNING: u8 = 1;
/// Alert level byte: fatal.
const ALERT_LEVEL_FATAL: u8 = 2;

/// Drives rustls' handshake over the buffered ciphertext, one record more each time it needs
/// input (see `Tls::hs_fed`), until it needs more from the socket or is done. Handshake records
/// rustls emits are encoded into `out` (the caller flushes them).
fn process_handshake(
    conn: &mut UnbufferedClientConnection,
    incoming: &mut ByteQueue,
    fed: &mut usize,
    out: &mut ByteQueue,
    host: &str,
    peer: SocketAddr,
) -> Result<Step, TransportError> {
    loop {
        let UnbufferedStatus { discard, state } =
            conn.process_tls_records(&mut incoming.filled_mut()[..*fed]);
        let step = match state {
            Err(e) => return Err(TransportError::from_tls(host, e)),
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                encode(&mut data, out, host)?;
                None
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                // The records are in `out`, which the caller flushes in order; as far as rustls
                // is concerned they are handed over.
                transmit.done();
                None
            }
            Ok(ConnectionState::BlockedHandshake) => Some(Step::NeedInput),
            Ok(ConnectionState::WriteTraffic(_)) => Some(Step::Writable),
            // Application data or close_notify before the handshake finished.
            Ok(ConnectionState::ReadTraffic(_))
            | Ok(ConnectionState::PeerClosed)
            | Ok(ConnectionState::Closed) => return Err(TransportError::Truncated { peer }),
            Ok(other) => {
                return Err(TransportError::UnexpectedTlsState {
                    host: host.to_owned(),
                    state: format!("{other:?}"),
                })
            }
        };
        incoming.consume(discard);
        *fed -= discard;
        match step {
            None => {}
            Some(Step::NeedInput) => match next_record_end(incoming.filled(), *fed) {
                Some(end) => *fed = end,
                None => return Ok(Step::NeedInput),
            },
            Some(Step::Writable) => return Ok(Step::Writable),
        }
    }
}

/// Where the record starting at `at` in `buf` ends, if it is all there. A header announcing
/// more than any record may hold feeds everything, for rustls to reject.
fn next_record_end(buf: &[u8], at: usize) -> Option<usize> {
    let [_, _, _, hi, lo, ..] = *buf.get(at..)? else {
        return None;
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > Version::Tls12.max_fragment() {
        return Some(buf.len());
    }
    let end = at + HEADER_LEN + len;
    (end <= buf.len()).then_some(end)
}

/// Copies a handshake/control record rustls produced into the outgoing queue.
fn encode(
    data: &mut EncodeTlsData<'_, ClientConnectionData>,
    out: &mut ByteQueue,
    host: &str,
) -> Result<(), TransportError> {
    let required = match data.encode(out.spare_mut()) {
        Ok(n) => {
            out.commit(n);
            return Ok(());
        }
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            required_size
        }
        Err(EncodeError::AlreadyEncoded) => {
            return Err(TransportError::UnexpectedTlsState {
                host: host.to_owned(),
                state: "record already encoded".to_owned(),
            })
        }
    };
    if !out.reserve_tail(required) {
        return Err(TransportError::OutgoingOverflow {
            required,
            capacity: out.capacity(),
        });
    }
    match data.encode(out.spare_mut()) {
        Ok(n) => {
            out.commit(n);
            Ok(())
        }
        Err(_) => Err(TransportError::OutgoingOverflow {
            required,
            capacity: out.capacity(),
        }),
    }
}

/// What [`open_record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// No complete record is buffered: read the socket.
    NeedInput,
    /// A record was handled: application data is now `pending` (or it was empty), or a
    /// control record (alert, session ticket, KeyUpdate) was dealt with.
    Record,
    /// A KeyUpdate asked for ours, which is now queued in `out`: flush.
    Answered,
}

/// Decrypts the record at the front of `incoming` in place, if it is complete, and handles
/// it: application data becomes `pending` (delivered by the caller, then consumed); alerts,
/// session tickets and KeyUpdates are dealt with and consumed. Records without application
/// data are counted against floods ([`Temper`]). Once `close_notify_sent`, nothing is queued
/// in `out` (a KeyUpdate request still renews the receiving keys, unanswered).
fn open_record(
    t: &mut Traffic,
    incoming: &mut ByteQueue,
    out: &mut ByteQueue,
    pending: &mut Option<Pending>,
    peer_closed: &mut bool,
    close_notify_sent: bool,
) -> Result<Next, Fatal> {
    debug_assert!(
        pending.is_none(),
        "a decrypted record is still at the front"
    );
    let buf = incoming.filled_mut();
    let Some(header) = Header::parse(buf, t.version)? else {
        return Ok(Next::NeedInput);
    };
    let record_len = HEADER_LEN + header.len;
    if buf.len() < record_len {
        return Ok(Next::NeedInput);
    }
    let Opened { typ, start, end } = t.rx.open(header, buf)?;
    if typ == APPLICATION_DATA && start < end {
        t.temper.data();
        *pending = Some(Pending {
            start,
            end,
            record_len,
        });
        return Ok(Next::Record);
    }
    t.temper.idle()?;
    let mut next = Next::Record;
    match typ {
        APPLICATION_DATA => t.temper.empty()?,
        ALERT => match buf[start..end] {
            // At any level, as rustls: the peer is done sending.
            [_, desc] if desc == u8::from(AlertDescription::CloseNotify) => *peer_closed = true,
            [ALERT_LEVEL_WARNING, desc] => {
                t.temper.warning_alert()?;
                let desc = AlertDescription::from(desc);
                // TLS 1.2 warnings are informational (RFC 5246 §7.2); TLS 1.3 has none but
                // user_canceled (RFC 8446 §6: all others are fatal whatever their level), and
                // rustls answers them with decode_error.
                if t.version == Version::Tls13 && desc != AlertDescription::UserCanceled {
                    return Err(Fatal {
                        error: rustls::Error::AlertReceived(desc),
                        alert: Some(AlertDescription::DecodeError),
                    });
                }
            }
            // Fatal (or of an unknown level), user_canceled included.
            [_, desc] => return Err(rustls::Error::AlertReceived(desc.into()).into()),
            [] | [_] => {
                return Err(
                    rustls::Error::InvalidMessage(rustls::InvalidMessage::MessageTooShort).into(),
                )
            }
            _ => {
                return Err(
                    rustls::Error::InvalidMessage(rustls::InvalidMessage::TrailingData("Alert"))
                        .into(),
                )
            }
        },
        HANDSHAKE => {
            if post_handshake(t, &buf[start..end], out, close_notify_sent)? {
                next = Next::Answered;
            }
        }
        other => return Err(record::unexpected(other).into()),
    }
    incoming.consume(record_len);
    Ok(next)
}

/// Handles the handshake messages a server may send after the handshake: TLS 1.3
/// NewSessionTicket (given to rustls' ticket store) and KeyUpdate (new receive keys; our own
/// KeyUpdate queued when asked for, returning `true`); a TLS 1.2 HelloRequest is ignored
/// (renegotiation is not supported, RFC 5246 §7.4.1.1 allows ignoring it; at most
/// [`MAX_HELLO_REQUESTS`]). KeyUpdates count against [`MAX_KEY_UPDATES`]; once
/// `close_notify_sent`, requests renew the receiving keys but are not answered (nothing may
/// follow our close_notify).
///
/// Limit: a post-handshake message split across records (which RFC 8446 §5.1 allows) is
/// refused with a [`rustls::Error::General`] saying so; servers send these small messages
/// whole (rustls, OpenSSL, BoringSSL do), and joining them would need a buffer of its own.
fn post_handshake(
    t: &mut Traffic,
    mut msgs: &[u8],
    out: &mut ByteQueue,
    close_notify_sent: bool,
) -> Result<bool, rustls::Error> {
    let split = || {
        rustls::Error::General(
            "post-handshake message split across records (not supported: expected whole \
             NewSessionTicket/KeyUpdate messages in one record)"
                .into(),
        )
    };
    if msgs.is_empty() {
        return Err(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidEmptyPayload,
        ));
    }
    let mut answered = false;
    while let [typ, a, b, c, ref rest @ ..] = *msgs {
        let len = u32::from_be_bytes([0, a, b, c]) as usize;
        if rest.len() < len {
            return Err(split());
        }
        let (body, tail) = rest.split_at(len);
        msgs = tail;
        let typ = HandshakeType::from(typ);
        match (t.version, typ) {
            (Version::Tls13, HandshakeType::NewSessionTicket) => {
                t.kernel.handle_new_session_ticket(body)?;
            }
            (Version::Tls13, HandshakeType::KeyUpdate) => {
                // RFC 8446 §5.1: a key change must end its record.
                if !msgs.is_empty() {
                    return Err(rustls::Error::PeerMisbehaved(
                        rustls::PeerMisbehaved::KeyEpochWithPendingFragment,
                    ));
                }
                let requested = match body {
                    [0] => false,
                    [1] => true,
                    _ => {
                        return Err(rustls::Error::InvalidMessage(
                            rustls::InvalidMessage::InvalidKeyUpdate,
                        ))
                    }
                };
                t.temper.key_update()?;
                let (seq, secrets) = t.kernel.update_rx_secret()?;
                t.rx = Keys::new(t.version, seq, secrets)?;
                if requested && !close_notify_sent {
                    update_tx_keys(t, out)?;
                    answered = true;
                }
            }
            (Version::Tls12, HandshakeType::HelloRequest) if body.is_empty() => {
                t.temper.hello_request()?;
            }
            _ => {
                return Err(rustls::Error::InappropriateHandshakeMessage {
                    expect_types: vec![HandshakeType::NewSessionTicket, HandshakeType::KeyUpdate],
                    got_type: typ,
                })
            }
        }
    }
    if !msgs.is_empty() {
        return Err(split());
    }
    Ok(answered)
}

/// Sends a KeyUpdate (not requesting one back) under the current keys, then switches to the
/// next sending keys (TLS 1.3).
fn update_tx_keys(t: &mut Traffic, out: &mut ByteQueue) -> Result<(), rustls::Error> {
    /// KeyUpdate, 1-byte body, `update_not_requested`.
    const KEY_UPDATE: [u8; 5] = [24, 0, 0, 1, 0];
    seal_record(&mut t.tx, out, HANDSHAKE, &KEY_UPDATE)?;
    let (seq, secrets) = t.kernel.update_tx_secret()?;
    t.tx = Keys::new(t.version, seq, secrets)?;
    Ok(())
}

/// Seals one record into the tail of `out`, compacting it if needed.
fn seal_record(
    keys: &mut Keys,
    out: &mut ByteQueue,
    typ: u8,
    plain: &[u8],
) -> Result<(), rustls::Error> {
    let need = keys.sealed_len(plain.len());
    if !out.reserve_tail(need) {
        return Err(rustls::Error::EncryptError);
    }
    let n = keys.seal(typ, plain, out.spare_mut())?;
    out.commit(n);
    Ok(())
}

/// Seals a control record (alert) into `out`, which keeps [`CONTROL_RESERVE`] bytes for these.
fn seal_control(
    t: &mut Traffic,
    out: &mut ByteQueue,
    typ: u8,
    plain: &[u8],
) -> Result<(), TransportError> {
    let required = t.tx.sealed_len(plain.len());
    if !out.reserve_tail(required) {
        return Err(TransportError::OutgoingOverflow {
            required,
            capacity: out.capacity(),
        });
    }
    let n =
        t.tx.seal(typ, plain, out.spare_mut())
            .map_err(|_| TransportError::OutgoingOverflow {
                required,
                capacity: out.capacity(),
            })?;
    out.commit(n);
    Ok(())
}

/// Encrypts as much of `src` as fits in `out` (minus the control reserve) as application-data
/// records of up to 16 KiB; returns how much that was. Renews the sending keys (TLS 1.3) or
/// gives up (TLS 1.2) at the suite's confidentiality limit.
fn seal_app_data(
    t: &mut Traffic,
    out: &mut ByteQueue,
    src: &[u8],
    host: &str,
) -> Result<usize, TransportError> {
    let mut accepted = 0;
    while accepted < src.len() {
        if t.version == Version::Tls12 {
            // TLS 1.2 cannot renew its keys: stop one record short of the limit, so that the
            // close_notify that ends the connection is still sealed under it.
            if t.tx.seq().saturating_add(1) >= t.tx_limit {
                return Err(TransportError::KeysExhausted {
                    host: host.to_owned(),
                });
            }
        } else if t.tx.seq() >= t.tx_limit {
            update_tx_keys(t, out).map_err(|e| TransportError::from_tls(host, e))?;
        }
        let room = out.free().saturating_sub(CONTROL_RESERVE);
        let overhead = t.tx.sealed_len(0);
        let n = (src.len() - accepted)
            .min(MAX_PLAINTEXT)
            .min(room.saturating_sub(overhead));
        if n == 0 {
            break;
        }
        seal_record(
            &mut t.tx,
            out,
            APPLICATION_DATA,
            &src[accepted..accepted + n],
        )
        .map_err(|e| TransportError::from_tls(host, e))?;
        accepted += n;
    }
    Ok(accepted)
}

/// After a TLS error, puts the alert that tells the server why into `out`: rustls' own during
/// the handshake (e.g. `bad_certificate`), ours afterwards (e.g. `bad_record_mac`).
fn queue_fatal_alert(tls: &mut Tls, out: &mut ByteQueue, error: &TransportError) {
    match &mut tls.state {
        TlsState::Handshaking(conn) => {
            // A handful of steps suffices: encode the alert, mark it transmitted, then rustls
            // reports the error again.
            for _ in 0..4 {
                let UnbufferedStatus { discard, state } =
                    conn.process_tls_records(&mut tls.incoming.filled_mut()[..tls.hs_fed]);
                let more = match state {
                    Ok(ConnectionState::EncodeTlsData(mut data)) => {
                        encode(&mut data, out, &tls.host).is_ok()
                    }
                    Ok(ConnectionState::TransmitTlsData(transmit)) => {
                        transmit.done();
                        true
                    }
                    _ => false,
                };
                tls.incoming.consume(discard);
                tls.hs_fed -= discard;
                if !more {
                    break;
                }
            }
        }
        TlsState::Traffic(traffic) => {
            let TransportError::Tls { source, .. } = error else {
                return;
            };
            if tls.close_notify_queued {
                // Nothing may follow our close_notify (RFC 8446 §6.1).
                return;
            }
            let alert = tls
                .read_alert
                .take()
                .unwrap_or_else(|| record::alert_for(source));
            if let Some(desc) = alert {
                // Best effort: the connection is over whatever happens to the alert.
                let _ = seal_control(traffic, out, ALERT, &[ALERT_LEVEL_FATAL, desc.into()]);
            }
        }
        TlsState::Gone => {}
    }
}

/// Our own KeyUpdate at a key's confidentiality limit, with the limit lowered so the test
/// reaches it in a few records (the real limits are millions of records).
#[cfg(test)]
mod own_key_update_tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread::{self, JoinHandle};
    use std::time::{Duration, Instant};

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(20);
    /// Records (one message each) the client sends.
    const MESSAGES: usize = 40;
    /// Bytes per message.
    const LEN: usize = 100;
    /// The lowered limit: records sealed under one key.
    const LIMIT: u64 = 8;

    /// A rustls server for `localhost` with a self-signed certificate, and that certificate.
    fn server_config(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Arc<rustls::ServerConfig>, String) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
        (Arc::new(config), cert.pem())
    }

    /// Reads `MESSAGES * LEN` bytes (rustls follows any KeyUpdate), answers `ok` and closes.
    fn sink_server(
        config: Arc<rustls::ServerConfig>,
    ) -> (SocketAddr, JoinHandle<Result<Vec<u8>, String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
            sock.set_read_timeout(Some(DEADLINE)).unwrap();
            let conn = rustls::ServerConnection::new(config).map_err(|e| e.to_string())?;
            let mut s = rustls::StreamOwned::new(conn, sock);
            let mut got = vec![0u8; MESSAGES * LEN];
            s.read_exact(&mut got).map_err(|e| e.to_string())?;
            s.write_all(b"ok").map_err(|e| e.to_string())?;
            s.flush().map_err(|e| e.to_string())?;
            Ok(got)
        });
        (addr, server)
    }

    fn message(i: usize) -> [u8; LEN] {
        [i as u8; LEN]
    }

    /// A sink server speaking only `version`, and a client connected to it with the sending
    /// key's limit lowered to [`LIMIT`].
    fn start(
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (Transport, JoinHandle<Result<Vec<u8>, String>>) {
        let (server_config, ca) = server_config(&[version]);
        let config = TlsConfig::builder().ca_pem(ca.as_bytes()).build().unwrap();
        let (addr, server) = sink_server(server_config);
        (connect_with_low_limit(addr, &config), server)
    }

    /// Connects, finishes the handshake and lowers the sending key's limit to [`LIMIT`].
    fn connect_with_low_limit(addr: SocketAddr, config: &TlsConfig) -> Transport {
        let security = Security::Tls {
            config,
            host: "localhost",
        };
        let mut t = Transport::connect(addr, security, TransportOptions::default()).unwrap();
        let start = Instant::now();
        while t.handshake().unwrap() == Handshake::InProgress {
            assert!(start.elapsed() < DEADLINE, "handshake timed out");
            thread::sleep(Duration::from_millis(1));
        }
        traffic(&mut t).tx_limit = LIMIT;
        t
    }

    /// The record layer of an established TLS transport.
    fn traffic(t: &mut Transport) -> &mut Traffic {
        match &mut t.tls {
            Some(Tls {
                state: TlsState::Traffic(traffic),
                ..
            }) => traffic,
            _ => panic!("no record layer after the handshake"),
        }
    }

    fn sending_seq(t: &mut Transport) -> u64 {
        traffic(t).tx.seq()
    }

    fn flush_all(t: &mut Transport) {
        let start = Instant::now();
        while t.flush().unwrap() == Flush::Pending {
            assert!(start.elapsed() < DEADLINE, "flush timed out");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn tls13_sends_its_own_key_update_at_the_limit_and_the_server_reads_everything() {
        let (mut t, server) = start(&rustls::version::TLS13);
        let mut highest_seq = 0;
        for i in 0..MESSAGES {
            assert_eq!(t.write_plaintext(&message(i)).unwrap(), LEN);
            flush_all(&mut t);
            highest_seq = highest_seq.max(sending_seq(&mut t));
        }
        // Sequence numbers start over under each new key: never past the limit (+1 for the
        // KeyUpdate record itself, sealed under the old key).
        assert!(highest_seq <= LIMIT, "sequence reached {highest_seq}");
        let got = server.join().unwrap().expect("server read every message");
        for (i, m) in got.chunks(LEN).enumerate() {
            assert_eq!(m, message(i), "message {i} differs");
        }
        // The server's answer still opens: its own keys did not change.
        let mut answer = [0u8; 8];
        let start = Instant::now();
        let mut read = Vec::new();
        while read.len() < 2 {
            assert!(start.elapsed() < DEADLINE, "no answer");
            match t.read_plaintext(&mut answer).unwrap() {
                ReadStatus::More { read: n } | ReadStatus::Drained { read: n } => {
                    read.extend_from_slice(&answer[..n]);
                    if n == 0 {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                ReadStatus::PeerClosed { read: n } => {
                    read.extend_from_slice(&answer[..n]);
                    break;
                }
            }
        }
        assert_eq!(read, b"ok");
    }

    #[test]
    fn tls12_stops_sending_at_the_limit_with_keys_exhausted() {
        let (mut t, server) = start(&rustls::version::TLS12);
        // The key already sealed the client's Finished.
        let start_seq = sending_seq(&mut t);
        let mut sent = 0;
        let err = loop {
            match t.write_plaintext(&message(sent)) {
                Ok(n) => {
                    assert_eq!(n, LEN);
                    flush_all(&mut t);
                    sent += 1;
                    assert!(sent <= LIMIT as usize, "sent past the limit");
                }
                Err(e) => break e,
            }
        };
        assert_eq!(
            sent as u64,
            LIMIT - 1 - start_seq,
            "records sent under the one key, the last sequence number kept for close_notify"
        );
        assert!(
            matches!(err, TransportError::KeysExhausted { ref host } if host == "localhost"),
            "{err:?}"
        );
        assert_eq!(sending_seq(&mut t), LIMIT, "close_notify took the last one");
        drop(t);
        // The server read a clean end (close_notify), not a truncation, before all it wanted.
        let end = server.join().unwrap().unwrap_err();
        assert!(
            end.contains("fill whole buffer") && !end.contains("close_notify"),
            "{end}"
        );
    }
}
