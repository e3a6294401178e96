//! [`Transport`]: a non-blocking TCP connection, optionally wrapped in rustls' unbuffered client.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError, ReadTraffic,
    UnbufferedStatus, WriteTraffic,
};

use super::buf::ByteQueue;
use super::error::TransportError;
use super::tls::TlsConfig;
use crate::sys;

/// Largest plaintext a TLS record carries.
const MAX_PLAINTEXT_RECORD: usize = 16 * 1024;
/// Upper bound on what TLS adds to one record with the ring suites rustls offers: 5 header
/// bytes, 8 explicit-nonce bytes (TLS 1.2 AES-GCM), 16 tag bytes, 1 inner content type (TLS 1.3).
const MAX_RECORD_OVERHEAD: usize = 32;
/// Largest record rustls accepts on the wire (payload limit plus header).
const MAX_WIRE_RECORD: usize = MAX_PLAINTEXT_RECORD + 2048 + 5;
/// Outgoing space application data never uses, kept for the small records rustls may have to
/// send at any time (close_notify, a KeyUpdate answer, a fatal alert), so encoding them cannot
/// fail for want of room.
const CONTROL_RESERVE: usize = 1024;
/// Smallest outgoing buffer: one full record plus the control reserve.
const MIN_OUT_CAPACITY: usize = MAX_PLAINTEXT_RECORD + MAX_RECORD_OVERHEAD + CONTROL_RESERVE;

/// Buffer sizes of a [`Transport`]. All buffers are allocated once, in [`Transport::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportOptions {
    /// Bytes queued for the socket (TLS records, or plaintext in plain mode). When full,
    /// [`Transport::write_plaintext`] accepts less and [`Transport::flush`] must make room.
    /// Raised to at least one full TLS record plus a small control reserve (17.4 KiB).
    pub out_capacity: usize,
    /// TLS only: ciphertext read from the socket and not yet decrypted. Must hold the largest
    /// handshake message the server sends (certificate chains; rustls caps them at 64 KiB) plus
    /// one record; raised to at least one maximum-size record (18 KiB). The decrypted-plaintext
    /// buffer is sized from it (this plus 16 KiB), so that writes never wait for reads.
    pub tls_in_capacity: usize,
}

impl Default for TransportOptions {
    /// 64 KiB out, 96 KiB TLS in (so 112 KiB of decrypted-plaintext staging).
    fn default() -> Self {
        Self {
            out_capacity: 64 * 1024,
            tls_in_capacity: 96 * 1024,
        }
    }
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
    /// Stopped before draining: `dst` is full, or an error is pending behind the bytes
    /// delivered. Call again (after consuming) without waiting for an event — with edge-triggered
    /// readiness no new event may come for bytes that are already buffered.
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
    /// rustls' client, driven with caller-owned buffers.
    conn: UnbufferedClientConnection,
    /// Server name, for error messages.
    host: Box<str>,
    /// Ciphertext read from the socket; its front is what rustls has not discarded yet.
    /// Invariant: handed to `process_tls_records` whole, and `discard` bytes are consumed from
    /// its front before the next call.
    incoming: ByteQueue,
    /// Decrypted plaintext not yet handed to the caller; always delivered before anything newer.
    /// Capacity is `incoming.capacity() + MAX_PLAINTEXT_RECORD`: the tail of one record left over
    /// by a read plus every record the incoming buffer can hold, which is the most a write can
    /// force rustls to decrypt.
    staged: ByteQueue,
    /// rustls reported `PeerClosed` (close_notify received).
    peer_closed: bool,
    /// Our close_notify has been encoded into the outgoing queue.
    close_notify_queued: bool,
}

/// One non-blocking connection: plain TCP or TLS (rustls, unbuffered API).
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
    /// The socket, non-blocking, TCP_NODELAY on.
    sock: TcpStream,
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

/// What one `process` pass stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// rustls needs more bytes from the socket (handshake in progress, or an idle established
    /// connection whose last record is incomplete).
    NeedInput,
    /// A decrypted record has nowhere to go; the caller must read first.
    Backlogged,
    /// Both sides have sent close_notify; nothing more will happen.
    Closed,
}

/// What the caller of `process` wants done on the way.
struct Io<'d, 's> {
    /// Plaintext destination (empty when not reading).
    dst: &'d mut [u8],
    /// Bytes of `dst` filled so far.
    filled: usize,
    /// Plaintext to encrypt (empty when not writing).
    src: &'s [u8],
    /// Bytes of `src` encrypted into the outgoing queue so far.
    accepted: usize,
    /// Stage whole records that do not fit `dst` (write, close and handshake paths) instead of
    /// stopping at the first one.
    stage_records: bool,
    /// Drop decrypted plaintext (after `close`: nobody will read it).
    discard_plaintext: bool,
    /// Queue a close_notify once writing is possible.
    close_notify: bool,
    /// rustls produced records of its own (handshake, alerts, key updates): flush soon.
    control_queued: bool,
}

