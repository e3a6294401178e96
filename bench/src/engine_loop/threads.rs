//! Per-thread counters from the kernel: CPU time (the thread's own CPU clock), scheduler
//! counters (`/proc/self/task/TID/{schedstat,status,stat}`) and, where the kernel lets this
//! process count the `raw_syscalls:sys_enter` tracepoint, the exact number of system calls a
//! thread makes ([`SyscallCounter`]).
//!
//! Linux only; elsewhere every figure reads 0 and the counter is unavailable.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};

/// The calling thread's id.
pub fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// The id of this process's live thread named `name` (the kernel keeps the first 15 bytes of a
/// name), if there is one.
pub fn tid_named(name: &str) -> Option<i32> {
    let wanted = &name.as_bytes()[..name.len().min(15)];
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let tid = task.file_name();
        let Some(tid) = tid.to_str() else { continue };
        // A thread may end while we look: skip it.
        let Ok(comm) = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")) else {
            continue;
        };
        if comm.trim_end().as_bytes() == wanted {
            return tid.parse().ok();
        }
    }
    None
}

/// CPU time thread `tid` (of this process) has used so far, ns, from its CPU-time clock
/// (`clock_gettime` on the thread's clock id: exact, not rounded to scheduler ticks). 0 when the
/// thread is gone.
pub fn thread_cpu_ns(tid: i32) -> u64 {
    // The kernel's MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED): ~tid << 3 | per-thread | sched.
    let clock = ((!tid) << 3) | 4 | 2;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec; clock_gettime only writes to it and reports a
    // bad clock id (a thread that has ended) as an error.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    if r != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Scheduler counters of one thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadStat {
    /// CPU time, ns ([`thread_cpu_ns`]).
    pub cpu_ns: u64,
    /// User plus system time in clock ticks (`stat` fields 14 and 15), converted to ns: the
    /// coarse figure `top` shows; kept as a cross-check of `cpu_ns`.
    pub utime_stime_ns: u64,
    /// Time runnable but waiting for a CPU, ns (`schedstat`).
    pub wait_ns: u64,
    /// Times the thread gave up the CPU itself (blocked in the kernel).
    pub voluntary: u64,
    /// Times it was switched out while it still wanted to run (preempted).
    pub preempted: u64,
}

impl ThreadStat {
    /// The counters of thread `tid` of this process now (zeros for what cannot be read).
    pub fn of(tid: i32) -> ThreadStat {
        let read = |file: &str| std::fs::read_to_string(format!("/proc/self/task/{tid}/{file}"));
        let mut s = ThreadStat {
            cpu_ns: thread_cpu_ns(tid),
            ..ThreadStat::default()
        };
        if let Ok(text) = read("schedstat") {
            s.wait_ns = text
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
        if let Ok(text) = read("status") {
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            s.voluntary = field("voluntary_ctxt_switches:");
            s.preempted = field("nonvoluntary_ctxt_switches:");
        }
        if let Ok(text) = read("stat") {
            // The name (field 2) may hold spaces: count fields after its closing parenthesis.
            if let Some(rest) = text.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<u64> = rest
                    .split_whitespace()
                    .map(|v| v.parse().unwrap_or(0))
                    .collect();
                // rest[0] is field 3 (state): utime is field 14, stime field 15.
                if f.len() > 12 {
                    // SAFETY: sysconf has no preconditions.
                    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
                    s.utime_stime_ns = (f[11] + f[12]) * (1_000_000_000 / hz);
                }
            }
        }
        s
    }

    /// The calling thread's counters.
    pub fn current() -> ThreadStat {
        ThreadStat::of(gettid())
    }

    /// `self - earlier`, counter by counter.
    pub fn since(self, earlier: ThreadStat) -> ThreadStat {
        ThreadStat {
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            utime_stime_ns: self.utime_stime_ns.saturating_sub(earlier.utime_stime_ns),
            wait_ns: self.wait_ns.saturating_sub(earlier.wait_ns),
            voluntary: self.voluntary.saturating_sub(earlier.voluntary),
            preempted: self.preempted.saturating_sub(earlier.preempted),
        }
    }
}

/// `struct perf_event_attr` up to `config1` (PERF_ATTR_SIZE_VER0, 64 bytes): all a counting
/// tracepoint event needs.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// The id of tracepoint `name` (`group/event`, e.g. `raw_syscalls/sys_enter`), from tracefs.
fn tracepoint_id(name: &str) -> Result<u64, String> {
    let mut last = String::new();
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        let path = format!("{dir}/events/{name}/id");
        match std::fs::read_to_string(&path) {
            Ok(t) => return t.trim().parse().map_err(|e| format!("{path}: {e}")),
            Err(e) => last = format!("{path}: {e}"),
        }
    }
    Err(last)
}

/// `PERF_EVENT_IOC_SET_FILTER`: `_IOW('$', 6, char *)`.
const PERF_EVENT_IOC_SET_FILTER: libc::c_ulong = 0x4008_2406;
/// `PERF_EVENT_IOC_ENABLE`: `_IO('$', 0)`.
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;

