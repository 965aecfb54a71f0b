//! What a pod worker is given: where things live and how supervision is tuned, and the
//! [`BundleMaker`] seam through which the agent turns a container into an OCI bundle.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::logs::file::RotateConfig;
use crate::supervise::backoff::BackoffConfig;
use crate::supervise::record::WaitReason;

/// Why a bundle could not be made: shown as the container's waiting reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleError {
    /// `ErrImagePull`, `CreateContainerConfigError`, ...
    pub reason: WaitReason,
    /// For people.
    pub message: String,
}

/// Makes the OCI bundle of one container run.
pub trait BundleMaker: Send {
    /// Writes the bundle of `container`'s run `attempt` and returns its directory. The
    /// pod's shared namespaces held by the shim are in `namespaces` (kind → path; empty
    /// before the first container has run).
    fn make(
        &mut self,
        pod: &Pod,
        container: &Container,
        attempt: u32,
        namespaces: &BTreeMap<String, PathBuf>,
    ) -> Result<PathBuf, BundleError>;

    /// The host path of a container's termination message file, if it has one.
    fn termination_message_file(&self, _pod: &Pod, _container: &Container) -> Option<PathBuf> {
        None
    }

    /// The image's stop signal, if it declares one.
    fn image_stop_signal(&self, _container: &Container) -> Option<String> {
        None
    }

    /// The image reference of the container's last bundle (`imageID` in its status:
    /// `<repo>@sha256:<manifest digest>`, or `sha256:<config digest>`), once known.
    fn image_id(&self, _container: &Container) -> Option<String> {
        None
    }

    /// Called when a container run started (the integration starts its probes here).
    fn on_started(&mut self, _pod: &Pod, _container: &Container, _pid: i32, _container_id: &str) {}

    /// Called when the worker re-adopts a run that was already running (an agent restart or
    /// a lost shim): the integration resumes its probes here, trusting the run's earlier
    /// readiness until a probe says otherwise (as the kubelet does after its restart).
    fn on_adopted(&mut self, _pod: &Pod, _container: &Container, _pid: i32, _container_id: &str) {}

    /// Called when a container run ended (the integration stops its probes here).
    fn on_exited(&mut self, _pod: &Pod, _container: &Container) {}
}

/// A prober's verdict about one container, delivered with [`super::PodWorker::probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeUpdate {
    /// The startup probe passed (or failed back to unknown).
    Started(bool),
    /// The readiness result changed.
    Ready(bool),
    /// Liveness or startup failed: stop the container within `grace` and let its restart
    /// policy decide what follows.
    Restart {
        /// Time between the stop signal and SIGKILL.
        grace: std::time::Duration,
        /// The kubelet's message (`Container app failed liveness probe, will be restarted`).
        message: String,
    },
    /// A verdict about one run of the container (its container ID, `podvisor://<id>`): it
    /// is applied only while that run is the container's current one, so a result about a
    /// run that has since exited never lands on its successor.
    ForRun {
        /// The container ID of the run the verdict is about.
        run: String,
        /// The verdict.
        update: Box<ProbeUpdate>,
    },
}

impl ProbeUpdate {
    /// The verdict to apply to a container whose current run is `current` (`None`: not
    /// running): the plain verdict, or `None` when it is about another run.
    pub fn for_current(self, current: Option<&str>) -> Option<ProbeUpdate> {
        match self {
            ProbeUpdate::ForRun { run, update } => (current == Some(run.as_str()))
                .then_some(*update)?
                .for_current(current),
            plain => current.is_some().then_some(plain),
        }
    }
}

/// Where things live and how supervision is tuned.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The binary to re-execute as `podvisor shim`.
    pub exe: PathBuf,
    /// `--state`.
    pub state_root: PathBuf,
    /// `--log-dir`.
    pub log_root: PathBuf,
    /// The runtime's state root.
    pub runtime_root: PathBuf,
    /// Restart backoff.
    pub backoff: BackoffConfig,
    /// Log rotation.
    pub rotate: RotateConfig,
    /// Skip limits whose controller is missing.
    pub cgroup_best_effort: bool,
    /// `--cgroup-parent`: each new shim is moved into its pod's cgroup below it
    /// ([`crate::supervise::shim::placement`]); `None` leaves it in the caller's cgroup.
    pub cgroup_parent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn for_run(run: &str, update: ProbeUpdate) -> ProbeUpdate {
        ProbeUpdate::ForRun {
            run: run.into(),
            update: Box::new(update),
        }
    }

    #[test]
    fn verdicts_apply_only_to_the_run_they_are_about() {
        let ready = ProbeUpdate::Ready(true);
        // (verdict, the container's current run, what the worker applies)
        let table = [
            (
                for_run("podvisor://a-0", ready.clone()),
                Some("podvisor://a-0"),
                Some(ready.clone()),
            ),
            (
                for_run("podvisor://a-0", ready.clone()),
                Some("podvisor://a-1"),
                None,
            ),
            (for_run("podvisor://a-0", ready.clone()), None, None),
            (ready.clone(), Some("podvisor://a-1"), Some(ready.clone())),
            (ready.clone(), None, None),
            (
                for_run("podvisor://a-1", ProbeUpdate::Started(false)),
                Some("podvisor://a-1"),
                Some(ProbeUpdate::Started(false)),
            ),
        ];
        for (update, current, want) in table {
            assert_eq!(
                update.clone().for_current(current),
                want,
                "{update:?} on {current:?}"
            );
        }
    }
}
