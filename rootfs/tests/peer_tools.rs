//! Round trips with the peer tools: skopeo copies between an OCI layout, a docker-archive and
//! podvisor's store in both directions with digests preserved; umoci unpacks what podvisor
//! stored into the same tree podvisor's overlay (and copy fallback) shows. Needs root.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::process::Command;

use common::*;
use podvisor_rootfs::{Error, RootfsKind, Store};

/// `skopeo copy`; `--preserve-digests` (fail rather than rewrite a manifest) except into a
/// docker-archive, which must convert OCI manifests to Docker schema 2.
fn skopeo_copy(from: &str, to: &str) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "-q"]);
    if !to.starts_with("docker-archive:") {
        cmd.arg("--preserve-digests");
    }
    run(cmd.args([from, to]));
}

#[test]
fn skopeo_round_trips_preserve_digests() {
    if !require_root("skopeo_round_trips_preserve_digests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = build_image(&tmp.path().join("img"));

    // OCI layout -> podvisor's store (skopeo writes into the store's layout directly).
    let root_a = tmp.path().join("store-a");
    let store_a = Store::open(&root_a).unwrap();
    skopeo_copy(
        &format!("oci:{}:{}", img.layout.display(), img.name),
        &format!("oci:{}/images:{TEST_REF}", root_a.display()),
    );
    let a = store_a.resolve("busybox:podvisor-test").unwrap();
    assert_eq!(
        a.manifest_digest, img.manifest,
        "manifest digest preserved layout -> store"
    );
    assert_eq!(a.config_digest, img.config);

    // podvisor's store -> OCI layout.
    let out = tmp.path().join("out-layout");
    skopeo_copy(
        &format!("oci:{}/images:{TEST_REF}", root_a.display()),
        &format!("oci:{}:copy", out.display()),
    );
    assert_eq!(
        layout_digest(&out, "copy"),
        img.manifest,
        "manifest digest preserved store -> layout"
    );

    // docker-archive -> podvisor (import): same image ID (config digest) and layers.
    let root_b = tmp.path().join("store-b");
    let store_b = Store::open(&root_b).unwrap();
    let imported = store_b.import(&img.archive).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].name, TEST_REF);
    let b = store_b.resolve(TEST_REF).unwrap();
    assert_eq!(
        b.config_digest, img.config,
        "image ID preserved docker-archive -> store"
    );
    assert_eq!(b.diff_ids(), a.diff_ids());

    // podvisor (imported) -> docker-archive -> podvisor again: image ID still the same, and
    // skopeo reads the manifest podvisor wrote with its digest intact.
    let archive2 = tmp.path().join("again.tar");
    skopeo_copy(
        &format!("oci:{}/images:{TEST_REF}", root_b.display()),
        &format!("docker-archive:{}:busybox:again", archive2.display()),
    );
    let out_b = tmp.path().join("out-b");
    skopeo_copy(
        &format!("oci:{}/images:{TEST_REF}", root_b.display()),
        &format!("oci:{}:b", out_b.display()),
    );
    assert_eq!(layout_digest(&out_b, "b"), b.manifest_digest);
    let root_c = tmp.path().join("store-c");
    let store_c = Store::open(&root_c).unwrap();
    let again = store_c.import(&archive2).unwrap();
    assert_eq!(again[0].name, "docker.io/library/busybox:again");
    assert_eq!(
        store_c.resolve("busybox:again").unwrap().config_digest,
        img.config
    );

    // OCI archive (a gzip'd tar of the layout) -> podvisor: manifest digest preserved.
    let oci_tar = tmp.path().join("oci.tar.gz");
    run(Command::new("sh").arg("-c").arg(format!(
        "tar -C {} -cf - . | gzip > {}",
        img.layout.display(),
        oci_tar.display()
    )));
    let root_d = tmp.path().join("store-d");
    let store_d = Store::open(&root_d).unwrap();
    let d = store_d.import(&oci_tar).unwrap();
    assert_eq!(d[0].name, TEST_REF);
    assert_eq!(d[0].digest, img.manifest);
    // Importing twice is harmless and idempotent.
    store_d.import(&oci_tar).unwrap();
    assert_eq!(store_d.list().unwrap().len(), 1);
}

#[test]
fn umoci_unpack_matches_podvisor_overlay_and_copy() {
    if !require_root("umoci_unpack_matches_podvisor_overlay_and_copy") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = build_image(&tmp.path().join("img"));
    let root = tmp.path().join("store");
    let store = Store::open(&root).unwrap();
    store.import(&img.archive).unwrap();

    let bundle = tmp.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}/images:{TEST_REF}", root.display()))
        .arg(&bundle));
    let want = tree(&bundle.join("rootfs"));
    assert!(
        want.contains_key("etc/motd")
            && !want.contains_key("etc/removeme")
            && !want.contains_key("opt/old")
    );
    assert!(
        want.get("bin/sh")
            .is_some_and(|s| s == "symlink -> busybox")
    );

    let prepared = store.prepare(TEST_REF, "c1").unwrap();
    assert_eq!(prepared.kind, RootfsKind::Overlay);
    let got = tree(&prepared.path);
    assert!(
        got == want,
        "overlay differs from umoci:\n{}",
        tree_diff(&got, &want)
    );
    assert_eq!(
        prepared
            .image
            .config
            .config()
            .as_ref()
            .unwrap()
            .cmd()
            .as_ref()
            .unwrap()[0],
        "echo hello from busybox"
    );

    // A write in one container's rootfs is private to it.
    fs::write(prepared.path.join("etc/motd"), "changed").unwrap();
    let other = store.prepare(TEST_REF, "c2").unwrap();
    assert_eq!(
        fs::read_to_string(other.path.join("etc/motd")).unwrap(),
        "podvisor test image\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("containers/c1/upper/etc/motd")).unwrap(),
        "changed"
    );

    // The copy fallback gives the same tree.
    let layers = store.ensure_layers(&prepared.image).unwrap();
    let copy = tmp.path().join("copy");
    fs::create_dir(&copy).unwrap();
    podvisor_rootfs::copy_layers(&layers, &copy).unwrap();
    let copied = tree(&copy);
    assert!(
        copied == want,
        "copy fallback differs from umoci:\n{}",
        tree_diff(&copied, &want)
    );

    // In use: ls says so, rm and prune refuse/keep it; after removal of the containers it goes.
    let list = store.list().unwrap();
    assert!(list[0].in_use);
    assert!(matches!(store.remove(TEST_REF), Err(Error::InUse { .. })));
    let report = store.prune().unwrap();
    assert!(report.images.is_empty());
    assert!(store.find(TEST_REF).unwrap().is_some());
    store.remove_container("c1").unwrap();
    store.remove_container("c2").unwrap();
    assert!(!root.join("containers/c1").exists());
    let report = store.remove(TEST_REF).unwrap();
    assert_eq!(report.layers, 2);
    assert!(store.list().unwrap().is_empty());
    assert!(store.layout().blobs().unwrap().is_empty());
}
