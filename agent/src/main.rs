//! podvisor: the static-pod supervisor binary (agent, shim and CLI clients).
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

/// Run Kubernetes static pods with no containerd, runc or kubelet.
#[derive(Debug, Parser)]
#[command(name = "podvisor", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One variant per subcommand; each lives in its own module of the library.
#[derive(Debug, Subcommand)]
enum Command {
    /// Print podvisor's version.
    Version,
    /// Manage the image store: import, pull, ls, rm, prune, inspect.
    Images(podvisor::images::ImagesArgs),
    /// Show what podvisor would run for a manifest (defaulted pod, UID, QoS, OCI specs), with no side effects.
    Render(podvisor::render::RenderArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("podvisor {}", env!("CARGO_PKG_VERSION")),
        Command::Images(args) => podvisor::images::run(args)?,
        Command::Render(args) => print!(
            "{}",
            podvisor::render::render(&args, std::path::Path::new("/var/lib/podvisor"))?
        ),
    }
    Ok(())
}
