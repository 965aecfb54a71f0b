//! `create`: plan, cgroup, exec fifo, clone the init into its namespaces and cgroup, hand
//! it the plan, wait until it is ready (or failed, then clean everything up).

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use rustix::fs::{Mode, OFlags, open};
use rustix::io::fcntl_dupfd_cloexec;
use rustix::process::{WaitId, WaitIdOptions, waitid};

use super::{CgroupLimits, CreateOptions, OCI_VERSION};
use crate::cgroup::{self, CgroupDir};
use crate::channel::{self, FromInit};
use crate::error::{Error, Result, errno};
use crate::hooks;
use crate::init::INIT_FD_ENV;
use crate::plan::{ClonePlan, IdMap, InitPlan, NsKind, PlanOptions, plan_container};
use crate::state::{self, StoredState};
use crate::sys::{ReexecChild, spawn_reexec};

/// A created container: its init is set up and blocked until `start`.
#[derive(Debug)]
pub struct Created {
    /// Host pid of the init.
    pub pid: i32,
    /// pidfd of the init, obtained before it could run the workload.
    pub pidfd: OwnedFd,
    /// Warnings (limits skipped under best-effort).
    pub warnings: Vec<String>,
    /// The runtime's end of the init socket: after `start`, [`super::wait_exec`] on it
    /// tells whether the workload's exec succeeded.
    pub watch: OwnedFd,
}

/// Everything created so far, undone on failure.
pub(crate) struct Undo {
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) cgroup: Option<CgroupDir>,
    pub(crate) pidfd: Option<OwnedFd>,
}

impl Undo {
    pub(crate) fn run(self) {
        if let Some(pidfd) = &self.pidfd {
            let _ = crate::sys::pidfd_kill(pidfd.as_fd(), libc::SIGKILL);
            let _ = waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
        }
        if let Some(cg) = &self.cgroup {
            if cg.populated() {
                let _ = cg.kill();
                let _ = cg.wait_empty(5_000);
            }
            let _ = cg.remove();
        }
        if let Some(d) = &self.state_dir {
            let _ = fs::remove_dir_all(d);
        }
    }
}

/// Load `config.json` from a bundle.
pub(crate) fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let text = fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::spec("config.json", format!("{}: {e}", path.display())))
}

/// Create a container: returns once its init has performed every set-up step and waits
/// for [`super::start`]. On failure nothing is left behind.
pub fn create(opts: &CreateOptions<'_>) -> Result<Created> {
    state::check_id(&opts.id)?;
    let bundle =
        fs::canonicalize(&opts.bundle).map_err(|e| Error::io("resolve bundle", &opts.bundle, e))?;
    let spec = load_spec(&bundle)?;
    fs::create_dir_all(&opts.root).map_err(|e| Error::io("create state root", &opts.root, e))?;
    let state_dir = state::dir(&opts.root, &opts.id);
    match fs::create_dir(&state_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Exists(opts.id.clone()));
        }
        Err(e) => return Err(Error::io("create state dir", &state_dir, e)),
    }
    let mut undo = Undo {
        state_dir: Some(state_dir.clone()),
        cgroup: None,
        pidfd: None,
    };
    match create_in(opts, &spec, &bundle, &state_dir, &mut undo) {
        Ok(c) => Ok(c),
        Err(e) => {
            undo.run();
            Err(e)
        }
    }
}

