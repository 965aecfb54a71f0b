//! Root filesystem checks: pivot_root into the rootfs (no host path visible), the spec's
//! mounts with their options, masked and read-only paths, `root.readonly`, and devices.

use super::{Case, Checks, Ctx, Seen};
use crate::report::{MountEntry, Report};
use crate::spec::{MASKED_PATHS, READONLY_PATHS};
use serde_json::json;

/// The filesystem cases.
pub const CASES: &[Case] = &[
    Case {
        name: "pivot_root_hides_host_paths",
        run: pivot_root_hides_host_paths,
    },
    Case {
        name: "spec_mounts_have_their_types_and_options",
        run: spec_mounts,
    },
    Case {
        name: "masked_paths_read_empty",
        run: masked_paths_read_empty,
    },
    Case {
        name: "readonly_paths_refuse_writes",
        run: readonly_paths_refuse_writes,
    },
    Case {
        name: "root_readonly_refuses_writes",
        run: root_readonly,
    },
    Case {
        name: "root_writable_when_not_readonly",
        run: root_writable,
    },
    Case {
        name: "default_and_spec_devices_exist",
        run: devices,
    },
    Case {
        name: "device_cgroup_denies_unlisted_devices",
        run: device_access,
    },
];

const EROFS: i32 = 30;

fn mount_at<'a>(r: &'a Report, point: &str) -> Option<&'a MountEntry> {
    // The last mount at a point is the visible one.
    r.mounts.iter().rev().find(|m| m.mount_point == point)
}

fn has_opt(m: Option<&MountEntry>, opt: &str) -> bool {
    m.is_some_and(|m| m.options.iter().any(|o| o == opt))
}

fn pivot_root_hides_host_paths(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "pivot";
    let id = ctx.id(case);
    let marker = ctx.host_marker.to_string_lossy().into_owned();
    let mut b = ctx.probe_bundle(
        case,
        &[
            "--path",
            &marker,
            "--path",
            "/bin/podvisor-probe",
            "--path",
            "/work",
            "--escape",
        ],
    );
    // CAP_SYS_CHROOT lets the probe try the chroot escape, which only a pivot_root defeats.
    let caps = ["CAP_SYS_CHROOT", "CAP_KILL"];
    b.set(
        "/process/capabilities",
        json!({"bounding": caps, "effective": caps, "permitted": caps}),
    );
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.that(
        ctx.host_marker.exists(),
        "host marker should exist on the host",
    );
    c.eq(
        "host-only marker visible inside",
        r.paths.get(&marker).map(|p| p.exists),
        Some(false),
    );
    c.eq(
        "/work (host-only) visible inside",
        r.paths.get("/work").map(|p| p.exists),
        Some(false),
    );
    c.eq(
        "/bin/podvisor-probe visible inside",
        r.paths.get("/bin/podvisor-probe").map(|p| p.exists),
        Some(true),
    );
    let host_root = crate::report::parse_mountinfo(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
    )
    .into_iter()
    .find(|m| m.mount_point == "/");
    match (&r.escape, &host_root) {
        (Some(Ok(above)), Some(h)) => c.that(
            !above.iter().any(|m| m.root == h.root && m.source == h.source && m.fs_type == h.fs_type),
            format!("the host's root mount is still in the container's mount tree (a chroot, not pivot_root): {above:?}"),
        ),
        other => c.that(false, format!("chroot escape probe gave no mount table: {other:?}")),
    }
    let root = mount_at(&r, "/");
    c.that(
        root.is_some_and(|m| m.root.ends_with("/rootfs")),
        format!("the / mount should be the bundle rootfs bind mount, got {root:?}"),
    );
    // Only the spec's mounts (and the masks under them) may be visible: nothing of the host's.
    let allowed = ["/proc", "/dev", "/sys"];
    for m in &r.mounts {
        let ok = m.mount_point == "/"
            || allowed
                .iter()
                .any(|a| m.mount_point == *a || m.mount_point.starts_with(&format!("{a}/")));
        c.that(
            ok,
            format!(
                "unexpected mount inside: {} ({} from {})",
                m.mount_point, m.fs_type, m.source
            ),
        );
    }
    c.finish()
}

