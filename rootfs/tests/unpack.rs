//! Layer unpacking keeps what the archive says (files, directories, symlinks, hard links,
//! devices, fifos, modes including set-id bits, owners, mtimes, xattrs), converts whiteouts to
//! overlayfs form, reads gzip (multi-member), zstd and plain layers, and refuses a layer whose
//! content does not match its diff_id. Needs root (chown, mknod, trusted.* xattrs).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use podvisor_rootfs::Error;
use podvisor_rootfs::unpack::unpack_layer;
use sha2::Digest;

fn header(
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    size: u64,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

/// A layer exercising every entry kind and attribute.
fn rich_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(
        &mut header(
            tar::EntryType::Directory,
            0o750,
            1000,
            2000,
            1_600_000_000,
            0,
        ),
        "d/",
        &[][..],
    )
    .unwrap();
    b.append_pax_extensions([
        ("SCHILY.xattr.user.test", &b"val"[..]),
        (
            "SCHILY.xattr.security.capability",
            &[
                1u8, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ][..],
        ),
    ])
    .unwrap();
    b.append_data(
        &mut header(
            tar::EntryType::Regular,
            0o4755,
            1000,
            2000,
            1_500_000_000,
            5,
        ),
        "d/f",
        &b"hello"[..],
    )
    .unwrap();
    let mut h = header(tar::EntryType::Symlink, 0o777, 1001, 2001, 1_400_000_000, 0);
    b.append_link(&mut h, "d/s", "f").unwrap();
    let mut h = header(tar::EntryType::Link, 0o644, 0, 0, 0, 0);
    b.append_link(&mut h, "d/h", "d/f").unwrap();
    b.append_data(
        &mut header(tar::EntryType::Fifo, 0o600, 0, 0, 1_300_000_000, 0),
        "p",
        &[][..],
    )
    .unwrap();
    let mut h = header(tar::EntryType::Char, 0o666, 0, 0, 1_300_000_000, 0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    b.append_data(&mut h, "null", &[][..]).unwrap();
    let mut h = header(tar::EntryType::Block, 0o660, 0, 6, 1_300_000_000, 0);
    h.set_device_major(7).unwrap();
    h.set_device_minor(0).unwrap();
    b.append_data(&mut h, "blk", &[][..]).unwrap();
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o644, 0, 0, 0, 0),
        "d/.wh.gone",
        &[][..],
    )
    .unwrap();
    b.append_data(
        &mut header(tar::EntryType::Directory, 0o755, 0, 0, 1_200_000_000, 0),
        "o/",
        &[][..],
    )
    .unwrap();
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o644, 0, 0, 0, 0),
        "o/.wh..wh..opq",
        &[][..],
    )
    .unwrap();
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o1777, 0, 0, 1_200_000_000, 2),
        "o/new",
        &b"ok"[..],
    )
    .unwrap();
    let latin1 = std::path::Path::new(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"caf\xe9"),
    );
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o644, 0, 0, 1_200_000_000, 3),
        latin1,
        &b"nom"[..],
    )
    .unwrap();
    b.into_inner().unwrap()
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    rustix::fs::lgetxattr(p, name, &mut buf[..])
        .ok()
        .map(|n| buf[..n].to_vec())
}

#[test]
fn unpack_keeps_every_kind_and_attribute() {
    if !common::require_root("unpack_keeps_every_kind_and_attribute") {
        return;
    }
    let tar = rich_layer();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let diff_id = unpack_layer(&tar[..], t, Some(&sha(&tar))).unwrap();
    assert_eq!(diff_id, sha(&tar));

    let d = fs::metadata(t.join("d")).unwrap();
    assert!(d.is_dir());
    assert_eq!(
        (d.mode() & 0o7777, d.uid(), d.gid(), d.mtime()),
        (0o750, 1000, 2000, 1_600_000_000)
    );
    let f = fs::metadata(t.join("d/f")).unwrap();
    assert_eq!(
        (f.mode() & 0o7777, f.uid(), f.gid(), f.mtime()),
        (0o4755, 1000, 2000, 1_500_000_000)
    );
    assert_eq!(fs::read(t.join("d/f")).unwrap(), b"hello");
    assert_eq!(
        xattr(&t.join("d/f"), "user.test").as_deref(),
        Some(&b"val"[..])
    );
    assert!(
        xattr(&t.join("d/f"), "security.capability").is_some(),
        "file capabilities kept"
    );
    let s = fs::symlink_metadata(t.join("d/s")).unwrap();
    assert!(s.file_type().is_symlink());
    assert_eq!(fs::read_link(t.join("d/s")).unwrap(), Path::new("f"));
    assert_eq!((s.uid(), s.gid(), s.mtime()), (1001, 2001, 1_400_000_000));
    let h = fs::metadata(t.join("d/h")).unwrap();
    assert_eq!(h.ino(), f.ino(), "hard link shares the inode");
    assert_eq!(h.nlink(), 2);
    let p = fs::metadata(t.join("p")).unwrap();
    assert!(p.file_type().is_fifo());
    assert_eq!(p.mode() & 0o7777, 0o600);
    let n = fs::metadata(t.join("null")).unwrap();
    assert!(n.file_type().is_char_device());
    assert_eq!(
        (n.rdev(), n.mode() & 0o7777),
        (rustix::fs::makedev(1, 3), 0o666)
    );
    let b = fs::metadata(t.join("blk")).unwrap();
    assert!(b.file_type().is_block_device());
    assert_eq!((b.rdev(), b.gid()), (rustix::fs::makedev(7, 0), 6));
    let w = fs::symlink_metadata(t.join("d/gone")).unwrap();
    assert!(
        w.file_type().is_char_device() && w.rdev() == 0,
        "whiteout is a 0/0 char device"
    );
    assert!(!t.join("d/.wh.gone").exists());
    assert_eq!(
        xattr(&t.join("o"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!t.join("o/.wh..wh..opq").exists());
    assert_eq!(
        fs::metadata(t.join("o/new")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::metadata(t.join("o")).unwrap().mtime(),
        1_200_000_000,
        "dir mtime set after its entries"
    );
}

#[test]
fn gzip_multi_member_zstd_and_plain_layers_give_the_same_tree() {
    if !common::require_root("gzip_multi_member_zstd_and_plain_layers_give_the_same_tree") {
        return;
    }
    let tar = rich_layer();
    let (first, second) = tar.split_at(1024);
    let mut gz = Vec::new();
    for part in [first, second] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(part).unwrap();
        gz.extend(e.finish().unwrap());
    }
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let mut trees = Vec::new();
    for blob in [&tar, &gz, &zst] {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            unpack_layer(&blob[..], dir.path(), Some(&sha(&tar))).unwrap(),
            sha(&tar)
        );
        trees.push(common::tree(dir.path()));
    }
    assert_eq!(trees[0], trees[1], "multi-member gzip");
    assert_eq!(trees[0], trees[2], "zstd");
}

#[test]
fn a_layer_not_matching_its_diff_id_is_refused() {
    if !common::require_root("a_layer_not_matching_its_diff_id_is_refused") {
        return;
    }
    let tar = rich_layer();
    let dir = tempfile::tempdir().unwrap();
    let wrong = sha(b"something else");
    let err = unpack_layer(&tar[..], dir.path(), Some(&wrong)).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
}
