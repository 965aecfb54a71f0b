//! Making a path of cgroup v2 directories with the controllers each level offers enabled
//! for the next: shared by the pod cgroup the agent makes before a pod's first container
//! ([`crate::daemon::pod_cgroup`]) and the shim's leaf below it
//! ([`super::shim::placement`]), whichever comes first.
//!
//! cgroup v2 hands a controller to a child only when it is in the parent's
//! `cgroup.subtree_control`; a level that did not enable it leaves every cgroup below
//! without it (a BestEffort container with no memory controller, or a container whose
//! limit cannot be applied). A controller that cannot be enabled is returned as a warning,
//! not an error: the runtime enables and applies what each container asks for, and fails
//! the container in strict mode when it cannot.

use std::io;
use std::path::{Path, PathBuf};

/// A cgroup directory that could not be made.
#[derive(Debug, thiserror::Error)]
#[error("create cgroup {path}: {source}")]
pub struct CgroupTreeError {
    /// The directory.
    pub path: PathBuf,
    /// The errno.
    #[source]
    pub source: io::Error,
}

/// The controllers of `available` (a `cgroup.controllers` text) missing from `enabled` (a
/// `cgroup.subtree_control` text), as the `+name` words to write, in the kernel's order.
pub fn controllers_to_enable(available: &str, enabled: &str) -> Vec<String> {
    available
        .split_whitespace()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect()
}

/// Makes `rel` (relative to the cgroup2 mount `mount`) and its missing parents, enabling in
/// each parent every controller it offers; with `enable_in_leaf` the last level's too (a
/// cgroup whose children are containers; never a cgroup that holds processes itself, which
/// cgroup v2's no-internal-processes rule forbids). Returns the directory and the writes
/// that failed, as warnings.
pub fn make_path(
    mount: &Path,
    rel: &str,
    enable_in_leaf: bool,
) -> Result<(PathBuf, Vec<String>), CgroupTreeError> {
    let mut warnings = Vec::new();
    let mut dir = mount.to_path_buf();
    for comp in rel.split('/').filter(|c| !c.is_empty()) {
        enable_all(&dir, &mut warnings);
        dir.push(comp);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupTreeError { path: dir, source }),
        }
    }
    if enable_in_leaf {
        enable_all(&dir, &mut warnings);
    }
    Ok((dir, warnings))
}

/// Enables in `dir/cgroup.subtree_control` every controller of `dir/cgroup.controllers`
/// missing there, one write per controller so that one refusal (EBUSY when `dir` holds
/// processes, cgroups(7)'s no-internal-processes rule) does not stop the others.
fn enable_all(dir: &Path, warnings: &mut Vec<String>) {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let control = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&control).unwrap_or_default();
    for word in controllers_to_enable(&available, &enabled) {
        if let Err(e) = std::fs::write(&control, &word) {
            warnings.push(format!("write {word} to {}: {e}", control.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_missing_controllers_are_enabled() {
        let table = [
            (
                "cpuset cpu io memory pids",
                "",
                "+cpuset +cpu +io +memory +pids",
            ),
            (
                "cpuset cpu io memory pids",
                "cpu pids",
                "+cpuset +io +memory",
            ),
            ("cpu memory", "cpu memory\n", ""),
            ("", "", ""),
            // A hybrid host's cgroup2 root offers nothing: nothing to do.
            ("\n", "", ""),
        ];
        for (available, enabled, want) in table {
            assert_eq!(
                controllers_to_enable(available, enabled).join(" "),
                want,
                "available {available:?}, enabled {enabled:?}"
            );
        }
    }

    #[test]
    fn make_path_makes_every_level_in_a_plain_directory() {
        // Outside cgroupfs there are no controller files: only the directories are made
        // (the effects on a real cgroup2 tree are checked by the VM tier's agent-qos).
        let tmp = tempfile::tempdir().unwrap();
        let (dir, warnings) =
            make_path(tmp.path(), "/podvisor/pods/besteffort/podabc", true).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(dir, tmp.path().join("podvisor/pods/besteffort/podabc"));
        assert!(dir.is_dir());
    }

    #[test]
    fn a_level_that_cannot_be_made_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("file"), "").unwrap();
        let err = make_path(tmp.path(), "file/pod", false).unwrap_err();
        assert_eq!(err.path, tmp.path().join("file/pod"));
    }
}
