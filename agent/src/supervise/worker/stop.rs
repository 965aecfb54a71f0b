//! Stopping a pod's containers from its worker: stop targets with their signals, the
//! graceful group stop with exits read from the worker's own channel, and the whole
//! pod's stop in the kubelet's order.

use std::collections::VecDeque;
use std::time::Instant;

use super::{Event, Worker};
use crate::supervise::events::EventType;
use crate::supervise::podplan::{apply_stopped, containers};
use crate::supervise::record::Termination;
use crate::supervise::shim::handle::{PodShim, StopTarget};
use crate::supervise::stop::{grace_period, stop_order, stop_signal};

impl Worker {
    pub(super) fn targets(&self, names: &[String]) -> Vec<StopTarget> {
        containers(&self.pod)
            .into_iter()
            .filter(|(c, _)| names.contains(&c.name))
            .map(|(c, _)| StopTarget {
                container: c.name.clone(),
                signal: stop_signal(c, self.maker.image_stop_signal(c).as_deref()),
            })
            .collect()
    }

    pub(super) fn stop_targets(&mut self, shim: &mut PodShim, targets: &[StopTarget]) {
        for t in targets {
            self.event(
                Some(&t.container),
                EventType::Normal,
                "Killing",
                format!("Stopping container {}", t.container),
            );
        }
        let grace = grace_period(&self.pod);
        let rx = &self.rx;
        let mut queued = VecDeque::new();
        let mut stop_requested = false;
        let mut wait = |names: &mut Vec<String>, deadline: Instant| {
            let mut got = Vec::new();
            while !names.is_empty() {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(Event::Exited(e)) => match names.iter().position(|n| *n == e.container) {
                        Some(i) => {
                            names.remove(i);
                            got.push(e);
                        }
                        None => queued.push_back(e),
                    },
                    Ok(Event::Stop | Event::Detach) => stop_requested = true,
                    Ok(Event::ShimLost) => break,
                    Err(_) => break,
                }
            }
            got
        };
        let outcome = shim.stop_group_via(targets, grace, &mut wait);
        self.pending.extend(queued);
        self.stop_requested |= stop_requested;
        let Ok(outcome) = outcome else { return };
        for exit in outcome.exits {
            let Some(r) = self.record(&exit.container) else {
                continue;
            };
            let termination = Termination {
                exit,
                message: None,
                reason: None,
                container_id: r.container_id.clone(),
            };
            apply_stopped(r, termination);
        }
        for c in outcome.stuck {
            self.event(
                Some(&c),
                EventType::Warning,
                "FailedKillPod",
                format!("container {c} did not exit after SIGKILL"),
            );
        }
    }

    /// Stops every container in the kubelet's order.
    pub(super) fn stop(&mut self, shim: &mut PodShim) {
        for group in stop_order(&self.pod) {
            let targets = self.targets(&group);
            self.stop_targets(shim, &targets);
        }
        self.apply_pending();
        self.publish();
    }
}
