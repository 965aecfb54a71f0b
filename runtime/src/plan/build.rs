//! `Spec -> (InitPlan, ClonePlan)`: a pure function, table-tested.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxCapabilities, LinuxDeviceType, LinuxNamespaceType, Process, Spec};
use serde::{Deserialize, Serialize};

use super::mount_options::{MS_SLAVE, propagation_flag};
use super::{
    CapsPlan, DevicePlan, InitPlan, Join, MountPlan, NsKind, ProcessPlan, RlimitPlan, RootfsPlan,
    parse_mount_options,
};
use crate::caps;
use crate::error::{Error, Result};
use crate::hooks;
use crate::seccomp;

/// One line of `uid_map` / `gid_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// First id inside the namespace.
    pub container_id: u32,
    /// First id outside.
    pub host_id: u32,
    /// Number of ids.
    pub size: u32,
}

/// What the runtime (parent) does around the clone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClonePlan {
    /// `CLONE_NEW*` flags of the namespaces to create.
    pub namespaces: u64,
    /// uid map, written by the parent when a user namespace is created.
    pub uid_map: Vec<IdMap>,
    /// gid map.
    pub gid_map: Vec<IdMap>,
}

impl ClonePlan {
    /// A new user namespace is created.
    pub fn new_userns(&self) -> bool {
        self.namespaces & NsKind::User.clone_flag() != 0
    }
}

/// Choices made by the caller rather than the spec.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--no-pivot`: `MS_MOVE` + `chroot` instead of `pivot_root` (initramfs roots).
    pub no_pivot: bool,
    /// Descriptor number of the exec fifo in the init.
    pub start_fifo_fd: Option<i32>,
    /// Descriptor number of the console socket in the init.
    pub console_socket_fd: Option<i32>,
    /// Descriptors after stdio passed to the workload.
    pub preserve_fds: u32,
    /// OCI state JSON handed to createContainer/startContainer hooks.
    pub hook_state: String,
}

fn ns_kind(t: LinuxNamespaceType) -> NsKind {
    match t {
        LinuxNamespaceType::User => NsKind::User,
        LinuxNamespaceType::Ipc => NsKind::Ipc,
        LinuxNamespaceType::Uts => NsKind::Uts,
        LinuxNamespaceType::Network => NsKind::Net,
        LinuxNamespaceType::Pid => NsKind::Pid,
        LinuxNamespaceType::Cgroup => NsKind::Cgroup,
        LinuxNamespaceType::Mount => NsKind::Mount,
        LinuxNamespaceType::Time => NsKind::Time,
    }
}

/// Default device nodes every container gets (runc's list).
fn default_devices() -> Vec<DevicePlan> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(path, major, minor)| DevicePlan {
        path: path.to_string(),
        kind: 'c',
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

fn caps_plan(c: &LinuxCapabilities) -> Result<CapsPlan> {
    let mask = |set: &Option<oci_spec::runtime::Capabilities>, name: &str| -> Result<u64> {
        let names: Vec<String> = set
            .iter()
            .flatten()
            .map(|c| {
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .collect();
        caps::mask_of(names.iter().map(String::as_str)).map_err(|bad| {
            Error::spec(
                format!("process.capabilities.{name}"),
                format!("unknown capability {bad}"),
            )
        })
    };
    Ok(CapsPlan {
        bounding: mask(c.bounding(), "bounding")?,
        effective: mask(c.effective(), "effective")?,
        permitted: mask(c.permitted(), "permitted")?,
        inheritable: mask(c.inheritable(), "inheritable")?,
        ambient: mask(c.ambient(), "ambient")?,
    })
}

/// Build the plan of a process (shared by create and exec).
pub fn process_plan(
    p: &Process,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
) -> Result<ProcessPlan> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(Error::spec("process.args", "must name a program"));
    }
    let mut rlimits = Vec::new();
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        let resource = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .ok_or_else(|| Error::spec(format!("process.rlimits[{i}].type"), "unknown"))?;
        rlimits.push(RlimitPlan {
            resource,
            soft: r.soft(),
            hard: r.hard(),
        });
    }
    let cwd = p.cwd().to_string_lossy().into_owned();
    if !cwd.starts_with('/') {
        return Err(Error::spec(
            "process.cwd",
            format!("{cwd:?} is not absolute"),
        ));
    }
    let user = p.user();
    Ok(ProcessPlan {
        args,
        env: p.env().clone().unwrap_or_default(),
        cwd,
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        rlimits,
        caps: p.capabilities().as_ref().map(caps_plan).transpose()?,
        no_new_privs: p.no_new_privileges().unwrap_or(false),
        oom_score_adj: p.oom_score_adj(),
        terminal: p.terminal().unwrap_or(false),
        console_size: p
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16)),
        seccomp: seccomp.map(seccomp::compile).transpose()?,
    })
}

