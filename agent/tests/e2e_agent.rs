//! `podvisor agent` end to end, as root: real manifests in a temporary directory, the real
//! binary (agent, shims, containers from a busybox image imported into a temporary store),
//! observed only through the CLI (`ps`, `inspect -o json`, `logs`) and the host (processes,
//! mounts, cgroups, directories).
//!
//! harness = false: cases run in order, each prints PASS/FAIL, then `N passed, N failed`.
//! Needs root; `PODVISOR_SKIP_PRIVILEGED=1` skips with a printed reason.
//! `E2E_ONLY=name` runs the cases whose name contains `name`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "e2e_cases/exec.rs"]
mod e2e_exec;
#[path = "fake_api/mod.rs"]
mod fake_api;
#[path = "e2e/kill9_twenty_pods.rs"]
mod kill9_twenty_pods;

const BIN: &str = env!("CARGO_BIN_EXE_podvisor");
const IMAGE: &str = "busybox:podvisor-test";
const NODE: &str = "e2e";

type Outcome = Result<(), String>;

/// One named case.
type Case = (&'static str, fn(&Path) -> Outcome);

/// A temporary agent world: manifests, store, state and logs under one directory.
struct World {
    dir: tempfile::TempDir,
    agent: Option<Child>,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl World {
    fn new(image_tar: &Path, extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("podvisor-e2e.")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
        let out = Command::new(BIN)
            .args(["images", "--root"])
            .arg(dir.path().join("root"))
            .arg("import")
            .arg(image_tar)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir,
            agent: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn start_agent(&mut self) {
        self.start_agent_with(&["--cgroup-limits", "best-effort"]);
    }

    fn start_agent_with(&mut self, limits: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("agent.log"))
            .unwrap();
        let child = Command::new(BIN)
            .arg("--state")
            .arg(self.path("state"))
            .arg("agent")
            .arg("--manifests")
            .arg(self.path("manifests"))
            .args(["--node-name", NODE])
            .args(limits)
            .arg("--root")
            .arg(self.path("root"))
            .arg("--log-dir")
            .arg(self.path("logs"))
            .args([
                "--cgroup-parent",
                &format!("/podvisor-e2e-{}", std::process::id()),
            ])
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agent = Some(child);
    }

    /// SIGTERM and wait (the agent runs with --stop-pods-on-exit in these tests).
    fn stop_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let pid = rustix::process::Pid::from_child(&child);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn kill9_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn write_manifest(&self, name: &str, text: &str) {
        let dir = self.path("manifests");
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }

    fn remove_manifest(&self, name: &str) {
        std::fs::remove_file(self.path("manifests").join(name)).unwrap();
    }

    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(BIN)
            .arg("--state")
            .arg(self.path("state"))
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The pod as `podvisor inspect -o json` shows it, if the agent knows it.
    fn pod(&self, name: &str) -> Option<Value> {
        let text = self.cli(&["inspect", name, "-o", "json"]).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn pods(&self) -> Vec<Value> {
        self.cli(&["ps", "-o", "json"])
            .ok()
            .and_then(|t| serde_json::from_str::<Vec<Value>>(&t).ok())
            .unwrap_or_default()
    }

    fn agent_log(&self) -> String {
        std::fs::read_to_string(self.path("agent.log")).unwrap_or_default()
    }
}

/// The teardown guard of every case, run when the case returns, fails or panics (the
/// runner catches the unwind): stops the agent, kills whatever pods are left (their
/// containers and shims, all below the run's `pods` cgroup), then detaches every mount
/// left under the temporary root, so the directory can go and a failing run does not
/// poison the machine with overlay mounts.
impl Drop for World {
    fn drop(&mut self) {
        self.stop_agent();
        if std::env::var_os("E2E_VERBOSE").is_some() {
            eprintln!("--- agent log ---\n{}", self.agent_log());
        }
        kill_leftover_pods();
        for mount in unmount_under(self.dir.path()) {
            eprintln!("e2e teardown: {mount}");
        }
    }
}

/// Kills every process below the run's `pods` cgroup (`cgroup.kill`) and waits until it
/// is empty (bounded).
fn kill_leftover_pods() {
    let Ok(root) = podvisor_runtime::cgroup::mount_point() else {
        return;
    };
    let pods = root.join(format!("podvisor-e2e-{}/pods", std::process::id()));
    if std::fs::write(pods.join("cgroup.kill"), "1").is_err() {
        return; // no pods cgroup: nothing ran
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let events = std::fs::read_to_string(pods.join("cgroup.events")).unwrap_or_default();
        if !events.lines().any(|l| l == "populated 1") {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The mount points at or below `root` in a `/proc/self/mountinfo` text, deepest first
/// (the order to unmount them in).
fn mounts_under(mountinfo: &str, root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(root))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Lazily detaches (`MNT_DETACH`) every mount at or below `root`; returns one line per
/// mount that had been left (and whether detaching it failed).
fn unmount_under(root: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounts_under(&info, root)
        .into_iter()
        .map(
            |m| match rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH) {
                Ok(()) => format!("detached {} left by the case", m.display()),
                Err(e) => format!("could not detach {}: {e}", m.display()),
            },
        )
        .collect()
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {secs}s waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Outcome {
    if cond { Ok(()) } else { Err(msg()) }
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    pod["status"][list]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("")
}

fn uid(pod: &Value) -> String {
    pod["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

fn pod_yaml(name: &str, extra_spec: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 3\n{extra_spec}  containers:\n{containers}"
    )
}

fn app(name: &str, script: &str) -> String {
    format!(
        "  - name: {name}\n    image: {IMAGE}\n    imagePullPolicy: Never\n    command: [\"/bin/sh\", \"-c\", {}]\n",
        serde_json::to_string(script).unwrap()
    )
}

const STEADY: &str = "trap 'exit 0' TERM; echo started; while true; do sleep 0.2; done";

/// The pod-spec lines of a `marks` hostPath volume on `dir`, where a case's workloads leave
/// marks (times, markers) the test reads from the host.
fn marks_volume(dir: &Path) -> String {
    format!(
        "  volumes:\n  - name: marks\n    hostPath: {{path: {}, type: Directory}}\n",
        dir.display()
    )
}

/// Processes whose command line contains `needle`.
/// The processes whose command line contains `needle`, without the ones whose parent
/// matches too: a shell's child between `fork` and `exec` (`sleep` in a loop) still shows
/// the shell's command line for a moment, and is not another container process.
fn processes_with(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd)
                .replace('\0', " ")
                .contains(needle)
            {
                found.push((pid, parent_pid(pid)));
            }
        }
    }
    let matching: Vec<i32> = found.iter().map(|(pid, _)| *pid).collect();
    found
        .into_iter()
        .filter(|(_, ppid)| !ppid.is_some_and(|p| matching.contains(&p)))
        .map(|(pid, _)| pid)
        .collect()
}

/// The parent pid from `/proc/<pid>/stat` (the field after the command's closing paren).
fn parent_pid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

// ---- cases ----

fn manifest_dropped_runs_and_ps_says_running(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    w.start_agent();
    let t0 = Instant::now();
    w.write_manifest("web.yaml", &pod_yaml("web", "", &app("main", STEADY)));
    let pod = wait_for("web-e2e Running", 30, || {
        w.pod("web-e2e").filter(|p| {
            phase(p) == "Running"
                && container(p, "containerStatuses", "main").is_some_and(|c| c["ready"] == true)
        })
    })?;
    println!("    manifest written → Running in {:?}", t0.elapsed());
    let ps = w.cli(&["ps"])?;
    ensure(
        ps.lines()
            .any(|l| l.starts_with("web-e2e") && l.contains("Running") && l.contains("1/1")),
        || format!("ps does not show web-e2e 1/1 Running:\n{ps}"),
    )?;
    let logs = wait_for("log line", 10, || {
        w.cli(&["logs", "web-e2e"])
            .ok()
            .filter(|l| l.contains("started"))
    })?;
    ensure(logs.trim() == "started", || format!("logs: {logs:?}"))?;
    ensure(pod["status"]["qosClass"] == "BestEffort", || {
        format!("qosClass {}", pod["status"]["qosClass"])
    })?;
    // image: as written; imageID: the repo digest, as containerd's CRI plugin reports it.
    let c = container(&pod, "containerStatuses", "main").unwrap();
    let image_id = c["imageID"].as_str().unwrap_or_default();
    let digest = image_id.split_once("@sha256:").map_or("", |(_, d)| d);
    ensure(
        c["image"] == IMAGE
            && image_id.starts_with("docker.io/library/busybox@sha256:")
            && digest.len() == 64
            && c["containerID"]
                .as_str()
                .is_some_and(|id| id.starts_with("podvisor://")),
        || {
            format!(
                "image {}, imageID {}, containerID {}",
                c["image"], c["imageID"], c["containerID"]
            )
        },
    )
}

fn crashing_container_restarts_with_backoff(img: &Path) -> Outcome {
    let mut w = World::new(
        img,
        &[
            "--stop-pods-on-exit",
            "--backoff-initial",
            "300ms",
            "--backoff-max",
            "1200ms",
        ],
    );
    let marks = w.path("marks");
    std::fs::create_dir_all(&marks).unwrap();
    w.start_agent();
    // Each run appends the host's uptime (one clock for every run) and exits 3.
    let spec = marks_volume(&marks);
    let c = format!(
        "{}    volumeMounts:\n    - {{name: marks, mountPath: /marks}}\n",
        app(
            "c",
            "echo crashing; cut -d' ' -f1 /proc/uptime >> /marks/starts; exit 3"
        )
    );
    w.write_manifest("crash.yaml", &pod_yaml("crash", &spec, &c));
    let mut saw_backoff = false;
    let pod = wait_for("6 restarts", 40, || {
        let p = w.pod("crash-e2e")?;
        let c = container(&p, "containerStatuses", "c")?.clone();
        saw_backoff |= c["state"]["waiting"]["reason"] == "CrashLoopBackOff";
        (c["restartCount"].as_u64()? >= 6 && saw_backoff).then_some(p)
    })?;
    let c = container(&pod, "containerStatuses", "c").unwrap();
    let last = &c["lastState"]["terminated"];
    ensure(last["exitCode"] == 3 && last["reason"] == "Error", || {
        format!("lastState {last}")
    })?;
    let starts: Vec<f64> = std::fs::read_to_string(marks.join("starts"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let gaps: Vec<f64> = starts.windows(2).map(|p| p[1] - p[0]).collect();
    println!("    gaps between runs (s): {gaps:.2?}");
    ensure(gaps.len() >= 6, || {
        format!("only {} runs recorded", starts.len())
    })?;
    // 300 ms doubling to the 1.2 s cap: the delays grow, reach the cap, and stay near it.
    let max = gaps.iter().cloned().fold(0.0, f64::max);
    ensure(gaps[1] < gaps[4], || {
        format!("the delay does not grow: {gaps:.2?}")
    })?;
    ensure((1.15..2.5).contains(&max), || {
        format!("the longest delay {max:.2}s is not the 1.2s cap: {gaps:.2?}")
    })?;
    let events = w.cli(&["events"])?;
    ensure(events.contains("BackOff"), || {
        format!("no BackOff event:\n{events}")
    })
}

fn restart_policies_on_failure_and_never(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit", "--backoff-initial", "300ms"]);
    w.start_agent();
    let on_failure = "  restartPolicy: OnFailure\n";
    let never = "  restartPolicy: Never\n";
    w.write_manifest("ok.yaml", &pod_yaml("okf", on_failure, &app("c", "exit 0")));
    w.write_manifest(
        "bad.yaml",
        &pod_yaml("badf", on_failure, &app("c", "exit 1")),
    );
    w.write_manifest("nev.yaml", &pod_yaml("never", never, &app("c", "exit 1")));
    let ok = wait_for("OnFailure exit 0 → Succeeded", 30, || {
        w.pod("okf-e2e").filter(|p| phase(p) == "Succeeded")
    })?;
    let never = wait_for("Never exit 1 → Failed", 30, || {
        w.pod("never-e2e").filter(|p| phase(p) == "Failed")
    })?;
    let bad = wait_for("OnFailure exit 1 restarted twice", 30, || {
        w.pod("badf-e2e").filter(|p| {
            container(p, "containerStatuses", "c")
                .and_then(|c| c["restartCount"].as_u64())
                .is_some_and(|n| n >= 2)
        })
    })?;
    // A finished container is not started again: look once more after a while.
    std::thread::sleep(Duration::from_secs(2));
    for (name, p) in [("okf-e2e", &ok), ("never-e2e", &never)] {
        let now = w.pod(name).ok_or(format!("{name} vanished"))?;
        let count = container(&now, "containerStatuses", "c").map(|c| c["restartCount"].clone());
        ensure(count == Some(Value::from(0)), || {
            format!("{name} was restarted: {count:?}; status {}", p["status"])
        })?;
    }
    let term = &container(&never, "containerStatuses", "c").unwrap()["state"]["terminated"];
    ensure(term["exitCode"] == 1, || {
        format!("never-e2e terminated {term}")
    })?;
    ensure(phase(&bad) == "Running" || phase(&bad) == "Pending", || {
        format!("OnFailure crashing pod phase {}", phase(&bad))
    })
}

fn init_containers_run_in_order(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    w.start_agent();
    let spec = "  volumes:\n  - name: work\n    emptyDir: {}\n";
    let mount = "    volumeMounts:\n    - {name: work, mountPath: /work}\n";
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ordered\nspec:\n  terminationGracePeriodSeconds: 3\n{spec}  initContainers:\n{}{mount}{}{mount}  containers:\n{}{mount}",
        app("first", "sleep 0.5; echo first >> /work/order"),
        app(
            "second",
            "test -s /work/order && echo second >> /work/order"
        ),
        app("main", &format!("cat /work/order; {STEADY}")),
    );
    w.write_manifest("ordered.yaml", &text);
    let pod = wait_for("ordered-e2e Running", 30, || {
        w.pod("ordered-e2e").filter(|p| phase(p) == "Running")
    })?;
    for name in ["first", "second"] {
        let c = container(&pod, "initContainerStatuses", name)
            .ok_or(format!("no status for init container {name}"))?;
        let t = &c["state"]["terminated"];
        ensure(t["reason"] == "Completed" && c["restartCount"] == 0, || {
            format!("init {name}: {c}")
        })?;
    }
    let logs = wait_for("main's log", 10, || {
        w.cli(&["logs", "ordered-e2e", "-c", "main"])
            .ok()
            .filter(|l| l.contains("started"))
    })?;
    ensure(logs.starts_with("first\nsecond\n"), || {
        format!("init containers did not run in order; main saw {logs:?}")
    })
}

fn edit_replaces_pod_after_old_got_sigterm(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    let marks = w.path("marks");
    std::fs::create_dir_all(&marks).unwrap();
    w.start_agent();
    let manifest = |version: &str| {
        let spec = marks_volume(&marks);
        let script = format!(
            "trap 'echo {version} got TERM >> /marks/log; exit 0' TERM; echo {version} up >> /marks/log; while true; do sleep 0.2; done"
        );
        pod_yaml(
            "edit",
            &spec,
            &format!(
                "{}    volumeMounts:\n    - {{name: marks, mountPath: /marks}}\n",
                app("c", &script)
            ),
        )
    };
    w.write_manifest("edit.yaml", &manifest("v1"));
    let old = wait_for("v1 Running", 30, || {
        w.pod("edit-e2e").filter(|p| phase(p) == "Running")
    })?;
    wait_for("v1 up", 10, || {
        std::fs::read_to_string(marks.join("log"))
            .ok()
            .filter(|t| t.contains("v1 up"))
    })?;
    w.write_manifest("edit.yaml", &manifest("v2"));
    let new = wait_for("v2 Running with a new UID", 30, || {
        w.pod("edit-e2e")
            .filter(|p| phase(p) == "Running" && uid(p) != uid(&old))
    })?;
    let log = wait_for("v2 up", 10, || {
        std::fs::read_to_string(marks.join("log"))
            .ok()
            .filter(|t| t.contains("v2 up"))
    })?;
    ensure(log == "v1 up\nv1 got TERM\nv2 up\n", || {
        format!("expected v1 up, v1 got TERM, then v2 up; got {log:?}")
    })?;
    let pods = w.pods();
    ensure(pods.len() == 1, || {
        format!("{} pods listed after the edit", pods.len())
    })?;
    ensure(!w.path("state/pods").join(uid(&old)).exists(), || {
        "the old pod's state directory is left".into()
    })?;
    println!("    old uid {} → new uid {}", uid(&old), uid(&new));
    Ok(())
}

fn delete_leaves_nothing(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    w.start_agent();
    let marker = format!("e2e-delete-marker-{}", std::process::id());
    let script = format!("trap 'exit 0' TERM; echo {marker}; while true; do sleep 0.2; done");
    w.write_manifest("gone.yaml", &pod_yaml("gone", "", &app("c", &script)));
    let pod = wait_for("gone-e2e Running", 30, || {
        w.pod("gone-e2e").filter(|p| phase(p) == "Running")
    })?;
    let id = uid(&pod);
    let before = processes_with(&marker);
    ensure(!before.is_empty(), || {
        "the container process is not visible".into()
    })?;
    ensure(!processes_with(&format!("--uid {id}")).is_empty(), || {
        "no shim process".into()
    })?;
    w.remove_manifest("gone.yaml");
    wait_for("pod gone from ps", 30, || w.pods().is_empty().then_some(()))?;
    wait_for("leftovers removed", 10, || {
        (!w.path("root/pods").join(&id).exists() && !w.path("state/pods").join(&id).exists())
            .then_some(())
    })?;
    let mut left = Vec::new();
    if !processes_with(&marker).is_empty() {
        left.push(format!("container processes {:?}", processes_with(&marker)));
    }
    if !processes_with(&format!("--uid {id}")).is_empty() {
        left.push("shim process".into());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = w.dir.path().to_string_lossy().into_owned();
    let mounts: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&root)).collect();
    if !mounts.is_empty() {
        left.push(format!("mounts {mounts:?}"));
    }
    let containers: Vec<_> = std::fs::read_dir(w.path("root/containers"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    if !containers.is_empty() {
        left.push(format!("root filesystems {containers:?}"));
    }
    let cgroup_root = podvisor_runtime::cgroup::mount_point().unwrap();
    let parent = cgroup_root.join(format!("podvisor-e2e-{}", std::process::id()));
    let found = Command::new("find")
        .arg(&parent)
        .args(["-type", "d", "-name", &format!("pod{id}")])
        .output()
        .unwrap();
    if !found.stdout.is_empty() {
        left.push(format!(
            "cgroups {}",
            String::from_utf8_lossy(&found.stdout)
        ));
    }
    let runtime: Vec<_> = std::fs::read_dir(w.path("state/runtime"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    if !runtime.is_empty() {
        left.push(format!("runtime state {runtime:?}"));
    }
    ensure(left.is_empty(), || format!("left behind: {left:?}"))
}

/// The teardown finds the mounts below a case's root, deepest first, and nothing else.
fn teardown_finds_mounts_below_the_root_deepest_first(_img: &Path) -> Outcome {
    let info = "\
36 25 0:32 / /tmp/podvisor-e2e.x/root/containers/a/rootfs rw - overlay overlay rw
37 36 0:33 / /tmp/podvisor-e2e.x/root/containers/a/rootfs/proc rw - proc proc rw
38 25 0:34 / /tmp/podvisor-e2e.xy/root rw - tmpfs tmpfs rw
39 25 0:35 / /tmp/podvisor-e2e.x/with\\040space rw - tmpfs tmpfs rw
40 25 0:36 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw";
    let got = mounts_under(info, Path::new("/tmp/podvisor-e2e.x"));
    let want: Vec<PathBuf> = [
        "/tmp/podvisor-e2e.x/root/containers/a/rootfs/proc",
        "/tmp/podvisor-e2e.x/root/containers/a/rootfs",
        "/tmp/podvisor-e2e.x/with space",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    ensure(got == want, || format!("{got:?}"))
}

/// A case that fails (here: panics) with its agent killed and its pod still running
/// (an overlay root filesystem mounted, shim and container alive) and a mount of its own
/// still leaves nothing: the guard kills the pod, detaches the mounts, removes the root.
fn failed_case_leaves_no_mount_behind(img: &Path) -> Outcome {
    let marker = format!("e2e-teardown-marker-{}", std::process::id());
    let dir = std::sync::Mutex::new(PathBuf::new());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // the panic below is the point: keep it quiet
    let result = std::panic::catch_unwind(|| {
        let mut w = World::new(img, &[]);
        w.start_agent();
        let script = format!("echo {marker}; while true; do sleep 0.2; done");
        w.write_manifest("left.yaml", &pod_yaml("left", "", &app("c", &script)));
        wait_for("left-e2e Running", 30, || {
            w.pod("left-e2e").filter(|p| phase(p) == "Running")
        })
        .unwrap();
        w.kill9_agent();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts_under(&info, w.path("root").as_path()).is_empty(),
            "the pod's root filesystem is mounted"
        );
        let target = w.path("root/containers/x/rootfs");
        std::fs::create_dir_all(&target).unwrap();
        rustix::mount::mount(
            "tmpfs",
            &target,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .unwrap();
        *dir.lock().unwrap() = w.path("");
        panic!("the case fails with its mount in place");
    });
    std::panic::set_hook(hook);
    ensure(result.is_err(), || "the case did not fail".into())?;
    let dir = dir.into_inner().unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    ensure(mounts_under(&info, &dir).is_empty(), || {
        format!("mounts left under {}", dir.display())
    })?;
    ensure(!dir.exists(), || {
        format!("{} was not removed", dir.display())
    })?;
    ensure(processes_with(&marker).is_empty(), || {
        "the pod's container outlived the case".into()
    })
}

fn agent_kill9_then_restart_readopts_without_restarts(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    w.start_agent();
    let marker = format!("e2e-adopt-marker-{}", std::process::id());
    let script = format!("trap 'exit 0' TERM; echo {marker}; while true; do sleep 0.2; done");
    w.write_manifest("keep.yaml", &pod_yaml("keep", "", &app("c", &script)));
    let pod = wait_for("keep-e2e Running", 30, || {
        w.pod("keep-e2e").filter(|p| phase(p) == "Running")
    })?;
    let id_before = container(&pod, "containerStatuses", "c").unwrap()["containerID"].clone();
    let pids_before = processes_with(&marker);
    w.kill9_agent();
    std::thread::sleep(Duration::from_millis(500));
    ensure(processes_with(&marker) == pids_before, || {
        "the container did not survive the agent's SIGKILL".into()
    })?;
    let t0 = Instant::now();
    w.start_agent();
    let pod = wait_for("keep-e2e re-adopted Running", 30, || {
        w.pod("keep-e2e").filter(|p| phase(p) == "Running")
    })?;
    let adopted = t0.elapsed();
    println!(
        "    re-adoption time (agent exec → pod Running in the API): {} ms",
        adopted.as_millis()
    );
    std::thread::sleep(Duration::from_secs(1));
    let pod = w.pod("keep-e2e").unwrap_or(pod);
    let c = container(&pod, "containerStatuses", "c").unwrap();
    ensure(
        c["restartCount"] == 0 && c["containerID"] == id_before,
        || format!("container restarted across the agent restart: before {id_before}, now {c}"),
    )?;
    ensure(processes_with(&marker) == pids_before, || {
        format!(
            "container processes changed: {pids_before:?} → {:?}",
            processes_with(&marker)
        )
    })
}

/// The agent in a cgroup of its own, as systemd runs a service; stopping that cgroup
/// (`cgroup.kill`, what `systemctl stop` does to a unit) kills the agent only: each shim
/// lives in a leaf of its pod's cgroup, so shims and containers run on, the next agent
/// re-adopts them, and removing the pod removes the pod cgroup with the shim's leaf.
fn agent_cgroup_killed_pods_and_shims_survive(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    let root = podvisor_runtime::cgroup::mount_point().unwrap();
    let unit = root.join(format!("podvisor-e2e-unit-{}", std::process::id()));
    std::fs::create_dir_all(&unit).map_err(|e| format!("create {}: {e}", unit.display()))?;
    let enter_unit = |w: &World| {
        let pid = w.agent.as_ref().unwrap().id();
        std::fs::write(unit.join("cgroup.procs"), pid.to_string())
            .map_err(|e| format!("move the agent into {}: {e}", unit.display()))
    };
    w.start_agent();
    enter_unit(&w)?;
    let marker = format!("e2e-unit-marker-{}", std::process::id());
    let script = format!("trap 'exit 0' TERM; echo {marker}; while true; do sleep 0.2; done");
    w.write_manifest("unit.yaml", &pod_yaml("unit", "", &app("c", &script)));
    let pod = wait_for("unit-e2e Running", 30, || {
        w.pod("unit-e2e").filter(|p| phase(p) == "Running")
    })?;
    let id = uid(&pod);
    let pod_cgroup = format!(
        "/podvisor-e2e-{}/pods/besteffort/pod{id}",
        std::process::id()
    );
    let shims = processes_with(&format!("shim --uid {id}"));
    let [shim] = shims[..] else {
        return Err(format!("expected one shim for {id}, found {shims:?}"));
    };
    let shim_cgroup = std::fs::read_to_string(format!("/proc/{shim}/cgroup")).unwrap_or_default();
    ensure(
        shim_cgroup
            .lines()
            .any(|l| l == format!("0::{pod_cgroup}/podvisor_shim")),
        || format!("the shim is not in its pod's leaf {pod_cgroup}/podvisor_shim: {shim_cgroup}"),
    )?;
    let workload = processes_with(&marker);
    // Stop the "unit": everything in the agent's cgroup is killed at once.
    std::fs::write(unit.join("cgroup.kill"), "1").map_err(|e| format!("cgroup.kill: {e}"))?;
    let status = w.agent.take().unwrap().wait().unwrap();
    ensure(!status.success(), || format!("agent exit {status}"))?;
    std::thread::sleep(Duration::from_millis(500));
    ensure(
        processes_with(&marker) == workload
            && rustix::process::test_kill_process(rustix::process::Pid::from_raw(shim).unwrap())
                .is_ok(),
        || "the shim or the container died with the agent's cgroup".into(),
    )?;
    // A shim an older agent left in its own cgroup is moved out on re-adoption.
    std::fs::write(unit.join("cgroup.procs"), shim.to_string())
        .map_err(|e| format!("move the shim back into the unit: {e}"))?;
    w.start_agent();
    enter_unit(&w)?;
    let pod = wait_for("unit-e2e re-adopted Running", 30, || {
        w.pod("unit-e2e").filter(|p| phase(p) == "Running")
    })?;
    let shim_cgroup = std::fs::read_to_string(format!("/proc/{shim}/cgroup")).unwrap_or_default();
    ensure(
        shim_cgroup
            .lines()
            .any(|l| l == format!("0::{pod_cgroup}/podvisor_shim")),
        || format!("the re-adopted shim was not moved to its pod's leaf: {shim_cgroup}"),
    )?;
    let c = container(&pod, "containerStatuses", "c").unwrap();
    ensure(c["restartCount"] == 0, || format!("restarted: {c}"))?;
    w.remove_manifest("unit.yaml");
    wait_for("unit-e2e gone", 30, || w.pods().is_empty().then_some(()))?;
    let dir = root.join(pod_cgroup.trim_start_matches('/'));
    let gone = wait_for("the pod cgroup removed", 10, || {
        (!dir.exists()).then_some(())
    });
    w.stop_agent();
    let _ = std::fs::remove_dir(&unit);
    gone.map_err(|e| format!("{e}: {} left", dir.display()))?;
    ensure(processes_with(&marker).is_empty(), || {
        "the workload survived its pod".into()
    })
}

fn bad_image_waits_with_reason_and_other_pods_run(img: &Path) -> Outcome {
    let mut w = World::new(
        img,
        &[
            "--stop-pods-on-exit",
            "--backoff-initial",
            "300ms",
            "--backoff-max",
            "1200ms",
        ],
    );
    w.start_agent();
    let missing = "  - name: c\n    image: example.invalid/nothing:1\n    imagePullPolicy: Never\n    command: [\"true\"]\n";
    w.write_manifest("bad.yaml", &pod_yaml("noimage", "", missing));
    w.write_manifest("good.yaml", &pod_yaml("good", "", &app("c", STEADY)));
    wait_for("good-e2e Running next to the bad pod", 30, || {
        w.pod("good-e2e").filter(|p| phase(p) == "Running")
    })?;
    let bad = wait_for("noimage-e2e waiting with ErrImageNeverPull", 30, || {
        w.pod("noimage-e2e").filter(|p| {
            container(p, "containerStatuses", "c")
                .is_some_and(|c| c["state"]["waiting"]["reason"] == "ErrImageNeverPull")
        })
    })?;
    let c = container(&bad, "containerStatuses", "c").unwrap();
    let message = c["state"]["waiting"]["message"].as_str().unwrap_or("");
    ensure(message.contains("example.invalid/nothing:1"), || {
        format!("the waiting message does not name the image: {message:?}")
    })?;
    ensure(phase(&bad) == "Pending", || {
        format!("bad pod phase {}", phase(&bad))
    })?;
    pull_failure_backs_off_with_its_own_reasons(&w)
}

/// A pull from a registry that refuses connections (a loopback port nothing listens on):
/// `ErrImagePull` right after each failure, `ImagePullBackOff` while waiting (300 ms
/// doubling to the 1.2 s cap here), no container restart counted, the other pods run on.
fn pull_failure_backs_off_with_its_own_reasons(w: &World) -> Outcome {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // bound then dropped: nothing listens there now
    let image = format!("127.0.0.1:{port}/nothing:1");
    let c = format!(
        "  - name: c\n    image: {image}\n    imagePullPolicy: Always\n    command: [\"true\"]\n"
    );
    w.write_manifest("pull.yaml", &pod_yaml("pullfail", "", &c));
    let mut seen = Vec::<String>::new();
    let t0 = Instant::now();
    let pod = wait_for("ErrImagePull then ImagePullBackOff", 40, || {
        let p = w.pod("pullfail-e2e")?;
        let reason = container(&p, "containerStatuses", "c")?["state"]["waiting"]["reason"]
            .as_str()?
            .to_string();
        if seen.last() != Some(&reason) {
            seen.push(reason);
        }
        (seen.iter().any(|r| r == "ErrImagePull")
            && seen.iter().any(|r| r == "ImagePullBackOff")
            && t0.elapsed() > Duration::from_secs(8))
        .then_some(p)
    })
    .map_err(|e| format!("{e}; seen {seen:?}"))?;
    println!("    pull waiting reasons seen in order: {seen:?}");
    let c = container(&pod, "containerStatuses", "c").unwrap();
    ensure(c["restartCount"] == 0, || {
        format!("a pull failure counted as a restart: {c}")
    })?;
    let waiting = &c["state"]["waiting"];
    ensure(
        waiting["message"]
            .as_str()
            .is_some_and(|m| m.contains(&image)),
        || format!("the waiting message does not name the image: {waiting}"),
    )?;
    let events: Vec<Value> =
        serde_json::from_str(&w.cli(&["events", "--pod", "pullfail-e2e", "-o", "json"])?)
            .map_err(|e| e.to_string())?;
    let tries = events
        .iter()
        .filter(|e| e["reason"] == "Failed")
        .map(|e| e["count"].as_u64().unwrap_or(1))
        .sum::<u64>();
    println!(
        "    pull attempts in {:.1}s: {tries}",
        t0.elapsed().as_secs_f64()
    );
    ensure(tries >= 2, || {
        format!("the pull was not retried: {events:?}")
    })?;
    ensure(events.iter().any(|e| e["reason"] == "BackOff"), || {
        format!("no BackOff event: {events:?}")
    })?;
    let good = w.pod("good-e2e").ok_or("good-e2e vanished")?;
    ensure(
        phase(&good) == "Running"
            && container(&good, "containerStatuses", "c").is_some_and(|c| c["restartCount"] == 0),
        || format!("the good pod was disturbed: {}", good["status"]),
    )
}

fn manifest_removed_while_agent_down_is_stopped_on_start(img: &Path) -> Outcome {
    let mut w = World::new(img, &[]);
    w.start_agent();
    let marker = format!("e2e-orphan-marker-{}", std::process::id());
    let script = format!("trap 'exit 0' TERM; echo {marker}; while true; do sleep 0.2; done");
    w.write_manifest("orphan.yaml", &pod_yaml("orphan", "", &app("c", &script)));
    let pod = wait_for("orphan-e2e Running", 30, || {
        w.pod("orphan-e2e").filter(|p| phase(p) == "Running")
    })?;
    let id = uid(&pod);
    // No --stop-pods-on-exit: SIGTERM leaves the pod running.
    w.stop_agent();
    ensure(!processes_with(&marker).is_empty(), || {
        "the pod did not survive the agent's SIGTERM".into()
    })?;
    w.remove_manifest("orphan.yaml");
    w.start_agent();
    wait_for("the orphan's processes gone", 30, || {
        processes_with(&marker).is_empty().then_some(())
    })?;
    wait_for("the orphan's directories removed", 10, || {
        (!w.path("state/pods").join(&id).exists() && !w.path("root/pods").join(&id).exists())
            .then_some(())
    })?;
    ensure(w.pods().is_empty(), || {
        format!("pods listed: {:?}", w.pods())
    })
}

fn kubeconfig_mirrors_the_pod_with_its_status(img: &Path) -> Outcome {
    let pki = fake_api::certs::TestPki::new();
    let api = fake_api::FakeApi::start(&pki);
    let (pem, der) = pki.node_client(NODE, "kubelet-client");
    api.allow_cert(der, NODE, "node");
    let kubeconfig = pki.dir.path().join("kubelet.conf");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: {}\n    certificate-authority: ca.crt\n\
             users:\n- name: system:node:{NODE}\n  user:\n    client-certificate: {c}\n    client-key: {c}\n\
             contexts:\n- name: ctx\n  context:\n    cluster: k\n    user: system:node:{NODE}\ncurrent-context: ctx\n",
            api.url(),
            c = pem.display()
        ),
    )
    .unwrap();
    let kc = kubeconfig.to_string_lossy().into_owned();
    let mut w = World::new(
        img,
        &[
            "--stop-pods-on-exit",
            "--kubeconfig",
            &kc,
            "--node-ip",
            "127.0.0.1",
        ],
    );
    w.start_agent();
    w.write_manifest(
        "mirrored.yaml",
        &pod_yaml("mirrored", "", &app("c", STEADY)),
    );
    wait_for("mirrored-e2e Running locally", 30, || {
        w.pod("mirrored-e2e").filter(|p| phase(p) == "Running")
    })?;
    let key = ("default".to_string(), "mirrored-e2e".to_string());
    let mirror = wait_for(
        "a mirror pod with phase Running in the API server",
        30,
        || {
            let store = api.store.lock().unwrap();
            store
                .pods
                .get(&key)
                .filter(|p| p["status"]["phase"] == "Running")
                .cloned()
        },
    )?;
    let annotations = &mirror["metadata"]["annotations"];
    ensure(
        annotations["kubernetes.io/config.mirror"].is_string(),
        || format!("not a mirror pod: {annotations}"),
    )?;
    let cs = &mirror["status"]["containerStatuses"][0];
    ensure(
        cs["image"] == IMAGE
            && cs["imageID"]
                .as_str()
                .is_some_and(|i| i.starts_with("docker.io/library/busybox@sha256:"))
            && cs["containerID"]
                .as_str()
                .is_some_and(|i| i.starts_with("podvisor://")),
        || format!("mirror container status: {cs}"),
    )?;
    let node_registered = api.store.lock().unwrap().nodes.contains_key(NODE);
    ensure(node_registered, || "the Node was not registered".into())?;
    wait_for("a Started event for the pod in the API server", 30, || {
        let store = api.store.lock().unwrap();
        store
            .events
            .iter()
            .any(|e| e["reason"] == "Started" && e["involvedObject"]["name"] == "mirrored-e2e")
            .then_some(())
    })
    .map_err(|e| format!("{e}; events: {:?}", api.store.lock().unwrap().events))?;
    w.remove_manifest("mirrored.yaml");
    wait_for("the mirror pod deleted", 30, || {
        (!api.store.lock().unwrap().pods.contains_key(&key)).then_some(())
    })?;
    Ok(())
}

fn sd_notify_ready_after_the_first_reconcile(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    let sock_path = w.path("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    w.env.push((
        "NOTIFY_SOCKET".into(),
        sock_path.to_string_lossy().into_owned(),
    ));
    w.write_manifest("early.yaml", &pod_yaml("early", "", &app("c", STEADY)));
    let t0 = Instant::now();
    w.start_agent();
    let mut buf = [0u8; 512];
    let n = sock
        .recv(&mut buf)
        .map_err(|e| format!("no sd_notify message: {e}"))?;
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    println!("    READY after {:?}", t0.elapsed());
    ensure(msg.lines().any(|l| l == "READY=1"), || {
        format!("sd_notify sent {msg:?}")
    })?;
    // READY comes after the first reconcile (which started the manifest's pod) and
    // with the local API already serving.
    ensure(w.cli(&["ps"]).is_ok(), || {
        "the local API does not answer after READY".into()
    })?;
    let log = w.agent_log();
    ensure(
        log.lines()
            .any(|l| l.contains("first reconcile done") && l.contains("pods=1")),
        || format!("no first reconcile with the pod in the agent log:\n{log}"),
    )?;
    wait_for("early-e2e Running", 30, || {
        w.pod("early-e2e").filter(|p| phase(p) == "Running")
    })
    .map(|_| ())
}

fn probes_readiness_and_liveness_restart(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit", "--backoff-initial", "300ms"]);
    w.start_agent();
    let exec_probe = |kind: &str, cmd: &str| {
        format!(
            "    {kind}:\n      exec: {{command: [\"/bin/sh\", \"-c\", {}]}}\n      periodSeconds: 1\n      failureThreshold: 1\n",
            serde_json::to_string(cmd).unwrap()
        )
    };
    let containers = format!(
        "{}{}{}{}",
        app(
            "slow",
            "sleep 2; touch /tmp/ready; trap 'exit 0' TERM; while true; do sleep 0.2; done"
        ),
        exec_probe("readinessProbe", "test -e /tmp/ready"),
        app(
            "sick",
            "sleep 2; touch /tmp/dead; trap 'exit 0' TERM; while true; do sleep 0.2; done"
        ),
        exec_probe("livenessProbe", "test ! -e /tmp/dead"),
    );
    w.write_manifest("probed.yaml", &pod_yaml("probed", "", &containers));
    let unready = wait_for("slow running but not ready", 30, || {
        w.pod("probed-e2e").filter(|p| {
            container(p, "containerStatuses", "slow")
                .is_some_and(|c| c["state"]["running"].is_object() && c["ready"] == false)
        })
    })?;
    let ready_cond = |p: &Value| {
        p["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "ContainersReady").cloned())
    };
    println!(
        "    before readiness: ContainersReady {:?}",
        ready_cond(&unready).map(|c| c["status"].clone())
    );
    wait_for("slow ready after its readiness probe passes", 30, || {
        w.pod("probed-e2e").filter(|p| {
            container(p, "containerStatuses", "slow").is_some_and(|c| c["ready"] == true)
        })
    })?;
    let sick = wait_for("sick restarted by its liveness probe", 40, || {
        w.pod("probed-e2e").filter(|p| {
            container(p, "containerStatuses", "sick")
                .and_then(|c| c["restartCount"].as_u64())
                .is_some_and(|n| n >= 1)
        })
    })?;
    let c = container(&sick, "containerStatuses", "sick").unwrap();
    println!("    sick lastState: {}", c["lastState"]);
    let events = w.cli(&["events"])?;
    ensure(
        events.contains("Unhealthy") && events.contains("liveness probe"),
        || format!("no Unhealthy liveness event:\n{events}"),
    )?;
    let slow = container(&sick, "containerStatuses", "slow").unwrap();
    ensure(slow["restartCount"] == 0, || {
        format!("the readiness-probed container was restarted: {slow}")
    })
}

/// A pod manifest with `podvisor.io/after: <after>`.
fn pod_yaml_after(name: &str, after: &str, extra_spec: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  annotations:\n    podvisor.io/after: {}\nspec:\n  terminationGracePeriodSeconds: 3\n{extra_spec}  containers:\n{containers}",
        serde_json::to_string(after).unwrap()
    )
}

fn is_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some_and(|c| c["status"] == "True")
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

/// The waiting (reason, message) of container `c` of `pod`, if it is waiting.
fn waiting_of(pod: &Value, c: &str) -> Option<(String, String)> {
    let w = &container(pod, "containerStatuses", c)?["state"]["waiting"];
    Some((
        w["reason"].as_str()?.to_string(),
        w["message"].as_str().unwrap_or("").to_string(),
    ))
}

fn uptime_marks(path: &Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn after_starts_the_second_pod_once_the_first_is_ready(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    let marks = w.path("marks");
    std::fs::create_dir_all(&marks).unwrap();
    w.start_agent();
    let volume = marks_volume(&marks);
    let mount = "    volumeMounts:\n    - {name: marks, mountPath: /marks}\n";
    // `db` turns Ready only once its exec readiness probe finds /tmp/ready, 3 s after it
    // starts; it notes the host's uptime (one clock for both pods) when it creates it.
    let db = format!(
        "{}{mount}    readinessProbe:\n      exec: {{command: [\"test\", \"-f\", \"/tmp/ready\"]}}\n      periodSeconds: 1\n      failureThreshold: 1\n",
        app(
            "db",
            "sleep 3; cut -d' ' -f1 /proc/uptime > /marks/db-ready; touch /tmp/ready; trap 'exit 0' TERM; while true; do sleep 0.2; done"
        )
    );
    let api = format!(
        "{}{mount}",
        app(
            "api",
            &format!("cut -d' ' -f1 /proc/uptime > /marks/api-started; {STEADY}")
        )
    );
    // The dependent first, so it is seen before its dependency exists.
    w.write_manifest("api.yaml", &pod_yaml_after("api", "db", &volume, &api));
    w.write_manifest("db.yaml", &pod_yaml("db", &volume, &db));
    let (reason, message) = wait_for(
        "api-e2e WaitingForDependency while db-e2e runs unready",
        30,
        || {
            let db = w.pod("db-e2e")?;
            let running =
                container(&db, "containerStatuses", "db")?["state"]["running"].is_object();
            let api = w.pod("api-e2e")?;
            (running && !is_ready(&db)).then_some(())?;
            waiting_of(&api, "api")
        },
    )?;
    ensure(reason == "WaitingForDependency", || {
        format!("api-e2e waits with {reason:?} ({message:?})")
    })?;
    ensure(message == "waiting for pods db to be Ready", || {
        format!("the waiting message does not name db: {message:?}")
    })?;
    let ps = w.cli(&["ps"])?;
    ensure(
        ps.lines()
            .any(|l| l.starts_with("api-e2e") && l.contains("WaitingForDependency")),
        || format!("ps does not show api-e2e WaitingForDependency:\n{ps}"),
    )?;
    // Watch both until api runs: while db is not Ready, api must not have started.
    let mut db_ready_seen: Option<Instant> = None;
    let api_running = wait_for("api-e2e Running after db-e2e Ready", 40, || {
        let db = w.pod("db-e2e")?;
        let api = w.pod("api-e2e")?;
        let api_started = container(&api, "containerStatuses", "api")
            .is_some_and(|c| c["state"]["running"].is_object());
        if is_ready(&db) {
            db_ready_seen.get_or_insert_with(Instant::now);
        } else if api_started {
            return Some(Err(format!(
                "api-e2e started while db-e2e is not Ready: db {}",
                db["status"]
            )));
        }
        api_started.then_some(Ok((db, api)))
    })?;
    let (db, api) = api_running?;
    let ready_seen = db_ready_seen.ok_or("api-e2e ran before db-e2e was seen Ready")?;
    println!(
        "    api-e2e seen running {:?} after db-e2e was seen Ready",
        ready_seen.elapsed()
    );
    // The API's times have whole-second resolution: the start is not before the transition.
    let ready_at = ready_condition(&db).map(|c| c["lastTransitionTime"].clone());
    let started_at = container(&api, "containerStatuses", "api")
        .map(|c| c["state"]["running"]["startedAt"].clone());
    let parse = |v: &Option<Value>| {
        v.as_ref()
            .and_then(|t| t.as_str())
            .and_then(podvisor::supervise::clock::parse_rfc3339)
    };
    let (Some(r), Some(st)) = (parse(&ready_at), parse(&started_at)) else {
        return Err(format!(
            "times: Ready {ready_at:?}, startedAt {started_at:?}"
        ));
    };
    ensure(st >= r, || {
        format!("api-e2e started at {started_at:?} before db-e2e turned Ready at {ready_at:?}")
    })?;
    // Finer: on the host's uptime clock, api started after db created its ready file.
    let db_mark = wait_for("db's mark", 10, || {
        uptime_marks(&marks.join("db-ready")).first().copied()
    })?;
    let api_mark = wait_for("api's mark", 10, || {
        uptime_marks(&marks.join("api-started")).first().copied()
    })?;
    println!("    uptime: db ready file {db_mark:.2}, api started {api_mark:.2}");
    ensure(api_mark > db_mark, || {
        format!("api started at uptime {api_mark} before db was ready at {db_mark}")
    })?;
    let events = w.cli(&["events"])?;
    ensure(
        events.contains("WaitingForDependency") && events.contains("DependenciesReady"),
        || format!("no WaitingForDependency/DependenciesReady events:\n{events}"),
    )
}

fn after_cycle_and_unknown_name_are_errors_other_pods_run(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    w.start_agent();
    let c = app("c", STEADY);
    w.write_manifest("a.yaml", &pod_yaml_after("loopa", "loopb", "", &c));
    w.write_manifest("b.yaml", &pod_yaml_after("loopb", "loopa", "", &c));
    w.write_manifest("lost.yaml", &pod_yaml_after("lost", "nope, free", "", &c));
    w.write_manifest("free.yaml", &pod_yaml("free", "", &c));
    w.write_manifest("chained.yaml", &pod_yaml_after("chained", "free", "", &c));
    for name in ["free-e2e", "chained-e2e"] {
        wait_for(&format!("{name} Running"), 30, || {
            w.pod(name).filter(|p| phase(p) == "Running" && is_ready(p))
        })?;
    }
    let want = [
        (
            "loopa-e2e",
            "annotation podvisor.io/after forms a cycle: loopa -> loopb -> loopa",
        ),
        (
            "loopb-e2e",
            "annotation podvisor.io/after forms a cycle: loopb -> loopa -> loopb",
        ),
        (
            "lost-e2e",
            "annotation podvisor.io/after names unknown pods: nope",
        ),
    ];
    for (name, message) in want {
        let got = wait_for(&format!("{name} InvalidDependency"), 10, || {
            w.pod(name).and_then(|p| waiting_of(&p, "c"))
        })?;
        ensure(
            got == ("InvalidDependency".to_string(), message.to_string()),
            || format!("{name} waits with {got:?}, want InvalidDependency {message:?}"),
        )?;
    }
    let ps = w.cli(&["ps"])?;
    ensure(
        ps.lines()
            .filter(|l| l.contains("InvalidDependency"))
            .count()
            == 3,
        || format!("ps does not show the three pods InvalidDependency:\n{ps}"),
    )?;
    let events = w.cli(&["events"])?;
    ensure(
        events.contains("InvalidDependency") && events.contains("unknown pods: nope"),
        || format!("no InvalidDependency events:\n{events}"),
    )?;
    ensure(
        w.agent
            .as_mut()
            .is_some_and(|a| matches!(a.try_wait(), Ok(None))),
        || "the agent exited".into(),
    )?;
    // Fixing the annotation (a new pod version) lets it start.
    w.write_manifest("lost.yaml", &pod_yaml_after("lost", "free", "", &c));
    wait_for("lost-e2e Running once its annotation is fixed", 30, || {
        w.pod("lost-e2e").filter(|p| phase(p) == "Running")
    })?;
    let loop_still = w.pod("loopa-e2e").and_then(|p| waiting_of(&p, "c"));
    ensure(
        loop_still
            .as_ref()
            .is_some_and(|(r, _)| r == "InvalidDependency"),
        || format!("loopa-e2e: {loop_still:?}"),
    )
}

fn http_probes_enter_the_pod_netns_and_resume_after_agent_restart(img: &Path) -> Outcome {
    let mut w = World::new(img, &["--stop-pods-on-exit"]);
    let marks = w.path("marks");
    std::fs::create_dir_all(&marks).unwrap();
    w.start_agent();
    // A pod without hostNetwork: its probes must run in its network namespace, where
    // 127.0.0.1:8080 is busybox httpd (the container brings its own `lo` up: podvisor does
    // not yet). /healthz (readiness) goes away when the test creates marks/sick; /live
    // (liveness) stays.
    let volume = marks_volume(&marks);
    let script = "ip link set lo up; mkdir -p /www; echo ok > /www/healthz; echo ok > /www/live; \
                  httpd -p 127.0.0.1:8080 -h /www; trap 'exit 0' TERM; \
                  while true; do [ -e /marks/sick ] && rm -f /www/healthz; sleep 0.2; done";
    let probe = |kind: &str, path: &str| {
        format!(
            "    {kind}:\n      httpGet: {{path: {path}, port: 8080}}\n      periodSeconds: 1\n      failureThreshold: 2\n"
        )
    };
    let c = format!(
        "{}    securityContext: {{capabilities: {{add: [NET_ADMIN]}}}}\n    volumeMounts:\n    - {{name: marks, mountPath: /marks}}\n{}{}",
        app("web", script),
        probe("readinessProbe", "/healthz"),
        probe("livenessProbe", "/live"),
    );
    w.write_manifest("web.yaml", &pod_yaml("netweb", &volume, &c));
    let ready = |w: &World| {
        w.pod("netweb-e2e")
            .and_then(|p| container(&p, "containerStatuses", "web").cloned())
    };
    wait_for("netweb-e2e ready through its httpGet probe", 30, || {
        ready(&w).filter(|c| c["ready"] == true)
    })?;
    std::thread::sleep(Duration::from_secs(3));
    let c = ready(&w).ok_or("netweb-e2e vanished")?;
    ensure(c["ready"] == true && c["restartCount"] == 0, || {
        format!("liveness or readiness failed in the pod's netns: {c}")
    })?;
    // Agent restart: the run is re-adopted ready, and its probes run again.
    w.kill9_agent();
    w.start_agent();
    let adopted = wait_for("netweb-e2e re-adopted", 30, || {
        ready(&w).filter(|c| c["state"]["running"].is_object())
    })?;
    ensure(adopted["ready"] == true, || {
        format!("the re-adopted run is not shown ready: {adopted}")
    })?;
    std::fs::write(marks.join("sick"), "").unwrap();
    wait_for(
        "netweb-e2e unready after its endpoint goes away",
        20,
        || ready(&w).filter(|c| c["ready"] == false),
    )?;
    let c = ready(&w).ok_or("netweb-e2e vanished")?;
    ensure(c["restartCount"] == 0, || {
        format!("liveness of the re-adopted run failed: {c}")
    })
}

fn host_path_and_cgroup_problems_wait_then_retry(img: &Path) -> Outcome {
    let waiting = |w: &World, name: &str| {
        w.pod(name).and_then(|p| {
            let c = container(&p, "containerStatuses", "c")?;
            let r = c["state"]["waiting"]["reason"].as_str()?.to_string();
            let m = c["state"]["waiting"]["message"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (r != "ContainerCreating").then_some((r, m))
        })
    };
    // A missing hostPath directory: a clear reason, then the pod starts once it exists.
    let mut w = World::new(
        img,
        &[
            "--stop-pods-on-exit",
            "--backoff-initial",
            "300ms",
            "--backoff-max",
            "1s",
        ],
    );
    let data = w.path("data-not-yet");
    let spec = format!(
        "  volumes:\n  - name: data\n    hostPath: {{path: {}, type: Directory}}\n",
        data.display()
    );
    let c = format!(
        "{}    volumeMounts:\n    - {{name: data, mountPath: /data}}\n",
        app("c", STEADY)
    );
    w.write_manifest("hp.yaml", &pod_yaml("hostpath", &spec, &c));
    w.start_agent();
    let (reason, message) = wait_for("hostpath-e2e waiting with a reason", 30, || {
        waiting(&w, "hostpath-e2e")
    })?;
    println!("    hostPath: {reason}: {message}");
    ensure(
        reason == "CreateContainerConfigError" && message.contains(&data.display().to_string()),
        || format!("want CreateContainerConfigError naming the hostPath, got {reason}: {message}"),
    )?;
    std::fs::create_dir_all(&data).unwrap();
    wait_for("hostpath-e2e Running once the directory exists", 30, || {
        w.pod("hostpath-e2e").filter(|p| phase(p) == "Running")
    })?;
    w.stop_agent();
    if cgroup2_has_memory() {
        println!(
            "    (this host's cgroup2 has the memory controller: the strict-limit check is skipped)"
        );
        return Ok(());
    }
    // --cgroup-limits strict on a host whose cgroup2 lacks the memory controller.
    let mut w = World::new(img, &["--stop-pods-on-exit", "--backoff-initial", "300ms"]);
    let limited = "  - name: c\n    image: busybox:podvisor-test\n    imagePullPolicy: Never\n    command: [\"sleep\", \"1000\"]\n    resources: {limits: {memory: 32Mi}}\n";
    w.write_manifest("limited.yaml", &pod_yaml("limited", "", limited));
    w.start_agent_with(&["--cgroup-limits", "strict"]);
    let (reason, message) = wait_for("limited-e2e waiting with a reason", 30, || {
        waiting(&w, "limited-e2e")
    })?;
    println!("    strict limits: {reason}: {message}");
    ensure(
        reason == "RunContainerError" && message.contains("controller"),
        || format!("want RunContainerError naming the missing controller, got {reason}: {message}"),
    )
}

/// Removes this run's cgroup parent (`--cgroup-parent`): the agent removes each pod's
/// cgroup, not the shared `pods/<qos>` levels above them.
fn remove_cgroup_parent() {
    let Ok(root) = podvisor_runtime::cgroup::mount_point() else {
        return;
    };
    let parent = root.join(format!("podvisor-e2e-{}", std::process::id()));
    let _ = Command::new("find")
        .arg(&parent)
        .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
        .status();
}

/// Whether the cgroup2 root offers the memory controller (not on hybrid hosts).
fn cgroup2_has_memory() -> bool {
    let root = podvisor_runtime::cgroup::mount_point().unwrap();
    std::fs::read_to_string(root.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .any(|c| c == "memory")
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        if std::env::var_os("PODVISOR_SKIP_PRIVILEGED").is_some() {
            println!("SKIPPED: e2e_agent needs root (PODVISOR_SKIP_PRIVILEGED is set)");
            println!("0 passed, 0 failed");
            return;
        }
        eprintln!(
            "e2e_agent needs root (containers, mounts, cgroups); set PODVISOR_SKIP_PRIVILEGED=1 to skip"
        );
        println!("0 passed, 1 failed");
        std::process::exit(1);
    }
    let images = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-busybox-image");
    let out = Command::new(&script).arg(images.path()).output().unwrap();
    if !out.status.success() {
        eprintln!(
            "build-busybox-image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("0 passed, 1 failed");
        std::process::exit(1);
    }
    let tar = images.path().join("busybox.tar");
    let cases: &[Case] = &[
        (
            "teardown_finds_mounts_below_the_root_deepest_first",
            teardown_finds_mounts_below_the_root_deepest_first,
        ),
        (
            "failed_case_leaves_no_mount_behind",
            failed_case_leaves_no_mount_behind,
        ),
        (
            "manifest_dropped_runs_and_ps_says_running",
            manifest_dropped_runs_and_ps_says_running,
        ),
        (
            "crashing_container_restarts_with_backoff",
            crashing_container_restarts_with_backoff,
        ),
        (
            "restart_policies_on_failure_and_never",
            restart_policies_on_failure_and_never,
        ),
        ("init_containers_run_in_order", init_containers_run_in_order),
        (
            "edit_replaces_pod_after_old_got_sigterm",
            edit_replaces_pod_after_old_got_sigterm,
        ),
        ("delete_leaves_nothing", delete_leaves_nothing),
        (
            "bad_image_waits_with_reason_and_other_pods_run",
            bad_image_waits_with_reason_and_other_pods_run,
        ),
        (
            "manifest_removed_while_agent_down_is_stopped_on_start",
            manifest_removed_while_agent_down_is_stopped_on_start,
        ),
        (
            "host_path_and_cgroup_problems_wait_then_retry",
            host_path_and_cgroup_problems_wait_then_retry,
        ),
        (
            "probes_readiness_and_liveness_restart",
            probes_readiness_and_liveness_restart,
        ),
        (
            "http_probes_enter_the_pod_netns_and_resume_after_agent_restart",
            http_probes_enter_the_pod_netns_and_resume_after_agent_restart,
        ),
        (
            "after_starts_the_second_pod_once_the_first_is_ready",
            after_starts_the_second_pod_once_the_first_is_ready,
        ),
        (
            "after_cycle_and_unknown_name_are_errors_other_pods_run",
            after_cycle_and_unknown_name_are_errors_other_pods_run,
        ),
        (
            "kubeconfig_mirrors_the_pod_with_its_status",
            kubeconfig_mirrors_the_pod_with_its_status,
        ),
        (
            "sd_notify_ready_after_the_first_reconcile",
            sd_notify_ready_after_the_first_reconcile,
        ),
        (
            "agent_kill9_then_restart_readopts_without_restarts",
            agent_kill9_then_restart_readopts_without_restarts,
        ),
        ("agent_kill9_with_20_pods", kill9_twenty_pods::case),
        (
            "agent_cgroup_killed_pods_and_shims_survive",
            agent_cgroup_killed_pods_and_shims_survive,
        ),
    ];
    let only = std::env::var("E2E_ONLY").unwrap_or_default();
    let (mut passed, mut failed) = (0, 0);
    let mut failures = Vec::new();
    for (name, case) in cases.iter().chain(e2e_exec::CASES) {
        if !name.contains(&only) {
            continue;
        }
        let t = Instant::now();
        match std::panic::catch_unwind(|| case(&tar)) {
            Ok(Ok(())) => {
                passed += 1;
                println!("PASS {name} ({:.1}s)", t.elapsed().as_secs_f64());
            }
            Ok(Err(e)) => {
                failed += 1;
                println!("FAIL {name}: {e}");
                failures.push(*name);
            }
            Err(_) => {
                failed += 1;
                println!("FAIL {name}: panicked");
                failures.push(*name);
            }
        }
    }
    remove_cgroup_parent();
    if !failures.is_empty() {
        println!("failed: {}", failures.join(" "));
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
