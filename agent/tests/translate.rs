//! Translation details as table tests: namespaces per host/share flags, seccomp choices
//! (including a Localhost profile file), sysctls, procMount, capabilities, user, managed
//! files, and validation rules that guard the translation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use podvisor::manifest::ManifestError;
use podvisor::pod::{NodeInfo, StaticPod, load};
use podvisor::translate::{self, ContainerInput, ImageDefaults, PodContext, TranslateError};

fn pod_with(spec_extra: &str, container_extra: &str) -> Result<StaticPod, ManifestError> {
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\nspec:\n{spec_extra}  containers:\n  - name: c\n    image: busybox:1.36\n{container_extra}"
    );
    let node = NodeInfo::new("n1", BTreeMap::new(), vec![]);
    load(Path::new("/m/t.yaml"), text.as_bytes(), &node, &|_| {
        String::new()
    })
}

fn ctx(root: &Path) -> PodContext {
    let mut c = PodContext::new("/pods/t");
    c.net_ns = Some(PathBuf::from("/ns/net"));
    c.ipc_ns = Some(PathBuf::from("/ns/ipc"));
    c.uts_ns = Some(PathBuf::from("/ns/uts"));
    c.pid_ns = Some(PathBuf::from("/ns/pid"));
    c.seccomp_profile_root = root.to_owned();
    c
}

fn translate_with(
    pod: &StaticPod,
    root: &Path,
    passwd: &str,
    image: &ImageDefaults,
) -> Result<Spec, TranslateError> {
    let c = pod.pod.spec.as_ref().expect("spec").containers[0].clone();
    let read = |p: &Path| std::fs::read(p);
    let rootfs = PathBuf::from("/rootfs");
    let input = ContainerInput {
        image: Some(image),
        rootfs: &rootfs,
        passwd,
        group: "",
        read_file: &read,
    };
    translate::container_spec(pod, &c, &input, &ctx(root))
}

fn translate(spec_extra: &str, container_extra: &str) -> Spec {
    let pod = pod_with(spec_extra, container_extra).expect("valid pod");
    let image = ImageDefaults {
        cmd: vec!["sh".into()],
        ..Default::default()
    };
    translate_with(&pod, Path::new("/nonexistent"), "", &image).expect("translates")
}

type Namespaces = Vec<(LinuxNamespaceType, Option<PathBuf>)>;

fn namespaces(s: &Spec) -> Namespaces {
    s.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|n| (n.typ(), n.path().clone()))
        .collect()
}

#[test]
fn namespaces_follow_host_and_share_flags() {
    use LinuxNamespaceType::*;
    let p = |s: &str| Some(PathBuf::from(s));
    let table: &[(&str, Namespaces)] = &[
        (
            "",
            vec![
                (Mount, None),
                (Pid, None),
                (Network, p("/ns/net")),
                (Uts, p("/ns/uts")),
                (Ipc, p("/ns/ipc")),
                (Cgroup, None),
            ],
        ),
        (
            "  hostNetwork: true\n",
            vec![
                (Mount, None),
                (Pid, None),
                (Ipc, p("/ns/ipc")),
                (Cgroup, None),
            ],
        ),
        (
            "  hostPID: true\n",
            vec![
                (Mount, None),
                (Network, p("/ns/net")),
                (Uts, p("/ns/uts")),
                (Ipc, p("/ns/ipc")),
                (Cgroup, None),
            ],
        ),
        (
            "  hostIPC: true\n",
            vec![
                (Mount, None),
                (Pid, None),
                (Network, p("/ns/net")),
                (Uts, p("/ns/uts")),
                (Cgroup, None),
            ],
        ),
        (
            "  shareProcessNamespace: true\n",
            vec![
                (Mount, None),
                (Pid, p("/ns/pid")),
                (Network, p("/ns/net")),
                (Uts, p("/ns/uts")),
                (Ipc, p("/ns/ipc")),
                (Cgroup, None),
            ],
        ),
    ];
    for (extra, want) in table {
        assert_eq!(&namespaces(&translate(extra, "")), want, "{extra:?}");
    }
    let s = translate("  hostIPC: true\n", "");
    let shm = s
        .mounts()
        .as_ref()
        .and_then(|m| {
            m.iter()
                .find(|m| m.destination() == Path::new("/dev/shm"))
                .cloned()
        })
        .expect("shm");
    assert_eq!(shm.source().as_deref(), Some(Path::new("/dev/shm")));
    assert_eq!(translate("", "").hostname().as_deref(), Some("t-n1"));
    // a volume at a managed path replaces the managed mount
    let s = translate(
        "  volumes:\n  - name: hosts\n    hostPath: {path: /etc/hosts, type: File}\n",
        "    volumeMounts:\n    - {name: hosts, mountPath: /etc/hosts}\n",
    );
    let hosts: Vec<_> = s
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.destination() == Path::new("/etc/hosts"))
        .collect();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].source().as_deref(), Some(Path::new("/etc/hosts")));
}

