//! Container root filesystems: one overlayfs mount per container over the shared layers.
//!
//! `containers/<id>/` holds `image.json` (the record that makes the image "in use"),
//! `upper/` and `work/` (overlayfs' writable layer and scratch directory) and `rootfs/` (the
//! mount point). Where overlayfs is unavailable (`ENODEV`, e.g. a kernel without it, or a store
//! on a file system overlayfs refuses as upper), `rootfs/` is instead a private copy of the
//! layers with whiteouts applied: slower to prepare and not shared, but the same tree.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::{self, MountFlags, UnmountFlags};

use crate::atomic;
use crate::copy;
use crate::error::{Error, Result};
use crate::store::{self, Image, Store};

/// How a container's root filesystem was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsKind {
    /// An overlayfs mount: layers read-only, a private upper directory.
    Overlay,
    /// A private copy of the layers (fallback when overlayfs is unavailable).
    Copy,
}

/// The record kept in `containers/<id>/image.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ContainerRecord {
    /// The container id given to [`Store::prepare`].
    pub id: String,
    /// The image name it was prepared from.
    pub image: String,
    /// The image's manifest digest.
    pub manifest: String,
    /// The layers (diff_ids, lowest first) the root filesystem is made of.
    pub layers: Vec<String>,
    /// Overlay or copy.
    pub kind: RootfsKind,
}

/// A prepared root filesystem.
#[derive(Debug, Clone)]
pub struct PreparedRootfs {
    /// The directory to use as the container's root (`containers/<id>/rootfs`).
    pub path: PathBuf,
    /// Overlay or copy.
    pub kind: RootfsKind,
    /// The image it was made from.
    pub image: Image,
}

impl Store {
    /// Makes the root filesystem for container `id` from image `wanted` (unpacking layers as
    /// needed) and returns its path. Idempotent: preparing an id that is already prepared
    /// from the same image returns the existing root filesystem.
    pub fn prepare(&self, wanted: &str, id: &str) -> Result<PreparedRootfs> {
        check_id(id)?;
        let image = self.resolve(wanted)?;
        let layers = self.ensure_layers(&image)?;
        let dir = self.containers.join(id);
        let path = dir.join("rootfs");
        match self.record(id) {
            Ok(Some(rec)) => {
                if rec.manifest == image.manifest_digest
                    && (rec.kind == RootfsKind::Copy || is_mountpoint(&path))
                {
                    return Ok(PreparedRootfs {
                        path,
                        kind: rec.kind,
                        image,
                    });
                }
                self.remove_container(id)?;
            }
            Ok(None) => {}
            // A record a machine crash left torn (it is written without fsync): start over.
            Err(_) => self.remove_container(id)?,
        }
        for sub in ["upper", "work", "rootfs"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| Error::io("create container directory", &p, e))?;
        }
        let mut rec = ContainerRecord {
            id: id.to_string(),
            image: image.name.clone(),
            manifest: image.manifest_digest.clone(),
            layers: image.diff_ids().to_vec(),
            kind: RootfsKind::Overlay,
        };
        // The record goes first so that the layers count as in use before anything uses them.
        self.write_record(&rec)?;
        let layers = topmost_occurrences(layers);
        let lower = if layers.is_empty() {
            vec![self.empty_layer()?]
        } else {
            layers
        };
        match mount_overlay(&lower, &dir) {
            Ok(()) => {}
            Err(Errno::NODEV) => {
                tracing::warn!(
                    container = id,
                    "overlayfs unavailable: copying the layers instead"
                );
                copy::copy_layers(&lower, &path)?;
                rec.kind = RootfsKind::Copy;
                self.write_record(&rec)?;
            }
            Err(e) => return Err(Error::io("mount overlay", &path, e)),
        }
        Ok(PreparedRootfs {
            path,
            kind: rec.kind,
            image,
        })
    }

    /// Unmounts and deletes container `id`'s root filesystem; unknown ids are not an error.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let dir = self.containers.join(id);
        let rootfs = dir.join("rootfs");
        match mount::unmount(&rootfs, UnmountFlags::DETACH) {
            Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => {}
            Err(e) => return Err(Error::io("unmount", &rootfs, e)),
        }
        // Remove the record last, so a crash in between still shows the layers in use.
        for sub in ["rootfs", "upper", "work"] {
            store::remove_tree(&dir.join(sub))?;
        }
        store::remove_tree(&dir)
    }

    /// Every container record in the store.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        let mut out = Vec::new();
        let list =
            fs::read_dir(&self.containers).map_err(|e| Error::io("list", &self.containers, e))?;
        for entry in list {
            let entry = entry.map_err(|e| Error::io("list", &self.containers, e))?;
            if let Some(rec) = entry
                .file_name()
                .to_str()
                .and_then(|id| self.record(id).ok().flatten())
            {
                out.push(rec);
            }
        }
        Ok(out)
    }

    fn record(&self, id: &str) -> Result<Option<ContainerRecord>> {
        let path = self.containers.join(id).join("image.json");
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::format(path.display().to_string(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }

    /// Written without fsync (it is on every container start's path, and an fsync costs
    /// 10-30 ms on a busy disk): the record only matters while its root filesystem can be
    /// mounted, which a machine crash ends; a record lost or left empty by a crash reads as
    /// no record ([`Self::containers`] skips it), and the next prepare of the id rewrites it.
    fn write_record(&self, rec: &ContainerRecord) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(rec).map_err(|e| Error::format("container record", e))?;
        atomic::replace_file(&self.containers.join(&rec.id).join("image.json"), &bytes)
    }

    /// Manifest digests used by prepared containers.
    pub(crate) fn used_manifests(&self) -> Result<HashSet<String>> {
        Ok(self.containers()?.into_iter().map(|r| r.manifest).collect())
    }

    /// Layers used by prepared containers.
    pub(crate) fn used_layers(&self) -> Result<HashSet<String>> {
        Ok(self
            .containers()?
            .into_iter()
            .flat_map(|r| r.layers)
            .collect())
    }

    /// One container using the manifest, if any.
    pub(crate) fn user_of(&self, manifest: &str) -> Result<Option<String>> {
        Ok(self
            .containers()?
            .into_iter()
            .find(|r| r.manifest == manifest)
            .map(|r| r.id))
    }

    fn empty_layer(&self) -> Result<PathBuf> {
        let p = self.root.join("layers/empty");
        fs::create_dir_all(&p).map_err(|e| Error::io("create directory", &p, e))?;
        Ok(p)
    }
}

