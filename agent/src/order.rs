//! Start ordering between static pods: the annotation `podvisor.io/after: etcd[,other]` holds
//! a pod (waiting reason `WaitingForDependency`) until every named pod is Ready, so a
//! kubeadm-style control plane comes up in order instead of crash-looping kube-apiserver into
//! backoff. Names are pod names as written in the manifests (`metadata.name`, without the
//! node suffix), in the pod's own namespace; `namespace/name` names a pod of another one.
//!
//! [`holds`] is a pure function of the desired pods and which of them are Ready; the agent
//! (`daemon::order_gate`) calls it on every reconcile pass. Ordering gates only the *first
//! start* of a pod: once started, a pod is never stopped or held back because a dependency
//! later becomes unready (the kubelet has no such notion; a pod that needs its dependency at
//! all times should say so with its own probes).

use std::collections::{BTreeMap, BTreeSet};

/// The annotation naming the pods this pod starts after.
pub const AFTER_ANNOTATION: &str = "podvisor.io/after";
/// Waiting reason while a dependency is not Ready.
pub const WAITING_FOR_DEPENDENCY: &str = "WaitingForDependency";
/// Waiting reason when the annotation cannot be satisfied (unknown name, cycle).
pub const INVALID_DEPENDENCY: &str = "InvalidDependency";

/// One desired pod as ordering sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredPod {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name` as written in the manifest (without the node suffix).
    pub name: String,
    /// The raw value of [`AFTER_ANNOTATION`], if present.
    pub after: Option<String>,
}

impl DesiredPod {
    /// `namespace/name`: how [`holds`] keys pods.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The keys this pod names, each with the name as written: `etcd` is a pod of the same
    /// namespace, `other-ns/etcd` one of another namespace.
    fn dependencies(&self) -> Vec<(String, String)> {
        self.after
            .as_deref()
            .map(parse_after)
            .unwrap_or_default()
            .into_iter()
            .map(|written| {
                let key = if written.contains('/') {
                    written.clone()
                } else {
                    format!("{}/{written}", self.namespace)
                };
                (key, written)
            })
            .collect()
    }
}

/// Why an annotation cannot be satisfied; reported on the pod, which stays held.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The annotation names pods that no manifest defines.
    #[error("annotation {AFTER_ANNOTATION} names unknown pods: {}", .0.join(", "))]
    UnknownPods(Vec<String>),
    /// The pod is part of a dependency cycle (listed in order, starting and ending with it).
    #[error("annotation {AFTER_ANNOTATION} forms a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// Why a pod may not start yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// [`WAITING_FOR_DEPENDENCY`] or [`INVALID_DEPENDENCY`].
    pub reason: &'static str,
    /// For the container's `waiting.message`.
    pub message: String,
    /// The dependencies not yet Ready, as written (empty for an invalid annotation).
    pub waiting_for: Vec<String>,
    /// Set when the annotation itself is wrong.
    pub error: Option<OrderError>,
}

/// Parses `a, b,,c` into distinct names, in order.
pub fn parse_after(value: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    value
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty() && seen.insert(*n))
        .map(str::to_owned)
        .collect()
}

/// Which pods are held, by `namespace/name` key. Pods absent from the result may start.
/// `is_ready` is asked about keys of pods that exist.
pub fn holds(pods: &[DesiredPod], is_ready: impl Fn(&str) -> bool) -> BTreeMap<String, Hold> {
    let deps: BTreeMap<String, Vec<(String, String)>> =
        pods.iter().map(|p| (p.key(), p.dependencies())).collect();
    let namespaces: BTreeMap<String, &str> = pods
        .iter()
        .map(|p| (p.key(), p.namespace.as_str()))
        .collect();
    let mut out = BTreeMap::new();
    for (key, after) in &deps {
        let unknown: Vec<String> = after
            .iter()
            .filter(|(k, _)| !deps.contains_key(k))
            .map(|(_, written)| written.clone())
            .collect();
        let error = if !unknown.is_empty() {
            Some(OrderError::UnknownPods(unknown))
        } else {
            let ns = namespaces.get(key).copied().unwrap_or_default();
            cycle_through(key, &deps)
                .map(|path| path.iter().map(|k| display(k, ns)).collect())
                .map(OrderError::Cycle)
        };
        if let Some(error) = error {
            let message = error.to_string();
            out.insert(
                key.clone(),
                Hold {
                    reason: INVALID_DEPENDENCY,
                    message,
                    waiting_for: Vec::new(),
                    error: Some(error),
                },
            );
            continue;
        }
        let waiting_for: Vec<String> = after
            .iter()
            .filter(|(k, _)| !is_ready(k))
            .map(|(_, written)| written.clone())
            .collect();
        if !waiting_for.is_empty() {
            let message = format!("waiting for pods {} to be Ready", waiting_for.join(", "));
            out.insert(
                key.clone(),
                Hold {
                    reason: WAITING_FOR_DEPENDENCY,
                    message,
                    waiting_for,
                    error: None,
                },
            );
        }
    }
    out
}

/// A key as people read it from a pod of namespace `ns`: the bare name in the same namespace.
fn display(key: &str, ns: &str) -> String {
    key.strip_prefix(ns)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(key)
        .to_owned()
}

