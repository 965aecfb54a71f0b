//! Helpers shared by the rootfs integration tests: privilege gate, the test image, tree
//! snapshots and command running.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// True when the test may run privileged steps. Not root: panics, unless
/// PODVISOR_SKIP_PRIVILEGED=1, in which case it prints why and returns false.
pub fn require_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("PODVISOR_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        eprintln!("SKIP {test}: needs root (PODVISOR_SKIP_PRIVILEGED=1)");
        return false;
    }
    panic!(
        "{test} needs root (overlayfs, whiteout device nodes, chown); set PODVISOR_SKIP_PRIVILEGED=1 to skip"
    );
}

/// Runs a command, panicking with its output if it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The image built by scripts/build-busybox-image.
#[derive(Debug)]
pub struct TestImage {
    /// OCI layout directory.
    pub layout: PathBuf,
    /// docker-archive file.
    pub archive: PathBuf,
    /// The name in the layout's index.
    pub name: String,
    /// Manifest digest in the layout.
    pub manifest: String,
    /// Config digest.
    pub config: String,
}

pub const TEST_NAME: &str = "busybox:podvisor-test";
pub const TEST_REF: &str = "docker.io/library/busybox:podvisor-test";

/// Builds the test image into `dir`.
pub fn build_image(dir: &Path) -> TestImage {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-busybox-image");
    run(Command::new(script).arg(dir).arg(TEST_NAME));
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("oci/index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let m: serde_json::Value = serde_json::from_slice(
        &fs::read(dir.join("oci/blobs/sha256").join(&manifest[7..])).unwrap(),
    )
    .unwrap();
    TestImage {
        layout: dir.join("oci"),
        archive: dir.join("busybox.tar"),
        name: TEST_NAME.into(),
        manifest,
        config: m["config"]["digest"].as_str().unwrap().to_string(),
    }
}

/// The manifest digest `index.json` of an OCI layout gives for `name`.
pub fn layout_digest(layout: &Path, name: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {}", layout.display()))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A description of every entry under `root` (type, mode, owner, size, content hash, link
/// target, device, file mtime), keyed by relative path. Directory mtimes are left out: they
/// change with every entry created inside, differently in each tool.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let m = fs::symlink_metadata(&path).unwrap();
        let ft = m.file_type();
        let common = format!(
            "mode={:o} uid={} gid={}",
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        );
        let desc = if ft.is_dir() {
            walk(root, &path, out);
            format!("dir {common}")
        } else if ft.is_symlink() {
            format!("symlink -> {}", fs::read_link(&path).unwrap().display())
        } else if ft.is_file() {
            let hash = hex::encode(Sha256::digest(fs::read(&path).unwrap()));
            format!(
                "file {common} size={} mtime={} sha256={hash}",
                m.len(),
                m.mtime()
            )
        } else if ft.is_char_device() || ft.is_block_device() {
            format!("dev {common} rdev={}", m.rdev())
        } else {
            format!("other {common}")
        };
        out.insert(rel, desc);
    }
}

/// Prints the differences between two trees (for assertion messages).
pub fn tree_diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (k, v) in a {
        match b.get(k) {
            None => s += &format!("only in first: {k} {v}\n"),
            Some(w) if w != v => s += &format!("differs: {k}\n  {v}\n  {w}\n"),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            s += &format!("only in second: {k} {v}\n");
        }
    }
    s
}
