//! The probe engine: one scheduler thread for every probe of every container, and a bounded
//! pool of worker threads that run the handlers.
//!
//! The scheduler keeps a min-heap of (due time, probe) and sleeps on its command channel until
//! the earliest one is due; it never runs a handler and never waits for one, so a slow or
//! hanging target delays nothing but its own next tick (a probe still running at its next tick
//! skips that tick, as the kubelet's sequential worker does). Handlers bound their own time
//! (`timeoutSeconds`), so a worker is never held longer than one probe's timeout (times the
//! kubelet's 3 retries for prober errors). First runs are spread with jitter over one period.
//!
//! Wake-ups are what a probe engine costs at scale (on a VM each cross-CPU wake-up is an
//! IPI), so due times sit on a 10 ms grid (jittered first runs are rounded up to it, periods
//! are whole seconds): the scheduler wakes at most once per grid slot and dispatches the whole
//! slot. Workers hand results back through a shared list that the scheduler drains when it
//! next wakes (at most one slot later) instead of waking it per result.
//!
//! The supervisor feeds container facts in ([`Engine::container_running`],
//! [`Engine::container_exited`]) and reads [`ProbeReport`]s (events, started/ready changes,
//! restart requests) from the channel given to [`Engine::start`].

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::pool::{Done, Job, Pool};
use super::runner::{ProbeRunner, ProbeTarget};
use super::spec::{Handler, ProbeKind};
use super::state::{ContainerProbes, Gate, ProbeAction};

/// Identifies a container to the engine.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerKey {
    /// The pod's UID.
    pub pod_uid: String,
    /// The container's name.
    pub container: String,
}

/// One action for one container, as the engine reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// Which container.
    pub key: ContainerKey,
    /// The run of the container the action is about (the id given to
    /// [`Engine::container_running`]; empty before the first run).
    pub container_id: String,
    /// What to do or record.
    pub action: ProbeAction,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker threads running handlers (the bound on concurrent probes).
    pub workers: usize,
    /// Spread each probe's first run uniformly over one period.
    pub jitter_first_run: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 8,
            jitter_first_run: true,
        }
    }
}

/// Counters for benchmarks and metrics.
#[derive(Debug, Clone, Default)]
pub struct EngineStats {
    /// Handler runs completed since the last [`Engine::take_stats`].
    pub runs: u64,
    /// For each run, how late its handler started after its due time.
    pub start_delays: Vec<Duration>,
    /// Ticks skipped because the previous run of that probe had not finished.
    pub skipped_busy: u64,
}

/// Granularity of due times, and the longest a finished probe waits to be recorded.
pub const TICK: Duration = Duration::from_millis(10);

enum Command {
    Add {
        key: ContainerKey,
        probes: Box<ContainerProbes>,
        target: ProbeTarget,
    },
    Remove {
        key: ContainerKey,
    },
    Running {
        key: ContainerKey,
        container_id: String,
        started_at: Instant,
        adopted: bool,
    },
    Exited {
        key: ContainerKey,
    },
    Stats(Sender<EngineStats>),
    Shutdown,
}

/// Handle to a running engine; dropping it stops the scheduler and the workers.
#[derive(Debug)]
pub struct Engine {
    tx: Sender<Command>,
    threads: Vec<JoinHandle<()>>,
}

impl Engine {
    /// Starts the scheduler and `config.workers` worker threads; reports go to `reports`.
    pub fn start(
        config: EngineConfig,
        runner: ProbeRunner,
        reports: Sender<ProbeReport>,
    ) -> std::io::Result<Engine> {
        let (tx, rx) = channel::<Command>();
        let pool = Arc::new(Pool::default());
        let mut threads = pool.spawn_workers(config.workers, &runner)?;
        let scheduler = Scheduler::new(config, pool, reports);
        threads.push(
            thread::Builder::new()
                .name("probe-scheduler".into())
                .spawn(move || scheduler.run(&rx))?,
        );
        Ok(Engine { tx, threads })
    }

    /// Starts probing a container (replacing any previous entry for `key`).
    pub fn add(&self, key: ContainerKey, probes: ContainerProbes, target: ProbeTarget) {
        let _ = self.tx.send(Command::Add {
            key,
            probes: Box::new(probes),
            target,
        });
    }

    /// Stops probing a container and forgets it.
    pub fn remove(&self, key: ContainerKey) {
        let _ = self.tx.send(Command::Remove { key });
    }

