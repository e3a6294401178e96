//! Linux specifics behind one small API.
//!
//! Everything the engine needs from the operating system that `std` and mio do not already give
//! lives here, in the spirit of mio's `src/sys`: callers see plain functions and one error type,
//! the `libc` calls stay inside this module, and every raw call goes through one `syscall!`
//! macro, which turns the C convention (`-1` and `errno`) into an [`io::Error`].
//!
//! What this module provides, and why the engine wants it:
//!
//! | function | what it is for |
//! |---|---|
//! | [`pin_current_thread`] | keep the engine thread on one core (no migrations, warm caches) |
//! | [`set_sched_fifo`] | real-time scheduling so ordinary threads cannot preempt the engine |
//! | [`set_tcp_nodelay`] / [`tcp_nodelay`] | send small frames (orders) at once instead of Nagle-batching them |
//! | [`set_busy_poll`] / [`busy_poll`] | let the kernel busy-poll the NIC queue on reads (lower wake-up latency) |
//! | [`set_recv_buffer`] / [`set_send_buffer`] | size the kernel socket buffers; return what the kernel really set |
//!
//! Every setter fails with a [`SysError`] that names the setting, the value asked for and the OS
//! reason; nothing is ignored silently. None of these functions is meant for the hot path: call
//! them once, when the thread starts or right after a socket is created.
//!
//! Only Linux is supported (`SO_BUSY_POLL`, `sched_setscheduler` and the CPU-set calls are
//! Linux-specific); building for another OS stops with a compile error here.

#[cfg(not(target_os = "linux"))]
compile_error!("spinwire's `sys` module supports Linux only");

use std::io;

mod cpu;
mod socket;

pub use cpu::{allowed_cores, pin_current_thread, set_sched_fifo};
pub use socket::{
    busy_poll, recv_buffer, send_buffer, set_busy_poll, set_recv_buffer, set_send_buffer,
    set_tcp_nodelay, tcp_nodelay,
};

/// Calls a `libc` function and turns its `-1` return into the thread's `errno` as an
/// [`io::Error`]; any other return value is passed through as `Ok`.
///
/// Every call site must carry a `// SAFETY:` comment explaining why the arguments satisfy the
/// contract of the wrapped C function: the `unsafe` block lives inside this macro, the
/// justification lives next to the call.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the caller of `syscall!` states, in a SAFETY comment at the call site, why the
        // arguments meet the contract of `libc::$fn`.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
pub(crate) use syscall;

/// Errors from the [`sys`](self) functions. Cold path only: these are set-up failures.
///
/// Each variant says what the caller should do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SysError {
    /// The requested core is not in the calling thread's allowed CPU set (it does not exist, is
    /// offline, or is excluded by `taskset`/cgroup cpusets). Pick one of `available`.
    #[error("cannot pin to core {core}: no such core in this thread's CPU set (available cores: {available:?})")]
    NoSuchCore {
        /// The core that was asked for.
        core: usize,
        /// The cores this thread may run on.
        available: Vec<usize>,
    },
    /// The thread's CPU affinity mask could not be read. Run without pinning, or check that
    /// `sched_getaffinity` is allowed (seccomp profiles sometimes block it).
    #[error("cannot read this thread's CPU affinity mask (sched_getaffinity failed): {source}")]
    AffinityUnavailable {
        /// The OS reason.
        source: io::Error,
    },
    /// `sched_setaffinity` refused the core. Check cgroup cpusets; run without pinning.
    #[error("pinning the current thread to core {core} failed: {source}")]
    Pin {
        /// The core that was asked for.
        core: usize,
        /// The OS reason.
        source: io::Error,
    },
    /// The SCHED_FIFO priority is outside what the kernel accepts. Pass a value in `min..=max`.
    #[error("SCHED_FIFO priority {priority} is out of range {min}..={max}")]
    FifoPriorityOutOfRange {
        /// The priority that was asked for.
        priority: i32,
        /// Lowest SCHED_FIFO priority.
        min: i32,
        /// Highest SCHED_FIFO priority.
        max: i32,
    },
    /// The process may not use real-time scheduling. Grant `CAP_SYS_NICE` (or run as root, or
    /// raise `RLIMIT_RTPRIO`), or keep the default scheduler.
    #[error("SCHED_FIFO needs CAP_SYS_NICE / root (or an RLIMIT_RTPRIO allowance); setting priority {priority} failed: {source}")]
    FifoNotPermitted {
        /// The priority that was asked for.
        priority: i32,
        /// The OS reason (`EPERM`).
        source: io::Error,
    },
    /// `sched_setscheduler` failed for another reason. Keep the default scheduler.
    #[error("setting SCHED_FIFO priority {priority} failed: {source}")]
    Fifo {
        /// The priority that was asked for.
        priority: i32,
        /// The OS reason.
        source: io::Error,
    },
    /// A socket option could not be set. `hint` names the usual cause where there is one
    /// (e.g. a missing capability). Decide whether the engine may run without it.
    #[error("setting {option} to {value} failed: {source}{hint}")]
    SetOption {
        /// The option, e.g. `"SO_BUSY_POLL"`.
        option: &'static str,
        /// The value asked for.
        value: u64,
        /// The OS reason.
        source: io::Error,
        /// Extra advice (empty or starting with `"; "`).
        hint: &'static str,
    },
    /// A socket option could not be read back. The socket is probably closed or not a TCP socket.
    #[error("reading {option} back failed: {source}")]
    GetOption {
        /// The option, e.g. `"SO_RCVBUF"`.
        option: &'static str,
        /// The OS reason.
        source: io::Error,
    },
}
