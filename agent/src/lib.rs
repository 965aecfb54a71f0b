//! podvisor: manifests, pods, supervision, shim, probes, logs, local API, mirror pods and CLI.
//!
//! The binary (`main.rs`) is a thin command-line front end over these modules, so the
//! integration tests in `tests/` can drive the same code.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::type_complexity))]

pub mod api;
pub mod cli;
pub mod daemon;
pub mod exec;
pub mod images;
pub mod init;
pub mod kube;
pub mod logs;
pub mod manifest;
pub mod mirror;
pub mod order;
pub mod pod;
pub mod probe;
pub mod render;
pub mod supervise;
pub mod translate;
