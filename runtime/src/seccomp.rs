//! Compile `linux.seccomp` to a classic BPF program (pure; installed by the init, last).
//!
//! Why not `seccompiler`: its filter has one match action for all rules, while an OCI
//! profile gives each rule its own action and errno (`SCMP_ACT_ERRNO` with `errnoRet`,
//! `SCMP_ACT_LOG`, `SCMP_ACT_KILL_PROCESS` side by side), and OCI's "several conditions on
//! the same argument mean OR" rule (libseccomp's) has no equivalent there. The generator
//! below is small: one block per rule, first match wins, in profile order.
//!
//! Architectures: the runtime targets x86_64. A syscall made through another ABI (i386 via
//! `int 0x80`, x32) gets the profile's default action when the profile lists that
//! architecture and `SCMP_ACT_KILL_PROCESS` otherwise (libseccomp's bad-arch action). Rules
//! are not translated to the other ABIs' numbers: a profile whose default is permissive and
//! relies on rules to block 32-bit syscalls is therefore stricter here (default applies),
//! never looser. Unknown syscall names are skipped, as runc does.

use std::str::FromStr;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sys::SockFilter;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x54;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const JMP_JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

const RET_KILL_PROCESS: u32 = 0x8000_0000;

/// A compiled filter and the flags for `seccomp(SECCOMP_SET_MODE_FILTER)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompProgram {
    /// BPF instructions.
    pub program: Vec<SockFilter>,
    /// `SECCOMP_FILTER_FLAG_*`.
    pub flags: u32,
}

/// Jump target inside one block, resolved when the block is closed.
#[derive(Clone, Copy)]
enum Jump {
    /// Next instruction.
    Next,
    /// Skip this many instructions.
    Skip(u8),
    /// First instruction after the block (the rule does not match).
    Fail,
}

struct Insn {
    code: u16,
    jt: Jump,
    jf: Jump,
    k: u32,
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: Jump::Next,
        jf: Jump::Next,
        k,
    }
}

fn jump(code: u16, k: u32, jt: Jump, jf: Jump) -> Insn {
    Insn { code, jt, jf, k }
}

fn resolve(block: Vec<Insn>) -> Vec<SockFilter> {
    let len = block.len();
    let off = |j: Jump, idx: usize| -> u8 {
        match j {
            Jump::Next => 0,
            Jump::Skip(n) => n,
            // Blocks are at most a few dozen instructions (6 conditions of 7 at most).
            Jump::Fail => u8::try_from(len - idx - 1).unwrap_or(u8::MAX),
        }
    };
    block
        .into_iter()
        .enumerate()
        .map(|(i, ins)| SockFilter {
            code: ins.code,
            jt: off(ins.jt, i),
            jf: off(ins.jf, i),
            k: ins.k,
        })
        .collect()
}

/// The `SECCOMP_RET_*` value of an OCI action.
pub fn action_value(action: LinuxSeccompAction, errno: Option<u32>, field: &str) -> Result<u32> {
    use LinuxSeccompAction as A;
    Ok(match action {
        A::ScmpActKill | A::ScmpActKillThread => 0,
        A::ScmpActKillProcess => RET_KILL_PROCESS,
        A::ScmpActTrap => 0x0003_0000,
        A::ScmpActErrno => 0x0005_0000 | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        A::ScmpActTrace => 0x7ff0_0000 | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        A::ScmpActLog => 0x7ffc_0000,
        A::ScmpActAllow => 0x7fff_0000,
        A::ScmpActNotify => {
            return Err(Error::spec(
                field,
                "SCMP_ACT_NOTIFY (seccomp user notification and listenerPath) is not supported by podvisor-oci",
            ));
        }
    })
}

fn load_arg(index: usize, high: bool) -> Insn {
    let off = OFF_ARGS + 8 * index as u32 + if high { 4 } else { 0 };
    stmt(LD_W_ABS, off)
}

