//! The agent's pods over the [`Supervisor`] (one worker per pod UID, driven by the pure
//! reconcile): what the agent adds around it.
//!
//! - each pod's bundle maker ([`PodBundles`]) built from its [`StaticPod`];
//! - pods found in the state directory at start that no manifest wants any more
//!   ("orphans", their manifest removed while no agent ran): adopted on the first pass
//!   with a maker that never starts a run, then stopped by the next pass like any
//!   removed pod (a new version of the same pod waits for them, as for an edit);
//! - a pod whose worker failed (no shim) is retried after a doubling delay, not at once;
//! - a stopped pod's leftovers (root filesystems, pod directory, cgroups, logs) removed;
//! - start ordering (`podvisor.io/after`): a pod [`OrderGate`] holds is not started yet.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podvisor_rootfs::{PullOptions, Store};

use super::bundle::PodBundles;
use super::cleanup::PodLeftovers;
use super::order_gate::OrderGate;
use super::probes::{PodProbes, update_of};
use crate::api::store::StatusStore;
use crate::logs::file::PodLogDir;
use crate::manifest::DesiredSet;
use crate::pod::{QosClass, StaticPod};
use crate::probe::engine::{Engine, ProbeReport};
use crate::probe::state::ProbeAction;
use crate::supervise::events::{EventType, NewEvent};
use crate::supervise::record::WaitReason;
use crate::supervise::state::PodStateDir;
use crate::supervise::supervisor::Supervisor;
use crate::supervise::worker::{BundleError, BundleMaker, WorkerConfig, WorkerEnd};
use crate::translate::PodContext;

/// The first retry delay of a pod whose worker failed; doubles up to [`RETRY_MAX`].
const RETRY_INITIAL: Duration = Duration::from_secs(1);
/// The longest retry delay of a failed pod worker.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Everything a pod worker is started with.
#[derive(Debug, Clone)]
pub struct PodEnv {
    /// Worker settings (binary, directories, backoff, rotation).
    pub worker: WorkerConfig,
    /// `--root`.
    pub root: PathBuf,
    /// The image store.
    pub images: Store,
    /// Registry settings for pulls.
    pub pull: PullOptions,
    /// The context every pod starts from (node facts, cgroup parent).
    pub base_ctx: PodContext,
    /// The status store the API serves.
    pub status: StatusStore,
    /// The probe engine (None: probes are not run).
    pub probes: Option<Arc<Engine>>,
}

/// What the agent remembers of a pod it started, to clean up after it.
#[derive(Debug, Clone)]
struct Known {
    key: String,
    namespace: String,
    name: String,
    /// `None` for an orphan (its class is not known).
    qos: Option<QosClass>,
    containers: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    not_before: Instant,
    delay: Duration,
}

type StaticPods = Arc<Mutex<BTreeMap<String, StaticPod>>>;

/// The agent's pods.
pub struct Pods {
    env: PodEnv,
    supervisor: Supervisor,
    /// Desired pods by UID, read by the maker factory.
    statics: StaticPods,
    known: BTreeMap<String, Known>,
    orphans: Vec<Arc<Pod>>,
    retry: BTreeMap<String, Retry>,
    order: OrderGate,
}

