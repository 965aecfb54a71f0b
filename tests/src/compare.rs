//! Same bundle, two runtimes: runs every case under both and compares the probe's reports
//! field by field. Before comparing, the report is reduced to what the spec makes observable
//! and normalised where runs must differ:
//! - namespace inodes become `host`, `new` or the role of a namespace the case joined;
//! - each run's scratch directory and tag become `<work>` and `<tag>`;
//! - a masked path's mount becomes `masked` (a /dev/null bind, a tmpfs or a devtmpfs file all
//!   read empty, which `paths[...]` compares);
//! - superblock options are dropped except tmpfs `size=`/`mode=` (a shared superblock's flags
//!   say how the runtime got the mount, not what the spec asked for); peer-group numbers too;
//! - devices are compared for the OCI default set and `/dev/probe-*` only (extras such as
//!   crun's `/dev/core` are not in the spec), owners only for `/dev/probe-*`; device bind
//!   mounts (user namespaces) become `device`;
//! - `/proc/self/cgroup` keeps only its cgroup2 (`0::`) line: podvisor is cgroup2-only by
//!   design, so the v1 hierarchies of a hybrid host are not compared;
//! - the probe's pid becomes `1` or `not 1`;
//! - the chroot-escape mount table becomes one fact: is the host's root mount in it.
//!
//! Used by `podvisor-oci-compare` (scripts/compare-crun.sh).

use crate::cases::{Case, Ctx, Seen};
use crate::report::{MountEntry, Report};
use crate::runner::run_case;
use crate::spec::MASKED_PATHS;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// One case compared across two runtimes.
#[derive(Debug)]
pub struct Comparison {
    /// Case name.
    pub case: &'static str,
    /// The case's verdict under each runtime.
    pub results: [Result<(), String>; 2],
    /// Number of report fields compared (0 when a case has no report).
    pub fields: usize,
    /// Fields whose normalised values differ: (field, value under A, value under B).
    pub differences: Vec<(String, String, String)>,
}

impl Comparison {
    /// Same observable result: both pass or both fail, and no report field differs.
    pub fn same(&self) -> bool {
        self.results[0].is_ok() == self.results[1].is_ok() && self.differences.is_empty()
    }
}

/// Runs `case` under both contexts and compares.
pub fn compare_case(ctxs: [&Ctx; 2], case: &Case) -> Comparison {
    let (ra, sa) = run_case(ctxs[0], case);
    let (rb, sb) = run_case(ctxs[1], case);
    let fa = sa.report.as_ref().map(|r| flatten_report(r, ctxs[0], &sa));
    let fb = sb.report.as_ref().map(|r| flatten_report(r, ctxs[1], &sb));
    let (fields, differences) = match (fa, fb) {
        (Some(a), Some(b)) => diff(&a, &b),
        (None, None) => (0, vec![]),
        (a, b) => (
            1,
            vec![(
                "report".to_string(),
                if a.is_some() { "present" } else { "missing" }.to_string(),
                if b.is_some() { "present" } else { "missing" }.to_string(),
            )],
        ),
    };
    Comparison {
        case: case.name,
        results: [ra, rb],
        fields,
        differences,
    }
}

fn diff(
    a: &BTreeMap<String, Value>,
    b: &BTreeMap<String, Value>,
) -> (usize, Vec<(String, String, String)>) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let show = |v: Option<&Value>| v.map_or_else(|| "(absent)".to_string(), Value::to_string);
    let diffs = keys
        .iter()
        .filter(|k| a.get(**k) != b.get(**k))
        .map(|k| ((*k).clone(), show(a.get(*k)), show(b.get(*k))))
        .collect();
    (keys.len(), diffs)
}

/// Device paths the OCI runtime spec requires (config-linux.md, "Default Devices") plus the
/// links runtimes create; the only `/dev` entries compared.
const OCI_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts/ptmx",
    "/dev/shm",
    "/dev/fd",
    "/dev/stdin",
    "/dev/stdout",
    "/dev/stderr",
];

/// The report as `field path → value`, normalised for comparison across runtimes.
pub fn flatten_report(r: &Report, ctx: &Ctx, seen: &Seen) -> BTreeMap<String, Value> {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        let ns: Map<String, Value> = r
            .namespaces
            .iter()
            .map(|(kind, ino)| (kind.clone(), json!(namespace_role(*ino, kind, ctx, seen))))
            .collect();
        map.insert("namespaces".into(), Value::Object(ns));
        // Only "init of its pid namespace or not" is spec'd; other pid numbers are chance.
        map.insert("pid".into(), json!(if r.pid == 1 { "1" } else { "not 1" }));
        map.insert("mounts".into(), mounts_by_point(&r.mounts));
        // podvisor is cgroup2-only by design: v1 hierarchies on a hybrid host are not compared.
        let unified: Vec<&String> = r.cgroup.iter().filter(|l| l.starts_with("0::")).collect();
        map.insert("cgroup".into(), json!(unified));
        map.insert("devices".into(), devices(r));
        if let Some(escape) = &r.escape {
            map.insert("escape".into(), escape_view(escape));
        }
    }
    let work = ctx.work.to_string_lossy().into_owned();
    let mut out = BTreeMap::new();
    flatten("", &v, &mut out);
    out.into_iter()
        .map(|(k, v)| {
            (
                k.replace(&work, "<work>").replace(&ctx.tag, "<tag>"),
                scrub(v, &work, &ctx.tag),
            )
        })
        .collect()
}

