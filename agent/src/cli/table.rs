//! Table output as `kubectl get pods` prints it: the READY / STATUS / RESTARTS / AGE
//! columns follow kubectl's pod printer, durations its `HumanDuration`.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::supervise::clock::from_timestamp;

/// One row of `podvisor ps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRow {
    /// `NAMESPACE` column.
    pub namespace: String,
    /// `NAME` column.
    pub name: String,
    /// `READY`: ready/total containers (sidecars count).
    pub ready: String,
    /// `STATUS`: phase, or the most telling container reason.
    pub status: String,
    /// `RESTARTS`, with `(5m ago)` after the last restart.
    pub restarts: String,
    /// `AGE`.
    pub age: String,
}

/// kubectl's `HumanDuration`: `45s`, `5m30s`, `12m`, `5h3m`, `30h`, `3d4h`, `40d`, `2y10d`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            days => format!("{}y{days}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn since(t: SystemTime, now: SystemTime) -> String {
    human_duration(now.duration_since(t).unwrap_or_default())
}

fn last_restart(c: &ContainerStatus) -> Option<SystemTime> {
    let t = c
        .last_state
        .as_ref()?
        .terminated
        .as_ref()?
        .finished_at
        .as_ref()?;
    Some(from_timestamp(t.0))
}

fn terminated_reason(prefix: &str, reason: Option<&str>, signal: Option<i32>, code: i32) -> String {
    match (reason.filter(|r| !r.is_empty()), signal.filter(|s| *s != 0)) {
        (Some(r), _) => format!("{prefix}{r}"),
        (None, Some(s)) => format!("{prefix}Signal:{s}"),
        (None, None) => format!("{prefix}ExitCode:{code}"),
    }
}

/// Computes kubectl's columns for one pod.
pub fn pod_row(pod: &Pod, now: SystemTime) -> PodRow {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let init_specs = spec.init_containers.unwrap_or_default();
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"))
    };
    let mut total =
        spec.containers.len() + init_specs.iter().filter(|c| is_sidecar(&c.name)).count();
    total = total.max(status.container_statuses.as_ref().map_or(0, Vec::len));
    let mut reason = status
        .reason
        .clone()
        .or(status.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    let (mut restarts, mut sidecar_restarts, mut ready) = (0i64, 0i64, 0usize);
    let mut last: Option<SystemTime> = None;
    let mut note = |c: &ContainerStatus| {
        if let Some(t) = last_restart(c) {
            last = Some(last.map_or(t, |l| l.max(t)));
        }
    };
    let mut initializing = false;
    let init_statuses = status.init_container_statuses.clone().unwrap_or_default();
    for (i, c) in init_statuses.iter().enumerate() {
        restarts += i64::from(c.restart_count);
        note(c);
        let state = c.state.clone().unwrap_or_default();
        if is_sidecar(&c.name) {
            sidecar_restarts += i64::from(c.restart_count);
        }
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if is_sidecar(&c.name) && c.started == Some(true) {
            if c.ready {
                ready += 1;
            }
            continue;
        }
        initializing = true;
        reason = if let Some(t) = &state.terminated {
            terminated_reason("Init:", t.reason.as_deref(), t.signal, t.exit_code)
        } else if let Some(w) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.clone())
            .filter(|r| !r.is_empty() && r != "PodInitializing")
        {
            format!("Init:{w}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        break;
    }
    let initialized = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Initialized" && c.status == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        let mut has_running = false;
        for c in status.container_statuses.iter().flatten().rev() {
            restarts += i64::from(c.restart_count);
            note(c);
            let state = c.state.clone().unwrap_or_default();
            if let Some(w) = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .filter(|r| !r.is_empty())
            {
                reason = w;
            } else if let Some(t) = &state.terminated {
                reason = terminated_reason("", t.reason.as_deref(), t.signal, t.exit_code);
            } else if c.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }
    if pod.metadata.deletion_timestamp.is_some() {
        reason = "Terminating".into();
    }
    let restarts = match last {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(t, now)),
        _ => restarts.to_string(),
    };
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .or(status.start_time.as_ref())
        .map(|t| from_timestamp(t.0));
    PodRow {
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: pod.metadata.name.clone().unwrap_or_default(),
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
        age: created.map_or_else(|| "<unknown>".into(), |t| since(t, now)),
    }
}

/// Left-aligned columns separated by three spaces (kubectl's tabwriter padding).
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, (cell, w)) in cells.into_iter().zip(&widths).enumerate() {
            out.push_str(cell);
            if i + 1 < n {
                out.push_str(&" ".repeat(w - cell.chars().count() + 3));
            }
        }
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
