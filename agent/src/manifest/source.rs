//! The manifest source: which files in the manifest directory are manifests, listing the
//! directory (the truth; inotify is only a hint), and reading one file under the size cap.

use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::decode::MAX_MANIFEST_BYTES;
use super::error::ManifestError;

/// How a directory entry's name is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidate {
    /// `*.yaml`, `*.yml` or `*.json`: read it.
    Manifest,
    /// A dot file or an editor / package-manager leftover: silently ignored.
    Ignored,
    /// Any other name: ignored, with one warning (the kubelet would parse it).
    Unsupported,
}

/// Classifies a file name (STATIC-PODS.md §1).
pub fn classify(name: &str) -> Candidate {
    let leftover = name.starts_with('.')
        || name.ends_with('~')
        || [".swp", ".swx", ".bak", ".orig", ".tmp"]
            .iter()
            .any(|s| name.ends_with(s))
        || name.contains(".dpkg-")
        || name.contains(".rpm")
        || name == "4913";
    if leftover {
        Candidate::Ignored
    } else if [".yaml", ".yml", ".json"].iter().any(|s| name.ends_with(s)) {
        Candidate::Manifest
    } else {
        Candidate::Unsupported
    }
}

/// What one listing of the manifest path found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Manifest files, sorted.
    pub manifests: Vec<PathBuf>,
    /// Files with an unsupported name, sorted (to be warned about once).
    pub unsupported: Vec<PathBuf>,
    /// The path does not exist (no static pods).
    pub missing: bool,
}

/// Lists the manifest path: a directory (not recursive; symlinks followed) or one file.
pub fn list(path: &Path) -> io::Result<Listing> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Listing {
                missing: true,
                ..Listing::default()
            });
        }
        Err(e) => return Err(e),
    };
    let mut out = Listing::default();
    if meta.is_file() {
        out.manifests.push(path.to_owned());
        return Ok(out);
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Listing {
                missing: true,
                ..Listing::default()
            });
        }
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let kind = classify(name);
        if kind == Candidate::Ignored {
            continue;
        }
        let full = entry.path();
        // Follow symlinks; skip directories and anything that is gone already.
        match std::fs::metadata(&full) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {}
            Err(_) if kind == Candidate::Manifest => {} // dangling symlink: reported on read
            Err(_) => continue,
        }
        match kind {
            Candidate::Manifest => out.manifests.push(full),
            Candidate::Unsupported => out.unsupported.push(full),
            Candidate::Ignored => {}
        }
    }
    out.manifests.sort();
    out.unsupported.sort();
    Ok(out)
}

/// Identity of a file's content as far as `stat` can tell: re-read when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// The stamp of a path (symlinks followed).
pub fn stamp(path: &Path) -> io::Result<FileStamp> {
    let m = std::fs::metadata(path)?;
    Ok(FileStamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
    })
}

/// Reads a manifest file, refusing more than [`MAX_MANIFEST_BYTES`] without reading it all.
pub fn read_manifest(path: &Path) -> Result<Vec<u8>, ManifestError> {
    let read_err = |e: io::Error| ManifestError::Read {
        file: path.to_owned(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(read_err(io::Error::other("not a regular file")));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_MANIFEST_BYTES) as usize);
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            file: path.to_owned(),
            size: meta.len().max(bytes.len() as u64),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_names_as_the_design_says() {
        let table = [
            ("etcd.yaml", Candidate::Manifest),
            ("etcd.yml", Candidate::Manifest),
            ("etcd.json", Candidate::Manifest),
            (".etcd.yaml", Candidate::Ignored),
            (".etcd.yaml.swp", Candidate::Ignored),
            ("etcd.yaml~", Candidate::Ignored),
            ("etcd.yaml.swx", Candidate::Ignored),
            ("etcd.yaml.bak", Candidate::Ignored),
            ("etcd.yaml.orig", Candidate::Ignored),
            ("etcd.yaml.tmp", Candidate::Ignored),
            ("etcd.yaml.dpkg-new", Candidate::Ignored),
            ("etcd.yaml.rpmnew", Candidate::Ignored),
            ("4913", Candidate::Ignored),
            ("etcd.conf", Candidate::Unsupported),
            ("README", Candidate::Unsupported),
        ];
        for (name, want) in table {
            assert_eq!(classify(name), want, "{name}");
        }
    }
}
