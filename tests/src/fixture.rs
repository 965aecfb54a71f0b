//! The suite's fixtures on disk: workspace and target paths, the busybox rootfs (built by
//! `scripts/build-busybox-rootfs`) with the static probe copied in (built by cargo into
//! `target/static`), and the per-run scratch directories.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Rust target the static probe is built for (the only one the project supports).
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Paths of one workspace checkout.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Workspace root (holds `Cargo.toml`, `scripts/`).
    pub root: PathBuf,
    /// Cargo target directory (`CARGO_TARGET_DIR` or `<root>/target`).
    pub target: PathBuf,
}

impl Workspace {
    /// The workspace this crate was compiled in.
    pub fn current() -> Workspace {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_absolute() { t } else { root.join(t) })
            .unwrap_or_else(|| root.join("target"));
        Workspace { root, target }
    }

    /// Scratch space for the suite under the target directory.
    pub fn scratch(&self) -> PathBuf {
        self.target.join("podvisor-tests")
    }
}

/// The shared, prepared rootfs.
#[derive(Debug, Clone)]
pub struct Rootfs {
    /// Root directory (contains `bin/busybox` and `bin/podvisor-probe`).
    pub dir: PathBuf,
}

/// Builds the busybox rootfs and the static probe if needed, and copies the probe in.
pub fn prepare_rootfs(ws: &Workspace) -> Result<Rootfs, String> {
    let dir = ws.scratch().join("rootfs");
    let script = ws.root.join("scripts/build-busybox-rootfs");
    let out = Command::new(&script)
        .arg(&dir)
        .output()
        .map_err(|e| format!("run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed: {}",
            script.display(),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let probe = build_static_probe(ws)?;
    install_file(&probe, &dir.join("bin/podvisor-probe"))?;
    Ok(Rootfs { dir })
}

/// `RUSTFLAGS="-C target-feature=+crt-static" cargo build -p podvisor-tests --bin
/// podvisor-probe --target x86_64-unknown-linux-gnu --target-dir target/static`: a separate
/// target dir, so it neither waits for nor invalidates the outer cargo's build.
pub fn build_static_probe(ws: &Workspace) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = ws.target.join("static");
    let out = Command::new(cargo)
        .current_dir(&ws.root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_TARGET_DIR")
        .args([
            "build",
            "--quiet",
            "-p",
            "podvisor-tests",
            "--bin",
            "podvisor-probe",
            "--target",
            STATIC_TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .map_err(|e| format!("run cargo to build the static probe: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the static probe failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(target_dir.join(STATIC_TARGET).join("debug/podvisor-probe"))
}

/// Copies `src` to `dst` (mode 0755) via a temporary file and rename, skipping identical files.
fn install_file(src: &Path, dst: &Path) -> Result<(), String> {
    let new = std::fs::read(src).map_err(|e| format!("read {}: {e}", src.display()))?;
    if std::fs::read(dst).is_ok_and(|old| old == new) {
        return Ok(());
    }
    let tmp = dst.with_extension("tmp");
    std::fs::write(&tmp, &new).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&tmp, perms).map_err(|e| format!("chmod {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, dst)
        .map_err(|e| format!("rename {} to {}: {e}", tmp.display(), dst.display()))
}
