//! The agent's level-triggered reconcile: desired pods (from the manifests) against the
//! pod workers that exist, as a pure function returning what to start and stop.
//!
//! A pod is identified by its UID; a manifest edit gives a new UID for the same
//! `namespace/name`. The new pod starts only once the old one is fully gone (host ports
//! and names would clash), so a replacement is a stop now and a start on a later pass.
//! Stops are never blocked by other pods; a stuck stop is bounded by the worker itself.

use std::collections::{BTreeMap, BTreeSet};

/// A pod that should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPod {
    /// The pod UID.
    pub uid: String,
    /// `namespace/name`.
    pub key: String,
}

/// A pod worker that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedPod {
    /// `namespace/name`.
    pub key: String,
    /// It was told to stop and is stopping.
    pub stopping: bool,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReconcileAction {
    /// Stop and remove the pod with this UID.
    Stop(String),
    /// Start a worker for the pod with this UID.
    Start(String),
}

/// Compares desired and observed pods. Stops come first in the result.
pub fn reconcile(
    desired: &[DesiredPod],
    observed: &BTreeMap<String, ObservedPod>,
) -> Vec<ReconcileAction> {
    let wanted: BTreeSet<&str> = desired.iter().map(|d| d.uid.as_str()).collect();
    let mut actions = Vec::new();
    for (uid, pod) in observed {
        if !wanted.contains(uid.as_str()) && !pod.stopping {
            actions.push(ReconcileAction::Stop(uid.clone()));
        }
    }
    for d in desired {
        if observed.contains_key(&d.uid) {
            continue;
        }
        // An older version of the same pod still exists (running or stopping): wait.
        let old_exists = observed
            .iter()
            .any(|(uid, o)| o.key == d.key && *uid != d.uid);
        if !old_exists {
            actions.push(ReconcileAction::Start(d.uid.clone()));
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::ReconcileAction::{Start, Stop};
    use super::*;

    fn desired(list: &[(&str, &str)]) -> Vec<DesiredPod> {
        list.iter()
            .map(|(u, k)| DesiredPod {
                uid: u.to_string(),
                key: k.to_string(),
            })
            .collect()
    }

    fn observed(list: &[(&str, &str, bool)]) -> BTreeMap<String, ObservedPod> {
        list.iter()
            .map(|(u, k, s)| {
                (
                    u.to_string(),
                    ObservedPod {
                        key: k.to_string(),
                        stopping: *s,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn reconcile_table() {
        let cases: Vec<(
            &str,
            Vec<DesiredPod>,
            BTreeMap<String, ObservedPod>,
            Vec<ReconcileAction>,
        )> = vec![
            (
                "new_pod_starts",
                desired(&[("u1", "d/a")]),
                observed(&[]),
                vec![Start("u1".into())],
            ),
            (
                "running_pod_is_left_alone",
                desired(&[("u1", "d/a")]),
                observed(&[("u1", "d/a", false)]),
                vec![],
            ),
            (
                "removed_pod_stops",
                desired(&[]),
                observed(&[("u1", "d/a", false)]),
                vec![Stop("u1".into())],
            ),
            (
                "stopping_pod_is_not_stopped_twice",
                desired(&[]),
                observed(&[("u1", "d/a", true)]),
                vec![],
            ),
            (
                "edit_stops_old_and_waits_to_start_new",
                desired(&[("u2", "d/a")]),
                observed(&[("u1", "d/a", false)]),
                vec![Stop("u1".into())],
            ),
            (
                "new_version_waits_while_old_stops",
                desired(&[("u2", "d/a")]),
                observed(&[("u1", "d/a", true)]),
                vec![],
            ),
            (
                "one_pod_does_not_block_another",
                desired(&[("u2", "d/a"), ("u3", "d/b")]),
                observed(&[("u1", "d/a", true)]),
                vec![Start("u3".into())],
            ),
            (
                "edit_back_to_the_old_version_keeps_it",
                desired(&[("u1", "d/a")]),
                observed(&[("u1", "d/a", false), ("u2", "d/a", false)]),
                vec![Stop("u2".into())],
            ),
        ];
        for (name, d, o, want) in cases {
            assert_eq!(reconcile(&d, &o), want, "{name}");
        }
    }
}
