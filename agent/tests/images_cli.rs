//! `podvisor images` end to end through the binary: import, ls, inspect, unpack, rm, prune,
//! and a refused pull. Needs root (layers with whiteouts are unpacked on import).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn require_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("PODVISOR_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        eprintln!("SKIP images_cli: needs root (PODVISOR_SKIP_PRIVILEGED=1)");
        return false;
    }
    panic!("images_cli needs root (whiteout device nodes); set PODVISOR_SKIP_PRIVILEGED=1 to skip");
}

fn podvisor(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .arg("images")
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn images_import_ls_inspect_rm_prune() {
    if !require_root() {
        return;
    }
    let scratch =
        Scratch(std::env::temp_dir().join(format!("podvisor-images-cli-{}", std::process::id())));
    let img = scratch.0.join("img");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-busybox-image");
    assert!(Command::new(script).arg(&img).status().unwrap().success());
    let root = scratch.0.join("store");

    let out = ok(podvisor(
        &root,
        &["import", img.join("busybox.tar").to_str().unwrap()],
    ));
    assert!(
        out.starts_with("imported docker.io/library/busybox:podvisor-test sha256:"),
        "{out}"
    );

    let ls: serde_json::Value =
        serde_json::from_str(&ok(podvisor(&root, &["ls", "-o", "json"]))).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 1);
    assert_eq!(ls[0]["name"], "docker.io/library/busybox:podvisor-test");
    assert_eq!(ls[0]["in_use"], false);
    let table = ok(podvisor(&root, &["ls"]));
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .contains("busybox:podvisor-test"),
        "{table}"
    );

    let inspect: serde_json::Value =
        serde_json::from_str(&ok(podvisor(&root, &["inspect", "busybox:podvisor-test"]))).unwrap();
    assert_eq!(
        inspect["config"]["config"]["Cmd"][0],
        "echo hello from busybox"
    );
    assert_eq!(inspect["config"]["config"]["StopSignal"], "SIGTERM");
    assert!(
        inspect["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["unpacked"] == true)
    );
    let dirs = ok(podvisor(&root, &["unpack", "busybox:podvisor-test"]));
    assert_eq!(dirs.lines().count(), 2);

    let bad = podvisor(&root, &["pull", "Not/A/Valid:Ref"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("parse image reference"));
    let missing = podvisor(&root, &["rm", "busybox:absent"]);
    assert!(!missing.status.success());

    ok(podvisor(&root, &["rm", "busybox:podvisor-test"]));
    let ls: serde_json::Value =
        serde_json::from_str(&ok(podvisor(&root, &["ls", "-o", "json"]))).unwrap();
    assert!(ls.as_array().unwrap().is_empty());
    assert!(ok(podvisor(&root, &["prune"])).contains("freed 0 blobs, 0 layers"));
    assert_eq!(
        std::fs::read_dir(root.join("layers/sha256"))
            .unwrap()
            .count(),
        0
    );
}
