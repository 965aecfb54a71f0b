//! Security settings of a container as containerd's CRI plugin sets them: the default
//! capability set and `add`/`drop`/`ALL`, privileged mode, masked and read-only `/proc`
//! paths, the device cgroup rules, and `no_new_privs`.

use serde_json::{Value, json};

use super::TranslateError;

/// The capabilities container runtimes grant by default (containerd, CRI-O, Docker).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability Linux defines, by number (capabilities(7)); `ALL` means these.
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Paths masked (bind-mounted over with /dev/null or an empty tmpfs) in unprivileged containers.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths remounted read-only in unprivileged containers.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `NET_ADMIN` / `CAP_NET_ADMIN` / `net_admin` → `CAP_NET_ADMIN`, checked against the known set.
fn normalize(container: &str, name: &str) -> Result<String, TranslateError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if full == "CAP_ALL" || ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(TranslateError::Capability {
            container: container.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// The capability set: default set; `add: [ALL]` → all; `drop: [ALL]` → none; then the
/// named adds, then the named drops (containerd's order). Privileged → all.
pub fn capabilities(
    container: &str,
    privileged: bool,
    add: &[String],
    drop: &[String],
) -> Result<Vec<String>, TranslateError> {
    if privileged {
        return Ok(ALL_CAPABILITIES.iter().map(|s| (*s).to_owned()).collect());
    }
    let add: Vec<String> = add
        .iter()
        .map(|a| normalize(container, a))
        .collect::<Result<_, _>>()?;
    let drop: Vec<String> = drop
        .iter()
        .map(|d| normalize(container, d))
        .collect::<Result<_, _>>()?;
    let mut caps: Vec<String> = DEFAULT_CAPABILITIES
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if add.iter().any(|a| a == "CAP_ALL") {
        caps = ALL_CAPABILITIES.iter().map(|s| (*s).to_owned()).collect();
    }
    if drop.iter().any(|d| d == "CAP_ALL") {
        caps.clear();
    }
    for a in add.iter().filter(|a| *a != "CAP_ALL") {
        if !caps.contains(a) {
            caps.push(a.clone());
        }
    }
    caps.retain(|c| !drop.contains(c));
    Ok(caps)
}

/// The OCI `process.capabilities` object for a capability list (no inheritable set, as
/// containerd 2 does; ambient stays empty).
pub fn capabilities_json(caps: &[String]) -> Value {
    json!({
        "bounding": caps,
        "effective": caps,
        "permitted": caps,
    })
}

/// Device cgroup rules: unprivileged containers may only use the standard devices.
pub fn device_rules(privileged: bool) -> Value {
    if privileged {
        return json!([{"allow": true, "access": "rwm"}]);
    }
    let allow = |major: i64, minor: Option<i64>| {
        let mut v = json!({"allow": true, "type": "c", "major": major, "access": "rwm"});
        if let Some(m) = minor {
            v["minor"] = json!(m);
        }
        v
    };
    json!([
        {"allow": false, "access": "rwm"},
        allow(1, Some(3)),  // null
        allow(1, Some(5)),  // zero
        allow(1, Some(7)),  // full
        allow(1, Some(8)),  // random
        allow(1, Some(9)),  // urandom
        allow(5, Some(0)),  // tty
        allow(5, Some(1)),  // console
        allow(5, Some(2)),  // ptmx
        allow(136, None),   // pts/*
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(privileged: bool, add: &[&str], drop: &[&str]) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let mut c = capabilities("c", privileged, &s(add), &s(drop)).expect("valid");
        c.sort();
        c
    }

    #[test]
    fn capability_table() {
        assert_eq!(caps(false, &[], &[]).len(), 14);
        let with_net = caps(false, &["NET_ADMIN", "NET_RAW"], &[]);
        assert!(with_net.contains(&"CAP_NET_ADMIN".to_owned()) && with_net.len() == 15);
        assert_eq!(caps(false, &["NET_ADMIN"], &["ALL"]), vec!["CAP_NET_ADMIN"]);
        assert_eq!(caps(false, &[], &["ALL"]), Vec::<String>::new());
        assert_eq!(caps(false, &["ALL"], &[]).len(), ALL_CAPABILITIES.len());
        assert_eq!(
            caps(false, &["ALL"], &["SYS_ADMIN"]).len(),
            ALL_CAPABILITIES.len() - 1
        );
        assert!(
            !caps(false, &[], &["CAP_NET_RAW", "kill"])
                .iter()
                .any(|c| c == "CAP_NET_RAW" || c == "CAP_KILL")
        );
        assert_eq!(caps(true, &[], &["ALL"]).len(), ALL_CAPABILITIES.len());
        assert!(capabilities("c", false, &["NOT_A_CAP".to_owned()], &[]).is_err());
    }
}
