//! What a container may leave behind, and the cases that check it is nothing: no process, no
//! cgroup, no host mount, no state directory, after delete, after a failed create (bad bind
//! source, failing createRuntime hook), and after the whole suite run.

use super::{Case, Checks, Ctx, Seen};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The failed-create cases.
pub const CASES: &[Case] = &[
    Case {
        name: "failed_create_leaves_nothing_behind",
        run: failed_create,
    },
    Case {
        name: "failing_create_runtime_hook_aborts_and_cleans_up",
        run: failing_hook,
    },
];

/// Runs after every other case: nothing of this suite run may remain.
pub const LAST: Case = Case {
    name: "no_container_of_this_run_is_left_behind",
    run: nothing_left_of_this_run,
};

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub(super) fn wait_for(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The cgroup2 mount: the unified hierarchy on hybrid hosts, else /sys/fs/cgroup.
pub(super) fn cgroup2_root() -> PathBuf {
    let unified = Path::new("/sys/fs/cgroup/unified");
    if unified.join("cgroup.procs").exists() {
        unified.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

pub(super) fn cgroup_dir(ctx: &Ctx, id: &str) -> PathBuf {
    cgroup2_root().join(ctx.cgroups_path(id).trim_start_matches('/'))
}

/// Host mounts that mention the rootfs or the bundle directory.
fn host_mounts_of(ctx: &Ctx, bundle: &Path) -> Vec<String> {
    let rootfs = ctx.rootfs.dir.to_string_lossy().into_owned();
    let bundle = bundle.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&rootfs) || l.contains(&bundle))
        .map(str::to_string)
        .collect()
}

/// A process is gone when /proc/PID is absent (or, if some other parent has not reaped it
/// yet, a zombie).
pub(super) fn process_gone(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Expects no process, cgroup, host mount or state directory left for the container.
pub(super) fn expect_nothing_left(c: &mut Checks, ctx: &Ctx, id: &str, pid: i64, bundle: &Path) {
    c.that(
        wait_for("container process exit", Duration::from_secs(5), || {
            process_gone(pid)
        })
        .is_ok(),
        format!("container process {pid} still exists"),
    );
    let cg = cgroup_dir(ctx, id);
    c.that(
        !cg.exists(),
        format!("cgroup {} still exists", cg.display()),
    );
    let dir = ctx.runtime.state_dir(id);
    c.that(
        !dir.exists(),
        format!("state directory {} still exists", dir.display()),
    );
    c.that(
        ctx.runtime.state(id).is_err(),
        format!("state {id} still succeeds after delete"),
    );
    let mounts = host_mounts_of(ctx, bundle);
    c.that(
        mounts.is_empty(),
        format!("mounts left on the host: {mounts:?}"),
    );
}

fn failed_create(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let case = "lc-fail";
    let id = ctx.id(case);
    let mut b = ctx.bundle(case, &["/bin/true"]);
    let missing = ctx.work.join("does-not-exist");
    b.push(
        "/mounts",
        json!({"destination": "/missing", "type": "bind", "source": missing, "options": ["rbind"]}),
    );
    b.write()?;
    let mut c = Checks::default();
    let r = ctx.runtime.create(&b.dir, &id);
    match &r {
        Ok(()) => c.that(false, "create with a missing bind source should fail"),
        // The error must name what failed and keep the errno (ENOENT), however it is spelled.
        Err(e) => c.that(
            e.contains("does-not-exist")
                && (e.to_lowercase().contains("no such file") || e.contains("ENOENT")),
            format!("the error should name the missing source and ENOENT: {e}"),
        ),
    }
    let st = ctx.runtime.state(&id);
    c.that(
        st.is_err(),
        format!("state after a failed create should fail: {st:?}"),
    );
    let pid = st.map(|s| s.pid).unwrap_or(0);
    if pid > 0 {
        let _ = ctx.runtime.invoke(&["delete", "--force", &id]);
    }
    expect_nothing_left(
        &mut c,
        ctx,
        &id,
        if pid > 0 { pid } else { i64::MAX },
        &b.dir,
    );
    c.finish()
}

/// Every container id, cgroup and state directory of this run ends with `-<tag>`: after all
/// cases (each of which deletes what it made, even when it fails), none may remain.
fn nothing_left_of_this_run(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let mut c = Checks::default();
    let suffix = format!("-{}", ctx.tag);
    let listed = ctx
        .runtime
        .invoke_ok(&["list", "-q"])
        .map(|o| o.stdout)
        .unwrap_or_default();
    let ours: Vec<&str> = listed
        .lines()
        .map(str::trim)
        .filter(|l| l.ends_with(&suffix))
        .collect();
    c.that(
        ours.is_empty(),
        format!("containers still listed: {ours:?}"),
    );
    let parent = cgroup2_root().join(super::CGROUP_PARENT.trim_start_matches('/'));
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let cgroups: Vec<String> = names(&parent)
        .into_iter()
        .filter(|n| n.ends_with(&suffix))
        .collect();
    c.that(
        cgroups.is_empty(),
        format!("cgroups left under {}: {cgroups:?}", parent.display()),
    );
    let states: Vec<String> = names(&ctx.runtime.root)
        .into_iter()
        .filter(|n| n.ends_with(&suffix))
        .collect();
    c.that(
        states.is_empty(),
        format!(
            "state directories left in {}: {states:?}",
            ctx.runtime.root.display()
        ),
    );
    c.finish()
}

/// A `createRuntime` hook that exits non-zero makes create fail (OCI: the runtime must
/// generate an error and stop the container), and the half-built container is cleaned up.
fn failing_hook(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let case = "lc-hookfail";
    let id = ctx.id(case);
    let mut b = ctx.bundle(case, &["/bin/sleep", "600"]);
    b.set(
        "/hooks/createRuntime",
        json!([{"path": "/bin/busybox", "args": ["busybox", "false"]}]),
    );
    b.write()?;
    let mut c = Checks::default();
    let r = ctx.runtime.create(&b.dir, &id);
    c.that(
        r.is_err(),
        "create with a failing createRuntime hook should fail",
    );
    let st = ctx.runtime.state(&id);
    let pid = st.as_ref().map(|s| s.pid).unwrap_or(0);
    c.that(
        st.is_err(),
        format!("state after the failed create should fail: {st:?}"),
    );
    if pid > 0 {
        let _ = ctx.runtime.invoke(&["delete", "--force", &id]);
    }
    expect_nothing_left(
        &mut c,
        ctx,
        &id,
        if pid > 0 { pid } else { i64::MAX },
        &b.dir,
    );
    c.finish()
}
