//! The crate's one public error type.
//!
//! Variants separate the spec's fault (permanent: report, do not retry) from the system's
//! (may be retried) and always keep the errno.

use std::io;
use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong running a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OCI spec asks for something invalid or unsupported (permanent).
    #[error("invalid spec: {field}: {reason}")]
    Spec {
        /// JSON path of the offending field, e.g. `linux.seccomp.syscalls[3].names`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A syscall or file operation done by the runtime failed.
    #[error("{op} {}: {err}", path.display())]
    Io {
        /// What was being done, e.g. `write cgroup file`.
        op: &'static str,
        /// The file or object it was done to.
        path: PathBuf,
        /// The cause, with its errno (shown in the message, so not chained as a source).
        err: io::Error,
    },
    /// A step of container setup, performed by the container init, failed.
    #[error("{step} in container {id}: {message}")]
    Init {
        /// Container id.
        id: String,
        /// Named step (`pivot_root into /run/.../rootfs`).
        step: String,
        /// errno of the failed call, if any.
        errno: Option<i32>,
        /// Step, object and errno as text.
        message: String,
    },
    /// The cgroup hierarchy lacks a controller that a requested limit needs.
    #[error(
        "cgroup controller {controller} is not available in {}: cannot apply {what} (use best-effort cgroup limits to skip)",
        parent.display()
    )]
    MissingController {
        /// Controller name (`memory`, `cpu`, ...).
        controller: String,
        /// What needed it (`linux.resources.memory.limit`).
        what: String,
        /// The cgroup whose `cgroup.controllers` lacks it.
        parent: PathBuf,
    },
    /// No container with this id exists under the state root.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// A container with this id already exists.
    #[error("container {0} already exists")]
    Exists(String),
    /// The container is not in a state that allows the operation.
    #[error("container {id} is {status}: cannot {op}")]
    BadState {
        /// Container id.
        id: String,
        /// Its current status.
        status: String,
        /// The refused operation.
        op: &'static str,
    },
    /// A hook failed or timed out.
    #[error("{kind} hook {path}: {reason}")]
    Hook {
        /// `createRuntime`, `poststart`, ...
        kind: &'static str,
        /// The hook's program.
        path: String,
        /// Exit status, timeout or spawn error.
        reason: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, err: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            err,
        }
    }

    /// Shorthand for [`Error::Spec`].
    pub fn spec(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Spec {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// True when retrying cannot help: the spec or the request is at fault.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::Spec { .. }
                | Error::MissingController { .. }
                | Error::NotFound(_)
                | Error::Exists(_)
                | Error::BadState { .. }
        )
    }
}

/// Convert a rustix errno into an `io::Error`.
pub(crate) fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}