fn spec_mounts(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "mounts";
    let id = ctx.id(case);
    let data = ctx.work.join("data");
    let out = ctx.work.join("out");
    for d in [&data, &out] {
        std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    std::fs::write(data.join("hello.txt"), b"hello")
        .map_err(|e| format!("write hello.txt: {e}"))?;
    let mut b = ctx.probe_bundle(
        case,
        &[
            "--path",
            "/data/hello.txt",
            "--write",
            "/data/new",
            "--write",
            "/out/new",
            "--write",
            "/tmp/new",
        ],
    );
    b.push(
        "/mounts",
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                            "options": ["nosuid", "nodev", "mode=1777", "size=1m"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "ro"]}),
    );
    b.push("/mounts", json!({"destination": "/out", "type": "bind", "source": out, "options": ["bind", "rw", "rprivate"]}));
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    let fs = |p: &str| mount_at(&r, p).map(|m| m.fs_type.clone());
    for (point, ty) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
        ("/tmp", "tmpfs"),
    ] {
        c.eq(
            &format!("fs type at {point}"),
            fs(point),
            Some(ty.to_string()),
        );
    }
    for (point, opt) in [
        ("/tmp", "nosuid"),
        ("/tmp", "nodev"),
        ("/dev/shm", "noexec"),
        ("/dev/shm", "nodev"),
        ("/dev/pts", "noexec"),
        ("/sys", "ro"),
        ("/data", "ro"),
        ("/out", "rw"),
    ] {
        c.that(
            has_opt(mount_at(&r, point), opt),
            format!("{point} should be mounted {opt}: {:?}", mount_at(&r, point)),
        );
    }
    let tmp = mount_at(&r, "/tmp");
    c.that(
        tmp.is_some_and(|m| m.super_options.iter().any(|o| o == "size=1024k")),
        format!("/tmp should be a 1 MiB tmpfs: {tmp:?}"),
    );
    c.eq(
        "/out propagation (rprivate)",
        mount_at(&r, "/out").map(|m| m.propagation.clone()),
        Some(vec![]),
    );
    c.eq(
        "bytes of /data/hello.txt",
        r.paths.get("/data/hello.txt").and_then(|p| p.content_len),
        Some(5),
    );
    c.eq(
        "write into ro bind /data",
        r.writes.get("/data/new").copied(),
        Some(EROFS),
    );
    c.eq(
        "write into rw bind /out",
        r.writes.get("/out/new").copied(),
        Some(0),
    );
    c.eq(
        "write into tmpfs /tmp",
        r.writes.get("/tmp/new").copied(),
        Some(0),
    );
    c.finish()
}

fn masked_paths_read_empty(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "masked";
    let id = ctx.id(case);
    let mut args = Vec::new();
    for p in MASKED_PATHS {
        args.extend(["--path", p]);
    }
    let b = ctx.probe_bundle(case, &args);
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    let mut checked = 0;
    for p in MASKED_PATHS {
        if !std::path::Path::new(p).exists() {
            continue; // Not on this kernel: nothing to mask.
        }
        checked += 1;
        let got = r.paths.get(*p);
        c.that(
            got.is_some_and(|g| g.exists && g.content_len == Some(0)),
            format!("masked {p} should read empty inside: {got:?}"),
        );
        c.that(
            mount_at(&r, p).is_some(),
            format!("masked {p} should be covered by a mount"),
        );
    }
    c.that(
        checked >= 2,
        format!("only {checked} masked paths exist on this host: check is too weak"),
    );
    let timer_list = std::fs::read("/proc/timer_list")
        .map(|v| v.len())
        .unwrap_or(0);
    c.that(
        timer_list > 0,
        "/proc/timer_list should be non-empty on the host (the control)",
    );
    c.finish()
}

