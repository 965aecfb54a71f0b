//! Hostile layers: every archive here tries to create or modify something outside the layer
//! directory. Each test snapshots a sibling "outside" directory (and the parent) before and
//! after, so any write outside fails the test, whatever the unpacker returned.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use podvisor_rootfs::Error;
use podvisor_rootfs::unpack::unpack_layer;

/// A parent directory holding the layer target and an "outside" with things worth attacking.
struct Arena {
    _base: tempfile::TempDir,
    base: PathBuf,
    target: PathBuf,
    outside: PathBuf,
}

fn arena() -> Arena {
    let base = tempfile::tempdir().unwrap();
    let b = base.path().to_path_buf();
    let target = b.join("target");
    let outside = b.join("outside");
    fs::create_dir(&target).unwrap();
    fs::create_dir_all(outside.join("victim")).unwrap();
    fs::write(outside.join("secret"), "secret").unwrap();
    fs::write(outside.join("victim/file"), "victim").unwrap();
    Arena {
        _base: base,
        base: b,
        target,
        outside,
    }
}

impl Arena {
    fn snapshot(&self) -> (Vec<String>, BTreeMap<String, String>) {
        let mut names: Vec<String> = fs::read_dir(&self.base)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        (names, common::tree(&self.outside))
    }

    /// Unpacks `tar` and asserts nothing outside changed; returns the unpack result.
    fn unpack(&self, tar: &[u8]) -> Result<String, Error> {
        let before = self.snapshot();
        let nlink = fs::metadata(self.outside.join("secret")).unwrap().nlink();
        let result = unpack_layer(tar, &self.target, None);
        let after = self.snapshot();
        assert_eq!(before.0, after.0, "entries appeared next to the target");
        assert!(
            before.1 == after.1,
            "outside changed:\n{}",
            common::tree_diff(&before.1, &after.1)
        );
        assert_eq!(
            fs::metadata(self.outside.join("secret")).unwrap().nlink(),
            nlink,
            "secret got hard-linked"
        );
        result
    }
}

