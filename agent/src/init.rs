//! Init mode: podvisor as PID 1 of a minimal machine (`podvisor agent --init`, implied
//! when the process is PID 1). PID 1 mounts the API file systems, mounts cgroup2 at
//! `/sys/fs/cgroup` and enables every controller the root offers, sets the host name and
//! brings loopback up, then runs the agent as its child (the same binary, re-executed) and
//! does only what PID 1 must: reap every orphan re-parented to it, forward SIGTERM/SIGINT
//! to the agent (which then stops its pods), and when the agent has exited, sync and power
//! off with reboot(2) — PID 1 must never simply exit (the kernel panics).
//!
//! Keeping the reaper out of the agent's process means the agent's own `waitid` on its
//! children (shims, exec probes) never loses a status to a `wait(-1)`.

use std::io;
use std::path::Path;

use rustix::io::Errno;
use rustix::mount::{MountFlags, mount};

/// A step of system set-up that failed.
#[derive(Debug, thiserror::Error)]
#[error("init: {step} {target}: {source}")]
pub struct InitError {
    /// What was being done.
    pub step: &'static str,
    /// To what.
    pub target: String,
    /// The errno.
    pub source: io::Error,
}

/// Whether this process is PID 1.
pub fn is_pid1() -> bool {
    rustix::process::getpid().is_init()
}

/// One file system to mount: (source, target, type, flags, data).
type MountStep = (
    &'static str,
    &'static str,
    &'static str,
    MountFlags,
    &'static str,
);

/// The API file systems, in order (a parent before what is mounted below it).
fn mount_steps() -> Vec<MountStep> {
    let nosuid_nodev_noexec = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    vec![
        ("proc", "/proc", "proc", nosuid_nodev_noexec, ""),
        ("sysfs", "/sys", "sysfs", nosuid_nodev_noexec, ""),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MountFlags::NOSUID,
            "mode=0755",
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            "gid=5,mode=0620,ptmxmode=0666",
        ),
        (
            "shm",
            "/dev/shm",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=1777",
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=0755",
        ),
        (
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            nosuid_nodev_noexec,
            "",
        ),
    ]
}

/// Mounts what a system needs (each only if not already a mount point: a boot script may
/// have done it), enables the cgroup controllers, sets the host name and brings loopback up.
pub fn setup_system(hostname: &str) -> Result<(), InitError> {
    for (source, target, fstype, flags, data) in mount_steps() {
        mount_once(source, target, fstype, flags, data)?;
    }
    enable_controllers(Path::new("/sys/fs/cgroup"))?;
    rustix::system::sethostname(hostname.as_bytes()).map_err(|e| InitError {
        step: "set host name",
        target: hostname.to_owned(),
        source: e.into(),
    })?;
    loopback_up();
    Ok(())
}

fn is_mount_point(target: &str) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp == target)
}

fn mount_once(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> Result<(), InitError> {
    if is_mount_point(target) {
        return Ok(());
    }
    let err = |step| {
        move |e: io::Error| InitError {
            step,
            target: target.to_owned(),
            source: e,
        }
    };
    std::fs::create_dir_all(target).map_err(err("create mount point"))?;
    let data =
        std::ffi::CString::new(data).map_err(|e| err("mount options")(io::Error::other(e)))?;
    let data = (!data.is_empty()).then_some(data.as_c_str());
    match mount(source, target, fstype, flags, data) {
        // EBUSY: already mounted (a check that could not read mountinfo said no).
        Ok(()) | Err(Errno::BUSY) => Ok(()),
        Err(e) => Err(err("mount")(e.into())),
    }
}

/// Writes `+<controller>` for every controller of the root to its `cgroup.subtree_control`,
/// so the pod tree below can use them (the root cgroup is exempt from the
/// no-internal-processes rule, cgroups(7)).
pub fn enable_controllers(root: &Path) -> Result<(), InitError> {
    let path = root.join("cgroup.controllers");
    let text = std::fs::read_to_string(&path).map_err(|e| InitError {
        step: "read",
        target: path.display().to_string(),
        source: e,
    })?;
    let control = root.join("cgroup.subtree_control");
    for c in text.split_whitespace() {
        if let Err(e) = std::fs::write(&control, format!("+{c}")) {
            tracing::warn!(controller = c, error = %e, "enable cgroup controller");
        }
    }
    Ok(())
}

/// Brings `lo` up with the system's `ip` tool when there is one (podvisor has no netlink
/// client of its own yet); a missing tool is logged, not fatal.
fn loopback_up() {
    for ip in ["/sbin/ip", "/bin/ip", "/usr/sbin/ip", "/usr/bin/ip"] {
        if Path::new(ip).exists() {
            match std::process::Command::new(ip)
                .args(["link", "set", "lo", "up"])
                .status()
            {
                Ok(s) if s.success() => return,
                Ok(s) => tracing::warn!(tool = ip, status = %s, "bring loopback up"),
                Err(e) => tracing::warn!(tool = ip, error = %e, "bring loopback up"),
            }
            return;
        }
    }
    tracing::warn!("no ip tool: loopback left as the kernel made it");
}

/// Set in the agent's environment by the init process: the agent is its child and must
/// not set the system up again.
pub const UNDER_INIT_ENV: &str = "PODVISOR_UNDER_INIT";

/// Whether this agent was started by podvisor's init.
pub fn under_init() -> bool {
    std::env::var_os(UNDER_INIT_ENV).is_some()
}

/// PID 1's loop: starts the agent (this binary, same arguments) as a child, reaps every
/// child, forwards SIGTERM/SIGINT to the agent, and returns once the agent has exited.
pub fn supervise_agent() -> Result<(), InitError> {
    use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
    let err = |step| {
        move |e: io::Error| InitError {
            step,
            target: "podvisor agent".into(),
            source: e,
        }
    };
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGCHLD])
        .map_err(err("install signal handlers for"))?;
    let child = std::process::Command::new("/proc/self/exe")
        .args(std::env::args_os().skip(1))
        .env(UNDER_INIT_ENV, "1")
        .spawn()
        .map_err(err("start"))?;
    let agent = rustix::process::Pid::from_child(&child);
    drop(child); // reaped below by wait(2), with every orphan
    loop {
        for sig in signals.wait() {
            if sig == SIGTERM || sig == SIGINT {
                let _ = rustix::process::kill_process(agent, rustix::process::Signal::TERM);
            }
        }
        // SIGCHLD (or a signal racing one): collect every exited child.
        while let Ok(Some((pid, status))) =
            rustix::process::wait(rustix::process::WaitOptions::NOHANG)
        {
            if pid == agent {
                tracing::info!(?status, "agent exited");
                return Ok(());
            }
        }
    }
}

/// Syncs and powers the machine off. Returns only if reboot(2) failed.
pub fn power_off() -> io::Error {
    rustix::fs::sync();
    match rustix::system::reboot(rustix::system::RebootCommand::PowerOff) {
        Ok(()) => io::Error::other("reboot(2) returned"),
        Err(e) => e.into(),
    }
}
