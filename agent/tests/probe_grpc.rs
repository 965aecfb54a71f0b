//! The gRPC handler against real grpc.health.v1 servers: Python's grpcio-health-checking
//! (C-core HTTP/2) and etcd's built-in health service (grpc-go), both on loopback.
//! A missing server is a skip with a printed reason (scripts/install-deps installs both).

mod probe_support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use probe_support::refusing_port;

use podvisor::probe::grpc;
use podvisor::probe::outcome::Outcome;

const UA: &str = "kube-probe/1.34";

struct Server {
    child: Child,
    port: u16,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn wait_listening(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn python_server() -> Option<Server> {
    let import = Command::new("python3")
        .args(["-c", "import grpc_health.v1.health"])
        .stderr(Stdio::null())
        .status();
    if !import.is_ok_and(|s| s.success()) {
        eprintln!("SKIP: python3 with grpcio-health-checking not found (run scripts/install-deps)");
        return None;
    }
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc_health_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("start python health server");
    assert!(
        wait_listening(port, &mut child),
        "python grpc health server did not listen on {port}"
    );
    Some(Server {
        child,
        port,
        _dir: None,
    })
}

fn etcd_server() -> Option<Server> {
    if Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("SKIP: etcd not found (scripts/install-deps installs etcd-server)");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, peer) = (free_port(), free_port());
    let mut child = Command::new("etcd")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    assert!(
        wait_listening(client, &mut child),
        "etcd did not listen on {client}"
    );
    Some(Server {
        child,
        port: client,
        _dir: Some(dir),
    })
}

/// Retries a SERVING check briefly: servers may accept before they serve.
fn eventually_healthy(port: u16, service: &str) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = grpc::probe("127.0.0.1", port, service, UA, Duration::from_secs(2));
        if matches!(out, Outcome::Success(_)) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn grpc_python_health_server_statuses() {
    let Some(srv) = python_server() else { return };
    let t = Duration::from_secs(2);
    assert_eq!(
        eventually_healthy(srv.port, ""),
        Outcome::Success("service healthy".into())
    );
    assert_eq!(
        grpc::probe("127.0.0.1", srv.port, "svc-ok", UA, t),
        Outcome::Success("service healthy".into())
    );
    assert_eq!(
        grpc::probe("127.0.0.1", srv.port, "svc-down", UA, t),
        Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    );
    let unknown = grpc::probe("127.0.0.1", srv.port, "no-such-service", UA, t);
    assert!(
        matches!(&unknown, Outcome::Failure(m) if m.contains("code = NotFound")),
        "{unknown:?}"
    );
}

#[test]
fn grpc_timeout_is_a_failure_within_the_timeout() {
    let Some(srv) = python_server() else { return };
    eventually_healthy(srv.port, "");
    let started = Instant::now();
    let out = grpc::probe(
        "127.0.0.1",
        srv.port,
        "svc-slow",
        UA,
        Duration::from_secs(1),
    );
    assert_eq!(
        out,
        Outcome::Failure("timeout: health rpc did not complete within 1s".into())
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn grpc_closed_port_fails_to_connect() {
    let (_reserved, port) = refusing_port();
    let out = grpc::probe("127.0.0.1", port, "", UA, Duration::from_secs(1));
    assert!(
        matches!(&out, Outcome::Failure(m) if m.starts_with("timeout: failed to connect service")),
        "{out:?}"
    );
}

#[test]
fn grpc_http1_server_is_not_healthy() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut c, _)) = listener.accept() {
            let mut buf = [0u8; 256];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let out = grpc::probe("127.0.0.1", port, "", UA, Duration::from_secs(1));
    assert!(matches!(out, Outcome::Failure(_)), "{out:?}");
}

#[test]
fn grpc_etcd_health_service() {
    let Some(srv) = etcd_server() else { return };
    assert_eq!(
        eventually_healthy(srv.port, ""),
        Outcome::Success("service healthy".into())
    );
}
