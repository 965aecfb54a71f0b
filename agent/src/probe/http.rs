//! The `httpGet` handler, as the kubelet's HTTP prober does it (`pkg/probe/http`): GET with
//! `User-Agent: kube-probe/<major.minor>` and `Accept: */*` unless the probe sets them, a `Host`
//! header overriding only the header, HTTPS without certificate verification, no keep-alive,
//! redirects followed only while they stay on the same host name (at most 10), 200–399 healthy,
//! a 3xx that is not followed healthy with a warning, and at most 10 KiB of body read.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ureq::Agent;
use ureq::config::AutoHeaderValue;
use ureq::http::Uri;
use ureq::tls::TlsConfig;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::outcome::Outcome;
use super::spec::{HttpGetAction, NamedPort, Scheme};

/// Bytes of response body the kubelet reads (`maxRespBodyLength`).
pub const MAX_BODY_BYTES: u64 = 10 * 1024;
/// Redirects followed before the probe fails, as Go's default client.
pub const MAX_REDIRECTS: usize = 10;

/// An HTTP(S) prober; cheap to share between worker threads (it pools no connections, so a
/// socket opened in one network namespace is never reused for another).
#[derive(Debug, Clone)]
pub struct HttpProber {
    agent: Agent,
}

/// `kube-probe/<version>`, the kubelet's User-Agent for `k8s_minor` such as `"1.34"`.
pub fn user_agent(k8s_minor: &str) -> String {
    format!("kube-probe/{k8s_minor}")
}

impl HttpProber {
    /// A prober sending `User-Agent: kube-probe/<k8s_minor>` by default.
    pub fn new(k8s_minor: &str) -> HttpProber {
        let tls = TlsConfig::builder().disable_verification(true).build();
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .user_agent(AutoHeaderValue::Provided(user_agent(k8s_minor).into()))
            .accept_encoding(AutoHeaderValue::None)
            .tls_config(tls)
            // ureq's 128 KiB buffers are zeroed per connection, and probes open one per run;
            // 32 KiB holds any sane health response head (the body is capped at 10 KiB).
            .input_buffer_size(32 * 1024)
            .output_buffer_size(8 * 1024)
            .max_response_header_size(32 * 1024)
            .build();
        let agent = Agent::with_parts(config, DefaultConnector::new(), LiteralResolver::default());
        HttpProber { agent }
    }

    /// Runs one probe against `action` for a container whose pod IP is `pod_ip` and whose
    /// ports are `ports`, within `timeout` for the whole redirect chain.
    pub fn probe(
        &self,
        action: &HttpGetAction,
        pod_ip: &str,
        ports: &[NamedPort],
        timeout: Duration,
    ) -> Outcome {
        let port = match action.port.resolve(ports) {
            Ok(p) => p,
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let host = action
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or(pod_ip);
        let url = probe_url(action.scheme, host, port, &action.path);
        self.get_following(&url, action, Instant::now() + timeout)
    }

    fn get_following(&self, first: &str, action: &HttpGetAction, deadline: Instant) -> Outcome {
        // Only a redirect needs the first host; most probes get their answer at once.
        let mut first_host: Option<String> = None;
        let mut url = first.to_owned();
        for hop in 0..=MAX_REDIRECTS {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Outcome::Failure(format!(
                    "Get {first:?}: context deadline exceeded (Client.Timeout exceeded)"
                ));
            }
            let mut req = self.agent.get(&url);
            for (name, value) in &action.headers {
                req = req.header(name.as_str(), value.as_str());
            }
            let resp = req.config().timeout_global(Some(remaining)).build().call();
            let mut resp = match resp {
                Ok(r) => r,
                // A URL that cannot be built is a prober error (the kubelet's Unknown), not
                // a failure of the container.
                Err(e @ (ureq::Error::BadUri(_) | ureq::Error::Http(_))) => {
                    return Outcome::Error(format!("parse probe url {url:?}: {e}"));
                }
                Err(e) => return Outcome::Failure(format!("Get {url:?}: {e}")),
            };
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .filter(|_| matches!(status, 301 | 302 | 303 | 307 | 308))
                .map(|loc| resolve_location(&url, loc));
            if let Some(next) = location {
                if first_host.is_none() {
                    match host_of(first) {
                        Ok(h) => first_host = Some(h),
                        Err(e) => return Outcome::Error(e),
                    }
                }
                let same_host = host_of(&next).is_ok_and(|h| Some(h) == first_host);
                if same_host {
                    if hop == MAX_REDIRECTS {
                        return Outcome::Failure(format!(
                            "Get {next:?}: stopped after 10 redirects"
                        ));
                    }
                    url = next;
                    continue;
                }
            }
            let body = read_capped(resp.body_mut().as_reader());
            return classify(status, body);
        }
        Outcome::Failure(format!("Get {url:?}: stopped after 10 redirects"))
    }
}

