//! [`WsConnection`]: one WebSocket client connection on the engine thread — a
//! [`Transport`] (TCP or TLS) carrying the [`ws`](crate::ws) handshake and [`Codec`], with every
//! buffer allocated once in [`WsConnection::connect`].
//!
//! This is the thin glue between the byte-moving layers and whoever consumes messages (a venue
//! session, the `spinwire tap` command, the Autobahn client). The driver registers the
//! connection with the [`reactor`](crate::reactor) and calls [`WsConnection::drive`] on every
//! readiness event for its token (and again whenever `drive` answers [`Drive::Again`]);
//! `drive` does all the I/O the socket allows — TCP connect, TLS handshake, HTTP upgrade, reads
//! until `WouldBlock`, pongs and close replies, queued sends — and hands each received message
//! to a callback as a slice borrowed from the connection's read buffer. The callback may answer
//! through the [`Outbox`] it is given, without copying the message first.
//!
//! # Closing
//!
//! [`WsConnection::close`] starts the closing handshake; the server's close reply (or the server
//! closing first, answered automatically) ends it, after which TCP is closed (TLS close_notify,
//! then FIN). A protocol violation by the server fails the connection: the close frame with the
//! error's code (1002, 1007, 1009) is sent, TCP is closed, and `drive` returns the error. A peer
//! that drops TCP without a close frame ends the connection with
//! [`ConnError::ClosedWithoutCloseFrame`] (close code 1006 in RFC 6455's terms).
//!
//! # Reconnecting
//!
//! [`WsConnection::reconnect`] starts a new connection in place of a closed one, reusing its
//! WebSocket buffers (about 5 MiB with the default limits): a reconnect then neither allocates
//! nor zeroes them, which on a small machine took longer than the TCP connect itself. The
//! session driver reconnects this way.
//!
//! # Kernel socket options
//!
//! [`ConnectionConfig::busy_poll_us`], [`ConnectionConfig::recv_buffer`] and
//! [`ConnectionConfig::send_buffer`] (`SO_BUSY_POLL`, `SO_RCVBUF`, `SO_SNDBUF`; all `None` by
//! default: the kernel's defaults) are set on the TCP socket of every connect and reconnect,
//! before the TCP connect is issued ([`Transport::connect_with`]). A refused value fails
//! [`WsConnection::connect`] / [`WsConnection::reconnect`] with
//! [`TransportError::Socket`] naming the option, the value and the OS reason;
//! [`WsConnection::applied_socket_options`] tells what the kernel really set.
//!
//! # Time
//!
//! Like the layers below, a connection reads no clock: connect and close timeouts belong to the
//! caller (the session's timer table), which calls [`WsConnection::abort`] when one expires.

use std::net::SocketAddr;

use mio::{Registry, Token};

use crate::transport::{
    resolve, AppliedSocketOptions, CloseStatus, Flush, Handshake, ReadStatus, Security,
    SocketOptions, TlsConfig, TlsConfigError, Transport, TransportError, TransportOptions,
};
use crate::ws::frame::MAX_CONTROL_PAYLOAD;
use crate::ws::{
    ClientHandshake, CloseFrame, CloseState, Codec, Config, ConfigError, EncodeError,
    HandshakeError, HandshakeRequest, HandshakeStatus, Message, OpCode, ProtocolError, Sender,
};

/// Buffer sizes of a [`WsConnection`], and the kernel options of its TCP socket.
///
/// The three kernel options (`busy_poll_us`, `recv_buffer`, `send_buffer`) are `None` by
/// default, which leaves the kernel's defaults (and buffer auto-tuning) alone. When set, they
/// are applied to the socket of every [`WsConnection::connect`] and
/// [`WsConnection::reconnect`] before the TCP connect is issued; a value the kernel refuses
/// fails that call with [`TransportError::Socket`] (option, value and OS reason), never
/// silently. The kernel may store a buffer size other than the one asked (it doubles it and
/// caps it at `net.core.rmem_max` / `wmem_max`): that is not an error, and
/// [`WsConnection::applied_socket_options`] returns what it really set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// WebSocket limits and the read buffer's size.
    pub ws: Config,
    /// The transport's buffers.
    pub transport: TransportOptions,
    /// The send buffer frames are encoded into before the transport takes them. One frame must
    /// fit whole: a message larger than this minus 14 bytes of header cannot be sent. (A
    /// user-space buffer; the kernel's is [`send_buffer`](Self::send_buffer).)
    pub send_buffer_size: usize,
    /// `SO_BUSY_POLL` for the socket, in microseconds: a read on it busy-polls the network
    /// device's receive queue (up to this long when the read blocks) instead of waiting for the
    /// interrupt, trading CPU for receive latency (see [`sys::set_busy_poll`] and socket(7)).
    /// Only NIC queues with NAPI support it; loopback ignores it. Older kernels refuse to raise
    /// it without `CAP_NET_ADMIN`; values above `i32::MAX` are refused.
    /// `None` (default): the kernel default, `net.core.busy_read`.
    ///
    /// [`sys::set_busy_poll`]: crate::sys::set_busy_poll
    pub busy_poll_us: Option<u32>,
    /// `SO_RCVBUF` for the socket, in bytes: how much the server may send before we read. Set
    /// before the connect, so the window scale advertised in the SYN follows it (a small value
    /// caps the TCP window for the connection's life). Turns receive-buffer auto-tuning off for
    /// the socket; the kernel doubles the value and caps it at `net.core.rmem_max`.
    /// `None` (default): the kernel default (`net.ipv4.tcp_rmem`) with auto-tuning.
    pub recv_buffer: Option<usize>,
    /// `SO_SNDBUF` for the socket, in bytes: how much unacknowledged data the kernel keeps
    /// before writes stop (then frames wait in the transport's queue and
    /// [`send_buffer_size`](Self::send_buffer_size)). Turns send-buffer auto-tuning off for the
    /// socket; the kernel doubles the value and caps it at `net.core.wmem_max`.
    /// `None` (default): the kernel default (`net.ipv4.tcp_wmem`) with auto-tuning.
    pub send_buffer: Option<usize>,
}

