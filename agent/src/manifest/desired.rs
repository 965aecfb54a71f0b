//! The desired set of static pods, decided from one scan of the manifest directory and the
//! previous desired set (STATIC-PODS.md §3). Pure: no I/O, table-tested.
//!
//! - a valid file gives its pod; a changed file gives a pod with a new UID (the supervisor
//!   replaces the old one);
//! - an invalid file keeps the last good pod from that path running (unless `--on-invalid=stop`)
//!   and is reported;
//! - a pod excluded by node selection is not run, and the reason is reported;
//! - two files defining the same namespace/name: the first path in sorted order wins, the
//!   other is reported as a duplicate, so the choice never flaps.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::ManifestError;
use crate::pod::StaticPod;

/// What to do when an edit makes a running pod's manifest invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnInvalid {
    /// Keep the last good pod running and report the error (podvisor's default).
    #[default]
    KeepLastGood,
    /// Stop the pod, as the kubelet eventually does.
    Stop,
}

/// Why a manifest file does not (or no longer exactly) contribute a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// The file is invalid. `kept_uid` is the UID of the last good pod still running from it.
    Invalid {
        /// The error, naming the file and field.
        error: ManifestError,
        /// The last good pod's UID, when it is kept.
        kept_uid: Option<String>,
    },
    /// Another file, earlier in sorted order, defines the same namespace/name.
    Duplicate {
        /// `namespace/name` of the pod.
        pod: String,
        /// The file whose pod runs.
        winner: PathBuf,
    },
    /// The pod is valid but its node selection rules exclude this node.
    NotSelected(ManifestError),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Invalid {
                error,
                kept_uid: Some(uid),
            } => {
                write!(f, "{error} (keeping the last good pod {uid} running)")
            }
            Problem::Invalid {
                error,
                kept_uid: None,
            } => write!(f, "{error}"),
            Problem::Duplicate { pod, winner } => {
                write!(
                    f,
                    "pod {pod} is already defined by {}; this file is ignored",
                    winner.display()
                )
            }
            Problem::NotSelected(e) => write!(f, "{e}"),
        }
    }
}

/// The pods that should run, by manifest path, and what is wrong with the other files.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DesiredSet {
    /// Pods to run, keyed by the manifest file they come from.
    pub pods: BTreeMap<PathBuf, StaticPod>,
    /// Files that contribute no pod, or only a kept last-good one, and why.
    pub problems: BTreeMap<PathBuf, Problem>,
}

impl DesiredSet {
    /// Path → UID of every pod to run: what a test or the supervisor compares.
    pub fn uids(&self) -> BTreeMap<PathBuf, String> {
        self.pods
            .iter()
            .map(|(p, pod)| (p.clone(), pod.uid.clone()))
            .collect()
    }
}

/// One scan's outcome for every candidate file.
pub type Scan = BTreeMap<PathBuf, Result<StaticPod, ManifestError>>;

