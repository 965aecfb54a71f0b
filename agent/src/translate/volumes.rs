//! Pod volumes: what each volume is on the host (a pure plan), and the thin effect that
//! makes it so (create or check a hostPath, make an emptyDir, write downwardAPI files).
//! The mount of a `medium: Memory` emptyDir (tmpfs) is left to the supervisor, which owns
//! mounts; the plan says its size.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use super::process::field_value;
use super::{PodContext, TranslateError};
use crate::pod::quantity::Quantity;

/// What a hostPath `type` asks of the host path before the pod starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum HostPathType {
    /// `""`: no check.
    Unset,
    /// Create a directory (0755) when missing.
    DirectoryOrCreate,
    /// Must be a directory.
    Directory,
    /// Create an empty file (0644) when missing.
    FileOrCreate,
    /// Must be a regular file.
    File,
    /// Must be a unix socket.
    Socket,
    /// Must be a character device.
    CharDevice,
    /// Must be a block device.
    BlockDevice,
}

impl HostPathType {
    /// Parses the `type` field (validated before, so unknown means Unset).
    pub fn parse(s: &str) -> Self {
        match s {
            "DirectoryOrCreate" => Self::DirectoryOrCreate,
            "Directory" => Self::Directory,
            "FileOrCreate" => Self::FileOrCreate,
            "File" => Self::File,
            "Socket" => Self::Socket,
            "CharDevice" => Self::CharDevice,
            "BlockDevice" => Self::BlockDevice,
            _ => Self::Unset,
        }
    }
}

/// One volume, as it exists on the host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum VolumePlan {
    /// A host path, checked or created per its type.
    HostPath {
        /// Volume name.
        name: String,
        /// Host path.
        path: PathBuf,
        /// Check/create semantics.
        kind: HostPathType,
    },
    /// A per-pod directory; `tmpfs_size` set for `medium: Memory` (bytes, None = unlimited).
    EmptyDir {
        /// Volume name.
        name: String,
        /// Directory under the pod directory.
        dir: PathBuf,
        /// True for `medium: Memory` (mount a tmpfs on `dir`).
        memory: bool,
        /// `sizeLimit` in bytes.
        size_limit: Option<u64>,
    },
    /// A directory of files holding pod fields.
    DownwardApi {
        /// Volume name.
        name: String,
        /// Directory under the pod directory.
        dir: PathBuf,
        /// (relative path, content, mode).
        files: Vec<(String, String, u32)>,
    },
}

impl VolumePlan {
    /// The host directory or file the volume's mounts bind from.
    pub fn source(&self) -> &Path {
        match self {
            VolumePlan::HostPath { path, .. } => path,
            VolumePlan::EmptyDir { dir, .. } | VolumePlan::DownwardApi { dir, .. } => dir,
        }
    }

    /// The volume's name.
    pub fn name(&self) -> &str {
        match self {
            VolumePlan::HostPath { name, .. }
            | VolumePlan::EmptyDir { name, .. }
            | VolumePlan::DownwardApi { name, .. } => name,
        }
    }

    /// The tmpfs mount data for a `medium: Memory` emptyDir (`mode=1777[,size=N]`), else None.
    pub fn tmpfs_data(&self) -> Option<String> {
        match self {
            VolumePlan::EmptyDir {
                memory: true,
                size_limit,
                ..
            } => Some(match size_limit {
                Some(n) if *n > 0 => format!("mode=1777,size={n}"),
                _ => "mode=1777".to_owned(),
            }),
            _ => None,
        }
    }

    /// True when containers must see the volume read-only whatever the mount says.
    pub fn always_read_only(&self) -> bool {
        matches!(self, VolumePlan::DownwardApi { .. })
    }
}

/// Renders a downwardAPI value: maps as sorted `key="value"` lines, as the kubelet does.
fn downward_value(pod: &Pod, ctx: &PodContext, path: &str) -> String {
    let map_lines = |m: Option<&std::collections::BTreeMap<String, String>>| {
        m.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match path {
        "metadata.labels" => map_lines(pod.metadata.labels.as_ref()),
        "metadata.annotations" => map_lines(pod.metadata.annotations.as_ref()),
        _ => field_value(pod, ctx, path).unwrap_or_default(),
    }
}

/// The plan for every volume of the pod (validated before).
pub fn plan_volumes(pod: &Pod, ctx: &PodContext) -> Result<Vec<VolumePlan>, TranslateError> {
    let mut out = Vec::new();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        let dir = ctx.pod_dir.join("volumes").join(&v.name);
        if let Some(hp) = v.host_path.as_ref() {
            out.push(VolumePlan::HostPath {
                name: v.name.clone(),
                path: PathBuf::from(&hp.path),
                kind: HostPathType::parse(hp.type_.as_deref().unwrap_or("")),
            });
        } else if let Some(ed) = v.empty_dir.as_ref() {
            let size_limit = match ed.size_limit.as_ref() {
                Some(q) => Some(
                    Quantity::parse(&q.0)
                        .map_err(|e| TranslateError::Volume {
                            volume: v.name.clone(),
                            message: e.to_string(),
                        })?
                        .value()
                        .max(0) as u64,
                ),
                None => None,
            };
            out.push(VolumePlan::EmptyDir {
                name: v.name.clone(),
                dir,
                memory: ed.medium.as_deref() == Some("Memory"),
                size_limit,
            });
        } else if let Some(d) = v.downward_api.as_ref() {
            let default_mode = d.default_mode.unwrap_or(0o644) as u32;
            let files = d
                .items
                .iter()
                .flatten()
                .map(|item| {
                    let value = item
                        .field_ref
                        .as_ref()
                        .map(|f| downward_value(pod, ctx, &f.field_path))
                        .unwrap_or_default();
                    (
                        item.path.clone(),
                        value,
                        item.mode.map(|m| m as u32).unwrap_or(default_mode),
                    )
                })
                .collect();
            out.push(VolumePlan::DownwardApi {
                name: v.name.clone(),
                dir,
                files,
            });
        } else {
            return Err(TranslateError::Volume {
                volume: v.name.clone(),
                message: "unsupported volume source".to_owned(),
            });
        }
    }
    Ok(out)
}

