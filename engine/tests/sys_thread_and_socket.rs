//! `sys`: core pinning, SCHED_FIFO, socket options read back from the kernel.

mod caps_support;

use std::net::{TcpListener, TcpStream};
use std::thread;

use caps_support::{drop_effective_capability, CAP_SYS_NICE};
use spinwire_engine::sys::{self, SysError};

#[test]
fn pinning_to_core_0_restricts_the_thread_to_core_0() {
    thread::spawn(|| {
        let before = sys::allowed_cores().unwrap();
        if !before.contains(&0) {
            // Core 0 excluded by a cpuset: the error must say so and list what is available.
            let err = sys::pin_current_thread(0).unwrap_err();
            assert!(matches!(err, SysError::NoSuchCore { core: 0, .. }), "{err}");
            return;
        }
        sys::pin_current_thread(0).unwrap();
        assert_eq!(sys::allowed_cores().unwrap(), vec![0]);
    })
    .join()
    .unwrap();
}

#[test]
fn pinning_to_a_missing_core_names_it_and_lists_available_cores() {
    thread::spawn(|| {
        let available = sys::allowed_cores().unwrap();
        let err = sys::pin_current_thread(9999).unwrap_err();
        match &err {
            SysError::NoSuchCore { core, available: a } => {
                assert_eq!(*core, 9999);
                assert_eq!(a, &available);
            }
            other => panic!("expected NoSuchCore, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("9999"), "{msg}");
        assert!(msg.contains(&format!("{available:?}")), "{msg}");
        // Nothing changed.
        assert_eq!(sys::allowed_cores().unwrap(), available);
    })
    .join()
    .unwrap();
}

#[test]
fn sched_fifo_priority_out_of_range_is_refused_before_any_change() {
    for bad in [0, 100, -1] {
        let err = sys::set_sched_fifo(bad).unwrap_err();
        assert!(
            matches!(err, SysError::FifoPriorityOutOfRange { priority, min: 1, max: 99 } if priority == bad),
            "{err}"
        );
    }
}

fn rtprio_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for the kernel to fill.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_RTPRIO, &mut lim) };
    assert_eq!(rc, 0);
    lim.rlim_cur
}

#[test]
fn sched_fifo_without_cap_sys_nice_is_refused_with_that_advice() {
    thread::spawn(|| {
        drop_effective_capability(CAP_SYS_NICE);
        if rtprio_limit() >= 1 {
            // RLIMIT_RTPRIO grants FIFO without the capability; nothing to refuse here.
            return;
        }
        let err = sys::set_sched_fifo(1).unwrap_err();
        assert!(
            matches!(err, SysError::FifoNotPermitted { priority: 1, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("SCHED_FIFO needs CAP_SYS_NICE / root"),
            "{msg}"
        );
    })
    .join()
    .unwrap();
}

#[test]
fn sched_fifo_applies_when_permitted() {
    // A fresh thread that exits at once, so a granted FIFO priority harms no one.
    thread::spawn(|| match sys::set_sched_fifo(1) {
        Ok(()) => {
            // SAFETY: sched_getscheduler(0) only queries the calling thread's policy.
            let policy = unsafe { libc::sched_getscheduler(0) };
            assert_eq!(policy, libc::SCHED_FIFO);
        }
        // Unprivileged run: the refusal must carry the advice.
        Err(err @ SysError::FifoNotPermitted { .. }) => {
            assert!(err.to_string().contains("CAP_SYS_NICE"), "{err}");
        }
        Err(other) => panic!("unexpected error: {other}"),
    })
    .join()
    .unwrap();
}

fn connected_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

#[test]
fn tcp_nodelay_is_set_and_read_back() {
    let (client, _server) = connected_pair();
    sys::set_tcp_nodelay(&client, true).unwrap();
    assert!(sys::tcp_nodelay(&client).unwrap());
    sys::set_tcp_nodelay(&client, false).unwrap();
    assert!(!sys::tcp_nodelay(&client).unwrap());
}

/// What Linux stores for a buffer request: doubled, after capping at the sysctl maximum.
fn expected_buffer(requested: usize, max_sysctl: &str) -> Option<usize> {
    let max: usize = std::fs::read_to_string(max_sysctl)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(2 * requested.min(max))
}

#[test]
fn buffer_sizes_report_what_the_kernel_set() {
    let (client, _server) = connected_pair();
    let rcv = sys::set_recv_buffer(&client, 64 * 1024).unwrap();
    assert_eq!(rcv, sys::recv_buffer(&client).unwrap());
    if let Some(expected) = expected_buffer(64 * 1024, "/proc/sys/net/core/rmem_max") {
        assert_eq!(rcv, expected);
    }
    let snd = sys::set_send_buffer(&client, 48 * 1024).unwrap();
    assert_eq!(snd, sys::send_buffer(&client).unwrap());
    if let Some(expected) = expected_buffer(48 * 1024, "/proc/sys/net/core/wmem_max") {
        assert_eq!(snd, expected);
    }
}

#[test]
fn oversized_buffer_request_names_option_and_value() {
    let (client, _server) = connected_pair();
    let err = sys::set_recv_buffer(&client, usize::MAX).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("SO_RCVBUF") && msg.contains(&usize::MAX.to_string()),
        "{msg}"
    );
}

#[test]
fn busy_poll_is_set_and_read_back_when_permitted() {
    let (client, _server) = connected_pair();
    match sys::set_busy_poll(&client, 50) {
        Ok(read_back) => assert_eq!(read_back, 50),
        // Unprivileged run: the refusal must carry the advice.
        Err(err) => assert!(err.to_string().contains("CAP_NET_ADMIN"), "{err}"),
    }
    // Lowering to 0 needs no privilege.
    assert_eq!(sys::set_busy_poll(&client, 0).unwrap(), 0);
    assert_eq!(sys::busy_poll(&client).unwrap(), 0);
}

#[test]
fn busy_poll_beyond_the_kernel_int_is_refused_naming_setting_and_value() {
    let (client, _server) = connected_pair();
    let err = sys::set_busy_poll(&client, u32::MAX).unwrap_err();
    assert!(
        matches!(&err, SysError::SetOption { option: "SO_BUSY_POLL", value, .. } if *value == u64::from(u32::MAX)),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("SO_BUSY_POLL") && msg.contains(&u32::MAX.to_string()),
        "{msg}"
    );
}

#[test]
fn socket_option_on_a_non_socket_fails_with_the_os_reason() {
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    let err = sys::set_tcp_nodelay(&file, true).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("TCP_NODELAY") && msg.contains("socket"),
        "{msg}"
    );
}
