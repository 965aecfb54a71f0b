//! Init steps that shape the process: namespaces, identity, limits, capabilities,
//! no_new_privs, seccomp, the start gate and the final exec.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;

use rustix::fs::{Mode, OFlags, open};
use rustix::process::{Resource, Rlimit, umask};
use rustix::thread::{
    CapabilitySet, CapabilitySets, Gid, LinkNameSpaceType, Uid, clear_ambient_capability_set,
    configure_capability_in_ambient_set, move_into_link_name_space,
    remove_capability_from_bounding_set, set_keep_capabilities, set_thread_groups,
    set_thread_res_gid, set_thread_res_uid,
};

use super::{Step, plan_fd};
use crate::caps::LAST_CAP;
use crate::channel::StepError;
use crate::error::errno;
use crate::plan::{CapsPlan, Join, NsKind, RlimitPlan};
use crate::seccomp::SeccompProgram;

fn io_step(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> StepError {
    let step = step.into();
    move |e| StepError::io(step, &e)
}

fn rx_step(step: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> StepError {
    let step = step.into();
    move |e| StepError::io(step, &errno(e))
}

/// Unblock all signals: the mask survives exec, and the runtime may run on a thread that
/// blocks some.
pub(super) fn reset_signals() -> Step {
    crate::sys::unblock_all_signals().map_err(io_step("unblock signals"))
}

fn link_type(k: NsKind) -> LinkNameSpaceType {
    match k {
        NsKind::User => LinkNameSpaceType::User,
        NsKind::Ipc => LinkNameSpaceType::InterProcessCommunication,
        NsKind::Uts => LinkNameSpaceType::HostNameAndNISDomainName,
        NsKind::Net => LinkNameSpaceType::Network,
        NsKind::Pid => LinkNameSpaceType::ProcessID,
        NsKind::Cgroup => LinkNameSpaceType::ControlGroup,
        NsKind::Mount => LinkNameSpaceType::Mount,
        NsKind::Time => LinkNameSpaceType::Time,
    }
}

/// `setns(2)` into each namespace, all files opened first (joining the mount namespace
/// changes what later paths mean).
pub(super) fn join_namespaces(joins: &[Join]) -> Step {
    let mut files: Vec<(NsKind, OwnedFd, &Join)> = Vec::new();
    for j in joins {
        let fd = open(&j.path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(rx_step(format!("open namespace {}", j.path.display())))?;
        files.push((j.kind, fd, j));
    }
    for (kind, fd, j) in files {
        move_into_link_name_space(fd.as_fd(), Some(link_type(kind))).map_err(rx_step(format!(
            "setns {} namespace {}",
            kind.proc_name(),
            j.path.display()
        )))?;
    }
    Ok(())
}

/// Fork into the joined pid namespace as a sibling of this helper.
pub(super) fn fork_into_joined_pid_ns() -> Step<Option<(i32, OwnedFd)>> {
    crate::sys::fork_into_parent().map_err(io_step("fork into joined pid namespace"))
}

/// `sethostname(2)` / `setdomainname(2)`.
pub(super) fn set_hostname(host: Option<&str>, domain: Option<&str>) -> Step {
    if let Some(h) = host {
        rustix::system::sethostname(h.as_bytes()).map_err(rx_step(format!("sethostname {h}")))?;
    }
    if let Some(d) = domain {
        rustix::system::setdomainname(d.as_bytes())
            .map_err(rx_step(format!("setdomainname {d}")))?;
    }
    Ok(())
}

/// Write `linux.sysctl` under `/proc/sys` (the container's, after pivot_root).
pub(super) fn write_sysctls(sysctl: &[(String, String)]) -> Step {
    for (k, v) in sysctl {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        std::fs::write(&path, v).map_err(io_step(format!("write sysctl {path}")))?;
    }
    Ok(())
}

/// `/proc/self/oom_score_adj`, written while still privileged.
pub(super) fn set_oom_score_adj(v: Option<i32>) -> Step {
    if let Some(v) = v {
        std::fs::write("/proc/self/oom_score_adj", v.to_string())
            .map_err(io_step("write /proc/self/oom_score_adj"))?;
    }
    Ok(())
}

/// `setsid(2)`: the workload leads its own session (and can take a controlling terminal).
pub(super) fn new_session() -> Step {
    match rustix::process::setsid() {
        Ok(_) | Err(rustix::io::Errno::PERM) => Ok(()),
        Err(e) => Err(StepError::io("setsid", &errno(e))),
    }
}

fn resource(name: &str) -> Option<Resource> {
    Some(match name {
        "RLIMIT_CPU" => Resource::Cpu,
        "RLIMIT_FSIZE" => Resource::Fsize,
        "RLIMIT_DATA" => Resource::Data,
        "RLIMIT_STACK" => Resource::Stack,
        "RLIMIT_CORE" => Resource::Core,
        "RLIMIT_RSS" => Resource::Rss,
        "RLIMIT_NPROC" => Resource::Nproc,
        "RLIMIT_NOFILE" => Resource::Nofile,
        "RLIMIT_MEMLOCK" => Resource::Memlock,
        "RLIMIT_AS" => Resource::As,
        "RLIMIT_LOCKS" => Resource::Locks,
        "RLIMIT_SIGPENDING" => Resource::Sigpending,
        "RLIMIT_MSGQUEUE" => Resource::Msgqueue,
        "RLIMIT_NICE" => Resource::Nice,
        "RLIMIT_RTPRIO" => Resource::Rtprio,
        "RLIMIT_RTTIME" => Resource::Rttime,
        _ => return None,
    })
}

/// `setrlimit(2)` for each limit (`u64::MAX` is infinity).
pub(super) fn set_rlimits(limits: &[RlimitPlan]) -> Step {
    let lim = |v: u64| if v == u64::MAX { None } else { Some(v) };
    for l in limits {
        let r = resource(&l.resource)
            .ok_or_else(|| StepError::other("setrlimit", format!("unknown {}", l.resource)))?;
        rustix::process::setrlimit(
            r,
            Rlimit {
                current: lim(l.soft),
                maximum: lim(l.hard),
            },
        )
        .map_err(rx_step(format!("setrlimit {}", l.resource)))?;
    }
    Ok(())
}

/// Mark every descriptor after stdio and the preserved ones close-on-exec.
pub(super) fn close_extra_fds(preserve: u32) -> Step {
    crate::sys::mark_cloexec_from(3 + preserve).map_err(io_step("close_range cloexec"))
}

/// Drop every capability outside `bounding` from the bounding set (needs CAP_SETPCAP, so
/// before the user switch).
pub(super) fn drop_bounding(bounding: u64) -> Step {
    for cap in 0..=LAST_CAP {
        if bounding & (1 << cap) == 0 {
            match remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap)) {
                // Capabilities the running kernel does not know.
                Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                Err(e) => {
                    return Err(StepError::io(
                        format!("drop capability {cap} from bounding set"),
                        &errno(e),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Supplementary groups, gid, uid, keeping capabilities across the switch when the spec
/// sets them explicitly.
pub(super) fn set_user(uid: u32, gid: u32, groups: &[u32], keep_caps: bool) -> Step {
    if keep_caps {
        set_keep_capabilities(true).map_err(rx_step("prctl PR_SET_KEEPCAPS"))?;
    }
    let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
    match set_thread_groups(&groups) {
        // setgroups is denied in user namespaces whose gid_map was written after "deny".
        Ok(()) | Err(rustix::io::Errno::PERM) if groups.is_empty() => {}
        Ok(()) => {}
        Err(e) => return Err(StepError::io("setgroups", &errno(e))),
    }
    let g = Gid::from_raw(gid);
    set_thread_res_gid(g, g, g).map_err(rx_step(format!("setresgid {gid}")))?;
    let u = Uid::from_raw(uid);
    set_thread_res_uid(u, u, u).map_err(rx_step(format!("setresuid {uid}")))?;
    if keep_caps {
        set_keep_capabilities(false).map_err(rx_step("prctl PR_SET_KEEPCAPS off"))?;
    }
    Ok(())
}

/// `capset(2)` for effective/permitted/inheritable, then the ambient set.
pub(super) fn set_capabilities(c: &CapsPlan) -> Step {
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::from_bits_retain(c.effective),
            permitted: CapabilitySet::from_bits_retain(c.permitted),
            inheritable: CapabilitySet::from_bits_retain(c.inheritable),
        },
    )
    .map_err(rx_step("capset"))?;
    clear_ambient_capability_set().map_err(rx_step("clear ambient capabilities"))?;
    // The kernel only raises an ambient capability that is both permitted and inheritable;
    // like runc, others in the ambient list are skipped (runc's default spec lists ambient
    // capabilities without inheritable ones).
    let raisable = c.ambient & c.permitted & c.inheritable;
    for cap in 0..=LAST_CAP {
        if raisable & (1 << cap) != 0 {
            configure_capability_in_ambient_set(CapabilitySet::from_bits_retain(1 << cap), true)
                .map_err(rx_step(format!("raise ambient capability {cap}")))?;
        }
    }
    Ok(())
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
pub(super) fn set_no_new_privs() -> Step {
    rustix::thread::set_no_new_privs(true).map_err(rx_step("prctl PR_SET_NO_NEW_PRIVS"))
}

/// `umask(2)` and `chdir(2)` to the process's cwd.
pub(super) fn set_umask_and_cwd(mask: Option<u32>, cwd: &str) -> Step {
    if let Some(m) = mask {
        umask(Mode::from_bits_truncate(m));
    }
    std::env::set_current_dir(cwd).map_err(io_step(format!("chdir {cwd}")))
}

/// Block until `start` opens the exec fifo for reading, then write one byte to it.
pub(super) fn wait_for_start(fifo: i32) -> Step {
    let path = format!("/proc/self/fd/{fifo}");
    let mut f = File::options()
        .write(true)
        .open(&path)
        .map_err(io_step("open exec fifo"))?;
    f.write_all(&[0]).map_err(io_step("write exec fifo"))?;
    drop(f);
    // The O_PATH descriptor is close-on-exec already; nothing else to release.
    let _ = plan_fd(fifo);
    Ok(())
}

/// Install the seccomp filter.
pub(super) fn install_seccomp(p: &SeccompProgram) -> Step {
    crate::sys::install_seccomp(&p.program, p.flags).map_err(io_step("install seccomp filter"))
}

/// `env` with `HOME` added when missing: the home of `uid` in the container's
/// `/etc/passwd`, else `/` (what runc and crun do).
pub(super) fn with_home(env: &[String], uid: u32) -> Vec<String> {
    let mut out = env.to_vec();
    if !env.iter().any(|kv| kv.starts_with("HOME=")) {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        out.push(format!("HOME={}", home_of(&passwd, uid).unwrap_or("/")));
    }
    out
}

/// Home directory of `uid` in a passwd file.
pub(crate) fn home_of(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        match f.as_slice() {
            [_, _, id, _, _, home, ..] if id.parse() == Ok(uid) && !home.is_empty() => Some(*home),
            _ => None,
        }
    })
}

/// Exec the workload; returns only the error.
pub(super) fn exec_workload(args: &[String], env: &[String]) -> StepError {
    let Some((prog, rest)) = args.split_first() else {
        return StepError::other("exec", "empty process.args");
    };
    if CString::new(prog.as_bytes()).is_err() {
        return StepError::other("exec", "process.args[0] contains NUL");
    }
    let mut cmd = std::process::Command::new(prog);
    cmd.args(rest).env_clear();
    for kv in env {
        match kv.split_once('=') {
            Some((k, v)) => cmd.env(k, v),
            None => cmd.env(kv, ""),
        };
    }
    let e = cmd.exec();
    StepError::io(format!("exec {prog}"), &e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_comes_from_passwd_by_uid() {
        let pw = "root:x:0:0:root:/root:/bin/sh\nbad line\nwww:x:33:33::/var/www:/bin/false\nnohome:x:7:7:::\n";
        assert_eq!(home_of(pw, 0), Some("/root"));
        assert_eq!(home_of(pw, 33), Some("/var/www"));
        assert_eq!(home_of(pw, 7), None);
        assert_eq!(home_of(pw, 1000), None);
    }
}
