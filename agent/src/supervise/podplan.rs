//! The per-pod supervision decisions, as pure functions of the pod spec, the container
//! records and the clock: which containers to start now, what to do with an exit or a
//! failed start, and when to look again.
//!
//! Order (the kubelet's): init containers one at a time, each to success; a sidecar
//! (`restartPolicy: Always` init container) must be running and started before the next
//! init container; then all app containers together. Sidecars are stopped once every app
//! container has finished for good. The shim executes; these functions decide.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::backoff::BackoffConfig;
use super::phase::is_sidecar;
use super::policy::{ContainerKind, RestartAction, RestartPolicy, decide_restart};
use super::pull_backoff::PullRetry;
use super::record::{ContainerRecord, Termination, WaitReason, Waiting};
use super::status::{ProbeView, crash_loop_message};

/// Something the supervisor should do for a pod now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodAction {
    /// Create and start a container as run number `attempt` (its new restart count).
    Start {
        /// The container.
        container: String,
        /// Its role.
        kind: ContainerKind,
        /// The restart count the new run gets (also its log file number).
        attempt: u32,
    },
    /// Stop a running sidecar: every app container has finished for good.
    StopSidecar {
        /// The sidecar.
        container: String,
    },
}

/// The decision for one pod at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodPlan {
    /// What to do now.
    pub actions: Vec<PodAction>,
    /// The earliest time something becomes due (a backoff ends); `None`: only an event
    /// (an exit, a probe result) can change anything.
    pub wake_at: Option<SystemTime>,
    /// An init container failed under `restartPolicy: Never`: the pod will not progress.
    pub failed: bool,
}

/// The pod's identity for messages.
#[derive(Debug, Clone, Copy)]
struct Names<'a> {
    name: &'a str,
    namespace: &'a str,
    uid: &'a str,
}

fn names(pod: &Pod) -> Names<'_> {
    Names {
        name: pod.metadata.name.as_deref().unwrap_or_default(),
        namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
        uid: pod.metadata.uid.as_deref().unwrap_or_default(),
    }
}

fn pod_policy(pod: &Pod) -> RestartPolicy {
    pod.spec
        .as_ref()
        .and_then(|s| RestartPolicy::parse(s.restart_policy.as_deref()))
        .unwrap_or_default()
}

/// The kind of each container of the pod, init containers first, in spec order.
pub fn containers(pod: &Pod) -> Vec<(&Container, ContainerKind)> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let init = spec.init_containers.iter().flatten().map(|c| {
        let kind = if is_sidecar(c) {
            ContainerKind::Sidecar
        } else {
            ContainerKind::Init
        };
        (c, kind)
    });
    init.chain(spec.containers.iter().map(|c| (c, ContainerKind::Regular)))
        .collect()
}

/// Makes `records` hold exactly one record per container of `pod`, in spec order,
/// keeping existing records (matched by name) and dropping records of unknown names.
pub fn ensure_records(pod: &Pod, records: &mut Vec<ContainerRecord>) {
    let mut old: BTreeMap<String, ContainerRecord> =
        records.drain(..).map(|r| (r.name.clone(), r)).collect();
    for (c, kind) in containers(pod) {
        records.push(
            old.remove(&c.name)
                .unwrap_or_else(|| ContainerRecord::new(&c.name, kind)),
        );
    }
}

/// Applies an exit of `record`'s current run: decides restart (with backoff), and sets
/// the waiting reason shown until the restart. Returns the decision.
pub fn apply_exit(
    pod: &Pod,
    record: &mut ContainerRecord,
    termination: Termination,
    config: &BackoffConfig,
    now: SystemTime,
) -> RestartAction {
    let action = decide_restart(
        pod_policy(pod),
        record.kind,
        &termination.exit,
        &mut record.backoff,
        config,
        now,
    );
    record.exited(termination);
    match action {
        RestartAction::StartNow => {
            record.restart_at = Some(now);
            record.waiting = None;
        }
        RestartAction::BackOff { until, delay } => {
            let n = names(pod);
            record.restart_at = Some(until);
            record.waiting = Some(Waiting {
                reason: WaitReason::CrashLoopBackOff,
                message: crash_loop_message(delay, &record.name, n.name, n.namespace, n.uid),
            });
        }
        RestartAction::Leave => {
            record.restart_at = None;
            record.waiting = None;
        }
    }
    action
}

/// Applies an exit the supervisor caused by stopping the container (a sidecar after the
/// app containers finished, or the pod's termination): recorded, never restarted.
pub fn apply_stopped(record: &mut ContainerRecord, termination: Termination) {
    record.exited(termination);
    record.restart_at = None;
    record.waiting = None;
}

/// Applies a failed attempt to start `record` (image pull, config, runtime error): shows
/// `reason` and retries after the container's backoff, as the kubelet does.
pub fn apply_start_failure(
    record: &mut ContainerRecord,
    reason: WaitReason,
    message: String,
    config: &BackoffConfig,
    now: SystemTime,
) {
    let until = record.backoff.record_exit(config, now, now);
    record.running = None;
    record.restart_at = Some(until);
    record.pull_error_until = None;
    record.waiting = Some(Waiting { reason, message });
}

/// Applies a failed image pull to `record`: `ErrImagePull` with the pull's error, and the
/// next try when the image's pull backoff ([`super::pull_backoff`]) allows it. The
/// container's restart backoff and count are not touched: no run happened.
pub fn apply_pull_failure(record: &mut ContainerRecord, message: String, retry: PullRetry) {
    record.running = None;
    record.restart_at = Some(retry.not_before);
    record.pull_error_until = Some(retry.error_shown_until);
    record.waiting = Some(Waiting {
        reason: WaitReason::ErrImagePull,
        message,
    });
}

