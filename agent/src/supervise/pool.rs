//! Where pod workers run: an elastic pool of threads, one timer thread, and a mailbox per
//! worker in which the worker parks while it has nothing to do.
//!
//! A pod worker (see [`super::worker`]) runs on a pool thread while it has work (start a
//! container, apply an exit, stop the pod within its grace period) and otherwise parks in
//! its [`Mailbox`], holding no thread, until a message arrives or its deadline (a backoff)
//! passes. Work stays plain blocking code: a worker in a 30 s grace period holds one thread
//! and the pool starts another for the next job, so no pod waits for another. Threads that
//! idle for [`IDLE_EXIT`] end, and the heap is trimmed then; 200 idle pods cost no thread
//! each, where a thread per pod cost ~40 KiB of resident stack and a malloc cache.
//!
//! Written here because the crates that offer this are async executors (their blocking
//! pools run futures) or fixed-size pools, which would let one pod's grace period hold up
//! another pod's start.

use std::collections::{BinaryHeap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

/// How long a pool thread waits for a job before it ends.
pub const IDLE_EXIT: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
}

#[derive(Default)]
struct PoolState {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job.
    idle: usize,
    threads: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(PoolState::default()),
        work: Condvar::new(),
    })
}

/// Runs `job` on a pool thread: an idle one, or a new one when every thread is busy.
pub fn submit(job: impl FnOnce() + Send + 'static) {
    let pool = pool();
    lock(&pool.state).jobs.push_back(Box::new(job));
    staff(pool);
}

/// Wakes an idle thread for each queued job, and starts threads for the jobs no idle
/// thread will take.
fn staff(pool: &'static Pool) {
    let mut s = lock(&pool.state);
    // A woken thread counts as idle until it takes its job, so queued jobs beyond the
    // idle count are exactly those no thread will take.
    if s.jobs.len() <= s.idle {
        pool.work.notify_one();
        return;
    }
    s.threads += 1;
    drop(s);
    let spawned = std::thread::Builder::new()
        .name("pod-worker".into())
        .spawn(move || run_jobs(pool));
    if let Err(e) = spawned {
        let mut s = lock(&pool.state);
        s.threads -= 1;
        let stranded = s.threads == 0;
        drop(s);
        tracing::error!(error = %e, "start a pod worker thread");
        // With no thread at all the job would wait forever: try again in a second.
        if stranded {
            at(Instant::now() + Duration::from_secs(1), move || staff(pool));
        }
    }
}

fn run_jobs(pool: &'static Pool) {
    let mut s = lock(&pool.state);
    loop {
        if let Some(job) = s.jobs.pop_front() {
            drop(s);
            // A job reports its own panic (a worker ends `Failed`); the thread goes on.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            s = lock(&pool.state);
            continue;
        }
        s.idle += 1;
        let (guard, wait) = pool
            .work
            .wait_timeout(s, IDLE_EXIT)
            .unwrap_or_else(PoisonError::into_inner);
        s = guard;
        s.idle -= 1;
        if wait.timed_out() && s.jobs.is_empty() {
            s.threads -= 1;
            let last = s.threads == 0;
            drop(s);
            // The burst this thread served is over: what it freed goes back to the kernel
            // (the malloc caches of the threads that ended before it are in the heap by
            // now, so the last thread's trim takes those too).
            trim_heap(last);
            return;
        }
    }
}

/// Trims the heap when the pool's last thread ends, and otherwise at most once per
/// [`IDLE_EXIT`]: after a burst of 200 starts, 200 threads end together and one trim (a walk
/// of the whole heap) serves them all.
fn trim_heap(last: bool) {
    static LAST_TRIM: Mutex<Option<Instant>> = Mutex::new(None);
    let mut at = lock(&LAST_TRIM);
    if last || at.is_none_or(|t| t.elapsed() >= IDLE_EXIT) {
        podvisor_runtime::malloc_trim();
        *at = Some(Instant::now());
    }
}

/// A timer: `f` runs on the timer thread at `deadline` (it should only hand work on).
struct Timer {
    at: Instant,
    seq: u64,
    f: Job,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    /// Reversed, so that the max-heap yields the earliest deadline first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct Timers {
    state: Mutex<(BinaryHeap<Timer>, u64)>,
    changed: Condvar,
}

