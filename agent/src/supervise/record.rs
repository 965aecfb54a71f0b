//! What the supervisor knows about each container of a pod: the observed facts that the
//! kubelet-style status is computed from, persisted in the pod's `state.json`.
//!
//! The record is level data, not a log: the current run (if any), the last two exits, the
//! reason the container is waiting (if it is), its restart count and backoff.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::backoff::Backoff;
use super::clock::serde_rfc3339;
use super::exit::ExitRecord;
use super::policy::ContainerKind;

/// Why a container is not running (the kubelet's waiting reasons).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitReason {
    /// Being created (image present, rootfs and spec being prepared).
    ContainerCreating,
    /// Waiting for init containers.
    PodInitializing,
    /// Waiting out its restart backoff.
    CrashLoopBackOff,
    /// The last image pull failed.
    ErrImagePull,
    /// Waiting out the image pull backoff.
    ImagePullBackOff,
    /// The container's configuration could not be turned into a runnable spec.
    CreateContainerConfigError,
    /// The runtime failed to create or start it.
    RunContainerError,
    /// Held by `podvisor.io/after` until the named pods are Ready.
    #[serde(alias = "WaitingForDependencies")]
    WaitingForDependency,
    /// Any other reason, as written.
    Other(String),
}

impl WaitReason {
    /// The reason string of the API.
    pub fn as_str(&self) -> &str {
        match self {
            Self::ContainerCreating => "ContainerCreating",
            Self::PodInitializing => "PodInitializing",
            Self::CrashLoopBackOff => "CrashLoopBackOff",
            Self::ErrImagePull => "ErrImagePull",
            Self::ImagePullBackOff => "ImagePullBackOff",
            Self::CreateContainerConfigError => "CreateContainerConfigError",
            Self::RunContainerError => "RunContainerError",
            Self::WaitingForDependency => "WaitingForDependency",
            Self::Other(s) => s,
        }
    }
}

/// A waiting reason with its human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// The reason.
    pub reason: WaitReason,
    /// A message for people (`back-off 20s restarting failed container=...`).
    #[serde(default)]
    pub message: String,
}

/// The container's current run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    /// The init process's pid.
    pub pid: i32,
    /// When it was started.
    #[serde(with = "serde_rfc3339")]
    pub started_at: SystemTime,
}

/// One exit with what the status reports about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Termination {
    /// The exit as the shim recorded it.
    pub exit: ExitRecord,
    /// The termination message (file, or log tail with `FallbackToLogsOnError`).
    #[serde(default)]
    pub message: Option<String>,
    /// A reason other than Completed/Error/OOMKilled (e.g. `StartError`), if any.
    #[serde(default)]
    pub reason: Option<String>,
    /// The container ID of that run.
    #[serde(default)]
    pub container_id: Option<String>,
}

/// Everything observed about one container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    /// The container's name.
    pub name: String,
    /// Init, sidecar or app container.
    pub kind: ContainerKind,
    /// How many times it was restarted (the number of its current or next log file).
    pub restart_count: u32,
    /// The ID of the current (or last) run, `podvisor://<id>`.
    #[serde(default)]
    pub container_id: Option<String>,
    /// The image's digest reference, once resolved.
    #[serde(default)]
    pub image_id: Option<String>,
    /// The current run, if it is running.
    #[serde(default)]
    pub running: Option<Running>,
    /// Why it is not running, when the supervisor knows a reason.
    #[serde(default)]
    pub waiting: Option<Waiting>,
    /// The most recent exit.
    #[serde(default)]
    pub last_exit: Option<Termination>,
    /// The exit before that (the `lastState` of a container that is now terminated).
    #[serde(default)]
    pub previous_exit: Option<Termination>,
    /// Restart backoff.
    #[serde(default)]
    pub backoff: Backoff,
    /// When the container is due to be (re)started after an exit or a failed start;
    /// `None` after an exit means it stays exited (Completed, or failed under Never).
    #[serde(default, with = "super::clock::serde_rfc3339::option")]
    pub restart_at: Option<SystemTime>,
    /// After a failed image pull: `ErrImagePull` is shown until then, `ImagePullBackOff`
    /// after it until `restart_at`.
    #[serde(default, with = "super::clock::serde_rfc3339::option")]
    pub pull_error_until: Option<SystemTime>,
}

impl ContainerRecord {
    /// A container not created yet.
    pub fn new(name: impl Into<String>, kind: ContainerKind) -> Self {
        Self {
            name: name.into(),
            kind,
            restart_count: 0,
            container_id: None,
            image_id: None,
            running: None,
            waiting: None,
            last_exit: None,
            previous_exit: None,
            backoff: Backoff::default(),
            restart_at: None,
            pull_error_until: None,
        }
    }

    /// Records a start: running, not waiting.
    pub fn started(&mut self, pid: i32, at: SystemTime, container_id: Option<String>) {
        self.running = Some(Running {
            pid,
            started_at: at,
        });
        self.waiting = None;
        if container_id.is_some() {
            self.container_id = container_id;
        }
    }

    /// Records an exit of the current run (it becomes `last_exit`).
    pub fn exited(&mut self, termination: Termination) {
        self.running = None;
        self.previous_exit = self.last_exit.replace(termination);
    }

    /// Records that the container is about to run again (its restart count rises).
    pub fn restarting(&mut self) {
        self.restart_count += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::supervise::exit::ExitStatus;

    #[test]
    fn exits_shift_into_previous_and_round_trip_json() {
        let t = |s| UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s);
        let mut r = ContainerRecord::new("app", ContainerKind::Regular);
        for attempt in 0..3 {
            r.started(
                100 + attempt,
                t(attempt as u64 * 10),
                Some(format!("podvisor://{attempt}")),
            );
            let exit = ExitRecord {
                container: "app".into(),
                attempt: attempt as u32,
                pid: 100 + attempt,
                started_at: t(attempt as u64 * 10),
                finished_at: t(attempt as u64 * 10 + 5),
                status: ExitStatus::Code(attempt),
                oom_killed: false,
            };
            r.exited(Termination {
                exit,
                message: None,
                reason: None,
                container_id: r.container_id.clone(),
            });
            r.restarting();
        }
        assert_eq!(r.restart_count, 3);
        assert_eq!(
            r.last_exit.as_ref().unwrap().exit.status,
            ExitStatus::Code(2)
        );
        assert_eq!(
            r.previous_exit.as_ref().unwrap().exit.status,
            ExitStatus::Code(1)
        );
        assert!(r.running.is_none());
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ContainerRecord>(&json).unwrap(), r);
        // Old files without the optional fields still load.
        let minimal: ContainerRecord =
            serde_json::from_str(r#"{"name":"x","kind":"Init","restartCount":0}"#).unwrap();
        assert_eq!(minimal, ContainerRecord::new("x", ContainerKind::Init));
    }
}