#[test]
fn seccomp_choices_including_a_localhost_profile_file() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("profiles")).expect("mkdir");
    std::fs::write(
        root.path().join("profiles/audit.json"),
        r#"{"defaultAction":"SCMP_ACT_LOG","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .expect("profile");
    std::fs::write(root.path().join("profiles/bad.json"), "not json").expect("bad profile");
    let image = ImageDefaults {
        cmd: vec!["sh".into()],
        ..Default::default()
    };
    let run = |pod_sc: &str, c_sc: &str| {
        let pod = pod_with(pod_sc, c_sc).expect("valid pod");
        translate_with(&pod, root.path(), "", &image)
    };
    let default_action = |s: &Spec| {
        s.linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            .map(|x| format!("{:?}", x.default_action()))
    };
    let local = "  securityContext:\n    seccompProfile: {type: Localhost, localhostProfile: profiles/audit.json}\n";
    let s = run(local, "").expect("localhost profile");
    assert_eq!(default_action(&s).as_deref(), Some("ScmpActLog"));
    let s = run(
        local,
        "    securityContext:\n      seccompProfile: {type: RuntimeDefault}\n",
    )
    .expect("container overrides pod");
    assert_eq!(default_action(&s).as_deref(), Some("ScmpActErrno"));
    let s = run(local, "    securityContext:\n      privileged: true\n").expect("privileged");
    assert_eq!(
        default_action(&s),
        None,
        "privileged containers are unconfined"
    );
    let missing = "  securityContext:\n    seccompProfile: {type: Localhost, localhostProfile: profiles/missing.json}\n";
    assert!(matches!(
        run(missing, ""),
        Err(TranslateError::Seccomp { .. })
    ));
    let bad = "  securityContext:\n    seccompProfile: {type: Localhost, localhostProfile: profiles/bad.json}\n";
    let err = run(bad, "").expect_err("bad profile");
    assert!(err.to_string().contains("bad.json"), "{err}");
}

#[test]
fn sysctls_proc_mount_and_privilege() {
    let s = translate(
        "  securityContext:\n    sysctls:\n    - {name: net.ipv4.ip_unprivileged_port_start, value: \"0\"}\n    - {name: kernel.shm_rmid_forced, value: \"1\"}\n",
        "",
    );
    let sysctl = s
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().clone())
        .expect("sysctls");
    assert_eq!(
        sysctl
            .get("net.ipv4.ip_unprivileged_port_start")
            .map(String::as_str),
        Some("0")
    );
    assert_eq!(
        sysctl.get("kernel.shm_rmid_forced").map(String::as_str),
        Some("1")
    );
    let unmasked = translate("", "    securityContext:\n      procMount: Unmasked\n");
    assert!(
        unmasked
            .linux()
            .as_ref()
            .and_then(|l| l.masked_paths().clone())
            .unwrap_or_default()
            .is_empty()
    );
    let ro = translate(
        "",
        "    securityContext:\n      readOnlyRootFilesystem: true\n      allowPrivilegeEscalation: false\n",
    );
    assert_eq!(ro.root().as_ref().and_then(|r| r.readonly()), Some(true));
    assert_eq!(
        ro.process().as_ref().and_then(|p| p.no_new_privileges()),
        Some(true)
    );
    let hosts = ro
        .mounts()
        .as_ref()
        .and_then(|m| {
            m.iter()
                .find(|m| m.destination() == Path::new("/etc/hosts"))
                .cloned()
        })
        .expect("hosts");
    assert!(
        hosts
            .options()
            .as_ref()
            .is_some_and(|o| o.contains(&"ro".to_owned())),
        "managed files read-only with a read-only root"
    );
    let default = translate("", "");
    assert_eq!(
        default
            .process()
            .as_ref()
            .and_then(|p| p.no_new_privileges()),
        Some(false)
    );
    let devices = default
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().clone())
        .expect("devices");
    assert!(!devices[0].allow(), "deny all devices first");
}

#[test]
fn user_comes_from_security_context_or_image() {
    let passwd = "root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n";
    let image = ImageDefaults {
        cmd: vec!["sh".into()],
        user: "nobody".into(),
        ..Default::default()
    };
    let uid = |pod_sc: &str, c_sc: &str| {
        let pod = pod_with(pod_sc, c_sc).expect("valid");
        translate_with(&pod, Path::new("/x"), passwd, &image).map(|s| {
            let u = s.process().as_ref().expect("process").user().clone();
            (
                u.uid(),
                u.gid(),
                u.additional_gids().clone().unwrap_or_default(),
            )
        })
    };
    assert_eq!(uid("", ""), Ok((65534, 65534, vec![])));
    assert_eq!(
        uid(
            "  securityContext:\n    runAsUser: 1000\n    runAsGroup: 2000\n    supplementalGroups: [5]\n    fsGroup: 7\n",
            ""
        ),
        Ok((1000, 2000, vec![5, 7]))
    );
    assert_eq!(
        uid(
            "  securityContext:\n    runAsUser: 1000\n",
            "    securityContext:\n      runAsUser: 0\n"
        ),
        Ok((0, 0, vec![]))
    );
    assert!(
        matches!(
            uid("", "    securityContext:\n      runAsNonRoot: true\n"),
            Err(TranslateError::User { .. })
        ),
        "image user name cannot be verified"
    );
}

