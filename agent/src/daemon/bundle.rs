//! The agent's [`BundleMaker`]: turns one container run of a static pod into an OCI bundle.
//!
//! Steps, each failure becoming the container's waiting reason (the worker retries with
//! backoff; other pods are not affected):
//! `prepare_pod` (once per pod: etc-hosts, resolv.conf, volumes, hostPath checks) →
//! `ensure_pod_cgroup` (every run: the QoS and pod cgroups with all controllers enabled,
//! the pod's `pids.max`; see [`super::pod_cgroup`]) →
//! `ensure_image` (the `imagePullPolicy` decision, pulling when it says so) →
//! `prepare_rootfs` (one overlay per run; the previous run's is removed) →
//! `translate` (Pod → OCI spec, joining the pod namespaces the shim holds) → `config.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use podvisor_rootfs::{NoProgress, PullDecision, PullOptions, PullPolicy, Reference, Store};

use super::probes::PodProbes;
use crate::pod::StaticPod;
use crate::supervise::adopt::container_id;
use crate::supervise::record::WaitReason;
use crate::supervise::worker::{BundleError, BundleMaker};
use crate::translate::{self, ContainerInput, ImageDefaults, PodContext};

/// Makes the bundles of one pod's containers.
#[derive(Debug)]
pub struct PodBundles {
    pod: StaticPod,
    ctx: PodContext,
    store: Store,
    pull: PullOptions,
    bundles: PathBuf,
    prepared: bool,
    stop_signals: BTreeMap<String, String>,
    /// Container name → the `imageID` of the image its last bundle was made from.
    image_ids: BTreeMap<String, String>,
    probes: Option<PodProbes>,
    /// The pod namespaces the shim holds, as last given to [`BundleMaker::make`].
    namespaces: BTreeMap<String, PathBuf>,
}

impl PodBundles {
    /// A maker for `pod` using the image `store`; bundles go under `bundles`
    /// (`<state>/pods/<uid>/bundles`, removed with the pod's state).
    pub fn new(
        pod: StaticPod,
        ctx: PodContext,
        store: Store,
        pull: PullOptions,
        bundles: PathBuf,
        probes: Option<PodProbes>,
    ) -> Self {
        Self {
            pod,
            ctx,
            store,
            pull,
            bundles,
            prepared: false,
            stop_signals: BTreeMap::new(),
            image_ids: BTreeMap::new(),
            probes,
            namespaces: BTreeMap::new(),
        }
    }

    /// The namespaces network probes of a run with init `pid` enter. The pod's first run
    /// creates the network namespace the shim then holds, so [`BundleMaker::make`] did not
    /// know it yet (nor does a re-adopted run): that run's own `/proc/<pid>/ns/net` is it.
    fn probe_namespaces(&self, pid: i32) -> BTreeMap<String, PathBuf> {
        let mut namespaces = self.namespaces.clone();
        if pid > 0 && !namespaces.contains_key("network") {
            namespaces.insert(
                "network".into(),
                PathBuf::from(format!("/proc/{pid}/ns/net")),
            );
        }
        namespaces
    }

    fn prepare_pod(&mut self) -> Result<(), BundleError> {
        if self.prepared {
            return Ok(());
        }
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        translate::prepare::prepare_pod(&self.pod, &self.ctx, &hosts, &resolv).map_err(|e| {
            BundleError {
                reason: WaitReason::CreateContainerConfigError,
                message: e.to_string(),
            }
        })?;
        self.prepared = true;
        Ok(())
    }

