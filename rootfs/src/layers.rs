//! Unpacked layers: `layers/sha256/<diff_id>/`, each made once and shared by every image and
//! container that has the layer.
//!
//! Missing layers of an image are unpacked in parallel (one thread per layer, at most the
//! number of CPUs) into temporary directories, each checked against its diff_id; then one
//! `syncfs(2)` makes them all durable and each is renamed into place. A crash at any point
//! leaves either no layer directory or a complete one (temporaries are removed on the next
//! open), never a partial layer under a final name.

use std::fs::{self, File};
use std::path::PathBuf;

use crate::atomic;
use crate::digest;
use crate::error::{Error, Result};
use crate::store::{Image, Store, remove_tree};
use crate::unpack;

/// A layer being unpacked: its blob, expected diff_id, final and temporary directories.
#[derive(Debug)]
struct Pending {
    blob: String,
    diff_id: String,
    dir: PathBuf,
    tmp: PathBuf,
}

impl Store {
    /// Unpacks every layer of `image` not yet unpacked and returns the layer directories,
    /// lowest first.
    pub fn ensure_layers(&self, image: &Image) -> Result<Vec<PathBuf>> {
        let _gc = self.gc_lock(false)?;
        let mut dirs = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut result = Ok(());
        for (desc, diff_id) in image.manifest.layers().iter().zip(image.diff_ids()) {
            let dir = self.layer_dir(diff_id)?;
            if !dir.is_dir() && !pending.iter().any(|p| p.dir == dir) {
                let tmp = atomic::temp_path(&self.layers, digest::hex_part(diff_id)?);
                if let Err(e) = fs::create_dir(&tmp) {
                    result = Err(Error::io("create layer directory", &tmp, e));
                    break;
                }
                pending.push(Pending {
                    blob: desc.digest().to_string(),
                    diff_id: diff_id.clone(),
                    dir: dir.clone(),
                    tmp,
                });
            }
            dirs.push(dir);
        }
        let result = result
            .and_then(|()| self.unpack_all(&pending))
            .and_then(|()| self.commit_layers(&pending));
        for p in &pending {
            let _ = remove_tree(&p.tmp);
        }
        result.map(|()| dirs)
    }

    /// Unpacks the pending layers into their temporaries, several at a time.
    fn unpack_all(&self, pending: &[Pending]) -> Result<()> {
        let width = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4);
        for chunk in pending.chunks(width) {
            let results: Vec<Result<()>> = std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|p| s.spawn(move || self.unpack_one(p)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(Error::format("layer unpack", "unpacking thread panicked"))
                        })
                    })
                    .collect()
            });
            results.into_iter().collect::<Result<Vec<()>>>()?;
        }
        Ok(())
    }

    fn unpack_one(&self, p: &Pending) -> Result<()> {
        let file = self.layout.open_blob(&p.blob)?;
        unpack::unpack_layer(file, &p.tmp, Some(&p.diff_id)).map(|_| ())
    }

    /// One syncfs for all new layers, then rename each into place.
    fn commit_layers(&self, pending: &[Pending]) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let d = File::open(&self.layers)
            .map_err(|e| Error::io("open layer directory", &self.layers, e))?;
        rustix::fs::syncfs(&d).map_err(|e| Error::io("syncfs", &self.layers, e))?;
        for p in pending {
            match fs::rename(&p.tmp, &p.dir) {
                // Another process unpacked the same layer first: theirs is as good as ours.
                Err(_) if p.dir.is_dir() => {}
                Err(e) => return Err(Error::io("rename layer into place", &p.dir, e)),
                Ok(()) => {}
            }
        }
        atomic::sync_parent(&self.layers.join("x"))
    }
}
