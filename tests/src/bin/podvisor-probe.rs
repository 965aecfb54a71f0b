//! podvisor-probe: runs as a container's workload and prints, as one JSON document on
//! stdout, what it sees from inside (see `podvisor_tests::report::Report`): namespaces,
//! mounts, identity, capabilities, no_new_privs, seccomp, rlimits, devices, cgroup.
//!
//! Built static and copied into the busybox rootfs by the privileged suite. Flags:
//! `--path P` (does P exist, what does reading it give), `--write P` (errno of opening P for
//! writing; a file it creates is removed again), `--read P` (contents of P). Exit status is
//! 0 when the report was written, 1 otherwise; the probe itself asserts nothing.
#![forbid(unsafe_code)]

use podvisor_tests::report::{
    FileEntry, MountEntry, PathProbe, Report, Rlimit, SyscallOutcome, parse_mountinfo,
    parse_ns_link, parse_status,
};
use rustix::fs::{FileType, FlockOperation, Mode, OFlags};
use rustix::process::{Pid, Resource};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;

/// Namespace kinds listed in /proc/self/ns on a 6.x kernel.
const NAMESPACES: &[&str] = &[
    "cgroup",
    "ipc",
    "mnt",
    "net",
    "pid",
    "pid_for_children",
    "time",
    "user",
    "uts",
];

/// Every rlimit resource, with the name the OCI spec uses for it.
const RLIMITS: &[(&str, Resource)] = &[
    ("RLIMIT_CPU", Resource::Cpu),
    ("RLIMIT_FSIZE", Resource::Fsize),
    ("RLIMIT_DATA", Resource::Data),
    ("RLIMIT_STACK", Resource::Stack),
    ("RLIMIT_CORE", Resource::Core),
    ("RLIMIT_RSS", Resource::Rss),
    ("RLIMIT_NPROC", Resource::Nproc),
    ("RLIMIT_NOFILE", Resource::Nofile),
    ("RLIMIT_MEMLOCK", Resource::Memlock),
    ("RLIMIT_AS", Resource::As),
    ("RLIMIT_LOCKS", Resource::Locks),
    ("RLIMIT_SIGPENDING", Resource::Sigpending),
    ("RLIMIT_MSGQUEUE", Resource::Msgqueue),
    ("RLIMIT_NICE", Resource::Nice),
    ("RLIMIT_RTPRIO", Resource::Rtprio),
    ("RLIMIT_RTTIME", Resource::Rttime),
];

/// Paths asked for on the command line.
#[derive(Debug, Default)]
struct Request {
    paths: Vec<String>,
    writes: Vec<String>,
    reads: Vec<String>,
    escape: bool,
}

