//! Terminal checks: with `process.terminal`, the runtime hands the pty master back on
//! `--console-socket` (an `SCM_RIGHTS` message, as runc does) for the container's process and
//! for `exec -t`, the slave is the process's controlling tty, and `consoleSize` is applied.

use super::{Case, Checks, Ctx, Seen};
use serde_json::json;
use std::io::{IoSliceMut, Read};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The terminal cases.
pub const CASES: &[Case] = &[Case {
    name: "console_socket_receives_the_pty_for_run_and_exec",
    run: console_socket,
}];

/// Accepts one connection on `listener` (while `child` runs) and receives one fd from it.
fn receive_pty(listener: &UnixListener, child: &mut Child) -> Result<OwnedFd, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("console socket nonblocking: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "runtime exited ({status}) without connecting to the console socket"
                    ));
                }
                if Instant::now() > deadline {
                    return Err("nothing connected to the console socket within 10s".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("accept on console socket: {e}")),
        }
    };
    stream
        .set_nonblocking(false)
        .map_err(|e| format!("console stream blocking: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| format!("console stream timeout: {e}"))?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 4096];
    rustix::net::recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut name)],
        &mut control,
        rustix::net::RecvFlags::empty(),
    )
    .map_err(|e| format!("recvmsg on console socket: {e}"))?;
    for msg in control.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err("console socket message carried no file descriptor".into())
}

/// Reads the pty master on a thread until EIO/EOF (every slave closed) or `until` appears.
fn read_pty(master: OwnedFd, until: &'static str) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut text = String::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.contains(until) {
                break;
            }
        }
        let _ = tx.send(text);
    });
    rx
}

fn listener(path: &Path) -> Result<UnixListener, String> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(|e| format!("bind console socket {}: {e}", path.display()))
}

fn console_socket(ctx: &Ctx, _seen: &mut Seen) -> Result<(), String> {
    let case = "tty";
    let id = ctx.id(case);
    let mut b = ctx.bundle(
        case,
        &[
            "/bin/sh",
            "-c",
            "stty size; tty; echo main-done; exec sleep 600",
        ],
    );
    b.set("/process/terminal", json!(true));
    b.set("/process/consoleSize", json!({"height": 33, "width": 111}));
    b.write()?;
    let _ = ctx.runtime.invoke(&["delete", "--force", &id]);
    let sock = ctx.work.join("console.sock");
    let l = listener(&sock)?;
    let bundle = b.dir.to_string_lossy().into_owned();
    let sock_s = sock.to_string_lossy().into_owned();
    let mut create = ctx
        .runtime
        .command([
            "create",
            "--console-socket",
            sock_s.as_str(),
            "--bundle",
            bundle.as_str(),
            id.as_str(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn create: {e}"))?;
    let mut c = Checks::default();
    let master = receive_pty(&l, &mut create);
    let created = create
        .wait_with_output()
        .map_err(|e| format!("wait for create: {e}"))?;
    if !created.status.success() {
        c.that(
            false,
            format!(
                "create with --console-socket failed: {}",
                String::from_utf8_lossy(&created.stderr).trim()
            ),
        );
    }
    if let Some(master) = c.ok("pty master from create", master) {
        let rx = read_pty(master, "main-done");
        c.ok("start", ctx.runtime.invoke_ok(&["start", &id]).map(drop));
        let text = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        c.that(
            text.contains("33 111"),
            format!("consoleSize 33x111 not applied; the pty said {text:?}"),
        );
        c.that(
            text.contains("/dev/pts/"),
            format!("process has no controlling pty; the pty said {text:?}"),
        );
        c.that(
            text.contains("main-done"),
            format!("process output missing on the pty: {text:?}"),
        );
        exec_tty(ctx, &mut c, &id, &sock);
    }
    let _ = ctx.runtime.invoke(&["delete", "--force", &id]);
    let _ = std::fs::remove_file(&sock);
    c.finish()
}

/// `exec -d -t --console-socket S ID /bin/sh -c 'tty; echo exec-done'` gets its own pty.
fn exec_tty(ctx: &Ctx, c: &mut Checks, id: &str, sock: &Path) {
    let l = match listener(sock) {
        Ok(l) => l,
        Err(e) => return c.that(false, e),
    };
    let sock_s = sock.to_string_lossy().into_owned();
    let spawned = ctx
        .runtime
        .command([
            "exec",
            "-d",
            "-t",
            "--console-socket",
            sock_s.as_str(),
            id,
            "/bin/sh",
            "-c",
            "tty; echo exec-done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut exec = match spawned {
        Ok(ch) => ch,
        Err(e) => return c.that(false, format!("spawn exec -t: {e}")),
    };
    let master = receive_pty(&l, &mut exec);
    if let Some(master) = c.ok("pty master from exec -t", master) {
        let rx = read_pty(master, "exec-done");
        let text = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        c.that(
            text.contains("/dev/pts/") && text.contains("exec-done"),
            format!("exec -t output on its pty: {text:?}"),
        );
    }
    match exec.wait_with_output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => c.that(
            false,
            format!(
                "exec -t failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        ),
        Err(e) => c.that(false, format!("wait for exec -t: {e}")),
    }
}
