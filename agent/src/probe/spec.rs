//! What a probe asks for: the kind (liveness, readiness, startup), the timing fields and the
//! handler, as plain values already defaulted the way the API server defaults a `v1.Probe`.
//!
//! The manifest layer converts `k8s_openapi`'s `Probe` into these types; the probe engine never
//! sees the Kubernetes schema, which keeps it testable with literals.

use std::fmt;
use std::time::Duration;

/// Which of a container's three probes this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// `livenessProbe`: a failure restarts the container.
    Liveness,
    /// `readinessProbe`: drives the container's `ready` and the pod's `Ready` condition.
    Readiness,
    /// `startupProbe`: gates the other two until it succeeds once; a failure restarts.
    Startup,
}

impl ProbeKind {
    /// All kinds, in the order the kubelet lists them.
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Readiness,
        ProbeKind::Liveness,
        ProbeKind::Startup,
    ];
}

impl fmt::Display for ProbeKind {
    /// Capitalised as in the kubelet's event messages ("Liveness probe failed: ...").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        })
    }
}

/// A `v1.Probe` after API defaulting (period 10 s, timeout 1 s, thresholds 1 and 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// How to probe.
    pub handler: Handler,
    /// `initialDelaySeconds`: no probe until the container has run this long.
    pub initial_delay_seconds: u32,
    /// `periodSeconds` (at least 1).
    pub period_seconds: u32,
    /// `timeoutSeconds` (at least 1).
    pub timeout_seconds: u32,
    /// `successThreshold`: consecutive successes to flip to Success (always 1 for liveness and startup).
    pub success_threshold: u32,
    /// `failureThreshold`: consecutive failures to flip to Failure.
    pub failure_threshold: u32,
    /// Probe-level `terminationGracePeriodSeconds`, used when a liveness or startup failure kills
    /// the container (it overrides the pod's).
    pub termination_grace_period_seconds: Option<i64>,
}

impl ProbeSpec {
    /// A probe with the API server's defaults for every timing field.
    pub fn with_defaults(handler: Handler) -> ProbeSpec {
        ProbeSpec {
            handler,
            initial_delay_seconds: 0,
            period_seconds: 10,
            timeout_seconds: 1,
            success_threshold: 1,
            failure_threshold: 3,
            termination_grace_period_seconds: None,
        }
    }

    /// The period as a duration; a zero period (invalid, rejected by validation) counts as 1 s.
    pub fn period(&self) -> Duration {
        Duration::from_secs(u64::from(self.period_seconds.max(1)))
    }

    /// The timeout as a duration; zero counts as 1 s, the API minimum.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.timeout_seconds.max(1)))
    }
}

/// A probe's action: exactly one of `exec`, `httpGet`, `tcpSocket`, `grpc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handler {
    /// `exec.command`, run inside the container.
    Exec {
        /// argv; not run through a shell.
        command: Vec<String>,
    },
    /// `httpGet`.
    HttpGet(HttpGetAction),
    /// `tcpSocket`.
    TcpSocket {
        /// `host`; the pod IP when absent.
        host: Option<String>,
        /// `port`, a number or a named container port.
        port: PortRef,
    },
    /// `grpc`: grpc.health.v1.Health/Check, plaintext.
    Grpc {
        /// `port` (numbers only in the API).
        port: i32,
        /// `service`, sent in the HealthCheckRequest; empty means the server's overall health.
        service: String,
    },
}

/// `httpGet` fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpGetAction {
    /// `scheme`: HTTP or HTTPS (HTTPS is not verified, as the kubelet does).
    pub scheme: Scheme,
    /// `host`; the pod IP when absent. A `Host` header overrides the header only.
    pub host: Option<String>,
    /// `port`, a number or a named container port.
    pub port: PortRef,
    /// `path`, including any query string.
    pub path: String,
    /// `httpHeaders`, in order; names may repeat.
    pub headers: Vec<(String, String)>,
}

/// `httpGet.scheme`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTPS without certificate verification.
    Https,
}

/// An IntOrString port: a number, or the name of one of the container's `ports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    /// A port number (validated to 1..=65535 when resolved).
    Number(i32),
    /// A `containerPort` name.
    Name(String),
}

/// One entry of the container's `ports`, enough to resolve named probe ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    /// `name`.
    pub name: String,
    /// `containerPort`.
    pub container_port: i32,
}

/// Why a probe port could not be resolved: a probe error (not a failure), as in the kubelet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    /// The name matches none of the container's ports and is not a number either.
    #[error("resolve probe port {0:?}: no container port has that name")]
    UnknownName(String),
    /// Outside 1..=65535.
    #[error("resolve probe port: invalid port number {0}")]
    OutOfRange(i64),
}

impl PortRef {
    /// Resolves to a port number the way the kubelet does: a name is looked up in the
    /// container's ports, then tried as a number; the result must be in 1..=65535.
    pub fn resolve(&self, ports: &[NamedPort]) -> Result<u16, PortError> {
        let number: i64 = match self {
            PortRef::Number(n) => i64::from(*n),
            PortRef::Name(name) => match ports.iter().find(|p| &p.name == name) {
                Some(p) => i64::from(p.container_port),
                None => name
                    .parse::<i64>()
                    .map_err(|_| PortError::UnknownName(name.clone()))?,
            },
        };
        u16::try_from(number)
            .ok()
            .filter(|p| *p != 0)
            .ok_or(PortError::OutOfRange(number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> Vec<NamedPort> {
        vec![NamedPort {
            name: "http".into(),
            container_port: 8080,
        }]
    }

    #[test]
    fn port_resolution_follows_the_kubelet() {
        let cases: Vec<(PortRef, Result<u16, PortError>)> = vec![
            (PortRef::Number(80), Ok(80)),
            (PortRef::Name("http".into()), Ok(8080)),
            (PortRef::Name("9090".into()), Ok(9090)),
            (
                PortRef::Name("metrics".into()),
                Err(PortError::UnknownName("metrics".into())),
            ),
            (PortRef::Number(0), Err(PortError::OutOfRange(0))),
            (PortRef::Number(70000), Err(PortError::OutOfRange(70000))),
        ];
        for (port, want) in cases {
            assert_eq!(port.resolve(&ports()), want, "{port:?}");
        }
    }

    #[test]
    fn kind_displays_as_in_kubelet_events() {
        assert_eq!(
            format!("{} probe failed", ProbeKind::Liveness),
            "Liveness probe failed"
        );
    }
}
