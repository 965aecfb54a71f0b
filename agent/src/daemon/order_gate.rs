//! Start ordering in the agent (`podvisor.io/after`, see [`crate::order`]): before each
//! reconcile pass, [`OrderGate::held`] says which desired pods may not start yet; after it,
//! [`OrderGate::publish`] shows those pods in the status store (phase Pending, every container
//! waiting with reason `WaitingForDependency` or `InvalidDependency` and a message naming what
//! it waits for), so `podvisor ps`/`inspect` and the API see them like any other pod.
//!
//! Level-triggered: the agent's loop runs a pass whenever a pod's `Ready` condition changes
//! (the status store's ready watch), so a held pod starts on the pass after its last
//! dependency turns Ready; nothing polls per pod.
//!
//! Only a pod's *first start* is gated. A pod whose worker exists, or that has a state
//! directory (it ran under an earlier agent and is re-adopted), is never held, and a running
//! pod is never stopped because a dependency became unready.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Pod, PodStatus};

use crate::api::store::{PodEntry, StatusStore, pod_is_ready};
use crate::logs::file::PodLogDir;
use crate::manifest::DesiredSet;
use crate::order::{self, AFTER_ANNOTATION, DesiredPod, Hold, INVALID_DEPENDENCY};
use crate::pod::StaticPod;
use crate::supervise::events::{EventType, NewEvent};
use crate::supervise::phase::{PodFacts, pod_status};
use crate::supervise::podplan::ensure_records;
use crate::supervise::record::{WaitReason, Waiting};
use crate::supervise::state::PodStateDir;

/// A pod held back, as last published.
#[derive(Debug, Clone)]
struct Held {
    pod: Arc<Pod>,
    manifest: PathBuf,
    hold: Hold,
    /// The status last written to the store (None: write it on the next publish).
    published: Option<PodStatus>,
}

/// The agent's start-ordering state.
#[derive(Debug)]
pub struct OrderGate {
    state_root: PathBuf,
    log_root: PathBuf,
    status: StatusStore,
    /// UIDs that started (or were found started): never held again.
    released: BTreeSet<String>,
    /// Held pods by UID.
    held: BTreeMap<String, Held>,
}

impl OrderGate {
    /// Nothing held yet; pod state lives under `state_root`, logs under `log_root`.
    pub fn new(state_root: PathBuf, log_root: PathBuf, status: StatusStore) -> Self {
        Self {
            state_root,
            log_root,
            status,
            released: BTreeSet::new(),
            held: BTreeMap::new(),
        }
    }

    /// Whether pod `uid` is held (not to be started).
    pub fn is_held(&self, uid: &str) -> bool {
        self.held.contains_key(uid)
    }

    /// Decides which pods of `desired` may not start now (`existing`: UIDs with a worker).
    /// Records an event when a pod becomes held, when its reason changes, and when it is
    /// released.
    pub fn held(&mut self, desired: &DesiredSet, existing: &[String]) -> BTreeSet<String> {
        let pods: Vec<(&StaticPod, DesiredPod)> = desired
            .pods
            .values()
            .map(|sp| (sp, ordering_view(sp)))
            .collect();
        let store_keys: BTreeMap<String, String> = pods
            .iter()
            .map(|(sp, d)| (d.key(), sp.full_name()))
            .collect();
        let view: Vec<DesiredPod> = pods.iter().map(|(_, d)| d.clone()).collect();
        let holds = order::holds(&view, |k| {
            store_keys
                .get(k)
                .and_then(|sk| self.status.pod(sk).ok())
                .is_some_and(|e| pod_is_ready(&e.pod))
        });
        let wanted: BTreeSet<&str> = pods.iter().map(|(sp, _)| sp.uid.as_str()).collect();
        self.released.retain(|u| wanted.contains(u.as_str()));
        for gone in self
            .held
            .keys()
            .filter(|u| !wanted.contains(u.as_str()))
            .cloned()
            .collect::<Vec<_>>()
        {
            if let Some(h) = self.held.remove(&gone) {
                self.unpublish(&gone, &h);
            }
        }
        for (sp, d) in &pods {
            let uid = sp.uid.as_str();
            if self.released.contains(uid) {
                continue;
            }
            let hold = holds.get(&d.key());
            if hold.is_none()
                || existing.iter().any(|u| u == uid)
                || PodStateDir::new(&self.state_root, uid)
                    .state_file()
                    .exists()
            {
                self.release(sp);
                continue;
            }
            let Some(hold) = hold else { continue };
            if self.held.get(uid).is_some_and(|h| &h.hold == hold) {
                continue;
            }
            self.hold_event(sp, hold);
            self.held.insert(
                uid.to_owned(),
                Held {
                    pod: sp.pod.clone(),
                    manifest: sp.manifest.clone(),
                    hold: hold.clone(),
                    published: None,
                },
            );
        }
        self.held.keys().cloned().collect()
    }