/// Counts the system calls one thread makes: a perf counter on the `raw_syscalls:sys_enter`
/// tracepoint attached to that thread (needs tracefs and, as a rule, root or `CAP_PERFMON`).
/// Exact, and costs the counted thread nothing but the tracepoint's increment. Any other
/// tracepoint can be counted the same way ([`SyscallCounter::tracepoint`]), e.g. one system
/// call, or its failures only.
#[derive(Debug)]
pub struct SyscallCounter {
    file: File,
}

impl SyscallCounter {
    /// A counter of every system call of thread `tid` of this process, counting from now.
    ///
    /// # Errors
    /// Why the kernel refused (no tracefs, not permitted): the text says which.
    pub fn on_thread(tid: i32) -> Result<SyscallCounter, String> {
        SyscallCounter::tracepoint(tid, "raw_syscalls/sys_enter", None)
    }

    /// A counter of tracepoint `name` (`group/event`, e.g. `syscalls/sys_enter_epoll_wait`)
    /// hit by thread `tid`, counting from now; with `filter` (the tracepoint's filter syntax,
    /// e.g. `ret < 0` on a `sys_exit_*` event) only the hits that match.
    ///
    /// # Errors
    /// Why the kernel refused (no such tracepoint, a bad filter, not permitted).
    pub fn tracepoint(
        tid: i32,
        name: &str,
        filter: Option<&str>,
    ) -> Result<SyscallCounter, String> {
        let id = tracepoint_id(name)?;
        let attr = PerfEventAttr {
            kind: PERF_TYPE_TRACEPOINT,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: id,
            // Bit 0, `disabled`: with a filter, count only once it is in place.
            flags: u64::from(filter.is_some()),
            ..PerfEventAttr::default()
        };
        // SAFETY: perf_event_open reads `attr` (a live, initialized struct whose `size` field
        // is its real size) and takes the rest by value; it returns a new fd or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                tid as libc::pid_t,
                -1 as libc::c_int,
                -1 as libc::c_int,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(format!(
                "perf_event_open({name}): {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `fd` is a new descriptor this process owns and nothing else holds.
        let file = unsafe { File::from_raw_fd(fd as RawFd) };
        if let Some(f) = filter {
            let c = std::ffi::CString::new(f).map_err(|e| format!("filter {f:?}: {e}"))?;
            // SAFETY: `file` is a live perf event descriptor and `c` a NUL-terminated string
            // that outlives the call; the kernel copies it.
            let r = unsafe {
                libc::ioctl(
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    PERF_EVENT_IOC_SET_FILTER as _,
                    c.as_ptr(),
                )
            };
            if r != 0 {
                return Err(format!(
                    "filter {f:?} on {name}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: as above; PERF_EVENT_IOC_ENABLE takes no argument.
            let r = unsafe {
                libc::ioctl(
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    PERF_EVENT_IOC_ENABLE as _,
                    0,
                )
            };
            if r != 0 {
                return Err(format!(
                    "enable {name}: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(SyscallCounter { file })
    }

    /// A counter on the calling thread.
    ///
    /// # Errors
    /// As [`SyscallCounter::on_thread`].
    pub fn on_current_thread() -> Result<SyscallCounter, String> {
        SyscallCounter::on_thread(gettid())
    }

    /// System calls counted so far. Reading is itself a system call: when the counter is on
    /// the calling thread, each read adds one to what later reads see.
    pub fn read(&mut self) -> u64 {
        let mut b = [0u8; 8];
        match self.file.read(&mut b) {
            Ok(8) => u64::from_ne_bytes(b),
            _ => 0,
        }
    }
}

/// The whole machine's CPU time (every CPU together, `/proc/stat`'s `cpu` line), in clock
/// ticks: how busy the machine was around a measurement, and how much time the hypervisor took
/// away (steal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineCpu {
    /// User, nice, system, irq and softirq time.
    pub busy: u64,
    /// Idle and iowait time.
    pub idle: u64,
    /// Time a virtual CPU wanted to run but the hypervisor ran something else.
    pub steal: u64,
}

impl MachineCpu {
    /// The counters now (zeros when `/proc/stat` cannot be read).
    pub fn now() -> MachineCpu {
        let Ok(text) = std::fs::read_to_string("/proc/stat") else {
            return MachineCpu::default();
        };
        let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
            return MachineCpu::default();
        };
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let at = |i: usize| f.get(i).copied().unwrap_or(0);
        MachineCpu {
            busy: at(0) + at(1) + at(2) + at(5) + at(6),
            idle: at(3) + at(4),
            steal: at(7),
        }
    }

    /// `self - earlier`, counter by counter.
    pub fn since(self, earlier: MachineCpu) -> MachineCpu {
        MachineCpu {
            busy: self.busy.saturating_sub(earlier.busy),
            idle: self.idle.saturating_sub(earlier.idle),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }

    /// Steal as a percentage of all the time counted.
    pub fn steal_pct(&self) -> f64 {
        let total = self.busy + self.idle + self.steal;
        if total == 0 {
            0.0
        } else {
            100.0 * self.steal as f64 / total as f64
        }
    }

    /// Busy time as a percentage of all the time counted.
    pub fn busy_pct(&self) -> f64 {
        let total = self.busy + self.idle + self.steal;
        if total == 0 {
            0.0
        } else {
            100.0 * self.busy as f64 / total as f64
        }
    }
}
