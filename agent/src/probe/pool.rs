//! The engine's bounded worker pool: a fixed number of threads taking probe jobs from one
//! queue and leaving results in a shared list the scheduler drains. Workers never block the
//! scheduler: pushing a job and taking results are short critical sections.
//!
//! Wake-ups are coalesced: a batch wakes one idle worker only when no worker is already busy
//! (a busy worker takes the next job as soon as it finishes its own, and a loopback probe
//! takes a fraction of a millisecond). A job left waiting a whole [`STALE`] behind its due
//! time (a busy worker is stuck on a slow target) gets another worker from
//! [`Pool::wake_for_stale`], which the scheduler calls each time it wakes (at least once per
//! tick while probes are in flight). So a hanging target delays other probes by at most about
//! two ticks, and a steady load costs about one worker wake-up per batch instead of one per
//! probe (each is a futex wake, a context switch and often a cross-CPU interrupt).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::netns::NetnsSwitch;
use super::outcome::Outcome;
use super::runner::{ProbeRunner, ProbeTarget};
use super::spec::{Handler, ProbeKind};

/// One probe to run.
#[derive(Debug)]
pub(super) struct Job {
    /// The engine's id for the container entry.
    pub id: u64,
    pub kind: ProbeKind,
    pub container_id: std::sync::Arc<str>,
    /// Shared with the engine's entry: dispatching a probe copies no strings.
    pub handler: std::sync::Arc<Handler>,
    pub target: std::sync::Arc<ProbeTarget>,
    pub timeout: Duration,
    /// When it was due, to measure how late it started.
    pub due: Instant,
}

/// One finished probe.
#[derive(Debug)]
pub(super) struct Done {
    pub id: u64,
    pub kind: ProbeKind,
    pub container_id: std::sync::Arc<str>,
    pub outcome: Outcome,
    pub start_delay: Duration,
}

/// How long a queued job may wait past its due time before an idle worker is woken for it.
pub(super) const STALE: Duration = Duration::from_millis(10);

/// The job queue and how many workers sleep waiting on it.
#[derive(Debug, Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Workers waiting on `job_ready`.
    idle: usize,
    /// Workers started (idle or running a job).
    workers: usize,
}

/// The queue and result list shared by the scheduler and the workers.
#[derive(Debug, Default)]
pub(super) struct Pool {
    queue: Mutex<Queue>,
    job_ready: Condvar,
    done: Mutex<Vec<Done>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked mid-push leaves a consistent Vec/VecDeque behind.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    /// Starts `n` workers running jobs with `runner`.
    pub fn spawn_workers(
        self: &std::sync::Arc<Self>,
        n: usize,
        runner: &ProbeRunner,
    ) -> std::io::Result<Vec<JoinHandle<()>>> {
        lock(&self.queue).workers = n.max(1);
        (0..n.max(1))
            .map(|i| {
                let (pool, runner) = (self.clone(), runner.clone());
                thread::Builder::new()
                    .name(format!("probe-worker-{i}"))
                    .spawn(move || pool.work(&runner))
            })
            .collect()
    }

    /// Queues jobs; wakes one idle worker if none is busy (a busy one takes them next).
    pub fn submit(&self, batch: Vec<Job>) {
        let mut q = lock(&self.queue);
        q.jobs.extend(batch);
        let busy = q.workers - q.idle;
        if busy == 0 && q.idle > 0 {
            self.job_ready.notify_one();
        }
    }

    /// Wakes an idle worker for each job queued more than [`STALE`] past its due time.
    pub fn wake_for_stale(&self, now: Instant) {
        let q = lock(&self.queue);
        let stale = q
            .jobs
            .iter()
            .take_while(|j| now.saturating_duration_since(j.due) >= STALE)
            .count();
        for _ in 0..stale.min(q.idle) {
            self.job_ready.notify_one();
        }
    }

    /// Takes every result finished so far.
    pub fn take_done(&self) -> Vec<Done> {
        std::mem::take(&mut *lock(&self.done))
    }

    /// Tells the workers to exit after their current job.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _guard = lock(&self.queue);
        self.job_ready.notify_all();
    }

    /// A worker's loop (see [`Pool::run_jobs`]); a worker that ends no longer counts.
    fn work(&self, runner: &ProbeRunner) {
        self.run_jobs(runner);
        let mut q = lock(&self.queue);
        q.workers = q.workers.saturating_sub(1);
    }

    /// Runs jobs until stopped. If the worker cannot return from a pod's network namespace it
    /// stops (its sockets would open in the wrong place); the others go on.
    fn run_jobs(&self, runner: &ProbeRunner) {
        let switch = match NetnsSwitch::for_this_thread() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("probe worker: {e}");
                return;
            }
        };
        while let Some(job) = self.next_job() {
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
            let done = Done {
                id: job.id,
                kind: job.kind,
                container_id: job.container_id,
                outcome,
                start_delay,
            };
            lock(&self.done).push(done);
        }
    }

    fn next_job(&self) -> Option<Job> {
        let mut q = lock(&self.queue);
        loop {
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            q.idle += 1;
            q = self
                .job_ready
                .wait(q)
                .unwrap_or_else(PoisonError::into_inner);
            q.idle -= 1;
        }
    }
}
