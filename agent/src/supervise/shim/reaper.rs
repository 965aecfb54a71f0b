//! Collects the exit status of every shim this process started, on one thread.
//!
//! A shim outlives the worker that started it (and the agent); while the agent lives it is
//! the shim's parent, so someone must wait(2) for it or it stays a zombie. A blocked waiter
//! thread per shim did that at the cost of a thread (stack, malloc cache) per pod; here one
//! thread watches a pidfd per shim with poll(2), plus an eventfd that announces new ones.
//! It sleeps while nothing exits (no CPU), and reaps through [`Child::try_wait`] only once
//! the pidfd says the process ended, so it never takes another child's status.

use std::os::fd::OwnedFd;
use std::process::Child;
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};

use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

struct Reaper {
    children: Sender<Child>,
    wake: OwnedFd,
}

static REAPER: OnceLock<Option<Reaper>> = OnceLock::new();

/// Hands `child` (a shim this process spawned) over to be waited for. Should the reaper
/// thread be unavailable, a thread of its own waits for this child.
pub fn reap(child: Child) {
    let Some(reaper) = REAPER.get_or_init(start) else {
        return wait_on_own_thread(child);
    };
    if let Err(mpsc::SendError(child)) = reaper.children.send(child) {
        return wait_on_own_thread(child);
    }
    let _ = rustix::io::write(&reaper.wake, &1u64.to_ne_bytes());
}

fn wait_on_own_thread(mut child: Child) {
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

/// A watched child and its pidfd.
type Watched = (Child, OwnedFd);

fn run(rx: &Receiver<Child>, wake: &OwnedFd) {
    let mut watched: Vec<Watched> = Vec::new();
    loop {
        loop {
            match rx.try_recv() {
                Ok(child) => match watch(child) {
                    Ok(w) => watched.push(w),
                    Err(child) => wait_on_own_thread(child),
                },
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        watched.retain_mut(|(child, _)| matches!(child.try_wait(), Ok(None)));
        let mut fds = Vec::with_capacity(watched.len() + 1);
        fds.push(PollFd::new(wake, PollFlags::IN));
        fds.extend(watched.iter().map(|(_, fd)| PollFd::new(fd, PollFlags::IN)));
        let _ = poll(&mut fds, None);
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(wake, &mut counter);
    }
}

/// The child with its pidfd, or the child back when no pidfd can be had.
fn watch(child: Child) -> Result<Watched, Child> {
    let pid = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
    match pid.map(|p| pidfd_open(p, PidfdFlags::empty())) {
        Some(Ok(fd)) => Ok((child, fd)),
        _ => Err(child),
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
    fn children_are_reaped_when_they_exit_in_any_order() {
        let slow = Command::new("sleep").arg("0.6").spawn().unwrap();
        let fast = Command::new("true").spawn().unwrap();
        let (slow_pid, fast_pid) = (slow.id(), fast.id());
        reap(slow);
        reap(fast);
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
