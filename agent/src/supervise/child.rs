//! The shim's side of a container process: its pidfd, reaping it without races, OOM
//! detection from the cgroup, and reaping re-parented orphans (the shim is a subreaper).
//!
//! A pidfd (pidfd_open(2), or the one `clone3(CLONE_PIDFD)` returned) becomes readable
//! when the process exits, so many children sit in one epoll set; `waitid(P_PIDFD)`
//! then collects exactly that child, never another one's status. Orphans that the kernel
//! re-parents to the subreaper are peeked with `WNOWAIT` and reaped by pid only when no
//! pidfd watches them, so a tracked child's exit status is never stolen.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions, WaitIdStatus, pidfd_open, waitid};

use super::exit::{ExitRecord, ExitStatus};

/// Makes the calling process a child subreaper (prctl(2) `PR_SET_CHILD_SUBREAPER`):
/// processes orphaned below it are re-parented to it instead of to PID 1.
pub fn become_subreaper() -> io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(io::Error::from)
}

/// The `oom_kill` counter of a cgroup v2 directory's `memory.events` (`None` when the
/// file is absent, e.g. the memory controller is not enabled there).
pub fn oom_kills(cgroup: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(cgroup.join("memory.events")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("oom_kill ")
            .and_then(|v| v.trim().parse().ok())
    })
}

/// One running container process watched through its pidfd.
#[derive(Debug)]
pub struct WatchedChild {
    /// Container name.
    pub container: String,
    /// Which run (restart count).
    pub attempt: u32,
    /// Host pid.
    pub pid: i32,
    /// When it started.
    pub started_at: SystemTime,
    /// The container's cgroup, for OOM detection.
    pub cgroup: Option<PathBuf>,
    oom_at_start: u64,
    pidfd: OwnedFd,
}

impl WatchedChild {
    /// Watches `pid` through `pidfd` (from `clone3` or [`open_pidfd`]). The OOM counter is
    /// read now, so only kills during this run count.
    pub fn new(
        container: String,
        attempt: u32,
        pid: i32,
        pidfd: OwnedFd,
        cgroup: Option<PathBuf>,
    ) -> Self {
        let oom_at_start = cgroup.as_deref().and_then(oom_kills).unwrap_or(0);
        Self {
            container,
            attempt,
            pid,
            started_at: SystemTime::now(),
            cgroup,
            oom_at_start,
            pidfd,
        }
    }

