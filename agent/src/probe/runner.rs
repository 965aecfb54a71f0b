//! Runs one probe: picks the handler, resolves the target address, enters the pod's network
//! namespace for network handlers of non-hostNetwork pods, and retries prober errors as the
//! kubelet does. Called on the engine's worker threads; every handler bounds its own time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::exec::{self, ExecRunner};
use super::grpc;
use super::http::{HttpProber, user_agent};
use super::netns::{NetnsError, NetnsSwitch};
use super::outcome::{Outcome, with_retries};
use super::spec::{Handler, NamedPort};
use super::tcp;

/// Where a container's network probes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The pod IP (the node IP for hostNetwork pods): the default host of httpGet, tcpSocket, grpc.
    pub pod_ip: String,
    /// The pod's network namespace (`/run/netns/X` or `/proc/PID/ns/net`); None for hostNetwork.
    pub netns: Option<PathBuf>,
    /// The container's ports, for named probe ports.
    pub ports: Vec<NamedPort>,
}

impl ProbeTarget {
    /// A hostNetwork target at `node_ip`.
    pub fn host_network(node_ip: &str, ports: Vec<NamedPort>) -> ProbeTarget {
        ProbeTarget {
            pod_ip: node_ip.to_owned(),
            netns: None,
            ports,
        }
    }
}

/// The handlers, shared by all worker threads.
#[derive(Debug, Clone)]
pub struct ProbeRunner {
    http: HttpProber,
    user_agent: String,
    exec: Arc<dyn ExecRunner>,
}

impl ProbeRunner {
    /// Handlers identifying as `kube-probe/<k8s_minor>`, running exec probes through `exec`.
    pub fn new(k8s_minor: &str, exec: Arc<dyn ExecRunner>) -> ProbeRunner {
        ProbeRunner {
            http: HttpProber::new(k8s_minor),
            user_agent: user_agent(k8s_minor),
            exec,
        }
    }

    /// Runs `handler` against container `container_id` once (with the kubelet's error
    /// retries). `switch` is the calling worker's way back from a pod network namespace; an
    /// `Err` means the thread could not return to its own namespace and must stop.
    pub fn run(
        &self,
        handler: &Handler,
        target: &ProbeTarget,
        container_id: &str,
        timeout: Duration,
        switch: &NetnsSwitch,
    ) -> Result<Outcome, NetnsError> {
        if let Handler::Exec { command } = handler {
            // Exec runs in the container's own namespaces, through the runtime.
            return Ok(with_retries(|| {
                exec::outcome(
                    command,
                    timeout,
                    self.exec.run(container_id, command, timeout),
                )
            }));
        }
        let attempt = || with_retries(|| self.run_network(handler, target, timeout));
        match &target.netns {
            None => Ok(attempt()),
            Some(path) => match switch.run_in(path, attempt) {
                Ok(outcome) => Ok(outcome),
                Err(e @ NetnsError::Return(_)) => Err(e),
                Err(e) => Ok(Outcome::Error(e.to_string())),
            },
        }
    }

    fn run_network(&self, handler: &Handler, target: &ProbeTarget, timeout: Duration) -> Outcome {
        match handler {
            Handler::HttpGet(action) => {
                self.http
                    .probe(action, &target.pod_ip, &target.ports, timeout)
            }
            Handler::TcpSocket { host, port } => tcp::probe(
                host.as_deref(),
                port,
                &target.pod_ip,
                &target.ports,
                timeout,
            ),
            Handler::Grpc { port, service } => match u16::try_from(*port) {
                Ok(p) if p != 0 => {
                    grpc::probe(&target.pod_ip, p, service, &self.user_agent, timeout)
                }
                _ => Outcome::Error(format!("grpc probe: invalid port number {port}")),
            },
            Handler::Exec { .. } => {
                Outcome::Error("exec probe routed to the network runner".into())
            }
        }
    }
}
