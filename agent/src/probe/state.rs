//! The probe state machine of one container, as the kubelet's prober worker runs it, as a pure
//! value: it decides whether a probe may run now ([`ContainerProbes::gate`]) and turns each
//! handler outcome into results and actions ([`ContainerProbes::record`]). No clocks, threads
//! or sockets: the caller passes `now`, which is what makes the table tests below exact.
//!
//! Semantics (kubelet `pkg/kubelet/prober/worker.go` and `prober_manager.go`):
//! - nothing is probed until the container runs and `initialDelaySeconds` (whole seconds since
//!   it started, truncated) have passed;
//! - liveness starts as Success, readiness as Failure, startup as unknown; a new container
//!   resets them;
//! - while a startup probe has not succeeded, liveness and readiness are not run; once it has,
//!   the startup probe stops and readiness is run at once;
//! - a result changes only after `successThreshold` / `failureThreshold` consecutive equal
//!   results; a prober *error* is reported and otherwise thrown away;
//! - a liveness or startup Failure asks for a restart (probe-level grace period, else the pod's,
//!   at least 2 s) and puts that probe on hold until a new container appears.

use std::time::{Duration, Instant};

use super::outcome::Outcome;
use super::spec::{ProbeKind, ProbeSpec};

/// The kubelet never kills with less than this grace period (`minimumGracePeriodInSeconds`).
pub const MIN_GRACE_SECONDS: i64 = 2;

/// A settled probe result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// Healthy / ready / started.
    Success,
    /// Unhealthy / not ready / not started.
    Failure,
}

/// Why a probe is not run now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The container has no probe of this kind.
    NotConfigured,
    /// No running container.
    NotRunning,
    /// A liveness or startup failure already asked for a restart; waiting for a new container.
    OnHold,
    /// `initialDelaySeconds` has not passed.
    InitialDelay,
    /// Liveness and readiness wait for the startup probe to succeed.
    WaitingForStartup,
    /// The startup probe has succeeded for this container; it is not run again.
    StartupDone,
}

/// What [`ContainerProbes::gate`] decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Run the handler now.
    Run,
    /// Do not run it at this tick.
    Skip(Skip),
}

/// Event type, as in `v1.Event.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

/// An event about the container, with the kubelet's reason and message text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeEvent {
    /// Normal or Warning.
    pub event_type: EventType,
    /// `Unhealthy`, `ProbeWarning` or `Killing`.
    pub reason: &'static str,
    /// Human-readable, e.g. `Liveness probe failed: HTTP probe failed with statuscode: 500`.
    pub message: String,
}

/// Why the probes ask for a restart (the kubelet's `reasonLivenessProbe` / `reasonStartupProbe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartReason {
    /// The liveness probe reached its failure threshold.
    LivenessProbe,
    /// The startup probe reached its failure threshold.
    StartupProbe,
}

/// What the supervisor must do after a recorded outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeAction {
    /// Record this event (`Unhealthy`, `ProbeWarning`, `Killing`).
    Event(ProbeEvent),
    /// The container's `started` changed.
    StartedChanged(bool),
    /// The container's `ready` changed (and with it `ContainersReady` / `Ready`).
    ReadyChanged(bool),
    /// Run this probe now instead of at its next tick (readiness once startup succeeds).
    RunNow(ProbeKind),
    /// Kill the container with this grace period; the restart policy decides what follows.
    RestartContainer {
        /// Seconds between the stop signal and SIGKILL.
        grace_seconds: i64,
        /// Which probe failed.
        reason: RestartReason,
        /// `Container X failed liveness probe` (the kubelet's kill message).
        message: String,
    },
}

/// One probe of one container: its spec and the worker's counters.
#[derive(Clone, Debug)]
struct Worker {
    spec: ProbeSpec,
    /// None = unknown (startup's initial value).
    result: Option<ProbeResult>,
    last: Option<ProbeResult>,
    run: u32,
    on_hold: bool,
}

impl Worker {
    fn new(spec: ProbeSpec) -> Worker {
        Worker {
            spec,
            result: None,
            last: None,
            run: 0,
            on_hold: false,
        }
    }
}

/// The container instance the probes currently target.
#[derive(Clone, Debug)]
struct Instance {
    id: String,
    started_at: Instant,
    running: bool,
}

/// The three probes of one container and the state the kubelet derives from them.
#[derive(Clone, Debug)]
pub struct ContainerProbes {
    container_name: String,
    pod_grace_seconds: i64,
    workers: [Option<Worker>; 3],
    instance: Option<Instance>,
}

fn slot(kind: ProbeKind) -> usize {
    match kind {
        ProbeKind::Liveness => 0,
        ProbeKind::Readiness => 1,
        ProbeKind::Startup => 2,
    }
}

fn initial_value(kind: ProbeKind) -> Option<ProbeResult> {
    match kind {
        ProbeKind::Liveness => Some(ProbeResult::Success),
        ProbeKind::Readiness => Some(ProbeResult::Failure),
        ProbeKind::Startup => None,
    }
}

