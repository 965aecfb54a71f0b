//! Starting an `exec`: which container a request means (from the status store's pod, as
//! `kubectl exec` picks it), and the process started in it through the runtime's `exec`
//! (the container's namespaces, cgroup, user, capabilities, seccomp and environment from
//! its bundle; only the arguments, and the terminal, change).

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use oci_spec::runtime::{BoxBuilder, Spec};
use podvisor_runtime::container::{ExecOptions, Spawned, Stdio};

use super::wire::{ExecRequest, start_failure_code};
use crate::api::store::pick_container;

/// The running container an exec goes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTarget {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// The container's name.
    pub container: String,
    /// The runtime's id of the container's current run.
    pub id: String,
}

/// Why an exec did not start, as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// What went wrong, for people.
    pub message: String,
    /// The command could not be started: the exit code to report (127, 126).
    pub exit_code: Option<i32>,
}

impl Refusal {
    fn new(status: u16, message: String) -> Self {
        Self {
            status,
            message,
            exit_code: None,
        }
    }
}

/// The process's end of an exec's stdio, held by the agent.
#[derive(Debug)]
pub enum ExecIo {
    /// Without a terminal: pipes.
    Pipes {
        /// Write end of the process's stdin (None: stdin is /dev/null).
        stdin: Option<File>,
        /// Read end of its stdout.
        stdout: File,
        /// Read end of its stderr.
        stderr: File,
    },
    /// With a terminal: the pty's master.
    Pty(OwnedFd),
}

/// A started exec.
#[derive(Debug)]
pub struct Started {
    /// The process (a child of this process).
    pub spawned: Spawned,
    /// Its stdio.
    pub io: ExecIo,
}

/// Picks the container of `pod` that `wanted` names (default: the
/// `kubectl.kubernetes.io/default-container` annotation, else the first app container)
/// and checks that it runs.
pub fn resolve(pod: &Pod, wanted: Option<&str>) -> Result<ExecTarget, Refusal> {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let key = format!("{}/{name}", meta.namespace.as_deref().unwrap_or("default"));
    let container =
        pick_container(pod, wanted).map_err(|(status, message)| Refusal::new(status, message))?;
    let status = pod.status.clone().unwrap_or_default();
    let found: Option<ContainerStatus> = status
        .init_container_statuses
        .into_iter()
        .flatten()
        .chain(status.container_statuses.into_iter().flatten())
        .find(|c| c.name == container);
    let not_running = |why: String| {
        Refusal::new(
            409,
            format!("container {container} in pod {name} is not running{why}"),
        )
    };
    let Some(c) = found else {
        return Err(not_running(" (not started yet)".into()));
    };
    let state = c.state.clone().unwrap_or_default();
    if state.running.is_none() {
        let why = if let Some(w) = state.waiting {
            format!(" (waiting: {})", w.reason.unwrap_or_default())
        } else if let Some(t) = state.terminated {
            format!(
                " (terminated: {}, exit code {})",
                t.reason.unwrap_or_default(),
                t.exit_code
            )
        } else {
            String::new()
        };
        return Err(not_running(why));
    }
    let Some(id) = c
        .container_id
        .as_deref()
        .and_then(|i| i.strip_prefix("podvisor://"))
        .filter(|i| !i.is_empty())
    else {
        return Err(not_running(" (no container id yet)".into()));
    };
    Ok(ExecTarget {
        pod: key,
        container,
        id: id.to_string(),
    })
}

