//! Supervision building blocks: restart policy and backoff, exit records, kubelet-style
//! status, per-pod state on disk, pod events and the shared status store.
//!
//! Decisions here are pure (time is an argument); the reconcile loop and the shim
//! interpret them.

pub mod adopt;
pub mod backoff;
pub mod cgroup_tree;
pub mod child;
pub mod clock;
pub mod events;
pub mod exit;
pub mod hooks;
pub mod phase;
pub mod podplan;
pub mod policy;
pub mod pool;
pub mod pull_backoff;
pub mod reconcile;
pub mod record;
pub mod shim;
pub mod state;
pub mod status;
pub mod stop;
pub mod supervisor;
pub mod termination;
pub mod worker;
