//! `podvisor-oci`: runc's command line over this crate.
//!
//! Parsing ([`Cli`]) is separate from running ([`run`]) so the accepted command lines are
//! table-tested. Global flags may come before or after the subcommand, options before or
//! after the container id, as with runc.

mod commands;
mod console;
mod features;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use commands::run;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// `time=... level=error msg=...`
    #[default]
    Text,
    /// `{"level":"error","msg":"...","time":"..."}`
    Json,
}

/// `--cgroup-limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LimitsArg {
    /// A limit whose controller is missing fails the create.
    #[default]
    Strict,
    /// Such limits are skipped with a warning on stderr.
    BestEffort,
}

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "podvisor-oci",
    version,
    about = "Run OCI containers (runc-compatible command line)"
)]
pub struct Cli {
    /// State directory.
    #[arg(long, global = true, default_value = crate::container::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Write errors to this file instead of only stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of the log file.
    #[arg(long, global = true, value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// Use systemd's cgroup driver (refused: cgroupfs v2 only).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility; ignored.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for runc compatibility (`false`/`auto`); `true` is refused.
    #[arg(long, global = true)]
    pub rootless: Option<String>,
    /// What to do when a limit's cgroup controller is missing.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "PODVISOR_CGROUP_LIMITS"
    )]
    pub cgroup_limits: LimitsArg,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by `create` and `run`.
#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct CreateArgs {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Write the init's pid here.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root (initramfs roots).
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility; no session keyring is created anyway.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many descriptors after stdio (3, 4, ...) to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container (set up, waiting for start).
    Create(CreateArgs),
    /// Start a created container.
    Start {
        /// Container id.
        id: String,
    },
    /// Create, start and wait for a container; exit with its status.
    Run {
        /// Create options.
        #[command(flatten)]
        create: CreateArgs,
        /// Return after start instead of waiting.
        #[arg(long, short = 'd')]
        detach: bool,
        /// Do not delete the container after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Print the OCI state.
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal (default TERM) to the init, or all processes.
    Kill {
        /// Container id.
        id: String,
        /// Signal name or number.
        signal: Option<String>,
        /// Signal every process in the container.
        #[arg(long, short = 'a')]
        all: bool,
    },
    /// Delete a container.
    Delete {
        /// Container id.
        id: String,
        /// Kill it first if it is running.
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Run a process in a running container.
    Exec(ExecArgs),
    /// List containers.
    List {
        /// `table` or `json`.
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        /// Only ids.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Processes of a container.
    Ps {
        /// `table` or `json`.
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        /// Container id.
        id: String,
        /// Options for ps(1) (default `-ef`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze a container.
    Pause {
        /// Container id.
        id: String,
    },
    /// Thaw a container.
    Resume {
        /// Container id.
        id: String,
    },
    /// Print what this runtime supports (JSON).
    Features,
    /// Print cgroup statistics (`--stats`) as JSON.
    Events {
        /// Container id.
        id: String,
        /// Print statistics once.
        #[arg(long)]
        stats: bool,
        /// Accepted for runc compatibility.
        #[arg(long)]
        interval: Option<String>,
    },
}

/// `exec` options.
#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct ExecArgs {
    /// Container id.
    pub id: String,
    /// Command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// Process JSON file (overrides the command and options).
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    /// Allocate a pty (needs --console-socket).
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Unix socket that receives the pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Working directory.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Extra environment (`KEY=value`).
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// `uid[:gid]`.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Supplementary group ids.
    #[arg(long = "additional-gids", short = 'g')]
    pub additional_gids: Vec<u32>,
    /// Extra capabilities.
    #[arg(long = "cap", short = 'c')]
    pub caps: Vec<String>,
    /// Set no_new_privs.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Return after the process started.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Write the process's pid here.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Pass this many descriptors after stdio.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for runc compatibility; ignored.
    #[arg(long)]
    pub process_label: Option<String>,
    /// Accepted for runc compatibility; ignored.
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Accepted for runc compatibility.
    #[arg(long)]
    pub ignore_paused: bool,
}

/// Parse, run, report: the whole `main` of `podvisor-oci`. Returns the exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            log_error(&cli, &msg);
            eprintln!("podvisor-oci: {msg}");
            1
        }
    }
}

fn log_error(cli: &Cli, msg: &str) {
    let Some(path) = &cli.log else { return };
    let time = crate::state::now_rfc3339();
    let line = match cli.log_format {
        LogFormat::Json => {
            serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
        }
        LogFormat::Text => format!("time=\"{time}\" level=error msg={msg:?}"),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
