//! A static pod's identity (STATIC-PODS.md §2): its name `<name>-<node>`, namespace, the UID
//! hashed from the canonical JSON of the defaulted pod + node name + manifest path, the
//! `kubernetes.io/config.*` annotations and the NoExecute toleration.
//!
//! The UID is a SHA-256 over canonical JSON (object keys sorted, no whitespace) of the pod
//! as decoded and defaulted, so it ignores whitespace, comments, key order and fields the
//! schema does not know, and changes with every semantic edit. The hash input starts with a
//! version tag: a future podvisor that must change the input keeps old UIDs by keeping the tag.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Pod, Toleration};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Annotation holding the pod's hash (its UID), which kubeadm watches on the mirror pod.
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Annotation saying where the pod came from (`file`).
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// Annotation with the RFC 3339 time the pod was first seen.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
/// Namespace of a pod that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

const HASH_TAG: &str = "podvisor/static-pod-uid/v1";

/// Writes `v` as canonical JSON: keys sorted, no insignificant whitespace.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(child) = map.get(*k) {
                    write_canonical(child, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The UID of a static pod: `metadata.uid` when the manifest sets one, else 32 lower-case
/// hex characters of SHA-256(tag, canonical JSON of the defaulted pod, node name, path).
pub fn pod_uid(defaulted: &Pod, node_name: &str, manifest_path: &Path) -> String {
    if let Some(uid) = defaulted.metadata.uid.as_deref().filter(|u| !u.is_empty()) {
        return uid.to_owned();
    }
    let tree = serde_json::to_value(defaulted).unwrap_or(Value::Null);
    let mut h = Sha256::new();
    h.update(HASH_TAG.as_bytes());
    h.update(b"\n");
    h.update(canonical_json(&tree).as_bytes());
    h.update(b"\nhost:");
    h.update(node_name.as_bytes());
    h.update(b"\nfile:");
    h.update(manifest_path.as_os_str().as_encoded_bytes());
    let digest = h.finalize();
    hex::encode(&digest[..16])
}

/// The static pod's name on this node: `<name>-<node name in lower case>`.
pub fn static_pod_name(name: &str, node_name: &str) -> String {
    format!("{name}-{}", node_name.to_lowercase())
}

/// Turns a defaulted pod into this node's static pod: name, namespace, UID, nodeName,
/// config annotations and the NoExecute toleration, as the kubelet's file source does.
pub fn apply_identity(pod: &mut Pod, uid: &str, node_name: &str, seen: &str) {
    let m = &mut pod.metadata;
    let name = m.name.clone().unwrap_or_default();
    m.name = Some(static_pod_name(&name, node_name));
    if m.namespace.as_deref().unwrap_or("").is_empty() {
        m.namespace = Some(DEFAULT_NAMESPACE.to_owned());
    }
    m.uid = Some(uid.to_owned());
    let ann = m.annotations.get_or_insert_with(Default::default);
    ann.insert(CONFIG_HASH.to_owned(), uid.to_owned());
    ann.insert(CONFIG_SOURCE.to_owned(), "file".to_owned());
    ann.insert(CONFIG_SEEN.to_owned(), seen.to_owned());
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node_name.to_owned());
        spec.tolerations
            .get_or_insert_with(Vec::new)
            .push(Toleration {
                operator: Some("Exists".to_owned()),
                effect: Some("NoExecute".to_owned()),
                ..Toleration::default()
            });
    }
}

/// RFC 3339 UTC time with nanoseconds, as the kubelet writes `config.seen`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, mo, da) = civil_from_days(days);
    let mut s = String::new();
    let _ = write!(
        s,
        "{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_nanos()
    );
    s
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"d":2,"c":3}],"x":"s"}}"#).expect("json");
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":"s","y":[1,{"c":3,"d":2}]},"b":1}"#
        );
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_709_251_199, 5);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.000000005Z");
    }

    #[test]
    fn static_pod_name_lowercases_the_node() {
        assert_eq!(static_pod_name("etcd", "Node-1"), "etcd-node-1");
    }
}
