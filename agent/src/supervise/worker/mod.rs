//! One pod's worker: it owns the pod's shim connection and `state.json`, starts
//! containers as [`next_actions`] decides, applies exits, publishes the pod's status and
//! events to the [`StatusStore`], and stops the pod gracefully on request.
//!
//! It runs on the [`pool`](super::pool) while it has work and otherwise parks in its
//! mailbox (shim exits and control messages) with a deadline only when a backoff is due,
//! so an idle pod costs neither CPU nor a thread. Making a container's OCI bundle (image,
//! rootfs, spec translation) is delegated to a [`BundleMaker`], which the agent backs
//! with the model and rootfs crates and tests back with a fixed busybox bundle.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Pod, PodStatus};

use super::adopt::{apply_recorded_exit, cleanup_dead_shim, container_id, reconcile_with_shim};
use super::events::{EventType, NewEvent};
use super::exit::ExitRecord;
use super::phase::{PodFacts, pod_status};
use super::podplan::{
    PodAction, apply_pull_backoff, apply_pull_failure, apply_start_failure, containers,
    ensure_records, next_actions,
};
use super::pool::Mailbox;
use super::pull_backoff::PullBackoff;
use super::record::{ContainerRecord, WaitReason};
use super::shim::client::{ShimClientError, ShimEvent, spawn_shim};
use super::shim::deadline::wait_exited;
use super::shim::handle::PodShim;
use super::shim::placement::{move_into, prepare, shim_cgroup};
use super::shim::protocol::Request;
use super::shim::reaper;
use super::shim::server::ShimArgs;
use super::state::{PodState, PodStateDir, STATE_VERSION};
use super::status::ProbeView;
use super::termination::{log_tail_message, read_message_file, termination_message};
use crate::api::store::{PodEntry, StatusStore};
use crate::logs::file::PodLogDir;
use crate::translate::resources::pod_cgroup;

mod config;
mod post_start;
mod stop;

/// The pause before retrying actions that just failed the same way.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

pub use config::{BundleError, BundleMaker, ProbeUpdate, WorkerConfig};

/// A message to a worker.
#[derive(Debug)]
enum Event {
    Exited(ExitRecord),
    /// The shim connection ended while the worker still needed it.
    ShimLost,
    Stop,
    Detach,
    Probe(String, ProbeUpdate),
}

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEnd {
    /// The pod was stopped and its state removed.
    Stopped,
    /// The worker let go of a running pod (agent exit): its shim and containers run on
    /// and a later worker re-adopts them.
    Detached,
    /// The worker could not run the pod (no shim); the message says why.
    Failed(String),
}

/// A worker and its shim connection (none before the worker first ran): what parks in
/// the mailbox while the pod waits.
struct Task {
    worker: Worker,
    shim: Option<PodShim>,
}

type Mail = Mailbox<Event, Task>;

/// How the worker ended, once it has.
#[derive(Default)]
struct Ending {
    end: Mutex<Option<WorkerEnd>>,
    ended: Condvar,
}

impl Ending {
    fn set(&self, end: WorkerEnd) {
        *self.end.lock().unwrap_or_else(PoisonError::into_inner) = Some(end);
        self.ended.notify_all();
    }
}

/// A running pod worker.
pub struct PodWorker {
    mailbox: Arc<Mail>,
    ending: Arc<Ending>,
}

