//! The pod cgroup tree as the kubelet keeps it: `<parent>/pods/<qos>/pod<uid>`, made by the
//! agent before a pod's first container, with every controller the cgroup2 root offers enabled
//! in `cgroup.subtree_control` from the root down to the pod cgroup, and the pod-level
//! `pids.max` of `--pod-max-pids`.
//!
//! Why the agent and not only the runtime: the runtime enables, along a container's path, only
//! the controllers that container's limits need. A BestEffort container has none, so under the
//! runtime alone its cgroup had no memory controller at all (no `memory.current`,
//! `memory.events` or OOM accounting, unlike the kubelet's `kubepods/besteffort`, which has
//! cpu, io, memory, pids... enabled). The kubelet also puts `--pod-max-pids` on the pod
//! cgroup (all containers together), which only the agent knows about.

use std::io;
use std::path::{Path, PathBuf};

use crate::supervise::cgroup_tree::make_path;

/// A step of making the pod cgroup that failed.
#[derive(Debug, thiserror::Error)]
#[error("pod cgroup: {step} {path}: {source}")]
pub struct PodCgroupError {
    /// What was being done (`create cgroup`, `write`...).
    pub step: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The errno.
    #[source]
    pub source: io::Error,
}

/// The text written to `pids.max` for `--pod-max-pids` (`None`: no pod-level limit, like the
/// kubelet's default of -1).
pub fn pids_max_value(pod_max_pids: Option<i64>) -> Option<String> {
    pod_max_pids.filter(|p| *p > 0).map(|p| p.to_string())
}

/// Makes `rel` (a pod cgroup relative to the cgroup2 mount `mount`) and its parents, enabling
/// every available controller in each one's `cgroup.subtree_control` (the pod cgroup's too:
/// its children are the containers), then writes the pod's `pids.max` when set. Returns the
/// controllers that could not be enabled or the limit that could not be written, as
/// warnings: the runtime still enables and applies what each container asks for, and
/// fails the container in strict mode when it cannot.
pub fn ensure(
    mount: &Path,
    rel: &str,
    pod_max_pids: Option<i64>,
) -> Result<Vec<String>, PodCgroupError> {
    let (dir, mut warnings) = make_path(mount, rel, true).map_err(|e| PodCgroupError {
        step: "create cgroup",
        path: e.path,
        source: e.source,
    })?;
    if let Some(value) = pids_max_value(pod_max_pids) {
        let file = dir.join("pids.max");
        if let Err(e) = std::fs::write(&file, &value) {
            warnings.push(format!(
                "write {value} to {} (--pod-max-pids): {e}",
                file.display()
            ));
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_max_pids_is_written_only_when_positive() {
        assert_eq!(pids_max_value(None), None);
        assert_eq!(pids_max_value(Some(-1)), None);
        assert_eq!(pids_max_value(Some(0)), None);
        assert_eq!(pids_max_value(Some(128)), Some("128".to_owned()));
    }

    #[test]
    fn ensure_makes_the_path_in_a_plain_directory() {
        // Outside cgroupfs there are no controller files: only the directories are made
        // (the effects on a real cgroup2 tree are checked by the VM tier's agent-qos).
        let tmp = tempfile::tempdir().unwrap();
        let warnings = ensure(tmp.path(), "/podvisor/pods/besteffort/podabc", None).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(tmp.path().join("podvisor/pods/besteffort/podabc").is_dir());
    }
}
