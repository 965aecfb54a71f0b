//! Command-line clients of the local API (`ps`, `inspect`, `logs`, `events`).

pub mod client;
pub mod commands;
pub mod table;
