//! Test servers for the probe handler tests: a tiny HTTP/1.1 server on loopback built on
//! `std::net::TcpListener`, which records every request it receives.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How the server answers one request path.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }
    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply {
            headers: vec![("Location".into(), location.into())],
            ..Reply::status(status, "")
        }
    }
}

/// A running test HTTP server.
pub struct HttpServer {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl HttpServer {
    /// Starts a server on 127.0.0.1 answering with `route(path)`.
    pub fn start(route: impl Fn(&str) -> Reply + Send + Sync + 'static) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test http server");
        let port = listener.local_addr().expect("local addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let route = Arc::new(route);
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let seen = seen.clone();
                let route = route.clone();
                thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    seen.lock().expect("lock").push(head);
                    let reply = route(&path);
                    thread::sleep(reply.delay);
                    let mut out = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    for (k, v) in &reply.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    let _ = conn.write_all(out.as_bytes());
                    let _ = conn.write_all(&reply.body);
                });
            }
        });
        HttpServer { port, requests }
    }

    /// Requests seen so far, lower-cased head text.
    pub fn seen(&self) -> Vec<String> {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .map(|r| r.to_ascii_lowercase())
            .collect()
    }
}

/// A loopback port that refuses connections for as long as the returned socket lives: bound
/// but not listening, so no other test's server can take it meanwhile (a port found free and
/// released could be bound again by a concurrent test, whose server then answered).
pub fn refusing_port() -> (rustix::fd::OwnedFd, u16) {
    use rustix::net::{AddressFamily, SocketType, bind, getsockname, socket};
    let sock = socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    bind(
        &sock,
        &std::net::SocketAddrV4::new([127, 0, 0, 1].into(), 0),
    )
    .expect("bind");
    let addr = std::net::SocketAddrV4::try_from(getsockname(&sock).expect("getsockname"))
        .expect("an IPv4 address");
    (sock, addr.port())
}
