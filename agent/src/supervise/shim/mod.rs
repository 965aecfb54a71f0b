//! The per-pod shim: the protocol, the shim process's event loop and the agent's client.

pub mod client;
pub mod config;
pub mod deadline;
pub mod handle;
pub mod mux;
pub mod placement;
pub mod protocol;
pub mod reaper;
pub mod server;
