//! Two pods with `podvisor.io/after`: `kube-apiserver` names `etcd`, whose readiness probe is
//! a real HTTP probe run by the probe engine. A small loop in the role of the reconciler
//! starts whatever `order::holds` does not hold; the second pod must start only after the
//! engine has reported the first Ready.

mod probe_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use podvisor::order::{DesiredPod, WAITING_FOR_DEPENDENCY, holds};
use podvisor::probe::engine::{ContainerKey, Engine, EngineConfig};
use podvisor::probe::exec::HostExec;
use podvisor::probe::runner::{ProbeRunner, ProbeTarget};
use podvisor::probe::spec::{Handler, HttpGetAction, PortRef, ProbeSpec, Scheme};
use podvisor::probe::state::{ContainerProbes, ProbeAction};
use probe_support::{HttpServer, Reply};

#[test]
fn second_pod_starts_only_once_the_first_is_ready() {
    // etcd's health endpoint answers 503 until we flip it.
    let status = Arc::new(AtomicU16::new(503));
    let s = status.clone();
    let srv = HttpServer::start(move |_| Reply::status(s.load(Ordering::SeqCst), ""));
    let pods = vec![
        DesiredPod {
            name: "etcd".into(),
            after: None,
        },
        DesiredPod {
            name: "kube-apiserver".into(),
            after: Some("etcd".into()),
        },
    ];
    let (tx, rx) = channel();
    let engine = Engine::start(
        EngineConfig {
            workers: 2,
            jitter_first_run: false,
        },
        ProbeRunner::new("1.34", Arc::new(HostExec)),
        tx,
    )
    .expect("start engine");

    let mut started: Vec<(String, Instant)> = Vec::new();
    let mut ready: BTreeSet<String> = BTreeSet::new();
    let mut etcd_ready_at = None;
    let flip_at = Instant::now() + Duration::from_millis(2500);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && started.len() < 2 {
        // One reconcile pass: start every pod that is neither running nor held.
        let held = holds(&pods, |n| ready.contains(n));
        for pod in &pods {
            if started.iter().any(|(n, _)| n == &pod.name) {
                continue;
            }
            if let Some(h) = held.get(&pod.name) {
                assert_eq!(h.reason, WAITING_FOR_DEPENDENCY);
                continue;
            }
            started.push((pod.name.clone(), Instant::now()));
            if pod.name == "etcd" {
                let readiness = ProbeSpec {
                    period_seconds: 1,
                    ..ProbeSpec::with_defaults(Handler::HttpGet(HttpGetAction {
                        scheme: Scheme::Http,
                        host: None,
                        port: PortRef::Number(i32::from(srv.port)),
                        path: "/health".into(),
                        headers: vec![],
                    }))
                };
                let key = ContainerKey {
                    pod_uid: "etcd".into(),
                    container: "etcd".into(),
                };
                engine.add(
                    key.clone(),
                    ContainerProbes::new("etcd", 30, None, Some(readiness), None),
                    ProbeTarget::host_network("127.0.0.1", vec![]),
                );
                engine.container_running(key, "etcd-1", Instant::now());
            }
        }
        if Instant::now() >= flip_at {
            status.store(200, Ordering::SeqCst);
        }
        if let Ok(report) = rx.recv_timeout(Duration::from_millis(100)) {
            if report.action == ProbeAction::ReadyChanged(true) {
                ready.insert(report.key.pod_uid.clone());
                etcd_ready_at.get_or_insert(Instant::now());
            }
        }
    }
    let names: Vec<&str> = started.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["etcd", "kube-apiserver"]);
    let ready_at = etcd_ready_at.expect("etcd became Ready");
    assert!(
        ready_at >= flip_at,
        "etcd was reported Ready before its endpoint was healthy"
    );
    assert!(
        started[1].1 >= ready_at,
        "kube-apiserver started before etcd was Ready"
    );
}
