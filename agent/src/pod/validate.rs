//! Pod validation: what the API server's `ValidatePodCreate` would refuse, plus the rules
//! for static pods (no service accounts, secrets, config maps, PVCs or other API objects:
//! a static pod cannot reach the API). Every error carries the field path.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Probe, Volume};

use super::quantity::Quantity;
use crate::manifest::FieldError;

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
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
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

fn validate_seccomp(path: &str, kind: &str, localhost: Option<&str>, errs: &mut Errors) {
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

/// Validates volumes and returns the name → volume map for mount checks.
fn validate_volumes<'a>(volumes: &'a [Volume], errs: &mut Errors) -> BTreeMap<&'a str, &'a Volume> {
    let mut by_name = BTreeMap::new();
    for (i, v) in volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        if !is_dns_label(&v.name) {
            errs.push(
                format!("{path}.name"),
                format!("{:?} is not a DNS label", v.name),
            );
        }
        if by_name.insert(v.name.as_str(), v).is_some() {
            errs.push(
                format!("{path}.name"),
                format!("duplicate volume name {:?}", v.name),
            );
        }
        let refused: &[(&str, bool)] = &[
            ("secret", v.secret.is_some()),
            ("configMap", v.config_map.is_some()),
            ("persistentVolumeClaim", v.persistent_volume_claim.is_some()),
            ("projected", v.projected.is_some()),
            ("ephemeral", v.ephemeral.is_some()),
            ("csi", v.csi.is_some()),
        ];
        let unsupported: &[(&str, bool)] = &[
            ("nfs", v.nfs.is_some()),
            ("iscsi", v.iscsi.is_some()),
            ("image", v.image.is_some()),
            ("fc", v.fc.is_some()),
            ("rbd", v.rbd.is_some()),
            ("cephfs", v.cephfs.is_some()),
            ("gitRepo", v.git_repo.is_some()),
            ("glusterfs", v.glusterfs.is_some()),
            ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
            ("azureDisk", v.azure_disk.is_some()),
            ("azureFile", v.azure_file.is_some()),
            ("cinder", v.cinder.is_some()),
            ("flexVolume", v.flex_volume.is_some()),
            ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
        ];
        let supported = [
            v.host_path.is_some(),
            v.empty_dir.is_some(),
            v.downward_api.is_some(),
        ];
        let count = supported.iter().filter(|b| **b).count()
            + refused.iter().filter(|(_, b)| *b).count()
            + unsupported.iter().filter(|(_, b)| *b).count();
        if count > 1 {
            errs.push(path.clone(), "may not specify more than one volume type");
        }
        for (kind, _) in refused.iter().filter(|(_, b)| *b) {
            errs.push(format!("{path}.{kind}"), "static pods cannot use API-backed volumes (secrets, configMaps, service account tokens, PVCs); use hostPath");
        }
        for (kind, _) in unsupported.iter().filter(|(_, b)| *b) {
            errs.push(
                format!("{path}.{kind}"),
                "volume type not supported by podvisor",
            );
        }
        if let Some(hp) = v.host_path.as_ref() {
            if !hp.path.starts_with('/') {
                errs.push(format!("{path}.hostPath.path"), "must be an absolute path");
            }
            if hp.path.split('/').any(|c| c == "..") {
                errs.push(format!("{path}.hostPath.path"), "must not contain '..'");
            }
            if !matches!(
                hp.type_.as_deref().unwrap_or(""),
                "" | "DirectoryOrCreate"
                    | "Directory"
                    | "FileOrCreate"
                    | "File"
                    | "Socket"
                    | "CharDevice"
                    | "BlockDevice"
            ) {
                errs.push(format!("{path}.hostPath.type"), "must be one of \"\", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice");
            }
        }
        if let Some(ed) = v.empty_dir.as_ref() {
            if !matches!(ed.medium.as_deref(), None | Some("" | "Memory")) {
                errs.push(format!("{path}.emptyDir.medium"), "must be \"\" or Memory");
            }
            if let Some(q) = ed.size_limit.as_ref() {
                check_quantity(&format!("{path}.emptyDir.sizeLimit"), &q.0, errs);
            }
        }
        if let Some(d) = v.downward_api.as_ref() {
            if d.default_mode.is_some_and(|m| !(0..=0o777).contains(&m)) {
                errs.push(
                    format!("{path}.downwardAPI.defaultMode"),
                    "must be between 0 and 0777",
                );
            }
            for (j, item) in d.items.iter().flatten().enumerate() {
                let ip = format!("{path}.downwardAPI.items[{j}]");
                if item.path.is_empty()
                    || item.path.starts_with('/')
                    || item.path.split('/').any(|c| c == "..")
                {
                    errs.push(format!("{ip}.path"), "must be a relative path without '..'");
                }
                if item.resource_field_ref.is_some() {
                    errs.push(
                        format!("{ip}.resourceFieldRef"),
                        "not supported by podvisor",
                    );
                }
                match item.field_ref.as_ref() {
                    Some(f) if is_volume_field_path(&f.field_path) => {}
                    Some(f) => errs.push(
                        format!("{ip}.fieldRef.fieldPath"),
                        format!("{:?} is not supported", f.field_path),
                    ),
                    None => errs.push(format!("{ip}.fieldRef"), "required"),
                }
            }
        }
    }
    by_name
}