/// Resolves IP-literal hosts (the usual probe target: the pod IP) without a thread; ureq's
/// default resolver spawns one thread per request to time out DNS lookups, which is most of
/// a probe's CPU cost at hundreds of probes a second. Names still go through it.
#[derive(Debug, Default)]
struct LiteralResolver {
    names: DefaultResolver,
}

impl Resolver for LiteralResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let ip = uri.host().and_then(|h| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok()
        });
        let default_port = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        match ip {
            Some(ip) => {
                let mut addrs = self.empty();
                addrs.push(SocketAddr::new(ip, uri.port_u16().unwrap_or(default_port)));
                Ok(addrs)
            }
            None => self.names.resolve(uri, config, timeout),
        }
    }
}

/// The kubelet's verdict on a final response.
fn classify(status: u16, body: String) -> Outcome {
    match status {
        200..=299 => Outcome::Success(body),
        300..=399 => Outcome::Warning(format!("Probe terminated redirects, Response body: {body}")),
        _ => Outcome::Failure(format!("HTTP probe failed with statuscode: {status}")),
    }
}

/// Reads at most [`MAX_BODY_BYTES`]; a read error after the headers only shortens the body
/// (the status code alone decides the result).
fn read_capped(reader: impl Read) -> String {
    let mut buf = Vec::new();
    let _ = reader.take(MAX_BODY_BYTES).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// `scheme://host:port/path`, bracketing IPv6 literals and adding a leading `/` to the path.
pub fn probe_url(scheme: Scheme, host: &str, port: u16, path: &str) -> String {
    let scheme = match scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let slash = if path.starts_with('/') { "" } else { "/" };
    format!("{scheme}://{host}:{port}{slash}{path}")
}

/// The host name of an absolute URL (no port), lower-cased, as Go's `URL.Hostname()`.
fn host_of(url: &str) -> Result<String, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("parse probe url {url:?}: {e}"))?;
    uri.host()
        .map(|h| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase()
        })
        .ok_or_else(|| format!("parse probe url {url:?}: no host"))
}

/// Resolves a `Location` header against the URL that returned it (RFC 3986 §5.2, the forms
/// servers send: absolute, scheme-relative, absolute-path, relative-path).
pub fn resolve_location(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    if let Some(authority_path) = location.strip_prefix("//") {
        return format!("{scheme}://{authority_path}");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = &rest[authority.len()..];
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
    format!("{scheme}://{authority}{dir}{location}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_like_the_kubelet() {
        assert_eq!(
            probe_url(Scheme::Http, "10.0.0.5", 8080, "/healthz"),
            "http://10.0.0.5:8080/healthz"
        );
        assert_eq!(
            probe_url(Scheme::Https, "::1", 6443, "livez?verbose"),
            "https://[::1]:6443/livez?verbose"
        );
        assert_eq!(probe_url(Scheme::Http, "h", 1, ""), "http://h:1/");
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let base = "http://127.0.0.1:80/a/b?x=1";
        let table = [
            ("http://other:9/z", "http://other:9/z"),
            ("//other/z", "http://other/z"),
            ("/z", "http://127.0.0.1:80/z"),
            ("z", "http://127.0.0.1:80/a/z"),
        ];
        for (loc, want) in table {
            assert_eq!(resolve_location(base, loc), want, "{loc}");
        }
    }

    #[test]
    fn status_codes_map_to_outcomes() {
        assert_eq!(classify(204, "ok".into()), Outcome::Success("ok".into()));
        assert!(matches!(classify(302, String::new()), Outcome::Warning(_)));
        assert_eq!(
            classify(500, String::new()),
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        assert!(matches!(classify(199, String::new()), Outcome::Failure(_)));
    }
}
