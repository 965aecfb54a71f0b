//! Re-adoption after an agent restart: finding the live shims under the state
//! directory, applying the exits they recorded while no agent listened, reconciling the
//! records with what each shim says runs, and cleaning up after shims that died.
//!
//! Applying an exit is idempotent: an exit applies only to the run it belongs to (same
//! container, attempt and pid, still marked running), so an exit heard both as a push and
//! from its file is applied once.

use std::path::Path;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Pod;

use super::backoff::BackoffConfig;
use super::exit::{ExitRecord, ExitStatus};
use super::podplan::apply_exit;
use super::policy::RestartAction;
use super::record::{ContainerRecord, Termination};
use super::shim::protocol::RunningContainer;
use super::state::{PodStateDir, StateError, pod_uids};

/// The runtime container id of one run: `<uid>-<container>-<attempt>` (runtime ids allow
/// `[A-Za-z0-9_+.-]`, which UIDs and DNS-label container names satisfy).
pub fn container_id(uid: &str, container: &str, attempt: u32) -> String {
    format!("{uid}-{container}-{attempt}")
}

/// Applies one exit to the matching record; returns the restart decision, or `None`
/// when the exit does not belong to the record's current run (stale or already applied).
/// `message` supplies the termination message (file or log tail) for it.
pub fn apply_recorded_exit(
    pod: &Pod,
    records: &mut [ContainerRecord],
    exit: &ExitRecord,
    message: impl FnOnce(&ExitRecord) -> Option<String>,
    config: &BackoffConfig,
    now: SystemTime,
) -> Option<RestartAction> {
    let record = records.iter_mut().find(|r| r.name == exit.container)?;
    let run = record.running.as_ref()?;
    if record.restart_count != exit.attempt || run.pid != exit.pid {
        return None;
    }
    let termination = Termination {
        exit: exit.clone(),
        message: message(exit),
        reason: None,
        container_id: record.container_id.clone(),
    };
    Some(apply_exit(pod, record, termination, config, now))
}

/// After reconnecting to a live shim: any record that claims to run but is neither in
/// the shim's list nor has a recorded exit lost its process without a trace (the shim
/// was replaced, say). It is marked exited with the kubelet's `ContainerStatusUnknown`
/// (exit code 137) and goes through the restart policy like any exit.
pub fn reconcile_with_shim(
    pod: &Pod,
    records: &mut [ContainerRecord],
    running: &[RunningContainer],
    config: &BackoffConfig,
    now: SystemTime,
) -> Vec<String> {
    let mut lost = Vec::new();
    for record in records.iter_mut() {
        let Some(run) = record.running.clone() else {
            continue;
        };
        let alive = running.iter().any(|r| {
            r.container == record.name && r.pid == run.pid && r.attempt == record.restart_count
        });
        if alive {
            continue;
        }
        let termination = Termination {
            exit: ExitRecord {
                container: record.name.clone(),
                attempt: record.restart_count,
                pid: run.pid,
                started_at: run.started_at,
                finished_at: now,
                status: ExitStatus::Code(137),
                oom_killed: false,
            },
            message: Some("The container could not be located when the pod was re-adopted".into()),
            reason: Some("ContainerStatusUnknown".into()),
            container_id: record.container_id.clone(),
        };
        apply_exit(pod, record, termination, config, now);
        lost.push(record.name.clone());
    }
    lost
}

/// What was found for one pod directory under `<state>/pods`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A shim answers on the pod's socket.
    Live {
        /// The pod UID.
        uid: String,
    },
    /// No shim answers (socket missing or refused): the shim is gone.
    Dead {
        /// The pod UID.
        uid: String,
    },
}

/// Lists the pod directories and whether a shim answers for each. Connecting is the
/// test (a pid could be reused; a socket that accepts is a live shim).
pub fn discover(state_root: &Path) -> Result<Vec<Found>, StateError> {
    Ok(pod_uids(state_root)?
        .into_iter()
        .map(|uid| {
            let sock = PodStateDir::new(state_root, &uid).shim_socket();
            if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
                Found::Live { uid }
            } else {
                Found::Dead { uid }
            }
        })
        .collect())
}

