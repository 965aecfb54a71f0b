//! Table tests over the real-shaped manifests in `tests/manifests/`: decoding, defaulting,
//! validation, identity, QoS, node selection and translation to OCI specs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use podvisor::manifest::ManifestError;
use podvisor::pod::select::{parse_labels, parse_taints};
use podvisor::pod::{NodeInfo, QosClass, StaticPod, identity, load};
use podvisor::translate::volumes::{HostPathType, VolumePlan, plan_volumes};
use podvisor::translate::{self, ContainerInput, ImageDefaults, PodContext};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/manifests")
        .join(name)
}

fn node() -> NodeInfo {
    NodeInfo::new("CP-1", BTreeMap::new(), vec![])
}

fn load_fixture(name: &str, node: &NodeInfo) -> Result<StaticPod, ManifestError> {
    let path = fixture(name);
    let bytes = std::fs::read(&path).expect("fixture exists");
    load(&path, &bytes, node, &|_| {
        "2026-01-01T00:00:00.000000000Z".to_owned()
    })
}

fn ctx(pod: &StaticPod) -> PodContext {
    let mut c = PodContext::new(format!("/var/lib/podvisor/pods/{}", pod.uid));
    c.node_hostname = "cp-1".to_owned();
    c.set_node_ip(
        "10.0.0.10",
        pod.pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false),
    );
    c.net_ns = Some(PathBuf::from("/run/podvisor/pods/x/ns/net"));
    c.ipc_ns = Some(PathBuf::from("/run/podvisor/pods/x/ns/ipc"));
    c.uts_ns = Some(PathBuf::from("/run/podvisor/pods/x/ns/uts"));
    c
}

fn containers(pod: &StaticPod) -> Vec<Container> {
    let spec = pod.pod.spec.clone().expect("spec");
    spec.init_containers
        .unwrap_or_default()
        .into_iter()
        .chain(spec.containers)
        .collect()
}

fn spec_for(pod: &StaticPod, name: &str, image: &ImageDefaults) -> Spec {
    let c = containers(pod)
        .into_iter()
        .find(|c| c.name == name)
        .expect("container");
    let read = |p: &Path| std::fs::read(p);
    let rootfs = PathBuf::from("/rootfs");
    let input = ContainerInput {
        image: Some(image),
        rootfs: &rootfs,
        passwd: "",
        group: "",
        read_file: &read,
    };
    translate::container_spec(pod, &c, &input, &ctx(pod)).expect("translates")
}

fn caps_of(spec: &Spec) -> Vec<String> {
    let mut v: Vec<String> = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .map(|b| b.iter().map(|c| format!("CAP_{c}")).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn env_of(spec: &Spec) -> BTreeMap<String, String> {
    spec.process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

fn ns_types(spec: &Spec) -> Vec<LinuxNamespaceType> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|n| n.typ())
        .collect()
}

fn mount<'a>(spec: &'a Spec, dest: &str) -> Option<&'a oci_spec::runtime::Mount> {
    spec.mounts()
        .as_ref()?
        .iter()
        .find(|m| m.destination() == Path::new(dest))
}

