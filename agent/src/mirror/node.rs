//! The Node object podvisor registers (labels, addresses, capacity, conditions, the
//! `podvisor.io/static-only:NoSchedule` taint), its status patch and its Lease in
//! `kube-node-lease` — built as values here; `task.rs` sends them.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// The taint that keeps the scheduler away from a podvisor node unless a pod tolerates it.
pub const STATIC_ONLY_TAINT: &str = "podvisor.io/static-only";
/// The namespace of node heartbeat leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// What the node reports about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    /// Labels set at registration (on top of hostname/os/arch).
    pub labels: BTreeMap<String, String>,
    /// `(type, address)`: `InternalIP`, `Hostname`...
    pub addresses: Vec<(String, String)>,
    /// Capacity, also reported as allocatable: `cpu`, `memory`, `pods`.
    pub capacity: BTreeMap<String, String>,
    /// `status.nodeInfo.kubeletVersion`: kubeadm reads it for version-skew checks.
    pub kubelet_version: String,
    /// `status.nodeInfo.kernelVersion`.
    pub kernel_version: String,
    /// `status.nodeInfo.osImage`.
    pub os_image: String,
    /// `status.nodeInfo.machineID`.
    pub machine_id: String,
    /// `status.nodeInfo.bootID`.
    pub boot_id: String,
}

impl NodeFacts {
    /// Read the facts of this host from `/proc` and `/etc` (missing files leave fields empty).
    pub fn from_host(hostname: &str) -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mem_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| "Linux".into());
        Self {
            labels: BTreeMap::new(),
            addresses: vec![("Hostname".into(), hostname.to_owned())],
            capacity: [
                ("cpu".to_owned(), cpus.to_string()),
                ("memory".to_owned(), format!("{mem_kib}Ki")),
                ("pods".to_owned(), "110".to_owned()),
            ]
            .into(),
            kubelet_version: format!("v1.34.0+podvisor.{}", env!("CARGO_PKG_VERSION")),
            kernel_version: read("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
        }
    }
}

/// The Node object to create: labels, the static-only taint, and an initial status.
pub fn node_object(name: &str, facts: &NodeFacts, now: Timestamp) -> Node {
    let mut labels = facts.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), name.to_owned());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert(
        "kubernetes.io/arch".into(),
        std::env::consts::ARCH.replace("x86_64", "amd64"),
    );
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: Some(vec![Taint {
                key: STATIC_ONLY_TAINT.into(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            }]),
            ..NodeSpec::default()
        }),
        status: Some(node_status(facts, now)),
    }
}

/// The node status podvisor reports: Ready while it runs, no pressure conditions.
pub fn node_status(facts: &NodeFacts, now: Timestamp) -> NodeStatus {
    let capacity: BTreeMap<String, Quantity> = facts
        .capacity
        .iter()
        .map(|(k, v)| (k.clone(), Quantity(v.clone())))
        .collect();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    NodeStatus {
        addresses: Some(
            facts
                .addresses
                .iter()
                .map(|(t, a)| NodeAddress {
                    type_: t.clone(),
                    address: a.clone(),
                })
                .collect(),
        ),
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "podvisor reports no memory pressure",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "podvisor reports no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "podvisor reports no PID pressure",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "podvisor is posting ready status",
            ),
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.replace("x86_64", "amd64"),
            boot_id: facts.boot_id.clone(),
            container_runtime_version: format!("podvisor://{}", env!("CARGO_PKG_VERSION")),
            kernel_version: facts.kernel_version.clone(),
            kubelet_version: facts.kubelet_version.clone(),
            machine_id: facts.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: facts.os_image.clone(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// A strategic-merge patch of `nodes/<name>/status` (conditions merge by type).
pub fn node_status_patch(facts: &NodeFacts, now: Timestamp) -> Value {
    json!({ "status": node_status(facts, now) })
}

/// A new Lease for the node, owned by the Node so it goes away with it.
pub fn new_lease(node: &str, node_uid: &str, duration_secs: i32, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.to_owned()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.to_owned(),
                uid: node_uid.to_owned(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_owned()),
            lease_duration_seconds: Some(duration_secs),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    }
}

/// The lease renewed at `now` (keeps its resourceVersion: the PUT is an optimistic update).
pub fn renewed_lease(mut lease: Lease, node: &str, duration_secs: i32, now: Timestamp) -> Lease {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(node.to_owned());
    spec.lease_duration_seconds = Some(duration_secs);
    spec.renew_time = Some(MicroTime(now));
    lease
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> NodeFacts {
        NodeFacts {
            labels: [(
                "node-role.kubernetes.io/control-plane".to_owned(),
                String::new(),
            )]
            .into(),
            addresses: vec![("InternalIP".into(), "10.0.0.5".into())],
            capacity: [("cpu".to_owned(), "2".to_owned())].into(),
            kubelet_version: "v1.34.0".into(),
            kernel_version: String::new(),
            os_image: String::new(),
            machine_id: String::new(),
            boot_id: String::new(),
        }
    }

    #[test]
    fn node_has_taint_labels_capacity_and_ready() {
        let n = node_object("n1", &facts(), Timestamp::UNIX_EPOCH);
        let taints = n.spec.unwrap().taints.unwrap();
        assert_eq!(
            (taints[0].key.as_str(), taints[0].effect.as_str()),
            (STATIC_ONLY_TAINT, "NoSchedule")
        );
        let labels = n.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert!(labels.contains_key("node-role.kubernetes.io/control-plane"));
        let status = n.status.unwrap();
        assert_eq!(status.allocatable.unwrap()["cpu"], Quantity("2".into()));
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
    }

    #[test]
    fn lease_is_owned_by_node_and_renewal_moves_renew_time() {
        let l = new_lease("n1", "uid1", 40, Timestamp::UNIX_EPOCH);
        assert_eq!(l.metadata.owner_references.as_ref().unwrap()[0].uid, "uid1");
        let later = Timestamp::from_second(100).unwrap();
        let r = renewed_lease(l, "n1", 40, later);
        assert_eq!(r.spec.unwrap().renew_time, Some(MicroTime(later)));
    }
}
