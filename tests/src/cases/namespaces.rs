//! Namespace checks: new namespaces where the spec asks for them and the host's elsewhere,
//! namespaces joined by path, user namespaces with id mappings, and cgroup placement as seen
//! from inside (with and without a cgroup namespace).

use super::{Case, Checks, Ctx, Seen};
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The namespace cases.
pub const CASES: &[Case] = &[
    Case {
        name: "namespaces_are_new_where_the_spec_asks",
        run: namespaces_are_new,
    },
    Case {
        name: "namespaces_joined_by_path",
        run: namespaces_joined_by_path,
    },
    Case {
        name: "user_namespace_maps_ids",
        run: user_namespace_maps_ids,
    },
    Case {
        name: "cgroup_placement_without_cgroupns",
        run: cgroup_placement_without_cgroupns,
    },
    Case {
        name: "cgroup_namespace_roots_the_container_cgroup",
        run: cgroup_namespace_roots,
    },
    Case {
        name: "cgroup2_mount_in_a_cgroup_namespace_shows_the_container_cgroup",
        run: cgroup2_mount,
    },
];

fn namespaces_are_new(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "ns-new";
    let id = ctx.id(case);
    let mut b = ctx.probe_bundle(case, &[]);
    b.push("/linux/namespaces", json!({"type": "cgroup"}));
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    for ns in ["pid", "net", "ipc", "uts", "mnt", "cgroup"] {
        let host = ctx.host_ns.get(ns).copied();
        let got = r.namespaces.get(ns).copied();
        c.that(
            got.is_some() && got != host,
            format!("{ns} namespace should be new: container {got:?}, host {host:?}"),
        );
    }
    for ns in ["user", "time"] {
        c.eq(
            &format!("{ns} namespace (not asked for, so the host's)"),
            r.namespaces.get(ns),
            ctx.host_ns.get(ns),
        );
    }
    c.eq("pid inside a new pid namespace", r.pid, 1);
    c.finish()
}

