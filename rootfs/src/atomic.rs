//! Crash-safe file creation: write to a temporary name, fsync, rename, fsync the directory.
//!
//! Temporary names carry the writer's pid (`.tmp-<pid>-<n>-<name>`), so that leftovers of a
//! killed writer can be recognised and removed by [`remove_stale_temps`] while live writers'
//! files are left alone.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);
const TEMP_PREFIX: &str = ".tmp-";

/// A file being written under a temporary name next to its final place.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: File,
}

impl TempFile {
    /// Creates a fresh temporary file in `dir`; `hint` only makes the name readable.
    pub fn create_in(dir: &Path, hint: &str) -> Result<Self> {
        let path = temp_path(dir, hint);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create temporary file", &path, e))?;
        Ok(TempFile { path, file })
    }

    /// The open file to write into.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The temporary path (for error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// fsyncs the data, renames it to `dest` (replacing it) and fsyncs the directory, so that
    /// after a crash `dest` is either the old or the complete new content.
    pub fn commit(self, dest: &Path) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| Error::io("fsync", &self.path, e))?;
        fs::rename(&self.path, dest).map_err(|e| Error::io("rename into place", dest, e))?;
        sync_parent(dest)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // After a successful commit the path no longer exists and this is a no-op.
        let _ = fs::remove_file(&self.path);
    }
}

/// A temporary path in `dir` unique to this process.
pub fn temp_path(dir: &Path, hint: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TEMP_PREFIX}{}-{n}-{hint}", std::process::id()))
}

/// Writes `bytes` to `dest` atomically.
pub fn write_file(dest: &Path, bytes: &[u8]) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let mut tmp = TempFile::create_in(dir, "write")?;
    tmp.file()
        .write_all(bytes)
        .map_err(|e| Error::io("write", dest, e))?;
    tmp.commit(dest)
}

/// Writes `bytes` to `dest` atomically for readers (a temporary file renamed into place: a
/// reader sees the old or the complete new content) but without fsync: for records whose
/// meaning does not survive a machine crash anyway, so that writing them costs no disk
/// flush in a latency-critical path. After a crash such a file may be missing or empty;
/// its readers must treat that as "no record".
pub fn replace_file(dest: &Path, bytes: &[u8]) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let mut tmp = TempFile::create_in(dir, "write")?;
    tmp.file()
        .write_all(bytes)
        .map_err(|e| Error::io("write", dest, e))?;
    fs::rename(&tmp.path, dest).map_err(|e| Error::io("rename into place", dest, e))
}

/// fsyncs the directory containing `path`, making a rename or creation in it durable.
pub fn sync_parent(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Removes `.tmp-<pid>-*` entries in `dir` whose writer process no longer exists: what a
/// kill -9 during an import, pull or unpack leaves behind.
pub fn remove_stale_temps(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("list directory", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list directory", dir, e))?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let path = entry.path();
        let res = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        res.map_err(|e| Error::io("remove stale temporary", &path, e))?;
    }
    Ok(())
}

/// The pid in a temporary name, or `None` if `name` is not one of ours.
fn temp_owner(name: &str) -> Option<u32> {
    name.strip_prefix(TEMP_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_owner_reads_pid_only_from_our_names() {
        assert_eq!(temp_owner(".tmp-123-4-blob"), Some(123));
        assert_eq!(temp_owner("sha256"), None);
        assert_eq!(temp_owner(".tmp-x-1"), None);
    }

    #[test]
    fn stale_temps_of_dead_writers_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".tmp-999999999-0-blob");
        fs::write(&dead, b"partial").unwrap();
        let live = temp_path(dir.path(), "live");
        fs::write(&live, b"in progress").unwrap();
        let other = dir.path().join("keep");
        fs::write(&other, b"x").unwrap();
        remove_stale_temps(dir.path()).unwrap();
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(other.exists());
    }

    #[test]
    fn uncommitted_temp_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut t = TempFile::create_in(dir.path(), "x").unwrap();
            t.file().write_all(b"abc").unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        write_file(&dir.path().join("f"), b"done").unwrap();
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"done");
    }
}