#[test]
fn every_fixture_loads_with_expected_identity_and_qos() {
    // (file, namespace, pod name, qos, containers incl. init)
    let table = [
        (
            "etcd.yaml",
            "kube-system",
            "etcd-cp-1",
            QosClass::Burstable,
            1,
        ),
        (
            "kube-apiserver.yaml",
            "kube-system",
            "kube-apiserver-cp-1",
            QosClass::Burstable,
            1,
        ),
        (
            "kube-controller-manager.yaml",
            "kube-system",
            "kube-controller-manager-cp-1",
            QosClass::Burstable,
            1,
        ),
        (
            "kube-scheduler.yaml",
            "kube-system",
            "kube-scheduler-cp-1",
            QosClass::Burstable,
            1,
        ),
        (
            "kube-vip.yaml",
            "kube-system",
            "kube-vip-cp-1",
            QosClass::BestEffort,
            1,
        ),
        (
            "haproxy.json",
            "kube-system",
            "haproxy-cp-1",
            QosClass::Guaranteed,
            1,
        ),
        (
            "openshift-etcd.yaml",
            "openshift-etcd",
            "etcd-cp-1",
            QosClass::Burstable,
            4,
        ),
    ];
    for (file, ns, name, qos, count) in table {
        let pod = load_fixture(file, &node()).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(pod.warnings.is_empty(), "{file}: {:?}", pod.warnings);
        let m = &pod.pod.metadata;
        assert_eq!(m.namespace.as_deref(), Some(ns), "{file}");
        assert_eq!(m.name.as_deref(), Some(name), "{file}");
        assert_eq!(pod.qos, qos, "{file}");
        assert_eq!(containers(&pod).len(), count, "{file}");
        assert_eq!(pod.uid.len(), 32, "{file}");
        assert!(
            pod.uid
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{file}"
        );
        let ann = m.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(identity::CONFIG_HASH), Some(&pod.uid), "{file}");
        assert_eq!(
            ann.get(identity::CONFIG_SOURCE).map(String::as_str),
            Some("file"),
            "{file}"
        );
        assert!(ann.contains_key(identity::CONFIG_SEEN), "{file}");
        assert_eq!(m.uid.as_deref(), Some(pod.uid.as_str()), "{file}");
        let spec = pod.pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("CP-1"), "{file}");
        let tol = spec.tolerations.clone().unwrap_or_default();
        assert!(
            tol.iter().any(|t| t.operator.as_deref() == Some("Exists")
                && t.effect.as_deref() == Some("NoExecute")),
            "{file}: NoExecute toleration"
        );
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"), "{file}");
        assert_eq!(spec.termination_grace_period_seconds, Some(30), "{file}");
        for c in containers(&pod) {
            assert_eq!(
                c.termination_message_path.as_deref(),
                Some("/dev/termination-log"),
                "{file}"
            );
            assert_eq!(
                c.image_pull_policy.as_deref(),
                Some("IfNotPresent"),
                "{file}/{}",
                c.name
            );
            for p in [&c.liveness_probe, &c.readiness_probe, &c.startup_probe]
                .into_iter()
                .flatten()
            {
                assert_eq!(p.success_threshold, Some(1), "{file}");
                assert!(
                    p.period_seconds.is_some()
                        && p.timeout_seconds.is_some()
                        && p.failure_threshold.is_some()
                );
            }
            // every container translates (with an image that has a Cmd, as haproxy's does)
            let image = ImageDefaults {
                cmd: vec!["sh".into()],
                ..Default::default()
            };
            let s = spec_for(&pod, &c.name, &image);
            assert!(
                s.process()
                    .as_ref()
                    .and_then(|p| p.args().clone())
                    .is_some_and(|a| !a.is_empty()),
                "{file}"
            );
        }
    }
}

#[test]
fn kubeadm_etcd_translates_like_containerd_would() {
    let pod = load_fixture("etcd.yaml", &node()).expect("etcd");
    let s = spec_for(&pod, "etcd", &ImageDefaults::default());
    // hostNetwork: no network or UTS namespace, no hostname set
    let ns = ns_types(&s);
    assert!(
        !ns.contains(&LinuxNamespaceType::Network) && !ns.contains(&LinuxNamespaceType::Uts),
        "{ns:?}"
    );
    assert!(
        ns.contains(&LinuxNamespaceType::Mount)
            && ns.contains(&LinuxNamespaceType::Pid)
            && ns.contains(&LinuxNamespaceType::Ipc)
    );
    assert_eq!(s.hostname(), &None);
    // seccomp RuntimeDefault from the pod security context
    let seccomp = s
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone())
        .expect("RuntimeDefault profile");
    assert!(seccomp.syscalls().as_ref().is_some_and(|v| v.len() > 3));
    // default caps, no privilege
    assert_eq!(caps_of(&s).len(), 14);
    // volumes: host paths bound read-write
    let data = mount(&s, "/var/lib/etcd").expect("data dir mount");
    assert_eq!(data.source().as_deref(), Some(Path::new("/var/lib/etcd")));
    assert!(
        data.options()
            .as_ref()
            .is_some_and(|o| o.contains(&"rw".to_owned()))
    );
    // managed files
    for dest in [
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/hostname",
        "/dev/termination-log",
        "/dev/shm",
        "/proc",
        "/sys",
    ] {
        assert!(mount(&s, dest).is_some(), "{dest}");
    }
    // node-critical: oom_score_adj -997; 100m → 102 shares; cgroup path by QoS
    let p = s.process().as_ref().expect("process");
    assert_eq!(p.oom_score_adj(), Some(-997));
    let linux = s.linux().as_ref().expect("linux");
    let shares = linux
        .resources()
        .as_ref()
        .and_then(|r| r.cpu().as_ref())
        .and_then(|c| c.shares());
    assert_eq!(shares, Some(102));
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new(&format!(
            "/podvisor/pods/burstable/pod{}/etcd",
            pod.uid
        )))
    );
    assert!(
        linux
            .masked_paths()
            .as_ref()
            .is_some_and(|m| m.contains(&"/proc/kcore".to_owned()))
    );
    assert!(
        linux
            .readonly_paths()
            .as_ref()
            .is_some_and(|m| m.contains(&"/proc/sys".to_owned()))
    );
    assert_eq!(p.args().as_ref().map(|a| a[0].as_str()), Some("etcd"));
    // hostPath plans keep their types
    let plans = plan_volumes(&pod.pod, &ctx(&pod)).expect("plans");
    assert!(plans.iter().all(|v| matches!(
        v,
        VolumePlan::HostPath {
            kind: HostPathType::DirectoryOrCreate,
            ..
        }
    )));
}

