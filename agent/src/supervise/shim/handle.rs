//! A pod's shim as the agent's pod worker uses it: requests, the exits the shim pushes
//! (queued in order), and the graceful stop of a group of containers.
//!
//! Stopping follows the kubelet: the stop signal to each container of the group, a wait
//! of the grace period (at least 2 s) for their exits, then SIGKILL to every process of
//! those that remain (the runtime uses `cgroup.kill`), and a bounded wait for those exits.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::client::{ShimClient, ShimClientError, ShimEvent};
use super::protocol::{Reply, Request, RunningContainer};
use crate::supervise::exit::ExitRecord;
use crate::supervise::stop::MIN_GRACE;

/// How long SIGKILLed containers get to be reaped before the stop is reported failed.
pub const KILL_WAIT: Duration = Duration::from_secs(10);

/// One connected shim with its exit queue.
#[derive(Debug)]
pub struct PodShim {
    client: ShimClient,
    exits: Receiver<ExitRecord>,
    queued: VecDeque<ExitRecord>,
}

/// One container to stop and the signal that asks it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopTarget {
    /// Container name.
    pub container: String,
    /// Its stop signal.
    pub signal: i32,
}

/// How a group stop went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopOutcome {
    /// The exits of the stopped containers.
    pub exits: Vec<ExitRecord>,
    /// Containers that needed SIGKILL after the grace period.
    pub killed: Vec<String>,
    /// Containers whose exit never came, even after SIGKILL.
    pub stuck: Vec<String>,
}

impl PodShim {
    /// Connects to the shim at `socket`.
    pub fn connect(socket: &Path) -> Result<Self, ShimClientError> {
        let (tx, exits) = mpsc::channel();
        let client = ShimClient::connect(socket, move |e| {
            if let ShimEvent::Exited(e) = e {
                let _ = tx.send(e);
            }
        })?;
        Ok(Self {
            client,
            exits,
            queued: VecDeque::new(),
        })
    }

    /// Connects to the shim at `socket`, handing every pushed exit (and the connection's
    /// end) to `on_event` instead (for a caller that waits on its own channel; use
    /// [`PodShim::stop_group_via`]).
    pub fn connect_with(
        socket: &Path,
        on_event: impl Fn(ShimEvent) + Send + 'static,
    ) -> Result<Self, ShimClientError> {
        let (_, exits) = mpsc::channel();
        let client = ShimClient::connect(socket, on_event)?;
        Ok(Self {
            client,
            exits,
            queued: VecDeque::new(),
        })
    }

    /// The shim's pid.
    pub fn pid(&self) -> i32 {
        self.client.shim_pid
    }

    /// Runs a container (see [`Request::Run`]).
    pub fn run(&mut self, request: Request) -> Result<RunningContainer, ShimClientError> {
        match self.client.request(&request)? {
            Reply::Started(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// The running containers and the held namespaces.
    pub fn state(
        &mut self,
    ) -> Result<(Vec<RunningContainer>, BTreeMap<String, PathBuf>), ShimClientError> {
        match self.client.request(&Request::State)? {
            Reply::State {
                containers,
                namespaces,
            } => Ok((containers, namespaces)),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends a signal to a container (`all`: to every process in its cgroup).
    pub fn kill(&mut self, container: &str, signal: i32, all: bool) -> Result<(), ShimClientError> {
        self.client
            .request(&Request::Kill {
                container: container.into(),
                signal,
                all,
            })
            .map(|_| ())
    }

    /// The next pushed exit, waiting up to `timeout`.
    pub fn next_exit(&mut self, timeout: Duration) -> Option<ExitRecord> {
        if let Some(e) = self.queued.pop_front() {
            return Some(e);
        }
        self.exits.recv_timeout(timeout).ok()
    }

    /// Stops a group of running containers: stop signals, `grace` (at least 2 s) to
    /// exit, then SIGKILL for the rest. Containers not running are skipped.
    pub fn stop_group(
        &mut self,
        targets: &[StopTarget],
        grace: Duration,
    ) -> Result<StopOutcome, ShimClientError> {
        let mut queue = std::mem::take(&mut self.queued);
        let exits = std::mem::replace(&mut self.exits, mpsc::channel().1);
        let mut wait = |names: &mut Vec<String>, deadline: Instant| {
            wait_for(&exits, &mut queue, names, deadline)
        };
        let result = self.stop_group_via(targets, grace, &mut wait);
        self.exits = exits;
        self.queued = queue;
        result
    }

    /// [`PodShim::stop_group`] with exits read through `wait`, which must return the
    /// exits of the named containers that arrive before the deadline, removing them from
    /// the list (and keep any other exit for its caller).
    pub fn stop_group_via(
        &mut self,
        targets: &[StopTarget],
        grace: Duration,
        wait: &mut dyn FnMut(&mut Vec<String>, Instant) -> Vec<ExitRecord>,
    ) -> Result<StopOutcome, ShimClientError> {
        let (running, _) = self.state()?;
        let mut waiting: Vec<String> = Vec::new();
        for t in targets
            .iter()
            .filter(|t| running.iter().any(|r| r.container == t.container))
        {
            match self.kill(&t.container, t.signal, false) {
                // It exited in between: its exit is on the way.
                Ok(())
                | Err(ShimClientError::Refused {
                    permanent: true, ..
                }) => waiting.push(t.container.clone()),
                Err(e) => return Err(e),
            }
        }
        let mut outcome = StopOutcome {
            exits: wait(&mut waiting, Instant::now() + grace.max(MIN_GRACE)),
            ..StopOutcome::default()
        };
        for name in &waiting {
            match self.kill(name, 9, true) {
                Ok(())
                | Err(ShimClientError::Refused {
                    permanent: true, ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        outcome.killed = waiting.clone();
        outcome
            .exits
            .extend(wait(&mut waiting, Instant::now() + KILL_WAIT));
        outcome.stuck = waiting;
        Ok(outcome)
    }

    /// Asks the shim to kill everything and exit.
    pub fn shutdown(mut self) -> Result<(), ShimClientError> {
        self.client.request(&Request::Shutdown).map(|_| ())
    }
}

/// Waits until `deadline` for the exits of `names` on `exits`, answering first from
/// `queued`; other exits are queued. Returns the matching exits.
pub fn wait_for(
    exits: &Receiver<ExitRecord>,
    queued: &mut VecDeque<ExitRecord>,
    names: &mut Vec<String>,
    deadline: Instant,
) -> Vec<ExitRecord> {
    let mut got = Vec::new();
    let mut keep = VecDeque::new();
    while let Some(e) = queued.pop_front() {
        if let Some(i) = names.iter().position(|n| *n == e.container) {
            names.remove(i);
            got.push(e);
        } else {
            keep.push_back(e);
        }
    }
    *queued = keep;
    while !names.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match exits.recv_timeout(left) {
            Ok(e) => match names.iter().position(|n| *n == e.container) {
                Some(i) => {
                    names.remove(i);
                    got.push(e);
                }
                None => queued.push_back(e),
            },
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    got
}

fn unexpected(reply: &Reply) -> ShimClientError {
    ShimClientError::Refused {
        message: format!("unexpected answer {reply:?}"),
        permanent: false,
    }
}
