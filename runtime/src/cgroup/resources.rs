//! `linux.resources` to cgroup v2 file writes (pure), with the conversions runc, crun and
//! the kubelet use, and the missing-controller policy.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};

/// One file to write in the container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupWrite {
    /// Controller the file belongs to (`memory`).
    pub controller: String,
    /// File name (`memory.max`).
    pub file: String,
    /// Value to write.
    pub value: String,
    /// Spec field it came from, for error messages.
    pub field: String,
}

fn w(controller: &str, file: &str, value: String, field: &str) -> CgroupWrite {
    CgroupWrite {
        controller: controller.to_string(),
        file: file.to_string(),
        value,
        field: field.to_string(),
    }
}

/// cgroup v1 `cpu.shares` (2..=262144) to v2 `cpu.weight` (1..=10000): the linear map the
/// kubelet uses (`1 + ((shares - 2) * 9999) / 262142`), so 1024 shares gives weight 39.
pub fn cpu_weight_from_shares(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// blkio weight (10..=1000) to `io.weight` (1..=10000), crun's linear map.
pub fn io_weight_from_blkio(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

fn limit(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

/// Everything `res` asks for, as file writes, in a stable order. Device rules
/// (`resources.devices`) are not enforced (v2 needs an eBPF program) and produce no write.
pub fn resource_writes(res: &LinuxResources) -> Result<Vec<CgroupWrite>> {
    let mut out = Vec::new();
    if let Some(m) = res.memory() {
        if let Some(l) = m.limit() {
            out.push(w(
                "memory",
                "memory.max",
                limit(l),
                "linux.resources.memory.limit",
            ));
        }
        if let Some(r) = m.reservation() {
            out.push(w(
                "memory",
                "memory.low",
                limit(r),
                "linux.resources.memory.reservation",
            ));
        }
        if let Some(s) = m.swap() {
            // OCI swap is memory+swap (v1 memsw); v2 counts swap alone.
            let v = match (s, m.limit()) {
                (s, _) if s < 0 => "max".to_string(),
                (s, Some(l)) if l >= 0 => {
                    if s < l {
                        return Err(Error::spec(
                            "linux.resources.memory.swap",
                            format!("{s} is below memory.limit {l} (swap is memory+swap)"),
                        ));
                    }
                    (s - l).to_string()
                }
                (s, _) => s.to_string(),
            };
            out.push(w(
                "memory",
                "memory.swap.max",
                v,
                "linux.resources.memory.swap",
            ));
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares().filter(|s| *s > 0) {
            out.push(w(
                "cpu",
                "cpu.weight",
                cpu_weight_from_shares(s).to_string(),
                "linux.resources.cpu.shares",
            ));
        }
        if c.quota().is_some() || c.period().is_some() {
            let period = c.period().unwrap_or(100_000);
            let quota = match c.quota() {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            out.push(w(
                "cpu",
                "cpu.max",
                format!("{quota} {period}"),
                "linux.resources.cpu.quota",
            ));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            out.push(w(
                "cpuset",
                "cpuset.cpus",
                cpus.to_string(),
                "linux.resources.cpu.cpus",
            ));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            out.push(w(
                "cpuset",
                "cpuset.mems",
                mems.to_string(),
                "linux.resources.cpu.mems",
            ));
        }
    }
    if let Some(p) = res.pids() {
        out.push(w(
            "pids",
            "pids.max",
            limit(if p.limit() <= 0 { -1 } else { p.limit() }),
            "linux.resources.pids.limit",
        ));
    }
    for (i, h) in res.hugepage_limits().iter().flatten().enumerate() {
        out.push(w(
            "hugetlb",
            &format!("hugetlb.{}.max", h.page_size()),
            h.limit().to_string(),
            &format!("linux.resources.hugepageLimits[{i}]"),
        ));
    }
    if let Some(b) = res.block_io() {
        if let Some(weight) = b.weight() {
            out.push(w(
                "io",
                "io.weight",
                io_weight_from_blkio(weight).to_string(),
                "linux.resources.blockIO.weight",
            ));
        }
    }
    if let Some(u) = res.unified() {
        let mut keys: Vec<&String> = u.keys().collect();
        keys.sort();
        for k in keys {
            if k.contains('/') || k.starts_with("cgroup.") {
                return Err(Error::spec(
                    "linux.resources.unified",
                    format!("refusing to write {k:?}"),
                ));
            }
            let ctrl = k.split('.').next().unwrap_or_default();
            out.push(w(
                ctrl,
                k,
                u[k].clone(),
                &format!("linux.resources.unified.{k}"),
            ));
        }
    }
    Ok(out)
}

/// Check `writes` against the `available` controllers. Strict: the first missing one is an
/// error naming it. Best-effort: writes needing a missing controller are dropped and each
/// is returned as a warning.
pub fn check_controllers(
    writes: Vec<CgroupWrite>,
    available: &[String],
    decided_by: &Path,
    best_effort: bool,
) -> Result<(Vec<CgroupWrite>, Vec<String>)> {
    let mut keep = Vec::new();
    let mut warnings = Vec::new();
    for wr in writes {
        if available.contains(&wr.controller) {
            keep.push(wr);
        } else if best_effort {
            warnings.push(format!(
                "cgroup controller {} is not available in {}: {} not applied",
                wr.controller,
                decided_by.display(),
                wr.field
            ));
        } else {
            return Err(Error::MissingController {
                controller: wr.controller,
                what: wr.field,
                parent: decided_by.to_path_buf(),
            });
        }
    }
    Ok((keep, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn cpu_shares_convert_like_the_kubelet() {
        assert_eq!(cpu_weight_from_shares(2), 1);
        assert_eq!(cpu_weight_from_shares(1024), 39);
        assert_eq!(cpu_weight_from_shares(262_144), 10_000);
        assert_eq!(cpu_weight_from_shares(1), 1);
        assert_eq!(io_weight_from_blkio(10), 1);
        assert_eq!(io_weight_from_blkio(1000), 10_000);
        assert_eq!(io_weight_from_blkio(500), 4950);
    }

    #[test]
    fn resources_become_v2_files() {
        let r = res(
            r#"{"memory":{"limit":104857600,"reservation":52428800,"swap":209715200},
                        "cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0-1","mems":"0"},
                        "pids":{"limit":64},
                        "hugepageLimits":[{"pageSize":"2MB","limit":4194304}],
                        "blockIO":{"weight":100},
                        "unified":{"memory.high":"90000000"}}"#,
        );
        let got: Vec<(String, String)> = resource_writes(&r)
            .unwrap()
            .into_iter()
            .map(|w| (w.file, w.value))
            .collect();
        let want: Vec<(&str, &str)> = vec![
            ("memory.max", "104857600"),
            ("memory.low", "52428800"),
            ("memory.swap.max", "104857600"),
            ("cpu.weight", "20"),
            ("cpu.max", "50000 100000"),
            ("cpuset.cpus", "0-1"),
            ("cpuset.mems", "0"),
            ("pids.max", "64"),
            ("hugetlb.2MB.max", "4194304"),
            ("io.weight", "910"),
            ("memory.high", "90000000"),
        ];
        let want: Vec<(String, String)> = want
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn unlimited_values_become_max() {
        let r =
            res(r#"{"memory":{"limit":-1,"swap":-1},"cpu":{"period":50000},"pids":{"limit":0}}"#);
        let got: Vec<String> = resource_writes(&r)
            .unwrap()
            .into_iter()
            .map(|w| format!("{}={}", w.file, w.value))
            .collect();
        assert_eq!(
            got,
            [
                "memory.max=max",
                "memory.swap.max=max",
                "cpu.max=max 50000",
                "pids.max=max"
            ]
        );
    }

    #[test]
    fn swap_below_limit_is_a_spec_error() {
        let r = res(r#"{"memory":{"limit":100,"swap":50}}"#);
        assert!(
            resource_writes(&r)
                .unwrap_err()
                .to_string()
                .contains("memory.swap")
        );
    }

    #[test]
    fn device_rules_alone_write_nothing() {
        let r = res(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#);
        assert!(resource_writes(&r).unwrap().is_empty());
    }

    #[test]
    fn missing_controller_fails_naming_it_unless_best_effort() {
        let r = res(r#"{"memory":{"limit":1000},"pids":{"limit":5}}"#);
        let writes = resource_writes(&r).unwrap();
        let avail = vec!["pids".to_string()];
        let e = check_controllers(
            writes.clone(),
            &avail,
            Path::new("/sys/fs/cgroup/unified"),
            false,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("controller memory"), "{msg}");
        assert!(msg.contains("linux.resources.memory.limit"), "{msg}");
        let (keep, warn) = check_controllers(writes, &avail, Path::new("/x"), true).unwrap();
        assert_eq!(keep.len(), 1);
        assert_eq!(keep[0].file, "pids.max");
        assert_eq!(warn.len(), 1);
        assert!(warn[0].contains("memory"));
    }
}