/// Applies a start that was not tried because `image` is backing off (another container
/// of the pod failed to pull it): `ImagePullBackOff` until `until`.
pub fn apply_pull_backoff(record: &mut ContainerRecord, image: &str, until: SystemTime) {
    record.running = None;
    record.restart_at = Some(until);
    record.pull_error_until = None;
    record.waiting = Some(Waiting {
        reason: WaitReason::ImagePullBackOff,
        message: pull_backoff_message(image),
    });
}

fn pull_backoff_message(image: &str) -> String {
    format!("Back-off pulling image \"{image}\"")
}

/// Whether the record is due to start at `now`, updating the waiting reason shown while
/// it is not (`ErrImagePull` turns into `ImagePullBackOff` once its showing time is over).
/// Returns `Err(t)` while backing off: `t` is when to look again (the retry, or the turn
/// of `ErrImagePull` into `ImagePullBackOff` if that comes first).
fn due(record: &mut ContainerRecord, image: &str, now: SystemTime) -> Result<(), SystemTime> {
    match record.restart_at {
        Some(at) if at > now => {
            if let Some(w) = &mut record.waiting
                && w.reason == WaitReason::ErrImagePull
            {
                if let Some(shown) = record.pull_error_until.filter(|u| *u > now) {
                    return Err(shown.min(at));
                }
                w.reason = WaitReason::ImagePullBackOff;
                w.message = pull_backoff_message(image);
                record.pull_error_until = None;
            }
            Err(at)
        }
        _ => Ok(()),
    }
}

/// The restart count a new run of `record` gets.
fn next_attempt(record: &ContainerRecord) -> u32 {
    if record.last_exit.is_some() {
        record.restart_count + 1
    } else {
        record.restart_count
    }
}

/// Where a container stands for ordering purposes.
enum Progress {
    /// Nothing more will happen to it (done, or failed for good).
    Final,
    /// It needs a start now.
    StartNow,
    /// It is backing off until this time.
    Waiting(SystemTime),
    /// It is running.
    Running,
}

fn progress(record: &mut ContainerRecord, image: &str, now: SystemTime) -> Progress {
    if record.running.is_some() {
        return Progress::Running;
    }
    let never_ran = record.last_exit.is_none() && record.restart_at.is_none();
    if never_ran {
        return Progress::StartNow;
    }
    if record.restart_at.is_none() {
        return Progress::Final;
    }
    match due(record, image, now) {
        Ok(()) => Progress::StartNow,
        Err(until) => Progress::Waiting(until),
    }
}

/// Decides what to do for `pod` now. `records` must come from [`ensure_records`].
pub fn next_actions(
    pod: &Pod,
    records: &mut [ContainerRecord],
    probes: &BTreeMap<String, ProbeView>,
    now: SystemTime,
) -> PodPlan {
    let mut plan = PodPlan::default();
    let specs = containers(pod);
    let wake = |plan: &mut PodPlan, t: SystemTime| {
        plan.wake_at = Some(plan.wake_at.map_or(t, |w| w.min(t)));
    };
    let start = |plan: &mut PodPlan, r: &ContainerRecord| {
        plan.actions.push(PodAction::Start {
            container: r.name.clone(),
            kind: r.kind,
            attempt: next_attempt(r),
        });
    };
    // Init containers, one at a time.
    for (c, kind) in specs.iter().filter(|(_, k)| *k != ContainerKind::Regular) {
        let Some(r) = records.iter_mut().find(|r| r.name == c.name) else {
            continue;
        };
        let image = c.image.as_deref().unwrap_or_default();
        match (kind, progress(r, image, now)) {
            (ContainerKind::Sidecar, Progress::Running) => {
                if !probes.get(&c.name).copied().unwrap_or_default().started {
                    return plan; // the next init waits for the sidecar's startup probe
                }
            }
            (ContainerKind::Init, Progress::Final) => {
                if !r.last_exit.as_ref().is_some_and(|e| e.exit.success()) {
                    plan.failed = true;
                    return plan;
                }
            }
            (_, Progress::Running) => return plan,
            (_, Progress::StartNow) => {
                start(&mut plan, r);
                return plan;
            }
            (_, Progress::Waiting(until)) => {
                wake(&mut plan, until);
                return plan;
            }
            (ContainerKind::Sidecar, Progress::Final) => {} // stopped for good: pod finishing
            (ContainerKind::Regular, _) => {}
        }
    }
    // App containers, all together.
    let mut all_final = true;
    for (c, _) in specs.iter().filter(|(_, k)| *k == ContainerKind::Regular) {
        let Some(r) = records.iter_mut().find(|r| r.name == c.name) else {
            continue;
        };
        match progress(r, c.image.as_deref().unwrap_or_default(), now) {
            Progress::Final => {}
            Progress::Running => all_final = false,
            Progress::StartNow => {
                all_final = false;
                start(&mut plan, r);
            }
            Progress::Waiting(until) => {
                all_final = false;
                wake(&mut plan, until);
            }
        }
    }
    if all_final {
        // Every app container is done for good: stop the sidecars, last started first.
        for (c, _) in specs
            .iter()
            .rev()
            .filter(|(_, k)| *k == ContainerKind::Sidecar)
        {
            if records
                .iter()
                .any(|r| r.name == c.name && r.running.is_some())
            {
                plan.actions.push(PodAction::StopSidecar {
                    container: c.name.clone(),
                });
            }
        }
    }
    plan
}

#[cfg(test)]
#[path = "podplan_tests.rs"]
mod tests;
