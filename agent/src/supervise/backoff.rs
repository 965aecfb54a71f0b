//! Per-container restart backoff, as the kubelet applies it.
//!
//! The kubelet's `flowcontrol.Backoff` lets the first restart of a container happen at
//! once, then makes each later restart wait `initial`, `2 × initial`, ... up to `max`,
//! measured from the moment the container exited. A container that ran for `reset_after`
//! or longer before exiting starts over with an immediate restart. All three numbers are
//! configurable (the kubelet hard-codes 10 s, 300 s and 10 min).
//!
//! Pure: time is passed in, never read, so tests use a fake clock.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The three numbers that shape a backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffConfig {
    /// Delay before the second restart; each later one doubles it (kubelet: 10 s).
    pub initial: Duration,
    /// The longest delay (kubelet: 300 s).
    pub max: Duration,
    /// A container that ran at least this long resets its backoff (kubelet: 10 min).
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

/// One container's backoff state, kept across its restarts (and persisted in `state.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// The delay the next exit will impose; `None` means the next restart is immediate.
    next_delay: Option<Duration>,
    /// Earliest time the container may be started again, set by the last exit.
    not_before: Option<SystemTime>,
    /// The delay imposed by the last exit (what `CrashLoopBackOff` messages show).
    last_delay: Duration,
}

impl Backoff {
    /// A fresh backoff: the next restart is immediate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the container exited at `finished_at` after having started at
    /// `started_at`, and returns the earliest time it may be started again.
    pub fn record_exit(
        &mut self,
        config: &BackoffConfig,
        started_at: SystemTime,
        finished_at: SystemTime,
    ) -> SystemTime {
        let ran_for = finished_at
            .duration_since(started_at)
            .unwrap_or(Duration::ZERO);
        if ran_for >= config.reset_after {
            self.next_delay = None;
        }
        let delay = self.next_delay.unwrap_or(Duration::ZERO);
        self.next_delay = Some(match self.next_delay {
            None => config.initial.min(config.max),
            Some(d) => d.saturating_mul(2).min(config.max),
        });
        self.last_delay = delay;
        let not_before = finished_at + delay;
        self.not_before = Some(not_before);
        not_before
    }

    /// Forgets all history: the next exit restarts at once (used when a pod is replaced).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Whether a start at `now` must still wait; returns the remaining wait if so.
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        let not_before = self.not_before?;
        match not_before.duration_since(now) {
            Ok(left) if !left.is_zero() => Some(left),
            _ => None,
        }
    }

    /// Earliest time of the next start allowed by the last exit, if any exit was recorded.
    pub fn not_before(&self) -> Option<SystemTime> {
        self.not_before
    }

    /// The delay the last exit imposed (shown in `back-off 20s restarting failed container`).
    pub fn last_delay(&self) -> Duration {
        self.last_delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    /// Runs a crash loop: each entry is (seconds the container ran), and the container is
    /// restarted exactly when allowed. Returns the delay imposed after each exit.
    fn crash_loop(config: &BackoffConfig, runs: &[u64]) -> Vec<u64> {
        let mut b = Backoff::new();
        let mut now = t(0);
        let mut delays = Vec::new();
        for &ran in runs {
            let started = now;
            let finished = started + Duration::from_secs(ran);
            let next = b.record_exit(config, started, finished);
            delays.push(
                next.duration_since(finished)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            );
            now = next;
        }
        delays
    }

    #[test]
    fn backoff_table() {
        let kubelet = BackoffConfig::default();
        let short = BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
            reset_after: Duration::from_secs(30),
        };
        let cases: &[(&str, &BackoffConfig, &[u64], &[u64])] = &[
            ("first_restart_is_immediate", &kubelet, &[1], &[0]),
            (
                "restart_delay_doubles_until_cap",
                &kubelet,
                &[1, 1, 1, 1, 1, 1, 1, 1, 1],
                &[0, 10, 20, 40, 80, 160, 300, 300, 300],
            ),
            (
                "running_ten_minutes_resets_backoff",
                &kubelet,
                &[1, 1, 1, 600, 1, 1],
                &[0, 10, 20, 0, 10, 20],
            ),
            (
                "running_just_under_reset_threshold_keeps_backoff",
                &kubelet,
                &[1, 1, 599, 1],
                &[0, 10, 20, 40],
            ),
            (
                "configured_numbers_are_used",
                &short,
                &[1, 1, 1, 1, 1, 30, 1],
                &[0, 1, 2, 4, 4, 0, 1],
            ),
        ];
        for (name, config, runs, want) in cases {
            assert_eq!(crash_loop(config, runs), *want, "{name}");
        }
    }

    #[test]
    fn remaining_counts_down_from_exit_time() {
        let config = BackoffConfig::default();
        let mut b = Backoff::new();
        b.record_exit(&config, t(0), t(1));
        assert_eq!(b.remaining(t(1)), None, "first restart immediate");
        b.record_exit(&config, t(1), t(2));
        assert_eq!(b.remaining(t(2)), Some(Duration::from_secs(10)));
        assert_eq!(b.remaining(t(7)), Some(Duration::from_secs(5)));
        assert_eq!(b.remaining(t(12)), None);
        assert_eq!(b.last_delay(), Duration::from_secs(10));
    }

    #[test]
    fn reset_forgets_history() {
        let config = BackoffConfig::default();
        let mut b = Backoff::new();
        for _ in 0..4 {
            b.record_exit(&config, t(0), t(1));
        }
        b.reset();
        assert_eq!(b.record_exit(&config, t(5), t(6)), t(6));
    }

    #[test]
    fn exit_clock_going_backwards_counts_as_zero_runtime() {
        let config = BackoffConfig::default();
        let mut b = Backoff::new();
        b.record_exit(&config, t(0), t(1));
        // finished before started (clock step): no panic, no reset
        assert_eq!(b.record_exit(&config, t(100), t(50)), t(60));
    }
}
