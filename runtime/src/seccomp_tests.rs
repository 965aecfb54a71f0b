//! Table tests of the seccomp compiler, run through a tiny classic-BPF interpreter.

use super::*;

/// Evaluate `prog` on a `seccomp_data` (arch, nr, args) like the kernel would.
fn run(prog: &[SockFilter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let word = |off: u32| -> u32 {
        match off {
            0 => nr,
            4 => arch,
            o if (16..64).contains(&o) => {
                let i = ((o - 16) / 8) as usize;
                if (o - 16) % 8 == 0 {
                    args[i] as u32
                } else {
                    (args[i] >> 32) as u32
                }
            }
            _ => panic!("bad offset {off}"),
        }
    };
    let mut a = 0u32;
    let mut pc = 0usize;
    loop {
        let ins = prog[pc];
        pc += 1;
        match ins.code {
            LD_W_ABS => a = word(ins.k),
            ALU_AND_K => a &= ins.k,
            JMP_JA => pc += ins.k as usize,
            JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                let t = match ins.code {
                    JMP_JEQ_K => a == ins.k,
                    JMP_JGT_K => a > ins.k,
                    _ => a >= ins.k,
                };
                pc += if t { ins.jt } else { ins.jf } as usize;
            }
            RET_K => return ins.k,
            c => panic!("unknown opcode {c:#x}"),
        }
    }
}

fn profile(json: &str) -> SeccompProgram {
    let s: LinuxSeccomp = serde_json::from_str(json).unwrap();
    compile(&s).unwrap()
}

const X86_64: u32 = AUDIT_ARCH_X86_64;
const ALLOW: u32 = 0x7fff_0000;
fn errno(e: u32) -> u32 {
    0x0005_0000 | e
}
fn nr(name: &str) -> u32 {
    syscall_number(name).unwrap()
}

#[test]
fn per_rule_errno_and_default_action() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
                        {"names":["getcwd"],"action":"SCMP_ACT_ERRNO"},
                        {"names":["uname"],"action":"SCMP_ACT_LOG"}]}"#,
    );
    let a = [0; 6];
    assert_eq!(run(&p.program, X86_64, nr("mkdir"), a), errno(38));
    assert_eq!(run(&p.program, X86_64, nr("mkdirat"), a), errno(38));
    assert_eq!(run(&p.program, X86_64, nr("getcwd"), a), errno(1));
    assert_eq!(run(&p.program, X86_64, nr("uname"), a), 0x7ffc_0000);
    assert_eq!(run(&p.program, X86_64, nr("read"), a), ALLOW);
}

#[test]
fn default_errno_ret_applies_to_default_action() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":13,
            "syscalls":[{"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"}]}"#,
    );
    assert_eq!(run(&p.program, X86_64, nr("write"), [0; 6]), ALLOW);
    assert_eq!(run(&p.program, X86_64, nr("open"), [0; 6]), errno(13));
}

