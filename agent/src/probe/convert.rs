//! From the Pod schema (`k8s_openapi` `Container` / `Probe`) to the engine's plain values.
//! API defaults are applied here too (period 10 s, timeout 1 s, thresholds 1 and 3, path `/`,
//! scheme HTTP), so the result is the same whether or not the manifest layer defaulted first.

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::spec::{Handler, HttpGetAction, NamedPort, PortRef, ProbeKind, ProbeSpec, Scheme};
use super::state::ContainerProbes;

/// A probe the engine cannot run; permanent (the manifest's fault).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    /// Zero or several of exec/httpGet/tcpSocket/grpc.
    #[error("container {container}: {kind} probe must set exactly one handler, found {found}")]
    Handlers {
        /// Container name.
        container: String,
        /// Which probe.
        kind: ProbeKind,
        /// How many handlers were set.
        found: usize,
    },
    /// A negative or zero field where the API requires a positive one.
    #[error("container {container}: {kind} probe field {field} must be {rule}, got {value}")]
    Field {
        /// Container name.
        container: String,
        /// Which probe.
        kind: ProbeKind,
        /// The field (`periodSeconds`).
        field: &'static str,
        /// `>= 1` or `>= 0`.
        rule: &'static str,
        /// The value found.
        value: i64,
    },
    /// `httpGet.scheme` other than HTTP or HTTPS.
    #[error("container {container}: {kind} probe httpGet.scheme {scheme:?} is not HTTP or HTTPS")]
    Scheme {
        /// Container name.
        container: String,
        /// Which probe.
        kind: ProbeKind,
        /// The scheme found.
        scheme: String,
    },
}

/// The container's named ports, for resolving named probe ports.
pub fn named_ports(c: &Container) -> Vec<NamedPort> {
    c.ports
        .iter()
        .flatten()
        .filter_map(|p| {
            p.name.as_ref().map(|n| NamedPort {
                name: n.clone(),
                container_port: p.container_port,
            })
        })
        .collect()
}

/// The state machine for container `c` of a pod with `terminationGracePeriodSeconds` =
/// `pod_grace_seconds` (30 when the pod leaves it unset).
pub fn container_probes(
    c: &Container,
    pod_grace_seconds: i64,
) -> Result<ContainerProbes, ConvertError> {
    let convert =
        |kind, p: &Option<Probe>| p.as_ref().map(|p| probe_spec(&c.name, kind, p)).transpose();
    Ok(ContainerProbes::new(
        &c.name,
        pod_grace_seconds,
        convert(ProbeKind::Liveness, &c.liveness_probe)?,
        convert(ProbeKind::Readiness, &c.readiness_probe)?,
        convert(ProbeKind::Startup, &c.startup_probe)?,
    ))
}