fn id_maps(v: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>) -> Vec<IdMap> {
    v.iter()
        .flat_map(|m| m.iter())
        .map(|m| IdMap {
            container_id: m.container_id(),
            host_id: m.host_id(),
            size: m.size(),
        })
        .collect()
}

/// Fields this runtime does not implement are refused by name rather than ignored (AppArmor
/// and SELinux labels are ignored, as runc does on hosts without those LSMs).
fn refuse_unsupported(spec: &Spec) -> Result<()> {
    let unsupported = |field: &str| Err(Error::spec(field, "not supported by podvisor-oci"));
    if let Some(p) = spec.process() {
        if p.io_priority().is_some() {
            return unsupported("process.ioPriority");
        }
        if p.scheduler().is_some() {
            return unsupported("process.scheduler");
        }
        if p.exec_cpu_affinity().is_some() {
            return unsupported("process.execCPUAffinity");
        }
    }
    if let Some(l) = spec.linux() {
        if l.personality().is_some() {
            return unsupported("linux.personality");
        }
        if l.intel_rdt().is_some() {
            return unsupported("linux.intelRdt");
        }
        if l.memory_policy().is_some() {
            return unsupported("linux.memoryPolicy");
        }
        if l.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return unsupported("linux.netDevices");
        }
        if l.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) {
            return unsupported("linux.timeOffsets");
        }
    }
    Ok(())
}

