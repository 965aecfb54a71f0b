//! Bounded waits for containers the shim has killed.
//!
//! `cgroup.kill` sends SIGKILL to every process of a container, but a process in
//! uninterruptible sleep (`D` state: a hung NFS or FUSE server, a frozen cgroup v1
//! freezer, a stuck device) only dies when it leaves that sleep, which may be never. The
//! shim must not hang a pod's removal on it: it waits up to a deadline, then names what
//! is left (the cgroup and its pids) and goes on.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;

/// How long the shim's shutdown waits for its killed containers to exit.
pub const KILL_WAIT: Duration = Duration::from_secs(10);

/// Waits until the process behind `pidfd` has exited (the pidfd turns readable, see
/// pidfd_open(2)) or `deadline` passes. True when it exited; it is not reaped.
pub fn wait_exited(pidfd: BorrowedFd<'_>, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(Errno::INTR) if !left.is_zero() => {}
            // A pidfd poll cannot fail for any other reason; do not wait on blindly.
            Err(_) => return false,
        }
    }
}

/// A container that did not exit after `cgroup.kill` and the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// The container id.
    pub id: String,
    /// Its cgroup directory, if the runtime state still names it.
    pub cgroup: Option<PathBuf>,
    /// The pids still in that cgroup.
    pub pids: Vec<i32>,
}

impl Stuck {
    /// What the runtime knows about container `id` under `runtime_root`: its cgroup and
    /// the pids left in it.
    pub fn find(runtime_root: &Path, id: &str) -> Self {
        let state = podvisor_runtime::state::load(runtime_root, id).ok();
        let cgroup = state.map(|s| s.cgroup_mount.join(s.cgroup.trim_start_matches('/')));
        let pids = cgroup.as_deref().map(procs).unwrap_or_default();
        Self {
            id: id.to_string(),
            cgroup,
            pids,
        }
    }
}

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cgroup = self
            .cgroup
            .as_deref()
            .map_or_else(|| "unknown".to_string(), |p| p.display().to_string());
        write!(
            f,
            "container {} (cgroup {cgroup}, pids {:?})",
            self.id, self.pids
        )
    }
}

/// The message the shim logs and answers when it gives up on `stuck` after `waited`.
pub fn stuck_message(stuck: &[Stuck], waited: Duration) -> String {
    let list: Vec<String> = stuck.iter().map(ToString::to_string).collect();
    format!(
        "still running {}s after cgroup.kill (uninterruptible sleep?): {}; \
         the shim exits without them, their cgroups stay until they die",
        waited.as_secs(),
        list.join(", ")
    )
}

/// The pids listed in `cgroup`'s `cgroup.procs`.
fn procs(cgroup: &Path) -> Vec<i32> {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn wait_exited_gives_up_at_the_deadline_and_sees_an_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .unwrap();
        let pid = rustix::process::Pid::from_child(&child);
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
        let t0 = Instant::now();
        assert!(!wait_exited(
            pidfd.as_fd(),
            Instant::now() + Duration::from_millis(50)
        ));
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert!(wait_exited(
            pidfd.as_fd(),
            Instant::now() + Duration::from_secs(10)
        ));
        assert!(t0.elapsed() < Duration::from_secs(5));
        child.wait().unwrap();
    }

    #[test]
    fn the_message_names_cgroup_and_pids() {
        let stuck = [
            Stuck {
                id: "u-etcd-0".into(),
                cgroup: Some("/sys/fs/cgroup/pods/burstable/podu/etcd".into()),
                pids: vec![41, 42],
            },
            Stuck {
                id: "u-x-1".into(),
                cgroup: None,
                pids: vec![],
            },
        ];
        assert_eq!(
            stuck_message(&stuck, Duration::from_secs(10)),
            "still running 10s after cgroup.kill (uninterruptible sleep?): container u-etcd-0 \
             (cgroup /sys/fs/cgroup/pods/burstable/podu/etcd, pids [41, 42]), container u-x-1 \
             (cgroup unknown, pids []); the shim exits without them, their cgroups stay until \
             they die"
        );
    }

    #[test]
    fn find_reads_the_cgroup_from_runtime_state_and_tolerates_none() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Stuck::find(tmp.path(), "gone");
        assert_eq!((s.cgroup, s.pids), (None, vec![]));
    }
}
