//! `ApiClient`: JSON requests to one API server over `ureq` + rustls.
//!
//! Credentials given as file paths (kubeadm's `kubelet-client-current.pem`, a CA bundle, a
//! token file) are stat'ed before every request; when one changes on disk the TLS
//! configuration is rebuilt, so a rotated client certificate is used from the next request on
//! (new connections: an agent's pooled connections go with it).

use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use ureq::http;
use ureq::tls::{ClientCert, PemItem, RootCerts, TlsConfig};

use super::{ApiStatus, ClusterAccess, Credential, KubeError, Source};

/// Timeouts for API calls.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// Whole-request timeout for ordinary calls.
    pub timeout: Duration,
    /// TCP connect (and TLS handshake) budget.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A cheap-to-clone handle to one API server as one user.
#[derive(Debug, Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    access: ClusterAccess,
    options: ClientOptions,
    cached: Mutex<Option<Built>>,
}

/// A built agent and the file stamps it was built from.
struct Built {
    stamps: Vec<Stamp>,
    /// Stamps of a later version of the files that failed to load.
    rejected: Option<Vec<Stamp>>,
    agent: ureq::Agent,
    token: Option<String>,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Built")
            .field("stamps", &self.stamps)
            .finish_non_exhaustive()
    }
}

/// Identity of a file's content as far as stat(2) can tell: inode, size, mtime in ns.
/// Rotation by rename (kubelet's symlink swap) changes the inode; rewrite changes mtime.
type Stamp = Option<(u64, u64, i128)>;

/// A byte stream of newline-separated JSON watch events.
pub type WatchStream = Box<dyn BufRead + Send>;

impl ApiClient {
    /// Build a client and load its credentials once (so a bad kubeconfig fails at start-up).
    pub fn new(access: ClusterAccess, options: ClientOptions) -> Result<Self, KubeError> {
        let client = Self {
            inner: Arc::new(Inner {
                access,
                options,
                cached: Mutex::new(None),
            }),
        };
        client.agent()?;
        Ok(client)
    }

    /// The API server's base URL.
    pub fn server(&self) -> &str {
        &self.inner.access.server
    }

