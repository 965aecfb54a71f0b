//! Seccomp for a container: `RuntimeDefault` (a profile equivalent to containerd's default,
//! written here as data), `Unconfined`, or `Localhost` (an OCI-format JSON profile under
//! `--seccomp-profile-root`). The container's `seccompProfile` overrides the pod's; with
//! neither, the kubelet's default is Unconfined; privileged containers are unconfined.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::SeccompProfile;
use serde_json::Value;

pub use super::seccomp_default::runtime_default;

use super::TranslateError;

/// What the pod/container ask for, after the override rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    /// No filter.
    Unconfined,
    /// The runtime's default profile.
    RuntimeDefault,
    /// A profile file (already joined to the profile root).
    Localhost(PathBuf),
}

/// Applies the override rules: privileged → unconfined; container over pod; none → unconfined.
pub fn choose(
    pod: Option<&SeccompProfile>,
    container: Option<&SeccompProfile>,
    privileged: bool,
    root: &Path,
) -> SeccompChoice {
    if privileged {
        return SeccompChoice::Unconfined;
    }
    match container.or(pod) {
        Some(p) if p.type_ == "RuntimeDefault" => SeccompChoice::RuntimeDefault,
        Some(p) if p.type_ == "Localhost" => {
            SeccompChoice::Localhost(root.join(p.localhost_profile.as_deref().unwrap_or("")))
        }
        _ => SeccompChoice::Unconfined,
    }
}

/// The `linux.seccomp` value for a choice. `read_profile` reads a Localhost profile file
/// (an effect, injected so this stays pure).
pub fn profile(
    container: &str,
    choice: &SeccompChoice,
    caps: &[String],
    read_profile: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<Option<Value>, TranslateError> {
    match choice {
        SeccompChoice::Unconfined => Ok(None),
        SeccompChoice::RuntimeDefault => Ok(Some(runtime_default(caps))),
        SeccompChoice::Localhost(path) => {
            let err = |message: String| TranslateError::Seccomp {
                container: container.to_owned(),
                path: path.clone(),
                message,
            };
            let bytes = read_profile(path).map_err(|e| err(e.to_string()))?;
            let parsed: oci_spec::runtime::LinuxSeccomp = serde_json::from_slice(&bytes)
                .map_err(|e| err(format!("not an OCI seccomp profile: {e}")))?;
            serde_json::to_value(parsed)
                .map(Some)
                .map_err(|e| err(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(profile: &Value) -> Vec<String> {
        profile["syscalls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["action"] == "SCMP_ACT_ALLOW" && s.get("args").is_none())
            .flat_map(|s| s["names"].as_array().cloned().unwrap_or_default())
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn default_profile_gates_syscalls_on_capabilities() {
        let plain = runtime_default(&["CAP_CHOWN".to_owned()]);
        let n = names(&plain);
        assert!(n.contains(&"read".to_owned()) && n.contains(&"execve".to_owned()));
        assert!(
            !n.contains(&"mount".to_owned())
                && !n.contains(&"ptrace".to_owned())
                && !n.contains(&"reboot".to_owned())
        );
        assert_eq!(plain["defaultAction"], "SCMP_ACT_ERRNO");
        let admin = runtime_default(&["CAP_SYS_ADMIN".to_owned(), "CAP_SYS_PTRACE".to_owned()]);
        let n = names(&admin);
        assert!(
            n.contains(&"mount".to_owned())
                && n.contains(&"ptrace".to_owned())
                && n.contains(&"clone3".to_owned())
        );
        // the profile is a valid OCI seccomp object
        let parsed: oci_spec::runtime::LinuxSeccomp =
            serde_json::from_value(plain).expect("OCI seccomp");
        assert!(parsed.syscalls().as_ref().is_some_and(|s| s.len() > 5));
    }

    #[test]
    fn override_rules() {
        let rd = SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        };
        let un = SeccompProfile {
            type_: "Unconfined".into(),
            localhost_profile: None,
        };
        let lh = SeccompProfile {
            type_: "Localhost".into(),
            localhost_profile: Some("p/x.json".into()),
        };
        let root = Path::new("/var/lib/kubelet/seccomp");
        assert_eq!(choose(None, None, false, root), SeccompChoice::Unconfined);
        assert_eq!(
            choose(Some(&rd), None, false, root),
            SeccompChoice::RuntimeDefault
        );
        assert_eq!(
            choose(Some(&rd), Some(&un), false, root),
            SeccompChoice::Unconfined
        );
        assert_eq!(
            choose(Some(&rd), None, true, root),
            SeccompChoice::Unconfined
        );
        assert_eq!(
            choose(None, Some(&lh), false, root),
            SeccompChoice::Localhost(root.join("p/x.json"))
        );
    }
}