fn create_in(
    opts: &CreateOptions<'_>,
    spec: &Spec,
    bundle: &Path,
    state_dir: &Path,
    undo: &mut Undo,
) -> Result<Created> {
    let n = opts.preserve_fds.len() as i32;
    let (sock_fd, fifo_fd, console_fd) = (3 + n, 4 + n, 5 + n);
    let mut popts = PlanOptions {
        no_pivot: opts.no_pivot,
        start_fifo_fd: Some(fifo_fd),
        console_socket_fd: opts.console_socket.map(|_| console_fd),
        preserve_fds: n as u32,
        hook_state: String::new(),
    };
    let (mut plan, clone) = plan_container(&opts.id, spec, bundle, &popts)?;
    let linux = spec.linux().as_ref();

    // cgroup
    let rel = cgroup::relative_path(
        linux
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy())
            .as_deref(),
        &opts.id,
    )?;
    let cg = CgroupDir::new(cgroup::mount_point()?, rel);
    let writes = match linux.and_then(|l| l.resources().as_ref()) {
        Some(r) => cgroup::resource_writes(r)?,
        None => Vec::new(),
    };
    let (available, decided_by) = cg.available_controllers();
    let (writes, warnings) = cgroup::check_controllers(
        writes,
        &available,
        &decided_by,
        opts.cgroup_limits == CgroupLimits::BestEffort,
    )?;
    let mut controllers: Vec<String> = writes.iter().map(|w| w.controller.clone()).collect();
    controllers.sort();
    controllers.dedup();
    cg.create(&controllers)?;
    undo.cgroup = Some(cg.clone());
    cg.apply(&writes)?;
    let cg_fd = cg.open_dir()?;
    attach_device_filter(spec, &cg, cg_fd.as_fd())?;

    // exec fifo: the init blocks opening it for writing until `start` opens it for reading.
    let fifo_path = state_dir.join("exec.fifo");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo_path, Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::io("mkfifo", &fifo_path, errno(e)))?;
    rustix::fs::chmod(&fifo_path, Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::io("chmod", &fifo_path, errno(e)))?;
    let fifo = open(&fifo_path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io("open", &fifo_path, errno(e)))?;

    let (parent_sock, child_sock) =
        channel::pair().map_err(|e| Error::io("socketpair", state_dir, e))?;

    // Descriptor layout in the init: 0-2 stdio, 3.. preserved, then socket, fifo, console.
    let mut sources: Vec<(BorrowedFd<'_>, i32)> = vec![
        (opts.stdio.stdin, 0),
        (opts.stdio.stdout, 1),
        (opts.stdio.stderr, 2),
    ];
    for (i, fd) in opts.preserve_fds.iter().enumerate() {
        sources.push((*fd, 3 + i as i32));
    }
    sources.push((child_sock.as_fd(), sock_fd));
    sources.push((fifo.as_fd(), fifo_fd));
    if let Some(c) = opts.console_socket {
        sources.push((c, console_fd));
    }
    let (pid, pidfd, gate) = spawn_init(
        &sources,
        console_fd + 1,
        &clone,
        Some(cg_fd.as_fd()),
        sock_fd,
        state_dir,
    )?;
    undo.pidfd = Some(pidfd);
    drop(child_sock);
    drop(fifo);

    if clone.new_userns() {
        write_id_maps(pid, &clone.uid_map, &clone.gid_map, gate)?;
    }
    let mut annotations = std::collections::BTreeMap::new();
    for (k, v) in spec.annotations().iter().flatten() {
        annotations.insert(k.clone(), v.clone());
    }
    let hook_state = |pid: i32, status: &str| {
        serde_json::json!({
            "ociVersion": OCI_VERSION, "id": opts.id, "status": status, "pid": pid,
            "bundle": bundle, "annotations": annotations,
        })
        .to_string()
    };
    let spec_hooks = spec.hooks().as_ref();
    // Deprecated `prestart` hooks run where runc runs them: with createRuntime, in the
    // runtime's namespaces, after the container's namespaces exist.
    #[allow(deprecated)]
    let prestart = hooks::specs(spec_hooks.and_then(|h| h.prestart().as_ref()));
    hooks::run_hooks("prestart", &prestart, &hook_state(pid, "creating"))?;
    hooks::run_hooks(
        "createRuntime",
        &hooks::specs(spec_hooks.and_then(|h| h.create_runtime().as_ref())),
        &hook_state(pid, "creating"),
    )?;
    popts.hook_state = hook_state(pid, "created");
    plan.hook_state = popts.hook_state.clone();

    let (pid, pidfd) = hand_over(&opts.id, &plan, parent_sock.as_fd(), pid, undo)?;
    let (start_time, _) = state::proc_start_time(pid).unwrap_or((0, false));
    let namespaces: Vec<String> = NsKind::JOIN_ORDER
        .iter()
        .filter(|k| {
            clone.namespaces & k.clone_flag() != 0 || plan.join.iter().any(|j| j.kind == **k)
        })
        .map(|k| k.proc_name().to_string())
        .collect();
    let stored = StoredState {
        id: opts.id.clone(),
        pid,
        start_time,
        bundle: bundle.to_path_buf(),
        rootfs: plan
            .rootfs
            .as_ref()
            .map(|r| r.root.clone())
            .unwrap_or_default(),
        cgroup_mount: cg.mount().to_path_buf(),
        cgroup: cg.rel(),
        created: state::now_rfc3339(),
        annotations,
        namespaces,
        owner: "root".to_string(),
        poststart: hooks::specs(spec_hooks.and_then(|h| h.poststart().as_ref())),
        poststop: hooks::specs(spec_hooks.and_then(|h| h.poststop().as_ref())),
    };
    state::save(state_dir.parent().unwrap_or(Path::new("/")), &stored)?;
    Ok(Created {
        pid,
        pidfd,
        warnings,
        watch: parent_sock,
    })
}