/// Instructions checking one argument condition; they fall through when it holds and jump
/// to [`Jump::Fail`] when it does not.
fn condition(arg: &LinuxSeccompArg) -> Vec<Insn> {
    use Jump::{Fail, Next, Skip};
    use LinuxSeccompOperator as Op;
    let i = arg.index();
    let v = arg.value();
    let (vhi, vlo) = ((v >> 32) as u32, v as u32);
    match arg.op() {
        Op::ScmpCmpEq => vec![
            load_arg(i, true),
            jump(JMP_JEQ_K, vhi, Next, Fail),
            load_arg(i, false),
            jump(JMP_JEQ_K, vlo, Next, Fail),
        ],
        Op::ScmpCmpNe => vec![
            load_arg(i, true),
            jump(JMP_JEQ_K, vhi, Next, Skip(2)),
            load_arg(i, false),
            jump(JMP_JEQ_K, vlo, Fail, Next),
        ],
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            let lo_op = if arg.op() == Op::ScmpCmpGt {
                JMP_JGT_K
            } else {
                JMP_JGE_K
            };
            vec![
                load_arg(i, true),
                jump(JMP_JGT_K, vhi, Skip(3), Next),
                jump(JMP_JEQ_K, vhi, Next, Fail),
                load_arg(i, false),
                jump(lo_op, vlo, Next, Fail),
            ]
        }
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            // lo < v  <=>  !(lo >= v);  lo <= v  <=>  !(lo > v)
            let lo_op = if arg.op() == Op::ScmpCmpLt {
                JMP_JGE_K
            } else {
                JMP_JGT_K
            };
            vec![
                load_arg(i, true),
                jump(JMP_JGE_K, vhi, Next, Skip(3)),
                jump(JMP_JEQ_K, vhi, Next, Fail),
                load_arg(i, false),
                jump(lo_op, vlo, Fail, Next),
            ]
        }
        Op::ScmpCmpMaskedEq => {
            let want = arg.value_two().unwrap_or(0);
            vec![
                load_arg(i, true),
                stmt(ALU_AND_K, vhi),
                jump(JMP_JEQ_K, (want >> 32) as u32, Next, Fail),
                load_arg(i, false),
                stmt(ALU_AND_K, vlo),
                jump(JMP_JEQ_K, want as u32, Next, Fail),
            ]
        }
    }
}

/// One rule block: load nr, compare, check `conds` (AND), return `action`.
fn rule_block(nr: u32, conds: &[&LinuxSeccompArg], action: u32) -> Vec<SockFilter> {
    let mut block = vec![
        stmt(LD_W_ABS, OFF_NR),
        jump(JMP_JEQ_K, nr, Jump::Next, Jump::Fail),
    ];
    for c in conds {
        block.extend(condition(c));
    }
    block.push(stmt(RET_K, action));
    resolve(block)
}

/// Unconditional rules sharing one action: `ld nr; jeq n1..nk -> ret; ja over; ret action`.
fn name_chunk(nrs: &[u32], action: u32) -> Vec<SockFilter> {
    let mut out = vec![SockFilter {
        code: LD_W_ABS,
        jt: 0,
        jf: 0,
        k: OFF_NR,
    }];
    let m = nrs.len();
    for (i, nr) in nrs.iter().enumerate() {
        out.push(SockFilter {
            code: JMP_JEQ_K,
            jt: (m - i) as u8,
            jf: 0,
            k: *nr,
        });
    }
    out.push(SockFilter {
        code: JMP_JA,
        jt: 0,
        jf: 0,
        k: 1,
    });
    out.push(SockFilter {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: action,
    });
    out
}

fn syscall_number(name: &str) -> Option<u32> {
    syscalls::Sysno::from_str(name).ok().map(|s| s.id() as u32)
}

fn filter_flags(flags: &[LinuxSeccompFilterFlag]) -> u32 {
    flags
        .iter()
        .map(|f| match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 32,
        })
        .fold(0, |a, b| a | b)
}

