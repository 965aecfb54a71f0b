//! Node selection (STATIC-PODS.md §8): a pod's `nodeSelector`, required node affinity and
//! tolerations evaluated against this node's own labels and taints, as the scheduler's
//! NodeAffinity and TaintToleration filters would, so one manifest can serve a fleet.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod, Toleration};
use serde::Deserialize;

/// One node taint (`key[=value]:Effect`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value (may be empty).
    #[serde(default)]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// What a pod is matched against: this node's name, labels and taints.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct NodeInfo {
    /// The node name (also `kubernetes.io/hostname` and the `metadata.name` field).
    #[serde(default)]
    pub name: String,
    /// Node labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    #[serde(default)]
    pub taints: Vec<Taint>,
}

impl NodeInfo {
    /// A node with the labels the kubelet always sets (`kubernetes.io/hostname`, `os`, `arch`)
    /// plus `labels`, and `taints`.
    pub fn new(name: &str, labels: BTreeMap<String, String>, taints: Vec<Taint>) -> Self {
        let mut all = BTreeMap::from([
            ("kubernetes.io/hostname".to_owned(), name.to_lowercase()),
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ("kubernetes.io/arch".to_owned(), go_arch().to_owned()),
        ]);
        all.extend(labels);
        NodeInfo {
            name: name.to_owned(),
            labels: all,
            taints,
        }
    }
}

impl NodeInfo {
    /// Reads a node config file (YAML or JSON): `{name: .., labels: {k: v}, taints: [{key, value, effect}]}`.
    /// `name` in the file is optional; `node_name` wins when the file has none.
    pub fn from_file(path: &std::path::Path, node_name: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("read node config {}: {e}", path.display()))?;
        let file: NodeInfo = serde_saphyr::from_str(&text)
            .map_err(|e| format!("parse node config {}: {e}", path.display()))?;
        let name = if file.name.is_empty() {
            node_name.to_owned()
        } else {
            file.name.clone()
        };
        for t in &file.taints {
            if !matches!(
                t.effect.as_str(),
                "NoSchedule" | "PreferNoSchedule" | "NoExecute"
            ) {
                return Err(format!(
                    "node config {}: taint {}: bad effect {:?}",
                    path.display(),
                    t.key,
                    t.effect
                ));
            }
        }
        Ok(NodeInfo::new(&name, file.labels, file.taints))
    }
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Parses `--node-labels k=v,k2=v2`.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("node label {item:?} is not key=value"))?;
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

/// Parses `--node-taints key=value:Effect,key:Effect`.
pub fn parse_taints(text: &str) -> Result<Vec<Taint>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (kv, effect) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("node taint {item:?} is not key[=value]:Effect"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(format!(
                "node taint {item:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
            ));
        }
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        out.push(Taint {
            key: key.to_owned(),
            value: value.to_owned(),
            effect: effect.to_owned(),
        });
    }
    Ok(out)
}

/// `Ok(())` when the pod may run on `node`, else the reason it may not.
pub fn node_matches(pod: &Pod, node: &NodeInfo) -> Result<(), String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    for (k, v) in spec.node_selector.iter().flatten() {
        match node.labels.get(k) {
            Some(have) if have == v => {}
            Some(have) => return Err(format!("nodeSelector {k}={v}: node has {k}={have}")),
            None => return Err(format!("nodeSelector {k}={v}: node has no label {k}")),
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(sel) = required {
        if !sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node))
        {
            return Err("required node affinity: no nodeSelectorTerm matches this node".to_owned());
        }
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    for taint in &node.taints {
        if taint.effect == "PreferNoSchedule" {
            continue;
        }
        if !tolerations.iter().any(|t| tolerates(t, taint)) {
            let value = if taint.value.is_empty() {
                String::new()
            } else {
                format!("={}", taint.value)
            };
            return Err(format!(
                "node taint {}{value}:{} is not tolerated",
                taint.key, taint.effect
            ));
        }
    }
    Ok(())
}

/// A term matches when it has at least one requirement and all of them hold.
fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_holds(r, node.labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_holds(r, Some(&node.name)))
}

fn requirement_holds(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [want]) = (value.and_then(int), values) else {
                return false;
            };
            let Some(want) = int(want) else { return false };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// `ToleratesTaint`: effect (empty matches all), key (empty with Exists matches all), value.
fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => t.value.as_deref().unwrap_or("") == taint.value,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec_yaml: &str) -> Pod {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: i\n{spec_yaml}"
        );
        crate::manifest::decode(std::path::Path::new("/t.yaml"), text.as_bytes())
            .expect("decodes")
            .pod
    }

    fn node() -> NodeInfo {
        NodeInfo::new(
            "Worker-1",
            parse_labels("node-role.kubernetes.io/control-plane=,zone=a,gen=5").expect("labels"),
            parse_taints("node-role.kubernetes.io/control-plane:NoSchedule,dedicated=infra:NoExecute,soft:PreferNoSchedule").expect("taints"),
        )
    }

    const TOLERATE_ALL: &str = "  tolerations:\n  - operator: Exists\n";

    #[test]
    fn selection_table() {
        let table: &[(&str, &str, Result<(), &str>)] = &[
            (
                "no rules, untolerated taints",
                "",
                Err("node taint node-role.kubernetes.io/control-plane:NoSchedule is not tolerated"),
            ),
            ("tolerate everything", TOLERATE_ALL, Ok(())),
            (
                "nodeSelector matches",
                "  nodeSelector: {zone: a}\n  tolerations: [{operator: Exists}]\n",
                Ok(()),
            ),
            (
                "nodeSelector other value",
                "  nodeSelector: {zone: b}\n",
                Err("nodeSelector zone=b: node has zone=a"),
            ),
            (
                "nodeSelector missing label",
                "  nodeSelector: {disk: ssd}\n",
                Err("nodeSelector disk=ssd: node has no label disk"),
            ),
            (
                "well-known hostname label",
                "  nodeSelector: {kubernetes.io/hostname: worker-1}\n  tolerations: [{operator: Exists}]\n",
                Ok(()),
            ),
            (
                "taints tolerated one by one",
                "  tolerations:\n  - {key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}\n  - {key: dedicated, value: infra, effect: NoExecute}\n",
                Ok(()),
            ),
            (
                "wrong toleration value",
                "  tolerations:\n  - {key: node-role.kubernetes.io/control-plane, operator: Exists}\n  - {key: dedicated, value: db, effect: NoExecute}\n",
                Err("node taint dedicated=infra:NoExecute is not tolerated"),
            ),
        ];
        let n = node();
        for (name, spec, want) in table {
            let got = node_matches(&pod(spec), &n);
            assert_eq!(got, want.map_err(str::to_owned), "{name}");
        }
    }

    #[test]
    fn affinity_operators_table() {
        let n = node();
        let table: &[(&str, bool)] = &[
            ("{key: zone, operator: In, values: [a, b]}", true),
            ("{key: zone, operator: In, values: [c]}", false),
            ("{key: zone, operator: NotIn, values: [c]}", true),
            ("{key: zone, operator: NotIn, values: [a]}", false),
            ("{key: absent, operator: NotIn, values: [a]}", true),
            ("{key: zone, operator: Exists}", true),
            ("{key: absent, operator: Exists}", false),
            ("{key: absent, operator: DoesNotExist}", true),
            ("{key: zone, operator: DoesNotExist}", false),
            ("{key: gen, operator: Gt, values: ['4']}", true),
            ("{key: gen, operator: Gt, values: ['5']}", false),
            ("{key: gen, operator: Lt, values: ['6']}", true),
            ("{key: zone, operator: Lt, values: ['6']}", false),
            ("{key: zone, operator: Bogus, values: [a]}", false),
        ];
        for (expr, want) in table {
            let spec = format!(
                "{TOLERATE_ALL}  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions:\n          - {expr}\n"
            );
            assert_eq!(node_matches(&pod(&spec), &n).is_ok(), *want, "{expr}");
        }
        // terms are ORed; matchFields on metadata.name
        let spec = format!(
            "{TOLERATE_ALL}  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions: [{{key: zone, operator: In, values: [z]}}]\n        - matchFields: [{{key: metadata.name, operator: In, values: [Worker-1]}}]\n"
        );
        assert_eq!(node_matches(&pod(&spec), &n), Ok(()));
        let empty_term = format!(
            "{TOLERATE_ALL}  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - {{}}\n"
        );
        assert!(
            node_matches(&pod(&empty_term), &n).is_err(),
            "an empty term matches nothing"
        );
    }

    #[test]
    fn node_config_file_gives_labels_and_taints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("node.yaml");
        std::fs::write(
            &f,
            "labels:\n  zone: a\ntaints:\n- {key: dedicated, value: infra, effect: NoSchedule}\n",
        )
        .expect("write");
        let n = NodeInfo::from_file(&f, "w1").expect("node config");
        assert_eq!(n.name, "w1");
        assert_eq!(n.labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(
            n.labels.get("kubernetes.io/hostname").map(String::as_str),
            Some("w1")
        );
        assert_eq!(n.taints.len(), 1);
        std::fs::write(&f, "taints:\n- {key: k, effect: Sometimes}\n").expect("write");
        assert!(NodeInfo::from_file(&f, "w1").is_err());
    }

    #[test]
    fn flag_parsing_refuses_malformed_items() {
        assert!(parse_labels("a").is_err());
        assert!(parse_taints("a=b").is_err());
        assert!(parse_taints("a=b:Sometimes").is_err());
        assert_eq!(
            parse_taints("k=v:NoExecute").expect("taint"),
            vec![Taint {
                key: "k".into(),
                value: "v".into(),
                effect: "NoExecute".into()
            }]
        );
    }
}
