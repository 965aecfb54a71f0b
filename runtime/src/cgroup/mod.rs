//! cgroup v2, by hand: find the cgroup2 mount, create the container's cgroup, enable the
//! controllers its limits need (only those the parent offers), apply limits, freeze,
//! `cgroup.kill`, stats.

mod devices;
mod resources;

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{Mode, OFlags, open};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, errno};

pub use devices::{BpfInsn, DeviceRule, compile as compile_device_filter, device_rules};
pub use resources::{
    CgroupWrite, check_controllers, cpu_weight_from_shares, io_weight_from_blkio, resource_writes,
};

/// Where cgroup2 is mounted: `/sys/fs/cgroup` on pure v2 hosts, `/sys/fs/cgroup/unified`
/// on hybrid ones, else the first cgroup2 line of `mountinfo`.
pub fn find_mount(mountinfo: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        if let Some(mp) = left.split_whitespace().nth(4) {
            found.push(PathBuf::from(mp.replace("\\040", " ")));
        }
    }
    for pref in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if let Some(p) = found.iter().find(|p| p.as_path() == Path::new(pref)) {
            return Some(p.clone());
        }
    }
    found.into_iter().next()
}

/// The cgroup2 mount of this host.
///
/// Found once per process and then remembered: with a few hundred containers
/// `/proc/self/mountinfo` has as many overlay lines, and several calls per container start
/// read and parse it all. Only a found mount is remembered (an init that mounts cgroup2
/// after a failed look still finds it).
pub fn mount_point() -> Result<PathBuf> {
    static FOUND: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(found) = FOUND.get() {
        return Ok(found.clone());
    }
    let mi = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    let found = find_mount(&mi).ok_or_else(|| {
        Error::io(
            "find cgroup2 mount in",
            "/proc/self/mountinfo",
            std::io::Error::from_raw_os_error(libc::ENOENT),
        )
    })?;
    Ok(FOUND.get_or_init(|| found).clone())
}

/// Relative path of a container's cgroup under the cgroup2 mount. `linux.cgroupsPath`
/// absolute or relative both name a path below the mount root; systemd's
/// `slice:prefix:name` form is refused (no systemd driver).
pub fn relative_path(cgroups_path: Option<&str>, id: &str) -> Result<String> {
    let p = match cgroups_path {
        None | Some("") => format!("podvisor/{id}"),
        Some(p) if !p.starts_with('/') && p.split(':').count() == 3 => {
            return Err(Error::spec(
                "linux.cgroupsPath",
                format!("{p:?} is a systemd slice path; podvisor-oci has no systemd cgroup driver"),
            ));
        }
        Some(p) => p.trim_start_matches('/').to_string(),
    };
    if p.split('/').any(|c| c == "..") || p.is_empty() {
        return Err(Error::spec(
            "linux.cgroupsPath",
            format!("{p:?} escapes the hierarchy"),
        ));
    }
    Ok(p)
}

/// Counters read from a cgroup; `None` where the controller is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupStats {
    /// `memory.current`.
    pub memory_current: Option<u64>,
    /// `memory.max` (`None` for `max` or absent).
    pub memory_max: Option<u64>,
    /// `oom` from `memory.events`.
    pub oom: Option<u64>,
    /// `oom_kill` from `memory.events`: non-zero means the workload was OOM-killed.
    pub oom_kill: Option<u64>,
    /// `pids.current`.
    pub pids_current: Option<u64>,
    /// `usage_usec` from `cpu.stat`.
    pub cpu_usage_usec: Option<u64>,
    /// Processes in the cgroup.
    pub procs: Vec<i32>,
}

/// Parse a flat-keyed file (`memory.events`, `cpu.stat`) for one key.
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// One container's cgroup directory.
#[derive(Debug, Clone)]
pub struct CgroupDir {
    mount: PathBuf,
    rel: String,
}

impl CgroupDir {
    /// Refer to `rel` under `mount` (nothing is created).
    pub fn new(mount: PathBuf, rel: String) -> Self {
        CgroupDir { mount, rel }
    }

    /// The cgroup2 mount this cgroup lives under.
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// Absolute path.
    pub fn path(&self) -> PathBuf {
        self.mount.join(&self.rel)
    }

    /// Path relative to the mount, with a leading `/` (as `/proc/<pid>/cgroup` shows it).
    pub fn rel(&self) -> String {
        format!("/{}", self.rel)
    }

