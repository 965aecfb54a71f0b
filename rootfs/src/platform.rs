//! Choosing one image manifest from an image index or Docker manifest list for this node,
//! as containerd's default platform matcher does: `linux/<arch>` with the arch's variant.

use oci_spec::image::{Arch, Descriptor, Os};

/// The platform to select: GOOS/GOARCH-style names plus an optional variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Operating system, `linux`.
    pub os: String,
    /// Architecture in OCI (Go) spelling: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`.
    pub architecture: String,
    /// CPU variant (`v8` for arm64, `v7` for arm), if any.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the running binary: `linux` and the compile-time architecture.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
        }
    }

    /// True if an index entry for `os/arch/variant` runs here. A missing variant in the entry
    /// matches (as containerd does); arm64 `v8` is also the default when absent.
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if os != self.os || arch != self.architecture {
            return false;
        }
        match (variant, self.variant.as_deref()) {
            (None, _) | (Some(""), _) => true,
            (Some(v), Some(want)) => v == want,
            (Some(_), None) => false,
        }
    }
}

/// Picks the manifest for `platform` from an index's entries: exact variant matches are
/// preferred over entries with no variant; attestation manifests (`unknown/unknown`) never
/// match. Returns `None` when nothing fits.
pub fn select<'a>(entries: &'a [Descriptor], platform: &Platform) -> Option<&'a Descriptor> {
    let candidates = entries.iter().filter_map(|d| {
        let p = d.platform().as_ref()?;
        let os = os_name(p.os());
        let arch = arch_name(p.architecture());
        let variant = p.variant().as_deref();
        platform
            .matches(&os, &arch, variant)
            .then_some((d, variant.is_some_and(|v| !v.is_empty())))
    });
    let mut best: Option<(&Descriptor, bool)> = None;
    for (d, exact) in candidates {
        if best.is_none_or(|(_, b)| exact && !b) {
            best = Some((d, exact));
        }
    }
    best.map(|(d, _)| d)
}

fn os_name(os: &Os) -> String {
    os.to_string()
}

fn arch_name(arch: &Arch) -> String {
    arch.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ImageIndex;

    fn index(entries: &[(&str, &str, Option<&str>, char)]) -> ImageIndex {
        let manifests: Vec<String> = entries
            .iter()
            .map(|(os, arch, variant, c)| {
                let v = variant.map(|v| format!(r#","variant":"{v}""#)).unwrap_or_default();
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:{}","platform":{{"os":"{os}","architecture":"{arch}"{v}}}}}"#,
                    c.to_string().repeat(64)
                )
            })
            .collect();
        serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
            manifests.join(",")
        ))
        .unwrap()
    }

    fn pick(entries: &[(&str, &str, Option<&str>, char)], p: &Platform) -> Option<char> {
        let idx = index(entries);
        select(idx.manifests(), p).map(|d| d.digest().digest().chars().next().unwrap())
    }

    #[test]
    fn selects_linux_host_arch_and_prefers_exact_variant() {
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let arm64 = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        let armv7 = Platform {
            os: "linux".into(),
            architecture: "arm".into(),
            variant: Some("v7".into()),
        };
        let list = [
            ("linux", "arm", Some("v6"), 'a'),
            ("linux", "arm", Some("v7"), 'b'),
            ("linux", "arm64", None, 'c'),
            ("linux", "arm64", Some("v8"), 'd'),
            ("windows", "amd64", None, 'e'),
            ("unknown", "unknown", None, 'f'),
            ("linux", "amd64", None, '1'),
        ];
        assert_eq!(pick(&list, &amd64), Some('1'));
        assert_eq!(pick(&list, &arm64), Some('d'));
        assert_eq!(pick(&list, &armv7), Some('b'));
        assert_eq!(pick(&[("linux", "arm64", None, 'c')], &arm64), Some('c'));
        assert_eq!(
            pick(
                &[
                    ("windows", "amd64", None, 'e'),
                    ("unknown", "unknown", None, 'f')
                ],
                &amd64
            ),
            None
        );
        assert_eq!(pick(&[("linux", "amd64", Some("v3"), '2')], &amd64), None);
    }

    #[test]
    fn host_platform_is_linux() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        assert!(!h.architecture.is_empty());
    }
}
