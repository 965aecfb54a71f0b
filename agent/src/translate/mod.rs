//! Pod → OCI runtime spec, per container, as containerd's CRI plugin builds it. Pure: the
//! inputs are the pod, the container, the image defaults, the image's /etc/passwd and
//! /etc/group text, and a [`PodContext`] of paths and node facts; the output is an
//! `oci_spec::runtime::Spec`. Every field is set here (nothing from `Spec::default()`).
//!
//! The spec is assembled as JSON and then decoded into the typed `Spec`; a round-trip
//! check refuses any field the typed spec would drop, so a misspelt key cannot pass silently.

pub mod expand;
pub mod mounts;
pub mod namespaces;
pub mod prepare;
pub mod process;
pub mod resources;
pub mod seccomp;
pub mod seccomp_default;
pub mod security;
pub mod volumes;

use std::io;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;
use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use crate::pod::{StaticPod, qos};
pub use process::ImageDefaults;

/// Why a container could not be translated. All are the pod's fault (permanent) except
/// [`TranslateError::Seccomp`] when the profile file is missing (fixable on the host).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// Neither the container nor the image gives a command.
    #[error(
        "container {container}: no command: the pod sets no command/args and the image no Entrypoint/Cmd"
    )]
    NoCommand {
        /// Container name.
        container: String,
    },
    /// The user cannot be resolved or breaks `runAsNonRoot`.
    #[error("container {container}: user: {message}")]
    User {
        /// Container name.
        container: String,
        /// What is wrong.
        message: String,
    },
    /// An unknown capability name.
    #[error("container {container}: unknown capability {name:?}")]
    Capability {
        /// Container name.
        container: String,
        /// The name as written.
        name: String,
    },
    /// A Localhost seccomp profile could not be read or parsed.
    #[error("container {container}: seccomp profile {path}: {message}")]
    Seccomp {
        /// Container name.
        container: String,
        /// Profile file.
        path: PathBuf,
        /// What failed (with the OS error).
        message: String,
    },
    /// A volume could not be planned or prepared.
    #[error("volume {volume}: {message}")]
    Volume {
        /// Volume name.
        volume: String,
        /// What failed.
        message: String,
    },
    /// A file or directory of the pod directory could not be written (keeps the OS error).
    #[error("prepare pod directory: {message}")]
    Prepare {
        /// What was being done, and the OS error.
        message: String,
    },
    /// A field podvisor does not support.
    #[error("container {container}: unsupported: {field}")]
    Unsupported {
        /// Container name.
        container: String,
        /// The field.
        field: String,
    },
    /// The assembled spec does not decode as an OCI spec (a podvisor bug).
    #[error("container {container}: build OCI spec: {message}")]
    Spec {
        /// Container name.
        container: String,
        /// The decoder's message.
        message: String,
    },
}

/// Paths and node facts a translation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodContext {
    /// The pod's directory: `etc-hosts`, `resolv.conf`, `hostname`, `shm/`, `volumes/<name>/`,
    /// `containers/<name>/termination-log`.
    pub pod_dir: PathBuf,
    /// The pod's network namespace (`/proc/<pid>/ns/net` or a bind-mounted file); unused with hostNetwork.
    pub net_ns: Option<PathBuf>,
    /// The pod's IPC namespace; unused with hostIPC.
    pub ipc_ns: Option<PathBuf>,
    /// The pod's UTS namespace; unused with hostNetwork.
    pub uts_ns: Option<PathBuf>,
    /// The pod's PID namespace with `shareProcessNamespace`.
    pub pid_ns: Option<PathBuf>,
    /// The agent's cgroup (relative to the cgroup2 root), parent of `pods/`.
    pub cgroup_parent: String,
    /// `--seccomp-profile-root` for Localhost profiles.
    pub seccomp_profile_root: PathBuf,
    /// Node memory in bytes (for Burstable oom_score_adj).
    pub memory_capacity: i64,
    /// The pod's IP (the node's with hostNetwork).
    pub pod_ip: String,
    /// The node's IP.
    pub host_ip: String,
    /// The node's hostname (hostNetwork pods see it).
    pub node_hostname: String,
    /// Pod-level `pids.max`, if configured.
    pub pod_pids_limit: Option<i64>,
}

impl PodContext {
    /// Sets the node IP; with hostNetwork it is also the pod IP.
    pub fn set_node_ip(&mut self, ip: &str, host_network: bool) {
        self.host_ip = ip.to_owned();
        if host_network {
            self.pod_ip = ip.to_owned();
        }
    }

    /// A context for a pod directory with everything else empty or default.
    pub fn new(pod_dir: impl Into<PathBuf>) -> Self {
        PodContext {
            pod_dir: pod_dir.into(),
            net_ns: None,
            ipc_ns: None,
            uts_ns: None,
            pid_ns: None,
            cgroup_parent: "/podvisor".to_owned(),
            seccomp_profile_root: PathBuf::from("/var/lib/kubelet/seccomp"),
            memory_capacity: 1 << 34,
            pod_ip: String::new(),
            host_ip: String::new(),
            node_hostname: String::new(),
            pod_pids_limit: None,
        }
    }
}

