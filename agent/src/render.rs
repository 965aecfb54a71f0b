//! `podvisor render FILE`: shows what podvisor would run for one manifest, with no side
//! effects: the defaulted pod, its UID and QoS class, each container's OCI spec, the
//! volumes it would prepare, and warnings — or the errors, naming the file and field.
//! Images are not resolved, so image Entrypoint/Cmd/Env/User are not merged in.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context as _;
use serde_json::json;

use crate::manifest::source;
use crate::pod::select::{NodeInfo, parse_labels, parse_taints};
use crate::pod::{identity, load};
use crate::translate::{self, ContainerInput, PodContext};

/// Output format of `render`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Indented JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Arguments of `podvisor render`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// The manifest file.
    pub file: PathBuf,
    /// Node name (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Node labels, `k=v,k2=v2`.
    #[arg(long, default_value = "")]
    pub node_labels: String,
    /// Node taints, `key[=value]:Effect,...`.
    #[arg(long, default_value = "")]
    pub node_taints: String,
    /// A node config file (`labels:` and `taints:`), instead of the two flags above.
    #[arg(long, conflicts_with_all = ["node_labels", "node_taints"])]
    pub node_config: Option<PathBuf>,
    /// The node's IP (the pod IP of hostNetwork pods, `status.hostIP`).
    #[arg(long, default_value = "")]
    pub node_ip: String,
    /// Where Localhost seccomp profiles live.
    #[arg(long, default_value = "/var/lib/kubelet/seccomp")]
    pub seccomp_profile_root: PathBuf,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "json")]
    pub output: Format,
}

/// The node's hostname from the kernel, lower-cased as the kubelet does.
pub fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// Renders the manifest; `root` is the agent's `--root` (only used to show the paths the pod
/// would use). `Err` carries the manifest or translation errors.
pub fn render(args: &RenderArgs, root: &std::path::Path) -> anyhow::Result<String> {
    let node_name = args.node_name.clone().unwrap_or_else(default_node_name);
    let labels = parse_labels(&args.node_labels).map_err(anyhow::Error::msg)?;
    let taints = parse_taints(&args.node_taints).map_err(anyhow::Error::msg)?;
    let node = match args.node_config.as_deref() {
        Some(file) => NodeInfo::from_file(file, &node_name).map_err(anyhow::Error::msg)?,
        None => NodeInfo::new(&node_name, labels, taints),
    };
    let path = std::path::absolute(&args.file)
        .with_context(|| format!("resolve {}", args.file.display()))?;
    let bytes = source::read_manifest(&path)?;
    let now = identity::rfc3339(SystemTime::now());
    let pod = load(&path, &bytes, &node, &|_| now.clone())?;
    let mut ctx = PodContext::new(root.join("pods").join(&pod.uid));
    ctx.seccomp_profile_root = args.seccomp_profile_root.clone();
    ctx.node_hostname = node_name.clone();
    ctx.set_node_ip(
        &args.node_ip,
        pod.pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false),
    );
    let read_file = |p: &std::path::Path| std::fs::read(p);
    let spec = pod.pod.spec.clone().unwrap_or_default();
    let mut containers = Vec::new();
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| (c, true))
        .chain(spec.containers.iter().map(|c| (c, false)));
    for (c, init) in all {
        let rootfs = root
            .join("pods")
            .join(&pod.uid)
            .join("rootfs")
            .join(&c.name);
        let input = ContainerInput {
            image: None,
            rootfs: &rootfs,
            passwd: "",
            group: "",
            read_file: &read_file,
        };
        let oci = translate::container_spec(&pod, c, &input, &ctx)?;
        containers.push(json!({"name": c.name, "init": init, "spec": oci}));
    }
    let volumes = translate::volumes::plan_volumes(&pod.pod, &ctx)?;
    let doc = json!({
        "file": path,
        "node": node_name,
        "uid": pod.uid,
        "qosClass": pod.qos.as_str(),
        "warnings": pod.warnings,
        "pod": &*pod.pod,
        "volumes": volumes,
        "containers": containers,
    });
    match args.output {
        Format::Json => Ok(serde_json::to_string_pretty(&doc)? + "\n"),
        Format::Yaml => Ok(serde_saphyr::to_string(&doc)?),
    }
}
