//! Root filesystem steps: propagation, the rootfs bind, spec mounts, devices, the
//! `pivot_root`, masked and read-only paths.

use std::collections::VecDeque;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};

use super::Step;
use crate::channel::StepError;
use crate::error::errno;
use crate::plan::mount_options::REMOUNT_FLAGS;
use crate::plan::{DevicePlan, MountPlan, RootfsPlan};

fn cstr(p: &Path, step: &str) -> Step<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| StepError::other(step.to_string(), "path contains NUL"))
}

fn sys_mount(
    step: impl Fn() -> String,
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: u64,
    data: Option<&str>,
) -> Step {
    let s = src.map(|s| cstr(s, &step())).transpose()?;
    let t = cstr(target, &step())?;
    let f = fstype
        .map(|f| CString::new(f).map_err(|_| StepError::other(step(), "fstype contains NUL")))
        .transpose()?;
    let d = data
        .filter(|d| !d.is_empty())
        .map(|d| CString::new(d).map_err(|_| StepError::other(step(), "data contains NUL")))
        .transpose()?;
    crate::sys::mount(s.as_deref(), &t, f.as_deref(), flags, d.as_deref())
        .map_err(|e| StepError::io(step(), &e))
}

/// Resolve `path` inside `root` as if `root` were `/`: symlinks (absolute or relative) and
/// `..` can never lead outside it (the runc `securejoin` rule).
pub(crate) fn resolve_in_root(root: &Path, path: &str) -> PathBuf {
    let mut pending: VecDeque<String> = comps(path);
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            done.pop();
            continue;
        }
        let candidate = root.join(done.iter().collect::<PathBuf>()).join(&c);
        match std::fs::read_link(&candidate) {
            Ok(target) if links < 40 => {
                links += 1;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    done.clear();
                }
                for (i, x) in comps(&t).into_iter().enumerate() {
                    pending.insert(i, x);
                }
            }
            _ => done.push(c),
        }
    }
    root.join(done.iter().collect::<PathBuf>())
}

fn comps(p: &str) -> VecDeque<String> {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            _ => None,
        })
        .collect()
}

/// Perform the rootfs plan; `create_container_hooks` runs after the mounts, before
/// `pivot_root` (OCI: in the container namespace, runtime paths still visible).
pub(super) fn prepare(p: &RootfsPlan, create_container_hooks: impl FnOnce(()) -> Step) -> Step {
    set_root_propagation(p.propagation)?;
    bind_rootfs(&p.root)?;
    for m in &p.mounts {
        mount_one(&p.root, m)?;
    }
    create_devices(&p.root, &p.devices, p.bind_devices)?;
    create_dev_links(&p.root)?;
    create_container_hooks(())?;
    if p.pivot {
        match pivot_root(&p.root) {
            // pivot_root(2) cannot move the initial ramfs/tmpfs root (EINVAL): a podvisor
            // running from an initramfs falls back to MS_MOVE + chroot, as --no-pivot asks.
            Err(e) if e.errno == Some(libc::EINVAL) && root_is_initramfs() => move_root(&p.root)?,
            r => r?,
        }
    } else {
        move_root(&p.root)?;
    }
    for path in &p.masked_paths {
        mask_path(path)?;
    }
    for path in &p.readonly_paths {
        readonly_path(path)?;
    }
    if p.readonly {
        remount_readonly(Path::new("/"), "remount / read-only")?;
    }
    if let Some(prop) = p.final_propagation {
        sys_mount(
            || "set rootfsPropagation on /".into(),
            None,
            Path::new("/"),
            None,
            prop,
            None,
        )?;
    }
    Ok(())
}

/// Make `/` slave (or what rootfsPropagation asks) so nothing mounted here reaches the host.
fn set_root_propagation(flags: u64) -> Step {
    sys_mount(
        || "make / private to the container".into(),
        None,
        Path::new("/"),
        None,
        flags,
        None,
    )
}

