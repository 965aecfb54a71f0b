//! The mirror task's only input: a versioned store the supervisor writes into without ever
//! waiting on the API server. Latest-value semantics for pods and statuses (memory bounded by
//! the number of static pods) and a bounded, coalescing queue for events.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, PodStatus};

use super::decide::PodKey;
use super::events::{EventQueue, MirrorEvent};

/// One static pod as the supervisor knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticPodState {
    /// The defaulted Pod (suffixed name, namespace, nodeName, labels, annotations, spec).
    pub pod: Pod,
    /// Its config hash (= its UID).
    pub config_hash: String,
    /// The current status, `None` until the supervisor has one.
    pub status: Option<PodStatus>,
}

impl StaticPodState {
    /// Split a supervisor's Pod (status included) into the mirror's input; the config hash is
    /// the `kubernetes.io/config.hash` annotation, or the UID when it is missing.
    pub fn from_pod(mut pod: Pod) -> Self {
        let status = pod.status.take();
        let m = &pod.metadata;
        let config_hash = m
            .annotations
            .as_ref()
            .and_then(|a| a.get(super::pod::HASH_ANNOTATION))
            .or(m.uid.as_ref())
            .cloned()
            .unwrap_or_default();
        Self {
            pod,
            config_hash,
            status,
        }
    }

    /// `(namespace, name)`.
    pub fn key(&self) -> PodKey {
        let m = &self.pod.metadata;
        (
            m.namespace.clone().unwrap_or_else(|| "default".into()),
            m.name.clone().unwrap_or_default(),
        )
    }

    /// Finished for good: phase `Succeeded` or `Failed`.
    pub fn terminal(&self) -> bool {
        let phase = self.status.as_ref().and_then(|s| s.phase.as_deref());
        matches!(phase, Some("Succeeded" | "Failed"))
    }
}

/// A watch event from the API, tagged with the watch it came from.
#[derive(Debug, Clone)]
pub(crate) enum WatchItem {
    /// ADDED or MODIFIED.
    Upsert(u64, Box<Pod>),
    /// DELETED.
    Deleted(u64, Box<Pod>),
    /// The watch ended (timeout, error, 410 Gone): re-list.
    Ended(u64),
}

/// Maximum watch events held between two passes of the task before it re-lists instead.
const WATCH_QUEUE: usize = 1024;

#[derive(Debug)]
pub(crate) struct State {
    pub pods: BTreeMap<PodKey, StaticPodState>,
    pub pods_version: u64,
    pub events: EventQueue,
    pub watch: VecDeque<WatchItem>,
    pub watch_overflow: bool,
    pub dirty: bool,
    pub stop: bool,
}

#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    pub(crate) fn new(event_capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                pods: BTreeMap::new(),
                pods_version: 0,
                events: EventQueue::new(event_capacity),
                watch: VecDeque::new(),
                watch_overflow: false,
                dirty: true,
                stop: false,
            }),
            wake: Condvar::new(),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Change the state and wake the task.
    pub(crate) fn update(&self, f: impl FnOnce(&mut State)) {
        let mut state = self.lock();
        f(&mut state);
        state.dirty = true;
        drop(state);
        self.wake.notify_all();
    }

    /// Queue a watch event (or mark overflow, which makes the task re-list).
    pub(crate) fn push_watch(&self, item: WatchItem) {
        self.update(|s| {
            if s.watch.len() >= WATCH_QUEUE {
                s.watch.clear();
                s.watch_overflow = true;
            }
            s.watch.push_back(item);
        });
    }

    /// Wait until something changed or `deadline`; returns the state lock.
    pub(crate) fn wait(&self, deadline: Instant) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            if state.dirty || state.stop || now >= deadline {
                state.dirty = false;
                return state;
            }
            let timeout = deadline
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            state = self
                .wake
                .wait_timeout(state, timeout)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The supervisor's side of the mirror: cheap to clone, and no method waits for the network.
#[derive(Debug, Clone)]
pub struct MirrorHandle {
    pub(crate) shared: Arc<Shared>,
}

impl MirrorHandle {
    /// A handle with no task behind it (no kubeconfig): every call is accepted and forgotten
    /// beyond the latest value, so the supervisor can hold one unconditionally.
    pub fn disconnected() -> Self {
        Self {
            shared: Shared::new(1),
        }
    }

    /// Replace the whole set of static pods (the supervisor's snapshot).
    pub fn set_static_pods(&self, pods: impl IntoIterator<Item = StaticPodState>) {
        let pods: BTreeMap<PodKey, StaticPodState> =
            pods.into_iter().map(|p| (p.key(), p)).collect();
        self.shared.update(|s| {
            if s.pods != pods {
                s.pods = pods;
                s.pods_version += 1;
            }
        });
    }

    /// Update the status of the static pod with this config hash; false if it is unknown.
    pub fn set_status(&self, config_hash: &str, status: PodStatus) -> bool {
        let mut found = false;
        self.shared.update(|s| {
            if let Some(p) = s.pods.values_mut().find(|p| p.config_hash == config_hash) {
                found = true;
                if p.status.as_ref() != Some(&status) {
                    p.status = Some(status);
                    s.pods_version += 1;
                }
            }
        });
        found
    }

    /// Record a lifecycle event for the API (queued, coalesced, rate-limited, bounded).
    pub fn record_event(&self, event: MirrorEvent) {
        self.shared
            .update(|s| s.events.push(event, super::wall_clock()));
    }

    /// Ask the task to exit after its current call.
    pub fn stop(&self) {
        self.shared.update(|s| s.stop = true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(hash: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("etcd-n1".into()),
                namespace: Some("kube-system".into()),
                uid: Some(hash.into()),
                annotations: Some(
                    [(
                        super::super::pod::HASH_ANNOTATION.to_owned(),
                        hash.to_owned(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                phase: Some("Succeeded".into()),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn from_pod_splits_status_and_reads_the_hash() {
        let s = StaticPodState::from_pod(pod("h1"));
        assert_eq!(s.config_hash, "h1");
        assert!(s.pod.status.is_none());
        assert!(s.terminal());
        assert_eq!(s.key(), ("kube-system".to_owned(), "etcd-n1".to_owned()));
    }

    #[test]
    fn handle_versions_only_real_changes_and_rejects_unknown_hashes() {
        let h = MirrorHandle::disconnected();
        h.set_static_pods([StaticPodState::from_pod(pod("h1"))]);
        h.set_static_pods([StaticPodState::from_pod(pod("h1"))]);
        assert_eq!(h.shared.lock().pods_version, 1);
        let running = PodStatus {
            phase: Some("Running".into()),
            ..PodStatus::default()
        };
        assert!(h.set_status("h1", running.clone()));
        assert!(h.set_status("h1", running));
        assert_eq!(h.shared.lock().pods_version, 2);
        assert!(!h.set_status("other", PodStatus::default()));
    }
}
