//! Running each subcommand of `podvisor-oci`.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::Process;
use rustix::process::{WaitId, WaitIdOptions, WaitIdStatus, waitid};

use super::{Cli, Command, CreateArgs, ExecArgs, LimitsArg};
use crate::container::{self, CgroupLimits, CreateOptions, ExecOptions, Stdio};

/// Run the parsed command line; returns the process exit code.
pub fn run(cli: &Cli) -> Result<i32> {
    if cli.systemd_cgroup {
        bail!(
            "--systemd-cgroup is not supported: podvisor-oci drives cgroup v2 directly (cgroupfs)"
        );
    }
    if cli.rootless.as_deref() == Some("true") {
        bail!("--rootless=true is not supported");
    }
    let root = &cli.root;
    match &cli.command {
        Command::Create(a) => {
            let created = create(cli, a)?;
            drop(created);
            Ok(0)
        }
        Command::Start { id } => {
            container::start(root, id)?;
            Ok(0)
        }
        Command::Run {
            create: a,
            detach,
            keep,
        } => run_container(cli, a, *detach, *keep),
        Command::State { id } => {
            let s = container::state(root, id)?;
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(0)
        }
        Command::Kill { id, signal, all } => {
            let sig = crate::signal::parse_signal(signal.as_deref().unwrap_or("TERM"))
                .map_err(anyhow::Error::msg)?;
            container::kill(root, id, sig, *all)?;
            Ok(0)
        }
        Command::Delete { id, force } => {
            match container::delete(root, id, *force) {
                // runc: deleting a missing container with --force succeeds.
                Err(crate::Error::NotFound(_)) if *force => Ok(0),
                r => r.map(|()| 0).map_err(Into::into),
            }
        }
        Command::Exec(a) => exec(cli, a),
        Command::List { format, quiet } => list(root, format, *quiet),
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(root, format, id, ps_args),
        Command::Pause { id } => {
            container::pause(root, id)?;
            Ok(0)
        }
        Command::Resume { id } => {
            container::resume(root, id)?;
            Ok(0)
        }
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&super::features::features())?
            );
            Ok(0)
        }
        Command::Events { id, stats, .. } => {
            if !stats {
                bail!("events: only --stats is supported");
            }
            let s = container::stats(root, id)?;
            let ev = serde_json::json!({"type": "stats", "id": id, "data": s});
            println!("{ev}");
            Ok(0)
        }
    }
}

fn stdio() -> Stdio<'static> {
    Stdio {
        stdin: crate::sys::borrow_inherited(0),
        stdout: crate::sys::borrow_inherited(1),
        stderr: crate::sys::borrow_inherited(2),
    }
}

fn preserved(n: u32) -> Vec<BorrowedFd<'static>> {
    (0..n)
        .map(|i| crate::sys::borrow_inherited(3 + i as i32))
        .collect()
}

fn connect_console(path: Option<&PathBuf>) -> Result<Option<OwnedFd>> {
    path.map(|p| {
        UnixStream::connect(p)
            .map(OwnedFd::from)
            .with_context(|| format!("connect to console socket {}", p.display()))
    })
    .transpose()
}

fn write_pid_file(path: Option<&PathBuf>, pid: i32) -> Result<()> {
    if let Some(p) = path {
        let tmp = p.with_extension("tmp-podvisor");
        std::fs::write(&tmp, pid.to_string())
            .with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, p).with_context(|| format!("rename to {}", p.display()))?;
    }
    Ok(())
}

fn create(cli: &Cli, a: &CreateArgs) -> Result<container::Created> {
    let console = connect_console(a.console_socket.as_ref())?;
    let opts = CreateOptions {
        root: cli.root.clone(),
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        stdio: stdio(),
        console_socket: console.as_ref().map(|c| c.as_fd()),
        preserve_fds: preserved(a.preserve_fds),
        no_pivot: a.no_pivot,
        cgroup_limits: match cli.cgroup_limits {
            LimitsArg::Strict => CgroupLimits::Strict,
            LimitsArg::BestEffort => CgroupLimits::BestEffort,
        },
    };
    let created = container::create(&opts)?;
    for w in &created.warnings {
        eprintln!("podvisor-oci: warning: {w}");
    }
    if let Err(e) = write_pid_file(a.pid_file.as_ref(), created.pid) {
        let _ = container::delete(&cli.root, &a.id, true);
        return Err(e);
    }
    Ok(created)
}

fn exit_code(status: Option<WaitIdStatus>) -> i32 {
    match status {
        Some(s) => s
            .exit_status()
            .unwrap_or_else(|| 128 + s.terminating_signal().unwrap_or(0)),
        None => 255,
    }
}