impl Default for ConnectionConfig {
    /// [`Config::default`] limits, default transport buffers, a 256 KiB send buffer, the
    /// kernel's default socket options.
    fn default() -> Self {
        Self {
            ws: Config::default(),
            transport: TransportOptions::default(),
            send_buffer_size: 256 * 1024,
            busy_poll_us: None,
            recv_buffer: None,
            send_buffer: None,
        }
    }
}

impl ConnectionConfig {
    /// The kernel options for the transport's socket.
    fn socket_options(&self) -> SocketOptions {
        SocketOptions {
            busy_poll_us: self.busy_poll_us,
            recv_buffer: self.recv_buffer,
            send_buffer: self.send_buffer,
        }
    }
}

/// The smallest send buffer: the upgrade request must fit.
const MIN_SEND_BUFFER: usize = 4096;

/// Transport reads one [`WsConnection::drive`] call makes before it answers [`Drive::Again`]
/// (a TLS read opens at most 64 records): a peer that keeps the socket full, or floods it with
/// records that carry no data, cannot keep the engine thread from the other sessions.
const MAX_READS_PER_DRIVE: u32 = 8;

/// Where a [`WsConnection`] is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect and, for `wss://`, the TLS handshake are in progress.
    Connecting,
    /// The HTTP upgrade request is sent or queued; waiting for the `101` response.
    Upgrading,
    /// Messages flow both ways.
    Open,
    /// The closing handshake or the TCP close is in progress; received messages are still
    /// delivered until the server's close frame.
    Closing,
    /// Over: see [`WsConnection::close_frame`] for how it ended.
    Closed,
}

/// What [`WsConnection::drive`] asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// Everything the socket allowed is done: wait for the next readiness event.
    Wait,
    /// Stopped early (a buffer filled up): call `drive` again without waiting for an event —
    /// with edge-triggered readiness none may come for bytes that are already buffered.
    Again,
    /// The connection has ended cleanly (closing handshake done, TCP closed). Deregister and
    /// drop it.
    Closed,
}

/// What a [`WsConnection`] hands to the callback of [`WsConnection::drive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The upgrade succeeded: messages may be sent from now on.
    Open,
    /// A message, borrowed from the read buffer until the callback returns. Pings are answered
    /// and close frames replied to by the connection itself; they are shown for information.
    Message(Message<'a>),
}

/// Why a connection failed. Each variant says what the caller should do; after any of them the
/// connection is closed (or closing): deregister and drop it, then reconnect if that is the
/// policy.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// TCP or TLS failed (refused, reset, certificate rejected, truncated...): see the source.
    /// [`TransportError::Socket`] is a refused socket option (TCP_NODELAY or one of the kernel
    /// options in [`ConnectionConfig`]): a configuration problem, which a reconnect repeats.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The HTTP upgrade was refused or malformed: see the source (status code, bad accept key...).
    #[error("WebSocket handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The buffer sizes in [`ConnectionConfig`] cannot be used: fix the configuration.
    #[error("bad WebSocket configuration: {0}")]
    Config(#[from] ConfigError),
    /// The server broke the WebSocket protocol; a close frame with
    /// [`ProtocolError::close_code`] was sent and TCP closed. Reconnect; report the error.
    #[error("server broke the WebSocket protocol ({0}); closed with {code}", code = .0.close_code())]
    Protocol(#[from] ProtocolError),
    /// The server closed TCP (or TLS) without a WebSocket close frame (close code 1006): an
    /// abnormal closure. Reconnect.
    #[error("server closed the connection without a WebSocket close frame (1006)")]
    ClosedWithoutCloseFrame,
    /// The server's response did not fit the read buffer before the upgrade completed.
    #[error("upgrade response does not fit the read buffer")]
    ResponseTooLarge,
    /// The connection was already closed or failed: nothing more can be done with it.
    #[error("connection is closed")]
    Closed,
}

/// Why a message could not be queued. Small and `Copy`: returned on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The send buffer and the transport's queue are full: the kernel is not taking bytes as fast
    /// as they are produced. Nothing was queued; try again after the next writable event, or
    /// apply back-pressure upstream.
    #[error("send buffer full")]
    Full,
    /// The frame can never fit the send buffer: raise
    /// [`ConnectionConfig::send_buffer_size`].
    #[error("message larger than the send buffer")]
    TooLarge,
    /// The connection is not open: before the upgrade, or a close was sent or received.
    #[error("connection is not open")]
    NotOpen,
}

