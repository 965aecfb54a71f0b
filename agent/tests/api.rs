//! The local API end to end: a real `ApiServer` on a socket in a temporary directory,
//! a store filled by the test, and the CLI's own code paths as clients.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podvisor::api::server::ApiServer;
use podvisor::api::store::{PodEntry, StatusStore};
use podvisor::cli::client::{ApiClient, ClientError};
use podvisor::cli::commands::{
    self, DocFormat, EventsArgs, InspectArgs, ListFormat, LogsArgs, PsArgs,
};
use podvisor::logs::file::{LogFile, PodLogDir, RotateConfig};
use podvisor::logs::format::{Stream, Tag, push_entry, timestamp};
use podvisor::supervise::events::{EventType, NewEvent};
use podvisor::supervise::exit::{ExitRecord, ExitStatus};
use podvisor::supervise::phase::{PodFacts, pod_status};
use podvisor::supervise::policy::ContainerKind;
use podvisor::supervise::record::{ContainerRecord, Termination};

fn line(text: &str) -> Vec<u8> {
    let mut v = Vec::new();
    push_entry(
        &mut v,
        &timestamp(SystemTime::now()),
        Stream::Stdout,
        Tag::Full,
        text.as_bytes(),
    );
    v
}

/// A pod `web-n1` with containers `app` (running, restarted once) and `side` (running).
fn web_pod(records: &[ContainerRecord], log_root: &Path) -> PodEntry {
    let c = |n: &str| Container {
        name: n.into(),
        image: Some("busybox".into()),
        ..Default::default()
    };
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some("web-n1".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![c("app"), c("side")],
            ..Default::default()
        }),
        ..Default::default()
    };
    let facts = PodFacts {
        start_time: Some(SystemTime::now()),
        sandbox_ready: true,
        ..Default::default()
    };
    pod.status = Some(pod_status(
        &pod,
        records,
        &BTreeMap::new(),
        &facts,
        None,
        SystemTime::now(),
    ));
    PodEntry {
        pod,
        log_dir: PodLogDir::new(log_root, "default", "web-n1", "u1")
            .path()
            .to_path_buf(),
        manifest: None,
    }
}

fn records(app_running: bool) -> Vec<ContainerRecord> {
    let now = SystemTime::now();
    let mut app = ContainerRecord::new("app", ContainerKind::Regular);
    app.exited(Termination {
        exit: ExitRecord {
            container: "app".into(),
            attempt: 0,
            pid: 10,
            started_at: now - Duration::from_secs(60),
            finished_at: now - Duration::from_secs(30),
            status: ExitStatus::Code(1),
            oom_killed: false,
        },
        message: None,
        reason: None,
        container_id: None,
    });
    app.restart_count = 1;
    if app_running {
        app.started(11, now - Duration::from_secs(29), None);
    }
    let mut side = ContainerRecord::new("side", ContainerKind::Regular);
    side.started(12, now - Duration::from_secs(60), None);
    vec![app, side]
}

