//! The shared status store: what the supervisor knows, read by the local API, the CLI's
//! server side and the mirror client.
//!
//! The supervisor writes whole pod snapshots (spec + computed status) and events; readers
//! clone what they need under a short read lock, so a slow client never holds up
//! supervision.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::supervise::events::{EventRing, NewEvent, PodEvent};

/// How many distinct events the store keeps.
pub const EVENT_CAPACITY: usize = 1000;

/// One pod as the supervisor last reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEntry {
    /// The pod with its computed `status`.
    pub pod: Pod,
    /// The pod's log directory (`<log-dir>/<ns>_<name>_<uid>`).
    pub log_dir: PathBuf,
    /// The manifest it came from.
    pub manifest: Option<PathBuf>,
}

impl PodEntry {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        let meta = &self.pod.metadata;
        format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or("default"),
            meta.name.as_deref().unwrap_or_default()
        )
    }
}

#[derive(Debug)]
struct Inner {
    pods: BTreeMap<String, PodEntry>,
    events: EventRing,
    manifest_errors: BTreeMap<PathBuf, String>,
    ready_watch: Option<ReadyWatch>,
}

/// Called with a pod's `namespace/name` when its `Ready` condition turns true or stops
/// being true (start ordering re-evaluates then, instead of polling).
#[derive(Clone)]
struct ReadyWatch(Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for ReadyWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadyWatch")
    }
}

/// The container of `pod` that `wanted` names, or by default the one the
/// `kubectl.kubernetes.io/default-container` annotation names, else the first app container
/// (as kubectl picks for `logs` and `exec`). Errors are `(400, message)`: the pod has no
/// containers, or the name is not one of them (the message lists them, as kubectl's).
pub fn pick_container(pod: &Pod, wanted: Option<&str>) -> Result<String, (u16, String)> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let app = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    let default = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubectl.kubernetes.io/default-container").cloned())
        .or_else(|| app.first().map(|c| c.name.clone()));
    let Some(container) = wanted.map(str::to_string).or(default) else {
        return Err((400, format!("pod {pod_name} has no containers")));
    };
    let mut names = init.iter().chain(app).map(|c| c.name.as_str());
    if names.clone().any(|n| n == container) {
        return Ok(container);
    }
    Err((
        400,
        format!(
            "container {container} is not valid for pod {pod_name}, choose one of: [{}]",
            names.by_ref().collect::<Vec<_>>().join(" ")
        ),
    ))
}

/// Whether the pod's `Ready` condition is `True`.
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The store: cheap to clone, shared between the supervisor and the API threads.
#[derive(Debug, Clone)]
pub struct StatusStore {
    inner: Arc<RwLock<Inner>>,
    start_latency: Histogram,
}

impl Default for StatusStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a pod name did not resolve to one pod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No pod has that name.
    #[error("pod {0:?} not found")]
    NotFound(String),
    /// The name exists in several namespaces.
    #[error("pod name {name:?} is ambiguous, use one of: {}", candidates.join(", "))]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// `namespace/name` of each match.
        candidates: Vec<String>,
    },
}

