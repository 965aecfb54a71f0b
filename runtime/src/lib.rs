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
//!
//! ```no_run
//! use std::os::fd::AsFd;
//! use podvisor_runtime::container::{self, CgroupLimits, CreateOptions, Stdio};
//!
//! # fn main() -> podvisor_runtime::Result<()> {
//! let (out_r, out_w) = rustix::pipe::pipe().expect("pipe"); // the shim turns out_r into logs
//! let null = std::fs::File::open("/dev/null").expect("/dev/null");
//! let root = std::path::PathBuf::from("/run/podvisor/runtime");
//! let created = container::create(&CreateOptions {
//!     root: root.clone(),
//!     id: "etcd".into(),
//!     bundle: "/var/lib/podvisor/pods/uid/etcd".into(),
//!     stdio: Stdio { stdin: null.as_fd(), stdout: out_w.as_fd(), stderr: out_w.as_fd() },
//!     console_socket: None,
//!     preserve_fds: Vec::new(),
//!     no_pivot: false,
//!     cgroup_limits: CgroupLimits::Strict,
//! })?;
//! drop(out_w);
//! container::start(&root, "etcd")?;                      // poststart warnings returned
//! container::wait_exec("etcd", created.watch.as_fd())?;  // the workload's exec succeeded
//! let exit = container::wait(&root, "etcd", created.pidfd.as_fd(), None)?; // Code/Signal/OomKilled
//! container::delete(&root, "etcd", true)?;
//! # let _ = (exit, out_r); Ok(())
//! # }
//! ```
//!
//! Layout of a container's state directory: `state.json` (atomically replaced) and, until
//! `start`, `exec.fifo` (the init blocks opening it for writing; `start` opens it for
//! reading). The cgroup is `<cgroup2 mount>/<linux.cgroupsPath>` (default
//! `podvisor/<id>`).

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
pub use sys::{MallocParam, ReexecChild, malloc_trim, mallopt, spawn_reexec, take_inherited_pipe};
