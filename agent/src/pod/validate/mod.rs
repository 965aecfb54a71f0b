//! Pod validation: what the API server's `ValidatePodCreate` would refuse, plus the rules
//! for static pods (no service accounts, secrets, config maps, PVCs or other API objects:
//! a static pod cannot reach the API). Every error carries the field path. Containers and
//! volumes are checked in their own files.

mod container;
mod volume;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

use super::quantity::Quantity;
use crate::manifest::FieldError;
pub use container::is_env_field_path;
use container::validate_container;
use volume::validate_volumes;

/// Validates a defaulted pod that will run on `node_name`. Empty means valid.
pub fn validate(pod: &Pod, node_name: &str) -> Vec<FieldError> {
    let mut errs = Errors::default();
    validate_metadata(pod, node_name, &mut errs);
    match pod.spec.as_ref() {
        Some(spec) => validate_spec(spec, &mut errs),
        None => errs.push("spec", "required"),
    }
    errs.0
}

#[derive(Default)]
pub(super) struct Errors(Vec<FieldError>);

impl Errors {
    pub(super) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }
}

/// RFC 1123 label: lower-case alphanumerics and '-', starting and ending alphanumeric, ≤ 63.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, ≤ 253.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A label value / the name part of a qualified name: ≤ 63, alphanumerics, '-', '_', '.', alnum ends.
fn is_label_value(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// `[prefix/]name` as label and annotation keys are written.
fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_value(name, false),
        None => is_label_value(s, false),
    }
}

fn validate_metadata(pod: &Pod, node_name: &str, errs: &mut Errors) {
    let m = &pod.metadata;
    match m.name.as_deref() {
        None | Some("") => errs.push("metadata.name", "required"),
        Some(name) if !is_dns_subdomain(name) => errs.push(
            "metadata.name",
            format!("{name:?} is not a DNS subdomain (lower-case alphanumerics, '-' and '.')"),
        ),
        Some(name) => {
            let full = format!("{name}-{}", node_name.to_lowercase());
            if !is_dns_subdomain(&full) {
                errs.push(
                    "metadata.name",
                    format!("the static pod name {full:?} (name-node) is not a DNS subdomain"),
                );
            }
        }
    }
    if let Some(ns) = m.namespace.as_deref().filter(|ns| !is_dns_label(ns)) {
        errs.push("metadata.namespace", format!("{ns:?} is not a DNS label"));
    }
    for (k, v) in m.labels.iter().flatten() {
        if !is_qualified_name(k) {
            errs.push(
                format!("metadata.labels[{k}]"),
                "key is not a qualified name",
            );
        }
        if !is_label_value(v, true) {
            errs.push(
                format!("metadata.labels[{k}]"),
                format!("value {v:?} is not a label value"),
            );
        }
    }
    let mut total = 0;
    for (k, v) in m.annotations.iter().flatten() {
        total += k.len() + v.len();
        if !is_qualified_name(&k.to_lowercase()) {
            errs.push(
                format!("metadata.annotations[{k}]"),
                "key is not a qualified name",
            );
        }
    }
    if total > 256 * 1024 {
        errs.push("metadata.annotations", "total size must be at most 256 KiB");
    }
}

