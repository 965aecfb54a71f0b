//! The `tcpSocket` handler: healthy when a TCP connection to host:port opens within the
//! timeout (kubelet `pkg/probe/tcp`); the connection is closed at once.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::outcome::Outcome;
use super::spec::{NamedPort, PortRef};

/// Connects to `host` (the pod IP when absent) on `port` within `timeout`.
pub fn probe(
    host: Option<&str>,
    port: &PortRef,
    pod_ip: &str,
    ports: &[NamedPort],
    timeout: Duration,
) -> Outcome {
    let port = match port.resolve(ports) {
        Ok(p) => p,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    let host = host.filter(|h| !h.is_empty()).unwrap_or(pod_ip);
    match connect(host, port, timeout) {
        Ok(_) => Outcome::Success(String::new()),
        Err(e) => Outcome::Failure(e),
    }
}

/// Opens a TCP connection to `host:port`, resolving a name and trying each address until
/// `timeout` is spent (the lookup included, see [`super::resolve`]); the error names the
/// address and keeps the OS error, like Go's `dial tcp`.
pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let deadline = Instant::now() + timeout;
    let addrs = super::resolve::resolve(host, port, deadline)?;
    let mut last = format!("dial tcp {host}:{port}: no addresses");
    for addr in addrs {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(format!("dial tcp {addr}: i/o timeout"));
        }
        match TcpStream::connect_timeout(&addr, remaining) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = format!("dial tcp {addr}: i/o timeout")
            }
            Err(e) => last = format!("dial tcp {addr}: connect: {e}"),
        }
    }
    Err(last)
}
