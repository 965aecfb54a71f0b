//! The container process: argv from image Entrypoint/Cmd and the container's command/args,
//! the environment (image env, then the container's, with `fieldRef` values and `$(VAR)`
//! expansion), the working directory, and the user (runAsUser/runAsGroup, supplemental
//! groups, or the image's `User`, resolved against the image's /etc/passwd and /etc/group).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::expand::expand;
use super::{PodContext, TranslateError};

/// The image's runtime defaults (the `config` object of an OCI image configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env` (`NAME=value`).
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: String,
    /// `User` (`uid`, `name`, `uid:gid`, `name:group`...).
    pub user: String,
}

impl ImageDefaults {
    /// Reads the defaults out of an OCI image configuration.
    pub fn from_image(config: &oci_spec::image::ImageConfiguration) -> Self {
        let Some(c) = config.config() else {
            return ImageDefaults::default();
        };
        ImageDefaults {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().unwrap_or_default(),
            user: c.user().clone().unwrap_or_default(),
        }
    }
}

/// The value of a `fieldRef` for this pod (`metadata.name`, `status.podIP`, ...).
pub fn field_value(pod: &Pod, ctx: &PodContext, path: &str) -> Option<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let quoted_key = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_owned)
    };
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.clone(),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.clone(),
        _ => {
            if let Some(k) = quoted_key("metadata.labels['") {
                return Some(
                    m.labels
                        .as_ref()
                        .and_then(|l| l.get(&k))
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            if let Some(k) = quoted_key("metadata.annotations['") {
                return Some(
                    m.annotations
                        .as_ref()
                        .and_then(|l| l.get(&k))
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            return None;
        }
    })
}

/// The container's own environment as the kubelet computes it: each value expanded with
/// the variables defined before it, `fieldRef`s resolved. Ordered as written.
pub fn container_env(
    pod: &Pod,
    c: &Container,
    ctx: &PodContext,
) -> Result<Vec<(String, String)>, TranslateError> {
    let mut defined: BTreeMap<String, String> = BTreeMap::new();
    let mut out: Vec<(String, String)> = Vec::new();
    for e in c.env.iter().flatten() {
        let value = if let Some(f) = e.value_from.as_ref().and_then(|v| v.field_ref.as_ref()) {
            field_value(pod, ctx, &f.field_path).ok_or_else(|| TranslateError::Unsupported {
                container: c.name.clone(),
                field: format!("env {} fieldRef {}", e.name, f.field_path),
            })?
        } else {
            let raw = e.value.clone().unwrap_or_default();
            expand(&raw, &|n| defined.get(n).cloned())
        };
        defined.insert(e.name.clone(), value.clone());
        match out.iter_mut().find(|(n, _)| *n == e.name) {
            Some(slot) => slot.1 = value,
            None => out.push((e.name.clone(), value)),
        }
    }
    Ok(out)
}

/// The full process environment: image env, then `HOSTNAME`, then the container's env,
/// a later definition of a name replacing an earlier one in place (containerd's `WithEnv`).
pub fn process_env(
    image: &ImageDefaults,
    hostname: &str,
    container: &[(String, String)],
) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match out.iter_mut().find(|(n, _)| n == k) {
        Some(slot) => slot.1 = v.to_owned(),
        None => out.push((k.to_owned(), v.to_owned())),
    };
    for kv in &image.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        set(k, v);
    }
    if !image.env.iter().any(|kv| kv.starts_with("PATH=")) {
        set(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    }
    if !hostname.is_empty() {
        set("HOSTNAME", hostname);
    }
    for (k, v) in container {
        set(k, v);
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// argv: `command` replaces Entrypoint (and drops Cmd), `args` replaces Cmd, both expanded
/// with the container env (Kubernetes' rules, as in the Pod API reference).
pub fn argv(
    c: &Container,
    image: &ImageDefaults,
    env: &[(String, String)],
) -> Result<Vec<String>, TranslateError> {
    let lookup = |n: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    let ex = |v: &Vec<String>| v.iter().map(|s| expand(s, &lookup)).collect::<Vec<_>>();
    let out = match (&c.command, &c.args) {
        (Some(cmd), Some(args)) => [ex(cmd), ex(args)].concat(),
        (Some(cmd), None) => ex(cmd),
        (None, Some(args)) => [image.entrypoint.clone(), ex(args)].concat(),
        (None, None) => [image.entrypoint.clone(), image.cmd.clone()].concat(),
    };
    if out.is_empty() {
        return Err(TranslateError::NoCommand {
            container: c.name.clone(),
        });
    }
    Ok(out)
}

/// The resolved process user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Additional gids: the user's groups from the image's /etc/group, then supplementalGroups.
    pub additional_gids: Vec<u32>,
}

fn passwd_lookup(passwd: &str, key: &str) -> Option<(String, u32, u32)> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let uid: u32 = f[2].parse().ok()?;
        let gid: u32 = f[3].parse().ok()?;
        (f[0] == key || f[2] == key).then(|| (f[0].to_owned(), uid, gid))
    })
}

