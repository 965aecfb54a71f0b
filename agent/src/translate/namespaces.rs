//! Linux namespaces of a container: its own mount, PID (unless `shareProcessNamespace` or
//! `hostPID`) and cgroup namespaces; the pod's shared network (unless `hostNetwork`), IPC
//! (unless `hostIPC`) and UTS (unless `hostNetwork`) namespaces, joined by path.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::PodContext;

fn ns(kind: &str, path: Option<&std::path::Path>) -> Value {
    match path {
        Some(p) => json!({"type": kind, "path": p}),
        None => json!({"type": kind}),
    }
}

/// The `linux.namespaces` list. A pod-shared namespace with no path in the context is
/// created fresh (the first container of a pod, or a test).
pub fn namespaces(pod: &Pod, ctx: &PodContext) -> Vec<Value> {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f).unwrap_or(false)
    };
    let host_network = flag(|s| s.host_network);
    let host_pid = flag(|s| s.host_pid);
    let host_ipc = flag(|s| s.host_ipc);
    let share_pid = flag(|s| s.share_process_namespace);
    let mut out = vec![ns("mount", None)];
    if !host_pid {
        out.push(ns(
            "pid",
            if share_pid {
                ctx.pid_ns.as_deref()
            } else {
                None
            },
        ));
    }
    if !host_network {
        out.push(ns("network", ctx.net_ns.as_deref()));
        out.push(ns("uts", ctx.uts_ns.as_deref()));
    }
    if !host_ipc {
        out.push(ns("ipc", ctx.ipc_ns.as_deref()));
    }
    out.push(ns("cgroup", None));
    out
}
