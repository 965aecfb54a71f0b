//! The agent's side of a shim: spawning `podvisor shim` for a pod, connecting to its
//! socket, sending requests and receiving pushed exits.
//!
//! The shared reader thread ([`super::mux`]) decodes the shim's lines: answers go back to
//! the caller of [`ShimClient::request`], `exited` pushes go to the supervisor's callback.
//! It blocks in `epoll_wait`, so an idle pod costs no CPU and no thread of its own.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use podvisor_runtime::{ReexecChild, spawn_reexec};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::mux::Registration;
use super::protocol::{self, PROTOCOL_VERSION, ProtocolError, Reply, Request};
use super::reaper::ChildProcess;
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
/// its stderr goes to `<state>/pods/<uid>/shim.log`. With `cgroup` (a cgroup directory)
/// the shim starts in that cgroup (`clone3` with `CLONE_INTO_CGROUP`). Waits until its
/// socket answers.
///
/// Starting it there rather than moving it after the fact matters for start latency: a
/// write to `cgroup.procs` takes the kernel's cgroup-wide thread-group lock for writing,
/// and the first such write after a quiet spell waits for an RCU grace period (10–20 ms
/// measured here), during which every fork on the host waits too.
pub fn spawn_shim(
    exe: &Path,
    state_root: &Path,
    args: &ShimArgs,
    cgroup: Option<&Path>,
    wait: Duration,
) -> Result<ChildProcess, ShimClientError> {
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
    let mut argv = vec![
        exe.as_os_str().to_owned(),
        "--state".into(),
        state_root.as_os_str().to_owned(),
        "shim".into(),
        "--uid".into(),
        args.uid.clone().into(),
        "--runtime-root".into(),
        args.runtime_root.as_os_str().to_owned(),
        "--log-max-size".into(),
        args.log_max_size.to_string().into(),
        "--log-max-files".into(),
        args.log_max_files.to_string().into(),
    ];
    if args.cgroup_best_effort {
        argv.push("--cgroup-best-effort".into());
    }
    // A shim lives long with a small steady heap but short peaks (each container's
    // set-up reads its plan through a 4 MiB buffer): fixed glibc malloc thresholds give
    // such peaks back to the kernel instead of keeping them in the heap, which matters
    // with hundreds of shims.
    let malloc = [
        ("MALLOC_MMAP_THRESHOLD_", "65536"),
        ("MALLOC_TRIM_THRESHOLD_", "131072"),
        ("MALLOC_ARENA_MAX", "1"),
    ];
    let mut envp: Vec<std::ffi::OsString> = std::env::vars_os()
        .filter(|(k, _)| !malloc.iter().any(|(m, _)| k == m))
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            kv
        })
        .collect();
    envp.extend(malloc.iter().map(|(k, v)| format!("{k}={v}").into()));
    envp.push(format!("{}=3", super::server::READY_FD_ENV).into());
    let c_strings = |v: Vec<std::ffi::OsString>| -> io::Result<Vec<CString>> {
        v.into_iter()
            .map(|s| CString::new(s.into_vec()).map_err(io::Error::other))
            .collect()
    };
    let spawn = move || -> io::Result<(ChildProcess, std::os::fd::OwnedFd)> {
        let argv = c_strings(argv)?;
        let envp = c_strings(envp)?;
        let exe = CString::new(exe.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // The child dups these onto 0 to 3, which it requires to be below them.
        let above_stdio = |fd: &dyn AsFd| rustix::io::fcntl_dupfd_cloexec(fd, 4);
        let null_in = above_stdio(&std::fs::File::open("/dev/null")?)?;
        let null_out = above_stdio(&OpenOptions::new().write(true).open("/dev/null")?)?;
        let log = above_stdio(&log)?;
        let cgroup = cgroup
            .map(|c| {
                rustix::fs::open(
                    c,
                    rustix::fs::OFlags::DIRECTORY
                        | rustix::fs::OFlags::RDONLY
                        | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
            })
            .transpose()?;
        let (ready_read, ready_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let ready_write = above_stdio(&ready_write)?;
        let fds = [
            (null_in.as_fd(), 0),
            (null_out.as_fd(), 1),
            (log.as_fd(), 2),
            (ready_write.as_fd(), 3),
        ];
        let child = ReexecChild {
            exe: &exe,
            argv: &argv,
            envp: &envp,
            fds: &fds,
            namespaces: 0,
            cgroup: cgroup.as_ref().map(AsFd::as_fd),
            userns_gate: None,
            new_process_group: true,
            unblock_signals: true,
        };
        let (pid, pidfd) = spawn_reexec(&child)?;
        Ok((ChildProcess::new(pid.unsigned_abs(), pidfd), ready_read))
    };
    let (child, ready) = spawn().map_err(io("spawn shim", exe))?;
    let sock = dir.shim_socket();
    let deadline = Instant::now() + wait;
    // The shim writes one byte once it listens; the pipe ends early (EOF) if it exits.
    if wait_ready_byte(&ready, deadline) {
        return Ok(child);
    }
    // No byte: the shim exited, or the time is up (or it did not announce itself): the
    // checks below tell which.
    loop {
        if UnixStream::connect(&sock).is_ok() {
            return Ok(child);
        }
        if child.has_exited() {
            let status = child
                .wait()
                .map_or_else(|e| format!("status unknown ({e})"), |s| s.to_string());
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
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `deadline` for the shim's ready byte on `ready`; whether it came.
fn wait_ready_byte(ready: &std::os::fd::OwnedFd, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(timeout) = rustix::event::Timespec::try_from(left) else {
            return false;
        };
        let mut fds = [rustix::event::PollFd::new(
            ready,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) => return false,
            Ok(_) => {
                let mut byte = [0u8; 1];
                return matches!(rustix::io::read(ready, &mut byte), Ok(1));
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
    }
}
