//! Operations on an existing container, each a fresh look at the state file and the
//! kernel (any process may run them: the CLI, the shim, after a restart).

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::{Mode, OFlags, open};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

use super::{OCI_VERSION, OciState, Status};
use crate::cgroup::{CgroupDir, CgroupStats};
use crate::error::{Error, Result, errno};
use crate::hooks;
use crate::state::{self, StoredState};

fn cgroup_of(st: &StoredState) -> CgroupDir {
    CgroupDir::new(
        st.cgroup_mount.clone(),
        st.cgroup.trim_start_matches('/').to_string(),
    )
}

fn alive(st: &StoredState) -> bool {
    st.pid > 0 && matches!(state::proc_start_time(st.pid), Some((t, false)) if t == st.start_time)
}

/// Status from the state file and the kernel: is the init alive (same start time, not a
/// zombie), is the exec fifo still there, is the cgroup frozen.
pub fn status(root: &Path, st: &StoredState) -> Status {
    if st.pid == 0 {
        return Status::Creating;
    }
    if !alive(st) {
        return Status::Stopped;
    }
    if state::dir(root, &st.id).join("exec.fifo").exists() {
        Status::Created
    } else if cgroup_of(st).frozen() {
        Status::Paused
    } else {
        Status::Running
    }
}

/// The OCI state of `id`.
pub fn state(root: &Path, id: &str) -> Result<OciState> {
    let st = state::load(root, id)?;
    let status = status(root, &st);
    Ok(OciState {
        oci_version: OCI_VERSION.to_string(),
        id: st.id.clone(),
        pid: if status == Status::Stopped { 0 } else { st.pid },
        status,
        bundle: st.bundle.clone(),
        rootfs: st.rootfs.clone(),
        created: st.created.clone(),
        owner: st.owner.clone(),
        annotations: st.annotations.clone(),
    })
}