fn run<F: FnOnce(&mut Vec<u8>) -> anyhow::Result<()>>(f: F) -> String {
    let mut out = Vec::new();
    f(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn logs_args(pod: &str) -> LogsArgs {
    LogsArgs {
        pod: pod.into(),
        container: None,
        follow: false,
        previous: false,
        tail: None,
        since: None,
        timestamps: false,
    }
}

#[test]
fn cli_commands_against_a_live_api() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let log_root = tmp.path().join("logs");
    let store = StatusStore::new();
    let entry = web_pod(&records(true), &log_root);
    let dir = PodLogDir::new(&log_root, "default", "web-n1", "u1");
    let mut old = LogFile::open(dir.log_path("app", 0), RotateConfig::default()).unwrap();
    old.append(&line("first run"), SystemTime::now()).unwrap();
    let mut cur = LogFile::open(dir.log_path("app", 1), RotateConfig::default()).unwrap();
    for i in 0..5 {
        cur.append(&line(&format!("second run {i}")), SystemTime::now())
            .unwrap();
    }
    store.upsert_pod(entry);
    store.record_event(
        NewEvent {
            namespace: "default",
            pod: "web-n1",
            uid: "u1",
            field_path: Some("spec.containers{app}".into()),
            type_: EventType::Warning,
            reason: "BackOff",
            message: "Back-off restarting failed container app".into(),
        },
        SystemTime::now(),
    );
    store.observe_start_latency(Duration::from_millis(12));
    let server =
        ApiServer::start(&podvisor::cli::client::socket_path(&state), store.clone()).unwrap();

    // ps: a kubectl-like table
    let table = run(|o| {
        commands::ps(
            &PsArgs {
                output: ListFormat::Table,
            },
            &state,
            o,
        )
    });
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web-n1", "2/2", "Running", "1"], "{table}");
    assert!(
        row[4].starts_with('(') && row[4].ends_with('s') && row[5] == "ago)",
        "restarts show the last restart: {table}"
    );
    let json = run(|o| {
        commands::ps(
            &PsArgs {
                output: ListFormat::Json,
            },
            &state,
            o,
        )
    });
    let pods: Vec<Pod> = serde_json::from_str(&json).unwrap();
    assert_eq!(
        pods[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );

    // inspect: YAML and JSON of the pod with status
    let yaml = run(|o| {
        commands::inspect(
            &InspectArgs {
                pod: "web-n1".into(),
                output: DocFormat::Yaml,
            },
            &state,
            o,
        )
    });
    assert!(
        yaml.contains("phase: Running") && yaml.contains("restartCount: 1"),
        "{yaml}"
    );
    let json = run(|o| {
        commands::inspect(
            &InspectArgs {
                pod: "default/web-n1".into(),
                output: DocFormat::Json,
            },
            &state,
            o,
        )
    });
    let pod: Pod = serde_json::from_str(&json).unwrap();
    assert_eq!(pod.metadata.uid.as_deref(), Some("u1"));
    let err = commands::inspect(
        &InspectArgs {
            pod: "nope".into(),
            output: DocFormat::Json,
        },
        &state,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "pod \"nope\" not found");

    // logs: current run by default, --previous, --tail, errors for bad container / no previous
    assert_eq!(
        run(|o| commands::logs(&logs_args("web-n1"), &state, o)),
        "second run 0\nsecond run 1\nsecond run 2\nsecond run 3\nsecond run 4\n"
    );
    assert_eq!(
        run(|o| commands::logs(
            &LogsArgs {
                previous: true,
                ..logs_args("web-n1")
            },
            &state,
            o
        )),
        "first run\n"
    );
    assert_eq!(
        run(|o| commands::logs(
            &LogsArgs {
                tail: Some(2),
                ..logs_args("web-n1")
            },
            &state,
            o
        )),
        "second run 3\nsecond run 4\n"
    );
    assert_eq!(
        run(|o| commands::logs(
            &LogsArgs {
                since: Some("1h".into()),
                tail: Some(1),
                ..logs_args("web-n1")
            },
            &state,
            o
        )),
        "second run 4\n"
    );
    let err = commands::logs(
        &LogsArgs {
            container: Some("db".into()),
            ..logs_args("web-n1")
        },
        &state,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "container db is not valid for pod web-n1, choose one of: [app side]"
    );
    let err = commands::logs(
        &LogsArgs {
            container: Some("side".into()),
            previous: true,
            ..logs_args("web-n1")
        },
        &state,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("has no logs yet")
            || err.to_string().contains("previous terminated container"),
        "{err}"
    );

    // events: table and JSON
    let ev = run(|o| {
        commands::events(
            &EventsArgs {
                pod: None,
                output: ListFormat::Table,
            },
            &state,
            o,
        )
    });
    assert!(
        ev.contains("Warning")
            && ev.contains("BackOff")
            && ev.contains("pod/web-n1 spec.containers{app}"),
        "{ev}"
    );
    let none = run(|o| {
        commands::events(
            &EventsArgs {
                pod: Some("other".into()),
                output: ListFormat::Json,
            },
            &state,
            o,
        )
    });
    assert_eq!(none.trim(), "[]");

    // healthz and metrics through the raw client
    let client = ApiClient::new(&state);
    let mut body = String::new();
    std::io::Read::read_to_string(&mut client.get("/healthz").unwrap().body, &mut body).unwrap();
    assert_eq!(body, "ok\n");
    let mut metrics = String::new();
    std::io::Read::read_to_string(&mut client.get("/metrics").unwrap().body, &mut metrics).unwrap();
    for want in [
        "podvisor_pods{phase=\"Running\"} 1",
        "podvisor_pods{phase=\"Pending\"} 0",
        "podvisor_container_restarts_total{namespace=\"default\",pod=\"web-n1\",container=\"app\"} 1",
        "podvisor_manifest_errors 0",
        "podvisor_pod_start_latency_seconds_count 1",
    ] {
        assert!(metrics.contains(want), "missing {want:?} in\n{metrics}");
    }
    assert!(matches!(
        client.get("/nope"),
        Err(ClientError::Api { status: 404, .. })
    ));

    // A second agent on the same socket is refused; stopping removes the socket.
    let sock = podvisor::cli::client::socket_path(&state);
    assert!(ApiServer::start(&sock, StatusStore::new()).is_err());
    server.stop();
    assert!(!sock.exists());
    let err = commands::ps(
        &PsArgs {
            output: ListFormat::Table,
        },
        &state,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("agent is not running"), "{err}");
}

/// A `Write` shared with the test thread.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn wait_for(out: &Shared, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if String::from_utf8_lossy(&out.0.lock().unwrap()).contains(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "{want:?} never arrived; got {:?}",
        String::from_utf8_lossy(&out.0.lock().unwrap())
    );
}

