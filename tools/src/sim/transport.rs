//! Non-blocking byte transport of one connection: plain TCP or rustls server TLS over a mio
//! socket. Reads drain the socket until it would block; writes push as much as the socket
//! takes and keep the rest for the next call.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use mio::net::TcpStream;

/// What a read pass found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Plaintext bytes appended.
    pub bytes: usize,
    /// The peer closed its side (TCP FIN, or TLS close_notify).
    pub eof: bool,
}

/// Plain or TLS transport.
pub enum Transport {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls {
        /// The socket.
        sock: TcpStream,
        /// rustls server state.
        tls: Box<rustls::ServerConnection>,
    },
}

impl Transport {
    /// Wraps a socket, starting a TLS server session when `tls` is given.
    pub fn new(sock: TcpStream, tls: Option<&Arc<rustls::ServerConfig>>) -> io::Result<Self> {
        Ok(match tls {
            None => Transport::Plain(sock),
            Some(cfg) => Transport::Tls {
                sock,
                tls: Box::new(
                    rustls::ServerConnection::new(cfg.clone()).map_err(io::Error::other)?,
                ),
            },
        })
    }

    /// The socket.
    pub fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls { sock, .. } => sock,
        }
    }

    /// Reads everything available into `out`.
    pub fn read_available(&mut self, out: &mut Vec<u8>) -> io::Result<ReadOutcome> {
        let mut res = ReadOutcome::default();
        let mut chunk = [0u8; 64 * 1024];
        match self {
            Transport::Plain(sock) => loop {
                match sock.read(&mut chunk) {
                    Ok(0) => {
                        res.eof = true;
                        return Ok(res);
                    }
                    Ok(n) => {
                        out.extend_from_slice(&chunk[..n]);
                        res.bytes += n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(res),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
            Transport::Tls { sock, tls } => {
                loop {
                    match tls.read_tls(sock) {
                        Ok(0) => {
                            res.eof = true;
                            break;
                        }
                        Ok(_) => {
                            tls.process_new_packets().map_err(io::Error::other)?;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                loop {
                    match tls.reader().read(&mut chunk) {
                        Ok(0) => {
                            res.eof = true;
                            break;
                        }
                        Ok(n) => {
                            out.extend_from_slice(&chunk[..n]);
                            res.bytes += n;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                            res.eof = true;
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(res)
            }
        }
    }

    /// Writes from `buf[*pos..]` as far as the socket takes, advancing `pos`; also flushes
    /// pending TLS records (handshake included).
    pub fn write_from(&mut self, buf: &[u8], pos: &mut usize) -> io::Result<()> {
        match self {
            Transport::Plain(sock) => {
                while *pos < buf.len() {
                    match sock.write(&buf[*pos..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => *pos += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Transport::Tls { sock, tls } => loop {
                if *pos < buf.len() && !tls.is_handshaking() {
                    let n = tls.writer().write(&buf[*pos..])?;
                    *pos += n;
                }
                if !tls.wants_write() {
                    return Ok(());
                }
                match tls.write_tls(sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
        }
    }

    /// Whether the TLS handshake resumed an earlier session (false for plain TCP, or before
    /// the handshake is done).
    pub fn resumed(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls { tls, .. } => {
                tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
            }
        }
    }

    /// True while encrypted bytes are waiting for the socket.
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls { tls, .. } => tls.wants_write(),
        }
    }

    /// Queues a TLS close_notify (no-op for plain TCP).
    pub fn send_close_notify(&mut self) {
        if let Transport::Tls { tls, .. } = self {
            tls.send_close_notify();
        }
    }

    /// Shuts both directions down (TCP FIN).
    pub fn shutdown(&self) {
        let _ = self.socket().shutdown(Shutdown::Both);
    }

    /// Makes the coming close an abortive one (TCP RST): `SO_LINGER` with a zero timeout.
    pub fn set_linger_zero(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: the fd is a live socket owned by `self`; `linger` is a valid, initialized
        // `struct linger` and the length passed is exactly its size.
        let rc = unsafe {
            libc::setsockopt(
                self.socket().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
