//! Mirror pods against a fake API server on loopback (TLS, client certificates, the Node
//! authorizer and NodeRestriction rules): the scenarios of issue 8, and a printed latency
//! figure (status handed to the mirror task → PATCH arriving at the server).
#![allow(clippy::unwrap_used)]

mod fake_api;

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fake_api::FakeApi;
use fake_api::certs::TestPki;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use podvisor::kube::{ApiClient, ClientOptions, ClusterAccess};
use podvisor::mirror::{
    self, MirrorConfig, MirrorEvent, MirrorHandle, NodeFacts, StaticPodState, Timing,
};
use serde_json::{Value, json};

const NS: &str = "kube-system";

struct Env {
    pki: TestPki,
    api: FakeApi,
    node: String,
    kubeconfig: PathBuf,
    /// `kubelet-client-current.pem`, a symlink to the current certificate file.
    current: PathBuf,
    cert_der: Vec<u8>,
}

fn env(node: &str) -> Env {
    let pki = TestPki::new();
    let api = FakeApi::start(&pki);
    let (pem, der) = pki.node_client(node, "kubelet-client-a");
    api.allow_cert(der.clone(), node, "a");
    let current = pki.dir.path().join("kubelet-client-current.pem");
    std::os::unix::fs::symlink(&pem, &current).unwrap();
    let kubeconfig = pki.dir.path().join("kubelet.conf");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: {}\n    certificate-authority: ca.crt\n\
             users:\n- name: system:node:{node}\n  user:\n    client-certificate: {c}\n    client-key: {c}\n\
             contexts:\n- name: ctx\n  context:\n    cluster: k\n    user: system:node:{node}\ncurrent-context: ctx\n",
            api.url(),
            c = current.display()
        ),
    )
    .unwrap();
    Env {
        pki,
        api,
        node: node.into(),
        kubeconfig,
        current,
        cert_der: der,
    }
}

fn client(env: &Env) -> ApiClient {
    let access = ClusterAccess::from_kubeconfig(&env.kubeconfig).unwrap();
    let options = ClientOptions {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(3),
    };
    ApiClient::new(access, options).unwrap()
}

fn fast_timing() -> Timing {
    Timing {
        status_resend: Duration::from_millis(300),
        resync: Duration::from_secs(5),
        lease_renew: Duration::from_millis(200),
        node_status: Duration::from_secs(2),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(300),
        watch_timeout: Duration::from_secs(30),
        ..Timing::default()
    }
}

fn config(env: &Env) -> MirrorConfig {
    let mut facts = NodeFacts::from_host(&env.node);
    facts
        .addresses
        .push(("InternalIP".into(), "127.0.0.1".into()));
    MirrorConfig {
        node_name: env.node.clone(),
        register_node: true,
        node_facts: facts,
        timing: fast_timing(),
    }
}

fn start(env: &Env) -> (MirrorHandle, JoinHandle<()>) {
    mirror::spawn(client(env), config(env)).unwrap()
}

fn stop(handle: MirrorHandle, thread: JoinHandle<()>) {
    handle.stop();
    thread.join().unwrap();
}

