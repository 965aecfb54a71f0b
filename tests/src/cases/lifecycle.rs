//! Lifecycle checks driven through the runtime's verbs: create holds the process until start,
//! state reports the OCI state, kill delivers signals by name and number, exec joins a running
//! container, and kill/delete leave nothing behind (see `leftovers`). Also checks from the
//! host that the container's mount namespace is rooted in the rootfs (not a mere chroot).

use super::leftovers::{cgroup_dir, expect_nothing_left, process_gone, wait_for};
use super::{Case, Checks, Ctx, Seen, namespace_inodes};
use crate::report::Report;
use crate::spec::Bundle;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The lifecycle cases.
pub const CASES: &[Case] = &[
    Case {
        name: "create_holds_the_process_until_start",
        run: create_then_start,
    },
    Case {
        name: "kill_then_delete_leaves_nothing_behind",
        run: kill_then_delete,
    },
    Case {
        name: "delete_force_removes_a_running_container",
        run: delete_force,
    },
    Case {
        name: "kill_delivers_a_signal_by_name",
        run: kill_by_name,
    },
    Case {
        name: "exec_joins_the_running_container",
        run: exec_joins,
    },
    Case {
        name: "mount_namespace_root_is_the_rootfs",
        run: mount_ns_root,
    },
];

/// A created container that is force-deleted when the case ends, whatever happened.
struct Container<'a> {
    ctx: &'a Ctx,
    id: String,
    bundle: Bundle,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.ctx.runtime.invoke(&["delete", "--force", &self.id]);
    }
}

