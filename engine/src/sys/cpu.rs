//! Thread placement: core pinning and real-time scheduling.

use std::io;

use super::{syscall, SysError};

/// Cores the calling thread may run on (its current affinity mask), in ascending order.
///
/// This honours `taskset`, cgroup cpusets and any earlier pinning of this thread.
pub fn allowed_cores() -> Result<Vec<usize>, SysError> {
    match core_affinity::get_core_ids() {
        Some(ids) => Ok(ids.into_iter().map(|id| id.id).collect()),
        None => Err(SysError::AffinityUnavailable {
            source: io::Error::last_os_error(),
        }),
    }
}

/// Pins the calling thread to `core` (a logical CPU number as in `/proc/cpuinfo`).
///
/// For the engine thread: no migrations between cores, so caches and the branch predictor stay
/// warm and the scheduler does not move the spinning loop around. Call it once, first thing in
/// the thread.
///
/// The core must be in the thread's current affinity mask (see [`allowed_cores`]); otherwise the
/// error names the core and lists the available ones. Note that once a thread is pinned its mask
/// is that one core, so re-pinning it elsewhere is refused: pin fresh threads instead.
pub fn pin_current_thread(core: usize) -> Result<(), SysError> {
    let available = allowed_cores()?;
    if !available.contains(&core) {
        return Err(SysError::NoSuchCore { core, available });
    }
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        Ok(())
    } else {
        // core_affinity returns `sched_setaffinity(..) == 0`; errno still holds the reason.
        Err(SysError::Pin {
            core,
            source: io::Error::last_os_error(),
        })
    }
}

/// Switches the calling thread to the `SCHED_FIFO` real-time policy at `priority` (1..=99 on
/// Linux).
///
/// A SCHED_FIFO thread runs until it blocks or yields; ordinary (`SCHED_OTHER`) threads on its
/// core never preempt it. That is what a busy-polling engine on a dedicated core wants, and what
/// must never be done on a shared core: a spinning FIFO thread starves everything else there
/// (the kernel's RT throttling, `sched_rt_runtime_us`, is the only safety net).
///
/// Without `CAP_SYS_NICE` (or root, or an `RLIMIT_RTPRIO` allowance) the kernel answers `EPERM`,
/// reported as [`SysError::FifoNotPermitted`] with that advice in its message.
pub fn set_sched_fifo(priority: i32) -> Result<(), SysError> {
    // SAFETY: sched_get_priority_{min,max} take a policy constant and touch no memory.
    let min = syscall!(sched_get_priority_min(libc::SCHED_FIFO))
        .map_err(|source| SysError::Fifo { priority, source })?;
    // SAFETY: as above.
    let max = syscall!(sched_get_priority_max(libc::SCHED_FIFO))
        .map_err(|source| SysError::Fifo { priority, source })?;
    if priority < min || priority > max {
        return Err(SysError::FifoPriorityOutOfRange { priority, min, max });
    }
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pid 0 means the calling thread; `param` is a valid, initialised sched_param that
    // outlives the call, and the kernel only reads it.
    match syscall!(sched_setscheduler(0, libc::SCHED_FIFO, &param)) {
        Ok(_) => Ok(()),
        Err(source) if source.raw_os_error() == Some(libc::EPERM) => {
            Err(SysError::FifoNotPermitted { priority, source })
        }
        Err(source) => Err(SysError::Fifo { priority, source }),
    }
}