/// Runs `f` on the timer thread at `deadline`.
pub fn at(deadline: Instant, f: impl FnOnce() + Send + 'static) {
    static TIMERS: OnceLock<Timers> = OnceLock::new();
    let mut started = false;
    let timers = TIMERS.get_or_init(|| {
        started = true;
        Timers {
            state: Mutex::new((BinaryHeap::new(), 0)),
            changed: Condvar::new(),
        }
    });
    if started {
        // Should the thread not start, the timers wait in the heap; the process is then
        // out of threads and the pool's own error says so.
        let spawned = std::thread::Builder::new()
            .name("pod-timers".into())
            .spawn(move || run_timers(timers));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "start the pod timer thread");
        }
    }
    let mut s = lock(&timers.state);
    let seq = s.1;
    s.1 += 1;
    s.0.push(Timer {
        at: deadline,
        seq,
        f: Box::new(f),
    });
    timers.changed.notify_one();
}

fn run_timers(timers: &'static Timers) {
    let mut s = lock(&timers.state);
    loop {
        let now = Instant::now();
        match s.0.peek().map(|t| t.at) {
            Some(due) if due <= now => {
                if let Some(timer) = s.0.pop() {
                    drop(s);
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(timer.f));
                    s = lock(&timers.state);
                }
            }
            Some(due) => {
                s = timers
                    .changed
                    .wait_timeout(s, due - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            None => {
                s = timers
                    .changed
                    .wait(s)
                    .unwrap_or_else(PoisonError::into_inner)
            }
        }
    }
}

/// A worker's mailbox: messages of type `E` for a worker of type `W`, which either runs
/// (on a pool thread, and may wait here for a message with [`Mailbox::recv_timeout`]) or
/// is parked here until a message or its deadline resumes it with `resume` on the pool.
pub struct Mailbox<E, W> {
    state: Mutex<MailState<E, W>>,
    arrived: Condvar,
    resume: fn(Box<W>),
}

impl<E, W> std::fmt::Debug for Mailbox<E, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("Mailbox")
            .field("queued", &s.queue.len())
            .field("parked", &s.parked.is_some())
            .finish()
    }
}

struct MailState<E, W> {
    queue: VecDeque<E>,
    parked: Option<Box<W>>,
    /// Counts parkings, so that the timer of an earlier one does not wake a later one.
    parkings: u64,
}

