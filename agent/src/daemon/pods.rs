//! The agent's pods: one [`PodWorker`] per pod UID, started, stopped and replaced as the
//! pure [`reconcile`] decides from the desired set. Never blocks: stopping is a message
//! to the pod's own worker thread, and finished workers are collected on the next pass.
//!
//! A pod whose worker could not run (no shim) is retried with a doubling delay; pods
//! found in the state directory at start that no manifest wants any more are adopted
//! just to be stopped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podvisor_rootfs::{PullOptions, Store};

use super::bundle::PodBundles;
use super::cleanup::PodLeftovers;
use crate::api::store::StatusStore;
use crate::logs::file::PodLogDir;
use crate::manifest::DesiredSet;
use crate::pod::{QosClass, StaticPod};
use crate::supervise::events::{EventType, NewEvent};
use crate::supervise::reconcile::{DesiredPod, ObservedPod, ReconcileAction, reconcile};
use crate::supervise::record::WaitReason;
use crate::supervise::state::PodStateDir;
use crate::supervise::worker::{BundleError, BundleMaker, PodWorker, WorkerConfig, WorkerEnd};
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
}

#[derive(Debug)]
struct Running {
    worker: PodWorker,
    key: String,
    namespace: String,
    name: String,
    /// `None` for an orphan (its class is not known).
    qos: Option<QosClass>,
    stopping: bool,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    not_before: Instant,
    delay: Duration,
}

/// The set of pod workers.
#[derive(Debug)]
pub struct Pods {
    env: PodEnv,
    running: BTreeMap<String, Running>,
    retry: BTreeMap<String, Retry>,
}

impl Pods {
    /// No pods yet.
    pub fn new(env: PodEnv) -> Self {
        Self {
            env,
            running: BTreeMap::new(),
            retry: BTreeMap::new(),
        }
    }

    /// How many workers exist (running or stopping).
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether no worker exists.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Adopts pods in the state directory that `desired` does not want, and stops them
    /// (their manifests were removed while no agent ran).
    pub fn stop_orphans(&mut self, desired: &DesiredSet) {
        let wanted: Vec<&str> = desired.pods.values().map(|p| p.uid.as_str()).collect();
        let uids =
            crate::supervise::state::pod_uids(&self.env.worker.state_root).unwrap_or_default();
        for uid in uids {
            if wanted.contains(&uid.as_str()) || self.running.contains_key(&uid) {
                continue;
            }
            let Ok(Some(saved)) = PodStateDir::new(&self.env.worker.state_root, &uid).load() else {
                continue;
            };
            tracing::info!(pod = %saved.name, uid = %uid, "stopping a pod no manifest wants any more");
            let pod = orphan_pod(&saved);
            let worker = PodWorker::start(
                pod,
                Box::new(NoNewRuns),
                self.env.worker.clone(),
                self.env.status.clone(),
            );
            worker.stop();
            self.running.insert(
                uid.clone(),
                Running {
                    worker,
                    key: format!("{}/{}", saved.namespace, saved.name),
                    namespace: saved.namespace.clone(),
                    name: saved.name.clone(),
                    qos: None,
                    stopping: true,
                },
            );
        }
    }

    /// One level-triggered pass: collect finished workers, then start and stop pods so
    /// that the workers match `desired`. Returns the earliest time a retry is due.
    pub fn reconcile(&mut self, desired: &DesiredSet) -> Option<Instant> {
        self.collect_finished();
        let list: Vec<DesiredPod> = desired
            .pods
            .values()
            .map(|p| DesiredPod {
                uid: p.uid.clone(),
                key: p.full_name(),
            })
            .collect();
        let observed: BTreeMap<String, ObservedPod> = self
            .running
            .iter()
            .map(|(uid, r)| {
                (
                    uid.clone(),
                    ObservedPod {
                        key: r.key.clone(),
                        stopping: r.stopping,
                    },
                )
            })
            .collect();
        let now = Instant::now();
        let mut wake = None::<Instant>;
        for action in reconcile(&list, &observed) {
            match action {
                ReconcileAction::Stop(uid) => {
                    if let Some(r) = self.running.get_mut(&uid) {
                        tracing::info!(pod = %r.key, uid = %uid, "stopping pod");
                        r.worker.stop();
                        r.stopping = true;
                    }
                }
                ReconcileAction::Start(uid) => {
                    if let Some(r) = self.retry.get(&uid)
                        && r.not_before > now
                    {
                        wake = Some(wake.map_or(r.not_before, |w| w.min(r.not_before)));
                        continue;
                    }
                    if let Some(pod) = desired.pods.values().find(|p| p.uid == uid) {
                        self.start(pod.clone());
                    }
                }
            }
        }
        wake
    }

