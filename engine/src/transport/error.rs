//! The transport's error types (cold path: each ends or refuses a connection).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::sys::SysError;

/// Why a transport operation failed. Every variant but [`TransportError::NotEstablished`] and
/// [`TransportError::Closed`] (caller mistakes) leaves the transport dead: deregister and drop
/// it, then reconnect according to the session's policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Name resolution failed. Check the host name / DNS; retry with backoff.
    #[error("resolving {host}:{port} failed: {source}")]
    Resolve {
        /// Host that was looked up.
        host: String,
        /// Port that was looked up.
        port: u16,
        /// The resolver's reason.
        source: io::Error,
    },
    /// Name resolution succeeded but returned no address. Check the host name.
    #[error("resolving {host}:{port} returned no address")]
    NoAddress {
        /// Host that was looked up.
        host: String,
        /// Port that was looked up.
        port: u16,
    },
    /// Nothing listens at `addr` (`ECONNREFUSED`). Retry later with backoff, or try the next
    /// resolved address.
    #[error("connection to {addr} refused")]
    Refused {
        /// The address that refused.
        addr: SocketAddr,
    },
    /// The TCP connect failed for another reason (unreachable network, timeout, no buffer
    /// space...). Retry with backoff, or try the next resolved address.
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        /// The address being connected to.
        addr: SocketAddr,
        /// The OS reason.
        source: io::Error,
    },
    /// The peer reset the connection (`ECONNRESET`, or `EPIPE` when writing after the reset).
    /// Data in flight in either direction may be lost: reconnect and reconcile orders.
    #[error("connection to {peer} reset by peer")]
    Reset {
        /// The peer.
        peer: SocketAddr,
    },
    /// The TCP stream ended (FIN) without a TLS `close_notify`, or before the TLS handshake
    /// finished. The received data may have been cut short (a truncation attack cannot be ruled
    /// out): treat the last message as suspect, reconnect.
    #[error("connection to {peer} closed without TLS close_notify (possible truncation)")]
    Truncated {
        /// The peer.
        peer: SocketAddr,
    },
    /// The server's certificate was rejected; `reason` is rustls' verdict (e.g.
    /// `UnknownIssuer`: not signed by a trusted CA; `NotValidForName`: issued for another host;
    /// `Expired`). Do not retry blindly: this is a configuration problem or an interception.
    /// Check the CA file / system roots and the host name.
    #[error("TLS certificate of {host} rejected: {reason:?} ({reason})")]
    Certificate {
        /// Host name the certificate was checked against.
        host: String,
        /// Why rustls rejected it.
        reason: rustls::CertificateError,
    },
    /// Any other TLS failure (alert from the server, protocol violation, bad record). Reconnect;
    /// if it repeats, the server's TLS settings and ours do not match.
    #[error("TLS with {host} failed: {source}")]
    Tls {
        /// Host name of the server.
        host: String,
        /// rustls' error.
        source: rustls::Error,
    },
    /// The host name is not a valid DNS name or IP address for SNI/verification. Fix the
    /// configuration.
    #[error("{host:?} is not a valid TLS server name")]
    InvalidHostName {
        /// The name given.
        host: String,
    },
    /// Setting a socket option on the new socket failed: TCP_NODELAY, or one of the configured
    /// [`SocketOptions`](super::SocketOptions) (`SO_RCVBUF`, `SO_SNDBUF`, `SO_BUSY_POLL`).
    /// `source` names the option, the value asked for and the OS reason (with advice where
    /// there is a usual cause, e.g. a missing capability). No connect was issued. Not
    /// transient: retrying fails the same way, so fix the configuration (or grant what the
    /// error names) instead of reconnecting.
    #[error("configuring the socket for {addr} failed: {source}")]
    Socket {
        /// The address being connected to.
        addr: SocketAddr,
        /// What failed.
        source: SysError,
    },
    /// A socket read/write/shutdown failed with an unexpected OS error. Reconnect.
    #[error("{op} on connection to {peer} failed: {source}")]
    Io {
        /// The operation (`"read"`, `"write"`, `"shutdown"`).
        op: &'static str,
        /// The peer.
        peer: SocketAddr,
        /// The OS reason.
        source: io::Error,
    },
    /// The incoming TLS buffer is full without holding a complete record or handshake message
    /// (a handshake message above `capacity`). Build the transport with a larger
    /// `tls_in_capacity`.
    #[error("incoming TLS buffer ({capacity} bytes) too small for {host}'s records")]
    IncomingOverflow {
        /// Host name of the server.
        host: String,
        /// The configured capacity.
        capacity: usize,
    },
    /// A TLS record rustls produced does not fit the outgoing buffer even after flushing.
    /// Build the transport with a larger `out_capacity`.
    #[error("outgoing buffer ({capacity} bytes) too small for a {required}-byte TLS record")]
    OutgoingOverflow {
        /// Bytes the record needed.
        required: usize,
        /// The configured capacity.
        capacity: usize,
    },
    /// rustls refused to encrypt more data with the current keys (TLS 1.2 sequence-number
    /// exhaustion). Reconnect.
    #[error("TLS keys to {host} exhausted; reconnect")]
    KeysExhausted {
        /// Host name of the server.
        host: String,
    },
    /// rustls entered a state a client never sees (a rustls bug or an API change). Reconnect and
    /// report it.
    #[error("unexpected TLS state with {host}: {state}")]
    UnexpectedTlsState {
        /// Host name of the server.
        host: String,
        /// The state, as rustls prints it.
        state: String,
    },
    /// Read or write before the connection is established (call [`handshake`] until it says
    /// done). A caller bug; the transport is unaffected.
    ///
    /// [`handshake`]: super::Transport::handshake
    #[error("transport to {peer} is not established yet")]
    NotEstablished {
        /// The peer.
        peer: SocketAddr,
    },
    /// The transport was closed with [`close`](super::Transport::close), or an earlier error
    /// ended it. Drop it (and reconnect if needed).
    #[error("transport to {peer} is closed")]
    Closed {
        /// The peer.
        peer: SocketAddr,
    },
}

