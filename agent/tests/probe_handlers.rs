//! The probe handlers against real servers on loopback: HTTP (status codes, headers, redirects,
//! timeouts, body cap, named ports), HTTPS with a self-signed certificate, and TCP.

mod probe_support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podvisor::probe::http::HttpProber;
use podvisor::probe::outcome::Outcome;
use podvisor::probe::spec::{HttpGetAction, NamedPort, PortRef, Scheme};
use podvisor::probe::tcp;
use probe_support::{HttpServer, Reply, refusing_port};

const SECOND: Duration = Duration::from_secs(1);

fn get(port: u16, path: &str) -> HttpGetAction {
    HttpGetAction {
        scheme: Scheme::Http,
        host: None,
        port: PortRef::Number(i32::from(port)),
        path: path.into(),
        headers: vec![],
    }
}

fn prober() -> HttpProber {
    HttpProber::new("1.34")
}

#[test]
fn http_success_sends_kube_probe_headers_and_host_override() {
    let srv = HttpServer::start(|_| Reply::status(200, "ok"));
    let mut action = get(srv.port, "/healthz");
    action.headers = vec![
        ("X-Custom".into(), "v1".into()),
        ("Host".into(), "example.test".into()),
    ];
    let out = prober().probe(&action, "127.0.0.1", &[], SECOND);
    assert_eq!(out, Outcome::Success("ok".into()));
    let req = &srv.seen()[0];
    assert!(req.starts_with("get /healthz http/1.1"), "{req}");
    assert!(req.contains("user-agent: kube-probe/1.34\r\n"), "{req}");
    assert!(req.contains("accept: */*\r\n"), "{req}");
    assert!(req.contains("host: example.test\r\n"), "{req}");
    assert!(req.contains("x-custom: v1\r\n"), "{req}");
}

#[test]
fn http_user_agent_from_the_probe_wins() {
    let srv = HttpServer::start(|_| Reply::status(200, ""));
    let mut action = get(srv.port, "/");
    action.headers = vec![("User-Agent".into(), "mine".into())];
    prober().probe(&action, "127.0.0.1", &[], SECOND);
    let req = &srv.seen()[0];
    assert!(
        req.contains("user-agent: mine\r\n") && !req.contains("kube-probe"),
        "{req}"
    );
}

#[test]
fn http_status_codes_decide() {
    let srv = HttpServer::start(|path| match path {
        "/ok" => Reply::status(204, ""),
        "/sick" => Reply::status(503, "down"),
        _ => Reply::status(404, ""),
    });
    assert_eq!(
        prober().probe(&get(srv.port, "/ok"), "127.0.0.1", &[], SECOND),
        Outcome::Success(String::new())
    );
    assert_eq!(
        prober().probe(&get(srv.port, "/sick"), "127.0.0.1", &[], SECOND),
        Outcome::Failure("HTTP probe failed with statuscode: 503".into())
    );
}

#[test]
fn http_named_port_resolves_from_container_ports() {
    let srv = HttpServer::start(|_| Reply::status(200, "named"));
    let mut action = get(0, "/");
    action.port = PortRef::Name("web".into());
    let ports = [NamedPort {
        name: "web".into(),
        container_port: i32::from(srv.port),
    }];
    assert_eq!(
        prober().probe(&action, "127.0.0.1", &ports, SECOND),
        Outcome::Success("named".into())
    );
    action.port = PortRef::Name("nope".into());
    assert!(matches!(
        prober().probe(&action, "127.0.0.1", &ports, SECOND),
        Outcome::Error(_)
    ));
}

#[test]
fn http_redirect_on_same_host_is_followed() {
    let srv = HttpServer::start(|path| match path {
        "/a" => Reply::redirect(302, "/b"),
        "/b" => Reply::status(200, "landed"),
        _ => Reply::status(404, ""),
    });
    assert_eq!(
        prober().probe(&get(srv.port, "/a"), "127.0.0.1", &[], SECOND),
        Outcome::Success("landed".into())
    );
    assert_eq!(srv.seen().len(), 2);
}

#[test]
fn http_redirect_to_another_host_is_success_with_warning_and_not_followed() {
    let other = HttpServer::start(|_| Reply::status(500, ""));
    let target = format!("http://localhost:{}/elsewhere", other.port);
    let srv = HttpServer::start(move |_| Reply::redirect(301, &target));
    let out = prober().probe(&get(srv.port, "/a"), "127.0.0.1", &[], SECOND);
    assert!(
        matches!(&out, Outcome::Warning(m) if m.starts_with("Probe terminated redirects")),
        "{out:?}"
    );
    assert!(other.seen().is_empty(), "the other host was contacted");
}

