//! The pod's phase and conditions, computed from its container statuses as the kubelet's
//! `getPhase` and status manager (`GeneratePodInitializedCondition`,
//! `GenerateContainersReadyCondition`, `GeneratePodReadyCondition`) do.
//!
//! Static pods never get a terminal phase from the kubelet's `podIsTerminal` shortcut,
//! so only the container states and the restart policy decide.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};

use super::clock::api_time;
use super::policy::{ContainerKind, RestartPolicy};
use super::record::ContainerRecord;
use super::status::{ProbeView, container_status};

/// Whether an init container is a sidecar (`restartPolicy: Always` on the container).
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

fn has_terminated_last(s: &ContainerStatus) -> Option<i32> {
    s.last_state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

/// Whether any app container has run (is running, or has terminated at least once): the
/// pod has been initialized before, even if a sidecar is restarting now.
pub fn any_regular_started(pod: &Pod, statuses: &[ContainerStatus]) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.containers
        .iter()
        .filter_map(|c| find(statuses, &c.name))
        .any(|s| {
            let st = s.state.as_ref();
            st.is_some_and(|st| st.running.is_some() || st.terminated.is_some())
                || has_terminated_last(s).is_some()
        })
}

/// The kubelet's `getPhase`: Pending, Running, Succeeded or Failed.
pub fn pod_phase(pod: &Pod, init: &[ContainerStatus], regular: &[ContainerStatus]) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "Pending";
    };
    let policy = RestartPolicy::parse(spec.restart_policy.as_deref()).unwrap_or_default();
    let initialized_before = any_regular_started(pod, regular);
    let (mut pending_init, mut pending_sidecars, mut failed_init) = (0, 0, 0);
    for c in spec.init_containers.iter().flatten() {
        let Some(s) = find(init, &c.name) else {
            if is_sidecar(c) {
                pending_sidecars += 1;
            } else {
                pending_init += 1;
            }
            continue;
        };
        let st = s.state.clone().unwrap_or_default();
        if is_sidecar(c) {
            if s.started != Some(true) {
                pending_sidecars += 1;
            }
            continue;
        }
        if st.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &st.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if st.waiting.is_some() {
            match has_terminated_last(s) {
                Some(code) if code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in &spec.containers {
        let Some(s) = find(regular, &c.name) else {
            unknown += 1;
            continue;
        };
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = &st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if st.waiting.is_some() {
            if has_terminated_last(s).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if failed_init > 0 && policy == RestartPolicy::Never {
        return "Failed";
    }
    if pending_init > 0 || (pending_sidecars > 0 && !initialized_before) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        return match policy {
            RestartPolicy::Always => "Running", // all are restarting
            _ if stopped == succeeded => "Succeeded",
            RestartPolicy::Never => "Failed",
            RestartPolicy::OnFailure => "Running", // failed ones are restarting
        };
    }
    "Pending"
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.map(str::to_string),
        message,
        ..Default::default()
    }
}

/// `[a b]`, Go's `%s` of a string slice, as in the kubelet's condition messages.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

fn unready_message(unknown: &[&str], bad: &[&str], what: &str) -> Option<String> {
    let mut parts = Vec::new();
    if !unknown.is_empty() {
        parts.push(format!(
            "containers with unknown status: {}",
            go_list(unknown)
        ));
    }
    if !bad.is_empty() {
        parts.push(format!("containers with {what} status: {}", go_list(bad)));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `Initialized`, `ContainersReady` and `Ready` (without transition times).
pub fn pod_conditions(
    pod: &Pod,
    init: &[ContainerStatus],
    regular: &[ContainerStatus],
    phase: &str,
) -> Vec<PodCondition> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    // Initialized
    let (mut unknown, mut incomplete) = (Vec::new(), Vec::new());
    for c in spec.init_containers.iter().flatten() {
        match find(init, &c.name) {
            None => unknown.push(c.name.as_str()),
            Some(s) if is_sidecar(c) => {
                if s.started != Some(true) {
                    incomplete.push(c.name.as_str());
                }
            }
            Some(s) => {
                let done = s
                    .state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0);
                if !done {
                    incomplete.push(c.name.as_str());
                }
            }
        }
    }
    let initialized = if spec.init_containers.as_ref().is_none_or(Vec::is_empty) {
        condition("Initialized", true, None, None)
    } else if phase == "Succeeded" && unknown.is_empty() {
        condition("Initialized", true, Some("PodCompleted"), None)
    } else if any_regular_started(pod, regular) {
        condition("Initialized", true, None, None)
    } else {
        match unready_message(&unknown, &incomplete, "incomplete") {
            Some(m) => condition(
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(m),
            ),
            None => condition("Initialized", true, None, None),
        }
    };
    // ContainersReady: sidecars and app containers.
    let (mut unknown, mut unready) = (Vec::new(), Vec::new());
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c))
        .map(|c| (c, init));
    for (c, statuses) in sidecars.chain(spec.containers.iter().map(|c| (c, regular))) {
        match find(statuses, &c.name) {
            None => unknown.push(c.name.as_str()),
            Some(s) if !s.ready => unready.push(c.name.as_str()),
            Some(_) => {}
        }
    }
    let containers_ready = if phase == "Succeeded" && unknown.is_empty() {
        condition("ContainersReady", false, Some("PodCompleted"), None)
    } else if phase == "Failed" {
        condition("ContainersReady", false, Some("PodFailed"), None)
    } else {
        match unready_message(&unknown, &unready, "unready") {
            Some(m) => condition(
                "ContainersReady",
                false,
                Some("ContainersNotReady"),
                Some(m),
            ),
            None => condition("ContainersReady", true, None, None),
        }
    };
    // Ready: ContainersReady (readiness gates need an API server; static pods have none).
    let mut ready = containers_ready.clone();
    ready.type_ = "Ready".to_string();
    vec![initialized, ready, containers_ready]
}

