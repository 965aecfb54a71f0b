//! Pulls from a real registry on loopback: Debian's `docker-registry` (CNCF distribution)
//! started here with TLS from a throwaway CA and htpasswd auth, populated with skopeo.
//! Covers pull by tag and by digest, through a mirror, with and without credentials, skipping
//! blobs already present, plain HTTP only when marked insecure, and refusal of a tampered
//! blob. Needs root (layers with whiteouts are unpacked after the pull).
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use podvisor_rootfs::{Error, Progress, PullOptions, Store};

/// A docker-registry process, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    storage: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How the test registry authenticates.
enum Auth {
    /// Plain HTTP, anonymous.
    None,
    /// HTTPS, Basic auth against `dir/htpasswd`.
    Htpasswd,
    /// HTTPS, bearer tokens from `realm`, signed by the certificate at `cert`.
    Token { realm: String, cert: PathBuf },
}

/// Starts a registry in `dir`; unless `Auth::None` it serves HTTPS with `dir/certs/server.*`.
fn start_registry(dir: &Path, auth: Auth) -> Registry {
    let port = free_port();
    let storage = dir.join("storage");
    fs::create_dir_all(&storage).unwrap();
    let mut config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
        storage.display()
    );
    let certs = dir.join("certs");
    let tls = format!(
        "  tls:\n    certificate: {c}/server.crt\n    key: {c}/server.key\n",
        c = certs.display()
    );
    match auth {
        Auth::None => {}
        Auth::Htpasswd => {
            config += &tls;
            config += &format!(
                "auth:\n  htpasswd:\n    realm: podvisor-test\n    path: {}\n",
                dir.join("htpasswd").display()
            );
        }
        Auth::Token { realm, cert } => {
            config += &tls;
            config += &format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                cert.display()
            );
        }
    }
    let cfg = dir.join("config.yml");
    fs::write(&cfg, config).unwrap();
    let log = fs::File::create(dir.join("registry.log")).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start docker-registry (apt-get install docker-registry)");
    let reg = Registry {
        child,
        port,
        storage,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "registry did not listen: {}",
            fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    reg
}

/// A CA, a server certificate for localhost/127.0.0.1 signed by it, and an htpasswd file.
fn make_tls_and_auth(dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    fs::create_dir_all(&certs).unwrap();
    let ossl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(&certs));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    ossl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=podvisor test CA",
            ],
        ]
        .concat(),
    );
    ossl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    fs::write(
        certs.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let htpasswd = run(Command::new("htpasswd").args(["-Bbn", "puller", "s3cret"]));
    fs::write(dir.join("htpasswd"), htpasswd).unwrap();
    // skopeo's --dest-cert-dir wants only the CA.
    let skopeo_certs = dir.join("skopeo-certs");
    fs::create_dir_all(&skopeo_certs).unwrap();
    fs::copy(certs.join("ca.crt"), skopeo_certs.join("ca.crt")).unwrap();
    certs.join("ca.crt")
}

/// Counts blobs fetched and skipped.
#[derive(Default)]
struct Counting {
    fetched: RefCell<Vec<String>>,
    skipped: RefCell<Vec<String>>,
    bytes: RefCell<u64>,
}

impl Progress for Counting {
    fn advance(&self, _digest: &str, n: u64) {
        *self.bytes.borrow_mut() += n;
    }
    fn done(&self, digest: &str, skipped: bool) {
        let list = if skipped {
            &self.skipped
        } else {
            &self.fetched
        };
        list.borrow_mut().push(digest.to_string());
    }
}

fn opts(ca: &Path, creds: Option<&Path>) -> PullOptions {
    PullOptions {
        ca_files: vec![ca.to_path_buf()],
        credential_files: creds.map(|c| vec![c.to_path_buf()]).unwrap_or_default(),
        retries: 1,
        retry_delay: Duration::from_millis(50),
        ..PullOptions::default()
    }
}