impl<'d, 's> Io<'d, 's> {
    /// Nothing to read into or write from.
    fn idle() -> Io<'static, 'static> {
        Io {
            dst: &mut [],
            filled: 0,
            src: &[],
            accepted: 0,
            stage_records: true,
            discard_plaintext: false,
            close_notify: false,
            control_queued: false,
        }
    }
}

impl Transport {
    /// Starts a non-blocking connect to an already-resolved address (see
    /// [`resolve`](super::resolve), which must run before the loop, off the engine thread) and
    /// sets TCP_NODELAY. Returns at once, in [`Phase::Connecting`].
    ///
    /// For TLS, `host` must be a DNS name or IP literal; the rustls client is created here, so a
    /// bad name fails before any socket exists.
    pub fn connect(
        addr: SocketAddr,
        security: Security<'_>,
        options: TransportOptions,
    ) -> Result<Self, TransportError> {
        let tls = match security {
            Security::Plain => None,
            Security::Tls { config, host } => {
                let name = ServerName::try_from(host.to_owned()).map_err(|_| {
                    TransportError::InvalidHostName {
                        host: host.to_owned(),
                    }
                })?;
                let conn =
                    UnbufferedClientConnection::new(Arc::clone(config.client_config()), name)
                        .map_err(|e| TransportError::from_tls(host, e))?;
                let in_capacity = options.tls_in_capacity.max(MAX_WIRE_RECORD);
                Some(Tls {
                    conn,
                    host: host.into(),
                    incoming: ByteQueue::new(in_capacity),
                    staged: ByteQueue::new(in_capacity + MAX_PLAINTEXT_RECORD),
                    peer_closed: false,
                    close_notify_queued: false,
                })
            }
        };
        let out = ByteQueue::new(options.out_capacity.max(MIN_OUT_CAPACITY));
        let sock = TcpStream::connect(addr).map_err(|e| TransportError::from_connect(addr, e))?;
        sys::set_tcp_nodelay(&sock, true)
            .map_err(|source| TransportError::Socket { addr, source })?;
        Ok(Self {
            sock,
            peer: addr,
            phase: Phase::Connecting,
            failed: false,
            out,
            tls,
            deferred: None,
            plain_peer_closed: false,
        })
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
    /// socket. Non-zero after a read that filled `dst` mid-record, or after a write that had to
    /// decrypt pending input to get at rustls' write state.
    pub fn buffered_plaintext(&self) -> usize {
        self.tls.as_ref().map_or(0, |t| t.staged.len())
    }

    /// The ALPN protocol the server chose, if any (TLS only).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.as_ref().and_then(|t| t.conn.alpn_protocol())
    }

    /// The negotiated TLS version, once known.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        self.tls.as_ref().and_then(|t| t.conn.protocol_version())
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

