//! The wire format of `exec` on the local API (`<state>/agent.sock`), shared by the agent
//! and `podvisor exec`.
//!
//! tiny_http hands an upgraded connection over as one `Read + Write` object that cannot be
//! split between two threads, so an exec uses two upgraded HTTP/1.1 connections, each
//! carrying data one way (as kubelet's streaming server carries stdin and stdout on
//! separate streams):
//!
//! ```text
//! 1. output   POST /pods/<pod>/exec          Connection: Upgrade, Upgrade: podvisor-exec
//!             Content-Length: N              body: ExecRequest as JSON
//!             {"container":"c","command":["sh","-c","id"],"stdin":true,"tty":false,
//!              "rows":24,"cols":80}
//!    before the process runs, a failure is a plain JSON error response:
//!             404 no such pod · 400 no such container · 409 container not running ·
//!             500 exec failed; `{"error": "...", "exitCode": 127}` where the command
//!             itself could not be started (127: not found, 126: not executable, as
//!             shells, docker and crictl report it)
//!    once it runs: 101 Switching Protocols, `X-Podvisor-Exec-Session: <token>`, then
//!             agent → client frames: STDOUT, STDERR, and last EXIT (or ERROR); then close.
//! 2. input    POST /exec/<token>/stdin       Connection: Upgrade, Upgrade: podvisor-exec-stdin
//!             101, then client → agent frames: STDIN (only if the request asked for stdin;
//!             an empty STDIN frame is end of input: the process's stdin is closed, a
//!             terminal gets its EOF character) and RESIZE (tty only). The client keeps it
//!             open until the EXIT frame, even without stdin: its close tells the agent
//!             the client is gone. 404 once the command has ended (nothing to feed).
//! ```
//!
//! A frame is `kind: u8`, `length: u32` big-endian, then `length` bytes of payload (at most
//! [`MAX_FRAME`]). Payloads: STDIN/STDOUT/STDERR raw bytes; EXIT the JSON [`ExitFrame`];
//! RESIZE `rows: u16, cols: u16` big-endian; ERROR a UTF-8 message. With a tty the process's
//! output all comes as STDOUT (a terminal merges the streams). The pty starts with
//! `rows`/`cols` of the request. If the client goes away while the process runs (its
//! input connection closes, or a write of output fails) the agent kills the process with
//! SIGKILL.

use std::io::{self, Read, Write};

/// The `Upgrade` protocol of the output connection.
pub const OUTPUT_PROTOCOL: &str = "podvisor-exec";
/// The `Upgrade` protocol of the input connection.
pub const INPUT_PROTOCOL: &str = "podvisor-exec-stdin";
/// The response header naming the session of the input connection.
pub const SESSION_HEADER: &str = "X-Podvisor-Exec-Session";
/// The largest payload accepted in one frame.
pub const MAX_FRAME: u32 = 1 << 20;

/// Frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client → agent: bytes for the process's stdin; empty means end of input.
    Stdin = 0,
    /// Agent → client: the process's stdout (everything with a tty).
    Stdout = 1,
    /// Agent → client: the process's stderr.
    Stderr = 2,
    /// Agent → client: the process ended; [`ExitFrame`] as JSON. The last frame.
    Exit = 3,
    /// Client → agent: the terminal's new size, `rows: u16, cols: u16` big-endian.
    Resize = 4,
    /// Agent → client: the relay failed; a message. The last frame.
    Error = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Stdin,
            1 => Kind::Stdout,
            2 => Kind::Stderr,
            3 => Kind::Exit,
            4 => Kind::Resize,
            5 => Kind::Error,
            _ => return None,
        })
    }
}

/// What `POST /pods/<pod>/exec` asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecRequest {
    /// The container (default: the pod's default container, as `logs` picks it).
    #[serde(default)]
    pub container: Option<String>,
    /// The command and its arguments (no shell is implied).
    pub command: Vec<String>,
    /// The process gets a stdin pipe fed by the input connection (else /dev/null).
    #[serde(default)]
    pub stdin: bool,
    /// Run the command on a new pty in the container.
    #[serde(default)]
    pub tty: bool,
    /// Initial terminal rows (tty only; 0: the kernel's default).
    #[serde(default)]
    pub rows: u16,
    /// Initial terminal columns.
    #[serde(default)]
    pub cols: u16,
}

/// The payload of an EXIT frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitFrame {
    /// The exit status; 128 + N when killed by signal N (as shells report it).
    pub exit_code: i32,
    /// The signal that killed the process, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