impl std::fmt::Debug for PodWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodWorker")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl PodWorker {
    /// Starts (or re-adopts, when its shim still runs) `pod`. Its metadata must carry
    /// namespace, name and UID.
    pub fn start(
        pod: impl Into<Arc<Pod>>,
        maker: Box<dyn BundleMaker>,
        config: WorkerConfig,
        store: StatusStore,
    ) -> Self {
        let mailbox = Mail::new(Task::resume);
        let ending = Arc::new(Ending::default());
        let worker = Worker::new(
            pod.into(),
            maker,
            config,
            store,
            Arc::clone(&mailbox),
            Arc::clone(&ending),
        );
        let task = Box::new(Task { worker, shim: None });
        super::pool::submit(move || Task::resume(task));
        Self { mailbox, ending }
    }

    /// Asks the pod to stop (gracefully); [`PodWorker::join`] waits for it.
    pub fn stop(&self) {
        self.mailbox.send(Event::Stop);
    }

    /// Delivers a probe verdict about one of the pod's containers.
    pub fn probe(&self, container: &str, update: ProbeUpdate) {
        self.mailbox
            .send(Event::Probe(container.to_string(), update));
    }

    /// Lets go of the pod without stopping it (the agent is exiting): state is saved,
    /// the shim keeps the containers running and recording exits.
    pub fn detach(&self) {
        self.mailbox.send(Event::Detach);
    }

    /// Whether the worker has ended.
    pub fn is_finished(&self) -> bool {
        self.ending
            .end
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Waits for the worker to end.
    pub fn join(self) -> WorkerEnd {
        let mut end = self
            .ending
            .end
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(end) = end.take() {
                return end;
            }
            end = self
                .ending
                .ended
                .wait(end)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Task {
    /// Runs the worker until it parks or ends (on a pool thread: at its start, and each
    /// time a message or its deadline resumes it).
    fn resume(task: Box<Self>) {
        let ending = Arc::clone(&task.worker.ending);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::work(task))) {
            Ok(None) => {} // parked
            Ok(Some(end)) => ending.set(end),
            Err(_) => ending.set(WorkerEnd::Failed("pod worker panicked".into())),
        }
    }

    /// The worker's loop: act on the plan, then wait for a message or the next deadline
    /// by parking. `None` once parked, else how the worker ended.
    fn work(mut task: Box<Self>) -> Option<WorkerEnd> {
        let mailbox = Arc::clone(&task.worker.mailbox);
        let mut message = mailbox.try_recv();
        loop {
            let wait = {
                let Task { worker, shim } = &mut *task;
                let shim = match shim {
                    Some(s) => s,
                    None => match worker.begin() {
                        Ok(s) => shim.insert(s),
                        Err(end) => return Some(end),
                    },
                };
                if let Some(m) = message.take()
                    && let Some(end) = worker.handle(shim, m)
                {
                    return Some(end);
                }
                if worker.stop_requested {
                    return Some(match task.shim.take() {
                        Some(shim) => task.worker.finish(shim),
                        None => WorkerEnd::Failed("stopped without a shim".into()),
                    });
                }
                match worker.pass(shim) {
                    Some(wait) => wait,
                    None => continue, // acted: look again at once
                }
            };
            let deadline = wait.map(|t| Instant::now() + t);
            let (back, m) = mailbox.park(task, deadline)?;
            (task, message) = (back, Some(m));
        }
    }
}

struct Worker {
    /// Shared with the desired set and the pod's bundle maker: read-only here.
    pod: Arc<Pod>,
    uid: String,
    key: String,
    maker: Box<dyn BundleMaker>,
    config: WorkerConfig,
    store: StatusStore,
    dir: PodStateDir,
    logs: PodLogDir,
    state: PodState,
    status: Option<PodStatus>,
    namespaces: BTreeMap<String, PathBuf>,
    mailbox: Arc<Mail>,
    ending: Arc<Ending>,
    pending: VecDeque<ExitRecord>,
    stop_requested: bool,
    /// When the worker began (for the start latency metric), until it is observed.
    begun: Option<std::time::Instant>,
    /// Probe results per container (absent: no probes, so started and ready).
    probes: BTreeMap<String, ProbeView>,
    /// Image pull backoff per image of this pod (in memory, as the kubelet's).
    pull_backoff: PullBackoff,
    /// The actions of the last pass (the same actions again mean they fail).
    last_actions: Vec<PodAction>,
}

