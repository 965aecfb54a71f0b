//! How a container process ended, as a type: exit code, signal, or OOM kill.

use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::process::{WaitId, WaitIdOptions, waitid};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, errno};

/// The end of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// The kernel's OOM killer ended it (SIGKILL while the cgroup's `oom_kill` rose).
    OomKilled,
}

impl Exit {
    /// The shell convention: the code, or 128 + signal (137 for an OOM kill).
    pub fn shell_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
            Exit::OomKilled => 128 + libc::SIGKILL,
        }
    }

    /// Classify a wait status; `oom_kills_during` is how much `memory.events` `oom_kill`
    /// grew while the process ran (None when the memory controller is absent).
    pub fn classify(code: Option<i32>, signal: Option<i32>, oom_kills_during: Option<u64>) -> Exit {
        match (code, signal) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(libc::SIGKILL)) if oom_kills_during.is_some_and(|n| n > 0) => {
                Exit::OomKilled
            }
            (None, Some(s)) => Exit::Signal(s),
            (None, None) => Exit::Code(255),
        }
    }
}

/// Reap a child process by its pidfd (the caller must be its parent: create/exec callers
/// are) and say how it ended. `oom_kill_before` is the `oom_kill` count read when it
/// started; the container's cgroup is read again under `root` to detect an OOM kill.
pub fn wait(
    root: &Path,
    id: &str,
    pidfd: BorrowedFd<'_>,
    oom_kill_before: Option<u64>,
) -> Result<Exit> {
    let status = waitid(WaitId::PidFd(pidfd), WaitIdOptions::EXITED)
        .map_err(|e| Error::io("waitid for", format!("container {id}"), errno(e)))?;
    let Some(status) = status else {
        return Ok(Exit::Code(255));
    };
    let after = super::stats(root, id).ok().and_then(|s| s.oom_kill);
    let grew = after.map(|a| a.saturating_sub(oom_kill_before.unwrap_or(0)));
    Ok(Exit::classify(
        status.exit_status(),
        status.terminating_signal(),
        grew,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_classified() {
        assert_eq!(Exit::classify(Some(3), None, None), Exit::Code(3));
        assert_eq!(Exit::classify(None, Some(15), Some(1)), Exit::Signal(15));
        assert_eq!(Exit::classify(None, Some(9), Some(1)), Exit::OomKilled);
        assert_eq!(Exit::classify(None, Some(9), Some(0)), Exit::Signal(9));
        assert_eq!(Exit::classify(None, Some(9), None), Exit::Signal(9));
        assert_eq!(Exit::OomKilled.shell_code(), 137);
        assert_eq!(Exit::Signal(2).shell_code(), 130);
    }
}
