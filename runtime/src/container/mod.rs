//! The container lifecycle as a library: create, start, state, kill, delete, pause,
//! resume, stats, exec. The CLI and the agent's shim both drive containers through here.

mod create;
mod exec;
mod ops;
mod wait;

use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use create::{Created, create};
pub use exec::{ExecOptions, Spawned, exec, wait_exec};
pub use ops::{delete, kill, list, pause, ps, resume, start, state, stats, status};
pub use wait::{Exit, wait};

/// Default state root, as runc's `/run/runc`.
pub const DEFAULT_ROOT: &str = "/run/podvisor/runtime";

/// OCI runtime-spec version written into state.
pub const OCI_VERSION: &str = "1.2.0";

/// What to do when a limit's cgroup controller is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupLimits {
    /// Fail creation with [`crate::Error::MissingController`].
    #[default]
    Strict,
    /// Skip the limit and return a warning.
    BestEffort,
}

/// The three standard descriptors of a container process.
#[derive(Debug, Clone, Copy)]
pub struct Stdio<'a> {
    /// Becomes fd 0.
    pub stdin: BorrowedFd<'a>,
    /// Becomes fd 1.
    pub stdout: BorrowedFd<'a>,
    /// Becomes fd 2.
    pub stderr: BorrowedFd<'a>,
}

/// Options of [`create`].
#[derive(Debug)]
pub struct CreateOptions<'a> {
    /// State root (`--root`).
    pub root: PathBuf,
    /// Container id.
    pub id: String,
    /// Bundle directory (holds `config.json`).
    pub bundle: PathBuf,
    /// stdio of the container process (ignored for a terminal).
    pub stdio: Stdio<'a>,
    /// Console socket receiving the pty master (`process.terminal`).
    pub console_socket: Option<BorrowedFd<'a>>,
    /// Extra descriptors passed as fds 3, 4, ... (`--preserve-fds`).
    pub preserve_fds: Vec<BorrowedFd<'a>>,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// Missing-controller policy.
    pub cgroup_limits: CgroupLimits,
}

/// Lifecycle status, as OCI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created, waiting for start.
    Created,
    /// Running the user program.
    Running,
    /// Frozen.
    Paused,
    /// The init has exited.
    Stopped,
}

impl Status {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// The OCI state document (with runc's extra fields), as `state` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciState {
    /// Spec version.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Host pid of the init (0 once stopped, as runc reports it).
    pub pid: i32,
    /// Status.
    pub status: Status,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Root filesystem.
    pub rootfs: PathBuf,
    /// Creation time (RFC 3339).
    pub created: String,
    /// Owner.
    pub owner: String,
    /// Annotations from the spec.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty", default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}
