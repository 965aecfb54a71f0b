//! `podvisor agent`: the long-lived supervisor. It ties the pieces together:
//!
//! ```text
//! manifest watcher ──DesiredSet──►  reconcile loop  ──start/stop──►  pod workers (one thread
//! signals (TERM, INT, HUP) ──────►  (this module)                    each, one shim per pod)
//!                                         │                                   │
//!                                         └──── status store ◄────────────────┘──► local API
//! ```
//!
//! The loop is level-triggered: every pass compares the latest desired set with the
//! workers that exist ([`pods::Pods::reconcile`]). Nothing in it blocks on a pod: image
//! pulls, rootfs preparation, container starts and graceful stops all happen in the
//! pod's own worker, on the worker pool ([`crate::supervise::pool`]). `sd_notify` READY is sent after the first pass. SIGTERM or
//! SIGINT ends the agent leaving pods running (their shims keep them; the next agent
//! re-adopts them) unless `--stop-pods-on-exit`; SIGHUP re-reads every manifest.
//! With `--kubeconfig` the mirror task gets the status store's pods after every pass
//! (it never sits in the path of starting or stopping a pod). A change of any pod's
//! `Ready` condition also wakes the loop, which is what starts pods held by
//! `podvisor.io/after` ([`order_gate`]).

pub mod args;
pub mod bundle;
pub mod cleanup;
pub mod mirror_feed;
pub mod order_gate;
pub mod pod_cgroup;
pub mod pods;
pub mod probes;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use podvisor_rootfs::{PullOptions, Store};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

pub use args::{AgentArgs, CgroupLimits};
use pods::{PodEnv, Pods};

use crate::api::server::ApiServer;
use crate::api::store::StatusStore;
use crate::logs::file::RotateConfig;
use crate::manifest::DesiredSet;
use crate::manifest::watch::{WatchConfig, Watcher};
use crate::pod::NodeInfo;
use crate::supervise::worker::WorkerConfig;
use crate::translate::PodContext;

/// How often the loop looks at pods that are stopping (to collect them and start their
/// replacements) and, when idle, at all workers.
const BUSY_TICK: Duration = Duration::from_millis(100);
const IDLE_TICK: Duration = Duration::from_secs(5);

/// Why the agent loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or SIGINT.
    Signal(i32),
}

enum Msg {
    Desired(DesiredSet),
    Signal(i32),
    Probe(crate::probe::engine::ProbeReport),
    /// Some pod's `Ready` condition changed (start ordering may release a pod).
    ReadyChanged,
}

/// The node name: `--node-name`, else the host name.
pub fn node_name(args: &AgentArgs) -> String {
    args.node_name
        .clone()
        .unwrap_or_else(crate::render::default_node_name)
}

/// The longest path a unix socket can have (`sun_path` is 108 bytes with the final NUL).
const SOCKET_PATH_MAX: usize = 107;

/// Refuses a state directory too long for the sockets under it: each shim listens on
/// `<state>/pods/<uid>/shim.sock` (a static pod's UID has 32 characters), the agent on
/// `<state>/agent.sock`. Said at start, naming the flag, rather than by each pod's shim
/// failing to bind.
fn check_socket_room(state: &std::path::Path) -> anyhow::Result<()> {
    let longest = state.join("pods").join("0".repeat(32)).join("shim.sock");
    let len = longest.as_os_str().len();
    if len > SOCKET_PATH_MAX {
        anyhow::bail!(
            "--state {}: too long ({} bytes): the shim sockets below it would have {len}-byte \
             paths, more than the {SOCKET_PATH_MAX} a unix socket path can have; use a state \
             directory of at most {} bytes (the default is /run/podvisor)",
            state.display(),
            state.as_os_str().len(),
            state.as_os_str().len() - (len - SOCKET_PATH_MAX),
        );
    }
    Ok(())
}

