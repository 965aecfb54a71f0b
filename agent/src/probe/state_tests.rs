//! Table tests of the probe state machine with a fake clock (a fixed base `Instant` plus offsets).

use std::time::{Duration, Instant};

use super::*;
use crate::probe::spec::{Handler, PortRef};

fn spec(initial_delay: u32, success: u32, failure: u32) -> ProbeSpec {
    ProbeSpec {
        initial_delay_seconds: initial_delay,
        period_seconds: 1,
        success_threshold: success,
        failure_threshold: failure,
        ..ProbeSpec::with_defaults(Handler::TcpSocket {
            host: None,
            port: PortRef::Number(80),
        })
    }
}

fn ok() -> Outcome {
    Outcome::Success(String::new())
}
fn fail() -> Outcome {
    Outcome::Failure("HTTP probe failed with statuscode: 500".into())
}

fn restarts(actions: &[ProbeAction]) -> Vec<(i64, RestartReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            ProbeAction::RestartContainer {
                grace_seconds,
                reason,
                ..
            } => Some((*grace_seconds, *reason)),
            _ => None,
        })
        .collect()
}

fn events(actions: &[ProbeAction]) -> Vec<(&'static str, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            ProbeAction::Event(e) => Some((e.reason, e.message.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn nothing_runs_before_the_container_runs_and_the_delay_passes() {
    let t0 = Instant::now();
    let mut p = ContainerProbes::new("app", 30, Some(spec(5, 1, 3)), Some(spec(0, 1, 3)), None);
    assert_eq!(
        p.gate(ProbeKind::Liveness, t0),
        Gate::Skip(Skip::NotRunning)
    );
    p.container_running("c1", t0);
    // (offset, liveness gate, readiness gate): whole seconds are compared, like the kubelet.
    let table = [
        (Duration::ZERO, Gate::Skip(Skip::InitialDelay), Gate::Run),
        (
            Duration::from_millis(4999),
            Gate::Skip(Skip::InitialDelay),
            Gate::Run,
        ),
        (Duration::from_secs(5), Gate::Run, Gate::Run),
    ];
    for (dt, live, ready) in table {
        assert_eq!(
            p.gate(ProbeKind::Liveness, t0 + dt),
            live,
            "liveness at {dt:?}"
        );
        assert_eq!(
            p.gate(ProbeKind::Readiness, t0 + dt),
            ready,
            "readiness at {dt:?}"
        );
    }
    assert_eq!(
        p.gate(ProbeKind::Startup, t0),
        Gate::Skip(Skip::NotConfigured)
    );
}

#[test]
fn readiness_starts_failure_and_liveness_success() {
    let t0 = Instant::now();
    let mut p = ContainerProbes::new("app", 30, Some(spec(0, 1, 3)), Some(spec(0, 1, 3)), None);
    let actions = p.container_running("c1", t0);
    assert_eq!(p.result(ProbeKind::Liveness), Some(ProbeResult::Success));
    assert_eq!(p.result(ProbeKind::Readiness), Some(ProbeResult::Failure));
    assert!(p.started() && !p.ready());
    // No startup probe: started at once, and readiness is asked to run now.
    assert_eq!(
        actions,
        vec![
            ProbeAction::StartedChanged(true),
            ProbeAction::RunNow(ProbeKind::Readiness)
        ]
    );
}

#[test]
fn container_without_readiness_probe_is_ready_when_running() {
    let t0 = Instant::now();
    let mut p = ContainerProbes::new("app", 30, None, None, None);
    let actions = p.container_running("c1", t0);
    assert!(p.ready());
    assert_eq!(
        actions,
        vec![
            ProbeAction::StartedChanged(true),
            ProbeAction::ReadyChanged(true)
        ]
    );
    assert_eq!(
        p.container_exited(),
        vec![
            ProbeAction::StartedChanged(false),
            ProbeAction::ReadyChanged(false)
        ]
    );
}

