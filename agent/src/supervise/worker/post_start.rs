//! postStart hooks, and where a pod's hooks run. As the kubelet does, a postStart hook runs
//! right after its container started, and the worker waits for it (bounded by
//! [`POST_START_LIMIT`]); if it fails the event is `FailedPostStartHook` and the container
//! is killed, its exit going through the restart policy like any other.

use std::time::Duration;

use k8s_openapi::api::core::v1::Container;

use super::Worker;
use crate::supervise::events::EventType;
use crate::supervise::hooks::{HookHandler, HookTarget, run_hook};
use crate::supervise::shim::handle::PodShim;
use crate::supervise::stop::grace_period;

/// The longest a postStart hook may run (the kubelet has no bound; a hook that hangs
/// would hold up the pod's worker forever).
pub const POST_START_LIMIT: Duration = Duration::from_secs(120);

/// The postStart handler of `c`, if it has an `exec` (non-empty) or `httpGet` one.
pub fn post_start(c: &Container) -> Option<HookHandler> {
    let h = c.lifecycle.as_ref()?.post_start.as_ref()?;
    if let Some(cmd) = h
        .exec
        .as_ref()
        .and_then(|e| e.command.clone())
        .filter(|c| !c.is_empty())
    {
        return Some(HookHandler::Exec(cmd));
    }
    h.http_get.clone().map(HookHandler::HttpGet)
}

impl Worker {
    /// Where the hooks of the container run whose current run is `container_id`.
    pub(super) fn hook_target(&self, container_id: Option<&str>) -> HookTarget {
        let host_network = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        HookTarget {
            runtime_root: self.config.runtime_root.clone(),
            container_id: container_id.unwrap_or_default().to_string(),
            netns: (!host_network)
                .then(|| self.namespaces.get("network").cloned())
                .flatten(),
            host: "127.0.0.1".into(),
        }
    }

    /// Runs `c`'s postStart hook (its run `container_id` just started); on failure kills it.
    pub(super) fn run_post_start(&mut self, shim: &mut PodShim, c: &Container, container_id: &str) {
        let Some(handler) = post_start(c) else {
            return;
        };
        let target = self.hook_target(Some(container_id));
        let Err(message) = run_hook(c, &handler, &target, POST_START_LIMIT) else {
            return;
        };
        self.event(
            Some(&c.name),
            EventType::Warning,
            "FailedPostStartHook",
            message,
        );
        let grace = grace_period(&self.pod);
        self.kill_for_restart(
            shim,
            &c.name,
            grace,
            format!("FailedPostStartHook: stopping container {}", c.name),
        );
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ExecAction, Lifecycle, LifecycleHandler};

    use super::*;

    #[test]
    fn post_start_handlers() {
        let mut c = Container::default();
        assert_eq!(post_start(&c), None);
        let with = |h: LifecycleHandler| Lifecycle {
            post_start: Some(h),
            ..Default::default()
        };
        c.lifecycle = Some(with(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![]),
            }),
            ..Default::default()
        }));
        assert_eq!(post_start(&c), None, "an empty command is no hook");
        c.lifecycle = Some(with(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["/bin/warm".into()]),
            }),
            ..Default::default()
        }));
        assert_eq!(
            post_start(&c),
            Some(HookHandler::Exec(vec!["/bin/warm".into()]))
        );
    }
}