/// Per-container inputs that come from the image.
#[derive(Clone, Copy)]
pub struct ContainerInput<'a> {
    /// The image's defaults; `None` when the image is not resolved (`podvisor render`):
    /// argv then comes from the pod alone.
    pub image: Option<&'a ImageDefaults>,
    /// The container's root filesystem directory.
    pub rootfs: &'a Path,
    /// The image's /etc/passwd text (empty if none).
    pub passwd: &'a str,
    /// The image's /etc/group text (empty if none).
    pub group: &'a str,
    /// Reads a Localhost seccomp profile file.
    pub read_file: &'a dyn Fn(&Path) -> io::Result<Vec<u8>>,
}

impl std::fmt::Debug for ContainerInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerInput")
            .field("image", &self.image)
            .field("rootfs", &self.rootfs)
            .finish_non_exhaustive()
    }
}

/// The files the agent writes into the pod directory before its containers start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFiles {
    /// `/etc/hostname` content (with a newline).
    pub hostname: String,
    /// `/etc/hosts` content.
    pub etc_hosts: String,
    /// `/etc/resolv.conf` content.
    pub resolv_conf: String,
}

/// Computes the pod's managed files from the node's `/etc/hosts` and `/etc/resolv.conf`.
pub fn pod_files(
    pod: &StaticPod,
    ctx: &PodContext,
    node_hosts: &str,
    node_resolv: &str,
) -> PodFiles {
    PodFiles {
        hostname: format!("{}\n", mounts::pod_hostname(&pod.pod, ctx)),
        etc_hosts: mounts::etc_hosts(&pod.pod, ctx, node_hosts),
        resolv_conf: mounts::resolv_conf(&pod.pod, node_resolv),
    }
}

/// The host file bind-mounted at the container's `terminationMessagePath` (the agent
/// creates it empty before the container starts and reads it after it exits).
pub fn termination_log_path(ctx: &PodContext, container: &str) -> PathBuf {
    ctx.pod_dir
        .join("containers")
        .join(container)
        .join("termination-log")
}

/// The container's cgroup: `<parent>/pods/<qos>/pod<uid>/<container>`.
pub fn container_cgroup(pod: &StaticPod, ctx: &PodContext, container: &str) -> String {
    format!(
        "{}/{container}",
        resources::pod_cgroup(&ctx.cgroup_parent, pod.qos, &pod.uid)
    )
}

/// Translates one container (app or init) of a static pod into an OCI runtime spec.
pub fn container_spec(
    pod: &StaticPod,
    c: &Container,
    input: &ContainerInput<'_>,
    ctx: &PodContext,
) -> Result<Spec, TranslateError> {
    let p = &pod.pod;
    let spec = p.spec.as_ref();
    let psc = spec.and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);

    let caps = capabilities(c, privileged)?;
    let (args, env, cwd) = process_args(pod, c, input, ctx)?;
    let user = user(c, input, psc, sc)?;
    let volumes = volumes::plan_volumes(p, ctx)?;
    let read_only_root = sc
        .and_then(|s| s.read_only_root_filesystem)
        .unwrap_or(false);
    let all_mounts = mounts::merge(
        mounts::default_mounts(privileged),
        mounts::managed_mounts(p, c, ctx, read_only_root),
        mounts::volume_mounts(c, &volumes)?,
    );
    let choice = seccomp::choose(
        psc.and_then(|s| s.seccomp_profile.as_ref()),
        sc.and_then(|s| s.seccomp_profile.as_ref()),
        privileged,
        &ctx.seccomp_profile_root,
    );
    let seccomp = seccomp::profile(&c.name, &choice, &caps, input.read_file)?;
    let unmasked = privileged || sc.and_then(|s| s.proc_mount.as_deref()) == Some("Unmasked");
    let no_new_privs = !privileged && sc.and_then(|s| s.allow_privilege_escalation) == Some(false);
    let cg = resources::cgroup_values(c, ctx.pod_pids_limit);
    let sysctls: serde_json::Map<String, Value> = psc
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| (s.name.clone(), json!(s.value)))
        .collect();
    let hostname = mounts::pod_hostname(p, ctx);
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);

    let mut linux = json!({
        "cgroupsPath": container_cgroup(pod, ctx, &c.name),
        "namespaces": namespaces::namespaces(p, ctx),
        "resources": resources::resources_json(&cg, security::device_rules(privileged)),
        "sysctl": sysctls,
        "maskedPaths": if unmasked { Vec::new() } else { security::MASKED_PATHS.to_vec() },
        "readonlyPaths": if unmasked { Vec::new() } else { security::READONLY_PATHS.to_vec() },
    });
    if let Some(s) = seccomp {
        linux["seccomp"] = s;
    }
    if let Some(prop) = mounts::rootfs_propagation(c) {
        linux["rootfsPropagation"] = json!(prop);
    }
    let mut process = json!({
        "terminal": c.tty.unwrap_or(false),
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": security::capabilities_json(&caps),
        "noNewPrivileges": no_new_privs,
        "oomScoreAdj": qos::oom_score_adj(p, c, ctx.memory_capacity),
    });
    if user.additional_gids.is_empty() {
        if let Some(u) = process["user"].as_object_mut() {
            u.remove("additionalGids");
        }
    }
    let mut doc = json!({
        "ociVersion": "1.2.0",
        "root": {"path": input.rootfs, "readonly": read_only_root},
        "mounts": all_mounts,
        "process": process.take(),
        "annotations": annotations(pod, c),
        "linux": linux,
    });
    if !host_network {
        doc["hostname"] = json!(hostname);
    }
    decode_spec(&c.name, doc)
}