impl ContainerProbes {
    /// Probes for container `container_name` of a pod whose `terminationGracePeriodSeconds` is
    /// `pod_grace_seconds`. Nothing runs until [`ContainerProbes::container_running`].
    pub fn new(
        container_name: &str,
        pod_grace_seconds: i64,
        liveness: Option<ProbeSpec>,
        readiness: Option<ProbeSpec>,
        startup: Option<ProbeSpec>,
    ) -> ContainerProbes {
        ContainerProbes {
            container_name: container_name.to_owned(),
            pod_grace_seconds,
            workers: [
                liveness.map(Worker::new),
                readiness.map(Worker::new),
                startup.map(Worker::new),
            ],
            instance: None,
        }
    }

    /// The container's name.
    pub fn container_name(&self) -> &str {
        &self.container_name
    }

    /// The spec of one probe, if configured.
    pub fn spec(&self, kind: ProbeKind) -> Option<&ProbeSpec> {
        self.workers[slot(kind)].as_ref().map(|w| &w.spec)
    }

    /// The id of the container instance being probed, if any.
    pub fn container_id(&self) -> Option<&str> {
        self.instance.as_ref().map(|i| i.id.as_str())
    }

    /// The settled result of one probe (None: not configured, or startup still unknown).
    pub fn result(&self, kind: ProbeKind) -> Option<ProbeResult> {
        self.workers[slot(kind)].as_ref().and_then(|w| w.result)
    }

    /// `containerStatuses[].started`: running and, with a startup probe, that probe succeeded.
    pub fn started(&self) -> bool {
        let running = self.instance.as_ref().is_some_and(|i| i.running);
        running
            && match &self.workers[slot(ProbeKind::Startup)] {
                None => true,
                Some(w) => w.result == Some(ProbeResult::Success),
            }
    }

    /// `containerStatuses[].ready`: started and, with a readiness probe, that probe succeeded.
    pub fn ready(&self) -> bool {
        self.started()
            && match &self.workers[slot(ProbeKind::Readiness)] {
                None => true,
                Some(w) => w.result == Some(ProbeResult::Success),
            }
    }

    /// The supervisor saw container `id` running since `started_at`. A new run (a new id,
    /// or the same id reported running again after an exit) resets every probe to its
    /// initial value, clears the consecutive-result counters and lifts any hold, as the
    /// kubelet's worker does for a new container ID; the run already known changes nothing.
    pub fn container_running(&mut self, id: &str, started_at: Instant) -> Vec<ProbeAction> {
        let before = self.derived();
        if self
            .instance
            .as_ref()
            .is_some_and(|i| i.id == id && i.running)
        {
            return Vec::new();
        }
        self.instance = Some(Instance {
            id: id.to_owned(),
            started_at,
            running: true,
        });
        {
            for kind in ProbeKind::ALL {
                if let Some(w) = &mut self.workers[slot(kind)] {
                    w.result = initial_value(kind);
                    w.last = None;
                    w.run = 0;
                    w.on_hold = false;
                }
            }
        }
        self.changes_since(before)
    }

    /// Container `id` was found running by a supervisor that just (re)started (it adopts
    /// runs started before it). Like a new run, except that readiness and startup start as
    /// Success: the run was presumably started and ready before, and saying otherwise until
    /// the first probe would flap every pod NotReady on each agent restart (the kubelet keeps
    /// readiness across its own restarts the same way). The first failures past the
    /// thresholds correct it. Reports no change for the supervisor, whose view of an adopted
    /// run is started and ready.
    pub fn container_adopted(&mut self, id: &str, started_at: Instant) -> Vec<ProbeAction> {
        let actions = self.container_running(id, started_at);
        for kind in [ProbeKind::Readiness, ProbeKind::Startup] {
            if let Some(w) = &mut self.workers[slot(kind)] {
                w.result = Some(ProbeResult::Success);
            }
        }
        // Nothing to report: the supervisor already shows the adopted run started and ready.
        actions
            .into_iter()
            .filter(|a| {
                !matches!(
                    a,
                    ProbeAction::StartedChanged(_)
                        | ProbeAction::ReadyChanged(_)
                        | ProbeAction::RunNow(_)
                )
            })
            .collect()
    }

    /// The container exited: every configured probe reads Failure (as the kubelet's worker
    /// sets for a non-running container), so it is neither started nor ready.
    pub fn container_exited(&mut self) -> Vec<ProbeAction> {
        let before = self.derived();
        if let Some(i) = &mut self.instance {
            i.running = false;
        }
        for w in self.workers.iter_mut().flatten() {
            w.result = Some(ProbeResult::Failure);
        }
        self.changes_since(before)
    }