fn static_pod(name: &str, node: &str, hash: &str, image: &str) -> StaticPodState {
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{node}")),
            namespace: Some(NS.into()),
            uid: Some(hash.into()),
            labels: Some([("component".to_owned(), name.to_owned())].into()),
            annotations: Some(
                [
                    ("kubernetes.io/config.hash".to_owned(), hash.to_owned()),
                    ("kubernetes.io/config.source".to_owned(), "file".to_owned()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            host_network: Some(true),
            containers: vec![Container {
                name: name.into(),
                image: Some(image.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    };
    StaticPodState {
        pod,
        config_hash: hash.into(),
        status: None,
    }
}

fn time(secs: i64) -> Time {
    Time(Timestamp::from_second(1_700_000_000 + secs).unwrap())
}

/// A container status in a crash loop after `restarts` restarts (or running and ready).
fn status(restarts: i32, running: bool, ready: bool) -> PodStatus {
    let state = if running {
        ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(i64::from(restarts))),
            }),
            ..ContainerState::default()
        }
    } else {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".into()),
                message: Some(format!(
                    "back-off {}s restarting failed container",
                    10 * restarts
                )),
            }),
            ..ContainerState::default()
        }
    };
    let last = (restarts > 0).then(|| ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 1,
            reason: Some("Error".into()),
            started_at: Some(time(i64::from(restarts) - 1)),
            finished_at: Some(time(i64::from(restarts))),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    });
    let flag = if ready { "True" } else { "False" };
    PodStatus {
        phase: Some("Running".into()),
        host_ip: Some("127.0.0.1".into()),
        pod_ip: Some("127.0.0.1".into()),
        conditions: Some(
            ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
                .iter()
                .map(|t| PodCondition {
                    type_: (*t).into(),
                    status: if t.ends_with("Ready") {
                        flag.into()
                    } else {
                        "True".into()
                    },
                    last_transition_time: Some(time(0)),
                    ..PodCondition::default()
                })
                .collect(),
        ),
        container_statuses: Some(vec![ContainerStatus {
            name: "etcd".into(),
            image: "registry.k8s.io/etcd:3.5.15-0".into(),
            image_id: format!("registry.k8s.io/etcd@sha256:{}", "e".repeat(64)),
            container_id: Some(format!("podvisor://etcd-{restarts}")),
            ready,
            started: Some(running),
            restart_count: restarts,
            state: Some(state),
            last_state: last,
            ..ContainerStatus::default()
        }]),
        ..PodStatus::default()
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn uid(pod: &Value) -> String {
    pod["metadata"]["uid"].as_str().unwrap().to_owned()
}

fn mirror_hash(pod: &Value) -> &str {
    pod["metadata"]["annotations"]["kubernetes.io/config.mirror"]
        .as_str()
        .unwrap_or_default()
}

fn assert_clean(env: &Env) {
    assert_eq!(
        env.api.violations(),
        Vec::<String>::new(),
        "the client triggered an authorizer/admission refusal"
    );
}

#[test]
fn mirror_created_with_annotations_and_node_owner_and_node_registered() {
    let env = env("n1");
    let (h, t) = start(&env);
    h.set_static_pods([static_pod("etcd", "n1", "h1", "etcd:1")]);
    wait_until("mirror created", || env.api.pod(NS, "etcd-n1").is_some());
    let pod = env.api.pod(NS, "etcd-n1").unwrap();
    let node = env.api.with(|s| s.nodes["n1"].clone());
    assert_eq!(mirror_hash(&pod), "h1");
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/config.hash"],
        "h1"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/config.source"],
        "file"
    );
    assert_eq!(pod["metadata"]["labels"]["component"], "etcd");
    assert_eq!(
        pod["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": node["metadata"]["uid"], "controller": true}])
    );
    assert_ne!(
        pod["metadata"]["uid"], "h1",
        "the API assigns the mirror its own UID"
    );
    assert_eq!(pod["spec"]["nodeName"], "n1");
    assert_eq!(
        node["spec"]["taints"],
        json!([{"key": "podvisor.io/static-only", "effect": "NoSchedule"}])
    );
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "True");
    assert!(node["status"]["capacity"]["cpu"].is_string());
    wait_until("lease renewed twice", || {
        env.api.with(|s| s.lease_renewals >= 3)
    });
    let lease = env.api.with(|s| s.leases["n1"].clone());
    assert_eq!(lease["spec"]["holderIdentity"], "n1");
    assert_eq!(
        lease["metadata"]["ownerReferences"][0]["uid"],
        node["metadata"]["uid"]
    );
    stop(h, t);
    assert_clean(&env);
}

