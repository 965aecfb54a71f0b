//! `process.terminal`: allocate a pty in the container's devpts, hand the master to the
//! console socket (runc's protocol: one message, the pty name, with the fd as
//! `SCM_RIGHTS`), and make the slave the controlling terminal and stdio.

use std::os::fd::AsFd;

use rustix::fs::{Mode, OFlags, open};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};

use super::{Step, plan_fd};
use crate::channel::{self, StepError};
use crate::error::errno;

fn rx(step: &'static str) -> impl FnOnce(rustix::io::Errno) -> StepError {
    move |e| StepError::io(step, &errno(e))
}

/// Set up the terminal; the session was created already.
pub(super) fn setup(console_socket: Option<i32>, size: Option<(u16, u16)>) -> Step {
    let sock = console_socket.ok_or_else(|| {
        StepError::other(
            "set up terminal",
            "process.terminal needs a console socket (--console-socket)",
        )
    })?;
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .map_err(rx("open /dev/ptmx"))?;
    grantpt(&master).map_err(rx("grantpt"))?;
    unlockpt(&master).map_err(rx("unlockpt"))?;
    let name = ptsname(&master, Vec::new()).map_err(rx("ptsname"))?;
    let slave = open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(rx("open pty slave"))?;
    if let Some((rows, cols)) = size {
        let ws = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        tcsetwinsize(&slave, ws).map_err(rx("set terminal size"))?;
    }
    channel::send_bytes(plan_fd(sock), name.as_bytes(), &[master.as_fd()])
        .map_err(|e| StepError::io("send pty master to console socket", &e))?;
    drop(master);
    rustix::stdio::dup2_stdin(&slave).map_err(rx("dup pty to stdin"))?;
    rustix::stdio::dup2_stdout(&slave).map_err(rx("dup pty to stdout"))?;
    rustix::stdio::dup2_stderr(&slave).map_err(rx("dup pty to stderr"))?;
    rustix::process::ioctl_tiocsctty(&slave).map_err(rx("TIOCSCTTY"))?;
    Ok(())
}
