//! Lifecycle hook handlers (`exec`, `httpGet`) run against a running container, for
//! preStop (and postStart). `exec` goes through the runtime's exec like exec probes (the
//! container's namespaces, cgroup, user, capabilities, seccomp); `httpGet` reuses the
//! probe engine's HTTP handler, from inside the pod's network namespace unless the pod
//! uses the host's network, with `User-Agent: kube-lifecycle/<version>`. As the kubelet
//! does (`pkg/kubelet/lifecycle/handlers.go`), an exec hook fails on a non-zero exit, and
//! an httpGet hook only when no response comes (any HTTP status counts as done: the
//! kubelet discards the response). Both are bounded by `timeout`.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};

use crate::daemon::probes::RuntimeExec;
use crate::probe::convert::{named_ports, probe_spec};
use crate::probe::exec::{ExecResult, ExecRunner};
use crate::probe::http::HttpProber;
use crate::probe::netns::NetnsSwitch;
use crate::probe::outcome::Outcome;
use crate::probe::spec::{Handler, ProbeKind};

/// A hook's handler.
#[derive(Debug, Clone, PartialEq)]
pub enum HookHandler {
    /// Run a command in the container.
    Exec(Vec<String>),
    /// An HTTP GET against the container.
    HttpGet(HTTPGetAction),
}

/// Where a container's hooks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookTarget {
    /// The runtime's state root.
    pub runtime_root: PathBuf,
    /// The container's current run, `podvisor://<id>` or `<id>`.
    pub container_id: String,
    /// The pod's network namespace; None with hostNetwork.
    pub netns: Option<PathBuf>,
    /// The default host of httpGet (the pod IP; 127.0.0.1 inside the pod's namespace).
    pub host: String,
}

/// Runs `handler` for container `c` within `timeout`; `Err` says why the hook failed, in
/// the words of the kubelet's `FailedPreStopHook`/`FailedPostStartHook` events.
pub fn run_hook(
    c: &Container,
    handler: &HookHandler,
    target: &HookTarget,
    timeout: Duration,
) -> Result<(), String> {
    match handler {
        HookHandler::Exec(command) => run_exec(c, command, target, timeout),
        HookHandler::HttpGet(action) => run_http(c, action, target, timeout),
    }
}

fn run_exec(
    c: &Container,
    command: &[String],
    target: &HookTarget,
    timeout: Duration,
) -> Result<(), String> {
    let exec = RuntimeExec {
        root: target.runtime_root.clone(),
    };
    let failed = |why: String| {
        format!(
            "Exec lifecycle hook ({command:?}) for Container {:?} failed - error: {why}",
            c.name
        )
    };
    match exec.run(&target.container_id, command, timeout) {
        ExecResult::Exited { code: 0, .. } => Ok(()),
        ExecResult::Exited { code, output } => Err(failed(format!(
            "command '{}' exited with {code}: {}",
            command.join(" "),
            String::from_utf8_lossy(&output).trim_end()
        ))),
        ExecResult::TimedOut => Err(failed(format!(
            "command '{}' timed out after {:.0?}",
            command.join(" "),
            timeout
        ))),
        ExecResult::Failed(e) => Err(failed(e)),
    }
}

fn run_http(
    c: &Container,
    action: &HTTPGetAction,
    target: &HookTarget,
    timeout: Duration,
) -> Result<(), String> {
    let probe = Probe {
        http_get: Some(action.clone()),
        ..Default::default()
    };
    let failed = |why: String| {
        format!(
            "HTTP lifecycle hook ({}) for Container {:?} failed - error: {why}",
            action.path.as_deref().unwrap_or("/"),
            c.name
        )
    };
    let spec =
        probe_spec(&c.name, ProbeKind::Liveness, &probe).map_err(|e| failed(e.to_string()))?;
    let Handler::HttpGet(mut get) = spec.handler else {
        return Err(failed("not an httpGet handler".into()));
    };
    if !get
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
    {
        get.headers
            .push(("User-Agent".into(), format!("kube-lifecycle/{K8S_MINOR}")));
    }
    let ports = named_ports(c);
    let prober = HttpProber::new(K8S_MINOR);
    let get_once = || prober.probe(&get, &target.host, &ports, timeout);
    let outcome = match &target.netns {
        None => get_once(),
        Some(path) => {
            // The namespace switch is per thread: do it on a thread of its own, which ends
            // there (so a failed return to the home namespace strands nothing).
            let in_netns = std::thread::scope(|s| {
                s.spawn(|| {
                    let switch = NetnsSwitch::for_this_thread().map_err(|e| e.to_string())?;
                    switch.run_in(path, get_once).map_err(|e| e.to_string())
                })
                .join()
            });
            match in_netns {
                Ok(result) => result.map_err(failed)?,
                Err(_) => return Err(failed("the hook thread panicked".into())),
            }
        }
    };
    http_hook_verdict(outcome).map_err(failed)
}

/// The Kubernetes version the hooks' User-Agent names (as the probes' does).
const K8S_MINOR: &str = "1.34";

/// The probe handler's words for "a response came, with a status outside 200–399".
const STATUS_FAILURE: &str = "HTTP probe failed with statuscode";

/// The kubelet's verdict on a lifecycle GET from the probe handler's outcome: a response of
/// any status is success; no response (refused, timed out, bad port) is failure.
fn http_hook_verdict(outcome: Outcome) -> Result<(), String> {
    match outcome {
        Outcome::Success(_) | Outcome::Warning(_) => Ok(()),
        Outcome::Failure(m) if m.starts_with(STATUS_FAILURE) => Ok(()),
        Outcome::Failure(m) | Outcome::Error(m) => Err(m),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;

    /// A one-shot HTTP server on the host's loopback answering `status`; returns its port
    /// and the request it got.
    fn serve_once(status: u16) -> (u16, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).unwrap();
            let reply =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            conn.write_all(reply.as_bytes()).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (port, t)
    }

    fn get(port: u16) -> HookHandler {
        HookHandler::HttpGet(HTTPGetAction {
            path: Some("/drain".into()),
            port: IntOrString::Int(i32::from(port)),
            ..Default::default()
        })
    }

    fn target() -> HookTarget {
        HookTarget {
            runtime_root: PathBuf::from("/nonexistent"),
            container_id: "x".into(),
            netns: None,
            host: "127.0.0.1".into(),
        }
    }

    #[test]
    fn http_hook_succeeds_on_any_status_as_the_kubelet() {
        let c = Container::default();
        for status in [200, 500] {
            let (port, server) = serve_once(status);
            let r = run_hook(&c, &get(port), &target(), Duration::from_secs(5));
            assert_eq!(r, Ok(()), "status {status}");
            let request = server.join().unwrap();
            assert!(request.starts_with("GET /drain "), "{request}");
            assert!(
                request
                    .to_ascii_lowercase()
                    .contains("user-agent: kube-lifecycle/"),
                "{request}"
            );
        }
    }

    #[test]
    fn http_hook_fails_without_a_response() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        }; // closed again: connection refused
        let r = run_hook(
            &Container::default(),
            &get(port),
            &target(),
            Duration::from_secs(5),
        );
        let m = r.unwrap_err();
        assert!(m.starts_with("HTTP lifecycle hook (/drain)"), "{m}");
    }
}