impl StatusStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(RwLock::new(Inner {
                pods: BTreeMap::new(),
                events: EventRing::new(EVENT_CAPACITY),
                manifest_errors: BTreeMap::new(),
                ready_watch: None,
            })),
            // 1 ms .. ~16 s
            start_latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
        }
    }

    // A poisoned lock means a writer panicked mid-update of plain data; the data is still
    // a valid snapshot, so keep serving it.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inserts or replaces a pod (keyed by `namespace/name`).
    pub fn upsert_pod(&self, entry: PodEntry) {
        let key = entry.key();
        let ready = pod_is_ready(&entry.pod);
        let mut inner = self.write();
        let was = inner.pods.insert(key.clone(), entry);
        let watch = inner.ready_watch.clone();
        drop(inner);
        Self::ready_changed(watch, &key, was.as_ref(), ready);
    }

    /// Removes a pod by `namespace/name`.
    pub fn remove_pod(&self, key: &str) -> Option<PodEntry> {
        self.remove_pod_if(key, |_| true)
    }

    /// Removes pod `key` if it is the one with UID `uid` (a newer pod of that name stays).
    pub fn remove_pod_with_uid(&self, key: &str, uid: &str) -> Option<PodEntry> {
        self.remove_pod_if(key, |e| e.pod.metadata.uid.as_deref() == Some(uid))
    }

    fn remove_pod_if(&self, key: &str, which: impl Fn(&PodEntry) -> bool) -> Option<PodEntry> {
        let mut inner = self.write();
        if !inner.pods.get(key).is_some_and(which) {
            return None;
        }
        let was = inner.pods.remove(key);
        let watch = inner.ready_watch.clone();
        drop(inner);
        Self::ready_changed(watch, key, was.as_ref(), false);
        was
    }

    /// Calls `f(namespace/name)` (outside the store's lock) whenever a pod's readiness
    /// changes; replaces any earlier watcher.
    pub fn watch_ready(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        self.write().ready_watch = Some(ReadyWatch(Arc::new(f)));
    }

    fn ready_changed(watch: Option<ReadyWatch>, key: &str, was: Option<&PodEntry>, now: bool) {
        let before = was.is_some_and(|e| pod_is_ready(&e.pod));
        if let Some(ReadyWatch(f)) = watch.filter(|_| before != now) {
            f(key);
        }
    }

    /// All pods, sorted by `namespace/name`.
    pub fn pods(&self) -> Vec<PodEntry> {
        self.read().pods.values().cloned().collect()
    }

    /// Runs `f` over every pod under the read lock, without copying them (to serialize or
    /// count them; `f` must not block: the supervisor waits to publish meanwhile).
    pub fn with_pods<R>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &PodEntry>) -> R) -> R {
        f(&mut self.read().pods.values())
    }

    /// One pod by `namespace/name` or by a name unique across namespaces.
    pub fn pod(&self, name: &str) -> Result<PodEntry, LookupError> {
        let inner = self.read();
        if let Some(p) = inner.pods.get(name) {
            return Ok(p.clone());
        }
        let matches: Vec<&PodEntry> = inner
            .pods
            .values()
            .filter(|p| p.pod.metadata.name.as_deref() == Some(name))
            .collect();
        match matches.as_slice() {
            [] => Err(LookupError::NotFound(name.to_string())),
            [one] => Ok((*one).clone()),
            many => Err(LookupError::Ambiguous {
                name: name.to_string(),
                candidates: many.iter().map(|p| p.key()).collect(),
            }),
        }
    }

    /// Records a pod event at `now` (aggregated).
    pub fn record_event(&self, event: NewEvent<'_>, now: SystemTime) {
        self.write().events.record(event, now);
    }

    /// All events, oldest first; only those of pod `name` when given.
    pub fn events(&self, pod: Option<&str>) -> Vec<PodEvent> {
        let inner = self.read();
        inner
            .events
            .iter()
            .filter(|e| pod.is_none_or(|p| e.pod == p || format!("{}/{}", e.namespace, e.pod) == p))
            .cloned()
            .collect()
    }

    /// Marks a manifest as invalid with its error (shown by the API and counted in metrics).
    pub fn set_manifest_error(&self, path: PathBuf, error: String) {
        self.write().manifest_errors.insert(path, error);
    }

    /// Clears a manifest's error (it parsed again, or it is gone).
    pub fn clear_manifest_error(&self, path: &std::path::Path) {
        self.write().manifest_errors.remove(path);
    }

    /// Manifests currently in error.
    pub fn manifest_errors(&self) -> BTreeMap<PathBuf, String> {
        self.read().manifest_errors.clone()
    }

    /// Observes one pod's start latency (manifest seen → first workload process running).
    pub fn observe_start_latency(&self, latency: Duration) {
        self.start_latency.observe(latency.as_secs_f64());
    }

    /// The start latency histogram (for the metrics registry).
    pub fn start_latency(&self) -> &Histogram {
        &self.start_latency
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    #[test]
    fn pick_container_defaults_like_kubectl() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "init"}],
                "containers": [{"name": "a"}, {"name": "b"}]
            }
        }))
        .unwrap();
        assert_eq!(pick_container(&pod, None).unwrap(), "a");
        assert_eq!(pick_container(&pod, Some("init")).unwrap(), "init");
        let (code, msg) = pick_container(&pod, Some("zz")).unwrap_err();
        assert_eq!(code, 400);
        assert!(msg.ends_with("choose one of: [init a b]"), "{msg}");
        let mut annotated = pod.clone();
        annotated.metadata.annotations = Some(
            [(
                "kubectl.kubernetes.io/default-container".to_owned(),
                "b".to_owned(),
            )]
            .into(),
        );
        assert_eq!(pick_container(&annotated, None).unwrap(), "b");
        let empty: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "e"}})).unwrap();
        assert_eq!(
            pick_container(&empty, None).unwrap_err().1,
            "pod e has no containers"
        );
    }

    pub(crate) fn entry(ns: &str, name: &str) -> PodEntry {
        PodEntry {
            pod: Pod {
                metadata: ObjectMeta {
                    namespace: Some(ns.into()),
                    name: Some(name.into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            log_dir: PathBuf::from("/nonexistent"),
            manifest: None,
        }
    }

    #[test]
    fn removal_by_uid_spares_a_newer_pod_of_the_same_name() {
        let store = StatusStore::new();
        let mut newer = entry("default", "web-n1");
        newer.pod.metadata.uid = Some("new".into());
        store.upsert_pod(newer);
        assert!(store.remove_pod_with_uid("default/web-n1", "old").is_none());
        assert!(store.pod("default/web-n1").is_ok());
        assert!(store.remove_pod_with_uid("default/web-n1", "new").is_some());
        assert!(store.pod("default/web-n1").is_err());
    }

    #[test]
    fn lookup_by_name_or_key_and_ambiguity() {
        let store = StatusStore::new();
        store.upsert_pod(entry("kube-system", "etcd-n1"));
        store.upsert_pod(entry("default", "web-n1"));
        store.upsert_pod(entry("other", "web-n1"));
        assert_eq!(store.pod("etcd-n1").unwrap().key(), "kube-system/etcd-n1");
        assert_eq!(store.pod("other/web-n1").unwrap().key(), "other/web-n1");
        assert_eq!(
            store.pod("web-n1"),
            Err(LookupError::Ambiguous {
                name: "web-n1".into(),
                candidates: vec!["default/web-n1".into(), "other/web-n1".into()]
            })
        );
        assert_eq!(store.pod("nope"), Err(LookupError::NotFound("nope".into())));
        assert!(store.remove_pod("other/web-n1").is_some());
        assert_eq!(store.pod("web-n1").unwrap().key(), "default/web-n1");
        assert_eq!(store.pods().len(), 2);
    }

    #[test]
    fn ready_watch_fires_only_when_readiness_changes() {
        use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
        use std::sync::Mutex;
        let with_ready = |ready: Option<bool>| {
            let mut e = entry("kube-system", "etcd-n1");
            e.pod.status = ready.map(|r| PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if r { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            });
            e
        };
        let store = StatusStore::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        store.watch_ready(move |k| s.lock().unwrap().push(k.to_string()));
        // (what happens, fires)
        let steps: Vec<(&str, bool)> = vec![
            ("insert unready", false),
            ("unready again", false),
            ("ready", true),
            ("ready again", false),
            ("status gone", true),
            ("ready", true),
            ("removed while ready", true),
        ];
        for (step, fires) in steps {
            let before = seen.lock().unwrap().len();
            match step {
                "insert unready" | "unready again" => store.upsert_pod(with_ready(Some(false))),
                "ready" | "ready again" => store.upsert_pod(with_ready(Some(true))),
                "status gone" => store.upsert_pod(with_ready(None)),
                _ => {
                    store.remove_pod("kube-system/etcd-n1");
                }
            }
            let after = seen.lock().unwrap().len();
            assert_eq!(after - before, usize::from(fires), "{step}");
        }
        assert!(
            seen.lock()
                .unwrap()
                .iter()
                .all(|k| k == "kube-system/etcd-n1")
        );
    }
}
