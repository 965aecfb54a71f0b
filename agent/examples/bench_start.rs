//! Start latency (root only): manifest written → the workload's first command ran.
//!
//! Driven by `scripts/bench-start` (which builds it, makes the busybox image and sets podman
//! up). Usage:
//!
//! ```text
//! bench_start PODVISOR_BIN IMAGE_TAR RUNS [--podman PODMAN_CMD...]
//! ```
//!
//! The pod is one busybox container whose first command is `: > /t/started`, a shell
//! built-in that creates a file in a hostPath directory. The harness watches that directory
//! with inotify (watch set up before the clock starts) and reads CLOCK_MONOTONIC when the
//! `IN_CREATE` event arrives; the clock starts just before the manifest is written (written
//! to a dot file, then renamed into the manifest directory, as an editor or kubeadm does).
//! Resolution: the monotonic clock (ns) plus inotify delivery and the harness's wake-up
//! (tens of µs), far below the figures measured.
//!
//! Variants, interleaved run by run, each with the image already in its store and its
//! agent already running and idle:
//! - `podvisor`: `podvisor agent` without a kubeconfig;
//! - `podvisor-api-blackholed`: with a kubeconfig whose server is a loopback TCP listener
//!   that accepts connections and never answers (issue 8);
//! - `podvisor-api-unroutable`: with a kubeconfig whose server is 192.0.2.1 (TEST-NET-1,
//!   where SYNs go unanswered);
//! - `podman`: `PODMAN_CMD kube play --network none` of the same pod (when `--podman`).
//!
//! Between runs the pod is removed (manifest deleted and the harness waits until the agent
//! has removed its state; `podman kube down`) so every run starts from the same place.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::expect_used)]

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inotify::{Inotify, WatchMask};

const IMAGE: &str = "busybox:podvisor-test";

fn pod_yaml(name: &str, hostpath: &Path) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 5
  containers:
  - name: c
    image: {IMAGE}
    imagePullPolicy: Never
    command: [\"/bin/sh\", \"-c\", \": > /t/started; trap 'exit 0' TERM; sleep 1000 & wait\"]
    volumeMounts:
    - {{name: t, mountPath: /t}}
  volumes:
  - name: t
    hostPath: {{path: {}, type: Directory}}
",
        hostpath.display()
    )
}

