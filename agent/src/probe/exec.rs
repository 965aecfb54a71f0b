//! The `exec` handler. Running a command inside a container belongs to the runtime (its
//! namespaces, cgroup, user, capabilities and seccomp), so the engine only sees the
//! [`ExecRunner`] trait; the supervisor implements it with the runtime's exec. [`HostExec`]
//! runs the command as a plain host process: the reference implementation the tests use,
//! with the same contract (combined output capped at 10 KiB, timeout enforced, the process
//! group killed on timeout).

use std::fmt::Debug;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{
    Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, kill_process_group, pidfd_open,
    pidfd_send_signal, waitid,
};

use super::outcome::Outcome;

/// Bytes of combined stdout+stderr kept (the kubelet's exec prober `maxReadLength`).
pub const MAX_OUTPUT_BYTES: usize = 10 * 1024;

/// How one exec ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecResult {
    /// The command exited (a signal counts as a non-zero code); output is combined and capped.
    Exited {
        /// Exit status; 128+N for a signal.
        code: i32,
        /// stdout and stderr interleaved, at most [`MAX_OUTPUT_BYTES`].
        output: Vec<u8>,
    },
    /// It ran past the timeout and was killed.
    TimedOut,
    /// It could not be run (no such container, exec setup failed): a prober error.
    Failed(String),
}

/// Runs a probe command in a container; implemented by the supervisor over the runtime.
pub trait ExecRunner: Send + Sync + Debug {
    /// Runs `command` in container `container_id`, killing it after `timeout`.
    fn run(&self, container_id: &str, command: &[String], timeout: Duration) -> ExecResult;
}

/// The kubelet's reading of an exec result (exec probe timeouts count as failures, the
/// `ExecProbeTimeout` behaviour that is the default since 1.20).
pub fn outcome(command: &[String], timeout: Duration, result: ExecResult) -> Outcome {
    match result {
        ExecResult::Exited { code: 0, output } => {
            Outcome::Success(String::from_utf8_lossy(&output).into_owned())
        }
        ExecResult::Exited { output, .. } => {
            Outcome::Failure(String::from_utf8_lossy(&output).into_owned())
        }
        ExecResult::TimedOut => Outcome::Failure(format!(
            "command {:?} timed out after {}s",
            command.join(" "),
            timeout.as_secs()
        )),
        ExecResult::Failed(e) => Outcome::Error(e),
    }
}

/// Runs probe commands as host processes (for tests and host-level checks).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostExec;

impl ExecRunner for HostExec {
    fn run(&self, _container_id: &str, command: &[String], timeout: Duration) -> ExecResult {
        match run_host(command, timeout) {
            Ok(r) => r,
            Err(e) => ExecResult::Failed(e),
        }
    }
}

fn run_host(command: &[String], timeout: Duration) -> Result<ExecResult, String> {
    let deadline = Instant::now() + timeout;
    let (program, args) = command.split_first().ok_or("exec probe: empty command")?;
    let (reader, writer) = pipe_with(PipeFlags::CLOEXEC)
        .map_err(|e| format!("exec probe: create output pipe: {e}"))?;
    let (reader, writer) = (File::from(reader), File::from(writer));
    let writer2 = writer
        .try_clone()
        .map_err(|e| format!("exec probe: dup output pipe: {e}"))?;
    let mut cmd = Command::new(program);
    // Its own process group, so a timeout kills the shell and everything it started.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn()
        .map_err(|e| format!("exec probe: start {program:?}: {e}"))?;
    let pid = Pid::from_child(&child);
    let pidfd = pidfd_open(pid, PidfdFlags::empty())
        .map_err(|e| format!("exec probe: pidfd_open for {program:?}: {e}"))?;
    // `collect` reaps through the pidfd; the std handle is only dropped (which does not wait).
    drop(child);
    collect(&pidfd, reader, deadline, || {
        // The group id is the child's pid (process_group(0)), still unreaped here.
        let _ = kill_process_group(pid, Signal::KILL);
    })
}

