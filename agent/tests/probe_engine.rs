//! The probe engine end to end, with real handlers against loopback servers: liveness restart
//! decisions, readiness flipping Ready both ways, startup gating, an exec probe that times out,
//! and a hanging target that does not hold up other containers' probes.

mod probe_support;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use podvisor::probe::engine::{ContainerKey, Engine, EngineConfig, ProbeReport};
use podvisor::probe::exec::HostExec;
use podvisor::probe::runner::{ProbeRunner, ProbeTarget};
use podvisor::probe::spec::{Handler, HttpGetAction, PortRef, ProbeSpec, Scheme};
use podvisor::probe::state::{ContainerProbes, ProbeAction, RestartReason};
use probe_support::{HttpServer, Reply};

fn key(name: &str) -> ContainerKey {
    ContainerKey {
        pod_uid: "uid-1".into(),
        container: name.into(),
    }
}

fn engine(workers: usize) -> (Engine, Receiver<ProbeReport>) {
    let (tx, rx) = channel();
    let runner = ProbeRunner::new("1.34", Arc::new(HostExec));
    let engine = Engine::start(
        EngineConfig {
            workers,
            jitter_first_run: false,
        },
        runner,
        tx,
    )
    .expect("start engine");
    (engine, rx)
}

fn http(port: u16, failure_threshold: u32) -> ProbeSpec {
    ProbeSpec {
        period_seconds: 1,
        failure_threshold,
        ..ProbeSpec::with_defaults(Handler::HttpGet(HttpGetAction {
            scheme: Scheme::Http,
            host: None,
            port: PortRef::Number(i32::from(port)),
            path: "/healthz".into(),
            headers: vec![],
        }))
    }
}

/// A server whose /healthz answers with the status currently stored in the returned cell.
fn switchable() -> (HttpServer, Arc<AtomicU16>) {
    let status = Arc::new(AtomicU16::new(200));
    let s = status.clone();
    (
        HttpServer::start(move |_| Reply::status(s.load(Ordering::SeqCst), "")),
        status,
    )
}

/// Waits for the first report matching `pred`, up to `within`.
fn wait_for(
    rx: &Receiver<ProbeReport>,
    within: Duration,
    pred: impl Fn(&ProbeAction) -> bool,
) -> Option<ProbeAction> {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(r) if pred(&r.action) => return Some(r.action),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn liveness_failure_leads_to_a_restart_request_with_events() {
    let (srv, status) = switchable();
    let (engine, rx) = engine(2);
    let mut live = http(srv.port, 2);
    live.termination_grace_period_seconds = Some(5);
    engine.add(
        key("app"),
        ContainerProbes::new("app", 30, Some(live), None, None),
        ProbeTarget::host_network("127.0.0.1", vec![]),
    );
    engine.container_running(key("app"), "c1", Instant::now());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        rx.try_iter()
            .all(|r| !matches!(r.action, ProbeAction::RestartContainer { .. })),
        "healthy: no restart"
    );
    status.store(500, Ordering::SeqCst);
    let restart = wait_for(&rx, Duration::from_secs(5), |a| {
        matches!(a, ProbeAction::RestartContainer { .. })
    });
    assert_eq!(
        restart,
        Some(ProbeAction::RestartContainer {
            grace_seconds: 5,
            reason: RestartReason::LivenessProbe,
            message: "Container app failed liveness probe".into()
        })
    );
    // On hold until a new container: no more liveness requests reach the server.
    let before = srv.seen().len();
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(
        srv.seen().len(),
        before,
        "liveness probed a container already being restarted"
    );
    engine.container_exited(key("app"));
    status.store(200, Ordering::SeqCst);
    engine.container_running(key("app"), "c2", Instant::now());
    std::thread::sleep(Duration::from_millis(2200));
    assert!(srv.seen().len() > before, "new container is probed again");
}

#[test]
fn readiness_flips_ready_both_ways() {
    let (srv, status) = switchable();
    let (engine, rx) = engine(2);
    engine.add(
        key("web"),
        ContainerProbes::new("web", 30, None, Some(http(srv.port, 1)), None),
        ProbeTarget::host_network("127.0.0.1", vec![]),
    );
    engine.container_running(key("web"), "c1", Instant::now());
    let ready = |want: bool| move |a: &ProbeAction| *a == ProbeAction::ReadyChanged(want);
    assert!(
        wait_for(&rx, Duration::from_secs(3), ready(true)).is_some(),
        "became ready"
    );
    status.store(503, Ordering::SeqCst);
    assert!(
        wait_for(&rx, Duration::from_secs(3), ready(false)).is_some(),
        "became unready"
    );
    status.store(200, Ordering::SeqCst);
    assert!(
        wait_for(&rx, Duration::from_secs(3), ready(true)).is_some(),
        "ready again"
    );
}

