//! Lifecycle hook handlers (`exec`, `httpGet`) run against a running container, for
//! preStop (and postStart). `exec` goes through the runtime's exec like exec probes (the
//! container's namespaces, cgroup, user, capabilities, seccomp); `httpGet` reuses the
//! probe engine's HTTP handler, from inside the pod's network namespace unless the pod
//! uses the host's network. As the kubelet does, an exec hook fails on a non-zero exit and
//! an httpGet hook on a status outside 200–399 or no answer; both are bounded by `timeout`.

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
    let Handler::HttpGet(get) = spec.handler else {
        return Err(failed("not an httpGet handler".into()));
    };
    let ports = named_ports(c);
    let prober = HttpProber::new("1.34");
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
    match outcome {
        Outcome::Success(_) | Outcome::Warning(_) => Ok(()),
        Outcome::Failure(m) | Outcome::Error(m) => Err(failed(m)),
    }
}
