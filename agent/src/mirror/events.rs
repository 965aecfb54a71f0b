//! Pod lifecycle events for the API (`Pulled`, `Created`, `Started`, `Killing`, `BackOff`,
//! `Unhealthy`): a bounded queue that coalesces repeats (count + lastTimestamp, as client-go's
//! recorder does) and a token bucket so a crash loop cannot flood the API server.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::decide::PodKey;

/// One lifecycle event, as the supervisor hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorEvent {
    /// The static pod (namespace, name).
    pub pod: PodKey,
    /// `Pulled`, `Created`, `Started`, `Killing`, `BackOff`, `Unhealthy`...
    pub reason: String,
    /// Human-readable detail (`Started container etcd`).
    pub message: String,
    /// `Warning` rather than `Normal`.
    pub warning: bool,
}

impl MirrorEvent {
    /// A `Normal` event (`Pulled`, `Created`, `Started`, `Killing`).
    pub fn normal(pod: PodKey, reason: &str, message: impl Into<String>) -> Self {
        Self {
            pod,
            reason: reason.into(),
            message: message.into(),
            warning: false,
        }
    }

    /// A `Warning` event (`BackOff`, `Unhealthy`, `Failed`).
    pub fn warning(pod: PodKey, reason: &str, message: impl Into<String>) -> Self {
        Self {
            pod,
            reason: reason.into(),
            message: message.into(),
            warning: true,
        }
    }
}

/// The kubelet's event reasons for pod lifecycle.
pub mod reason {
    /// Image pulled (or already present).
    pub const PULLED: &str = "Pulled";
    /// Container created.
    pub const CREATED: &str = "Created";
    /// Container started.
    pub const STARTED: &str = "Started";
    /// Container being stopped.
    pub const KILLING: &str = "Killing";
    /// Restart delayed by the crash-loop backoff.
    pub const BACK_OFF: &str = "BackOff";
    /// A probe failed.
    pub const UNHEALTHY: &str = "Unhealthy";
    /// Creating or starting a container failed.
    pub const FAILED: &str = "Failed";
}

/// An event waiting to be sent, with how often it repeated meanwhile.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The event.
    pub event: MirrorEvent,
    /// How many times it happened.
    pub count: i32,
    /// First occurrence.
    pub first: Timestamp,
    /// Last occurrence.
    pub last: Timestamp,
}

/// Bounded FIFO of events; identical events (same pod, reason, message) are merged.
#[derive(Debug)]
pub struct EventQueue {
    items: VecDeque<Pending>,
    capacity: usize,
    /// Events dropped because the queue was full (oldest first).
    pub dropped: u64,
}

impl EventQueue {
    /// A queue holding at most `capacity` distinct events.
    pub fn new(capacity: usize) -> Self {
        Self {
            items: VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }

    /// Add an occurrence of `event` at `at`.
    pub fn push(&mut self, event: MirrorEvent, at: Timestamp) {
        if let Some(p) = self.items.iter_mut().find(|p| p.event == event) {
            p.count = p.count.saturating_add(1);
            p.last = at;
            return;
        }
        if self.items.len() >= self.capacity {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(Pending {
            event,
            count: 1,
            first: at,
            last: at,
        });
    }

    /// Take the oldest event.
    pub fn pop(&mut self) -> Option<Pending> {
        self.items.pop_front()
    }

    /// Put an event back at the front (the send failed for a reason worth retrying).
    pub fn unpop(&mut self, p: Pending) {
        self.items.push_front(p);
    }

    /// Number of distinct events waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.items.len()
    }
}

/// A token bucket: `burst` events at once, then one every `interval`.
#[derive(Debug, Clone)]
pub struct EventLimiter {
    burst: u32,
    interval: Duration,
    tokens: u32,
    refilled: Instant,
}

impl EventLimiter {
    /// A full bucket at `now`.
    pub fn new(burst: u32, interval: Duration, now: Instant) -> Self {
        Self {
            burst,
            interval,
            tokens: burst,
            refilled: now,
        }
    }

    /// Take a token if one is available at `now`.
    pub fn admit(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// When the next token appears (`now` if one is available).
    pub fn next_token(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens > 0 {
            now
        } else {
            self.refilled + self.interval
        }
    }

    fn refill(&mut self, now: Instant) {
        if self.interval.is_zero() {
            self.tokens = self.burst;
            return;
        }
        while self.tokens < self.burst && now >= self.refilled + self.interval {
            self.tokens += 1;
            self.refilled += self.interval;
        }
        if self.tokens == self.burst {
            self.refilled = now;
        }
    }
}

/// The core/v1 Event for a pending event about the mirror pod `involved_uid`.
pub fn event_object(p: &Pending, involved_uid: &str, node: &str) -> Event {
    let (namespace, name) = &p.event.pod;
    let nanos = p.first.as_nanosecond();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{nanos:x}")),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            uid: Some(involved_uid.to_owned()),
            ..ObjectReference::default()
        },
        reason: Some(p.event.reason.clone()),
        message: Some(p.event.message.clone()),
        type_: Some(if p.event.warning { "Warning" } else { "Normal" }.into()),
        count: Some(p.count),
        first_timestamp: Some(Time(p.first)),
        last_timestamp: Some(Time(p.last)),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(node.into()),
        }),
        reporting_component: Some("podvisor".into()),
        reporting_instance: Some(node.into()),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(reason: &str) -> MirrorEvent {
        MirrorEvent {
            pod: ("kube-system".into(), "etcd-n1".into()),
            reason: reason.into(),
            message: "container etcd".into(),
            warning: reason == "BackOff",
        }
    }

    #[test]
    fn repeats_are_coalesced_and_queue_is_bounded() {
        let t = Timestamp::UNIX_EPOCH;
        let mut q = EventQueue::new(2);
        q.push(ev("BackOff"), t);
        q.push(ev("BackOff"), t);
        q.push(ev("Started"), t);
        q.push(ev("Killing"), t);
        assert_eq!((q.len(), q.dropped), (2, 1));
        let first = q.pop().unwrap();
        assert_eq!((first.event.reason.as_str(), first.count), ("Started", 1));
    }

    #[test]
    fn limiter_allows_burst_then_one_per_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = EventLimiter::new(2, s(5), t0);
        assert!(l.admit(t0) && l.admit(t0));
        assert!(!l.admit(t0 + s(4)));
        assert_eq!(l.next_token(t0 + s(4)), t0 + s(5));
        assert!(l.admit(t0 + s(5)));
        assert!(!l.admit(t0 + s(6)));
        assert!(l.admit(t0 + s(20)) && l.admit(t0 + s(20)));
        assert!(!l.admit(t0 + s(20)));
    }

    #[test]
    fn event_object_names_pod_uid_count_and_type() {
        let mut q = EventQueue::new(4);
        q.push(ev("BackOff"), Timestamp::UNIX_EPOCH);
        q.push(ev("BackOff"), Timestamp::UNIX_EPOCH);
        let e = event_object(&q.pop().unwrap(), "mirror-uid", "n1");
        assert_eq!(e.involved_object.uid.as_deref(), Some("mirror-uid"));
        assert_eq!(e.count, Some(2));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.metadata.namespace.as_deref(), Some("kube-system"));
    }
}