#[test]
fn apiserver_and_controller_manager_mount_read_only_and_file_or_create() {
    let pod = load_fixture("kube-apiserver.yaml", &node()).expect("apiserver");
    let s = spec_for(&pod, "kube-apiserver", &ImageDefaults::default());
    let certs = mount(&s, "/etc/kubernetes/pki").expect("pki");
    assert!(
        certs
            .options()
            .as_ref()
            .is_some_and(|o| o.contains(&"ro".to_owned()))
    );
    let kcm = load_fixture("kube-controller-manager.yaml", &node()).expect("kcm");
    let plans = plan_volumes(&kcm.pod, &ctx(&kcm)).expect("plans");
    assert!(plans.iter().any(|v| matches!(v, VolumePlan::HostPath { name, kind: HostPathType::FileOrCreate, .. } if name == "kubeconfig")));
    // volume mounts are ordered parents first
    let s = spec_for(&kcm, "kube-controller-manager", &ImageDefaults::default());
    let dests: Vec<String> = s
        .mounts()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|m| m.destination().display().to_string())
        .collect();
    let pos = |d: &str| dests.iter().position(|x| x == d).expect(d);
    assert!(
        pos("/etc/kubernetes/pki") < pos("/usr/libexec/kubernetes/kubelet-plugins/volume/exec")
    );
}

#[test]
fn kube_vip_gets_exactly_its_capabilities_and_host_aliases() {
    let pod = load_fixture("kube-vip.yaml", &node()).expect("kube-vip");
    let image = ImageDefaults {
        entrypoint: vec!["/kube-vip".into()],
        env: vec!["PATH=/bin".into()],
        ..Default::default()
    };
    let s = spec_for(&pod, "kube-vip", &image);
    assert_eq!(caps_of(&s), vec!["CAP_NET_ADMIN", "CAP_NET_RAW"]);
    let env = env_of(&s);
    assert_eq!(env.get("vip_nodename").map(String::as_str), Some("CP-1"));
    assert_eq!(env.get("vip_arp").map(String::as_str), Some("true"));
    assert_eq!(env.get("PATH").map(String::as_str), Some("/bin"));
    // args replace Cmd but keep the image Entrypoint
    assert_eq!(
        s.process().as_ref().and_then(|p| p.args().clone()),
        Some(vec!["/kube-vip".to_owned(), "manager".to_owned()])
    );
    // no seccomp asked for: Unconfined (the kubelet's default)
    assert!(
        s.linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            .is_none()
    );
    let files = translate::pod_files(
        &pod,
        &ctx(&pod),
        "127.0.0.1 localhost\n10.0.0.10 cp-1\n",
        "nameserver 10.0.0.2\nsearch example.com\n",
    );
    assert!(
        files
            .etc_hosts
            .starts_with("127.0.0.1 localhost\n10.0.0.10 cp-1\n"),
        "{}",
        files.etc_hosts
    );
    assert!(
        files.etc_hosts.contains("127.0.0.1\tkubernetes\n"),
        "{}",
        files.etc_hosts
    );
    assert_eq!(
        files.resolv_conf,
        "search example.com\nnameserver 10.0.0.2\n"
    );
    assert_eq!(files.hostname, "cp-1\n");
}

