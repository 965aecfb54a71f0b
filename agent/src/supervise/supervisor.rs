//! The set of pod workers, driven by [`reconcile`]: given the desired pods on each pass,
//! it starts workers for new pods, stops those no longer wanted, starts a replaced pod's
//! new version only once the old one is fully gone, and forgets workers that ended.
//!
//! Level-triggered: call [`Supervisor::sync`] with the full desired set whenever the
//! manifests change and whenever a worker may have ended (it is cheap); nothing here
//! blocks on a pod.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::reconcile::{DesiredPod, ObservedPod, ReconcileAction, reconcile};
use super::worker::{BundleMaker, PodWorker, WorkerConfig, WorkerEnd};
use crate::api::store::StatusStore;

/// Makes the bundle maker of one pod.
pub type MakerFactory = Box<dyn Fn(&Pod) -> Box<dyn BundleMaker> + Send>;

struct Entry {
    key: String,
    worker: PodWorker,
    stopping: bool,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field("stopping", &self.stopping)
            .finish()
    }
}

/// All pod workers of the agent.
pub struct Supervisor {
    workers: BTreeMap<String, Entry>,
    config: WorkerConfig,
    store: StatusStore,
    makers: MakerFactory,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

fn identity(pod: &Pod) -> DesiredPod {
    let meta = &pod.metadata;
    DesiredPod {
        uid: meta.uid.clone().unwrap_or_default(),
        key: format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or("default"),
            meta.name.as_deref().unwrap_or_default()
        ),
    }
}

impl Supervisor {
    /// No workers yet.
    pub fn new(config: WorkerConfig, store: StatusStore, makers: MakerFactory) -> Self {
        Self {
            workers: BTreeMap::new(),
            config,
            store,
            makers,
        }
    }

    /// One reconcile pass against the full desired set (each pod with namespace, name
    /// and UID set). Returns the workers that ended since the last pass, by UID.
    pub fn sync(&mut self, desired: &[Arc<Pod>]) -> Vec<(String, WorkerEnd)> {
        let ended = self.reap();
        let wanted: Vec<DesiredPod> = desired.iter().map(|p| identity(p)).collect();
        let observed: BTreeMap<String, ObservedPod> = self
            .workers
            .iter()
            .map(|(uid, e)| {
                (
                    uid.clone(),
                    ObservedPod {
                        key: e.key.clone(),
                        stopping: e.stopping,
                    },
                )
            })
            .collect();
        for action in reconcile(&wanted, &observed) {
            match action {
                ReconcileAction::Stop(uid) => {
                    if let Some(e) = self.workers.get_mut(&uid) {
                        e.worker.stop();
                        e.stopping = true;
                    }
                }
                ReconcileAction::Start(uid) => {
                    let Some(pod) = desired
                        .iter()
                        .find(|p| p.metadata.uid.as_deref() == Some(uid.as_str()))
                    else {
                        continue;
                    };
                    let maker = (self.makers)(pod);
                    let worker = PodWorker::start(
                        Arc::clone(pod),
                        maker,
                        self.config.clone(),
                        self.store.clone(),
                    );
                    self.workers.insert(
                        uid,
                        Entry {
                            key: identity(pod).key,
                            worker,
                            stopping: false,
                        },
                    );
                }
            }
        }
        ended
    }

    /// Removes workers that have ended and returns how they ended.
    fn reap(&mut self) -> Vec<(String, WorkerEnd)> {
        let done: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, e)| e.worker.is_finished())
            .map(|(u, _)| u.clone())
            .collect();
        done.into_iter()
            .filter_map(|uid| self.workers.remove(&uid).map(|e| (uid, e.worker.join())))
            .collect()
    }

    /// Delivers a probe verdict to the worker of pod `uid` (ignored if it has none).
    pub fn probe(&self, uid: &str, container: &str, update: super::worker::ProbeUpdate) {
        if let Some(e) = self.workers.get(uid) {
            e.worker.probe(container, update);
        }
    }

    /// UIDs of the workers that exist (running or stopping).
    pub fn uids(&self) -> Vec<String> {
        self.workers.keys().cloned().collect()
    }

    /// Whether no worker is left.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Agent exit without `--stop-pods-on-exit`: every worker lets go of its pod, which
    /// keeps running under its shim for the next agent to re-adopt.
    pub fn detach_all(self) -> Vec<(String, WorkerEnd)> {
        for e in self.workers.values() {
            e.worker.detach();
        }
        self.workers
            .into_iter()
            .map(|(uid, e)| (uid, e.worker.join()))
            .collect()
    }

    /// Agent exit with `--stop-pods-on-exit`: every pod is stopped gracefully, in
    /// parallel.
    pub fn stop_all(self) -> Vec<(String, WorkerEnd)> {
        for e in self.workers.values() {
            e.worker.stop();
        }
        self.workers
            .into_iter()
            .map(|(uid, e)| (uid, e.worker.join()))
            .collect()
    }
}
