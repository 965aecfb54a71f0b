//! Container statuses computed from [`ContainerRecord`]s as the kubelet reports them.
//!
//! One container's status is a pure function of its spec, its record and its probe
//! results: `running` while a run is live, `waiting` with the supervisor's reason (or the
//! default `ContainerCreating` / `PodInitializing`), `terminated` with Completed / Error /
//! OOMKilled after an exit that is not followed by a restart; `lastState` holds the exit
//! before the current state. The pod's phase and conditions are in [`super::phase`].

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus,
};

use super::clock::api_time;
use super::policy::ContainerKind;
use super::record::{ContainerRecord, Termination};

/// What the prober currently says about a running container. Without a probe of a kind,
/// its field is `true` (the kubelet's behaviour: no readiness probe means ready).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeView {
    /// Readiness result (or no readiness probe).
    pub ready: bool,
    /// Startup probe passed (or no startup probe).
    pub started: bool,
}

impl Default for ProbeView {
    fn default() -> Self {
        Self {
            ready: true,
            started: true,
        }
    }
}

/// The API's terminated state of one exit (reason Completed / Error / OOMKilled).
pub fn terminated_state(t: &Termination) -> ContainerState {
    let exit = &t.exit;
    let reason = t.reason.clone().unwrap_or_else(|| {
        if exit.oom_killed {
            "OOMKilled"
        } else if exit.status.exit_code() == 0 {
            "Completed"
        } else {
            "Error"
        }
        .to_string()
    });
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: t.container_id.clone(),
            exit_code: exit.status.exit_code(),
            signal: exit.status.signal(),
            reason: Some(reason),
            message: t.message.clone().filter(|m| !m.is_empty()),
            started_at: Some(api_time(exit.started_at)),
            finished_at: Some(api_time(exit.finished_at)),
        }),
        ..Default::default()
    }
}

fn waiting_state(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: (!message.is_empty()).then(|| message.to_string()),
        }),
        ..Default::default()
    }
}

/// The status of `container` given its record (`None`: not created yet). `pod_has_init`
/// selects the default waiting reason (`PodInitializing` when the pod has init
/// containers, else `ContainerCreating`), as the kubelet's `convertToAPIContainerStatuses`.
pub fn container_status(
    container: &Container,
    kind: ContainerKind,
    record: Option<&ContainerRecord>,
    probe: ProbeView,
    pod_has_init: bool,
) -> ContainerStatus {
    let default_reason = if pod_has_init {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    let mut status = ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        started: Some(false),
        restart_count: 0,
        state: Some(waiting_state(default_reason, "")),
        ..Default::default()
    };
    let Some(rec) = record else {
        return status;
    };
    status.restart_count = i32::try_from(rec.restart_count).unwrap_or(i32::MAX);
    status.image_id = rec.image_id.clone().unwrap_or_default();
    status.container_id = rec.container_id.clone();
    let (state, last) = if let Some(run) = &rec.running {
        status.started = Some(probe.started);
        status.ready = probe.started && probe.ready;
        let running = ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(api_time(run.started_at)),
            }),
            ..Default::default()
        };
        (running, rec.last_exit.as_ref())
    } else if let Some(w) = &rec.waiting {
        (
            waiting_state(w.reason.as_str(), &w.message),
            rec.last_exit.as_ref(),
        )
    } else if let Some(exit) = &rec.last_exit {
        // An init container that completed is reported ready, as the kubelet's prober does.
        status.ready = kind == ContainerKind::Init && exit.exit.success();
        status.container_id = exit.container_id.clone().or(status.container_id);
        (terminated_state(exit), rec.previous_exit.as_ref())
    } else {
        (waiting_state(default_reason, ""), None)
    };
    status.state = Some(state);
    status.last_state = Some(last.map(terminated_state).unwrap_or_default());
    status
}

/// Go's `time.Duration.String()` for whole seconds: `10s`, `5m0s`, `1h0m0s`.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

