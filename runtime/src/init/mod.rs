//! The container init: a fresh, single-threaded exec of the runtime's own binary that
//! receives an [`InitPlan`] over its socket, performs it step by step and execs the
//! workload.
//!
//! Every binary that creates containers calls [`run_if_container_init`] first thing in
//! `main`: when the process was started as an init it never returns.

mod loopback;
mod process;
mod rootfs;
mod terminal;

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use crate::channel::{self, FromInit, StepError};
use crate::hooks;
use crate::plan::InitPlan;

/// Environment variable naming the init's socket descriptor.
pub(crate) const INIT_FD_ENV: &str = "_PODVISOR_INIT_FD";

type Step<T = ()> = Result<T, StepError>;

/// If this process was started by the runtime as a container init (or exec helper), run
/// it and never return; otherwise return at once.
///
/// Call this first in `main` of every binary that can create containers (`podvisor-oci`,
/// `podvisor`), before any thread is started.
pub fn run_if_container_init() {
    let Some(raw) = std::env::var_os(INIT_FD_ENV) else {
        return;
    };
    // The descriptor number comes from our own parent, which placed the init socket there
    // with dup2 and set this variable; nothing else in this fresh process refers to it.
    let Some(sock) = parse_fd(&raw) else {
        eprintln!("podvisor init: bad {INIT_FD_ENV}");
        std::process::exit(120);
    };
    let code = init_main(&sock);
    std::process::exit(code);
}

fn parse_fd(raw: &OsString) -> Option<OwnedFd> {
    let n: RawFd = raw.to_str()?.parse().ok()?;
    crate::sys::owned_from_inherited(n)
}

fn init_main(sock: &OwnedFd) -> i32 {
    let plan: InitPlan = match channel::recv(sock.as_fd()) {
        Ok(Some((plan, _))) => plan,
        Ok(None) => return 121,
        Err(e) => {
            eprintln!("podvisor init: read plan: {e}");
            return 122;
        }
    };
    match run_plan(&plan, sock.as_fd()) {
        Ok(exit) => exit,
        Err(e) => {
            if channel::send(sock.as_fd(), &FromInit::Failed(e.clone()), &[]).is_err() {
                // Nobody is listening any more (create already returned): tell the
                // container's stderr.
                eprintln!("podvisor init: {}: {}", e.step, e.message);
            }
            1
        }
    }
}

/// The init's steps, in order. Returns only on failure, or with the helper's exit code
/// after a fork into a joined pid namespace.
fn run_plan(plan: &InitPlan, sock: BorrowedFd<'_>) -> Step<i32> {
    process::reset_signals()?;
    process::join_namespaces(&plan.join)?;
    if plan.fork_after_join {
        if let Some((pid, pidfd)) = process::fork_into_joined_pid_ns()? {
            channel::send(sock, &FromInit::Spawned { pid }, &[pidfd.as_fd()])
                .map_err(|e| StepError::io("send pidfd to runtime", &e))?;
            return Ok(0);
        }
    }
    if plan.loopback_up {
        loopback::bring_up()?;
    }
    if let Some(rootfs) = &plan.rootfs {
        rootfs::prepare(rootfs, |_| {
            hooks::run_hooks(
                "createContainer",
                &plan.create_container_hooks,
                &plan.hook_state,
            )
            .map_err(|e| StepError::other("run createContainer hooks", e.to_string()))
        })?;
    }
    process::set_hostname(plan.hostname.as_deref(), plan.domainname.as_deref())?;
    process::write_sysctls(&plan.sysctl)?;
    if let Some(rootfs) = &plan.rootfs {
        rootfs::finalize(rootfs)?;
    }
    let p = &plan.process;
    process::set_oom_score_adj(p.oom_score_adj)?;
    process::new_session()?;
    if p.terminal {
        terminal::setup(plan.console_socket_fd, p.console_size)?;
    }
    process::set_rlimits(&p.rlimits)?;
    process::close_extra_fds(plan.preserve_fds)?;
    if let (Some(filter), false) = (&p.seccomp, p.no_new_privs) {
        // Without no_new_privs the filter needs CAP_SYS_ADMIN, so it goes in before the
        // capabilities are dropped (runc's order).
        process::install_seccomp(filter)?;
    }
    if let Some(caps) = &p.caps {
        process::drop_bounding(caps.bounding)?;
    }
    process::set_user(p.uid, p.gid, &p.additional_gids, p.caps.is_some())?;
    if let Some(caps) = &p.caps {
        process::set_capabilities(caps)?;
    }
    if p.no_new_privs {
        process::set_no_new_privs()?;
    }
    process::set_umask_and_cwd(p.umask, &p.cwd)?;
    channel::send(sock, &FromInit::Ready, &[])
        .map_err(|e| StepError::io("report ready to runtime", &e))?;
    if let Some(fifo) = plan.start_fifo_fd {
        process::wait_for_start(fifo)?;
        hooks::run_hooks(
            "startContainer",
            &plan.start_container_hooks,
            &plan.hook_state,
        )
        .map_err(|e| StepError::other("run startContainer hooks", e.to_string()))?;
    }
    if let (Some(filter), true) = (&p.seccomp, p.no_new_privs) {
        process::install_seccomp(filter)?;
    }
    let env = process::with_home(&p.env, p.uid);
    Err(process::exec_workload(&p.args, &env))
}

/// Borrow an inherited descriptor number given in the plan.
pub(crate) fn plan_fd(fd: i32) -> BorrowedFd<'static> {
    // The numbers in the plan were placed by the runtime with dup2 and stay open for the
    // whole life of the init.
    crate::sys::borrow_inherited(fd)
}
