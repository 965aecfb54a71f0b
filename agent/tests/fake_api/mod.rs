//! A fake Kubernetes API server on loopback for the mirror tests: HTTP/1.1 over TLS with a
//! test CA, client-certificate (or bearer token) authentication mapped to node identities, and
//! the Node authorizer / NodeRestriction rules of `api.rs`. Test controls: take it down and
//! back, blackhole it, revoke a certificate, delete or edit pods as an admin would.
#![allow(dead_code, clippy::unwrap_used)]

pub mod api;
pub mod certs;
pub mod http;

use std::collections::HashMap;
use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use serde_json::{Value, json};

use api::{Reply, Store};
use certs::TestPki;

#[derive(Default)]
struct Auth {
    /// certificate DER → (node name, label for tests)
    certs: HashMap<Vec<u8>, (String, String)>,
    tokens: HashMap<String, String>,
}

pub struct FakeApi {
    pub addr: SocketAddr,
    pub store: Arc<Mutex<Store>>,
    down: Arc<AtomicBool>,
    blackhole: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    auth: Arc<Mutex<Auth>>,
    /// The credential label of every authenticated request, in order.
    pub used: Arc<Mutex<Vec<String>>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl FakeApi {
    pub fn start(pki: &TestPki) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&pki.ca_crt).unwrap())
            .unwrap();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .unwrap();
        let (crt, key) = pki.server();
        let chain = vec![CertificateDer::from_pem_file(&crt).unwrap()];
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let config = Arc::new(
            ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let fake = Self {
            addr: listener.local_addr().unwrap(),
            store: Arc::new(Mutex::new(Store {
                uid_seed: nanos() & 0xffff_ffff,
                ..Store::default()
            })),
            down: Arc::default(),
            blackhole: Arc::default(),
            stop: Arc::default(),
            auth: Arc::default(),
            used: Arc::default(),
            conns: Arc::default(),
        };
        let ctx = Ctx {
            config,
            store: Arc::clone(&fake.store),
            down: Arc::clone(&fake.down),
            blackhole: Arc::clone(&fake.blackhole),
            stop: Arc::clone(&fake.stop),
            auth: Arc::clone(&fake.auth),
            used: Arc::clone(&fake.used),
            conns: Arc::clone(&fake.conns),
        };
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                if ctx.stop.load(Ordering::SeqCst) {
                    return;
                }
                if ctx.down.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                if let Ok(clone) = stream.try_clone() {
                    ctx.conns.lock().unwrap().push(clone);
                }
                let ctx = ctx.clone();
                std::thread::spawn(move || serve(&ctx, stream));
            }
        });
        fake
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn allow_cert(&self, der: Vec<u8>, node: &str, label: &str) {
        self.auth
            .lock()
            .unwrap()
            .certs
            .insert(der, (node.into(), label.into()));
    }

    pub fn revoke_cert(&self, der: &[u8]) {
        self.auth.lock().unwrap().certs.remove(der);
    }

    pub fn allow_token(&self, token: &str, node: &str) {
        self.auth
            .lock()
            .unwrap()
            .tokens
            .insert(token.into(), node.into());
    }

    /// Refuse every connection (and cut the open ones) until set back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Accept connections but never answer.
    pub fn set_blackhole(&self, on: bool) {
        self.blackhole.store(on, Ordering::SeqCst);
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.store.lock().unwrap())
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<Value> {
        self.with(|s| s.pods.get(&(ns.to_owned(), name.to_owned())).cloned())
    }

    pub fn violations(&self) -> Vec<String> {
        self.with(|s| s.violations.clone())
    }

    /// `kubectl delete pod --grace-period=0 --force`.
    pub fn admin_delete_now(&self, ns: &str, name: &str) {
        self.with(|s| {
            if let Some(mut p) = s.pods.remove(&(ns.to_owned(), name.to_owned())) {
                s.rv += 1;
                p["metadata"]["resourceVersion"] = json!(s.rv.to_string());
                s.broadcast("DELETED", &p);
            }
        });
    }

    /// `kubectl delete pod` (graceful: deletionTimestamp set, the node finishes it).
    pub fn admin_delete_graceful(&self, ns: &str, name: &str) {
        self.admin_edit(ns, name, |p| {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:30Z");
            p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        });
    }

    /// An admin edits the pod object (e.g. its image).
    pub fn admin_edit(&self, ns: &str, name: &str, f: impl FnOnce(&mut Value)) {
        self.with(|s| {
            s.rv += 1;
            let rv = s.rv;
            if let Some(p) = s.pods.get_mut(&(ns.to_owned(), name.to_owned())) {
                f(p);
                p["metadata"]["resourceVersion"] = json!(rv.to_string());
                let p = p.clone();
                s.broadcast("MODIFIED", &p);
            }
        });
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.set_down(true);
        let _ = TcpStream::connect(self.addr);
    }
}

