//! `podvisor exec POD [-c C] [-i] [-t] -- CMD...`: the client side of exec (wire format in
//! [`crate::exec::wire`]). It relays the command's stdout and stderr, feeds its stdin with
//! `-i`, and with `-it` puts the local terminal in raw mode, starts the pty at the local
//! size and sends size changes (SIGWINCH). It returns the command's exit code, which the
//! binary exits with.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result, bail};
use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr};

use super::client::{ApiClient, ClientError, Upgrade};
use crate::api::query::encode;
use crate::exec::wire::{
    ExecRequest, ExitFrame, INPUT_PROTOCOL, Kind, OUTPUT_PROTOCOL, SESSION_HEADER, read_frame,
    resize_payload, write_frame,
};

/// `podvisor exec POD -- CMD...`: run a command in a running container.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// Pod name (`name` or `namespace/name`).
    pub pod: String,
    /// Container (default: the pod's default or first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Run the command on a terminal (needs -i and a terminal on stdin).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Puts stdin in raw mode; restores it on drop.
struct RawMode(Termios);

impl RawMode {
    fn enter() -> Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).context("read the terminal's mode")?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw).context("set raw mode")?;
        Ok(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.0);
    }
}

/// Runs `exec` against the agent under `state`; returns the command's exit code.
pub fn run(args: &ExecArgs, state: &Path, out: &mut dyn Write) -> Result<i32> {
    let stdin_tty = std::io::stdin().is_terminal();
    let tty = args.tty && args.stdin && stdin_tty;
    if args.tty && !tty {
        eprintln!("Unable to use a TTY - input is not a terminal or -i is not set");
    }
    let (rows, cols) = if tty {
        tcgetwinsize(std::io::stdin().as_fd()).map_or((0, 0), |w| (w.ws_row, w.ws_col))
    } else {
        (0, 0)
    };
    let request = ExecRequest {
        container: args.container.clone(),
        command: args.command.clone(),
        stdin: args.stdin,
        tty,
        rows,
        cols,
    };
    let client = ApiClient::new(state);
    let body = serde_json::to_vec(&request)?;
    let target = format!("/pods/{}/exec", encode(&args.pod));
    let (headers, mut reader) = match client.post_upgrade(&target, OUTPUT_PROTOCOL, &body)? {
        Upgrade::Switched {
            headers, reader, ..
        } => (headers, reader),
        Upgrade::Refused { status, body } => {
            let message = body["error"]
                .as_str()
                .map_or_else(|| format!("agent answered {status}"), str::to_string);
            if let Some(code) = body["exitCode"].as_i64() {
                eprintln!("podvisor: {message}");
                return Ok(i32::try_from(code).unwrap_or(1));
            }
            return Err(ClientError::Api { status, message }.into());
        }
    };
    let _raw = if tty { Some(RawMode::enter()?) } else { None };
    // The input connection, opened even without -i: the agent kills the command when it
    // closes before the exit (this process was interrupted or killed).
    let token = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(SESSION_HEADER))
        .map(|(_, v)| v.clone())
        .context("the agent sent no exec session")?;
    let _input = match client.post_upgrade(&format!("/exec/{token}/stdin"), INPUT_PROTOCOL, b"")? {
        Upgrade::Switched { writer, .. } => {
            let input = Arc::new(Mutex::new(writer));
            if args.stdin {
                spawn_stdin(input.clone())?;
            }
            if tty {
                spawn_resizer(input.clone())?;
            }
            Some(input)
        }
        // The command already ended (its output and exit are waiting on the output
        // connection): there is nothing to feed.
        Upgrade::Refused { status: 404, .. } => None,
        Upgrade::Refused { status, body } => bail!("exec input refused ({status}): {body}"),
    };
    let mut stderr = std::io::stderr();
    loop {
        let Some((kind, payload)) = read_frame(&mut reader).context("read exec output")? else {
            bail!("the agent closed the exec connection before the command's exit");
        };
        match kind {
            Kind::Stdout => {
                out.write_all(&payload)?;
                out.flush()?;
            }
            Kind::Stderr => {
                stderr.write_all(&payload)?;
                stderr.flush()?;
            }
            Kind::Exit => {
                let exit: ExitFrame =
                    serde_json::from_slice(&payload).context("decode the exit frame")?;
                return Ok(exit.exit_code);
            }
            Kind::Error => bail!("exec: {}", String::from_utf8_lossy(&payload)),
            Kind::Stdin | Kind::Resize => bail!("unexpected {kind:?} frame from the agent"),
        }
    }
}

fn send(input: &Mutex<UnixStream>, kind: Kind, payload: &[u8]) -> std::io::Result<()> {
    let mut w = input.lock().unwrap_or_else(PoisonError::into_inner);
    write_frame(&mut *w, kind, payload)
}

/// Copies stdin to STDIN frames, then sends end of input. The connection stays open (the
/// caller holds it) until the command exits.
fn spawn_stdin(input: Arc<Mutex<UnixStream>>) -> Result<()> {
    std::thread::Builder::new()
        .name("exec-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if send(&input, Kind::Stdin, &buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = send(&input, Kind::Stdin, b"");
        })
        .context("spawn the stdin thread")?;
    Ok(())
}

/// Sends the terminal's size after each SIGWINCH.
fn spawn_resizer(input: Arc<Mutex<UnixStream>>) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH])
        .context("watch SIGWINCH")?;
    std::thread::Builder::new()
        .name("exec-resize".into())
        .spawn(move || {
            for _ in signals.forever() {
                if let Ok(w) = tcgetwinsize(std::io::stdin().as_fd()) {
                    if send(&input, Kind::Resize, &resize_payload(w.ws_row, w.ws_col)).is_err() {
                        return;
                    }
                }
            }
        })
        .context("spawn the resize thread")?;
    Ok(())
}
