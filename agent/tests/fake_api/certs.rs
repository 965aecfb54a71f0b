//! Test PKI made with the openssl CLI: a CA, a server certificate for 127.0.0.1 and client
//! certificates for node identities (`O=system:nodes, CN=system:node:<name>`), each written
//! as one PEM holding certificate and key, the way kubeadm writes `kubelet-client-current.pem`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and the files it signed, in a temporary directory.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_crt: PathBuf,
    ca_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=fake-kubernetes-ca",
            ],
        );
        Self {
            ca_crt: dir.path().join("ca.crt"),
            ca_key: dir.path().join("ca.key"),
            dir,
        }
    }

    /// Sign a leaf; returns (certificate path, key path).
    fn leaf(&self, name: &str, subject: &str, ext: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.path();
        std::fs::write(d.join(format!("{name}.ext")), ext).expect("write ext");
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                subject,
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                self.ca_crt.to_str().expect("utf8"),
                "-CAkey",
                self.ca_key.to_str().expect("utf8"),
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.crt"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
        (d.join(format!("{name}.crt")), d.join(format!("{name}.key")))
    }

    /// The API server's certificate (SAN 127.0.0.1 and localhost).
    pub fn server(&self) -> (PathBuf, PathBuf) {
        self.leaf(
            "apiserver",
            "/CN=kube-apiserver",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
    }

    /// A node client certificate + key in one PEM file named `<file>`; returns its path and
    /// the certificate's DER (the fake server's identity key).
    pub fn node_client(&self, node: &str, file: &str) -> (PathBuf, Vec<u8>) {
        let (crt, key) = self.leaf(
            file,
            &format!("/O=system:nodes/CN=system:node:{node}"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        );
        let crt_pem = std::fs::read(&crt).expect("read crt");
        let mut pem = crt_pem.clone();
        pem.extend(std::fs::read(&key).expect("read key"));
        let path = self.dir.path().join(format!("{file}.pem"));
        std::fs::write(&path, pem).expect("write pem");
        (path, der_of(&crt_pem))
    }
}

/// The DER of the first certificate in a PEM.
pub fn der_of(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem)
        .expect("certificate PEM")
        .to_vec()
}