/// Mounts overlayfs at `dir/rootfs` with `layers` (lowest first) below `dir/upper`.
/// overlayfs lists lower directories top-most first, hence the reversal. The new mount API's
/// `lowerdir+` (Linux 6.8) takes one layer per call and has no one-page limit on options;
/// older kernels get the classic `lowerdir=a:b:c` string.
fn mount_overlay(layers: &[PathBuf], dir: &Path) -> std::result::Result<(), Errno> {
    let upper = dir.join("upper");
    let work = dir.join("work");
    let target = dir.join("rootfs");
    match mount_overlay_fsconfig(layers, &upper, &work, &target) {
        Err(Errno::INVAL) | Err(Errno::NOSYS) => {}
        other => return other,
    }
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    let data = std::ffi::CString::new(data).map_err(|_| Errno::INVAL)?;
    mount::mount(
        "overlay",
        &target,
        "overlay",
        MountFlags::empty(),
        data.as_c_str(),
    )
}

fn mount_overlay_fsconfig(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> std::result::Result<(), Errno> {
    let fs = mount::fsopen("overlay", mount::FsOpenFlags::FSOPEN_CLOEXEC)?;
    for layer in layers.iter().rev() {
        mount::fsconfig_set_string(&fs, "lowerdir+", layer.as_path())?;
    }
    mount::fsconfig_set_string(&fs, "upperdir", upper)?;
    mount::fsconfig_set_string(&fs, "workdir", work)?;
    mount::fsconfig_create(&fs)?;
    let mnt = mount::fsmount(
        &fs,
        mount::FsMountFlags::FSMOUNT_CLOEXEC,
        mount::MountAttrFlags::empty(),
    )?;
    mount::move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

/// Keeps only the top-most occurrence of a layer that appears more than once (identical empty
/// layers are common): overlayfs refuses the same lower directory twice (`ELOOP`), and applying
/// a layer a second time higher up already overrides everything its first application did.
fn topmost_occurrences(layers: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        if !layers[i + 1..].contains(layer) {
            out.push(layer.clone());
        }
    }
    out
}

/// True if `path` is the root of a mount (its mount id differs from its parent's).
fn is_mountpoint(path: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = path.display().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

/// Container ids become directory names: one safe component.
fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::format(
            format!("container id {id:?}"),
            "must be [A-Za-z0-9._-]{1,200}",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_layers_keep_only_their_topmost_place() {
        let p = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            topmost_occurrences(p(&["a", "b", "c"])),
            p(&["a", "b", "c"])
        );
        assert_eq!(
            topmost_occurrences(p(&["a", "e", "b", "e"])),
            p(&["a", "b", "e"])
        );
        assert_eq!(topmost_occurrences(p(&["e", "e", "e"])), p(&["e"]));
        assert!(topmost_occurrences(Vec::new()).is_empty());
    }

    #[test]
    fn container_ids_are_single_safe_components() {
        for good in ["abc", "pod-1_etcd.0", "x"] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", &"x".repeat(201)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
