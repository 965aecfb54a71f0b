//! Collects the exit status of every shim this process started, on one thread.
//!
//! A shim outlives the worker that started it (and the agent); while the agent lives it is
//! the shim's parent, so someone must wait(2) for it or it stays a zombie. A blocked waiter
//! thread per shim did that at the cost of a thread (stack, malloc cache) per pod; here one
//! thread watches a pidfd per shim with poll(2), plus an eventfd that announces new ones.
//! It sleeps while nothing exits (no CPU), and reaps through `waitid(P_PIDFD)`, so it never
//! takes another child's status.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, ExitStatus};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};

use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd, poll};
use rustix::process::{
    Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, pidfd_open, pidfd_send_signal, waitid,
};

/// A child process of this one, known by its pid and a pidfd (which, unlike the pid,
/// cannot come to name another process).
#[derive(Debug)]
pub struct ChildProcess {
    pid: u32,
    pidfd: OwnedFd,
}

impl ChildProcess {
    /// A child from its pid and pidfd (as `clone3` with `CLONE_PIDFD` gives them).
    pub fn new(pid: u32, pidfd: OwnedFd) -> Self {
        Self { pid, pidfd }
    }

    /// A child spawned with [`std::process::Command`].
    pub fn from_child(child: &Child) -> io::Result<Self> {
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::from(rustix::io::Errno::SRCH))?;
        let pidfd = pidfd_open(pid, PidfdFlags::empty())?;
        Ok(Self::new(child.id(), pidfd))
    }

    /// Its pid.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Whether it has exited, without collecting its status (`WNOWAIT`).
    pub fn has_exited(&self) -> bool {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        // An error (ECHILD) means there is nothing left to wait for.
        !matches!(waitid(WaitId::PidFd(self.pidfd.as_fd()), options), Ok(None))
    }

    /// Sends SIGKILL.
    pub fn kill(&self) -> io::Result<()> {
        Ok(pidfd_send_signal(self.pidfd.as_fd(), Signal::KILL)?)
    }

    /// Waits for it to exit and collects its status.
    pub fn wait(&self) -> io::Result<ExitStatus> {
        waitid(WaitId::PidFd(self.pidfd.as_fd()), WaitIdOptions::EXITED)?
            .map(|s| exit_status(&s))
            .ok_or_else(|| io::Error::from(rustix::io::Errno::CHILD))
    }

    /// Its exit status, collected, if it has exited.
    pub fn try_wait(&self) -> io::Result<Option<ExitStatus>> {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        Ok(waitid(WaitId::PidFd(self.pidfd.as_fd()), options)?.map(|s| exit_status(&s)))
    }
}

/// The status as `wait(2)` would have encoded it.
fn exit_status(s: &rustix::process::WaitIdStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (s.exit_status(), s.terminating_signal()) {
        (Some(code), _) => ExitStatus::from_raw((code & 0xff) << 8),
        (None, Some(signal)) => ExitStatus::from_raw(signal & 0x7f),
        (None, None) => ExitStatus::from_raw(0),
    }
}

struct Reaper {
    children: Sender<ChildProcess>,
    wake: OwnedFd,
}

static REAPER: OnceLock<Option<Reaper>> = OnceLock::new();

/// Hands `child` (a shim this process spawned) over to be waited for. Should the reaper
/// thread be unavailable, a thread of its own waits for this child.
pub fn reap(child: ChildProcess) {
    let Some(reaper) = REAPER.get_or_init(start) else {
        return wait_on_own_thread(child);
    };
    if let Err(mpsc::SendError(child)) = reaper.children.send(child) {
        return wait_on_own_thread(child);
    }
    let _ = rustix::io::write(&reaper.wake, &1u64.to_ne_bytes());
}

fn wait_on_own_thread(child: ChildProcess) {
    let _ = std::thread::Builder::new()
        .name("shim-waiter".into())
        .spawn(move || child.wait());
}

fn start() -> Option<Reaper> {
    let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).ok()?;
    let thread_wake = wake.try_clone().ok()?;
    let (children, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("shim-reaper".into())
        .spawn(move || run(&rx, &thread_wake))
        .ok()?;
    Some(Reaper { children, wake })
}

fn run(rx: &Receiver<ChildProcess>, wake: &OwnedFd) {
    let mut watched: Vec<ChildProcess> = Vec::new();
    loop {
        loop {
            match rx.try_recv() {
                Ok(child) => watched.push(child),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        // Collected, or an error (nothing left to wait for): gone.
        watched.retain(|child| matches!(child.try_wait(), Ok(None)));
        let mut fds = Vec::with_capacity(watched.len() + 1);
        fds.push(PollFd::new(wake, PollFlags::IN));
        fds.extend(watched.iter().map(|c| PollFd::new(&c.pidfd, PollFlags::IN)));
        let _ = poll(&mut fds, None);
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(wake, &mut counter);
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::*;

    fn is_zombie_or_gone(pid: u32) -> Option<bool> {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => Some(true),
            Ok(s) => {
                let state = s.rsplit_once(") ")?.1.chars().next()?;
                Some(state == 'Z')
            }
        }
    }

    #[test]
    #[allow(
        clippy::zombie_processes,
        reason = "the reaper under test waits for them"
    )]
    fn children_are_reaped_when_they_exit_in_any_order() {
        let slow = Command::new("sleep").arg("0.6").spawn().unwrap();
        let fast = Command::new("true").spawn().unwrap();
        let (slow_pid, fast_pid) = (slow.id(), fast.id());
        reap(ChildProcess::from_child(&slow).unwrap());
        reap(ChildProcess::from_child(&fast).unwrap());
        let gone = |pid: u32| std::fs::metadata(format!("/proc/{pid}")).is_err();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(gone(fast_pid) && gone(slow_pid)) {
            assert!(
                Instant::now() < deadline,
                "not reaped: fast {:?}, slow {:?}",
                is_zombie_or_gone(fast_pid),
                is_zombie_or_gone(slow_pid)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
