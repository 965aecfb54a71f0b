//! Capability names (`CAP_NET_ADMIN`) to numbers, and the five sets of a process as masks.

/// Capability names in kernel numbering order (`CAP_CHOWN` is 0).
const NAMES: [&str; 41] = [
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

/// All capability names, in kernel numbering order (`CAP_CHOWN` is 0).
pub const ALL_NAMES: &[&str] = &NAMES;

/// Number of the highest capability this runtime knows.
pub const LAST_CAP: u32 = NAMES.len() as u32 - 1;

/// Capability number for `CAP_X` (also accepts `X`, as Kubernetes writes it).
pub fn cap_number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    NAMES.iter().position(|n| *n == full).map(|i| i as u32)
}

/// All capability names, in number order (for `features`).
pub fn all_names() -> &'static [&'static str] {
    &NAMES
}

/// Mask of the named capabilities. Unknown names are returned as the error, so the caller
/// can name the offending field.
pub fn mask_of<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<u64, String> {
    let mut mask = 0u64;
    for n in names {
        let bit = cap_number(n).ok_or_else(|| n.to_string())?;
        mask |= 1 << bit;
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_kernel_numbers() {
        assert_eq!(cap_number("CAP_CHOWN"), Some(0));
        assert_eq!(cap_number("CAP_NET_ADMIN"), Some(12));
        assert_eq!(cap_number("NET_ADMIN"), Some(12));
        assert_eq!(cap_number("cap_sys_admin"), Some(21));
        assert_eq!(cap_number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(cap_number("CAP_NOPE"), None);
    }

    #[test]
    fn mask_reports_unknown_name() {
        assert_eq!(mask_of(["CAP_KILL", "CAP_CHOWN"]), Ok(0b10_0001));
        assert_eq!(mask_of(["CAP_KILL", "BOGUS"]), Err("BOGUS".to_string()));
    }
}