    /// Collects the exit if the process has ended (never blocks). The caller must be its
    /// parent (or subreaper).
    pub fn try_reap(&self) -> io::Result<Option<ExitRecord>> {
        let status = match waitid(
            WaitId::PidFd(self.pidfd.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        ) {
            Ok(Some(status)) => status,
            Ok(None) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(status) = exit_status(&status) else {
            return Ok(None); // stopped/continued: not an exit
        };
        let oom_now = self.cgroup.as_deref().and_then(oom_kills).unwrap_or(0);
        Ok(Some(ExitRecord {
            container: self.container.clone(),
            attempt: self.attempt,
            pid: self.pid,
            started_at: self.started_at,
            finished_at: SystemTime::now(),
            status,
            oom_killed: oom_now > self.oom_at_start,
        }))
    }

    /// Sends a signal through the pidfd (never hits a recycled pid).
    pub fn signal(&self, signal: rustix::process::Signal) -> io::Result<()> {
        rustix::process::pidfd_send_signal(&self.pidfd, signal).map_err(io::Error::from)
    }
}

impl AsFd for WatchedChild {
    /// The pidfd: readable once the process has exited.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }
}

/// Opens a pidfd for an existing child `pid` (for processes not started with `CLONE_PIDFD`).
pub fn open_pidfd(pid: i32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    pidfd_open(pid, PidfdFlags::empty()).map_err(io::Error::from)
}

fn exit_status(status: &WaitIdStatus) -> Option<ExitStatus> {
    if status.exited() {
        return status.exit_status().map(ExitStatus::Code);
    }
    if status.killed() || status.dumped() {
        return status.terminating_signal().map(ExitStatus::Signal);
    }
    None
}

/// Reaps every exited child that is not in `tracked` (orphans re-parented to the
/// subreaper); returns their pids. Tracked children are left for their pidfd. The
/// children are listed from `/proc/self/task/*/children` and each is waited for by pid,
/// because a `waitid(P_ALL)` could collect a tracked child's status.
pub fn reap_orphans(tracked: &HashSet<i32>) -> Vec<i32> {
    let mut reaped = Vec::new();
    for pid in own_children() {
        if tracked.contains(&pid) {
            continue;
        }
        let Some(p) = Pid::from_raw(pid) else {
            continue;
        };
        if let Ok(Some(_)) = waitid(
            WaitId::Pid(p),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        ) {
            reaped.push(pid);
        }
    }
    reaped
}

/// The pids of this process's children (every thread's), from procfs.
fn own_children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use rustix::event::{PollFd, PollFlags, poll};

    use super::*;

    fn wait_readable(fd: BorrowedFd<'_>) {
        let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
        let timeout = rustix::event::Timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        assert_eq!(
            poll(&mut fds, Some(&timeout)).unwrap(),
            1,
            "pidfd never became readable"
        );
    }

    fn spawn(script: &str) -> (WatchedChild, std::process::Child) {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let fd = open_pidfd(pid).unwrap();
        (WatchedChild::new("c".into(), 3, pid, fd, None), child)
    }

    #[test]
    fn exit_code_and_signal_are_collected_through_the_pidfd() {
        let (w, _child) = spawn("exit 7");
        wait_readable(w.as_fd());
        let exit = w.try_reap().unwrap().unwrap();
        assert_eq!(
            (exit.status, exit.attempt, exit.oom_killed),
            (ExitStatus::Code(7), 3, false)
        );
        assert!(exit.finished_at >= exit.started_at);

        let (w, _child) = spawn("sleep 30");
        assert!(w.try_reap().unwrap().is_none(), "still running");
        w.signal(rustix::process::Signal::TERM).unwrap();
        wait_readable(w.as_fd());
        assert_eq!(
            w.try_reap().unwrap().unwrap().status,
            ExitStatus::Signal(15)
        );
    }

    /// Reaping orphans reaps every untracked child of the process, which would include
    /// other tests' children: run the real check alone in a re-executed test binary.
    #[test]
    fn orphan_reaping_reaps_untracked_and_leaves_tracked_children_alone() {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args([
                "--exact",
                "supervise::child::tests::orphan_reaping_inner",
                "--nocapture",
            ])
            .env("PODVISOR_ORPHAN_TEST", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaping it is what reap_orphans is tested for
    fn orphan_reaping_inner() {
        if std::env::var_os("PODVISOR_ORPHAN_TEST").is_none() {
            return; // only meaningful alone in its own process (see above)
        }
        let (w, _child) = spawn("exit 3");
        let untracked = Command::new("/bin/true").spawn().unwrap();
        let untracked_pid = i32::try_from(untracked.id()).unwrap();
        wait_readable(w.as_fd());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut reaped = Vec::new();
        while !reaped.contains(&untracked_pid) && std::time::Instant::now() < deadline {
            let tracked: HashSet<i32> = [w.pid].into();
            let got = reap_orphans(&tracked);
            assert!(!got.contains(&w.pid), "tracked child reaped");
            reaped.extend(got);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            reaped.contains(&untracked_pid),
            "untracked child not reaped: {reaped:?}"
        );
        assert_eq!(
            w.try_reap().unwrap().unwrap().status,
            ExitStatus::Code(3),
            "status not stolen"
        );
    }

    #[test]
    fn oom_counter_is_read_from_memory_events() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(oom_kills(tmp.path()), None);
        std::fs::write(
            tmp.path().join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(oom_kills(tmp.path()), Some(1));
    }
}