/// Field paths a downwardAPI volume may expose.
fn is_volume_field_path(p: &str) -> bool {
    matches!(
        p,
        "metadata.name"
            | "metadata.namespace"
            | "metadata.uid"
            | "metadata.labels"
            | "metadata.annotations"
    ) || p.starts_with("metadata.labels['")
        || p.starts_with("metadata.annotations['")
}

/// Field paths an env var's fieldRef may name (`validEnvDownwardAPIFieldPathExpressions`).
pub fn is_env_field_path(p: &str) -> bool {
    matches!(
        p,
        "metadata.name"
            | "metadata.namespace"
            | "metadata.uid"
            | "spec.nodeName"
            | "spec.serviceAccountName"
            | "status.hostIP"
            | "status.hostIPs"
            | "status.podIP"
            | "status.podIPs"
    ) || p.starts_with("metadata.labels['")
        || p.starts_with("metadata.annotations['")
}

fn check_quantity(path: &str, text: &str, errs: &mut Errors) -> Option<Quantity> {
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

#[allow(clippy::too_many_arguments)]
fn validate_container(
    path: &str,
    c: &Container,
    init: bool,
    host_network: bool,
    volumes: &BTreeMap<&str, &Volume>,
    host_ports: &mut BTreeMap<(i32, String), String>,
    errs: &mut Errors,
) {
    if !is_dns_label(&c.name) {
        errs.push(
            format!("{path}.name"),
            format!("{:?} is not a DNS label", c.name),
        );
    }
    if c.image.as_deref().unwrap_or("").trim().is_empty() {
        errs.push(format!("{path}.image"), "required");
    }
    if !matches!(
        c.image_pull_policy.as_deref(),
        Some("Always" | "IfNotPresent" | "Never")
    ) {
        errs.push(
            format!("{path}.imagePullPolicy"),
            "must be Always, IfNotPresent or Never",
        );
    }
    if !matches!(
        c.termination_message_policy.as_deref(),
        Some("File" | "FallbackToLogsOnError")
    ) {
        errs.push(
            format!("{path}.terminationMessagePolicy"),
            "must be File or FallbackToLogsOnError",
        );
    }
    match (init, c.restart_policy.as_deref()) {
        (_, None) | (true, Some("Always")) => {}
        (true, Some(p)) => errs.push(
            format!("{path}.restartPolicy"),
            format!("{p:?}: only Always is supported (sidecars)"),
        ),
        (false, Some(_)) => errs.push(
            format!("{path}.restartPolicy"),
            "only init containers may set a restartPolicy",
        ),
    }
    let mut port_names = BTreeSet::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let pp = format!("{path}.ports[{i}]");
        if !(1..=65535).contains(&p.container_port) {
            errs.push(format!("{pp}.containerPort"), "must be between 1 and 65535");
        }
        let host_port = p.host_port.unwrap_or(0);
        if !(0..=65535).contains(&host_port) {
            errs.push(format!("{pp}.hostPort"), "must be between 0 and 65535");
        }
        if host_network && host_port != 0 && host_port != p.container_port {
            errs.push(
                format!("{pp}.hostPort"),
                "must match containerPort when hostNetwork is true",
            );
        }
        let proto = p.protocol.clone().unwrap_or_default();
        if !matches!(proto.as_str(), "TCP" | "UDP" | "SCTP") {
            errs.push(format!("{pp}.protocol"), "must be TCP, UDP or SCTP");
        }
        if host_port != 0 {
            if let Some(other) = host_ports.insert((host_port, proto.clone()), pp.clone()) {
                errs.push(
                    format!("{pp}.hostPort"),
                    format!("{host_port}/{proto} is also used by {other}"),
                );
            }
        }
        if let Some(name) = p.name.as_deref() {
            let valid = !name.is_empty()
                && name.len() <= 15
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && name.bytes().any(|b| b.is_ascii_lowercase());
            if !valid {
                errs.push(
                    format!("{pp}.name"),
                    format!("{name:?} is not an IANA service name"),
                );
            }
            if !port_names.insert(name) {
                errs.push(
                    format!("{pp}.name"),
                    format!("duplicate port name {name:?}"),
                );
            }
        }
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        let ep = format!("{path}.env[{i}]");
        if e.name.is_empty()
            || e.name.contains('=')
            || !e.name.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            errs.push(format!("{ep}.name"), "must be printable ASCII without '='");
        }
        if let Some(from) = e.value_from.as_ref() {
            if e.value.as_deref().is_some_and(|v| !v.is_empty()) {
                errs.push(
                    format!("{ep}.valueFrom"),
                    "may not be specified when value is not empty",
                );
            }
            if from.secret_key_ref.is_some() || from.config_map_key_ref.is_some() {
                errs.push(
                    format!("{ep}.valueFrom"),
                    "static pods cannot refer to API objects (secrets, configMaps)",
                );
            }
            if from.resource_field_ref.is_some() || from.file_key_ref.is_some() {
                errs.push(
                    format!("{ep}.valueFrom"),
                    "not supported by podvisor (only fieldRef)",
                );
            }
            if let Some(f) = from.field_ref.as_ref() {
                if !is_env_field_path(&f.field_path) {
                    errs.push(
                        format!("{ep}.valueFrom.fieldRef.fieldPath"),
                        format!("{:?} is not supported", f.field_path),
                    );
                }
            }
        }
    }
    if c.env_from.as_ref().is_some_and(|v| !v.is_empty()) {
        errs.push(
            format!("{path}.envFrom"),
            "static pods cannot refer to API objects (secrets, configMaps)",
        );
    }
    let mut mount_paths = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = format!("{path}.volumeMounts[{i}]");
        if !volumes.contains_key(m.name.as_str()) {
            errs.push(
                format!("{mp}.name"),
                format!("volume {:?} is not defined in spec.volumes", m.name),
            );
        }
        if !m.mount_path.starts_with('/') {
            errs.push(format!("{mp}.mountPath"), "must be an absolute path");
        }
        if !mount_paths.insert(m.mount_path.trim_end_matches('/')) {
            errs.push(format!("{mp}.mountPath"), "must be unique");
        }
        if let Some(sp) = m.sub_path.as_deref() {
            if sp.starts_with('/') || sp.split('/').any(|c| c == "..") {
                errs.push(
                    format!("{mp}.subPath"),
                    "must be a relative path without '..'",
                );
            }
        }
        if m.sub_path_expr.is_some() {
            errs.push(format!("{mp}.subPathExpr"), "not supported by podvisor");
        }
        match m.mount_propagation.as_deref() {
            None | Some("None" | "HostToContainer") => {}
            Some("Bidirectional") => {
                let privileged = c
                    .security_context
                    .as_ref()
                    .and_then(|s| s.privileged)
                    .unwrap_or(false);
                if !privileged {
                    errs.push(
                        format!("{mp}.mountPropagation"),
                        "Bidirectional requires a privileged container",
                    );
                }
            }
            Some(p) => errs.push(
                format!("{mp}.mountPropagation"),
                format!("{p:?} is not None, HostToContainer or Bidirectional"),
            ),
        }
    }
    validate_resources(path, c, errs);
    let probes = [
        ("livenessProbe", &c.liveness_probe, false),
        ("readinessProbe", &c.readiness_probe, true),
        ("startupProbe", &c.startup_probe, false),
    ];
    for (name, probe, may_succeed_more) in probes {
        if let Some(p) = probe {
            if init && c.restart_policy.as_deref() != Some("Always") {
                errs.push(
                    format!("{path}.{name}"),
                    "init containers may not have probes",
                );
            }
            validate_probe(&format!("{path}.{name}"), p, may_succeed_more, errs);
        }
    }
    if let Some(sc) = c.security_context.as_ref() {
        let sp = format!("{path}.securityContext");
        let privileged = sc.privileged.unwrap_or(false);
        let sys_admin = sc
            .capabilities
            .as_ref()
            .and_then(|caps| caps.add.as_ref())
            .is_some_and(|add| {
                add.iter()
                    .any(|a| a.trim_start_matches("CAP_") == "SYS_ADMIN")
            });
        if sc.allow_privilege_escalation == Some(false) && (privileged || sys_admin) {
            errs.push(
                format!("{sp}.allowPrivilegeEscalation"),
                "cannot be false with privileged or CAP_SYS_ADMIN",
            );
        }
        if !matches!(
            sc.proc_mount.as_deref(),
            None | Some("Default" | "Unmasked")
        ) {
            errs.push(format!("{sp}.procMount"), "must be Default or Unmasked");
        }
        if sc
            .run_as_user
            .is_some_and(|u| !(0..=i64::from(u32::MAX - 1)).contains(&u))
        {
            errs.push(
                format!("{sp}.runAsUser"),
                "must be between 0 and 4294967294",
            );
        }
        if sc
            .run_as_group
            .is_some_and(|u| !(0..=i64::from(u32::MAX - 1)).contains(&u))
        {
            errs.push(
                format!("{sp}.runAsGroup"),
                "must be between 0 and 4294967294",
            );
        }
        if let Some(p) = sc.seccomp_profile.as_ref() {
            validate_seccomp(
                &format!("{sp}.seccompProfile"),
                &p.type_,
                p.localhost_profile.as_deref(),
                errs,
            );
        }
    }
}

