//! Checks of the runc command line beyond the basic lifecycle: `run` returns the container's
//! exit status, `create ID --bundle B --pid-file F` (options after the id), OCI hooks with
//! the state on stdin, pause/resume, `ps`/`list`, and `features`.

use super::{Case, Checks, Ctx, Seen};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// The command-line cases.
pub const CASES: &[Case] = &[
    Case {
        name: "run_returns_the_container_exit_status",
        run: run_exit_status,
    },
    Case {
        name: "create_accepts_options_after_the_id_and_writes_pid_file",
        run: create_pid_file,
    },
    Case {
        name: "hooks_run_at_each_stage_with_the_state",
        run: hooks,
    },
    Case {
        name: "pause_freezes_and_resume_thaws",
        run: pause_resume,
    },
    Case {
        name: "ps_and_list_report_the_container",
        run: ps_and_list,
    },
    Case {
        name: "features_prints_the_supported_spec_range",
        run: features,
    },
    Case {
        name: "log_format_json_records_errors",
        run: log_json,
    },
    Case {
        name: "run_forwards_signals_to_the_container",
        run: run_forwards_signals,
    },
];

fn run_exit_status(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let case = "verb-exit";
    let id = ctx.id(case);
    let b = ctx.bundle(case, &["/bin/sh", "-c", "exit 7"]);
    b.write()?;
    let out = ctx.runtime.run(&b.dir, &id);
    let _ = ctx.runtime.invoke(&["delete", "--force", &id]);
    let mut c = Checks::default();
    c.eq("exit status of run", out?.status.code(), Some(7));
    c.finish()
}

