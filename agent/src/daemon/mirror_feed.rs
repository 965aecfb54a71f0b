//! Feeding the mirror task from the status store after each reconcile pass: the static
//! pods with their statuses, and the pod events recorded since the last pass. Nothing here
//! waits for the API server (the [`MirrorHandle`] only stores values).

use std::time::SystemTime;

use crate::api::store::StatusStore;
use crate::mirror::{MirrorEvent, MirrorHandle, StaticPodState};
use crate::supervise::events::EventType;

/// Remembers how far the events have been forwarded.
#[derive(Debug)]
pub struct MirrorFeed {
    handle: MirrorHandle,
    events_since: SystemTime,
}

impl MirrorFeed {
    /// A feed into `handle`.
    pub fn new(handle: MirrorHandle) -> Self {
        Self {
            handle,
            events_since: SystemTime::UNIX_EPOCH,
        }
    }

    /// Hands the current pods (with status) and the new events to the mirror task.
    pub fn update(&mut self, status: &StatusStore) {
        self.handle.set_static_pods(
            status
                .pods()
                .into_iter()
                .map(|e| StaticPodState::from_pod(e.pod)),
        );
        let mut newest = self.events_since;
        for e in status.events(None) {
            if e.last_timestamp <= self.events_since {
                continue;
            }
            newest = newest.max(e.last_timestamp);
            let key = (e.namespace.clone(), e.pod.clone());
            self.handle.record_event(match e.type_ {
                EventType::Normal => MirrorEvent::normal(key, &e.reason, e.message),
                EventType::Warning => MirrorEvent::warning(key, &e.reason, e.message),
            });
        }
        self.events_since = newest;
    }

    /// Asks the mirror task to end.
    pub fn stop(&self) {
        self.handle.stop();
    }
}