#[test]
fn mirror_deleted_through_the_api_is_recreated_with_a_new_uid() {
    let env = env("n1");
    let mut cfg = config(&env);
    cfg.timing.resync = Duration::from_secs(600);
    let (h, t) = mirror::spawn(client(&env), cfg).unwrap();
    h.set_static_pods([static_pod("etcd", "n1", "h1", "etcd:1")]);
    wait_until("mirror created", || env.api.pod(NS, "etcd-n1").is_some());
    let first = uid(&env.api.pod(NS, "etcd-n1").unwrap());
    env.api.admin_delete_now(NS, "etcd-n1");
    wait_until("mirror re-created", || {
        env.api.pod(NS, "etcd-n1").is_some_and(|p| uid(&p) != first)
    });
    let second = uid(&env.api.pod(NS, "etcd-n1").unwrap());
    // A graceful delete (deletionTimestamp set) is finished by the node and the mirror re-created.
    env.api.admin_delete_graceful(NS, "etcd-n1");
    wait_until("terminating mirror replaced", || {
        env.api
            .pod(NS, "etcd-n1")
            .is_some_and(|p| uid(&p) != second && p["metadata"]["deletionTimestamp"].is_null())
    });
    // Both deletions were seen through the watch (one list, no periodic re-list in this test).
    let (lists, watches) = env.api.with(|s| {
        let pods = |w: bool| {
            let on_node =
                |r: &&(String, String, String)| r.0 == "GET" && r.1.starts_with("/api/v1/pods?");
            s.requests
                .iter()
                .filter(on_node)
                .filter(|r| r.1.contains("watch=true") == w)
                .count()
        };
        (pods(false), pods(true))
    });
    assert_eq!(
        (lists, watches),
        (1, 1),
        "one list, then the watch drives everything"
    );
    stop(h, t);
    assert_clean(&env);
}

#[test]
fn hash_change_replaces_mirror_and_removal_deletes_it() {
    let env = env("n1");
    let (h, t) = start(&env);
    h.set_static_pods([
        static_pod("etcd", "n1", "h1", "etcd:1"),
        static_pod("kube-apiserver", "n1", "k1", "apiserver:1"),
    ]);
    wait_until("mirrors created", || {
        env.api.pod(NS, "etcd-n1").is_some() && env.api.pod(NS, "kube-apiserver-n1").is_some()
    });
    let old = uid(&env.api.pod(NS, "etcd-n1").unwrap());
    // Manifest edit: new config hash (kubeadm upgrade waits for exactly this).
    h.set_static_pods([
        static_pod("etcd", "n1", "h2", "etcd:2"),
        static_pod("kube-apiserver", "n1", "k1", "apiserver:1"),
    ]);
    wait_until("mirror replaced with new hash", || {
        env.api
            .pod(NS, "etcd-n1")
            .is_some_and(|p| mirror_hash(&p) == "h2")
    });
    let new = env.api.pod(NS, "etcd-n1").unwrap();
    assert_ne!(uid(&new), old);
    assert_eq!(
        new["metadata"]["annotations"]["kubernetes.io/config.hash"],
        "h2"
    );
    assert_eq!(new["spec"]["containers"][0]["image"], "etcd:2");
    // Manifest removed: its mirror goes, the other stays.
    h.set_static_pods([static_pod("kube-apiserver", "n1", "k1", "apiserver:1")]);
    wait_until("mirror deleted", || env.api.pod(NS, "etcd-n1").is_none());
    assert!(env.api.pod(NS, "kube-apiserver-n1").is_some());
    stop(h, t);
    assert_clean(&env);
}

#[test]
fn spec_edits_to_a_mirror_are_ignored() {
    let env = env("n1");
    let (h, t) = start(&env);
    let mut sp = static_pod("etcd", "n1", "h1", "etcd:1");
    h.set_static_pods([sp.clone()]);
    wait_until("mirror created", || env.api.pod(NS, "etcd-n1").is_some());
    let before = uid(&env.api.pod(NS, "etcd-n1").unwrap());
    env.api.admin_edit(NS, "etcd-n1", |p| {
        p["spec"]["containers"][0]["image"] = json!("evil:1")
    });
    // A status round trip after the edit proves the task has seen the edit's watch event.
    sp.status = Some(status(0, true, true));
    h.set_static_pods([sp]);
    wait_until("status arrived", || {
        env.api
            .pod(NS, "etcd-n1")
            .is_some_and(|p| p["status"]["containerStatuses"][0]["ready"] == true)
    });
    let after = env.api.pod(NS, "etcd-n1").unwrap();
    assert_eq!(uid(&after), before, "not re-created");
    assert_eq!(
        after["spec"]["containers"][0]["image"], "evil:1",
        "not reverted either: the file is the truth for what runs"
    );
    stop(h, t);
    assert_clean(&env);
}

