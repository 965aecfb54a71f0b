//! What a pod leaves outside its state directory, removed once its worker has stopped
//! it: the containers' root filesystems (overlay mounts), the pod directory (managed
//! files, emptyDir volumes), its cgroups and its log directory.

use std::path::Path;

use podvisor_rootfs::Store;

use crate::translate::resources::pod_cgroup;

/// Where one pod's leftovers are.
#[derive(Debug, Clone)]
pub struct PodLeftovers<'a> {
    /// The pod UID.
    pub uid: &'a str,
    /// `<root>/pods/<uid>`.
    pub pod_dir: &'a Path,
    /// `<log-dir>/<ns>_<name>_<uid>`.
    pub log_dir: &'a Path,
    /// The pod's cgroup relative to the cgroup2 root.
    pub cgroup: String,
}

impl PodLeftovers<'_> {
    /// The cgroup of a pod of QoS `qos` under `parent`.
    pub fn cgroup_of(parent: &str, qos: crate::pod::QosClass, uid: &str) -> String {
        pod_cgroup(parent, qos, uid)
    }

    /// Removes everything; returns one message per thing that could not be removed.
    pub fn remove(&self, store: &Store) -> Vec<String> {
        let mut problems = Vec::new();
        let prefix = format!("{}-", self.uid);
        match store.containers() {
            Ok(list) => {
                for rec in list.into_iter().filter(|r| r.id.starts_with(&prefix)) {
                    if let Err(e) = store.remove_container(&rec.id) {
                        problems.push(format!("remove root filesystem {}: {e}", rec.id));
                    }
                }
            }
            Err(e) => problems.push(format!("list root filesystems: {e}")),
        }
        for dir in [self.pod_dir, self.log_dir] {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => problems.push(format!("remove {}: {e}", dir.display())),
            }
        }
        if let Err(e) = remove_cgroup(&self.cgroup) {
            problems.push(e);
        }
        problems
    }
}

/// Removes the pod cgroup and its (empty) children; a missing cgroup is not an error.
fn remove_cgroup(rel: &str) -> Result<(), String> {
    let Ok(mount) = podvisor_runtime::cgroup::mount_point() else {
        return Ok(());
    };
    let dir = mount.join(rel.trim_start_matches('/'));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let children: Vec<_> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    for child in &children {
        let _ = remove_dir_when_empty(child);
    }
    match remove_dir_when_empty(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("remove cgroup {}: {e}", dir.display())),
    }
}

/// `rmdir` of a cgroup, retried for a moment while it is busy: after `cgroup.kill` the
/// kernel empties a cgroup asynchronously, so killed processes (a fork bomb's hundreds)
/// can still be exiting when the pod's worker has ended. Bounded: one second at most.
fn remove_dir_when_empty(dir: &Path) -> std::io::Result<()> {
    const TRIES: u32 = 20;
    let mut tries = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                tries += 1;
                if tries == TRIES {
                    return Err(e);
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}
