//! The container's mounts, in containerd's order: the runtime defaults (`/proc`, `/dev`,
//! `/dev/pts`, `/dev/mqueue`, `/sys`, `/sys/fs/cgroup`), the pod's `/dev/shm`, the files the
//! kubelet manages (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, the termination
//! log), then volume mounts sorted so a parent is mounted before its children. Also the
//! content of those managed files, computed purely from the pod and the node's files.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use super::volumes::VolumePlan;
use super::{PodContext, TranslateError};

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": dest, "type": typ, "source": source, "options": options})
}

fn bind(dest: &str, source: &str, read_only: bool, propagation: &str) -> Value {
    let mut options = vec!["rbind", propagation];
    options.push(if read_only { "ro" } else { "rw" });
    json!({"destination": dest, "type": "bind", "source": source, "options": options})
}

/// The runtime's default mounts. Privileged containers get `/sys` and cgroups read-write.
pub fn default_mounts(privileged: bool) -> Vec<Value> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        ),
    ]
}

/// Mounts of the files and directories the agent manages for the pod and this container.
pub fn managed_mounts(
    pod: &Pod,
    c: &Container,
    ctx: &PodContext,
    read_only_root: bool,
) -> Vec<Value> {
    let spec = pod.spec.as_ref();
    let host_ipc = spec.and_then(|s| s.host_ipc).unwrap_or(false);
    let d = |name: &str| ctx.pod_dir.join(name).to_string_lossy().into_owned();
    let mut out = Vec::new();
    // /dev/shm: the host's with hostIPC, else the pod's (shared by its containers, like its IPC namespace).
    if host_ipc {
        out.push(bind("/dev/shm", "/dev/shm", false, "rprivate"));
    } else {
        out.push(bind("/dev/shm", &d("shm"), false, "rprivate"));
    }
    // containerd mounts these read-only when the root filesystem is read-only.
    out.push(bind(
        "/etc/hosts",
        &d("etc-hosts"),
        read_only_root,
        "rprivate",
    ));
    out.push(bind(
        "/etc/resolv.conf",
        &d("resolv.conf"),
        read_only_root,
        "rprivate",
    ));
    out.push(bind(
        "/etc/hostname",
        &d("hostname"),
        read_only_root,
        "rprivate",
    ));
    if let Some(path) = c
        .termination_message_path
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        let log = super::termination_log_path(ctx, &c.name);
        out.push(bind(path, &log.to_string_lossy(), false, "rprivate"));
    }
    out
}

/// Puts the three groups together as containerd does: a volume mounted at a destination
/// replaces the managed file or default mount there (a volume at `/etc/hosts` or `/dev/shm`
/// wins), and a managed mount replaces a default one.
pub fn merge(defaults: Vec<Value>, managed: Vec<Value>, volumes: Vec<Value>) -> Vec<Value> {
    let dest = |m: &Value| {
        m["destination"]
            .as_str()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_owned()
    };
    let taken: std::collections::BTreeSet<String> = volumes.iter().map(dest).collect();
    let managed: Vec<Value> = managed
        .into_iter()
        .filter(|m| !taken.contains(&dest(m)))
        .collect();
    let taken_by_managed: std::collections::BTreeSet<String> = managed.iter().map(dest).collect();
    let mut out: Vec<Value> = defaults
        .into_iter()
        .filter(|m| !taken.contains(&dest(m)) && !taken_by_managed.contains(&dest(m)))
        .collect();
    out.extend(managed);
    out.extend(volumes);
    out
}

/// The container's volume mounts, parents before children.
pub fn volume_mounts(c: &Container, volumes: &[VolumePlan]) -> Result<Vec<Value>, TranslateError> {
    let mut mounts: Vec<(usize, Value)> = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let plan =
            volumes
                .iter()
                .find(|v| v.name() == m.name)
                .ok_or_else(|| TranslateError::Volume {
                    volume: m.name.clone(),
                    message: format!("mounted by container {} but not defined", c.name),
                })?;
        let mut source = plan.source().to_path_buf();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            source = source.join(sub);
        }
        let propagation = match m.mount_propagation.as_deref() {
            Some("HostToContainer") => "rslave",
            Some("Bidirectional") => "rshared",
            _ => "rprivate",
        };
        let ro = m.read_only.unwrap_or(false) || plan.always_read_only();
        let depth = m.mount_path.split('/').filter(|s| !s.is_empty()).count();
        mounts.push((
            depth,
            bind(&m.mount_path, &source.to_string_lossy(), ro, propagation),
        ));
    }
    mounts.sort_by_key(|(depth, _)| *depth); // stable: same depth keeps manifest order
    Ok(mounts.into_iter().map(|(_, v)| v).collect())
}

