//! The image store: an OCI layout of images plus the unpacked layers they share.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use rustix::fs::{FlockOperation, flock};

use crate::atomic;
use crate::digest;
use crate::error::{Error, Result};
use crate::layout::{self, Layout};
use crate::platform::{self, Platform};
use crate::reference::Reference;

/// Media types of an image index / Docker manifest list (entries that need a platform choice).
const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The image store rooted at one directory (see the crate docs for the layout on disk).
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) root: PathBuf,
    pub(crate) layout: Layout,
    pub(crate) layers: PathBuf,
    pub(crate) containers: PathBuf,
    pub(crate) platform: Platform,
}

/// One image resolved from the store: its manifest and config.
#[derive(Debug, Clone)]
pub struct Image {
    /// The name it is stored under (a full reference).
    pub name: String,
    /// Digest of the (platform-specific) image manifest: the image's identity for pulls.
    pub manifest_digest: String,
    /// The manifest.
    pub manifest: ImageManifest,
    /// Digest of the config blob: the image ID `docker images` and `crictl` show.
    pub config_digest: String,
    /// The image config: Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts, StopSignal
    /// under `.config()`, and `rootfs.diff_ids`.
    pub config: ImageConfiguration,
}

impl Image {
    /// Compressed size: config plus layer blobs, as registries and `crictl images` count it.
    pub fn size(&self) -> u64 {
        self.manifest.config().size()
            + self
                .manifest
                .layers()
                .iter()
                .map(Descriptor::size)
                .sum::<u64>()
    }

    /// The uncompressed layer digests, lowest layer first.
    pub fn diff_ids(&self) -> &[String] {
        self.config.rootfs().diff_ids()
    }
}

/// One row of `podvisor images ls`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSummary {
    /// The stored name.
    pub name: String,
    /// Manifest digest.
    pub digest: String,
    /// Image ID (config digest).
    pub id: String,
    /// Compressed size in bytes.
    pub size: u64,
    /// True if a prepared container uses it.
    pub in_use: bool,
}

/// What [`Store::prune`] and [`Store::remove`] freed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneReport {
    /// Names removed from the index.
    pub images: Vec<String>,
    /// Blobs deleted.
    pub blobs: usize,
    /// Unpacked layer directories deleted.
    pub layers: usize,
}