fn validate_spec(spec: &PodSpec, errs: &mut Errors) {
    static_pod_rules(spec, errs);
    if !matches!(
        spec.restart_policy.as_deref(),
        Some("Always" | "OnFailure" | "Never")
    ) {
        errs.push("spec.restartPolicy", "must be Always, OnFailure or Never");
    }
    if !matches!(
        spec.dns_policy.as_deref(),
        Some("ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None")
    ) {
        errs.push(
            "spec.dnsPolicy",
            "must be ClusterFirst, ClusterFirstWithHostNet, Default or None",
        );
    }
    if spec.termination_grace_period_seconds.is_some_and(|g| g < 0) {
        errs.push("spec.terminationGracePeriodSeconds", "must be >= 0");
    }
    if spec.active_deadline_seconds.is_some_and(|d| d <= 0) {
        errs.push("spec.activeDeadlineSeconds", "must be > 0");
    }
    if spec.containers.is_empty() {
        errs.push("spec.containers", "at least one container is required");
    }
    let volumes = validate_volumes(spec.volumes.as_deref().unwrap_or(&[]), errs);
    let mut names = BTreeSet::new();
    let groups: [(&str, &[Container], bool); 2] = [
        (
            "spec.initContainers",
            spec.init_containers.as_deref().unwrap_or(&[]),
            true,
        ),
        ("spec.containers", &spec.containers, false),
    ];
    let host_network = spec.host_network.unwrap_or(false);
    let mut host_ports = BTreeMap::new();
    for (group, containers, init) in groups {
        for (i, c) in containers.iter().enumerate() {
            let path = format!("{group}[{i}]");
            if !names.insert(c.name.clone()) {
                errs.push(
                    format!("{path}.name"),
                    format!("duplicate container name {:?}", c.name),
                );
            }
            validate_container(
                &path,
                c,
                init,
                host_network,
                &volumes,
                &mut host_ports,
                errs,
            );
        }
    }
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        let path = format!("spec.tolerations[{i}]");
        match t.operator.as_deref() {
            None | Some("Equal") => {}
            Some("Exists") if t.value.as_deref().unwrap_or("").is_empty() => {}
            Some("Exists") => errs.push(
                format!("{path}.value"),
                "must be empty when operator is Exists",
            ),
            Some(op) => errs.push(
                format!("{path}.operator"),
                format!("{op:?} is not Equal or Exists"),
            ),
        }
        if t.key.as_deref().unwrap_or("").is_empty() && t.operator.as_deref() != Some("Exists") {
            errs.push(
                format!("{path}.operator"),
                "must be Exists when key is empty",
            );
        }
        if !matches!(
            t.effect.as_deref(),
            None | Some("" | "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        ) {
            errs.push(
                format!("{path}.effect"),
                "must be NoSchedule, PreferNoSchedule or NoExecute",
            );
        }
    }
    if let Some(sc) = spec.security_context.as_ref() {
        for (i, s) in sc.sysctls.iter().flatten().enumerate() {
            if !is_sysctl_name(&s.name) {
                errs.push(
                    format!("spec.securityContext.sysctls[{i}].name"),
                    format!("{:?} is not a sysctl name", s.name),
                );
            }
            // only namespaced sysctls: with the host's namespace they would change the node
            let field = format!("spec.securityContext.sysctls[{i}].name");
            if spec.host_network.unwrap_or(false) && s.name.starts_with("net.") {
                errs.push(
                    field.clone(),
                    "net.* sysctls are not allowed with hostNetwork",
                );
            }
            let ipc = ["kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue."];
            if spec.host_ipc.unwrap_or(false) && ipc.iter().any(|p| s.name.starts_with(p)) {
                errs.push(field, "IPC sysctls are not allowed with hostIPC");
            }
        }
        if let Some(p) = sc.seccomp_profile.as_ref() {
            validate_seccomp(
                "spec.securityContext.seccompProfile",
                &p.type_,
                p.localhost_profile.as_deref(),
                errs,
            );
        }
    }
    for (i, a) in spec.host_aliases.iter().flatten().enumerate() {
        if a.ip.parse::<std::net::IpAddr>().is_err() {
            errs.push(
                format!("spec.hostAliases[{i}].ip"),
                format!("{:?} is not an IP address", a.ip),
            );
        }
    }
}

/// Rules specific to static pods: nothing that needs the API server.
fn static_pod_rules(spec: &PodSpec, errs: &mut Errors) {
    let refused = "static pods cannot refer to API objects";
    if spec
        .service_account_name
        .as_deref()
        .is_some_and(|s| !s.is_empty() && s != "default")
        || spec
            .service_account
            .as_deref()
            .is_some_and(|s| !s.is_empty() && s != "default")
    {
        errs.push(
            "spec.serviceAccountName",
            format!("{refused} (service accounts)"),
        );
    }
    if spec
        .image_pull_secrets
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        errs.push(
            "spec.imagePullSecrets",
            format!("{refused} (secrets); use the node's registry config.json"),
        );
    }
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        errs.push(
            "spec.ephemeralContainers",
            "static pods cannot have ephemeral containers",
        );
    }
    if spec.resource_claims.as_ref().is_some_and(|s| !s.is_empty()) {
        errs.push(
            "spec.resourceClaims",
            format!("{refused} (resource claims)"),
        );
    }
}

fn is_sysctl_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split(['.', '/']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        })
}

pub(super) fn validate_seccomp(path: &str, kind: &str, localhost: Option<&str>, errs: &mut Errors) {
    match (kind, localhost) {
        ("RuntimeDefault" | "Unconfined", None) => {}
        ("RuntimeDefault" | "Unconfined", Some(_)) => errs.push(
            format!("{path}.localhostProfile"),
            "only allowed with type Localhost",
        ),
        ("Localhost", Some(p))
            if !p.is_empty() && !p.starts_with('/') && !p.split('/').any(|c| c == "..") => {}
        ("Localhost", _) => errs.push(
            format!("{path}.localhostProfile"),
            "required with type Localhost: a relative path without '..'",
        ),
        (other, _) => errs.push(
            format!("{path}.type"),
            format!("{other:?} is not RuntimeDefault, Unconfined or Localhost"),
        ),
    }
}

/// Parses a quantity field, recording an error when it is malformed or negative.
pub(super) fn check_quantity(path: &str, text: &str, errs: &mut Errors) -> Option<Quantity> {
    match Quantity::parse(text) {
        Ok(q) if q.is_negative() => {
            errs.push(path, "must be >= 0");
            None
        }
        Ok(q) => Some(q),
        Err(e) => {
            errs.push(path, e.to_string());
            None
        }
    }
}
