//! Privileged smoke test of `podvisor-oci` (harness = false): real containers from a tiny
//! busybox rootfs built in a temporary directory from Debian's busybox-static.
//!
//! Root is required; when not root it fails, unless `PODVISOR_SKIP_PRIVILEGED=1`, which
//! skips with a printed reason. Ends with an `N passed, N failed` line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_podvisor-oci");

/// One named check of the suite.
type Check = fn(&Env) -> Result<(), String>;

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    bundle: PathBuf,
}

fn build_rootfs(rootfs: &Path) -> Result<(), String> {
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("busybox not found: install busybox-static")?;
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).map_err(|e| e.to_string())?;
    }
    std::fs::copy(bb, rootfs.join("bin/busybox")).map_err(|e| e.to_string())?;
    for applet in [
        "sh", "true", "sleep", "cat", "id", "hostname", "ls", "mkdir", "grep", "echo", "ulimit",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn base_config(args: &[&str]) -> Value {
    let caps = json!(["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]);
    json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "smoke",
        "process": {
            "args": args, "cwd": "/", "env": ["PATH=/bin"],
            "user": {"uid": 0, "gid": 0},
            "noNewPrivileges": true,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 777, "soft": 777}],
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}, {"type": "network"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/timer_list"],
            "readonlyPaths": ["/proc/sys"],
            "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}
        }
    })
}

impl Env {
    fn new() -> Result<Env, String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let bundle = tmp.path().join("bundle");
        build_rootfs(&bundle.join("rootfs"))?;
        Ok(Env {
            root: tmp.path().join("state"),
            bundle,
            _tmp: tmp,
        })
    }

    fn config(&self, cfg: &Value) {
        std::fs::write(self.bundle.join("config.json"), cfg.to_string())
            .expect("write config.json");
    }

    /// Run the CLI with stdout/stderr in files: a created container inherits them and may
    /// outlive the CLI, so waiting for pipe EOF (`Command::output`) would hang.
    fn oci(&self, args: &[&str]) -> Output {
        let out_path = self._tmp.path().join("out");
        let err_path = self._tmp.path().join("err");
        let out = std::fs::File::create(&out_path).expect("create out file");
        let err = std::fs::File::create(&err_path).expect("create err file");
        let status = Command::new(BIN)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .current_dir(&self.bundle)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .expect("run podvisor-oci");
        Output {
            status,
            stdout: std::fs::read(&out_path).unwrap_or_default(),
            stderr: std::fs::read(&err_path).unwrap_or_default(),
        }
    }

    fn nothing_left(&self, id: &str) -> Result<(), String> {
        if self.root.join(id).exists() {
            return Err(format!("state dir of {id} left behind"));
        }
        let cg = Path::new(&cgroup_mount()).join("podvisor-smoke").join(id);
        if cg.exists() {
            return Err(format!("cgroup {} left behind", cg.display()));
        }
        Ok(())
    }
}

