//! The mirror task's configuration (node identity, intervals, limits) and its error type.

use std::time::Duration;

use super::node::NodeFacts;
use crate::kube::KubeError;

/// Intervals and limits; `Default` gives the kubelet's values.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Re-send a status the API still does not show after this long (kubelet: 10 s).
    pub status_resend: Duration,
    /// Full re-list of the node's pods even while the watch runs.
    pub resync: Duration,
    /// Lease renewal period (kubelet: 10 s) and the lease duration announced (40 s).
    pub lease_renew: Duration,
    /// `spec.leaseDurationSeconds`.
    pub lease_duration_secs: i32,
    /// Node status heartbeat period.
    pub node_status: Duration,
    /// Backoff after a failed pass: floor and cap.
    pub backoff_min: Duration,
    /// Backoff cap.
    pub backoff_max: Duration,
    /// `timeoutSeconds` asked of each watch call.
    pub watch_timeout: Duration,
    /// Events sent at once, then one per `event_interval`.
    pub event_burst: u32,
    /// Event token refill period.
    pub event_interval: Duration,
    /// Distinct events held while the API server is unreachable (oldest dropped first).
    pub event_queue: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            status_resend: Duration::from_secs(10),
            resync: Duration::from_secs(60),
            lease_renew: Duration::from_secs(10),
            lease_duration_secs: 40,
            node_status: Duration::from_secs(60),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            watch_timeout: Duration::from_secs(300),
            event_burst: 25,
            event_interval: Duration::from_secs(1),
            event_queue: 256,
        }
    }
}

/// What the mirror task needs to know about its node.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// `--node-name`.
    pub node_name: String,
    /// `--register-node`: create the Node if it is missing (default on with a kubeconfig).
    pub register_node: bool,
    /// Labels, addresses, capacity... reported for the Node.
    pub node_facts: NodeFacts,
    /// Intervals and limits.
    pub timing: Timing,
}

/// Why a pass of the mirror task stopped early; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The API call failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// There is no Node object, and we may not (or were told not to) create it.
    #[error(
        "node {0} does not exist in the API server and podvisor did not register it \
         (--register-node is off or the API refused): mirror pods need the Node, create it \
         or allow registration"
    )]
    NodeMissing(String),
    /// The mirror thread could not be started.
    #[error("start the mirror thread: {0}")]
    Spawn(std::io::Error),
}

impl MirrorError {
    pub(crate) fn key(&self) -> String {
        match self {
            Self::Kube(e) => e.log_key(),
            Self::NodeMissing(_) => "node-missing".into(),
            Self::Spawn(e) => format!("spawn:{e}"),
        }
    }
}
