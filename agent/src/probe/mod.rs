//! Liveness, readiness and startup probes, run the way the kubelet runs them, without systemd.
//!
//! - [`spec`]: what a probe asks for (defaulted `v1.Probe` as plain values);
//! - [`state`]: the pure per-container state machine (thresholds, gating, restart decisions);
//! - [`outcome`]: one handler run's result, and the kubelet's retry of prober errors;
//! - handlers: [`http`], [`tcp`], [`grpc`], [`exec`]; [`netns`] runs network handlers inside a
//!   pod's network namespace;
//! - [`engine`]: one scheduler thread (a min-heap of due probes) and a bounded worker pool.

pub mod engine;
pub mod exec;
pub mod grpc;
pub mod hpack;
pub mod http;
pub mod netns;
pub mod outcome;
pub mod runner;
pub mod spec;
pub mod state;
pub mod tcp;
