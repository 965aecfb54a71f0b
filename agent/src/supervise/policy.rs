//! The restart decision: what to do when a container has exited.
//!
//! Kubernetes semantics: the pod's `restartPolicy` (Always / OnFailure / Never) governs
//! app containers; ordinary init containers are re-run on failure unless the pod says
//! Never (an init container that succeeded is never re-run); an init container with its
//! own `restartPolicy: Always` is a sidecar and is always restarted. Restarts go through
//! the container's [`Backoff`]. Pure: a function of (policy, exit, backoff, now).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::backoff::{Backoff, BackoffConfig};
use super::exit::ExitRecord;

/// A pod's (or a sidecar's) restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Restart whatever the exit (the default).
    #[default]
    Always,
    /// Restart only after a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// Parses the API's spelling; `None` (unset) is `Always`, as the API server defaults it.
    pub fn parse(value: Option<&str>) -> Option<Self> {
        match value {
            None | Some("Always") => Some(Self::Always),
            Some("OnFailure") => Some(Self::OnFailure),
            Some("Never") => Some(Self::Never),
            Some(_) => None,
        }
    }
}

/// The role a container plays in its pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerKind {
    /// An init container that must run to success before the next one starts.
    Init,
    /// An init container with `restartPolicy: Always`: runs beside the app containers.
    Sidecar,
    /// An app container (`spec.containers`).
    Regular,
}

/// The policy that applies to one container of a pod with policy `pod`.
pub fn effective_policy(pod: RestartPolicy, kind: ContainerKind) -> RestartPolicy {
    match (kind, pod) {
        (ContainerKind::Sidecar, _) => RestartPolicy::Always,
        (ContainerKind::Regular, p) => p,
        (ContainerKind::Init, RestartPolicy::Never) => RestartPolicy::Never,
        (ContainerKind::Init, _) => RestartPolicy::OnFailure,
    }
}

/// What the supervisor does with an exited container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartAction {
    /// Start it again now.
    StartNow,
    /// Start it again at `until`; until then its state is `CrashLoopBackOff`.
    BackOff {
        /// Earliest start time.
        until: SystemTime,
        /// The delay imposed (for the `back-off 20s restarting ...` message).
        delay: Duration,
    },
    /// Leave it exited for good (Completed, or failed under Never).
    Leave,
}

/// Decides what to do after a container of kind `kind` ended as `exit`. Records the exit
/// in `backoff` when a restart follows, so call it exactly once per exit.
pub fn decide_restart(
    pod_policy: RestartPolicy,
    kind: ContainerKind,
    exit: &ExitRecord,
    backoff: &mut Backoff,
    config: &BackoffConfig,
    now: SystemTime,
) -> RestartAction {
    let restart = match effective_policy(pod_policy, kind) {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !exit.success(),
        RestartPolicy::Never => false,
    };
    if !restart {
        return RestartAction::Leave;
    }
    let until = backoff.record_exit(config, exit.started_at, exit.finished_at);
    if until <= now {
        RestartAction::StartNow
    } else {
        RestartAction::BackOff {
            until,
            delay: backoff.last_delay(),
        }
    }
}

/// Whether a container that is waiting out its backoff may start at `now`.
pub fn may_start(backoff: &Backoff, now: SystemTime) -> bool {
    backoff.remaining(now).is_none()
}

#[cfg(test)]
mod tests {
    use super::ContainerKind::{Init, Regular, Sidecar};
    use super::RestartPolicy::{Always, Never, OnFailure};
    use super::*;
    use crate::supervise::exit::ExitStatus;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn exit(success: bool, started: SystemTime, finished: SystemTime) -> ExitRecord {
        ExitRecord {
            container: "c".into(),
            attempt: 0,
            pid: 1,
            started_at: started,
            finished_at: finished,
            status: ExitStatus::Code(if success { 0 } else { 1 }),
            oom_killed: false,
        }
    }

