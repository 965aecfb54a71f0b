//! HTTP to one registry endpoint (OCI distribution API): scheme choice, authentication
//! (Basic, or Bearer tokens fetched from the `WWW-Authenticate` realm), and retries.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use ureq::Body;
use ureq::http::Response;

use super::PullOptions;
use super::auth::{Challenge, CredentialStore, Credentials, parse_challenge};
use crate::error::{Error, Result};

/// The host that serves `docker.io`'s API.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A client for one registry endpoint (the origin or a mirror), scoped to one repository.
#[derive(Debug)]
pub struct RegistryClient {
    agent: ureq::Agent,
    base: String,
    host: String,
    repository: String,
    credentials: Option<Credentials>,
    authorization: RefCell<Option<String>>,
    retries: u32,
    retry_delay: Duration,
}

impl RegistryClient {
    /// A client for `host` (as in references: `docker.io`, `localhost:5000`) and `repository`.
    pub fn new(
        host: &str,
        repository: &str,
        opts: &PullOptions,
        creds: &CredentialStore,
    ) -> Result<Self> {
        let insecure = opts.insecure_registries.iter().any(|h| h == host);
        let api_host = if host == "docker.io" {
            DOCKER_HUB_API
        } else {
            host
        };
        let scheme = if insecure { "http" } else { "https" };
        let agent = build_agent(opts)?;
        Ok(RegistryClient {
            agent,
            base: format!("{scheme}://{api_host}/v2/{repository}"),
            host: host.to_string(),
            repository: repository.to_string(),
            credentials: creds.get(host).cloned(),
            authorization: RefCell::new(None),
            retries: opts.retries,
            retry_delay: opts.retry_delay,
        })
    }

    /// The endpoint host this client talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `GET {base}/{path}` with `accept`, authenticating on a 401 challenge and retrying
    /// transient failures (transport errors, 408, 429, 5xx) with doubling delays. Returns the
    /// response of a 2xx; any other status is an [`Error::Registry`].
    pub fn get(&self, path: &str, accept: &str) -> Result<Response<Body>> {
        let url = format!("{}/{path}", self.base);
        let mut delay = self.retry_delay;
        let mut attempt = 0;
        loop {
            match self.get_once(&url, accept) {
                Err(e) if e.is_transient() && attempt < self.retries => {
                    tracing::warn!(url = %url, error = %e, attempt, "registry request failed; retrying");
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn get_once(&self, url: &str, accept: &str) -> Result<Response<Body>> {
        let resp = self.send(url, accept)?;
        if resp.status() != 401 {
            return check_status(url, resp);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
            .ok_or_else(|| Error::Registry {
                url: url.into(),
                status: 401,
                message: "unauthorized, no usable WWW-Authenticate challenge".into(),
            })?;
        let header = match challenge {
            Challenge::Basic => self
                .credentials
                .as_ref()
                .ok_or_else(|| Error::Registry {
                    url: url.into(),
                    status: 401,
                    message: format!(
                        "registry wants credentials and none are configured for {}",
                        self.host
                    ),
                })?
                .basic_header(),
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => self.fetch_token(&realm, service.as_deref(), scope.as_deref())?,
        };
        *self.authorization.borrow_mut() = Some(header);
        check_status(url, self.send(url, accept)?)
    }

    fn send(&self, url: &str, accept: &str) -> Result<Response<Body>> {
        let mut req = self.agent.get(url).header("Accept", accept);
        if let Some(auth) = self.authorization.borrow().as_deref() {
            req = req.header("Authorization", auth);
        }
        req.call().map_err(|e| Error::Http {
            url: url.into(),
            source: Box::new(e),
        })
    }

    /// Fetches a bearer token (Docker token auth spec): `GET realm?service=..&scope=..`, with
    /// Basic credentials when we have them, reading `token` or `access_token`.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String> {
        let default_scope = format!("repository:{}:pull", self.repository);
        let mut req = self
            .agent
            .get(realm)
            .query("scope", scope.unwrap_or(&default_scope));
        if let Some(s) = service {
            req = req.query("service", s);
        }
        if let Some(c) = &self.credentials {
            req = req.header("Authorization", c.basic_header());
        }
        let resp = req.call().map_err(|e| Error::Http {
            url: realm.into(),
            source: Box::new(e),
        })?;
        let mut resp = check_status(realm, resp)?;
        let body: HashMap<String, serde_json::Value> = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_json()
            .map_err(|e| Error::Http {
                url: realm.into(),
                source: Box::new(e),
            })?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                Error::format(format!("token from {realm}"), "no token or access_token")
            })?;
        Ok(format!("Bearer {token}"))
    }
}

fn check_status(url: &str, mut resp: Response<Body>) -> Result<Response<Body>> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let message = resp
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_string()
        .unwrap_or_default();
    Err(Error::Registry {
        url: url.into(),
        status,
        message: message.trim().chars().take(500).collect(),
    })
}

/// An HTTP agent trusting the configured CA bundle (or the system bundle, or Mozilla's roots).
fn build_agent(opts: &PullOptions) -> Result<ureq::Agent> {
    let mut tls = ureq::tls::TlsConfig::builder();
    let mut bundles = opts.ca_files.clone();
    let system = std::path::PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
    if system.exists() {
        bundles.push(system);
    }
    if !bundles.is_empty() {
        let mut certs = Vec::new();
        for path in &bundles {
            let pem = std::fs::read(path).map_err(|e| Error::io("read CA bundle", path, e))?;
            for item in ureq::tls::parse_pem(&pem) {
                if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                    certs.push(c);
                }
            }
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls.build())
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("podvisor/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(config.new_agent())
}
