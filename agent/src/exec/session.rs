//! The agent's side of an exec (wire format: [`super::wire`]): the output connection runs
//! the relay of the process's output and reports its exit; the input connection, found
//! through the session token, feeds its stdin and resizes its terminal.
//!
//! Each connection has its own thread (an upgraded tiny_http connection cannot be split
//! between threads). The process is a child of the agent (the runtime's exec hands over a
//! pidfd); the output thread reaps it with `waitid(P_PIDFD)`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Signal, WaitId, WaitIdOptions, pidfd_send_signal, waitid};

use super::start::{ExecIo, Refusal, Started, resolve, start};
use super::wire::{
    ExecRequest, ExitFrame, INPUT_PROTOCOL, Kind, OUTPUT_PROTOCOL, SESSION_HEADER, parse_resize,
    read_frame, write_frame,
};
use crate::api::store::StatusStore;

/// Largest request body accepted (a command line).
const MAX_BODY: u64 = 1 << 20;

/// The input side of a running exec, waiting for its input connection.
#[derive(Debug)]
struct Pending {
    input: Input,
    pidfd: Arc<OwnedFd>,
}

#[derive(Debug)]
enum Input {
    /// Write end of the stdin pipe (None: no stdin asked for).
    Pipe(Option<File>),
    /// The pty master (a second descriptor of it).
    Pty(OwnedFd),
}

/// Execs waiting for (or using) their input connection, by token.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    pending: Arc<Mutex<HashMap<String, Pending>>>,
}

impl Sessions {
    fn insert(&self, token: String, p: Pending) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, p);
    }

    fn take(&self, token: &str) -> Option<Pending> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token)
    }
}

/// A JSON error response (with `exitCode` when the command could not be started).
fn refuse(request: tiny_http::Request, r: &Refusal) {
    let mut body = serde_json::json!({ "error": r.message });
    if let Some(code) = r.exit_code {
        body["exitCode"] = code.into();
    }
    let mut response =
        tiny_http::Response::from_data(body.to_string().into_bytes()).with_status_code(r.status);
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]) {
        response.add_header(h);
    }
    if let Err(e) = request.respond(response) {
        tracing::debug!("exec response: {e}");
    }
}

