//! Measures a pod shim's memory with 1, 10 and 50 running containers (root only).
//!
//! `cargo build --release -p podvisor --examples && sudo target/release/examples/shim_memory`
//! spawns `target/release/podvisor shim`, runs busybox `sleep` containers through it and
//! prints the shim's RSS and PSS (from `/proc/<pid>/smaps_rollup`) beside the same figures
//! for one container's own process (a static busybox, the floor of any process), measured
//! in the same run, and their ratio.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use podvisor::supervise::shim::client::spawn_shim;
use podvisor::supervise::shim::handle::PodShim;
use podvisor::supervise::shim::protocol::Request;
use podvisor::supervise::shim::server::ShimArgs;
use podvisor::supervise::state::PodStateDir;
use serde_json::json;

/// Anonymous (private, not file-backed) resident memory in KiB.
fn anon(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time of a process, in clock ticks (`/proc/<pid>/stat` fields 14, 15).
fn cpu_ticks(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &text[text.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// (RSS, PSS) in KiB.
fn memory(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "dev"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sleep")).unwrap();
    root
}

fn bundle(dir: &Path, rootfs: &Path, name: &str) -> PathBuf {
    let b = dir.join("bundles").join(name);
    std::fs::create_dir_all(&b).unwrap();
    let config = json!({
        "ociVersion": "1.0.2",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/sleep", "1000"],
                    "env": ["PATH=/bin"], "cwd": "/", "noNewPrivileges": true},
        "root": {"path": rootfs, "readonly": true},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"cgroupsPath": format!("/podvisor-shim-memory/{name}"),
                  "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]}
    });
    std::fs::write(b.join("config.json"), config.to_string()).unwrap();
    b
}

fn main() {
    let exe = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/podvisor"));
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = rootfs(tmp.path());
    println!("shim: {}", exe.display());
    println!(
        "{:>6} {:>10} {:>12} {:>12} {:>13} {:>13} {:>14} {:>16}",
        "shims",
        "containers",
        "RSS KiB",
        "PSS KiB",
        "anon KiB",
        "sleep PSS KiB",
        "shim/sleep PSS",
        "idle CPU ticks/5s"
    );
    for (shims, n) in [(1usize, 1usize), (1, 10), (1, 50), (20, 1)] {
        let mut running = Vec::new();
        for k in 0..shims {
            running.push(start_shim(
                &exe,
                tmp.path(),
                &rootfs,
                &format!("mem{n}x{k}"),
                n,
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
        let mut sum = (0u64, 0u64, 0u64);
        for (shim, _, _) in &running {
            let (rss, pss) = memory(shim.pid());
            sum = (sum.0 + rss, sum.1 + pss, sum.2 + anon(shim.pid()));
        }
        let k = shims as u64;
        let (rss, pss, an) = (sum.0 / k, sum.1 / k, sum.2 / k);
        let (_, sleep_pss) = memory(running[0].1);
        let before: u64 = running.iter().map(|(s, _, _)| cpu_ticks(s.pid())).sum();
        std::thread::sleep(Duration::from_secs(5));
        let idle: u64 = running
            .iter()
            .map(|(s, _, _)| cpu_ticks(s.pid()))
            .sum::<u64>()
            - before;
        println!(
            "{shims:>6} {n:>10} {rss:>12} {pss:>12} {an:>13} {sleep_pss:>13} {:>14.1} {idle:>16}",
            pss as f64 / sleep_pss.max(1) as f64
        );
        if std::env::var_os("SHIM_MEMORY_HOLD").is_some() {
            println!("holding for 20 s");
            std::thread::sleep(Duration::from_secs(20));
        }
        for (shim, _, child) in running {
            shim.shutdown().unwrap();
            child.wait().unwrap();
        }
    }
    let _ = std::fs::remove_dir("/sys/fs/cgroup/unified/podvisor-shim-memory");
    let _ = std::fs::remove_dir("/sys/fs/cgroup/podvisor-shim-memory");
}

/// Spawns a shim for pod `uid` running `n` sleep containers; returns it, the first
/// container's pid and the shim process.
fn start_shim(
    exe: &Path,
    dir: &Path,
    rootfs: &Path,
    uid: &str,
    n: usize,
) -> (
    PodShim,
    i32,
    podvisor::supervise::shim::reaper::ChildProcess,
) {
    let args = ShimArgs {
        uid: uid.to_string(),
        runtime_root: dir.join("runtime"),
        log_max_size: 1 << 20,
        log_max_files: 2,
        cgroup_best_effort: true,
    };
    let state = dir.join("state");
    let child = spawn_shim(exe, &state, &args, None, Duration::from_secs(10)).unwrap();
    let mut shim = PodShim::connect(&PodStateDir::new(&state, uid).shim_socket()).unwrap();
    let mut first_pid = 0;
    for i in 0..n {
        let name = format!("c{i}");
        let r = shim
            .run(Request::Run {
                container: name.clone(),
                attempt: 0,
                id: format!("{uid}-{name}-0"),
                bundle: bundle(dir, rootfs, &format!("{uid}-{name}")),
                log_path: dir.join("logs").join(uid).join(&name).join("0.log"),
                hold_namespaces: Vec::new(),
            })
            .unwrap();
        if i == 0 {
            first_pid = r.pid;
        }
    }
    (shim, first_pid, child)
}
