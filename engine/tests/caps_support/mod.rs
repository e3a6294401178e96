//! Dropping one Linux capability from the calling test thread (capabilities are per thread, so
//! only that thread loses it): for tests of what happens without `CAP_SYS_NICE` or
//! `CAP_NET_ADMIN`.

/// Linux capability number of CAP_NET_ADMIN (linux/capability.h).
#[allow(dead_code)]
pub const CAP_NET_ADMIN: u32 = 12;
/// Linux capability number of CAP_SYS_NICE (linux/capability.h).
#[allow(dead_code)]
pub const CAP_SYS_NICE: u32 = 23;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Removes `cap` from the calling thread's effective capabilities.
pub fn drop_effective_capability(cap: u32) {
    let mut header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data are valid for the kernel to read and write; version 3 uses two
    // CapData entries, which `data` provides.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget: {}", std::io::Error::last_os_error());
    data[(cap / 32) as usize].effective &= !(1 << (cap % 32));
    // SAFETY: as above; the kernel only reads them.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
}
