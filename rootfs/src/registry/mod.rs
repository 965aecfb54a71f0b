//! Pulling images with the OCI distribution API.

pub mod auth;
mod client;
mod pull;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub use client::RegistryClient;

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Registries (`host[:port]`) spoken to over plain HTTP. Everything else is HTTPS.
    pub insecure_registries: Vec<String>,
    /// Mirrors per registry (`docker.io` → `["mirror.local:5000"]`), tried in order before
    /// the registry itself, as containerd's `hosts.toml` mirrors are.
    pub mirrors: HashMap<String, Vec<String>>,
    /// Extra PEM CA bundles to trust (the system bundle is always trusted when present).
    pub ca_files: Vec<PathBuf>,
    /// docker-style `config.json` files to take credentials from; the first that exists wins.
    pub credential_files: Vec<PathBuf>,
    /// Retries of a request after a transient failure.
    pub retries: u32,
    /// Delay before the first retry; doubled each time.
    pub retry_delay: Duration,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            insecure_registries: Vec::new(),
            mirrors: HashMap::new(),
            ca_files: Vec::new(),
            credential_files: auth::CredentialStore::default_paths(),
            retries: 3,
            retry_delay: Duration::from_millis(500),
        }
    }
}

/// Receives pull progress; the CLI draws bars on a terminal and logs otherwise.
pub trait Progress {
    /// A blob download starts (`size` bytes).
    fn start(&self, _digest: &str, _size: u64) {}
    /// `n` more bytes of `digest` arrived.
    fn advance(&self, _digest: &str, _n: u64) {}
    /// `digest` is complete and verified, or was already present (`skipped`).
    fn done(&self, _digest: &str, _skipped: bool) {}
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
