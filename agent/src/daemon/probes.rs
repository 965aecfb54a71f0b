//! Probes in the agent: one [`Engine`] for every pod, fed by the pod workers' start and
//! exit hooks ([`PodProbes`], held by each pod's bundle maker), its reports turned into
//! [`ProbeUpdate`]s for the pod's worker and events for the status store.
//!
//! Exec probes run through the runtime's `exec` ([`RuntimeExec`]): the container's own
//! process settings (user, env, capabilities...) from its bundle, with the probe's command.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::runtime::Spec;

use crate::probe::engine::{ContainerKey, Engine, ProbeReport};
use crate::probe::exec::{ExecResult, ExecRunner, collect};
use crate::probe::runner::ProbeTarget;
use crate::probe::spec::NamedPort;
use crate::probe::state::ProbeAction;
use crate::supervise::worker::ProbeUpdate;

/// Runs exec probes inside containers with the runtime's `exec`.
#[derive(Debug, Clone)]
pub struct RuntimeExec {
    /// The runtime's state root (`<state>/runtime`).
    pub root: PathBuf,
}

impl RuntimeExec {
    fn start(
        &self,
        id: &str,
        command: &[String],
    ) -> Result<(podvisor_runtime::container::Spawned, File), String> {
        let state = podvisor_runtime::state::load(&self.root, id)
            .map_err(|e| format!("exec probe: container {id}: {e}"))?;
        let config = state.bundle.join("config.json");
        let spec =
            Spec::load(&config).map_err(|e| format!("exec probe: {}: {e}", config.display()))?;
        let mut process = spec
            .process()
            .clone()
            .ok_or_else(|| format!("exec probe: {}: no process", config.display()))?;
        process.set_args(Some(command.to_vec()));
        process.set_terminal(Some(false));
        let null =
            File::open("/dev/null").map_err(|e| format!("exec probe: open /dev/null: {e}"))?;
        let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| format!("exec probe: create output pipe: {e}"))?;
        let spawned =
            podvisor_runtime::container::exec(&podvisor_runtime::container::ExecOptions {
                root: self.root.clone(),
                id: id.to_owned(),
                process,
                stdio: podvisor_runtime::container::Stdio {
                    stdin: null.as_fd(),
                    stdout: writer.as_fd(),
                    stderr: writer.as_fd(),
                },
                console_socket: None,
                preserve_fds: Vec::new(),
            })
            .map_err(|e| format!("exec probe: container {id}: {e}"))?;
        drop(writer); // `collect` needs every write end closed here to see EOF
        Ok((spawned, File::from(reader)))
    }
}

impl ExecRunner for RuntimeExec {
    fn run(&self, container_id: &str, command: &[String], timeout: Duration) -> ExecResult {
        let deadline = Instant::now() + timeout;
        let id = container_id.trim_start_matches("podvisor://");
        match self.start(id, command) {
            Ok((spawned, output)) => {
                collect(&spawned.pidfd, output, deadline, || {}).unwrap_or_else(ExecResult::Failed)
            }
            Err(e) => ExecResult::Failed(e),
        }
    }
}

/// One pod's side of the engine, used from its worker through the bundle maker.
#[derive(Debug, Clone)]
pub struct PodProbes {
    engine: Arc<Engine>,
    uid: String,
    pod_ip: String,
    host_network: bool,
}

impl PodProbes {
    /// Probes of pod `uid` reached at `pod_ip` (the node IP with hostNetwork; otherwise the
    /// pod's network namespace, where loopback is the pod).
    pub fn new(engine: Arc<Engine>, uid: &str, pod_ip: &str, host_network: bool) -> Self {
        let pod_ip = if pod_ip.is_empty() {
            "127.0.0.1"
        } else {
            pod_ip
        };
        Self {
            engine,
            uid: uid.to_owned(),
            pod_ip: pod_ip.to_owned(),
            host_network,
        }
    }

    fn key(&self, c: &Container) -> ContainerKey {
        ContainerKey {
            pod_uid: self.uid.clone(),
            container: c.name.clone(),
        }
    }

    /// A container run started: (re)start its probes.
    pub fn started(
        &self,
        pod: &Pod,
        c: &Container,
        container_id: &str,
        namespaces: &BTreeMap<String, PathBuf>,
    ) {
        if let Some(key) = self.add(pod, c, namespaces) {
            self.engine
                .container_running(key, container_id, Instant::now());
        }
    }

    /// A run found already running (re-adoption): probe it again, starting from started and
    /// ready (what it was before, as far as anyone knows) rather than from the initial
    /// values of a new run.
    pub fn adopted(
        &self,
        pod: &Pod,
        c: &Container,
        container_id: &str,
        namespaces: &BTreeMap<String, PathBuf>,
    ) {
        if let Some(key) = self.add(pod, c, namespaces) {
            self.engine
                .container_adopted(key, container_id, Instant::now());
        }
    }