/// Creates a container running `args` with `/out` bound read-write to a fresh host directory.
fn create<'a>(ctx: &'a Ctx, case: &str, args: &[&str]) -> Result<(Container<'a>, PathBuf), String> {
    let id = ctx.id(case);
    let out = ctx.work.join("lifecycle-out").join(case);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let mut bundle = ctx.bundle(case, args);
    bundle.push(
        "/mounts",
        json!({"destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]}),
    );
    bundle.write()?;
    let _ = ctx.runtime.invoke(&["delete", "--force", &id]);
    ctx.runtime.create(&bundle.dir, &id)?;
    Ok((Container { ctx, id, bundle }, out))
}

fn create_then_start(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let (ct, out) = create(
        ctx,
        "lc-start",
        &[
            "/bin/sh",
            "-c",
            "echo started > /out/started; exec sleep 600",
        ],
    )?;
    let mut c = Checks::default();
    let st = ctx.runtime.state(&ct.id)?;
    c.eq("status after create", st.status.as_str(), "created");
    c.eq("state id", st.id.as_str(), ct.id.as_str());
    c.that(!st.oci_version.is_empty(), "state has no ociVersion");
    let bundle = ct
        .bundle
        .dir
        .canonicalize()
        .unwrap_or_else(|_| ct.bundle.dir.clone());
    c.eq("state bundle", PathBuf::from(&st.bundle), bundle);
    c.that(
        st.pid > 0 && !process_gone(st.pid),
        format!("created container has no live pid: {}", st.pid),
    );
    c.that(
        cgroup_dir(ctx, &ct.id).is_dir(),
        "cgroup should exist once created",
    );
    std::thread::sleep(Duration::from_millis(100));
    c.that(
        !out.join("started").exists(),
        "the user program ran before start",
    );
    c.ok("start", ctx.runtime.invoke_ok(&["start", &ct.id]));
    c.ok(
        "program runs after start",
        wait_for("started marker", Duration::from_secs(5), || {
            out.join("started").exists()
        }),
    );
    let st = c.ok("state after start", ctx.runtime.state(&ct.id));
    c.eq(
        "status after start",
        st.map(|s| s.status),
        Some("running".to_string()),
    );
    c.finish()
}

/// Creates and starts `sleep 600`, returning the container and its host pid.
fn start_sleeper<'a>(ctx: &'a Ctx, case: &str) -> Result<(Container<'a>, i64), String> {
    let (ct, _) = create(ctx, case, &["/bin/sleep", "600"])?;
    ctx.runtime.invoke_ok(&["start", &ct.id])?;
    let st = ctx
        .runtime
        .wait_status(&ct.id, "running", Duration::from_secs(5))?;
    Ok((ct, st.pid))
}

fn kill_then_delete(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let (ct, pid) = start_sleeper(ctx, "lc-kill")?;
    let mut c = Checks::default();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    c.that(
        cgroup
            .lines()
            .any(|l| l == format!("0::{}", ctx.cgroups_path(&ct.id))),
        format!(
            "host view of /proc/{pid}/cgroup lacks 0::{}: {cgroup}",
            ctx.cgroups_path(&ct.id)
        ),
    );
    let procs =
        std::fs::read_to_string(cgroup_dir(ctx, &ct.id).join("cgroup.procs")).unwrap_or_default();
    c.that(
        procs.lines().any(|l| l == pid.to_string()),
        format!("cgroup.procs lacks {pid}: {procs:?}"),
    );
    let refused = ctx
        .runtime
        .invoke(&["delete", &ct.id])
        .map(|o| !o.status.success());
    c.eq(
        "delete without --force of a running container fails",
        refused,
        Ok(true),
    );
    c.that(
        !process_gone(pid),
        "a refused delete must leave the container running",
    );
    c.ok("kill 9", ctx.runtime.invoke_ok(&["kill", &ct.id, "9"]));
    c.ok(
        "stopped after SIGKILL",
        ctx.runtime
            .wait_status(&ct.id, "stopped", Duration::from_secs(5))
            .map(drop),
    );
    c.ok(
        "delete a stopped container (no --force)",
        ctx.runtime.invoke_ok(&["delete", &ct.id]),
    );
    expect_nothing_left(&mut c, ctx, &ct.id, pid, &ct.bundle.dir);
    c.finish()
}

fn delete_force(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let (ct, pid) = start_sleeper(ctx, "lc-force")?;
    let mut c = Checks::default();
    c.ok(
        "delete --force of a running container",
        ctx.runtime.invoke_ok(&["delete", "--force", &ct.id]),
    );
    expect_nothing_left(&mut c, ctx, &ct.id, pid, &ct.bundle.dir);
    c.finish()
}

fn kill_by_name(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    // pid 1 ignores signals it has no handler for, so the shell installs one.
    let script = "trap 'echo got-term > /out/term; exit 0' TERM; echo ready > /out/ready; while :; do sleep 0.05; done";
    let (ct, out) = create(ctx, "lc-term", &["/bin/sh", "-c", script])?;
    let mut c = Checks::default();
    ctx.runtime.invoke_ok(&["start", &ct.id])?;
    c.ok(
        "shell ready",
        wait_for("ready marker", Duration::from_secs(5), || {
            out.join("ready").exists()
        }),
    );
    c.ok(
        "kill TERM",
        ctx.runtime.invoke_ok(&["kill", &ct.id, "TERM"]),
    );
    c.ok(
        "stopped after TERM",
        ctx.runtime
            .wait_status(&ct.id, "stopped", Duration::from_secs(5))
            .map(drop),
    );
    c.that(out.join("term").exists(), "the TERM handler did not run");
    c.finish()
}

fn exec_joins(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let (ct, pid) = start_sleeper(ctx, "lc-exec")?;
    let mut c = Checks::default();
    let out = ctx
        .runtime
        .invoke_ok(&["exec", &ct.id, "/bin/podvisor-probe"])?;
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    let r: Report = serde_json::from_str(line)
        .map_err(|e| format!("exec probe output is not a report ({e}): {}", out.stdout))?;
    let container = namespace_inodes(&pid.to_string());
    for ns in ["mnt", "pid", "net", "ipc", "uts"] {
        c.eq(
            &format!("exec'd process {ns} namespace"),
            r.namespaces.get(ns),
            container.get(ns),
        );
    }
    c.that(
        r.pid > 1,
        format!("exec'd process should not be pid 1: {}", r.pid),
    );
    c.eq(
        "exec'd process hostname",
        r.hostname.as_str(),
        "podvisor-test",
    );
    // runc's exec takes the container's process settings as defaults: an exec'd process must
    // not hold more privilege than the container's own process.
    let caps = crate::spec::DEFAULT_CAPS.iter().try_fold(0u64, |acc, n| {
        <caps::Capability as std::str::FromStr>::from_str(n).map(|cap| acc | cap.bitmask())
    });
    let caps = caps.map_err(|e| format!("capability table: {e}"))?;
    c.eq("exec'd process CapBnd", r.status.cap_bnd, caps);
    c.eq("exec'd process CapEff", r.status.cap_eff, caps);
    c.eq("exec'd process CapPrm", r.status.cap_prm, caps);
    c.eq(
        "exec'd process NoNewPrivs (the container's)",
        r.status.no_new_privs,
        1,
    );
    seen.report = Some(r);
    c.finish()
}

/// Enters the container's mount namespace from the host with nsenter(1), which sets the root
/// to the namespace's root: after pivot_root that is the rootfs; after a mere chroot it would
/// still be the host's root.
fn mount_ns_root(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let (_ct, pid) = start_sleeper(ctx, "lc-nsroot")?;
    let mut c = Checks::default();
    let marker = ctx.host_marker.to_string_lossy().into_owned();
    let exists = |path: &str| {
        Command::new("nsenter")
            .args([
                "--target",
                &pid.to_string(),
                "--mount",
                "--",
                "/bin/busybox",
                "test",
                "-e",
                path,
            ])
            .status()
            .map(|s| s.success())
    };
    c.eq(
        "probe binary at / of the container's mount namespace",
        exists("/bin/podvisor-probe").ok(),
        Some(true),
    );
    c.eq(
        "host marker at / of the container's mount namespace",
        exists(&marker).ok(),
        Some(false),
    );
    c.finish()
}
