//! Running network probes inside a pod's network namespace.
//!
//! A socket belongs to the network namespace of the thread that created it, and setns(2) with
//! CLONE_NEWNET may be called by one thread of a multi-threaded process (unlike CLONE_NEWUSER
//! or CLONE_NEWNS), affecting only that thread. So a probe worker thread enters the pod's
//! namespace (a `/run/netns/NAME` bind mount or `/proc/PID/ns/net`), runs the handler, and
//! returns to the namespace it started in. [`NetnsSwitch`] owns the way back.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Why a network namespace could not be entered or left.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Opening the namespace file failed.
    #[error("open network namespace {path}: {source}")]
    Open {
        /// The namespace path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// setns(2) into the namespace failed (EINVAL: not a network namespace; EPERM: no CAP_SYS_ADMIN).
    #[error("setns into network namespace {path}: {source}")]
    Enter {
        /// The namespace path.
        path: PathBuf,
        /// The errno.
        source: rustix::io::Errno,
    },
    /// setns(2) back into the thread's own namespace failed; the thread must not be reused.
    #[error("setns back to the worker's own network namespace: {0}")]
    Return(rustix::io::Errno),
}

/// A worker thread's way home: its original network namespace, opened once.
#[derive(Debug)]
pub struct NetnsSwitch {
    home: File,
}

impl NetnsSwitch {
    /// Remembers the calling thread's current network namespace.
    pub fn for_this_thread() -> Result<NetnsSwitch, NetnsError> {
        let path = Path::new("/proc/thread-self/ns/net");
        let home = File::open(path).map_err(|source| NetnsError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(NetnsSwitch { home })
    }

    /// Runs `f` with the calling thread inside the network namespace at `path`, then returns
    /// to the remembered namespace. `Err(Return)` means this thread is stranded elsewhere.
    pub fn run_in<T>(&self, path: &Path, f: impl FnOnce() -> T) -> Result<T, NetnsError> {
        let ns = File::open(path).map_err(|source| NetnsError::Open {
            path: path.to_owned(),
            source,
        })?;
        move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network)).map_err(
            |source| NetnsError::Enter {
                path: path.to_owned(),
                source,
            },
        )?;
        let value = f();
        move_into_link_name_space(self.home.as_fd(), Some(LinkNameSpaceType::Network))
            .map_err(NetnsError::Return)?;
        Ok(value)
    }
}
