//! Table tests for pod phase and conditions.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

use super::*;
use crate::supervise::exit::{ExitRecord, ExitStatus};
use crate::supervise::record::{Termination, WaitReason, Waiting};

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

fn pod(policy: &str, init: &[&str], sidecars: &[&str], apps: &[&str]) -> Pod {
    let c = |n: &&str, sidecar: bool| Container {
        name: n.to_string(),
        image: Some("busybox".into()),
        restart_policy: sidecar.then(|| "Always".to_string()),
        ..Default::default()
    };
    let mut inits: Vec<Container> = sidecars.iter().map(|n| c(n, true)).collect();
    inits.extend(init.iter().map(|n| c(n, false)));
    Pod {
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: (!inits.is_empty()).then_some(inits),
            containers: apps.iter().map(|n| c(n, false)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn exit(code: i32) -> Termination {
    Termination {
        exit: ExitRecord {
            container: String::new(),
            attempt: 0,
            pid: 1,
            started_at: t(0),
            finished_at: t(1),
            status: ExitStatus::Code(code),
            oom_killed: false,
        },
        message: None,
        reason: None,
        container_id: None,
    }
}

/// A record in one of a few shapes: `run`, `exit:N`, `loop:N` (CrashLoopBackOff after exit N).
fn rec(name: &str, kind: ContainerKind, shape: &str) -> ContainerRecord {
    let mut r = ContainerRecord::new(name, kind);
    match shape.split_once(':') {
        None if shape == "run" => r.started(1, t(0), None),
        Some(("exit", code)) => r.exited(exit(code.parse().unwrap())),
        Some(("loop", code)) => {
            r.exited(exit(code.parse().unwrap()));
            r.waiting = Some(Waiting {
                reason: WaitReason::CrashLoopBackOff,
                message: String::new(),
            });
        }
        _ => panic!("bad shape {shape}"),
    }
    r
}

fn cond(status: &PodStatus, type_: &str) -> String {
    let c = status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap();
    let mut s = c.status.clone();
    if let Some(r) = &c.reason {
        s += &format!(" {r}");
    }
    if let Some(m) = &c.message {
        s += &format!(" ({m})");
    }
    s
}

struct Case {
    name: &'static str,
    pod: Pod,
    records: Vec<ContainerRecord>,
    unready: &'static [&'static str],
    phase: &'static str,
    initialized: &'static str,
    ready: &'static str,
}

#[test]
fn pod_phase_and_conditions_table() {
    use ContainerKind::{Init, Regular, Sidecar};
    let cases = vec![
        Case {
            name: "all_running_is_running_and_ready",
            pod: pod("Always", &[], &[], &["a", "b"]),
            records: vec![rec("a", Regular, "run"), rec("b", Regular, "run")],
            unready: &[],
            phase: "Running",
            initialized: "True",
            ready: "True",
        },
        Case {
            name: "nothing_created_is_pending",
            pod: pod("Always", &[], &[], &["a"]),
            records: vec![],
            unready: &[],
            phase: "Pending",
            initialized: "True",
            ready: "False ContainersNotReady (containers with unready status: [a])",
        },
        Case {
            name: "init_running_is_pending_not_initialized",
            pod: pod("Always", &["i1", "i2"], &[], &["a"]),
            records: vec![rec("i1", Init, "run")],
            unready: &[],
            phase: "Pending",
            initialized: "False ContainersNotInitialized (containers with incomplete status: [i1 i2])",
            ready: "False ContainersNotReady (containers with unready status: [a])",
        },
        Case {
            name: "init_failed_under_never_is_failed",
            pod: pod("Never", &["i1"], &[], &["a"]),
            records: vec![rec("i1", Init, "exit:1")],
            unready: &[],
            phase: "Failed",
            initialized: "False ContainersNotInitialized (containers with incomplete status: [i1])",
            ready: "False PodFailed",
        },
        Case {
            name: "init_crash_looping_under_always_is_pending",
            pod: pod("Always", &["i1"], &[], &["a"]),
            records: vec![rec("i1", Init, "loop:1")],
            unready: &[],
            phase: "Pending",
            initialized: "False ContainersNotInitialized (containers with incomplete status: [i1])",
            ready: "False ContainersNotReady (containers with unready status: [a])",
        },
        Case {
            name: "init_done_app_running",
            pod: pod("Always", &["i1"], &[], &["a"]),
            records: vec![rec("i1", Init, "exit:0"), rec("a", Regular, "run")],
            unready: &[],
            phase: "Running",
            initialized: "True",
            ready: "True",
        },
        Case {
            name: "all_completed_under_on_failure_is_succeeded",
            pod: pod("OnFailure", &["i1"], &[], &["a", "b"]),
            records: vec![
                rec("i1", Init, "exit:0"),
                rec("a", Regular, "exit:0"),
                rec("b", Regular, "exit:0"),
            ],
            unready: &[],
            phase: "Succeeded",
            initialized: "True PodCompleted",
            ready: "False PodCompleted",
        },
        Case {
            name: "one_failed_under_never_is_failed",
            pod: pod("Never", &[], &[], &["a", "b"]),
            records: vec![rec("a", Regular, "exit:0"), rec("b", Regular, "exit:2")],
            unready: &[],
            phase: "Failed",
            initialized: "True",
            ready: "False PodFailed",
        },
        Case {
            name: "one_still_running_under_never_is_running",
            pod: pod("Never", &[], &[], &["a", "b"]),
            records: vec![rec("a", Regular, "run"), rec("b", Regular, "exit:2")],
            unready: &[],
            phase: "Running",
            initialized: "True",
            ready: "False ContainersNotReady (containers with unready status: [b])",
        },
        Case {
            name: "all_exited_under_always_is_running_restarting",
            pod: pod("Always", &[], &[], &["a"]),
            records: vec![rec("a", Regular, "exit:0")],
            unready: &[],
            phase: "Running",
            initialized: "True",
            ready: "False ContainersNotReady (containers with unready status: [a])",
        },
        Case {
            name: "crash_loop_under_on_failure_is_running",
            pod: pod("OnFailure", &[], &[], &["a"]),
            records: vec![rec("a", Regular, "loop:1")],
            unready: &[],
            phase: "Running",
            initialized: "True",
            ready: "False ContainersNotReady (containers with unready status: [a])",
        },
        Case {
            name: "sidecar_not_started_is_pending",
            pod: pod("Always", &[], &["s"], &["a"]),
            records: vec![],
            unready: &[],
            phase: "Pending",
            initialized: "False ContainersNotInitialized (containers with incomplete status: [s])",
            ready: "False ContainersNotReady (containers with unready status: [s a])",
        },
        Case {
            name: "sidecar_and_app_running_is_ready",
            pod: pod("Always", &[], &["s"], &["a"]),
            records: vec![rec("s", Sidecar, "run"), rec("a", Regular, "run")],
            unready: &[],
            phase: "Running",
            initialized: "True",
            ready: "True",
        },
        Case {
            name: "sidecar_restarting_after_app_started_stays_running_and_initialized",
            pod: pod("Always", &[], &["s"], &["a"]),
            records: vec![rec("s", Sidecar, "loop:1"), rec("a", Regular, "run")],
            unready: &[],
            phase: "Running",
            initialized: "True",
            ready: "False ContainersNotReady (containers with unready status: [s])",
        },
        Case {
            name: "sidecar_does_not_block_success_under_never",
            pod: pod("Never", &[], &["s"], &["a"]),
            records: vec![rec("s", Sidecar, "exit:137"), rec("a", Regular, "exit:0")],
            unready: &[],
            phase: "Succeeded",
            initialized: "True PodCompleted",
            ready: "False PodCompleted",
        },
        Case {
            name: "readiness_failing_is_running_not_ready",
            pod: pod("Always", &[], &[], &["a", "b"]),
            records: vec![rec("a", Regular, "run"), rec("b", Regular, "run")],
            unready: &["b"],
            phase: "Running",
            initialized: "True",
            ready: "False ContainersNotReady (containers with unready status: [b])",
        },
    ];
    for case in cases {
        let probes: BTreeMap<String, ProbeView> = case
            .unready
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    ProbeView {
                        ready: false,
                        started: true,
                    },
                )
            })
            .collect();
        let facts = PodFacts {
            sandbox_ready: true,
            ..Default::default()
        };
        let s = pod_status(&case.pod, &case.records, &probes, &facts, None, t(10));
        let name = case.name;
        assert_eq!(s.phase.as_deref(), Some(case.phase), "{name}: phase");
        assert_eq!(
            cond(&s, "Initialized"),
            case.initialized,
            "{name}: Initialized"
        );
        assert_eq!(cond(&s, "Ready"), case.ready, "{name}: Ready");
        assert_eq!(
            cond(&s, "ContainersReady"),
            case.ready,
            "{name}: ContainersReady"
        );
        assert_eq!(cond(&s, "PodScheduled"), "True", "{name}");
    }
}

#[test]
fn condition_transition_time_is_kept_while_status_is_unchanged() {
    let p = pod("Always", &[], &[], &["a"]);
    let facts = PodFacts {
        sandbox_ready: true,
        ..Default::default()
    };
    let none = BTreeMap::new();
    let first = pod_status(&p, &[], &none, &facts, None, t(10));
    let running = vec![rec("a", ContainerKind::Regular, "run")];
    let second = pod_status(&p, &running, &none, &facts, Some(&first), t(20));
    let time = |s: &PodStatus, ty: &str| {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == ty)
            .unwrap()
            .last_transition_time
            .clone()
            .unwrap()
            .0
            .as_second()
    };
    assert_eq!(
        time(&second, "PodScheduled"),
        1_700_000_010,
        "unchanged keeps old time"
    );
    assert_eq!(
        time(&second, "Ready"),
        1_700_000_020,
        "flipped to True gets new time"
    );
    assert_eq!(second.init_container_statuses, None);
    assert_eq!(second.container_statuses.as_ref().unwrap().len(), 1);
}
