//! The device controller of cgroup v2: `linux.resources.devices` rules compiled to an eBPF
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program (pure), attached to the container's cgroup by
//! [`crate::sys::attach_device_filter`].
//!
//! Semantics follow runc: rules are read in order and the last matching one decides; when
//! the spec lists rules, the devices every container needs (null, zero, full, random,
//! urandom, tty, console, ptmx, pts, tun, and `mknod` of anything) are allowed after them.
//! The spec's `linux.devices` only create nodes: like runc and crun, they grant no access,
//! so a node the rules do not allow cannot be opened. Without rules no program is attached.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// `BPF_DEVCG_ACC_MKNOD`, `_READ`, `_WRITE`.
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;
/// `BPF_DEVCG_DEV_BLOCK`, `_CHAR`.
const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;

/// One device rule, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// `DEV_CHAR`, `DEV_BLOCK`, or `None` for all.
    pub kind: Option<u32>,
    /// Major number, `None` for any.
    pub major: Option<u32>,
    /// Minor number, `None` for any.
    pub minor: Option<u32>,
    /// Access bits (mknod 1, read 2, write 4).
    pub access: u32,
}

fn access_bits(s: Option<&str>) -> u32 {
    match s {
        None | Some("") => ACC_ALL,
        Some(s) => s.chars().fold(0, |a, c| match c {
            'm' => a | ACC_MKNOD,
            'r' => a | ACC_READ,
            'w' => a | ACC_WRITE,
            _ => a,
        }),
    }
}

fn char_rule(major: Option<u32>, minor: Option<u32>, access: u32) -> DeviceRule {
    DeviceRule {
        allow: true,
        kind: Some(DEV_CHAR),
        major,
        minor,
        access,
    }
}

/// runc's list of devices every container may use.
fn default_allowed() -> Vec<DeviceRule> {
    let mut v = vec![
        char_rule(None, None, ACC_MKNOD),
        DeviceRule {
            kind: Some(DEV_BLOCK),
            ..char_rule(None, None, ACC_MKNOD)
        },
    ];
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
        (10, 200),
    ] {
        v.push(char_rule(Some(major), Some(minor), ACC_ALL));
    }
    v.push(char_rule(Some(136), None, ACC_ALL));
    v
}