/// Decides the new desired set from a scan and the previous desired set.
pub fn decide(previous: &DesiredSet, scan: &Scan, on_invalid: OnInvalid) -> DesiredSet {
    let mut next = DesiredSet::default();
    let mut owners: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (path, outcome) in scan {
        let candidate = match outcome {
            Ok(pod) => Some(pod.clone()),
            Err(e @ ManifestError::NotSelected { .. }) => {
                next.problems
                    .insert(path.clone(), Problem::NotSelected(e.clone()));
                None
            }
            Err(error) => {
                let kept = match on_invalid {
                    OnInvalid::KeepLastGood => previous.pods.get(path).cloned(),
                    OnInvalid::Stop => None,
                };
                let kept_uid = kept.as_ref().map(|p| p.uid.clone());
                next.problems.insert(
                    path.clone(),
                    Problem::Invalid {
                        error: error.clone(),
                        kept_uid,
                    },
                );
                kept
            }
        };
        let Some(pod) = candidate else { continue };
        let full = pod.full_name();
        if let Some(winner) = owners.get(&full) {
            next.problems.insert(
                path.clone(),
                Problem::Duplicate {
                    pod: full,
                    winner: winner.clone(),
                },
            );
            continue;
        }
        owners.insert(full, path.clone());
        next.pods.insert(path.clone(), pod);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::{NodeInfo, load};
    use std::path::Path;

    fn pod_text(name: &str, image: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: {image}\n"
        )
    }

    fn node() -> NodeInfo {
        NodeInfo::new("n1", BTreeMap::new(), vec![])
    }

    fn outcome(path: &str, text: &str) -> (PathBuf, Result<StaticPod, ManifestError>) {
        let p = PathBuf::from(path);
        let r = load(&p, text.as_bytes(), &node(), &|_| "t0".to_owned());
        (p, r)
    }

    fn scan(files: &[(&str, &str)]) -> Scan {
        files.iter().map(|(p, t)| outcome(p, t)).collect()
    }

    fn uid_of(set: &DesiredSet, path: &str) -> Option<String> {
        set.pods.get(Path::new(path)).map(|p| p.uid.clone())
    }

    #[test]
    fn change_table() {
        let a1 = pod_text("a", "busybox:1");
        let a1_reformatted = format!(
            "# a comment\n{}",
            a1.replace("kind: Pod\n", "kind:   Pod   # trailing\n")
        );
        let a2 = pod_text("a", "busybox:2");
        let broken = "apiVersion: v1\nkind: Pod\nmetadata: [\n";

        let empty = DesiredSet::default();
        // new valid file → its pod
        let s1 = decide(
            &empty,
            &scan(&[("/m/a.yaml", &a1)]),
            OnInvalid::KeepLastGood,
        );
        let uid1 = uid_of(&s1, "/m/a.yaml").expect("pod a");
        // same content rewritten / reformatted → same UID
        let s2 = decide(
            &s1,
            &scan(&[("/m/a.yaml", &a1_reformatted)]),
            OnInvalid::KeepLastGood,
        );
        assert_eq!(
            uid_of(&s2, "/m/a.yaml"),
            Some(uid1.clone()),
            "reformatting keeps the UID"
        );
        // semantic change → new UID
        let s3 = decide(&s2, &scan(&[("/m/a.yaml", &a2)]), OnInvalid::KeepLastGood);
        let uid3 = uid_of(&s3, "/m/a.yaml").expect("pod a");
        assert_ne!(uid3, uid1, "a new image gives a new UID");
        // edit makes the file invalid → keep the last good pod, report the error
        let s4 = decide(
            &s3,
            &scan(&[("/m/a.yaml", broken)]),
            OnInvalid::KeepLastGood,
        );
        assert_eq!(uid_of(&s4, "/m/a.yaml"), Some(uid3.clone()));
        assert!(matches!(
            s4.problems.get(Path::new("/m/a.yaml")),
            Some(Problem::Invalid { kept_uid: Some(u), .. }) if *u == uid3
        ));
        // ... and it stays kept while it stays invalid
        let s4b = decide(
            &s4,
            &scan(&[("/m/a.yaml", broken)]),
            OnInvalid::KeepLastGood,
        );
        assert_eq!(uid_of(&s4b, "/m/a.yaml"), Some(uid3.clone()));
        // --on-invalid=stop → no pod
        let s4s = decide(&s3, &scan(&[("/m/a.yaml", broken)]), OnInvalid::Stop);
        assert!(s4s.pods.is_empty());
        assert!(matches!(
            s4s.problems.get(Path::new("/m/a.yaml")),
            Some(Problem::Invalid { kept_uid: None, .. })
        ));
        // an invalid new file runs nothing
        let s5 = decide(
            &empty,
            &scan(&[("/m/a.yaml", broken)]),
            OnInvalid::KeepLastGood,
        );
        assert!(s5.pods.is_empty());
        // file deleted → pod gone
        let s6 = decide(&s3, &scan(&[]), OnInvalid::KeepLastGood);
        assert!(s6.pods.is_empty() && s6.problems.is_empty());
        // file renamed inside the dir → path is part of the UID: replaced
        let s7 = decide(&s3, &scan(&[("/m/b.yaml", &a2)]), OnInvalid::KeepLastGood);
        let uid7 = uid_of(&s7, "/m/b.yaml").expect("renamed pod");
        assert_ne!(uid7, uid3);
        assert!(uid_of(&s7, "/m/a.yaml").is_none());
    }

    #[test]
    fn duplicates_first_in_sorted_order_wins_and_never_flaps() {
        let a = pod_text("same", "busybox:1");
        let b = pod_text("same", "busybox:2");
        let files = [("/m/b.yaml", b.as_str()), ("/m/a.yaml", a.as_str())];
        let s1 = decide(
            &DesiredSet::default(),
            &scan(&files),
            OnInvalid::KeepLastGood,
        );
        assert_eq!(
            s1.pods.keys().collect::<Vec<_>>(),
            vec![Path::new("/m/a.yaml")]
        );
        assert!(matches!(
            s1.problems.get(Path::new("/m/b.yaml")),
            Some(Problem::Duplicate { winner, .. }) if winner == Path::new("/m/a.yaml")
        ));
        for _ in 0..3 {
            let again = decide(&s1, &scan(&files), OnInvalid::KeepLastGood);
            assert_eq!(again.uids(), s1.uids());
        }
        // the winner's edit is invalid: its kept pod still wins, no switch to b
        let broken = "apiVersion: v1\nkind: Pod\nmetadata: [\n";
        let kept = decide(
            &s1,
            &scan(&[("/m/a.yaml", broken), ("/m/b.yaml", &b)]),
            OnInvalid::KeepLastGood,
        );
        assert_eq!(kept.uids(), s1.uids());
        assert!(matches!(
            kept.problems.get(Path::new("/m/b.yaml")),
            Some(Problem::Duplicate { .. })
        ));
        // the winner is removed: the other file takes over
        let s2 = decide(&s1, &scan(&[("/m/b.yaml", &b)]), OnInvalid::KeepLastGood);
        assert!(s2.pods.contains_key(Path::new("/m/b.yaml")));
    }

    #[test]
    fn not_selected_pods_are_reported_not_run() {
        let text = pod_text("sel", "busybox:1") + "  nodeSelector: {disk: ssd}\n";
        let s = decide(
            &DesiredSet::default(),
            &scan(&[("/m/s.yaml", &text)]),
            OnInvalid::KeepLastGood,
        );
        assert!(s.pods.is_empty());
        let p = s.problems.get(Path::new("/m/s.yaml")).expect("reported");
        assert!(p.to_string().contains("nodeSelector disk=ssd"), "{p}");
    }
}