/// Persistent namespaces made by `unshare --net=FILE ...`, unmounted and removed on drop.
struct HeldNamespaces {
    files: Vec<(&'static str, PathBuf)>,
}

impl HeldNamespaces {
    fn create(
        dir: &Path,
        kinds: &[(&'static str, &'static str)],
    ) -> Result<HeldNamespaces, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let mut held = HeldNamespaces { files: Vec::new() };
        let mut cmd = Command::new("unshare");
        for (kind, flag) in kinds {
            let f = dir.join(kind);
            std::fs::write(&f, b"").map_err(|e| format!("create {}: {e}", f.display()))?;
            cmd.arg(format!("--{flag}={}", f.display()));
            held.files.push((kind, f));
        }
        let out = cmd
            .arg("true")
            .output()
            .map_err(|e| format!("run unshare: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "unshare to hold namespaces failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(held)
    }

    fn inode(&self, kind: &str) -> Option<u64> {
        let (_, f) = self.files.iter().find(|(k, _)| *k == kind)?;
        std::fs::metadata(f).ok().map(|m| m.ino())
    }
}

impl Drop for HeldNamespaces {
    fn drop(&mut self) {
        for (_, f) in &self.files {
            let _ = Command::new("umount").arg(f).output();
            let _ = std::fs::remove_file(f);
        }
    }
}

fn namespaces_joined_by_path(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "ns-join";
    let id = ctx.id(case);
    let held = HeldNamespaces::create(
        &ctx.work.join("held-ns"),
        &[("net", "net"), ("ipc", "ipc"), ("uts", "uts")],
    )?;
    let mut b = ctx.probe_bundle(case, &[]);
    let path = |k: &str| {
        held.files
            .iter()
            .find(|(kind, _)| *kind == k)
            .map(|(_, f)| f.to_string_lossy().into_owned())
    };
    b.set(
        "/linux/namespaces",
        json!([
            {"type": "pid"}, {"type": "mount"},
            {"type": "network", "path": path("net")},
            {"type": "ipc", "path": path("ipc")},
            {"type": "uts", "path": path("uts")}
        ]),
    );
    if let Some(obj) = b.config.as_object_mut() {
        obj.remove("hostname");
    }
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    for kind in ["net", "ipc", "uts"] {
        let want = held.inode(kind);
        c.that(
            want.is_some(),
            format!("held {kind} namespace has no inode"),
        );
        if let Some(w) = want {
            seen.known_inodes.insert(w, format!("joined-{kind}"));
        }
        c.eq(
            &format!("{kind} namespace joined by path"),
            r.namespaces.get(kind).copied(),
            want,
        );
    }
    for ns in ["pid", "mnt"] {
        c.that(
            r.namespaces.get(ns) != ctx.host_ns.get(ns),
            format!("{ns} namespace should be new"),
        );
    }
    c.finish()
}

fn user_namespace_maps_ids(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "ns-user";
    let id = ctx.id(case);
    let mut b = ctx.probe_bundle(case, &[]);
    b.push("/linux/namespaces", json!({"type": "user"}));
    b.set(
        "/linux/uidMappings",
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
    );
    b.set(
        "/linux/gidMappings",
        json!([{"containerID": 0, "hostID": 200000, "size": 65536}]),
    );
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.that(
        r.namespaces.get("user") != ctx.host_ns.get("user"),
        "user namespace should be new",
    );
    c.eq(
        "uid_map",
        r.uid_map.clone(),
        vec!["0 100000 65536".to_string()],
    );
    c.eq(
        "gid_map",
        r.gid_map.clone(),
        vec!["0 200000 65536".to_string()],
    );
    c.eq("uids inside", r.status.uid.clone(), vec![0; 4]);
    c.eq("gids inside", r.status.gid.clone(), vec![0; 4]);
    c.finish()
}

/// The container's line in `/proc/self/cgroup` for the cgroup2 hierarchy (`0::PATH`).
fn unified_line(cgroup: &[String]) -> Option<String> {
    cgroup
        .iter()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

fn cgroup_placement_without_cgroupns(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "cg-place";
    let id = ctx.id(case);
    let b = ctx.probe_bundle(case, &[]);
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.eq(
        "cgroup2 path inside (no cgroup namespace)",
        unified_line(&r.cgroup),
        Some(ctx.cgroups_path(&id)),
    );
    c.finish()
}

fn cgroup_namespace_roots(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "cg-ns";
    let id = ctx.id(case);
    let mut b = ctx.probe_bundle(case, &[]);
    b.push("/linux/namespaces", json!({"type": "cgroup"}));
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.eq(
        "cgroup2 path inside a cgroup namespace",
        unified_line(&r.cgroup),
        Some("/".to_string()),
    );
    c.that(
        r.namespaces.get("cgroup") != ctx.host_ns.get("cgroup"),
        "cgroup namespace should be new",
    );
    c.finish()
}

/// A `cgroup2` mount at /sys/fs/cgroup inside a cgroup namespace is rooted at the container's
/// cgroup: its `cgroup.procs` lists only the container's init (pid 1).
fn cgroup2_mount(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "cg-mount";
    let id = ctx.id(case);
    let mut b = ctx.probe_bundle(case, &["--read", "/sys/fs/cgroup/cgroup.procs"]);
    b.push("/linux/namespaces", json!({"type": "cgroup"}));
    b.push(
        "/mounts",
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup2",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    );
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    let m = r
        .mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == "/sys/fs/cgroup");
    c.eq(
        "fs type at /sys/fs/cgroup",
        m.map(|m| m.fs_type.as_str()),
        Some("cgroup2"),
    );
    c.eq(
        "root of the cgroup2 mount",
        m.map(|m| m.root.as_str()),
        Some("/"),
    );
    c.that(
        m.is_some_and(|m| m.options.iter().any(|o| o == "ro")),
        format!("cgroup2 mount should be ro: {m:?}"),
    );
    c.eq(
        "cgroup.procs of the container's cgroup",
        r.files
            .get("/sys/fs/cgroup/cgroup.procs")
            .map(String::as_str),
        Some("1"),
    );
    c.finish()
}