fn parse_args(args: &[String]) -> Result<Request, String> {
    let mut req = Request::default();
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        let list = match flag.as_str() {
            "--path" => &mut req.paths,
            "--write" => &mut req.writes,
            "--read" => &mut req.reads,
            "--escape" => {
                req.escape = true;
                continue;
            }
            other => return Err(format!("unknown flag {other}")),
        };
        let value = it.next().ok_or_else(|| format!("{flag} needs a path"))?;
        list.push(value.clone());
    }
    Ok(req)
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn read_text(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn namespaces() -> BTreeMap<String, u64> {
    NAMESPACES
        .iter()
        .filter_map(|ns| {
            let link = std::fs::read_link(format!("/proc/self/ns/{ns}")).ok()?;
            Some((ns.to_string(), parse_ns_link(&link.to_string_lossy())?))
        })
        .collect()
}

fn rlimits() -> BTreeMap<String, Rlimit> {
    RLIMITS
        .iter()
        .map(|(name, res)| {
            let r = rustix::process::getrlimit(*res);
            (
                name.to_string(),
                Rlimit {
                    soft: r.current,
                    hard: r.maximum,
                },
            )
        })
        .collect()
}

/// Calls the syscalls the suite's seccomp profile blocks, plus controls it must not block.
fn syscalls() -> BTreeMap<String, SyscallOutcome> {
    let outcome = |r: Result<(), rustix::io::Errno>| SyscallOutcome {
        errno: r.err().map_or(0, |e| e.raw_os_error()),
    };
    let mut out = BTreeMap::new();
    let root = rustix::fs::open("/", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty());
    let inotify = rustix::fs::inotify::init(rustix::fs::inotify::CreateFlags::CLOEXEC).map(drop);
    out.insert("inotify_init1".into(), outcome(inotify));
    let flock = root.and_then(|fd| rustix::fs::flock(&fd, FlockOperation::NonBlockingLockShared));
    out.insert("flock".into(), outcome(flock));
    let pid1 = Pid::from_raw(1);
    out.insert(
        "getpriority_pid1".into(),
        outcome(rustix::process::getpriority_process(pid1).map(drop)),
    );
    out.insert(
        "getpriority_self".into(),
        outcome(rustix::process::getpriority_process(None).map(drop)),
    );
    out
}

fn kind_of(ft: FileType) -> &'static str {
    match ft {
        FileType::CharacterDevice => "c",
        FileType::BlockDevice => "b",
        FileType::Directory => "d",
        FileType::Symlink => "l",
        FileType::RegularFile => "f",
        FileType::Fifo => "p",
        FileType::Socket => "s",
        _ => "?",
    }
}

fn file_entry(path: &str) -> Option<FileEntry> {
    let st = rustix::fs::lstat(path).ok()?;
    let ft = FileType::from_raw_mode(st.st_mode);
    let dev = st.st_rdev;
    let is_dev = matches!(ft, FileType::CharacterDevice | FileType::BlockDevice);
    Some(FileEntry {
        kind: kind_of(ft).to_string(),
        major: if is_dev { rustix::fs::major(dev) } else { 0 },
        minor: if is_dev { rustix::fs::minor(dev) } else { 0 },
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        target: std::fs::read_link(path)
            .ok()
            .map(|t| t.to_string_lossy().into_owned()),
    })
}

fn devices() -> BTreeMap<String, FileEntry> {
    let mut out = BTreeMap::new();
    for dir in ["/dev", "/dev/pts"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = format!("{dir}/{}", e.file_name().to_string_lossy());
            if let Some(entry) = file_entry(&path) {
                out.insert(path, entry);
            }
        }
    }
    out
}

/// Reads up to 64 KiB of a file, or counts a directory's entries, without writing anything.
fn probe_path(path: &str) -> PathProbe {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return PathProbe::default();
    };
    let kind = kind_of(FileType::from_raw_mode(meta.mode())).to_string();
    let content = if meta.is_dir() {
        std::fs::read_dir(path).map(|d| d.count() as u64)
    } else {
        std::fs::File::open(path).and_then(|f| {
            let mut buf = Vec::new();
            f.take(64 * 1024).read_to_end(&mut buf).map(|n| n as u64)
        })
    };
    match content {
        Ok(n) => PathProbe {
            exists: true,
            kind,
            content_len: Some(n),
            read_errno: 0,
        },
        Err(e) => PathProbe {
            exists: true,
            kind,
            content_len: None,
            read_errno: errno_of(&e),
        },
    }
}

/// Opens `path` for writing (creating it if absent) and reports the errno; writes no bytes,
/// and removes a file it created.
fn probe_write(path: &str) -> i32 {
    let existed = std::path::Path::new(path).exists();
    match std::fs::OpenOptions::new()
        .write(true)
        .create(!existed)
        .truncate(false)
        .open(path)
    {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(path);
            }
            0
        }
        Err(e) => errno_of(&e),
    }
}

fn read_file(path: &str) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) => s.trim().to_string(),
        Err(e) => format!("errno {}", errno_of(&e)),
    }
}

