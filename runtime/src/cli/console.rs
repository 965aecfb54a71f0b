//! `run` of a `process.terminal` container without `--console-socket`: like runc, take the
//! pty master ourselves and proxy it to this process's own terminal (raw mode, window size,
//! signals forwarded) until the container exits.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use anyhow::{Context, Result, bail};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::termios::{
    OptionalActions, Termios, isatty, tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize,
};

use crate::sys::borrow_inherited;

/// The console socket pair: our end receives the master, theirs goes to `create`.
pub(super) fn socket_pair() -> Result<(UnixStream, OwnedFd)> {
    let (ours, theirs) = UnixStream::pair().context("console socketpair")?;
    Ok((ours, OwnedFd::from(theirs)))
}

/// Receive the pty master sent by the container's init.
pub(super) fn receive_master(ours: &UnixStream) -> Result<OwnedFd> {
    let (_, mut fds) = crate::channel::recv_bytes(ours.as_fd()).context("receive pty master")?;
    fds.pop().context("the container sent no pty master")
}

/// Restores the terminal mode on drop.
struct RawMode(Option<Termios>);

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = tcsetattr(borrow_inherited(0), OptionalActions::Now, t);
        }
    }
}

fn raw_mode() -> RawMode {
    let stdin = borrow_inherited(0);
    if !isatty(stdin) {
        return RawMode(None);
    }
    let Ok(saved) = tcgetattr(stdin) else {
        return RawMode(None);
    };
    let mut raw = saved.clone();
    raw.make_raw();
    let _ = tcsetattr(stdin, OptionalActions::Now, &raw);
    RawMode(Some(saved))
}

fn copy_size(master: BorrowedFd<'_>) {
    if let Ok(ws) = tcgetwinsize(borrow_inherited(0)) {
        let _ = tcsetwinsize(master, ws);
    }
}

fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(0) => bail!("short write"),
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e).context("write"),
        }
    }
    Ok(())
}

/// Proxy stdin -> master and master -> stdout until the process behind `pidfd` exits and the
/// master is drained; `forwarded` signals go to the process, SIGWINCH resizes the pty.
pub(super) fn proxy(master: &OwnedFd, pidfd: BorrowedFd<'_>, forwarded: &[i32]) -> Result<()> {
    let _raw = raw_mode();
    copy_size(master.as_fd());
    let sfd = crate::sys::block_into_signalfd(forwarded).context("signalfd")?;
    let (stdin, stdout) = (borrow_inherited(0), borrow_inherited(1));
    let mut stdin_open = true;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut fds = vec![
            PollFd::new(master, PollFlags::IN),
            PollFd::new(&pidfd, PollFlags::IN),
            PollFd::new(&sfd, PollFlags::IN),
        ];
        if stdin_open {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[0] {
            match rustix::io::read(master, &mut buf) {
                Ok(0) | Err(rustix::io::Errno::IO) => {
                    // Every slave is closed: the container is done with its terminal.
                    return Ok(());
                }
                Ok(n) => write_all(stdout, &buf[..n])?,
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(e).context("read pty"),
            }
            continue;
        }
        if ready[1] {
            return Ok(());
        }
        if ready[2] {
            let mut info = [0u8; 128];
            if rustix::io::read(&sfd, &mut info).is_ok_and(|n| n == 128) {
                let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32;
                if signo == libc::SIGWINCH {
                    copy_size(master.as_fd());
                } else {
                    let _ = crate::sys::pidfd_kill(pidfd, signo);
                }
            }
        }
        if stdin_open && ready.get(3).copied().unwrap_or(false) {
            match rustix::io::read(stdin, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => write_all(master.as_fd(), &buf[..n])?,
            }
        }
    }
}