/// Compile an OCI seccomp section for x86_64.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<SeccompProgram> {
    if seccomp.listener_path().is_some() {
        return Err(Error::spec(
            "linux.seccomp.listenerPath",
            "seccomp user notification is not supported by podvisor-oci",
        ));
    }
    let default = action_value(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        "linux.seccomp.defaultAction",
    )?;
    let arches: Vec<Arch> = seccomp.architectures().clone().unwrap_or_default();
    let lists = |a: Arch| arches.is_empty() || arches.contains(&a);
    let foreign = |a: Arch| {
        if arches.contains(&a) {
            default
        } else {
            RET_KILL_PROCESS
        }
    };
    if !arches.is_empty() && !lists(Arch::ScmpArchX86_64) && !arches.contains(&Arch::ScmpArchNative)
    {
        return Err(Error::spec(
            "linux.seccomp.architectures",
            "does not include SCMP_ARCH_X86_64, the only architecture this runtime runs",
        ));
    }
    let ins = |code, jt, jf, k| SockFilter { code, jt, jf, k };
    let mut prog = vec![
        ins(LD_W_ABS, 0, 0, OFF_ARCH),
        ins(JMP_JEQ_K, 3, 0, AUDIT_ARCH_X86_64),
        ins(JMP_JEQ_K, 0, 1, AUDIT_ARCH_I386),
        ins(RET_K, 0, 0, foreign(Arch::ScmpArchX86)),
        ins(RET_K, 0, 0, RET_KILL_PROCESS),
        ins(LD_W_ABS, 0, 0, OFF_NR),
        ins(JMP_JGE_K, 0, 1, X32_SYSCALL_BIT),
        ins(RET_K, 0, 0, foreign(Arch::ScmpArchX32)),
    ];
    let mut pending: Vec<u32> = Vec::new();
    let mut pending_action = 0u32;
    let flush = |prog: &mut Vec<SockFilter>, pending: &mut Vec<u32>, action: u32| {
        for chunk in pending.chunks(200) {
            prog.extend(name_chunk(chunk, action));
        }
        pending.clear();
    };
    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let action = action_value(rule.action(), rule.errno_ret(), &field)?;
        let args: Vec<LinuxSeccompArg> = rule.args().clone().unwrap_or_default();
        for a in &args {
            if a.index() > 5 {
                return Err(Error::spec(
                    format!("{field}.args"),
                    format!("argument index {} out of range 0..=5", a.index()),
                ));
            }
        }
        let nrs: Vec<u32> = rule
            .names()
            .iter()
            .filter_map(|n| syscall_number(n))
            .collect();
        if args.is_empty() {
            if !pending.is_empty() && pending_action != action {
                flush(&mut prog, &mut pending, pending_action);
            }
            pending_action = action;
            pending.extend(nrs);
            continue;
        }
        flush(&mut prog, &mut pending, pending_action);
        // libseccomp semantics: several conditions on the same argument are alternatives
        // (OR, one rule each); conditions on different arguments must all hold (AND).
        let same_index = args.len() > 1 && args.iter().all(|a| a.index() == args[0].index());
        for nr in nrs {
            if same_index {
                for a in &args {
                    prog.extend(rule_block(nr, &[a], action));
                }
            } else {
                let refs: Vec<&LinuxSeccompArg> = args.iter().collect();
                prog.extend(rule_block(nr, &refs, action));
            }
        }
    }
    flush(&mut prog, &mut pending, pending_action);
    prog.push(SockFilter {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: default,
    });
    if prog.len() > 4096 {
        return Err(Error::spec(
            "linux.seccomp",
            format!(
                "compiles to {} BPF instructions, above the kernel's 4096",
                prog.len()
            ),
        ));
    }
    Ok(SeccompProgram {
        program: prog,
        flags: filter_flags(seccomp.flags().as_deref().unwrap_or(&[])),
    })
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