#[test]
fn results_flip_only_after_consecutive_thresholds() {
    // (success threshold, failure threshold, outcome sequence, ready after each step)
    let s = true;
    let f = false;
    let table: Vec<(u32, u32, Vec<bool>, Vec<bool>)> = vec![
        (1, 3, vec![s], vec![true]),
        (2, 3, vec![s, s], vec![false, true]),
        (2, 3, vec![s, f, s, s], vec![false, false, false, true]),
        (1, 3, vec![s, f, f, f], vec![true, true, true, false]),
        (
            1,
            3,
            vec![s, f, f, s, f, f, f],
            vec![true, true, true, true, true, true, false],
        ),
        (
            3,
            1,
            vec![f, s, s, f, s, s, s],
            vec![false, false, false, false, false, false, true],
        ),
    ];
    for (succ, fail_t, seq, want) in table {
        let t0 = Instant::now();
        let mut p = ContainerProbes::new("app", 30, None, Some(spec(0, succ, fail_t)), None);
        p.container_running("c1", t0);
        let got: Vec<bool> = seq
            .iter()
            .map(|good| {
                p.record(
                    ProbeKind::Readiness,
                    "c1",
                    &if *good { ok() } else { fail() },
                );
                p.ready()
            })
            .collect();
        assert_eq!(got, want, "success={succ} failure={fail_t} seq={seq:?}");
    }
}

#[test]
fn readiness_flips_ready_both_ways_with_actions() {
    let t0 = Instant::now();
    let mut p = ContainerProbes::new("app", 30, None, Some(spec(0, 1, 2)), None);
    p.container_running("c1", t0);
    assert_eq!(
        p.record(ProbeKind::Readiness, "c1", &ok()),
        vec![ProbeAction::ReadyChanged(true)]
    );
    let first = p.record(ProbeKind::Readiness, "c1", &fail());
    assert_eq!(
        events(&first),
        vec![(
            "Unhealthy",
            "Readiness probe failed: HTTP probe failed with statuscode: 500".into()
        )]
    );
    assert!(p.ready(), "one failure is below the threshold of 2");
    let second = p.record(ProbeKind::Readiness, "c1", &fail());
    assert!(second.contains(&ProbeAction::ReadyChanged(false)));
    assert!(restarts(&second).is_empty(), "readiness never restarts");
    assert_eq!(
        p.gate(ProbeKind::Readiness, t0),
        Gate::Run,
        "readiness keeps probing after failing"
    );
}

#[test]
fn liveness_failure_restarts_with_probe_grace_then_holds_until_new_container() {
    let t0 = Instant::now();
    let mut live = spec(0, 1, 3);
    live.termination_grace_period_seconds = Some(7);
    let mut p = ContainerProbes::new("etcd", 30, Some(live), None, None);
    p.container_running("c1", t0);
    assert!(restarts(&p.record(ProbeKind::Liveness, "c1", &fail())).is_empty());
    assert!(restarts(&p.record(ProbeKind::Liveness, "c1", &fail())).is_empty());
    let third = p.record(ProbeKind::Liveness, "c1", &fail());
    assert_eq!(restarts(&third), vec![(7, RestartReason::LivenessProbe)]);
    assert!(events(&third).contains(&(
        "Killing",
        "Container etcd failed liveness probe, will be restarted".into()
    )));
    assert_eq!(
        p.gate(ProbeKind::Liveness, t0 + Duration::from_secs(1)),
        Gate::Skip(Skip::OnHold)
    );
    // The restarted container is probed again from the initial value.
    p.container_exited();
    p.container_running("c2", t0 + Duration::from_secs(3));
    assert_eq!(
        p.gate(ProbeKind::Liveness, t0 + Duration::from_secs(3)),
        Gate::Run
    );
    assert_eq!(p.result(ProbeKind::Liveness), Some(ProbeResult::Success));
    // An outcome that raced with the restart is ignored.
    assert!(p.record(ProbeKind::Liveness, "c1", &fail()).is_empty());
}

#[test]
fn restart_grace_falls_back_to_the_pod_and_never_below_two_seconds() {
    let table = [
        (None, 30, 30),
        (Some(5), 30, 5),
        (None, 0, 2),
        (Some(1), 30, 2),
    ];
    for (probe_grace, pod_grace, want) in table {
        let t0 = Instant::now();
        let mut live = spec(0, 1, 1);
        live.termination_grace_period_seconds = probe_grace;
        let mut p = ContainerProbes::new("app", pod_grace, Some(live), None, None);
        p.container_running("c1", t0);
        let got = restarts(&p.record(ProbeKind::Liveness, "c1", &fail()));
        assert_eq!(
            got,
            vec![(want, RestartReason::LivenessProbe)],
            "probe={probe_grace:?} pod={pod_grace}"
        );
    }
}

