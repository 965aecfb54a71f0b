//! The state store: one JSON file per container, `<root>/<id>/state.json`, written
//! atomically (write to a temporary file, rename).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hooks::HookSpec;

/// What the runtime remembers about a container between invocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredState {
    /// Container id.
    pub id: String,
    /// Host pid of the container init (0 while creating).
    pub pid: i32,
    /// Start time of that pid (field 22 of `/proc/<pid>/stat`), to detect pid reuse.
    pub start_time: u64,
    /// Bundle directory (absolute).
    pub bundle: PathBuf,
    /// Root filesystem (absolute).
    pub rootfs: PathBuf,
    /// cgroup2 mount.
    pub cgroup_mount: PathBuf,
    /// cgroup relative to the mount.
    pub cgroup: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Spec annotations.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Namespaces created for the container (`NsKind::proc_name`), for exec.
    pub namespaces: Vec<String>,
    /// Owner uid (for `list`).
    pub owner: String,
    /// `hooks.poststart`, run by `start`.
    #[serde(default)]
    pub poststart: Vec<HookSpec>,
    /// `hooks.poststop`, run by `delete`.
    #[serde(default)]
    pub poststop: Vec<HookSpec>,
}

/// Directory of container `id` under `root`.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// Reject ids that are not a single path component.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::spec(
            "id",
            format!("{id:?} is not a valid container id"),
        ))
    }
}

/// Write `state` atomically.
pub fn save(root: &Path, state: &StoredState) -> Result<()> {
    let d = dir(root, &state.id);
    let tmp = d.join("state.json.tmp");
    let body = serde_json::to_vec(state)
        .map_err(|e| Error::io("encode", &tmp, std::io::Error::other(e)))?;
    fs::write(&tmp, body).map_err(|e| Error::io("write", &tmp, e))?;
    fs::rename(&tmp, d.join("state.json")).map_err(|e| Error::io("rename", d.join("state.json"), e))
}

/// Load the state of `id`.
pub fn load(root: &Path, id: &str) -> Result<StoredState> {
    check_id(id)?;
    let f = dir(root, id).join("state.json");
    let body = match fs::read(&f) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound(id.to_string()));
        }
        Err(e) => return Err(Error::io("read", f, e)),
    };
    serde_json::from_slice(&body).map_err(|e| Error::io("decode", f, std::io::Error::other(e)))
}

/// Ids of all containers under `root`, sorted.
pub fn list(root: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", root, e)),
    };
    let mut ids: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("state.json").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Start time of `pid` (field 22 of `/proc/<pid>/stat`) and whether it is a zombie.
pub fn proc_start_time(pid: i32) -> Option<(u64, bool)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s)
}

/// Parse `/proc/<pid>/stat`: (start time, zombie). The command name may contain spaces and
/// parentheses, so fields are counted after the last `)`.
pub fn parse_stat(s: &str) -> Option<(u64, bool)> {
    let rest = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let zombie = matches!(fields.first(), Some(&"Z") | Some(&"X"));
    Some((fields.get(19)?.parse().ok()?, zombie))
}

/// Now as RFC 3339 UTC (seconds precision, no date crate needed).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let line = "42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(parse_stat(line), Some((123_456, false)));
        let z = "7 (x) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0";
        assert_eq!(parse_stat(z), Some((99, true)));
    }

    #[test]
    fn ids_are_single_components() {
        assert!(check_id("etcd-1_a.b").is_ok());
        for bad in ["", "..", "a/b", "x y"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn state_round_trips_atomically() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("c1")).unwrap();
        let s = StoredState {
            id: "c1".into(),
            pid: 5,
            start_time: 9,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            cgroup_mount: "/sys/fs/cgroup".into(),
            cgroup: "podvisor/c1".into(),
            created: now_rfc3339(),
            annotations: Default::default(),
            namespaces: vec!["pid".into()],
            owner: "root".into(),
            poststart: Vec::new(),
            poststop: Vec::new(),
        };
        save(d.path(), &s).unwrap();
        assert_eq!(load(d.path(), "c1").unwrap(), s);
        assert_eq!(list(d.path()).unwrap(), vec!["c1".to_string()]);
        assert!(matches!(load(d.path(), "nope"), Err(Error::NotFound(_))));
    }
}