impl std::fmt::Debug for Pods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pods")
            .field("known", &self.known)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Pods {
    /// No pods yet.
    pub fn new(env: PodEnv) -> Self {
        let statics: StaticPods = Arc::default();
        let factory = {
            let statics = statics.clone();
            let env = env.clone();
            move |pod: &Pod| -> Box<dyn BundleMaker> {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let found = statics
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&uid)
                    .cloned();
                match found {
                    Some(sp) => Box::new(bundles_for(&env, sp)),
                    None => Box::new(NoNewRuns),
                }
            }
        };
        let supervisor = Supervisor::new(env.worker.clone(), env.status.clone(), Box::new(factory));
        let order = OrderGate::new(
            env.worker.state_root.clone(),
            env.worker.log_root.clone(),
            env.status.clone(),
        );
        Self {
            env,
            order,
            supervisor,
            statics,
            known: BTreeMap::new(),
            orphans: Vec::new(),
            retry: BTreeMap::new(),
        }
    }

    /// Finds the pods in the state directory that `desired` does not want; the next
    /// pass adopts them and the one after stops them.
    pub fn find_orphans(&mut self, desired: &DesiredSet) {
        let wanted: Vec<&str> = desired.pods.values().map(|p| p.uid.as_str()).collect();
        let state = &self.env.worker.state_root;
        for uid in crate::supervise::state::pod_uids(state).unwrap_or_default() {
            if wanted.contains(&uid.as_str()) {
                continue;
            }
            let Ok(Some(saved)) = PodStateDir::new(state, &uid).load() else {
                continue;
            };
            tracing::info!(pod = %saved.name, uid = %uid, "stopping a pod no manifest wants any more");
            self.known.insert(
                uid,
                Known {
                    key: format!("{}/{}", saved.namespace, saved.name),
                    namespace: saved.namespace.clone(),
                    name: saved.name.clone(),
                    qos: None,
                    containers: saved.containers.iter().map(|c| c.name.clone()).collect(),
                },
            );
            self.orphans.push(Arc::new(orphan_pod(&saved)));
        }
    }

    /// One level-triggered pass. Returns the earliest time a retry is due.
    pub fn reconcile(&mut self, desired: &DesiredSet) -> Option<Instant> {
        let now = Instant::now();
        let existing = self.supervisor.uids();
        self.forget_failed(desired, &existing);
        let held = self.order.held(desired, &existing);
        let mut wake = None::<Instant>;
        let mut pods: Vec<Arc<Pod>> = Vec::new();
        {
            let mut statics = self.statics.lock().unwrap_or_else(PoisonError::into_inner);
            statics.clear();
            for sp in desired.pods.values() {
                if held.contains(&sp.uid) {
                    continue;
                }
                if !existing.contains(&sp.uid)
                    && let Some(r) = self.retry.get(&sp.uid)
                    && r.not_before > now
                {
                    wake = Some(wake.map_or(r.not_before, |w| w.min(r.not_before)));
                    continue;
                }
                statics.insert(sp.uid.clone(), sp.clone());
                self.known.entry(sp.uid.clone()).or_insert_with(|| Known {
                    key: sp.full_name(),
                    namespace: sp.namespace().to_owned(),
                    name: sp.name().to_owned(),
                    qos: Some(sp.qos),
                    containers: container_names(&sp.pod),
                });
                pods.push(Arc::clone(&sp.pod));
            }
        }
        // Orphans are desired exactly once: adopted by this pass, stopped by the next.
        pods.append(&mut self.orphans);
        let ended = self.supervisor.sync(&pods);
        self.handle_ended(ended);
        let live: std::collections::BTreeSet<String> = self
            .supervisor
            .uids()
            .iter()
            .filter_map(|u| self.known.get(u).map(|k| k.key.clone()))
            .collect();
        self.order.publish(&live);
        wake
    }

    /// Whether some pod is being stopped or waits for a retry (the loop should look again
    /// soon). Pods held by start ordering do not count: a readiness change wakes the loop.
    pub fn busy(&self, desired: Option<&DesiredSet>) -> bool {
        let mut running = self.supervisor.uids();
        running.sort();
        let mut wanted: Vec<String> = desired
            .map(|d| {
                d.pods
                    .values()
                    .filter(|p| !self.order.is_held(&p.uid))
                    .map(|p| p.uid.clone())
                    .collect()
            })
            .unwrap_or_default();
        wanted.sort();
        running != wanted || !self.orphans.is_empty()
    }

    /// Pods whose worker failed (waiting for a retry) and which no manifest wants any more:
    /// their retry, leftovers and published status go (no worker will stop them).
    fn forget_failed(&mut self, desired: &DesiredSet, existing: &[String]) {
        let gone: Vec<String> = self
            .retry
            .keys()
            .filter(|uid| !existing.contains(uid) && !desired.pods.values().any(|p| &p.uid == *uid))
            .cloned()
            .collect();
        for uid in gone {
            self.retry.remove(&uid);
            if let Some(k) = self.known.remove(&uid) {
                self.remove_leftovers(&uid, &k);
                self.env.status.remove_pod_with_uid(&k.key, &uid);
                tracing::info!(pod = %k.key, uid = %uid, "failed pod removed");
            }
        }
    }

    fn handle_ended(&mut self, ended: Vec<(String, WorkerEnd)>) {
        for (uid, end) in ended {
            let known = self.known.get(&uid).cloned();
            match end {
                WorkerEnd::Stopped => {
                    self.retry.remove(&uid);
                    if let Some(k) = self.known.remove(&uid) {
                        if let Some(engine) = &self.env.probes {
                            PodProbes::remove(engine, &uid, &k.containers);
                        }
                        self.remove_leftovers(&uid, &k);
                        tracing::info!(pod = %k.key, uid = %uid, "pod stopped and removed");
                    }
                }
                WorkerEnd::Detached => {}
                WorkerEnd::Failed(message) => {
                    let delay = self
                        .retry
                        .get(&uid)
                        .map_or(RETRY_INITIAL, |r| (r.delay * 2).min(RETRY_MAX));
                    let (namespace, name, key) = known
                        .map(|k| (k.namespace, k.name, k.key))
                        .unwrap_or_default();
                    tracing::warn!(pod = %key, uid = %uid, error = %message, ?delay, "pod worker failed; retrying");
                    self.env.status.record_event(
                        NewEvent {
                            namespace: &namespace,
                            pod: &name,
                            uid: &uid,
                            field_path: None,
                            type_: EventType::Warning,
                            reason: "FailedCreatePodSandBox",
                            message: format!("{message} (retrying in {delay:?})"),
                        },
                        SystemTime::now(),
                    );
                    self.retry.insert(
                        uid,
                        Retry {
                            not_before: Instant::now() + delay,
                            delay,
                        },
                    );
                }
            }
        }
    }

    /// Acts on a probe report: a verdict goes to the pod's worker, an event to the store.
    pub fn probe(&self, report: &ProbeReport) {
        let uid = &report.key.pod_uid;
        if let Some(update) = update_of(report) {
            self.supervisor.probe(uid, &report.key.container, update);
        }
        if let (ProbeAction::Event(e), Some(k)) = (&report.action, self.known.get(uid)) {
            self.env.status.record_event(
                NewEvent {
                    namespace: &k.namespace,
                    pod: &k.name,
                    uid,
                    field_path: Some(format!("spec.containers{{{}}}", report.key.container)),
                    type_: match e.event_type {
                        crate::probe::state::EventType::Normal => EventType::Normal,
                        crate::probe::state::EventType::Warning => EventType::Warning,
                    },
                    reason: e.reason,
                    message: e.message.clone(),
                },
                SystemTime::now(),
            );
        }
    }

    fn remove_leftovers(&self, uid: &str, k: &Known) {
        let pod_dir = self.env.root.join("pods").join(uid);
        let logs = PodLogDir::new(&self.env.worker.log_root, &k.namespace, &k.name, uid);
        let classes = match k.qos {
            Some(q) => vec![q],
            None => vec![
                QosClass::Guaranteed,
                QosClass::Burstable,
                QosClass::BestEffort,
            ],
        };
        for class in classes {
            let leftovers = PodLeftovers {
                uid,
                pod_dir: &pod_dir,
                log_dir: logs.path(),
                cgroup: PodLeftovers::cgroup_of(&self.env.base_ctx.cgroup_parent, class, uid),
            };
            for problem in leftovers.remove(&self.env.images) {
                tracing::warn!(uid, "{problem}");
            }
        }
    }

    /// Agent exit: either stops every pod (`stop`, in parallel, then removes what they
    /// leave) or lets go of them running, and waits for the workers.
    pub fn shutdown(mut self, stop: bool) {
        let placeholder = Supervisor::new(
            self.env.worker.clone(),
            self.env.status.clone(),
            Box::new(|_: &Pod| -> Box<dyn BundleMaker> { Box::new(NoNewRuns) }),
        );
        let supervisor = std::mem::replace(&mut self.supervisor, placeholder);
        let ended = if stop {
            supervisor.stop_all()
        } else {
            supervisor.detach_all()
        };
        self.handle_ended(ended);
    }
}

