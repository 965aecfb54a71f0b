//! A pod worker end to end (root): real shim, real busybox containers, the status store.
//! Init container first, a crashing app container restarted with (shortened) backoff,
//! statuses and events as the kubelet reports them, logs per run, and a graceful stop
//! that leaves no state, shim or container behind.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podvisor::api::store::StatusStore;
use podvisor::logs::file::RotateConfig;
use podvisor::supervise::backoff::BackoffConfig;
use podvisor::supervise::worker::{BundleError, BundleMaker, PodWorker, WorkerConfig, WorkerEnd};
use serde_json::json;

fn require_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("PODVISOR_SKIP_ROOT_TESTS").is_some() {
        eprintln!("SKIPPED: worker tests need root (PODVISOR_SKIP_ROOT_TESTS is set)");
        return false;
    }
    panic!(
        "worker tests create containers and need root; set PODVISOR_SKIP_ROOT_TESTS=1 to skip them"
    );
}

/// Bundles from a busybox rootfs: the container's `command` run by `/bin/sh -c`.
struct Busybox {
    dir: PathBuf,
    rootfs: PathBuf,
    cgroup: String,
}

impl Busybox {
    fn new(dir: &Path) -> Self {
        let rootfs = dir.join("rootfs");
        for d in ["bin", "proc", "dev", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep", "echo", "cat", "readlink"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        Self {
            dir: dir.to_path_buf(),
            rootfs,
            cgroup: format!("podvisor-worker-test-{}", std::process::id()),
        }
    }
}

impl BundleMaker for Busybox {
    fn make(
        &mut self,
        pod: &Pod,
        container: &Container,
        attempt: u32,
        namespaces: &BTreeMap<String, PathBuf>,
    ) -> Result<PathBuf, BundleError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let bundle = self
            .dir
            .join("bundles")
            .join(format!("{uid}-{}-{attempt}", container.name));
        std::fs::create_dir_all(&bundle).unwrap();
        let script = container.command.clone().unwrap_or_default().join(" ");
        let ns: Vec<serde_json::Value> = ["pid", "network", "ipc", "uts", "mount"]
            .iter()
            .map(|k| match namespaces.get(*k) {
                Some(p) => json!({"type": k, "path": p}),
                None => json!({"type": k}),
            })
            .collect();
        let caps = ["CAP_KILL"];
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/sh", "-c", script],
                        "env": ["PATH=/bin"], "cwd": "/", "noNewPrivileges": true,
                        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}},
            "root": {"path": self.rootfs, "readonly": true},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"cgroupsPath": format!("/{}/{uid}-{}-{attempt}", self.cgroup, container.name), "namespaces": ns}
        });
        std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
        Ok(bundle)
    }
}

/// On drop (also when a test fails half-way) kills the shims this test started, found by
/// their unique `--state` path, with their containers.
struct KillShims(PathBuf);