#[test]
fn status_follows_a_crash_loop_and_readiness() {
    let env = env("n1");
    let (h, t) = start(&env);
    h.set_static_pods([static_pod("etcd", "n1", "h1", "etcd:1")]);
    wait_until("mirror created", || env.api.pod(NS, "etcd-n1").is_some());
    assert!(h.set_status("h1", status(0, true, true)));
    wait_until("running and ready", || {
        env.api
            .pod(NS, "etcd-n1")
            .is_some_and(|p| p["status"]["containerStatuses"][0]["ready"] == true)
    });
    for restarts in 1..=3 {
        h.set_status("h1", status(restarts, false, false));
        h.record_event(MirrorEvent {
            pod: (NS.into(), "etcd-n1".into()),
            reason: "BackOff".into(),
            message: "Back-off restarting failed container etcd".into(),
            warning: true,
        });
        wait_until("crash loop status", || {
            env.api
                .pod(NS, "etcd-n1")
                .is_some_and(|p| p["status"]["containerStatuses"][0]["restartCount"] == restarts)
        });
    }
    let pod = env.api.pod(NS, "etcd-n1").unwrap();
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(cs["image"], "registry.k8s.io/etcd:3.5.15-0");
    assert_eq!(
        cs["imageID"],
        format!("registry.k8s.io/etcd@sha256:{}", "e".repeat(64))
    );
    assert_eq!(cs["containerID"], "podvisor://etcd-3");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(cs["ready"], false);
    let ready = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "False");
    assert_eq!(
        pod["status"]["qosClass"], "BestEffort",
        "fields we do not send are kept"
    );
    h.set_status("h1", status(3, true, true));
    wait_until("ready again", || {
        env.api
            .pod(NS, "etcd-n1")
            .is_some_and(|p| p["status"]["containerStatuses"][0]["ready"] == true)
    });
    wait_until("BackOff event sent", || {
        env.api
            .with(|s| s.events.iter().any(|e| e["reason"] == "BackOff"))
    });
    let ev = env.api.with(|s| {
        s.events
            .iter()
            .find(|e| e["reason"] == "BackOff")
            .unwrap()
            .clone()
    });
    assert_eq!(ev["involvedObject"]["uid"], pod["metadata"]["uid"]);
    assert_eq!(ev["type"], "Warning");
    stop(h, t);
    assert_clean(&env);
}

#[test]
fn status_is_resent_while_the_api_differs_but_not_more_often_than_the_interval() {
    let env = env("n1");
    let (h, t) = start(&env);
    let mut sp = static_pod("etcd", "n1", "h1", "etcd:1");
    sp.status = Some(status(2, true, true));
    h.set_static_pods([sp]);
    wait_until("status sent", || {
        env.api.with(|s| !s.status_patches.is_empty())
    });
    let first = env.api.with(|s| s.status_patches.last().unwrap().at);
    // Someone else overwrites the status right away: the task sees it through the watch, and
    // re-sends its own once the resend interval (300 ms here, 10 s by default) has passed.
    env.api
        .admin_edit(NS, "etcd-n1", |p| p["status"]["phase"] = json!("Unknown"));
    wait_until("status restored", || {
        env.api
            .pod(NS, "etcd-n1")
            .is_some_and(|p| p["status"]["phase"] == "Running")
    });
    let (count, second) = env
        .api
        .with(|s| (s.status_patches.len(), s.status_patches.last().unwrap().at));
    assert_eq!(count, 2, "exactly one re-send");
    assert!(
        second - first >= fast_timing().status_resend,
        "re-sent after {:?}",
        second - first
    );
    stop(h, t);
    assert_clean(&env);
}

