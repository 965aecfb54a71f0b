//! How a container ended: the record the shim writes to disk for every exit.
//!
//! The shim executes and records; the agent decides (restart policy, backoff, status).
//! An exit is a type, never a magic number: `Code(n)` for `exit(n)`, `Signal(s)` for a
//! death by signal; the kubelet's `exitCode` for a signal death is `128 + s`.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::clock::serde_rfc3339;

/// How the container's init process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExitStatus {
    /// It called `exit(code)`.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
}

impl ExitStatus {
    /// The exit code the API reports: the code, or 128 + signal as shells and runc report it.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Code(code) => code,
            Self::Signal(sig) => 128 + sig,
        }
    }

    /// The signal number, when the process died of one.
    pub fn signal(self) -> Option<i32> {
        match self {
            Self::Code(_) => None,
            Self::Signal(sig) => Some(sig),
        }
    }
}

/// One finished run of a container, as recorded by the shim (`state.json`, `exits`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// Container name within the pod.
    pub container: String,
    /// Which run this was: the container's restart count when it was started.
    pub attempt: u32,
    /// The init process's pid (host pid namespace).
    pub pid: i32,
    /// When the process was started.
    #[serde(with = "serde_rfc3339")]
    pub started_at: SystemTime,
    /// When its exit was reaped.
    #[serde(with = "serde_rfc3339")]
    pub finished_at: SystemTime,
    /// How it ended.
    pub status: ExitStatus,
    /// The cgroup's `memory.events` `oom_kill` counter rose during this run.
    #[serde(default)]
    pub oom_killed: bool,
}

impl ExitRecord {
    /// Exit code 0 and not OOM-killed.
    pub fn success(&self) -> bool {
        self.status == ExitStatus::Code(0) && !self.oom_killed
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn signal_death_reports_128_plus_signal() {
        assert_eq!(ExitStatus::Signal(9).exit_code(), 137);
        assert_eq!(ExitStatus::Signal(15).signal(), Some(15));
        assert_eq!(ExitStatus::Code(3).exit_code(), 3);
        assert_eq!(ExitStatus::Code(3).signal(), None);
    }

    #[test]
    fn exit_record_json_is_readable_and_round_trips() {
        let rec = ExitRecord {
            container: "etcd".into(),
            attempt: 2,
            pid: 4242,
            started_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            finished_at: UNIX_EPOCH + Duration::new(1_700_000_010, 500),
            status: ExitStatus::Signal(9),
            oom_killed: true,
        };
        let json = serde_json::to_string(&rec).unwrap();
        assert!(
            json.contains(r#""startedAt":"2023-11-14T22:13:20Z""#),
            "{json}"
        );
        assert!(json.contains(r#""status":{"signal":9}"#), "{json}");
        assert_eq!(serde_json::from_str::<ExitRecord>(&json).unwrap(), rec);
        assert!(!rec.success());
    }
}
