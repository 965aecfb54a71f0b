//! Table tests for kubectl-style pod rows.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::supervise::exit::{ExitRecord, ExitStatus};
use crate::supervise::phase::{PodFacts, pod_status};
use crate::supervise::policy::ContainerKind;
use crate::supervise::record::{ContainerRecord, Termination, WaitReason, Waiting};

#[test]
fn human_duration_table() {
    let cases = [
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (330, "5m30s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 180, "5h3m"),
        (30 * 3600, "30h"),
        (76 * 3600, "3d4h"),
        (40 * 86400, "40d"),
        (740 * 86400, "2y10d"),
        (9 * 365 * 86400, "9y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}");
    }
}

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

fn exit(code: i32, sig: Option<i32>) -> Termination {
    Termination {
        exit: ExitRecord {
            container: String::new(),
            attempt: 0,
            pid: 1,
            started_at: t(0),
            finished_at: t(100),
            status: sig.map_or(ExitStatus::Code(code), ExitStatus::Signal),
            oom_killed: false,
        },
        message: None,
        reason: None,
        container_id: None,
    }
}

fn pod_with(init: &[&str], apps: &[&str], records: &[ContainerRecord]) -> Pod {
    let c = |n: &&str| Container {
        name: n.to_string(),
        ..Default::default()
    };
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some("web-n1".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            init_containers: (!init.is_empty()).then(|| init.iter().map(c).collect()),
            containers: apps.iter().map(c).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let facts = PodFacts {
        start_time: Some(t(0)),
        sandbox_ready: true,
        ..Default::default()
    };
    pod.status = Some(pod_status(
        &pod,
        records,
        &BTreeMap::new(),
        &facts,
        None,
        t(0),
    ));
    pod
}

#[test]
fn pod_row_table() {
    use ContainerKind::{Init, Regular};
    let run = |n: &str, k| {
        let mut r = ContainerRecord::new(n, k);
        r.started(1, t(0), None);
        r
    };
    let crash = |n: &str, k, restarts| {
        let mut r = ContainerRecord::new(n, k);
        r.exited(exit(1, None));
        r.restart_count = restarts;
        r.waiting = Some(Waiting {
            reason: WaitReason::CrashLoopBackOff,
            message: String::new(),
        });
        r
    };
    let done = |n: &str, k, code, sig| {
        let mut r = ContainerRecord::new(n, k);
        r.exited(exit(code, sig));
        r
    };
    let mut restarted = run("a", Regular);
    restarted.restart_count = 2;
    restarted.last_exit = Some(exit(1, None));
    let cases = vec![
        (
            "pending",
            pod_with(&[], &["a"], &[]),
            ("0/1", "ContainerCreating", "0"),
        ),
        (
            "running",
            pod_with(&[], &["a", "b"], &[run("a", Regular), run("b", Regular)]),
            ("2/2", "Running", "0"),
        ),
        (
            "restarted",
            pod_with(&[], &["a"], &[restarted]),
            ("1/1", "Running", "2 (5m ago)"),
        ),
        (
            "crash_loop",
            pod_with(&[], &["a"], &[crash("a", Regular, 4)]),
            ("0/1", "CrashLoopBackOff", "4 (5m ago)"),
        ),
        (
            "completed",
            pod_with(&[], &["a"], &[done("a", Regular, 0, None)]),
            ("0/1", "Completed", "0"),
        ),
        (
            "error",
            pod_with(&[], &["a"], &[done("a", Regular, 3, None)]),
            ("0/1", "Error", "0"),
        ),
        (
            "init_waiting",
            pod_with(&["i1", "i2"], &["a"], &[]),
            ("0/1", "Init:0/2", "0"),
        ),
        (
            "init_second_running",
            pod_with(
                &["i1", "i2"],
                &["a"],
                &[done("i1", Init, 0, None), run("i2", Init)],
            ),
            ("0/1", "Init:1/2", "0"),
        ),
        (
            "init_crash_loop",
            pod_with(&["i1"], &["a"], &[crash("i1", Init, 3)]),
            ("0/1", "Init:CrashLoopBackOff", "3 (5m ago)"),
        ),
        (
            "init_failed",
            pod_with(&["i1"], &["a"], &[done("i1", Init, 2, None)]),
            ("0/1", "Init:Error", "0"),
        ),
        (
            "init_done_app_creating",
            pod_with(&["i1"], &["a"], &[done("i1", Init, 0, None)]),
            ("0/1", "PodInitializing", "0"),
        ),
    ];
    for (name, pod, (ready, status, restarts)) in cases {
        let row = pod_row(&pod, t(400));
        assert_eq!(
            (
                row.ready.as_str(),
                row.status.as_str(),
                row.restarts.as_str()
            ),
            (ready, status, restarts),
            "{name}"
        );
        assert_eq!(row.age, "6m40s", "{name}");
    }
}

#[test]
fn render_pads_columns_like_kubectl() {
    let rows = vec![
        vec!["etcd-node1".to_string(), "1/1".to_string()],
        vec!["a".to_string(), "0/12".to_string()],
    ];
    assert_eq!(
        render(&["NAME", "READY"], &rows),
        "NAME         READY\netcd-node1   1/1\na            0/12\n"
    );
}