/// States of every container under `root`.
pub fn list(root: &Path) -> Result<Vec<OciState>> {
    let mut out = Vec::new();
    for id in state::list(root)? {
        match state(root, &id) {
            Ok(s) => out.push(s),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn pidfd_of(st: &StoredState) -> Result<OwnedFd> {
    let pid = Pid::from_raw(st.pid).ok_or_else(|| Error::NotFound(st.id.clone()))?;
    pidfd_open(pid, PidfdFlags::empty())
        .map_err(|e| Error::io("pidfd_open", format!("/proc/{}", st.pid), errno(e)))
}

fn hook_state(st: &StoredState, status: Status) -> String {
    serde_json::json!({
        "ociVersion": OCI_VERSION, "id": st.id, "status": status.as_str(), "pid": st.pid,
        "bundle": st.bundle, "annotations": st.annotations,
    })
    .to_string()
}

/// Start a created container: open the exec fifo for reading (releasing the init), read
/// its byte, remove the fifo, run poststart hooks. Waits in poll(2) on the fifo and the
/// init's pidfd together, so an init that died is reported instead of hanging.
pub fn start(root: &Path, id: &str) -> Result<()> {
    let st = state::load(root, id)?;
    let status = status(root, &st);
    if status != Status::Created {
        return Err(Error::BadState {
            id: id.to_string(),
            status: status.as_str().to_string(),
            op: "start",
        });
    }
    let fifo_path = state::dir(root, id).join("exec.fifo");
    let fifo = open(
        &fifo_path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open", &fifo_path, errno(e)))?;
    let pidfd = pidfd_of(&st)?;
    let mut buf = [0u8; 1];
    loop {
        let mut fds = [
            PollFd::new(&fifo, PollFlags::IN),
            PollFd::new(&pidfd, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io("poll", &fifo_path, errno(e))),
        }
        let fifo_ready = !fds[0].revents().is_empty();
        let init_gone = !fds[1].revents().is_empty();
        if fifo_ready {
            match rustix::io::read(&fifo, &mut buf) {
                Ok(1) => break,
                Ok(_) | Err(rustix::io::Errno::AGAIN) if !init_gone => continue,
                Ok(_) | Err(_) => {}
            }
        }
        if init_gone {
            return Err(Error::BadState {
                id: id.to_string(),
                status: "stopped".to_string(),
                op: "start (the init exited before start)",
            });
        }
    }
    let _ = fs::remove_file(&fifo_path);
    hooks::run_hooks(
        "poststart",
        &st.poststart,
        &hook_state(&st, Status::Running),
    )
}

/// Send `signal` to the init, or with `all` to every process of the container.
pub fn kill(root: &Path, id: &str, signal: i32, all: bool) -> Result<()> {
    let st = state::load(root, id)?;
    let status = status(root, &st);
    if status == Status::Stopped || status == Status::Creating {
        return Err(Error::BadState {
            id: id.to_string(),
            status: status.as_str().to_string(),
            op: "kill",
        });
    }
    if all {
        let cg = cgroup_of(&st);
        if signal == libc::SIGKILL {
            return cg.kill();
        }
        for pid in cg.procs() {
            if let Some(p) = Pid::from_raw(pid) {
                if let Ok(fd) = pidfd_open(p, PidfdFlags::empty()) {
                    let _ = crate::sys::pidfd_kill(fd.as_fd(), signal);
                }
            }
        }
        return Ok(());
    }
    let pidfd = pidfd_of(&st)?;
    crate::sys::pidfd_kill(pidfd.as_fd(), signal)
        .map_err(|e| Error::io("send signal to", format!("/proc/{}", st.pid), e))
}

/// Delete a container: a stopped or created one without `force`, a running or paused one
/// only with `force` (everything in its cgroup is killed with `cgroup.kill`). Removes the
/// cgroup and state, then runs poststop hooks (their failure is returned after cleanup).
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let st = match state::load(root, id) {
        // A create that was killed half-way leaves a directory without state.json.
        Err(Error::NotFound(_)) if force && state::dir(root, id).is_dir() => {
            let dir = state::dir(root, id);
            return fs::remove_dir_all(&dir).map_err(|e| Error::io("remove state", &dir, e));
        }
        r => r?,
    };
    let status = status(root, &st);
    if matches!(status, Status::Running | Status::Paused) && !force {
        return Err(Error::BadState {
            id: id.to_string(),
            status: status.as_str().to_string(),
            op: "delete without --force",
        });
    }
    let cg = cgroup_of(&st);
    if status != Status::Stopped || cg.populated() {
        let pidfd = if alive(&st) { pidfd_of(&st).ok() } else { None };
        if cg.path().exists() {
            cg.kill()?;
        } else if let Some(p) = &pidfd {
            let _ = crate::sys::pidfd_kill(p.as_fd(), libc::SIGKILL);
        }
        if let Some(p) = &pidfd {
            let mut fds = [PollFd::new(p, PollFlags::IN)];
            let _ = poll(&mut fds, None);
        }
        if cg.path().exists() && !cg.wait_empty(10_000)? {
            return Err(Error::io(
                "wait for processes to exit in",
                cg.path(),
                std::io::Error::from_raw_os_error(libc::EBUSY),
            ));
        }
    }
    cg.remove()?;
    let dir = state::dir(root, id);
    fs::remove_dir_all(&dir).map_err(|e| Error::io("remove state", &dir, e))?;
    hooks::run_hooks("poststop", &st.poststop, &hook_state(&st, Status::Stopped))
}

/// Freeze a running container.
pub fn pause(root: &Path, id: &str) -> Result<()> {
    let st = state::load(root, id)?;
    let s = status(root, &st);
    if s != Status::Running && s != Status::Created {
        return Err(Error::BadState {
            id: id.to_string(),
            status: s.as_str().to_string(),
            op: "pause",
        });
    }
    cgroup_of(&st).freeze(true)
}

/// Thaw a paused container.
pub fn resume(root: &Path, id: &str) -> Result<()> {
    let st = state::load(root, id)?;
    let s = status(root, &st);
    if s != Status::Paused {
        return Err(Error::BadState {
            id: id.to_string(),
            status: s.as_str().to_string(),
            op: "resume",
        });
    }
    cgroup_of(&st).freeze(false)
}

/// Counters of the container's cgroup (`memory.events` oom_kill for OOM detection).
pub fn stats(root: &Path, id: &str) -> Result<CgroupStats> {
    let st = state::load(root, id)?;
    Ok(cgroup_of(&st).stats())
}

/// Host pids of the container's processes.
pub fn ps(root: &Path, id: &str) -> Result<Vec<i32>> {
    let st = state::load(root, id)?;
    Ok(cgroup_of(&st).procs())
}