impl Worker {
    fn new(
        pod: Arc<Pod>,
        maker: Box<dyn BundleMaker>,
        config: WorkerConfig,
        store: StatusStore,
        mailbox: Arc<Mail>,
        ending: Arc<Ending>,
    ) -> Self {
        let meta = &pod.metadata;
        let uid = meta.uid.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let name = meta.name.clone().unwrap_or_default();
        let dir = PodStateDir::new(&config.state_root, &uid);
        let pull_backoff = PullBackoff::new(config.backoff);
        let logs = PodLogDir::new(&config.log_root, &namespace, &name, &uid);
        let state = PodState {
            version: STATE_VERSION,
            uid: uid.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
            manifest: None,
            shim_pid: None,
            start_time: SystemTime::now(),
            containers: Vec::new(),
        };
        Self {
            pod,
            key: format!("{namespace}/{name}"),
            uid,
            maker,
            config,
            store,
            dir,
            logs,
            state,
            status: None,
            namespaces: BTreeMap::new(),
            mailbox,
            ending,
            pending: VecDeque::new(),
            stop_requested: false,
            begun: Some(std::time::Instant::now()),
            probes: BTreeMap::new(),
            pull_backoff,
            last_actions: Vec::new(),
        }
    }

    fn event(&self, container: Option<&str>, type_: EventType, reason: &str, message: String) {
        self.store.record_event(
            NewEvent {
                namespace: &self.state.namespace,
                pod: &self.state.name,
                uid: &self.uid,
                field_path: container.map(|c| format!("spec.containers{{{c}}}")),
                type_,
                reason,
                message,
            },
            SystemTime::now(),
        );
    }

    /// Connects to the pod's live shim (re-adoption) or starts a new one.
    fn shim(&mut self) -> Result<PodShim, String> {
        let sock = self.dir.shim_socket();
        let mailbox = Arc::clone(&self.mailbox);
        let on_exit = move |e| {
            mailbox.send(match e {
                ShimEvent::Exited(e) => Event::Exited(e),
                ShimEvent::Closed => Event::ShimLost,
            });
        };
        if let Ok(shim) = PodShim::connect_with(&sock, on_exit.clone()) {
            // A shim started by an older agent may still be in that agent's cgroup.
            if let Ok(pid) = u32::try_from(shim.pid()) {
                self.place_shim(pid);
            }
            return Ok(shim);
        }
        cleanup_dead_shim(
            &self.config.state_root,
            &self.config.runtime_root,
            &self.uid,
        );
        let args = ShimArgs {
            uid: self.uid.clone(),
            runtime_root: self.config.runtime_root.clone(),
            log_max_size: self.config.rotate.max_size,
            log_max_files: self.config.rotate.max_files,
            cgroup_best_effort: self.config.cgroup_best_effort,
        };
        let spawn = |cgroup: Option<&std::path::Path>| {
            spawn_shim(
                &self.config.exe,
                &self.config.state_root,
                &args,
                cgroup,
                Duration::from_secs(10),
            )
        };
        // Started in its pod's cgroup; should that fail (no CLONE_INTO_CGROUP, or the cgroup
        // cannot be made), started where the agent is and moved.
        let cgroup = self.shim_cgroup().and_then(|(mount, rel)| {
            prepare(&mount, &rel)
                .inspect_err(
                    |e| tracing::warn!(pod = %self.key, error = %e, "create the shim's cgroup"),
                )
                .ok()
        });
        let child = match cgroup.as_deref().map(|c| spawn(Some(c))) {
            Some(Ok(child)) => child,
            Some(Err(
                e @ ShimClientError::Io {
                    what: "spawn shim", ..
                },
            )) => {
                tracing::warn!(pod = %self.key, error = %e, "start the shim in its cgroup; moving it there instead");
                let child = spawn(None).map_err(|e| e.to_string())?;
                self.place_shim(child.id());
                child
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => {
                let child = spawn(None).map_err(|e| e.to_string())?;
                self.place_shim(child.id());
                child
            }
        };
        // The shim outlives this worker (and the agent); while the agent lives it is the
        // shim's parent: the reaper thread collects its exit status (no zombie).
        reaper::reap(child);
        PodShim::connect_with(&sock, on_exit).map_err(|e| e.to_string())
    }

    /// Moves a shim out of the agent's cgroup into its pod's (see
    /// [`super::shim::placement`]), so that stopping the agent's cgroup spares it. A shim
    /// already there is left as it is (see [`move_into`]).
    fn place_shim(&self, pid: u32) {
        let Some((mount, rel)) = self.shim_cgroup() else {
            return;
        };
        if let Err(e) = move_into(&mount, &rel, pid) {
            // It still works from the agent's cgroup; it just would not survive its stop.
            tracing::warn!(pod = %self.key, error = %e, "move the shim into its pod's cgroup");
        }
    }

    /// The cgroup2 mount and the shim's cgroup below it; none without `--cgroup-parent`
    /// or a cgroup2 mount.
    fn shim_cgroup(&self) -> Option<(PathBuf, String)> {
        let parent = self.config.cgroup_parent.as_ref()?;
        let pod_cgroup = pod_cgroup(parent, crate::pod::qos::pod_qos(&self.pod), &self.uid);
        match podvisor_runtime::cgroup::mount_point() {
            Ok(mount) => Some((mount, shim_cgroup(&pod_cgroup))),
            Err(e) => {
                tracing::warn!(pod = %self.key, error = %e, "find the cgroup2 mount for the shim");
                None
            }
        }
    }

    /// After a shutdown, waits (bounded) for the shim process to be gone, so that its
    /// cgroup leaf can be removed with the pod's cgroup.
    fn wait_shim_gone(pid: i32) {
        let Some(pid) = rustix::process::Pid::from_raw(pid) else {
            return;
        };
        if let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            let _ = wait_exited(std::os::fd::AsFd::as_fd(&fd), deadline);
        }
    }

