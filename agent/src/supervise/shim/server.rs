//! The shim process (`podvisor shim`): one per pod, the parent of the pod's containers.
//!
//! One thread, one `epoll(7)` set: the listening socket, the agent connections, one pidfd
//! per container and the [`LogPump`]'s own epoll fd (all containers' stdout/stderr). It
//! blocks in `epoll_wait` with no timeout, so an idle shim uses no CPU. It executes and
//! records, never decides: each exit is written to `exits/` (durably, before the agent
//! hears of it), pushed to connected agents, and the stopped container is deleted from
//! the runtime. It keeps running when the agent dies; a new agent reconnects.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use podvisor_runtime::container::{self, CreateOptions, Stdio};
use rustix::buffer::spare_capacity;
use rustix::event::epoll;
use rustix::io::Errno;

pub use super::config::{ShimArgs, ShimConfig};
use super::deadline::{KILL_WAIT, Stuck, stuck_message, wait_exited};
use super::protocol::{self, PROTOCOL_VERSION, Reply, Request, RunningContainer};
use crate::logs::pump::LogPump;
use crate::supervise::child::{WatchedChild, become_subreaper, reap_orphans};
use crate::supervise::state::PodStateDir;

/// A failure that stops the shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// Setting up or running the event loop failed.
    #[error("shim {what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// The cause.
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ShimError {
    move |source| ShimError::Io {
        what: what.into(),
        source,
    }
}

const LISTENER: u64 = 1;
const PUMP: u64 = 2;
const CLIENT_BASE: u64 = 1 << 20;
const CHILD_BASE: u64 = 1 << 40;

struct Client {
    stream: UnixStream,
    inbuf: Vec<u8>,
    greeted: bool,
}

struct Tracked {
    child: WatchedChild,
    id: String,
}

struct Shim {
    config: ShimConfig,
    dir: PodStateDir,
    epoll: std::os::fd::OwnedFd,
    listener: UnixListener,
    pump: LogPump,
    clients: HashMap<u64, Client>,
    children: HashMap<u64, Tracked>,
    next_token: u64,
    devnull: File,
    namespaces: BTreeMap<String, File>,
    shutting_down: bool,
}

/// The environment variable by which the agent tells a shim it starts that descriptor 3 is
/// the write end of a pipe on which to announce that `shim.sock` listens (one byte), so the
/// agent waits for that instead of polling the socket.
pub const READY_FD_ENV: &str = "PODVISOR_SHIM_READY_FD";

/// Writes the ready byte on descriptor 3 and closes it, if the starter asked for it (and
/// descriptor 3 is a pipe: a shim started by hand with the variable set closes nothing
/// else).
fn announce_ready() {
    if std::env::var(READY_FD_ENV).ok().as_deref() != Some("3") {
        return;
    }
    if let Some(fd) = podvisor_runtime::take_inherited_pipe(3) {
        let _ = rustix::io::write(&fd, &[1]);
    }
}