/// Bytes encoded but not yet taken by the transport: `buf[start..end]`.
#[derive(Debug)]
struct SendBuf {
    /// Allocated once. Invariant: `start <= end <= buf.len()`.
    buf: Box<[u8]>,
    /// First byte not yet handed to the transport.
    start: usize,
    /// End of the encoded bytes.
    end: usize,
}

impl SendBuf {
    fn new(size: usize) -> Self {
        Self {
            buf: vec![0; size].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The free tail, after moving pending bytes to the front when that makes room.
    fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Free bytes after compaction.
    fn free(&self) -> usize {
        self.buf.len() - (self.end - self.start)
    }

    /// Hands as much as the transport takes to it and flushes, until everything is out or the
    /// kernel pushes back ([`Flush::Pending`]: a writable event will follow). Stopping any
    /// earlier would strand bytes: with edge-triggered readiness no event comes for a socket
    /// that stays writable.
    fn push_to(&mut self, transport: &mut Transport) -> Result<(), TransportError> {
        loop {
            if !self.is_empty() {
                let n = transport.write_plaintext(&self.buf[self.start..self.end])?;
                self.start += n;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
            }
            if transport.wants_write() && transport.flush()? == Flush::Pending {
                return Ok(());
            }
            if self.is_empty() {
                return Ok(());
            }
        }
    }
}

/// The send side lent to the callback of [`WsConnection::drive`], usable while the received
/// message still borrows the read buffer (to echo it without a copy, say).
#[derive(Debug)]
pub struct Outbox<'c> {
    sender: &'c mut Sender,
    send: &'c mut SendBuf,
    transport: &'c mut Transport,
}

impl Outbox<'_> {
    /// Queues a text message.
    #[inline]
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send(OpCode::Text, text.as_bytes())
    }

    /// Queues a binary message.
    #[inline]
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send(OpCode::Binary, data)
    }

    /// Queues a ping (at most 125 bytes of payload).
    #[inline]
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send(OpCode::Ping, payload)
    }

    /// Queues one frame, pushing queued bytes to the transport first when the send buffer is
    /// too full for it.
    fn send(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        queue_frame(self.sender, self.send, self.transport, opcode, payload)
    }
}

/// Encodes one frame into `send`, making room by pushing to the transport if needed.
#[inline]
fn queue_frame(
    sender: &mut Sender,
    send: &mut SendBuf,
    transport: &mut Transport,
    opcode: OpCode,
    payload: &[u8],
) -> Result<(), SendError> {
    if sender.state() != CloseState::Open {
        return Err(SendError::NotOpen);
    }
    let needed = Codec::frame_len(payload.len());
    if needed > send.buf.len() {
        return Err(SendError::TooLarge);
    }
    if needed > send.free() {
        // A transport error here surfaces from the next `drive`; for the caller it is "full".
        let _ = send.push_to(transport);
        if needed > send.free() {
            return Err(SendError::Full);
        }
    }
    match sender.encode(send.spare(), opcode, true, payload) {
        Ok(n) => {
            send.end += n;
            Ok(())
        }
        Err(EncodeError::BufferTooSmall { .. }) => Err(SendError::Full),
        Err(_) => Err(SendError::NotOpen),
    }
}

/// Encodes the control frame the codec owes (pong, close reply, failing close) into `send`,
/// pushing to the transport first if the send buffer is too full for it. If even then it does
/// not fit, it stays owed and goes out on a later call.
fn queue_control(sender: &mut Sender, send: &mut SendBuf, transport: &mut Transport) {
    if send.free() < Codec::frame_len(MAX_CONTROL_PAYLOAD) {
        let _ = send.push_to(transport);
    }
    if let Ok(n) = sender.poll_transmit(send.spare()) {
        send.end += n;
    }
}

/// One WebSocket client connection. See the [module docs](self).
#[derive(Debug)]
pub struct WsConnection {
    /// TCP or TLS.
    transport: Transport,
    /// The HTTP upgrade, until it completes.
    handshake: ClientHandshake,
    /// The WebSocket session (read buffer, protocol state, mask keys).
    codec: Codec,
    /// Encoded frames (and at first the upgrade request) not yet taken by the transport.
    send: SendBuf,
    /// Life-cycle phase.
    phase: Phase,
    /// The close frame the server sent, if any (code and up to 123 bytes of reason).
    peer_close: Option<(u16, [u8; 123], u8)>,
    /// The transport's buffer sizes, for [`WsConnection::reconnect`].
    transport_options: TransportOptions,
}