/// Runs the agent until SIGTERM/SIGINT.
pub fn run(args: &AgentArgs, state: &std::path::Path) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let node = node_name(args);
    check_socket_room(state)?;
    for dir in [state, args.root.as_path(), args.log_dir.as_path()] {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let status = StatusStore::new();
    let api = ApiServer::start_with_runtime(
        &state.join("agent.sock"),
        status.clone(),
        Some(state.join("runtime")),
    )?;
    let (tx, rx) = mpsc::channel();
    let ready_tx = tx.clone();
    status.watch_ready(move |_| {
        let _ = ready_tx.send(Msg::ReadyChanged);
    });
    let engine = start_probes(&state.join("runtime"), tx.clone())?;
    let env = pod_env(args, state, &node, status.clone(), engine)?;
    let mut pods = Pods::new(env);
    // Mirror pods (with --kubeconfig): fed from the status store, never waited for.
    let (mirror, mirror_thread) = args
        .mirror
        .start(&node)
        .context("start the mirror-pod client")?;
    let mut mirror = mirror_thread
        .is_some()
        .then(|| mirror_feed::MirrorFeed::new(mirror));

    spawn_signal_thread(tx.clone())?;
    let watch = || -> anyhow::Result<Watcher> {
        let mut cfg = WatchConfig::new(
            &args.manifests,
            NodeInfo::new(&node, Default::default(), Vec::new()),
        );
        cfg.rescan_interval = args.rescan_interval;
        let tx = tx.clone();
        Watcher::spawn(cfg, move |set: &DesiredSet| {
            let _ = tx.send(Msg::Desired(set.clone()));
        })
        .with_context(|| format!("watch manifests {}", args.manifests.display()))
    };
    let mut watcher = Some(watch()?);
    tracing::info!(node = %node, manifests = %args.manifests.display(), state = %state.display(), "agent started");

    let mut desired: Option<DesiredSet> = None;
    let mut reported: BTreeSet<PathBuf> = BTreeSet::new();
    let mut first_pass_done = false;
    let mut wake: Option<Instant> = None;
    let exit = loop {
        let tick = if pods.busy(desired.as_ref()) {
            BUSY_TICK
        } else {
            IDLE_TICK
        };
        let timeout = wake.map_or(tick, |w| {
            w.saturating_duration_since(Instant::now()).min(tick)
        });
        match rx.recv_timeout(timeout) {
            Ok(Msg::Desired(set)) => {
                report_problems(&status, &set, &mut reported);
                desired = Some(set);
            }
            Ok(Msg::Signal(SIGHUP)) => {
                tracing::info!("SIGHUP: re-reading every manifest");
                if let Some(w) = watcher.take() {
                    w.stop();
                }
                watcher = Some(watch()?);
            }
            Ok(Msg::Probe(report)) => pods.probe(&report),
            Ok(Msg::ReadyChanged) => {}
            Ok(Msg::Signal(sig)) => break Exit::Signal(sig),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break Exit::Signal(SIGTERM),
        }
        let Some(set) = &desired else { continue };
        if !first_pass_done {
            pods.find_orphans(set);
        }
        wake = pods.reconcile(set);
        if let Some(feed) = &mut mirror {
            feed.update(&status);
        }
        if !first_pass_done {
            first_pass_done = true;
            tracing::info!(pods = set.pods.len(), elapsed = ?started.elapsed(), "first reconcile done");
            if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
                tracing::warn!(error = %e, "sd_notify READY");
            }
        }
    };
    tracing::info!(signal = ?exit, stop_pods = args.stop_pods_on_exit, "agent exiting");
    if let Some(w) = watcher.take() {
        w.stop();
    }
    pods.shutdown(args.stop_pods_on_exit);
    if let Some(feed) = &mirror {
        feed.stop();
    }
    if let Some(t) = mirror_thread {
        let _ = t.join();
    }
    api.stop();
    Ok(exit)
}

