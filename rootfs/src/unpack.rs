//! Escape-proof layer extraction into overlayfs form.
//!
//! The `tar` crate only parses; every file system change is made here, relative to directory
//! file descriptors. Parents are opened with `openat2(2)` and `RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS`, so neither `..` nor a symlink (absolute or relative) planted by an
//! earlier entry can lead outside the layer directory; the final component is always created
//! with `O_EXCL`/`O_NOFOLLOW` semantics (`mkdirat`, `mknodat`, `symlinkat`, `linkat` never follow
//! it). Hard-link targets are opened the same way and linked with `AT_EMPTY_PATH`.
//!
//! OCI whiteouts become what overlayfs expects (kernel `Documentation/filesystems/overlayfs.rst`):
//! `.wh.NAME` → a 0/0 character device `NAME`, `.wh..wh..opq` → `trusted.overlay.opaque=y` on the
//! directory. `trusted.overlay.*` xattrs from the archive itself are dropped: they would let a
//! layer steer overlayfs (redirects, metacopy).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags,
};
use rustix::io::Errno;

pub use crate::compression::{Compression, decompress};
use crate::digest::HashingReader;
use crate::entry_path::{self, EntryPath};
use crate::error::{Error, Result};

const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const COPY_BUF: usize = 256 * 1024;

/// Unpacks the layer `blob` (compressed or not) into the existing, empty directory `dest` and
/// returns the uncompressed stream's digest (the layer's diff_id). When `expected_diff_id` is
/// given, a mismatch is an error (the caller discards `dest`).
pub fn unpack_layer(
    blob: impl Read,
    dest: &Path,
    expected_diff_id: Option<&str>,
) -> Result<String> {
    let stream = decompress(blob).map_err(|e| Error::io("read layer header", dest, e))?;
    let mut archive = tar::Archive::new(HashingReader::new(stream));
    let mut ex = Extractor::open(dest)?;
    let entries = archive
        .entries()
        .map_err(|e| Error::io("read layer", dest, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("read layer entry", dest, e))?;
        ex.entry(&mut entry)?;
    }
    ex.finish()?;
    let (diff_id, _) = archive
        .into_inner()
        .finish()
        .map_err(|e| Error::io("read layer", dest, e))?;
    if let Some(want) = expected_diff_id {
        crate::digest::check(format!("layer {}", dest.display()), want, &diff_id)?;
    }
    Ok(diff_id)
}

/// Metadata common to every entry kind, taken from the tar header.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// The extraction state for one layer directory.
struct Extractor {
    root: OwnedFd,
    root_path: PathBuf,
    privileged: bool,
    parents: HashMap<Vec<u8>, OwnedFd>,
    dir_times: Vec<(Vec<u8>, i64)>,
    buf: Vec<u8>,
}