    /// Writes the status of every held pod whose `namespace/name` no live worker owns
    /// (`live_keys`), when it is missing from the store or differs from what was written.
    pub fn publish(&mut self, live_keys: &BTreeSet<String>) {
        let now = SystemTime::now();
        for (uid, h) in &mut self.held {
            let key = store_key(&h.pod);
            if live_keys.contains(&key) {
                continue;
            }
            let current = self.status.pod(&key).ok();
            let ours = current.as_ref().is_some_and(|e| {
                e.pod.metadata.uid.as_deref() == Some(uid.as_str())
                    && e.pod.status.is_some()
                    && e.pod.status == h.published
            });
            if ours {
                continue;
            }
            let status = held_status(&h.pod, &h.hold, h.published.as_ref(), now);
            h.published = Some(status.clone());
            let mut pod = Pod::clone(&h.pod);
            pod.status = Some(status);
            let meta = &h.pod.metadata;
            let logs = PodLogDir::new(
                &self.log_root,
                meta.namespace.as_deref().unwrap_or("default"),
                meta.name.as_deref().unwrap_or_default(),
                uid,
            );
            self.status.upsert_pod(PodEntry {
                pod,
                log_dir: logs.path().to_path_buf(),
                manifest: Some(h.manifest.clone()),
            });
        }
    }

    fn release(&mut self, sp: &StaticPod) {
        self.released.insert(sp.uid.clone());
        if self.held.remove(&sp.uid).is_some() {
            tracing::info!(pod = %sp.full_name(), "dependencies Ready; starting");
            self.event(
                sp,
                EventType::Normal,
                "DependenciesReady",
                format!(
                    "pods {} are Ready; starting",
                    order::parse_after(annotation(&sp.pod).unwrap_or_default()).join(", ")
                ),
            );
            // The worker's first publish replaces the held entry; nothing to remove.
        }
    }

    fn hold_event(&self, sp: &StaticPod, hold: &Hold) {
        if hold.reason == INVALID_DEPENDENCY {
            tracing::warn!(pod = %sp.full_name(), "{}", hold.message);
            self.event(
                sp,
                EventType::Warning,
                INVALID_DEPENDENCY,
                hold.message.clone(),
            );
        } else {
            tracing::info!(pod = %sp.full_name(), "{}", hold.message);
            self.event(sp, EventType::Normal, hold.reason, hold.message.clone());
        }
    }

    fn event(&self, sp: &StaticPod, type_: EventType, reason: &str, message: String) {
        self.status.record_event(
            NewEvent {
                namespace: sp.pod.metadata.namespace.as_deref().unwrap_or("default"),
                pod: sp.name(),
                uid: &sp.uid,
                field_path: None,
                type_,
                reason,
                message,
            },
            SystemTime::now(),
        );
    }

    /// Removes a held pod's entry, if the store still shows ours (not a live worker's).
    fn unpublish(&self, uid: &str, h: &Held) {
        let key = store_key(&h.pod);
        let ours = self
            .status
            .pod(&key)
            .is_ok_and(|e| e.pod.metadata.uid.as_deref() == Some(uid));
        if ours {
            self.status.remove_pod(&key);
        }
    }
}

fn annotation(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(AFTER_ANNOTATION))
        .map(String::as_str)
}