#[test]
fn logs_follow_streams_lines_and_ends_when_the_container_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let log_root = tmp.path().join("logs");
    let store = StatusStore::new();
    store.upsert_pod(web_pod(&records(true), &log_root));
    let dir = PodLogDir::new(&log_root, "default", "web-n1", "u1");
    let mut log = LogFile::open(
        dir.log_path("app", 1),
        RotateConfig {
            max_size: 300,
            max_files: 3,
        },
    )
    .unwrap();
    log.append(&line("before follow"), SystemTime::now())
        .unwrap();
    let server =
        ApiServer::start(&podvisor::cli::client::socket_path(&state), store.clone()).unwrap();

    let out = Shared::default();
    let follower = {
        let (state, mut out) = (state.clone(), out.clone());
        std::thread::spawn(move || {
            commands::logs(
                &LogsArgs {
                    follow: true,
                    ..logs_args("web-n1")
                },
                &state,
                &mut out,
            )
        })
    };
    wait_for(&out, "before follow\n");
    // Lines arrive one by one (no 8 KiB buffering) and across rotations (300-byte files).
    for i in 0..12 {
        let text = format!("live {i}");
        log.append(&line(&text), SystemTime::now()).unwrap();
        wait_for(&out, &format!("{text}\n"));
    }
    // The container stops: the follow ends by itself and the client returns.
    store.upsert_pod(web_pod(&records(false), &log_root));
    follower.join().unwrap().unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let want: String = std::iter::once("before follow\n".to_string())
        .chain((0..12).map(|i| format!("live {i}\n")))
        .collect();
    assert_eq!(text, want);
    server.stop();
}

/// `exec` refusals over the real API: each answered before any process runs, with the
/// HTTP status the wire format documents and a message the CLI prints.
#[test]
fn exec_refusals_name_the_problem() {
    use podvisor::cli::client::Upgrade;
    use podvisor::exec::wire::OUTPUT_PROTOCOL;
    let tmp = tempfile::tempdir().unwrap();
    let store = StatusStore::new();
    let mut recs = records(false);
    let now = SystemTime::now();
    recs[1].started(12, now, Some("podvisor://gone-side-0".into()));
    store.upsert_pod(web_pod(&recs, tmp.path()));
    let server = ApiServer::start_with_runtime(
        &tmp.path().join("agent.sock"),
        store.clone(),
        Some(tmp.path().join("runtime")),
    )
    .unwrap();
    let client = ApiClient::new(tmp.path());
    let ask = |pod: &str, body: &str| match client
        .post_upgrade(
            &format!("/pods/{pod}/exec"),
            OUTPUT_PROTOCOL,
            body.as_bytes(),
        )
        .unwrap()
    {
        Upgrade::Refused { status, body } => (status, body["error"].as_str().unwrap().to_string()),
        Upgrade::Switched { .. } => panic!("exec into {pod} was not refused"),
    };
    let cases = [
        ("nope", r#"{"command":["true"]}"#, 404, "not found"),
        (
            "web-n1",
            r#"{"command":["true"],"container":"x"}"#,
            400,
            "choose one of: [app side]",
        ),
        (
            "web-n1",
            r#"{"command":["true"]}"#,
            409,
            "app in pod web-n1 is not running",
        ),
        (
            "web-n1",
            r#"{"command":["true"],"container":"side"}"#,
            409,
            "is not running",
        ),
        (
            "web-n1",
            r#"{"command":[],"container":"side"}"#,
            400,
            "needs a command",
        ),
        ("web-n1", "not json", 400, "exec request"),
    ];
    for (pod, body, want_status, want) in cases {
        let (status, msg) = ask(pod, body);
        assert_eq!(status, want_status, "{pod} {body}: {msg}");
        assert!(msg.contains(want), "{pod} {body}: {msg}");
    }
    // The CLI turns a refusal into an error carrying the agent's message.
    let args = podvisor::cli::exec::ExecArgs {
        pod: "web-n1".into(),
        container: None,
        stdin: false,
        tty: false,
        command: vec!["true".into()],
    };
    let err = podvisor::cli::exec::run(&args, tmp.path(), &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
    server.stop();
    // A server without a runtime root has no exec.
    let plain = ApiServer::start(&tmp.path().join("agent.sock"), store).unwrap();
    let (status, msg) = ask("web-n1", r#"{"command":["true"]}"#);
    assert_eq!(status, 501, "{msg}");
    plain.stop();
}
