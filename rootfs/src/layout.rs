//! An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`), the format the
//! store keeps its images in so that skopeo and umoci read podvisor's store and podvisor reads
//! theirs (image-spec `image-layout.md`).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex};

use crate::atomic::{self, TempFile};
use crate::digest::{self, HashingWriter};
use crate::error::{Error, Result};

/// The annotation that names an index entry (`docker.io/library/busybox:1.36`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation carrying the full name in exported OCI archives.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// One OCI image layout on disk.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// Opens the layout at `dir`, creating `oci-layout`, an empty `index.json` and
    /// `blobs/sha256` if they are missing, and removing temporaries left by killed writers.
    pub fn open(dir: &Path) -> Result<Self> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|e| Error::io("create blob directory", &blobs, e))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            atomic::write_file(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = dir.join("index.json");
        if !index.exists() {
            atomic::write_file(&index, br#"{"schemaVersion":2,"manifests":[]}"#)?;
        }
        atomic::remove_stale_temps(&blobs)?;
        atomic::remove_stale_temps(dir)?;
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    /// The layout's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob named `digest` lives (whether or not it exists yet).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self
            .dir
            .join("blobs/sha256")
            .join(digest::hex_part(digest)?))
    }

    /// True if the blob exists with the given size (a present blob is complete: blobs only
    /// appear by rename after verification).
    pub fn has_blob(&self, digest: &str, size: u64) -> Result<bool> {
        match fs::metadata(self.blob_path(digest)?) {
            Ok(m) => Ok(m.len() == size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("stat blob", self.blob_path(digest)?, e)),
        }
    }

    /// Streams `reader` into the store, hashing on the way. If `expected` is given the content
    /// must have that digest and size, otherwise nothing is stored. Returns `(digest, size)`.
    pub fn write_blob(
        &self,
        reader: &mut dyn Read,
        expected: Option<(&str, u64)>,
        what: &str,
    ) -> Result<(String, u64)> {
        if let Some((d, _)) = expected {
            digest::hex_part(d)?;
        }
        let blobs = self.dir.join("blobs/sha256");
        let mut tmp = TempFile::create_in(&blobs, "blob")?;
        let tmp_path = tmp.path().to_path_buf();
        let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp.file()));
        let copied = io::copy(reader, &mut w);
        let (mut buf, actual, size) = w.finish();
        copied.map_err(|e| Error::io("write blob", &tmp_path, e))?;
        buf.flush()
            .map_err(|e| Error::io("write blob", &tmp_path, e))?;
        drop(buf);
        if let Some((want, want_size)) = expected {
            if size != want_size {
                return Err(Error::SizeMismatch {
                    what: what.into(),
                    expected: want_size,
                    actual: size,
                });
            }
            digest::check(what, want, &actual)?;
        }
        tmp.commit(&self.blob_path(&actual)?)?;
        Ok((actual, size))
    }

    /// Stores `bytes` as a blob and returns its digest.
    pub fn write_blob_bytes(&self, bytes: &[u8]) -> Result<String> {
        Ok(self.write_blob(&mut &bytes[..], None, "blob")?.0)
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &str) -> Result<File> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|e| Error::io("open blob", path, e))
    }

    /// Reads a small blob (manifest, index, config) fully and verifies its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let bytes = fs::read(&path).map_err(|e| Error::io("read blob", &path, e))?;
        digest::check(
            format!("blob {}", path.display()),
            digest,
            &digest::sha256_of(&bytes),
        )?;
        Ok(bytes)
    }

    /// Reads and parses a JSON blob.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, digest: &str) -> Result<T> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::format(format!("blob {digest}"), e))
    }

    /// Reads `index.json`.
    pub fn index(&self) -> Result<ImageIndex> {
        let path = self.dir.join("index.json");
        let bytes = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::format(path.display().to_string(), e))
    }

    /// Replaces `index.json` atomically. Callers hold the store lock.
    pub fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let bytes = serde_json::to_vec(index).map_err(|e| Error::format("index.json", e))?;
        atomic::write_file(&self.dir.join("index.json"), &bytes)
    }

    /// Lists every blob digest present.
    pub fn blobs(&self) -> Result<Vec<String>> {
        let dir = self.dir.join("blobs/sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| Error::io("list", &dir, e))? {
            let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
            if let Some(name) = entry.file_name().to_str() {
                let d = format!("sha256:{name}");
                if digest::hex_part(&d).is_ok() {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// Removes a blob; a missing blob is not an error.
    pub fn remove_blob(&self, digest: &str) -> Result<()> {
        let path = self.blob_path(digest)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove blob", path, e)),
            _ => Ok(()),
        }
    }
}

/// The name an index entry carries: containerd's full-name annotation if present, else
/// `org.opencontainers.image.ref.name`.
pub fn entry_name(desc: &Descriptor) -> Option<&str> {
    let ann = desc.annotations().as_ref()?;
    ann.get(CONTAINERD_NAME)
        .or_else(|| ann.get(REF_NAME))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_with_wrong_digest_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let want = digest::sha256_of(b"expected");
        let err = layout
            .write_blob(&mut &b"tampered"[..], Some((&want, 8)), "layer")
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(layout.blobs().unwrap().is_empty());
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
        let err = layout
            .write_blob(&mut &b"expected"[..], Some((&want, 9)), "layer")
            .unwrap_err();
        assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
        let (d, n) = layout
            .write_blob(&mut &b"expected"[..], Some((&want, 8)), "layer")
            .unwrap();
        assert_eq!((d.as_str(), n), (want.as_str(), 8));
        assert!(layout.has_blob(&want, 8).unwrap());
        assert_eq!(layout.read_blob(&want).unwrap(), b"expected");
    }

    #[test]
    fn new_layout_is_a_valid_empty_oci_layout() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        assert!(layout.index().unwrap().manifests().is_empty());
        let marker = fs::read_to_string(dir.path().join("oci-layout")).unwrap();
        assert!(marker.contains("\"imageLayoutVersion\":\"1.0.0\""));
    }
}