#[test]
fn pulls_from_a_tls_registry_with_auth_by_tag_digest_and_mirror() {
    if !require_root("pulls_from_a_tls_registry_with_auth_by_tag_digest_and_mirror") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = build_image(&tmp.path().join("img"));
    let regdir = tmp.path().join("registry");
    let ca = make_tls_and_auth(&regdir);
    let reg = start_registry(&regdir, Auth::Htpasswd);
    let host = format!("localhost:{}", reg.port);
    run(Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "-q",
            "--preserve-digests",
            "--dest-creds",
            "puller:s3cret",
        ])
        .arg(format!(
            "--dest-cert-dir={}",
            regdir.join("skopeo-certs").display()
        ))
        .arg(format!("oci:{}:{}", img.layout.display(), img.name))
        .arg(format!("docker://{host}/test/busybox:1.0")));
    let creds = tmp.path().join("config.json");
    fs::write(
        &creds,
        format!(r#"{{"auths":{{"{host}":{{"auth":"cHVsbGVyOnMzY3JldA=="}}}}}}"#),
    )
    .unwrap();

    // By tag.
    let store = Store::open(&tmp.path().join("s1")).unwrap();
    let progress = Counting::default();
    let image = store
        .pull(
            &format!("{host}/test/busybox:1.0"),
            &opts(&ca, Some(&creds)),
            &progress,
        )
        .unwrap();
    assert_eq!(image.manifest_digest, img.manifest);
    assert_eq!(image.config_digest, img.config);
    assert_eq!(progress.fetched.borrow().len(), 3, "config + 2 layers");
    assert_eq!(*progress.bytes.borrow(), image.size());
    for d in image.diff_ids() {
        assert!(store.layer_dir(d).unwrap().is_dir(), "layer {d} unpacked");
    }
    // Again: everything is already there.
    let again = Counting::default();
    store
        .pull(
            &format!("{host}/test/busybox:1.0"),
            &opts(&ca, Some(&creds)),
            &again,
        )
        .unwrap();
    assert!(again.fetched.borrow().is_empty());
    assert_eq!(again.skipped.borrow().len(), 3);

    // A Docker schema 2 manifest (skopeo converts on push): same image ID.
    let push = |src: &str, dest: &str, extra: &[&str]| {
        run(Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "-q",
                "--dest-creds",
                "puller:s3cret",
            ])
            .args(extra)
            .arg(format!(
                "--dest-cert-dir={}",
                regdir.join("skopeo-certs").display()
            ))
            .arg(src)
            .arg(format!("docker://{host}/{dest}")));
    };
    push(
        &format!("oci:{}:{}", img.layout.display(), img.name),
        "test/busybox:v2s2",
        &["--format", "v2s2"],
    );
    let v2 = store
        .pull(
            &format!("{host}/test/busybox:v2s2"),
            &opts(&ca, Some(&creds)),
            &podvisor_rootfs::NoProgress,
        )
        .unwrap();
    assert_eq!(v2.config_digest, img.config);
    assert_ne!(
        v2.manifest_digest, img.manifest,
        "schema 2 manifest is a different document"
    );

    // An image index (arm64 listed first, then amd64) resolves to this host's manifest.
    let multi = multi_arch_layout(&img, &tmp.path().join("multi"));
    push(
        &format!("oci:{}:multi", multi.display()),
        "test/busybox:multi",
        &["--all", "--preserve-digests"],
    );
    let store_m = Store::open(&tmp.path().join("sm")).unwrap();
    let m = store_m
        .pull(
            &format!("{host}/test/busybox:multi"),
            &opts(&ca, Some(&creds)),
            &podvisor_rootfs::NoProgress,
        )
        .unwrap();
    assert_eq!(m.manifest_digest, img.manifest, "linux/amd64 entry chosen");
    assert_eq!(
        store_m
            .resolve(&format!("{host}/test/busybox:multi"))
            .unwrap()
            .manifest_digest,
        img.manifest
    );

    // By digest.
    let store2 = Store::open(&tmp.path().join("s2")).unwrap();
    let by_digest = format!("{host}/test/busybox@{}", img.manifest);
    let image = store2
        .pull(
            &by_digest,
            &opts(&ca, Some(&creds)),
            &podvisor_rootfs::NoProgress,
        )
        .unwrap();
    assert_eq!(image.name, by_digest);
    assert_eq!(
        store2.resolve(&by_digest).unwrap().manifest_digest,
        img.manifest
    );
    // A digest the registry does not have is an error, not a different image.
    let missing = format!("{host}/test/busybox@sha256:{}", "0".repeat(64));
    assert!(
        store2
            .pull(
                &missing,
                &opts(&ca, Some(&creds)),
                &podvisor_rootfs::NoProgress
            )
            .is_err()
    );

    // Through a mirror: the origin does not exist, the mirror has the image.
    let store3 = Store::open(&tmp.path().join("s3")).unwrap();
    let mut o = opts(&ca, Some(&creds));
    o.mirrors = HashMap::from([("registry.invalid".to_string(), vec![host.clone()])]);
    let image = store3
        .pull(
            "registry.invalid/test/busybox:1.0",
            &o,
            &podvisor_rootfs::NoProgress,
        )
        .unwrap();
    assert_eq!(image.name, "registry.invalid/test/busybox:1.0");
    assert_eq!(image.manifest_digest, img.manifest);

    // No credentials: refused with 401, nothing recorded.
    let store4 = Store::open(&tmp.path().join("s4")).unwrap();
    let err = store4
        .pull(
            &format!("{host}/test/busybox:1.0"),
            &opts(&ca, None),
            &podvisor_rootfs::NoProgress,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Registry { status: 401, .. }), "{err}");
    assert!(store4.list().unwrap().is_empty());
    // Without the test CA the TLS handshake fails.
    let mut untrusted = opts(&ca, Some(&creds));
    untrusted.ca_files.clear();
    assert!(matches!(
        store4.pull(
            &format!("{host}/test/busybox:1.0"),
            &untrusted,
            &podvisor_rootfs::NoProgress
        ),
        Err(Error::Http { .. })
    ));

    // A tampered layer (same size, one byte changed) is refused and never stored.
    let layer_digest = image.manifest.layers()[0].digest().to_string();
    let hex = &layer_digest[7..];
    let data = reg.storage.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&data, bytes).unwrap();
    let store5 = Store::open(&tmp.path().join("s5")).unwrap();
    let err = store5
        .pull(
            &format!("{host}/test/busybox:1.0"),
            &opts(&ca, Some(&creds)),
            &podvisor_rootfs::NoProgress,
        )
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(
        !store5
            .layout()
            .has_blob(&layer_digest, image.manifest.layers()[0].size())
            .unwrap()
    );
    assert!(store5.list().unwrap().is_empty());
    let leftovers: Vec<_> = fs::read_dir(tmp.path().join("s5/images/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn plain_http_only_for_registries_marked_insecure() {
    if !require_root("plain_http_only_for_registries_marked_insecure") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = build_image(&tmp.path().join("img"));
    let reg = start_registry(&tmp.path().join("registry"), Auth::None);
    let host = format!("127.0.0.1:{}", reg.port);
    run(Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "-q",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:{}", img.layout.display(), img.name))
        .arg(format!("docker://{host}/busybox:plain")));
    let store = Store::open(&tmp.path().join("s")).unwrap();
    let mut o = PullOptions {
        credential_files: vec![],
        retries: 0,
        ..PullOptions::default()
    };
    // HTTPS to a plain-HTTP registry fails...
    assert!(
        store
            .pull(
                &format!("{host}/busybox:plain"),
                &o,
                &podvisor_rootfs::NoProgress
            )
            .is_err()
    );
    // ...and works once the registry is marked insecure.
    o.insecure_registries = vec![host.clone()];
    let image = store
        .pull(
            &format!("{host}/busybox:plain"),
            &o,
            &podvisor_rootfs::NoProgress,
        )
        .unwrap();
    assert_eq!(image.manifest_digest, img.manifest);
}

const TOKEN_SERVICE: &str = "podvisor-test-registry";
const TOKEN_ISSUER: &str = "podvisor-test-issuer";

/// A signed registry token (JWT, RS256, certificate in `x5c`) granting pull and push on
/// `test/busybox`, made with openssl so no JWT code is shared with the code under test.
fn make_token(dir: &Path) -> (String, PathBuf) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "token.key",
            "-out",
            "token.crt",
            "-days",
            "2",
            "-subj",
            "/CN=token signer",
        ])
        .current_dir(dir));
    let der = run(Command::new("sh")
        .arg("-c")
        .arg("openssl x509 -in token.crt -outform DER | base64 -w0")
        .current_dir(dir));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [der.trim()]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": "puller", "aud": TOKEN_SERVICE,
        "exp": now + 3600, "nbf": now - 60, "iat": now - 60, "jti": "podvisor-test",
        "access": [{"type": "repository", "name": "test/busybox", "actions": ["pull", "push"]}],
    });
    let input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    fs::write(dir.join("jwt-input"), &input).unwrap();
    run(Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-sign",
            "token.key",
            "-out",
            "jwt-sig",
            "jwt-input",
        ])
        .current_dir(dir));
    let sig = fs::read(dir.join("jwt-sig")).unwrap();
    (
        format!("{input}.{}", b64.encode(sig)),
        dir.join("token.crt"),
    )
}

