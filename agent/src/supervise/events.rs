//! A bounded ring of pod events, aggregated as the kubelet's event recorder does: an
//! event equal to a recent one (same pod, object, type, reason and message) bumps that
//! one's `count` and `lastTimestamp` instead of adding a line.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::clock::serde_rfc3339;

/// `Normal` or `Warning`, as in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

/// One (aggregated) event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodEvent {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's UID.
    pub uid: String,
    /// `spec.containers{name}` when the event is about one container.
    #[serde(default)]
    pub field_path: Option<String>,
    /// Normal or Warning.
    #[serde(rename = "type")]
    pub type_: EventType,
    /// A CamelCase reason (`Started`, `BackOff`, `Killing`, `Failed`...).
    pub reason: String,
    /// A message for people.
    pub message: String,
    /// How many times it happened.
    pub count: u32,
    /// First occurrence.
    #[serde(with = "serde_rfc3339")]
    pub first_timestamp: SystemTime,
    /// Last occurrence.
    #[serde(with = "serde_rfc3339")]
    pub last_timestamp: SystemTime,
}

/// What a caller reports; the ring adds counts and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent<'a> {
    /// The pod's namespace.
    pub namespace: &'a str,
    /// The pod's name.
    pub pod: &'a str,
    /// The pod's UID.
    pub uid: &'a str,
    /// The container's field path, if any.
    pub field_path: Option<String>,
    /// Normal or Warning.
    pub type_: EventType,
    /// The reason.
    pub reason: &'a str,
    /// The message.
    pub message: String,
}

/// The last `capacity` distinct events, oldest first.
#[derive(Debug, Clone)]
pub struct EventRing {
    capacity: usize,
    events: VecDeque<PodEvent>,
}

impl EventRing {
    /// An empty ring holding at most `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            events: VecDeque::new(),
        }
    }

    /// Records an event at `now`: aggregated into an equal earlier one (which moves to
    /// the newest end), or appended, evicting the oldest when full.
    pub fn record(&mut self, e: NewEvent<'_>, now: SystemTime) {
        let same = |x: &PodEvent| {
            x.uid == e.uid
                && x.field_path == e.field_path
                && x.type_ == e.type_
                && x.reason == e.reason
                && x.message == e.message
        };
        if let Some(pos) = self.events.iter().rposition(same)
            && let Some(mut old) = self.events.remove(pos)
        {
            old.count = old.count.saturating_add(1);
            old.last_timestamp = now;
            self.events.push_back(old);
            return;
        }
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(PodEvent {
            namespace: e.namespace.to_string(),
            pod: e.pod.to_string(),
            uid: e.uid.to_string(),
            field_path: e.field_path,
            type_: e.type_,
            reason: e.reason.to_string(),
            message: e.message,
            count: 1,
            first_timestamp: now,
            last_timestamp: now,
        });
    }

    /// All events, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &PodEvent> {
        self.events.iter()
    }

    /// The events of one pod (by name), oldest first.
    pub fn for_pod<'a>(&'a self, pod: &'a str) -> impl Iterator<Item = &'a PodEvent> + 'a {
        self.events.iter().filter(move |e| e.pod == pod)
    }

    /// Number of distinct events held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn ev<'a>(pod: &'a str, reason: &'a str, msg: &str) -> NewEvent<'a> {
        NewEvent {
            namespace: "default",
            pod,
            uid: pod,
            field_path: Some("spec.containers{app}".into()),
            type_: EventType::Warning,
            reason,
            message: msg.into(),
        }
    }

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn repeated_event_is_counted_not_duplicated() {
        let mut r = EventRing::new(10);
        r.record(ev("a", "BackOff", "back-off restarting"), t(0));
        r.record(ev("b", "Started", "started"), t(1));
        r.record(ev("a", "BackOff", "back-off restarting"), t(2));
        r.record(ev("a", "BackOff", "back-off restarting"), t(3));
        let all: Vec<_> = r
            .iter()
            .map(|e| (e.pod.as_str(), e.reason.as_str(), e.count))
            .collect();
        assert_eq!(all, vec![("b", "Started", 1), ("a", "BackOff", 3)]);
        let last = r.iter().last().unwrap();
        assert_eq!((last.first_timestamp, last.last_timestamp), (t(0), t(3)));
    }

    #[test]
    fn different_message_or_container_is_a_new_event() {
        let mut r = EventRing::new(10);
        r.record(ev("a", "Killing", "one"), t(0));
        r.record(ev("a", "Killing", "two"), t(0));
        let mut other = ev("a", "Killing", "two");
        other.field_path = Some("spec.containers{side}".into());
        r.record(other, t(0));
        assert_eq!(r.len(), 3);
        assert_eq!(r.for_pod("a").count(), 3);
        assert_eq!(r.for_pod("b").count(), 0);
    }

    #[test]
    fn ring_evicts_oldest_when_full() {
        let mut r = EventRing::new(3);
        for i in 0..5 {
            r.record(ev("a", "Started", &format!("m{i}")), t(i));
        }
        let msgs: Vec<_> = r.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, vec!["m2", "m3", "m4"]);
        let json = serde_json::to_string(r.iter().next().unwrap()).unwrap();
        assert!(
            json.contains(r#""type":"Warning""#)
                && json.contains(r#""firstTimestamp":"2023-11-14T22:13:22Z""#),
            "{json}"
        );
    }
}