    /// Whether probe `kind` may run at `now`.
    pub fn gate(&self, kind: ProbeKind, now: Instant) -> Gate {
        let Some(w) = &self.workers[slot(kind)] else {
            return Gate::Skip(Skip::NotConfigured);
        };
        let Some(inst) = self.instance.as_ref().filter(|i| i.running) else {
            return Gate::Skip(Skip::NotRunning);
        };
        if w.on_hold {
            return Gate::Skip(Skip::OnHold);
        }
        // The kubelet compares whole seconds: int32(time.Since(startedAt).Seconds()).
        let ran = now.saturating_duration_since(inst.started_at).as_secs();
        if ran < u64::from(w.spec.initial_delay_seconds) {
            return Gate::Skip(Skip::InitialDelay);
        }
        match (self.started(), kind) {
            (true, ProbeKind::Startup) => Gate::Skip(Skip::StartupDone),
            (false, ProbeKind::Liveness | ProbeKind::Readiness) => {
                Gate::Skip(Skip::WaitingForStartup)
            }
            _ => Gate::Run,
        }
    }

    /// When the initial delay of `kind` ends for the current container (None if not running).
    pub fn initial_delay_end(&self, kind: ProbeKind) -> Option<Instant> {
        let w = self.workers[slot(kind)].as_ref()?;
        let inst = self.instance.as_ref().filter(|i| i.running)?;
        Some(inst.started_at + Duration::from_secs(u64::from(w.spec.initial_delay_seconds)))
    }

    /// Records the outcome of a probe `kind` that ran against container `container_id`.
    /// Outcomes for another (older) container are ignored.
    pub fn record(
        &mut self,
        kind: ProbeKind,
        container_id: &str,
        outcome: &Outcome,
    ) -> Vec<ProbeAction> {
        if self.container_id() != Some(container_id) {
            return Vec::new();
        }
        let mut actions = Vec::new();
        let result = match outcome {
            Outcome::Success(_) => ProbeResult::Success,
            Outcome::Warning(out) => {
                actions.push(event(
                    EventType::Warning,
                    "ProbeWarning",
                    format!("{kind} probe warning: {out}"),
                ));
                ProbeResult::Success
            }
            Outcome::Failure(out) => {
                actions.push(event(
                    EventType::Warning,
                    "Unhealthy",
                    format!("{kind} probe failed: {out}"),
                ));
                ProbeResult::Failure
            }
            Outcome::Error(err) => {
                actions.push(event(
                    EventType::Warning,
                    "Unhealthy",
                    format!("{kind} probe errored and resulted in unknown state: {err}"),
                ));
                return actions;
            }
        };
        let before = self.derived();
        let pod_grace = self.pod_grace_seconds;
        let name = self.container_name.clone();
        let Some(w) = &mut self.workers[slot(kind)] else {
            return actions;
        };
        if w.last == Some(result) {
            w.run = w.run.saturating_add(1);
        } else {
            w.last = Some(result);
            w.run = 1;
        }
        let threshold = match result {
            ProbeResult::Failure => w.spec.failure_threshold,
            ProbeResult::Success => w.spec.success_threshold,
        };
        if w.run < threshold {
            return actions;
        }
        w.result = Some(result);
        let restart = match (kind, result) {
            (ProbeKind::Liveness, ProbeResult::Failure) => {
                Some((RestartReason::LivenessProbe, "liveness"))
            }
            (ProbeKind::Startup, ProbeResult::Failure) => {
                Some((RestartReason::StartupProbe, "startup"))
            }
            _ => None,
        };
        if let Some((reason, word)) = restart {
            w.on_hold = true;
            w.run = 0;
            let grace = w.spec.termination_grace_period_seconds.unwrap_or(pod_grace);
            let message = format!("Container {name} failed {word} probe");
            actions.push(event(
                EventType::Normal,
                "Killing",
                format!("{message}, will be restarted"),
            ));
            actions.push(ProbeAction::RestartContainer {
                grace_seconds: grace.max(MIN_GRACE_SECONDS),
                reason,
                message,
            });
        }
        actions.extend(self.changes_since(before));
        actions
    }

    fn derived(&self) -> (bool, bool) {
        (self.started(), self.ready())
    }

    fn changes_since(&self, (started, ready): (bool, bool)) -> Vec<ProbeAction> {
        let mut actions = Vec::new();
        if self.started() != started {
            actions.push(ProbeAction::StartedChanged(self.started()));
            // prober_manager triggers readiness at once when a started container is not ready.
            if self.started() && self.workers[slot(ProbeKind::Readiness)].is_some() {
                actions.push(ProbeAction::RunNow(ProbeKind::Readiness));
            }
        }
        if self.ready() != ready {
            actions.push(ProbeAction::ReadyChanged(self.ready()));
        }
        actions
    }
}

fn event(event_type: EventType, reason: &'static str, message: String) -> ProbeAction {
    ProbeAction::Event(ProbeEvent {
        event_type,
        reason,
        message,
    })
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