/// The bundle maker of one desired pod: its pod directory under `--root`, its bundles
/// under its state directory.
fn bundles_for(env: &PodEnv, pod: StaticPod) -> PodBundles {
    let mut ctx = env.base_ctx.clone();
    ctx.pod_dir = env.root.join("pods").join(&pod.uid);
    let host_network = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let node_ip = ctx.host_ip.clone();
    ctx.set_node_ip(&node_ip, host_network);
    let bundles = PodStateDir::new(&env.worker.state_root, &pod.uid)
        .path()
        .join("bundles");
    let probes = env
        .probes
        .as_ref()
        .map(|engine| PodProbes::new(engine.clone(), &pod.uid, &ctx.pod_ip, host_network));
    PodBundles::new(
        pod,
        ctx,
        env.images.clone(),
        env.pull.clone(),
        bundles,
        probes,
    )
}

/// Names of a pod's init and app containers.
fn container_names(pod: &Pod) -> Vec<String> {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| c.name.clone())
        .collect()
}

/// A maker for orphans being stopped: it never starts a new run.
#[derive(Debug)]
struct NoNewRuns;

impl BundleMaker for NoNewRuns {
    fn make(
        &mut self,
        _pod: &Pod,
        c: &Container,
        _attempt: u32,
        _namespaces: &BTreeMap<String, PathBuf>,
    ) -> Result<PathBuf, BundleError> {
        Err(BundleError {
            reason: WaitReason::Other("PodRemoved".into()),
            message: format!("container {}: its pod's manifest was removed", c.name),
        })
    }
}

/// A pod standing for one found in the state directory without a manifest: its
/// identity and container names, enough to stop it.
fn orphan_pod(saved: &crate::supervise::state::PodState) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(saved.name.clone()),
            namespace: Some(saved.namespace.clone()),
            uid: Some(saved.uid.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: saved
                .containers
                .iter()
                .map(|c| Container {
                    name: c.name.clone(),
                    ..Container::default()
                })
                .collect(),
            restart_policy: Some("Never".into()),
            termination_grace_period_seconds: Some(30),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}