#[test]
fn terminated_static_pod_keeps_its_mirror_and_a_deleted_one_is_not_recreated() {
    let env = env("n1");
    let (h, t) = start(&env);
    let mut job = static_pod("job", "n1", "j1", "job:1");
    let mut other = static_pod("etcd", "n1", "h1", "etcd:1");
    h.set_static_pods([job.clone(), other.clone()]);
    wait_until("mirrors", || env.api.with(|s| s.pods.len() == 2));
    job.status = Some(PodStatus {
        phase: Some("Succeeded".into()),
        ..PodStatus::default()
    });
    h.set_static_pods([job.clone(), other.clone()]);
    wait_until("final status", || {
        env.api
            .pod(NS, "job-n1")
            .is_some_and(|p| p["status"]["phase"] == "Succeeded")
    });
    env.api.admin_delete_now(NS, "job-n1");
    // Barrier: a status change of the other pod is patched after the deletion was seen.
    other.status = Some(status(0, true, true));
    h.set_static_pods([job, other]);
    wait_until("barrier", || {
        env.api
            .pod(NS, "etcd-n1")
            .is_some_and(|p| p["status"]["containerStatuses"][0]["ready"] == true)
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        env.api.pod(NS, "job-n1").is_none(),
        "a finished static pod's mirror is not re-created"
    );
    stop(h, t);
    assert_clean(&env);
}

#[test]
fn api_down_then_back_converges_to_the_latest_state() {
    let env = env("n1");
    let (h, t) = start(&env);
    let mut c = static_pod("c", "n1", "c1", "c:1");
    h.set_static_pods([
        static_pod("a", "n1", "a1", "a:1"),
        static_pod("b", "n1", "b1", "b:1"),
        c.clone(),
    ]);
    wait_until("three mirrors", || env.api.with(|s| s.pods.len() == 3));
    env.api.set_down(true);
    // While it is down: a removed, b edited, d added, c crash-looping, a storm of events.
    for restarts in 1..=50 {
        c.status = Some(status(restarts, false, false));
        h.set_static_pods([
            static_pod("b", "n1", "b2", "b:2"),
            c.clone(),
            static_pod("d", "n1", "d1", "d:1"),
        ]);
        h.record_event(MirrorEvent {
            pod: (NS.into(), "c-n1".into()),
            reason: "BackOff".into(),
            message: format!("restart {restarts}"),
            warning: true,
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    env.api.set_down(false);
    wait_until("converged", || {
        env.api.with(|s| {
            let names: Vec<_> = s.pods.keys().map(|(_, n)| n.as_str()).collect();
            names == ["b-n1", "c-n1", "d-n1"]
                && mirror_hash(&s.pods[&(NS.into(), "b-n1".into())]) == "b2"
                && s.pods[&(NS.into(), "c-n1".into())]["status"]["containerStatuses"][0]["restartCount"] == 50
        })
    });
    // Events: bounded queue (256 distinct by default) drained under the rate limit; none lost here.
    wait_until("events drained", || env.api.with(|s| s.events.len() >= 25));
    stop(h, t);
    assert_clean(&env);
}

#[test]
fn handle_never_waits_for_a_blackholed_api_server() {
    let env = env("n1");
    let (h, t) = start(&env);
    h.set_static_pods([static_pod("etcd", "n1", "h1", "etcd:1")]);
    wait_until("mirror created", || env.api.pod(NS, "etcd-n1").is_some());
    // The supervisor's side of the mirror: per-call time of set_status + record_event, with a
    // healthy API server and then with a blackholed one (accepts, never answers).
    let calls = |offset: i32| {
        let mut each = Vec::new();
        for i in 0..1_000 {
            let t0 = Instant::now();
            h.set_status("h1", status(offset + i % 100, i % 2 == 0, false));
            h.record_event(MirrorEvent::warning(
                (NS.into(), "etcd-n1".into()),
                "BackOff",
                format!("{i}"),
            ));
            each.push(t0.elapsed());
        }
        each.sort();
        (each[each.len() / 2], each[each.len() - 1])
    };
    let (healthy_median, healthy_max) = calls(0);
    env.api.set_blackhole(true);
    h.set_status("h1", status(1, false, false)); // the task is now stuck in a call that will time out
    std::thread::sleep(Duration::from_millis(100));
    let (holed_median, holed_max) = calls(200);
    println!(
        "handle call (set_status + record_event): healthy API median {healthy_median:?} max {healthy_max:?}; \
         blackholed API median {holed_median:?} max {holed_max:?}; ratio {:.2}",
        holed_median.as_secs_f64() / healthy_median.as_secs_f64()
    );
    // Generous bound: the point is that no call waits for the (5 s) request timeout.
    assert!(
        holed_max < Duration::from_secs(1),
        "a handle call waited on the API: {holed_max:?}"
    );
    env.api.set_blackhole(false);
    h.set_status("h1", status(7, true, true));
    wait_until("caught up", || {
        env.api
            .pod(NS, "etcd-n1")
            .is_some_and(|p| p["status"]["containerStatuses"][0]["restartCount"] == 7)
    });
    stop(h, t);
    assert_clean(&env);
}

#[test]
fn rotated_client_certificate_file_is_picked_up() {
    let env = env("n1");
    let (h, t) = start(&env);
    h.set_static_pods([static_pod("etcd", "n1", "h1", "etcd:1")]);
    wait_until("mirror created", || env.api.pod(NS, "etcd-n1").is_some());
    assert!(env.api.used.lock().unwrap().iter().all(|l| l == "a"));
    // A half-written file is not a reason to stop: the previous credentials stay in use.
    let swap = |target: &std::path::Path| {
        let tmp = env.pki.dir.path().join("current.tmp");
        std::os::unix::fs::symlink(target, &tmp).unwrap();
        std::fs::rename(&tmp, &env.current).unwrap();
    };
    let partial = env.pki.dir.path().join("partial.pem");
    std::fs::write(&partial, "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    swap(&partial);
    h.set_status("h1", status(3, true, true));
    wait_until("status patched with the old certificate", || {
        env.api
            .pod(NS, "etcd-n1")
            .is_some_and(|p| p["status"]["containerStatuses"][0]["restartCount"] == 3)
    });
    // Rotate as the kubelet does: new file, symlink swapped atomically; the old cert is revoked.
    let (pem_b, der_b) = env.pki.node_client("n1", "kubelet-client-b");
    env.api.allow_cert(der_b, "n1", "b");
    swap(&pem_b);
    env.api.revoke_cert(&env.cert_der);
    h.set_status("h1", status(4, true, true));
    wait_until("status patched with the new certificate", || {
        env.api
            .pod(NS, "etcd-n1")
            .is_some_and(|p| p["status"]["containerStatuses"][0]["restartCount"] == 4)
    });
    assert!(env.api.used.lock().unwrap().iter().any(|l| l == "b"));
    stop(h, t);
    assert_clean(&env);
}

#[test]
fn bearer_token_file_authenticates() {
    let env = env("n1");
    let token_file = env.pki.dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    env.api.allow_token("s3cret", "n1");
    let text = std::fs::read_to_string(&env.kubeconfig).unwrap();
    let text = text.replace(
        &format!(
            "    client-certificate: {c}\n    client-key: {c}\n",
            c = env.current.display()
        ),
        "    tokenFile: token\n",
    );
    std::fs::write(&env.kubeconfig, text).unwrap();
    let (h, t) = start(&env);
    h.set_static_pods([static_pod("etcd", "n1", "h1", "etcd:1")]);
    wait_until("mirror created", || env.api.pod(NS, "etcd-n1").is_some());
    assert!(env.api.used.lock().unwrap().iter().all(|l| l == "token"));
    stop(h, t);
    assert_clean(&env);
}

#[test]
fn existing_node_is_used_when_registration_is_forbidden_and_a_missing_one_blocks_mirrors() {
    let env = env("n1");
    env.api.with(|s| s.forbid_node_create = true);
    let (h, t) = start(&env);
    h.set_static_pods([static_pod("etcd", "n1", "h1", "etcd:1")]);
    let node_gets = || {
        env.api.with(|s| {
            s.requests
                .iter()
                .filter(|r| r.0 == "GET" && r.1 == "/api/v1/nodes/n1")
                .count()
        })
    };
    wait_until("the task keeps retrying with backoff", || node_gets() >= 3);
    assert!(
        env.api.pod(NS, "etcd-n1").is_none(),
        "no mirror without a Node to own it"
    );
    let creates = env.api.with(|s| {
        s.requests
            .iter()
            .filter(|r| r.0 == "POST" && r.1 == "/api/v1/nodes")
            .count()
    });
    assert!(creates >= 1, "registration was attempted");
    env.api.with(|s| {
        s.rv += 1;
        s.nodes.insert("n1".into(), json!({"metadata": {"name": "n1", "uid": "admin-made-uid", "resourceVersion": "1"}, "spec": {}, "status": {}}));
    });
    wait_until("mirror created once the node exists", || {
        env.api.pod(NS, "etcd-n1").is_some()
    });
    let pod = env.api.pod(NS, "etcd-n1").unwrap();
    assert_eq!(
        pod["metadata"]["ownerReferences"][0]["uid"],
        "admin-made-uid"
    );
    stop(h, t);
    assert_clean(&env);
}

#[test]
fn existing_node_gets_its_labels_updated_and_keeps_its_taints() {
    let env = env("n1");
    env.api.with(|s| {
        s.rv += 1;
        let node = json!({"metadata": {"name": "n1", "uid": "old-uid", "resourceVersion": "1",
                                       "labels": {"kubernetes.io/hostname": "stale", "keep": "me"}},
                          "spec": {"taints": [{"key": "admin", "effect": "NoExecute"}]}, "status": {}});
        s.nodes.insert("n1".into(), node);
    });
    let mut cfg = config(&env);
    cfg.node_facts
        .labels
        .insert("role".into(), "control-plane".into());
    let (h, t) = mirror::spawn(client(&env), cfg).unwrap();
    h.set_static_pods([static_pod("etcd", "n1", "h1", "etcd:1")]);
    wait_until("mirror created", || env.api.pod(NS, "etcd-n1").is_some());
    let node = env.api.with(|s| s.nodes["n1"].clone());
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
    assert_eq!(node["metadata"]["labels"]["role"], "control-plane");
    assert_eq!(node["metadata"]["labels"]["keep"], "me");
    assert_eq!(
        node["spec"]["taints"],
        json!([{"key": "admin", "effect": "NoExecute"}])
    );
    let owner =
        env.api.pod(NS, "etcd-n1").unwrap()["metadata"]["ownerReferences"][0]["uid"].clone();
    assert_eq!(owner, "old-uid");
    stop(h, t);
    assert_clean(&env);
}

#[test]
fn server_not_signed_by_the_cluster_ca_is_refused() {
    let env = env("n1");
    let other = TestPki::new();
    let text = std::fs::read_to_string(&env.kubeconfig).unwrap();
    let text = text.replace(
        "certificate-authority: ca.crt",
        &format!("certificate-authority: {}", other.ca_crt.display()),
    );
    std::fs::write(&env.kubeconfig, text).unwrap();
    let err = client(&env).get::<Value>("/api/v1/nodes/n1").unwrap_err();
    assert!(
        matches!(err, podvisor::kube::KubeError::Transport { .. }),
        "{err}"
    );
    assert!(
        env.api.with(|s| s.requests.is_empty()),
        "no request reached the server"
    );
}

#[test]
fn fake_api_server_enforces_node_rules() {
    let env = env("n1");
    let c = client(&env);
    let node: Value = c
        .post("/api/v1/nodes", &json!({"metadata": {"name": "n1"}}))
        .unwrap();
    let node_uid = node["metadata"]["uid"].clone();
    let code = |r: Result<Value, podvisor::kube::KubeError>| r.err().and_then(|e| e.code());
    assert_eq!(
        code(c.get("/api/v1/pods")),
        Some(403),
        "list without the node field selector"
    );
    assert_eq!(
        code(c.get("/api/v1/pods?fieldSelector=spec.nodeName%3Dn2")),
        Some(403),
        "other node's pods"
    );
    let good = || {
        json!({"metadata": {"name": "p", "namespace": NS, "annotations": {"kubernetes.io/config.mirror": "h"},
               "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": node_uid, "controller": true}]},
               "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}})
    };
    let path = format!("/api/v1/namespaces/{NS}/pods");
    let mut no_annotation = good();
    no_annotation["metadata"]["annotations"] = json!({});
    let mut two_owners = good();
    two_owners["metadata"]["ownerReferences"] = json!([
        good()["metadata"]["ownerReferences"][0],
        good()["metadata"]["ownerReferences"][0]
    ]);
    let mut wrong_uid = good();
    wrong_uid["metadata"]["ownerReferences"][0]["uid"] = json!("other");
    let mut secret = good();
    secret["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": "x"}}]);
    let mut sa = good();
    sa["spec"]["serviceAccountName"] = json!("default");
    let mut other_node = good();
    other_node["spec"]["nodeName"] = json!("n2");
    for (what, body) in [
        ("no annotation", no_annotation),
        ("two owners", two_owners),
        ("wrong owner uid", wrong_uid),
        ("secret volume", secret),
        ("service account", sa),
        ("other node", other_node),
    ] {
        assert_eq!(code(c.post(&path, &body)), Some(403), "{what}");
    }
    let created: Value = c.post(&path, &good()).unwrap();
    let pod_path = format!("{path}/p");
    assert_eq!(code(c.put(&pod_path, &created)), Some(403), "spec update");
    assert_eq!(
        code(c.patch(
            &pod_path,
            "application/strategic-merge-patch+json",
            &json!({"status": {}})
        )),
        Some(403),
        "status through the pod, not /status"
    );
    let status_path = format!("{pod_path}/status");
    let sm = "application/strategic-merge-patch+json";
    assert_eq!(
        code(c.patch(&status_path, sm, &json!({"status": {"phase": "Running"}}))),
        Some(422),
        "no uid precondition"
    );
    assert_eq!(
        code(c.patch(
            &status_path,
            sm,
            &json!({"metadata": {"uid": "x"}, "status": {}})
        )),
        Some(409),
        "stale uid"
    );
    assert_eq!(
        code(c.delete(&pod_path, &json!({"gracePeriodSeconds": 0}))),
        Some(422),
        "delete without uid precondition"
    );
    c.delete::<Value>(
        &pod_path,
        &json!({"gracePeriodSeconds": 0, "preconditions": {"uid": created["metadata"]["uid"]}}),
    )
    .unwrap();
    assert_eq!(env.api.violations().len(), 12);
}

#[test]
fn status_patch_latency_is_measured() {
    // Not an assertion: prints the median time from `set_status` to the PATCH arriving at the
    // fake server, next to a direct PATCH round trip with the same client (the floor).
    let env = env("n1");
    let (h, t) = start(&env);
    h.set_static_pods([static_pod("etcd", "n1", "h1", "etcd:1")]);
    wait_until("mirror created", || env.api.pod(NS, "etcd-n1").is_some());
    let n: i32 = std::env::var("MIRROR_LATENCY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut mirror_lat = Vec::new();
    for i in 1..=n {
        let before = env.api.with(|s| s.status_patches.len());
        let t0 = Instant::now();
        h.set_status("h1", status(i, true, true));
        wait_until("patch", || {
            env.api.with(|s| s.status_patches.len() > before)
        });
        let at = env.api.with(|s| s.status_patches.last().unwrap().at);
        mirror_lat.push(at - t0);
    }
    stop(h, t);
    let c = client(&env);
    let pod_uid = uid(&env.api.pod(NS, "etcd-n1").unwrap());
    let path = format!("/api/v1/namespaces/{NS}/pods/etcd-n1/status");
    let mut direct = Vec::new();
    for i in 1..=n {
        let body = json!({"metadata": {"uid": pod_uid}, "status": status(1000 + i, true, true)});
        let t0 = Instant::now();
        let _: Value = c
            .patch(&path, "application/strategic-merge-patch+json", &body)
            .unwrap();
        direct.push(t0.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (m, d) = (median(&mut mirror_lat), median(&mut direct));
    println!(
        "mirror status latency (set_status -> PATCH at server), n={n}: median {m:?}, p90 {:?}; direct PATCH round trip median {d:?}; ratio {:.2}",
        mirror_lat[mirror_lat.len() * 9 / 10],
        m.as_secs_f64() / d.as_secs_f64()
    );
    assert_clean(&env);
}
