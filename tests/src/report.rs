//! The probe's report: what a process sees from inside its container, as one JSON document,
//! and the pure parsers that turn `/proc` text (mountinfo, status, namespace links) into it.
//!
//! The probe binary fills a [`Report`]; the privileged suite and the crun comparison read it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything the in-container probe observed, serialised as JSON on its stdout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The probe's pid as seen in its own pid namespace (1 when it is the container's init).
    pub pid: u32,
    /// `argv` the probe was started with.
    pub args: Vec<String>,
    /// Namespace kind (`net`, `mnt`, `pid`, ...) → inode number of `/proc/self/ns/<kind>`.
    pub namespaces: BTreeMap<String, u64>,
    /// `/proc/self/mountinfo`, parsed.
    pub mounts: Vec<MountEntry>,
    /// Identity, capabilities, no_new_privs and seccomp mode from `/proc/self/status`.
    pub status: ProcStatus,
    /// Resource name (`RLIMIT_NOFILE`) → limits (`None` is unlimited).
    pub rlimits: BTreeMap<String, Rlimit>,
    /// Outcome of the syscalls the test seccomp profile targets, by a descriptive name.
    pub syscalls: BTreeMap<String, SyscallOutcome>,
    /// Current working directory.
    pub cwd: String,
    /// Environment as `KEY=value`, sorted.
    pub env: Vec<String>,
    /// `uname(2)` nodename.
    pub hostname: String,
    /// `uname(2)` domainname.
    pub domainname: String,
    /// Lines of `/proc/self/cgroup`.
    pub cgroup: Vec<String>,
    /// `/proc/self/oom_score_adj`.
    pub oom_score_adj: i32,
    /// `/proc/self/uid_map`, whitespace-normalised lines.
    pub uid_map: Vec<String>,
    /// `/proc/self/gid_map`, whitespace-normalised lines.
    pub gid_map: Vec<String>,
    /// Entries of `/dev` and `/dev/pts` by path.
    pub devices: BTreeMap<String, FileEntry>,
    /// Paths asked for with `--path`: existence and what reading them gives.
    pub paths: BTreeMap<String, PathProbe>,
    /// Paths asked for with `--write`: the errno of opening them for writing (0 = it worked).
    pub writes: BTreeMap<String, i32>,
    /// Files asked for with `--read`: their contents, trimmed (or `errno N`).
    pub files: BTreeMap<String, String>,
    /// With `--escape`: the mount table as seen from the top of the mount tree after the
    /// classic chroot escape (see the probe), or why the escape failed. After pivot_root and
    /// unmounting the old root, the host's root mount is not in it; after a chroot (or
    /// `MS_MOVE` + chroot) it is.
    pub escape: Option<Result<Vec<MountEntry>, String>>,
}

/// One line of `/proc/self/mountinfo` (proc(5)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountEntry {
    /// Path of the directory within the filesystem that forms the root of this mount.
    pub root: String,
    /// Mount point relative to the process's root.
    pub mount_point: String,
    /// Per-mount options (`ro`, `nosuid`, ...).
    pub options: Vec<String>,
    /// Optional fields (`shared:N`, `master:N`): the propagation of the mount.
    pub propagation: Vec<String>,
    /// Filesystem type (`proc`, `tmpfs`, ...).
    pub fs_type: String,
    /// Mount source.
    pub source: String,
    /// Per-superblock options (`size=...`, `mode=...`).
    pub super_options: Vec<String>,
}

/// The fields of `/proc/self/status` the checks use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcStatus {
    /// Real, effective, saved and filesystem uid.
    pub uid: Vec<u32>,
    /// Real, effective, saved and filesystem gid.
    pub gid: Vec<u32>,
    /// Supplementary groups, in the kernel's order.
    pub groups: Vec<u32>,
    /// File-mode creation mask.
    pub umask: u32,
    /// Inheritable capability set, as a bit mask.
    pub cap_inh: u64,
    /// Permitted capability set.
    pub cap_prm: u64,
    /// Effective capability set.
    pub cap_eff: u64,
    /// Bounding set.
    pub cap_bnd: u64,
    /// Ambient set.
    pub cap_amb: u64,
    /// The no_new_privs bit.
    pub no_new_privs: u32,
    /// Seccomp mode: 0 disabled, 1 strict, 2 filter.
    pub seccomp: u32,
}

/// A resource limit (`None` means `RLIM_INFINITY`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// Soft limit.
    pub soft: Option<u64>,
    /// Hard limit.
    pub hard: Option<u64>,
}

/// What a syscall returned: 0 on success, the errno otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallOutcome {
    /// 0 when the call succeeded, else its errno.
    pub errno: i32,
}