impl TransportError {
    /// Maps a socket error on an open connection: resets are told apart from other I/O errors.
    pub(crate) fn from_io(op: &'static str, peer: SocketAddr, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Self::Reset { peer },
            io::ErrorKind::ConnectionRefused => Self::Refused { addr: peer },
            _ => Self::Io { op, peer, source },
        }
    }

    /// Maps a connect-time socket error.
    pub(crate) fn from_connect(addr: SocketAddr, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::ConnectionRefused => Self::Refused { addr },
            io::ErrorKind::ConnectionReset => Self::Reset { peer: addr },
            _ => Self::Connect { addr, source },
        }
    }

    /// Maps a rustls error, pulling certificate rejections out into their own variant.
    pub(crate) fn from_tls(host: &str, source: rustls::Error) -> Self {
        match source {
            rustls::Error::InvalidCertificate(reason) => Self::Certificate {
                host: host.to_owned(),
                reason,
            },
            source => Self::Tls {
                host: host.to_owned(),
                source,
            },
        }
    }
}

/// Why a [`TlsConfig`](super::TlsConfig) could not be built. Configuration time only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// No usable root certificate was found in the system store. Install the CA bundle (e.g.
    /// the `ca-certificates` package), point `SSL_CERT_FILE`/`SSL_CERT_DIR` at one, or pass the
    /// venue's CA with `ca_file`.
    #[error("no usable system root certificates found{details}")]
    NoSystemRoots {
        /// What the loader reported (empty or starting with `": "`).
        details: String,
    },
    /// A CA file could not be read or is not valid PEM. Check the path and contents.
    #[error("reading CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A CA file holds no certificate rustls accepts as a trust anchor.
    #[error("CA file {path} holds no usable CERTIFICATE")]
    NoCertificates {
        /// The file.
        path: PathBuf,
    },
    /// rustls rejected the configuration (protocol versions / provider).
    #[error("building the TLS client configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
}