/// Enforce `linux.resources.devices` with an eBPF device program on the container's cgroup.
fn attach_device_filter(spec: &Spec, cg: &CgroupDir, cg_fd: BorrowedFd<'_>) -> Result<()> {
    let Some(linux) = spec.linux().as_ref() else {
        return Ok(());
    };
    let rules = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    // `linux.devices` only create nodes; like runc and crun they add no allow rule.
    let Some(rules) = cgroup::device_rules(&rules) else {
        return Ok(());
    };
    crate::sys::attach_device_filter(cg_fd, &cgroup::compile_device_filter(&rules)).map_err(|e| {
        Error::io(
            "attach device filter (linux.resources.devices) to",
            cg.path(),
            e,
        )
    })
}

/// Clone the init: descriptors are first duplicated above every target number so the
/// child's dup2 calls cannot clobber each other.
pub(crate) fn spawn_init(
    sources: &[(BorrowedFd<'_>, i32)],
    base: i32,
    clone: &ClonePlan,
    cgroup: Option<BorrowedFd<'_>>,
    sock_fd: i32,
    what: &Path,
) -> Result<(i32, OwnedFd, Option<OwnedFd>)> {
    let mut dups: Vec<(OwnedFd, i32)> = Vec::new();
    for (fd, target) in sources {
        let d = fcntl_dupfd_cloexec(fd, base.max(16))
            .map_err(|e| Error::io("dup descriptor for", what, errno(e)))?;
        dups.push((d, *target));
    }
    let fds: Vec<(BorrowedFd<'_>, i32)> = dups.iter().map(|(d, t)| (d.as_fd(), *t)).collect();
    let exe = CString::from(c"/proc/self/exe");
    let argv = [CString::from(c"podvisor-init")];
    let envp = [CString::new(format!("{INIT_FD_ENV}={sock_fd}"))
        .map_err(|e| Error::io("env", what, std::io::Error::other(e)))?];
    let gate = if clone.new_userns() {
        Some(
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| Error::io("pipe", what, errno(e)))?,
        )
    } else {
        None
    };
    let child = ReexecChild {
        exe: &exe,
        argv: &argv,
        envp: &envp,
        fds: &fds,
        namespaces: clone.namespaces,
        cgroup,
        userns_gate: gate.as_ref().map(|(r, _)| r.as_fd()),
        // The init is in its own pid namespace, and sets its own mask.
        new_process_group: false,
        unblock_signals: false,
    };
    let (pid, pidfd) =
        spawn_reexec(&child).map_err(|e| Error::io("clone3 container init for", what, e))?;
    Ok((pid, pidfd, gate.map(|(_, w)| w)))
}

/// Write `uid_map`/`gid_map` of the init, then open its gate (the child blocks on it
/// before exec, see [`ReexecChild::userns_gate`]).
pub(crate) fn write_id_maps(
    pid: i32,
    uid: &[IdMap],
    gid: &[IdMap],
    gate: Option<OwnedFd>,
) -> Result<()> {
    let fmt = |m: &[IdMap]| -> String {
        m.iter()
            .map(|x| format!("{} {} {}\n", x.container_id, x.host_id, x.size))
            .collect()
    };
    for (file, maps) in [("uid_map", uid), ("gid_map", gid)] {
        let p = format!("/proc/{pid}/{file}");
        fs::write(&p, fmt(maps)).map_err(|e| Error::io("write", &p, e))?;
    }
    if let Some(w) = gate {
        rustix::io::write(&w, &[1]).map_err(|e| {
            Error::io(
                "open user namespace gate of",
                format!("/proc/{pid}"),
                errno(e),
            )
        })?;
    }
    Ok(())
}

/// Send the plan and wait for `Ready`; follow a fork into a joined pid namespace.
pub(crate) fn hand_over(
    id: &str,
    plan: &InitPlan,
    sock: BorrowedFd<'_>,
    mut pid: i32,
    undo: &mut Undo,
) -> Result<(i32, OwnedFd)> {
    let first = pid;
    let io = |e| Error::io("talk to container init", format!("/proc/{first}"), e);
    channel::send(sock, plan, &[]).map_err(io)?;
    // With a fork into a joined pid namespace, two processes write to `sock`: the helper
    // sends `Spawned` after its fork returns, the forked process `Ready` after its set-up.
    // Either may come first (a busy machine often runs the child first), so wait for
    // both: breaking on an early `Ready` would keep the helper as "the" process and drop
    // the real one's pidfd unread, leaving it an unreaped zombie in the container's pid
    // namespace (whose init then never finishes exiting).
    let mut spawned = !plan.fork_after_join;
    let mut ready = false;
    while !(ready && spawned) {
        match channel::recv::<FromInit>(sock).map_err(io)? {
            Some((FromInit::Ready, _)) => ready = true,
            Some((FromInit::Spawned { pid: real }, mut fds)) => {
                let Some(fd) = fds.pop() else {
                    return Err(Error::io(
                        "receive pidfd from",
                        format!("/proc/{pid}"),
                        std::io::Error::from_raw_os_error(libc::EBADMSG),
                    ));
                };
                // The helper exits once it has forked: reap it, keep the real process.
                if let Some(helper) = undo.pidfd.replace(fd) {
                    let _ = waitid(WaitId::PidFd(helper.as_fd()), WaitIdOptions::EXITED);
                }
                pid = real;
                spawned = true;
            }
            Some((FromInit::Failed(e), _)) => {
                return Err(Error::Init {
                    id: id.to_string(),
                    step: e.step.clone(),
                    errno: e.errno,
                    message: e.message,
                });
            }
            None => {
                let status = undo.pidfd.as_ref().and_then(|p| {
                    waitid(WaitId::PidFd(p.as_fd()), WaitIdOptions::EXITED)
                        .ok()
                        .flatten()
                });
                let how = status.map_or("unknown status".to_string(), |s| {
                    s.exit_status().map_or_else(
                        || format!("signal {}", s.terminating_signal().unwrap_or(0)),
                        |c| format!("exit code {c}"),
                    )
                });
                return Err(Error::Init {
                    id: id.to_string(),
                    step: "container init".to_string(),
                    errno: None,
                    message: format!("exited before reporting ({how}); see its stderr"),
                });
            }
        }
    }
    let pidfd = undo.pidfd.take().ok_or_else(|| {
        Error::io(
            "keep pidfd of",
            format!("/proc/{pid}"),
            std::io::Error::from_raw_os_error(libc::EBADF),
        )
    })?;
    Ok((pid, pidfd))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use rustix::process::{Pid, PidfdFlags, pidfd_open};

    use super::*;
    use crate::plan::exec_plan;

    /// A short-lived child and its pidfd; it is reaped through the pidfd (by `hand_over`
    /// or the test), not through the std handle.
    #[expect(clippy::zombie_processes, reason = "reaped with waitid(P_PIDFD)")]
    fn child_with_pidfd() -> (i32, OwnedFd) {
        let child = Command::new("true").spawn().unwrap();
        let pid = Pid::from_child(&child);
        let pidfd = pidfd_open(pid, PidfdFlags::empty()).unwrap();
        (pid.as_raw_nonzero().get(), pidfd)
    }

    /// An init that forks into a joined pid namespace: the forked process may report
    /// `Ready` before the helper reports `Spawned`. Either order must hand back the forked
    /// process (and reap the helper), never the helper with the real pidfd dropped.
    #[test]
    fn hand_over_follows_the_fork_whichever_message_comes_first() {
        for ready_first in [true, false] {
            let (helper_pid, helper_fd) = child_with_pidfd();
            let (real_pid, real_fd) = child_with_pidfd();
            let plan = exec_plan(
                "t",
                1,
                &[],
                &oci_spec::runtime::Process::default(),
                None,
                &PlanOptions::default(),
            )
            .unwrap();
            assert!(plan.fork_after_join);
            let (ours, theirs) = channel::pair().unwrap();
            let peer = std::thread::spawn(move || {
                let got = channel::recv::<InitPlan>(theirs.as_fd()).unwrap();
                assert!(got.is_some(), "the plan is sent first");
                let spawned = FromInit::Spawned { pid: real_pid };
                if ready_first {
                    channel::send(theirs.as_fd(), &FromInit::Ready, &[]).unwrap();
                    channel::send(theirs.as_fd(), &spawned, &[real_fd.as_fd()]).unwrap();
                } else {
                    channel::send(theirs.as_fd(), &spawned, &[real_fd.as_fd()]).unwrap();
                    channel::send(theirs.as_fd(), &FromInit::Ready, &[]).unwrap();
                }
            });
            let mut undo = Undo {
                state_dir: None,
                cgroup: None,
                pidfd: Some(helper_fd),
            };
            let (pid, pidfd) = hand_over("t", &plan, ours.as_fd(), helper_pid, &mut undo).unwrap();
            peer.join().unwrap();
            assert_eq!(
                pid, real_pid,
                "ready_first={ready_first}: the forked process"
            );
            // The pidfd handed back is the forked process's: reaping it succeeds...
            let status = waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED).unwrap();
            assert!(status.is_some_and(|s| s.exit_status() == Some(0)));
            // ...and the helper was already reaped by hand_over.
            let helper = Pid::from_raw(helper_pid).unwrap();
            let again = waitid(
                WaitId::Pid(helper),
                WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
            );
            assert!(
                matches!(again, Err(rustix::io::Errno::CHILD)),
                "ready_first={ready_first}: the helper was not reaped"
            );
        }
    }
}
