//! kill -9 at any point of an import leaves a usable store, and repeating the import
//! finishes the job. The import runs in a child process (this test binary re-executed on the
//! ignored helper test below) killed after increasing delays. Needs root.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use podvisor_rootfs::Store;

const CHILD_ENV: &str = "PODVISOR_CRASH_CHILD";

/// Run only as the child of `kill_9_during_import_leaves_a_usable_store`: imports
/// `$PODVISOR_CRASH_CHILD` = "<root>\n<archive>".
#[test]
#[ignore = "helper: re-executed as a child process by kill_9_during_import_leaves_a_usable_store"]
fn crash_child_import() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        eprintln!(
            "crash_child_import: nothing to do outside kill_9_during_import_leaves_a_usable_store"
        );
        return;
    };
    let (root, archive) = spec.split_once('\n').unwrap();
    Store::open(Path::new(root))
        .unwrap()
        .import(Path::new(archive))
        .unwrap();
}

fn spawn_child(root: &Path, archive: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_import",
            "--include-ignored",
            "--quiet",
        ])
        .env(
            CHILD_ENV,
            format!("{}\n{}", root.display(), archive.display()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Checks the store after a crash: it opens, lists, every blob matches its name, and no
/// temporary files survive the reopen.
fn check_usable(root: &Path) {
    let store = Store::open(root).unwrap();
    for img in store.list().unwrap() {
        store.resolve(&img.name).unwrap();
    }
    for blob in store.layout().blobs().unwrap() {
        store
            .layout()
            .read_blob(&blob)
            .map(|_| ())
            .or_else(|e| {
                // Layers are too big for read_blob's in-memory check; hash them streaming.
                let f = store.layout().open_blob(&blob)?;
                let (d, _) = podvisor_rootfs::digest::HashingReader::new(f)
                    .finish()
                    .map_err(|io| podvisor_rootfs::Error::io("read", root, io))?;
                if d == blob { Ok(()) } else { Err(e) }
            })
            .unwrap_or_else(|e| panic!("blob {blob} corrupt after crash: {e}"));
    }
    for dir in [
        root.join("images/blobs/sha256"),
        root.join("layers/sha256"),
        root.join("images"),
    ] {
        for e in fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(".tmp-"),
                "temporary {name} survived reopening {}",
                dir.display()
            );
        }
    }
}

#[test]
fn kill_9_during_import_leaves_a_usable_store() {
    if !require_root("kill_9_during_import_leaves_a_usable_store") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = build_image(&tmp.path().join("img"));

    // The reference: an uninterrupted import, timed.
    let reference = tmp.path().join("reference");
    let start = Instant::now();
    assert!(
        spawn_child(&reference, &img.archive)
            .wait()
            .unwrap()
            .success()
    );
    let full = start.elapsed();
    let store = Store::open(&reference).unwrap();
    let image = store.resolve(TEST_REF).unwrap();
    let want: Vec<BTreeMap<String, String>> = store
        .ensure_layers(&image)
        .unwrap()
        .iter()
        .map(|d| tree(d))
        .collect();

    let mut killed = 0;
    for step in 0..12u32 {
        let root: PathBuf = tmp.path().join(format!("crash-{step}"));
        let mut child = spawn_child(&root, &img.archive);
        std::thread::sleep(full * step / 10 + Duration::from_millis(u64::from(step)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        if !root.join("images").exists() {
            continue;
        }
        check_usable(&root);
        // Repeating the import completes it, with the same result as the uninterrupted one.
        let store = Store::open(&root).unwrap();
        store.import(&img.archive).unwrap();
        let image = store.resolve(TEST_REF).unwrap();
        let got: Vec<BTreeMap<String, String>> = store
            .ensure_layers(&image)
            .unwrap()
            .iter()
            .map(|d| tree(d))
            .collect();
        assert!(got == want, "step {step}: layers differ after recovery");
    }
    eprintln!("import took {full:?}; {killed} of 12 children were killed mid-import");
    assert!(
        killed >= 3,
        "too few children were killed mid-import ({killed}) for the test to mean anything"
    );
}

/// A container record is written without fsync (it is on every container start's path): a
/// machine crash may leave it empty. The next prepare of that id starts over and works, and
/// listing the containers (what GC reads) skips the torn record instead of failing.
#[test]
fn a_torn_container_record_is_prepared_again() {
    if !require_root("a_torn_container_record_is_prepared_again") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = build_image(&tmp.path().join("img"));
    let store = Store::open(&tmp.path().join("store")).unwrap();
    store.import(&img.archive).unwrap();
    let first = store.prepare(TEST_REF, "torn").unwrap();
    fs::write(first.path.join("etc/motd"), "written by the first run").unwrap();
    store.remove_container("torn").unwrap();
    // As after a crash: the directory is there, the overlay is not mounted, the record empty.
    let dir = tmp.path().join("store/containers/torn");
    fs::create_dir_all(dir.join("upper/etc")).unwrap();
    fs::write(dir.join("upper/etc/motd"), "stale upper layer").unwrap();
    fs::create_dir_all(dir.join("rootfs")).unwrap();
    fs::write(dir.join("image.json"), "").unwrap();
    assert!(store.containers().unwrap().is_empty());
    let again = store.prepare(TEST_REF, "torn").unwrap();
    let motd = fs::read_to_string(again.path.join("etc/motd")).unwrap();
    assert_eq!(
        motd, "podvisor test image\n",
        "the stale upper layer was kept"
    );
    assert_eq!(store.containers().unwrap().len(), 1);
    store.remove_container("torn").unwrap();
}