#[test]
fn validation_table() {
    let table: &[(&str, &str, &str)] = &[
        (
            "",
            "    securityContext:\n      privileged: true\n      allowPrivilegeEscalation: false\n",
            "allowPrivilegeEscalation",
        ),
        (
            "  hostNetwork: true\n",
            "    ports:\n    - {containerPort: 80, hostPort: 8080}\n",
            "spec.containers[0].ports[0].hostPort",
        ),
        (
            "",
            "    ports:\n    - {containerPort: 0}\n",
            "spec.containers[0].ports[0].containerPort",
        ),
        (
            "",
            "    livenessProbe:\n      exec: {command: [\"true\"]}\n      tcpSocket: {port: 80}\n",
            "exactly one of",
        ),
        (
            "",
            "    livenessProbe:\n      exec: {command: [\"true\"]}\n      successThreshold: 2\n",
            "spec.containers[0].livenessProbe.successThreshold",
        ),
        (
            "",
            "    resources:\n      requests: {memory: 2Gi}\n      limits: {memory: 1Gi}\n",
            "spec.containers[0].resources.requests.memory",
        ),
        (
            "",
            "    env:\n    - name: A\n      valueFrom:\n        secretKeyRef: {name: s, key: k}\n",
            "spec.containers[0].env[0].valueFrom",
        ),
        (
            "",
            "    envFrom:\n    - configMapRef: {name: x}\n",
            "spec.containers[0].envFrom",
        ),
        (
            "",
            "    env:\n    - name: A\n      valueFrom:\n        fieldRef: {fieldPath: spec.bogus}\n",
            "fieldRef.fieldPath",
        ),
        ("", "    restartPolicy: Always\n", "only init containers"),
        ("  restartPolicy: Sometimes\n", "", "spec.restartPolicy"),
        (
            "  volumes:\n  - name: a\n    emptyDir: {}\n  - name: a\n    emptyDir: {}\n",
            "",
            "duplicate volume name",
        ),
        (
            "  volumes:\n  - name: a\n    hostPath: {path: relative/dir}\n",
            "",
            "spec.volumes[0].hostPath.path",
        ),
        (
            "  volumes:\n  - name: a\n    persistentVolumeClaim: {claimName: c}\n",
            "",
            "spec.volumes[0].persistentVolumeClaim",
        ),
        (
            "  volumes:\n  - name: a\n    emptyDir: {sizeLimit: huge}\n",
            "",
            "spec.volumes[0].emptyDir.sizeLimit",
        ),
        (
            "  volumes:\n  - name: a\n    emptyDir: {}\n",
            "    volumeMounts:\n    - {name: a, mountPath: /x, subPath: ../../etc}\n",
            "subPath",
        ),
        (
            "  volumes:\n  - name: a\n    emptyDir: {}\n",
            "    volumeMounts:\n    - {name: a, mountPath: /x, mountPropagation: Bidirectional}\n",
            "requires a privileged container",
        ),
        (
            "  hostNetwork: true\n  securityContext:\n    sysctls: [{name: net.core.somaxconn, value: \"1024\"}]\n",
            "",
            "not allowed with hostNetwork",
        ),
        (
            "  tolerations:\n  - {operator: Exists, value: x}\n",
            "",
            "spec.tolerations[0].value",
        ),
        (
            "  hostAliases:\n  - {ip: not-an-ip, hostnames: [a]}\n",
            "",
            "spec.hostAliases[0].ip",
        ),
        (
            "  imagePullSecrets: [{name: regcred}]\n",
            "",
            "spec.imagePullSecrets",
        ),
    ];
    for (spec_extra, c_extra, want) in table {
        match pod_with(spec_extra, c_extra) {
            Err(e @ ManifestError::Invalid { .. }) => {
                assert!(e.to_string().contains(want), "{want}: {e}")
            }
            other => panic!("{want}: expected Invalid, got {other:?}"),
        }
    }
    let dup = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\nspec:\n  initContainers:\n  - {name: c, image: i}\n  containers:\n  - {name: c, image: i}\n";
    let err = load(
        Path::new("/m/d.yaml"),
        dup.as_bytes(),
        &NodeInfo::new("n", BTreeMap::new(), vec![]),
        &|_| String::new(),
    )
    .expect_err("duplicate container names");
    assert!(
        err.to_string()
            .contains("spec.containers[0].name: duplicate container name"),
        "{err}"
    );
}
