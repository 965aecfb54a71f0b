//! Liveness, readiness and startup probes, run the way the kubelet runs them, without systemd.
//!
//! - [`spec`]: what a probe asks for (a defaulted `v1.Probe` as plain values);
//!   [`convert`] builds it from the Pod schema;
//! - [`state`]: the pure per-container state machine (gating, thresholds, restart decisions);
//! - [`outcome`]: one handler run's result, and the kubelet's retry of prober errors;
//! - handlers: [`http`], [`tcp`], [`grpc`] (with [`hpack`]), [`exec`] (through the
//!   [`exec::ExecRunner`] trait the supervisor implements with the runtime's exec);
//! - [`resolve`]: name lookups of `tcpSocket`/`grpc` bounded by the probe's deadline;
//! - [`netns`]: run network handlers inside a pod's network namespace; [`runner`] picks the
//!   handler and the namespace for one probe;
//! - [`engine`]: one scheduler thread (a min-heap of due probes) and a bounded worker pool.
//!
//! Wiring (for the supervisor): build a [`state::ContainerProbes`] per container with
//! [`convert::container_probes`], [`engine::Engine::add`] it with a [`runner::ProbeTarget`]
//! (pod IP, netns path unless hostNetwork, named ports), tell the engine when the container
//! runs and exits, and act on the [`engine::ProbeReport`]s: record events, set
//! `started`/`ready` (and `ContainersReady`/`Ready`), and kill on `RestartContainer` with its
//! grace period, then restart under the restart policy.

pub mod convert;
pub mod engine;
pub mod exec;
pub mod grpc;
pub mod hpack;
pub mod http;
pub mod netns;
pub mod outcome;
mod pool;
pub mod resolve;
pub mod runner;
pub mod spec;
pub mod state;
pub mod tcp;
