//! podvisor: the static-pod supervisor binary (agent, shim and CLI clients).
#![forbid(unsafe_code)]

use clap::Parser;

/// Run Kubernetes static pods with no containerd, runc or kubelet.
#[derive(Debug, Parser)]
#[command(name = "podvisor", version)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
