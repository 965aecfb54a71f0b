//! A small, synchronous Kubernetes API client: kubeconfig loading, TLS with the cluster CA and
//! rotating client certificates, JSON requests and the API's `Status` errors.
//!
//! It is what the mirror task (`crate::mirror`) talks through; nothing here knows about pods.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod client;
mod error;
mod kubeconfig;

pub use client::{ApiClient, ClientOptions};
pub use error::{ApiStatus, KubeError};
pub use kubeconfig::{ClusterAccess, Credential, Source};
