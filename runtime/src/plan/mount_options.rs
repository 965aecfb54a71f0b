//! `mounts[].options` strings to `mount(2)` flags, propagation and filesystem data.

use serde::{Deserialize, Serialize};

const MS_RDONLY: u64 = libc::MS_RDONLY;
const MS_NOSUID: u64 = libc::MS_NOSUID;
const MS_NODEV: u64 = libc::MS_NODEV;
const MS_NOEXEC: u64 = libc::MS_NOEXEC;
const MS_SYNCHRONOUS: u64 = libc::MS_SYNCHRONOUS;
const MS_REMOUNT: u64 = libc::MS_REMOUNT;
const MS_MANDLOCK: u64 = libc::MS_MANDLOCK;
const MS_DIRSYNC: u64 = libc::MS_DIRSYNC;
const MS_NOATIME: u64 = libc::MS_NOATIME;
const MS_NODIRATIME: u64 = libc::MS_NODIRATIME;
const MS_BIND: u64 = libc::MS_BIND;
const MS_REC: u64 = libc::MS_REC;
const MS_SILENT: u64 = libc::MS_SILENT;
const MS_RELATIME: u64 = libc::MS_RELATIME;
const MS_STRICTATIME: u64 = libc::MS_STRICTATIME;
/// `MS_PRIVATE`.
pub const MS_PRIVATE: u64 = libc::MS_PRIVATE;
/// `MS_SLAVE`.
pub const MS_SLAVE: u64 = libc::MS_SLAVE;
/// `MS_SHARED`.
pub const MS_SHARED: u64 = libc::MS_SHARED;
const MS_UNBINDABLE: u64 = libc::MS_UNBINDABLE;

/// Parsed mount options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MountOptions {
    /// `MS_*` flags to pass to the mount (including `MS_BIND`/`MS_REC` for binds).
    pub flags: u64,
    /// Propagation changes to apply afterwards, in order (`MS_SHARED | MS_REC`, ...).
    pub propagation: Vec<u64>,
    /// Filesystem-specific data (`mode=755,size=65536k`).
    pub data: String,
}

impl MountOptions {
    /// A bind mount (`bind` or `rbind`).
    pub fn is_bind(&self) -> bool {
        self.flags & MS_BIND != 0
    }
}

/// Flags a bind mount only gets from a second, `MS_REMOUNT` call.
pub const REMOUNT_FLAGS: u64 = MS_RDONLY
    | MS_NOSUID
    | MS_NODEV
    | MS_NOEXEC
    | MS_NOATIME
    | MS_NODIRATIME
    | MS_RELATIME
    | MS_STRICTATIME;

/// Propagation flag for a propagation option name (`rslave` -> `MS_SLAVE | MS_REC`).
pub fn propagation_flag(name: &str) -> Option<u64> {
    Some(match name {
        "private" => MS_PRIVATE,
        "rprivate" => MS_PRIVATE | MS_REC,
        "shared" => MS_SHARED,
        "rshared" => MS_SHARED | MS_REC,
        "slave" => MS_SLAVE,
        "rslave" => MS_SLAVE | MS_REC,
        "unbindable" => MS_UNBINDABLE,
        "runbindable" => MS_UNBINDABLE | MS_REC,
        _ => return None,
    })
}

/// Parse `options`; unknown words become filesystem data, as mount(8) does. Options this
/// runtime cannot honour (`idmap`, recursive `rro`-style attributes, `tmpcopyup`) are an
/// error naming the option, never silently ignored.
pub fn parse_mount_options(options: &[String]) -> Result<MountOptions, String> {
    let mut out = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        let o = opt.as_str();
        let (set, clear) = match o {
            "defaults" => (0, 0),
            "ro" => (MS_RDONLY, 0),
            "rw" => (0, MS_RDONLY),
            "suid" => (0, MS_NOSUID),
            "nosuid" => (MS_NOSUID, 0),
            "dev" => (0, MS_NODEV),
            "nodev" => (MS_NODEV, 0),
            "exec" => (0, MS_NOEXEC),
            "noexec" => (MS_NOEXEC, 0),
            "sync" => (MS_SYNCHRONOUS, 0),
            "async" => (0, MS_SYNCHRONOUS),
            "dirsync" => (MS_DIRSYNC, 0),
            "remount" => (MS_REMOUNT, 0),
            "mand" => (MS_MANDLOCK, 0),
            "nomand" => (0, MS_MANDLOCK),
            "atime" => (0, MS_NOATIME),
            "noatime" => (MS_NOATIME, 0),
            "diratime" => (0, MS_NODIRATIME),
            "nodiratime" => (MS_NODIRATIME, 0),
            "relatime" => (MS_RELATIME, 0),
            "norelatime" => (0, MS_RELATIME),
            "strictatime" => (MS_STRICTATIME, 0),
            "nostrictatime" => (0, MS_STRICTATIME),
            "bind" => (MS_BIND, 0),
            "rbind" => (MS_BIND | MS_REC, 0),
            "silent" => (MS_SILENT, 0),
            "loud" => (0, MS_SILENT),
            "idmap" | "ridmap" | "tmpcopyup" | "rro" | "rrw" | "rnosuid" | "rsuid" | "rnodev"
            | "rdev" | "rnoexec" | "rexec" | "rnoatime" | "ratime" | "rrelatime"
            | "rnorelatime" | "rstrictatime" | "rnostrictatime" | "rnodiratime" | "rdiratime"
            | "rnosymfollow" | "rsymfollow" => {
                return Err(format!("mount option {o} is not supported by podvisor-oci"));
            }
            other => {
                if let Some(p) = propagation_flag(other) {
                    out.propagation.push(p);
                } else {
                    data.push(other);
                }
                continue;
            }
        };
        out.flags = (out.flags | set) & !clear;
    }
    out.data = data.join(",");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(opts: &[&str]) -> MountOptions {
        let v: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        parse_mount_options(&v).unwrap()
    }

    #[test]
    fn flags_data_and_propagation_are_separated() {
        let m = parse(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(m.flags, MS_NOSUID | MS_STRICTATIME);
        assert_eq!(m.data, "mode=755,size=65536k");
        assert!(m.propagation.is_empty());
        let m = parse(&["rbind", "ro", "rslave"]);
        assert_eq!(m.flags, MS_BIND | MS_REC | MS_RDONLY);
        assert_eq!(m.propagation, vec![MS_SLAVE | MS_REC]);
        assert!(m.is_bind());
    }

    #[test]
    fn later_options_override_earlier_ones() {
        assert_eq!(parse(&["ro", "rw"]).flags, 0);
        assert_eq!(parse(&["rw", "ro"]).flags, MS_RDONLY);
        assert_eq!(parse(&["nodev", "dev", "noexec"]).flags, MS_NOEXEC);
    }

    #[test]
    fn unsupported_options_are_refused_by_name() {
        let e = parse_mount_options(&["idmap".to_string()]).unwrap_err();
        assert!(e.contains("idmap"));
        assert!(parse_mount_options(&["rro".to_string()]).is_err());
    }
}
