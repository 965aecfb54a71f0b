//! podvisor-runtime: executes one container described by an OCI runtime spec.
//!
//! It knows nothing of pods or images: the agent hands it a bundle (an
//! `oci_spec::runtime::Spec` as `config.json` plus a root filesystem), exactly as
//! containerd hands one to runc.
//!
//! # The one rule for binaries
//!
//! Every binary that creates containers must call [`run_if_container_init`] first thing in
//! `main`, before starting any thread:
//!
//! ```no_run
//! podvisor_runtime::run_if_container_init();
//! // ... the binary's own work
//! ```
//!
//! The runtime never runs Rust code between fork and exec in the (possibly multi-threaded)
//! caller: `clone3` (`CLONE_INTO_CGROUP | CLONE_PIDFD`, plus the new namespaces) starts a
//! child that only re-executes `/proc/self/exe`. That fresh, single-threaded process is
//! the container init: [`run_if_container_init`] sees the `_PODVISOR_INIT_FD` variable,
//! reads its whole [`plan::InitPlan`] (computed from the spec, a pure function) from a
//! socket, performs the steps (mounts, pivot_root, devices, masked/readonly paths,
//! hostname, sysctl, rlimits, user, capabilities, no_new_privs, seccomp last), waits for
//! `start` on the exec fifo, and execs the workload. A failing step comes back as
//! [`Error::Init`] naming the step and errno, and the half-built container is removed.
//!
//! # Library use
//!
//! [`container::create`] takes caller-provided stdio descriptors and returns the init's pid
//! and an owned pidfd obtained atomically at clone time, so even an instant exit is seen.
//! [`container::start`], [`container::kill`], [`container::delete`] (`cgroup.kill`),
//! [`container::state`], [`container::exec`], [`container::pause`]/[`container::resume`]
//! (cgroup freeze) and [`container::stats`] (including `memory.events` `oom_kill`) operate
//! on the state kept in `<root>/<id>/state.json`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod caps;
pub mod cgroup;
pub mod channel;
pub mod cli;
pub mod container;
mod error;
pub mod hooks;
mod init;
pub mod plan;
pub mod seccomp;
pub mod signal;
pub mod state;
mod sys;

pub use error::{Error, Result};
pub use init::run_if_container_init;
pub use sys::SockFilter;