/// One directory entry under `/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// `c`, `b`, `d` (directory), `l` (symlink), `f` (regular), `p`, `s`.
    pub kind: String,
    /// Device major number (0 for non-devices).
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Symlink target, for `l`.
    pub target: Option<String>,
}

/// What the probe found at a path asked for with `--path`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathProbe {
    /// `lstat` succeeded.
    pub exists: bool,
    /// Kind as in [`FileEntry::kind`], empty when absent.
    pub kind: String,
    /// For a regular or character file: bytes read (capped at 64 KiB); for a directory:
    /// number of entries. `None` when reading failed (see `read_errno`).
    pub content_len: Option<u64>,
    /// errno of opening or reading it, 0 when it worked.
    pub read_errno: i32,
}

/// Parses `/proc/self/mountinfo` (proc(5)): fields up to the `-` separator, then fstype,
/// source and super options. Octal escapes (`\040`) in paths are decoded.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    if fields.len() < 6 {
        return None;
    }
    let mut tail = after.split(' ');
    let fs_type = tail.next()?.to_string();
    let source = unescape(tail.next()?);
    let super_options = split_options(tail.next().unwrap_or(""));
    Some(MountEntry {
        root: unescape(fields[3]),
        mount_point: unescape(fields[4]),
        options: split_options(fields[5]),
        propagation: fields[6..].iter().map(|s| s.to_string()).collect(),
        fs_type,
        source,
        super_options,
    })
}

fn split_options(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect()
}

/// Decodes the `\ooo` octal escapes the kernel uses for space, tab, newline and backslash.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the identity, capability, no_new_privs and seccomp lines of `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> ProcStatus {
    let mut st = ProcStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let nums = || -> Vec<u32> {
            value
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        };
        let hex = || u64::from_str_radix(value, 16).unwrap_or(0);
        match key {
            "Uid" => st.uid = nums(),
            "Gid" => st.gid = nums(),
            "Groups" => st.groups = nums(),
            "Umask" => st.umask = u32::from_str_radix(value, 8).unwrap_or(0),
            "CapInh" => st.cap_inh = hex(),
            "CapPrm" => st.cap_prm = hex(),
            "CapEff" => st.cap_eff = hex(),
            "CapBnd" => st.cap_bnd = hex(),
            "CapAmb" => st.cap_amb = hex(),
            "NoNewPrivs" => st.no_new_privs = value.parse().unwrap_or(0),
            "Seccomp" => st.seccomp = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    st
}

/// Extracts the inode from a namespace link target such as `net:[4026531840]`.
pub fn parse_ns_link(target: &str) -> Option<u64> {
    let inner = target.split_once(":[")?.1.strip_suffix(']')?;
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_line_with_optional_fields_and_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n\
                    40 36 0:5 / /proc ro,nosuid - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].root, "/mnt1");
        assert_eq!(m[0].mount_point, "/mnt two");
        assert_eq!(m[0].options, vec!["rw", "noatime"]);
        assert_eq!(m[0].propagation, vec!["master:1", "shared:2"]);
        assert_eq!(m[0].fs_type, "ext3");
        assert_eq!(m[0].source, "/dev/root");
        assert_eq!(m[0].super_options, vec!["rw", "errors=continue"]);
        assert_eq!(m[1].mount_point, "/proc");
        assert!(m[1].propagation.is_empty());
    }

    #[test]
    fn mountinfo_skips_malformed_lines() {
        assert!(parse_mountinfo("garbage\n1 2 3\n").is_empty());
    }

    #[test]
    fn status_fields_are_parsed_by_base() {
        let text = "Name:\tprobe\nUmask:\t0027\nUid:\t1000\t1000\t1000\t1000\nGid:\t10\t10\t10\t10\n\
                    Groups:\t10 2000 \nCapInh:\t0000000000000400\nCapPrm:\t0000000000000000\n\
                    CapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000400\n\
                    NoNewPrivs:\t1\nSeccomp:\t2\n";
        let st = parse_status(text);
        assert_eq!(st.umask, 0o027);
        assert_eq!(st.uid, vec![1000; 4]);
        assert_eq!(st.gid, vec![10; 4]);
        assert_eq!(st.groups, vec![10, 2000]);
        assert_eq!(st.cap_inh, 0x400);
        assert_eq!(st.cap_bnd, 0xa804_25fb);
        assert_eq!(st.cap_amb, 0x400);
        assert_eq!(st.no_new_privs, 1);
        assert_eq!(st.seccomp, 2);
    }

    #[test]
    fn ns_link_inode() {
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4_026_531_840));
        assert_eq!(
            parse_ns_link("pid_for_children:[4026532200]"),
            Some(4_026_532_200)
        );
        assert_eq!(parse_ns_link("nonsense"), None);
    }
}
