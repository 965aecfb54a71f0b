//! Where a pod's shim lives in the cgroup tree: a leaf of its own pod's cgroup,
//! `<parent>/pods/<qos>/pod<uid>/podvisor_shim`.
//!
//! A shim spawned by the agent starts in the agent's cgroup. Left there, stopping the
//! agent's cgroup (`systemctl stop`, which kills the unit's whole cgroup, or a
//! `cgroup.kill`) would kill every shim and cut every pod off from its parent and its
//! logs: the very thing the shim exists to survive. So the agent moves each shim into its
//! pod's cgroup as soon as it is spawned (re-adopted shims are already there), as CRI-O
//! does with `conmon_cgroup = "pod"`. The pod's cgroup has container cgroups below it, so
//! cgroup v2's no-internal-processes rule (cgroups(7)) wants the shim in a leaf of its
//! own; the leaf's name has an underscore, which no container name (a DNS label) can
//! have, so it cannot collide with a container's cgroup. The leaf is removed with the pod
//! cgroup once the shim has exited.

use std::io;
use std::path::{Path, PathBuf};

use crate::supervise::cgroup_tree::make_path;

/// The leaf, below the pod's cgroup, that holds the shim.
pub const SHIM_LEAF: &str = "podvisor_shim";

/// The shim's cgroup (relative to the cgroup2 mount) for the pod cgroup `pod_cgroup`.
pub fn shim_cgroup(pod_cgroup: &str) -> String {
    format!("{}/{SHIM_LEAF}", pod_cgroup.trim_end_matches('/'))
}

/// Moves process `pid` into the cgroup `rel` under the cgroup2 mount `mount`, creating it
/// (and its parents) if missing. Returns the cgroup's directory.
///
/// Each level created gets, in its parent's `cgroup.subtree_control`, every controller
/// the parent offers (its `cgroup.controllers`), as the runtime does for the levels it
/// creates: the pod cgroup made here first must offer the container cgroups below it the
/// controllers their limits need (the runtime reads what a level offers from the deepest
/// existing one). A controller that cannot be enabled is skipped: the runtime then
/// reports it for the container that needs it.
pub fn move_into(mount: &Path, rel: &str, pid: u32) -> io::Result<PathBuf> {
    let dir = prepare(mount, rel)?;
    if in_cgroup(pid, rel) {
        // Already there (a re-adopted shim): a write would still take the kernel's
        // cgroup-wide lock for writing (see spawn_shim).
        return Ok(dir);
    }
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("move pid {pid} into {}: {e}", procs.display()),
        )
    })?;
    Ok(dir)
}

/// Creates the cgroup `rel` under the cgroup2 mount `mount` (and its parents) as
/// [`move_into`] does, for a shim to be started in it. Returns its directory.
pub fn prepare(mount: &Path, rel: &str) -> io::Result<PathBuf> {
    let (dir, warnings) =
        make_path(mount, rel, false).map_err(|e| io::Error::new(e.source.kind(), e.to_string()))?;
    for warning in warnings {
        tracing::debug!(%warning, "shim cgroup: a controller was not enabled");
    }
    Ok(dir)
}

/// Whether process `pid` is in the cgroup `rel` (its `0::` line in `/proc/PID/cgroup`).
fn in_cgroup(pid: u32, rel: &str) -> bool {
    let want = format!("/{}", rel.trim_matches('/'));
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| {
        text.lines()
            .any(|l| l.strip_prefix("0::") == Some(want.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_leaf_is_below_the_pod_cgroup_and_no_container_name() {
        assert_eq!(
            shim_cgroup("/podvisor/pods/burstable/podabc/"),
            "/podvisor/pods/burstable/podabc/podvisor_shim"
        );
        // Container names are DNS-1123 labels: lower-case alphanumerics and '-'.
        assert!(SHIM_LEAF.contains('_'));
    }

    #[test]
    fn move_into_creates_the_leaf_and_writes_the_pid() {
        // A plain directory stands in for the cgroup2 mount: the effect is the write.
        let tmp = tempfile::tempdir().unwrap();
        let dir = move_into(tmp.path(), "/p/pods/besteffort/podu/podvisor_shim", 42).unwrap();
        assert_eq!(dir, tmp.path().join("p/pods/besteffort/podu/podvisor_shim"));
        assert_eq!(
            std::fs::read_to_string(dir.join("cgroup.procs")).unwrap(),
            "42"
        );
    }
}
