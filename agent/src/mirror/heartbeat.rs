//! The node's heartbeat side of the mirror task: register (or adopt) the Node, patch its
//! status, and renew its Lease in `kube-node-lease`.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;

use super::config::MirrorError;
use super::node::{LEASE_NAMESPACE, new_lease, node_object, node_status_patch, renewed_lease};
use super::task::{STRATEGIC, Task};
use crate::kube::KubeError;

impl Task {
    pub(super) fn ensure_node(&mut self) -> Result<(), MirrorError> {
        if self.node_uid.is_some() {
            return Ok(());
        }
        let name = self.cfg.node_name.clone();
        let mut node = None;
        let mut existed = false;
        if self.cfg.register_node {
            let body = node_object(&name, &self.cfg.node_facts, super::wall_clock());
            match self.client.post::<Node>("/api/v1/nodes", &body) {
                Ok(n) => {
                    tracing::info!(node = %name, "registered node");
                    node = Some(n);
                }
                Err(e) if e.is_conflict() => existed = true,
                Err(e @ KubeError::Api { .. }) => {
                    self.log.failed(
                        "register-node",
                        &e.log_key(),
                        &format_args!(
                            "may not register node {name} ({e}); using the existing Node"
                        ),
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
        let node = match node {
            Some(n) => n,
            None => match self.client.get::<Node>(&format!("/api/v1/nodes/{name}")) {
                Ok(n) => n,
                Err(e) if e.is_not_found() => return Err(MirrorError::NodeMissing(name)),
                Err(e) => return Err(e.into()),
            },
        };
        if existed {
            self.update_node_labels(&node)?;
        }
        self.node_uid = node.metadata.uid;
        self.node_status_due = Instant::now();
        Ok(())
    }

    /// Registering over an existing Node: add or correct our labels (as the kubelet updates
    /// its default labels). Taints are left alone: NodeRestriction forbids a node changing them.
    fn update_node_labels(&mut self, node: &Node) -> Result<(), MirrorError> {
        let name = self.cfg.node_name.clone();
        let wanted = node_object(&name, &self.cfg.node_facts, super::wall_clock());
        let patch = label_patch(node, &wanted);
        if patch.is_empty() {
            return Ok(());
        }
        let body = serde_json::json!({ "metadata": { "labels": patch } });
        let r = self
            .client
            .patch::<Node>(&format!("/api/v1/nodes/{name}"), STRATEGIC, &body);
        self.soft("node-labels", r)?;
        Ok(())
    }

    pub(super) fn patch_node_status(&mut self) -> Result<(), MirrorError> {
        let name = self.cfg.node_name.clone();
        let path = format!("/api/v1/nodes/{name}/status");
        let body = node_status_patch(&self.cfg.node_facts, super::wall_clock());
        match self.client.patch::<Node>(&path, STRATEGIC, &body) {
            Err(e) if e.is_not_found() => {
                self.node_uid = None;
                Err(e.into())
            }
            r => {
                if let Some(n) = self.soft("node-status", r)? {
                    if n.metadata.uid.is_some() && n.metadata.uid != self.node_uid {
                        tracing::info!(
                            "node {name} was re-created; owner references follow its new UID"
                        );
                        self.node_uid = n.metadata.uid;
                    }
                }
                Ok(())
            }
        }
    }

    pub(super) fn renew_lease(&mut self) -> Result<(), MirrorError> {
        let node = self.cfg.node_name.clone();
        let secs = self.cfg.timing.lease_duration_secs;
        let path =
            format!("/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{node}");
        let current = match self.lease.take() {
            Some(l) => Some(l),
            None => match self.client.get::<Lease>(&path) {
                Ok(l) => Some(l),
                Err(e) if e.is_not_found() => None,
                r @ Err(_) => self.soft("lease", r)?,
            },
        };
        let result = match current {
            Some(l) => self
                .client
                .put::<Lease>(&path, &renewed_lease(l, &node, secs, super::wall_clock())),
            None => {
                let uid = self.node_uid.clone().unwrap_or_default();
                let body = new_lease(&node, &uid, secs, super::wall_clock());
                self.client.post(
                    &format!("/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"),
                    &body,
                )
            }
        };
        self.lease = self.soft("lease", result)?;
        Ok(())
    }
}

/// The labels of `wanted` that `current` lacks or holds with another value.
fn label_patch(current: &Node, wanted: &Node) -> BTreeMap<String, String> {
    let have = current.metadata.labels.clone().unwrap_or_default();
    let want = wanted.metadata.labels.clone().unwrap_or_default();
    want.into_iter()
        .filter(|(k, v)| have.get(k) != Some(v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Node::default()
        }
    }

    #[test]
    fn label_patch_adds_missing_and_corrects_different_values_only() {
        let current = node(&[("a", "1"), ("b", "old"), ("other", "x")]);
        let wanted = node(&[("a", "1"), ("b", "new"), ("c", "3")]);
        let patch = label_patch(&current, &wanted);
        assert_eq!(
            patch,
            [
                ("b".to_owned(), "new".to_owned()),
                ("c".to_owned(), "3".to_owned())
            ]
            .into()
        );
    }
}