/// pivot_root(2) needs the new root to be a mount point, hence the self bind mount.
fn bind_rootfs(root: &Path) -> Step {
    sys_mount(
        || format!("bind rootfs {}", root.display()),
        Some(root),
        root,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
}

fn mount_one(root: &Path, m: &MountPlan) -> Step {
    let target = resolve_in_root(root, &m.destination);
    let what = || format!("mount {} at {}", m.fstype_or_bind(), m.destination);
    let o = &m.options;
    if o.is_bind() {
        let src = Path::new(&m.source);
        let is_dir = std::fs::metadata(src)
            .map_err(|e| StepError::io(format!("stat bind source {}", m.source), &e))?
            .is_dir();
        create_mountpoint(&target, is_dir).map_err(|e| StepError::io(what(), &e))?;
        sys_mount(
            what,
            Some(src),
            &target,
            None,
            o.flags & (libc::MS_BIND | libc::MS_REC),
            None,
        )?;
        if o.flags & REMOUNT_FLAGS != 0 {
            remount_bind(&target, o.flags & REMOUNT_FLAGS, &what())?;
        }
    } else {
        create_mountpoint(&target, true).map_err(|e| StepError::io(what(), &e))?;
        let src = PathBuf::from(&m.source);
        let res = sys_mount(
            what,
            Some(&src),
            &target,
            Some(&m.fstype),
            o.flags,
            Some(&o.data),
        );
        match res {
            // sysfs cannot be mounted when the network namespace is shared with the host:
            // bind the host's read-only instead (runc does the same).
            Err(e) if m.fstype == "sysfs" && e.errno == Some(libc::EPERM) => {
                sys_mount(
                    what,
                    Some(Path::new("/sys")),
                    &target,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )?;
                remount_bind(
                    &target,
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    &what(),
                )?;
            }
            r => r?,
        }
    }
    for prop in &o.propagation {
        sys_mount(
            || format!("set propagation of {}", m.destination),
            None,
            &target,
            None,
            *prop,
            None,
        )?;
    }
    Ok(())
}

impl MountPlan {
    fn fstype_or_bind(&self) -> &str {
        if self.options.is_bind() {
            "bind"
        } else {
            &self.fstype
        }
    }
}

fn create_mountpoint(target: &Path, dir: bool) -> std::io::Result<()> {
    if dir {
        std::fs::create_dir_all(target)
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::symlink_metadata(target) {
            Ok(_) => Ok(()),
            Err(_) => std::fs::File::create(target).map(drop),
        }
    }
}

/// Flags the kernel locks on a mount (user namespaces): a remount must repeat them.
fn locked_flags(target: &Path) -> u64 {
    rustix::fs::statvfs(target)
        .map(|s| {
            s.f_flag.bits()
                & (libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC
                    | libc::MS_NOATIME
                    | libc::MS_NODIRATIME
                    | libc::MS_RELATIME)
        })
        .unwrap_or(0)
}

fn remount_bind(target: &Path, flags: u64, what: &str) -> Step {
    let base = libc::MS_REMOUNT | libc::MS_BIND;
    match sys_mount(
        || format!("remount {what}"),
        None,
        target,
        None,
        base | flags,
        None,
    ) {
        Err(e) if e.errno == Some(libc::EPERM) => sys_mount(
            || format!("remount {what}"),
            None,
            target,
            None,
            base | flags | locked_flags(target),
            None,
        ),
        r => r,
    }
}

fn remount_readonly(target: &Path, what: &str) -> Step {
    remount_bind(target, libc::MS_RDONLY | locked_flags(target), what)
}

fn create_devices(root: &Path, devices: &[DevicePlan], bind: bool) -> Step {
    for d in devices {
        let target = resolve_in_root(root, &d.path);
        let step = || format!("create device {}", d.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StepError::io(step(), &e))?;
        }
        if bind {
            create_mountpoint(&target, false).map_err(|e| StepError::io(step(), &e))?;
            sys_mount(
                step,
                Some(Path::new(&d.path)),
                &target,
                None,
                libc::MS_BIND,
                None,
            )?;
            continue;
        }
        let _ = std::fs::remove_file(&target);
        let ft = match d.kind {
            'b' => FileType::BlockDevice,
            'p' => FileType::Fifo,
            _ => FileType::CharacterDevice,
        };
        mknodat(
            CWD,
            &target,
            ft,
            Mode::from_bits_truncate(d.mode),
            makedev(d.major, d.minor),
        )
        .map_err(|e| StepError::io(step(), &errno(e)))?;
        // mknod applies the umask; set the exact mode and owner.
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(d.mode & 0o7777))
            .map_err(|e| StepError::io(step(), &e))?;
        std::os::unix::fs::chown(&target, Some(d.uid), Some(d.gid))
            .map_err(|e| StepError::io(step(), &e))?;
    }
    Ok(())
}