impl Drop for KillShims {
    fn drop(&mut self) {
        let needle = self.0.to_string_lossy().into_owned();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for p in procs.flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            if !String::from_utf8_lossy(&cmdline).contains(&needle) {
                continue;
            }
            let children = std::fs::read_to_string(p.path().join(format!("task/{pid}/children")))
                .unwrap_or_default();
            for child in children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                if let Some(c) = rustix::process::Pid::from_raw(child) {
                    let _ = rustix::process::kill_process(c, rustix::process::Signal::KILL);
                }
            }
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

fn container(name: &str, script: &str) -> Container {
    Container {
        name: name.into(),
        image: Some("busybox".into()),
        command: Some(vec![script.into()]),
        ..Default::default()
    }
}

fn pod(uid: &str, init: Vec<Container>, apps: Vec<Container>, grace: i64) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{uid}-node1")),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            init_containers: Some(init),
            containers: apps,
            termination_grace_period_seconds: Some(grace),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn config(dir: &Path) -> WorkerConfig {
    WorkerConfig {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_podvisor")),
        state_root: dir.join("state"),
        log_root: dir.join("logs"),
        runtime_root: dir.join("runtime"),
        backoff: BackoffConfig {
            initial: Duration::from_millis(300),
            max: Duration::from_secs(1),
            reset_after: Duration::from_secs(600),
        },
        rotate: RotateConfig::default(),
        cgroup_best_effort: true,
        cgroup_parent: None,
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

fn status_of(store: &StatusStore, pod: &str) -> k8s_openapi::api::core::v1::PodStatus {
    store.pod(pod).unwrap().pod.status.unwrap()
}

#[test]
fn worker_runs_init_then_restarts_a_crashing_app_with_backoff_and_stops_cleanly() {
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _kill = KillShims(tmp.path().join("state"));
    let store = StatusStore::new();
    let maker = Busybox::new(tmp.path());
    let cgroup = maker.cgroup.clone();
    let p = pod(
        "w1",
        vec![container("init", "echo init done")],
        vec![
            container("app", "echo run; exit 1"),
            container(
                "steady",
                "trap 'exit 0' TERM; while true; do sleep 0.05; done",
            ),
        ],
        5,
    );
    let cfg = config(tmp.path());
    let worker = PodWorker::start(p, Box::new(maker), cfg.clone(), store.clone());

    // app crashes, restarts at once, then backs off 300 ms, 600 ms, 1 s...
    wait_until("app restarted 3 times", || {
        store
            .pod("w1-node1")
            .ok()
            .and_then(|e| e.pod.status)
            .is_some_and(|s| {
                s.container_statuses
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.name == "app" && c.restart_count >= 3)
            })
    });
    let s = status_of(&store, "w1-node1");
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let init = &s.init_container_statuses.as_ref().unwrap()[0];
    let term = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (term.reason.as_deref(), term.exit_code),
        (Some("Completed"), 0)
    );
    let app = s
        .container_statuses
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.name == "app")
        .unwrap();
    assert_eq!(
        app.last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        1
    );
    let steady = s
        .container_statuses
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.name == "steady")
        .unwrap();
    assert!(steady.state.as_ref().unwrap().running.is_some() && steady.ready);
    let events = store.events(Some("w1-node1"));
    assert!(events.iter().any(|e| e.reason == "BackOff"), "{events:?}");
    let metrics = podvisor::api::metrics::render(&store).unwrap();
    assert!(
        metrics.contains("podvisor_pod_start_latency_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.reason == "Started" && e.message == "Started container init")
    );
    // One log file per run.
    let logs = tmp.path().join("logs/default_w1-node1_w1/app");
    for n in 0..3 {
        let text = std::fs::read_to_string(logs.join(format!("{n}.log"))).unwrap();
        assert!(text.ends_with(" stdout F run\n"), "{n}.log: {text}");
    }

    // Graceful stop: steady exits on SIGTERM well before the 5 s grace.
    let t0 = Instant::now();
    worker.stop();
    assert_eq!(worker.join(), WorkerEnd::Stopped);
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "stop took {:?}",
        t0.elapsed()
    );
    assert!(store.pod("w1-node1").is_err(), "pod removed from the store");
    assert!(!tmp.path().join("state/pods/w1").exists(), "state removed");
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("runtime"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runtime containers left: {left:?}");
    assert!(logs.join("0.log").exists(), "logs are kept");
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup/unified").join(&cgroup));
}

