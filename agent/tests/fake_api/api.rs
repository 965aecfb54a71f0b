//! The fake API server's resources and the rules a real one enforces for a node identity:
//! the Node authorizer (own Node, own Lease, pods only through `spec.nodeName=<node>`) and
//! NodeRestriction (mirror pods only: annotation, nodeName, exactly one controller Node owner
//! reference with the Node's UID, no secret/configmap/service-account references; no spec
//! updates; status through `/status`). Every refusal of a rule is also recorded as a
//! violation so tests can assert a well-behaved client never triggered one.

use std::collections::BTreeMap;
use std::sync::mpsc::Sender;
use std::time::Instant;

use serde_json::{Value, json};

use super::http::Request;

pub const MIRROR: &str = "kubernetes.io/config.mirror";

pub enum Reply {
    Json(u16, Value),
    Watch {
        node: String,
        from_rv: u64,
        timeout_secs: u64,
    },
}

pub struct PatchRecord {
    pub at: Instant,
    pub name: String,
    pub status: Value,
    pub identity: String,
}

#[derive(Default)]
pub struct Store {
    pub rv: u64,
    pub uid_seed: u64,
    pub nodes: BTreeMap<String, Value>,
    pub pods: BTreeMap<(String, String), Value>,
    pub leases: BTreeMap<String, Value>,
    pub events: Vec<Value>,
    /// (rv, nodeName, watch event line)
    pub log: Vec<(u64, String, String)>,
    pub watchers: Vec<(String, Sender<String>)>,
    pub violations: Vec<String>,
    pub status_patches: Vec<PatchRecord>,
    pub requests: Vec<(String, String, String)>,
    pub forbid_node_create: bool,
    pub lease_renewals: u64,
}