/// Plan a container from its spec and bundle directory.
pub fn plan_container(
    id: &str,
    spec: &Spec,
    bundle: &Path,
    opts: &PlanOptions,
) -> Result<(InitPlan, ClonePlan)> {
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::spec("linux", "missing: this runtime only runs Linux containers"))?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::spec("process", "missing"))?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::spec("root", "missing"))?;

    refuse_unsupported(spec)?;
    let mut clone = ClonePlan::default();
    let mut join = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        let kind = ns_kind(ns.typ());
        match ns.path() {
            Some(p) if !p.as_os_str().is_empty() => join.push(Join {
                kind,
                path: p.clone(),
            }),
            _ => clone.namespaces |= kind.clone_flag(),
        }
    }
    join.sort_by_key(|j| NsKind::JOIN_ORDER.iter().position(|k| *k == j.kind));
    let has =
        |k: NsKind| clone.namespaces & k.clone_flag() != 0 || join.iter().any(|j| j.kind == k);
    if clone.namespaces & NsKind::Mount.clone_flag() == 0 {
        return Err(Error::spec(
            "linux.namespaces",
            "a new mount namespace is required (pivot_root in the host's would change the host)",
        ));
    }
    if join.iter().any(|j| j.kind == NsKind::User) && clone.namespaces != 0 {
        return Err(Error::spec(
            "linux.namespaces",
            "joining a user namespace by path while creating other namespaces is not supported",
        ));
    }
    let new_userns = clone.new_userns();
    if new_userns {
        clone.uid_map = id_maps(linux.uid_mappings().as_ref());
        clone.gid_map = id_maps(linux.gid_mappings().as_ref());
        if clone.uid_map.is_empty() || clone.gid_map.is_empty() {
            return Err(Error::spec(
                "linux.uidMappings",
                "a new user namespace needs uidMappings and gidMappings",
            ));
        }
    }
    let fork_after_join = join.iter().any(|j| j.kind == NsKind::Pid);

    if spec.hostname().is_some() && !has(NsKind::Uts) {
        return Err(Error::spec("hostname", "needs a private UTS namespace"));
    }
    if spec.domainname().is_some() && !has(NsKind::Uts) {
        return Err(Error::spec("domainname", "needs a private UTS namespace"));
    }

    let root_path = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };

    let mut mounts = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let field = format!("mounts[{i}]");
        let dest = m.destination().to_string_lossy().into_owned();
        if !dest.starts_with('/') {
            return Err(Error::spec(
                format!("{field}.destination"),
                format!("{dest:?} is not absolute"),
            ));
        }
        let options = parse_mount_options(m.options().as_deref().unwrap_or(&[]))
            .map_err(|r| Error::spec(format!("{field}.options"), r))?;
        let mut fstype = m.typ().clone().unwrap_or_else(|| "none".to_string());
        if fstype == "bind" || fstype.is_empty() {
            fstype = "none".to_string();
        }
        // cgroup v1 mounts in a v2-only runtime: the spec's "cgroup" means the hierarchy.
        if fstype == "cgroup" {
            fstype = "cgroup2".to_string();
        }
        let mut source = m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| fstype.clone());
        if options.is_bind() {
            if !source.starts_with('/') {
                source = bundle.join(&source).to_string_lossy().into_owned();
            }
        } else if fstype == "none" {
            return Err(Error::spec(
                format!("{field}.type"),
                "a mount without a type must be a bind mount (options bind or rbind)",
            ));
        }
        mounts.push(MountPlan {
            source,
            destination: dest,
            fstype,
            options,
        });
    }

    let mut devices = default_devices();
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::P => 'p',
            LinuxDeviceType::A => {
                return Err(Error::spec(
                    format!("linux.devices[{i}].type"),
                    "\"a\" is only valid in device cgroup rules",
                ));
            }
        };
        let path = d.path().to_string_lossy().into_owned();
        devices.retain(|x| x.path != path);
        devices.push(DevicePlan {
            path,
            kind,
            major: d.major() as u32,
            minor: d.minor() as u32,
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }

    let (propagation, final_propagation) = match linux.rootfs_propagation().as_deref() {
        None | Some("") => (MS_SLAVE | libc::MS_REC, None),
        Some(p) => {
            let flag = propagation_flag(p).ok_or_else(|| {
                Error::spec(
                    "linux.rootfsPropagation",
                    format!("unknown propagation {p:?}"),
                )
            })?;
            // The host side must never receive the container's mounts: slave below, then the
            // requested propagation on the new root once it is in place (runc's order).
            let first = if flag & libc::MS_SHARED != 0 {
                MS_SLAVE | libc::MS_REC
            } else {
                flag
            };
            (first, Some(flag))
        }
    };

    let sysctl: BTreeMap<String, String> = linux
        .sysctl()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let spec_hooks = spec.hooks().as_ref();
    let cgroupns = has(NsKind::Cgroup);
    let plan = InitPlan {
        id: id.to_string(),
        join,
        fork_after_join,
        rootfs: Some(RootfsPlan {
            root: root_path,
            readonly: root.readonly().unwrap_or(false),
            propagation,
            final_propagation,
            pivot: !opts.no_pivot,
            mounts,
            devices,
            bind_devices: new_userns,
            cgroupns,
            masked_paths: linux.masked_paths().clone().unwrap_or_default(),
            readonly_paths: linux.readonly_paths().clone().unwrap_or_default(),
        }),
        hostname: spec.hostname().clone(),
        domainname: spec.domainname().clone(),
        sysctl: sysctl.into_iter().collect(),
        create_container_hooks: hooks::specs(
            spec_hooks.and_then(|h| h.create_container().as_ref()),
        ),
        start_container_hooks: hooks::specs(spec_hooks.and_then(|h| h.start_container().as_ref())),
        hook_state: opts.hook_state.clone(),
        process: process_plan(process, linux.seccomp().as_ref())?,
        start_fifo_fd: opts.start_fifo_fd,
        console_socket_fd: opts.console_socket_fd,
        preserve_fds: opts.preserve_fds,
        loopback_up: clone.namespaces & NsKind::Net.clone_flag() != 0,
    };
    Ok((plan, clone))
}

/// Plan an exec into the running container whose init has host pid `pid`: join all its
/// namespaces (those that differ from ours), fork into its pid namespace, become `process`.
pub fn exec_plan(
    id: &str,
    pid: i32,
    namespaces: &[NsKind],
    process: &Process,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    opts: &PlanOptions,
) -> Result<InitPlan> {
    let mut join: Vec<Join> = namespaces
        .iter()
        .map(|k| Join {
            kind: *k,
            path: PathBuf::from(format!("/proc/{pid}/ns/{}", k.proc_name())),
        })
        .collect();
    join.sort_by_key(|j| NsKind::JOIN_ORDER.iter().position(|k| *k == j.kind));
    Ok(InitPlan {
        id: id.to_string(),
        fork_after_join: true,
        join,
        rootfs: None,
        hostname: None,
        domainname: None,
        sysctl: Vec::new(),
        create_container_hooks: Vec::new(),
        start_container_hooks: Vec::new(),
        hook_state: String::new(),
        process: process_plan(process, seccomp)?,
        start_fifo_fd: None,
        console_socket_fd: opts.console_socket_fd,
        preserve_fds: opts.preserve_fds,
        loopback_up: false,
    })
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