fn map_lines(path: &str) -> Vec<String> {
    read_text(path)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn collect(req: &Request, args: Vec<String>) -> Report {
    let uts = rustix::system::uname();
    let mut env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    env.sort();
    Report {
        pid: std::process::id(),
        args,
        namespaces: namespaces(),
        mounts: parse_mountinfo(&read_text("/proc/self/mountinfo")),
        status: parse_status(&read_text("/proc/self/status")),
        rlimits: rlimits(),
        syscalls: syscalls(),
        cwd: std::env::current_dir()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        env,
        hostname: uts.nodename().to_string_lossy().into_owned(),
        domainname: uts.domainname().to_string_lossy().into_owned(),
        cgroup: read_text("/proc/self/cgroup")
            .lines()
            .map(str::to_string)
            .collect(),
        oom_score_adj: read_text("/proc/self/oom_score_adj")
            .trim()
            .parse()
            .unwrap_or(i32::MIN),
        uid_map: map_lines("/proc/self/uid_map"),
        gid_map: map_lines("/proc/self/gid_map"),
        devices: devices(),
        paths: req
            .paths
            .iter()
            .map(|p| (p.clone(), probe_path(p)))
            .collect(),
        writes: req
            .writes
            .iter()
            .map(|p| (p.clone(), probe_write(p)))
            .collect(),
        files: req
            .reads
            .iter()
            .map(|p| (p.clone(), read_file(p)))
            .collect(),
        escape: None,
    }
}

/// The classic chroot(2) escape: with a directory fd on the current root, chroot into a
/// subdirectory, fchdir to the fd (now outside the root), climb `..` as far as it goes and
/// chroot there; then read mountinfo through a /proc fd opened beforehand (the kernel lists
/// the mounts under the reader's root at open time). After pivot_root and unmounting the old
/// root nothing of the host is left above the rootfs; after a chroot it all is. Needs
/// CAP_SYS_CHROOT.
fn mounts_above_root() -> Result<Vec<MountEntry>, String> {
    let proc = rustix::fs::open("/proc", OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        .map_err(|e| format!("open /proc: {e}"))?;
    let root = rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        .map_err(|e| format!("open /: {e}"))?;
    rustix::process::chroot("/dev").map_err(|e| format!("chroot /dev: {e}"))?;
    rustix::process::fchdir(&root).map_err(|e| format!("fchdir to the old root: {e}"))?;
    for _ in 0..64 {
        rustix::process::chdir("..").map_err(|e| format!("chdir ..: {e}"))?;
    }
    rustix::process::chroot(".").map_err(|e| format!("chroot .: {e}"))?;
    let fd = rustix::fs::openat(&proc, "self/mountinfo", OFlags::RDONLY, Mode::empty())
        .map_err(|e| format!("open mountinfo after the escape: {e}"))?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .read_to_string(&mut text)
        .map_err(|e| format!("read mountinfo after the escape: {e}"))?;
    Ok(parse_mountinfo(&text))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let req = match parse_args(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("podvisor-probe: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut report = collect(&req, args);
    if req.escape {
        report.escape = Some(mounts_above_root());
    }
    let json = match serde_json::to_string(&report) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("podvisor-probe: encode report: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{json}").and_then(|()| out.flush()) {
        eprintln!("podvisor-probe: write report: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        std::iter::once("podvisor-probe")
            .chain(v.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn flags_collect_their_paths_in_order() {
        let req = parse_args(&args(&[
            "--path", "/a", "--write", "/b", "--path", "/c", "--read", "/d", "--escape",
        ]));
        let req = req.expect("valid flags");
        assert_eq!(req.paths, vec!["/a", "/c"]);
        assert_eq!(req.writes, vec!["/b"]);
        assert_eq!(req.reads, vec!["/d"]);
        assert!(req.escape);
    }

    #[test]
    fn unknown_flag_and_missing_value_are_errors() {
        assert!(parse_args(&args(&["--bogus"])).is_err());
        assert!(parse_args(&args(&["--path"])).is_err());
        assert!(!parse_args(&args(&[])).expect("no flags").escape);
    }
}