/// The rules to enforce (`spec` then runc's default allowed devices), or `None` when
/// the spec has none (no program is attached). `linux.devices` add no rule.
pub fn device_rules(spec: &[LinuxDeviceCgroup]) -> Option<Vec<DeviceRule>> {
    if spec.is_empty() {
        return None;
    }
    let mut rules: Vec<DeviceRule> = spec
        .iter()
        .map(|r| DeviceRule {
            allow: r.allow(),
            kind: match r.typ() {
                Some(LinuxDeviceType::B) => Some(DEV_BLOCK),
                Some(LinuxDeviceType::C | LinuxDeviceType::U) => Some(DEV_CHAR),
                Some(LinuxDeviceType::P) => Some(0),
                Some(LinuxDeviceType::A) | None => None,
            },
            major: r.major().and_then(|m| u32::try_from(m).ok()),
            minor: r.minor().and_then(|m| u32::try_from(m).ok()),
            access: access_bits(r.access().as_deref()),
        })
        .collect();
    rules.extend(default_allowed());
    Some(rules)
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    /// Opcode.
    pub code: u8,
    /// dst_reg (low 4 bits) and src_reg (high 4 bits).
    pub regs: u8,
    /// Jump offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const AND64_K: u8 = 0x57;
const RSH64_K: u8 = 0x77;
const JNE_K: u8 = 0x55;
const EXIT: u8 = 0x95;

fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// Compile `rules` (last match wins, default deny) to a device program.
///
/// Registers: r2 access bits, r3 device type, r4 major, r5 minor (from
/// `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`).
pub fn compile(rules: &[DeviceRule]) -> Vec<BpfInsn> {
    let mut p = vec![
        ins(LDX_W, 2, 1, 0, 0),
        ins(MOV64_X, 3, 2, 0, 0),
        ins(AND64_K, 3, 0, 0, 0xffff),
        ins(RSH64_K, 2, 0, 0, 16),
        ins(LDX_W, 4, 1, 4, 0),
        ins(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        let mut block: Vec<BpfInsn> = Vec::new();
        // Jumps to "next rule" are patched once the block length is known (i16::MIN marks).
        if let Some(k) = r.kind {
            block.push(ins(JNE_K, 3, 0, i16::MIN, k as i32));
        }
        if r.access & ACC_ALL != ACC_ALL {
            // Requested access must be a subset of the rule's: (r2 & !access) == 0.
            block.push(ins(MOV64_X, 6, 2, 0, 0));
            block.push(ins(AND64_K, 6, 0, 0, (!r.access & ACC_ALL) as i32));
            block.push(ins(JNE_K, 6, 0, i16::MIN, 0));
        }
        if let Some(m) = r.major {
            block.push(ins(JNE_K, 4, 0, i16::MIN, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(ins(JNE_K, 5, 0, i16::MIN, m as i32));
        }
        block.push(ins(MOV64_K, 0, 0, 0, i32::from(r.allow)));
        block.push(ins(EXIT, 0, 0, 0, 0));
        let len = block.len();
        let mut conditional = false;
        for (i, b) in block.iter_mut().enumerate() {
            if b.off == i16::MIN {
                b.off = (len - i - 1) as i16;
                conditional = true;
            }
        }
        p.extend(block);
        if !conditional {
            // A rule matching everything decides alone; the verifier rejects the
            // unreachable code that would follow it.
            return p;
        }
    }
    p.push(ins(MOV64_K, 0, 0, 0, 0));
    p.push(ins(EXIT, 0, 0, 0, 0));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a device program like the kernel: returns r0.
    fn run(prog: &[BpfInsn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            pc += 1;
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            match i.code {
                LDX_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                MOV64_X => r[dst] = r[src],
                MOV64_K => r[dst] = i.imm as u64,
                AND64_K => r[dst] &= i.imm as u64,
                RSH64_K => r[dst] >>= i.imm,
                JNE_K => {
                    if r[dst] != i.imm as u64 {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    fn rules(json: &str) -> Vec<DeviceRule> {
        let spec: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
        device_rules(&spec).unwrap()
    }

    #[test]
    fn deny_all_then_only_the_default_devices() {
        let p = compile(&rules(r#"[{"allow": false, "access": "rwm"}]"#));
        let (c, b) = (DEV_CHAR, DEV_BLOCK);
        assert_eq!(run(&p, c, ACC_READ | ACC_WRITE, 1, 3), 1, "/dev/null");
        assert_eq!(run(&p, c, ACC_READ, 136, 7), 1, "/dev/pts/7");
        assert_eq!(run(&p, c, ACC_READ, 10, 200), 1, "/dev/net/tun");
        assert_eq!(
            run(&p, c, ACC_WRITE, 1, 11),
            0,
            "/dev/kmsg: a linux.devices node gets no rule"
        );
        assert_eq!(
            run(&p, c, ACC_READ, 10, 229),
            0,
            "/dev/fuse is not a default"
        );
        assert_eq!(run(&p, b, ACC_READ, 8, 0), 0, "/dev/sda read");
        assert_eq!(
            run(&p, b, ACC_MKNOD, 8, 0),
            1,
            "mknod is allowed, use is not"
        );
        assert_eq!(run(&p, c, ACC_WRITE, 4, 1), 0, "tty1");
    }

    #[test]
    fn later_rules_override_earlier_ones_and_access_is_a_subset_check() {
        let p = compile(&rules(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "b", "major": 8, "access": "r"},
                {"allow": false, "type": "b", "major": 8, "minor": 1}]"#,
        ));
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ | ACC_WRITE, 8, 0), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 1), 0);
    }

    #[test]
    fn nothing_follows_a_rule_matching_everything() {
        let p = compile(&[DeviceRule {
            allow: true,
            kind: None,
            major: None,
            minor: None,
            access: ACC_ALL,
        }]);
        assert_eq!(p.len(), 8);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 1);
    }

    #[test]
    fn no_rules_means_no_program() {
        assert!(device_rules(&[]).is_none());
    }
}