pub fn status(code: u16, reason: &str, message: &str) -> Reply {
    Reply::Json(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

impl Store {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn new_uid(&mut self) -> String {
        self.uid_seed += 1;
        format!(
            "{:08x}-0000-4000-8000-{:012x}",
            std::process::id(),
            self.uid_seed + (self.rv << 20)
        )
    }

    fn violation(&mut self, code: u16, reason: &str, message: String) -> Reply {
        self.violations.push(message.clone());
        status(code, reason, &message)
    }

    /// Record a pod change for watchers of its node.
    pub fn broadcast(&mut self, kind: &str, pod: &Value) {
        let node = pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let line = json!({"type": kind, "object": pod}).to_string();
        let rv = self.rv;
        self.log.push((rv, node.clone(), line.clone()));
        self.watchers
            .retain(|(n, tx)| n != &node || tx.send(line.clone()).is_ok());
    }

    pub fn handle(&mut self, who: &str, req: &Request) -> Reply {
        let query: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let target = match query.is_empty() {
            true => req.path.clone(),
            false => format!("{}?{}", req.path, query.join("&")),
        };
        self.requests
            .push((req.method.clone(), target, who.to_owned()));
        let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        match (req.method.as_str(), segs.as_slice()) {
            ("POST", ["api", "v1", "nodes"]) => self.create_node(who, body),
            ("GET", ["api", "v1", "nodes", name]) => match self.nodes.get(*name) {
                Some(n) => Reply::Json(200, n.clone()),
                None => status(404, "NotFound", &format!("nodes \"{name}\" not found")),
            },
            ("PATCH", ["api", "v1", "nodes", name, "status"]) => {
                self.patch_node_status(who, name, body)
            }
            ("PATCH", ["api", "v1", "nodes", name]) => self.patch_node_labels(who, name, body),
            (_, ["api", "v1", "nodes", ..]) => self.violation(
                403,
                "Forbidden",
                format!(
                    "node {who}: {} {} not allowed (taints and spec are set at registration only)",
                    req.method, req.path
                ),
            ),
            (
                m,
                [
                    "apis",
                    "coordination.k8s.io",
                    "v1",
                    "namespaces",
                    "kube-node-lease",
                    "leases",
                    rest @ ..,
                ],
            ) => self.lease(who, m, rest.first().copied(), body),
            ("GET", ["api", "v1", "pods"]) => self.list_or_watch(who, req),
            ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => {
                match self.pods.get(&(ns.to_string(), name.to_string())) {
                    Some(p) if p["spec"]["nodeName"] == who => Reply::Json(200, p.clone()),
                    Some(_) => self.violation(
                        403,
                        "Forbidden",
                        format!("node {who} may not get pod {ns}/{name} bound elsewhere"),
                    ),
                    None => status(404, "NotFound", &format!("pods \"{name}\" not found")),
                }
            }
            ("POST", ["api", "v1", "namespaces", ns, "pods"]) => self.create_pod(who, ns, body),
            ("DELETE", ["api", "v1", "namespaces", ns, "pods", name]) => {
                self.delete_pod(who, ns, name, body)
            }
            ("PATCH", ["api", "v1", "namespaces", ns, "pods", name, "status"]) => {
                self.patch_pod_status(who, ns, name, req, body)
            }
            ("PUT" | "PATCH", ["api", "v1", "namespaces", ns, "pods", name, ..]) => self.violation(
                403,
                "Forbidden",
                format!(
                    "node {who} can only update pod status: {} pods/{ns}/{name}",
                    req.method
                ),
            ),
            ("POST", ["api", "v1", "namespaces", ns, "events"]) => {
                if body["involvedObject"]["kind"] != "Pod" || body["metadata"]["namespace"] != *ns {
                    return self.violation(422, "Invalid", format!("bad event {body}"));
                }
                self.events.push(body.clone());
                Reply::Json(201, body)
            }
            _ => self.violation(
                404,
                "NotFound",
                format!("unexpected request {} {}", req.method, req.path),
            ),
        }
    }

    fn create_node(&mut self, who: &str, mut node: Value) -> Reply {
        let name = node["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if self.forbid_node_create {
            return status(
                403,
                "Forbidden",
                &format!(
                    "nodes is forbidden: User \"system:node:{who}\" cannot create resource \"nodes\""
                ),
            );
        }
        if name != who {
            return self.violation(
                403,
                "Forbidden",
                format!("node {who} may not create node {name}"),
            );
        }
        if self.nodes.contains_key(&name) {
            return status(
                409,
                "AlreadyExists",
                &format!("nodes \"{name}\" already exists"),
            );
        }
        let rv = self.next_rv();
        node["metadata"]["uid"] = json!(self.new_uid());
        node["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.nodes.insert(name, node.clone());
        Reply::Json(201, node)
    }

    fn patch_node_status(&mut self, who: &str, name: &str, patch: Value) -> Reply {
        if name != who {
            return self.violation(
                403,
                "Forbidden",
                format!("node {who} may not patch node {name}"),
            );
        }
        if patch.get("spec").is_some() || patch["metadata"].get("labels").is_some() {
            return self.violation(
                403,
                "Forbidden",
                format!("node {who}: status patch touches spec or labels"),
            );
        }
        let rv = self.next_rv();
        let Some(node) = self.nodes.get_mut(name) else {
            return status(404, "NotFound", &format!("nodes \"{name}\" not found"));
        };
        strategic_merge_status(&mut node["status"], &patch["status"]);
        node["metadata"]["resourceVersion"] = json!(rv.to_string());
        Reply::Json(200, node.clone())
    }

    /// NodeRestriction: a node may change its own labels (not `node-restriction.kubernetes.io/`
    /// ones) but not its taints or spec.
    fn patch_node_labels(&mut self, who: &str, name: &str, patch: Value) -> Reply {
        let only_labels = patch
            .as_object()
            .is_some_and(|o| o.keys().all(|k| k == "metadata"))
            && patch["metadata"]
                .as_object()
                .is_some_and(|m| m.keys().all(|k| k == "labels"));
        if name != who || !only_labels {
            return self.violation(
                403,
                "Forbidden",
                format!("node {who} may not patch node {name} with {patch}"),
            );
        }
        let labels = patch["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if labels
            .keys()
            .any(|k| k.starts_with("node-restriction.kubernetes.io/"))
        {
            return self.violation(
                403,
                "Forbidden",
                format!("node {who} may not set node-restriction labels"),
            );
        }
        let rv = self.next_rv();
        let Some(node) = self.nodes.get_mut(name) else {
            return status(404, "NotFound", &format!("nodes \"{name}\" not found"));
        };
        for (k, v) in labels {
            node["metadata"]["labels"][k] = v;
        }
        node["metadata"]["resourceVersion"] = json!(rv.to_string());
        Reply::Json(200, node.clone())
    }

    fn lease(&mut self, who: &str, method: &str, name: Option<&str>, mut body: Value) -> Reply {
        let target = name
            .map(str::to_owned)
            .or_else(|| body["metadata"]["name"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if target != who {
            return self.violation(
                403,
                "Forbidden",
                format!("node {who} may not touch lease {target}"),
            );
        }
        match method {
            "GET" => match self.leases.get(&target) {
                Some(l) => Reply::Json(200, l.clone()),
                None => status(
                    404,
                    "NotFound",
                    &format!("leases.coordination.k8s.io \"{target}\" not found"),
                ),
            },
            "POST" if !self.leases.contains_key(&target) => {
                body["metadata"]["resourceVersion"] = json!(self.next_rv().to_string());
                self.leases.insert(target, body.clone());
                self.lease_renewals += 1;
                Reply::Json(201, body)
            }
            "PUT" => {
                let current = self
                    .leases
                    .get(&target)
                    .map(|l| l["metadata"]["resourceVersion"].clone());
                if current != Some(body["metadata"]["resourceVersion"].clone()) {
                    return status(
                        409,
                        "Conflict",
                        "the object has been modified; please apply your changes to the latest version and try again",
                    );
                }
                body["metadata"]["resourceVersion"] = json!(self.next_rv().to_string());
                self.leases.insert(target, body.clone());
                self.lease_renewals += 1;
                Reply::Json(200, body)
            }
            _ => status(409, "AlreadyExists", "lease already exists"),
        }
    }

    fn list_or_watch(&mut self, who: &str, req: &Request) -> Reply {
        let wanted = format!("spec.nodeName={who}");
        if req.param("fieldSelector") != Some(wanted.as_str()) {
            return self.violation(
                403,
                "Forbidden",
                format!(
                    "node {who} may only list/watch pods with fieldSelector={wanted}, got {:?}",
                    req.param("fieldSelector")
                ),
            );
        }
        if req.param("watch") == Some("true") {
            let from_rv = req
                .param("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(self.rv);
            let timeout_secs = req
                .param("timeoutSeconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(300);
            return Reply::Watch {
                node: who.to_owned(),
                from_rv,
                timeout_secs,
            };
        }
        let items: Vec<Value> = self
            .pods
            .values()
            .filter(|p| p["spec"]["nodeName"] == who)
            .cloned()
            .collect();
        Reply::Json(
            200,
            json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": self.rv.to_string()}, "items": items}),
        )
    }

    fn create_pod(&mut self, who: &str, ns: &str, mut pod: Value) -> Reply {
        if let Err(why) = self.admit_mirror(who, ns, &pod) {
            return self.violation(
                403,
                "Forbidden",
                format!("pod create refused by NodeRestriction: {why}"),
            );
        }
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = (ns.to_owned(), name.clone());
        if self.pods.contains_key(&key) {
            return status(
                409,
                "AlreadyExists",
                &format!("pods \"{name}\" already exists"),
            );
        }
        let rv = self.next_rv();
        pod["metadata"]["uid"] = json!(self.new_uid());
        pod["metadata"]["resourceVersion"] = json!(rv.to_string());
        pod["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        pod["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        self.pods.insert(key, pod.clone());
        self.broadcast("ADDED", &pod);
        Reply::Json(201, pod)
    }

    /// NodeRestriction's rules for a pod created by a node.
    fn admit_mirror(&self, who: &str, ns: &str, pod: &Value) -> Result<(), String> {
        let meta = &pod["metadata"];
        if meta["namespace"].as_str().is_some_and(|n| n != ns) {
            return Err("namespace mismatch".into());
        }
        if meta["annotations"][MIRROR]
            .as_str()
            .is_none_or(str::is_empty)
        {
            return Err(format!(
                "pod does not have \"{MIRROR}\" annotation, node \"{who}\" can only create mirror pods"
            ));
        }
        if pod["spec"]["nodeName"] != who {
            return Err(format!(
                "node \"{who}\" can only create pods with spec.nodeName set to itself"
            ));
        }
        let owners = meta["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let [owner] = owners.as_slice() else {
            return Err(format!(
                "node \"{who}\" can only create pods with a single owner reference set to itself, got {}",
                owners.len()
            ));
        };
        let node_uid = self.nodes.get(who).map(|n| n["metadata"]["uid"].clone());
        if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != who {
            return Err(format!("owner reference {owner} is not the node {who}"));
        }
        if owner["controller"] != true {
            return Err("owner reference must set controller=true".into());
        }
        if owner["blockOwnerDeletion"] == true {
            return Err("owner reference must not set blockOwnerDeletion".into());
        }
        if node_uid.as_ref() != Some(&owner["uid"]) {
            return Err(format!(
                "the UID in the owner reference {} does not match the node {who} UID {node_uid:?}",
                owner["uid"]
            ));
        }
        let spec = &pod["spec"];
        if spec["serviceAccountName"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
        {
            return Err("node can not create pods that reference a service account".into());
        }
        for v in spec["volumes"].as_array().into_iter().flatten() {
            for kind in [
                "secret",
                "configMap",
                "persistentVolumeClaim",
                "projected",
                "ephemeral",
            ] {
                if v.get(kind).is_some() {
                    return Err(format!("node can not create pods that use {kind} volumes"));
                }
            }
        }
        let containers = ["containers", "initContainers", "ephemeralContainers"]
            .iter()
            .flat_map(|k| spec[*k].as_array().cloned().unwrap_or_default());
        for c in containers {
            let text = c.to_string();
            if text.contains("secretKeyRef")
                || text.contains("configMapKeyRef")
                || text.contains("secretRef")
                || text.contains("configMapRef")
            {
                return Err(format!(
                    "node can not create pods that reference secrets or configmaps (container {})",
                    c["name"]
                ));
            }
        }
        Ok(())
    }

    fn delete_pod(&mut self, who: &str, ns: &str, name: &str, opts: Value) -> Reply {
        let key = (ns.to_owned(), name.to_owned());
        let Some(pod) = self.pods.get(&key).cloned() else {
            return status(404, "NotFound", &format!("pods \"{name}\" not found"));
        };
        if pod["spec"]["nodeName"] != who {
            return self.violation(
                403,
                "Forbidden",
                format!("node {who} may not delete pod {ns}/{name} bound elsewhere"),
            );
        }
        let Some(uid) = opts["preconditions"]["uid"].as_str() else {
            return self.violation(
                422,
                "Invalid",
                format!("delete of {ns}/{name} without a uid precondition"),
            );
        };
        if opts["gracePeriodSeconds"] != 0 {
            return self.violation(
                422,
                "Invalid",
                format!("delete of mirror {ns}/{name} without gracePeriodSeconds=0"),
            );
        }
        if pod["metadata"]["uid"] != uid {
            return status(
                409,
                "Conflict",
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    pod["metadata"]["uid"]
                ),
            );
        }
        self.pods.remove(&key);
        let rv = self.next_rv();
        let mut pod = pod;
        pod["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.broadcast("DELETED", &pod);
        Reply::Json(200, pod)
    }

    fn patch_pod_status(
        &mut self,
        who: &str,
        ns: &str,
        name: &str,
        req: &Request,
        patch: Value,
    ) -> Reply {
        let key = (ns.to_owned(), name.to_owned());
        if req.header("content-type") != Some("application/strategic-merge-patch+json") {
            return self.violation(
                415,
                "UnsupportedMediaType",
                format!("status patch of {ns}/{name} is not a strategic merge patch"),
            );
        }
        let extra: Vec<&String> = patch
            .as_object()
            .map(|o| {
                o.keys()
                    .filter(|k| *k != "metadata" && *k != "status")
                    .collect()
            })
            .unwrap_or_default();
        if !extra.is_empty()
            || patch["metadata"]
                .as_object()
                .is_some_and(|m| m.keys().any(|k| k != "uid"))
        {
            return self.violation(
                403,
                "Forbidden",
                format!("status patch of {ns}/{name} touches more than status: {patch}"),
            );
        }
        let Some(uid) = patch["metadata"]["uid"].as_str().map(str::to_owned) else {
            return self.violation(
                422,
                "Invalid",
                format!("status patch of {ns}/{name} without metadata.uid precondition"),
            );
        };
        let Some(pod) = self.pods.get(&key) else {
            return status(404, "NotFound", &format!("pods \"{name}\" not found"));
        };
        if pod["spec"]["nodeName"] != who {
            return self.violation(
                403,
                "Forbidden",
                format!("node {who} may not patch pod {ns}/{name} bound elsewhere"),
            );
        }
        if pod["metadata"]["uid"] != uid.as_str() {
            return status(
                409,
                "Conflict",
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    pod["metadata"]["uid"]
                ),
            );
        }
        let rv = self.next_rv();
        let pod = self.pods.get_mut(&key).expect("checked above");
        strategic_merge_status(&mut pod["status"], &patch["status"]);
        pod["metadata"]["resourceVersion"] = json!(rv.to_string());
        let pod = pod.clone();
        self.status_patches.push(PatchRecord {
            at: Instant::now(),
            name: name.to_owned(),
            status: patch["status"].clone(),
            identity: who.to_owned(),
        });
        self.broadcast("MODIFIED", &pod);
        Reply::Json(200, pod)
    }
}

/// PodStatus/NodeStatus strategic merge: `conditions` merge by `type`, other keys replace.
pub fn strategic_merge_status(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else { return };
    if !target.is_object() {
        *target = json!({});
    }
    for (k, v) in p {
        if k == "conditions" {
            let mut merged = target[k].as_array().cloned().unwrap_or_default();
            for c in v.as_array().into_iter().flatten() {
                match merged.iter_mut().find(|m| m["type"] == c["type"]) {
                    Some(m) => *m = c.clone(),
                    None => merged.push(c.clone()),
                }
            }
            target[k] = Value::Array(merged);
        } else if v.is_null() {
            if let Some(o) = target.as_object_mut() {
                o.remove(k);
            }
        } else {
            target[k] = v.clone();
        }
    }
}
