//! The kernel socket options of [`ConnectionConfig`] (`SO_RCVBUF`, `SO_SNDBUF`, `SO_BUSY_POLL`)
//! reach the connection's TCP socket, on connect and on reconnect, before the TCP connect
//! (the SYN's window scale follows the receive buffer); what the kernel set is readable; a
//! refused value fails the connect, naming the option, the value and the reason.
//!
//! Loopback (127.0.0.1) only; no thread spins, so two cores are plenty.

mod caps_support;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use caps_support::{drop_effective_capability, CAP_NET_ADMIN};
use spinwire_engine::connection::{ConnError, ConnectionConfig, WsConnection};
use spinwire_engine::sys::{self, SysError};
use spinwire_engine::transport::{AppliedSocketOptions, Security, TransportError};
use spinwire_engine::ws::HandshakeRequest;

/// A listener on 127.0.0.1 for the connections under test (none of them is driven: the
/// options are on the socket from the moment it exists).
fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

fn connect(addr: SocketAddr, config: &ConnectionConfig) -> Result<WsConnection, ConnError> {
    let request = HandshakeRequest::new("127.0.0.1", addr.port(), "/");
    WsConnection::connect(addr, Security::Plain, &request, config)
}

/// Reads a sysctl such as `/proc/sys/net/core/rmem_max`; `None` where /proc is not readable.
fn sysctl(path: &str) -> Option<usize> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Connects with `SO_RCVBUF` / `SO_SNDBUF` asked at `recv` / `send`, checks the kernel applied
/// them (see `assert_buffers_applied`) and returns what was applied.
fn connect_with_buffers(recv: usize, send: usize) -> AppliedSocketOptions {
    let (listener, addr) = listener();
    let config = ConnectionConfig {
        recv_buffer: Some(recv),
        send_buffer: Some(send),
        ..ConnectionConfig::default()
    };
    let conn = connect(addr, &config).unwrap();
    let _server = listener.accept().unwrap();
    assert_buffers_applied(&conn, recv, send)
}

/// What Linux stores for a buffer request: the request capped at the sysctl maximum, doubled.
fn expected_buffer(requested: usize, max_sysctl: &str) -> Option<usize> {
    sysctl(max_sysctl).map(|max| 2 * requested.min(max))
}

/// The connection's socket's `SO_RCVBUF`, `SO_SNDBUF` and `SO_BUSY_POLL`, read from the kernel.
fn kernel_values(conn: &WsConnection) -> (usize, usize, u32) {
    let sock = conn.transport().socket();
    (
        sys::recv_buffer(sock).unwrap(),
        sys::send_buffer(sock).unwrap(),
        sys::busy_poll(sock).unwrap(),
    )
}

/// Checks that the configured buffers are on the connection's socket, that
/// `applied_socket_options` reports exactly what the kernel holds, and returns it.
fn assert_buffers_applied(conn: &WsConnection, recv: usize, send: usize) -> AppliedSocketOptions {
    let applied = conn.applied_socket_options();
    let (kernel_recv, kernel_send, _) = kernel_values(conn);
    assert_eq!(applied.recv_buffer, Some(kernel_recv), "{applied:?}");
    assert_eq!(applied.send_buffer, Some(kernel_send), "{applied:?}");
    // Linux doubles the request (after capping it at the sysctl maximum).
    match expected_buffer(recv, "/proc/sys/net/core/rmem_max") {
        Some(expected) => assert_eq!(kernel_recv, expected),
        None => assert!(
            kernel_recv >= recv,
            "SO_RCVBUF {kernel_recv} < asked {recv}"
        ),
    }
    match expected_buffer(send, "/proc/sys/net/core/wmem_max") {
        Some(expected) => assert_eq!(kernel_send, expected),
        None => assert!(
            kernel_send >= send,
            "SO_SNDBUF {kernel_send} < asked {send}"
        ),
    }
    applied
}

#[test]
fn configured_buffer_sizes_are_on_the_connection_socket() {
    let applied = connect_with_buffers(96 * 1024, 48 * 1024);
    assert_eq!(applied.busy_poll_us, None, "not asked for, not set");
}