    /// Runs the TLS handshake until it completes or the socket has nothing more.
    fn drive_tls_handshake(&mut self) -> Result<Handshake, TransportError> {
        let Some(tls) = self.tls.as_mut() else {
            self.phase = Phase::Established;
            return Ok(Handshake::Done);
        };
        loop {
            let mut io = Io::idle();
            let step = process(tls, &mut self.out, &mut io)?;
            // Send what rustls produced (ClientHello, Finished) before waiting for the server.
            flush_out(&mut self.sock, &mut self.out, self.peer)?;
            if !tls.conn.is_handshaking() {
                self.phase = Phase::Established;
                return Ok(Handshake::Done);
            }
            match step {
                Step::NeedInput => {}
                Step::Backlogged | Step::Closed => {
                    // Application data or close_notify before the handshake finished.
                    return Err(TransportError::Truncated { peer: self.peer });
                }
            }
            match fill(&mut self.sock, &mut tls.incoming, self.peer, &tls.host)? {
                Filled::Data => {}
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
                Ok(n) => filled += n,
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
        let Some(tls) = self.tls.as_mut() else {
            return Ok(ReadStatus::Drained { read: 0 });
        };
        let mut filled = tls.staged.pop_into(dst);
        loop {
            if !tls.staged.is_empty() {
                return Ok(ReadStatus::More { read: filled });
            }
            if tls.peer_closed {
                return Ok(ReadStatus::PeerClosed { read: filled });
            }
            if filled == dst.len() {
                return Ok(ReadStatus::More { read: filled });
            }
            let mut io = Io {
                dst: &mut *dst,
                filled,
                src: &[],
                accepted: 0,
                stage_records: false,
                discard_plaintext: false,
                close_notify: false,
                control_queued: false,
            };
            let processed = process(tls, &mut self.out, &mut io);
            filled = io.filled;
            if io.control_queued {
                // A key update answer or similar: send it now if the socket takes it.
                flush_out(&mut self.sock, &mut self.out, peer).map_err(|e| (e, filled))?;
            }
            match processed.map_err(|e| (e, filled))? {
                Step::NeedInput => {}
                Step::Backlogged | Step::Closed => continue,
            }
            if filled == dst.len() || tls.peer_closed {
                continue;
            }
            match fill(&mut self.sock, &mut tls.incoming, peer, &tls.host)
                .map_err(|e| (e, filled))?
            {
                Filled::Data => {}
                Filled::WouldBlock => return Ok(ReadStatus::Drained { read: filled }),
                Filled::Eof => return Err((TransportError::Truncated { peer }, filled)),
            }
        }
    }

    /// Queues `src` for sending (encrypting it for TLS) and returns how many bytes were taken.
    ///
    /// Never drops bytes: whatever is not taken (the outgoing queue is full; for TLS also when
    /// decrypted input is waiting for [`Transport::read_plaintext`] and has no room left) must be
    /// offered again. It does not send by itself unless the queue is too full to take `src`, in
    /// which case it flushes first; call [`Transport::flush`] after queueing a turn's output.
    pub fn write_plaintext(&mut self, src: &[u8]) -> Result<usize, TransportError> {
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
        let wanted = src.len().min(MAX_PLAINTEXT_RECORD) + MAX_RECORD_OVERHEAD + CONTROL_RESERVE;
        if self.out.free() < wanted {
            flush_out(&mut self.sock, &mut self.out, self.peer)?;
        }
        let mut io = Io { src, ..Io::idle() };
        process(tls, &mut self.out, &mut io)?;
        Ok(io.accepted)
    }

    /// Sends queued bytes until the queue is empty or the socket would block.
    pub fn flush(&mut self) -> Result<Flush, TransportError> {
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
    /// [`CloseStatus::Pending`]. Reading stays possible until the peer closes too; plaintext
    /// decrypted from now on is discarded. Before the connection is established, or after an
    /// error, it just shuts the socket down.
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
                    let mut io = Io {
                        close_notify: true,
                        discard_plaintext: true,
                        ..Io::idle()
                    };
                    if let Err(e) = process(tls, &mut self.out, &mut io) {
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
                    queue_pending_alert(tls, &mut self.out);
                    // Best effort: the connection is over whatever happens to the alert.
                    let _ = flush_out(&mut self.sock, &mut self.out, self.peer);
                }
            }
        }
        e
    }
}

/// Outcome of one socket read into the incoming TLS buffer.
enum Filled {
    /// Some bytes arrived.
    Data,
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
                incoming.commit(n);
                return Ok(Filled::Data);
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

/// Drives rustls over the buffered ciphertext until it needs more input, doing on the way what
/// `io` asks: decrypted records go to `io.dst` (then to the staging queue), `io.src` is
/// encrypted into `out`, a close_notify is queued. Handshake and control records rustls emits
/// are encoded into `out` (the caller flushes them).
fn process(
    tls: &mut Tls,
    out: &mut ByteQueue,
    io: &mut Io<'_, '_>,
) -> Result<Step, TransportError> {
    loop {
        let UnbufferedStatus { mut discard, state } =
            tls.conn.process_tls_records(tls.incoming.filled_mut());
        let step = match state {
            Err(e) => return Err(TransportError::from_tls(&tls.host, e)),
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                match deliver(&mut traffic, &mut tls.staged, io, &mut discard) {
                    Ok(true) => None,
                    Ok(false) => Some(Step::Backlogged),
                    Err(e) => return Err(TransportError::from_tls(&tls.host, e)),
                }
            }
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                encode(&mut data, out, &tls.host)?;
                io.control_queued = true;
                None
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                // The records are in `out`, which the caller flushes in order; as far as rustls
                // is concerned they are handed over.
                transmit.done();
                io.control_queued = true;
                None
            }
            Ok(ConnectionState::BlockedHandshake) => Some(Step::NeedInput),
            Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                if !tls.close_notify_queued {
                    if io.close_notify {
                        close_notify(&mut traffic, out, &tls.host)?;
                        tls.close_notify_queued = true;
                    } else if io.accepted < io.src.len() {
                        encrypt(&mut traffic, io, out, &tls.host)?;
                    }
                }
                Some(Step::NeedInput)
            }
            Ok(ConnectionState::PeerClosed) => {
                tls.peer_closed = true;
                None
            }
            Ok(ConnectionState::Closed) => {
                tls.peer_closed = true;
                Some(Step::Closed)
            }
            Ok(other) => {
                return Err(TransportError::UnexpectedTlsState {
                    host: tls.host.to_string(),
                    state: format!("{other:?}"),
                })
            }
        };
        tls.incoming.consume(discard);
        if let Some(step) = step {
            return Ok(step);
        }
    }
}