impl WsConnection {
    /// Starts connecting to an already-resolved address (see
    /// [`transport::resolve`](crate::transport::resolve), which must run off the engine thread)
    /// and queues the upgrade `request`. Returns at once; register the connection and call
    /// [`drive`](Self::drive) on its events.
    ///
    /// The kernel options of `config` (`busy_poll_us`, `recv_buffer`, `send_buffer`) are set on
    /// the socket before the TCP connect is issued (and again on each
    /// [`reconnect`](Self::reconnect)); see [`ConnectionConfig`].
    ///
    /// # Errors
    /// [`ConnError::Config`] for unusable WebSocket limits; [`ConnError::Handshake`] for an
    /// upgrade request that cannot be sent; [`ConnError::Transport`] when the socket cannot be
    /// created or connected, or an option is refused ([`TransportError::Socket`]: option, value
    /// asked, OS reason; no connect was issued).
    pub fn connect(
        addr: SocketAddr,
        security: Security<'_>,
        request: &HandshakeRequest<'_>,
        config: &ConnectionConfig,
    ) -> Result<Self, ConnError> {
        let codec = Codec::new(config.ws)?;
        let mut send = SendBuf::new(config.send_buffer_size.max(MIN_SEND_BUFFER));
        let (handshake, n) = ClientHandshake::start(request, send.spare())?;
        send.end = n;
        let transport =
            Transport::connect_with(addr, security, config.transport, config.socket_options())?;
        Ok(Self {
            transport,
            handshake,
            codec,
            send,
            phase: Phase::Connecting,
            peer_close: None,
            transport_options: config.transport,
        })
    }

    /// Starts a new connection in place of this one, like [`connect`](Self::connect) with the
    /// configuration this connection was made with (kernel socket options included), but keeping the WebSocket read and
    /// reassembly buffers and the send buffer (about 5 MiB with the default [`Config`]) and the
    /// transport's queues ([`Transport::reconnect`]), so a reconnect neither allocates nor zeroes
    /// them again: it allocates only rustls' handshake state. The old connection, if still open, is
    /// aborted first (no close frame, see [`abort`](Self::abort)); deregister it from its
    /// registry before calling this, and register again after.
    ///
    /// # Errors
    /// As [`connect`](Self::connect); the connection is then [`Phase::Closed`] and may be
    /// reconnected again later.
    pub fn reconnect(
        &mut self,
        addr: SocketAddr,
        security: Security<'_>,
        request: &HandshakeRequest<'_>,
    ) -> Result<(), ConnError> {
        self.abort();
        self.codec.reset();
        self.send.start = 0;
        self.send.end = 0;
        self.peer_close = None;
        let (handshake, n) = ClientHandshake::start(request, self.send.spare())?;
        self.send.end = n;
        self.handshake = handshake;
        self.transport
            .reconnect(addr, security, self.transport_options)?;
        self.phase = Phase::Connecting;
        Ok(())
    }

    /// Registers the socket under `token` (readable and writable, edge-triggered, for the whole
    /// connection).
    pub fn register(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        self.transport.register(registry, token)
    }

    /// Removes the socket from `registry` (before dropping the connection).
    pub fn deregister(&mut self, registry: &Registry) -> std::io::Result<()> {
        self.transport.deregister(registry)
    }

    /// Where the connection is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The transport, for its accessors (peer address, TLS version...).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// What the kernel set for the socket options of the [`ConnectionConfig`]
    /// (`busy_poll_us`, `recv_buffer`, `send_buffer`) on the current socket, read back right
    /// after setting them; `None` for an option left at the kernel default. Buffer sizes are as
    /// the kernel accounts them (doubled, capped at `net.core.rmem_max` / `wmem_max`).
    pub fn applied_socket_options(&self) -> AppliedSocketOptions {
        self.transport.applied_socket_options()
    }

