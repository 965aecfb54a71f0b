//! The engine's bounded worker pool: a fixed number of threads taking probe jobs from one
//! queue and leaving results in a shared list the scheduler drains. Workers never block the
//! scheduler: pushing a job and taking results are short critical sections.

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
    pub container_id: String,
    pub handler: Handler,
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
    pub container_id: String,
    pub outcome: Outcome,
    pub start_delay: Duration,
}

/// The queue and result list shared by the scheduler and the workers.
#[derive(Debug, Default)]
pub(super) struct Pool {
    jobs: Mutex<VecDeque<Job>>,
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
        (0..n.max(1))
            .map(|i| {
                let (pool, runner) = (self.clone(), runner.clone());
                thread::Builder::new()
                    .name(format!("probe-worker-{i}"))
                    .spawn(move || pool.work(&runner))
            })
            .collect()
    }

    /// Queues jobs, waking one idle worker per job.
    pub fn submit(&self, batch: Vec<Job>) {
        let mut jobs = lock(&self.jobs);
        for job in batch {
            jobs.push_back(job);
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
        let _guard = lock(&self.jobs);
        self.job_ready.notify_all();
    }

    /// A worker's loop. If it cannot return from a pod's network namespace it stops (its
    /// sockets would open in the wrong place); the others go on.
    fn work(&self, runner: &ProbeRunner) {
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
        let mut jobs = lock(&self.jobs);
        loop {
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            if let Some(job) = jobs.pop_front() {
                return Some(job);
            }
            jobs = self
                .job_ready
                .wait(jobs)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}
