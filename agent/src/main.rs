//! podvisor: the static-pod supervisor binary (agent, shim and CLI clients).
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use podvisor::cli::commands;

/// Run Kubernetes static pods with no containerd, runc or kubelet.
#[derive(Debug, Parser)]
#[command(name = "podvisor", version)]
struct Cli {
    /// Runtime state directory; clients find the agent's socket here.
    #[arg(long, global = true, default_value = podvisor::cli::client::DEFAULT_STATE)]
    state: PathBuf,
    #[command(subcommand)]
    command: Command,
}

/// One variant per subcommand; each lives in its own module of the library.
#[derive(Debug, Subcommand)]
enum Command {
    /// Print podvisor's version.
    Version,
    /// Run the supervisor: watch manifests, run their pods, serve the local API.
    Agent(podvisor::daemon::AgentArgs),
    /// Manage the image store: import, pull, ls, rm, prune, inspect.
    Images(podvisor::images::ImagesArgs),
    /// Show what podvisor would run for a manifest (defaulted pod, UID, QoS, OCI specs), with no side effects.
    Render(podvisor::render::RenderArgs),
    /// List pods (like `kubectl get pods`).
    Ps(commands::PsArgs),
    /// Show one pod with its status.
    Inspect(commands::InspectArgs),
    /// Print a container's log.
    Logs(commands::LogsArgs),
    /// Show recent pod events.
    Events(commands::EventsArgs),
    /// Run a command in a running container (`exec POD [-c C] [-it] -- CMD...`).
    Exec(podvisor::cli::exec::ExecArgs),
    /// The per-pod shim (started by the agent; not for direct use).
    #[command(hide = true)]
    Shim(podvisor::supervise::shim::server::ShimArgs),
}

fn main() {
    // A container init re-executes this binary: it must take over before anything else.
    podvisor_runtime::run_if_container_init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // One line with the cause chain, no backtrace: these are user-facing errors.
        eprintln!("podvisor: {e:#}");
        std::process::exit(1);
    }
}

/// `podvisor agent`, in init mode when asked or when this process is PID 1.
fn run_agent(args: &podvisor::daemon::AgentArgs, state: &std::path::Path) -> anyhow::Result<()> {
    use podvisor::init;
    // A burst of pod starts runs on as many pool threads: glibc would give each its own
    // allocator arena (up to 8 per core), each keeping freed memory. One arena serves the
    // agent's light contention. A fixed mmap threshold keeps large short-lived buffers
    // (image configs, OCI specs, API bodies) out of the heap, where they would leave holes
    // between long-lived pod records; glibc's default threshold rises to the largest such
    // buffer freed so far.
    for (param, value) in [
        (podvisor_runtime::MallocParam::ArenaMax, 1),
        (podvisor_runtime::MallocParam::MmapThreshold, 128 * 1024),
    ] {
        if let Err(e) = podvisor_runtime::mallopt(param, value) {
            eprintln!("podvisor: {e}");
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if init::under_init() {
        // The agent under podvisor's init: pods are stopped before power-off (nothing
        // would re-adopt them).
        let mut args = args.clone();
        args.stop_pods_on_exit = true;
        podvisor::daemon::run(&args, state)?;
        return Ok(());
    }
    if !(args.init || init::is_pid1()) {
        podvisor::daemon::run(args, state)?;
        return Ok(());
    }
    init::setup_system(&podvisor::daemon::node_name(args))?;
    if let Err(e) = init::supervise_agent() {
        eprintln!("podvisor: {e}");
    }
    Err(anyhow::Error::from(init::power_off()).context("power off"))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Version => println!("podvisor {}", env!("CARGO_PKG_VERSION")),
        Command::Agent(args) => run_agent(&args, &cli.state)?,
        Command::Images(args) => podvisor::images::run(args)?,
        Command::Render(args) => print!(
            "{}",
            podvisor::render::render(&args, std::path::Path::new("/var/lib/podvisor"))?
        ),
        Command::Ps(args) => commands::ps(&args, &cli.state, &mut out)?,
        Command::Inspect(args) => commands::inspect(&args, &cli.state, &mut out)?,
        Command::Logs(args) => commands::logs(&args, &cli.state, &mut out)?,
        Command::Events(args) => commands::events(&args, &cli.state, &mut out)?,
        Command::Exec(args) => {
            let code = podvisor::cli::exec::run(&args, &cli.state, &mut out)?;
            drop(out);
            // The command's exit code, as kubectl and crictl exit with it.
            std::process::exit(code.clamp(0, 255));
        }
        Command::Shim(args) => podvisor::supervise::shim::server::run_shim(args.config(cli.state))?,
    }
    Ok(())
}