    /// Create the directory and its parents, enabling `controllers` in each ancestor's
    /// `cgroup.subtree_control` where they are not enabled yet.
    pub fn create(&self, controllers: &[String]) -> Result<()> {
        let mut dir = self.mount.clone();
        for comp in self.rel.split('/').filter(|c| !c.is_empty()) {
            let sc = dir.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&sc).unwrap_or_default();
            let missing: Vec<String> = controllers
                .iter()
                .filter(|c| !enabled.split_whitespace().any(|e| e == c.as_str()))
                .map(|c| format!("+{c}"))
                .collect();
            if !missing.is_empty() {
                fs::write(&sc, missing.join(" "))
                    .map_err(|e| Error::io("enable controllers in", &sc, e))?;
            }
            dir.push(comp);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("create cgroup", dir, e)),
            }
        }
        Ok(())
    }

    /// Controllers this cgroup can get, and the directory that decides it: the
    /// `cgroup.controllers` of the deepest existing ancestor (a controller missing there
    /// cannot be enabled anywhere below it).
    pub fn available_controllers(&self) -> (Vec<String>, PathBuf) {
        let mut dir = self.path();
        while let Some(parent) = dir.parent() {
            dir = parent.to_path_buf();
            if dir.join("cgroup.controllers").exists() || !dir.starts_with(&self.mount) {
                break;
            }
        }
        let text = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        (text.split_whitespace().map(str::to_string).collect(), dir)
    }

    /// Write each file.
    pub fn apply(&self, writes: &[CgroupWrite]) -> Result<()> {
        for w in writes {
            let f = self.path().join(&w.file);
            fs::write(&f, &w.value).map_err(|e| Error::io("write cgroup file", f, e))?;
        }
        Ok(())
    }

    /// An `O_DIRECTORY` descriptor for `CLONE_INTO_CGROUP`.
    pub fn open_dir(&self) -> Result<OwnedFd> {
        let p = self.path();
        open(
            &p,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open cgroup", p, errno(e)))
    }

    fn read(&self, file: &str) -> Option<String> {
        fs::read_to_string(self.path().join(file)).ok()
    }

    /// Pids in `cgroup.procs`.
    pub fn procs(&self) -> Vec<i32> {
        self.read("cgroup.procs")
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// `populated` from `cgroup.events`.
    pub fn populated(&self) -> bool {
        self.read("cgroup.events")
            .and_then(|t| keyed_value(&t, "populated"))
            .is_some_and(|v| v != 0)
    }

    /// `frozen` from `cgroup.events`.
    pub fn frozen(&self) -> bool {
        self.read("cgroup.events")
            .and_then(|t| keyed_value(&t, "frozen"))
            .is_some_and(|v| v != 0)
    }

    /// Wait until `cgroup.events` satisfies `done`: the kernel signals every change of the
    /// file with `POLLPRI` (cgroup-v2.rst), so this sleeps in poll(2), never in a loop of
    /// sleeps. Gives up after `timeout_ms`.
    fn wait_events(&self, done: impl Fn(&Self) -> bool, timeout_ms: u32) -> Result<bool> {
        let p = self.path().join("cgroup.events");
        let fd = open(&p, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::io("open", &p, errno(e)))?;
        let mut left = i64::from(timeout_ms);
        while !done(self) {
            if left <= 0 {
                return Ok(false);
            }
            let t0 = std::time::Instant::now();
            let ts = Timespec {
                tv_sec: left / 1000,
                tv_nsec: (left % 1000) * 1_000_000,
            };
            let mut fds = [PollFd::new(&fd, PollFlags::PRI)];
            match poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::io("poll", &p, errno(e))),
            }
            left -= t0.elapsed().as_millis() as i64;
        }
        Ok(true)
    }

    /// Freeze (`cgroup.freeze` 1) or thaw, and wait until the kernel reports it done.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        let f = self.path().join("cgroup.freeze");
        fs::write(&f, if frozen { "1" } else { "0" }).map_err(|e| Error::io("write", f, e))?;
        self.wait_events(|c| c.frozen() == frozen, 10_000)?;
        Ok(())
    }

    /// `cgroup.kill`: SIGKILL every process, none can escape by forking.
    pub fn kill(&self) -> Result<()> {
        let f = self.path().join("cgroup.kill");
        fs::write(&f, "1").map_err(|e| Error::io("write", f, e))
    }

    /// Wait until no process is left (up to `timeout_ms`); true when empty.
    pub fn wait_empty(&self, timeout_ms: u32) -> Result<bool> {
        self.wait_events(|c| !c.populated(), timeout_ms)
    }

    /// Remove the directory (it must be empty of processes).
    pub fn remove(&self) -> Result<()> {
        match fs::remove_dir(self.path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove cgroup", self.path(), e)),
        }
    }

    /// Read the counters.
    pub fn stats(&self) -> CgroupStats {
        let num = |f: &str| self.read(f).and_then(|s| s.trim().parse().ok());
        let events = self.read("memory.events").unwrap_or_default();
        CgroupStats {
            memory_current: num("memory.current"),
            memory_max: num("memory.max"),
            oom: keyed_value(&events, "oom"),
            oom_kill: keyed_value(&events, "oom_kill"),
            pids_current: num("pids.current"),
            cpu_usage_usec: self
                .read("cpu.stat")
                .and_then(|t| keyed_value(&t, "usage_usec")),
            procs: self.procs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unified_mount_on_hybrid_host_and_root_on_pure_v2() {
        let hybrid = "25 18 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n\
                      27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            find_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure = "30 20 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(find_mount(pure), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(find_mount("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"), None);
    }

    #[test]
    fn cgroups_path_forms() {
        assert_eq!(relative_path(None, "c1").unwrap(), "podvisor/c1");
        assert_eq!(
            relative_path(Some("/pods/x/c1"), "c1").unwrap(),
            "pods/x/c1"
        );
        assert_eq!(relative_path(Some("pods/c1"), "c1").unwrap(), "pods/c1");
        assert!(relative_path(Some("/a/../../etc"), "c1").is_err());
        let e = relative_path(Some("system.slice:podvisor:c1"), "c1").unwrap_err();
        assert!(e.to_string().contains("systemd"));
    }

    #[test]
    fn keyed_files_parse() {
        let ev = "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed_value(ev, "oom_kill"), Some(1));
        assert_eq!(keyed_value(ev, "oom"), Some(2));
        assert_eq!(keyed_value(ev, "nope"), None);
    }
}