#[test]
fn haproxy_json_is_guaranteed_with_cgroup_limits_and_tmpfs() {
    let pod = load_fixture("haproxy.json", &node()).expect("haproxy");
    let c = &pod.pod.spec.as_ref().expect("spec").containers[0];
    assert_eq!(
        c.ports.as_ref().and_then(|p| p[0].host_port),
        Some(8443),
        "hostPort defaults to containerPort with hostNetwork"
    );
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let s = spec_for(
        &pod,
        "haproxy",
        &ImageDefaults {
            cmd: vec!["haproxy".into()],
            ..Default::default()
        },
    );
    let r = s
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .expect("resources");
    assert_eq!(
        r.memory().as_ref().and_then(|m| m.limit()),
        Some(128 * 1024 * 1024)
    );
    assert_eq!(
        r.memory().as_ref().and_then(|m| m.swap()),
        Some(128 * 1024 * 1024)
    );
    assert_eq!(r.cpu().as_ref().and_then(|c| c.quota()), Some(20_000));
    assert_eq!(r.cpu().as_ref().and_then(|c| c.period()), Some(100_000));
    assert_eq!(s.root().as_ref().and_then(|r| r.readonly()), Some(true));
    assert_eq!(
        s.process().as_ref().and_then(|p| p.oom_score_adj()),
        Some(-997)
    );
    let plans = plan_volumes(&pod.pod, &ctx(&pod)).expect("plans");
    assert!(plans.iter().any(|v| matches!(
        v,
        VolumePlan::EmptyDir {
            memory: true,
            size_limit: Some(16_777_216),
            ..
        }
    )));
    let run = mount(&s, "/var/run/haproxy").expect("emptyDir mount");
    assert_eq!(
        run.source().as_deref(),
        Some(Path::new(&format!(
            "/var/lib/podvisor/pods/{}/volumes/run",
            pod.uid
        )))
    );
}

#[test]
fn openshift_etcd_expands_variables_and_field_refs() {
    let pod = load_fixture("openshift-etcd.yaml", &node()).expect("openshift etcd");
    let s = spec_for(&pod, "etcd", &ImageDefaults::default());
    let env = env_of(&s);
    assert_eq!(env.get("ETCD_NAME").map(String::as_str), Some("CP-1"));
    assert_eq!(env.get("NODE_IP").map(String::as_str), Some("10.0.0.10"));
    assert_eq!(env.get("POD_NAME").map(String::as_str), Some("etcd-cp-1"));
    assert_eq!(
        env.get("POD_NAMESPACE").map(String::as_str),
        Some("openshift-etcd")
    );
    assert_eq!(
        env.get("ETCD_PEER_URL").map(String::as_str),
        Some("https://10.0.0.10:2380")
    );
    assert_eq!(
        env.get("ETCDCTL_ENDPOINTS").map(String::as_str),
        Some("https://10.0.0.10:2379,https://$(UNDEFINED_VAR):2379")
    );
    let args = s
        .process()
        .as_ref()
        .and_then(|p| p.args().clone())
        .expect("args");
    assert_eq!(
        args[2],
        "exec etcd --name=CP-1 --initial-advertise-peer-urls=https://10.0.0.10:2380 --listen-client-urls=https://10.0.0.10:2379 --data-dir=/var/lib/etcd --escaped=$(NOT_EXPANDED)"
    );
    // privileged: every capability, no masked paths, sysfs read-write, unconfined
    assert_eq!(
        caps_of(&s).len(),
        translate::security::ALL_CAPABILITIES.len()
    );
    let linux = s.linux().as_ref().expect("linux");
    assert!(linux.masked_paths().as_ref().is_none_or(|m| m.is_empty()));
    assert!(
        mount(&s, "/sys")
            .and_then(|m| m.options().clone())
            .is_some_and(|o| o.contains(&"rw".to_owned()))
    );
    assert!(linux.seccomp().is_none());
    // init containers translate with their own env
    let init = spec_for(&pod, "etcd-ensure-env-vars", &ImageDefaults::default());
    let args = init
        .process()
        .as_ref()
        .and_then(|p| p.args().clone())
        .expect("args");
    assert_eq!(args[2], "test -n \"10.0.0.10\" && echo ok for CP-1");
    // downwardAPI volume: mode 0644 from legacy octal, labels rendered as key="value"
    let plans = plan_volumes(&pod.pod, &ctx(&pod)).expect("plans");
    let files = plans
        .iter()
        .find_map(|v| match v {
            VolumePlan::DownwardApi { files, .. } => Some(files.clone()),
            _ => None,
        })
        .expect("downwardAPI");
    assert!(files.contains(&("name".to_owned(), "etcd-cp-1".to_owned(), 0o644)));
    let labels = &files.iter().find(|f| f.0 == "labels").expect("labels").1;
    assert!(
        labels.contains("app=\"etcd\"") && labels.contains("revision=\"7\""),
        "{labels}"
    );
    assert!(
        mount(&s, "/etc/podinfo")
            .and_then(|m| m.options().clone())
            .is_some_and(|o| o.contains(&"ro".to_owned()))
    );
}

