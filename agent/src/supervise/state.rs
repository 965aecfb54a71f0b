//! Per-pod state on disk: `<state>/pods/<uid>/state.json` (written by the agent) and
//! `<state>/pods/<uid>/exits/` (one file per exit, written by the shim).
//!
//! Every file is written atomically: a temporary file in the same directory, `fsync(2)`,
//! `rename(2)` over the target, then `fsync` of the directory, so a crash leaves either
//! the old or the new content, never a mix. Reading tolerates a missing file (no state
//! yet) and reports an unreadable one distinctly, so the caller can start fresh instead
//! of failing. The shim writes exits to separate files so that agent and shim never write
//! the same file: the agent applies an exit to `state.json`, then removes its file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::clock::serde_rfc3339;
use super::exit::ExitRecord;
use super::record::ContainerRecord;

/// An exit file not yet applied: its path (to remove once applied) and content.
pub type PendingExit = (PathBuf, ExitRecord);

/// The `state.json` schema version this code writes.
pub const STATE_VERSION: u32 = 1;

/// An error reading or writing pod state; names the file and keeps the errno.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A filesystem step failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file exists but is not valid state (truncated by a disk fault, or foreign).
    #[error("parse {path}: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The file was written by a newer podvisor.
    #[error("{path}: state version {found} is newer than {STATE_VERSION}")]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Everything the agent persists about one pod between its own restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodState {
    /// Schema version ([`STATE_VERSION`]).
    pub version: u32,
    /// The pod's UID (also the directory name).
    pub uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The manifest the pod came from.
    #[serde(default)]
    pub manifest: Option<PathBuf>,
    /// The shim's pid while it lives.
    #[serde(default)]
    pub shim_pid: Option<i32>,
    /// When the agent started working on the pod (`status.startTime`).
    #[serde(with = "serde_rfc3339")]
    pub start_time: SystemTime,
    /// One record per container, init containers first.
    #[serde(default)]
    pub containers: Vec<ContainerRecord>,
}

/// The directory layout of one pod under the state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodStateDir(PathBuf);

impl PodStateDir {
    /// `<state>/pods/<uid>`.
    pub fn new(state_root: &Path, uid: &str) -> Self {
        Self(state_root.join("pods").join(uid))
    }

    /// The pod's directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.0.join("state.json")
    }

    /// The shim's socket.
    pub fn shim_socket(&self) -> PathBuf {
        self.0.join("shim.sock")
    }

    /// The directory of exit records.
    pub fn exits_dir(&self) -> PathBuf {
        self.0.join("exits")
    }

    /// Writes `state.json` atomically (creating the directory).
    pub fn save(&self, state: &PodState) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(state).map_err(|source| StateError::Corrupt {
            path: self.state_file(),
            source,
        })?;
        write_atomic(&self.state_file(), &json)
    }

    /// Reads `state.json`: `Ok(None)` when there is none yet.
    pub fn load(&self) -> Result<Option<PodState>, StateError> {
        let path = self.state_file();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let state: PodState =
            serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: path.clone(),
                source,
            })?;
        if state.version > STATE_VERSION {
            return Err(StateError::TooNew {
                path,
                found: state.version,
            });
        }
        Ok(Some(state))
    }

    /// Records one exit (the shim's side): `exits/<container>.<attempt>.json`, atomically.
    pub fn record_exit(&self, exit: &ExitRecord) -> Result<PathBuf, StateError> {
        let path = self
            .exits_dir()
            .join(format!("{}.{}.json", exit.container, exit.attempt));
        let json = serde_json::to_vec(exit).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &json)?;
        Ok(path)
    }

    /// Exits recorded and not yet applied, oldest first; unreadable files are returned as
    /// errors beside the good ones (a disk fault must not hide the other exits).
    pub fn pending_exits(&self) -> Result<(Vec<PendingExit>, Vec<StateError>), StateError> {
        let dir = self.exits_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for entry in entries {
            let path = entry.map_err(io_err("list", &dir))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue; // a temporary file of an interrupted write
            }
            match fs::read(&path) {
                Ok(bytes) => match serde_json::from_slice::<ExitRecord>(&bytes) {
                    Ok(exit) => good.push((path, exit)),
                    Err(source) => bad.push(StateError::Corrupt { path, source }),
                },
                Err(e) => bad.push(io_err("read", &path)(e)),
            }
        }
        good.sort_by_key(|(_, e)| e.finished_at);
        Ok((good, bad))
    }

    /// Removes an applied exit file (missing is fine: applying is idempotent).
    pub fn remove_exit(&self, path: &Path) -> Result<(), StateError> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
            _ => Ok(()),
        }
    }

    /// Removes the pod's whole state directory (the pod is gone).
    pub fn remove(&self) -> Result<(), StateError> {
        match fs::remove_dir_all(&self.0) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &self.0)(e)),
            _ => Ok(()),
        }
    }
}

