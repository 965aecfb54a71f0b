//! Container logs in the CRI format: writing them from pipes (in the shim) and reading
//! them back (`podvisor logs`, the local API).

pub mod file;
pub mod format;
pub mod pump;
pub mod reader;