/// Starts `req.command` in container `target` under the runtime root `root`.
pub fn start(root: &Path, target: &ExecTarget, req: &ExecRequest) -> Result<Started, Refusal> {
    if req.command.is_empty() {
        return Err(Refusal::new(400, "exec needs a command".into()));
    }
    let id = &target.id;
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        Refusal::new(
            500,
            format!("exec in container {}: {what}: {e}", target.container),
        )
    };
    let state = podvisor_runtime::state::load(root, id).map_err(|e| {
        Refusal::new(
            409,
            format!(
                "container {} in pod {} is not running: {e}",
                target.container, target.pod
            ),
        )
    })?;
    let config = state.bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|e| internal(&config.display().to_string(), &e))?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| internal(&config.display().to_string(), &"no process"))?;
    process.set_args(Some(req.command.clone()));
    process.set_terminal(Some(req.tty));
    if req.tty {
        if req.rows > 0 && req.cols > 0 {
            let size = BoxBuilder::default()
                .height(u64::from(req.rows))
                .width(u64::from(req.cols))
                .build()
                .map_err(|e| internal("terminal size", &e))?;
            process.set_console_size(Some(size));
        }
        let mut env = process.env().clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        process.set_env(Some(env));
    }
    let null = File::open("/dev/null").map_err(|e| internal("open /dev/null", &e))?;
    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| internal("create a pipe", &e))
    };
    let run = |stdio: Stdio<'_>, console: Option<&UnixStream>| {
        podvisor_runtime::container::exec(&ExecOptions {
            root: root.to_path_buf(),
            id: id.clone(),
            process: process.clone(),
            stdio,
            console_socket: console.map(|c| c.as_fd()),
            preserve_fds: Vec::new(),
        })
        .map_err(|e| refusal_of(target, &e))
    };
    if req.tty {
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| internal("create the console socket", &e))?;
        let stdio = Stdio {
            stdin: null.as_fd(),
            stdout: null.as_fd(),
            stderr: null.as_fd(),
        };
        let spawned = run(stdio, Some(&theirs))?;
        drop(theirs);
        let (_, mut fds) = podvisor_runtime::channel::recv_bytes(ours.as_fd())
            .map_err(|e| internal("receive the pty", &e))?;
        let master = fds
            .pop()
            .ok_or_else(|| internal("receive the pty", &"no descriptor came"))?;
        return Ok(Started {
            spawned,
            io: ExecIo::Pty(master),
        });
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let stdin_pipe = if req.stdin { Some(pipe()?) } else { None };
    let stdio = Stdio {
        stdin: stdin_pipe.as_ref().map_or(null.as_fd(), |(r, _)| r.as_fd()),
        stdout: out_w.as_fd(),
        stderr: err_w.as_fd(),
    };
    let spawned = run(stdio, None)?;
    // Only the process may hold these ends, or nobody sees end of file.
    drop((out_w, err_w));
    let stdin = stdin_pipe.map(|(r, w)| {
        drop(r);
        File::from(w)
    });
    Ok(Started {
        spawned,
        io: ExecIo::Pipes {
            stdin,
            stdout: File::from(out_r),
            stderr: File::from(err_r),
        },
    })
}

/// The API's answer to a runtime error of `exec`.
fn refusal_of(target: &ExecTarget, e: &podvisor_runtime::Error) -> Refusal {
    use podvisor_runtime::Error;
    match e {
        Error::Init { step, errno, .. } if step.starts_with("exec") => Refusal {
            status: 400,
            message: format!(
                "exec in container {} of pod {}: {e}",
                target.container, target.pod
            ),
            exit_code: start_failure_code(*errno),
        },
        Error::NotFound(_) | Error::BadState { .. } => Refusal::new(
            409,
            format!(
                "container {} in pod {} is not running: {e}",
                target.container, target.pod
            ),
        ),
        _ => Refusal::new(
            500,
            format!(
                "exec in container {} of pod {}: {e}",
                target.container, target.pod
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStateWaiting, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn status(name: &str, running: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            container_id: running.then(|| format!("podvisor://uid-{name}-0")),
            state: Some(if running {
                ContainerState {
                    running: Some(ContainerStateRunning::default()),
                    ..Default::default()
                }
            } else {
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("CrashLoopBackOff".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            }),
            ..Default::default()
        }
    }

    fn pod() -> Pod {
        let c = |n: &str| Container {
            name: n.into(),
            ..Default::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                init_containers: Some(vec![c("setup")]),
                containers: vec![c("a"), c("b"), c("crash")],
                ..Default::default()
            }),
            status: Some(PodStatus {
                container_statuses: Some(vec![
                    status("a", true),
                    status("b", true),
                    status("crash", false),
                ]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn container_choice_and_refusals() {
        let p = pod();
        let ok = |c: Option<&str>| resolve(&p, c).map(|t| t.id);
        assert_eq!(ok(None), Ok("uid-a-0".into()), "first app container");
        assert_eq!(ok(Some("b")), Ok("uid-b-0".into()));
        let code = |c: Option<&str>| resolve(&p, c).map_err(|r| (r.status, r.message));
        let (status, msg) = code(Some("nope")).unwrap_err();
        assert_eq!(status, 400);
        assert!(msg.contains("choose one of: [setup a b crash]"), "{msg}");
        let (status, msg) = code(Some("crash")).unwrap_err();
        assert_eq!(status, 409);
        assert!(
            msg.contains("not running") && msg.contains("CrashLoopBackOff"),
            "{msg}"
        );
        let (status, msg) = code(Some("setup")).unwrap_err();
        assert_eq!(status, 409, "{msg}");
        let mut annotated = pod();
        annotated.metadata.annotations = Some(
            [(
                "kubectl.kubernetes.io/default-container".to_string(),
                "b".to_string(),
            )]
            .into(),
        );
        assert_eq!(
            resolve(&annotated, None).map(|t| t.id),
            Ok("uid-b-0".into())
        );
    }
}
