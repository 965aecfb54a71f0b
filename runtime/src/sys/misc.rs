//! `mount(2)` with raw flags, `seccomp(2)` filter installation and `close_range(2)`.

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `mount(2)` with the raw `MS_*` flags, which rustix only partly exposes (no `MS_REC`
/// combinations with propagation, no `MS_MOVE` with data).
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: u64,
    data: Option<&CStr>,
) -> io::Result<()> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is either null or a NUL-terminated string borrowed for the call.
    let ret = unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags as libc::c_ulong,
            ptr(data).cast(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// One classic BPF instruction, `struct sock_filter` of `<linux/filter.h>`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// Install a seccomp filter with `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`.
pub fn install_seccomp(program: &[SockFilter], flags: u32) -> io::Result<()> {
    let len =
        u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let prog = SockFprog {
        len,
        filter: program.as_ptr(),
    };
    const SECCOMP_SET_MODE_FILTER: libc::c_long = 1;
    // SAFETY: prog points at `len` valid instructions that outlive the call; the kernel
    // copies the program.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_long,
            std::ptr::addr_of!(prog),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Set `FD_CLOEXEC` on every descriptor numbered `first` or above
/// (`close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`), so nothing leaks into the workload.
pub fn mark_cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_long = 1 << 2;
    // SAFETY: close_range only changes descriptor flags of this process.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_long,
            libc::c_long::from(u32::MAX),
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Take ownership of a descriptor this process inherited at a number its parent chose
/// (the init socket). Returns `None` if the number is not an open descriptor.
pub fn owned_from_inherited(fd: RawFd) -> Option<OwnedFd> {
    if fd < 0 || rustix::io::fcntl_getfd(borrow_inherited(fd)).is_err() {
        return None;
    }
    // SAFETY: the runtime placed this descriptor with dup2 before exec and nothing else in
    // this freshly exec'd process refers to it, so it has exactly one owner from here on.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Borrow a descriptor this process inherited for its whole life (stdio, plan fds).
pub fn borrow_inherited(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the caller names a descriptor placed by the runtime before exec that the init
    // never closes before it execs (or exits); a bad number only makes syscalls fail EBADF.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Empty this thread's signal mask (the mask survives `execve`).
pub fn unblock_all_signals() -> io::Result<()> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    if unsafe { libc::sigemptyset(set.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the set was initialised by sigemptyset just above.
    let set = unsafe { set.assume_init() };
    // SAFETY: set is a valid sigset_t; the old mask is not requested.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// `pidfd_send_signal(2)` with any signal number (rustix's `Signal` cannot name the
/// real-time ones safely).
pub fn pidfd_kill(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd is a live descriptor borrowed for the call; a null siginfo and zero
    // flags ask for a plain kill(2)-style signal.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Block `signals` in this thread and return a `signalfd(2)` that reports them, so a
/// single-threaded caller can wait for signals and a pidfd in one poll(2).
pub fn block_into_signalfd(signals: &[i32]) -> io::Result<OwnedFd> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    if unsafe { libc::sigemptyset(set.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: initialised by sigemptyset just above.
    let mut set = unsafe { set.assume_init() };
    for s in signals {
        // SAFETY: set is a valid sigset_t; an invalid signal number only returns EINVAL.
        if unsafe { libc::sigaddset(&mut set, *s) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: set is a valid sigset_t; the old mask is not requested.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    // SAFETY: -1 asks for a new descriptor; set is valid for the call.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: signalfd just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Takes ownership of descriptor `fd`, inherited from the process that started this one,
/// if it is open and a pipe; `None` otherwise (so a wrong number closes nothing else).
/// Only for a descriptor the starter passed for the caller's one purpose.
pub fn take_inherited_pipe(fd: RawFd) -> Option<OwnedFd> {
    let st = rustix::fs::fstat(borrow_inherited(fd)).ok()?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Fifo {
        return None;
    }
    owned_from_inherited(fd)
}