#[test]
fn default_config_leaves_the_kernel_defaults() {
    let (listener, addr) = listener();
    let conn = connect(addr, &ConnectionConfig::default()).unwrap();
    let _server = listener.accept().unwrap();
    assert_eq!(
        conn.applied_socket_options(),
        AppliedSocketOptions::default()
    );
    // A socket nobody configured, for the kernel's defaults.
    let plain = TcpStream::connect(addr).unwrap();
    let _plain_server = listener.accept().unwrap();
    let sock = conn.transport().socket();
    assert_eq!(
        sys::busy_poll(sock).unwrap(),
        sys::busy_poll(&plain).unwrap()
    );
    assert!(sys::tcp_nodelay(sock).unwrap(), "TCP_NODELAY stays on");
}

#[test]
fn options_are_applied_again_to_the_socket_of_a_reconnect() {
    let (listener, addr) = listener();
    let (recv, send) = (64 * 1024, 32 * 1024);
    let config = ConnectionConfig {
        recv_buffer: Some(recv),
        send_buffer: Some(send),
        busy_poll_us: Some(25),
        ..ConnectionConfig::default()
    };
    let mut conn = connect(addr, &config).unwrap();
    let (_first, first_peer) = listener.accept().unwrap();
    assert_eq!(conn.transport().socket().local_addr().unwrap(), first_peer);
    let before = assert_buffers_applied(&conn, recv, send);

    let request = HandshakeRequest::new("127.0.0.1", addr.port(), "/");
    conn.reconnect(addr, Security::Plain, &request).unwrap();
    let (_second, second_peer) = listener.accept().unwrap();
    assert_ne!(second_peer, first_peer, "a new socket");
    assert_eq!(conn.transport().socket().local_addr().unwrap(), second_peer);
    assert_eq!(assert_buffers_applied(&conn, recv, send), before);
    assert_eq!(kernel_values(&conn).2, 25);
    assert!(sys::tcp_nodelay(conn.transport().socket()).unwrap());
}

#[test]
fn busy_poll_is_set_and_read_back() {
    busy_poll_is_applied_or_refused_with_the_advice(50);
}

/// Connects with SO_BUSY_POLL at `micros`: the value is read back from the kernel, or (an older
/// kernel refusing an unprivileged raise) the error carries the advice.
fn busy_poll_is_applied_or_refused_with_the_advice(micros: u32) {
    let (listener, addr) = listener();
    let config = ConnectionConfig {
        busy_poll_us: Some(micros),
        ..ConnectionConfig::default()
    };
    match connect(addr, &config) {
        Ok(conn) => {
            let _server = listener.accept().unwrap();
            assert_eq!(conn.applied_socket_options().busy_poll_us, Some(micros));
            assert_eq!(kernel_values(&conn).2, micros);
        }
        Err(err) => assert_busy_poll_refused_for_capability(&err, micros),
    }
}

/// `err` is the kernel's `EPERM` for raising SO_BUSY_POLL to `micros`, with the advice.
fn assert_busy_poll_refused_for_capability(err: &ConnError, micros: u32) {
    match err {
        ConnError::Transport(TransportError::Socket {
            source:
                SysError::SetOption {
                    option: "SO_BUSY_POLL",
                    value,
                    source,
                    ..
                },
            ..
        }) => {
            assert_eq!(*value, u64::from(micros));
            assert_eq!(source.raw_os_error(), Some(libc::EPERM), "{err}");
        }
        other => panic!("expected a refused SO_BUSY_POLL, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("SO_BUSY_POLL")
            && msg.contains(&micros.to_string())
            && msg.contains("CAP_NET_ADMIN"),
        "{msg}"
    );
}

#[test]
fn busy_poll_without_cap_net_admin_is_applied_or_refused_with_the_advice() {
    // socket(7): raising SO_BUSY_POLL needs CAP_NET_ADMIN. Current kernels no longer check
    // (the value is then applied); older ones refuse with EPERM, which must be reported.
    thread::spawn(|| {
        drop_effective_capability(CAP_NET_ADMIN);
        busy_poll_is_applied_or_refused_with_the_advice(75);
    })
    .join()
    .unwrap();
}

/// A refused option fails the connect before any TCP connect is issued: nothing reaches the
/// listener.
fn assert_nothing_connected(listener: &TcpListener) {
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("a connection from {peer} reached the listener"),
        Err(e) => panic!("accept: {e}"),
    }
}

