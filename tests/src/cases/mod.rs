//! The privileged runtime checks: each [`Case`] builds a bundle, runs it through a
//! [`Runtime`], and asserts from the probe's [`Report`] (or from the host) what the OCI spec
//! asked for. Shared by the `privileged` test binary and `podvisor-oci-compare`.

mod filesystem;
mod leftovers;
mod lifecycle;
mod namespaces;
mod process;
mod propagation;
mod terminal;
mod verbs;

use crate::fixture::Rootfs;
use crate::report::{Report, parse_ns_link};
use crate::runtime::Runtime;
use crate::spec::Bundle;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;

/// What a case observed, for the comparison tool: the probe's report and the inodes of
/// namespaces it created on purpose (so reports from two runtimes can be normalised).
#[derive(Debug, Default)]
pub struct Seen {
    /// The (last) probe report of the case, if it ran the probe.
    pub report: Option<Report>,
    /// Namespace inode → role (`joined-net`, ...), for inodes the case created itself.
    pub known_inodes: BTreeMap<u64, String>,
}

/// One named check.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Behaviour-stating name, printed in the results.
    pub name: &'static str,
    /// Runs the check; `Err` carries every failed expectation.
    pub run: fn(&Ctx, &mut Seen) -> Result<(), String>,
}

/// Everything a case needs: the runtime under test, the rootfs, scratch space.
#[derive(Debug)]
pub struct Ctx {
    /// The runtime binary under test.
    pub runtime: Runtime,
    /// The shared busybox rootfs with the probe in `/bin/podvisor-probe`.
    pub rootfs: Rootfs,
    /// Per-runtime scratch directory (bundles, namespace files).
    pub work: PathBuf,
    /// Unique per suite process, part of every container id.
    pub tag: String,
    /// The suite's own namespaces (the host's), kind → inode.
    pub host_ns: BTreeMap<String, u64>,
    /// A directory that exists on the host only; containers must not see it.
    pub host_marker: PathBuf,
}

/// The parent of every cgroup the suite asks for (`linux.cgroupsPath`).
pub const CGROUP_PARENT: &str = "/podvisor-tests";

impl Ctx {
    /// Builds the context; `work` is created.
    pub fn new(
        runtime: Runtime,
        rootfs: Rootfs,
        work: PathBuf,
        host_marker: PathBuf,
    ) -> Result<Ctx, String> {
        std::fs::create_dir_all(&work).map_err(|e| format!("create {}: {e}", work.display()))?;
        std::fs::create_dir_all(&host_marker)
            .map_err(|e| format!("create {}: {e}", host_marker.display()))?;
        Ok(Ctx {
            runtime,
            rootfs,
            work,
            tag: std::process::id().to_string(),
            host_ns: namespace_inodes("self"),
            host_marker,
        })
    }

    /// The container id for a case.
    pub fn id(&self, case: &str) -> String {
        format!("pvt-{case}-{}", self.tag)
    }

    /// The cgroup path a case's container asks for.
    pub fn cgroups_path(&self, id: &str) -> String {
        format!("{CGROUP_PARENT}/{id}")
    }

    /// A fresh bundle for `case` running `args`.
    pub fn bundle(&self, case: &str, args: &[&str]) -> Bundle {
        let id = self.id(case);
        let dir = self.work.join("bundles").join(case);
        let _ = std::fs::remove_dir_all(&dir);
        Bundle::new(&dir, &self.rootfs.dir, args, &self.cgroups_path(&id))
    }

    /// A bundle running the probe with `probe_args`.
    pub fn probe_bundle(&self, case: &str, probe_args: &[&str]) -> Bundle {
        let mut args = vec!["/bin/podvisor-probe"];
        args.extend_from_slice(probe_args);
        self.bundle(case, &args)
    }

    /// Writes the bundle, `run`s it, and parses the probe's report from its stdout.
    pub fn run_probe(&self, bundle: &Bundle, id: &str, seen: &mut Seen) -> Result<Report, String> {
        bundle.write()?;
        let out = self.runtime.run(&bundle.dir, id);
        // A failed run may leave a stopped container behind; never let it leak into the next case.
        let _ = self.runtime.invoke(&["delete", "--force", id]);
        let out = out?;
        if !out.status.success() {
            return Err(format!(
                "{} run {id} exited {}; stderr: {}; stdout: {}",
                self.runtime.name,
                out.status,
                out.stderr.trim(),
                out.stdout.trim()
            ));
        }
        let line = out
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or("");
        let report: Report = serde_json::from_str(line).map_err(|e| {
            format!(
                "probe report is not JSON ({e}); stdout: {}",
                out.stdout.trim()
            )
        })?;
        seen.report = Some(report.clone());
        Ok(report)
    }
}

/// Reads `/proc/<pid>/ns/*` (pid may be `self`): kind → inode.
pub fn namespace_inodes(pid: &str) -> BTreeMap<String, u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/ns")) else {
        return BTreeMap::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                parse_ns_link(&target.to_string_lossy())?,
            ))
        })
        .collect()
}

/// Collects failed expectations so one case reports all of them at once.
#[derive(Debug, Default)]
pub struct Checks {
    failures: Vec<String>,
}

impl Checks {
    /// Expects `got == want`.
    pub fn eq<T: PartialEq + Debug>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            self.failures
                .push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    /// Expects `cond`, otherwise records `what`.
    pub fn that(&mut self, cond: bool, what: impl Into<String>) {
        if !cond {
            self.failures.push(what.into());
        }
    }

    /// Records a failure from a fallible step, returning its value when it worked.
    pub fn ok<T>(&mut self, what: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.failures.push(format!("{what}: {e}"));
                None
            }
        }
    }

    /// `Ok` when nothing failed, else every failure on its own line.
    pub fn finish(self) -> Result<(), String> {
        if self.failures.is_empty() {
            Ok(())
        } else {
            Err(self.failures.join("\n"))
        }
    }
}

/// Every case, in the order they run.
pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend_from_slice(lifecycle::CASES);
    cases.extend_from_slice(leftovers::CASES);
    cases.extend_from_slice(namespaces::CASES);
    cases.extend_from_slice(filesystem::CASES);
    cases.extend_from_slice(propagation::CASES);
    cases.extend_from_slice(process::CASES);
    cases.extend_from_slice(verbs::CASES);
    cases.extend_from_slice(terminal::CASES);
    cases.push(leftovers::LAST);
    cases
}
