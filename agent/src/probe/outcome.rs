//! What one run of a probe handler returns, before thresholds: the kubelet's `probe.Result`
//! plus its output, and prober errors kept apart from failures.

/// The result of running a handler once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Healthy; the output (response body, command output) is kept for logs.
    Success(String),
    /// Counts as success but is reported as a `ProbeWarning` event (an HTTP redirect to
    /// another host, which the kubelet does not follow).
    Warning(String),
    /// Unhealthy: the output becomes the `Unhealthy` event's message
    /// (`HTTP probe failed with statuscode: 503`, `dial tcp ...: connection refused`).
    Failure(String),
    /// The probe could not be run at all (unknown named port, exec machinery failed): the
    /// kubelet retries it, reports it, and then throws the result away.
    Error(String),
}

impl Outcome {
    /// True for `Error`, the only outcome the kubelet retries within one probe run.
    pub fn is_error(&self) -> bool {
        matches!(self, Outcome::Error(_))
    }
}

/// How many times one probe run tries a handler that errors (kubelet `maxProbeRetries`).
pub const MAX_PROBE_RETRIES: usize = 3;

/// Runs `attempt` until it returns something other than an error, at most
/// [`MAX_PROBE_RETRIES`] times, and returns the last outcome.
pub fn with_retries(mut attempt: impl FnMut() -> Outcome) -> Outcome {
    let mut outcome = attempt();
    for _ in 1..MAX_PROBE_RETRIES {
        if !outcome.is_error() {
            break;
        }
        outcome = attempt();
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_retried_three_times_then_returned() {
        let mut calls = 0;
        let out = with_retries(|| {
            calls += 1;
            Outcome::Error("boom".into())
        });
        assert_eq!((calls, out), (3, Outcome::Error("boom".into())));
    }

    #[test]
    fn failures_are_not_retried() {
        let mut calls = 0;
        let out = with_retries(|| {
            calls += 1;
            if calls == 1 {
                Outcome::Error("x".into())
            } else {
                Outcome::Failure("503".into())
            }
        });
        assert_eq!((calls, out), (2, Outcome::Failure("503".into())));
    }
}
