//! `clone3(2)` wrappers.
//!
//! [`spawn_reexec`] is called from a possibly multi-threaded process, so its child runs no
//! Rust code: it only issues raw syscalls (`read`, `setresgid`, `setresuid`, `setpgid`,
//! `rt_sigprocmask`, `dup2`, `execve`, `_exit`), all async-signal-safe, on memory prepared
//! before the clone.
//! [`fork_into_parent`] is only called by the single-threaded container init, where a plain
//! fork-like clone is safe.

use std::ffi::{CStr, CString, c_char, c_int};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `struct clone_args` from `<linux/sched.h>` (version 2, with the `cgroup` field).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_PIDFD: u64 = 0x1000;
const CLONE_PARENT: u64 = 0x8000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What the child of [`spawn_reexec`] does before it becomes `exe`.
#[derive(Debug)]
pub struct ReexecChild<'a> {
    /// Program to execute, normally `/proc/self/exe`.
    pub exe: &'a CStr,
    /// `argv` of the new program.
    pub argv: &'a [CString],
    /// Complete environment of the new program.
    pub envp: &'a [CString],
    /// `(source, target)` pairs: `source` is duplicated onto descriptor number `target`
    /// (without `O_CLOEXEC`). Every source must be a descriptor numbered above every target,
    /// so the duplications cannot overwrite each other.
    pub fds: &'a [(BorrowedFd<'a>, RawFd)],
    /// `CLONE_NEW*` flags of the namespaces to create.
    pub namespaces: u64,
    /// Cgroup directory to start the child in (`CLONE_INTO_CGROUP`).
    pub cgroup: Option<BorrowedFd<'a>>,
    /// When set, the child blocks reading one byte from this descriptor, then becomes uid and
    /// gid 0 of its new user namespace (`setresgid`, `setresuid`) before executing: the
    /// parent writes the id maps first, so that the exec keeps full capabilities in the
    /// namespace.
    pub userns_gate: Option<BorrowedFd<'a>>,
    /// Put the child in a process group of its own (`setpgid(0, 0)`), so that signals to
    /// the caller's terminal or group do not reach it.
    pub new_process_group: bool,
    /// Unblock every signal in the child before it executes (what the caller's thread
    /// blocked would otherwise stay blocked in the new program).
    pub unblock_signals: bool,
}

fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    let mut v: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    v.push(std::ptr::null());
    v
}

/// Clone a child that re-executes `child.exe`, returning its pid and a pidfd obtained
/// atomically by `CLONE_PIDFD` (so an early exit can never be missed).
pub fn spawn_reexec(child: &ReexecChild<'_>) -> io::Result<(i32, OwnedFd)> {
    for (src, dst) in child.fds {
        if src.as_raw_fd() <= *dst {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
    }
    let argv = null_terminated(child.argv);
    let envp = null_terminated(child.envp);
    let fds: Vec<(RawFd, RawFd)> = child.fds.iter().map(|(s, d)| (s.as_raw_fd(), *d)).collect();
    let gate = child.userns_gate.map(|fd| fd.as_raw_fd());
    let setup = ChildSetup {
        gate,
        new_process_group: child.new_process_group,
        unblock_signals: child.unblock_signals,
    };
    let mut pidfd: c_int = -1;
    let mut args = CloneArgs {
        flags: child.namespaces | CLONE_PIDFD,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(cg) = child.cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cg.as_raw_fd() as u64;
    }
    // SAFETY: clone3 without CLONE_VM gives the child a copy of our address space; `args`
    // lives across the call and its size is passed exactly. The child branch below only
    // performs async-signal-safe raw syscalls on data prepared before the clone, then execs
    // or exits, so no lock held by another thread of this process can be touched.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of_mut!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        child_after_clone(&setup, &fds, child.exe, &argv, &envp);
    }
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CLONE_PIDFD stored a new descriptor in `pidfd` that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok((ret as i32, pidfd))
}

