//! Shared code for podvisor's integration tests: the in-container probe's report format, the
//! busybox bundle fixtures, a driver for any runc-compatible runtime binary, and the privileged
//! runtime checks that both the `privileged` test binary and `podvisor-oci-compare` run.
#![forbid(unsafe_code)]

pub mod cases;
pub mod compare;
pub mod fixture;
pub mod report;
pub mod runner;
pub mod runtime;
pub mod spec;