/// Exit code of a command that could not be started: 127 when it does not exist, 126
/// when it is not executable (EACCES, ENOEXEC...), as POSIX shells and docker report.
pub fn start_failure_code(errno: Option<i32>) -> Option<i32> {
    use rustix::io::Errno;
    let e = Errno::from_raw_os_error(errno?);
    if [Errno::NOENT, Errno::NOTDIR].contains(&e) {
        Some(127)
    } else if [Errno::ACCESS, Errno::NOEXEC, Errno::PERM, Errno::ISDIR].contains(&e) {
        Some(126)
    } else {
        None
    }
}

/// Writes one frame.
pub fn write_frame(out: &mut dyn Write, kind: Kind, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|n| *n <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "exec frame too large"))?;
    let mut head = [0u8; 5];
    head[0] = kind as u8;
    head[1..].copy_from_slice(&len.to_be_bytes());
    out.write_all(&head)?;
    out.write_all(payload)?;
    out.flush()
}

/// Reads one frame; `Ok(None)` at a clean end of stream (between frames).
pub fn read_frame(input: &mut dyn Read) -> io::Result<Option<(Kind, Vec<u8>)>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let kind = Kind::from_byte(head[0]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown exec frame kind {}", head[0]),
        )
    })?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("exec frame of {len} bytes is over the limit"),
        ));
    }
    let mut payload = vec![0u8; len as usize];
    input.read_exact(&mut payload)?;
    Ok(Some((kind, payload)))
}

/// The payload of a RESIZE frame.
pub fn resize_payload(rows: u16, cols: u16) -> [u8; 4] {
    let mut p = [0u8; 4];
    p[..2].copy_from_slice(&rows.to_be_bytes());
    p[2..].copy_from_slice(&cols.to_be_bytes());
    p
}

/// `(rows, cols)` of a RESIZE payload.
pub fn parse_resize(p: &[u8]) -> Option<(u16, u16)> {
    match p {
        [r0, r1, c0, c1] => Some((
            u16::from_be_bytes([*r0, *r1]),
            u16::from_be_bytes([*c0, *c1]),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut buf = Vec::new();
        write_frame(&mut buf, Kind::Stdout, b"hello").unwrap();
        write_frame(&mut buf, Kind::Stdin, b"").unwrap();
        let exit = serde_json::to_vec(&ExitFrame {
            exit_code: 137,
            signal: Some(9),
        })
        .unwrap();
        write_frame(&mut buf, Kind::Exit, &exit).unwrap();
        assert_eq!(&buf[..5], &[1, 0, 0, 0, 5]);
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((Kind::Stdout, b"hello".to_vec()))
        );
        assert_eq!(read_frame(&mut r).unwrap(), Some((Kind::Stdin, Vec::new())));
        let (k, p) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(k, Kind::Exit);
        assert_eq!(
            serde_json::from_slice::<ExitFrame>(&p).unwrap(),
            ExitFrame {
                exit_code: 137,
                signal: Some(9)
            }
        );
        assert_eq!(read_frame(&mut r).unwrap(), None);
    }

    #[test]
    fn bad_frames_are_refused() {
        let cut: &[u8] = &[1, 0, 0];
        assert!(read_frame(&mut &cut[..]).is_err(), "cut header");
        let unknown: &[u8] = &[9, 0, 0, 0, 0];
        assert!(read_frame(&mut &unknown[..]).is_err(), "unknown kind");
        let huge: &[u8] = &[1, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut &huge[..]).is_err(), "over the limit");
        let short: &[u8] = &[1, 0, 0, 0, 4, b'a'];
        assert!(read_frame(&mut &short[..]).is_err(), "cut payload");
    }

    #[test]
    fn resize_and_start_failure_codes() {
        assert_eq!(parse_resize(&resize_payload(50, 132)), Some((50, 132)));
        assert_eq!(parse_resize(&[0, 1]), None);
        let cases = [
            (Some(2), Some(127)),  // ENOENT
            (Some(13), Some(126)), // EACCES
            (Some(8), Some(126)),  // ENOEXEC
            (Some(12), None),      // ENOMEM
            (None, None),
        ];
        for (errno, want) in cases {
            assert_eq!(start_failure_code(errno), want, "{errno:?}");
        }
    }

    #[test]
    fn request_defaults() {
        let r: ExecRequest = serde_json::from_str(r#"{"command":["id"]}"#).unwrap();
        assert_eq!(
            r,
            ExecRequest {
                container: None,
                command: vec!["id".into()],
                stdin: false,
                tty: false,
                rows: 0,
                cols: 0
            }
        );
    }
}
