//! OCI bundles for the suite: a `config.json` in the shape of runc's default spec (`runc spec`),
//! pointing at the shared busybox rootfs, that each case then edits. Differences from
//! `runc spec`: no terminal; no v1 `cgroup` mount (meaningless to a cgroup2 runtime); no
//! ambient capabilities (runc's default lists ambient caps that are not inheritable, which the
//! kernel refuses and runc silently ignores, so their outcome is not a spec'd behaviour).

use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Capabilities of runc's default spec.
pub const DEFAULT_CAPS: &[&str] = &["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// Masked paths of runc's default spec.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// Read-only paths of runc's default spec.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A bundle directory and the config that will be written into it.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory (holds `config.json`).
    pub dir: PathBuf,
    /// The OCI runtime config, edited freely by the case.
    pub config: Value,
}

impl Bundle {
    /// A bundle in `dir` whose process runs `args` in `rootfs` (read-only), in new pid, net,
    /// ipc, uts and mount namespaces, with the cgroup `cgroups_path`.
    pub fn new(dir: &Path, rootfs: &Path, args: &[&str], cgroups_path: &str) -> Bundle {
        let mounts = json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ]);
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "capabilities": {
                    "bounding": DEFAULT_CAPS,
                    "effective": DEFAULT_CAPS,
                    "permitted": DEFAULT_CAPS
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": rootfs, "readonly": true},
            "hostname": "podvisor-test",
            "mounts": mounts,
            "linux": {
                "cgroupsPath": cgroups_path,
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [
                    {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                    {"type": "uts"}, {"type": "mount"}
                ],
                "maskedPaths": MASKED_PATHS,
                "readonlyPaths": READONLY_PATHS
            }
        });
        Bundle {
            dir: dir.to_path_buf(),
            config,
        }
    }

    /// Replaces the value at a JSON pointer (`/process/user`), creating objects on the way.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        let mut cur = &mut self.config;
        for part in pointer.split('/').skip(1) {
            if !cur.is_object() {
                *cur = json!({});
            }
            cur = match cur {
                Value::Object(map) => map.entry(part.to_string()).or_insert(Value::Null),
                other => other,
            };
        }
        *cur = value;
        self
    }

    /// Appends to the array at a JSON pointer.
    pub fn push(&mut self, pointer: &str, value: Value) -> &mut Self {
        match self.config.pointer_mut(pointer) {
            Some(Value::Array(a)) => a.push(value),
            _ => {
                self.set(pointer, json!([value]));
            }
        }
        self
    }

    /// Writes `config.json`, creating the bundle directory.
    pub fn write(&self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("create bundle {}: {e}", self.dir.display()))?;
        let path = self.dir.join("config.json");
        let text = serde_json::to_string_pretty(&self.config)
            .map_err(|e| format!("encode config: {e}"))?;
        std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_creates_intermediate_objects() {
        let mut b = Bundle::new(Path::new("/b"), Path::new("/r"), &["/bin/true"], "/x");
        b.set("/linux/sysctl/kernel.msgmax", json!("4096"));
        assert_eq!(b.config["linux"]["sysctl"]["kernel.msgmax"], "4096");
        assert_eq!(b.config["linux"]["cgroupsPath"], "/x");
    }

    #[test]
    fn push_appends_or_creates() {
        let mut b = Bundle::new(Path::new("/b"), Path::new("/r"), &["/bin/true"], "/x");
        b.push("/linux/namespaces", json!({"type": "cgroup"}));
        assert_eq!(
            b.config["linux"]["namespaces"].as_array().map(Vec::len),
            Some(6)
        );
        b.push("/linux/devices", json!({"path": "/dev/x"}));
        assert_eq!(b.config["linux"]["devices"][0]["path"], "/dev/x");
    }
}