/// `/dev/fd`, `/dev/std*`, `/dev/ptmx`, `/dev/shm`: what programs expect in /dev.
fn create_dev_links(root: &Path) -> Step {
    let dev = resolve_in_root(root, "/dev");
    let links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ];
    for (name, target) in links {
        match std::os::unix::fs::symlink(target, dev.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StepError::io(format!("symlink /dev/{name}"), &e)),
        }
    }
    if dev.join("pts/ptmx").exists() {
        let ptmx = dev.join("ptmx");
        let _ = std::fs::remove_file(&ptmx);
        std::os::unix::fs::symlink("pts/ptmx", &ptmx)
            .map_err(|e| StepError::io("symlink /dev/ptmx", &e))?;
    }
    std::fs::create_dir_all(dev.join("shm")).map_err(|e| StepError::io("mkdir /dev/shm", &e))?;
    Ok(())
}

/// pivot_root(".", ".") stacks the old root on the new one; detaching "." then removes the
/// old root without needing a directory for it (runc's trick). The old root is made slave
/// first so the detach does not propagate to the host.
fn pivot_root(root: &Path) -> Step {
    let step = || format!("pivot_root into {}", root.display());
    std::env::set_current_dir(root).map_err(|e| StepError::io(step(), &e))?;
    rustix::process::pivot_root(".", ".").map_err(|e| StepError::io(step(), &errno(e)))?;
    sys_mount(
        || "make old root slave".into(),
        None,
        Path::new("."),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )?;
    rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)
        .map_err(|e| StepError::io("detach old root", &errno(e)))?;
    std::env::set_current_dir("/").map_err(|e| StepError::io("chdir / after pivot_root", &e))
}

/// Whether `/` is a ramfs or tmpfs, as the initial root of an initramfs boot is.
fn root_is_initramfs() -> bool {
    const RAMFS_MAGIC: u64 = 0x8584_58f6;
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    rustix::fs::statfs("/").is_ok_and(|s| {
        let t = s.f_type as u64;
        t == RAMFS_MAGIC || t == TMPFS_MAGIC
    })
}

/// The fallback for an initramfs root, where pivot_root(2) returns EINVAL: move the rootfs
/// over `/` and chroot into it. The old root stays reachable to CAP_SYS_CHROOT holders.
fn move_root(root: &Path) -> Step {
    let step = || format!("move rootfs {} to /", root.display());
    std::env::set_current_dir(root).map_err(|e| StepError::io(step(), &e))?;
    sys_mount(
        step,
        Some(Path::new(".")),
        Path::new("/"),
        None,
        libc::MS_MOVE,
        None,
    )?;
    rustix::process::chroot(".").map_err(|e| StepError::io("chroot .", &errno(e)))?;
    std::env::set_current_dir("/").map_err(|e| StepError::io("chdir / after chroot", &e))
}

/// Hide a path: `/dev/null` over files, an empty read-only tmpfs over directories.
fn mask_path(path: &str) -> Step {
    let p = Path::new(path);
    let step = || format!("mask {path}");
    match std::fs::metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StepError::io(step(), &e)),
        Ok(md) if md.is_dir() => sys_mount(
            step,
            Some(Path::new("tmpfs")),
            p,
            Some("tmpfs"),
            libc::MS_RDONLY,
            None,
        ),
        Ok(_) => sys_mount(
            step,
            Some(Path::new("/dev/null")),
            p,
            None,
            libc::MS_BIND,
            None,
        ),
    }
}

/// Bind a path onto itself read-only.
fn readonly_path(path: &str) -> Step {
    let p = Path::new(path);
    let step = || format!("make {path} read-only");
    match std::fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StepError::io(step(), &e)),
        Ok(_) => {}
    }
    sys_mount(step, Some(p), p, None, libc::MS_BIND | libc::MS_REC, None)?;
    remount_readonly(p, &step())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_in_root_keeps_symlinks_and_dotdot_inside() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("usr/lib/up")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("rel")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/abs/passwd"),
            root.join("etc/passwd")
        );
        assert_eq!(resolve_in_root(root, "/../../x"), root.join("x"));
        assert_eq!(resolve_in_root(root, "/usr/lib/up/y"), root.join("y"));
        assert_eq!(resolve_in_root(root, "/rel/z"), root.join("usr/lib/z"));
        assert_eq!(resolve_in_root(root, "/new/dir"), root.join("new/dir"));
    }

    #[test]
    fn resolve_in_root_survives_symlink_loops() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/loop", d.path().join("loop")).unwrap();
        let p = resolve_in_root(d.path(), "/loop/a");
        assert!(p.starts_with(d.path()));
    }
}