fn capabilities(c: &Container, privileged: bool) -> Result<Vec<String>, TranslateError> {
    let caps = c
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref());
    let add = caps.and_then(|c| c.add.clone()).unwrap_or_default();
    let drop = caps.and_then(|c| c.drop.clone()).unwrap_or_default();
    security::capabilities(&c.name, privileged, &add, &drop)
}

type ProcessArgs = (Vec<String>, Vec<String>, String);

fn process_args(
    pod: &StaticPod,
    c: &Container,
    input: &ContainerInput<'_>,
    ctx: &PodContext,
) -> Result<ProcessArgs, TranslateError> {
    let empty = ImageDefaults::default();
    let image = input.image.unwrap_or(&empty);
    let own_env = process::container_env(&pod.pod, c, ctx)?;
    let hostname = mounts::pod_hostname(&pod.pod, ctx);
    let env = process::process_env(image, &hostname, &own_env);
    let args = match process::argv(c, image, &own_env) {
        Ok(a) => a,
        Err(_) if input.image.is_none() => Vec::new(),
        Err(e) => return Err(e),
    };
    let cwd = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| Some(image.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_owned());
    Ok((args, env, cwd))
}

fn user(
    c: &Container,
    input: &ContainerInput<'_>,
    psc: Option<&k8s_openapi::api::core::v1::PodSecurityContext>,
    sc: Option<&k8s_openapi::api::core::v1::SecurityContext>,
) -> Result<process::ResolvedUser, TranslateError> {
    let image_user = input.image.map(|i| i.user.as_str()).unwrap_or("");
    // fsGroup joins the supplemental groups, as the kubelet passes it to the runtime.
    let mut supplemental: Vec<i64> = psc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default();
    supplemental.extend(psc.and_then(|s| s.fs_group));
    process::resolve_user(
        &c.name,
        image_user,
        sc.and_then(|s| s.run_as_user)
            .or_else(|| psc.and_then(|s| s.run_as_user)),
        sc.and_then(|s| s.run_as_group)
            .or_else(|| psc.and_then(|s| s.run_as_group)),
        sc.and_then(|s| s.run_as_non_root)
            .or_else(|| psc.and_then(|s| s.run_as_non_root))
            .unwrap_or(false),
        &supplemental,
        input.passwd,
        input.group,
    )
}

/// Annotations containerd's CRI plugin puts on a container's spec.
fn annotations(pod: &StaticPod, c: &Container) -> Value {
    let m = &pod.pod.metadata;
    json!({
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.container-name": c.name,
        "io.kubernetes.cri.image-name": c.image.clone().unwrap_or_default(),
        "io.kubernetes.cri.sandbox-name": m.name.clone().unwrap_or_default(),
        "io.kubernetes.cri.sandbox-namespace": m.namespace.clone().unwrap_or_default(),
        "io.kubernetes.cri.sandbox-uid": pod.uid,
    })
}

/// Decodes the assembled JSON into a typed spec and refuses anything the type would drop.
fn decode_spec(container: &str, doc: Value) -> Result<Spec, TranslateError> {
    let err = |message: String| TranslateError::Spec {
        container: container.to_owned(),
        message,
    };
    let spec: Spec = serde_json::from_value(doc.clone()).map_err(|e| err(e.to_string()))?;
    let back = serde_json::to_value(&spec).map_err(|e| err(e.to_string()))?;
    if let Some(path) = first_dropped(&doc, &back, String::new()) {
        return Err(err(format!("field {path} does not survive the typed spec")));
    }
    Ok(spec)
}

/// The first key present in `built` but missing (or different in kind) in `typed`.
fn first_dropped(built: &Value, typed: &Value, path: String) -> Option<String> {
    match (built, typed) {
        (Value::Object(a), Value::Object(b)) => a.iter().find_map(|(k, v)| {
            let p = format!("{path}.{k}");
            match b.get(k) {
                None if is_empty(v) => None,
                None => Some(p),
                Some(w) => first_dropped(v, w, p),
            }
        }),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (v, w))| first_dropped(v, w, format!("{path}[{i}]"))),
        (Value::Array(_), _) => Some(path),
        _ => None,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}