    /// The container is running as `container_id` since `started_at`.
    pub fn container_running(&self, key: ContainerKey, container_id: &str, started_at: Instant) {
        let _ = self.tx.send(Command::Running {
            key,
            container_id: container_id.to_owned(),
            started_at,
            adopted: false,
        });
    }

    /// The container was found running as `container_id` (re-adoption): like
    /// [`Engine::container_running`], but the run starts started and ready
    /// ([`ContainerProbes::container_adopted`]).
    pub fn container_adopted(&self, key: ContainerKey, container_id: &str, started_at: Instant) {
        let _ = self.tx.send(Command::Running {
            key,
            container_id: container_id.to_owned(),
            started_at,
            adopted: true,
        });
    }

    /// The container exited.
    pub fn container_exited(&self, key: ContainerKey) {
        let _ = self.tx.send(Command::Exited { key });
    }

    /// Returns and resets the counters.
    pub fn take_stats(&self) -> EngineStats {
        let (tx, rx) = channel();
        let _ = self.tx.send(Command::Stats(tx));
        rx.recv().unwrap_or_default()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One container's probes. `id` is unique per `add`, so results and heap entries of a
/// removed or replaced container are recognised as stale.
struct Entry {
    key: ContainerKey,
    probes: ContainerProbes,
    target: Arc<ProbeTarget>,
    /// Each probe's handler, shared with the jobs that run it.
    handlers: [Option<Arc<Handler>>; 3],
    /// The current run's id, shared with the jobs probing it.
    run: Option<Arc<str>>,
    next_due: [Option<Instant>; 3],
    in_flight: [bool; 3],
}

impl Entry {
    /// The run's id as jobs carry it, refreshed when the run changes.
    fn run(&mut self) -> Option<Arc<str>> {
        let current = self.probes.container_id()?;
        if self.run.as_deref() != Some(current) {
            self.run = Some(Arc::from(current));
        }
        self.run.clone()
    }
}

fn slot(kind: ProbeKind) -> usize {
    match kind {
        ProbeKind::Liveness => 0,
        ProbeKind::Readiness => 1,
        ProbeKind::Startup => 2,
    }
}

struct Scheduler {
    config: EngineConfig,
    pool: Arc<Pool>,
    epoch: Instant,
    in_flight: usize,
    reports: Sender<ProbeReport>,
    ids: HashMap<ContainerKey, u64>,
    entries: HashMap<u64, Entry>,
    heap: BinaryHeap<Reverse<(Instant, u64, ProbeKind)>>,
    next_id: u64,
    rng: u64,
    stats: EngineStats,
}

impl Scheduler {
    fn new(config: EngineConfig, pool: Arc<Pool>, reports: Sender<ProbeReport>) -> Scheduler {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Scheduler {
            config,
            pool,
            epoch: Instant::now(),
            in_flight: 0,
            reports,
            ids: HashMap::new(),
            entries: HashMap::new(),
            heap: BinaryHeap::new(),
            next_id: 0,
            rng: h.finish() | 1,
            stats: EngineStats::default(),
        }
    }

    fn run(mut self, rx: &Receiver<Command>) {
        loop {
            self.collect_done();
            let now = Instant::now();
            self.dispatch_due(now);
            if self.in_flight > 0 {
                self.pool.wake_for_stale(now);
            }
            let mut wait = self
                .heap
                .peek()
                .map(|Reverse((due, ..))| due.saturating_duration_since(now));
            if self.in_flight > 0 {
                // Results are collected at least once per tick while probes run.
                wait = Some(wait.map_or(TICK, |w| w.min(TICK)));
            }
            let cmd = match wait {
                Some(w) => rx.recv_timeout(w),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match cmd {
                Ok(Command::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        self.pool.stop();
    }

    fn collect_done(&mut self) {
        for d in self.pool.take_done() {
            self.in_flight = self.in_flight.saturating_sub(1);
            self.complete(d);
        }
    }

    /// The first grid point at or after `t`.
    fn on_grid(&self, t: Instant) -> Instant {
        let since = t.saturating_duration_since(self.epoch).as_nanos();
        let tick = TICK.as_nanos();
        let slots = since.div_ceil(tick);
        self.epoch + Duration::from_nanos(u64::try_from(slots * tick).unwrap_or(u64::MAX))
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Add {
                key,
                probes,
                target,
            } => self.add(key, *probes, target),
            Command::Remove { key } => {
                if let Some(id) = self.ids.remove(&key) {
                    self.entries.remove(&id);
                }
            }
            Command::Running {
                key,
                container_id,
                started_at,
                adopted,
            } => {
                self.update(&key, |p| {
                    if adopted {
                        p.container_adopted(&container_id, started_at)
                    } else {
                        p.container_running(&container_id, started_at)
                    }
                });
            }
            Command::Exited { key } => self.update(&key, ContainerProbes::container_exited),
            Command::Stats(reply) => {
                let _ = reply.send(std::mem::take(&mut self.stats));
            }
            Command::Shutdown => {}
        }
    }

    fn update(
        &mut self,
        key: &ContainerKey,
        f: impl FnOnce(&mut ContainerProbes) -> Vec<ProbeAction>,
    ) {
        let Some(&id) = self.ids.get(key) else { return };
        let actions = self
            .entries
            .get_mut(&id)
            .map(|e| f(&mut e.probes))
            .unwrap_or_default();
        self.apply(id, actions);
    }

    fn add(&mut self, key: ContainerKey, probes: ContainerProbes, target: ProbeTarget) {
        self.next_id += 1;
        let id = self.next_id;
        if let Some(old) = self.ids.insert(key.clone(), id) {
            self.entries.remove(&old);
        }
        let now = Instant::now();
        let mut handlers: [Option<Arc<Handler>>; 3] = [None, None, None];
        for kind in ProbeKind::ALL {
            handlers[slot(kind)] = probes.spec(kind).map(|s| Arc::new(s.handler.clone()));
        }
        let mut entry = Entry {
            key,
            probes,
            target: Arc::new(target),
            handlers,
            run: None,
            next_due: [None; 3],
            in_flight: [false; 3],
        };
        for kind in ProbeKind::ALL {
            let Some(period) = entry.probes.spec(kind).map(|s| s.period()) else {
                continue;
            };
            let offset = if self.config.jitter_first_run {
                self.jitter(period)
            } else {
                Duration::ZERO
            };
            let due = self.on_grid(now + offset);
            entry.next_due[slot(kind)] = Some(due);
            self.heap.push(Reverse((due, id, kind)));
        }
        self.entries.insert(id, entry);
    }

    fn jitter(&mut self, period: Duration) -> Duration {
        // xorshift64: plenty for spreading start times.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        period.mul_f64(frac)
    }

    fn schedule(&mut self, id: u64, kind: ProbeKind, due: Instant) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.next_due[slot(kind)] = Some(due);
            self.heap.push(Reverse((due, id, kind)));
        }
    }

    fn dispatch_due(&mut self, now: Instant) {
        let mut batch = Vec::new();
        while self
            .heap
            .peek()
            .is_some_and(|Reverse((due, ..))| *due <= now)
        {
            let Some(Reverse((due, id, kind))) = self.heap.pop() else {
                break;
            };
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            if e.next_due[slot(kind)] != Some(due) {
                continue; // stale: rescheduled (RunNow)
            }
            let Some(spec) = e.probes.spec(kind) else {
                continue;
            };
            let period = spec.period();
            let mut next = due + period;
            while next <= now {
                next += period; // fell behind: skip missed ticks, like a Go ticker
            }
            let timeout = spec.timeout();
            if e.in_flight[slot(kind)] {
                self.stats.skipped_busy += 1;
            } else if e.probes.gate(kind, now) == Gate::Run
                && let (Some(container_id), Some(handler)) =
                    (e.run(), e.handlers[slot(kind)].clone())
            {
                e.in_flight[slot(kind)] = true;
                batch.push(Job {
                    id,
                    kind,
                    container_id,
                    handler,
                    target: e.target.clone(),
                    timeout,
                    due,
                });
            }
            self.schedule(id, kind, next);
        }
        if !batch.is_empty() {
            self.in_flight += batch.len();
            self.pool.submit(batch);
        }
    }

    fn complete(&mut self, done: Done) {
        self.stats.runs += 1;
        self.stats.start_delays.push(done.start_delay);
        let Some(e) = self.entries.get_mut(&done.id) else {
            return;
        };
        e.in_flight[slot(done.kind)] = false;
        let actions = e
            .probes
            .record(done.kind, &done.container_id, &done.outcome);
        self.apply(done.id, actions);
    }

    fn apply(&mut self, id: u64, actions: Vec<ProbeAction>) {
        let Some((key, container_id)) = self.entries.get(&id).map(|e| {
            let run = e.probes.container_id().unwrap_or_default().to_owned();
            (e.key.clone(), run)
        }) else {
            return;
        };
        for action in actions {
            if let ProbeAction::RunNow(kind) = action {
                self.schedule(id, kind, Instant::now());
                continue;
            }
            let _ = self.reports.send(ProbeReport {
                key: key.clone(),
                container_id: container_id.clone(),
                action,
            });
        }
    }
}
