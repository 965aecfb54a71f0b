//! Where container logs live and how a log file is appended to and rotated by size.
//!
//! Layout (the kubelet's): `<log-dir>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`.
//! Rotation follows the kubelet's container log manager: when the current file would
//! exceed `max_size`, it is renamed to `<n>.log.<YYYYMMDD-HHMMSS>` (UTC) and a new `<n>.log`
//! is opened; the oldest rotated files of that container are deleted so that at most
//! `max_files` files (current included) remain. Unlike the kubelet, rotated files are not
//! gzip-compressed, so `podvisor logs` and shippers can read them as they are.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Size-based rotation limits (kubelet: `containerLogMaxSize` 10 MiB, `containerLogMaxFiles` 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotateConfig {
    /// Rotate before a write would make the current file larger than this.
    pub max_size: u64,
    /// Files kept per container and restart count, the current one included (at least 2).
    pub max_files: usize,
}

impl Default for RotateConfig {
    fn default() -> Self {
        Self {
            max_size: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// An error touching a log file; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    /// Creating, opening, writing or renaming a log file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LogFileError + 'a {
    move |source| LogFileError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The log directory of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLogDir(PathBuf);

impl PodLogDir {
    /// `<log_root>/<namespace>_<name>_<uid>`.
    pub fn new(log_root: &Path, namespace: &str, name: &str, uid: &str) -> Self {
        Self(log_root.join(format!("{namespace}_{name}_{uid}")))
    }

    /// A pod log directory at a known path.
    pub fn from_path(path: PathBuf) -> Self {
        Self(path)
    }

    /// The pod's directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The directory of one container's logs.
    pub fn container_dir(&self, container: &str) -> PathBuf {
        self.0.join(container)
    }

    /// The current log file of a container's run number `restart_count`.
    pub fn log_path(&self, container: &str, restart_count: u32) -> PathBuf {
        self.container_dir(container)
            .join(format!("{restart_count}.log"))
    }
}

/// The restart counts that have a `<n>.log` in `container_dir`, ascending.
pub fn attempts(container_dir: &Path) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(container_dir)? {
        let name = entry?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The rotated files of `current` (`<n>.log.<stamp>`), oldest first.
pub fn rotated_files(current: &Path) -> io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (
        current.parent(),
        current.file_name().and_then(|n| n.to_str()),
    ) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(stamp) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
        {
            found.push((sort_key(stamp), entry.path()));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// `20060102-150405` or `20060102-150405.<k>` (same-second rotations) to a sortable key.
fn sort_key(stamp: &str) -> String {
    match stamp.split_once('.') {
        Some((time, k)) => format!("{time}.{:010}", k.parse::<u64>().unwrap_or(0)),
        None => format!("{stamp}.{:010}", 0),
    }
}

/// An open, appendable log file of one container run, rotated by size.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    config: RotateConfig,
}

impl LogFile {
    /// Opens (creating directories and the file) `path` for appending.
    pub fn open(path: PathBuf, config: RotateConfig) -> Result<Self, LogFileError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err("create log directory", dir))?;
        }
        let file = open_append(&path)?;
        let size = file
            .metadata()
            .map_err(io_err("stat log file", &path))?
            .len();
        Ok(Self {
            path,
            file,
            size,
            config,
        })
    }

    /// The current file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends whole entries (newline-terminated), rotating whenever the next entries would
    /// not fit, so no file exceeds `max_size` unless one entry alone does. Each file gets
    /// one `write(2)` per call where possible, so readers never see half an entry. `now`
    /// names a rotated file.
    pub fn append(&mut self, entries: &[u8], now: SystemTime) -> Result<(), LogFileError> {
        let mut rest = entries;
        while !rest.is_empty() {
            let room = self.config.max_size.saturating_sub(self.size);
            let fits = whole_entries_within(rest, room);
            let take = match fits {
                0 if self.size > 0 => {
                    self.rotate(now)?;
                    continue;
                }
                // An entry larger than a whole file goes alone into a fresh file.
                0 => rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |p| p + 1),
                n => n,
            };
            self.file
                .write_all(&rest[..take])
                .map_err(io_err("write log file", &self.path))?;
            self.size += take as u64;
            rest = &rest[take..];
        }
        Ok(())
    }

