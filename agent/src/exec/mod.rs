//! `exec` through the local API: run a command in a pod's running container, relay its
//! stdio (optionally on a pty) and report its exit code. [`wire`] documents the protocol,
//! [`start`] resolves the container and starts the process through the runtime,
//! [`session`] is the agent's relay; the client is `crate::cli::exec`.

pub mod session;
pub mod start;
pub mod wire;