/// The root propagation a container needs for its mounts (containerd: `rshared` for
/// Bidirectional, `rslave` for HostToContainer).
pub fn rootfs_propagation(c: &Container) -> Option<&'static str> {
    let props: Vec<&str> = c
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| m.mount_propagation.as_deref())
        .collect();
    if props.contains(&"Bidirectional") {
        Some("rshared")
    } else if props.contains(&"HostToContainer") {
        Some("rslave")
    } else {
        None
    }
}

/// The pod's hostname: `spec.hostname` or the pod name, at most 63 characters, without a
/// trailing `-` or `.` (kubelet `GeneratePodHostNameAndDomain`); the node's with hostNetwork.
pub fn pod_hostname(pod: &Pod, ctx: &PodContext) -> String {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return ctx.node_hostname.clone();
    }
    let name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    let mut h: String = name.chars().take(63).collect();
    while h.ends_with('-') || h.ends_with('.') {
        h.pop();
    }
    h
}

/// `/etc/hosts` for the pod. With hostNetwork the node's file is used; otherwise the
/// kubelet's managed file (localhost entries and the pod's own address). `hostAliases` are
/// appended in both cases.
pub fn etc_hosts(pod: &Pod, ctx: &PodContext, node_hosts: &str) -> String {
    let spec = pod.spec.as_ref();
    let mut out = String::new();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        out.push_str(node_hosts);
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
    } else {
        out.push_str("# Kubernetes-managed hosts file.\n");
        out.push_str("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        out.push_str("fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n");
        if !ctx.pod_ip.is_empty() {
            out.push_str(&format!("{}\t{}\n", ctx.pod_ip, pod_hostname(pod, ctx)));
        }
    }
    let aliases = spec.and_then(|s| s.host_aliases.as_ref());
    if aliases.is_some_and(|a| !a.is_empty()) {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases.into_iter().flatten() {
            let names = a.hostnames.clone().unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
    out
}

/// `/etc/resolv.conf` for the pod from the node's resolver and `dnsPolicy`/`dnsConfig`.
/// With no cluster DNS (static pods), ClusterFirst falls back to the node's resolver, as the
/// kubelet does; `None` uses only `dnsConfig`.
pub fn resolv_conf(pod: &Pod, node_resolv: &str) -> String {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let (mut servers, mut searches, mut options) = (Vec::new(), Vec::new(), Vec::new());
    if policy != "None" {
        for line in node_resolv.lines() {
            let mut f = line.split_whitespace();
            match f.next() {
                Some("nameserver") => servers.extend(f.map(str::to_owned)),
                Some("search") | Some("domain") => searches.extend(f.map(str::to_owned)),
                Some("options") => options.extend(f.map(str::to_owned)),
                _ => {}
            }
        }
    }
    if let Some(cfg) = spec.and_then(|s| s.dns_config.as_ref()) {
        servers.extend(cfg.nameservers.clone().unwrap_or_default());
        searches.extend(cfg.searches.clone().unwrap_or_default());
        for o in cfg.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            let opt = match o.value.as_deref() {
                Some(v) => format!("{name}:{v}"),
                None => name.clone(),
            };
            options.retain(|x: &String| x.split(':').next() != Some(name.as_str()));
            options.push(opt);
        }
    }
    let dedup = |v: &mut Vec<String>| {
        let mut seen = std::collections::BTreeSet::new();
        v.retain(|x| seen.insert(x.clone()));
    };
    dedup(&mut servers);
    dedup(&mut searches);
    servers.truncate(3); // glibc reads at most three nameservers
    searches.truncate(32);
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}