/// Runs the shim until a `shutdown` request: binds `shim.sock`, then serves.
pub fn run_shim(config: ShimConfig) -> Result<(), ShimError> {
    become_subreaper().map_err(io_err("become child subreaper"))?;
    let dir = PodStateDir::new(&config.state_root, &config.uid);
    std::fs::create_dir_all(dir.path())
        .map_err(io_err(format!("create {}", dir.path().display())))?;
    let sock = dir.shim_socket();
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).map_err(io_err(format!("bind {}", sock.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(io_err("set listener non-blocking"))?;
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
        .map_err(|e| io_err("epoll_create1")(e.into()))?;
    let pump = LogPump::with_defaults()
        .map_err(|e| io_err("log pump")(io::Error::other(e.to_string())))?;
    let add = |fd: std::os::fd::BorrowedFd<'_>, token: u64, what: &str| {
        epoll::add(
            &epoll,
            fd,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN,
        )
        .map_err(|e| io_err(format!("epoll add {what}"))(e.into()))
    };
    add(listener.as_fd(), LISTENER, "listener")?;
    add(pump.as_fd(), PUMP, "log pump")?;
    announce_ready();
    let devnull = File::open("/dev/null").map_err(io_err("open /dev/null"))?;
    let mut shim = Shim {
        config,
        dir,
        epoll,
        listener,
        pump,
        clients: HashMap::new(),
        children: HashMap::new(),
        next_token: 1,
        devnull,
        namespaces: BTreeMap::new(),
        shutting_down: false,
    };
    shim.serve()?;
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

impl Shim {
    fn serve(&mut self) -> Result<(), ShimError> {
        let mut ready: Vec<epoll::Event> = Vec::with_capacity(32);
        while !self.shutting_down {
            ready.clear();
            match epoll::wait(&self.epoll, spare_capacity(&mut ready), None) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(io_err("epoll_wait")(e.into())),
            }
            for ev in &ready {
                match ev.data.u64() {
                    LISTENER => self.accept(),
                    PUMP => {
                        if let Err(e) = self.pump.service(Some(std::time::Duration::ZERO)) {
                            eprintln!("podvisor shim {}: logs: {e}", self.config.uid);
                        }
                    }
                    t if t >= CHILD_BASE => self.child_exited(t),
                    t => self.client_ready(t),
                }
            }
            let tracked: HashSet<i32> = self.children.values().map(|t| t.child.pid).collect();
            reap_orphans(&tracked);
        }
        Ok(())
    }

    fn token(&mut self, base: u64) -> u64 {
        self.next_token += 1;
        base + self.next_token
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let token = self.token(CLIENT_BASE);
                    let added = epoll::add(
                        &self.epoll,
                        &stream,
                        epoll::EventData::new_u64(token),
                        epoll::EventFlags::IN,
                    );
                    if added.is_ok() {
                        self.clients.insert(
                            token,
                            Client {
                                stream,
                                inbuf: Vec::new(),
                                greeted: false,
                            },
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("podvisor shim {}: accept: {e}", self.config.uid);
                    return;
                }
            }
        }
    }

    fn drop_client(&mut self, token: u64) {
        if let Some(c) = self.clients.remove(&token) {
            let _ = epoll::delete(&self.epoll, &c.stream);
        }
    }

    fn client_ready(&mut self, token: u64) {
        let mut buf = [0u8; 8192];
        let mut closed = false;
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        loop {
            match client.stream.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => client.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if client.inbuf.len() > protocol::MAX_LINE {
            closed = true;
        }
        let mut lines = Vec::new();
        while let Some(pos) = client.inbuf.iter().position(|&b| b == b'\n') {
            lines.push(client.inbuf.drain(..=pos).collect::<Vec<u8>>());
        }
        for line in lines {
            let reply = match protocol::decode::<Request>(&line) {
                Ok(req) => self.handle(token, req),
                Err(e) => Reply::Error {
                    message: e.to_string(),
                    permanent: true,
                },
            };
            if !self.send(token, &reply) {
                closed = true;
                break;
            }
        }
        if closed {
            self.drop_client(token);
        }
    }

    /// Writes a message to one client; false if the client is gone or stuck.
    fn send(&mut self, token: u64, reply: &Reply) -> bool {
        let Some(client) = self.clients.get_mut(&token) else {
            return false;
        };
        // Messages are small; a client that cannot take one line is dropped rather than
        // allowed to stall the pod's supervision.
        let _ = client.stream.set_nonblocking(false);
        let _ = client
            .stream
            .set_write_timeout(Some(std::time::Duration::from_secs(2)));
        let ok = protocol::write_message(&mut client.stream, reply).is_ok();
        let _ = client.stream.set_nonblocking(true);
        ok
    }

    fn handle(&mut self, token: u64, req: Request) -> Reply {
        let greeted = self.clients.get(&token).is_some_and(|c| c.greeted);
        match req {
            Request::Hello { version } => {
                if version != PROTOCOL_VERSION {
                    return Reply::Error {
                        message: format!(
                            "protocol version {version} not supported (shim speaks {PROTOCOL_VERSION})"
                        ),
                        permanent: true,
                    };
                }
                if let Some(c) = self.clients.get_mut(&token) {
                    c.greeted = true;
                }
                Reply::Hello {
                    version: PROTOCOL_VERSION,
                    pid: std::process::id() as i32,
                }
            }
            _ if !greeted => Reply::Error {
                message: "send hello first".into(),
                permanent: true,
            },
            Request::Run {
                container,
                attempt,
                id,
                bundle,
                log_path,
                hold_namespaces,
            } => match self.run(container, attempt, id, bundle, log_path, &hold_namespaces) {
                Ok(r) => Reply::Started(r),
                Err((message, permanent)) => Reply::Error { message, permanent },
            },
            Request::Kill {
                container,
                signal,
                all,
            } => {
                let Some(t) = self
                    .children
                    .values()
                    .find(|t| t.child.container == container)
                else {
                    return Reply::Error {
                        message: format!("container {container} is not running"),
                        permanent: true,
                    };
                };
                match container::kill(&self.config.runtime_root, &t.id, signal, all) {
                    Ok(()) => Reply::Done,
                    Err(e) => Reply::Error {
                        message: e.to_string(),
                        permanent: e.is_permanent(),
                    },
                }
            }
            Request::State => Reply::State {
                containers: self.running(),
                namespaces: self.namespace_paths(),
            },
            Request::Shutdown => match self.shutdown() {
                Ok(()) => Reply::Done,
                Err(message) => Reply::Error {
                    message,
                    permanent: true,
                },
            },
        }
    }

    fn running(&self) -> Vec<RunningContainer> {
        let mut out: Vec<RunningContainer> = self
            .children
            .values()
            .map(|t| RunningContainer {
                container: t.child.container.clone(),
                attempt: t.child.attempt,
                id: t.id.clone(),
                pid: t.child.pid,
                started_at: t.child.started_at,
                namespaces: BTreeMap::new(),
            })
            .collect();
        out.sort_by(|a, b| a.container.cmp(&b.container));
        out
    }

    /// Creates and starts one container with its stdout/stderr piped into the log pump.
    fn run(
        &mut self,
        name: String,
        attempt: u32,
        id: String,
        bundle: PathBuf,
        log_path: PathBuf,
        hold: &[String],
    ) -> Result<RunningContainer, (String, bool)> {
        if self.children.values().any(|t| t.child.container == name) {
            return Err((format!("container {name} is already running"), true));
        }
        let sys = |what: &str, e: Errno| (format!("{what} for container {name}: {e}"), false);
        let flags = rustix::pipe::PipeFlags::CLOEXEC;
        let (out_r, out_w) =
            rustix::pipe::pipe_with(flags).map_err(|e| sys("create stdout pipe", e))?;
        let (err_r, err_w) =
            rustix::pipe::pipe_with(flags).map_err(|e| sys("create stderr pipe", e))?;
        let root = self.config.runtime_root.clone();
        let opts = CreateOptions {
            root: root.clone(),
            id: id.clone(),
            bundle,
            stdio: Stdio {
                stdin: self.devnull.as_fd(),
                stdout: out_w.as_fd(),
                stderr: err_w.as_fd(),
            },
            console_socket: None,
            preserve_fds: Vec::new(),
            no_pivot: false,
            cgroup_limits: self.config.cgroup_limits,
        };
        let created = container::create(&opts).map_err(|e| (e.to_string(), e.is_permanent()))?;
        drop(opts);
        if let Err(e) = self.hold_namespaces(created.pid, hold) {
            let _ = container::delete(&root, &id, true);
            return Err((format!("hold pod namespaces of {name}: {e}"), false));
        }
        // The container holds the write ends now; ours must close so EOF means it is gone.
        drop((out_w, err_w));
        if let Err(e) = self
            .pump
            .add(log_path, self.config.rotate, Some(out_r), Some(err_r))
        {
            let _ = container::delete(&root, &id, true);
            return Err((e.to_string(), false));
        }
        let started = container::start(&root, &id).and_then(|warnings| {
            // Poststart hook failures are warnings under the OCI spec, not errors.
            for w in warnings {
                tracing::warn!(container = %id, "{w}");
            }
            container::wait_exec(&id, created.watch.as_fd())
        });
        if let Err(e) = started {
            // The init is gone or going: reap it here so no exit is reported for a run
            // that never started, and leave nothing behind.
            let _ = container::delete(&root, &id, true);
            let child = WatchedChild::new(name, attempt, created.pid, created.pidfd, None);
            if wait_exited(child.as_fd(), std::time::Instant::now() + KILL_WAIT) {
                let _ = child.try_reap();
            } else {
                // Its runtime state is gone with the delete: name the pid.
                let stuck = [Stuck {
                    id: id.clone(),
                    cgroup: None,
                    pids: vec![child.pid],
                }];
                eprintln!(
                    "podvisor shim {}: failed start: {}",
                    self.config.uid,
                    stuck_message(&stuck, KILL_WAIT)
                );
            }
            return Err((e.to_string(), e.is_permanent()));
        }
        let child = WatchedChild::new(name, attempt, created.pid, created.pidfd, None);
        let token = self.token(CHILD_BASE);
        if let Err(e) = epoll::add(
            &self.epoll,
            &child,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN,
        ) {
            let _ = container::delete(&root, &id, true);
            return Err((format!("watch container {id}: {e}"), false));
        }
        let running = RunningContainer {
            container: child.container.clone(),
            attempt,
            id: id.clone(),
            pid: child.pid,
            started_at: child.started_at,
            namespaces: self.namespace_paths(),
        };
        self.children.insert(token, Tracked { child, id });
        Ok(running)
    }

    /// Opens `/proc/<pid>/ns/<kind>` of a just-created container for each kind asked for
    /// and keeps the descriptors: the namespaces then outlive that container.
    fn hold_namespaces(&mut self, pid: i32, kinds: &[String]) -> io::Result<()> {
        for kind in kinds {
            let file = match kind.as_str() {
                "network" => "net",
                "ipc" => "ipc",
                "uts" => "uts",
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("cannot hold namespace {other:?}"),
                    ));
                }
            };
            let fd = File::open(format!("/proc/{pid}/ns/{file}"))?;
            self.namespaces.insert(kind.clone(), fd);
        }
        Ok(())
    }

    /// The held namespaces as paths other containers can join.
    fn namespace_paths(&self) -> BTreeMap<String, PathBuf> {
        let me = std::process::id();
        self.namespaces
            .iter()
            .map(|(k, f)| {
                (
                    k.clone(),
                    PathBuf::from(format!("/proc/{me}/fd/{}", f.as_raw_fd())),
                )
            })
            .collect()
    }

    fn child_exited(&mut self, token: u64) {
        let Some(t) = self.children.get(&token) else {
            return;
        };
        let mut exit = match t.child.try_reap() {
            Ok(Some(exit)) => exit,
            Ok(None) => return,
            Err(e) => {
                eprintln!("podvisor shim {}: reap {}: {e}", self.config.uid, t.id);
                return;
            }
        };
        let Some(t) = self.children.remove(&token) else {
            return;
        };
        let _ = epoll::delete(&self.epoll, &t.child);
        let root = &self.config.runtime_root;
        if let Ok(stats) = container::stats(root, &t.id) {
            exit.oom_killed = stats.oom_kill.unwrap_or(0) > 0;
        }
        // Record durably first: an agent that is away reads it from disk later.
        if let Err(e) = self.dir.record_exit(&exit) {
            eprintln!("podvisor shim {}: {e}", self.config.uid);
        }
        if let Err(e) = container::delete(root, &t.id, true) {
            eprintln!("podvisor shim {}: delete {}: {e}", self.config.uid, t.id);
        }
        let reply = Reply::Exited(exit);
        let tokens: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.greeted)
            .map(|(t, _)| *t)
            .collect();
        for token in tokens {
            if !self.send(token, &reply) {
                self.drop_client(token);
            }
        }
    }

    /// Kills every container (their cgroups as a whole), records their exits, and ends
    /// the loop. Waits at most [`KILL_WAIT`] for the killed containers: one that is still
    /// there then (a process in uninterruptible sleep) is named with its cgroup and pids
    /// in the log and in the returned message, and left behind.
    fn shutdown(&mut self) -> Result<(), String> {
        let root = self.config.runtime_root.clone();
        let tokens: Vec<u64> = self.children.keys().copied().collect();
        for token in &tokens {
            if let Some(t) = self.children.get(token) {
                let _ = container::kill(&root, &t.id, 9, true);
            }
        }
        let deadline = std::time::Instant::now() + KILL_WAIT;
        let mut stuck = Vec::new();
        for token in tokens {
            let Some(t) = self.children.get(&token) else {
                continue;
            };
            if wait_exited(t.child.as_fd(), deadline) {
                self.child_exited(token);
            } else {
                stuck.push(Stuck::find(&root, &t.id));
            }
        }
        // Drain what the containers wrote last.
        while self.pump.open_streams() > 0 {
            match self
                .pump
                .service(Some(std::time::Duration::from_millis(100)))
            {
                Ok(ev) if ev.is_empty() => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        self.shutting_down = true;
        if stuck.is_empty() {
            return Ok(());
        }
        let message = stuck_message(&stuck, KILL_WAIT);
        eprintln!("podvisor shim {}: {message}", self.config.uid);
        Err(message)
    }
}
