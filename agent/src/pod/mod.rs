//! Pods from manifests: defaulting, validation, identity, QoS and node selection, and the
//! one pipeline that turns a manifest file's bytes into a [`StaticPod`] ready to run.

pub mod defaults;
pub mod identity;
pub mod qos;
pub mod quantity;
pub mod select;
pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::manifest::{ManifestError, ManifestKind, decode};
pub use qos::QosClass;
pub use select::NodeInfo;

/// A pod that this node should run, built from one manifest file.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticPod {
    /// The defaulted pod with its static identity applied (name `<name>-<node>`, namespace,
    /// UID, `spec.nodeName`, config annotations, NoExecute toleration). Shared, not copied,
    /// by the watcher's cache, the desired set, the pod's bundle maker and its worker.
    pub pod: Arc<Pod>,
    /// The pod UID (also `kubernetes.io/config.hash`).
    pub uid: String,
    /// The manifest file it came from.
    pub manifest: PathBuf,
    /// Whether the file held a Pod or a DaemonSet.
    pub kind: ManifestKind,
    /// The pod's QoS class.
    pub qos: QosClass,
    /// Non-fatal findings, such as unknown fields (`unknown field spec.containers[0].livenesProbe`).
    pub warnings: Vec<String>,
}

impl StaticPod {
    /// `namespace/name` of the pod: the key duplicates are detected on.
    pub fn full_name(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or(""),
            self.pod.metadata.name.as_deref().unwrap_or("")
        )
    }

    /// The pod's name (with the node suffix).
    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or("")
    }

    /// The pod's namespace (`default` when the manifest has none; defaulting sets it).
    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }
}

/// Decodes, defaults, validates, identifies and selects one manifest for `node`.
///
/// `seen_for(uid)` gives the `kubernetes.io/config.seen` time for a UID, so a pod re-read
/// from an unchanged file keeps the time it was first seen.
pub fn load(
    path: &Path,
    bytes: &[u8],
    node: &NodeInfo,
    seen_for: &dyn Fn(&str) -> String,
) -> Result<StaticPod, ManifestError> {
    let decoded = decode(path, bytes)?;
    let mut pod = decoded.pod;
    defaults::apply_defaults(&mut pod);
    let errors = validate::validate(&pod, &node.name);
    if !errors.is_empty() {
        return Err(ManifestError::invalid(path, errors));
    }
    let uid = identity::pod_uid(&pod, &node.name, path);
    if let Err(reason) = select::node_matches(&pod, node) {
        let name = pod.metadata.name.as_deref().unwrap_or("");
        return Err(ManifestError::NotSelected {
            file: path.to_owned(),
            pod: identity::static_pod_name(name, &node.name),
            node: node.name.clone(),
            reason,
        });
    }
    identity::apply_identity(&mut pod, &uid, &node.name, &seen_for(&uid));
    let qos = qos::pod_qos(&pod);
    let warnings = decoded
        .unknown_fields
        .iter()
        .map(|f| format!("unknown field {f}"))
        .collect();
    Ok(StaticPod {
        pod: Arc::new(pod),
        uid,
        manifest: path.to_owned(),
        kind: decoded.kind,
        qos,
        warnings,
    })
}