#[test]
fn a_refused_option_fails_the_connect_naming_option_value_and_reason() {
    // The kernel takes an `int`: these values are refused whoever runs the test.
    let cases: [(&str, u64, ConnectionConfig); 3] = [
        (
            "SO_BUSY_POLL",
            u64::from(u32::MAX),
            ConnectionConfig {
                busy_poll_us: Some(u32::MAX),
                ..ConnectionConfig::default()
            },
        ),
        (
            "SO_RCVBUF",
            1 << 40,
            ConnectionConfig {
                recv_buffer: Some(1 << 40),
                ..ConnectionConfig::default()
            },
        ),
        (
            "SO_SNDBUF",
            1 << 40,
            ConnectionConfig {
                // A valid receive buffer first: the refusal is still reported, not skipped.
                recv_buffer: Some(64 * 1024),
                send_buffer: Some(1 << 40),
                ..ConnectionConfig::default()
            },
        ),
    ];
    for (option, value, config) in cases {
        let (listener, addr) = listener();
        let err = connect(addr, &config).unwrap_err();
        match &err {
            ConnError::Transport(TransportError::Socket {
                addr: failed_addr,
                source:
                    SysError::SetOption {
                        option: failed_option,
                        value: failed_value,
                        source,
                        ..
                    },
            }) => {
                assert_eq!(*failed_addr, addr);
                assert_eq!(*failed_option, option);
                assert_eq!(*failed_value, value);
                assert_eq!(source.kind(), io::ErrorKind::InvalidInput);
            }
            other => panic!("{option}: expected TransportError::Socket, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(option)
                && msg.contains(&value.to_string())
                && msg.contains(&addr.to_string())
                && msg.contains("does not fit the kernel's int"),
            "{msg}"
        );
        assert_nothing_connected(&listener);
    }
}

#[test]
fn a_buffer_above_the_sysctl_maximum_is_capped_not_refused() {
    // Every Linux has them: a test that skipped itself here would prove nothing.
    let rmem_max = sysctl("/proc/sys/net/core/rmem_max").expect("net.core.rmem_max readable");
    let wmem_max = sysctl("/proc/sys/net/core/wmem_max").expect("net.core.wmem_max readable");
    // Twice the cap (still a valid `int`): the kernel stores twice the cap, not what was asked.
    let (recv, send) = (2 * rmem_max, 2 * wmem_max);
    let applied = connect_with_buffers(recv, send);
    assert_eq!(applied.recv_buffer, Some(2 * rmem_max));
    assert_eq!(applied.send_buffer, Some(2 * wmem_max));
}

/// The window scale the client advertised in its SYN (`tcpi_rcv_wscale`), once established.
fn advertised_window_scale(sock: &impl std::os::fd::AsRawFd) -> u8 {
    // SAFETY: tcp_info is plain old data (integers only), so all-zero bytes are a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the descriptor is a live TCP socket borrowed for the call; `info` and `len` are
    // valid, writable locals and `len` is the size of `info`, so the kernel writes at most that.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast::<libc::c_void>(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", io::Error::last_os_error());
    // `tcpi_snd_wscale : 4, tcpi_rcv_wscale : 4` share one byte, the first in the low bits.
    info.tcpi_snd_rcv_wscale >> 4
}

#[test]
fn the_receive_buffer_is_set_before_connect_so_the_syn_window_scale_follows_it() {
    let (listener, addr) = listener();
    // Kernel defaults: the window scale is sized for net.ipv4.tcp_rmem's maximum.
    let default = connect(addr, &ConnectionConfig::default()).unwrap();
    // accept returns once the handshake is complete, so the client socket is established.
    let _server = listener.accept().unwrap();
    let default_scale = advertised_window_scale(default.transport().socket());
    if default_scale == 0 {
        eprintln!("skipped: window scaling is off (net.ipv4.tcp_window_scaling = 0)");
        return;
    }
    // An 8 KiB receive buffer set before the SYN clamps the window: no scaling is needed.
    // Set after the connect, it would leave the default scale in place.
    let small = connect(
        addr,
        &ConnectionConfig {
            recv_buffer: Some(8 * 1024),
            ..ConnectionConfig::default()
        },
    )
    .unwrap();
    let _server = listener.accept().unwrap();
    let small_scale = advertised_window_scale(small.transport().socket());
    assert!(
        small_scale < default_scale,
        "window scale {small_scale} with an 8 KiB SO_RCVBUF, {default_scale} by default"
    );
}