    /// GET a JSON object.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, KubeError> {
        self.call("GET", path, None, None)
    }

    /// POST a JSON object (create).
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, KubeError> {
        self.call("POST", path, Some("application/json"), Some(json(body)))
    }

    /// PUT a JSON object (replace, with its resourceVersion as optimistic lock).
    pub fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, KubeError> {
        self.call("PUT", path, Some("application/json"), Some(json(body)))
    }

    /// PATCH with an explicit patch type (e.g. `application/strategic-merge-patch+json`).
    pub fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: &impl Serialize,
    ) -> Result<T, KubeError> {
        self.call("PATCH", path, Some(content_type), Some(json(body)))
    }

    /// DELETE with a `DeleteOptions` body (grace period, preconditions); the answer is the
    /// deleted object or a `Status`.
    pub fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
        options: &impl Serialize,
    ) -> Result<T, KubeError> {
        self.call(
            "DELETE",
            path,
            Some("application/json"),
            Some(json(options)),
        )
    }

    /// Open a watch stream; `budget` bounds the whole stream (ask the server for less).
    pub fn watch(&self, path: &str, budget: Duration) -> Result<WatchStream, KubeError> {
        let response = self.send("GET", path, None, None, Some(budget))?;
        Ok(Box::new(std::io::BufReader::new(
            response.into_body().into_reader(),
        )))
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<T, KubeError> {
        let mut response = self.send(method, path, content_type, body, None)?;
        let bytes = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|source| KubeError::Transport {
                method: method.into(),
                path: path.into(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|source| KubeError::Decode {
            method: method.into(),
            path: path.into(),
            source,
        })
    }

    /// Send one request; any non-2xx answer becomes `KubeError::Api` with its decoded `Status`.
    fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<http::Response<ureq::Body>, KubeError> {
        let transport = |source| KubeError::Transport {
            method: method.into(),
            path: path.into(),
            source,
        };
        let (agent, token) = self.agent()?;
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.inner.access.server, path))
            .header("accept", "application/json");
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let result = match body {
            Some(body) => {
                let request = builder.body(body).map_err(|e| transport(e.into()))?;
                let request = agent
                    .configure_request(request)
                    .timeout_global(timeout)
                    .build();
                agent.run(request)
            }
            None => {
                let request = builder.body(()).map_err(|e| transport(e.into()))?;
                let request = agent
                    .configure_request(request)
                    .timeout_global(timeout)
                    .build();
                agent.run(request)
            }
        };
        let mut response = result.map_err(transport)?;
        let code = response.status().as_u16();
        if (200..300).contains(&code) {
            return Ok(response);
        }
        let bytes = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .unwrap_or_default();
        Err(KubeError::Api {
            method: method.into(),
            path: path.into(),
            status: ApiStatus::from_body(code, &bytes),
        })
    }

    /// The agent for the credentials as they are on disk now, rebuilt when a file changed.
    fn agent(&self) -> Result<(ureq::Agent, Option<String>), KubeError> {
        let stamps: Vec<Stamp> = self.watched_files().iter().map(stamp).collect();
        let mut cached = self
            .inner
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(built) = cached.as_mut() {
            if built.stamps == stamps || built.rejected.as_ref() == Some(&stamps) {
                return Ok((built.agent.clone(), built.token.clone()));
            }
        }
        let built = match (self.build(stamps.clone()), cached.as_mut()) {
            (Ok(b), _) => b,
            // A file caught half-written, or a bad new certificate: keep the credentials that
            // worked, say so once, and try again when the files change again.
            (Err(e), Some(old)) => {
                tracing::warn!(server = %self.inner.access.server, "credentials changed on disk but cannot be used, keeping the previous ones: {e}");
                old.rejected = Some(stamps);
                return Ok((old.agent.clone(), old.token.clone()));
            }
            (Err(e), None) => return Err(e),
        };
        if cached.is_some() {
            tracing::info!(server = %self.inner.access.server, "credentials changed on disk, reloaded");
        }
        let out = (built.agent.clone(), built.token.clone());
        *cached = Some(built);
        Ok(out)
    }

    fn watched_files(&self) -> Vec<PathBuf> {
        let access = &self.inner.access;
        let mut files = Vec::new();
        if let Some(Source::File(p)) = &access.ca {
            files.push(p.clone());
        }
        match &access.credential {
            Credential::ClientCert { cert, key } => {
                for s in [cert, key] {
                    if let Source::File(p) = s {
                        files.push(p.clone());
                    }
                }
            }
            Credential::TokenFile(p) => files.push(p.clone()),
            Credential::Token(_) | Credential::None => {}
        }
        files
    }

    fn build(&self, stamps: Vec<Stamp>) -> Result<Built, KubeError> {
        let access = &self.inner.access;
        let mut tls = TlsConfig::builder().disable_verification(access.insecure_skip_tls_verify);
        if let Some(ca) = &access.ca {
            let bytes = read(ca, "certificate authority")?;
            let certs = certificates(&bytes, "certificate authority")?;
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        let mut token = None;
        match &access.credential {
            Credential::ClientCert { cert, key } => {
                let chain = certificates(&read(cert, "client certificate")?, "client certificate")?;
                let key = private_key(&read(key, "client key")?)?;
                tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
            }
            Credential::Token(t) => token = Some(t.clone()),
            Credential::TokenFile(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|source| KubeError::ReadCredential {
                        what: "token file",
                        path: p.clone(),
                        source,
                    })?;
                token = Some(text.trim().to_owned());
            }
            Credential::None => {}
        }
        let options = self.inner.options;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(options.timeout))
            .timeout_connect(Some(options.connect_timeout))
            .user_agent(concat!("podvisor/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .new_agent();
        Ok(Built {
            stamps,
            rejected: None,
            agent,
            token,
        })
    }
}

fn json(body: &impl Serialize) -> Vec<u8> {
    // Serializing our own k8s-openapi or serde_json values cannot fail (no non-string map keys).
    serde_json::to_vec(body).unwrap_or_default()
}

fn stamp(path: &PathBuf) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    Some((meta.ino(), meta.len(), mtime))
}

fn read(source: &Source, what: &'static str) -> Result<Vec<u8>, KubeError> {
    match source {
        Source::Data(d) => Ok(d.clone()),
        Source::File(p) => std::fs::read(p).map_err(|source| KubeError::ReadCredential {
            what,
            path: p.clone(),
            source,
        }),
    }
}

fn certificates(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<ureq::tls::Certificate<'static>>, KubeError> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(KubeError::Pem {
                    what,
                    detail: e.to_string(),
                });
            }
        }
    }
    if certs.is_empty() {
        return Err(KubeError::Pem {
            what,
            detail: "no CERTIFICATE block in PEM".into(),
        });
    }
    Ok(certs)
}

fn private_key(pem: &[u8]) -> Result<ureq::tls::PrivateKey<'static>, KubeError> {
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::PrivateKey(k)) => return Ok(k),
            Ok(_) => {}
            Err(e) => {
                return Err(KubeError::Pem {
                    what: "client key",
                    detail: e.to_string(),
                });
            }
        }
    }
    Err(KubeError::Pem {
        what: "client key",
        detail: "no PRIVATE KEY block in PEM".into(),
    })
}