/// Builds archives with raw header fields, bypassing the `tar` crate's own path checks.
struct Hostile {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for Hostile {
    fn default() -> Self {
        Hostile {
            builder: tar::Builder::new(Vec::new()),
        }
    }
}

impl Hostile {
    fn entry(mut self, kind: tar::EntryType, name: &[u8], link: &[u8], data: &[u8]) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }
    fn file(self, name: &str, data: &str) -> Self {
        self.entry(
            tar::EntryType::Regular,
            name.as_bytes(),
            b"",
            data.as_bytes(),
        )
    }
    fn dir(self, name: &str) -> Self {
        self.entry(tar::EntryType::Directory, name.as_bytes(), b"", b"")
    }
    fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(
            tar::EntryType::Symlink,
            name.as_bytes(),
            target.as_bytes(),
            b"",
        )
    }
    fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(
            tar::EntryType::Link,
            name.as_bytes(),
            target.as_bytes(),
            b"",
        )
    }
    /// Appends raw bytes (hand-made headers).
    fn raw(mut self, header: &tar::Header, data: &[u8]) -> Self {
        self.builder.append(header, data).unwrap();
        self
    }
    fn build(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

fn refused(r: Result<String, Error>) {
    eprintln!("refused: {r:?}");
    match r {
        Err(Error::UnsafeEntry { ref reason, .. }) if reason.contains("header") => {
            panic!("refused for a malformed header, not the attack: {r:?}")
        }
        Err(Error::UnsafeEntry { .. }) | Err(Error::Io { .. }) => {}
        other => panic!("expected the layer to be refused, got {other:?}"),
    }
}

#[test]
fn dotdot_paths_are_refused() {
    let a = arena();
    for name in [
        "../outside/pwned",
        "a/../../outside/pwned",
        "./../outside/secret",
        "x/../../../pwned",
    ] {
        refused(a.unpack(&Hostile::default().file(name, "pwned").build()));
    }
}

#[test]
fn absolute_paths_land_inside_the_layer() {
    let a = arena();
    let abs = format!("{}/pwned", a.outside.display());
    let tar = Hostile::default()
        .file("/etc/abs", "x")
        .file(&abs, "pwned")
        .build();
    a.unpack(&tar).unwrap();
    assert_eq!(fs::read_to_string(a.target.join("etc/abs")).unwrap(), "x");
    let inside = a.target.join(abs.trim_start_matches('/'));
    assert_eq!(fs::read_to_string(inside).unwrap(), "pwned");
}

#[test]
fn symlinked_parents_cannot_lead_outside() {
    let a = arena();
    let abs = a.outside.display().to_string();
    let cases = [
        Hostile::default()
            .symlink("esc", &abs)
            .file("esc/pwned", "x")
            .build(),
        Hostile::default()
            .symlink("esc", "../outside")
            .file("esc/pwned", "x")
            .build(),
        Hostile::default()
            .symlink("esc", "../outside")
            .file("esc/secret", "overwritten")
            .build(),
        Hostile::default()
            .symlink("a", "b")
            .symlink("b", "../outside")
            .file("a/pwned", "x")
            .build(),
        Hostile::default()
            .dir("d")
            .symlink("d/up", "../..")
            .file("d/up/outside/pwned", "x")
            .build(),
        Hostile::default()
            .symlink("esc", &abs)
            .dir("esc/newdir")
            .build(),
        Hostile::default()
            .symlink("esc", &abs)
            .symlink("esc/link", "/")
            .build(),
        Hostile::default()
            .symlink("esc", "/proc/self/root/")
            .file("esc/pwned", "x")
            .build(),
    ];
    for (i, tar) in cases.iter().enumerate() {
        let a = arena();
        eprintln!("case {i}");
        refused(a.unpack(tar));
    }
    drop(a);
}

#[test]
fn a_file_replaces_a_symlink_instead_of_writing_through_it() {
    let a = arena();
    let secret = a.outside.join("secret").display().to_string();
    let tar = Hostile::default()
        .symlink("f", &secret)
        .file("f", "overwritten")
        .build();
    a.unpack(&tar).unwrap();
    assert_eq!(
        fs::read_to_string(a.target.join("f")).unwrap(),
        "overwritten"
    );
    assert!(fs::symlink_metadata(a.target.join("f")).unwrap().is_file());
}

#[test]
fn hard_links_cannot_reach_outside() {
    let abs = |a: &Arena| a.outside.join("secret").display().to_string();
    let a = arena();
    refused(
        a.unpack(
            &Hostile::default()
                .hardlink("hl", "../outside/secret")
                .build(),
        ),
    );
    let a = arena();
    refused(
        a.unpack(
            &Hostile::default()
                .symlink("esc", "../outside")
                .hardlink("hl", "esc/secret")
                .build(),
        ),
    );
    let a = arena();
    let target = abs(&a);
    refused(
        a.unpack(
            &Hostile::default()
                .symlink("esc", &a.outside.display().to_string())
                .hardlink("hl", "esc/secret")
                .build(),
        ),
    );
    // An absolute target is inside the layer, where it does not exist.
    assert!(
        a.unpack(&Hostile::default().hardlink("hl2", &target).build())
            .is_err()
    );
    let a = arena();
    // A link to an in-layer symlink that points outside links the symlink, not the secret.
    let t = abs(&a);
    a.unpack(
        &Hostile::default()
            .symlink("s", &t)
            .hardlink("hl", "s")
            .build(),
    )
    .unwrap();
    assert!(
        fs::symlink_metadata(a.target.join("hl"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn whiteouts_cannot_reach_outside() {
    let cases = [
        Hostile::default().file("../outside/.wh.secret", "").build(),
        Hostile::default()
            .symlink("esc", "../outside")
            .file("esc/.wh.secret", "")
            .build(),
        Hostile::default()
            .symlink("esc", "../outside")
            .file("esc/.wh..wh..opq", "")
            .build(),
        Hostile::default().file(".wh..", "").build(),
        Hostile::default().dir("d").file("d/.wh..", "").build(),
    ];
    for (i, tar) in cases.iter().enumerate() {
        let a = arena();
        eprintln!("case {i}");
        refused(a.unpack(tar));
        assert!(a.outside.join("secret").exists());
    }
}

#[test]
fn huge_headers_are_refused() {
    // A GNU long name of 1 MiB.
    let long = "a/".repeat(512 * 1024);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_size(long.len() as u64);
    h.set_cksum();
    let tar = Hostile::default()
        .raw(&h, long.as_bytes())
        .file("short", "x")
        .build();
    let a = arena();
    refused(a.unpack(&tar));

    // A PAX path of 100 kB.
    let path = format!("path={}\n", "b".repeat(100_000));
    let record = pax_record(&path);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeaders/x").unwrap();
    h.set_size(record.len() as u64);
    h.set_cksum();
    let tar = Hostile::default()
        .raw(&h, record.as_bytes())
        .file("short", "x")
        .build();
    let a = arena();
    refused(a.unpack(&tar));

    // A header claiming a 1 TiB body in a short stream.
    let mut tar = Hostile::default().file("big", "").build();
    let mut h = tar::Header::new_gnu();
    h.set_path("big").unwrap();
    h.set_size(1 << 40);
    h.set_cksum();
    tar.truncate(0);
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(&[0u8; 4096]);
    let a = arena();
    assert!(a.unpack(&tar).is_err());
}

/// A PAX record `"<len> key=value\n"` whose length includes its own digits.
fn pax_record(kv: &str) -> String {
    let mut len = kv.len() + 2;
    loop {
        let candidate = format!("{len} {kv}");
        if candidate.len() == len {
            return candidate;
        }
        len = candidate.len();
    }
}

#[test]
fn trusted_overlay_xattrs_from_the_archive_are_dropped() {
    if !common::require_root("trusted_overlay_xattrs_from_the_archive_are_dropped") {
        return;
    }
    let a = arena();
    let record = pax_record("SCHILY.xattr.trusted.overlay.redirect=/outside\n")
        + &pax_record("SCHILY.xattr.user.kept=yes\n");
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeaders/d").unwrap();
    h.set_size(record.len() as u64);
    h.set_cksum();
    let tar = Hostile::default()
        .raw(&h, record.as_bytes())
        .dir("d")
        .build();
    a.unpack(&tar).unwrap();
    let d: &Path = &a.target.join("d");
    assert!(rustix::fs::getxattr(d, "trusted.overlay.redirect", &mut [0u8; 64][..]).is_err());
    let mut buf = [0u8; 8];
    let n = rustix::fs::getxattr(d, "user.kept", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"yes");
}