#[derive(Clone)]
struct Ctx {
    config: Arc<ServerConfig>,
    store: Arc<Mutex<Store>>,
    down: Arc<AtomicBool>,
    blackhole: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    auth: Arc<Mutex<Auth>>,
    used: Arc<Mutex<Vec<String>>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Ctx {
    fn cut(&self) -> bool {
        self.down.load(Ordering::SeqCst) || self.stop.load(Ordering::SeqCst)
    }
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn serve(ctx: &Ctx, tcp: TcpStream) {
    let Ok(conn) = ServerConnection::new(Arc::clone(&ctx.config)) else {
        return;
    };
    let mut reader = BufReader::new(StreamOwned::new(conn, tcp));
    loop {
        while ctx.blackhole.load(Ordering::SeqCst) && !ctx.cut() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let Ok(Some(req)) = http::read_request(&mut reader) else {
            return;
        };
        if ctx.cut() {
            return;
        }
        let who = identify(
            ctx,
            reader.get_ref().conn.peer_certificates(),
            req.header("authorization"),
        );
        let Some(who) = who else {
            let reply = api::status(401, "Unauthorized", "Unauthorized");
            if let Reply::Json(code, body) = reply {
                let _ = http::write_response(reader.get_mut(), code, body.to_string().as_bytes());
            }
            continue;
        };
        let reply = ctx.store.lock().unwrap().handle(&who, &req);
        match reply {
            Reply::Json(code, body) => {
                if http::write_response(reader.get_mut(), code, body.to_string().as_bytes())
                    .is_err()
                {
                    return;
                }
            }
            Reply::Watch {
                node,
                from_rv,
                timeout_secs,
            } => {
                watch(ctx, reader.get_mut(), &node, from_rv, timeout_secs);
                return;
            }
        }
    }
}

fn identify(
    ctx: &Ctx,
    certs: Option<&[CertificateDer<'_>]>,
    authz: Option<&str>,
) -> Option<String> {
    let auth = ctx.auth.lock().unwrap();
    let (node, label) = match (
        certs.and_then(|c| c.first()),
        authz.and_then(|a| a.strip_prefix("Bearer ")),
    ) {
        (Some(der), _) => auth.certs.get(der.as_ref()).cloned()?,
        (None, Some(token)) => (auth.tokens.get(token).cloned()?, "token".to_owned()),
        (None, None) => return None,
    };
    ctx.used.lock().unwrap().push(label);
    Some(node)
}

fn watch(
    ctx: &Ctx,
    w: &mut StreamOwned<ServerConnection, TcpStream>,
    node: &str,
    from_rv: u64,
    timeout_secs: u64,
) {
    let (tx, rx) = mpsc::channel::<String>();
    {
        let mut store = ctx.store.lock().unwrap();
        for (rv, n, line) in &store.log {
            if *rv > from_rv && n == node {
                let _ = tx.send(line.clone());
            }
        }
        store.watchers.push((node.to_owned(), tx));
    }
    if http::start_chunked(w).is_err() {
        return;
    }
    let end = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        if ctx.cut() {
            return; // no terminating chunk: the client sees a broken stream
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                if http::write_chunk(w, format!("{line}\n").as_bytes()).is_err() {
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < end => {}
            Err(_) => {
                let _ = http::write_chunk(w, b"");
                return;
            }
        }
    }
}