/// Makes a planned volume exist on the host (the effect). The tmpfs of a Memory emptyDir
/// is not mounted here: only the directory is made.
pub fn prepare_volume(plan: &VolumePlan) -> Result<(), TranslateError> {
    let err = |e: io::Error, what: &str| TranslateError::Volume {
        volume: plan.name().to_owned(),
        message: format!("{what}: {e}"),
    };
    match plan {
        VolumePlan::HostPath { path, kind, .. } => {
            check_host_path(path, *kind).map_err(|e| TranslateError::Volume {
                volume: plan.name().to_owned(),
                message: e,
            })
        }
        VolumePlan::EmptyDir { dir, .. } => {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(e, &format!("create {}", dir.display())))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| err(e, &format!("chmod {}", dir.display())))
        }
        VolumePlan::DownwardApi { dir, files, .. } => {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(e, &format!("create {}", dir.display())))?;
            for (rel, content, mode) in files {
                let target = dir.join(rel);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| err(e, &format!("create {}", parent.display())))?;
                }
                // write then rename, so a reader never sees a half-written file
                let tmp = target.with_extension("podvisor-tmp");
                std::fs::write(&tmp, content)
                    .map_err(|e| err(e, &format!("write {}", tmp.display())))?;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode))
                    .map_err(|e| err(e, &format!("chmod {}", tmp.display())))?;
                std::fs::rename(&tmp, &target)
                    .map_err(|e| err(e, &format!("rename to {}", target.display())))?;
            }
            Ok(())
        }
    }
}

/// The hostPath type check / creation (`pkg/volume/hostpath`): creates with 0755 / 0644,
/// otherwise the path must exist with the right file type.
pub fn check_host_path(path: &Path, kind: HostPathType) -> Result<(), String> {
    let shown = path.display();
    match kind {
        HostPathType::Unset => return Ok(()),
        HostPathType::DirectoryOrCreate if !path.exists() => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(path)
                .map_err(|e| format!("create directory {shown}: {e}"))?;
        }
        HostPathType::FileOrCreate if !path.exists() => {
            if let Some(parent) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(|e| format!("create directory {}: {e}", parent.display()))?;
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map_err(|e| format!("create file {shown}: {e}"))?;
        }
        _ => {}
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("hostPath {shown}: {e}"))?;
    let ft = meta.file_type();
    let (ok, want) = match kind {
        HostPathType::DirectoryOrCreate | HostPathType::Directory => (ft.is_dir(), "a directory"),
        HostPathType::FileOrCreate | HostPathType::File => (ft.is_file(), "a file"),
        HostPathType::Socket => (ft.is_socket(), "a socket"),
        HostPathType::CharDevice => (ft.is_char_device(), "a character device"),
        HostPathType::BlockDevice => (ft.is_block_device(), "a block device"),
        HostPathType::Unset => (true, ""),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("hostPath {shown} is not {want}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_types_create_and_check() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path().join("a/b");
        check_host_path(&d, HostPathType::DirectoryOrCreate).expect("creates dir");
        assert_eq!(
            std::fs::metadata(&d).expect("dir").permissions().mode() & 0o777,
            0o755 & !umask_bits()
        );
        let f = tmp.path().join("c/file.conf");
        check_host_path(&f, HostPathType::FileOrCreate).expect("creates file");
        assert!(f.is_file());
        check_host_path(&f, HostPathType::File).expect("is a file");
        check_host_path(&d, HostPathType::Directory).expect("is a dir");
        assert!(check_host_path(&f, HostPathType::Directory).is_err());
        assert!(check_host_path(&d, HostPathType::File).is_err());
        assert!(check_host_path(&tmp.path().join("missing"), HostPathType::Directory).is_err());
        assert!(check_host_path(&tmp.path().join("missing"), HostPathType::File).is_err());
        assert!(check_host_path(&f, HostPathType::Socket).is_err());
        check_host_path(Path::new("/dev/null"), HostPathType::CharDevice)
            .expect("/dev/null is a char device");
        assert!(check_host_path(Path::new("/dev/null"), HostPathType::BlockDevice).is_err());
        let sock = tmp.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        check_host_path(&sock, HostPathType::Socket).expect("is a socket");
        check_host_path(&tmp.path().join("whatever"), HostPathType::Unset).expect("no check");
        assert!(!tmp.path().join("whatever").exists());
    }

    fn umask_bits() -> u32 {
        // DirBuilder's mode is filtered by the umask; read it back the portable way.
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("probe");
        std::fs::DirBuilder::new()
            .mode(0o777)
            .create(&p)
            .expect("probe");
        0o777 & !(std::fs::metadata(&p).expect("probe").permissions().mode() & 0o777)
    }
}