    /// Renames the current file aside, opens a new one and prunes the oldest rotated files.
    pub fn rotate(&mut self, now: SystemTime) -> Result<(), LogFileError> {
        let stamp = rotation_stamp(now);
        // Same-second rotations get a counter above every existing one for that second
        // (never reuse a pruned name: it would sort as the oldest).
        let existing =
            rotated_files(&self.path).map_err(io_err("list rotated logs of", &self.path))?;
        let prefix = format!("{}.{stamp}", self.path.display());
        let taken = existing
            .iter()
            .filter_map(|p| {
                p.to_str()?
                    .strip_prefix(&prefix)
                    .map(|rest| rest.trim_start_matches('.').parse::<u64>().unwrap_or(0) + 1)
            })
            .max();
        let target = match taken {
            None => PathBuf::from(&prefix),
            Some(k) => PathBuf::from(format!("{prefix}.{k}")),
        };
        fs::rename(&self.path, &target).map_err(io_err("rotate log file", &self.path))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        let rotated =
            rotated_files(&self.path).map_err(io_err("list rotated logs of", &self.path))?;
        let keep = self.config.max_files.max(2) - 1;
        for old in rotated.iter().take(rotated.len().saturating_sub(keep)) {
            fs::remove_file(old).map_err(io_err("remove old log file", old))?;
        }
        Ok(())
    }
}

/// Length of the longest prefix of `data` made of whole entries and at most `room` bytes.
fn whole_entries_within(data: &[u8], room: u64) -> usize {
    let limit = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
    if limit == data.len() {
        return limit;
    }
    data[..limit]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1)
}

fn open_append(path: &Path) -> Result<File, LogFileError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err("open log file", path))
}

/// `YYYYMMDD-HHMMSS` in UTC, the kubelet's rotation suffix.
fn rotation_stamp(now: SystemTime) -> String {
    // Reuse the CRI timestamp: "2006-01-02T15:04:05.000000000Z".
    let ts = super::format::timestamp(now);
    let digits: String = ts[..19].chars().filter(char::is_ascii_digit).collect();
    format!("{}-{}", &digits[..8], &digits[8..14])
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn paths_follow_kubelet_layout() {
        let d = PodLogDir::new(
            Path::new("/var/log/pods"),
            "kube-system",
            "etcd-node1",
            "abc",
        );
        assert_eq!(
            d.log_path("etcd", 3),
            Path::new("/var/log/pods/kube-system_etcd-node1_abc/etcd/3.log")
        );
        assert_eq!(
            rotation_stamp(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "20231114-221320"
        );
    }

    #[test]
    fn rotation_keeps_max_files_and_never_splits_an_append() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c/0.log");
        let config = RotateConfig {
            max_size: 100,
            max_files: 3,
        };
        let mut f = LogFile::open(path.clone(), config).unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let chunk = [b'x'; 39];
        let mut chunk = chunk.to_vec();
        chunk.push(b'\n');
        for i in 0..10u64 {
            f.append(&chunk, t0 + Duration::from_millis(i * 300))
                .unwrap();
        }
        // 40-byte appends, 100-byte files: 2 appends per file.
        assert_eq!(fs::metadata(&path).unwrap().len(), 80);
        let rotated = rotated_files(&path).unwrap();
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        for r in &rotated {
            assert_eq!(fs::metadata(r).unwrap().len(), 80, "{r:?}");
        }
        // Names carry the rotation time; same-second rotations get a counter, order kept.
        let names: Vec<String> = rotated
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| n.starts_with("0.log.20231114-2213")),
            "{names:?}"
        );
        assert_eq!(attempts(&tmp.path().join("c")).unwrap(), vec![0]);
    }

    #[test]
    fn oversized_append_goes_whole_into_a_fresh_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("1.log");
        let mut f = LogFile::open(
            path.clone(),
            RotateConfig {
                max_size: 10,
                max_files: 5,
            },
        )
        .unwrap();
        f.append(b"small\n", UNIX_EPOCH).unwrap();
        f.append(b"much longer than ten\n", UNIX_EPOCH).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"much longer than ten\n");
        assert_eq!(rotated_files(&path).unwrap().len(), 1);
    }

    #[test]
    fn reopening_appends_to_existing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("0.log");
        LogFile::open(path.clone(), RotateConfig::default())
            .unwrap()
            .append(b"a\n", UNIX_EPOCH)
            .unwrap();
        LogFile::open(path.clone(), RotateConfig::default())
            .unwrap()
            .append(b"b\n", UNIX_EPOCH)
            .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"a\nb\n");
    }
}