/// An exclusive or shared `flock(2)` on one of the store's lock files, released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl Store {
    /// Opens (creating as needed) the store under `root`, cleaning up temporaries left by
    /// killed processes.
    pub fn open(root: &Path) -> Result<Self> {
        let layout = Layout::open(&root.join("images"))?;
        let layers = root.join("layers/sha256");
        let containers = root.join("containers");
        for dir in [&layers, &containers] {
            fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        }
        atomic::remove_stale_temps(&layers)?;
        Ok(Store {
            root: root.to_path_buf(),
            layout,
            layers,
            containers,
            platform: Platform::host(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OCI layout holding the images.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Where the layer with `diff_id` is (or will be) unpacked.
    pub fn layer_dir(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.layers.join(digest::hex_part(diff_id)?))
    }

    /// Takes the lock that serialises `index.json` updates.
    pub(crate) fn index_lock(&self) -> Result<StoreLock> {
        self.lock("images.lock", FlockOperation::LockExclusive)
    }

    /// Held shared by anything writing blobs or layers, exclusive by garbage collection, so
    /// GC never deletes what a concurrent pull or import is about to reference.
    pub(crate) fn gc_lock(&self, exclusive: bool) -> Result<StoreLock> {
        let op = if exclusive {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::LockShared
        };
        self.lock("gc.lock", op)
    }

    fn lock(&self, name: &str, op: FlockOperation) -> Result<StoreLock> {
        let path = self.root.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open lock", &path, e))?;
        flock(&file, op).map_err(|e| Error::io("lock", &path, e))?;
        Ok(StoreLock { _file: file })
    }

    /// Records `desc` (a manifest or index) under `name`, replacing any entry of that name.
    pub fn set_name(&self, name: &str, desc: &Descriptor) -> Result<()> {
        let _lock = self.index_lock()?;
        let mut index = self.layout.index()?;
        let mut entries: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| !same_name(layout::entry_name(d), name))
            .cloned()
            .collect();
        let mut desc = desc.clone();
        let mut ann = desc.annotations().clone().unwrap_or_default();
        ann.remove(layout::CONTAINERD_NAME);
        ann.insert(layout::REF_NAME.to_string(), name.to_string());
        desc.set_annotations(Some(ann));
        desc.set_platform(None);
        entries.push(desc);
        index.set_manifests(entries);
        self.layout.write_index(&index)
    }

    /// Finds an image by reference (normalised: `busybox` finds `docker.io/library/busybox:latest`),
    /// by `name@digest`, or by manifest or config digest (`sha256:...`).
    pub fn find(&self, wanted: &str) -> Result<Option<Image>> {
        let index = self.layout.index()?;
        let by_digest = wanted.starts_with("sha256:");
        let wanted_ref = if by_digest {
            None
        } else {
            Some(Reference::parse(wanted)?)
        };
        for entry in index.manifests() {
            let name = layout::entry_name(entry).unwrap_or_default().to_string();
            let entry_digest = entry.digest().to_string();
            let matches = match &wanted_ref {
                None => entry_digest == wanted,
                Some(r) => {
                    same_name(Some(&name), &r.to_string())
                        || (r.digest() == Some(entry_digest.as_str())
                            && Reference::parse(&name).is_ok_and(|n| n.name() == r.name()))
                }
            };
            if matches || by_digest {
                let image = self.load(&name, entry)?;
                if matches || image.manifest_digest == wanted || image.config_digest == wanted {
                    return Ok(Some(image));
                }
            }
        }
        Ok(None)
    }

    /// Like [`Store::find`] but a missing image is [`Error::NotFound`].
    pub fn resolve(&self, wanted: &str) -> Result<Image> {
        self.find(wanted)?
            .ok_or_else(|| Error::NotFound(wanted.to_string()))
    }

    /// Loads the manifest and config an index entry points to, choosing this platform's
    /// manifest when the entry is an index.
    pub(crate) fn load(&self, name: &str, entry: &Descriptor) -> Result<Image> {
        let mut desc = entry.clone();
        for _ in 0..4 {
            if !INDEX_TYPES.contains(&desc.media_type().to_string().as_str()) {
                break;
            }
            let index: ImageIndex = self.layout.read_json(desc.digest().as_ref())?;
            desc = platform::select(index.manifests(), &self.platform)
                .ok_or_else(|| {
                    Error::format(
                        format!("image {name}"),
                        format!("no manifest for {:?}", self.platform),
                    )
                })?
                .clone();
        }
        let manifest_digest = desc.digest().to_string();
        let manifest: ImageManifest = self.layout.read_json(&manifest_digest)?;
        let config_digest = manifest.config().digest().to_string();
        let config: ImageConfiguration = self.layout.read_json(&config_digest)?;
        if config.rootfs().diff_ids().len() != manifest.layers().len() {
            return Err(Error::format(
                format!("image {name}"),
                format!(
                    "{} layers but {} diff_ids",
                    manifest.layers().len(),
                    config.rootfs().diff_ids().len()
                ),
            ));
        }
        Ok(Image {
            name: name.to_string(),
            manifest_digest,
            manifest,
            config_digest,
            config,
        })
    }

    /// All images in the index, with whether a prepared container uses them.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let used = self.used_manifests()?;
        let mut out = Vec::new();
        for entry in self.layout.index()?.manifests() {
            let name = layout::entry_name(entry).unwrap_or("<unnamed>").to_string();
            let image = self.load(&name, entry)?;
            out.push(ImageSummary {
                in_use: used.contains(&image.manifest_digest),
                size: image.size(),
                name,
                digest: image.manifest_digest,
                id: image.config_digest,
            });
        }
        Ok(out)
    }

    /// Removes the image named `wanted` (refusing if a prepared container uses it), then
    /// deletes blobs and layers nothing references any more.
    pub fn remove(&self, wanted: &str) -> Result<PruneReport> {
        let image = self.resolve(wanted)?;
        if let Some(container) = self.user_of(&image.manifest_digest)? {
            return Err(Error::InUse {
                reference: image.name,
                container,
            });
        }
        {
            let _lock = self.index_lock()?;
            let mut index = self.layout.index()?;
            let entries: Vec<Descriptor> = index
                .manifests()
                .iter()
                .filter(|d| !same_name(layout::entry_name(d), &image.name))
                .cloned()
                .collect();
            index.set_manifests(entries);
            self.layout.write_index(&index)?;
        }
        let mut report = self.collect_garbage()?;
        report.images.push(image.name);
        Ok(report)
    }

    /// Removes every image no prepared container uses (like `crictl rmi --prune`), then
    /// unreferenced blobs and layers.
    pub fn prune(&self) -> Result<PruneReport> {
        let used = self.used_manifests()?;
        let mut removed = Vec::new();
        {
            let _lock = self.index_lock()?;
            let mut index = self.layout.index()?;
            let mut keep = Vec::new();
            for entry in index.manifests() {
                let name = layout::entry_name(entry).unwrap_or_default().to_string();
                match self.load(&name, entry) {
                    Ok(img) if used.contains(&img.manifest_digest) => keep.push(entry.clone()),
                    _ => removed.push(name),
                }
            }
            index.set_manifests(keep);
            self.layout.write_index(&index)?;
        }
        let mut report = self.collect_garbage()?;
        report.images = removed;
        Ok(report)
    }

    /// Deletes blobs not reachable from `index.json` and layer directories no image or
    /// container needs.
    pub fn collect_garbage(&self) -> Result<PruneReport> {
        let _gc = self.gc_lock(true)?;
        let mut blobs = HashSet::new();
        let mut layers = self.used_layers()?;
        for entry in self.layout.index()?.manifests() {
            self.mark(entry, &mut blobs, &mut layers);
        }
        let mut report = PruneReport::default();
        for blob in self.layout.blobs()? {
            if !blobs.contains(&blob) {
                self.layout.remove_blob(&blob)?;
                report.blobs += 1;
            }
        }
        for entry in fs::read_dir(&self.layers).map_err(|e| Error::io("list", &self.layers, e))? {
            let entry = entry.map_err(|e| Error::io("list", &self.layers, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if digest::hex_part(&format!("sha256:{name}")).is_ok()
                && !layers.contains(&format!("sha256:{name}"))
            {
                remove_tree(&entry.path())?;
                report.layers += 1;
            }
        }
        Ok(report)
    }

    /// Marks every blob reachable from `desc` and every diff_id of reachable configs.
    /// Unreadable blobs are skipped: GC must never fail because something is already gone.
    fn mark(&self, desc: &Descriptor, blobs: &mut HashSet<String>, layers: &mut HashSet<String>) {
        let digest = desc.digest().to_string();
        if !blobs.insert(digest.clone()) {
            return;
        }
        let Ok(bytes) = self.layout.read_blob(&digest) else {
            return;
        };
        if let Ok(index) = serde_json::from_slice::<ImageIndex>(&bytes) {
            for d in index.manifests() {
                self.mark(d, blobs, layers);
            }
        } else if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(&bytes) {
            blobs.insert(manifest.config().digest().to_string());
            blobs.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
            if let Ok(config) = self
                .layout
                .read_json::<ImageConfiguration>(manifest.config().digest().as_ref())
            {
                layers.extend(config.rootfs().diff_ids().iter().cloned());
            }
        }
    }
}

/// True if an index entry's name denotes the same image as `name` (both normalised).
fn same_name(entry: Option<&str>, name: &str) -> bool {
    let Some(entry) = entry else { return false };
    if entry == name {
        return true;
    }
    match (Reference::parse(entry), Reference::parse(name)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Removes a directory tree we own (layer or container directory).
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("remove directory", path, e))
        }
        _ => Ok(()),
    }
}
