//! API-server defaulting for a static pod (`pkg/apis/core/v1/defaults.go`), applied to the
//! decoded pod before it is hashed, validated or run. The hash covers the defaulted pod, so
//! writing a default explicitly in the manifest does not change the pod's UID.

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, LifecycleHandler, ObjectFieldSelector, Pod, PodSecurityContext,
    PodSpec, Probe,
};

/// The grace period the API server gives a pod that names none.
pub const DEFAULT_GRACE_PERIOD_SECONDS: i64 = 30;
/// Where a container's termination message is read from by default.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// Applies every default the API server would apply to `pod`, in place.
pub fn apply_defaults(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    default_pod_spec(spec);
    let host_network = spec.host_network.unwrap_or(false);
    for c in spec.init_containers.iter_mut().flatten() {
        default_container(c, host_network);
    }
    for c in spec.containers.iter_mut() {
        default_container(c, host_network);
    }
}

fn default_pod_spec(spec: &mut PodSpec) {
    spec.restart_policy
        .get_or_insert_with(|| "Always".to_owned());
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_GRACE_PERIOD_SECONDS);
    spec.dns_policy
        .get_or_insert_with(|| "ClusterFirst".to_owned());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".to_owned());
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default);
    spec.enable_service_links.get_or_insert(true);
    for v in spec.volumes.iter_mut().flatten() {
        default_volume(v);
    }
}

fn default_volume(v: &mut k8s_openapi::api::core::v1::Volume) {
    use k8s_openapi::api::core::v1::EmptyDirVolumeSource;
    let any_source = v.host_path.is_some()
        || v.empty_dir.is_some()
        || v.downward_api.is_some()
        || v.secret.is_some()
        || v.config_map.is_some()
        || v.persistent_volume_claim.is_some()
        || v.projected.is_some()
        || v.nfs.is_some()
        || v.csi.is_some()
        || v.ephemeral.is_some()
        || v.iscsi.is_some()
        || v.image.is_some()
        || v.fc.is_some()
        || v.rbd.is_some()
        || v.cephfs.is_some()
        || v.git_repo.is_some()
        || v.glusterfs.is_some();
    if !any_source {
        // SetDefaults_Volume: a volume with no source is an emptyDir.
        v.empty_dir = Some(EmptyDirVolumeSource::default());
    }
    if let Some(hp) = v.host_path.as_mut() {
        hp.type_.get_or_insert_with(String::new);
    }
    if let Some(d) = v.downward_api.as_mut() {
        d.default_mode.get_or_insert(0o644);
        for item in d.items.iter_mut().flatten() {
            if let Some(f) = item.field_ref.as_mut() {
                default_field_ref(f);
            }
        }
    }
    if let Some(s) = v.secret.as_mut() {
        s.default_mode.get_or_insert(0o644);
    }
    if let Some(c) = v.config_map.as_mut() {
        c.default_mode.get_or_insert(0o644);
    }
}

fn default_field_ref(f: &mut ObjectFieldSelector) {
    f.api_version.get_or_insert_with(|| "v1".to_owned());
}

/// `IfNotPresent` for a tagged (or digested) image other than `:latest`, else `Always`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // The tag is after the last ':' that follows the last '/' (a registry port is not a tag).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn default_container(c: &mut Container, host_network: bool) {
    if c.image_pull_policy.is_none() {
        let image = c.image.as_deref().unwrap_or("");
        c.image_pull_policy = Some(default_pull_policy(image).to_owned());
    }
    c.termination_message_path
        .get_or_insert_with(|| DEFAULT_TERMINATION_MESSAGE_PATH.to_owned());
    c.termination_message_policy
        .get_or_insert_with(|| "File".to_owned());
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".to_owned());
        if host_network && p.host_port.unwrap_or(0) == 0 {
            p.host_port = Some(p.container_port);
        }
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(f) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            default_field_ref(f);
        }
    }
    if let Some(r) = c.resources.as_mut() {
        // SetDefaults_Pod: requests default to limits, resource by resource.
        if let Some(limits) = r.limits.as_ref() {
            let requests = r.requests.get_or_insert_with(Default::default);
            for (name, q) in limits {
                requests.entry(name.clone()).or_insert_with(|| q.clone());
            }
        }
    }
    for p in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(p);
    }
    if let Some(l) = c.lifecycle.as_mut() {
        for h in [&mut l.post_start, &mut l.pre_stop].into_iter().flatten() {
            default_handler(h);
        }
    }
}

fn default_probe(p: &mut Probe) {
    p.timeout_seconds.get_or_insert(1);
    p.period_seconds.get_or_insert(10);
    p.success_threshold.get_or_insert(1);
    p.failure_threshold.get_or_insert(3);
    if let Some(h) = p.http_get.as_mut() {
        default_http_get(h);
    }
}

fn default_handler(h: &mut LifecycleHandler) {
    if let Some(g) = h.http_get.as_mut() {
        default_http_get(g);
    }
}

fn default_http_get(h: &mut HTTPGetAction) {
    h.path.get_or_insert_with(|| "/".to_owned());
    h.scheme.get_or_insert_with(|| "HTTP".to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        let table = [
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("registry.k8s.io/etcd:3.5.15-0", "IfNotPresent"),
            ("localhost:5000/etcd", "Always"),
            ("localhost:5000/etcd:v1", "IfNotPresent"),
            ("quay.io/x/y@sha256:abcd", "IfNotPresent"),
        ];
        for (image, want) in table {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
    }
}