#[test]
fn startup_probe_gates_liveness_until_it_succeeds() {
    let (srv, _status) = switchable();
    let (engine, rx) = engine(2);
    let startup_port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let startup = ProbeSpec {
        period_seconds: 1,
        failure_threshold: 30,
        ..ProbeSpec::with_defaults(Handler::TcpSocket {
            host: None,
            port: PortRef::Number(i32::from(startup_port)),
        })
    };
    let probes = ContainerProbes::new(
        "api",
        30,
        Some(http(srv.port, 3)),
        Some(http(srv.port, 3)),
        Some(startup),
    );
    engine.add(
        key("api"),
        probes,
        ProbeTarget::host_network("127.0.0.1", vec![]),
    );
    engine.container_running(key("api"), "c1", Instant::now());
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        srv.seen().is_empty(),
        "liveness/readiness ran before startup succeeded"
    );
    let _listener = TcpListener::bind(("127.0.0.1", startup_port)).expect("rebind startup port");
    assert!(
        wait_for(&rx, Duration::from_secs(3), |a| *a
            == ProbeAction::StartedChanged(true))
        .is_some()
    );
    // Readiness runs at once after startup, and the container becomes ready.
    assert!(
        wait_for(&rx, Duration::from_secs(2), |a| *a
            == ProbeAction::ReadyChanged(true))
        .is_some()
    );
    assert!(!srv.seen().is_empty());
}

#[test]
fn exec_probe_timeout_restarts_the_container() {
    let (engine, rx) = engine(2);
    let live = ProbeSpec {
        period_seconds: 1,
        timeout_seconds: 1,
        failure_threshold: 1,
        ..ProbeSpec::with_defaults(Handler::Exec {
            command: vec!["/bin/sleep".into(), "10".into()],
        })
    };
    engine.add(
        key("db"),
        ContainerProbes::new("db", 30, Some(live), None, None),
        ProbeTarget::host_network("127.0.0.1", vec![]),
    );
    let t = Instant::now();
    engine.container_running(key("db"), "c1", t);
    let unhealthy = wait_for(
        &rx,
        Duration::from_secs(4),
        |a| matches!(a, ProbeAction::Event(e) if e.reason == "Unhealthy"),
    );
    let Some(ProbeAction::Event(e)) = unhealthy else {
        panic!("no Unhealthy event")
    };
    assert!(
        e.message
            .starts_with("Liveness probe failed: command \"/bin/sleep 10\" timed out"),
        "{}",
        e.message
    );
    assert!(
        wait_for(&rx, Duration::from_secs(2), |a| matches!(
            a,
            ProbeAction::RestartContainer { .. }
        ))
        .is_some()
    );
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "the 10 s command was cut at its 1 s timeout"
    );
}

#[test]
fn hanging_targets_do_not_delay_other_containers() {
    // Three containers probe a server that accepts and never answers; a fourth is healthy.
    let hang = HttpServer::start(|_| Reply {
        delay: Duration::from_secs(3600),
        ..Reply::status(200, "")
    });
    let (ok_srv, _s) = switchable();
    let (engine, rx) = engine(4);
    for i in 0..3 {
        let mut spec = http(hang.port, 3);
        spec.timeout_seconds = 2;
        engine.add(
            key(&format!("stuck{i}")),
            ContainerProbes::new("stuck", 30, None, Some(spec), None),
            ProbeTarget::host_network("127.0.0.1", vec![]),
        );
        engine.container_running(key(&format!("stuck{i}")), "c", Instant::now());
    }
    engine.add(
        key("fine"),
        ContainerProbes::new("fine", 30, None, Some(http(ok_srv.port, 3)), None),
        ProbeTarget::host_network("127.0.0.1", vec![]),
    );
    engine.container_running(key("fine"), "c", Instant::now());
    std::thread::sleep(Duration::from_millis(4200));
    let healthy_runs = ok_srv.seen().len();
    assert!(
        healthy_runs >= 4,
        "healthy container probed {healthy_runs} times in 4.2 s at a 1 s period"
    );
    let stats = engine.take_stats();
    assert!(
        stats.skipped_busy > 0,
        "stuck probes skip their ticks instead of piling up"
    );
    drop(rx);
}

#[test]
fn a_restart_resets_only_that_containers_probes_and_reports_carry_the_run() {
    let (srv, _status) = switchable();
    let (engine, rx) = engine(2);
    let readiness = || {
        let mut spec = http(srv.port, 1);
        spec.success_threshold = 2;
        ContainerProbes::new("c", 30, None, Some(spec), None)
    };
    let target = || ProbeTarget::host_network("127.0.0.1", vec![]);
    for (name, run) in [("a", "a-0"), ("b", "b-0")] {
        engine.add(key(name), readiness(), target());
        engine.container_running(key(name), run, Instant::now());
    }
    // Both become ready (two successes each), each report naming its own run.
    let mut ready = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(6);
    while ready.len() < 2 && Instant::now() < deadline {
        if let Ok(r) = rx.recv_timeout(Duration::from_millis(100))
            && r.action == ProbeAction::ReadyChanged(true)
        {
            ready.push((r.key.container.clone(), r.container_id.clone()));
        }
    }
    ready.sort();
    assert_eq!(
        ready,
        vec![
            ("a".to_string(), "a-0".to_string()),
            ("b".to_string(), "b-0".to_string())
        ]
    );
    // `a` restarts: a new run with fresh probes (the agent re-adds them on each start).
    engine.add(key("a"), readiness(), target());
    engine.container_running(key("a"), "a-1", Instant::now());
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        if let Ok(r) = rx.recv_timeout(Duration::from_millis(100))
            && matches!(r.action, ProbeAction::ReadyChanged(_))
        {
            seen.push((r.key.container.clone(), r.container_id.clone(), r.action));
        }
    }
    // The new run needs its own two successes (counters start again), and `b` is untouched.
    assert_eq!(
        seen,
        vec![(
            "a".to_string(),
            "a-1".to_string(),
            ProbeAction::ReadyChanged(true)
        )]
    );
}
