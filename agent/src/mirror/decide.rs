//! The mirror reconcile decision: desired static pods + observed API pods on this node →
//! the create/delete actions that make the API match, as the kubelet's pod workers and
//! `deleteOrphanedMirrorPods` would. Pure: no I/O, table-tested.

use std::collections::BTreeMap;

/// A pod's `(namespace, name)`.
pub type PodKey = (String, String);

/// What the supervisor says about one static pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredMirror {
    /// The static pod's `kubernetes.io/config.hash`.
    pub hash: String,
    /// The pod has finished for good (phase Succeeded or Failed): like the kubelet, a terminal
    /// static pod's mirror is kept as it is, but neither re-created nor replaced.
    pub terminal: bool,
}

/// What the API server holds under one pod key bound to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedPod {
    /// The API object's UID (the precondition for deleting it).
    pub uid: String,
    /// `kubernetes.io/config.mirror`, `None` when the pod is not a mirror pod at all.
    pub mirror_hash: Option<String>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

/// Why a mirror pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// No static pod with this name any more.
    Orphan,
    /// Its `config.mirror` is not the static pod's current hash (manifest changed).
    Stale,
    /// Someone started deleting it through the API: finish now and re-create it.
    Terminating,
}

/// One step towards the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Delete the mirror with grace period 0 and this UID as precondition.
    Delete {
        /// Which pod.
        key: PodKey,
        /// The UID precondition.
        uid: String,
        /// Why.
        reason: DeleteReason,
    },
    /// Create the mirror pod of this static pod.
    Create(PodKey),
    /// A pod that is not a mirror holds the static pod's name on this node: we cannot mirror
    /// it and we do not delete what we did not create.
    NameTaken(PodKey),
}

/// Compute the actions, deletions before creations for the same key.
pub fn decide(
    desired: &BTreeMap<PodKey, DesiredMirror>,
    observed: &BTreeMap<PodKey, ObservedPod>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for (key, want) in desired {
        let Some(have) = observed.get(key) else {
            if !want.terminal {
                actions.push(Action::Create(key.clone()));
            }
            continue;
        };
        let Some(hash) = &have.mirror_hash else {
            actions.push(Action::NameTaken(key.clone()));
            continue;
        };
        if want.terminal {
            continue;
        }
        let reason = if have.deleting {
            DeleteReason::Terminating
        } else if *hash != want.hash {
            DeleteReason::Stale
        } else {
            continue;
        };
        actions.push(Action::Delete {
            key: key.clone(),
            uid: have.uid.clone(),
            reason,
        });
        actions.push(Action::Create(key.clone()));
    }
    for (key, have) in observed {
        if have.mirror_hash.is_some() && !desired.contains_key(key) {
            actions.push(Action::Delete {
                key: key.clone(),
                uid: have.uid.clone(),
                reason: DeleteReason::Orphan,
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> PodKey {
        ("kube-system".into(), name.into())
    }
    fn want(hash: &str, terminal: bool) -> DesiredMirror {
        DesiredMirror {
            hash: hash.into(),
            terminal,
        }
    }
    fn mirror(uid: &str, hash: &str, deleting: bool) -> ObservedPod {
        ObservedPod {
            uid: uid.into(),
            mirror_hash: Some(hash.into()),
            deleting,
        }
    }

    type Case = (
        &'static str,
        Vec<(PodKey, DesiredMirror)>,
        Vec<(PodKey, ObservedPod)>,
        Vec<Action>,
    );

    #[test]
    fn table() {
        let etcd = || key("etcd-n1");
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("missing mirror is created",
             vec![(etcd(), want("h1", false))], vec![],
             vec![Action::Create(etcd())]),
            ("up-to-date mirror is left alone",
             vec![(etcd(), want("h1", false))], vec![(etcd(), mirror("u1", "h1", false))],
             vec![]),
            ("stale hash is deleted with its uid then re-created",
             vec![(etcd(), want("h2", false))], vec![(etcd(), mirror("u1", "h1", false))],
             vec![Action::Delete { key: etcd(), uid: "u1".into(), reason: DeleteReason::Stale },
                  Action::Create(etcd())]),
            ("mirror being deleted through the API is replaced",
             vec![(etcd(), want("h1", false))], vec![(etcd(), mirror("u1", "h1", true))],
             vec![Action::Delete { key: etcd(), uid: "u1".into(), reason: DeleteReason::Terminating },
                  Action::Create(etcd())]),
            ("orphan mirror is deleted",
             vec![], vec![(etcd(), mirror("u1", "h1", false))],
             vec![Action::Delete { key: etcd(), uid: "u1".into(), reason: DeleteReason::Orphan }]),
            ("terminal static pod keeps its mirror even when stale",
             vec![(etcd(), want("h2", true))], vec![(etcd(), mirror("u1", "h1", false))],
             vec![]),
            ("terminal static pod without mirror gets none",
             vec![(etcd(), want("h1", true))], vec![],
             vec![]),
            ("non-mirror pod with the same name is reported, never deleted",
             vec![(etcd(), want("h1", false))],
             vec![(etcd(), ObservedPod { uid: "u9".into(), mirror_hash: None, deleting: false })],
             vec![Action::NameTaken(etcd())]),
            ("non-mirror pods on the node are not orphans",
             vec![],
             vec![(key("web"), ObservedPod { uid: "u9".into(), mirror_hash: None, deleting: false })],
             vec![]),
        ];
        for (name, desired, observed, expected) in cases {
            let desired = desired.into_iter().collect();
            let observed = observed.into_iter().collect();
            assert_eq!(decide(&desired, &observed), expected, "{name}");
        }
    }
}