fn cgroup_mount() -> String {
    if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        "/sys/fs/cgroup/unified".into()
    } else {
        "/sys/fs/cgroup".into()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn with_cgroup(mut cfg: Value, id: &str) -> Value {
    cfg["linux"]["cgroupsPath"] = json!(format!("/podvisor-smoke/{id}"));
    cfg
}

fn check_inside(env: &Env) -> Result<(), String> {
    let script = "echo host=$(hostname); echo pid=$$; id; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
                  ulimit -n; cat /proc/self/cgroup; ls /; mkdir /tmp/x 2>&1; echo sys=$(echo 1 > /proc/sys/vm/overcommit_memory 2>&1 || echo ro); \
                  cat /proc/timer_list | wc -c";
    env.config(&with_cgroup(base_config(&["sh", "-c", script]), "inside"));
    let o = env.oci(&["run", "inside"]);
    let out = text(&o);
    let expect = [
        "host=smoke",
        "pid=1",
        "uid=0 gid=0",
        "CapEff:\t0000000020000420",
        "CapBnd:\t0000000020000420",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
        "777",
        "0::/\n",
        "Function not implemented",
        "Read-only file system",
    ];
    for e in expect {
        if !out.contains(e) {
            return Err(format!("expected {e:?} in container output:\n{out}"));
        }
    }
    // pivot_root: the root listing is exactly the rootfs, no host directories.
    for host_only in ["usr\n", "home\n", "root\n", "var\n"] {
        if out.contains(host_only) {
            return Err(format!("host path {host_only:?} visible:\n{out}"));
        }
    }
    if !o.status.success() {
        return Err(format!("exit {:?}: {out}", o.status));
    }
    env.nothing_left("inside")
}

fn check_exit_code(env: &Env) -> Result<(), String> {
    env.config(&with_cgroup(base_config(&["sh", "-c", "exit 7"]), "exit7"));
    let o = env.oci(&["run", "exit7"]);
    if o.status.code() != Some(7) {
        return Err(format!("want exit 7, got {:?}: {}", o.status, text(&o)));
    }
    if !o.stderr.is_empty() {
        return Err(format!("stderr not empty on success: {}", text(&o)));
    }
    env.nothing_left("exit7")
}

fn state_status(env: &Env, id: &str) -> Result<String, String> {
    let o = env.oci(&["state", id]);
    let v: Value =
        serde_json::from_slice(&o.stdout).map_err(|e| format!("state json: {e}: {}", text(&o)))?;
    Ok(v["status"].as_str().unwrap_or_default().to_string())
}

fn check_lifecycle(env: &Env) -> Result<(), String> {
    let id = "life";
    env.config(&with_cgroup(base_config(&["sleep", "1000"]), id));
    let o = env.oci(&["create", "--bundle", env.bundle.to_str().unwrap_or("."), id]);
    if !o.status.success() {
        return Err(format!("create: {}", text(&o)));
    }
    if state_status(env, id)? != "created" {
        return Err("not created after create".into());
    }
    let o = env.oci(&["start", id]);
    if !o.status.success() {
        return Err(format!("start: {}", text(&o)));
    }
    if state_status(env, id)? != "running" {
        return Err("not running after start".into());
    }
    let o = env.oci(&[
        "exec",
        id,
        "sh",
        "-c",
        "echo exec-pid=$$; cat /proc/1/cmdline",
    ]);
    let out = text(&o);
    if !out.contains("sleep") || out.contains("exec-pid=1\n") || !o.status.success() {
        return Err(format!(
            "exec did not join the container's pid namespace: {out}"
        ));
    }
    let o = env.oci(&["delete", id]);
    if o.status.success() {
        return Err("delete of a running container without --force succeeded".into());
    }
    let o = env.oci(&["kill", id, "KILL"]);
    if !o.status.success() {
        return Err(format!("kill: {}", text(&o)));
    }
    // The killed init is reaped by whoever inherited it; delete waits for the cgroup.
    let o = env.oci(&["delete", "--force", id]);
    if !o.status.success() {
        return Err(format!("delete: {}", text(&o)));
    }
    env.nothing_left(id)
}

fn check_failure_cleans_up(env: &Env) -> Result<(), String> {
    let id = "broken";
    let mut cfg = with_cgroup(base_config(&["true"]), id);
    if let Some(m) = cfg["mounts"].as_array_mut() {
        m.push(json!({"destination": "/data", "type": "bind", "source": "/nonexistent-smoke", "options": ["rbind"]}));
    }
    env.config(&cfg);
    let o = env.oci(&["run", id]);
    let out = text(&o);
    if o.status.success()
        || !out.contains("ENOENT")
        || !out.contains("bind source /nonexistent-smoke")
    {
        return Err(format!(
            "want a typed error naming step and errno, got: {out}"
        ));
    }
    env.nothing_left(id)
}

fn check_user_namespace(env: &Env) -> Result<(), String> {
    let id = "userns";
    let mut cfg = with_cgroup(
        base_config(&["sh", "-c", "id -u; cat /proc/self/uid_map"]),
        id,
    );
    if let Some(ns) = cfg["linux"]["namespaces"].as_array_mut() {
        ns.push(json!({"type": "user"}));
    }
    cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    env.config(&cfg);
    let o = env.oci(&["run", id]);
    let out = text(&o);
    if !o.status.success() || !out.contains("200000") {
        return Err(format!("user namespace: {out}"));
    }
    env.nothing_left(id)
}

fn check_pause_resume_and_hooks(env: &Env) -> Result<(), String> {
    let id = "hooks";
    let dir = env._tmp.path().join("hookout");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{name}", dir.display())]});
    let mut cfg = with_cgroup(base_config(&["sleep", "1000"]), id);
    cfg["hooks"] = json!({
        "createRuntime": [hook("createRuntime")],
        "poststart": [hook("poststart")],
        "poststop": [hook("poststop")]
    });
    env.config(&cfg);
    for args in [&["create", id][..], &["start", id][..], &["pause", id][..]] {
        let o = env.oci(args);
        if !o.status.success() {
            return Err(format!("{args:?}: {}", text(&o)));
        }
    }
    if state_status(env, id)? != "paused" {
        return Err("not paused after pause".into());
    }
    let o = env.oci(&["resume", id]);
    if !o.status.success() || state_status(env, id)? != "running" {
        return Err(format!("resume: {}", text(&o)));
    }
    let o = env.oci(&["events", "--stats", id]);
    let v: Value =
        serde_json::from_slice(&o.stdout).map_err(|e| format!("events json: {e}: {}", text(&o)))?;
    if v["data"]["procs"].as_array().map_or(0, Vec::len) != 1 {
        return Err(format!("events --stats: {v}"));
    }
    let o = env.oci(&["delete", "--force", id]);
    if !o.status.success() {
        return Err(format!("delete: {}", text(&o)));
    }
    for (name, status) in [
        ("createRuntime", "creating"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let body = std::fs::read_to_string(dir.join(name))
            .map_err(|e| format!("{name} hook did not run: {e}"))?;
        let st: Value =
            serde_json::from_str(&body).map_err(|e| format!("{name} state: {e}: {body}"))?;
        if st["id"] != id || st["status"] != status || st["pid"].as_i64().unwrap_or(0) <= 0 {
            return Err(format!("{name} hook got state {body}"));
        }
    }
    env.nothing_left(id)
}

fn check_no_pivot(env: &Env) -> Result<(), String> {
    let id = "nopivot";
    env.config(&with_cgroup(base_config(&["sh", "-c", "ls /"]), id));
    let o = env.oci(&["run", "--no-pivot", id]);
    let out = text(&o);
    if !o.status.success() || !out.contains("bin\n") || out.contains("usr\n") {
        return Err(format!("--no-pivot: {out}"));
    }
    env.nothing_left(id)
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        if std::env::var("PODVISOR_SKIP_PRIVILEGED").as_deref() == Ok("1") {
            println!("skipping runtime smoke test: not root and PODVISOR_SKIP_PRIVILEGED=1");
            println!("0 passed, 0 failed");
            return;
        }
        eprintln!(
            "runtime smoke test needs root (set PODVISOR_SKIP_PRIVILEGED=1 to skip explicitly)"
        );
        println!("0 passed, 1 failed");
        std::process::exit(1);
    }
    let env = match Env::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot build the busybox rootfs: {e}");
            println!("0 passed, 1 failed");
            std::process::exit(1);
        }
    };
    let checks: [(&str, Check); 7] = [
        (
            "namespaces_caps_seccomp_rlimits_cgroup_seen_from_inside",
            check_inside,
        ),
        (
            "run_exits_with_the_workload_status_and_quiet_stderr",
            check_exit_code,
        ),
        (
            "create_start_exec_kill_delete_leave_nothing",
            check_lifecycle,
        ),
        (
            "failed_setup_reports_step_and_errno_and_cleans_up",
            check_failure_cleans_up,
        ),
        ("user_namespace_maps_ids", check_user_namespace),
        (
            "pause_resume_stats_and_hooks_with_state",
            check_pause_resume_and_hooks,
        ),
        ("no_pivot_moves_the_rootfs_over_slash", check_no_pivot),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in checks {
        match check(&env) {
            Ok(()) => {
                println!("ok   {name}");
                passed += 1;
            }
            Err(e) => {
                println!("FAIL {name}: {e}");
                failed += 1;
            }
        }
    }
    let _ = std::fs::remove_dir(Path::new(&cgroup_mount()).join("podvisor-smoke"));
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
