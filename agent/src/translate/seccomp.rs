//! Seccomp for a container: `RuntimeDefault` (a profile equivalent to containerd's default,
//! written here as data), `Unconfined`, or `Localhost` (an OCI-format JSON profile under
//! `--seccomp-profile-root`). The container's `seccompProfile` overrides the pod's; with
//! neither, the kubelet's default is Unconfined; privileged containers are unconfined.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::SeccompProfile;
use serde_json::{Value, json};

use super::TranslateError;

/// Syscalls every container may make.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socket",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// x86-64 only extras.
const ALLOWED_X86_64: &[&str] = &["arch_prctl", "modify_ldt"];

/// Syscalls allowed only when the container holds a capability (in its bounding set).
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP.
const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000 | 0x0200_0000;
/// ENOSYS: `clone3` reports "not implemented" so libc falls back to `clone`, whose flags we can inspect.
const ENOSYS: u32 = 38;
/// EPERM: what a denied syscall returns.
const EPERM: u32 = 1;

/// The RuntimeDefault profile for a container with the given bounding capabilities.
pub fn runtime_default(caps: &[String]) -> Value {
    let mut allowed: Vec<&str> = ALLOWED.to_vec();
    if cfg!(target_arch = "x86_64") {
        allowed.extend_from_slice(ALLOWED_X86_64);
    }
    let mut syscalls = vec![json!({"names": allowed, "action": "SCMP_ACT_ALLOW"})];
    for persona in [0u64, 0x0008, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}],
        }));
    }
    let has = |c: &str| caps.iter().any(|x| x == c);
    for (cap, names) in BY_CAPABILITY {
        if has(cap) {
            syscalls.push(json!({"names": names, "action": "SCMP_ACT_ALLOW"}));
        }
    }
    if !has("CAP_SYS_ADMIN") {
        syscalls.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        }));
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    })
}

/// What the pod/container ask for, after the override rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    /// No filter.
    Unconfined,
    /// The runtime's default profile.
    RuntimeDefault,
    /// A profile file (already joined to the profile root).
    Localhost(PathBuf),
}

/// Applies the override rules: privileged → unconfined; container over pod; none → unconfined.
pub fn choose(
    pod: Option<&SeccompProfile>,
    container: Option<&SeccompProfile>,
    privileged: bool,
    root: &Path,
) -> SeccompChoice {
    if privileged {
        return SeccompChoice::Unconfined;
    }
    match container.or(pod) {
        Some(p) if p.type_ == "RuntimeDefault" => SeccompChoice::RuntimeDefault,
        Some(p) if p.type_ == "Localhost" => {
            SeccompChoice::Localhost(root.join(p.localhost_profile.as_deref().unwrap_or("")))
        }
        _ => SeccompChoice::Unconfined,
    }
}

/// The `linux.seccomp` value for a choice. `read_profile` reads a Localhost profile file
/// (an effect, injected so this stays pure).
pub fn profile(
    container: &str,
    choice: &SeccompChoice,
    caps: &[String],
    read_profile: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<Option<Value>, TranslateError> {
    match choice {
        SeccompChoice::Unconfined => Ok(None),
        SeccompChoice::RuntimeDefault => Ok(Some(runtime_default(caps))),
        SeccompChoice::Localhost(path) => {
            let err = |message: String| TranslateError::Seccomp {
                container: container.to_owned(),
                path: path.clone(),
                message,
            };
            let bytes = read_profile(path).map_err(|e| err(e.to_string()))?;
            let parsed: oci_spec::runtime::LinuxSeccomp = serde_json::from_slice(&bytes)
                .map_err(|e| err(format!("not an OCI seccomp profile: {e}")))?;
            serde_json::to_value(parsed)
                .map(Some)
                .map_err(|e| err(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(profile: &Value) -> Vec<String> {
        profile["syscalls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["action"] == "SCMP_ACT_ALLOW" && s.get("args").is_none())
            .flat_map(|s| s["names"].as_array().cloned().unwrap_or_default())
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn default_profile_gates_syscalls_on_capabilities() {
        let plain = runtime_default(&["CAP_CHOWN".to_owned()]);
        let n = names(&plain);
        assert!(n.contains(&"read".to_owned()) && n.contains(&"execve".to_owned()));
        assert!(
            !n.contains(&"mount".to_owned())
                && !n.contains(&"ptrace".to_owned())
                && !n.contains(&"reboot".to_owned())
        );
        assert_eq!(plain["defaultAction"], "SCMP_ACT_ERRNO");
        let admin = runtime_default(&["CAP_SYS_ADMIN".to_owned(), "CAP_SYS_PTRACE".to_owned()]);
        let n = names(&admin);
        assert!(
            n.contains(&"mount".to_owned())
                && n.contains(&"ptrace".to_owned())
                && n.contains(&"clone3".to_owned())
        );
        // the profile is a valid OCI seccomp object
        let parsed: oci_spec::runtime::LinuxSeccomp =
            serde_json::from_value(plain).expect("OCI seccomp");
        assert!(parsed.syscalls().as_ref().is_some_and(|s| s.len() > 5));
    }

    #[test]
    fn override_rules() {
        let rd = SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        };
        let un = SeccompProfile {
            type_: "Unconfined".into(),
            localhost_profile: None,
        };
        let lh = SeccompProfile {
            type_: "Localhost".into(),
            localhost_profile: Some("p/x.json".into()),
        };
        let root = Path::new("/var/lib/kubelet/seccomp");
        assert_eq!(choose(None, None, false, root), SeccompChoice::Unconfined);
        assert_eq!(
            choose(Some(&rd), None, false, root),
            SeccompChoice::RuntimeDefault
        );
        assert_eq!(
            choose(Some(&rd), Some(&un), false, root),
            SeccompChoice::Unconfined
        );
        assert_eq!(
            choose(Some(&rd), None, true, root),
            SeccompChoice::Unconfined
        );
        assert_eq!(
            choose(None, Some(&lh), false, root),
            SeccompChoice::Localhost(root.join("p/x.json"))
        );
    }
}