fn readonly_paths_refuse_writes(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "readonly";
    let id = ctx.id(case);
    let targets = [
        "/proc/sys/kernel/domainname",
        "/proc/irq/default_smp_affinity",
        "/proc/sysrq-trigger",
    ];
    let mut args = Vec::new();
    for t in targets {
        if std::path::Path::new(t).exists() {
            args.extend(["--write", t]);
        }
    }
    let b = ctx.probe_bundle(case, &args);
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    for p in READONLY_PATHS {
        if std::path::Path::new(p).exists() {
            c.that(
                has_opt(mount_at(&r, p), "ro"),
                format!("{p} should be a read-only mount: {:?}", mount_at(&r, p)),
            );
        }
    }
    c.that(
        r.writes.contains_key("/proc/sys/kernel/domainname"),
        "no write attempted under /proc/sys",
    );
    for (path, errno) in &r.writes {
        c.eq(&format!("opening {path} for writing"), *errno, EROFS);
    }
    c.finish()
}

fn root_readonly(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "root-ro";
    let id = ctx.id(case);
    let b = ctx.probe_bundle(case, &["--write", "/etc/probe-new"]);
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.eq(
        "creating /etc/probe-new on a read-only root",
        r.writes.get("/etc/probe-new").copied(),
        Some(EROFS),
    );
    c.that(
        has_opt(mount_at(&r, "/"), "ro"),
        format!("/ should be mounted ro: {:?}", mount_at(&r, "/")),
    );
    c.finish()
}

fn root_writable(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "root-rw";
    let id = ctx.id(case);
    let mut b = ctx.probe_bundle(case, &["--write", "/etc/probe-new"]);
    b.set("/root/readonly", json!(false));
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.eq(
        "creating /etc/probe-new on a writable root",
        r.writes.get("/etc/probe-new").copied(),
        Some(0),
    );
    c.that(
        has_opt(mount_at(&r, "/"), "rw"),
        format!("/ should be mounted rw: {:?}", mount_at(&r, "/")),
    );
    c.finish()
}

fn devices(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "devices";
    let id = ctx.id(case);
    let mut b = ctx.probe_bundle(case, &[]);
    b.push(
        "/linux/devices",
        json!({"path": "/dev/probe-zero", "type": "c", "major": 1, "minor": 5,
                                     "fileMode": 0o640, "uid": 1000, "gid": 1000}),
    );
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    for (path, major, minor) in [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
        ("/dev/pts/ptmx", 5, 2),
    ] {
        let d = r.devices.get(path);
        c.eq(
            &format!("{path} (kind, major, minor)"),
            d.map(|d| (d.kind.as_str(), d.major, d.minor)),
            Some(("c", major, minor)),
        );
    }
    let ptmx = r.devices.get("/dev/ptmx");
    c.that(
        ptmx.is_some_and(|d| {
            d.target.as_deref() == Some("pts/ptmx")
                || (d.kind == "c" && d.major == 5 && d.minor == 2)
        }),
        format!("/dev/ptmx should lead to pts/ptmx: {ptmx:?}"),
    );
    c.eq(
        "/dev/shm kind",
        r.devices.get("/dev/shm").map(|d| d.kind.as_str()),
        Some("d"),
    );
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        c.eq(
            &format!("{link} target"),
            r.devices.get(link).and_then(|d| d.target.clone()),
            Some(target.to_string()),
        );
    }
    let extra = r.devices.get("/dev/probe-zero");
    c.eq(
        "/dev/probe-zero from linux.devices (kind, major, minor, mode, uid, gid)",
        extra.map(|d| (d.kind.as_str(), d.major, d.minor, d.mode, d.uid, d.gid)),
        Some(("c", 1, 5, 0o640, 1000, 1000)),
    );
    c.finish()
}

/// `linux.resources.devices` denies everything (runc's default spec), so only the default
/// devices may be opened: a node for /dev/kmsg (1:11) made from `linux.devices` must refuse
/// `open(O_WRONLY)` with EPERM, while /dev/null opens. Nothing is ever written.
fn device_access(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "devaccess";
    let id = ctx.id(case);
    let mut b = ctx.probe_bundle(
        case,
        &["--write", "/dev/probe-kmsg", "--write", "/dev/null"],
    );
    b.push(
        "/linux/devices",
        json!({"path": "/dev/probe-kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o600}),
    );
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.eq(
        "open /dev/null for writing",
        r.writes.get("/dev/null").copied(),
        Some(0),
    );
    c.eq(
        "open the unlisted device 1:11 for writing (EPERM)",
        r.writes.get("/dev/probe-kmsg").copied(),
        Some(1),
    );
    c.finish()
}