/// Hands the decrypted records of `traffic` to `io.dst`, overflowing into `staged`. Returns
/// `false` when a record had nowhere to go (it stays inside rustls for the next call).
fn deliver(
    traffic: &mut ReadTraffic<'_, '_, ClientConnectionData>,
    staged: &mut ByteQueue,
    io: &mut Io<'_, '_>,
    discard: &mut usize,
) -> Result<bool, rustls::Error> {
    while let Some(len) = traffic.peek_len() {
        if !io.discard_plaintext {
            let direct_room = if staged.is_empty() {
                io.dst.len() - io.filled
            } else {
                0
            };
            let overflow = len.get().saturating_sub(direct_room);
            let fits = overflow == 0
                || (overflow <= staged.free() && (direct_room > 0 || io.stage_records));
            if !fits {
                return Ok(false);
            }
        }
        let Some(record) = traffic.next_record() else {
            break;
        };
        let record = record?;
        *discard += record.discard;
        if io.discard_plaintext {
            continue;
        }
        let payload = record.payload;
        let direct = if staged.is_empty() {
            payload.len().min(io.dst.len() - io.filled)
        } else {
            0
        };
        io.dst[io.filled..io.filled + direct].copy_from_slice(&payload[..direct]);
        io.filled += direct;
        let staged_now = staged.push(&payload[direct..]);
        debug_assert_eq!(staged_now, payload.len() - direct, "room was checked above");
    }
    Ok(true)
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

/// Plaintext bytes that fit in `room` bytes of records.
fn plaintext_fitting(room: usize) -> usize {
    let per_record = MAX_PLAINTEXT_RECORD + MAX_RECORD_OVERHEAD;
    let full = room / per_record;
    let rest = (room % per_record).saturating_sub(MAX_RECORD_OVERHEAD);
    full * MAX_PLAINTEXT_RECORD + rest
}

/// Encrypts as much of the rest of `io.src` as fits in `out` (minus the control reserve).
fn encrypt(
    traffic: &mut WriteTraffic<'_, ClientConnectionData>,
    io: &mut Io<'_, '_>,
    out: &mut ByteQueue,
    host: &str,
) -> Result<(), TransportError> {
    let src = &io.src[io.accepted..];
    let n = plaintext_fitting(out.free().saturating_sub(CONTROL_RESERVE)).min(src.len());
    if n == 0 {
        return Ok(());
    }
    let records = n.div_ceil(MAX_PLAINTEXT_RECORD);
    out.reserve_tail(n + records * MAX_RECORD_OVERHEAD);
    match traffic.encrypt(&src[..n], out.spare_mut()) {
        Ok(written) => {
            out.commit(written);
            io.accepted += n;
            Ok(())
        }
        // Records rustls had pending (alerts, key updates) took part of the room: nothing was
        // written; the caller flushes and offers the bytes again.
        Err(EncryptError::InsufficientSize(_)) => Ok(()),
        Err(EncryptError::EncryptExhausted) => Err(TransportError::KeysExhausted {
            host: host.to_owned(),
        }),
    }
}

/// Encodes a close_notify alert into the outgoing queue.
fn close_notify(
    traffic: &mut WriteTraffic<'_, ClientConnectionData>,
    out: &mut ByteQueue,
    host: &str,
) -> Result<(), TransportError> {
    out.reserve_tail(CONTROL_RESERVE);
    match traffic.queue_close_notify(out.spare_mut()) {
        Ok(n) => {
            out.commit(n);
            Ok(())
        }
        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
            Err(TransportError::OutgoingOverflow {
                required: required_size,
                capacity: out.capacity(),
            })
        }
        Err(EncryptError::EncryptExhausted) => Err(TransportError::KeysExhausted {
            host: host.to_owned(),
        }),
    }
}

/// After a TLS error, lets rustls emit the alert it queued (e.g. `bad_certificate`) into `out`.
fn queue_pending_alert(tls: &mut Tls, out: &mut ByteQueue) {
    // A handful of steps suffices: encode the alert, mark it transmitted, then rustls reports
    // the error again.
    for _ in 0..4 {
        let UnbufferedStatus { discard, state } =
            tls.conn.process_tls_records(tls.incoming.filled_mut());
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
        if !more {
            break;
        }
    }
}
