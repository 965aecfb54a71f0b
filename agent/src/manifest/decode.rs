//! Bytes of one manifest file → a typed `Pod`, with unknown fields reported as warnings.
//!
//! The kubelet converts YAML to JSON without a schema and then decodes the JSON into the Pod
//! type; we do the same: YAML (or JSON) → an untyped tree → `k8s_openapi` `Pod`. Going
//! through an untyped tree means YAML 1.1 scalars mean what they mean to Kubernetes
//! (`0644` is octal 420 with `legacy_octal_numbers`; an unquoted `value: 123` in an env
//! var is a number and refused, as the API server refuses it). The YAML parser's budget
//! bounds aliases (alias bombs), nesting depth and document count, and duplicate keys are
//! errors, so hostile input gives an error, never a panic or a hang.

use std::path::Path;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::error::{FieldError, ManifestError};

/// Files larger than this are refused (STATIC-PODS.md §1).
pub const MAX_MANIFEST_BYTES: u64 = 10 * 1024 * 1024;

/// Which kind of object the file held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// `apiVersion: v1`, `kind: Pod`.
    Pod,
    /// `apiVersion: apps/v1`, `kind: DaemonSet`: the pod is its `spec.template`.
    DaemonSet,
}

/// The result of decoding one file: the pod as written (not yet defaulted) and warnings.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The pod, exactly as the manifest describes it.
    pub pod: Pod,
    /// What the file held.
    pub kind: ManifestKind,
    /// Fields that are not part of the schema, with their path (`spec.containers[0].livenesProbe`).
    pub unknown_fields: Vec<String>,
}

/// Decodes one manifest file's content. `file` is only used in error messages.
pub fn decode(file: &Path, bytes: &[u8]) -> Result<Decoded, ManifestError> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            file: file.to_owned(),
            size: bytes.len() as u64,
            limit: MAX_MANIFEST_BYTES,
        });
    }
    let tree = parse_tree(file, bytes)?;
    let (api_version, kind) = type_meta(&tree);
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Pod") => {
            let (mut pod, unknown_fields) = typed::<Pod>(file, tree)?;
            pod.status = None;
            Ok(Decoded {
                pod,
                kind: ManifestKind::Pod,
                unknown_fields,
            })
        }
        ("apps/v1", "DaemonSet") => {
            let (ds, unknown_fields) = typed::<DaemonSet>(file, tree)?;
            let pod = pod_from_daemonset(file, ds)?;
            Ok(Decoded {
                pod,
                kind: ManifestKind::DaemonSet,
                unknown_fields,
            })
        }
        _ => Err(ManifestError::WrongKind {
            file: file.to_owned(),
            api_version,
            kind,
        }),
    }
}

/// The YAML options: Kubernetes' YAML 1.1 numbers, duplicate keys refused, bounded work.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 16;
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;
    budget.max_depth = 64;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.legacy_octal_numbers = true;
    options.with_snippet = false; // one-line messages: `line 5 column 3: duplicate mapping key`
    options
}

/// Parses the bytes as JSON (when they start with `{`) or YAML into one untyped document.
fn parse_tree(file: &Path, bytes: &[u8]) -> Result<Value, ManifestError> {
    let syntax = |message: String| ManifestError::Syntax {
        file: file.to_owned(),
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| syntax(format!("not UTF-8 text: {e}")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(ManifestError::Empty {
            file: file.to_owned(),
        });
    }
    if text.trim_start().starts_with('{') {
        return serde_json::from_str::<StrictJson>(text)
            .map(|s| s.0)
            .map_err(|e| syntax(format!("JSON: {e}")));
    }
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, yaml_options())
        .map_err(|e| syntax(format!("YAML: {}", one_line(&e.to_string()))))?;
    let mut docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    match docs.len() {
        0 => Err(ManifestError::Empty {
            file: file.to_owned(),
        }),
        1 => Ok(docs.remove(0)),
        count => Err(ManifestError::MultipleDocuments {
            file: file.to_owned(),
            count,
        }),
    }
}

/// A JSON document read with duplicate object keys refused (serde_json would keep the last
/// silently; YAML manifests get the same refusal from the YAML parser).
struct StrictJson(Value);

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v)
            .map(Value::Number)
            .unwrap_or(Value::Null))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictJson(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictJson(v) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// The parser's message on one line, without advice meant for programmers.
fn one_line(s: &str) -> String {
    let s = s.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    s.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// `apiVersion` and `kind` of an untyped document, empty strings when missing.
fn type_meta(tree: &Value) -> (String, String) {
    let get = |k: &str| tree.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    (get("apiVersion"), get("kind"))
}

/// Deserializes the tree into `T`, collecting the paths of ignored (unknown) fields and
/// naming the field path of the first type error.
fn typed<T: serde::de::DeserializeOwned>(
    file: &Path,
    tree: Value,
) -> Result<(T, Vec<String>), ManifestError> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(render_path(&path));
    let de = serde_ignored::Deserializer::new(tree, &mut record);
    let value = serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." {
            "(document)".to_owned()
        } else {
            field
        };
        ManifestError::invalid(file, vec![FieldError::new(field, e.inner().to_string())])
    })?;
    Ok((value, unknown))
}