    /// Makes the pod cgroup (and its QoS parents) before a container goes in it; a problem
    /// that does not stop the container (a controller that cannot be enabled) is logged.
    fn ensure_pod_cgroup(&self) -> Result<(), BundleError> {
        let Ok(mount) = podvisor_runtime::cgroup::mount_point() else {
            // No cgroup2 mount: the runtime reports that when it creates the container.
            return Ok(());
        };
        let rel =
            translate::resources::pod_cgroup(&self.ctx.cgroup_parent, self.pod.qos, &self.pod.uid);
        let warnings =
            super::pod_cgroup::ensure(&mount, &rel, self.ctx.pod_pids_limit).map_err(|e| {
                BundleError {
                    reason: WaitReason::CreateContainerConfigError,
                    message: e.to_string(),
                }
            })?;
        for w in warnings {
            tracing::warn!(uid = %self.pod.uid, "{w}");
        }
        Ok(())
    }

    fn ensure_image(&self, c: &Container) -> Result<String, BundleError> {
        let image = c.image.clone().unwrap_or_default();
        let reference = Reference::parse(&image).map_err(|e| BundleError {
            reason: WaitReason::Other("InvalidImageName".into()),
            message: format!("container {}: image {image:?}: {e}", c.name),
        })?;
        let policy = c
            .image_pull_policy
            .as_deref()
            .and_then(PullPolicy::parse)
            .unwrap_or_else(|| PullPolicy::default_for(&reference));
        let present = matches!(self.store.find(&image), Ok(Some(_)));
        match podvisor_rootfs::pull_policy(policy, present) {
            PullDecision::UsePresent => Ok(image),
            PullDecision::NeverPullMissing => Err(BundleError {
                reason: WaitReason::Other("ErrImageNeverPull".into()),
                message: format!(
                    "container {}: image {image} is not present with pull policy Never",
                    c.name
                ),
            }),
            PullDecision::Pull => match self.store.pull(&image, &self.pull, &NoProgress) {
                Ok(_) => Ok(image),
                Err(e) => Err(BundleError {
                    reason: WaitReason::ErrImagePull,
                    message: format!("container {}: pull {image}: {e}", c.name),
                }),
            },
        }
    }

    fn config_error(c: &Container, what: &str, e: impl std::fmt::Display) -> BundleError {
        BundleError {
            reason: WaitReason::CreateContainerConfigError,
            message: format!("container {}: {what}: {e}", c.name),
        }
    }
}

impl BundleMaker for PodBundles {
    fn make(
        &mut self,
        _pod: &Pod,
        c: &Container,
        attempt: u32,
        namespaces: &BTreeMap<String, PathBuf>,
    ) -> Result<PathBuf, BundleError> {
        self.prepare_pod()?;
        self.ensure_pod_cgroup()?;
        self.namespaces.clone_from(namespaces);
        let image = self.ensure_image(c)?;
        if attempt > 0 {
            // The previous run has exited (the worker starts a run only then): its
            // writable layer goes, as the kubelet's new container gets a fresh one.
            let old = container_id(&self.pod.uid, &c.name, attempt - 1);
            let _ = self.store.remove_container(&old);
        }
        let id = container_id(&self.pod.uid, &c.name, attempt);
        let rootfs = self
            .store
            .prepare(&image, &id)
            .map_err(|e| Self::config_error(c, "prepare root filesystem", e))?;
        self.image_ids.insert(
            c.name.clone(),
            image_id(
                &rootfs.image.name,
                &rootfs.image.manifest_digest,
                &rootfs.image.config_digest,
            ),
        );
        if let Some(sig) = rootfs
            .image
            .config
            .config()
            .as_ref()
            .and_then(|cfg| cfg.stop_signal().clone())
        {
            self.stop_signals.insert(c.name.clone(), sig);
        }
        let defaults = ImageDefaults::from_image(&rootfs.image.config);
        let (passwd, group) = translate::process::read_user_db(&rootfs.path)
            .map_err(|e| Self::config_error(c, "read /etc/passwd and /etc/group", e))?;
        let mut ctx = self.ctx.clone();
        ctx.net_ns = namespaces.get("network").cloned();
        ctx.ipc_ns = namespaces.get("ipc").cloned();
        ctx.uts_ns = namespaces.get("uts").cloned();
        ctx.pid_ns = namespaces.get("pid").cloned();
        let read_file = |p: &Path| std::fs::read(p);
        let input = ContainerInput {
            image: Some(&defaults),
            rootfs: &rootfs.path,
            passwd: &passwd,
            group: &group,
            read_file: &read_file,
        };
        let spec =
            translate::container_spec(&self.pod, c, &input, &ctx).map_err(|e| BundleError {
                reason: WaitReason::CreateContainerConfigError,
                message: e.to_string(),
            })?;
        let bundle = self.bundles.join(format!("{}-{attempt}", c.name));
        std::fs::create_dir_all(&bundle)
            .map_err(|e| Self::config_error(c, &format!("create {}", bundle.display()), e))?;
        let json =
            serde_json::to_vec(&spec).map_err(|e| Self::config_error(c, "encode spec", e))?;
        let config = bundle.join("config.json");
        std::fs::write(&config, json)
            .map_err(|e| Self::config_error(c, &format!("write {}", config.display()), e))?;
        Ok(bundle)
    }