    fn start(&mut self, pod: StaticPod) {
        let uid = pod.uid.clone();
        tracing::info!(pod = %pod.full_name(), uid = %uid, "starting pod");
        let mut ctx = self.env.base_ctx.clone();
        ctx.pod_dir = self.env.root.join("pods").join(&uid);
        let host_network = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let node_ip = ctx.host_ip.clone();
        ctx.set_node_ip(&node_ip, host_network);
        let bundles = PodStateDir::new(&self.env.worker.state_root, &uid)
            .path()
            .join("bundles");
        let maker = PodBundles::new(
            pod.clone(),
            ctx,
            self.env.images.clone(),
            self.env.pull.clone(),
            bundles,
        );
        let meta = &pod.pod.metadata;
        let running = Running {
            key: pod.full_name(),
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().unwrap_or_default(),
            qos: Some(pod.qos),
            stopping: false,
            worker: PodWorker::start(
                pod.pod.clone(),
                Box::new(maker),
                self.env.worker.clone(),
                self.env.status.clone(),
            ),
        };
        self.running.insert(uid, running);
    }

    /// Joins the workers that ended: a stopped pod's leftovers are removed, a failed
    /// one is retried later.
    fn collect_finished(&mut self) {
        let done: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| r.worker.is_finished())
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in done {
            let Some(r) = self.running.remove(&uid) else {
                continue;
            };
            match r.worker.join() {
                WorkerEnd::Stopped => {
                    self.retry.remove(&uid);
                    self.remove_leftovers(&uid, &r.namespace, &r.name, r.qos);
                    tracing::info!(pod = %r.key, uid = %uid, "pod stopped and removed");
                }
                WorkerEnd::Detached => {}
                WorkerEnd::Failed(message) => {
                    let delay = self
                        .retry
                        .get(&uid)
                        .map_or(RETRY_INITIAL, |r| (r.delay * 2).min(RETRY_MAX));
                    tracing::warn!(pod = %r.key, uid = %uid, error = %message, ?delay, "pod worker failed; retrying");
                    self.env.status.record_event(
                        NewEvent {
                            namespace: &r.namespace,
                            pod: &r.name,
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

    fn remove_leftovers(&self, uid: &str, namespace: &str, name: &str, qos: Option<QosClass>) {
        let pod_dir = self.env.root.join("pods").join(uid);
        let logs = PodLogDir::new(&self.env.worker.log_root, namespace, name, uid);
        // The QoS of an orphan is unknown: try every class.
        let classes = match qos {
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

    /// Whether some pod is being stopped (its end should be noticed soon, to start its
    /// replacement and remove its leftovers).
    pub fn any_stopping(&self) -> bool {
        self.running
            .values()
            .any(|r| r.stopping || r.worker.is_finished())
    }

    /// Whether every worker has ended.
    pub fn all_finished(&self) -> bool {
        self.running.values().all(|r| r.worker.is_finished())
    }

    /// Agent exit: either stops every pod (`stop`) or lets go of them running, then waits
    /// for the workers (a stop is bounded by each pod's grace period plus the kill wait).
    pub fn shutdown(mut self, stop: bool) {
        for r in self.running.values_mut() {
            if stop {
                r.worker.stop();
                r.stopping = true;
            } else {
                r.worker.detach();
            }
        }
        while !self.running.is_empty() {
            self.collect_finished();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
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
