//! kubeconfig loading: the shape kubeadm writes to `/etc/kubernetes/kubelet.conf` (server,
//! `certificate-authority(-data)`, `client-certificate(-data)`/`client-key(-data)`, `token`,
//! `tokenFile`), reduced to what a client needs. Relative file paths are resolved against the
//! kubeconfig's directory, as kubectl does; file paths stay paths so rotated files are re-read.

use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use serde::Deserialize;

use super::KubeError;

/// Where a credential comes from: embedded in the kubeconfig, or a file read (and re-read) at use.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// Embedded bytes (`*-data` fields, base64-decoded).
    Data(Vec<u8>),
    /// A file path (absolute after loading).
    File(PathBuf),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Data(d) => write!(f, "Data({} bytes)", d.len()),
            Self::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// How the client proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A client certificate and its key (often one file holding both, as kubeadm rotates it).
    ClientCert {
        /// The certificate chain (PEM).
        cert: Source,
        /// The private key (PEM).
        key: Source,
    },
    /// A bearer token given inline.
    Token(String),
    /// A bearer token read from a file at each use (projected tokens rotate).
    TokenFile(PathBuf),
    /// No client credential (only useful against a test server).
    None,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClientCert { cert, key } => {
                write!(f, "ClientCert {{ cert: {cert:?}, key: {key:?} }}")
            }
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::TokenFile(p) => write!(f, "TokenFile({})", p.display()),
            Self::None => f.write_str("None"),
        }
    }
}

/// Everything needed to reach one API server as one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterAccess {
    /// Base URL, e.g. `https://10.0.0.1:6443` (no trailing slash).
    pub server: String,
    /// The cluster CA bundle; `None` uses the built-in web roots.
    pub ca: Option<Source>,
    /// `insecure-skip-tls-verify` (never set by kubeadm; honoured for test clusters).
    pub insecure_skip_tls_verify: bool,
    /// The user's credential.
    pub credential: Credential,
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(rename = "current-context", default)]
    current_context: String,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Deserialize, Default)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<ByteString>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Deserialize, Default)]
struct User {
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<ByteString>,
    #[serde(rename = "client-key")]
    client_key: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<ByteString>,
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    /// Credential plugins: not supported, reported instead of silently ignored.
    exec: Option<serde::de::IgnoredAny>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: String,
}

impl ClusterAccess {
    /// Load the current context of a kubeconfig file.
    pub fn from_kubeconfig(path: &Path) -> Result<Self, KubeError> {
        let text = std::fs::read_to_string(path).map_err(|source| KubeError::ReadKubeconfig {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_yaml(&text, base).map_err(|detail| KubeError::Kubeconfig {
            path: path.to_owned(),
            detail,
        })
    }

    /// Parse kubeconfig text; relative paths are resolved against `base`.
    fn from_yaml(text: &str, base: &Path) -> Result<Self, String> {
        let config: Kubeconfig = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let contexts: Vec<_> = config
            .contexts
            .iter()
            .map(|e| (&e.name, &e.context))
            .collect();
        let clusters: Vec<_> = config
            .clusters
            .iter()
            .map(|e| (&e.name, &e.cluster))
            .collect();
        let users: Vec<_> = config.users.iter().map(|e| (&e.name, &e.user)).collect();
        let context = pick(&contexts, &config.current_context, "context")?;
        let cluster = pick(&clusters, &context.cluster, "cluster")?;
        let no_user = User::default();
        let user = if context.user.is_empty() {
            &no_user
        } else {
            pick(&users, &context.user, "user")?
        };
        if cluster.server.is_empty() {
            return Err(format!("cluster {:?} has no server", context.cluster));
        }
        if user.exec.is_some() || user.auth_provider.is_some() {
            return Err(format!(
                "user {:?} uses an exec or auth-provider credential plugin, which podvisor does \
                 not run: use a client certificate or a token",
                context.user
            ));
        }
        let file = |p: &String| Source::File(base.join(p));
        let ca = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) => Some(Source::Data(data.0.clone())),
            (None, Some(p)) => Some(file(p)),
            (None, None) => None,
        };
        let cert = match (&user.client_certificate_data, &user.client_certificate) {
            (Some(data), _) => Some(Source::Data(data.0.clone())),
            (None, Some(p)) => Some(file(p)),
            (None, None) => None,
        };
        let key = match (&user.client_key_data, &user.client_key) {
            (Some(data), _) => Some(Source::Data(data.0.clone())),
            (None, Some(p)) => Some(file(p)),
            (None, None) => None,
        };
        let credential = match (cert, key, &user.token, &user.token_file) {
            (Some(cert), Some(key), _, _) => Credential::ClientCert { cert, key },
            (Some(_), None, _, _) | (None, Some(_), _, _) => {
                return Err(format!(
                    "user {:?} needs both a client certificate and a client key",
                    context.user
                ));
            }
            (None, None, Some(token), _) if !token.is_empty() => Credential::Token(token.clone()),
            (None, None, _, Some(f)) => Credential::TokenFile(base.join(f)),
            _ => Credential::None,
        };
        Ok(Self {
            server: cluster.server.trim_end_matches('/').to_owned(),
            ca,
            insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
            credential,
        })
    }
}