/// What every pod worker is started with, from the flags.
fn pod_env(
    args: &AgentArgs,
    state: &std::path::Path,
    node: &str,
    status: StatusStore,
    engine: std::sync::Arc<crate::probe::engine::Engine>,
) -> anyhow::Result<PodEnv> {
    let images = Store::open(&args.root)
        .with_context(|| format!("open image store {}", args.root.display()))?;
    let exe = std::env::current_exe().context("find the podvisor binary (/proc/self/exe)")?;
    let mut base_ctx = PodContext::new(args.root.join("pods"));
    base_ctx.cgroup_parent = args.cgroup_parent.clone();
    base_ctx.node_hostname = node.to_owned();
    base_ctx.host_ip = args.mirror.node_ip.clone().unwrap_or_default();
    base_ctx.pod_pids_limit = (args.pod_max_pids > 0).then_some(args.pod_max_pids);
    Ok(PodEnv {
        worker: WorkerConfig {
            exe,
            state_root: state.to_path_buf(),
            log_root: args.log_dir.clone(),
            runtime_root: state.join("runtime"),
            backoff: args.backoff(),
            rotate: RotateConfig::default(),
            cgroup_best_effort: args.cgroup_limits == CgroupLimits::BestEffort,
            cgroup_parent: Some(args.cgroup_parent.clone()),
        },
        root: args.root.clone(),
        images,
        pull: PullOptions {
            insecure_registries: args.insecure_registry.clone(),
            ..PullOptions::default()
        },
        base_ctx,
        status,
        probes: Some(engine),
    })
}

/// Starts the probe engine; its reports come back to the loop as [`Msg::Probe`].
fn start_probes(
    runtime_root: &std::path::Path,
    tx: Sender<Msg>,
) -> anyhow::Result<std::sync::Arc<crate::probe::engine::Engine>> {
    use crate::probe::engine::{Engine, EngineConfig};
    let exec = std::sync::Arc::new(probes::RuntimeExec {
        root: runtime_root.to_path_buf(),
    });
    let runner = crate::probe::runner::ProbeRunner::new("1.34", exec);
    let (reports_tx, reports_rx) = mpsc::channel();
    let engine = Engine::start(EngineConfig::default(), runner, reports_tx)
        .context("start the probe engine")?;
    std::thread::Builder::new()
        .name("probe-reports".into())
        .spawn(move || {
            for report in reports_rx {
                if tx.send(Msg::Probe(report)).is_err() {
                    break;
                }
            }
        })
        .context("spawn probe report thread")?;
    Ok(std::sync::Arc::new(engine))
}

fn spawn_signal_thread(tx: Sender<Msg>) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(Msg::Signal(sig)).is_err() {
                    break;
                }
            }
        })
        .context("spawn signal thread")?;
    Ok(())
}

/// Publishes manifest problems to the status store (shown by `podvisor ps`) and clears
/// the ones that are gone; logs each new one once.
fn report_problems(status: &StatusStore, set: &DesiredSet, reported: &mut BTreeSet<PathBuf>) {
    let now: BTreeSet<PathBuf> = set.problems.keys().cloned().collect();
    for gone in reported.difference(&now) {
        status.clear_manifest_error(gone);
    }
    for (path, problem) in &set.problems {
        status.set_manifest_error(path.clone(), problem.to_string());
    }
    *reported = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_directories_too_long_for_shim_sockets_are_refused_by_name() {
        assert!(check_socket_room(std::path::Path::new("/run/podvisor")).is_ok());
        let longest_ok = format!("/{}", "s".repeat(58));
        assert!(check_socket_room(std::path::Path::new(&longest_ok)).is_ok());
        let too_long = format!("/{}", "s".repeat(59));
        let e = check_socket_room(std::path::Path::new(&too_long))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("--state {too_long}: too long (60 bytes)")),
            "{e}"
        );
        assert!(e.contains("at most 59 bytes"), "{e}");
    }
}