/// A token endpoint on loopback: hands out `token` to requests carrying the Basic
/// credentials puller:s3cret, 401 to others. Records the query strings it saw.
fn start_token_server(token: String) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let realm = format!(
        "http://127.0.0.1:{}/token",
        listener.local_addr().unwrap().port()
    );
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut authorized = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if line.to_ascii_lowercase().starts_with(
                    "authorization: basic cHVsbGVyOnMzY3JldA=="
                        .to_ascii_lowercase()
                        .as_str(),
                ) {
                    authorized = true;
                }
            }
            log.lock().unwrap().push(request_line.trim().to_string());
            let (status, body) = if authorized {
                (
                    "200 OK",
                    serde_json::json!({"token": token, "access_token": token}).to_string(),
                )
            } else {
                (
                    "401 Unauthorized",
                    r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_string(),
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (realm, seen)
}

#[test]
fn pulls_with_bearer_tokens_from_the_www_authenticate_realm() {
    if !require_root("pulls_with_bearer_tokens_from_the_www_authenticate_realm") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = build_image(&tmp.path().join("img"));
    let regdir = tmp.path().join("registry");
    let ca = make_tls_and_auth(&regdir);
    let (token, cert) = make_token(&regdir);
    let (realm, seen) = start_token_server(token);
    let reg = start_registry(&regdir, Auth::Token { realm, cert });
    let host = format!("localhost:{}", reg.port);
    run(Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "-q",
            "--preserve-digests",
            "--dest-creds",
            "puller:s3cret",
        ])
        .arg(format!(
            "--dest-cert-dir={}",
            regdir.join("skopeo-certs").display()
        ))
        .arg(format!("oci:{}:{}", img.layout.display(), img.name))
        .arg(format!("docker://{host}/test/busybox:1.0")));
    seen.lock().unwrap().clear();

    let creds = tmp.path().join("config.json");
    fs::write(
        &creds,
        format!(r#"{{"auths":{{"{host}":{{"username":"puller","password":"s3cret"}}}}}}"#),
    )
    .unwrap();
    let store = Store::open(&tmp.path().join("s")).unwrap();
    let image = store
        .pull(
            &format!("{host}/test/busybox:1.0"),
            &opts(&ca, Some(&creds)),
            &podvisor_rootfs::NoProgress,
        )
        .unwrap();
    assert_eq!(image.manifest_digest, img.manifest);
    let requests = seen.lock().unwrap().clone();
    assert!(!requests.is_empty(), "no token was fetched");
    assert!(
        requests
            .iter()
            .all(|r| r.contains("scope=repository%3Atest%2Fbusybox%3Apull")
                && r.contains(&format!("service={TOKEN_SERVICE}"))),
        "{requests:?}"
    );

    // Without credentials the token endpoint refuses, and so does the pull.
    let store2 = Store::open(&tmp.path().join("s2")).unwrap();
    let err = store2
        .pull(
            &format!("{host}/test/busybox:1.0"),
            &opts(&ca, None),
            &podvisor_rootfs::NoProgress,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Registry { status: 401, .. }), "{err}");
}

