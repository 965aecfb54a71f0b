//! The privileged runtime suite (`harness = false`): runs real containers from the busybox
//! rootfs through a runc-compatible runtime binary and asserts, from the in-container probe and
//! from the host, what their OCI specs asked for.
//!
//! Runtime: `PODVISOR_OCI` (unset: the workspace's `target/debug/podvisor-oci`; `runc`, `crun`,
//! or a path). Needs root; `PODVISOR_SKIP_PRIVILEGED=1` skips with a printed reason. Extra
//! arguments select cases whose name contains them.
#![forbid(unsafe_code)]

use podvisor_tests::fixture::Workspace;
use podvisor_tests::runner;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Filters only: ignore the flags cargo's test runner conventions pass (`--nocapture` ...).
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let cases = runner::selected(&filters);
    if let Some(problem) = runner::privilege_problem() {
        if std::env::var("PODVISOR_SKIP_PRIVILEGED").as_deref() == Ok("1") {
            for case in &cases {
                println!(
                    "case {} ... skipped: PODVISOR_SKIP_PRIVILEGED=1 and {problem}",
                    case.name
                );
            }
            println!("0 passed, 0 failed ({} skipped)", cases.len());
            return ExitCode::SUCCESS;
        }
        println!(
            "privileged suite: {problem}; run as root, or set PODVISOR_SKIP_PRIVILEGED=1 to skip"
        );
        println!("0 passed, {} failed", cases.len());
        return ExitCode::FAILURE;
    }
    let ws = Workspace::current();
    let ctx = match runner::context(&ws, None) {
        Ok(ctx) => ctx,
        Err(e) => {
            println!("privileged suite: cannot start: {e}");
            println!("0 passed, {} failed", cases.len());
            return ExitCode::FAILURE;
        }
    };
    if runner::run_all(&ctx, &cases) == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