/// Waits for `started` to be created in the watched directory; returns when it was seen.
fn wait_started(inotify: &mut Inotify, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let mut fds = [rustix::event::PollFd::new(
            &*inotify,
            rustix::event::PollFlags::IN,
        )];
        let ts = rustix::event::Timespec::try_from(left).unwrap();
        let _ = rustix::event::poll(&mut fds, Some(&ts));
        let seen = Instant::now();
        match inotify.read_events(&mut buf) {
            Ok(events) => {
                for e in events {
                    if e.name.is_some_and(|n| n == "started") {
                        return Some(seen);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read inotify events: {e}"),
        }
    }
}

/// One `podvisor agent` with its own directories.
struct Agent {
    label: &'static str,
    dir: PathBuf,
    state: PathBuf,
    child: Child,
    bin: PathBuf,
    cgroup_parent: String,
}

impl Agent {
    fn start(
        label: &'static str,
        bin: &Path,
        tar: &Path,
        base: &Path,
        kubeconfig: Option<&str>,
    ) -> Self {
        // Short: the shim socket path (state/pods/<uid>/shim.sock) must fit in sun_path.
        let dir = base.join(&label[label.len() - 1..]);
        std::fs::create_dir_all(dir.join("manifests")).unwrap();
        std::fs::create_dir_all(dir.join("t")).unwrap();
        let out = Command::new(bin)
            .arg("images")
            .arg("--root")
            .arg(dir.join("root"))
            .arg("import")
            .arg(tar)
            .output()
            .unwrap();
        assert!(out.status.success(), "image import failed");
        let cgroup_parent = format!("/podvisor-bench-{}-{label}", std::process::id());
        // The state directory where production has it: on the tmpfs the script mounts as
        // /run would be (BENCH_RUN_DIR), else beside the rest.
        let state = std::env::var_os("BENCH_RUN_DIR").map_or_else(
            || dir.join("state"),
            |run| {
                Path::new(&run)
                    .join(&label[label.len() - 1..])
                    .join("state")
            },
        );
        let mut cmd = Command::new(bin);
        cmd.arg("--state")
            .arg(&state)
            .arg("agent")
            .arg("--manifests")
            .arg(dir.join("manifests"))
            .args(["--node-name", "bench", "--cgroup-limits", "best-effort"])
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--log-dir")
            .arg(dir.join("logs"))
            .args(["--cgroup-parent", &cgroup_parent, "--stop-pods-on-exit"]);
        if let Some(server) = kubeconfig {
            let kc = dir.join("kubeconfig");
            std::fs::write(
                &kc,
                format!(
                    "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster: {{server: \"{server}\", insecure-skip-tls-verify: true}}\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nusers:\n- name: u\n  user: {{token: bench}}\n"
                ),
            )
            .unwrap();
            cmd.arg("--kubeconfig").arg(&kc);
        }
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let agent = Self {
            label,
            dir,
            state,
            child,
            bin: bin.to_path_buf(),
            cgroup_parent,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !agent.cli_ok() {
            assert!(Instant::now() < deadline, "{label}: agent did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        agent
    }

    fn cli_ok(&self) -> bool {
        Command::new(&self.bin)
            .arg("--state")
            .arg(&self.state)
            .arg("ps")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// One start; returns the latency.
    fn run_once(&self, i: usize) -> Duration {
        let t = self.dir.join("t");
        let mut inotify = Inotify::init().unwrap();
        inotify.watches().add(&t, WatchMask::CREATE).unwrap();
        let text = pod_yaml(&format!("b{i}"), &t);
        let tmp = self.dir.join("manifests").join(".b.yaml.tmp");
        let dest = self.dir.join("manifests").join(format!("b{i}.yaml"));
        let t0 = Instant::now();
        std::fs::write(&tmp, &text).unwrap();
        std::fs::rename(&tmp, &dest).unwrap();
        let seen = wait_started(&mut inotify, Duration::from_secs(60)).unwrap_or_else(|| {
            let log = std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default();
            let status = Command::new(&self.bin)
                .arg("--state")
                .arg(&self.state)
                .args(["ps"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!(
                "{}: the workload did not start within 60 s\n{status}\nagent log:\n{log}",
                self.label
            )
        });
        let latency = seen - t0;
        std::fs::remove_file(&dest).unwrap();
        self.wait_empty();
        std::fs::remove_file(t.join("started")).unwrap();
        latency
    }

    /// Waits until the agent removed every pod's state (the previous pod fully stopped).
    fn wait_empty(&self) {
        let pods = self.state.join("pods");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n = std::fs::read_dir(&pods).map_or(0, |d| d.count());
            if n == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{}: pod not removed", self.label);
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Drop for Agent {
    /// SIGTERM (the agent stops its pods: `--stop-pods-on-exit`), then the cgroup parent.
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.child.wait();
        if let Ok(root) = podvisor_runtime::cgroup::mount_point() {
            let _ = Command::new("find")
                .arg(root.join(self.cgroup_parent.trim_start_matches('/')))
                .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `podman kube play` of the same pod.
struct Podman {
    cmd: Vec<String>,
    dir: PathBuf,
}

impl Podman {
    fn podman(&self) -> Command {
        let mut c = Command::new(&self.cmd[0]);
        c.args(&self.cmd[1..]);
        c
    }

    /// One start; returns the latency to the workload and to `kube play` returning.
    fn run_once(&self, i: usize) -> (Duration, Duration) {
        let t = self.dir.join("t");
        std::fs::create_dir_all(&t).unwrap();
        let file = self.dir.join(format!("b{i}.yaml"));
        std::fs::write(&file, pod_yaml(&format!("b{i}"), &t)).unwrap();
        let mut inotify = Inotify::init().unwrap();
        inotify.watches().add(&t, WatchMask::CREATE).unwrap();
        let t0 = Instant::now();
        let mut play = self.podman();
        play.args(["kube", "play", "--network", "none"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = play.spawn().unwrap();
        let seen = wait_started(&mut inotify, Duration::from_secs(60));
        let out = child.wait_with_output().unwrap();
        let returned = t0.elapsed();
        let Some(seen) = seen else {
            panic!(
                "podman: the workload did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let down = self
            .podman()
            .args(["kube", "down"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            down.status.success(),
            "podman kube down: {}",
            String::from_utf8_lossy(&down.stderr)
        );
        std::fs::remove_file(t.join("started")).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        (seen - t0, returned)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// (median, p90) in ms.
fn stats(v: &[Duration]) -> (f64, f64) {
    let mut s: Vec<f64> = v.iter().copied().map(ms).collect();
    s.sort_by(f64::total_cmp);
    let pick = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    (pick(0.5), pick(0.9))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() >= 4,
        "usage: bench_start PODVISOR_BIN IMAGE_TAR RUNS [--podman PODMAN_CMD...]"
    );
    let bin = PathBuf::from(&args[1]);
    let tar = PathBuf::from(&args[2]);
    let runs: usize = args[3].parse().expect("RUNS is a number");
    let podman_cmd: Vec<String> = match args.get(4).map(String::as_str) {
        Some("--podman") => args[5..].to_vec(),
        _ => Vec::new(),
    };
    let base = tempfile::Builder::new().prefix("pvb.").tempdir().unwrap();

    // The blackholed API server: accepts, never reads nor answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });

    let agents = vec![
        Agent::start("podvisor-a", &bin, &tar, base.path(), None),
        Agent::start(
            "podvisor-api-blackholed-b",
            &bin,
            &tar,
            base.path(),
            Some(&format!("https://127.0.0.1:{port}")),
        ),
        Agent::start(
            "podvisor-api-unroutable-c",
            &bin,
            &tar,
            base.path(),
            Some("https://192.0.2.1:6443"),
        ),
    ];
    let podman = (!podman_cmd.is_empty()).then(|| Podman {
        cmd: podman_cmd,
        dir: base.path().join("podman"),
    });
    // Let the agents settle (first reconcile, mirror clients trying to connect).
    std::thread::sleep(Duration::from_secs(2));

    let mut results: Vec<Vec<Duration>> = vec![Vec::new(); agents.len()];
    let mut podman_started = Vec::new();
    let mut podman_returned = Vec::new();
    print!("runs:");
    for i in 0..runs {
        for (k, agent) in agents.iter().enumerate() {
            results[k].push(agent.run_once(i));
        }
        if let Some(p) = &podman {
            let (s, r) = p.run_once(i);
            podman_started.push(s);
            podman_returned.push(r);
        }
        print!(" {}", i + 1);
        let _ = std::io::stdout().flush();
    }
    println!();
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!("agent logs kept under {}", base.path().display());
    }
    drop(agents);
    if std::env::var_os("BENCH_KEEP").is_some() {
        let _ = base.keep();
    }

    println!(
        "\nmanifest written → workload's first command ran ({runs} runs each, interleaved; ms)"
    );
    println!(
        "{:<36} {:>9} {:>9} {:>9} {:>9}",
        "variant", "median", "p90", "min", "max"
    );
    let line = |label: &str, v: &[Duration]| {
        let (m, p) = stats(v);
        let min = v.iter().copied().map(ms).fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().map(ms).fold(0.0, f64::max);
        println!("{label:<36} {m:>9.1} {p:>9.1} {min:>9.1} {max:>9.1}");
        m
    };
    let base_median = line("podvisor", &results[0]);
    let blackholed = line("podvisor, API blackholed (accepts)", &results[1]);
    let unroutable = line("podvisor, API unroutable (192.0.2.1)", &results[2]);
    println!(
        "ratio blackholed/none: {:.2}   unroutable/none: {:.2}",
        blackholed / base_median,
        unroutable / base_median
    );
    if podman.is_some() {
        let pm = line("podman kube play: workload started", &podman_started);
        line("podman kube play: command returned", &podman_returned);
        println!(
            "ratio podman/podvisor (medians, workload started): {:.1}x",
            pm / base_median
        );
    }
}