/// Waits for a started probe process: reads its combined output (capped at
/// [`MAX_OUTPUT_BYTES`]) from `output` (the read end; every write end must already be closed
/// in this process) until it exits or `deadline` passes. On timeout it calls `kill_group`,
/// sends SIGKILL through the pidfd, and reaps. The process must be a child of the caller
/// (reaped with `waitid(P_PIDFD)`): the runtime's exec returns exactly such a pidfd, so the
/// supervisor's [`ExecRunner`] can use this as is.
pub fn collect(
    pidfd: &OwnedFd,
    output: File,
    deadline: Instant,
    kill_group: impl FnOnce(),
) -> Result<ExecResult, String> {
    let mut out = Vec::new();
    let mut reader = Some(output);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            kill_group();
            let _ = pidfd_send_signal(pidfd, Signal::KILL);
            let _ = waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
            return Ok(ExecResult::TimedOut);
        }
        let ts = Timespec {
            tv_sec: remaining.as_secs() as i64,
            tv_nsec: i64::from(remaining.subsec_nanos()),
        };
        let (pipe_ready, exited) = {
            let mut fds = vec![PollFd::new(pidfd, PollFlags::IN)];
            if let Some(r) = &reader {
                fds.push(PollFd::from_borrowed_fd(r.as_fd(), PollFlags::IN));
            }
            match poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(format!("exec probe: poll: {e}")),
            }
            (
                fds.get(1).is_some_and(|f| !f.revents().is_empty()),
                !fds[0].revents().is_empty(),
            )
        };
        if let (true, Some(r)) = (pipe_ready, &mut reader) {
            let mut chunk = [0u8; 4096];
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => reader = None,
                Ok(n) => keep_capped(&mut out, &chunk[..n]),
            }
        }
        if exited {
            let status = waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED)
                .map_err(|e| format!("exec probe: waitid: {e}"))?;
            drain_available(reader.as_mut(), &mut out);
            let code = status.map_or(-1, |s| {
                s.exit_status()
                    .unwrap_or_else(|| 128 + s.terminating_signal().unwrap_or(0))
            });
            return Ok(ExecResult::Exited { code, output: out });
        }
    }
}

fn keep_capped(output: &mut Vec<u8>, chunk: &[u8]) {
    let room = MAX_OUTPUT_BYTES.saturating_sub(output.len());
    output.extend_from_slice(&chunk[..chunk.len().min(room)]);
}

/// After the command exited, takes what is already in the pipe without waiting for EOF
/// (a background grandchild may hold the write end open).
fn drain_available(reader: Option<&mut File>, output: &mut Vec<u8>) {
    let Some(r) = reader else { return };
    loop {
        let mut fds = [PollFd::from_borrowed_fd(r.as_fd(), PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if !matches!(poll(&mut fds, Some(&zero)), Ok(1)) {
            return;
        }
        let mut chunk = [0u8; 4096];
        match r.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => keep_capped(output, &chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn exit_status_decides_and_output_is_combined() {
        let ok = HostExec.run("c", &sh("echo out; echo err >&2"), Duration::from_secs(5));
        let ExecResult::Exited { code: 0, output } = ok else {
            panic!("{ok:?}")
        };
        let text = String::from_utf8_lossy(&output);
        assert!(text.contains("out") && text.contains("err"), "{text}");
        let bad = HostExec.run("c", &sh("echo sick; exit 3"), Duration::from_secs(5));
        assert_eq!(
            bad,
            ExecResult::Exited {
                code: 3,
                output: b"sick\n".to_vec()
            }
        );
        assert_eq!(
            outcome(&sh(""), Duration::from_secs(1), bad),
            Outcome::Failure("sick\n".into())
        );
    }

    #[test]
    fn exec_probe_that_hangs_times_out_and_is_killed() {
        let marker = tempfile::NamedTempFile::new().expect("tempfile");
        let path = marker.path().display().to_string();
        // A grandchild that would touch the marker after 2 s: it must die with the group.
        let script = format!("(sleep 2; echo alive > {path}) & sleep 30");
        let started = Instant::now();
        let result = HostExec.run("c", &sh(&script), Duration::from_millis(300));
        let took = started.elapsed();
        assert_eq!(result, ExecResult::TimedOut);
        assert!(
            took < Duration::from_secs(2),
            "timeout enforced, took {took:?}"
        );
        let out = outcome(&sh("sleep 30"), Duration::from_secs(1), result);
        assert!(
            matches!(&out, Outcome::Failure(m) if m.contains("timed out")),
            "{out:?}"
        );
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(
            std::fs::read_to_string(marker.path()).expect("read marker"),
            "",
            "process group was killed"
        );
    }

    #[test]
    fn output_is_capped_at_ten_kib() {
        let r = HostExec.run("c", &sh("head -c 100000 /dev/zero"), Duration::from_secs(5));
        let ExecResult::Exited { code: 0, output } = r else {
            panic!("{r:?}")
        };
        assert_eq!(output.len(), MAX_OUTPUT_BYTES);
    }

    #[test]
    fn missing_program_is_a_prober_error() {
        let r = HostExec.run(
            "c",
            &["/nonexistent/probe".to_string()],
            Duration::from_secs(1),
        );
        assert!(matches!(
            outcome(&[], Duration::from_secs(1), r),
            Outcome::Error(_)
        ));
    }
}