#[test]
fn new_worker_readopts_a_live_shim_without_restarting_containers() {
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _kill = KillShims(tmp.path().join("state"));
    let store = StatusStore::new();
    let cfg = config(tmp.path());
    let p = pod(
        "w2",
        vec![],
        vec![
            container("app", "trap 'exit 0' TERM; while true; do sleep 0.05; done"),
            container("quick", "sleep 1; exit 3"),
        ],
        5,
    );
    let maker = Busybox::new(tmp.path());
    let cgroup = maker.cgroup.clone();
    let worker = PodWorker::start(p.clone(), Box::new(maker), cfg.clone(), store.clone());
    wait_until("both running", || {
        store
            .pod("w2-node1")
            .ok()
            .and_then(|e| e.pod.status)
            .is_some_and(|s| {
                let statuses = s.container_statuses.unwrap_or_default();
                statuses
                    .iter()
                    .filter(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
                    .count()
                    == 2
            })
    });
    let app_started = |store: &StatusStore| {
        let s = status_of(store, "w2-node1");
        let app = s
            .container_statuses
            .unwrap()
            .into_iter()
            .find(|c| c.name == "app")
            .unwrap();
        (
            app.restart_count,
            app.state.unwrap().running.unwrap().started_at,
        )
    };
    let before = app_started(&store);

    // The agent goes away leaving the pod running; 'quick' exits while nobody listens.
    worker.detach();
    assert_eq!(worker.join(), WorkerEnd::Detached);
    wait_until("exit recorded on disk", || {
        std::fs::read_dir(tmp.path().join("state/pods/w2/exits")).is_ok_and(|d| d.count() > 0)
    });

    // A new worker (new agent) re-adopts: nothing restarted, the missed exit applied.
    let store2 = StatusStore::new();
    let t0 = Instant::now();
    let worker2 = PodWorker::start(
        p,
        Box::new(Busybox::new(&tmp.path().join("second"))),
        cfg,
        store2.clone(),
    );
    wait_until("re-adopted", || store2.pod("w2-node1").is_ok());
    eprintln!("re-adoption published status after {:?}", t0.elapsed());
    assert_eq!(
        app_started(&store2),
        before,
        "app kept running, not restarted"
    );
    wait_until("quick's missed exit applied", || {
        let s = status_of(&store2, "w2-node1");
        let quick = s
            .container_statuses
            .unwrap()
            .into_iter()
            .find(|c| c.name == "quick")
            .unwrap();
        quick.restart_count >= 1
            && quick
                .last_state
                .and_then(|l| l.terminated)
                .is_some_and(|t| t.exit_code == 3)
    });
    worker2.stop();
    assert_eq!(worker2.join(), WorkerEnd::Stopped);
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup/unified").join(&cgroup));
}

#[test]
fn worker_recovers_when_its_shim_is_killed() {
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _kill = KillShims(tmp.path().join("state"));
    let store = StatusStore::new();
    let cfg = config(tmp.path());
    let p = pod(
        "w3",
        vec![],
        vec![container(
            "app",
            "trap 'exit 0' TERM; while true; do sleep 0.05; done",
        )],
        5,
    );
    let maker = Busybox::new(tmp.path());
    let cgroup = maker.cgroup.clone();
    let worker = PodWorker::start(p, Box::new(maker), cfg, store.clone());
    let running = |store: &StatusStore| {
        store
            .pod("w3-node1")
            .ok()
            .and_then(|e| e.pod.status)
            .and_then(|s| {
                let app = s
                    .container_statuses
                    .unwrap_or_default()
                    .into_iter()
                    .next()?;
                app.state.as_ref()?.running.as_ref()?;
                Some(app)
            })
    };
    wait_until("app running", || running(&store).is_some());
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("state/pods/w3/state.json")).unwrap(),
    )
    .unwrap();
    let shim_pid = state["shimPid"].as_i64().unwrap() as i32;
    let old_pid = state["containers"][0]["running"]["pid"].as_i64().unwrap() as i32;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(shim_pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while running(&store).is_none_or(|a| a.restart_count != 1) {
        if Instant::now() > deadline {
            let events: Vec<String> = store
                .events(None)
                .iter()
                .map(|e| format!("{} {}", e.reason, e.message))
                .collect();
            let state = std::fs::read_to_string(tmp.path().join("state/pods/w3/state.json"))
                .unwrap_or_default();
            let log = std::fs::read_to_string(tmp.path().join("state/pods/w3/shim.log"))
                .unwrap_or_default();
            panic!(
                "app not restarted under a new shim\nevents: {events:#?}\nstate: {state}\nshim.log: {log}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let app = running(&store).unwrap();
    let last = app.last_state.unwrap().terminated.unwrap();
    assert_eq!(
        (last.reason.as_deref(), last.exit_code),
        (Some("ContainerStatusUnknown"), 137)
    );
    assert!(
        !Path::new(&format!("/proc/{old_pid}")).exists() || {
            // A zombie is gone for all purposes; a live process would be an escape.
            std::fs::read_to_string(format!("/proc/{old_pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
        },
        "the old container process was killed with its shim's cgroup"
    );
    assert!(
        store
            .events(Some("w3-node1"))
            .iter()
            .any(|e| e.reason == "ShimLost")
    );
    worker.stop();
    assert_eq!(worker.join(), WorkerEnd::Stopped);
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup/unified").join(&cgroup));
}

#[test]
fn supervisor_replaces_an_edited_pod_only_after_the_old_one_is_gone() {
    use podvisor::supervise::supervisor::Supervisor;
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _kill = KillShims(tmp.path().join("state"));
    let store = StatusStore::new();
    let base = tmp.path().to_path_buf();
    let cgroup = format!("podvisor-worker-test-{}", std::process::id());
    let mut sup = Supervisor::new(
        config(tmp.path()),
        store.clone(),
        Box::new(move |pod: &Pod| {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            Box::new(Busybox::new(&base.join("makers").join(uid))) as Box<dyn BundleMaker>
        }),
    );
    let version = |uid: &str| {
        let mut p = pod(
            uid,
            vec![],
            vec![container(
                "app",
                "trap 'echo bye; exit 0' TERM; echo hi; while true; do sleep 0.05; done",
            )],
            5,
        );
        p.metadata.name = Some("web-node1".into());
        p
    };
    let running_uid = |store: &StatusStore| {
        let e = store.pod("web-node1").ok()?;
        let s = e.pod.status?;
        s.container_statuses?
            .first()?
            .state
            .as_ref()?
            .running
            .as_ref()?;
        e.pod.metadata.uid
    };
    let v1 = std::sync::Arc::new(version("v1"));
    sup.sync(std::slice::from_ref(&v1));
    wait_until("v1 running", || {
        running_uid(&store).as_deref() == Some("v1")
    });

    // The manifest is edited: new UID, same name. v1 stops first; v2 starts after.
    let v2 = std::sync::Arc::new(version("v2"));
    let mut saw_overlap = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while running_uid(&store).as_deref() != Some("v2") {
        assert!(Instant::now() < deadline, "v2 never started");
        sup.sync(std::slice::from_ref(&v2));
        let uids = sup.uids();
        saw_overlap |= uids.len() == 2
            && store
                .pod("web-node1")
                .ok()
                .and_then(|e| e.pod.metadata.uid)
                .as_deref()
                == Some("v2");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!saw_overlap, "v2 appeared while v1 still existed");
    let v1_log =
        std::fs::read_to_string(tmp.path().join("logs/default_web-node1_v1/app/0.log")).unwrap();
    assert!(v1_log.contains(" stdout F bye"), "v1 saw SIGTERM: {v1_log}");
    assert_eq!(sup.uids(), ["v2"]);

    // The manifest is deleted: the pod goes, nothing is left.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sup.is_empty() {
        assert!(Instant::now() < deadline, "v2 never stopped");
        sup.sync(&[]);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(store.pods().is_empty());
    assert!(
        std::fs::read_dir(tmp.path().join("state/pods"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "pod state left"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("runtime"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runtime containers left: {left:?}");
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup/unified").join(&cgroup));
}

#[test]
fn probe_verdicts_drive_ready_and_liveness_restarts() {
    use k8s_openapi::api::core::v1::{ExecAction, Probe};
    use podvisor::supervise::worker::ProbeUpdate;
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _kill = KillShims(tmp.path().join("state"));
    let store = StatusStore::new();
    let mut app = container(
        "app",
        "trap 'exit 0' TERM; echo armed; while true; do sleep 0.05; done",
    );
    app.readiness_probe = Some(Probe {
        exec: Some(ExecAction {
            command: Some(vec!["true".into()]),
        }),
        ..Default::default()
    });
    let p = pod("w5", vec![], vec![app], 5);
    let maker = Busybox::new(tmp.path());
    let cgroup = maker.cgroup.clone();
    let worker = PodWorker::start(p, Box::new(maker), config(tmp.path()), store.clone());
    let app_status = |store: &StatusStore| {
        store
            .pod("w5-node1")
            .ok()?
            .pod
            .status?
            .container_statuses?
            .into_iter()
            .next()
    };
    let ready_condition = |store: &StatusStore| {
        let s = store.pod("w5-node1").unwrap().pod.status.unwrap();
        s.conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .status
    };
    wait_until("app running", || {
        app_status(&store).is_some_and(|a| a.state.is_some_and(|s| s.running.is_some()))
    });
    assert!(
        !app_status(&store).unwrap().ready,
        "not ready before the readiness probe passes"
    );
    assert_eq!(ready_condition(&store), "False");

    worker.probe("app", ProbeUpdate::Ready(true));
    wait_until("ready", || app_status(&store).is_some_and(|a| a.ready));
    assert_eq!(ready_condition(&store), "True");

    wait_until("trap set", || {
        std::fs::read_to_string(tmp.path().join("logs/default_w5-node1_w5/app/0.log"))
            .is_ok_and(|l| l.contains(" F armed"))
    });
    let message = "Container app failed liveness probe, will be restarted".to_string();
    worker.probe(
        "app",
        ProbeUpdate::Restart {
            grace: Duration::from_secs(2),
            message: message.clone(),
        },
    );
    wait_until("restarted after liveness failure", || {
        app_status(&store)
            .is_some_and(|a| a.restart_count == 1 && a.state.is_some_and(|s| s.running.is_some()))
    });
    assert!(
        !app_status(&store).unwrap().ready,
        "a new run starts not ready"
    );
    assert!(
        store
            .events(Some("w5-node1"))
            .iter()
            .any(|e| e.reason == "Killing" && e.message == message)
    );
    worker.stop();
    assert_eq!(worker.join(), WorkerEnd::Stopped);
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup/unified").join(&cgroup));
}

#[test]
fn pre_stop_sleep_runs_before_the_stop_signal_within_the_grace_period() {
    use k8s_openapi::api::core::v1::{Lifecycle, LifecycleHandler, SleepAction};
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _kill = KillShims(tmp.path().join("state"));
    let store = StatusStore::new();
    let mut app = container(
        "app",
        "trap 'echo got TERM; exit 0' TERM; echo armed; while true; do sleep 0.05; done",
    );
    app.lifecycle = Some(Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction { seconds: 1 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let p = pod("w6", vec![], vec![app], 10);
    let maker = Busybox::new(tmp.path());
    let cgroup = maker.cgroup.clone();
    let worker = PodWorker::start(p, Box::new(maker), config(tmp.path()), store.clone());
    let log = tmp.path().join("logs/default_w6-node1_w6/app/0.log");
    wait_until("armed", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains(" F armed"))
    });
    let t0 = Instant::now();
    worker.stop();
    assert_eq!(worker.join(), WorkerEnd::Stopped);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "preStop sleep then TERM: took {took:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(" stdout F got TERM"), "{text}");
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup/unified").join(&cgroup));
}

/// A maker whose first `make` waits until the test lets it go: an image pull that takes a
/// while.
struct SlowPull {
    inner: Busybox,
    release: Option<std::sync::mpsc::Receiver<()>>,
}

impl BundleMaker for SlowPull {
    fn make(
        &mut self,
        pod: &Pod,
        container: &Container,
        attempt: u32,
        namespaces: &BTreeMap<String, PathBuf>,
    ) -> Result<PathBuf, BundleError> {
        if let Some(release) = self.release.take() {
            let _ = release.recv_timeout(Duration::from_secs(30));
        }
        self.inner.make(pod, container, attempt, namespaces)
    }
}

#[test]
fn a_new_pod_is_shown_container_creating_while_its_first_bundle_is_made() {
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _kill = KillShims(tmp.path().join("state"));
    let store = StatusStore::new();
    let (release, pulling) = std::sync::mpsc::channel();
    let inner = Busybox::new(tmp.path());
    let cgroup = inner.cgroup.clone();
    let maker = SlowPull {
        inner,
        release: Some(pulling),
    };
    let p = pod("w7", vec![], vec![container("app", "sleep 30")], 1);
    let worker = PodWorker::start(p, Box::new(maker), config(tmp.path()), store.clone());
    wait_until("the pod in the store", || store.pod("w7-node1").is_ok());
    let status = status_of(&store, "w7-node1");
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let waiting = status.container_statuses.as_ref().unwrap()[0]
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone());
    assert_eq!(waiting.as_deref(), Some("ContainerCreating"));
    release.send(()).unwrap();
    wait_until("Running", || {
        status_of(&store, "w7-node1").phase.as_deref() == Some("Running")
    });
    worker.stop();
    assert_eq!(worker.join(), WorkerEnd::Stopped);
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup/unified").join(&cgroup));
}