/// A shortest dependency path from `start` back to itself, if there is one (breadth-first).
fn cycle_through(
    start: &str,
    deps: &BTreeMap<String, Vec<(String, String)>>,
) -> Option<Vec<String>> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for (next, _) in deps.get(node).into_iter().flatten() {
            let next = next.as_str();
            if next == start {
                // Walk back from `node` to `start`, then read it forwards.
                let mut back = Vec::new();
                let mut at = node;
                while at != start {
                    back.push(at.to_owned());
                    at = parent.get(at).copied().unwrap_or(start);
                }
                let mut path = vec![start.to_owned()];
                path.extend(back.into_iter().rev());
                path.push(start.to_owned());
                return Some(path);
            }
            if deps.contains_key(next) && !parent.contains_key(next) {
                parent.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, after: Option<&str>) -> DesiredPod {
        in_ns("kube-system", name, after)
    }

    fn in_ns(namespace: &str, name: &str, after: Option<&str>) -> DesiredPod {
        DesiredPod {
            namespace: namespace.into(),
            name: name.into(),
            after: after.map(str::to_owned),
        }
    }

    /// `holds` keyed by bare name (every pod of these tables is in kube-system).
    fn by_name(held: BTreeMap<String, Hold>) -> BTreeMap<String, Hold> {
        held.into_iter()
            .map(|(k, h)| (display(&k, "kube-system"), h))
            .collect()
    }

    #[test]
    fn parse_after_trims_and_dedups() {
        assert_eq!(
            parse_after(" etcd , ,kms,etcd"),
            vec!["etcd".to_string(), "kms".to_string()]
        );
        assert!(parse_after("").is_empty());
    }

    #[test]
    fn pods_wait_for_unready_dependencies_only() {
        let pods = [
            pod("etcd", None),
            pod("kube-apiserver", Some("etcd")),
            pod("scheduler", Some("kube-apiserver, etcd")),
        ];
        // (ready pods, held pods with what they wait for)
        type Held<'a> = Vec<(&'a str, Vec<&'a str>)>;
        let table: Vec<(Vec<&str>, Held)> = vec![
            (
                vec![],
                vec![
                    ("kube-apiserver", vec!["etcd"]),
                    ("scheduler", vec!["kube-apiserver", "etcd"]),
                ],
            ),
            (vec!["etcd"], vec![("scheduler", vec!["kube-apiserver"])]),
            (vec!["etcd", "kube-apiserver"], vec![]),
        ];
        for (ready, want) in table {
            let got = by_name(holds(&pods, |k| {
                ready.iter().any(|r| k == format!("kube-system/{r}"))
            }));
            let got: Vec<(&str, Vec<&str>)> = got
                .iter()
                .map(|(k, h)| {
                    (
                        k.as_str(),
                        h.waiting_for.iter().map(String::as_str).collect(),
                    )
                })
                .collect();
            let mut want = want;
            want.sort();
            assert_eq!(got, want, "ready={ready:?}");
        }
        let h = &by_name(holds(&pods, |_| false))["kube-apiserver"];
        assert_eq!(
            (h.reason, h.message.as_str()),
            (WAITING_FOR_DEPENDENCY, "waiting for pods etcd to be Ready")
        );
    }

    #[test]
    fn unknown_names_are_errors_on_the_pod() {
        let pods = [pod("api", Some("etcd,vault"))];
        let h = &by_name(holds(&pods, |_| true))["api"];
        assert_eq!(h.reason, INVALID_DEPENDENCY);
        assert_eq!(
            h.error,
            Some(OrderError::UnknownPods(vec!["etcd".into(), "vault".into()]))
        );
        assert_eq!(
            h.message,
            "annotation podvisor.io/after names unknown pods: etcd, vault"
        );
    }

    #[test]
    fn cycles_are_errors_on_every_pod_in_them() {
        let pods = [
            pod("a", Some("b")),
            pod("b", Some("c")),
            pod("c", Some("a")),
            pod("d", Some("a")),
            pod("e", Some("e")),
        ];
        let got = by_name(holds(&pods, |_| true));
        assert_eq!(
            got["a"].error,
            Some(OrderError::Cycle(vec![
                "a".into(),
                "b".into(),
                "c".into(),
                "a".into()
            ]))
        );
        assert_eq!(
            got["b"].error,
            Some(OrderError::Cycle(vec![
                "b".into(),
                "c".into(),
                "a".into(),
                "b".into()
            ]))
        );
        assert_eq!(
            got["e"].error,
            Some(OrderError::Cycle(vec!["e".into(), "e".into()]))
        );
        assert_eq!(
            got["a"].message,
            "annotation podvisor.io/after forms a cycle: a -> b -> c -> a"
        );
        // d is not in the cycle; its dependency is never Ready in practice, but here it is.
        assert!(!got.contains_key("d"));
    }

    #[test]
    fn pods_without_the_annotation_are_never_held() {
        let pods = [pod("etcd", None), pod("other", Some(""))];
        assert!(holds(&pods, |_| false).is_empty());
    }

    #[test]
    fn names_resolve_in_the_pods_namespace_unless_qualified() {
        let pods = [
            in_ns("db", "etcd", None),
            in_ns("web", "bare", Some("etcd")),
            in_ns("web", "qualified", Some("db/etcd")),
            in_ns("web", "loop", Some("db/loop")),
            in_ns("db", "loop", Some("web/loop")),
        ];
        let got = holds(&pods, |k| k == "db/etcd");
        assert_eq!(
            got["web/bare"].error,
            Some(OrderError::UnknownPods(vec!["etcd".into()]))
        );
        assert!(!got.contains_key("web/qualified"));
        assert_eq!(
            got["web/loop"].message,
            "annotation podvisor.io/after forms a cycle: loop -> db/loop -> loop"
        );
        let waiting = holds(&pods, |_| false);
        assert_eq!(
            waiting["web/qualified"].waiting_for,
            vec!["db/etcd".to_string()]
        );
    }
}
