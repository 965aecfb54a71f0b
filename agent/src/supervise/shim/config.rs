//! How a shim is configured: the `podvisor shim` flags the agent passes and the
//! resulting configuration.

use std::path::PathBuf;

use podvisor_runtime::container::CgroupLimits;

use crate::logs::file::RotateConfig;

/// How the shim is set up.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    /// The agent's state directory (`--state`).
    pub state_root: PathBuf,
    /// The pod's UID.
    pub uid: String,
    /// The runtime's state root.
    pub runtime_root: PathBuf,
    /// Log rotation.
    pub rotate: RotateConfig,
    /// Missing-controller policy for the runtime.
    pub cgroup_limits: CgroupLimits,
}

/// Options of `podvisor shim` as the agent passes them.
#[derive(Debug, Clone, clap::Args)]
pub struct ShimArgs {
    /// The pod's UID.
    #[arg(long)]
    pub uid: String,
    /// The runtime's state root.
    #[arg(long, default_value = podvisor_runtime::container::DEFAULT_ROOT)]
    pub runtime_root: PathBuf,
    /// Rotate a container log when it would exceed this many bytes.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub log_max_size: u64,
    /// Log files kept per container run.
    #[arg(long, default_value_t = 5)]
    pub log_max_files: usize,
    /// Skip limits whose cgroup controller is missing instead of failing.
    #[arg(long)]
    pub cgroup_best_effort: bool,
}

impl ShimArgs {
    /// The shim's configuration under state directory `state_root`.
    pub fn config(&self, state_root: PathBuf) -> ShimConfig {
        ShimConfig {
            state_root,
            uid: self.uid.clone(),
            runtime_root: self.runtime_root.clone(),
            rotate: RotateConfig {
                max_size: self.log_max_size,
                max_files: self.log_max_files,
            },
            cgroup_limits: if self.cgroup_best_effort {
                CgroupLimits::BestEffort
            } else {
                CgroupLimits::Strict
            },
        }
    }
}
