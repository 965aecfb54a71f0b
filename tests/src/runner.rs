//! Runs the privileged cases against one runtime: checks the preconditions (root, or an
//! explicit skip), prepares the fixtures, prints `ok`/`FAILED` per case and the closing
//! `N passed, N failed` line.

use crate::cases::{self, CGROUP_PARENT, Case, Ctx, Seen};
use crate::fixture::{Workspace, prepare_rootfs};
use crate::runtime::Runtime;
use std::path::Path;

/// Why the suite cannot run here, if it cannot: it needs root on the host.
pub fn privilege_problem() -> Option<String> {
    if rustix::process::geteuid().is_root() {
        None
    } else {
        Some(
            "the privileged runtime suite needs root (it creates namespaces, mounts and cgroups)"
                .into(),
        )
    }
}

/// Prepares the rootfs, scratch directories and runtime (`PODVISOR_OCI`) for a run.
pub fn context(ws: &Workspace, runtime_choice: Option<&str>) -> Result<Ctx, String> {
    let rootfs = prepare_rootfs(ws)?;
    let scratch = ws.scratch();
    let empty = scratch.join("empty");
    std::fs::write(&empty, b"").map_err(|e| format!("write {}: {e}", empty.display()))?;
    // Runtimes keep unix sockets in their state dirs: keep the paths short, on tmpfs.
    let state_base = Path::new("/run/podvisor-tests");
    let runtime = match runtime_choice {
        Some(name) => Runtime::named(name, &ws.target, state_base, &empty)?,
        None => Runtime::from_env(&ws.target, state_base, &empty)?,
    };
    let work = scratch.join("work").join(&runtime.name);
    let marker = std::env::temp_dir().join(format!("podvisor-host-only-{}", std::process::id()));
    Ctx::new(runtime, rootfs, work, marker)
}

/// The cases whose name contains any of `filters` (all cases when empty).
pub fn selected(filters: &[String]) -> Vec<Case> {
    cases::all()
        .into_iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name.contains(f.as_str())))
        .collect()
}

/// Runs one case, returning its result and what it saw.
pub fn run_case(ctx: &Ctx, case: &Case) -> (Result<(), String>, Seen) {
    let mut seen = Seen::default();
    let result = (case.run)(ctx, &mut seen);
    (result, seen)
}

/// Runs `cases`, printing one line per case (failures with their reasons indented) and the
/// closing summary; returns the number of failures.
pub fn run_all(ctx: &Ctx, cases: &[Case]) -> usize {
    println!(
        "privileged suite: runtime {} ({} cases)",
        ctx.runtime.name,
        cases.len()
    );
    let (mut passed, mut failed) = (0, 0);
    for case in cases {
        let start = std::time::Instant::now();
        let (result, _) = run_case(ctx, case);
        let ms = start.elapsed().as_millis();
        match result {
            Ok(()) => {
                passed += 1;
                println!("case {} ... ok ({ms} ms)", case.name);
            }
            Err(e) => {
                failed += 1;
                println!("case {} ... FAILED ({ms} ms)", case.name);
                for line in e.lines() {
                    println!("    {line}");
                }
            }
        }
    }
    cleanup(ctx);
    println!("{passed} passed, {failed} failed");
    failed
}

/// Removes what the suite made around the containers (the containers' own leftovers are what
/// the cases check): the cgroup parent in every hierarchy, the host marker.
pub fn cleanup(ctx: &Ctx) {
    let parent = CGROUP_PARENT.trim_start_matches('/');
    if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in hierarchies.flatten() {
            let _ = std::fs::remove_dir(h.path().join(parent));
        }
    }
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(parent));
    let _ = std::fs::remove_dir_all(&ctx.host_marker);
}
