//! Identity: the UID is stable under whitespace, comments, key order, format (YAML/JSON)
//! and explicitly written defaults, and changes with every kind of semantic edit, the
//! node name and the manifest path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use podvisor::pod::{NodeInfo, load};
use serde_json::Value;

const PATH: &str = "/etc/kubernetes/manifests/etcd.yaml";

fn fixture_text() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/manifests/etcd.yaml");
    std::fs::read_to_string(p).expect("fixture")
}

fn uid_at(text: &str, path: &str, node: &str) -> String {
    let n = NodeInfo::new(node, BTreeMap::new(), vec![]);
    load(&PathBuf::from(path), text.as_bytes(), &n, &|_| {
        "t".to_owned()
    })
    .unwrap_or_else(|e| panic!("{e}\n{text}"))
    .uid
}

fn uid(text: &str) -> String {
    uid_at(text, PATH, "cp-1")
}

/// JSON with object keys in reverse order and odd whitespace.
fn reversed_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .rev()
                .map(|(k, v)| format!("\n   {} :\t{}", Value::String(k.clone()), reversed_json(v)))
                .collect();
            format!("{{{}  }}", parts.join(" ,"))
        }
        Value::Array(a) => format!(
            "[ {} ]",
            a.iter().map(reversed_json).collect::<Vec<_>>().join(" , ")
        ),
        other => other.to_string(),
    }
}

#[test]
fn uid_is_stable_under_formatting() {
    let base = fixture_text();
    let want = uid(&base);
    let tree: Value = serde_saphyr::from_str(&base).expect("yaml");
    let commented: String = base
        .lines()
        .map(|l| format!("{l}   # comment\n"))
        .collect::<String>()
        .replace("- \"", "-  \"");
    let variants: Vec<(&str, String)> = vec![
        ("identical", base.clone()),
        ("leading comment and blank lines", format!("# written by kubeadm\n\n\n{base}\n\n")),
        ("trailing comments on every line", commented),
        ("document start marker", format!("---\n{base}")),
        ("JSON, sorted keys", serde_json::to_string(&tree).expect("json")),
        ("JSON, pretty", serde_json::to_string_pretty(&tree).expect("json")),
        ("JSON, reversed key order", reversed_json(&tree)),
        ("quoted scalars", base.replace("name: etcd\n", "name: \"etcd\"\n").replace("namespace: kube-system", "namespace: 'kube-system'")),
        ("explicit defaults", base.replace("  hostNetwork: true\n", "  hostNetwork: true\n  restartPolicy: Always\n  terminationGracePeriodSeconds: 30\n  dnsPolicy: ClusterFirst\n")),
        ("explicit probe default", base.replace("      periodSeconds: 1\n", "      periodSeconds: 1\n      successThreshold: 1\n")),
        ("unknown field (ignored, warned)", base.replace("  hostNetwork: true\n", "  hostNetwork: true\n  someFutureField: {a: 1}\n")),
    ];
    for (name, text) in variants {
        assert_eq!(uid(&text), want, "{name}");
    }
}

#[test]
fn uid_changes_with_every_semantic_edit() {
    let base = fixture_text();
    let want = uid(&base);
    let edits: Vec<(&str, &str, &str)> = vec![
        (
            "label value",
            "    component: etcd\n",
            "    component: etcd2\n",
        ),
        (
            "new label",
            "    tier: control-plane\n",
            "    tier: control-plane\n    extra: x\n",
        ),
        (
            "annotation",
            "https://10.0.0.10:2379\n  creationTimestamp",
            "https://10.0.0.11:2379\n  creationTimestamp",
        ),
        ("image", "etcd:3.5.15-0", "etcd:3.5.16-0"),
        (
            "command arg",
            "    - --snapshot-count=10000\n",
            "    - --snapshot-count=10001\n",
        ),
        (
            "arg order",
            "    - etcd\n    - --advertise-client-urls=https://10.0.0.10:2379\n    - --cert-file=/etc/kubernetes/pki/etcd/server.crt\n",
            "    - etcd\n    - --cert-file=/etc/kubernetes/pki/etcd/server.crt\n    - --advertise-client-urls=https://10.0.0.10:2379\n",
        ),
        (
            "probe threshold",
            "      failureThreshold: 8\n",
            "      failureThreshold: 9\n",
        ),
        (
            "probe path",
            "        path: /livez\n",
            "        path: /healthz\n",
        ),
        ("resources", "        cpu: 100m\n", "        cpu: 200m\n"),
        (
            "volume path",
            "      path: /var/lib/etcd\n",
            "      path: /var/lib/etcd2\n",
        ),
        (
            "hostNetwork",
            "  hostNetwork: true\n",
            "  hostNetwork: false\n",
        ),
        (
            "pull policy",
            "    imagePullPolicy: IfNotPresent\n",
            "    imagePullPolicy: Always\n",
        ),
        (
            "seccomp",
            "      type: RuntimeDefault\n",
            "      type: Unconfined\n",
        ),
        (
            "namespace",
            "  namespace: kube-system\n",
            "  namespace: other\n",
        ),
        (
            "name",
            "  name: etcd\n  namespace",
            "  name: etcd-b\n  namespace",
        ),
        (
            "env added",
            "    name: etcd\n    readinessProbe",
            "    name: etcd\n    env:\n    - name: A\n      value: b\n    readinessProbe",
        ),
        (
            "grace period",
            "  hostNetwork: true\n",
            "  hostNetwork: true\n  terminationGracePeriodSeconds: 31\n",
        ),
    ];
    let mut seen = BTreeMap::new();
    seen.insert(want.clone(), "base");
    for (name, from, to) in edits {
        assert!(base.contains(from), "{name}: fixture lacks {from:?}");
        let u = uid(&base.replacen(from, to, 1));
        assert_ne!(u, want, "{name} must change the UID");
        if let Some(other) = seen.insert(u, name) {
            panic!("{name} gives the same UID as {other}");
        }
    }
    assert_ne!(
        uid_at(&base, "/etc/kubernetes/manifests/etcd2.yaml", "cp-1"),
        want,
        "path is part of the UID"
    );
    assert_ne!(uid_at(&base, PATH, "cp-2"), want, "node is part of the UID");
}

#[test]
fn uid_is_pinned_so_upgrades_keep_it() {
    // The hash input is versioned; this pins today's value for a fixed manifest so a change
    // to hashing, canonical JSON or defaulting is a deliberate, visible decision.
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pinned\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n";
    let u = uid_at(text, "/m/pinned.yaml", "node-a");
    assert_eq!(u, PINNED_UID, "the UID of a fixed manifest changed");
}

const PINNED_UID: &str = "dbcff7e800eeacbf9606a710c5c6434b";

#[test]
fn metadata_uid_in_the_manifest_is_kept() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  uid: 11111111-2222-3333-4444-555555555555\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n";
    assert_eq!(uid(text), "11111111-2222-3333-4444-555555555555");
}