fn scrub(v: Value, work: &str, tag: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace(work, "<work>").replace(tag, "<tag>")),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| scrub(x, work, tag)).collect()),
        other => other,
    }
}

fn devices(r: &Report) -> Value {
    let mut map = Map::new();
    for (path, d) in &r.devices {
        let spec_device = path.starts_with("/dev/probe-");
        if !spec_device && !OCI_DEVICES.contains(&path.as_str()) {
            continue;
        }
        let mut e = json!({"kind": d.kind, "major": d.major, "minor": d.minor, "target": d.target});
        if spec_device || d.kind != "l" {
            e["mode"] = json!(d.mode);
        }
        if spec_device {
            e["uid"] = json!(d.uid);
            e["gid"] = json!(d.gid);
        }
        map.insert(path.clone(), e);
    }
    Value::Object(map)
}

fn escape_view(escape: &Result<Vec<MountEntry>, String>) -> Value {
    let host_root = crate::report::parse_mountinfo(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
    )
    .into_iter()
    .find(|m| m.mount_point == "/");
    match (escape, host_root) {
        (Ok(above), Some(h)) => {
            json!({"host_root_reachable": above.iter().any(|m| m.root == h.root && m.source == h.source && m.fs_type == h.fs_type)})
        }
        (Ok(_), None) => json!({"host_root_reachable": "unknown"}),
        (Err(e), _) => json!({"error": e}),
    }
}

fn namespace_role(ino: u64, kind: &str, ctx: &Ctx, seen: &Seen) -> String {
    if let Some(role) = seen.known_inodes.get(&ino) {
        role.clone()
    } else if ctx.host_ns.get(kind) == Some(&ino) {
        "host".into()
    } else {
        "new".into()
    }
}

/// Mounts keyed by mount point (the last mount at a point wins, as in the kernel's view),
/// normalised as the module documentation says.
fn mounts_by_point(mounts: &[MountEntry]) -> Value {
    let mut map = Map::new();
    for m in mounts {
        let point = m.mount_point.as_str();
        let value = if MASKED_PATHS.contains(&point) {
            json!("masked")
        } else if OCI_DEVICES.contains(&point) {
            json!("device")
        } else {
            let propagation: Vec<&str> = m
                .propagation
                .iter()
                .map(|p| p.split(':').next().unwrap_or(""))
                .collect();
            let super_options: Vec<&String> = m
                .super_options
                .iter()
                .filter(|o| {
                    m.fs_type == "tmpfs" && (o.starts_with("size=") || o.starts_with("mode="))
                })
                .collect();
            json!({
                "fs_type": m.fs_type, "source": m.source, "root": m.root,
                "options": m.options, "super_options": super_options, "propagation": propagation
            })
        };
        map.insert(m.mount_point.clone(), value);
    }
    Value::Object(map)
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}[{k}]")
                };
                flatten(&key, child, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_nests_objects_and_keeps_arrays_whole() {
        let mut out = BTreeMap::new();
        flatten("", &json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"}), &mut out);
        assert_eq!(out.get("a[b]"), Some(&json!(1)));
        assert_eq!(out.get("a[c]"), Some(&json!([1, 2])));
        assert_eq!(out.get("d"), Some(&json!("x")));
    }

    #[test]
    fn diff_reports_changed_and_missing_fields() {
        let a: BTreeMap<String, Value> =
            [("x".to_string(), json!(1)), ("y".to_string(), json!(2))].into();
        let b: BTreeMap<String, Value> =
            [("x".to_string(), json!(1)), ("z".to_string(), json!(3))].into();
        let (n, d) = diff(&a, &b);
        assert_eq!(n, 3);
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0],
            ("y".to_string(), "2".to_string(), "(absent)".to_string())
        );
    }

    #[test]
    fn propagation_peer_groups_are_dropped() {
        let m = MountEntry {
            mount_point: "/x".into(),
            propagation: vec!["shared:12".into()],
            ..Default::default()
        };
        assert_eq!(
            mounts_by_point(&[m])["/x"]["propagation"],
            json!(["shared"])
        );
    }
}
