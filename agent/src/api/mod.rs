//! The local API (HTTP/JSON on a unix socket) and the status store it serves.

pub mod metrics;
pub mod query;
pub mod server;
pub mod store;
