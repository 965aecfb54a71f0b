//! A driver for any runtime binary that speaks runc's command line (`podvisor-oci`, `runc`,
//! `crun`): the verbs the suite uses, each with a timeout so a hung runtime fails a case
//! instead of hanging the suite.

use serde::Deserialize;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long any single runtime invocation may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The empty file bind-mounted over the unified hierarchy's `cgroup.controllers` so that
/// crun accepts a hybrid host (it refuses them otherwise; the real file is empty here too).
const CRUN_HYBRID_SHIM: &str = "mount --bind \"$PODVISOR_EMPTY\" /sys/fs/cgroup/unified/cgroup.controllers && exec crun \"$@\"";

/// One runtime binary plus the state root the suite gives it.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Short name for messages and directories (`podvisor-oci`, `runc`, `crun`).
    pub name: String,
    /// Command prefix (the binary, or a wrapper that ends by exec'ing it).
    argv: Vec<OsString>,
    /// Environment added to every invocation.
    env: Vec<(String, String)>,
    /// `--root`: where the runtime keeps container state.
    pub root: PathBuf,
}

/// What a finished invocation printed and how it ended.
#[derive(Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

/// The OCI state document (`<runtime> state ID`).
#[derive(Debug, Clone, Deserialize)]
pub struct State {
    /// Container id.
    pub id: String,
    /// `creating`, `created`, `running` or `stopped`.
    pub status: String,
    /// Host pid of the container's init (0 or absent once stopped, depending on the runtime).
    #[serde(default)]
    pub pid: i64,
    /// Absolute bundle path.
    pub bundle: String,
    /// OCI version string.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
}

impl Runtime {
    /// Picks the runtime from `PODVISOR_OCI` (see [`Runtime::named`]); unset means the
    /// workspace's own `podvisor-oci`.
    pub fn from_env(
        target_dir: &Path,
        state_base: &Path,
        empty_file: &Path,
    ) -> Result<Runtime, String> {
        let choice = std::env::var("PODVISOR_OCI").unwrap_or_default();
        let choice = if choice.is_empty() {
            "podvisor-oci"
        } else {
            choice.as_str()
        };
        Self::named(choice, target_dir, state_base, empty_file)
    }

    /// A runtime by name: `podvisor-oci` is the workspace's `target/debug/podvisor-oci` (which
    /// must exist), `runc` and `crun` are Debian's (crun wrapped for hybrid hosts), anything
    /// else is a path. `state_base` receives one state root per runtime; `empty_file` is used by
    /// the crun hybrid-host wrapper.
    pub fn named(
        choice: &str,
        target_dir: &Path,
        state_base: &Path,
        empty_file: &Path,
    ) -> Result<Runtime, String> {
        let (name, argv, env) = match choice {
            "podvisor-oci" => {
                let bin = target_dir.join("debug/podvisor-oci");
                if !bin.is_file() {
                    return Err(format!(
                        "runtime binary {} is missing: build it (cargo build --workspace --bins) or \
                         set PODVISOR_OCI=runc|crun|PATH to check the suite against another runtime",
                        bin.display()
                    ));
                }
                (
                    "podvisor-oci".to_string(),
                    vec![bin.into_os_string()],
                    vec![],
                )
            }
            "crun" => Self::crun_argv(empty_file),
            other => {
                let name = Path::new(other)
                    .file_name()
                    .map_or(other.into(), |n| n.to_string_lossy().into_owned());
                (name, vec![OsString::from(other)], vec![])
            }
        };
        Ok(Runtime {
            root: state_base.join(&name),
            name,
            argv,
            env,
        })
    }

    fn crun_argv(empty_file: &Path) -> (String, Vec<OsString>, Vec<(String, String)>) {
        let hybrid = Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists();
        if !hybrid {
            return ("crun".into(), vec!["crun".into()], vec![]);
        }
        let argv = ["unshare", "-m", "sh", "-c", CRUN_HYBRID_SHIM, "crun"]
            .map(OsString::from)
            .to_vec();
        let env = vec![(
            "PODVISOR_EMPTY".to_string(),
            empty_file.to_string_lossy().into_owned(),
        )];
        ("crun".into(), argv, env)
    }

