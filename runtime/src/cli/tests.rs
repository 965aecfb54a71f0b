//! The command lines runc users and tools type, accepted as runc accepts them.

use super::*;

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("podvisor-oci").chain(args.iter().copied())).unwrap()
}

#[test]
fn global_flags_before_or_after_the_subcommand() {
    let a = parse(&[
        "--root",
        "/r",
        "--log",
        "/l",
        "--log-format",
        "json",
        "state",
        "c1",
    ]);
    let b = parse(&[
        "state",
        "c1",
        "--root",
        "/r",
        "--log-format",
        "json",
        "--log",
        "/l",
    ]);
    for c in [a, b] {
        assert_eq!(c.root, PathBuf::from("/r"));
        assert_eq!(c.log, Some(PathBuf::from("/l")));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(matches!(c.command, Command::State { ref id } if id == "c1"));
    }
    assert_eq!(
        parse(&["list"]).root,
        PathBuf::from("/run/podvisor/runtime")
    );
}

#[test]
fn create_options_before_or_after_the_id() {
    let want = CreateArgs {
        id: "c1".into(),
        bundle: "/b".into(),
        console_socket: Some("/s".into()),
        pid_file: Some("/p".into()),
        no_pivot: true,
        no_new_keyring: false,
        preserve_fds: 2,
    };
    for args in [
        &[
            "create",
            "c1",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "--console-socket",
            "/s",
            "--no-pivot",
            "--preserve-fds",
            "2",
        ][..],
        &[
            "create",
            "-b",
            "/b",
            "--pid-file=/p",
            "--console-socket",
            "/s",
            "--no-pivot",
            "--preserve-fds",
            "2",
            "c1",
        ][..],
    ] {
        match parse(args).command {
            Command::Create(a) => assert_eq!(a, want),
            c => panic!("{c:?}"),
        }
    }
}

#[test]
fn kill_delete_run_forms() {
    assert!(matches!(
        parse(&["kill", "c1"]).command,
        Command::Kill {
            signal: None,
            all: false,
            ..
        }
    ));
    assert!(
        matches!(parse(&["kill", "--all", "c1", "KILL"]).command, Command::Kill { ref signal, all: true, .. } if signal.as_deref() == Some("KILL"))
    );
    assert!(
        matches!(parse(&["kill", "c1", "9"]).command, Command::Kill { ref signal, .. } if signal.as_deref() == Some("9"))
    );
    assert!(matches!(
        parse(&["delete", "-f", "c1"]).command,
        Command::Delete { force: true, .. }
    ));
    assert!(matches!(
        parse(&["delete", "c1"]).command,
        Command::Delete { force: false, .. }
    ));
    assert!(matches!(
        parse(&["run", "-d", "--bundle", "/b", "c1"]).command,
        Command::Run { detach: true, .. }
    ));
    assert!(parse(&["--systemd-cgroup", "features"]).systemd_cgroup);
}

#[test]
fn exec_takes_the_command_after_the_id() {
    match parse(&[
        "exec",
        "-t",
        "--console-socket",
        "/s",
        "-e",
        "A=1",
        "c1",
        "sh",
        "-c",
        "echo hi",
    ])
    .command
    {
        Command::Exec(a) => {
            assert_eq!(a.id, "c1");
            assert_eq!(a.command, ["sh", "-c", "echo hi"]);
            assert!(a.tty);
            assert_eq!(a.env, ["A=1"]);
        }
        c => panic!("{c:?}"),
    }
    match parse(&["exec", "--process", "/p.json", "c1"]).command {
        Command::Exec(a) => assert!(a.command.is_empty() && a.process.is_some()),
        c => panic!("{c:?}"),
    }
}

#[test]
fn cgroup_limits_flag() {
    assert_eq!(
        parse(&["--cgroup-limits", "best-effort", "list"]).cgroup_limits,
        LimitsArg::BestEffort
    );
    assert_eq!(parse(&["list"]).cgroup_limits, LimitsArg::Strict);
}
