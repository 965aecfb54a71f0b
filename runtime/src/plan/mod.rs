//! `InitPlan`: everything the container init does, computed from the spec before any
//! process exists, sent to the init as one serialised message.
//!
//! Building the plan is pure ([`build`]); performing it is the init's job
//! ([`crate::init`]). Every number the kernel needs (mount flags, capability masks,
//! seccomp BPF) is resolved here, so spec errors surface before a process is cloned.

mod build;
pub(crate) mod mount_options;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::hooks::HookSpec;
use crate::seccomp::SeccompProgram;

pub use build::{ClonePlan, IdMap, PlanOptions, exec_plan, plan_container};
pub use mount_options::{MountOptions, parse_mount_options};

/// A namespace kind, as `linux.namespaces[].type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsKind {
    /// `user`
    User,
    /// `ipc`
    Ipc,
    /// `uts`
    Uts,
    /// `network`
    Net,
    /// `pid`
    Pid,
    /// `cgroup`
    Cgroup,
    /// `mount`
    Mount,
    /// `time`
    Time,
}

impl NsKind {
    /// The `CLONE_NEW*` flag.
    pub fn clone_flag(self) -> u64 {
        (match self {
            NsKind::User => libc::CLONE_NEWUSER,
            NsKind::Ipc => libc::CLONE_NEWIPC,
            NsKind::Uts => libc::CLONE_NEWUTS,
            NsKind::Net => libc::CLONE_NEWNET,
            NsKind::Pid => libc::CLONE_NEWPID,
            NsKind::Cgroup => libc::CLONE_NEWCGROUP,
            NsKind::Mount => libc::CLONE_NEWNS,
            NsKind::Time => 0x80,
        }) as u64
    }

    /// File name under `/proc/<pid>/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            NsKind::User => "user",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
            NsKind::Net => "net",
            NsKind::Pid => "pid",
            NsKind::Cgroup => "cgroup",
            NsKind::Mount => "mnt",
            NsKind::Time => "time",
        }
    }

    /// Order in which namespaces are joined: user first (it grants the rights for the
    /// others), mount last (it changes what paths mean).
    pub const JOIN_ORDER: [NsKind; 8] = [
        NsKind::User,
        NsKind::Ipc,
        NsKind::Uts,
        NsKind::Net,
        NsKind::Pid,
        NsKind::Cgroup,
        NsKind::Time,
        NsKind::Mount,
    ];
}

/// A namespace to join with `setns(2)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// Which namespace.
    pub kind: NsKind,
    /// Its file (`/proc/<pid>/ns/net`, `/run/netns/pod`).
    pub path: PathBuf,
}

/// The whole plan of one container init (or exec helper).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitPlan {
    /// Container id (for error messages).
    pub id: String,
    /// Namespaces to join, in order.
    pub join: Vec<Join>,
    /// After joining, fork with `CLONE_PARENT` so the workload starts inside a joined pid
    /// namespace (setns on a pid namespace only affects children).
    pub fork_after_join: bool,
    /// Root filesystem set-up; `None` for exec (the joined mount namespace is ready).
    pub rootfs: Option<RootfsPlan>,
    /// `hostname`.
    pub hostname: Option<String>,
    /// `domainname`.
    pub domainname: Option<String>,
    /// `linux.sysctl`, in a stable order.
    pub sysctl: Vec<(String, String)>,
    /// `hooks.createContainer`: run by the init before `pivot_root`.
    pub create_container_hooks: Vec<HookSpec>,
    /// `hooks.startContainer`: run by the init after `start`, before exec.
    pub start_container_hooks: Vec<HookSpec>,
    /// OCI state (JSON) given to the init's hooks on stdin.
    pub hook_state: String,
    /// The process to become.
    pub process: ProcessPlan,
    /// Descriptor of the exec fifo (opened `O_PATH` by the runtime): the init blocks opening
    /// it for writing until `start`. `None` for exec, which starts at once.
    pub start_fifo_fd: Option<i32>,
    /// Descriptor of the console socket, when `process.terminal` is set.
    pub console_socket_fd: Option<i32>,
    /// Number of descriptors after stdio passed through to the workload.
    pub preserve_fds: u32,
    /// The init creates a new network namespace: bring its `lo` up (as runc and crun do).
    #[serde(default)]
    pub loopback_up: bool,
}

/// How the root filesystem is assembled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsPlan {
    /// Absolute host path of the rootfs.
    pub root: PathBuf,
    /// `root.readonly`.
    pub readonly: bool,
    /// Propagation applied to `/` first (`MS_REC | MS_SLAVE` unless `rootfsPropagation`).
    pub propagation: u64,
    /// Propagation applied to the new root after pivot (from `rootfsPropagation`), if any.
    pub final_propagation: Option<u64>,
    /// `pivot_root` (true) or `MS_MOVE` + `chroot` (`--no-pivot`, initramfs roots).
    pub pivot: bool,
    /// Mounts, in spec order.
    pub mounts: Vec<MountPlan>,
    /// Device nodes to create (defaults, then `linux.devices`).
    pub devices: Vec<DevicePlan>,
    /// Bind-mount device nodes from the host instead of `mknod` (user namespaces).
    pub bind_devices: bool,
    /// The container has its own (new or joined) cgroup namespace. Without one, a cgroup2
    /// mount would show the whole hierarchy, so the container's own cgroup is bound
    /// instead (runc's behaviour).
    pub cgroupns: bool,
    /// `linux.maskedPaths`.
    pub masked_paths: Vec<String>,
    /// `linux.readonlyPaths`.
    pub readonly_paths: Vec<String>,
}

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    /// Source (host path for binds, resolved against the bundle).
    pub source: String,
    /// Destination inside the rootfs.
    pub destination: String,
    /// Filesystem type (`proc`, `tmpfs`, `cgroup2`, ...); `none` for binds.
    pub fstype: String,
    /// Options, resolved.
    pub options: MountOptions,
}

/// One device node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePlan {
    /// Path inside the container (`/dev/null`).
    pub path: String,
    /// `c`, `b` or `p`.
    pub kind: char,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The five capability sets, as masks (bit n = capability n).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CapsPlan {
    /// Bounding set.
    pub bounding: u64,
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
    /// Ambient set.
    pub ambient: u64,
}

/// One `setrlimit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RlimitPlan {
    /// `RLIMIT_NOFILE`, ...
    pub resource: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The process the init becomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessPlan {
    /// argv.
    pub args: Vec<String>,
    /// Environment (`KEY=value`).
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// `umask`, if set.
    pub umask: Option<u32>,
    /// Resource limits.
    pub rlimits: Vec<RlimitPlan>,
    /// Capabilities; `None` keeps those of the init (runc does the same).
    pub caps: Option<CapsPlan>,
    /// `prctl(PR_SET_NO_NEW_PRIVS)`.
    pub no_new_privs: bool,
    /// `/proc/self/oom_score_adj`.
    pub oom_score_adj: Option<i32>,
    /// Allocate a pty and hand its master to the console socket.
    pub terminal: bool,
    /// Initial terminal size (rows, columns).
    pub console_size: Option<(u16, u16)>,
    /// seccomp filter, installed last.
    pub seccomp: Option<SeccompProgram>,
}
