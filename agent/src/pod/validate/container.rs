//! Validation of one container (app or init): name, image, policies, ports, env,
//! volume mounts, resources, probes and security context.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Probe, Volume};

use super::{Errors, check_quantity, is_dns_label, validate_seccomp};

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

#[allow(clippy::too_many_arguments)]
pub(super) fn validate_container(
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