#[test]
fn http_redirect_loop_fails_after_ten() {
    let srv = HttpServer::start(|_| Reply::redirect(307, "/again"));
    let out = prober().probe(&get(srv.port, "/"), "127.0.0.1", &[], 5 * SECOND);
    assert!(
        matches!(&out, Outcome::Failure(m) if m.contains("stopped after 10 redirects")),
        "{out:?}"
    );
    assert_eq!(srv.seen().len(), 11);
}

#[test]
fn http_timeout_is_a_failure_within_the_timeout() {
    let srv = HttpServer::start(|_| Reply {
        delay: Duration::from_secs(5),
        ..Reply::status(200, "")
    });
    let t = Instant::now();
    let out = prober().probe(&get(srv.port, "/"), "127.0.0.1", &[], SECOND);
    assert!(matches!(out, Outcome::Failure(_)), "{out:?}");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn http_connection_refused_is_a_failure() {
    let (_reserved, port) = refusing_port();
    let out = prober().probe(&get(port, "/"), "127.0.0.1", &[], SECOND);
    assert!(
        matches!(&out, Outcome::Failure(m) if m.starts_with("Get ")),
        "{out:?}"
    );
}

#[test]
fn http_body_read_is_capped() {
    let srv = HttpServer::start(|_| Reply {
        body: vec![b'x'; 1 << 20],
        ..Reply::status(200, "")
    });
    let Outcome::Success(body) = prober().probe(&get(srv.port, "/"), "127.0.0.1", &[], 5 * SECOND)
    else {
        panic!("expected success")
    };
    assert_eq!(body.len(), 10 * 1024);
}

/// `openssl s_server -www` with a fresh self-signed certificate; killed on drop.
struct TlsServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tls_server() -> TlsServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=probe-test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("run openssl req (scripts/install-deps installs openssl)");
    assert!(st.success(), "openssl req failed");
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new("openssl")
        .args(["s_server", "-www", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-key")
        .arg(&key)
        .arg("-cert")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start openssl s_server");
    let deadline = Instant::now() + 10 * SECOND;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    TlsServer {
        child,
        port,
        _dir: dir,
    }
}

#[test]
fn https_with_self_signed_certificate_is_not_verified() {
    let srv = start_tls_server();
    let mut action = get(srv.port, "/");
    action.scheme = Scheme::Https;
    let out = prober().probe(&action, "127.0.0.1", &[], 5 * SECOND);
    assert!(matches!(out, Outcome::Success(_)), "{out:?}");
    // The same port over plain HTTP is not a healthy answer.
    action.scheme = Scheme::Http;
    assert!(!matches!(
        prober().probe(&action, "127.0.0.1", &[], 2 * SECOND),
        Outcome::Success(_)
    ));
}

#[test]
fn tcp_host_name_is_resolved_within_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // `localhost` goes through the bounded lookup path (a helper thread), not the literal one.
    let out = tcp::probe(
        Some("localhost"),
        &PortRef::Number(i32::from(port)),
        "10.9.9.9",
        &[],
        SECOND,
    );
    assert_eq!(out, Outcome::Success(String::new()));
    let out = tcp::probe(
        Some("no-such-host.invalid"),
        &PortRef::Number(i32::from(port)),
        "10.9.9.9",
        &[],
        SECOND,
    );
    assert!(
        matches!(&out, Outcome::Failure(m) if m.starts_with("dial tcp: lookup no-such-host.invalid")),
        "{out:?}"
    );
}

#[test]
fn tcp_open_port_succeeds_and_closed_port_fails() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let named = [NamedPort {
        name: "peer".into(),
        container_port: i32::from(port),
    }];
    assert_eq!(
        tcp::probe(
            None,
            &PortRef::Name("peer".into()),
            "127.0.0.1",
            &named,
            SECOND
        ),
        Outcome::Success(String::new())
    );
    drop(listener);
    let (_reserved, port) = refusing_port();
    let out = tcp::probe(
        Some("127.0.0.1"),
        &PortRef::Number(i32::from(port)),
        "10.9.9.9",
        &[],
        SECOND,
    );
    assert!(
        matches!(&out, Outcome::Failure(m) if m.contains("refused")),
        "{out:?}"
    );
}
