//! The agent's side of a shim: spawning `podvisor shim` for a pod, connecting to its
//! socket, sending requests and receiving pushed exits.
//!
//! The shared reader thread ([`super::mux`]) decodes the shim's lines: answers go back to
//! the caller of [`ShimClient::request`], `exited` pushes go to the supervisor's callback.
//! It blocks in `epoll_wait`, so an idle pod costs no CPU and no thread of its own.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::mux::Registration;
use super::protocol::{self, PROTOCOL_VERSION, ProtocolError, Reply, Request};
use super::server::ShimArgs;
use crate::supervise::exit::ExitRecord;
use crate::supervise::state::PodStateDir;

/// How long a request may take (creating a container includes its whole set-up).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long dropping a client waits for the reader to let go of its connection.
const READER_RELEASE: Duration = Duration::from_secs(5);

/// How long a shim may take to answer `hello` (a socket nobody accepts on is dead).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// An error talking to a shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimClientError {
    /// Connecting to or spawning the shim failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// The socket or binary.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The conversation broke.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The shim speaks another protocol version.
    #[error("shim speaks protocol version {0}, this agent {PROTOCOL_VERSION}")]
    Version(u32),
    /// No answer in time.
    #[error("shim did not answer within {0:?}")]
    Timeout(Duration),
    /// The shim refused the request.
    #[error("shim: {message}")]
    Refused {
        /// Its message.
        message: String,
        /// Whether retrying is pointless.
        permanent: bool,
    },
}

/// What the reader thread reports besides answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimEvent {
    /// A container exited (already recorded on disk by the shim).
    Exited(ExitRecord),
    /// The connection ended: the shim exited or was killed (or the client was dropped).
    Closed,
}

/// A connection to one pod's shim.
#[derive(Debug)]
pub struct ShimClient {
    stream: UnixStream,
    replies: Receiver<Reply>,
    reader: Option<Registration>,
    /// The shim's pid.
    pub shim_pid: i32,
}

impl ShimClient {
    /// Connects to `socket`, greets the shim and registers with the reader thread; `on_event` is
    /// called (on that thread) for every exit the shim pushes, and once with
    /// [`ShimEvent::Closed`] when the connection ends.
    pub fn connect(
        socket: &Path,
        on_event: impl Fn(ShimEvent) + Send + 'static,
    ) -> Result<Self, ShimClientError> {
        let stream = UnixStream::connect(socket).map_err(|source| ShimClientError::Io {
            what: "connect to shim at",
            path: socket.to_path_buf(),
            source,
        })?;
        let read_half = stream.try_clone().map_err(|source| ShimClientError::Io {
            what: "clone socket of",
            path: socket.to_path_buf(),
            source,
        })?;
        let (tx, replies) = mpsc::channel();
        let handler = move |line: Option<&[u8]>| {
            let delivered = match line.map(protocol::decode::<Reply>) {
                Some(Ok(Reply::Exited(exit))) => {
                    on_event(ShimEvent::Exited(exit));
                    true
                }
                Some(Ok(other)) => tx.send(other).is_ok(),
                None | Some(Err(_)) => false,
            };
            // The end, an undecodable line or nobody left for answers: closed.
            if !delivered {
                on_event(ShimEvent::Closed);
            }
            delivered
        };
        let reader = super::mux::register(read_half, Box::new(handler)).map_err(|source| {
            ShimClientError::Io {
                what: "read from",
                path: socket.to_path_buf(),
                source,
            }
        })?;
        let mut client = Self {
            stream,
            replies,
            reader: Some(reader),
            shim_pid: 0,
        };
        match client.request_within(
            &Request::Hello {
                version: PROTOCOL_VERSION,
            },
            HELLO_TIMEOUT,
        )? {
            Reply::Hello { version, pid } if version == PROTOCOL_VERSION => client.shim_pid = pid,
            Reply::Hello { version, .. } => return Err(ShimClientError::Version(version)),
            other => return Err(unexpected(&other)),
        }
        Ok(client)
    }

    /// Sends one request and waits for its answer; `error` answers become
    /// [`ShimClientError::Refused`].
    pub fn request(&mut self, req: &Request) -> Result<Reply, ShimClientError> {
        self.request_within(req, REQUEST_TIMEOUT)
    }

    fn request_within(
        &mut self,
        req: &Request,
        timeout: Duration,
    ) -> Result<Reply, ShimClientError> {
        protocol::write_message(&mut self.stream, req)?;
        match self.replies.recv_timeout(timeout) {
            Ok(Reply::Error { message, permanent }) => {
                Err(ShimClientError::Refused { message, permanent })
            }
            Ok(reply) => Ok(reply),
            Err(RecvTimeoutError::Timeout) => Err(ShimClientError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(ProtocolError::Closed.into()),
        }
    }
}

impl Drop for ShimClient {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            r.wait_ended(READER_RELEASE);
        }
    }
}

fn unexpected(reply: &Reply) -> ShimClientError {
    ShimClientError::Protocol(ProtocolError::Io(io::Error::other(format!(
        "unexpected answer {reply:?}"
    ))))
}

/// Starts `podvisor shim` for a pod (re-executing `exe`, normally `/proc/self/exe`) in
/// its own process group, so signals to the agent's terminal or group do not reach it;
/// its stderr goes to `<state>/pods/<uid>/shim.log`. Waits until its socket answers.
pub fn spawn_shim(
    exe: &Path,
    state_root: &Path,
    args: &ShimArgs,
    wait: Duration,
) -> Result<Child, ShimClientError> {
    let dir = PodStateDir::new(state_root, &args.uid);
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| ShimClientError::Io { what, path, source }
    };
    std::fs::create_dir_all(dir.path()).map_err(io("create", dir.path()))?;
    let log_path = dir.path().join("shim.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io("open", &log_path))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--state")
        .arg(state_root)
        .arg("shim")
        .arg("--uid")
        .arg(&args.uid)
        .arg("--runtime-root")
        .arg(&args.runtime_root)
        .arg("--log-max-size")
        .arg(args.log_max_size.to_string())
        .arg("--log-max-files")
        .arg(args.log_max_files.to_string());
    if args.cgroup_best_effort {
        cmd.arg("--cgroup-best-effort");
    }
    // A shim lives long with a small steady heap but short peaks (each container's
    // set-up reads its plan through a 4 MiB buffer): fixed glibc malloc thresholds give
    // such peaks back to the kernel instead of keeping them in the heap, which matters
    // with hundreds of shims.
    cmd.env("MALLOC_MMAP_THRESHOLD_", "65536")
        .env("MALLOC_TRIM_THRESHOLD_", "131072")
        .env("MALLOC_ARENA_MAX", "1");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0);
    let mut child = cmd.spawn().map_err(io("spawn shim", exe))?;
    let sock = dir.shim_socket();
    let deadline = Instant::now() + wait;
    loop {
        if UnixStream::connect(&sock).is_ok() {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(ShimClientError::Io {
                what: "shim exited at start",
                path: log_path,
                source: io::Error::other(format!("{status}: {}", text.trim())),
            });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ShimClientError::Timeout(wait));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
