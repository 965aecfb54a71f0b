//! Start ordering between static pods: the annotation `podvisor.io/after: etcd[,other]` holds
//! a pod (waiting reason `WaitingForDependency`) until every named pod is Ready, so a
//! kubeadm-style control plane comes up in order instead of crash-looping kube-apiserver into
//! backoff. Names are pod names as written in the manifests (`metadata.name`).
//!
//! [`holds`] is a pure function of the desired pods and which of them are Ready; the
//! reconcile loop calls it on every pass and starts only pods that are not held.

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
    /// `metadata.name` from the manifest.
    pub name: String,
    /// The raw value of [`AFTER_ANNOTATION`], if present.
    pub after: Option<String>,
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
    /// The dependencies not yet Ready (empty for an invalid annotation).
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

/// Which pods are held, by name. Pods absent from the result may start.
pub fn holds(pods: &[DesiredPod], is_ready: impl Fn(&str) -> bool) -> BTreeMap<String, Hold> {
    let deps: BTreeMap<&str, Vec<String>> = pods
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.after.as_deref().map(parse_after).unwrap_or_default(),
            )
        })
        .collect();
    let mut out = BTreeMap::new();
    for (name, after) in &deps {
        let unknown: Vec<String> = after
            .iter()
            .filter(|d| !deps.contains_key(d.as_str()))
            .cloned()
            .collect();
        let error = if !unknown.is_empty() {
            Some(OrderError::UnknownPods(unknown))
        } else {
            cycle_through(name, &deps).map(OrderError::Cycle)
        };
        if let Some(error) = error {
            let message = error.to_string();
            out.insert(
                (*name).to_owned(),
                Hold {
                    reason: INVALID_DEPENDENCY,
                    message,
                    waiting_for: Vec::new(),
                    error: Some(error),
                },
            );
            continue;
        }
        let waiting_for: Vec<String> = after.iter().filter(|d| !is_ready(d)).cloned().collect();
        if !waiting_for.is_empty() {
            let message = format!("waiting for pods {} to be Ready", waiting_for.join(", "));
            out.insert(
                (*name).to_owned(),
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

/// A shortest dependency path from `start` back to itself, if there is one (breadth-first).
fn cycle_through(start: &str, deps: &BTreeMap<&str, Vec<String>>) -> Option<Vec<String>> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in deps.get(node).into_iter().flatten() {
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
            if deps.contains_key(next) && !parent.contains_key(next) && next != start {
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
        DesiredPod {
            name: name.into(),
            after: after.map(str::to_owned),
        }
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
            let got = holds(&pods, |n| ready.contains(&n));
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
        let h = &holds(&pods, |_| false)["kube-apiserver"];
        assert_eq!(
            (h.reason, h.message.as_str()),
            (WAITING_FOR_DEPENDENCY, "waiting for pods etcd to be Ready")
        );
    }

    #[test]
    fn unknown_names_are_errors_on_the_pod() {
        let pods = [pod("api", Some("etcd,vault"))];
        let h = &holds(&pods, |_| true)["api"];
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
        let got = holds(&pods, |_| true);
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
}
