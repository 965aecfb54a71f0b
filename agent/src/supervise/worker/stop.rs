//! Stopping a pod's containers from its worker: stop targets with their signals, the
//! graceful group stop with exits read from the worker's own channel, and the whole
//! pod's stop in the kubelet's order.

use std::collections::VecDeque;
use std::time::Instant;

use super::{Event, Worker};
use crate::supervise::events::EventType;
use crate::supervise::hooks::{HookHandler, run_hook};
use crate::supervise::podplan::{apply_stopped, containers};
use crate::supervise::record::Termination;
use crate::supervise::shim::handle::{PodShim, StopOutcome, StopTarget};
use crate::supervise::stop::{PreStop, grace_period, pre_stop, stop_order, stop_signal};

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
        let took = self.run_pre_stop(targets, grace);
        let Some(outcome) = self.signal_and_wait(shim, targets, grace.saturating_sub(took)) else {
            return;
        };
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

    /// Runs the preStop hooks of the running `targets` within `grace`, all at once (the
    /// kubelet runs each container's hook on its own goroutine), and returns the time they
    /// took (taken from the grace period, as the kubelet does). A failing hook is a
    /// `FailedPreStopHook` event and the stop goes on.
    fn run_pre_stop(
        &mut self,
        targets: &[StopTarget],
        grace: std::time::Duration,
    ) -> std::time::Duration {
        let t0 = Instant::now();
        let mut jobs = Vec::new();
        for t in targets {
            let Some(record) = self
                .state
                .containers
                .iter()
                .find(|r| r.name == t.container && r.running.is_some())
            else {
                continue;
            };
            let Some(spec) = containers(&self.pod)
                .into_iter()
                .find(|(c, _)| c.name == t.container)
                .map(|(c, _)| c.clone())
            else {
                continue;
            };
            let Some(hook) = pre_stop(&spec) else {
                continue;
            };
            let target = self.hook_target(record.container_id.as_deref());
            jobs.push((spec, hook, target));
        }
        let failures: Vec<(String, String)> = std::thread::scope(|s| {
            let running: Vec<_> = jobs
                .iter()
                .map(|(c, hook, target)| {
                    s.spawn(move || {
                        let handler = match hook {
                            PreStop::Sleep(d) => {
                                std::thread::sleep((*d).min(grace));
                                return Ok(());
                            }
                            PreStop::Exec(cmd) => HookHandler::Exec(cmd.clone()),
                            PreStop::HttpGet(get) => HookHandler::HttpGet(get.clone()),
                        };
                        run_hook(c, &handler, target, grace)
                    })
                })
                .collect();
            running
                .into_iter()
                .zip(&jobs)
                .filter_map(|(h, (c, _, _))| match h.join() {
                    Ok(Ok(())) => None,
                    Ok(Err(m)) => Some((c.name.clone(), m)),
                    Err(_) => Some((c.name.clone(), "the preStop hook panicked".into())),
                })
                .collect()
        });
        for (container, message) in failures {
            self.event(
                Some(&container),
                EventType::Warning,
                "FailedPreStopHook",
                message,
            );
        }
        t0.elapsed()
    }

    /// Signals `targets`, waits up to `grace` (then SIGKILL) for their exits on the
    /// worker's channel; other events that arrive meanwhile are kept for later.
    fn signal_and_wait(
        &mut self,
        shim: &mut PodShim,
        targets: &[StopTarget],
        grace: std::time::Duration,
    ) -> Option<StopOutcome> {
        let mailbox = &self.mailbox;
        let mut queued = VecDeque::new();
        let mut stop_requested = false;
        // Events the main loop must still see: probe verdicts about containers not being
        // stopped (a readiness change arriving now is reported only once) and the loss of
        // the shim connection.
        let mut later = Vec::new();
        let stopping: Vec<&str> = targets.iter().map(|t| t.container.as_str()).collect();
        let mut wait = |names: &mut Vec<String>, deadline: Instant| {
            let mut got = Vec::new();
            while !names.is_empty() {
                match mailbox.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(Event::Exited(e)) => match names.iter().position(|n| *n == e.container) {
                        Some(i) => {
                            names.remove(i);
                            got.push(e);
                        }
                        None => queued.push_back(e),
                    },
                    Ok(Event::Stop | Event::Detach) => stop_requested = true,
                    Ok(Event::Probe(c, u)) if !stopping.contains(&c.as_str()) => {
                        later.push(Event::Probe(c, u));
                    }
                    Ok(Event::Probe(..)) => {} // about a container being stopped
                    Ok(Event::ShimLost) => {
                        later.push(Event::ShimLost);
                        break;
                    }
                    Err(_) => break,
                }
            }
            got
        };
        let outcome = shim.stop_group_via(targets, grace, &mut wait);
        for event in later {
            self.mailbox.send(event);
        }
        self.pending.extend(queued);
        self.stop_requested |= stop_requested;
        outcome.ok()
    }

    /// Liveness or startup failure: stop one container within `grace` (the prober's
    /// `terminationGracePeriodSeconds`) and put its exit through the restart policy.
    pub(super) fn kill_for_restart(
        &mut self,
        shim: &mut PodShim,
        name: &str,
        grace: std::time::Duration,
        message: String,
    ) {
        self.event(Some(name), EventType::Normal, "Killing", message);
        let targets = self.targets(&[name.to_string()]);
        if let Some(outcome) = self.signal_and_wait(shim, &targets, grace) {
            self.pending.extend(outcome.exits);
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
