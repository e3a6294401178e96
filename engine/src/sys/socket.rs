//! Socket options on a raw descriptor (anything that is [`AsFd`]: `mio::net::TcpStream`,
//! `std::net::TcpStream`, ...).

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use super::{syscall, SysError};

/// Sets an `int`-valued socket option.
fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is a live descriptor borrowed for the duration of the call; the option value
    // points to an initialised c_int on our stack and `len` is exactly its size.
    syscall!(setsockopt(
        fd.as_raw_fd(),
        level,
        name,
        (&value as *const libc::c_int).cast::<libc::c_void>(),
        len,
    ))
    .map(drop)
}

/// Reads an `int`-valued socket option.
fn get_int(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is a live descriptor borrowed for the duration of the call; `value` and `len`
    // are valid, writable locals and `len` holds the size of `value`, so the kernel writes at
    // most that many bytes.
    syscall!(getsockopt(
        fd.as_raw_fd(),
        level,
        name,
        (&mut value as *mut libc::c_int).cast::<libc::c_void>(),
        &mut len,
    ))?;
    Ok(value)
}

/// Converts a requested size to the C `int` the kernel takes, or explains why it cannot.
fn to_c_int(option: &'static str, value: u64) -> Result<libc::c_int, SysError> {
    libc::c_int::try_from(value).map_err(|_| SysError::SetOption {
        option,
        value,
        source: io::Error::from(io::ErrorKind::InvalidInput),
        hint: "; the value does not fit the kernel's int",
    })
}

/// Turns `TCP_NODELAY` on or off.
///
/// On (what the engine wants): every write leaves at once instead of waiting for the ACK of the
/// previous small segment (Nagle's algorithm), which would add up to a round trip to each order.
pub fn set_tcp_nodelay(sock: &impl AsFd, on: bool) -> Result<(), SysError> {
    set_int(
        sock.as_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_NODELAY,
        libc::c_int::from(on),
    )
    .map_err(|source| SysError::SetOption {
        option: "TCP_NODELAY",
        value: u64::from(on),
        source,
        hint: "",
    })
}

/// Reads `TCP_NODELAY` back.
pub fn tcp_nodelay(sock: &impl AsFd) -> Result<bool, SysError> {
    get_int(sock.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY)
        .map(|v| v != 0)
        .map_err(|source| SysError::GetOption {
            option: "TCP_NODELAY",
            source,
        })
}

/// Sets `SO_BUSY_POLL`: for up to `micros` microseconds, a blocking read or poll on this socket
/// busy-polls the NIC's receive queue instead of sleeping until the interrupt. It trades CPU for
/// lower receive latency; 0 turns it off. Returns the value read back.
///
/// Kernels before 5.x require `CAP_NET_ADMIN` to raise it above the current value (the error
/// then says so); current kernels allow it to any process. The system-wide defaults are
/// `net.core.busy_read` / `net.core.busy_poll`. Busy polling only helps on a NIC queue with
/// NAPI; on loopback it changes nothing.
pub fn set_busy_poll(sock: &impl AsFd, micros: u32) -> Result<u32, SysError> {
    let value = to_c_int("SO_BUSY_POLL", u64::from(micros))?;
    set_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_BUSY_POLL, value).map_err(|source| {
        let hint = if source.raw_os_error() == Some(libc::EPERM) {
            "; raising SO_BUSY_POLL needs CAP_NET_ADMIN"
        } else {
            ""
        };
        SysError::SetOption {
            option: "SO_BUSY_POLL",
            value: u64::from(micros),
            source,
            hint,
        }
    })?;
    busy_poll(sock)
}

/// Reads `SO_BUSY_POLL` (microseconds) back.
pub fn busy_poll(sock: &impl AsFd) -> Result<u32, SysError> {
    get_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_BUSY_POLL)
        .map(|v| u32::try_from(v).unwrap_or(0))
        .map_err(|source| SysError::GetOption {
            option: "SO_BUSY_POLL",
            source,
        })
}

/// Shared body of the two buffer-size setters.
fn set_buffer(
    sock: BorrowedFd<'_>,
    option: &'static str,
    name: libc::c_int,
    bytes: usize,
) -> Result<usize, SysError> {
    let value = to_c_int(option, bytes as u64)?;
    set_int(sock, libc::SOL_SOCKET, name, value).map_err(|source| SysError::SetOption {
        option,
        value: bytes as u64,
        source,
        hint: "",
    })?;
    get_buffer(sock, option, name)
}

/// Shared body of the two buffer-size getters.
fn get_buffer(
    sock: BorrowedFd<'_>,
    option: &'static str,
    name: libc::c_int,
) -> Result<usize, SysError> {
    get_int(sock, libc::SOL_SOCKET, name)
        .map(|v| usize::try_from(v).unwrap_or(0))
        .map_err(|source| SysError::GetOption { option, source })
}

/// Sets `SO_RCVBUF` (the kernel receive buffer, i.e. how much the peer may send before we read)
/// and returns the size the kernel actually set, read back with `getsockopt`.
///
/// Linux doubles the request (half is bookkeeping overhead) and caps it at
/// `net.core.rmem_max`, so the returned value rarely equals `bytes`: log it, and compare it with
/// `2 * bytes` if the size matters. Setting it also turns off receive-buffer auto-tuning for
/// this socket, so only set it when measurements say auto-tuning is wrong.
pub fn set_recv_buffer(sock: &impl AsFd, bytes: usize) -> Result<usize, SysError> {
    set_buffer(sock.as_fd(), "SO_RCVBUF", libc::SO_RCVBUF, bytes)
}

/// Reads `SO_RCVBUF` back (bytes, as the kernel accounts them).
pub fn recv_buffer(sock: &impl AsFd) -> Result<usize, SysError> {
    get_buffer(sock.as_fd(), "SO_RCVBUF", libc::SO_RCVBUF)
}

/// Sets `SO_SNDBUF` (how much unacknowledged data the kernel keeps for us before writes return
/// `WouldBlock`) and returns the size the kernel actually set (doubled, capped at
/// `net.core.wmem_max`; see [`set_recv_buffer`]).
pub fn set_send_buffer(sock: &impl AsFd, bytes: usize) -> Result<usize, SysError> {
    set_buffer(sock.as_fd(), "SO_SNDBUF", libc::SO_SNDBUF, bytes)
}

/// Reads `SO_SNDBUF` back (bytes, as the kernel accounts them).
pub fn send_buffer(sock: &impl AsFd) -> Result<usize, SysError> {
    get_buffer(sock.as_fd(), "SO_SNDBUF", libc::SO_SNDBUF)
}