/// The entry named `name` (or the only entry when `name` is empty).
fn pick<'a, T>(entries: &[(&String, &'a T)], name: &str, what: &str) -> Result<&'a T, String> {
    if name.is_empty() {
        return match entries {
            [(_, only)] => Ok(only),
            _ => Err(format!(
                "no current-context and {} {what} entries",
                entries.len()
            )),
        };
    }
    entries
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, item)| *item)
        .ok_or_else(|| format!("{what} {name:?} not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBELET_CONF: &str = r#"
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tQ0EtLS0=
    server: https://10.0.0.1:6443/
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: system:node:cp1
  name: system:node:cp1@kubernetes
current-context: system:node:cp1@kubernetes
kind: Config
preferences: {}
users:
- name: system:node:cp1
  user:
    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem
    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem
"#;

    #[test]
    fn kubeadm_kubelet_conf_keeps_rotating_cert_paths() {
        let a = ClusterAccess::from_yaml(KUBELET_CONF, Path::new("/etc/kubernetes")).unwrap();
        assert_eq!(a.server, "https://10.0.0.1:6443");
        assert_eq!(a.ca, Some(Source::Data(b"---CA---".to_vec())));
        let pem = PathBuf::from("/var/lib/kubelet/pki/kubelet-client-current.pem");
        assert_eq!(
            a.credential,
            Credential::ClientCert {
                cert: Source::File(pem.clone()),
                key: Source::File(pem)
            }
        );
    }

    #[test]
    fn relative_paths_resolve_against_kubeconfig_dir_and_token_file_is_kept() {
        let text = r#"
clusters: [{name: c, cluster: {server: "https://h:6443", certificate-authority: pki/ca.crt}}]
users: [{name: u, user: {tokenFile: tok}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"#;
        let a = ClusterAccess::from_yaml(text, Path::new("/etc/k")).unwrap();
        assert_eq!(a.ca, Some(Source::File(PathBuf::from("/etc/k/pki/ca.crt"))));
        assert_eq!(
            a.credential,
            Credential::TokenFile(PathBuf::from("/etc/k/tok"))
        );
    }

    #[test]
    fn inline_token_and_missing_context_are_reported() {
        let text = r#"
clusters: [{name: c, cluster: {server: "https://h"}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"#;
        let a = ClusterAccess::from_yaml(text, Path::new("/")).unwrap();
        assert_eq!(a.credential, Credential::Token("abc".into()));
        let bad = text.replace("current-context: x", "current-context: y");
        let err = ClusterAccess::from_yaml(&bad, Path::new("/")).unwrap_err();
        assert_eq!(err, "context \"y\" not found");
    }

    #[test]
    fn exec_plugin_is_reported_not_ignored() {
        let text = r#"
clusters: [{name: c, cluster: {server: "https://h"}}]
users: [{name: u, user: {exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"#;
        let err = ClusterAccess::from_yaml(text, Path::new("/")).unwrap_err();
        assert!(err.contains("credential plugin"), "{err}");
    }

    #[test]
    fn cert_without_key_is_rejected() {
        let text = r#"
clusters: [{name: c, cluster: {server: "https://h"}}]
users: [{name: u, user: {client-certificate: c.pem}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"#;
        let err = ClusterAccess::from_yaml(text, Path::new("/")).unwrap_err();
        assert!(
            err.contains("both a client certificate and a client key"),
            "{err}"
        );
    }
}
