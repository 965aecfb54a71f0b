//! Command-line clients of the local API (`ps`, `inspect`, `logs`, `events`, `exec`).

pub mod client;
pub mod commands;
pub mod exec;
pub mod table;