/// What the child of [`spawn_reexec`] does before it executes, prepared before the clone.
struct ChildSetup {
    gate: Option<RawFd>,
    new_process_group: bool,
    unblock_signals: bool,
}

/// The child of [`spawn_reexec`]: raw syscalls only, never returns.
fn child_after_clone(
    setup: &ChildSetup,
    fds: &[(RawFd, RawFd)],
    exe: &CStr,
    argv: &[*const c_char],
    envp: &[*const c_char],
) -> ! {
    if setup.new_process_group {
        // SAFETY: setpgid takes plain integers; on failure the child stays in the
        // caller's group, which only loses the signal isolation.
        unsafe { libc::syscall(libc::SYS_setpgid, 0, 0) };
    }
    if setup.unblock_signals {
        let empty: u64 = 0;
        // SAFETY: rt_sigprocmask reads a kernel sigset (8 bytes, its size passed) from a
        // live stack variable; it only changes this thread's mask.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                std::ptr::addr_of!(empty),
                std::ptr::null_mut::<u64>(),
                std::mem::size_of::<u64>(),
            )
        };
    }
    if let Some(gate) = setup.gate {
        let mut byte = 0u8;
        // SAFETY: reads one byte into a live stack variable from a descriptor we inherited.
        let n = unsafe { libc::read(gate, std::ptr::addr_of_mut!(byte).cast(), 1) };
        if n != 1 {
            // SAFETY: _exit is async-signal-safe and ends this child without running Rust code.
            unsafe { libc::_exit(125) };
        }
        // Raw syscalls, not the libc wrappers: glibc's setxid wrappers signal every thread
        // the parent had, which do not exist in this child.
        // SAFETY: setresgid takes plain integers; failure is reported by the exec'd init
        // when it finds itself without capabilities.
        unsafe { libc::syscall(libc::SYS_setresgid, 0, 0, 0) };
        // SAFETY: as above, for the user ids.
        unsafe { libc::syscall(libc::SYS_setresuid, 0, 0, 0) };
    }
    for &(src, dst) in fds {
        // SAFETY: dup2 on descriptors inherited from the parent; the parent checked that
        // every source is above every target, so no source is overwritten.
        if unsafe { libc::dup2(src, dst) } < 0 {
            // SAFETY: see above.
            unsafe { libc::_exit(126) };
        }
    }
    // SAFETY: exe, argv and envp are NUL-terminated arrays of pointers to C strings that were
    // built before the clone and are still mapped in this copy of the address space.
    unsafe { libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    // SAFETY: execve failed; leave without unwinding or running destructors.
    unsafe { libc::_exit(127) }
}

/// Fork the calling single-threaded process with `CLONE_PARENT | CLONE_PIDFD`: the child
/// becomes a sibling of the caller (a child of the caller's parent) and starts in the pid
/// namespace the caller joined with `setns(2)`. Returns `Some((pid, pidfd))` in the caller
/// and `None` in the child.
///
/// Only the container init calls this, and it is single-threaded by construction (it was
/// just exec'd), so the child may run ordinary Rust code.
pub fn fork_into_parent() -> io::Result<Option<(i32, OwnedFd)>> {
    let mut pidfd: c_int = -1;
    let mut args = CloneArgs {
        flags: CLONE_PARENT | CLONE_PIDFD,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        // Ignored with CLONE_PARENT: the sibling inherits the caller's own exit signal
        // (SIGCHLD, as spawn_reexec cloned it), which goes to the shared parent.
        exit_signal: 0,
        ..CloneArgs::default()
    };
    // SAFETY: the caller is single-threaded (documented contract, see module docs), so the
    // child's copy of the address space is consistent and it may run arbitrary code.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of_mut!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        r if r < 0 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => {
            // SAFETY: CLONE_PIDFD stored a new descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            Ok(Some((pid as i32, fd)))
        }
    }
}