    /// The command for `<runtime> --root ROOT <args...>`.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
        cmd.arg("--root").arg(&self.root);
        cmd.args(args.into_iter().map(Into::into));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `<runtime> args...` to completion with captured output.
    pub fn invoke(&self, args: &[&str]) -> Result<Output, String> {
        let mut cmd = self.command(args.iter().copied());
        cmd.stdin(Stdio::null());
        run_captured(cmd, &format!("{} {}", self.name, args.join(" ")))
    }

    /// Like [`Runtime::invoke`], but a non-zero exit is an error carrying stderr.
    pub fn invoke_ok(&self, args: &[&str]) -> Result<Output, String> {
        let out = self.invoke(args)?;
        if !out.status.success() {
            return Err(format!(
                "{} {} failed ({}): {}",
                self.name,
                args.join(" "),
                out.status,
                out.stderr.trim()
            ));
        }
        Ok(out)
    }

    /// `run --bundle B ID`: create, start and wait; the container's stdout is captured.
    pub fn run(&self, bundle: &Path, id: &str) -> Result<Output, String> {
        let b = bundle.to_string_lossy();
        self.invoke(&["run", "--bundle", &b, id])
    }

    /// `create --bundle B ID`, with the container's stdio sent to `bundle/stdio.log` (runc's
    /// pass-through mode hands the caller's stdio to the container, so a pipe would stay open).
    pub fn create(&self, bundle: &Path, id: &str) -> Result<(), String> {
        let log = bundle.join("stdio.log");
        let file =
            std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let file2 = file
            .try_clone()
            .map_err(|e| format!("dup {}: {e}", log.display()))?;
        let b = bundle.to_string_lossy().into_owned();
        let mut cmd = self.command(["create", "--bundle", b.as_str(), id]);
        cmd.stdin(Stdio::null()).stdout(file).stderr(file2);
        let status = wait_with_timeout(
            cmd.spawn()
                .map_err(|e| format!("spawn {}: {e}", self.name))?,
        )?;
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "{} create {id} failed ({status}): {}",
                self.name,
                text.trim()
            ));
        }
        Ok(())
    }

    /// `state ID`, parsed.
    pub fn state(&self, id: &str) -> Result<State, String> {
        let out = self.invoke_ok(&["state", id])?;
        serde_json::from_str(&out.stdout)
            .map_err(|e| format!("{} state {id}: bad JSON ({e}): {}", self.name, out.stdout))
    }

    /// Polls `state ID` until it reports `want` or `timeout` passes.
    pub fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> Result<State, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.state(id)?;
            if st.status == want {
                return Ok(st);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{id} still {:?} after {timeout:?}, wanted {want:?}",
                    st.status
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The state directory a runc-style runtime keeps for `id`.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }
}

/// Runs a command with piped stdout/stderr, killing it after [`TIMEOUT`]. Output still held
/// open after the command exits (a container that inherited the pipe) is not waited for
/// beyond the same deadline.
pub fn run_captured(mut cmd: Command, what: &str) -> Result<Output, String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let deadline = Instant::now() + TIMEOUT;
    let mut child = cmd.spawn().map_err(|e| format!("spawn {what}: {e}"))?;
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let status = wait_with_timeout(child).map_err(|e| format!("{what}: {e}"))?;
    let collect = |rx: std::sync::mpsc::Receiver<String>| {
        let left = deadline.saturating_duration_since(Instant::now());
        rx.recv_timeout(left)
            .unwrap_or_else(|_| "(output pipe still held open)".to_string())
    };
    Ok(Output {
        status,
        stdout: collect(out),
        stderr: collect(err),
    })
}

/// Reads a pipe to EOF on a thread, delivering the text on a channel.
fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        let _ = tx.send(s);
    });
    rx
}

fn wait_with_timeout(mut child: std::process::Child) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {TIMEOUT:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("wait: {e}")),
        }
    }
}