/// The UIDs that have a directory under `<state>/pods` (for re-adoption and cleanup).
pub fn pod_uids(state_root: &Path) -> Result<Vec<String>, StateError> {
    let dir = state_root.join("pods");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", &dir)(e)),
    };
    let mut uids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", &dir))?;
        if entry
            .file_type()
            .map_err(io_err("stat", &entry.path()))?
            .is_dir()
            && let Some(name) = entry.file_name().to_str()
        {
            uids.push(name.to_string());
        }
    }
    uids.sort();
    Ok(uids)
}

/// Writes `data` to `path` atomically and durably: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(data).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync directory", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::supervise::exit::ExitStatus;
    use crate::supervise::policy::ContainerKind;

    fn state(uid: &str) -> PodState {
        let mut c = ContainerRecord::new("app", ContainerKind::Regular);
        c.started(
            42,
            UNIX_EPOCH + Duration::from_secs(1_700_000_001),
            Some("podvisor://x".into()),
        );
        PodState {
            version: STATE_VERSION,
            uid: uid.into(),
            namespace: "default".into(),
            name: "web-node1".into(),
            manifest: Some("/etc/kubernetes/manifests/web.yaml".into()),
            shim_pid: Some(7),
            start_time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            containers: vec![c],
        }
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PodStateDir::new(tmp.path(), "u1");
        assert_eq!(dir.load().unwrap(), None, "missing file is no state");
        dir.save(&state("u1")).unwrap();
        let mut s = state("u1");
        s.containers[0].restart_count = 3;
        dir.save(&s).unwrap();
        assert_eq!(dir.load().unwrap(), Some(s));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["state.json"]);
        assert_eq!(pod_uids(tmp.path()).unwrap(), vec!["u1"]);
        dir.remove().unwrap();
        assert!(pod_uids(tmp.path()).unwrap().is_empty());
    }

    #[test]
    fn truncated_or_newer_state_is_reported_not_panicked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PodStateDir::new(tmp.path(), "u1");
        dir.save(&state("u1")).unwrap();
        let full = fs::read(dir.state_file()).unwrap();
        fs::write(dir.state_file(), &full[..full.len() / 2]).unwrap();
        assert!(matches!(dir.load(), Err(StateError::Corrupt { .. })));
        let mut newer = state("u1");
        newer.version = STATE_VERSION + 1;
        fs::write(dir.state_file(), serde_json::to_vec(&newer).unwrap()).unwrap();
        let err = dir.load().unwrap_err();
        assert!(matches!(err, StateError::TooNew { found: 2, .. }), "{err}");
        assert!(err.to_string().contains("state.json"));
    }

    #[test]
    fn exits_are_recorded_listed_in_order_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PodStateDir::new(tmp.path(), "u1");
        let exit = |c: &str, attempt: u32, fin: u64| ExitRecord {
            container: c.into(),
            attempt,
            pid: 100 + attempt as i32,
            started_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            finished_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + fin),
            status: ExitStatus::Code(1),
            oom_killed: false,
        };
        dir.record_exit(&exit("b", 0, 9)).unwrap();
        dir.record_exit(&exit("a", 3, 5)).unwrap();
        fs::write(dir.exits_dir().join("c.0.json"), b"{\"container\":").unwrap();
        fs::write(dir.exits_dir().join(".d.0.json.1.tmp"), b"junk").unwrap();
        let (good, bad) = dir.pending_exits().unwrap();
        let order: Vec<_> = good
            .iter()
            .map(|(_, e)| (e.container.as_str(), e.attempt))
            .collect();
        assert_eq!(order, vec![("a", 3), ("b", 0)]);
        assert_eq!(bad.len(), 1, "the torn exit file is reported");
        for (path, _) in &good {
            dir.remove_exit(path).unwrap();
            dir.remove_exit(path).unwrap();
        }
        assert!(dir.pending_exits().unwrap().0.is_empty());
    }
}