impl<E: Send + 'static, W: Send + 'static> Mailbox<E, W> {
    /// An empty mailbox; a parked worker is resumed by submitting `resume(worker)` to the
    /// pool.
    pub fn new(resume: fn(Box<W>)) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(MailState {
                queue: VecDeque::new(),
                parked: None,
                parkings: 0,
            }),
            arrived: Condvar::new(),
            resume,
        })
    }

    /// Delivers a message: resumes the worker if it is parked, else wakes it if it waits in
    /// [`Mailbox::recv_timeout`], else leaves the message for it.
    pub fn send(&self, message: E) {
        let mut s = lock(&self.state);
        s.queue.push_back(message);
        match s.parked.take() {
            Some(worker) => {
                drop(s);
                let resume = self.resume;
                submit(move || resume(worker));
            }
            None => self.arrived.notify_all(),
        }
    }

    /// The next message, waiting for it up to `timeout` (for the running worker).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<E, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        let mut s = lock(&self.state);
        loop {
            if let Some(m) = s.queue.pop_front() {
                return Ok(m);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvTimeoutError::Timeout);
            }
            s = self
                .arrived
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The next message if one is there.
    pub fn try_recv(&self) -> Option<E> {
        lock(&self.state).queue.pop_front()
    }

    /// Parks `worker` until a message arrives or `deadline` passes (`None`: no deadline),
    /// and returns `None`; or, when a message is already waiting, hands the worker back
    /// with it.
    pub fn park(
        self: &Arc<Self>,
        worker: Box<W>,
        deadline: Option<Instant>,
    ) -> Option<(Box<W>, E)> {
        let mut s = lock(&self.state);
        if let Some(m) = s.queue.pop_front() {
            return Some((worker, m));
        }
        s.parkings += 1;
        let parking = s.parkings;
        s.parked = Some(worker);
        drop(s);
        if let Some(deadline) = deadline {
            let mailbox: Weak<Self> = Arc::downgrade(self);
            at(deadline, move || {
                if let Some(m) = mailbox.upgrade() {
                    m.wake(parking);
                }
            });
        }
        None
    }

    /// The deadline of parking number `parking` passed: resume the worker if it is still
    /// parked from then.
    fn wake(&self, parking: u64) {
        let mut s = lock(&self.state);
        if s.parkings != parking {
            return;
        }
        if let Some(worker) = s.parked.take() {
            drop(s);
            let resume = self.resume;
            submit(move || resume(worker));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A worker that reports each resumption (with the message that woke it, if any) and
    /// parks again with the deadline it is told.
    struct Echo {
        mailbox: Arc<Mailbox<u32, Echo>>,
        seen: mpsc::Sender<Option<u32>>,
        /// The deadline of each parking in turn; then none.
        deadlines: std::collections::VecDeque<Instant>,
    }

    fn resume(mut w: Box<Echo>) {
        let mut message = w.mailbox.try_recv();
        loop {
            let _ = w.seen.send(message);
            let deadline = w.deadlines.pop_front();
            let mailbox = Arc::clone(&w.mailbox);
            match mailbox.park(w, deadline) {
                Some((back, m)) => (w, message) = (back, Some(m)),
                None => return,
            }
        }
    }

    /// An [`Echo`] parking with deadlines this far from now, one per parking.
    fn echo(deadlines_ms: &[u64]) -> (Arc<Mailbox<u32, Echo>>, mpsc::Receiver<Option<u32>>) {
        let (tx, rx) = mpsc::channel();
        let mailbox = Mailbox::new(resume);
        let now = Instant::now();
        let worker = Box::new(Echo {
            mailbox: Arc::clone(&mailbox),
            seen: tx,
            deadlines: deadlines_ms
                .iter()
                .map(|ms| now + Duration::from_millis(*ms))
                .collect(),
        });
        submit(move || resume(worker));
        (mailbox, rx)
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn a_parked_worker_is_resumed_by_each_message_in_order() {
        let (mailbox, seen) = echo(&[]);
        assert_eq!(seen.recv_timeout(WAIT).unwrap(), None); // first run
        for n in 1..=3 {
            mailbox.send(n);
            assert_eq!(seen.recv_timeout(WAIT).unwrap(), Some(n));
        }
    }

    #[test]
    fn a_parked_worker_is_resumed_at_its_deadline_and_only_once() {
        let (_mailbox, seen) = echo(&[100]);
        assert_eq!(seen.recv_timeout(WAIT).unwrap(), None); // first run
        // The deadline: resumed without a message, then parked without a deadline.
        assert_eq!(seen.recv_timeout(WAIT).unwrap(), None);
        assert!(seen.recv_timeout(Duration::from_millis(300)).is_err());
    }

    #[test]
    fn a_stale_deadline_does_not_wake_a_later_parking() {
        // Parks until 500 ms; a message resumes it at once and it parks until 1500 ms. The
        // first parking's timer, at 500 ms, must not wake the second parking.
        let t0 = Instant::now();
        let (mailbox, seen) = echo(&[500, 1500]);
        assert_eq!(seen.recv_timeout(WAIT).unwrap(), None);
        mailbox.send(7);
        assert_eq!(seen.recv_timeout(WAIT).unwrap(), Some(7));
        assert_eq!(seen.recv_timeout(WAIT).unwrap(), None);
        let woke = t0.elapsed();
        assert!(woke >= Duration::from_millis(1500), "woken after {woke:?}");
    }

    #[test]
    fn a_blocked_job_does_not_hold_up_the_next() {
        let (release, blocked) = mpsc::channel::<()>();
        // Blocked for longer than the second job is waited for: should that job queue
        // behind this one, the wait below runs out first.
        submit(move || {
            let _ = blocked.recv_timeout(3 * WAIT);
        });
        let (done, ran) = mpsc::channel();
        submit(move || {
            let _ = done.send(());
        });
        assert!(
            ran.recv_timeout(WAIT).is_ok(),
            "the second job waited for the first"
        );
        let _ = release.send(());
    }

    #[test]
    fn recv_timeout_returns_a_message_sent_while_waiting() {
        let mailbox: Arc<Mailbox<u32, Echo>> = Mailbox::new(resume);
        let sender = Arc::clone(&mailbox);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            sender.send(5);
        });
        assert_eq!(mailbox.recv_timeout(WAIT), Ok(5));
        assert_eq!(
            mailbox.recv_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        );
        t.join().unwrap();
    }

    #[test]
    fn timers_run_in_deadline_order() {
        let (tx, rx) = mpsc::channel();
        let now = Instant::now();
        for (n, ms) in [(2, 120), (1, 60), (3, 180)] {
            let tx = tx.clone();
            at(now + Duration::from_millis(ms), move || {
                let _ = tx.send(n);
            });
        }
        let order: Vec<i32> = (0..3).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
        assert_eq!(order, [1, 2, 3]);
    }
}
