//! Resources → cgroup values, as the kubelet computes them for the runtime:
//! `limits.memory` → `memory.max` (swap limit equal, so no swap), `limits.cpu` → CFS quota
//! over a 100 ms period (`cpu.max`), `requests.cpu` → shares (min 2) → `cpu.weight` with the
//! kubelet's conversion, and the pod's pids limit. Also the cgroup path
//! `<parent>/pods/<qos>/pod<uid>/<container>`.

use k8s_openapi::api::core::v1::Container;
use serde_json::{Value, json};

use crate::pod::QosClass;
use crate::pod::quantity::Quantity;

/// CFS period in microseconds (the kubelet's default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest CFS quota the kubelet sets (1 ms).
pub const MIN_QUOTA_US: i64 = 1_000;
/// cgroup v1 share bounds.
pub const MIN_SHARES: u64 = 2;
/// Largest cgroup v1 shares value.
pub const MAX_SHARES: u64 = 262_144;

/// The cgroup-relevant numbers of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupValues {
    /// `memory.max` in bytes.
    pub memory_max: Option<i64>,
    /// CFS quota per period in µs (`cpu.max` first field).
    pub cpu_quota: Option<i64>,
    /// cgroup v1 shares from the CPU request.
    pub cpu_shares: u64,
    /// cgroup v2 `cpu.weight` from the shares.
    pub cpu_weight: u64,
    /// `pids.max`.
    pub pids_max: Option<i64>,
}

fn get(c: &Container, requests: bool, name: &str) -> Option<Quantity> {
    let r = c.resources.as_ref()?;
    let m = if requests {
        r.requests.as_ref()
    } else {
        r.limits.as_ref()
    }?;
    Quantity::parse(&m.get(name)?.0).ok()
}

/// `MilliCPUToShares`: 1 CPU = 1024 shares, clamped to [2, 262144].
pub fn milli_cpu_to_shares(milli: i64) -> u64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    ((milli as u64).saturating_mul(1024) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// The kubelet's (and runc's) shares → `cpu.weight` conversion: [2, 262144] → [1, 10000].
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + ((s - 2) * 9999) / 262_142
}

/// `MilliCPUToQuota`: quota for a period, at least 1 ms; none for no limit.
pub fn milli_cpu_to_quota(milli: i64) -> Option<i64> {
    if milli <= 0 {
        return None;
    }
    Some((milli * CPU_PERIOD_US as i64 / 1000).max(MIN_QUOTA_US))
}

/// The container's cgroup values (`pids_max` is the pod-level limit, if any).
pub fn cgroup_values(c: &Container, pod_pids_limit: Option<i64>) -> CgroupValues {
    let cpu_request = get(c, true, "cpu").map(|q| q.milli_value()).unwrap_or(0);
    let cpu_limit = get(c, false, "cpu").map(|q| q.milli_value()).unwrap_or(0);
    let shares = milli_cpu_to_shares(cpu_request);
    CgroupValues {
        memory_max: get(c, false, "memory")
            .map(|q| q.value())
            .filter(|v| *v > 0),
        cpu_quota: milli_cpu_to_quota(cpu_limit),
        cpu_shares: shares,
        cpu_weight: cpu_shares_to_weight(shares),
        pids_max: pod_pids_limit.filter(|p| *p > 0),
    }
}

/// The OCI `linux.resources` object for the values (devices added by the caller).
pub fn resources_json(v: &CgroupValues, devices: Value) -> Value {
    let mut r = json!({"devices": devices, "cpu": {"shares": v.cpu_shares}});
    if let Some(q) = v.cpu_quota {
        r["cpu"]["quota"] = json!(q);
        r["cpu"]["period"] = json!(CPU_PERIOD_US);
    }
    if let Some(m) = v.memory_max {
        r["memory"] = json!({"limit": m, "swap": m});
    }
    if let Some(p) = v.pids_max {
        r["pids"] = json!({"limit": p});
    }
    r
}

/// `<parent>/pods/<qos>/pod<uid>`: the pod's cgroup.
pub fn pod_cgroup(parent: &str, qos: QosClass, uid: &str) -> String {
    format!(
        "{}/pods/{}/pod{uid}",
        parent.trim_end_matches('/'),
        qos.cgroup_dir()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_weight_and_quota_table() {
        // (milli request, shares, weight)
        let table = [
            (0, 2, 1),
            (1, 2, 1),
            (100, 102, 4),
            (250, 256, 10),
            (1000, 1024, 39),
            (2000, 2048, 79),
            (300_000, 262_144, 10_000),
        ];
        for (milli, shares, weight) in table {
            assert_eq!(milli_cpu_to_shares(milli), shares, "shares for {milli}m");
            assert_eq!(
                cpu_shares_to_weight(shares),
                weight,
                "weight for {shares} shares"
            );
        }
        assert_eq!(milli_cpu_to_quota(0), None);
        assert_eq!(milli_cpu_to_quota(5), Some(1_000));
        assert_eq!(milli_cpu_to_quota(250), Some(25_000));
        assert_eq!(milli_cpu_to_quota(1500), Some(150_000));
    }

    #[test]
    fn pod_cgroup_path_has_the_qos_level() {
        assert_eq!(
            pod_cgroup("/podvisor/", QosClass::Burstable, "abc"),
            "/podvisor/pods/burstable/podabc"
        );
    }
}
