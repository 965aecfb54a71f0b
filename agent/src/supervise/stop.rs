//! How a pod is stopped, as data: the order of containers, each one's stop signal and
//! preStop hook, and the deadlines of the grace period.
//!
//! The kubelet's rules: app containers are stopped together, then sidecars one by one in
//! reverse order; a container's preStop hook runs first and its time is taken from the
//! grace period (`terminationGracePeriodSeconds`, default 30 s); then the stop signal
//! (the container's `lifecycle.stopSignal`, else the image's `StopSignal`, else
//! SIGTERM); then SIGKILL when what remains of the grace period (at least 2 s) runs out.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Pod};

use super::phase::is_sidecar;

/// The kubelet's `minimumGracePeriodInSeconds`: the stop signal always gets this long.
pub const MIN_GRACE: Duration = Duration::from_secs(2);

/// The grace period of a pod (`terminationGracePeriodSeconds`, default 30 s; negative
/// values count as 0, and 0 still leaves [`MIN_GRACE`] after the signal).
pub fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// The groups of containers to stop, in order: app (and still-running init) containers
/// together, then each sidecar alone, last declared first.
pub fn stop_order(pod: &Pod) -> Vec<Vec<String>> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let first: Vec<String> = inits
        .iter()
        .filter(|c| !is_sidecar(c))
        .chain(spec.containers.iter())
        .map(|c| c.name.clone())
        .collect();
    let mut groups = vec![first];
    groups.extend(
        inits
            .iter()
            .rev()
            .filter(|c| is_sidecar(c))
            .map(|c| vec![c.name.clone()]),
    );
    groups.retain(|g| !g.is_empty());
    groups
}

/// A container's preStop hook.
#[derive(Debug, Clone, PartialEq)]
pub enum PreStop {
    /// Run a command in the container.
    Exec(Vec<String>),
    /// An HTTP GET against the container.
    HttpGet(HTTPGetAction),
    /// Sleep (in the supervisor; the container keeps running).
    Sleep(Duration),
}

/// The preStop hook of `c`, if it has one that can run (an empty exec has none).
pub fn pre_stop(c: &Container) -> Option<PreStop> {
    let h = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
    if let Some(cmd) = h
        .exec
        .as_ref()
        .and_then(|e| e.command.clone())
        .filter(|c| !c.is_empty())
    {
        return Some(PreStop::Exec(cmd));
    }
    if let Some(get) = &h.http_get {
        return Some(PreStop::HttpGet(get.clone()));
    }
    h.sleep
        .as_ref()
        .map(|s| PreStop::Sleep(Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0))))
}

/// The signal number for a name (`SIGTERM`, `TERM`, `sigterm`) or number (`15`).
pub fn parse_signal(name: &str) -> Option<i32> {
    let name = name.trim();
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: [(&str, i32); 24] = [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("TRAP", 5),
        ("ABRT", 6),
        ("BUS", 7),
        ("FPE", 8),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("STKFLT", 16),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("TTIN", 21),
        ("TTOU", 22),
        ("URG", 23),
        ("WINCH", 28),
    ];
    if let Some(rt) = bare.strip_prefix("RTMIN+") {
        return rt.parse::<i32>().ok().map(|n| 34 + n).filter(|n| *n <= 64);
    }
    NAMES.iter().find(|(n, _)| *n == bare).map(|(_, s)| *s)
}

/// The stop signal of `c`: its `lifecycle.stopSignal`, else the image's `StopSignal`,
/// else SIGTERM. An unknown name falls back to SIGTERM rather than never stopping.
pub fn stop_signal(c: &Container, image_stop_signal: Option<&str>) -> i32 {
    c.lifecycle
        .as_ref()
        .and_then(|l| l.stop_signal.as_deref())
        .or(image_stop_signal)
        .and_then(parse_signal)
        .unwrap_or(15)
}

/// When to send SIGKILL: `signal_sent_at` plus what remains of `grace` after the
/// preStop hook took `pre_stop_took`, but never less than [`MIN_GRACE`].
pub fn kill_deadline(
    grace: Duration,
    pre_stop_took: Duration,
    signal_sent_at: SystemTime,
) -> SystemTime {
    signal_sent_at + grace.saturating_sub(pre_stop_took).max(MIN_GRACE)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ExecAction, Lifecycle, LifecycleHandler, PodSpec, SleepAction,
    };

    use super::*;

    fn c(name: &str, sidecar: bool) -> Container {
        Container {
            name: name.into(),
            restart_policy: sidecar.then(|| "Always".into()),
            ..Default::default()
        }
    }

    #[test]
    fn apps_stop_first_then_sidecars_in_reverse() {
        let pod = Pod {
            spec: Some(PodSpec {
                init_containers: Some(vec![c("s1", true), c("init", false), c("s2", true)]),
                containers: vec![c("a", false), c("b", false)],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            stop_order(&pod),
            vec![vec!["init", "a", "b"], vec!["s2"], vec!["s1"]]
        );
        assert_eq!(grace_period(&pod), Duration::from_secs(30));
    }

    #[test]
    fn signal_names_table() {
        let cases = [
            ("SIGTERM", Some(15)),
            ("TERM", Some(15)),
            ("sigint", Some(2)),
            ("SIGQUIT", Some(3)),
            ("9", Some(9)),
            ("SIGWINCH", Some(28)),
            ("SIGRTMIN+3", Some(37)),
            ("0", None),
            ("SIGNOPE", None),
        ];
        for (name, want) in cases {
            assert_eq!(parse_signal(name), want, "{name}");
        }
    }

    #[test]
    fn stop_signal_prefers_container_then_image_then_term() {
        let mut x = c("x", false);
        assert_eq!(stop_signal(&x, None), 15);
        assert_eq!(stop_signal(&x, Some("SIGQUIT")), 3);
        x.lifecycle = Some(Lifecycle {
            stop_signal: Some("SIGUSR1".into()),
            ..Default::default()
        });
        assert_eq!(stop_signal(&x, Some("SIGQUIT")), 10);
        x.lifecycle = Some(Lifecycle {
            stop_signal: Some("bogus".into()),
            ..Default::default()
        });
        assert_eq!(
            stop_signal(&x, Some("SIGQUIT")),
            15,
            "unknown name: SIGTERM, never hang"
        );
    }

    #[test]
    fn pre_stop_handlers_and_deadline() {
        let mut x = c("x", false);
        assert_eq!(pre_stop(&x), None);
        x.lifecycle = Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["/bin/drain".into()]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(pre_stop(&x), Some(PreStop::Exec(vec!["/bin/drain".into()])));
        x.lifecycle = Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: 5 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(pre_stop(&x), Some(PreStop::Sleep(Duration::from_secs(5))));
        let t0 = SystemTime::UNIX_EPOCH;
        let cases = [(30, 5, 25), (30, 29, 2), (30, 40, 2), (0, 0, 2)];
        for (grace, took, want) in cases {
            let got = kill_deadline(Duration::from_secs(grace), Duration::from_secs(took), t0);
            assert_eq!(
                got,
                t0 + Duration::from_secs(want),
                "grace {grace} took {took}"
            );
        }
    }
}