#[test]
fn argument_conditions_compare_all_64_bits() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
            {"names":["kill"],"action":"SCMP_ACT_ERRNO","args":[{"index":1,"value":4294967296,"op":"SCMP_CMP_GT"}]},
            {"names":["tkill"],"action":"SCMP_ACT_ERRNO","args":[{"index":1,"value":10,"op":"SCMP_CMP_LT"}]},
            {"names":["tgkill"],"action":"SCMP_ACT_ERRNO","args":[{"index":2,"value":10,"op":"SCMP_CMP_LE"}]},
            {"names":["dup"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":3,"op":"SCMP_CMP_NE"}]},
            {"names":["dup2"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":5,"op":"SCMP_CMP_GE"}]},
            {"names":["clone"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":2080505856,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]}
        ]}"#,
    );
    let e = errno(1);
    let call = |n: &str, args: [u64; 6]| run(&p.program, X86_64, nr(n), args);
    assert_eq!(call("personality", [8, 0, 0, 0, 0, 0]), e);
    assert_eq!(call("personality", [8 | (1 << 32), 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call("kill", [0, 1 << 32, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call("kill", [0, (1 << 32) + 1, 0, 0, 0, 0]), e);
    assert_eq!(call("kill", [0, 2 << 32, 0, 0, 0, 0]), e);
    assert_eq!(call("kill", [0, 5, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call("tkill", [0, 9, 0, 0, 0, 0]), e);
    assert_eq!(call("tkill", [0, 10, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call("tkill", [0, 1 << 32, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call("tgkill", [0, 0, 10, 0, 0, 0]), e);
    assert_eq!(call("tgkill", [0, 0, 11, 0, 0, 0]), ALLOW);
    assert_eq!(call("dup", [3, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call("dup", [4, 0, 0, 0, 0, 0]), e);
    assert_eq!(call("dup", [3 | (1 << 40), 0, 0, 0, 0, 0]), e);
    assert_eq!(call("dup2", [4, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call("dup2", [5, 0, 0, 0, 0, 0]), e);
    assert_eq!(call("clone", [0x0001_0000, 0, 0, 0, 0, 0]), e);
    assert_eq!(call("clone", [0x1000_0000, 0, 0, 0, 0, 0]), ALLOW);
}

#[test]
fn conditions_on_one_argument_are_alternatives_on_several_all_must_hold() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["socket"],"action":"SCMP_ACT_ERRNO","args":[
                {"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":0,"value":16,"op":"SCMP_CMP_EQ"}]},
            {"names":["ioctl"],"action":"SCMP_ACT_ERRNO","args":[
                {"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":1,"value":2,"op":"SCMP_CMP_EQ"}]}
        ]}"#,
    );
    let call = |n: &str, a0: u64, a1: u64| run(&p.program, X86_64, nr(n), [a0, a1, 0, 0, 0, 0]);
    assert_eq!(call("socket", 1, 0), errno(1));
    assert_eq!(call("socket", 16, 0), errno(1));
    assert_eq!(call("socket", 2, 0), ALLOW);
    assert_eq!(call("ioctl", 1, 2), errno(1));
    assert_eq!(call("ioctl", 1, 3), ALLOW);
    assert_eq!(call("ioctl", 0, 2), ALLOW);
}

#[test]
fn foreign_architectures_get_default_or_kill() {
    let listed = profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
            "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
    );
    assert_eq!(run(&listed.program, 0x4000_0003, 0, [0; 6]), errno(1));
    assert_eq!(
        run(&listed.program, X86_64, X32_SYSCALL_BIT, [0; 6]),
        RET_KILL_PROCESS
    );
    assert_eq!(
        run(&listed.program, 0xc000_00b7, 0, [0; 6]),
        RET_KILL_PROCESS
    );
}

#[test]
fn first_matching_rule_wins_and_unknown_names_are_skipped() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["no_such_syscall","getpid"],"action":"SCMP_ACT_ALLOW"},
            {"names":["getpid"],"action":"SCMP_ACT_KILL_PROCESS"}]}"#,
    );
    assert_eq!(run(&p.program, X86_64, nr("getpid"), [0; 6]), ALLOW);
}

#[test]
fn notify_and_listener_are_refused_by_name() {
    let s: LinuxSeccomp = serde_json::from_str(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mount"],"action":"SCMP_ACT_NOTIFY"}]}"#,
    )
    .unwrap();
    let e = compile(&s).unwrap_err().to_string();
    assert!(e.contains("SCMP_ACT_NOTIFY"), "{e}");
    let s: LinuxSeccomp =
        serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/l.sock"}"#)
            .unwrap();
    assert!(
        compile(&s)
            .unwrap_err()
            .to_string()
            .contains("listenerPath")
    );
}

#[test]
fn large_unconditional_lists_stay_within_jump_range() {
    let names: Vec<String> = (0..460u32)
        .filter_map(|n| syscalls::Sysno::new(n as usize).map(|s| format!("\"{}\"", s.name())))
        .collect();
    let p = profile(&format!(
        r#"{{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{{"names":[{}],"action":"SCMP_ACT_ALLOW"}}]}}"#,
        names.join(",")
    ));
    assert_eq!(run(&p.program, X86_64, nr("read"), [0; 6]), ALLOW);
    assert_eq!(run(&p.program, X86_64, nr("openat2"), [0; 6]), ALLOW);
    assert_eq!(run(&p.program, X86_64, 1000, [0; 6]), errno(1));
}
