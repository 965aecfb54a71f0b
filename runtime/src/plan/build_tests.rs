//! Table tests of `Spec -> InitPlan`.

use super::*;
use crate::plan::{NsKind, mount_options::MS_SLAVE};

fn spec(json: &str) -> Spec {
    serde_json::from_str(json).unwrap()
}

const BASE: &str = r#"{
  "ociVersion": "1.2.0",
  "root": {"path": "rootfs", "readonly": true},
  "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 1000, "gid": 1000, "additionalGids": [5]},
              "env": ["PATH=/bin"], "noNewPrivileges": true,
              "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}],
              "capabilities": {"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
                               "permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"]}},
  "hostname": "h",
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
             {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro", "rprivate"]}],
  "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
                           {"type": "network", "path": "/run/netns/pod"}],
            "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
            "sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1"}}
}"#;

fn plan(json: &str) -> Result<(InitPlan, ClonePlan)> {
    plan_container("c1", &spec(json), Path::new("/b"), &PlanOptions::default())
}

#[test]
fn namespaces_split_into_new_and_joined() {
    let (p, c) = plan(BASE).unwrap();
    assert_eq!(
        c.namespaces,
        NsKind::Pid.clone_flag() | NsKind::Mount.clone_flag() | NsKind::Uts.clone_flag()
    );
    assert_eq!(p.join.len(), 1);
    assert_eq!(p.join[0].kind, NsKind::Net);
    assert!(!p.fork_after_join);
}

#[test]
fn process_fields_are_resolved() {
    let (p, _) = plan(BASE).unwrap();
    let pr = &p.process;
    assert_eq!(
        (pr.uid, pr.gid, pr.additional_gids.clone()),
        (1000, 1000, vec![5])
    );
    assert!(pr.no_new_privs);
    assert_eq!(pr.rlimits[0].resource, "RLIMIT_NOFILE");
    assert_eq!((pr.rlimits[0].soft, pr.rlimits[0].hard), (512, 1024));
    let caps = pr.caps.unwrap();
    assert_eq!(caps.bounding, (1 << 5) | 1);
    assert_eq!(caps.effective, 1 << 5);
    assert_eq!(caps.inheritable, 0);
    assert_eq!(caps.ambient, 1 << 5);
}

#[test]
fn rootfs_mounts_devices_and_paths() {
    let (p, _) = plan(BASE).unwrap();
    let r = p.rootfs.unwrap();
    assert_eq!(r.root, Path::new("/b/rootfs"));
    assert!(r.readonly && r.pivot);
    assert_eq!(r.propagation, MS_SLAVE | libc::MS_REC);
    assert_eq!(r.mounts[1].source, "/b/data");
    assert!(r.mounts[1].options.is_bind());
    assert_eq!(
        r.mounts[1].options.propagation,
        vec![libc::MS_PRIVATE | libc::MS_REC]
    );
    let paths: Vec<&str> = r.devices.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty",
            "/dev/fuse"
        ]
    );
    assert!(!r.bind_devices);
    assert_eq!(r.masked_paths, ["/proc/kcore"]);
    assert_eq!(p.sysctl[0].0, "kernel.shmmax");
}

#[test]
fn no_pivot_and_user_namespace_options() {
    let mut v: serde_json::Value = serde_json::from_str(BASE).unwrap();
    v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "user"}]);
    v["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    v["linux"]["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    v.as_object_mut().unwrap().remove("hostname");
    let s: Spec = serde_json::from_value(v).unwrap();
    let opts = PlanOptions {
        no_pivot: true,
        ..PlanOptions::default()
    };
    let (p, c) = plan_container("c", &s, Path::new("/b"), &opts).unwrap();
    assert!(c.new_userns());
    assert_eq!(
        c.uid_map,
        vec![IdMap {
            container_id: 0,
            host_id: 1000,
            size: 1
        }]
    );
    let r = p.rootfs.unwrap();
    assert!(!r.pivot);
    assert!(r.bind_devices);
}

#[test]
fn spec_errors_name_the_field() {
    let cases: [(&str, &str, serde_json::Value); 7] = [
        (
            "personality",
            "linux.personality",
            serde_json::json!({"linux": {"personality": {"domain": "LINUX32"}}}),
        ),
        (
            "no mount namespace",
            "linux.namespaces",
            serde_json::json!({"linux": {"namespaces": [{"type": "pid"}]}}),
        ),
        (
            "hostname without uts",
            "hostname",
            serde_json::json!({"linux": {"namespaces": [{"type": "mount"}]}}),
        ),
        (
            "seccomp notify",
            "SCMP_ACT_NOTIFY",
            serde_json::json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                               "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}]}}}),
        ),
        (
            "relative cwd",
            "process.cwd",
            serde_json::json!({"process": {"args": ["sh"], "cwd": "tmp", "user": {"uid": 0, "gid": 0}}}),
        ),
        (
            "userns without maps",
            "linux.uidMappings",
            serde_json::json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "user"}, {"type": "uts"}]}}),
        ),
        (
            "idmap mount",
            "mounts[0].options",
            serde_json::json!({"mounts": [{"destination": "/x", "type": "bind", "source": "/x", "options": ["bind", "idmap"]}]}),
        ),
    ];
    for (name, field, patch) in cases {
        let mut v: serde_json::Value = serde_json::from_str(BASE).unwrap();
        for (k, val) in patch.as_object().unwrap() {
            if k == "linux" {
                for (lk, lv) in val.as_object().unwrap() {
                    v["linux"][lk] = lv.clone();
                }
            } else {
                v[k] = val.clone();
            }
        }
        let err = plan_container(
            "c",
            &serde_json::from_value(v).unwrap(),
            Path::new("/b"),
            &PlanOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(field), "{name}: {err}");
    }
}

#[test]
fn joined_pid_namespace_requires_fork() {
    let mut v: serde_json::Value = serde_json::from_str(BASE).unwrap();
    v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "uts"}, {"type": "pid", "path": "/proc/1/ns/pid"}]);
    let (p, _) = plan_container(
        "c",
        &serde_json::from_value(v).unwrap(),
        Path::new("/b"),
        &PlanOptions::default(),
    )
    .unwrap();
    assert!(p.fork_after_join);
}

#[test]
fn exec_plan_joins_in_order_and_forks() {
    let s = spec(BASE);
    let p = exec_plan(
        "c",
        42,
        &[NsKind::Mount, NsKind::Pid, NsKind::User],
        s.process().as_ref().unwrap(),
        None,
        &PlanOptions::default(),
    )
    .unwrap();
    let kinds: Vec<NsKind> = p.join.iter().map(|j| j.kind).collect();
    assert_eq!(kinds, [NsKind::User, NsKind::Pid, NsKind::Mount]);
    assert_eq!(p.join[0].path, Path::new("/proc/42/ns/user"));
    assert!(p.fork_after_join && p.rootfs.is_none() && p.start_fifo_fd.is_none());
}