/// A session token: random, and unique in this process even without /dev/urandom.
fn token() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = File::open("/dev/urandom") {
        let _ = f.read_exact(&mut bytes);
    }
    format!(
        "{}-{}",
        hex::encode(bytes),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

fn read_request(request: &mut tiny_http::Request) -> Result<ExecRequest, Refusal> {
    let bad = |m: String| Refusal {
        status: 400,
        message: m,
        exit_code: None,
    };
    let len = request.body_length().unwrap_or(0) as u64;
    if len > MAX_BODY {
        return Err(bad(format!("exec request of {len} bytes is too large")));
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(len)
        .read_to_end(&mut body)
        .map_err(|e| bad(format!("read exec request: {e}")))?;
    serde_json::from_slice(&body).map_err(|e| bad(format!("exec request: {e}")))
}

/// `POST /pods/<pod>/exec`: starts the command and relays its output until it exits.
pub fn serve_exec(
    mut request: tiny_http::Request,
    pod: &str,
    store: &StatusStore,
    runtime_root: &Path,
    sessions: &Sessions,
) {
    let req = match read_request(&mut request) {
        Ok(r) => r,
        Err(r) => return refuse(request, &r),
    };
    let entry = match store.pod(pod) {
        Ok(e) => e,
        Err(e) => {
            let status = match e {
                crate::api::store::LookupError::NotFound(_) => 404,
                crate::api::store::LookupError::Ambiguous { .. } => 409,
            };
            return refuse(
                request,
                &Refusal {
                    status,
                    message: e.to_string(),
                    exit_code: None,
                },
            );
        }
    };
    let started = resolve(&entry.pod, req.container.as_deref())
        .and_then(|target| start(runtime_root, &target, &req).map(|s| (target, s)));
    let (target, Started { spawned, io }) = match started {
        Ok(s) => s,
        Err(r) => return refuse(request, &r),
    };
    tracing::info!(pod = %target.pod, container = %target.container, command = ?req.command, tty = req.tty, "exec");
    let pidfd = Arc::new(spawned.pidfd);
    let token = token();
    let (output, input) = match io {
        ExecIo::Pipes {
            stdin,
            stdout,
            stderr,
        } => (Output::Pipes(stdout, stderr), Input::Pipe(stdin)),
        ExecIo::Pty(master) => match master.try_clone() {
            Ok(second) => (Output::Pty(master), Input::Pty(second)),
            Err(e) => {
                kill_and_reap(&pidfd);
                return refuse(
                    request,
                    &Refusal {
                        status: 500,
                        message: format!("exec: duplicate the pty master: {e}"),
                        exit_code: None,
                    },
                );
            }
        },
    };
    sessions.insert(
        token.clone(),
        Pending {
            input,
            pidfd: pidfd.clone(),
        },
    );
    let mut response = tiny_http::Response::empty(101);
    if let Ok(h) = tiny_http::Header::from_bytes(SESSION_HEADER.as_bytes(), token.as_bytes()) {
        response.add_header(h);
    }
    let mut stream = request.upgrade(OUTPUT_PROTOCOL, response);
    relay_output(output, &pidfd, &mut stream);
    // The process is gone: an input connection that never came has nothing to feed.
    drop(sessions.take(&token));
}

enum Output {
    Pipes(File, File),
    Pty(OwnedFd),
}

fn kill_and_reap(pidfd: &OwnedFd) {
    let _ = pidfd_send_signal(pidfd, Signal::KILL);
    let _ = waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
}

/// Copies output frames until the process exits, then sends its EXIT frame. A client that
/// stops reading gets the process killed.
fn relay_output(output: Output, pidfd: &OwnedFd, stream: &mut dyn Write) {
    let mut sources: Vec<(OwnedFd, Kind)> = match output {
        Output::Pipes(out, err) => vec![
            (OwnedFd::from(out), Kind::Stdout),
            (OwnedFd::from(err), Kind::Stderr),
        ],
        Output::Pty(master) => vec![(master, Kind::Stdout)],
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let (ready, exited) = {
            let mut fds = vec![PollFd::new(pidfd, PollFlags::IN)];
            fds.extend(sources.iter().map(|(fd, _)| PollFd::new(fd, PollFlags::IN)));
            if let Err(e) = poll(&mut fds, None) {
                if e != rustix::io::Errno::INTR {
                    tracing::warn!("exec relay: poll: {e}");
                    kill_and_reap(pidfd);
                    return;
                }
            }
            let ready: Vec<bool> = fds[1..].iter().map(|f| !f.revents().is_empty()).collect();
            (ready, !fds[0].revents().is_empty())
        };
        let mut closed = Vec::new();
        for (i, is_ready) in ready.into_iter().enumerate() {
            if !is_ready {
                continue;
            }
            let (fd, kind) = &sources[i];
            match rustix::io::read(fd, &mut buf) {
                // EIO: every slave of the pty is closed.
                Ok(0) | Err(rustix::io::Errno::IO) => closed.push(i),
                Ok(n) => {
                    if write_frame(stream, *kind, &buf[..n]).is_err() {
                        tracing::info!("exec client went away: killing the process");
                        kill_and_reap(pidfd);
                        return;
                    }
                }
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(e) => {
                    tracing::debug!("exec relay: read: {e}");
                    closed.push(i);
                }
            }
        }
        for i in closed.into_iter().rev() {
            sources.remove(i);
        }
        if exited {
            break;
        }
    }
    let status = waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
    drain(&sources, &mut buf, stream);
    let frame = match status {
        Ok(Some(s)) => match s.terminating_signal() {
            Some(sig) => ExitFrame {
                exit_code: 128 + sig,
                signal: Some(sig),
            },
            None => ExitFrame {
                exit_code: s.exit_status().unwrap_or(-1),
                signal: None,
            },
        },
        Ok(None) | Err(_) => {
            let msg = format!("exec: wait for the process: {status:?}");
            let _ = write_frame(stream, Kind::Error, msg.as_bytes());
            return;
        }
    };
    let payload = serde_json::to_vec(&frame).unwrap_or_default();
    let _ = write_frame(stream, Kind::Exit, &payload);
}

/// After the exit: what is already buffered, without waiting for end of file (a
/// background child of the command may keep the pipes open).
fn drain(sources: &[(OwnedFd, Kind)], buf: &mut [u8], stream: &mut dyn Write) {
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    for (fd, kind) in sources {
        loop {
            let mut fds = [PollFd::new(fd, PollFlags::IN)];
            if !matches!(poll(&mut fds, Some(&zero)), Ok(1)) {
                break;
            }
            match rustix::io::read(fd, &mut *buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if write_frame(stream, *kind, &buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// `POST /exec/<token>/stdin`: feeds the process's stdin (and pty size) from the client.
pub fn serve_input(request: tiny_http::Request, token: &str, sessions: &Sessions) {
    let Some(pending) = sessions.take(token) else {
        return refuse(
            request,
            &Refusal {
                status: 404,
                message: format!("no exec session {token} (it ended, or it takes no input)"),
                exit_code: None,
            },
        );
    };
    let mut stream = request.upgrade(INPUT_PROTOCOL, tiny_http::Response::empty(101));
    let Pending { input, pidfd } = pending;
    let mut input = input;
    loop {
        match read_frame(&mut stream) {
            Ok(Some((Kind::Stdin, data))) if data.is_empty() => {
                // End of input: close the pipe; a terminal gets its EOF character.
                match &mut input {
                    Input::Pipe(p) => drop(p.take()),
                    Input::Pty(m) => {
                        let _ = rustix::io::write(&*m, &[4]);
                    }
                }
            }
            Ok(Some((Kind::Stdin, data))) => {
                let ok = match &mut input {
                    Input::Pipe(Some(p)) => p.write_all(&data).is_ok(),
                    Input::Pipe(None) => true,
                    Input::Pty(m) => write_all(m, &data),
                };
                if !ok {
                    // The process closed its stdin: further input is discarded.
                    if let Input::Pipe(p) = &mut input {
                        drop(p.take());
                    }
                }
            }
            Ok(Some((Kind::Resize, p))) => {
                if let (Input::Pty(m), Some((rows, cols))) = (&input, parse_resize(&p)) {
                    let ws = rustix::termios::Winsize {
                        ws_row: rows,
                        ws_col: cols,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    let _ = rustix::termios::tcsetwinsize(m, ws);
                }
            }
            Ok(Some((kind, _))) => tracing::debug!("exec input: unexpected frame {kind:?}"),
            Ok(None) => {
                // The client is done; if the process still runs, nobody reads its output.
                let _ = pidfd_send_signal(&*pidfd, Signal::KILL);
                return;
            }
            Err(e) => {
                tracing::debug!("exec input: {e}");
                let _ = pidfd_send_signal(&*pidfd, Signal::KILL);
                return;
            }
        }
    }
}

fn write_all(fd: &OwnedFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(0) => return false,
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
    }
    true
}