impl Extractor {
    fn open(dest: &Path) -> Result<Self> {
        let root = rfs::open(
            dest,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open layer directory", dest, e))?;
        Ok(Extractor {
            root,
            root_path: dest.to_path_buf(),
            privileged: rustix::process::geteuid().is_root(),
            parents: HashMap::new(),
            dir_times: Vec::new(),
            buf: vec![0; COPY_BUF],
        })
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let meta = self.meta(entry, &raw_path)?;
        let Some(path) = entry_path::clean(&raw_path)? else {
            if kind.is_dir() {
                return self.apply_root_meta(&meta);
            }
            return Err(unsafe_entry(
                &raw_path,
                "non-directory entry for the layer root",
            ));
        };
        if path.name == OPAQUE_MARKER {
            let parent = self.parent(&path.parent)?;
            return rfs::fsetxattr(&parent, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                .map_err(|e| self.err("mark opaque", &path.parent, e));
        }
        if let Some(hidden) = path.name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(unsafe_entry(&raw_path, "whiteout of an invalid name"));
            }
            let target = EntryPath {
                parent: path.parent.clone(),
                name: hidden.to_vec(),
            };
            return self.whiteout(&target);
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.file(&path, &meta, entry)
            }
            tar::EntryType::Directory => self.dir(&path, &meta),
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&raw_path, "symlink without target"))?;
                self.symlink(&path, &target, &meta)
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&raw_path, "hard link without target"))?;
                let target = entry_path::clean(&target)?
                    .ok_or_else(|| unsafe_entry(&raw_path, "hard link to the layer root"))?;
                self.hardlink(&path, &target)
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                self.node(&path, ft, rfs::makedev(major, minor), &meta)
            }
            other => {
                tracing::debug!(entry = %String::from_utf8_lossy(&raw_path), kind = ?other, "skipping unsupported tar entry type");
                Ok(())
            }
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<Meta> {
        let h = entry.header();
        let bad = |what: &str| unsafe_entry(raw, &format!("unreadable {what} in header"));
        let mode = h.mode().map_err(|_| bad("mode"))? & 0o7777;
        let uid = u32::try_from(h.uid().map_err(|_| bad("uid"))?).map_err(|_| bad("uid"))?;
        let gid = u32::try_from(h.gid().map_err(|_| bad("gid"))?).map_err(|_| bad("gid"))?;
        let mtime = i64::try_from(h.mtime().map_err(|_| bad("mtime"))?).unwrap_or(0);
        let mut xattrs = Vec::new();
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| Error::io("read pax header", &self.root_path, e))?
        {
            for ext in exts {
                let ext = ext.map_err(|e| Error::io("read pax header", &self.root_path, e))?;
                if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                    if !name.starts_with("trusted.overlay.") {
                        xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    /// Opens (creating missing directories) the parent `rel`, never leaving the layer root.
    fn parent(&mut self, rel: &[u8]) -> Result<OwnedFd> {
        if rel.is_empty() {
            return self
                .root
                .try_clone()
                .map_err(|e| Error::io("dup layer directory", &self.root_path, e));
        }
        if let Some(fd) = self.parents.get(rel) {
            return fd
                .try_clone()
                .map_err(|e| Error::io("dup directory", self.abs(rel), e));
        }
        let fd = match open_beneath(&self.root, rel) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => self.create_parents(rel)?,
            Err(e) => return Err(self.err("open parent directory", rel, e)),
        };
        let out = fd
            .try_clone()
            .map_err(|e| Error::io("dup directory", self.abs(rel), e))?;
        self.parents.insert(rel.to_vec(), fd);
        Ok(out)
    }

    fn create_parents(&self, rel: &[u8]) -> Result<OwnedFd> {
        let mut cur = self
            .root
            .try_clone()
            .map_err(|e| Error::io("dup layer directory", &self.root_path, e))?;
        for comp in rel.split(|b| *b == b'/') {
            cur = match open_beneath(&cur, comp) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    rfs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755))
                        .map_err(|e| self.err("create directory", rel, e))?;
                    open_beneath(&cur, comp).map_err(|e| self.err("open directory", rel, e))?
                }
                Err(e) => return Err(self.err("open directory", rel, e)),
            };
        }
        Ok(cur)
    }

    /// Removes whatever is at `parent/name` unless it is a directory and `keep_dir` is set.
    /// Returns true if a directory was kept.
    fn clear(&mut self, parent: &OwnedFd, path: &EntryPath, keep_dir: bool) -> Result<bool> {
        let st = match rfs::statat(parent, path.name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(self.err("stat", &path.full(), e)),
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if is_dir && keep_dir {
            return Ok(true);
        }
        // Anything cached under this name may now be a different object.
        self.parents.clear();
        let flags = if is_dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        rfs::unlinkat(parent, path.name.as_slice(), flags)
            .map_err(|e| self.err("replace existing entry", &path.full(), e))?;
        Ok(false)
    }

    fn file<R: Read>(&mut self, path: &EntryPath, meta: &Meta, data: &mut R) -> Result<()> {
        let parent = self.parent(&path.parent)?;
        self.clear(&parent, path, false)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(
            &parent,
            path.name.as_slice(),
            flags,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.err("create file", &path.full(), e))?;
        let mut file = File::from(fd);
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::io("read layer entry", self.abs(&path.full()), e));
                }
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| Error::io("write file", self.abs(&path.full()), e))?;
        }
        let fd = OwnedFd::from(file);
        if self.privileged {
            rfs::fchown(&fd, Some(uid(meta.uid)), Some(gid(meta.gid)))
                .map_err(|e| self.err("chown", &path.full(), e))?;
        }
        // chmod after chown: chown(2) clears set-user-ID and set-group-ID bits.
        rfs::fchmod(&fd, Mode::from_raw_mode(meta.mode))
            .map_err(|e| self.err("chmod", &path.full(), e))?;
        // xattrs last: chown(2) drops security.capability.
        self.set_xattrs(&fd, path, meta)?;
        rfs::futimens(&fd, &times(meta.mtime)).map_err(|e| self.err("set mtime", &path.full(), e))
    }

    fn dir(&mut self, path: &EntryPath, meta: &Meta) -> Result<()> {
        let parent = self.parent(&path.parent)?;
        if !self.clear(&parent, path, true)? {
            rfs::mkdirat(&parent, path.name.as_slice(), Mode::from_raw_mode(0o700))
                .map_err(|e| self.err("create directory", &path.full(), e))?;
        }
        let fd = open_beneath(&parent, &path.name)
            .map_err(|e| self.err("open directory", &path.full(), e))?;
        if self.privileged {
            rfs::fchown(&fd, Some(uid(meta.uid)), Some(gid(meta.gid)))
                .map_err(|e| self.err("chown", &path.full(), e))?;
        }
        rfs::fchmod(&fd, Mode::from_raw_mode(meta.mode))
            .map_err(|e| self.err("chmod", &path.full(), e))?;
        self.set_xattrs(&fd, path, meta)?;
        // Later entries change the directory's mtime: set it once everything is written.
        self.dir_times.push((path.full(), meta.mtime));
        Ok(())
    }

    fn symlink(&mut self, path: &EntryPath, target: &[u8], meta: &Meta) -> Result<()> {
        let parent = self.parent(&path.parent)?;
        self.clear(&parent, path, false)?;
        // The target is stored verbatim: it is never followed during extraction.
        let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(target);
        rfs::symlinkat(target, &parent, path.name.as_slice())
            .map_err(|e| self.err("create symlink", &path.full(), e))?;
        self.finish_node(&parent, path, meta, false)
    }

    fn hardlink(&mut self, path: &EntryPath, target: &EntryPath) -> Result<()> {
        let parent = self.parent(&path.parent)?;
        let target_parent = self.parent(&target.parent)?;
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let src = rfs::openat2(
            &target_parent,
            target.name.as_slice(),
            flags,
            Mode::empty(),
            resolve,
        )
        .map_err(|e| self.err("open hard link target", &target.full(), e))?;
        self.clear(&parent, path, false)?;
        rfs::linkat(&src, "", &parent, path.name.as_slice(), AtFlags::EMPTY_PATH)
            .map_err(|e| self.err("create hard link", &path.full(), e))
    }

    fn node(&mut self, path: &EntryPath, ft: FileType, dev: rfs::Dev, meta: &Meta) -> Result<()> {
        let parent = self.parent(&path.parent)?;
        self.clear(&parent, path, false)?;
        rfs::mknodat(
            &parent,
            path.name.as_slice(),
            ft,
            Mode::from_raw_mode(meta.mode),
            dev,
        )
        .map_err(|e| self.err("create device node", &path.full(), e))?;
        self.finish_node(&parent, path, meta, true)
    }

    fn whiteout(&mut self, path: &EntryPath) -> Result<()> {
        let parent = self.parent(&path.parent)?;
        self.clear(&parent, path, false)?;
        rfs::mknodat(
            &parent,
            path.name.as_slice(),
            FileType::CharacterDevice,
            Mode::empty(),
            rfs::makedev(0, 0),
        )
        .map_err(|e| self.err("create whiteout", &path.full(), e))
    }

    /// Owner, mode and mtime for entries that cannot be opened (symlinks, devices, fifos).
    fn finish_node(
        &self,
        parent: &OwnedFd,
        path: &EntryPath,
        meta: &Meta,
        chmod: bool,
    ) -> Result<()> {
        let name = path.name.as_slice();
        if self.privileged {
            rfs::chownat(
                parent,
                name,
                Some(uid(meta.uid)),
                Some(gid(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| self.err("chown", &path.full(), e))?;
        }
        if chmod {
            // Not a symlink, so fchmodat(2) cannot be redirected.
            rfs::chmodat(
                parent,
                name,
                Mode::from_raw_mode(meta.mode),
                AtFlags::empty(),
            )
            .map_err(|e| self.err("chmod", &path.full(), e))?;
        }
        rfs::utimensat(parent, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.err("set mtime", &path.full(), e))
    }

    fn set_xattrs(&self, fd: &OwnedFd, path: &EntryPath, meta: &Meta) -> Result<()> {
        for (name, value) in &meta.xattrs {
            match rfs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
                // Unprivileged unpack cannot set trusted.* or security.*: keep going, as umoci --rootless does.
                Err(Errno::PERM | Errno::OPNOTSUPP) if !self.privileged => {}
                Err(e) => {
                    return Err(self.err(
                        "set xattr",
                        format!("{} ({name})", String::from_utf8_lossy(&path.full())).as_bytes(),
                        e,
                    ));
                }
                Ok(()) => {}
            }
        }
        Ok(())
    }

    fn apply_root_meta(&self, meta: &Meta) -> Result<()> {
        if self.privileged {
            rfs::fchown(&self.root, Some(uid(meta.uid)), Some(gid(meta.gid)))
                .map_err(|e| self.err("chown", b".", e))?;
        }
        rfs::fchmod(&self.root, Mode::from_raw_mode(meta.mode))
            .map_err(|e| self.err("chmod", b".", e))
    }

    /// Sets directory mtimes (deepest first does not matter: setting an mtime does not touch
    /// the parent) and drops cached descriptors.
    fn finish(mut self) -> Result<()> {
        self.parents.clear();
        for (rel, mtime) in std::mem::take(&mut self.dir_times) {
            let fd =
                open_beneath(&self.root, &rel).map_err(|e| self.err("open directory", &rel, e))?;
            rfs::futimens(&fd, &times(mtime)).map_err(|e| self.err("set mtime", &rel, e))?;
        }
        Ok(())
    }

    /// `rel` (bytes, relative to the layer) as an absolute path for messages.
    fn abs(&self, rel: &[u8]) -> PathBuf {
        self.root_path
            .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(rel))
    }

    fn err(&self, step: &'static str, rel: &[u8], e: Errno) -> Error {
        if e == Errno::XDEV || e == Errno::LOOP {
            return Error::UnsafeEntry {
                entry: String::from_utf8_lossy(rel).into_owned(),
                reason: format!("{step}: path leads outside the layer ({e})"),
            };
        }
        Error::io(step, self.abs(rel), e)
    }
}

/// Opens directory `rel` under `dir` without leaving `dir` (RESOLVE_BENEATH) and without
/// following /proc magic links.
fn open_beneath(dir: &OwnedFd, rel: &[u8]) -> std::result::Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    rfs::openat2(
        dir.as_fd(),
        rel,
        flags,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
}

fn unsafe_entry(raw: &[u8], reason: &str) -> Error {
    Error::UnsafeEntry {
        entry: String::from_utf8_lossy(&raw[..raw.len().min(200)]).into_owned(),
        reason: reason.into(),
    }
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn uid(raw: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(raw)
}

fn gid(raw: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(raw)
}
