//! Process checks: each capability set, no_new_privs, seccomp (a blocked syscall returns the
//! configured errno), rlimits, uid/gid/additional gids, umask, cwd, env, hostname and
//! domainname, oom_score_adj, sysctl.

use super::{Case, Checks, Ctx, Seen};
use serde_json::json;
use std::str::FromStr;

/// The process cases.
pub const CASES: &[Case] = &[
    Case {
        name: "capabilities_of_root_follow_the_spec",
        run: caps_root,
    },
    Case {
        name: "capabilities_of_non_root_with_ambient",
        run: caps_non_root_ambient,
    },
    Case {
        name: "no_new_privs_set_when_asked",
        run: nnp_set,
    },
    Case {
        name: "no_new_privs_clear_when_not_asked",
        run: nnp_clear,
    },
    Case {
        name: "seccomp_blocked_syscalls_return_configured_errno",
        run: seccomp_errno,
    },
    Case {
        name: "seccomp_off_when_not_asked",
        run: seccomp_off,
    },
    Case {
        name: "rlimits_applied",
        run: rlimits,
    },
    Case {
        name: "user_groups_umask_cwd_env_args",
        run: user_and_process,
    },
    Case {
        name: "hostname_and_domainname_set",
        run: hostname,
    },
    Case {
        name: "oom_score_adj_set",
        run: oom_score_adj,
    },
    Case {
        name: "sysctl_applied_in_container_only",
        run: sysctl,
    },
];

/// Bit mask of capability names (`CAP_CHOWN`), as in `/proc/self/status`.
fn mask(names: &[&str]) -> Result<u64, String> {
    names.iter().try_fold(0u64, |acc, n| {
        caps::Capability::from_str(n)
            .map(|c| acc | c.bitmask())
            .map_err(|e| format!("capability {n}: {e}"))
    })
}

fn caps_root(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "caps-root";
    let id = ctx.id(case);
    let set = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETUID",
        "CAP_SETGID",
    ];
    let mut b = ctx.probe_bundle(case, &[]);
    b.set(
        "/process/capabilities",
        json!({"bounding": set, "effective": set, "permitted": set}),
    );
    let r = ctx.run_probe(&b, &id, seen)?;
    let want = mask(&set)?;
    let mut c = Checks::default();
    c.eq("CapBnd", r.status.cap_bnd, want);
    c.eq("CapPrm", r.status.cap_prm, want);
    c.eq("CapEff", r.status.cap_eff, want);
    c.eq("CapInh", r.status.cap_inh, 0);
    c.eq("CapAmb", r.status.cap_amb, 0);
    c.finish()
}

/// As a non-root user, execve(2) leaves permitted and effective equal to the ambient set
/// (capabilities(7)), so this case observes bounding, inheritable and ambient directly.
fn caps_non_root_ambient(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "caps-ambient";
    let id = ctx.id(case);
    let bounding = [
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
    ];
    let inheritable = ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"];
    let permitted = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"];
    let ambient = ["CAP_NET_BIND_SERVICE"];
    let mut b = ctx.probe_bundle(case, &[]);
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    b.set(
        "/process/capabilities",
        json!({"bounding": bounding, "inheritable": inheritable, "permitted": permitted,
               "effective": permitted, "ambient": ambient}),
    );
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.eq("CapBnd", r.status.cap_bnd, mask(&bounding)?);
    c.eq("CapInh", r.status.cap_inh, mask(&inheritable)?);
    c.eq("CapAmb", r.status.cap_amb, mask(&ambient)?);
    c.eq(
        "CapPrm (= ambient after exec as non-root)",
        r.status.cap_prm,
        mask(&ambient)?,
    );
    c.eq(
        "CapEff (= ambient after exec as non-root)",
        r.status.cap_eff,
        mask(&ambient)?,
    );
    c.eq("uid", r.status.uid.clone(), vec![1000; 4]);
    c.finish()
}

fn nnp(ctx: &Ctx, seen: &mut Seen, on: bool) -> Result<(), String> {
    let case = if on { "nnp-on" } else { "nnp-off" };
    let id = ctx.id(case);
    let mut b = ctx.probe_bundle(case, &[]);
    b.set("/process/noNewPrivileges", json!(on));
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.eq("NoNewPrivs", r.status.no_new_privs, u32::from(on));
    c.finish()
}

fn nnp_set(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    nnp(ctx, seen, true)
}

fn nnp_clear(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    nnp(ctx, seen, false)
}

/// inotify_init1 → ENOMSG (42) by `errnoRet`; flock → the default errno (EPERM); getpriority →
/// EXDEV (18) only when its `who` argument is 1, so the same call on itself (who = 0) passes.
fn seccomp_errno(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "seccomp";
    let id = ctx.id(case);
    let mut b = ctx.probe_bundle(case, &[]);
    b.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["inotify_init1"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
                {"names": ["flock"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18,
                 "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]}
            ]
        }),
    );
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    let errno = |name: &str| r.syscalls.get(name).map(|s| s.errno);
    c.eq("Seccomp mode", r.status.seccomp, 2);
    c.eq(
        "inotify_init1 errno (errnoRet 42)",
        errno("inotify_init1"),
        Some(42),
    );
    c.eq("flock errno (no errnoRet: EPERM)", errno("flock"), Some(1));
    c.eq(
        "getpriority(PRIO_PROCESS, 1) errno (arg match)",
        errno("getpriority_pid1"),
        Some(18),
    );
    c.eq(
        "getpriority(PRIO_PROCESS, 0) errno (arg mismatch)",
        errno("getpriority_self"),
        Some(0),
    );
    c.finish()
}

