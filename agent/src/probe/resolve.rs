//! Name resolution for `tcpSocket` and `grpc` probes, bounded by the probe's deadline.
//!
//! getaddrinfo(3) cannot be cancelled and may block for the resolver's full retry schedule
//! (`timeout:5 attempts:2` per server by default), far past a 1 s probe timeout, holding one
//! of the engine's few workers. So an IP literal (the usual target: the pod IP) is used as is,
//! and a name is looked up on a short-lived helper thread that the probe waits for only until
//! its deadline; a lookup still running then is left to finish on its own (its result is
//! dropped). At most [`MAX_PENDING_LOOKUPS`] such threads exist at once, so a dead DNS server
//! cannot pile them up. This is what `httpGet` gets from ureq's resolver, which also resolves
//! names on a thread bounded by the request's timeout.
//!
//! The helper is spawned by the probe worker, so it starts in the same network namespace
//! (the pod's, for a pod without hostNetwork) and the lookup behaves as it did inline.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::Instant;

/// Lookups that may be running on helper threads at once.
pub const MAX_PENDING_LOOKUPS: usize = 16;

static PENDING: AtomicUsize = AtomicUsize::new(0);

/// A name lookup: the system's (getaddrinfo) or, in tests, a fake.
pub type Lookup = fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>;

fn system_lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// The addresses of `host:port`, or an error in Go's `dial tcp` words, by `deadline`.
pub fn resolve(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, String> {
    resolve_with(host, port, deadline, system_lookup)
}

/// [`resolve`] with the lookup given.
pub fn resolve_with(
    host: &str,
    port: u16,
    deadline: Instant,
    lookup: Lookup,
) -> Result<Vec<SocketAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(format!("dial tcp: lookup {host}: i/o timeout"));
    }
    if PENDING.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING_LOOKUPS {
        PENDING.fetch_sub(1, Ordering::AcqRel);
        return Err(format!(
            "dial tcp: lookup {host}: {MAX_PENDING_LOOKUPS} earlier lookups still pending"
        ));
    }
    let (tx, rx) = sync_channel(1);
    let name = host.to_owned();
    let spawned = std::thread::Builder::new()
        .name("probe-lookup".into())
        .spawn(move || {
            let result = lookup(&name, port);
            PENDING.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        PENDING.fetch_sub(1, Ordering::AcqRel);
        return Err(format!(
            "dial tcp: lookup {host}: start a lookup thread: {e}"
        ));
    }
    match rx.recv_timeout(remaining) {
        Ok(Ok(addrs)) if addrs.is_empty() => Err(format!("dial tcp: lookup {host}: no such host")),
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(format!("dial tcp: lookup {host}: {e}")),
        Err(RecvTimeoutError::Timeout) => Err(format!("dial tcp: lookup {host}: i/o timeout")),
        Err(RecvTimeoutError::Disconnected) => {
            Err(format!("dial tcp: lookup {host}: the lookup thread ended"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn never(_: &str, _: u16) -> std::io::Result<Vec<SocketAddr>> {
        panic!("an IP literal must not be looked up")
    }

    fn hangs(_: &str, _: u16) -> std::io::Result<Vec<SocketAddr>> {
        std::thread::sleep(Duration::from_secs(3));
        Ok(vec![SocketAddr::from(([10, 0, 0, 1], 80))])
    }

    fn fails(_: &str, _: u16) -> std::io::Result<Vec<SocketAddr>> {
        Err(std::io::Error::other(
            "failed to lookup address information",
        ))
    }

    fn finds(_: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::from(([10, 0, 0, 7], port))])
    }

    #[test]
    fn ip_literals_are_used_as_they_are() {
        let deadline = Instant::now() + Duration::from_secs(1);
        for (host, want) in [
            ("10.1.2.3", "10.1.2.3:8080"),
            ("::1", "[::1]:8080"),
            ("[fe80::1]", "[fe80::1]:8080"),
        ] {
            let got = resolve_with(host, 8080, deadline, never).unwrap();
            assert_eq!(got, vec![want.parse::<SocketAddr>().unwrap()], "{host}");
        }
    }

    #[test]
    fn a_hanging_lookup_ends_at_the_deadline() {
        let t0 = Instant::now();
        let got = resolve_with("db.example", 80, t0 + Duration::from_millis(200), hangs);
        let took = t0.elapsed();
        assert_eq!(
            got,
            Err("dial tcp: lookup db.example: i/o timeout".to_string())
        );
        assert!(took < Duration::from_secs(2), "waited {took:?}");
    }

    #[test]
    fn lookup_results_and_errors_are_passed_on() {
        let deadline = Instant::now() + Duration::from_secs(2);
        assert_eq!(
            resolve_with("db.example", 2379, deadline, finds),
            Ok(vec![SocketAddr::from(([10, 0, 0, 7], 2379))])
        );
        assert_eq!(
            resolve_with("db.example", 2379, deadline, fails),
            Err("dial tcp: lookup db.example: failed to lookup address information".to_string())
        );
        assert_eq!(
            resolve_with("db.example", 1, Instant::now(), finds),
            Err("dial tcp: lookup db.example: i/o timeout".to_string())
        );
    }
}