fn create_pid_file(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let case = "verb-pidfile";
    let id = ctx.id(case);
    let b = ctx.bundle(case, &["/bin/sleep", "600"]);
    b.write()?;
    let pid_file = b.dir.join("container.pid");
    let bundle = b.dir.to_string_lossy().into_owned();
    let pf = pid_file.to_string_lossy().into_owned();
    let _ = ctx.runtime.invoke(&["delete", "--force", &id]);
    // The container inherits create's stdio (runc's pass-through mode): use files, not pipes.
    let log_path = b.dir.join("stdio.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("create stdio.log: {e}"))?;
    let log2 = log.try_clone().map_err(|e| format!("dup stdio.log: {e}"))?;
    let mut cmd = ctx.runtime.command([
        "create",
        id.as_str(),
        "--bundle",
        bundle.as_str(),
        "--pid-file",
        pf.as_str(),
    ]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    let status = cmd.status().map_err(|e| format!("spawn create: {e}"))?;
    let mut c = Checks::default();
    if status.success() {
        let st = c.ok("state", ctx.runtime.state(&id));
        let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
        c.eq(
            "pid file content",
            written.trim().parse::<i64>().ok(),
            st.map(|s| s.pid),
        );
    } else {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        c.that(
            false,
            format!(
                "create {id} --bundle B --pid-file F failed ({status}): {}",
                text.trim()
            ),
        );
    }
    let _ = ctx.runtime.invoke(&["delete", "--force", &id]);
    c.finish()
}

/// Every hook is `/bin/busybox sh -c 'cat > HOST_DIR/NAME.json || cat > /out/NAME.json'`:
/// busybox exists at that path on the host (busybox-static) and in the rootfs, and `/out` is a
/// bind mount of HOST_DIR, so a hook lands in the same directory whichever mount namespace
/// and root it runs in.
fn hooks(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let case = "verb-hooks";
    let id = ctx.id(case);
    let out = ctx.work.join("hooks-out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let mut b = ctx.bundle(case, &["/bin/sleep", "600"]);
    b.push(
        "/mounts",
        json!({"destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]}),
    );
    let names = [
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ];
    for name in names {
        let script = format!(
            "cat > {}/{name}.json 2>/dev/null || cat > /out/{name}.json",
            out.display()
        );
        b.set(
            &format!("/hooks/{name}"),
            json!([{"path": "/bin/busybox", "args": ["busybox", "sh", "-c", script]}]),
        );
    }
    b.write()?;
    let _ = ctx.runtime.invoke(&["delete", "--force", &id]);
    let mut c = Checks::default();
    let seen_hook = |name: &str| -> Option<Value> {
        let text = std::fs::read_to_string(out.join(format!("{name}.json"))).ok()?;
        serde_json::from_str(&text).ok()
    };
    c.ok("create", ctx.runtime.create(&b.dir, &id));
    for name in ["createRuntime", "createContainer"] {
        c.that(
            seen_hook(name).is_some(),
            format!("{name} hook did not run (or got no state) by the end of create"),
        );
    }
    c.that(
        seen_hook("startContainer").is_none(),
        "startContainer hook ran before start",
    );
    c.ok("start", ctx.runtime.invoke_ok(&["start", &id]).map(drop));
    c.ok(
        "running",
        ctx.runtime
            .wait_status(&id, "running", Duration::from_secs(5))
            .map(drop),
    );
    for name in ["startContainer", "poststart"] {
        c.that(
            seen_hook(name).is_some(),
            format!("{name} hook did not run by the end of start"),
        );
    }
    c.that(
        seen_hook("poststop").is_none(),
        "poststop hook ran before delete",
    );
    c.ok(
        "delete --force",
        ctx.runtime.invoke_ok(&["delete", "--force", &id]).map(drop),
    );
    for name in names {
        match seen_hook(name) {
            Some(state) => {
                c.eq(
                    &format!("{name} state id"),
                    state["id"].as_str(),
                    Some(id.as_str()),
                );
                c.that(
                    state["ociVersion"].is_string(),
                    format!("{name} state lacks ociVersion: {state}"),
                );
                c.that(
                    state["bundle"].is_string(),
                    format!("{name} state lacks bundle: {state}"),
                );
            }
            None => c.that(false, format!("{name} hook: no state JSON written")),
        }
    }
    c.finish()
}

/// Waits up to 5 s (a loaded machine schedules slowly) for the tick count to pass `from`.
fn progressed(out: &Path, from: usize) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if ticks(out) > from {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Counts how far a ticking container got (`/out/ticks` grows every 10 ms while it runs).
fn ticks(out: &Path) -> usize {
    std::fs::read_to_string(out.join("ticks"))
        .map(|s| s.len())
        .unwrap_or(0)
}

fn pause_resume(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let case = "verb-pause";
    let id = ctx.id(case);
    let out = ctx.work.join("pause-out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let mut b = ctx.bundle(
        case,
        &[
            "/bin/sh",
            "-c",
            "while :; do echo -n . >> /out/ticks; sleep 0.01; done",
        ],
    );
    b.push(
        "/mounts",
        json!({"destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]}),
    );
    b.write()?;
    let _ = ctx.runtime.invoke(&["delete", "--force", &id]);
    ctx.runtime.create(&b.dir, &id)?;
    let mut c = Checks::default();
    c.ok("start", ctx.runtime.invoke_ok(&["start", &id]).map(drop));
    c.that(
        progressed(&out, 0),
        "the container is not ticking after start",
    );
    c.ok("pause", ctx.runtime.invoke_ok(&["pause", &id]).map(drop));
    let st = c.ok("state after pause", ctx.runtime.state(&id));
    c.eq(
        "status after pause",
        st.map(|s| s.status),
        Some("paused".to_string()),
    );
    let before = ticks(&out);
    std::thread::sleep(Duration::from_millis(200));
    c.eq(
        "ticks while paused (frozen: no progress)",
        ticks(&out),
        before,
    );
    c.ok("resume", ctx.runtime.invoke_ok(&["resume", &id]).map(drop));
    let st = c.ok("state after resume", ctx.runtime.state(&id));
    c.eq(
        "status after resume",
        st.map(|s| s.status),
        Some("running".to_string()),
    );
    c.that(progressed(&out, before), "no progress after resume");
    c.ok(
        "delete --force",
        ctx.runtime.invoke_ok(&["delete", "--force", &id]).map(drop),
    );
    c.finish()
}

fn ps_and_list(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let case = "verb-ps";
    let id = ctx.id(case);
    let b = ctx.bundle(case, &["/bin/sleep", "600"]);
    b.write()?;
    let _ = ctx.runtime.invoke(&["delete", "--force", &id]);
    ctx.runtime.create(&b.dir, &id)?;
    let mut c = Checks::default();
    c.ok("start", ctx.runtime.invoke_ok(&["start", &id]).map(drop));
    let st = ctx
        .runtime
        .wait_status(&id, "running", Duration::from_secs(5))?;
    match ctx.runtime.invoke_ok(&["ps", "--format", "json", &id]) {
        Ok(o) => {
            let pids: Result<Vec<i64>, _> = serde_json::from_str(&o.stdout);
            c.eq("ps --format json", pids.ok(), Some(vec![st.pid]));
        }
        Err(e) => c.that(false, e),
    }
    match ctx.runtime.invoke_ok(&["list", "--format", "json"]) {
        Ok(o) => {
            let list: Value = serde_json::from_str(&o.stdout).unwrap_or(Value::Null);
            let entry = list
                .as_array()
                .and_then(|a| a.iter().find(|e| e["id"] == json!(id)));
            c.eq(
                "list entry status",
                entry.map(|e| e["status"].clone()),
                Some(json!("running")),
            );
            c.eq(
                "list entry pid",
                entry.map(|e| e["pid"].clone()),
                Some(json!(st.pid)),
            );
        }
        Err(e) => c.that(false, e),
    }
    match ctx.runtime.invoke_ok(&["list", "-q"]) {
        Ok(o) => c.that(
            o.stdout.lines().any(|l| l.trim() == id),
            format!("list -q lacks {id}: {}", o.stdout),
        ),
        Err(e) => c.that(false, e),
    }
    c.ok(
        "delete --force",
        ctx.runtime.invoke_ok(&["delete", "--force", &id]).map(drop),
    );
    c.finish()
}

fn features(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let out = ctx.runtime.invoke_ok(&["features"])?;
    let v: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("features is not JSON ({e}): {}", out.stdout))?;
    let mut c = Checks::default();
    c.that(
        v["ociVersionMin"].is_string(),
        format!("features lacks ociVersionMin: {v}"),
    );
    c.that(
        v["ociVersionMax"].is_string(),
        format!("features lacks ociVersionMax: {v}"),
    );
    let hooks = v["hooks"].as_array().cloned().unwrap_or_default();
    for h in [
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        c.that(
            hooks.contains(&json!(h)),
            format!("features.hooks lacks {h}"),
        );
    }
    c.finish()
}

/// `--log FILE --log-format json` (how containerd drives runc): a failing command exits
/// non-zero and leaves a JSON line with `level` and `msg` in the log file.
fn log_json(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let log = ctx.work.join("runtime-log.json");
    let _ = std::fs::remove_file(&log);
    let log_s = log.to_string_lossy().into_owned();
    let missing = ctx.id("no-such-container");
    let out = ctx
        .runtime
        .invoke(&["--log", &log_s, "--log-format", "json", "state", &missing])?;
    let mut c = Checks::default();
    c.that(
        !out.status.success(),
        "state of a missing container should fail",
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let last: Option<Value> = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok());
    match last {
        Some(v) => {
            c.eq("log level", v["level"].as_str(), Some("error"));
            c.that(
                v["msg"].as_str().is_some_and(|m| !m.is_empty()),
                format!("log line has no msg: {v}"),
            );
        }
        None => c.that(
            false,
            format!("no JSON line in {}: {text:?}", log.display()),
        ),
    }
    c.finish()
}

/// A foreground `run` relays the signals it receives to the container's init (runc and crun
/// do; a supervisor stopping a container by signalling its runtime relies on it): SIGTERM to
/// the runtime reaches the shell's trap, and `run` exits with the trap's status.
fn run_forwards_signals(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let case = "verb-sigfwd";
    let id = ctx.id(case);
    let out = ctx.work.join("sigfwd-out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let script = "trap 'exit 3' TERM; echo ready > /out/ready; while :; do sleep 0.05; done";
    let mut b = ctx.bundle(case, &["/bin/sh", "-c", script]);
    b.push(
        "/mounts",
        json!({"destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]}),
    );
    b.write()?;
    let _ = ctx.runtime.invoke(&["delete", "--force", &id]);
    let bundle = b.dir.to_string_lossy().into_owned();
    let mut child = ctx
        .runtime
        .command(["run", "--bundle", bundle.as_str(), id.as_str()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn run: {e}"))?;
    let mut c = Checks::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !out.join("ready").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    c.that(out.join("ready").exists(), "container never became ready");
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    match pid {
        Some(pid) => c.ok(
            "SIGTERM to the runtime",
            rustix::process::kill_process(pid, rustix::process::Signal::TERM)
                .map_err(|e| e.to_string()),
        ),
        None => c.ok("runtime pid", Err("invalid pid".to_string())),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    c.eq(
        "run's exit status after SIGTERM (the trap's)",
        status.and_then(|s| s.code()),
        Some(3),
    );
    let _ = ctx.runtime.invoke(&["delete", "--force", &id]);
    c.finish()
}