    /// The server's close frame, once one arrived: its code and reason.
    pub fn close_frame(&self) -> Option<CloseFrame<'_>> {
        self.peer_close
            .as_ref()
            .map(|(code, reason, len)| CloseFrame {
                code: *code,
                // The decoder validated the reason as UTF-8 before we copied it whole.
                reason: std::str::from_utf8(&reason[..*len as usize]).unwrap_or(""),
            })
    }

    /// Queues a text message. See [`Outbox::send_text`] for sending from inside `drive`'s
    /// callback. Call [`flush`](Self::flush) (or `drive`) to push it out.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_frame(OpCode::Text, text.as_bytes())
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_frame(OpCode::Binary, data)
    }

    /// Queues a ping (at most 125 bytes of payload): the way to probe a quiet connection.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_frame(OpCode::Ping, payload)
    }

    fn send_frame(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        if self.phase != Phase::Open {
            return Err(SendError::NotOpen);
        }
        queue_frame(
            self.codec.sender(),
            &mut self.send,
            &mut self.transport,
            opcode,
            payload,
        )
    }

    /// Pushes queued bytes to the socket as far as it takes them.
    pub fn flush(&mut self) -> Result<(), ConnError> {
        if self.phase == Phase::Closed {
            return Ok(());
        }
        self.send
            .push_to(&mut self.transport)
            .map_err(|e| self.fail(e.into()))
    }

    /// Lets a short socket read end a read as drained (one system call less per wake-up); see
    /// [`Transport::set_short_read_drains`]. The caller must then pass on every readiness event
    /// that reports the peer's FIN or an error with [`WsConnection::note_read_closed`].
    pub fn set_short_read_drains(&mut self, on: bool) {
        self.transport.set_short_read_drains(on);
    }

    /// A readiness event reported the peer's FIN or a socket error ([`Transport::note_read_closed`]).
    pub fn note_read_closed(&mut self) {
        self.transport.note_read_closed();
    }

    /// Whether bytes are waiting for the socket (the driver's cue to keep writable interest in
    /// mind; `drive` flushes on every event).
    pub fn wants_write(&self) -> bool {
        !self.send.is_empty() || self.transport.wants_write()
    }

    /// Starts the closing handshake with `code` and `reason` (at most 123 bytes). Messages keep
    /// arriving through `drive` until the server's close reply; then TCP is closed.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), SendError> {
        match self.phase {
            Phase::Open => {}
            Phase::Closing | Phase::Closed => return Ok(()),
            Phase::Connecting | Phase::Upgrading => {
                self.abort();
                return Ok(());
            }
        }
        let needed = Codec::frame_len(reason.len());
        if needed > self.send.free() {
            let _ = self.send.push_to(&mut self.transport);
        }
        match self.codec.encode_close(self.send.spare(), code, reason) {
            Ok(n) => {
                self.send.end += n;
                self.phase = Phase::Closing;
                let _ = self.send.push_to(&mut self.transport);
                Ok(())
            }
            Err(EncodeError::BufferTooSmall { .. }) => Err(SendError::Full),
            Err(EncodeError::Closing) => Ok(()),
            Err(_) => Err(SendError::TooLarge),
        }
    }

    /// Ends the connection now: no closing handshake, TCP closed as it is (for an expired
    /// timeout or a half-open peer).
    pub fn abort(&mut self) {
        self.phase = Phase::Closed;
        let _ = self.transport.close();
    }

    /// Marks the connection failed and closes TCP; returns `err` for the caller.
    fn fail(&mut self, err: ConnError) -> ConnError {
        self.abort();
        err
    }

    /// Does all the I/O the socket allows and hands every event to `on_event`. Call it on every
    /// readiness event for the connection's token, and again at once when it answers
    /// [`Drive::Again`]. Allocates nothing.
    pub fn drive<F>(&mut self, mut on_event: F) -> Result<Drive, ConnError>
    where
        F: FnMut(Event<'_>, &mut Outbox<'_>),
    {
        match self.phase {
            Phase::Closed => return Ok(Drive::Closed),
            Phase::Connecting => match self.transport.handshake() {
                Ok(Handshake::InProgress) => return Ok(Drive::Wait),
                Ok(Handshake::Done) => self.phase = Phase::Upgrading,
                Err(e) => return Err(self.fail(e.into())),
            },
            _ => {}
        }
        if let Err(e) = self.send.push_to(&mut self.transport) {
            return Err(self.fail(e.into()));
        }
        if self.phase == Phase::Upgrading {
            match self.read_upgrade() {
                Ok(true) => {
                    self.phase = Phase::Open;
                    let Self {
                        codec,
                        send,
                        transport,
                        ..
                    } = self;
                    on_event(
                        Event::Open,
                        &mut Outbox {
                            sender: codec.sender(),
                            send,
                            transport,
                        },
                    );
                }
                Ok(false) => return Ok(Drive::Wait),
                Err(e) => return Err(self.fail(e)),
            }
        }
        let status = self.read_messages(&mut on_event);
        // A failing close owed after a protocol error goes out with the rest.
        if self.codec.wants_transmit() {
            queue_control(self.codec.sender(), &mut self.send, &mut self.transport);
        }
        if let Err(e) = self.send.push_to(&mut self.transport) {
            return Err(self.fail(e.into()));
        }
        let status = match status {
            Ok(status) => status,
            Err(e) => {
                // Protocol failure: the failing close frame was queued above; close TCP behind it.
                self.phase = Phase::Closing;
                let _ = self.transport.close();
                self.phase = Phase::Closed;
                return Err(e);
            }
        };
        match self.codec.state() {
            CloseState::CloseSent | CloseState::CloseReceived if self.phase == Phase::Open => {
                self.phase = Phase::Closing;
            }
            _ => {}
        }
        let peer_done = matches!(status, ReadStatus::PeerClosed { .. });
        if self.codec.is_finished() || peer_done {
            if peer_done && !matches!(self.codec.state(), CloseState::Closed) {
                // TCP (or TLS) ended before the closing handshake did.
                return Err(self.fail(ConnError::ClosedWithoutCloseFrame));
            }
            // Closing handshake done: the server closes TCP first (RFC 6455 §7.1.1); once it
            // has, close ours. Until then wait (`abort` is the caller's timeout).
            if peer_done {
                return match self.transport.close() {
                    Ok(CloseStatus::Done) => {
                        self.phase = Phase::Closed;
                        Ok(Drive::Closed)
                    }
                    Ok(CloseStatus::Pending) => Ok(Drive::Wait),
                    Err(e) => Err(self.fail(e.into())),
                };
            }
            self.phase = Phase::Closing;
            return Ok(Drive::Wait);
        }
        Ok(match status {
            ReadStatus::More { .. } => Drive::Again,
            _ => Drive::Wait,
        })
    }

    /// Reads the upgrade response; `Ok(true)` once it is accepted (any bytes behind it are in
    /// the codec's read buffer).
    fn read_upgrade(&mut self) -> Result<bool, ConnError> {
        loop {
            let spare = self.codec.spare();
            if spare.is_empty() {
                return Err(ConnError::ResponseTooLarge);
            }
            let status = self.transport.read_plaintext(spare)?;
            let n = status.read();
            if n > 0 {
                match self.handshake.feed(&spare[..n])? {
                    HandshakeStatus::NeedMore => {}
                    HandshakeStatus::Done { leftover_len } => {
                        spare.copy_within(n - leftover_len..n, 0);
                        self.codec.commit(leftover_len);
                        return Ok(true);
                    }
                }
            }
            match status {
                ReadStatus::More { .. } => continue,
                ReadStatus::Drained { .. } => return Ok(false),
                ReadStatus::PeerClosed { .. } => return Err(ConnError::ClosedWithoutCloseFrame),
            }
        }
    }

    /// Reads until the socket is drained (or the read buffer is full) and delivers every
    /// complete message. Returns the last read status.
    fn read_messages<F>(&mut self, on_event: &mut F) -> Result<ReadStatus, ConnError>
    where
        F: FnMut(Event<'_>, &mut Outbox<'_>),
    {
        // Messages that arrived with the upgrade response (or are left from an earlier turn).
        self.deliver(on_event)?;
        let mut reads = 0;
        loop {
            reads += 1;
            if matches!(
                self.codec.state(),
                CloseState::Closed | CloseState::Failed(_)
            ) {
                // Nothing more is decoded after the closing handshake; read (and drop) what
                // still arrives only to see the server's FIN.
                let status = self.transport.read_plaintext(self.codec.spare())?;
                if matches!(status, ReadStatus::More { .. }) && reads < MAX_READS_PER_DRIVE {
                    continue;
                }
                return Ok(status);
            }
            let status = self.transport.read_plaintext(self.codec.spare())?;
            self.codec.commit(status.read());
            self.deliver(on_event)?;
            if !matches!(status, ReadStatus::More { .. }) || reads >= MAX_READS_PER_DRIVE {
                // Drained, closed, or this connection's share of the turn is used up: `More`
                // becomes `Drive::Again` and the caller comes back after the other sessions.
                return Ok(status);
            }
            if self.codec.spare().is_empty() {
                // A partial frame fills the buffer: impossible with a buffer of at least one
                // maximal frame; stop rather than spin.
                return Ok(status);
            }
        }
    }

    /// Decodes and hands out every complete message in the read buffer.
    fn deliver<F>(&mut self, on_event: &mut F) -> Result<(), ConnError>
    where
        F: FnMut(Event<'_>, &mut Outbox<'_>),
    {
        let Self {
            codec,
            send,
            transport,
            peer_close,
            ..
        } = self;
        loop {
            let (message, sender) = codec.next_message_and_sender();
            match message {
                Ok(Some(message)) => {
                    if let Message::Close(frame) = message {
                        let mut reason = [0u8; 123];
                        let (code, len) = match frame {
                            Some(f) => {
                                let len = f.reason.len().min(123);
                                reason[..len].copy_from_slice(&f.reason.as_bytes()[..len]);
                                (f.code, len as u8)
                            }
                            None => (crate::ws::close_code::NO_STATUS, 0),
                        };
                        *peer_close = Some((code, reason, len));
                    }
                    on_event(
                        Event::Message(message),
                        &mut Outbox {
                            sender: &mut *sender,
                            send,
                            transport,
                        },
                    );
                    // A pong or close reply owed for this message goes out in order, before
                    // whatever the next message makes the caller send: every ping is answered,
                    // including one between the fragments of a message (Autobahn 2.10, 5.6).
                    if sender.wants_transmit() {
                        queue_control(sender, send, transport);
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(ConnError::Protocol(e)),
            }
        }
    }
}

/// Where to connect, prepared before the engine loop starts: the parsed URL, its TLS
/// configuration (for `wss://`: the system roots, or only the CA in `ca_file`) and its first
/// resolved address. Preparing blocks (DNS, reading the CA file): do it off the engine thread.
#[derive(Debug)]
pub struct Endpoint {
    /// The URL.
    pub url: WsUrl,
    /// `Some` for `wss://`.
    pub tls: Option<TlsConfig>,
    /// The first address the host resolved to.
    pub addr: SocketAddr,
}

/// Why an [`Endpoint`] could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The URL cannot be used: fix it.
    #[error("bad URL: {0}")]
    Url(#[from] UrlError),
    /// The CA file or the system roots could not be loaded: see the source.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] TlsConfigError),
    /// The host name did not resolve (or resolved to nothing).
    #[error("{0}")]
    Resolve(TransportError),
}

impl Endpoint {
    /// Parses `url`, builds its TLS configuration and resolves its host.
    pub fn prepare(url: &str, ca_file: Option<&std::path::Path>) -> Result<Self, EndpointError> {
        let url = WsUrl::parse(url)?;
        let tls = if url.tls {
            let builder = TlsConfig::builder();
            let builder = match ca_file {
                Some(path) => builder.ca_file(path),
                None => builder,
            };
            Some(builder.build()?)
        } else {
            None
        };
        // `resolve` answers at least one address or an error.
        let addr = resolve(&url.host, url.port).map_err(EndpointError::Resolve)?[0];
        Ok(Self { url, tls, addr })
    }

    /// The transport security for this endpoint: TLS with the URL's host as the server name, or
    /// plain TCP.
    pub fn security(&self) -> Security<'_> {
        match &self.tls {
            Some(config) => Security::Tls {
                config,
                host: &self.url.host,
            },
            None => Security::Plain,
        }
    }

    /// The upgrade request for the URL's host, port and path.
    pub fn request(&self) -> HandshakeRequest<'_> {
        HandshakeRequest::new(&self.url.host, self.url.port, &self.url.path)
    }
}

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://`.
    pub tls: bool,
    /// Host name or IP literal (without brackets for IPv6).
    pub host: String,
    /// Port (80 / 443 by default).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Only `ws://` and `wss://` are WebSocket URLs.
    #[error("`{0}`: the URL must start with ws:// or wss://")]
    Scheme(String),
    /// No host between `//` and the path.
    #[error("`{0}`: the URL has no host")]
    NoHost(String),
    /// The port is not a number from 1 to 65535.
    #[error("`{0}`: bad port")]
    Port(String),
    /// A fragment (`#...`) or user info (`user@`) is not allowed in a WebSocket URL.
    #[error("`{0}`: fragments and user info are not allowed in a WebSocket URL")]
    Unsupported(String),
}

