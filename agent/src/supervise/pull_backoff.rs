//! Image pull backoff, per image of one pod, as the kubelet's image manager keeps it.
//!
//! The kubelet keys a `flowcontrol.Backoff` by `<pod uid>_<image>` (one pod worker here, so
//! by image): a failed pull makes the next pull of that image wait `initial` (10 s), each
//! later failure doubles the wait up to `max` (300 s), and an entry not updated for
//! `2 × max` starts over. It is separate from the container's restart backoff
//! (`CrashLoopBackOff`): a pull failure never counts as a container restart, and unlike a
//! restart the first retry already waits. One difference: the `2 × max` of quiet that
//! forgets an entry is counted from the end of its wait to the start of the next try,
//! not between failures, so that a pull slower than `2 × max` (possible with the short
//! timings tests use) still doubles.
//!
//! While a failure is fresh the container shows `ErrImagePull`; after `initial` (the
//! kubelet's pod worker retry period, also 10 s) a look that finds the image still backing
//! off shows `ImagePullBackOff` until the next try.
//!
//! Pure: time is passed in, never read.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::backoff::BackoffConfig;

/// One image's backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The wait the last failure imposed.
    delay: Duration,
    /// When the last failure happened.
    last_update: SystemTime,
}

/// What a failed pull decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullRetry {
    /// The next pull of the image is not tried before this time.
    pub not_before: SystemTime,
    /// `ErrImagePull` is shown until this time, `ImagePullBackOff` after it.
    pub error_shown_until: SystemTime,
}

/// The image pull backoff of one pod.
#[derive(Debug, Clone, Default)]
pub struct PullBackoff {
    config: BackoffConfig,
    entries: BTreeMap<String, Entry>,
}

impl PullBackoff {
    /// A backoff with `config`'s `initial` and `max` (`reset_after` is not used: the
    /// kubelet forgets an image's backoff after `2 × max` without a failure).
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            entries: BTreeMap::new(),
        }
    }

    /// Records a failed pull of `image` that was tried at `tried_at` and failed at `now`,
    /// and says when to try again.
    pub fn failed(&mut self, image: &str, tried_at: SystemTime, now: SystemTime) -> PullRetry {
        self.forget_expired(tried_at);
        let initial = self.config.initial.min(self.config.max);
        let delay = match self.entries.get(image) {
            Some(e) => e.delay.saturating_mul(2).min(self.config.max),
            None => initial,
        };
        self.entries.insert(
            image.to_string(),
            Entry {
                delay,
                last_update: now,
            },
        );
        PullRetry {
            not_before: now + delay,
            error_shown_until: now + delay.min(initial),
        }
    }

    /// When `image` may be pulled again, if that is still in the future at `now`.
    pub fn waiting_until(&self, image: &str, now: SystemTime) -> Option<SystemTime> {
        let e = self.entries.get(image)?;
        let until = e.last_update + e.delay;
        (until > now).then_some(until)
    }

    /// Drops entries whose wait ended more than `2 × max` before `now` (the kubelet's
    /// `hasExpired`).
    fn forget_expired(&mut self, now: SystemTime) {
        let keep = self.config.max.saturating_mul(2);
        self.entries.retain(|_, e| {
            now.duration_since(e.last_update + e.delay)
                .map_or(true, |since| since <= keep)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) + Duration::from_millis(ms)
    }

    #[test]
    fn pull_delay_starts_at_initial_and_doubles_to_the_cap() {
        let mut b = PullBackoff::new(BackoffConfig::default());
        // Each failure happens exactly when the previous wait ends.
        let mut now = t(0);
        let mut waits = Vec::new();
        for _ in 0..8 {
            let r = b.failed("img", now, now);
            waits.push(r.not_before.duration_since(now).unwrap().as_secs());
            now = r.not_before;
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn err_image_pull_is_shown_for_at_most_initial() {
        let mut b = PullBackoff::new(BackoffConfig::default());
        // (failure at ms, expected not_before ms, expected error_shown_until ms)
        let cases = [
            (0, 10_000, 10_000),
            (10_000, 30_000, 20_000),
            (30_000, 70_000, 40_000),
        ];
        for (at, not_before, shown) in cases {
            let r = b.failed("img", t(at), t(at));
            assert_eq!(
                (r.not_before, r.error_shown_until),
                (t(not_before), t(shown))
            );
        }
    }

    #[test]
    fn images_back_off_separately() {
        let mut b = PullBackoff::new(BackoffConfig::default());
        b.failed("a", t(0), t(0));
        b.failed("a", t(10_000), t(10_000));
        let r = b.failed("b", t(10_000), t(10_000));
        assert_eq!(r.not_before, t(20_000), "b starts at initial");
        assert_eq!(b.waiting_until("a", t(15_000)), Some(t(30_000)));
        assert_eq!(b.waiting_until("b", t(15_000)), Some(t(20_000)));
        assert_eq!(b.waiting_until("a", t(30_000)), None, "due exactly then");
        assert_eq!(b.waiting_until("c", t(0)), None, "never failed");
    }

    #[test]
    fn backoff_is_forgotten_after_twice_the_cap_without_failures() {
        let config = BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
            reset_after: Duration::from_secs(600),
        };
        let mut b = PullBackoff::new(config);
        for at in [0, 1_000, 3_000, 7_000] {
            b.failed("img", t(at), t(at));
        }
        // 4 s cap reached (wait until 11 s); a failure within 8 s of that stays at the cap...
        assert_eq!(b.failed("img", t(19_000), t(19_000)).not_before, t(23_000));
        // ...one more than 8 s after the wait ended starts over at initial.
        assert_eq!(b.failed("img", t(31_001), t(31_001)).not_before, t(32_001));
    }

    #[test]
    fn a_pull_slower_than_twice_the_cap_still_doubles() {
        let config = BackoffConfig {
            initial: Duration::from_millis(300),
            max: Duration::from_millis(1200),
            reset_after: Duration::from_secs(600),
        };
        let mut b = PullBackoff::new(config);
        let mut now = t(0);
        let mut waits = Vec::new();
        for _ in 0..5 {
            let tried = now;
            now += Duration::from_millis(3_500); // each pull takes 3.5 s to fail
            let r = b.failed("img", tried, now);
            waits.push(r.not_before.duration_since(now).unwrap().as_millis());
            now = r.not_before;
        }
        assert_eq!(waits, [300, 600, 1200, 1200, 1200]);
    }

    #[test]
    fn tiny_cap_wins_over_initial() {
        let config = BackoffConfig {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(2),
            reset_after: Duration::from_secs(600),
        };
        let r = PullBackoff::new(config).failed("img", t(0), t(0));
        assert_eq!((r.not_before, r.error_shown_until), (t(2_000), t(2_000)));
    }
}