fn seccomp_off(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "seccomp-off";
    let id = ctx.id(case);
    let b = ctx.probe_bundle(case, &[]);
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.eq("Seccomp mode", r.status.seccomp, 0);
    for (name, s) in &r.syscalls {
        c.eq(&format!("{name} errno without a filter"), s.errno, 0);
    }
    c.finish()
}

fn rlimits(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "rlimits";
    let id = ctx.id(case);
    let mut b = ctx.probe_bundle(case, &[]);
    let want = [
        ("RLIMIT_NOFILE", 777u64, 888u64),
        ("RLIMIT_CORE", 0, 0),
        ("RLIMIT_MSGQUEUE", 12345, 23456),
    ];
    b.set(
        "/process/rlimits",
        json!(
            want.iter()
                .map(|(t, s, h)| json!({"type": t, "soft": s, "hard": h}))
                .collect::<Vec<_>>()
        ),
    );
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    for (name, soft, hard) in want {
        let got = r.rlimits.get(name).map(|l| (l.soft, l.hard));
        c.eq(name, got, Some((Some(soft), Some(hard))));
    }
    c.finish()
}

fn user_and_process(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "user";
    let id = ctx.id(case);
    let mut b = ctx.probe_bundle(case, &["--path", "/"]);
    b.set(
        "/process/user",
        json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 2000], "umask": 0o027}),
    );
    b.set("/process/cwd", json!("/home/probe"));
    b.push("/process/env", json!("PROBE_VAR=hello world"));
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.eq(
        "uid (real, effective, saved, fs)",
        r.status.uid.clone(),
        vec![1000; 4],
    );
    c.eq(
        "gid (real, effective, saved, fs)",
        r.status.gid.clone(),
        vec![1000; 4],
    );
    let mut groups = r.status.groups.clone();
    groups.sort_unstable();
    c.eq("supplementary groups", groups, vec![10, 2000]);
    c.eq("umask", r.status.umask, 0o027);
    c.eq("cwd", r.cwd.as_str(), "/home/probe");
    c.that(
        r.env.iter().any(|e| e == "PROBE_VAR=hello world"),
        format!("env lacks PROBE_VAR: {:?}", r.env),
    );
    c.that(
        r.env.iter().any(|e| e.starts_with("PATH=")),
        format!("env lacks PATH: {:?}", r.env),
    );
    // Not in the OCI spec, but runc and crun both do it and images rely on it: an env without
    // HOME gets the user's home directory from the rootfs's /etc/passwd.
    c.that(
        r.env.iter().any(|e| e == "HOME=/home/probe"),
        format!(
            "HOME should come from /etc/passwd (runc and crun do this): {:?}",
            r.env
        ),
    );
    c.eq(
        "argv",
        r.args.clone(),
        vec![
            "/bin/podvisor-probe".to_string(),
            "--path".into(),
            "/".into(),
        ],
    );
    c.finish()
}

fn hostname(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "hostname";
    let id = ctx.id(case);
    let mut b = ctx.probe_bundle(case, &[]);
    b.set("/hostname", json!("probe-host"));
    b.set("/domainname", json!("probe.example"));
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.eq("hostname", r.hostname.as_str(), "probe-host");
    c.eq("domainname", r.domainname.as_str(), "probe.example");
    let host = rustix::system::uname();
    c.that(
        host.nodename().to_bytes() != b"probe-host",
        "the host's hostname changed",
    );
    c.finish()
}

fn oom_score_adj(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "oom";
    let id = ctx.id(case);
    let mut b = ctx.probe_bundle(case, &[]);
    b.set("/process/oomScoreAdj", json!(123));
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.eq("oom_score_adj", r.oom_score_adj, 123);
    c.finish()
}

fn sysctl(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "sysctl";
    let id = ctx.id(case);
    let host_before = std::fs::read_to_string("/proc/sys/kernel/msgmax").unwrap_or_default();
    let mut b = ctx.probe_bundle(
        case,
        &[
            "--read",
            "/proc/sys/kernel/msgmax",
            "--read",
            "/proc/sys/net/ipv4/ip_forward",
        ],
    );
    b.set(
        "/linux/sysctl",
        json!({"kernel.msgmax": "4321", "net.ipv4.ip_forward": "1"}),
    );
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.eq(
        "kernel.msgmax inside",
        r.files.get("/proc/sys/kernel/msgmax").map(String::as_str),
        Some("4321"),
    );
    c.eq(
        "net.ipv4.ip_forward inside",
        r.files
            .get("/proc/sys/net/ipv4/ip_forward")
            .map(String::as_str),
        Some("1"),
    );
    let host_after = std::fs::read_to_string("/proc/sys/kernel/msgmax").unwrap_or_default();
    c.eq(
        "kernel.msgmax on the host (unchanged)",
        host_after,
        host_before,
    );
    c.finish()
}
