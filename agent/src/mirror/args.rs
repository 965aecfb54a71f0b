//! The agent's mirror flags (`--kubeconfig`, `--register-node`, `--node-labels`, `--node-ip`)
//! and starting the mirror task from them, so `podvisor agent` only has to flatten
//! [`MirrorArgs`] and call [`MirrorArgs::start`].

use std::collections::BTreeMap;
use std::net::{ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::thread::JoinHandle;

use super::config::{MirrorConfig, MirrorError, Timing};
use super::input::MirrorHandle;
use super::node::NodeFacts;
use crate::kube::{ApiClient, ClientOptions, ClusterAccess};

/// Flags of `podvisor agent` that concern the API server.
#[derive(Debug, Clone, clap::Args)]
pub struct MirrorArgs {
    /// kubeconfig of the node identity (kubeadm: /etc/kubernetes/kubelet.conf); enables mirror pods.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Create or update the Node object (default on with a kubeconfig).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub register_node: bool,
    /// Labels for the Node at registration, `key=value,...`.
    #[arg(long, value_delimiter = ',', value_name = "KEY=VALUE")]
    pub node_labels: Vec<String>,
    /// The node's InternalIP (default: the source address used to reach the API server).
    #[arg(long, value_name = "IP")]
    pub node_ip: Option<String>,
}

impl MirrorArgs {
    /// Start the mirror task when a kubeconfig is given; otherwise a disconnected handle.
    pub fn start(
        &self,
        node_name: &str,
    ) -> Result<(MirrorHandle, Option<JoinHandle<()>>), MirrorError> {
        let Some(path) = &self.kubeconfig else {
            return Ok((MirrorHandle::disconnected(), None));
        };
        let access = ClusterAccess::from_kubeconfig(path)?;
        let mut facts = NodeFacts::from_host(node_name);
        facts.labels.extend(parse_labels(&self.node_labels));
        let ip = self
            .node_ip
            .clone()
            .or_else(|| source_address(&access.server));
        if let Some(ip) = ip {
            facts.addresses.insert(0, ("InternalIP".into(), ip));
        }
        let client = ApiClient::new(access, ClientOptions::default())?;
        let config = MirrorConfig {
            node_name: node_name.to_owned(),
            register_node: self.register_node,
            node_facts: facts,
            timing: Timing::default(),
        };
        let (handle, thread) = super::spawn(client, config).map_err(MirrorError::Spawn)?;
        Ok((handle, Some(thread)))
    }
}

/// The local address the kernel picks to reach the API server (no packet is sent:
/// connect(2) on a UDP socket only selects the route and source address).
fn source_address(server: &str) -> Option<String> {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:443")
    };
    let addr = with_port.to_socket_addrs().ok()?.next()?;
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(addr).ok()?;
    Some(socket.local_addr().ok()?.ip().to_string())
}

/// Parse `key=value` labels into a map (for callers building `NodeFacts` themselves).
pub fn parse_labels(labels: &[String]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|l| {
            l.split_once('=')
                .map_or((l.clone(), String::new()), |(k, v)| (k.into(), v.into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mirror: MirrorArgs,
    }

    #[test]
    fn flags_parse_with_kubelet_spelling() {
        let cli = Cli::parse_from([
            "podvisor",
            "--kubeconfig=/etc/kubernetes/kubelet.conf",
            "--register-node=false",
            "--node-labels=a=1,node-role.kubernetes.io/control-plane=",
        ]);
        assert!(!cli.mirror.register_node);
        let labels = parse_labels(&cli.mirror.node_labels);
        assert_eq!(labels["a"], "1");
        assert_eq!(labels["node-role.kubernetes.io/control-plane"], "");
        assert!(Cli::parse_from(["podvisor"]).mirror.register_node);
    }

    #[test]
    fn source_address_of_loopback_server_is_loopback() {
        assert_eq!(
            source_address("https://127.0.0.1:6443").as_deref(),
            Some("127.0.0.1")
        );
    }

    #[test]
    fn missing_kubeconfig_gives_a_disconnected_handle() {
        let args = Cli::parse_from(["podvisor"]).mirror;
        let (_handle, thread) = args.start("n1").unwrap();
        assert!(thread.is_none());
    }
}