fn group_lookup(group: &str, key: &str) -> Option<u32> {
    group.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 {
            return None;
        }
        (f[0] == key).then(|| f[2].parse().ok()).flatten()
    })
}

fn groups_of(group: &str, user: &str) -> Vec<u32> {
    group
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 4 && f[3].split(',').any(|m| m == user))
                .then(|| f[2].parse().ok())
                .flatten()
        })
        .collect()
}

/// Resolves the user: `runAsUser`/`runAsGroup` (container over pod) win over the image's
/// `User`; names are looked up in the image's /etc/passwd and /etc/group. Checks `runAsNonRoot`.
#[allow(clippy::too_many_arguments)]
pub fn resolve_user(
    container: &str,
    image_user: &str,
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    run_as_non_root: bool,
    supplemental: &[i64],
    passwd: &str,
    group: &str,
) -> Result<ResolvedUser, TranslateError> {
    let bad = |why: String| TranslateError::User {
        container: container.to_owned(),
        message: why,
    };
    let to_u32 = |v: i64, what: &str| {
        u32::try_from(v).map_err(|_| bad(format!("{what} {v} is out of range")))
    };
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    let (name, mut uid, mut gid) = match run_as_user {
        Some(u) => {
            let uid = to_u32(u, "runAsUser")?;
            match passwd_lookup(passwd, &uid.to_string()) {
                Some((n, _, g)) => (Some(n), uid, g),
                None => (None, uid, 0),
            }
        }
        None if user_part.is_empty() => match passwd_lookup(passwd, "0") {
            Some((n, _, g)) => (Some(n), 0, g),
            None => (None, 0, 0),
        },
        None => match (user_part.parse::<u32>(), passwd_lookup(passwd, user_part)) {
            (_, Some((n, u, g))) => (Some(n), u, g),
            (Ok(u), None) => (None, u, 0),
            (Err(_), None) => {
                return Err(bad(format!(
                    "image user {user_part:?} is not in the image's /etc/passwd"
                )));
            }
        },
    };
    if run_as_user.is_none() {
        if let Some(g) = group_part.filter(|g| !g.is_empty()) {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => group_lookup(group, g).ok_or_else(|| {
                    bad(format!(
                        "image group {g:?} is not in the image's /etc/group"
                    ))
                })?,
            };
        }
    }
    if let Some(g) = run_as_group {
        gid = to_u32(g, "runAsGroup")?;
    }
    if run_as_non_root {
        if run_as_user.is_none() && !user_part.is_empty() && user_part.parse::<u32>().is_err() {
            return Err(bad(format!(
                "runAsNonRoot is set and the image user {user_part:?} is not numeric, so it cannot be verified"
            )));
        }
        if uid == 0 {
            return Err(bad(
                "runAsNonRoot is set and the container would run as root (uid 0)".to_owned(),
            ));
        }
    }
    let mut additional: Vec<u32> = Vec::new();
    if let Some(n) = name.as_deref() {
        additional.extend(groups_of(group, n));
    }
    for g in supplemental {
        additional.push(to_u32(*g, "supplementalGroups")?);
    }
    additional.retain(|g| *g != gid);
    let mut seen = std::collections::BTreeSet::new();
    additional.retain(|g| seen.insert(*g));
    uid = uid.min(u32::MAX - 1);
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
    })
}

