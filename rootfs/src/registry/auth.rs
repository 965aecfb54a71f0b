//! Registry authentication data: `WWW-Authenticate` challenges and docker-style
//! `config.json` credentials. Pure parsing; the HTTP exchange is in `client`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::{Error, Result};

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="..."`: send the credentials on every request.
    Basic,
    /// `Bearer realm="...",service="...",scope="..."`: fetch a token from `realm`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter, if given.
        service: Option<String>,
        /// `scope` parameter, if given.
        scope: Option<String>,
    },
}

/// Parses the value of a `WWW-Authenticate` header (RFC 7235 auth-params, quoted or not).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &q[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// A username and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The `Authorization: Basic ...` header value.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            B64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Credentials from a docker-style `config.json` (`auths` with `auth` = base64 `user:pass`,
/// or `username`/`password`). Credential helpers (`credsStore`, `credHelpers`) are not run.
#[derive(Debug, Clone, Default)]
pub struct CredentialStore {
    entries: BTreeMap<String, Credentials>,
}

impl CredentialStore {
    /// The default search order: `/var/lib/podvisor/config.json`, then `~/.docker/config.json`.
    pub fn default_paths() -> Vec<PathBuf> {
        let mut v = vec![PathBuf::from("/var/lib/podvisor/config.json")];
        if let Some(home) = std::env::var_os("HOME") {
            v.push(Path::new(&home).join(".docker/config.json"));
        }
        v
    }

    /// Loads the first of `paths` that exists; none existing gives an empty store.
    pub fn load_first(paths: &[PathBuf]) -> Result<Self> {
        for p in paths {
            match std::fs::read(p) {
                Ok(bytes) => {
                    return Self::parse(&bytes)
                        .map_err(|e| Error::format(p.display().to_string(), e));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read registry credentials", p, e)),
            }
        }
        Ok(Self::default())
    }

    /// Parses a `config.json` document.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let cfg: DockerConfig = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut entries = BTreeMap::new();
        for (key, e) in cfg.auths {
            let creds = match (e.auth, e.username, e.password) {
                (Some(a), _, _) if !a.is_empty() => {
                    let raw = B64
                        .decode(a.trim())
                        .map_err(|err| format!("auths.{key}.auth: {err}"))?;
                    let text = String::from_utf8(raw)
                        .map_err(|_| format!("auths.{key}.auth: not UTF-8"))?;
                    let (u, p) = text
                        .split_once(':')
                        .ok_or_else(|| format!("auths.{key}.auth: no ':'"))?;
                    Credentials {
                        username: u.into(),
                        password: p.into(),
                    }
                }
                (_, Some(u), Some(p)) => Credentials {
                    username: u,
                    password: p,
                },
                _ => continue,
            };
            entries.insert(host_of_key(&key), creds);
        }
        Ok(CredentialStore { entries })
    }

    /// Credentials for `host` (host[:port]); Docker Hub's many spellings are one registry.
    pub fn get(&self, host: &str) -> Option<&Credentials> {
        let host = canonical_host(host);
        self.entries.get(host)
    }
}

/// `https://index.docker.io/v1/` → `docker.io`, `http://h:5000/x` → `h:5000`.
fn host_of_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    canonical_host(k).to_string()
}

fn canonical_host(h: &str) -> &str {
    match h {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_quoted_and_bare_params() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        let c = parse_challenge("bearer realm=https://r/token, service=svc");
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://r/token".into(),
                service: Some("svc".into()),
                scope: None
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn docker_config_credentials_are_found_by_host() {
        let json = br#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNzOndvcmQ="},
            "localhost:5000":{"username":"u","password":"p"},
            "empty.example":{}
        }}"#;
        let store = CredentialStore::parse(json).unwrap();
        let hub = store.get("docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "pass:word")
        );
        assert_eq!(store.get("registry-1.docker.io").unwrap().username, "user");
        assert_eq!(
            store.get("localhost:5000").unwrap().basic_header(),
            "Basic dTpw"
        );
        assert!(store.get("empty.example").is_none());
        assert!(store.get("quay.io").is_none());
        assert!(!format!("{hub:?}").contains("pass:word"));
        assert!(CredentialStore::parse(br#"{"auths":{"h":{"auth":"!!"}}}"#).is_err());
    }
}
