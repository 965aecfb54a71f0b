//! Partially downloaded blobs, kept across attempts and processes so that an interrupted pull
//! resumes with an HTTP `Range` request instead of starting over.
//!
//! `blobs/sha256/.partial-<hex>` is locked (`flock`) by the one process extending it; its
//! bytes are hashed again when reopened, so the final digest check covers all of them. Only
//! a complete, verified blob is renamed to its digest. Partials nobody holds are removed by
//! garbage collection.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use rustix::fs::{FlockOperation, flock};
use sha2::{Digest as _, Sha256};

use crate::atomic;
use crate::digest;
use crate::error::{Error, Result};
use crate::layout::Layout;

const PREFIX: &str = ".partial-";
const BUF: usize = 256 * 1024;

/// A blob being downloaded: the bytes so far, on disk and hashed.
#[derive(Debug)]
pub struct PartialBlob {
    file: File,
    path: PathBuf,
    hasher: Sha256,
    len: u64,
    digest: String,
    size: u64,
}

impl Layout {
    /// Opens (or creates) the partial download of `digest`, waiting for any other process
    /// extending it, and hashes what is already there. Content longer than `size` is dropped.
    pub fn partial(&self, digest: &str, size: u64) -> Result<PartialBlob> {
        let path = self
            .dir()
            .join("blobs/sha256")
            .join(format!("{PREFIX}{}", digest::hex_part(digest)?));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open partial blob", &path, e))?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| Error::io("lock partial blob", &path, e))?;
        let mut part = PartialBlob {
            file,
            path,
            hasher: Sha256::new(),
            len: 0,
            digest: digest.into(),
            size,
        };
        let existing = part
            .file
            .metadata()
            .map_err(|e| Error::io("stat partial blob", &part.path, e))?
            .len();
        if existing > size {
            part.restart()?;
        } else {
            let mut buf = vec![0u8; BUF];
            loop {
                let n = part
                    .file
                    .read(&mut buf)
                    .map_err(|e| Error::io("read partial blob", &part.path, e))?;
                if n == 0 {
                    break;
                }
                part.hasher.update(&buf[..n]);
                part.len += n as u64;
            }
        }
        Ok(part)
    }

    /// Removes partial downloads no process holds.
    pub fn remove_abandoned_partials(&self) -> Result<usize> {
        let dir = self.dir().join("blobs/sha256");
        let mut removed = 0;
        for entry in fs::read_dir(&dir).map_err(|e| Error::io("list", &dir, e))? {
            let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
            if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
                continue;
            }
            let Ok(f) = File::open(entry.path()) else {
                continue;
            };
            if flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok() {
                fs::remove_file(entry.path())
                    .map_err(|e| Error::io("remove partial blob", entry.path(), e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl PartialBlob {
    /// Bytes already present: where the next request should start.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing has been downloaded yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops what was downloaded (the server ignored the range, or the content was wrong).
    pub fn restart(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .map_err(|e| Error::io("truncate partial blob", &self.path, e))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("seek partial blob", &self.path, e))?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    /// Appends everything `reader` yields. Bytes written before an error stay (and are
    /// counted), so the next attempt resumes after them.
    pub fn append(&mut self, reader: &mut dyn Read) -> Result<()> {
        self.file
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io("seek partial blob", &self.path, e))?;
        let mut buf = vec![0u8; BUF];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("download blob", &self.path, e)),
            };
            self.file
                .write_all(&buf[..n])
                .map_err(|e| Error::io("write partial blob", &self.path, e))?;
            self.hasher.update(&buf[..n]);
            self.len += n as u64;
            if self.len > self.size {
                return Err(Error::SizeMismatch {
                    what: format!("blob {}", self.digest),
                    expected: self.size,
                    actual: self.len,
                });
            }
        }
    }

    /// Verifies size and digest; on success the blob is renamed into the layout durably, on
    /// failure the partial is deleted and the mismatch returned.
    pub fn commit(self, layout: &Layout, what: &str) -> Result<()> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        let check = if self.len != self.size {
            Err(Error::SizeMismatch {
                what: what.into(),
                expected: self.size,
                actual: self.len,
            })
        } else {
            digest::check(what, &self.digest, &actual)
        };
        if let Err(e) = check {
            let _ = fs::remove_file(&self.path);
            return Err(e);
        }
        self.file
            .sync_all()
            .map_err(|e| Error::io("fsync", &self.path, e))?;
        let dest = layout.blob_path(&self.digest)?;
        fs::rename(&self.path, &dest).map_err(|e| Error::io("rename blob into place", &dest, e))?;
        atomic::sync_parent(&dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_resumes_and_commits_only_when_complete_and_correct() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let data = b"0123456789abcdef";
        let d = digest::sha256_of(data);
        {
            let mut p = layout.partial(&d, 16).unwrap();
            p.append(&mut &data[..6]).unwrap();
        }
        let mut p = layout.partial(&d, 16).unwrap();
        assert_eq!(p.len(), 6, "resumes after the bytes already there");
        p.append(&mut &data[6..]).unwrap();
        p.commit(&layout, "blob").unwrap();
        assert_eq!(layout.read_blob(&d).unwrap(), data);

        let d2 = digest::sha256_of(b"expected content");
        let mut p = layout.partial(&d2, 16).unwrap();
        p.append(&mut &b"tampered content"[..]).unwrap();
        assert!(matches!(
            p.commit(&layout, "blob"),
            Err(Error::DigestMismatch { .. })
        ));
        assert_eq!(
            layout.partial(&d2, 16).unwrap().len(),
            0,
            "a wrong partial is discarded"
        );
        assert_eq!(layout.remove_abandoned_partials().unwrap(), 1);
        assert_eq!(layout.blobs().unwrap(), vec![d]);
    }
}