/// Cleans up after a pod whose shim is dead: kills and deletes its runtime containers
/// (ids `<uid>-...`; their processes may still run, re-parented to init) and removes
/// the stale socket. `state.json` and unapplied exit files are kept for the caller.
/// Returns the runtime ids deleted.
pub fn cleanup_dead_shim(state_root: &Path, runtime_root: &Path, uid: &str) -> Vec<String> {
    let prefix = format!("{uid}-");
    let mut deleted = Vec::new();
    if let Ok(states) = podvisor_runtime::container::list(runtime_root) {
        for st in states.into_iter().filter(|s| s.id.starts_with(&prefix)) {
            if podvisor_runtime::container::delete(runtime_root, &st.id, true).is_ok() {
                deleted.push(st.id);
            }
        }
    }
    let _ = std::fs::remove_file(PodStateDir::new(state_root, uid).shim_socket());
    deleted
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use k8s_openapi::api::core::v1::{Container, PodSpec};

    use super::*;
    use crate::supervise::podplan::ensure_records;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn pod() -> Pod {
        Pod {
            spec: Some(PodSpec {
                restart_policy: Some("Always".into()),
                containers: vec![
                    Container {
                        name: "a".into(),
                        ..Default::default()
                    },
                    Container {
                        name: "b".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn exit(container: &str, attempt: u32, pid: i32) -> ExitRecord {
        ExitRecord {
            container: container.into(),
            attempt,
            pid,
            started_at: t(0),
            finished_at: t(5),
            status: ExitStatus::Code(1),
            oom_killed: false,
        }
    }

    fn records() -> Vec<ContainerRecord> {
        let mut r = Vec::new();
        ensure_records(&pod(), &mut r);
        r[0].restart_count = 2;
        r[0].started(100, t(0), None);
        r[1].started(200, t(0), None);
        r
    }

    #[test]
    fn exit_applies_once_and_only_to_its_run() {
        let config = BackoffConfig::default();
        let p = pod();
        let mut r = records();
        let cases = [
            ("older_attempt_is_stale", exit("a", 1, 100), false),
            ("other_pid_is_stale", exit("a", 2, 999), false),
            ("unknown_container_is_ignored", exit("zz", 0, 100), false),
            ("matching_run_applies", exit("a", 2, 100), true),
            ("same_exit_again_is_a_no_op", exit("a", 2, 100), false),
        ];
        for (name, e, applied) in cases {
            let got = apply_recorded_exit(&p, &mut r, &e, |_| Some("bye".into()), &config, t(6));
            assert_eq!(got.is_some(), applied, "{name}");
        }
        assert!(r[0].running.is_none());
        assert_eq!(
            r[0].last_exit.as_ref().unwrap().message.as_deref(),
            Some("bye")
        );
        assert!(r[1].running.is_some());
    }

    #[test]
    fn records_missing_from_a_live_shim_become_status_unknown() {
        let config = BackoffConfig::default();
        let p = pod();
        let mut r = records();
        let running = vec![RunningContainer {
            container: "b".into(),
            attempt: 0,
            id: container_id("u", "b", 0),
            pid: 200,
            started_at: t(0),
            namespaces: Default::default(),
        }];
        assert_eq!(
            reconcile_with_shim(&p, &mut r, &running, &config, t(9)),
            vec!["a"]
        );
        let last = r[0].last_exit.as_ref().unwrap();
        assert_eq!(
            (last.reason.as_deref(), last.exit.status.exit_code()),
            (Some("ContainerStatusUnknown"), 137)
        );
        assert!(r[0].restart_at.is_some(), "goes through the restart policy");
        assert!(r[1].running.is_some());
    }

    #[test]
    fn discover_tells_live_from_dead_sockets() {
        let tmp = tempfile::tempdir().unwrap();
        let live = PodStateDir::new(tmp.path(), "live");
        let dead = PodStateDir::new(tmp.path(), "dead");
        std::fs::create_dir_all(live.path()).unwrap();
        std::fs::create_dir_all(dead.path()).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(live.shim_socket()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(dead.shim_socket()).unwrap());
        let found = discover(tmp.path()).unwrap();
        assert_eq!(
            found,
            vec![
                Found::Dead { uid: "dead".into() },
                Found::Live { uid: "live".into() }
            ]
        );
        assert!(cleanup_dead_shim(tmp.path(), &tmp.path().join("runtime"), "dead").is_empty());
        assert!(!dead.shim_socket().exists());
        assert_eq!(container_id("0123abcd", "etcd", 4), "0123abcd-etcd-4");
    }
}