/// The kubelet's `CrashLoopBackOff` message.
pub fn crash_loop_message(
    delay: Duration,
    container: &str,
    pod: &str,
    namespace: &str,
    uid: &str,
) -> String {
    format!(
        "back-off {} restarting failed container={container} pod={pod}_{namespace}({uid})",
        go_duration(delay)
    )
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::supervise::exit::{ExitRecord, ExitStatus};
    use crate::supervise::record::{WaitReason, Waiting};

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn term(status: ExitStatus, oom: bool) -> Termination {
        Termination {
            exit: ExitRecord {
                container: "c".into(),
                attempt: 0,
                pid: 7,
                started_at: t(0),
                finished_at: t(5),
                status,
                oom_killed: oom,
            },
            message: None,
            reason: None,
            container_id: Some("podvisor://old".into()),
        }
    }

    fn container() -> Container {
        Container {
            name: "c".into(),
            image: Some("busybox".into()),
            ..Default::default()
        }
    }

    fn state_summary(s: &ContainerStatus) -> (String, String) {
        let st = s.state.as_ref().unwrap();
        let now = if let Some(w) = &st.waiting {
            format!("waiting:{}", w.reason.as_deref().unwrap_or(""))
        } else if st.running.is_some() {
            "running".into()
        } else if let Some(x) = &st.terminated {
            format!(
                "terminated:{}:{}:{:?}",
                x.reason.as_deref().unwrap_or(""),
                x.exit_code,
                x.signal
            )
        } else {
            "none".into()
        };
        let last = match s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
            Some(x) => format!("{}:{}", x.reason.as_deref().unwrap_or(""), x.exit_code),
            None => "-".into(),
        };
        (now, last)
    }

    #[test]
    fn container_status_table() {
        let mut creating = ContainerRecord::new("c", ContainerKind::Regular);
        creating.waiting = None;
        let mut running = ContainerRecord::new("c", ContainerKind::Regular);
        running.started(10, t(0), Some("podvisor://a".into()));
        let mut running_after_crash = running.clone();
        running_after_crash.last_exit = Some(term(ExitStatus::Code(2), false));
        running_after_crash.restart_count = 1;
        let mut crashloop = ContainerRecord::new("c", ContainerKind::Regular);
        crashloop.exited(term(ExitStatus::Code(1), false));
        crashloop.waiting = Some(Waiting {
            reason: WaitReason::CrashLoopBackOff,
            message: "back-off 10s".into(),
        });
        let mut completed = ContainerRecord::new("c", ContainerKind::Regular);
        completed.exited(term(ExitStatus::Code(1), false));
        completed.exited(term(ExitStatus::Code(0), false));
        let mut oom = ContainerRecord::new("c", ContainerKind::Regular);
        oom.exited(term(ExitStatus::Signal(9), true));
        let mut killed = ContainerRecord::new("c", ContainerKind::Regular);
        killed.exited(term(ExitStatus::Signal(15), false));
        let mut pull = ContainerRecord::new("c", ContainerKind::Regular);
        pull.waiting = Some(Waiting {
            reason: WaitReason::ImagePullBackOff,
            message: "Back-off pulling image".into(),
        });

        let cases: &[(&str, Option<&ContainerRecord>, bool, (&str, &str))] = &[
            (
                "not_created_is_container_creating",
                None,
                false,
                ("waiting:ContainerCreating", "-"),
            ),
            (
                "not_created_with_init_is_pod_initializing",
                None,
                true,
                ("waiting:PodInitializing", "-"),
            ),
            (
                "record_without_run_is_default_waiting",
                Some(&creating),
                false,
                ("waiting:ContainerCreating", "-"),
            ),
            ("running", Some(&running), false, ("running", "-")),
            (
                "running_after_crash_shows_last_state",
                Some(&running_after_crash),
                false,
                ("running", "Error:2"),
            ),
            (
                "crash_loop_waits_with_last_exit",
                Some(&crashloop),
                false,
                ("waiting:CrashLoopBackOff", "Error:1"),
            ),
            (
                "exit_zero_is_completed_with_previous_last",
                Some(&completed),
                false,
                ("terminated:Completed:0:None", "Error:1"),
            ),
            (
                "oom_kill_is_oomkilled_137",
                Some(&oom),
                false,
                ("terminated:OOMKilled:137:Some(9)", "-"),
            ),
            (
                "signal_death_is_error_with_signal",
                Some(&killed),
                false,
                ("terminated:Error:143:Some(15)", "-"),
            ),
            (
                "image_pull_backoff",
                Some(&pull),
                false,
                ("waiting:ImagePullBackOff", "-"),
            ),
        ];
        for (name, rec, has_init, (now, last)) in cases {
            let s = container_status(
                &container(),
                ContainerKind::Regular,
                *rec,
                ProbeView::default(),
                *has_init,
            );
            assert_eq!(
                state_summary(&s),
                (now.to_string(), last.to_string()),
                "{name}"
            );
        }
    }

    #[test]
    fn ready_and_started_follow_probes_only_while_running() {
        let mut running = ContainerRecord::new("c", ContainerKind::Regular);
        running.started(10, t(0), None);
        let cases = [
            (
                "no_probes_running_is_ready",
                ProbeView::default(),
                (true, Some(true)),
            ),
            (
                "readiness_failing",
                ProbeView {
                    ready: false,
                    started: true,
                },
                (false, Some(true)),
            ),
            (
                "startup_pending_is_not_ready",
                ProbeView {
                    ready: true,
                    started: false,
                },
                (false, Some(false)),
            ),
        ];
        for (name, probe, want) in cases {
            let s = container_status(
                &container(),
                ContainerKind::Regular,
                Some(&running),
                probe,
                false,
            );
            assert_eq!((s.ready, s.started), want, "{name}");
        }
        let mut done = ContainerRecord::new("c", ContainerKind::Init);
        done.exited(term(ExitStatus::Code(0), false));
        let s = container_status(
            &container(),
            ContainerKind::Init,
            Some(&done),
            ProbeView::default(),
            true,
        );
        assert_eq!(
            (s.ready, s.started),
            (true, Some(false)),
            "completed_init_is_ready"
        );
        let s = container_status(
            &container(),
            ContainerKind::Regular,
            Some(&done),
            ProbeView::default(),
            true,
        );
        assert_eq!(
            (s.ready, s.started),
            (false, Some(false)),
            "completed_app_is_not_ready"
        );
    }

    #[test]
    fn terminated_carries_times_message_and_container_id() {
        let mut rec = ContainerRecord::new("c", ContainerKind::Regular);
        let mut x = term(ExitStatus::Code(3), false);
        x.message = Some("disk full".into());
        rec.exited(x);
        rec.restart_count = 4;
        let s = container_status(
            &container(),
            ContainerKind::Regular,
            Some(&rec),
            ProbeView::default(),
            false,
        );
        let term = s.state.unwrap().terminated.unwrap();
        assert_eq!(term.message.as_deref(), Some("disk full"));
        assert_eq!(term.started_at.unwrap().0.as_second(), 1_700_000_000);
        assert_eq!(term.finished_at.unwrap().0.as_second(), 1_700_000_005);
        assert_eq!(s.container_id.as_deref(), Some("podvisor://old"));
        assert_eq!(s.restart_count, 4);
        assert_eq!(s.image, "busybox");
    }

    #[test]
    fn crash_loop_message_matches_kubelet() {
        assert_eq!(
            crash_loop_message(
                Duration::from_secs(300),
                "app",
                "web-node1",
                "default",
                "u1"
            ),
            "back-off 5m0s restarting failed container=app pod=web-node1_default(u1)"
        );
        assert_eq!(go_duration(Duration::from_secs(40)), "40s");
        assert_eq!(go_duration(Duration::from_secs(3725)), "1h2m5s");
    }
}