    #[test]
    fn restart_decision_table() {
        // (name, pod policy, kind, success, prior exits in the crash loop, expected)
        enum Want {
            Now,
            Wait(u64),
            Leave,
        }
        let cases: &[(&str, RestartPolicy, ContainerKind, bool, u32, Want)] = &[
            (
                "always_restarts_success_at_once",
                Always,
                Regular,
                true,
                0,
                Want::Now,
            ),
            (
                "always_restarts_failure_at_once",
                Always,
                Regular,
                false,
                0,
                Want::Now,
            ),
            (
                "always_second_restart_backs_off_10s",
                Always,
                Regular,
                false,
                1,
                Want::Wait(10),
            ),
            (
                "always_third_restart_backs_off_20s",
                Always,
                Regular,
                true,
                2,
                Want::Wait(20),
            ),
            (
                "on_failure_leaves_success",
                OnFailure,
                Regular,
                true,
                0,
                Want::Leave,
            ),
            (
                "on_failure_restarts_failure",
                OnFailure,
                Regular,
                false,
                0,
                Want::Now,
            ),
            (
                "on_failure_backs_off_repeated_failure",
                OnFailure,
                Regular,
                false,
                1,
                Want::Wait(10),
            ),
            (
                "never_leaves_failure",
                Never,
                Regular,
                false,
                0,
                Want::Leave,
            ),
            ("never_leaves_success", Never, Regular, true, 0, Want::Leave),
            (
                "init_success_is_never_rerun",
                Always,
                Init,
                true,
                0,
                Want::Leave,
            ),
            (
                "init_failure_reruns_under_always",
                Always,
                Init,
                false,
                0,
                Want::Now,
            ),
            (
                "init_failure_reruns_under_on_failure",
                OnFailure,
                Init,
                false,
                1,
                Want::Wait(10),
            ),
            (
                "init_failure_is_final_under_never",
                Never,
                Init,
                false,
                0,
                Want::Leave,
            ),
            (
                "sidecar_restarts_under_never",
                Never,
                Sidecar,
                true,
                0,
                Want::Now,
            ),
            (
                "sidecar_backs_off_under_on_failure",
                OnFailure,
                Sidecar,
                true,
                1,
                Want::Wait(10),
            ),
        ];
        let config = BackoffConfig::default();
        for (name, policy, kind, success, prior, want) in cases {
            let mut b = Backoff::new();
            let mut clock = 0;
            for _ in 0..*prior {
                b.record_exit(&config, t(clock), t(clock + 1));
                clock += 1;
            }
            let finished = t(clock + 1);
            let e = exit(*success, t(clock), finished);
            let got = decide_restart(*policy, *kind, &e, &mut b, &config, finished);
            match (want, got) {
                (Want::Now, RestartAction::StartNow) | (Want::Leave, RestartAction::Leave) => {}
                (Want::Wait(secs), RestartAction::BackOff { until, delay }) => {
                    assert_eq!(delay, Duration::from_secs(*secs), "{name}");
                    assert_eq!(until, finished + Duration::from_secs(*secs), "{name}");
                }
                (_, got) => panic!("{name}: got {got:?}"),
            }
        }
    }

    #[test]
    fn leave_does_not_advance_backoff() {
        let config = BackoffConfig::default();
        let mut b = Backoff::new();
        let got = decide_restart(
            OnFailure,
            Regular,
            &exit(true, t(0), t(1)),
            &mut b,
            &config,
            t(1),
        );
        assert_eq!(got, RestartAction::Leave);
        assert_eq!(b, Backoff::new());
    }

    #[test]
    fn exit_noticed_late_starts_now_when_backoff_already_elapsed() {
        // The agent was away: the exit happened 60 s ago, longer than the 10 s backoff.
        let config = BackoffConfig::default();
        let mut b = Backoff::new();
        b.record_exit(&config, t(0), t(1));
        let got = decide_restart(
            Always,
            Regular,
            &exit(false, t(1), t(2)),
            &mut b,
            &config,
            t(62),
        );
        assert_eq!(got, RestartAction::StartNow);
        assert!(may_start(&b, t(62)));
        assert!(!may_start(&b, t(5)));
    }

    #[test]
    fn policy_parses_api_spelling() {
        assert_eq!(RestartPolicy::parse(None), Some(Always));
        assert_eq!(RestartPolicy::parse(Some("OnFailure")), Some(OnFailure));
        assert_eq!(RestartPolicy::parse(Some("Never")), Some(Never));
        assert_eq!(RestartPolicy::parse(Some("never")), None);
    }
}