/// A copy of the test image's layout whose `multi` entry is an image index listing a
/// linux/arm64/v8 manifest (same layers, arm64 config) before the real linux/amd64 one.
fn multi_arch_layout(img: &TestImage, dir: &Path) -> PathBuf {
    use sha2::Digest as _;
    run(Command::new("cp").arg("-a").arg(&img.layout).arg(dir));
    let blobs = dir.join("blobs/sha256");
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let read = |d: &str| fs::read(blobs.join(&d[7..])).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&read(&img.config)).unwrap();
    config["architecture"] = "arm64".into();
    config["variant"] = "v8".into();
    let (cfg, cfg_size) = put(config.to_string().as_bytes());
    let mut manifest: serde_json::Value = serde_json::from_slice(&read(&img.manifest)).unwrap();
    manifest["config"]["digest"] = cfg.into();
    manifest["config"]["size"] = cfg_size.into();
    let (arm, arm_size) = put(manifest.to_string().as_bytes());
    let amd_size = read(&img.manifest).len();
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": mt, "digest": arm, "size": arm_size, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": mt, "digest": img.manifest, "size": amd_size, "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    });
    let (idx, idx_size) = put(index.to_string().as_bytes());
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": idx, "size": idx_size,
        "annotations": {"org.opencontainers.image.ref.name": "multi"},
    }]});
    fs::write(dir.join("index.json"), top.to_string()).unwrap();
    dir.to_path_buf()
}