    /// The worker's first run: its saved state, its shim (started or re-adopted), and
    /// what happened while no agent listened.
    fn begin(&mut self) -> Result<PodShim, WorkerEnd> {
        if let Ok(Some(saved)) = self.dir.load()
            && saved.uid == self.uid
        {
            self.state = saved;
        }
        ensure_records(&self.pod, &mut self.state.containers);
        // A new pod is visible at once (`ContainerCreating`), not only once its first
        // containers are started, which waits for image pulls. (A re-adopted one is
        // published once its shim's view is applied.)
        let fresh = self
            .state
            .containers
            .iter()
            .all(|r| r.running.is_none() && r.last_exit.is_none());
        if fresh {
            self.publish_status(false);
        }
        let mut shim = match self.shim() {
            Ok(s) => s,
            Err(e) => {
                self.event(
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    e.clone(),
                );
                return Err(WorkerEnd::Failed(e));
            }
        };
        self.state.shim_pid = Some(shim.pid());
        self.adopt(&mut shim);
        Ok(shim)
    }

    /// One pass: applies exits, acts on the plan, publishes the status. `None` when it
    /// acted (a start may unblock the next step: look again at once), else how long to
    /// wait for a message (`Some(None)`: no deadline).
    fn pass(&mut self, shim: &mut PodShim) -> Option<Option<Duration>> {
        self.apply_pending();
        let now = SystemTime::now();
        let probes = self.probes.clone();
        let plan = next_actions(&self.pod, &mut self.state.containers, &probes, now);
        for action in plan.actions.clone() {
            self.act(shim, action);
        }
        self.publish();
        // The same actions just tried again mean something outside fails them: wait a
        // second rather than spin.
        let repeated = !plan.actions.is_empty() && plan.actions == self.last_actions;
        let acted = !plan.actions.is_empty();
        self.last_actions = plan.actions;
        if acted && !repeated {
            return None;
        }
        let mut timeout = plan
            .wake_at
            .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default());
        if repeated {
            timeout = Some(timeout.map_or(RETRY_PAUSE, |t| t.min(RETRY_PAUSE)));
        }
        Some(timeout)
    }

    /// Applies one message; how the worker ended if it did.
    fn handle(&mut self, shim: &mut PodShim, message: Event) -> Option<WorkerEnd> {
        match message {
            Event::Exited(e) => self.pending.push_back(e),
            Event::Stop => self.stop_requested = true,
            Event::Probe(container, update) => self.probe_update(shim, &container, update),
            Event::ShimLost => match self.recover() {
                Ok(new) => *shim = new,
                Err(e) => return Some(WorkerEnd::Failed(e)),
            },
            Event::Detach => {
                self.publish();
                return Some(WorkerEnd::Detached);
            }
        }
        None
    }

    /// Stops the pod, its shim and its state.
    fn finish(&mut self, mut shim: PodShim) -> WorkerEnd {
        self.stop(&mut shim);
        let shim_pid = shim.pid();
        if let Err(e) = shim.shutdown() {
            tracing::warn!(pod = %self.key, error = %e, "shim shutdown");
            self.event(None, EventType::Warning, "FailedKillPod", e.to_string());
        }
        Self::wait_shim_gone(shim_pid);
        let _ = self.dir.remove();
        self.store.remove_pod(&self.key);
        WorkerEnd::Stopped
    }

    /// Re-adoption: exits recorded while no agent listened, and runs the shim lost.
    fn adopt(&mut self, shim: &mut PodShim) {
        if self
            .state
            .containers
            .iter()
            .any(|r| r.running.is_some() || r.last_exit.is_some())
        {
            self.begun = None; // an adopted pod started long ago
        }
        if let Ok((exits, _)) = self.dir.pending_exits() {
            self.pending.extend(exits.into_iter().map(|(_, e)| e));
        }
        self.apply_pending();
        if let Ok((running, namespaces)) = shim.state() {
            self.namespaces = namespaces;
            let lost = reconcile_with_shim(
                &self.pod,
                &mut self.state.containers,
                &running,
                &self.config.backoff,
                SystemTime::now(),
            );
            for c in lost {
                self.event(
                    Some(&c),
                    EventType::Warning,
                    "ContainerStatusUnknown",
                    format!("container {c} was lost"),
                );
            }
            self.resume_probes();
        }
    }

    /// Probes of the runs found running (their view stays started and ready until a probe
    /// of the resumed prober says otherwise).
    fn resume_probes(&mut self) {
        let running: Vec<(String, i32, String)> = self
            .state
            .containers
            .iter()
            .filter_map(|r| {
                let run = r.running.as_ref()?;
                Some((r.name.clone(), run.pid, r.container_id.clone()?))
            })
            .collect();
        for (name, pid, id) in running {
            if let Some((spec, _)) = containers(&self.pod)
                .into_iter()
                .find(|(c, _)| c.name == name)
            {
                let spec = spec.clone();
                // The resumed prober starts from started and ready; so does this view.
                self.probes.remove(&name);
                self.maker.on_adopted(&self.pod, &spec, pid, &id);
            }
        }
    }

    /// The shim connection ended under us (the shim was killed or crashed): reconnect if
    /// a shim still answers, else kill what the dead one ran and start a new one; then
    /// adopt it (recorded exits applied, runs it does not know marked
    /// `ContainerStatusUnknown` and put through the restart policy).
    fn recover(&mut self) -> Result<PodShim, String> {
        self.event(
            None,
            EventType::Warning,
            "ShimLost",
            format!(
                "lost the connection to the shim of pod {}; re-adopting",
                self.state.name
            ),
        );
        // Reconnect to a shim that still answers, or clean up and start a new one; then
        // adopt it like after an agent restart: recorded exits first, then every run
        // the shim does not know is marked lost and goes through the restart policy.
        let mut shim = self.shim()?;
        self.namespaces.clear();
        self.state.shim_pid = Some(shim.pid());
        self.adopt(&mut shim);
        Ok(shim)
    }

    /// Applies a prober's verdict.
    fn probe_update(&mut self, shim: &mut PodShim, container: &str, update: ProbeUpdate) {
        let current = self
            .state
            .containers
            .iter()
            .find(|r| r.name == container && r.running.is_some())
            .map(|r| r.container_id.as_deref().unwrap_or_default());
        // A late verdict about a run that already ended (or about an earlier run) is dropped.
        let Some(update) = update.for_current(current) else {
            return;
        };
        let view = self.probes.entry(container.to_string()).or_default();
        match update {
            ProbeUpdate::Started(b) => view.started = b,
            ProbeUpdate::Ready(b) => view.ready = b,
            ProbeUpdate::Restart { grace, message } => {
                self.kill_for_restart(shim, container, grace, message)
            }
            ProbeUpdate::ForRun { .. } => {} // unwrapped by for_current
        }
    }

    /// Applies queued exits (pushed or read from disk) and removes their files.
    fn apply_pending(&mut self) {
        let now = SystemTime::now();
        while let Some(exit) = self.pending.pop_front() {
            let spec = containers(&self.pod)
                .into_iter()
                .find(|(c, _)| c.name == exit.container)
                .map(|(c, _)| c.clone());
            let log_path = self.logs.log_path(&exit.container, exit.attempt);
            let file = spec
                .as_ref()
                .and_then(|c| self.maker.termination_message_file(&self.pod, c));
            let policy = spec
                .as_ref()
                .and_then(|c| c.termination_message_policy.clone());
            let message = |e: &ExitRecord| {
                let from_file = file
                    .as_deref()
                    .and_then(|f| read_message_file(f).ok().flatten());
                termination_message(policy.as_deref(), e.success(), from_file, || {
                    log_tail_message(&log_path).ok()
                })
            };
            if let Some(c) = spec.as_ref() {
                self.maker.on_exited(&self.pod, c);
            }
            self.probes.remove(&exit.container);
            let decided = apply_recorded_exit(
                &self.pod,
                &mut self.state.containers,
                &exit,
                message,
                &self.config.backoff,
                now,
            );
            if let Some(action) = decided {
                let code = exit.status.exit_code();
                if let super::policy::RestartAction::BackOff { .. } = action {
                    self.event(
                        Some(&exit.container),
                        EventType::Warning,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {}",
                            exit.container, self.state.name
                        ),
                    );
                } else if code != 0 {
                    self.event(
                        Some(&exit.container),
                        EventType::Warning,
                        "Failed",
                        format!("container {} exited with code {code}", exit.container),
                    );
                }
            }
            let file = self
                .dir
                .exits_dir()
                .join(format!("{}.{}.json", exit.container, exit.attempt));
            let _ = self.dir.remove_exit(&file);
        }
    }

    fn record(&mut self, name: &str) -> Option<&mut ContainerRecord> {
        self.state.containers.iter_mut().find(|r| r.name == name)
    }

    fn act(&mut self, shim: &mut PodShim, action: PodAction) {
        match action {
            PodAction::Start {
                container, attempt, ..
            } => self.start_container(shim, &container, attempt),
            PodAction::StopSidecar { container } => {
                let targets = self.targets(&[container]);
                self.stop_targets(shim, &targets);
            }
        }
    }

    fn start_container(&mut self, shim: &mut PodShim, name: &str, attempt: u32) {
        let Some((spec, _)) = containers(&self.pod)
            .into_iter()
            .find(|(c, _)| c.name == name)
        else {
            return;
        };
        let spec = spec.clone();
        let now = SystemTime::now();
        let backoff = self.config.backoff;
        let image = spec.image.clone().unwrap_or_default();
        if let Some(until) = self.pull_backoff.waiting_until(&image, now) {
            // Another container of the pod failed to pull this image: wait it out too.
            if let Some(r) = self.record(name) {
                apply_pull_backoff(r, &image, until);
            }
            return;
        }
        let bundle = match self.maker.make(&self.pod, &spec, attempt, &self.namespaces) {
            Ok(b) => b,
            Err(e) if e.reason == WaitReason::ErrImagePull => {
                self.event(Some(name), EventType::Warning, "Failed", e.message.clone());
                // Measured from the failure, not from the start of a pull that took a while.
                let retry = self.pull_backoff.failed(&image, now, SystemTime::now());
                self.event(
                    Some(name),
                    EventType::Normal,
                    "BackOff",
                    format!("Back-off pulling image \"{image}\""),
                );
                if let Some(r) = self.record(name) {
                    apply_pull_failure(r, e.message, retry);
                }
                return;
            }
            Err(e) => {
                self.event(Some(name), EventType::Warning, "Failed", e.message.clone());
                let failed_at = SystemTime::now();
                if let Some(r) = self.record(name) {
                    apply_start_failure(r, e.reason, e.message, &backoff, failed_at);
                }
                return;
            }
        };
        let hold = self.hold_kinds();
        let id = container_id(&self.uid, name, attempt);
        let request = Request::Run {
            container: name.to_string(),
            attempt,
            id: id.clone(),
            bundle,
            log_path: self.logs.log_path(name, attempt),
            hold_namespaces: hold,
        };
        match shim.run(request) {
            Ok(started) => {
                self.namespaces.extend(started.namespaces);
                let view = ProbeView {
                    started: spec.startup_probe.is_none(),
                    ready: spec.readiness_probe.is_none(),
                };
                self.probes.insert(name.to_string(), view);
                self.maker
                    .on_started(&self.pod, &spec, started.pid, &format!("podvisor://{id}"));
                let image_id = self.maker.image_id(&spec);
                if let Some(r) = self.record(name) {
                    r.restart_count = attempt;
                    if image_id.is_some() {
                        r.image_id = image_id;
                    }
                    r.started(
                        started.pid,
                        started.started_at,
                        Some(format!("podvisor://{id}")),
                    );
                }
                self.event(
                    Some(name),
                    EventType::Normal,
                    "Started",
                    format!("Started container {name}"),
                );
                // Start latency: worker start to the first app container running (a
                // re-adopted pod has nothing to start and records none).
                let is_app = containers(&self.pod)
                    .iter()
                    .any(|(c, k)| c.name == name && *k == super::policy::ContainerKind::Regular);
                if is_app && let Some(begun) = self.begun.take() {
                    self.store.observe_start_latency(begun.elapsed());
                }
                self.run_post_start(shim, &spec, &id);
            }
            Err(e) => {
                let message = e.to_string();
                self.event(Some(name), EventType::Warning, "Failed", message.clone());
                if let Some(r) = self.record(name) {
                    let failed_at = SystemTime::now();
                    apply_start_failure(
                        r,
                        WaitReason::RunContainerError,
                        message,
                        &backoff,
                        failed_at,
                    );
                }
            }
        }
    }

    /// The pod namespaces the next container should create for the shim to hold: those
    /// the pod shares and the shim does not hold yet.
    fn hold_kinds(&self) -> Vec<String> {
        let spec = self.pod.spec.as_ref();
        let mut kinds = Vec::new();
        if !spec.and_then(|s| s.host_network).unwrap_or(false) {
            kinds.extend(["network", "uts"]);
        }
        if !spec.and_then(|s| s.host_ipc).unwrap_or(false) {
            kinds.push("ipc");
        }
        kinds
            .into_iter()
            .filter(|k| !self.namespaces.contains_key(*k))
            .map(str::to_string)
            .collect()
    }

    /// Saves `state.json` and publishes the pod with its status.
    fn publish(&mut self) {
        if let Err(e) = self.dir.save(&self.state) {
            self.event(None, EventType::Warning, "FailedSaveState", e.to_string());
        }
        self.publish_status(true);
    }

    /// Publishes the pod with its status (`sandbox_ready`: the shim holds the pod's
    /// namespaces).
    fn publish_status(&mut self, sandbox_ready: bool) {
        let facts = PodFacts {
            start_time: Some(self.state.start_time),
            sandbox_ready,
            qos_class: Some(crate::pod::qos::pod_qos(&self.pod).as_str().to_owned()),
            ..PodFacts::default()
        };
        let probes = self.probes.clone();
        let status = pod_status(
            &self.pod,
            &self.state.containers,
            &probes,
            &facts,
            self.status.as_ref(),
            SystemTime::now(),
        );
        self.status = Some(status.clone());
        let mut pod = Pod::clone(&self.pod);
        pod.status = Some(status);
        self.store.upsert_pod(PodEntry {
            pod,
            log_dir: self.logs.path().to_path_buf(),
            manifest: self.state.manifest.clone(),
        });
    }
}
