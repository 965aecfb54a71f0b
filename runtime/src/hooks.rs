//! OCI hooks: run a program with the container state on stdin, under its timeout.

use std::io::Write;
use std::process::{Command, Stdio};

use oci_spec::runtime::Hook;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One hook, as the spec gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookSpec {
    /// Absolute path of the program.
    pub path: String,
    /// Full argv (argv[0] included); empty means `[path]`.
    pub args: Vec<String>,
    /// Environment (`KEY=value`).
    pub env: Vec<String>,
    /// Timeout in seconds.
    pub timeout: Option<u32>,
}

impl From<&Hook> for HookSpec {
    fn from(h: &Hook) -> Self {
        HookSpec {
            path: h.path().to_string_lossy().into_owned(),
            args: h.args().clone().unwrap_or_default(),
            env: h.env().clone().unwrap_or_default(),
            timeout: h.timeout().and_then(|t| u32::try_from(t).ok()),
        }
    }
}

/// Convert a list of spec hooks.
pub fn specs(hooks: Option<&Vec<Hook>>) -> Vec<HookSpec> {
    hooks
        .map(|v| v.iter().map(HookSpec::from).collect())
        .unwrap_or_default()
}

/// Run `hooks` in order with `state` (OCI state JSON) on stdin; the first failure stops
/// the list and is returned naming `kind` and the hook.
pub fn run_hooks(kind: &'static str, hooks: &[HookSpec], state: &str) -> Result<()> {
    for h in hooks {
        run_hook(kind, h, state)?;
    }
    Ok(())
}

/// Run every hook of a kind whose failures are only warnings (`poststart`, `poststop`: the
/// spec says the lifecycle continues); returns one message per failed hook.
pub fn run_hooks_warn(kind: &'static str, hooks: &[HookSpec], state: &str) -> Vec<String> {
    hooks
        .iter()
        .filter_map(|h| run_hook(kind, h, state).err().map(|e| e.to_string()))
        .collect()
}

fn run_hook(kind: &'static str, h: &HookSpec, state: &str) -> Result<()> {
    let fail = |reason: String| Error::Hook {
        kind,
        path: h.path.clone(),
        reason,
    };
    let mut cmd = Command::new(&h.path);
    if let Some((arg0, rest)) = h.args.split_first() {
        use std::os::unix::process::CommandExt;
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in &h.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(format!("spawn: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state.as_bytes());
    }
    if let Some(secs) = h.timeout {
        let pid = Pid::from_raw(child.id() as i32)
            .ok_or_else(|| fail("spawned with pid 0".to_string()))?;
        let pidfd =
            pidfd_open(pid, PidfdFlags::empty()).map_err(|e| fail(format!("pidfd_open: {e}")))?;
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        let limit = Timespec {
            tv_sec: i64::from(secs),
            tv_nsec: 0,
        };
        let n = poll(&mut fds, Some(&limit)).map_err(|e| fail(format!("poll: {e}")))?;
        if n == 0 {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("timed out after {secs}s")));
        }
    }
    let status = child.wait().map_err(|e| fail(format!("wait: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(fail(format!("exited with {status}")))
    }
}
