//! The fallback root filesystem when overlayfs is unavailable: the layers copied, lowest
//! first, into one private directory, with overlayfs-form whiteouts applied as overlayfs would
//! (a 0/0 character device hides the name below; `trusted.overlay.opaque=y` hides a
//! directory's lower contents). Modes, owners, mtimes, symlinks and device nodes are kept;
//! hard links within a layer become separate copies and xattrs other than the opaque marker
//! are not copied.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps};

use crate::error::{Error, Result};
use crate::store::remove_tree;

/// Copies `layers` (lowest first, each an unpacked layer directory) into `dest`.
pub fn copy_layers(layers: &[PathBuf], dest: &Path) -> Result<()> {
    for layer in layers {
        apply_layer(layer, dest)?;
    }
    Ok(())
}

fn apply_layer(src: &Path, dst: &Path) -> Result<()> {
    let list = fs::read_dir(src).map_err(|e| Error::io("list layer", src, e))?;
    for entry in list {
        let entry = entry.map_err(|e| Error::io("list layer", src, e))?;
        let s = entry.path();
        let d = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&s).map_err(|e| Error::io("stat", &s, e))?;
        let ft = FileType::from_raw_mode(meta.mode());
        if ft == FileType::CharacterDevice && meta.rdev() == 0 {
            remove_any(&d)?;
            continue;
        }
        if ft == FileType::Directory {
            let existing = fs::symlink_metadata(&d).ok();
            let opaque = rustix::fs::lgetxattr(&s, "trusted.overlay.opaque", &mut [0u8; 1][..])
                .is_ok_and(|n| n == 1);
            if existing.as_ref().is_some_and(|m| !m.is_dir()) || opaque {
                remove_any(&d)?;
            }
            if !d.is_dir() {
                fs::create_dir(&d).map_err(|e| Error::io("create directory", &d, e))?;
            }
            apply_layer(&s, &d)?;
        } else {
            remove_any(&d)?;
            copy_node(&s, &d, ft, &meta)?;
        }
        set_meta(&d, ft, &meta)?;
    }
    Ok(())
}

fn copy_node(s: &Path, d: &Path, ft: FileType, meta: &fs::Metadata) -> Result<()> {
    match ft {
        FileType::RegularFile => fs::copy(s, d)
            .map(|_| ())
            .map_err(|e| Error::io("copy file", d, e)),
        FileType::Symlink => {
            let target = fs::read_link(s).map_err(|e| Error::io("read symlink", s, e))?;
            std::os::unix::fs::symlink(target, d).map_err(|e| Error::io("create symlink", d, e))
        }
        _ => rustix::fs::mknodat(
            rustix::fs::CWD,
            d,
            ft,
            Mode::from_raw_mode(meta.mode() & 0o7777),
            meta.rdev(),
        )
        .map_err(|e| Error::io("create device node", d, e)),
    }
}

fn set_meta(d: &Path, ft: FileType, meta: &fs::Metadata) -> Result<()> {
    std::os::unix::fs::lchown(d, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| Error::io("chown", d, e))?;
    if ft != FileType::Symlink {
        fs::set_permissions(d, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| Error::io("chmod", d, e))?;
    }
    let t = |sec, nsec| Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    let times = Timestamps {
        last_access: t(meta.atime(), meta.atime_nsec()),
        last_modification: t(meta.mtime(), meta.mtime_nsec()),
    };
    rustix::fs::utimensat(rustix::fs::CWD, d, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io("set mtime", d, e))
}

fn remove_any(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => remove_tree(p),
        Ok(_) => fs::remove_file(p).map_err(|e| Error::io("remove", p, e)),
        Err(_) => Ok(()),
    }
}
