//! `podvisor agent` command-line flags (names from ARCHITECTURE.md's Interfaces).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::supervise::backoff::BackoffConfig;

/// What a pod asking for a limit whose cgroup controller is missing gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CgroupLimits {
    /// The container fails to start with a clear reason.
    Strict,
    /// The limit is skipped (development hosts with a hybrid hierarchy).
    BestEffort,
}

/// Flags of `podvisor agent`.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Manifest directory (or one manifest file).
    #[arg(long, value_parser = absolute_path, default_value = "/etc/kubernetes/manifests")]
    pub manifests: PathBuf,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Image store and pod directories.
    #[arg(long, value_parser = absolute_path, default_value = "/var/lib/podvisor")]
    pub root: PathBuf,
    /// CRI log directory.
    #[arg(long, value_parser = absolute_path, default_value = "/var/log/pods")]
    pub log_dir: PathBuf,
    /// The API server flags (`--kubeconfig` enables mirror pods; `--node-ip` is also the
    /// hostIP pods see).
    #[command(flatten)]
    pub mirror: crate::mirror::MirrorArgs,
    /// Missing-controller policy.
    #[arg(long, value_enum, default_value = "strict")]
    pub cgroup_limits: CgroupLimits,
    /// The cgroup (relative to the cgroup2 root) under which `pods/` is made.
    #[arg(long, default_value = "/podvisor")]
    pub cgroup_parent: String,
    /// Maximum number of processes (threads) per pod, like the kubelet's `--pod-max-pids`:
    /// `pids.max` of the pod cgroup and of each container's; -1 (default) for no limit.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub pod_max_pids: i64,
    /// Stop every pod when the agent exits (default: leave them running for the next agent).
    #[arg(long)]
    pub stop_pods_on_exit: bool,
    /// Run as the system's init: mount /proc, /sys, /dev, /run, cgroup2, reap orphans,
    /// power off on SIGTERM (implied when podvisor is PID 1).
    #[arg(long)]
    pub init: bool,
    /// First restart delay after a crash (kubelet: 10s).
    #[arg(long, value_parser = humantime_secs, default_value = "10s")]
    pub backoff_initial: Duration,
    /// Longest restart delay (kubelet: 300s).
    #[arg(long, value_parser = humantime_secs, default_value = "300s")]
    pub backoff_max: Duration,
    /// A container that ran this long resets its backoff (kubelet: 600s).
    #[arg(long, value_parser = humantime_secs, default_value = "600s")]
    pub backoff_reset: Duration,
    /// Full manifest rescan period.
    #[arg(long, value_parser = humantime_secs, default_value = "20s")]
    pub rescan_interval: Duration,
    /// Registries spoken to over plain HTTP (`host[:port]`).
    #[arg(long)]
    pub insecure_registry: Vec<String>,
}

impl AgentArgs {
    /// The restart backoff these flags describe.
    pub fn backoff(&self) -> BackoffConfig {
        BackoffConfig {
            initial: self.backoff_initial,
            max: self.backoff_max,
            reset_after: self.backoff_reset,
        }
    }
}

/// Makes a path flag absolute against the agent's working directory when it is given: the
/// paths derived from it end up in bundles (`root.path`), shim arguments and state files that
/// are read from other directories, where a relative path would mean something else.
pub fn absolute_path(text: &str) -> Result<PathBuf, String> {
    std::path::absolute(text).map_err(|e| format!("{text:?}: {e}"))
}

/// Parses `250ms`, `10s`, `5m` or a bare number of seconds.
pub fn humantime_secs(text: &str) -> Result<Duration, String> {
    crate::api::query::parse_duration(text)
        .or_else(|| text.parse::<f64>().ok().map(Duration::from_secs_f64))
        .ok_or_else(|| format!("not a duration: {text:?} (use 250ms, 10s, 5m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_or_as_seconds() {
        assert_eq!(humantime_secs("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(humantime_secs("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(humantime_secs("2"), Ok(Duration::from_secs(2)));
        assert!(humantime_secs("soon").is_err());
    }

    #[test]
    fn path_flags_become_absolute() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute_path("root").unwrap(), cwd.join("root"));
        assert_eq!(
            absolute_path("/var/lib/x").unwrap(),
            PathBuf::from("/var/lib/x")
        );
        assert!(absolute_path("").is_err());
    }
}
