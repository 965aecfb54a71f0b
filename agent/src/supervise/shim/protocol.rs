//! The agent ↔ shim protocol on `<state>/pods/<uid>/shim.sock`: one JSON object per
//! line in each direction, versioned by a `hello` exchange that must come first.
//!
//! The agent sends [`Request`]s and reads one [`Reply`] per request, in order. The shim
//! also pushes [`Reply::Exited`] lines at any time (a container exited); clients tell
//! them apart from answers by their kind. A shim refuses a client whose major version
//! differs, so an upgraded agent never misreads an old shim (it restarts the pod).

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::supervise::clock::serde_rfc3339;
use crate::supervise::exit::ExitRecord;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest line either side accepts (a spec path list, an error message...).
pub const MAX_LINE: usize = 1024 * 1024;

/// Agent → shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    /// Must be first: the agent's protocol version.
    Hello {
        /// [`PROTOCOL_VERSION`] of the agent.
        version: u32,
    },
    /// Create and start a container from an OCI bundle. The shim makes its stdout and
    /// stderr pipes and writes them to `log_path` in the CRI format.
    Run {
        /// Container name in the pod.
        container: String,
        /// Run number (restart count); also the log file number.
        attempt: u32,
        /// Runtime container id (unique per run).
        id: String,
        /// OCI bundle directory (`config.json`).
        bundle: PathBuf,
        /// `<log-dir>/<ns>_<pod>_<uid>/<container>/<attempt>.log`.
        log_path: PathBuf,
        /// Namespaces this container creates that the shim must keep for the pod's
        /// lifetime (`network`, `ipc`, `uts`): the pod's shared namespaces, created by its
        /// first container and joined by the others through [`Reply::Started`]'s paths.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        hold_namespaces: Vec<String>,
    },
    /// Send a signal to a running container's init (`all`: every process in its cgroup).
    Kill {
        /// Container name.
        container: String,
        /// Signal number.
        signal: i32,
        /// Signal every process of the container.
        #[serde(default)]
        all: bool,
    },
    /// The containers the shim runs now.
    State,
    /// Kill every container (cgroup.kill), wait for them, remove the socket and exit.
    Shutdown,
}

/// One running container as the shim reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningContainer {
    /// Container name.
    pub container: String,
    /// Run number.
    pub attempt: u32,
    /// Runtime id.
    pub id: String,
    /// Host pid of its init.
    pub pid: i32,
    /// When it was started.
    #[serde(with = "serde_rfc3339")]
    pub started_at: SystemTime,
    /// The pod namespaces the shim holds, kind → path to join (`/proc/<shim>/fd/<n>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<String, PathBuf>,
}

/// Shim → agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Reply {
    /// Answer to `hello`.
    Hello {
        /// The shim's [`PROTOCOL_VERSION`].
        version: u32,
        /// The shim's pid.
        pid: i32,
    },
    /// Answer to `run`: the container is running.
    Started(RunningContainer),
    /// Answer to `kill` or `shutdown`.
    Done,
    /// Answer to `state`.
    State {
        /// Running containers.
        containers: Vec<RunningContainer>,
        /// The pod namespaces the shim holds, kind → path to join.
        #[serde(default)]
        namespaces: BTreeMap<String, PathBuf>,
    },
    /// A request failed. `permanent`: retrying the same request cannot succeed (the spec's
    /// fault), else it may (the system's).
    Error {
        /// What failed, with the step and errno.
        message: String,
        /// Whether a retry is pointless.
        permanent: bool,
    },
    /// Pushed at any time: a container's init exited (already recorded on disk).
    Exited(ExitRecord),
}

/// A protocol error.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Reading or writing the socket failed.
    #[error("shim socket: {0}")]
    Io(#[from] io::Error),
    /// A line was not a valid message.
    #[error("bad message {line:?}: {source}")]
    Decode {
        /// The line (cut to 200 bytes).
        line: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The peer closed the connection.
    #[error("shim connection closed")]
    Closed,
    /// A line longer than [`MAX_LINE`].
    #[error("message longer than {MAX_LINE} bytes")]
    TooLong,
}

/// Writes one message as a line.
pub fn write_message<T: Serialize>(out: &mut impl Write, msg: &T) -> Result<(), ProtocolError> {
    let mut line = serde_json::to_vec(msg).map_err(|e| ProtocolError::Io(io::Error::other(e)))?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()?;
    Ok(())
}

/// Reads one message line (blocking).
pub fn read_message<T: for<'de> Deserialize<'de>>(
    input: &mut impl BufRead,
) -> Result<T, ProtocolError> {
    let mut line = Vec::new();
    let n = input
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(ProtocolError::Closed);
    }
    if line.len() > MAX_LINE {
        return Err(ProtocolError::TooLong);
    }
    decode(&line)
}

/// Decodes one line (with or without its newline).
pub fn decode<T: for<'de> Deserialize<'de>>(line: &[u8]) -> Result<T, ProtocolError> {
    serde_json::from_slice(line).map_err(|source| ProtocolError::Decode {
        line: String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::supervise::exit::ExitStatus;

    #[test]
    fn messages_round_trip_as_tagged_json_lines() {
        let reqs = vec![
            Request::Hello {
                version: PROTOCOL_VERSION,
            },
            Request::Run {
                container: "app".into(),
                attempt: 2,
                id: "u1-app-2".into(),
                bundle: "/var/lib/podvisor/pods/u1/bundles/app-2".into(),
                log_path: "/var/log/pods/x/app/2.log".into(),
                hold_namespaces: vec!["network".into()],
            },
            Request::Kill {
                container: "app".into(),
                signal: 15,
                all: false,
            },
            Request::State,
            Request::Shutdown,
        ];
        let mut buf = Vec::new();
        for r in &reqs {
            write_message(&mut buf, r).unwrap();
        }
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(
            text.starts_with("{\"op\":\"hello\",\"version\":1}\n"),
            "{text}"
        );
        let mut reader = BufReader::new(&buf[..]);
        for r in &reqs {
            assert_eq!(&read_message::<Request>(&mut reader).unwrap(), r);
        }
        assert!(matches!(
            read_message::<Request>(&mut reader),
            Err(ProtocolError::Closed)
        ));

        let exit = Reply::Exited(ExitRecord {
            container: "app".into(),
            attempt: 2,
            pid: 9,
            started_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            finished_at: UNIX_EPOCH + Duration::from_secs(1_700_000_001),
            status: ExitStatus::Code(1),
            oom_killed: false,
        });
        let mut buf = Vec::new();
        write_message(&mut buf, &exit).unwrap();
        assert!(buf.starts_with(b"{\"kind\":\"exited\""));
        assert_eq!(
            read_message::<Reply>(&mut BufReader::new(&buf[..])).unwrap(),
            exit
        );
    }

    #[test]
    fn bad_and_oversized_lines_are_errors() {
        let err =
            read_message::<Request>(&mut BufReader::new(&b"{\"op\":\"fly\"}\n"[..])).unwrap_err();
        assert!(err.to_string().contains("fly"), "{err}");
        let long = vec![b'x'; MAX_LINE + 10];
        assert!(matches!(
            read_message::<Request>(&mut BufReader::new(&long[..])),
            Err(ProtocolError::TooLong)
        ));
    }
}
