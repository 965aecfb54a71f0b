//! Mirror pods: make every static pod visible in a Kubernetes API server as a read-only mirror
//! pod with live status, exactly as a kubelet does (STATIC-PODS.md §7), without ever sitting in
//! the path of supervision.
//!
//! The supervisor holds a [`MirrorHandle`] and hands it values — the static pods
//! ([`MirrorHandle::set_static_pods`]), their statuses ([`MirrorHandle::set_status`]) and
//! lifecycle events ([`MirrorHandle::record_event`]) — none of which waits for the network.
//! [`spawn`] starts the task: a thread that registers the Node, renews its Lease, lists and
//! watches the node's pods, reconciles mirrors with the pure [`decide`] and patches statuses.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod args;
mod backoff;
mod cache;
mod config;
mod decide;
mod events;
mod heartbeat;
mod input;
mod log_once;
mod node;
mod pod;
mod task;
mod watch;

pub use args::{MirrorArgs, parse_labels};
pub use backoff::Backoff;
pub use config::{MirrorConfig, MirrorError, Timing};
pub use decide::{Action, DeleteReason, DesiredMirror, ObservedPod, PodKey, decide};
pub use events::{MirrorEvent, reason};
pub use input::{MirrorHandle, StaticPodState};
pub use node::{NodeFacts, STATIC_ONLY_TAINT};
pub use pod::{HASH_ANNOTATION, MIRROR_ANNOTATION, mirror_pod};
pub use task::spawn;
pub use watch::pods_on_node_path;

/// Wall-clock time as the API's timestamp type (jiff is built without `std` here).
pub(crate) fn wall_clock() -> k8s_openapi::jiff::Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(0);
    let nanos = i32::try_from(since.subsec_nanos()).unwrap_or(0);
    k8s_openapi::jiff::Timestamp::new(secs, nanos)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}