    fn termination_message_file(&self, _pod: &Pod, c: &Container) -> Option<PathBuf> {
        Some(translate::termination_log_path(&self.ctx, &c.name))
    }

    fn image_stop_signal(&self, c: &Container) -> Option<String> {
        self.stop_signals.get(&c.name).cloned()
    }

    fn image_id(&self, c: &Container) -> Option<String> {
        self.image_ids.get(&c.name).cloned()
    }

    fn on_started(&mut self, pod: &Pod, c: &Container, pid: i32, container_id: &str) {
        if let Some(p) = &self.probes {
            p.started(pod, c, container_id, &self.probe_namespaces(pid));
        }
    }

    fn on_adopted(&mut self, pod: &Pod, c: &Container, pid: i32, container_id: &str) {
        if let Some(p) = &self.probes {
            p.adopted(pod, c, container_id, &self.probe_namespaces(pid));
        }
    }

    fn on_exited(&mut self, _pod: &Pod, c: &Container) {
        if let Some(p) = &self.probes {
            p.exited(c);
        }
    }
}

/// A container's `imageID` as containerd's CRI plugin reports it (its `imageRef`): the
/// repo digest `<registry>/<repository>@<manifest digest>` when the image is stored under
/// a name and its manifest digest is known, else the image ID `sha256:<config digest>`.
pub fn image_id(stored_name: &str, manifest_digest: &str, config_digest: &str) -> String {
    let repo = Reference::parse(stored_name).ok().map(|r| r.name());
    match repo {
        Some(repo) if manifest_digest.starts_with("sha256:") => format!("{repo}@{manifest_digest}"),
        _ => config_digest.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::image_id;

    #[test]
    fn image_id_is_the_repo_digest_else_the_config_digest() {
        let m = format!("sha256:{}", "a".repeat(64));
        let c = format!("sha256:{}", "c".repeat(64));
        let cases = [
            // name as stored, manifest digest, expected
            (
                "docker.io/library/busybox:latest",
                m.as_str(),
                format!("docker.io/library/busybox@{m}"),
            ),
            (
                "busybox",
                m.as_str(),
                format!("docker.io/library/busybox@{m}"),
            ),
            (
                "registry.k8s.io/etcd:3.5.15-0",
                m.as_str(),
                format!("registry.k8s.io/etcd@{m}"),
            ),
            (
                "localhost:5000/pause@sha256:{m}",
                m.as_str(),
                format!("localhost:5000/pause@{m}"),
            ),
            // Stored without a usable name, or no manifest digest: the config digest.
            ("", m.as_str(), c.clone()),
            ("docker.io/library/busybox:latest", "", c.clone()),
        ];
        for (name, manifest, want) in cases {
            let name = name.replace("{m}", &m[7..]);
            assert_eq!(image_id(&name, manifest, &c), want, "{name}");
        }
    }
}