#[test]
fn daemonset_runs_only_where_its_rules_match() {
    let labels = |s: &str| parse_labels(s).expect("labels");
    let taints = |s: &str| parse_taints(s).expect("taints");
    let table = [
        (
            "worker in zone a",
            labels("topology.kubernetes.io/zone=a"),
            taints(""),
            Ok(()),
        ),
        (
            "tolerated taint",
            labels("topology.kubernetes.io/zone=b"),
            taints("dedicated=monitoring:NoSchedule"),
            Ok(()),
        ),
        (
            "zone c",
            labels("topology.kubernetes.io/zone=c"),
            taints(""),
            Err("required node affinity"),
        ),
        (
            "control plane",
            labels("topology.kubernetes.io/zone=a,node-role.kubernetes.io/control-plane="),
            taints(""),
            Err("required node affinity"),
        ),
        (
            "other taint",
            labels("topology.kubernetes.io/zone=a"),
            taints("dedicated=db:NoSchedule"),
            Err("dedicated=db:NoSchedule is not tolerated"),
        ),
        (
            "soft taint ignored",
            labels("topology.kubernetes.io/zone=a"),
            taints("x:PreferNoSchedule"),
            Ok(()),
        ),
    ];
    for (name, l, t, want) in table {
        let n = NodeInfo::new("worker-7", l, t);
        match (load_fixture("node-agent-daemonset.yaml", &n), want) {
            (Ok(pod), Ok(())) => {
                assert_eq!(pod.name(), "node-agent-worker-7", "{name}");
                assert_eq!(pod.pod.metadata.namespace.as_deref(), Some("monitoring"));
            }
            (Err(ManifestError::NotSelected { reason, .. }), Err(want)) => {
                assert!(reason.contains(want), "{name}: {reason}")
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
    let n = NodeInfo::new("worker-7", labels("topology.kubernetes.io/zone=a"), vec![]);
    let pod = load_fixture("node-agent-daemonset.yaml", &n).expect("selected");
    let s = spec_for(
        &pod,
        "agent",
        &ImageDefaults {
            entrypoint: vec!["/agent".into()],
            ..Default::default()
        },
    );
    let p = s.process().as_ref().expect("process");
    assert_eq!(
        p.args().clone(),
        Some(vec!["/agent".to_owned(), "--node=worker-7".to_owned()])
    );
    assert_eq!(p.no_new_privileges(), Some(true));
    assert_eq!(p.user().uid(), 65534);
    assert_eq!(
        s.linux()
            .as_ref()
            .and_then(|l| l.rootfs_propagation().clone())
            .as_deref(),
        Some("rslave")
    );
    let host_proc = mount(&s, "/host/proc").expect("/host/proc");
    assert!(
        host_proc
            .options()
            .as_ref()
            .is_some_and(|o| o.contains(&"rslave".to_owned()) && o.contains(&"ro".to_owned()))
    );
    assert_eq!(s.hostname().as_deref(), Some("node-agent-worker-7"));
    let ns = ns_types(&s);
    assert!(ns.contains(&LinuxNamespaceType::Network) && ns.contains(&LinuxNamespaceType::Uts));
}

#[test]
fn static_pod_rules_and_api_validation_name_the_field() {
    let base = std::fs::read_to_string(fixture("kube-scheduler.yaml")).expect("fixture");
    let table: &[(&str, &str, &str)] = &[
        (
            "    name: kube-scheduler\n",
            "    name: Kube_Scheduler\n",
            "spec.containers[0].name",
        ),
        (
            "    image: registry.k8s.io/kube-scheduler:v1.31.2\n",
            "    image: \"\"\n",
            "spec.containers[0].image",
        ),
        (
            "  hostNetwork: true\n",
            "  hostNetwork: true\n  serviceAccountName: scheduler\n",
            "spec.serviceAccountName",
        ),
        (
            "  - hostPath:\n      path: /etc/kubernetes/scheduler.conf\n      type: FileOrCreate\n    name: kubeconfig\n",
            "  - secret:\n      secretName: x\n    name: kubeconfig\n",
            "spec.volumes[0].secret",
        ),
        (
            "      name: kubeconfig\n      readOnly: true\n",
            "      name: missing\n      readOnly: true\n",
            "spec.containers[0].volumeMounts[0].name",
        ),
        (
            "        cpu: 100m\n",
            "        cpu: lots\n",
            "spec.containers[0].resources.requests.cpu",
        ),
        (
            "        port: 10259\n        scheme: HTTPS\n      initialDelaySeconds",
            "        port: 70000\n        scheme: HTTPS\n      initialDelaySeconds",
            "spec.containers[0].livenessProbe.httpGet.port",
        ),
        (
            "      type: FileOrCreate\n",
            "      type: Fifo\n",
            "spec.volumes[0].hostPath.type",
        ),
        (
            "  name: kube-scheduler\n  namespace",
            "  namespace",
            "metadata.name",
        ),
        (
            "    seccompProfile:\n      type: RuntimeDefault\n",
            "    seccompProfile:\n      type: Localhost\n",
            "spec.securityContext.seccompProfile.localhostProfile",
        ),
    ];
    for (from, to, field) in table {
        assert!(base.contains(from), "fixture lacks {from:?}");
        let text = base.replacen(from, to, 1);
        let err = load(
            Path::new("/etc/kubernetes/manifests/s.yaml"),
            text.as_bytes(),
            &node(),
            &|_| String::new(),
        )
        .expect_err(field);
        let msg = err.to_string();
        assert!(msg.contains(field), "{field}: {msg}");
        assert!(msg.contains("/etc/kubernetes/manifests/s.yaml"), "{msg}");
    }
}

#[test]
fn render_prints_pod_uid_qos_and_specs_or_the_errors() {
    use podvisor::render::{Format, RenderArgs, render};
    let args = |file: PathBuf, output: Format| RenderArgs {
        file,
        node_name: Some("CP-1".to_owned()),
        node_labels: String::new(),
        node_taints: String::new(),
        node_ip: "10.0.0.10".to_owned(),
        seccomp_profile_root: PathBuf::from("/var/lib/kubelet/seccomp"),
        output,
    };
    let root = Path::new("/var/lib/podvisor");
    for file in ["etcd.yaml", "haproxy.json", "openshift-etcd.yaml"] {
        let path = fixture(file).canonicalize().expect("fixture path");
        let out = render(&args(path.clone(), Format::Json), root).expect("renders");
        let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        let pod = load_fixture_at(&path);
        assert_eq!(
            doc["uid"],
            serde_json::json!(pod.uid),
            "{file}: same UID as the agent computes"
        );
        assert_eq!(
            doc["qosClass"],
            serde_json::json!(format!("{:?}", pod.qos)),
            "{file}"
        );
        assert_eq!(
            doc["containers"].as_array().map(Vec::len),
            Some(containers(&pod).len()),
            "{file}"
        );
        let spec: Spec =
            serde_json::from_value(doc["containers"][0]["spec"].clone()).expect("OCI spec");
        assert!(spec.process().is_some(), "{file}");
        let yaml = render(&args(path, Format::Yaml), root).expect("renders YAML");
        assert!(yaml.contains(&format!("uid: {}", pod.uid)), "{file}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\nspec:\n  containers: []\n",
    )
    .expect("write");
    let err = render(&args(bad, Format::Json), root)
        .expect_err("invalid")
        .to_string();
    assert!(
        err.contains("bad.yaml")
            && err.contains("metadata.name")
            && err.contains("spec.containers"),
        "{err}"
    );
}

fn load_fixture_at(path: &Path) -> StaticPod {
    let bytes = std::fs::read(path).expect("fixture");
    load(path, &bytes, &node(), &|_| String::new()).expect("valid")
}