fn run_container(cli: &Cli, a: &CreateArgs, detach: bool, keep: bool) -> Result<i32> {
    let created = create(cli, a)?;
    let started = container::start(&cli.root, &a.id)
        .map_err(anyhow::Error::from)
        .and_then(|()| container::wait_exec(&a.id, created.watch.as_fd()).map_err(Into::into));
    if let Err(e) = started {
        let _ = container::delete(&cli.root, &a.id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    forward_signals_until_exit(created.pidfd.as_fd())?;
    let exit = container::wait(&cli.root, &a.id, created.pidfd.as_fd(), None)?;
    if !keep {
        container::delete(&cli.root, &a.id, true)?;
    }
    Ok(exit.shell_code())
}

/// Signals a foreground `run` passes on to the container's init, as runc does.
const FORWARDED: [i32; 7] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// Wait in poll(2) for the process behind `pidfd` to exit, forwarding [`FORWARDED`]
/// signals received meanwhile (read from a signalfd, so no handler runs).
fn forward_signals_until_exit(pidfd: BorrowedFd<'_>) -> Result<()> {
    use rustix::event::{PollFd, PollFlags, poll};
    let sfd = crate::sys::block_into_signalfd(&FORWARDED).context("signalfd")?;
    loop {
        let mut fds = [
            PollFd::new(&pidfd, PollFlags::IN),
            PollFd::new(&sfd, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        if !fds[0].revents().is_empty() {
            return Ok(());
        }
        if !fds[1].revents().is_empty() {
            // struct signalfd_siginfo is 128 bytes; ssi_signo is its first u32.
            let mut info = [0u8; 128];
            if rustix::io::read(&sfd, &mut info).is_ok_and(|n| n == 128) {
                let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32;
                let _ = crate::sys::pidfd_kill(pidfd, signo);
            }
        }
    }
}

/// The process of an exec: `--process` file, or the container's own process with the
/// command and options applied (runc's rules).
fn exec_process(cli: &Cli, a: &ExecArgs) -> Result<Process> {
    if let Some(p) = &a.process {
        let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
        return serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()));
    }
    if a.command.is_empty() {
        bail!("exec: a command is required");
    }
    let st = crate::state::load(&cli.root, &a.id)?;
    let config = std::fs::read_to_string(st.bundle.join("config.json"))
        .with_context(|| format!("read config.json of {}", a.id))?;
    let spec: oci_spec::runtime::Spec = serde_json::from_str(&config)?;
    let mut p = spec
        .process()
        .clone()
        .context("config.json has no process")?;
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(a.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(PathBuf::from(cwd));
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u.parse()?, g.parse()?),
            None => (u.parse()?, 0),
        };
        p.user_mut().set_uid(uid);
        p.user_mut().set_gid(gid);
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for c in &a.caps {
            let cap: oci_spec::runtime::Capability =
                serde_json::from_value(serde_json::Value::String(c.to_ascii_uppercase()))
                    .with_context(|| format!("unknown capability {c}"))?;
            let add = |s: Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding().clone()));
            caps.set_effective(add(caps.effective().clone()));
            caps.set_permitted(add(caps.permitted().clone()));
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

fn exec(cli: &Cli, a: &ExecArgs) -> Result<i32> {
    let process = exec_process(cli, a)?;
    let console = connect_console(a.console_socket.as_ref())?;
    let opts = ExecOptions {
        root: cli.root.clone(),
        id: a.id.clone(),
        process,
        stdio: stdio(),
        console_socket: console.as_ref().map(|c| c.as_fd()),
        preserve_fds: preserved(a.preserve_fds),
    };
    let spawned = container::exec(&opts)?;
    write_pid_file(a.pid_file.as_ref(), spawned.pid)?;
    if a.detach {
        return Ok(0);
    }
    forward_signals_until_exit(spawned.pidfd.as_fd())?;
    let status = waitid(WaitId::PidFd(spawned.pidfd.as_fd()), WaitIdOptions::EXITED)
        .with_context(|| format!("wait for exec in {}", a.id))?;
    Ok(exit_code(status))
}

fn list(root: &Path, format: &str, quiet: bool) -> Result<i32> {
    let all = container::list(root)?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for s in &all {
            writeln!(out, "{}", s.id)?;
        }
    } else if format == "json" {
        writeln!(out, "{}", serde_json::to_string(&all)?)?;
    } else {
        writeln!(
            out,
            "{:<20} {:<8} {:<10} {:<40} {:<22} OWNER",
            "ID", "PID", "STATUS", "BUNDLE", "CREATED"
        )?;
        for s in &all {
            writeln!(
                out,
                "{:<20} {:<8} {:<10} {:<40} {:<22} {}",
                s.id,
                s.pid,
                s.status.as_str(),
                s.bundle.display(),
                s.created,
                s.owner
            )?;
        }
    }
    Ok(0)
}

fn ps(root: &Path, format: &str, id: &str, ps_args: &[String]) -> Result<i32> {
    let pids = container::ps(root, id)?;
    if format == "json" {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    println!("{header}");
    for l in lines {
        let pid: Option<i32> = l.split_whitespace().nth(col).and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{l}");
        }
    }
    Ok(0)
}
