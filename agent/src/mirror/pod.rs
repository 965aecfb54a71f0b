//! The mirror pod object (the static pod's copy, annotated and owned by the Node) and the
//! status patch, as the kubelet's mirror client and status manager build them.

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Value, json};

/// The annotation that makes a pod a mirror pod; its value is the static pod's config hash.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The static pod's hash annotation (kubeadm waits for it to change on upgrade).
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";

/// The mirror of `static_pod`: same name, namespace, labels, annotations and spec, plus
/// `kubernetes.io/config.mirror: <hash>` and exactly one controller ownerReference to the Node.
/// Server-assigned metadata (uid, resourceVersion, timestamps) and status are dropped: the API
/// server assigns them on create, and status follows by PATCH.
pub fn mirror_pod(static_pod: &Pod, hash: &str, node_name: &str, node_uid: &str) -> Pod {
    let meta = &static_pod.metadata;
    let mut annotations = meta.annotations.clone().unwrap_or_default();
    annotations.insert(MIRROR_ANNOTATION.to_owned(), hash.to_owned());
    annotations
        .entry(HASH_ANNOTATION.to_owned())
        .or_insert_with(|| hash.to_owned());
    let mut spec = static_pod.spec.clone().unwrap_or_default();
    spec.node_name = Some(node_name.to_owned());
    Pod {
        metadata: ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            labels: meta.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node_name.to_owned(),
                uid: node_uid.to_owned(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The mirror hash of an API pod (`None` for a pod that is not a mirror).
pub fn mirror_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(MIRROR_ANNOTATION)
        .map(String::as_str)
}

/// The status as JSON, the form both the patch and the comparison use.
pub fn status_json(status: &PodStatus) -> Value {
    serde_json::to_value(status).unwrap_or(Value::Null)
}

/// A strategic-merge patch of `pods/<name>/status` carrying `metadata.uid` as precondition
/// (the API server refuses it with 409 if the mirror was replaced meanwhile).
pub fn status_patch(mirror_uid: &str, status: &Value) -> Value {
    json!({ "metadata": { "uid": mirror_uid }, "status": status })
}

/// True when every field we would send already has this value in the API's status: the API
/// may hold more (qosClass, fields set by others) but nothing we set differs.
pub fn status_contains(api: &Value, ours: &Value) -> bool {
    match (api, ours) {
        (_, Value::Null) => true,
        (Value::Object(a), Value::Object(o)) => o
            .iter()
            .all(|(k, v)| status_contains(a.get(k).unwrap_or(&Value::Null), v)),
        (Value::Array(a), Value::Array(o)) => {
            a.len() == o.len() && a.iter().zip(o).all(|(a, o)| status_contains(a, o))
        }
        (a, o) => a == o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn static_pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("etcd-n1".into()),
                namespace: Some("kube-system".into()),
                uid: Some("abc".into()),
                labels: Some([("component".to_owned(), "etcd".to_owned())].into()),
                annotations: Some([(HASH_ANNOTATION.to_owned(), "abc".to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "etcd".into(),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn mirror_has_annotation_single_node_owner_and_no_server_fields() {
        let m = mirror_pod(&static_pod(), "abc", "n1", "node-uid");
        assert_eq!(mirror_hash(&m), Some("abc"));
        let owners = m.metadata.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(
            (
                owners[0].api_version.as_str(),
                owners[0].kind.as_str(),
                owners[0].name.as_str()
            ),
            ("v1", "Node", "n1")
        );
        assert_eq!(
            (owners[0].uid.as_str(), owners[0].controller),
            ("node-uid", Some(true))
        );
        assert_eq!(m.metadata.uid, None);
        assert!(m.status.is_none());
        assert_eq!(m.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
        assert_eq!(m.metadata.labels.as_ref().unwrap()["component"], "etcd");
    }

    #[test]
    fn status_contains_table() {
        #[rustfmt::skip]
        let cases = [
            (json!({"phase": "Running", "qosClass": "Burstable"}), json!({"phase": "Running"}), true),
            (json!({"phase": "Pending"}), json!({"phase": "Running"}), false),
            (json!({}), json!({"phase": "Running"}), false),
            (json!({"containerStatuses": [{"restartCount": 1, "name": "a"}]}),
             json!({"containerStatuses": [{"restartCount": 1}]}), true),
            (json!({"containerStatuses": [{"restartCount": 1}]}),
             json!({"containerStatuses": [{"restartCount": 2}]}), false),
            (json!({"conditions": [{"type": "Ready"}, {"type": "PodScheduled"}]}),
             json!({"conditions": [{"type": "Ready"}]}), false),
        ];
        for (api, ours, expected) in cases {
            assert_eq!(status_contains(&api, &ours), expected, "{api} ⊇ {ours}");
        }
    }

    #[test]
    fn status_patch_carries_uid_precondition() {
        let p = status_patch("u1", &json!({"phase": "Running"}));
        assert_eq!(p["metadata"]["uid"], "u1");
        assert_eq!(p["status"]["phase"], "Running");
    }
}
