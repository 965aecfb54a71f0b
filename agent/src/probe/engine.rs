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
use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::netns::NetnsSwitch;
use super::outcome::Outcome;
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
    },
    Exited {
        key: ContainerKey,
    },
    Stats(Sender<EngineStats>),
    Shutdown,
}

struct Done {
    key: ContainerKey,
    kind: ProbeKind,
    generation: u64,
    container_id: String,
    outcome: Outcome,
    start_delay: Duration,
}

struct Job {
    key: ContainerKey,
    kind: ProbeKind,
    generation: u64,
    container_id: String,
    handler: Handler,
    target: Arc<ProbeTarget>,
    timeout: Duration,
    due: Instant,
}

/// State shared by the scheduler and the workers.
#[derive(Default)]
struct Shared {
    jobs: Mutex<VecDeque<Job>>,
    job_ready: Condvar,
    done: Mutex<Vec<Done>>,
    stop: AtomicBool,
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
        let shared = Arc::new(Shared::default());
        let mut threads = Vec::new();
        for i in 0..config.workers.max(1) {
            let (shared, runner) = (shared.clone(), runner.clone());
            threads.push(
                thread::Builder::new()
                    .name(format!("probe-worker-{i}"))
                    .spawn(move || work(&shared, &runner))?,
            );
        }
        let scheduler = Scheduler::new(config, shared, reports);
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

/// A worker: takes jobs until the engine stops. If it cannot return from a pod's network
/// namespace it stops (its sockets would open in the wrong place); the others go on.
fn work(shared: &Shared, runner: &ProbeRunner) {
    let switch = match NetnsSwitch::for_this_thread() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("probe worker: {e}");
            return;
        }
    };
    while let Some(job) = next_job(shared) {
        let start_delay = Instant::now().saturating_duration_since(job.due);
        let outcome = match runner.run(
            &job.handler,
            &job.target,
            &job.container_id,
            job.timeout,
            &switch,
        ) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("probe worker stopping: {e}");
                return;
            }
        };
        let d = Done {
            key: job.key,
            kind: job.kind,
            generation: job.generation,
            container_id: job.container_id,
            outcome,
            start_delay,
        };
        shared
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(d);
    }
}

fn next_job(shared: &Shared) -> Option<Job> {
    let mut jobs = shared.jobs.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return None;
        }
        if let Some(job) = jobs.pop_front() {
            return Some(job);
        }
        jobs = shared
            .job_ready
            .wait(jobs)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

struct Entry {
    probes: ContainerProbes,
    target: Arc<ProbeTarget>,
    generation: u64,
    next_due: [Option<Instant>; 3],
    in_flight: [bool; 3],
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
    shared: Arc<Shared>,
    epoch: Instant,
    in_flight: usize,
    reports: Sender<ProbeReport>,
    entries: HashMap<ContainerKey, Entry>,
    heap: BinaryHeap<Reverse<(Instant, ContainerKey, ProbeKind, u64)>>,
    generation: u64,
    rng: u64,
    stats: EngineStats,
}

impl Scheduler {
    fn new(config: EngineConfig, shared: Arc<Shared>, reports: Sender<ProbeReport>) -> Scheduler {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Scheduler {
            config,
            shared,
            epoch: Instant::now(),
            in_flight: 0,
            reports,
            entries: HashMap::new(),
            heap: BinaryHeap::new(),
            generation: 0,
            rng: h.finish() | 1,
            stats: EngineStats::default(),
        }
    }