/// `spec.containers[0].livenesProbe` from serde_ignored's path.
fn render_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", render_path(parent)),
        P::Map { parent, key } => {
            let p = render_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            render_path(parent)
        }
    }
}

/// A DaemonSet's pod: its `spec.template`, named and namespaced after the DaemonSet (§8).
fn pod_from_daemonset(file: &Path, ds: DaemonSet) -> Result<Pod, ManifestError> {
    let Some(spec) = ds.spec else {
        return Err(ManifestError::invalid(
            file,
            vec![FieldError::new("spec", "required for a DaemonSet")],
        ));
    };
    let template = spec.template;
    let Some(pod_spec) = template.spec else {
        return Err(ManifestError::invalid(
            file,
            vec![FieldError::new(
                "spec.template.spec",
                "required for a DaemonSet",
            )],
        ));
    };
    let mut metadata = template.metadata.unwrap_or_default();
    metadata.name = ds.metadata.name;
    metadata.namespace = ds.metadata.namespace;
    metadata.uid = None;
    Ok(Pod {
        metadata,
        spec: Some(pod_spec),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Result<Decoded, ManifestError> {
        decode(Path::new("/m/x.yaml"), text.as_bytes())
    }

    const MINIMAL: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: c\n    image: busybox\n";

    #[test]
    fn decodes_a_minimal_pod() {
        let d = dec(MINIMAL).expect("decodes");
        assert_eq!(d.pod.metadata.name.as_deref(), Some("a"));
        assert_eq!(d.kind, ManifestKind::Pod);
        assert!(d.unknown_fields.is_empty());
    }

    #[test]
    fn unknown_fields_are_warnings_with_their_path() {
        let text = MINIMAL.replace(
            "    image: busybox\n",
            "    image: busybox\n    livenesProbe: {}\n",
        ) + "  futureField: 1\n";
        let d = dec(&text).expect("decodes");
        assert_eq!(
            d.unknown_fields,
            vec!["spec.containers[0].livenesProbe", "spec.futureField"]
        );
    }

    #[test]
    fn legacy_octal_means_what_kubernetes_means() {
        let text = MINIMAL.to_owned()
            + "  volumes:\n  - name: d\n    downwardAPI:\n      defaultMode: 0644\n";
        let d = dec(&text).expect("decodes");
        let vols = d.pod.spec.and_then(|s| s.volumes).unwrap_or_default();
        assert_eq!(
            vols[0].downward_api.as_ref().and_then(|d| d.default_mode),
            Some(0o644)
        );
    }

    #[test]
    fn type_errors_name_the_field_path() {
        let text = MINIMAL.to_owned().replace(
            "    image: busybox\n",
            "    image: busybox\n    env:\n    - name: X\n      value: 123\n",
        );
        let err = dec(&text).expect_err("a number is not a string");
        let msg = err.to_string();
        assert!(msg.contains("spec.containers[0].env[0].value"), "{msg}");
        assert!(msg.contains("/m/x.yaml"), "{msg}");
    }

    #[test]
    fn duplicate_keys_and_several_documents_are_refused() {
        let dup = MINIMAL.replace("  name: a\n", "  name: a\n  name: b\n");
        assert!(
            matches!(dec(&dup), Err(ManifestError::Syntax { .. })),
            "{:?}",
            dec(&dup)
        );
        let two = format!("{MINIMAL}---\n{MINIMAL}");
        assert!(matches!(
            dec(&two),
            Err(ManifestError::MultipleDocuments { count: 2, .. })
        ));
    }

    #[test]
    fn wrong_kind_is_refused_and_daemonset_gives_its_template() {
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n";
        assert!(matches!(dec(cm), Err(ManifestError::WrongKind { .. })));
        let ds = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\n  namespace: kube-system\nspec:\n  selector:\n    matchLabels: {app: agent}\n  template:\n    metadata:\n      labels: {app: agent}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n";
        let d = dec(ds).expect("daemonset decodes");
        assert_eq!(d.kind, ManifestKind::DaemonSet);
        assert_eq!(d.pod.metadata.name.as_deref(), Some("agent"));
        assert_eq!(d.pod.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(
            d.pod
                .metadata
                .labels
                .unwrap_or_default()
                .get("app")
                .map(String::as_str),
            Some("agent")
        );
    }

    #[test]
    fn json_manifests_decode() {
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
        assert_eq!(
            dec(json).expect("json").pod.metadata.name.as_deref(),
            Some("j")
        );
    }
}
