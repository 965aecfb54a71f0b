//! Shared helpers for podvisor's integration tests.
#![forbid(unsafe_code)]