#[test]
fn startup_gates_liveness_and_readiness_then_stops() {
    let t0 = Instant::now();
    let mut p = ContainerProbes::new(
        "api",
        30,
        Some(spec(0, 1, 3)),
        Some(spec(0, 1, 3)),
        Some(spec(0, 1, 30)),
    );
    assert_eq!(p.container_running("c1", t0), vec![]);
    assert!(!p.started());
    assert_eq!(
        p.gate(ProbeKind::Liveness, t0),
        Gate::Skip(Skip::WaitingForStartup)
    );
    assert_eq!(
        p.gate(ProbeKind::Readiness, t0),
        Gate::Skip(Skip::WaitingForStartup)
    );
    assert_eq!(p.gate(ProbeKind::Startup, t0), Gate::Run);
    assert!(
        p.record(ProbeKind::Startup, "c1", &fail())
            .iter()
            .all(|a| matches!(a, ProbeAction::Event(_)))
    );
    let actions = p.record(ProbeKind::Startup, "c1", &ok());
    assert_eq!(
        actions,
        vec![
            ProbeAction::StartedChanged(true),
            ProbeAction::RunNow(ProbeKind::Readiness)
        ]
    );
    assert_eq!(
        p.gate(ProbeKind::Startup, t0),
        Gate::Skip(Skip::StartupDone)
    );
    assert_eq!(p.gate(ProbeKind::Liveness, t0), Gate::Run);
    assert_eq!(p.gate(ProbeKind::Readiness, t0), Gate::Run);
    assert!(!p.ready(), "started but readiness has not succeeded yet");
}

#[test]
fn startup_failure_restarts_with_startup_reason() {
    let t0 = Instant::now();
    let mut p = ContainerProbes::new("api", 30, Some(spec(0, 1, 3)), None, Some(spec(0, 1, 2)));
    p.container_running("c1", t0);
    p.record(ProbeKind::Startup, "c1", &fail());
    let actions = p.record(ProbeKind::Startup, "c1", &fail());
    assert_eq!(restarts(&actions), vec![(30, RestartReason::StartupProbe)]);
    assert!(events(&actions).contains(&(
        "Killing",
        "Container api failed startup probe, will be restarted".into()
    )));
    assert_eq!(p.gate(ProbeKind::Startup, t0), Gate::Skip(Skip::OnHold));
}

#[test]
fn errors_are_reported_but_do_not_count() {
    let t0 = Instant::now();
    let mut p = ContainerProbes::new("app", 30, Some(spec(0, 1, 2)), None, None);
    p.container_running("c1", t0);
    p.record(ProbeKind::Liveness, "c1", &fail());
    let err = p.record(
        ProbeKind::Liveness,
        "c1",
        &Outcome::Error("port \"metrics\" not found".into()),
    );
    assert_eq!(
        events(&err),
        vec![(
            "Unhealthy",
            "Liveness probe errored and resulted in unknown state: port \"metrics\" not found"
                .into()
        )]
    );
    assert!(restarts(&err).is_empty());
    // The error neither reset nor advanced the run: the next failure is the second in a row.
    assert_eq!(
        restarts(&p.record(ProbeKind::Liveness, "c1", &fail())),
        vec![(30, RestartReason::LivenessProbe)]
    );
}

#[test]
fn warning_counts_as_success_with_a_probe_warning_event() {
    let t0 = Instant::now();
    let mut p = ContainerProbes::new("app", 30, None, Some(spec(0, 1, 3)), None);
    p.container_running("c1", t0);
    let actions = p.record(
        ProbeKind::Readiness,
        "c1",
        &Outcome::Warning("Probe terminated redirects".into()),
    );
    assert_eq!(
        events(&actions),
        vec![(
            "ProbeWarning",
            "Readiness probe warning: Probe terminated redirects".into()
        )]
    );
    assert!(p.ready());
}

#[test]
fn exited_container_is_not_ready_and_not_probed() {
    let t0 = Instant::now();
    let mut p = ContainerProbes::new("app", 30, None, Some(spec(0, 1, 3)), None);
    p.container_running("c1", t0);
    p.record(ProbeKind::Readiness, "c1", &ok());
    let actions = p.container_exited();
    assert_eq!(
        actions,
        vec![
            ProbeAction::StartedChanged(false),
            ProbeAction::ReadyChanged(false)
        ]
    );
    assert_eq!(
        p.gate(ProbeKind::Readiness, t0),
        Gate::Skip(Skip::NotRunning)
    );
}