/// Reads `etc/passwd` and `etc/group` of a container root filesystem (the effect that feeds
/// [`resolve_user`]). Paths resolve *inside* the root (openat2(2) `RESOLVE_IN_ROOT`), so an
/// image whose `/etc/passwd` is a symlink to a host file cannot make us read the host's.
/// A missing file reads as empty; files are capped at 4 MiB.
pub fn read_user_db(rootfs: &std::path::Path) -> std::io::Result<(String, String)> {
    use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};
    use std::io::Read;
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let read = |name: &str| -> std::io::Result<String> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY;
        match openat2(
            &root,
            name,
            flags,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => {
                let mut text = String::new();
                std::fs::File::from(fd)
                    .take(4 << 20)
                    .read_to_string(&mut text)?;
                Ok(text)
            }
            Err(rustix::io::Errno::NOENT) => Ok(String::new()),
            Err(e) => Err(e.into()),
        }
    };
    Ok((read("etc/passwd")?, read("etc/group")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\netcd:x:1000:1001::/:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\netcd:x:1001:\nwheel:x:10:etcd,root\n";

    #[test]
    fn user_resolution_table() {
        let r = |img: &str, ru: Option<i64>, rg: Option<i64>, nonroot: bool, sup: &[i64]| {
            resolve_user("c", img, ru, rg, nonroot, sup, PASSWD, GROUP)
                .map(|u| (u.uid, u.gid, u.additional_gids))
        };
        assert_eq!(r("", None, None, false, &[]), Ok((0, 0, vec![10])));
        assert_eq!(
            r("etcd", None, None, false, &[]),
            Ok((1000, 1001, vec![10]))
        );
        assert_eq!(
            r("1000", None, None, false, &[]),
            Ok((1000, 1001, vec![10]))
        );
        assert_eq!(
            r("4242:4343", None, None, false, &[]),
            Ok((4242, 4343, vec![]))
        );
        assert_eq!(
            r("nobody:etcd", None, None, false, &[]),
            Ok((65534, 1001, vec![]))
        );
        assert_eq!(
            r("etcd", Some(2000), Some(3000), false, &[5, 3000]),
            Ok((2000, 3000, vec![5]))
        );
        assert!(r("missing", None, None, false, &[]).is_err());
        assert!(
            r("", None, None, true, &[]).is_err(),
            "root with runAsNonRoot"
        );
        assert!(
            r("etcd", None, None, true, &[]).is_err(),
            "non-numeric image user cannot be verified"
        );
        assert_eq!(r("1000", None, None, true, &[]), Ok((1000, 1001, vec![10])));
        assert_eq!(
            r("", Some(1000), None, true, &[]),
            Ok((1000, 1001, vec![10]))
        );
    }

    #[test]
    fn image_defaults_come_from_the_oci_image_config() {
        let json = r#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/usr/local/bin/etcd"],"Cmd":["--help"],"Env":["PATH=/usr/local/bin"],"WorkingDir":"/data","User":"65532:65532"},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let cfg: oci_spec::image::ImageConfiguration =
            serde_json::from_str(json).expect("image config");
        let d = ImageDefaults::from_image(&cfg);
        assert_eq!(d.entrypoint, vec!["/usr/local/bin/etcd"]);
        assert_eq!(d.cmd, vec!["--help"]);
        assert_eq!(d.working_dir, "/data");
        assert_eq!(d.user, "65532:65532");
        assert_eq!(d.env, vec!["PATH=/usr/local/bin"]);
    }

    #[test]
    fn argv_follows_kubernetes_command_and_args_rules() {
        let image = ImageDefaults {
            entrypoint: vec!["/ep".into()],
            cmd: vec!["cmd".into()],
            ..Default::default()
        };
        let mk = |command: Option<Vec<&str>>, args: Option<Vec<&str>>| Container {
            name: "c".into(),
            command: command.map(|v| v.into_iter().map(String::from).collect()),
            args: args.map(|v| v.into_iter().map(String::from).collect()),
            ..Default::default()
        };
        let env = vec![("X".to_owned(), "1".to_owned())];
        assert_eq!(
            argv(&mk(None, None), &image, &env),
            Ok(vec!["/ep".into(), "cmd".into()])
        );
        assert_eq!(
            argv(&mk(Some(vec!["/bin/x"]), None), &image, &env),
            Ok(vec!["/bin/x".into()])
        );
        assert_eq!(
            argv(&mk(None, Some(vec!["a=$(X)"])), &image, &env),
            Ok(vec!["/ep".into(), "a=1".into()])
        );
        assert_eq!(
            argv(&mk(Some(vec!["/x"]), Some(vec!["$(X)"])), &image, &env),
            Ok(vec!["/x".into(), "1".into()])
        );
        assert!(argv(&mk(None, None), &ImageDefaults::default(), &env).is_err());
    }

    #[test]
    fn user_db_is_read_inside_the_root() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join("etc")).expect("etc");
        std::fs::write(root.path().join("etc/group"), GROUP).expect("group");
        // an absolute symlink must resolve inside the rootfs, not to the host's file
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("passwd"), "host:x:0:0::/:/bin/sh\n")
            .expect("host file");
        std::os::unix::fs::symlink(
            outside.path().join("passwd"),
            root.path().join("etc/passwd"),
        )
        .expect("symlink");
        let (passwd, group) = read_user_db(root.path()).expect("reads");
        assert_eq!(
            passwd, "",
            "the symlink target is looked up inside the root, where it does not exist"
        );
        assert_eq!(group, GROUP);
        std::fs::remove_file(root.path().join("etc/passwd")).expect("rm");
        std::fs::write(root.path().join("etc/passwd"), PASSWD).expect("passwd");
        assert_eq!(read_user_db(root.path()).expect("reads").0, PASSWD);
    }

    #[test]
    fn env_merge_replaces_in_place() {
        let image = ImageDefaults {
            env: vec!["PATH=/bin".into(), "A=1".into(), "B=2".into()],
            ..Default::default()
        };
        let env = process_env(
            &image,
            "h",
            &[("B".into(), "x".into()), ("C".into(), "3".into())],
        );
        assert_eq!(env, vec!["PATH=/bin", "A=1", "B=x", "HOSTNAME=h", "C=3"]);
    }
}
