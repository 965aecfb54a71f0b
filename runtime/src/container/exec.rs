//! `exec`: run another process in a running container. A helper is cloned straight into
//! the container's cgroup, re-executes as an init with an exec plan, joins the
//! container's namespaces and forks (`CLONE_PARENT`) into its pid namespace; the caller
//! gets the new process's pid and pidfd.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use super::Status;
use super::Stdio;
use super::create::{Undo, hand_over, load_spec, spawn_init};
use super::ops::status;
use crate::cgroup::CgroupDir;
use crate::channel::{self, FromInit};
use crate::error::{Error, Result};
use crate::plan::{ClonePlan, NsKind, PlanOptions, exec_plan};
use crate::state;

/// Options of [`exec`].
#[derive(Debug)]
pub struct ExecOptions<'a> {
    /// State root.
    pub root: PathBuf,
    /// Container id.
    pub id: String,
    /// The process to run (args, env, cwd, user, capabilities, ...).
    pub process: Process,
    /// Its stdio.
    pub stdio: Stdio<'a>,
    /// Console socket for `process.terminal`.
    pub console_socket: Option<BorrowedFd<'a>>,
    /// Extra descriptors (fds 3, 4, ...).
    pub preserve_fds: Vec<BorrowedFd<'a>>,
}

/// A process started by [`exec`].
#[derive(Debug)]
pub struct Spawned {
    /// Host pid.
    pub pid: i32,
    /// pidfd; the process is a child of the caller, so `waitid(P_PIDFD)` reaps it.
    pub pidfd: OwnedFd,
}

/// Namespaces of `pid` that differ from ours (those to join).
fn differing_namespaces(pid: i32) -> Vec<NsKind> {
    NsKind::JOIN_ORDER
        .iter()
        .copied()
        .filter(|k| {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{}", k.proc_name()));
            let ours = std::fs::read_link(format!("/proc/self/ns/{}", k.proc_name()));
            matches!((theirs, ours), (Ok(t), Ok(o)) if t != o)
        })
        .collect()
}

/// Start `opts.process` inside container `opts.id`; returns once it has exec'd (or failed
/// with the step that failed).
pub fn exec(opts: &ExecOptions<'_>) -> Result<Spawned> {
    let st = state::load(&opts.root, &opts.id)?;
    let s = status(&opts.root, &st);
    if !matches!(s, Status::Running | Status::Created) {
        return Err(Error::BadState {
            id: opts.id.clone(),
            status: s.as_str().to_string(),
            op: "exec",
        });
    }
    let spec = load_spec(&st.bundle)?;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let n = opts.preserve_fds.len() as i32;
    let (sock_fd, console_fd) = (3 + n, 4 + n);
    let popts = PlanOptions {
        console_socket_fd: opts.console_socket.map(|_| console_fd),
        preserve_fds: n as u32,
        ..PlanOptions::default()
    };
    let plan = exec_plan(
        &opts.id,
        st.pid,
        &differing_namespaces(st.pid),
        &opts.process,
        seccomp,
        &popts,
    )?;
    let cg = CgroupDir::new(
        st.cgroup_mount.clone(),
        st.cgroup.trim_start_matches('/').to_string(),
    );
    let cg_fd = cg.open_dir()?;
    let (parent_sock, child_sock) =
        channel::pair().map_err(|e| Error::io("socketpair for exec in", &st.bundle, e))?;
    let mut sources: Vec<(BorrowedFd<'_>, i32)> = vec![
        (opts.stdio.stdin, 0),
        (opts.stdio.stdout, 1),
        (opts.stdio.stderr, 2),
    ];
    for (i, fd) in opts.preserve_fds.iter().enumerate() {
        sources.push((*fd, 3 + i as i32));
    }
    sources.push((child_sock.as_fd(), sock_fd));
    if let Some(c) = opts.console_socket {
        sources.push((c, console_fd));
    }
    let (pid, pidfd, _) = spawn_init(
        &sources,
        console_fd + 1,
        &ClonePlan::default(),
        Some(cg_fd.as_fd()),
        sock_fd,
        Path::new(&st.bundle),
    )?;
    drop(child_sock);
    let mut undo = Undo {
        state_dir: None,
        cgroup: None,
        pidfd: Some(pidfd),
    };
    let result =
        hand_over(&opts.id, &plan, parent_sock.as_fd(), pid, &mut undo).and_then(|(pid, pidfd)| {
            if let Err(e) = wait_exec(&opts.id, parent_sock.as_fd()) {
                // The process exits after reporting; it is our child: reap it.
                undo.pidfd = Some(pidfd);
                return Err(e);
            }
            Ok(Spawned { pid, pidfd })
        });
    if result.is_err() {
        undo.run();
    }
    result
}

/// After the init was released, wait until it exec'd the workload (the close-on-exec
/// socket reaches EOF) or reported why it could not.
pub fn wait_exec(id: &str, watch: BorrowedFd<'_>) -> Result<()> {
    match channel::recv::<FromInit>(watch) {
        Ok(None) => Ok(()),
        Ok(Some((FromInit::Failed(e), _))) => Err(Error::Init {
            id: id.to_string(),
            step: e.step,
            errno: e.errno,
            message: e.message,
        }),
        Ok(Some(_)) => Ok(()),
        Err(e) => Err(Error::io("wait for exec of", format!("container {id}"), e)),
    }
}