    /// Registers the container's probes with the engine; `None` if it has none.
    fn add(
        &self,
        pod: &Pod,
        c: &Container,
        namespaces: &BTreeMap<String, PathBuf>,
    ) -> Option<ContainerKey> {
        if c.liveness_probe.is_none() && c.readiness_probe.is_none() && c.startup_probe.is_none() {
            return None;
        }
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let probes = match crate::probe::convert::container_probes(c, grace) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(container = %c.name, error = %e, "probes not started");
                return None;
            }
        };
        let ports = c
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                p.name.clone().map(|name| NamedPort {
                    name,
                    container_port: p.container_port,
                })
            })
            .collect();
        let target = ProbeTarget {
            pod_ip: self.pod_ip.clone(),
            netns: if self.host_network {
                None
            } else {
                namespaces.get("network").cloned()
            },
            ports,
        };
        let key = self.key(c);
        self.engine.add(key.clone(), probes, target);
        Some(key)
    }

    /// A container run ended: its probes stop until the next run.
    pub fn exited(&self, c: &Container) {
        self.engine.container_exited(self.key(c));
    }

    /// The pod is gone: forget its containers.
    pub fn remove(engine: &Engine, uid: &str, containers: &[String]) {
        for c in containers {
            engine.remove(ContainerKey {
                pod_uid: uid.to_owned(),
                container: c.clone(),
            });
        }
    }
}

/// What a report means for the pod's worker (`None`: an event only, or the engine's own
/// scheduling): a verdict bound to the run it is about, so the worker drops it if that run
/// has ended (a readiness result of a previous run never applies to the next one).
pub fn update_of(report: &ProbeReport) -> Option<ProbeUpdate> {
    let update = plain_update(report)?;
    Some(if report.container_id.is_empty() {
        update
    } else {
        ProbeUpdate::ForRun {
            run: report.container_id.clone(),
            update: Box::new(update),
        }
    })
}

fn plain_update(report: &ProbeReport) -> Option<ProbeUpdate> {
    match &report.action {
        ProbeAction::StartedChanged(b) => Some(ProbeUpdate::Started(*b)),
        ProbeAction::ReadyChanged(b) => Some(ProbeUpdate::Ready(*b)),
        ProbeAction::RestartContainer {
            grace_seconds,
            message,
            ..
        } => Some(ProbeUpdate::Restart {
            grace: Duration::from_secs(u64::try_from(*grace_seconds).unwrap_or(0)),
            message: message.clone(),
        }),
        ProbeAction::Event(_) | ProbeAction::RunNow(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::state::{EventType, ProbeEvent, RestartReason};

    fn report(action: ProbeAction) -> ProbeReport {
        ProbeReport {
            key: ContainerKey {
                pod_uid: "u".into(),
                container: "c".into(),
            },
            container_id: String::new(),
            action,
        }
    }

    #[test]
    fn verdicts_are_bound_to_the_run_they_are_about() {
        let mut r = report(ProbeAction::ReadyChanged(true));
        r.container_id = "podvisor://u-c-1".into();
        assert_eq!(
            update_of(&r),
            Some(ProbeUpdate::ForRun {
                run: "podvisor://u-c-1".into(),
                update: Box::new(ProbeUpdate::Ready(true)),
            })
        );
        r.action = ProbeAction::RunNow(crate::probe::spec::ProbeKind::Readiness);
        assert_eq!(update_of(&r), None);
    }

    #[test]
    fn probe_reports_map_to_worker_updates() {
        let cases = [
            (
                ProbeAction::StartedChanged(true),
                Some(ProbeUpdate::Started(true)),
            ),
            (
                ProbeAction::ReadyChanged(false),
                Some(ProbeUpdate::Ready(false)),
            ),
            (
                ProbeAction::RestartContainer {
                    grace_seconds: 7,
                    reason: RestartReason::LivenessProbe,
                    message: "Container c failed liveness probe".into(),
                },
                Some(ProbeUpdate::Restart {
                    grace: Duration::from_secs(7),
                    message: "Container c failed liveness probe".into(),
                }),
            ),
            (
                ProbeAction::RestartContainer {
                    grace_seconds: -1,
                    reason: RestartReason::StartupProbe,
                    message: "m".into(),
                },
                Some(ProbeUpdate::Restart {
                    grace: Duration::ZERO,
                    message: "m".into(),
                }),
            ),
            (
                ProbeAction::Event(ProbeEvent {
                    event_type: EventType::Warning,
                    reason: "Unhealthy",
                    message: "x".into(),
                }),
                None,
            ),
        ];
        for (action, want) in cases {
            assert_eq!(update_of(&report(action.clone())), want, "{action:?}");
        }
    }
}