fn store_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The pod as ordering sees it: its manifest name is its static name without `-<node>`.
fn ordering_view(sp: &StaticPod) -> DesiredPod {
    let name = sp.name();
    let node = sp
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
        .to_lowercase();
    let manifest_name = name
        .strip_suffix(node.as_str())
        .and_then(|n| n.strip_suffix('-'))
        .filter(|_| !node.is_empty())
        .unwrap_or(name);
    DesiredPod {
        namespace: sp.namespace().to_owned(),
        name: manifest_name.to_owned(),
        after: annotation(&sp.pod).map(str::to_owned),
    }
}

/// The status of a held pod: Pending, no sandbox, every container waiting for `hold`.
pub fn held_status(
    pod: &Pod,
    hold: &Hold,
    previous: Option<&PodStatus>,
    now: SystemTime,
) -> PodStatus {
    let reason = if hold.reason == INVALID_DEPENDENCY {
        WaitReason::Other(INVALID_DEPENDENCY.into())
    } else {
        WaitReason::WaitingForDependency
    };
    let mut records = Vec::new();
    ensure_records(pod, &mut records);
    for r in &mut records {
        r.waiting = Some(Waiting {
            reason: reason.clone(),
            message: hold.message.clone(),
        });
    }
    let facts = PodFacts {
        qos_class: Some(crate::pod::qos::pod_qos(pod).as_str().to_owned()),
        ..PodFacts::default()
    };
    pod_status(pod, &records, &BTreeMap::new(), &facts, previous, now)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::order::{OrderError, WAITING_FOR_DEPENDENCY};

    fn static_pod(name: &str, node: &str, after: Option<&str>) -> StaticPod {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(format!("{name}-{node}")),
                namespace: Some("kube-system".into()),
                uid: Some(format!("uid-{name}")),
                annotations: after.map(|a| [(AFTER_ANNOTATION.to_string(), a.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                init_containers: Some(vec![Container {
                    name: "init".into(),
                    ..Container::default()
                }]),
                containers: vec![Container {
                    name: "main".into(),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        StaticPod {
            pod: Arc::new(pod),
            uid: format!("uid-{name}"),
            manifest: PathBuf::from(format!("/m/{name}.yaml")),
            kind: crate::manifest::ManifestKind::Pod,
            qos: crate::pod::QosClass::BestEffort,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn ordering_sees_the_manifest_name_without_the_node_suffix() {
        let cases = [
            ("etcd", "node-1", "etcd"),
            ("kube-apiserver", "n", "kube-apiserver"),
        ];
        for (name, node, want) in cases {
            let d = ordering_view(&static_pod(name, node, Some("etcd")));
            assert_eq!(d.name, want);
            assert_eq!(d.key(), format!("kube-system/{want}"));
            assert_eq!(d.after.as_deref(), Some("etcd"));
        }
    }

    #[test]
    fn held_pods_are_pending_with_every_container_waiting_for_the_reason() {
        let sp = static_pod("api", "n", Some("etcd"));
        let waiting = Hold {
            reason: WAITING_FOR_DEPENDENCY,
            message: "waiting for pods etcd to be Ready".into(),
            waiting_for: vec!["etcd".into()],
            error: None,
        };
        let invalid = Hold {
            reason: INVALID_DEPENDENCY,
            message: "annotation podvisor.io/after names unknown pods: etcd".into(),
            waiting_for: vec![],
            error: Some(OrderError::UnknownPods(vec!["etcd".into()])),
        };
        for (hold, reason) in [
            (&waiting, "WaitingForDependency"),
            (&invalid, "InvalidDependency"),
        ] {
            let st = held_status(&sp.pod, hold, None, SystemTime::UNIX_EPOCH);
            assert_eq!(st.phase.as_deref(), Some("Pending"));
            let all = st
                .init_container_statuses
                .iter()
                .flatten()
                .chain(st.container_statuses.iter().flatten());
            let mut n = 0;
            for c in all {
                n += 1;
                let w = c.state.as_ref().and_then(|s| s.waiting.clone()).unwrap();
                assert_eq!(w.reason.as_deref(), Some(reason), "{}", c.name);
                assert_eq!(w.message.as_deref(), Some(hold.message.as_str()));
                assert!(!c.ready);
            }
            assert_eq!(n, 2);
            let ready = st
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Ready")
                .unwrap();
            assert_eq!(ready.status, "False");
        }
    }
}