impl WsUrl {
    /// Parses `ws[s]://host[:port][/path][?query]` (IPv6 hosts in brackets).
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (false, rest)
        } else {
            return Err(UrlError::Scheme(url.to_owned()));
        };
        if url.contains('#') {
            return Err(UrlError::Unsupported(url.to_owned()));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(UrlError::Unsupported(url.to_owned()));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| UrlError::NoHost(url.to_owned()))?;
            let port = v6[end + 1..].strip_prefix(':');
            (&v6[..end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost(url.to_owned()));
        }
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(UrlError::Port(url.to_owned())),
            },
        };
        let path = if path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    /// A WebSocket server for `frames.len()` connections in a row: the upgrade, then the
    /// connection's bytes (server frames), then FIN.
    fn scripted_server(frames: Vec<Vec<u8>>) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            for bytes in frames {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = Vec::new();
                let mut b = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut b).unwrap();
                    assert!(n > 0, "client closed before its upgrade request");
                    req.extend_from_slice(&b[..n]);
                }
                let req = String::from_utf8(req).unwrap();
                let key = req
                    .lines()
                    .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                    .unwrap()
                    .trim();
                let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
                let resp = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                s.write_all(resp.as_bytes()).unwrap();
                s.write_all(&bytes).unwrap();
                let _ = s.shutdown(std::net::Shutdown::Write);
                // Wait for the client to go (its FIN or RST).
                while matches!(s.read(&mut b), Ok(n) if n > 0) {}
            }
        });
        (addr, h)
    }

    /// Drives `conn` (without a reactor) until it fails or closes; returns the text messages.
    fn drive_to_end(conn: &mut WsConnection) -> Vec<String> {
        let mut texts = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < end, "connection did not end");
            let r = conn.drive(|ev, _| {
                if let Event::Message(Message::Text(t)) = ev {
                    texts.push(t.to_owned());
                }
            });
            match r {
                Ok(Drive::Closed) | Err(_) => return texts,
                Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    #[test]
    fn reconnect_reuses_the_buffers_and_starts_from_a_clean_state() {
        // First connection: a message, then a frame cut short (3 of 10 payload bytes) and FIN.
        let mut first = vec![0x81, 3];
        first.extend_from_slice(b"one");
        first.extend_from_slice(&[0x81, 10, b'a', b'b', b'c']);
        // Second: a message and a normal close.
        let mut second = vec![0x81, 3];
        second.extend_from_slice(b"two");
        second.extend_from_slice(&[0x88, 2, 0x03, 0xe8]);
        let (addr, server) = scripted_server(vec![first, second]);
        let request = HandshakeRequest::new("127.0.0.1", addr.port(), "/");
        let cfg = ConnectionConfig::default();

        let mut conn = WsConnection::connect(addr, Security::Plain, &request, &cfg).unwrap();
        let read_buf = conn.codec.spare().as_ptr();
        let send_buf = conn.send.buf.as_ptr();
        assert_eq!(drive_to_end(&mut conn), ["one"]);
        assert_eq!(conn.phase(), Phase::Closed);

        conn.reconnect(addr, Security::Plain, &request).unwrap();
        assert_eq!(conn.phase(), Phase::Connecting);
        assert!(conn.close_frame().is_none());
        assert_eq!(
            conn.codec.spare().as_ptr(),
            read_buf,
            "read buffer reallocated"
        );
        assert_eq!(conn.send.buf.as_ptr(), send_buf, "send buffer reallocated");
        // Nothing of the first connection's cut frame leaks into the second.
        assert_eq!(drive_to_end(&mut conn), ["two"]);
        assert_eq!(conn.close_frame().map(|f| f.code), Some(1000));
        server.join().unwrap();
    }

    #[test]
    fn a_full_socket_gives_other_sessions_a_turn_and_loses_nothing() {
        // 20,000 small messages behind the upgrade; a 4 KiB read buffer fills on every read, so
        // draining them takes far more than one drive's share of reads.
        let mut bytes = Vec::new();
        for i in 0..20_000u32 {
            let text = format!("m{i:05}");
            bytes.push(0x81);
            bytes.push(text.len() as u8);
            bytes.extend_from_slice(text.as_bytes());
        }
        bytes.extend_from_slice(&[0x88, 2, 0x03, 0xe8]);
        let (addr, server) = scripted_server(vec![bytes]);
        let request = HandshakeRequest::new("127.0.0.1", addr.port(), "/");
        let mut cfg = ConnectionConfig::default();
        cfg.ws.read_buffer_size = 4096;
        cfg.ws.max_frame_size = 1024;
        cfg.ws.max_message_size = 1024;
        let mut conn = WsConnection::connect(addr, Security::Plain, &request, &cfg).unwrap();

        let mut texts: Vec<String> = Vec::new();
        let mut agains = 0;
        let mut most_in_one_drive = 0;
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < end, "connection did not end");
            let before = texts.len();
            let r = conn.drive(|ev, _| {
                if let Event::Message(Message::Text(t)) = ev {
                    texts.push(t.to_owned());
                }
            });
            most_in_one_drive = most_in_one_drive.max(texts.len() - before);
            match r {
                Ok(Drive::Again) => agains += 1,
                Ok(Drive::Closed) => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("connection failed: {e}"),
            }
        }
        assert_eq!(texts.len(), 20_000, "messages lost");
        assert!(texts
            .iter()
            .enumerate()
            .all(|(i, t)| *t == format!("m{i:05}")));
        // One drive delivers at most what was left in the 4 KiB buffer plus MAX_READS_PER_DRIVE
        // reads of it (8-byte messages); without the bound, one drive takes all 20,000.
        let share = (MAX_READS_PER_DRIVE as usize + 1) * 4096 / 8;
        assert!(
            most_in_one_drive <= share,
            "one drive delivered {most_in_one_drive} messages (share {share})"
        );
        assert!(agains > 0, "a full socket never made drive answer Again");
        server.join().unwrap();
    }

    #[test]
    fn url_with_port_path_and_query() {
        let u = WsUrl::parse("wss://test.deribit.com:8443/ws/api/v2?x=1").unwrap();
        assert_eq!(
            u,
            WsUrl {
                tls: true,
                host: "test.deribit.com".into(),
                port: 8443,
                path: "/ws/api/v2?x=1".into()
            }
        );
    }

    #[test]
    fn url_defaults_port_and_path() {
        let u = WsUrl::parse("ws://127.0.0.1").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 80, "/"));
        let u = WsUrl::parse("wss://example.com?q").unwrap();
        assert_eq!((u.port, u.path.as_str()), (443, "/?q"));
    }

    #[test]
    fn url_ipv6_host() {
        let u = WsUrl::parse("ws://[::1]:9001/runCase?case=1").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9001));
    }

    #[test]
    fn url_errors_say_what_is_wrong() {
        assert!(matches!(WsUrl::parse("http://x"), Err(UrlError::Scheme(_))));
        assert!(matches!(WsUrl::parse("ws://"), Err(UrlError::NoHost(_))));
        assert!(matches!(WsUrl::parse("ws://h:0/"), Err(UrlError::Port(_))));
        assert!(matches!(
            WsUrl::parse("ws://h:99999/"),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            WsUrl::parse("ws://u@h/"),
            Err(UrlError::Unsupported(_))
        ));
        let e = WsUrl::parse("ftp://x").unwrap_err().to_string();
        assert!(e.contains("ws:// or wss://"), "{e}");
    }
}