/// One `v1.Probe` of container `container`.
pub fn probe_spec(container: &str, kind: ProbeKind, p: &Probe) -> Result<ProbeSpec, ConvertError> {
    let found = [
        p.exec.is_some(),
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.grpc.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if found != 1 {
        return Err(ConvertError::Handlers {
            container: container.to_owned(),
            kind,
            found,
        });
    }
    let field = |field: &'static str,
                 value: Option<i32>,
                 default: i32,
                 min: i32|
     -> Result<u32, ConvertError> {
        let v = value.unwrap_or(default);
        u32::try_from(v)
            .ok()
            .filter(|v| i64::from(*v) >= i64::from(min))
            .ok_or_else(|| ConvertError::Field {
                container: container.to_owned(),
                kind,
                field,
                rule: if min == 0 { ">= 0" } else { ">= 1" },
                value: i64::from(v),
            })
    };
    let port = |p: &IntOrString| match p {
        IntOrString::Int(n) => PortRef::Number(*n),
        IntOrString::String(s) => PortRef::Name(s.clone()),
    };
    let handler = if let Some(e) = &p.exec {
        Handler::Exec {
            command: e.command.clone().unwrap_or_default(),
        }
    } else if let Some(h) = &p.http_get {
        let scheme = match h
            .scheme
            .as_deref()
            .unwrap_or("HTTP")
            .to_ascii_uppercase()
            .as_str()
        {
            "HTTP" => Scheme::Http,
            "HTTPS" => Scheme::Https,
            other => {
                return Err(ConvertError::Scheme {
                    container: container.to_owned(),
                    kind,
                    scheme: other.to_owned(),
                });
            }
        };
        Handler::HttpGet(HttpGetAction {
            scheme,
            host: h.host.clone().filter(|s| !s.is_empty()),
            port: port(&h.port),
            path: h.path.clone().unwrap_or_else(|| "/".to_owned()),
            headers: h
                .http_headers
                .iter()
                .flatten()
                .map(|x| (x.name.clone(), x.value.clone()))
                .collect(),
        })
    } else if let Some(t) = &p.tcp_socket {
        Handler::TcpSocket {
            host: t.host.clone().filter(|s| !s.is_empty()),
            port: port(&t.port),
        }
    } else if let Some(g) = &p.grpc {
        Handler::Grpc {
            port: g.port,
            service: g.service.clone().unwrap_or_default(),
        }
    } else {
        return Err(ConvertError::Handlers {
            container: container.to_owned(),
            kind,
            found: 0,
        });
    };
    Ok(ProbeSpec {
        handler,
        initial_delay_seconds: field("initialDelaySeconds", p.initial_delay_seconds, 0, 0)?,
        period_seconds: field("periodSeconds", p.period_seconds, 10, 1)?,
        timeout_seconds: field("timeoutSeconds", p.timeout_seconds, 1, 1)?,
        success_threshold: field("successThreshold", p.success_threshold, 1, 1)?,
        failure_threshold: field("failureThreshold", p.failure_threshold, 3, 1)?,
        termination_grace_period_seconds: p.termination_grace_period_seconds,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerPort, GRPCAction, HTTPGetAction, HTTPHeader, TCPSocketAction,
    };

    use super::*;

    fn container() -> Container {
        Container {
            name: "etcd".into(),
            ports: Some(vec![ContainerPort {
                name: Some("metrics".into()),
                container_port: 2381,
                ..Default::default()
            }]),
            liveness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    host: Some("127.0.0.1".into()),
                    path: Some("/livez".into()),
                    port: IntOrString::String("metrics".into()),
                    scheme: Some("HTTP".into()),
                    http_headers: Some(vec![HTTPHeader {
                        name: "X-A".into(),
                        value: "b".into(),
                    }]),
                }),
                failure_threshold: Some(8),
                initial_delay_seconds: Some(10),
                period_seconds: Some(10),
                timeout_seconds: Some(15),
                termination_grace_period_seconds: Some(5),
                ..Default::default()
            }),
            startup_probe: Some(Probe {
                tcp_socket: Some(TCPSocketAction {
                    host: None,
                    port: IntOrString::Int(2379),
                }),
                ..Default::default()
            }),
            readiness_probe: Some(Probe {
                grpc: Some(GRPCAction {
                    port: 2379,
                    service: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn kubeadm_style_probes_convert_with_defaults() {
        let c = container();
        let live = probe_spec(
            "etcd",
            ProbeKind::Liveness,
            c.liveness_probe.as_ref().expect("liveness"),
        )
        .expect("convert");
        assert_eq!(
            live,
            ProbeSpec {
                handler: Handler::HttpGet(HttpGetAction {
                    scheme: Scheme::Http,
                    host: Some("127.0.0.1".into()),
                    port: PortRef::Name("metrics".into()),
                    path: "/livez".into(),
                    headers: vec![("X-A".into(), "b".into())],
                }),
                initial_delay_seconds: 10,
                period_seconds: 10,
                timeout_seconds: 15,
                success_threshold: 1,
                failure_threshold: 8,
                termination_grace_period_seconds: Some(5),
            }
        );
        let startup = probe_spec(
            "etcd",
            ProbeKind::Startup,
            c.startup_probe.as_ref().expect("startup"),
        )
        .expect("convert");
        assert_eq!(
            (
                startup.period_seconds,
                startup.timeout_seconds,
                startup.failure_threshold
            ),
            (10, 1, 3)
        );
        assert_eq!(
            named_ports(&c),
            vec![NamedPort {
                name: "metrics".into(),
                container_port: 2381
            }]
        );
        let probes = container_probes(&c, 30).expect("container probes");
        assert!(probes.spec(ProbeKind::Readiness).is_some_and(|s| s.handler
            == Handler::Grpc {
                port: 2379,
                service: String::new()
            }));
    }

    #[test]
    fn invalid_probes_are_rejected_with_the_field() {
        let none = Probe::default();
        assert!(matches!(
            probe_spec("c", ProbeKind::Liveness, &none),
            Err(ConvertError::Handlers { found: 0, .. })
        ));
        let zero_period = Probe {
            period_seconds: Some(0),
            ..container().startup_probe.expect("startup")
        };
        let err = probe_spec("c", ProbeKind::Startup, &zero_period).expect_err("period 0");
        assert_eq!(
            err.to_string(),
            "container c: Startup probe field periodSeconds must be >= 1, got 0"
        );
    }
}