    fn run(mut self, rx: &Receiver<Command>) {
        loop {
            self.collect_done();
            let now = Instant::now();
            self.dispatch_due(now);
            let mut wait = self
                .heap
                .peek()
                .map(|Reverse((due, ..))| due.saturating_duration_since(now));
            if self.in_flight > 0 {
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
        self.shared.stop.store(true, Ordering::Release);
        let _guard = self
            .shared
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.shared.job_ready.notify_all();
    }

    fn collect_done(&mut self) {
        let done = std::mem::take(
            &mut *self
                .shared
                .done
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for d in done {
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
                self.entries.remove(&key);
            }
            Command::Running {
                key,
                container_id,
                started_at,
            } => {
                let actions = self
                    .entries
                    .get_mut(&key)
                    .map(|e| e.probes.container_running(&container_id, started_at));
                self.apply(&key, actions.unwrap_or_default());
            }
            Command::Exited { key } => {
                let actions = self
                    .entries
                    .get_mut(&key)
                    .map(|e| e.probes.container_exited());
                self.apply(&key, actions.unwrap_or_default());
            }
            Command::Stats(reply) => {
                let _ = reply.send(std::mem::take(&mut self.stats));
            }
            Command::Shutdown => {}
        }
    }

    fn add(&mut self, key: ContainerKey, probes: ContainerProbes, target: ProbeTarget) {
        self.generation += 1;
        let now = Instant::now();
        let mut entry = Entry {
            probes,
            target: Arc::new(target),
            generation: self.generation,
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
            self.heap
                .push(Reverse((due, key.clone(), kind, entry.generation)));
        }
        self.entries.insert(key, entry);
    }

    fn jitter(&mut self, period: Duration) -> Duration {
        // xorshift64: plenty for spreading start times.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        period.mul_f64(frac)
    }

    fn schedule(&mut self, key: &ContainerKey, kind: ProbeKind, due: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            e.next_due[slot(kind)] = Some(due);
            self.heap
                .push(Reverse((due, key.clone(), kind, e.generation)));
        }
    }

    fn dispatch_due(&mut self, now: Instant) {
        let mut batch = Vec::new();
        while let Some(Reverse((due, ..))) = self.heap.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((due, key, kind, generation))) = self.heap.pop() else {
                break;
            };
            let Some(e) = self.entries.get_mut(&key) else {
                continue;
            };
            if e.generation != generation || e.next_due[slot(kind)] != Some(due) {
                continue; // stale: removed, replaced or rescheduled
            }
            let Some(spec) = e.probes.spec(kind) else {
                continue;
            };
            let period = spec.period();
            let timeout = spec.timeout();
            let handler = spec.handler.clone();
            let mut next = due + period;
            while next <= now {
                next += period;
            }
            if e.in_flight[slot(kind)] {
                self.stats.skipped_busy += 1;
            } else if let (Gate::Run, Some(container_id)) =
                (e.probes.gate(kind, now), e.probes.container_id())
            {
                e.in_flight[slot(kind)] = true;
                let job = Job {
                    key: key.clone(),
                    kind,
                    generation,
                    container_id: container_id.to_owned(),
                    handler,
                    target: e.target.clone(),
                    timeout,
                    due,
                };
                batch.push(job);
            }
            self.schedule(&key, kind, next);
        }
        if batch.is_empty() {
            return;
        }
        self.in_flight += batch.len();
        let mut jobs = self
            .shared
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for job in batch {
            jobs.push_back(job);
            self.shared.job_ready.notify_one();
        }
    }

    fn complete(&mut self, done: Done) {
        self.stats.runs += 1;
        self.stats.start_delays.push(done.start_delay);
        let Some(e) = self.entries.get_mut(&done.key) else {
            return;
        };
        if e.generation != done.generation {
            return;
        }
        e.in_flight[slot(done.kind)] = false;
        let actions = e
            .probes
            .record(done.kind, &done.container_id, &done.outcome);
        self.apply(&done.key, actions);
    }

    fn apply(&mut self, key: &ContainerKey, actions: Vec<ProbeAction>) {
        for action in actions {
            if let ProbeAction::RunNow(kind) = action {
                self.schedule(key, kind, Instant::now());
                continue;
            }
            let _ = self.reports.send(ProbeReport {
                key: key.clone(),
                action,
            });
        }
    }
}
