//! Scenario tests for the per-pod supervision decisions, with a fake clock.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::supervise::exit::{ExitRecord, ExitStatus};

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

fn pod(policy: &str, init: &[(&str, bool)], apps: &[&str]) -> Pod {
    let c = |n: &str, sidecar: bool| Container {
        name: n.into(),
        image: Some(format!("img-{n}")),
        restart_policy: sidecar.then(|| "Always".into()),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some("p-n1".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: Some(init.iter().map(|(n, s)| c(n, *s)).collect()),
            containers: apps.iter().map(|n| c(n, false)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A tiny simulator: records plus helpers that act like the shim reporting back.
struct Sim {
    pod: Pod,
    records: Vec<ContainerRecord>,
    probes: BTreeMap<String, ProbeView>,
    config: BackoffConfig,
}

impl Sim {
    fn new(pod: Pod) -> Self {
        let mut records = Vec::new();
        ensure_records(&pod, &mut records);
        Self {
            pod,
            records,
            probes: BTreeMap::new(),
            config: BackoffConfig::default(),
        }
    }

    fn rec(&mut self, name: &str) -> &mut ContainerRecord {
        self.records.iter_mut().find(|r| r.name == name).unwrap()
    }

    fn plan(&mut self, now: SystemTime) -> PodPlan {
        next_actions(&self.pod, &mut self.records, &self.probes, now)
    }

    /// Plans and performs every Start; returns the started names with attempts.
    fn step(&mut self, now: SystemTime) -> Vec<String> {
        let plan = self.plan(now);
        let mut done = Vec::new();
        for a in plan.actions {
            if let PodAction::Start {
                container, attempt, ..
            } = a
            {
                let r = self.rec(&container);
                r.restart_count = attempt;
                r.started(1, now, None);
                done.push(format!("{container}#{attempt}"));
            }
        }
        done
    }

    fn exit(&mut self, name: &str, code: i32, now: SystemTime) -> RestartAction {
        let started = self.rec(name).running.as_ref().unwrap().started_at;
        let attempt = self.rec(name).restart_count;
        let term = Termination {
            exit: ExitRecord {
                container: name.into(),
                attempt,
                pid: 1,
                started_at: started,
                finished_at: now,
                status: ExitStatus::Code(code),
                oom_killed: false,
            },
            message: None,
            reason: None,
            container_id: None,
        };
        let (pod, config) = (self.pod.clone(), self.config);
        apply_exit(&pod, self.rec(name), term, &config, now)
    }

    fn waiting(&mut self, name: &str) -> Option<String> {
        self.rec(name)
            .waiting
            .as_ref()
            .map(|w| w.reason.as_str().to_string())
    }
}

#[test]
fn init_containers_run_one_at_a_time_then_apps_together() {
    let mut s = Sim::new(pod("Always", &[("i1", false), ("i2", false)], &["a", "b"]));
    assert_eq!(s.step(t(0)), ["i1#0"]);
    assert_eq!(s.step(t(1)), Vec::<String>::new(), "i1 still running");
    s.exit("i1", 0, t(2));
    assert_eq!(s.step(t(2)), ["i2#0"]);
    s.exit("i2", 0, t(3));
    assert_eq!(s.step(t(3)), ["a#0", "b#0"]);
    assert_eq!(
        s.plan(t(4)),
        PodPlan::default(),
        "all running: nothing to do"
    );
}

#[test]
fn failed_init_retries_with_backoff_and_is_final_under_never() {
    let mut s = Sim::new(pod("OnFailure", &[("i1", false)], &["a"]));
    s.step(t(0));
    assert_eq!(s.exit("i1", 1, t(1)), RestartAction::StartNow);
    assert_eq!(s.step(t(1)), ["i1#1"], "first restart immediate");
    assert!(matches!(
        s.exit("i1", 1, t(2)),
        RestartAction::BackOff { .. }
    ));
    let plan = s.plan(t(3));
    assert_eq!((plan.actions.len(), plan.wake_at), (0, Some(t(12))));
    assert_eq!(s.waiting("i1").as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(s.step(t(12)), ["i1#2"]);

    let mut s = Sim::new(pod("Never", &[("i1", false)], &["a"]));
    s.step(t(0));
    assert_eq!(s.exit("i1", 1, t(1)), RestartAction::Leave);
    let plan = s.plan(t(100));
    assert!(plan.failed && plan.actions.is_empty() && plan.wake_at.is_none());
}

#[test]
fn sidecar_gates_next_init_until_started_and_keeps_running() {
    let mut s = Sim::new(pod("Never", &[("side", true), ("i1", false)], &["a"]));
    s.probes.insert(
        "side".into(),
        ProbeView {
            ready: false,
            started: false,
        },
    );
    assert_eq!(s.step(t(0)), ["side#0"]);
    assert!(s.step(t(1)).is_empty(), "startup probe pending: i1 waits");
    s.probes.insert("side".into(), ProbeView::default());
    assert_eq!(s.step(t(2)), ["i1#0"]);
    s.exit("i1", 0, t(3));
    assert_eq!(s.step(t(3)), ["a#0"]);
    // The sidecar crashes: restarted even under Never.
    assert_eq!(s.exit("side", 1, t(4)), RestartAction::StartNow);
    assert_eq!(s.step(t(4)), ["side#1"]);
}

#[test]
fn sidecars_are_stopped_after_apps_finish_for_good() {
    let mut s = Sim::new(pod("OnFailure", &[("s1", true), ("s2", true)], &["a"]));
    assert_eq!(s.step(t(0)), ["s1#0"]);
    assert_eq!(s.step(t(0)), ["s2#0"]);
    assert_eq!(s.step(t(0)), ["a#0"]);
    assert_eq!(s.exit("a", 0, t(5)), RestartAction::Leave);
    let plan = s.plan(t(5));
    assert_eq!(
        plan.actions,
        vec![
            PodAction::StopSidecar {
                container: "s2".into()
            },
            PodAction::StopSidecar {
                container: "s1".into()
            }
        ]
    );
}

#[test]
fn crash_loop_backs_off_and_restart_counts_rise() {
    let mut s = Sim::new(pod("Always", &[], &["a"]));
    let mut now = 0;
    let mut starts = Vec::new();
    starts.extend(s.step(t(now)));
    // Crash 1 s after each start; step every second for 2 minutes.
    for _ in 0..120 {
        now += 1;
        if s.rec("a")
            .running
            .as_ref()
            .is_some_and(|r| r.started_at < t(now))
        {
            s.exit("a", 2, t(now));
        }
        for started in s.step(t(now)) {
            starts.push(format!("{started}@{now}"));
        }
    }
    // immediate, then +10, +20, +40 after each exit (each run lasts 1 s)
    assert_eq!(starts, ["a#0", "a#1@1", "a#2@12", "a#3@33", "a#4@74"]);
    assert_eq!(s.waiting("a").as_deref(), Some("CrashLoopBackOff"));
    let msg = s.rec("a").waiting.clone().unwrap().message;
    assert_eq!(
        msg,
        "back-off 1m20s restarting failed container=a pod=p-n1_default(u1)"
    );
}

#[test]
fn image_pull_failure_shows_err_then_backoff_and_retries() {
    use crate::supervise::pull_backoff::PullBackoff;
    let mut s = Sim::new(pod("Always", &[], &["a"]));
    let mut pulls = PullBackoff::new(s.config); // 10 s doubling to 300 s
    // (time of a failed pull, [(look at, reason shown, wake at)], next try due)
    let table: [(u64, &[(u64, &str, u64)], u64); 3] = [
        // First failure: the retry already waits 10 s (unlike a first restart), and for
        // those 10 s the error itself is shown.
        (0, &[(0, "ErrImagePull", 10), (9, "ErrImagePull", 10)], 10),
        // 20 s: ErrImagePull for 10 s (the kubelet's pod worker retry), then backing off.
        (
            10,
            &[
                (10, "ErrImagePull", 20),
                (19, "ErrImagePull", 20),
                (20, "ImagePullBackOff", 30),
                (29, "ImagePullBackOff", 30),
            ],
            30,
        ),
        (
            30,
            &[(31, "ErrImagePull", 40), (40, "ImagePullBackOff", 70)],
            70,
        ),
    ];
    for (failed_at, looks, due) in table {
        let plan = s.plan(t(failed_at));
        assert_eq!(
            plan.actions,
            vec![PodAction::Start {
                container: "a".into(),
                kind: ContainerKind::Regular,
                attempt: 0
            }],
            "a pull is tried at {failed_at}"
        );
        let retry = pulls.failed("img-a", t(failed_at), t(failed_at));
        apply_pull_failure(s.rec("a"), "not found".into(), retry);
        for &(at, reason, wake) in looks {
            let plan = s.plan(t(at));
            assert_eq!(
                (plan.actions.len(), s.waiting("a").as_deref(), plan.wake_at),
                (0, Some(reason), Some(t(wake))),
                "failed at {failed_at}, looked at {at}"
            );
        }
        assert_eq!(s.rec("a").restart_at, Some(t(due)));
    }
    assert_eq!(
        s.rec("a").waiting.clone().unwrap().message,
        "Back-off pulling image \"img-a\""
    );
    let r = s.rec("a");
    assert_eq!(
        (r.restart_count, r.backoff.last_delay()),
        (0, Duration::ZERO),
        "no run happened: no restart counted, the restart backoff untouched"
    );
    // The pull finally works: the container runs as attempt 0.
    assert_eq!(s.step(t(70)), ["a#0"]);
    assert_eq!(s.waiting("a"), None);
}

#[test]
fn container_waits_for_an_image_another_container_failed_to_pull() {
    let mut s = Sim::new(pod("Always", &[], &["a"]));
    apply_pull_backoff(s.rec("a"), "img-a", t(25));
    let plan = s.plan(t(5));
    assert_eq!(
        (plan.actions.len(), s.waiting("a").as_deref(), plan.wake_at),
        (0, Some("ImagePullBackOff"), Some(t(25)))
    );
    assert_eq!(s.step(t(25)), ["a#0"]);
}

#[test]
fn stopped_sidecar_is_not_restarted() {
    let mut s = Sim::new(pod("Never", &[("side", true)], &["a"]));
    s.step(t(0));
    s.step(t(0));
    s.exit("a", 0, t(1));
    let term = s.rec("a").last_exit.clone().unwrap();
    apply_stopped(s.rec("side"), term);
    assert_eq!(s.plan(t(2)), PodPlan::default());
}

#[test]
fn ensure_records_follows_the_spec() {
    let p = pod("Always", &[("i1", false)], &["a", "b"]);
    let mut records = vec![
        ContainerRecord::new("gone", ContainerKind::Regular),
        ContainerRecord::new("b", ContainerKind::Regular),
    ];
    records[1].restart_count = 7;
    ensure_records(&p, &mut records);
    let got: Vec<(&str, ContainerKind, u32)> = records
        .iter()
        .map(|r| (r.name.as_str(), r.kind, r.restart_count))
        .collect();
    assert_eq!(
        got,
        [
            ("i1", ContainerKind::Init, 0),
            ("a", ContainerKind::Regular, 0),
            ("b", ContainerKind::Regular, 7)
        ]
    );
}