/// Facts about a pod that are not per container.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    /// When the agent first started working on the pod.
    pub start_time: Option<SystemTime>,
    /// The node's IP.
    pub host_ip: Option<String>,
    /// The pod's IP (the node's with `hostNetwork`).
    pub pod_ip: Option<String>,
    /// The pod's shim and namespaces exist (`PodReadyToStartContainers`).
    pub sandbox_ready: bool,
    /// `Guaranteed`, `Burstable` or `BestEffort`.
    pub qos_class: Option<String>,
}

/// The whole `PodStatus` of `pod` from its container records and probe results. Condition
/// transition times are kept from `previous` while a condition's status is unchanged.
pub fn pod_status(
    pod: &Pod,
    records: &[ContainerRecord],
    probes: &BTreeMap<String, ProbeView>,
    facts: &PodFacts,
    previous: Option<&PodStatus>,
    now: SystemTime,
) -> PodStatus {
    let empty = Vec::new();
    let (init_specs, specs) = match &pod.spec {
        Some(s) => (s.init_containers.as_ref().unwrap_or(&empty), &s.containers),
        None => (&empty, &empty),
    };
    let has_init = !init_specs.is_empty();
    let status_of = |c: &Container, kind: ContainerKind| {
        let rec = records.iter().find(|r| r.name == c.name);
        let probe = probes.get(&c.name).copied().unwrap_or_default();
        container_status(c, kind, rec, probe, has_init)
    };
    let init: Vec<ContainerStatus> = init_specs
        .iter()
        .map(|c| {
            status_of(
                c,
                if is_sidecar(c) {
                    ContainerKind::Sidecar
                } else {
                    ContainerKind::Init
                },
            )
        })
        .collect();
    let regular: Vec<ContainerStatus> = specs
        .iter()
        .map(|c| status_of(c, ContainerKind::Regular))
        .collect();
    let phase = pod_phase(pod, &init, &regular);
    let mut conditions = vec![condition(
        "PodReadyToStartContainers",
        facts.sandbox_ready,
        None,
        None,
    )];
    conditions.extend(pod_conditions(pod, &init, &regular, phase));
    conditions.push(condition("PodScheduled", true, None, None));
    let old = previous.and_then(|p| p.conditions.as_ref());
    for c in &mut conditions {
        let kept = old
            .and_then(|o| {
                o.iter()
                    .find(|o| o.type_ == c.type_ && o.status == c.status)
            })
            .and_then(|o| o.last_transition_time.clone());
        c.last_transition_time = Some(kept.unwrap_or_else(|| api_time(now)));
    }
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: facts.host_ip.clone(),
        host_ips: facts.host_ip.clone().map(|ip| vec![HostIP { ip }]),
        pod_ip: facts.pod_ip.clone(),
        pod_ips: facts.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: facts.start_time.map(api_time),
        qos_class: facts.qos_class.clone(),
        init_container_statuses: has_init.then_some(init),
        container_statuses: Some(regular),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "phase_tests.rs"]
mod tests;
