//! Network probes of a non-hostNetwork pod run inside the pod's network namespace (root only).
//!
//! The test makes a namespace with `ip netns add`, starts an HTTP server bound to 127.0.0.1
//! inside it, and checks that HTTP and TCP probes through the namespace reach it while the same
//! probes from the host namespace do not. Not root: fails, unless PODVISOR_SKIP_PRIVILEGED=1
//! (then it prints why it skipped).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podvisor::probe::exec::HostExec;
use podvisor::probe::netns::NetnsSwitch;
use podvisor::probe::outcome::Outcome;
use podvisor::probe::runner::{ProbeRunner, ProbeTarget};
use podvisor::probe::spec::{Handler, HttpGetAction, PortRef, Scheme};

struct Netns {
    name: String,
    servers: Vec<Child>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip")
        .args(args)
        .status()
        .expect("run ip (iproute2)");
    assert!(st.success(), "ip {args:?} failed");
}

fn root_or_skip() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("PODVISOR_SKIP_PRIVILEGED").is_some() {
        eprintln!(
            "SKIP: probe_netns needs root (ip netns add, setns); PODVISOR_SKIP_PRIVILEGED is set"
        );
        return false;
    }
    panic!("probe_netns needs root: run as root or set PODVISOR_SKIP_PRIVILEGED=1 to skip");
}

#[test]
fn http_and_tcp_probes_run_inside_the_pod_network_namespace() {
    if !root_or_skip() {
        return;
    }
    let name = format!("pvprobe-{}", std::process::id());
    ip(&["netns", "add", &name]);
    let mut ns = Netns {
        name: name.clone(),
        servers: Vec::new(),
    };
    ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
    // A port nothing on the host listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("healthz"), "inside").expect("write healthz");
    let server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &name,
            "python3",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
        ])
        .arg(port.to_string())
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start http server in netns");
    ns.servers.push(server);

    let runner = ProbeRunner::new("1.34", Arc::new(HostExec));
    let switch = NetnsSwitch::for_this_thread().expect("remember netns");
    let inside = ProbeTarget {
        pod_ip: "127.0.0.1".into(),
        netns: Some(PathBuf::from(format!("/run/netns/{name}"))),
        ports: vec![],
    };
    let outside = ProbeTarget {
        netns: None,
        ..inside.clone()
    };
    let http = Handler::HttpGet(HttpGetAction {
        scheme: Scheme::Http,
        host: None,
        port: PortRef::Number(i32::from(port)),
        path: "/healthz".into(),
        headers: vec![],
    });
    let tcp = Handler::TcpSocket {
        host: None,
        port: PortRef::Number(i32::from(port)),
    };
    let t = Duration::from_secs(1);

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut got = runner
        .run(&http, &inside, "c", t, &switch)
        .expect("stayed home");
    while !matches!(got, Outcome::Success(_)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        got = runner
            .run(&http, &inside, "c", t, &switch)
            .expect("stayed home");
    }
    assert_eq!(
        got,
        Outcome::Success("inside".into()),
        "http probe inside the pod netns"
    );
    assert!(
        matches!(
            runner.run(&tcp, &inside, "c", t, &switch),
            Ok(Outcome::Success(_))
        ),
        "tcp inside"
    );
    assert!(
        matches!(
            runner.run(&http, &outside, "c", t, &switch),
            Ok(Outcome::Failure(_))
        ),
        "http from the host must not reach it"
    );
    assert!(
        matches!(
            runner.run(&tcp, &outside, "c", t, &switch),
            Ok(Outcome::Failure(_))
        ),
        "tcp from the host must not reach it"
    );

    // The thread is back in its own namespace after each probe.
    let here = std::fs::read_link("/proc/thread-self/ns/net").expect("readlink");
    let host = std::fs::read_link("/proc/self/ns/net").expect("readlink");
    assert_eq!(here, host);

    // gRPC health through the namespace, when Python's grpcio-health-checking is installed.
    let have_grpc = Command::new("python3")
        .args(["-c", "import grpc_health.v1.health"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have_grpc {
        let gport = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc_health_server.py");
        let grpc_server = Command::new("ip")
            .args(["netns", "exec", &name, "python3", script])
            .arg(gport.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("start grpc health server in netns");
        ns.servers.push(grpc_server);
        let grpc = Handler::Grpc {
            port: i32::from(gport),
            service: "svc-ok".into(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = runner
            .run(&grpc, &inside, "c", t, &switch)
            .expect("stayed home");
        while !matches!(got, Outcome::Success(_)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            got = runner
                .run(&grpc, &inside, "c", t, &switch)
                .expect("stayed home");
        }
        assert_eq!(
            got,
            Outcome::Success("service healthy".into()),
            "grpc inside the pod netns"
        );
        assert!(
            matches!(
                runner.run(&grpc, &outside, "c", t, &switch),
                Ok(Outcome::Failure(_))
            ),
            "grpc from the host"
        );
    } else {
        eprintln!(
            "SKIP (grpc part): python3 grpcio-health-checking not installed (scripts/install-deps)"
        );
    }

    // A namespace path that does not exist is a prober error, not a failure.
    let missing = ProbeTarget {
        netns: Some(PathBuf::from("/run/netns/pvprobe-missing")),
        ..inside.clone()
    };
    assert!(matches!(
        runner.run(&tcp, &missing, "c", t, &switch),
        Ok(Outcome::Error(_))
    ));
}