fn validate_resources(path: &str, c: &Container, errs: &mut Errors) {
    let Some(r) = c.resources.as_ref() else {
        return;
    };
    let mut limits = BTreeMap::new();
    for (name, q) in r.limits.iter().flatten() {
        if let Some(v) = check_quantity(&format!("{path}.resources.limits.{name}"), &q.0, errs) {
            limits.insert(name.as_str(), v);
        }
    }
    for (name, q) in r.requests.iter().flatten() {
        let rp = format!("{path}.resources.requests.{name}");
        if let Some(v) = check_quantity(&rp, &q.0, errs) {
            if limits.get(name.as_str()).is_some_and(|l| v > *l) {
                errs.push(
                    rp,
                    format!("must be less than or equal to the {name} limit"),
                );
            }
        }
    }
}

fn validate_probe(path: &str, p: &Probe, may_succeed_more: bool, errs: &mut Errors) {
    let handlers = [
        p.exec.is_some(),
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.grpc.is_some(),
    ];
    if handlers.iter().filter(|b| **b).count() != 1 {
        errs.push(
            path,
            "must specify exactly one of exec, httpGet, tcpSocket, grpc",
        );
    }
    for (field, v, min) in [
        ("initialDelaySeconds", p.initial_delay_seconds, 0),
        ("timeoutSeconds", p.timeout_seconds, 1),
        ("periodSeconds", p.period_seconds, 1),
        ("successThreshold", p.success_threshold, 1),
        ("failureThreshold", p.failure_threshold, 1),
    ] {
        if v.is_some_and(|v| v < min) {
            errs.push(format!("{path}.{field}"), format!("must be >= {min}"));
        }
    }
    if !may_succeed_more && p.success_threshold.is_some_and(|s| s != 1) {
        errs.push(format!("{path}.successThreshold"), "must be 1");
    }
    if let Some(h) = p.http_get.as_ref() {
        if !matches!(h.scheme.as_deref(), None | Some("HTTP" | "HTTPS")) {
            errs.push(format!("{path}.httpGet.scheme"), "must be HTTP or HTTPS");
        }
        check_port(&format!("{path}.httpGet.port"), &h.port, errs);
    }
    if let Some(t) = p.tcp_socket.as_ref() {
        check_port(&format!("{path}.tcpSocket.port"), &t.port, errs);
    }
    if let Some(g) = p.grpc.as_ref() {
        if !(1..=65535).contains(&g.port) {
            errs.push(format!("{path}.grpc.port"), "must be between 1 and 65535");
        }
    }
}

fn check_port(
    path: &str,
    port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
    errs: &mut Errors,
) {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match port {
        IntOrString::Int(n) if (1..=65535).contains(n) => {}
        IntOrString::Int(_) => errs.push(path, "must be between 1 and 65535"),
        IntOrString::String(s) if !s.is_empty() && s.len() <= 15 => {}
        IntOrString::String(s) => errs.push(path, format!("{s:?} is not a port name")),
    }
}