/// One step of a container's life as the probe state sees it.
#[derive(Debug, Clone, Copy)]
enum Step {
    Running(&'static str),
    Exited,
    /// A readiness outcome (true: success) of a probe that ran against this run.
    Probed(&'static str, bool),
}

#[test]
fn a_new_run_resets_readiness_counters_and_ignores_results_of_the_old_run() {
    use Step::*;
    // Readiness needs 2 successes in a row and 2 failures in a row.
    // (steps, ready after each step)
    let table: Vec<(&str, Vec<(Step, bool)>)> = vec![
        (
            "one success before the restart does not count for the new run",
            vec![
                (Running("c1"), false),
                (Probed("c1", true), false),
                (Exited, false),
                (Running("c2"), false),
                (Probed("c2", true), false),
                (Probed("c2", true), true),
            ],
        ),
        (
            "a success of the old run arriving after the restart is dropped",
            vec![
                (Running("c1"), false),
                (Probed("c1", true), false),
                (Running("c2"), false),
                (Probed("c1", true), false),
                (Probed("c1", true), false),
                (Probed("c2", true), false),
                (Probed("c2", true), true),
            ],
        ),
        (
            "a ready run that restarts is not ready until its own probes pass",
            vec![
                (Running("c1"), false),
                (Probed("c1", true), false),
                (Probed("c1", true), true),
                (Exited, false),
                (Running("c2"), false),
                (Probed("c2", true), false),
                (Probed("c2", true), true),
            ],
        ),
        (
            "a failure streak of the old run does not carry over",
            vec![
                (Running("c1"), false),
                (Probed("c1", true), false),
                (Probed("c1", true), true),
                (Probed("c1", false), true),
                (Running("c2"), false),
                (Probed("c2", true), false),
                (Probed("c2", true), true),
                (Probed("c2", false), true),
                (Probed("c2", false), false),
            ],
        ),
        (
            "the same id seen running again after an exit starts from zero",
            vec![
                (Running("c1"), false),
                (Probed("c1", true), false),
                (Exited, false),
                (Running("c1"), false),
                (Probed("c1", true), false),
                (Probed("c1", true), true),
            ],
        ),
    ];
    let t0 = Instant::now();
    for (name, steps) in table {
        let mut p = ContainerProbes::new("app", 30, None, Some(spec(0, 2, 2)), None);
        for (i, (step, want)) in steps.into_iter().enumerate() {
            match step {
                Running(id) => {
                    p.container_running(id, t0);
                }
                Exited => {
                    p.container_exited();
                }
                Probed(id, good) => {
                    p.record(ProbeKind::Readiness, id, &if good { ok() } else { fail() });
                }
            }
            assert_eq!(p.ready(), want, "{name}: step {i} {step:?}");
        }
    }
}

#[test]
fn an_adopted_run_starts_started_and_ready_until_its_probes_fail() {
    let t0 = Instant::now();
    let mut p = ContainerProbes::new(
        "app",
        30,
        Some(spec(0, 1, 2)),
        Some(spec(0, 1, 2)),
        Some(spec(0, 1, 3)),
    );
    assert_eq!(p.container_adopted("c1", t0), vec![]);
    assert!(p.started() && p.ready());
    // Startup is done for an adopted run; liveness and readiness run at once.
    assert_eq!(
        p.gate(ProbeKind::Startup, t0),
        Gate::Skip(Skip::StartupDone)
    );
    assert_eq!(p.gate(ProbeKind::Readiness, t0), Gate::Run);
    assert_eq!(p.gate(ProbeKind::Liveness, t0), Gate::Run);
    assert_eq!(p.record(ProbeKind::Readiness, "c1", &fail()).len(), 1); // the event only
    assert!(p.ready());
    let actions = p.record(ProbeKind::Readiness, "c1", &fail());
    assert!(actions.contains(&ProbeAction::ReadyChanged(false)));
    assert!(!p.ready());
    // A later new run is a new run: not ready until its own probe passes.
    p.container_running("c2", t0);
    assert!(!p.started());
}
