//! A minimal HTTP/1.1 client for the agent's unix socket: one GET per connection,
//! `Content-Length`, chunked, and upgraded (streamed until close) bodies.
//!
//! No HTTP client crate speaks unix sockets without an async runtime, and the CLI needs
//! only GET, so this is a few dozen lines over `std::os::unix::net::UnixStream`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Default state directory, where `agent.sock` lives.
pub const DEFAULT_STATE: &str = "/run/podvisor";

/// The socket under a state directory.
pub fn socket_path(state: &Path) -> PathBuf {
    state.join("agent.sock")
}

/// An error talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error(
        "the podvisor agent is not running ({reason}: {socket}); start it with `podvisor agent`, or pass --state DIR"
    )]
    NotRunning {
        /// The socket path.
        socket: PathBuf,
        /// What connect(2) said, in words.
        reason: String,
    },
    /// The connection failed mid-way.
    #[error("talk to the agent at {socket}: {source}")]
    Io {
        /// The socket path.
        socket: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The agent answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The agent's error message.
        message: String,
    },
    /// The answer was not what the agent sends.
    #[error("bad answer from the agent: {0}")]
    BadResponse(String),
}

/// A client of the local API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    socket: PathBuf,
}

/// A response whose body has not been read yet.
pub struct ClientResponse {
    /// HTTP status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Box<dyn Read>,
}

impl std::fmt::Debug for ClientResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientResponse")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client of the agent whose state directory is `state`.
    pub fn new(state: &Path) -> Self {
        Self {
            socket: socket_path(state),
        }
    }

    fn io(&self) -> impl FnOnce(io::Error) -> ClientError + '_ {
        move |source| ClientError::Io {
            socket: self.socket.clone(),
            source,
        }
    }

    /// Connects to the agent's socket; a missing or dead agent is [`ClientError::NotRunning`].
    pub fn connect(&self) -> Result<UnixStream, ClientError> {
        UnixStream::connect(&self.socket).map_err(|e| ClientError::NotRunning {
            socket: self.socket.clone(),
            reason: match e.kind() {
                io::ErrorKind::NotFound => "no socket".to_string(),
                io::ErrorKind::ConnectionRefused => "connection refused, stale socket".to_string(),
                io::ErrorKind::PermissionDenied => "permission denied, run as root?".to_string(),
                _ => e.to_string(),
            },
        })
    }

    /// Sends `POST target` with a JSON `body` asking to upgrade to `protocol`. Returns the
    /// upgraded connection (`101`), or the agent's refusal (status and JSON body).
    pub fn post_upgrade(
        &self,
        target: &str,
        protocol: &str,
        body: &[u8],
    ) -> Result<Upgrade, ClientError> {
        let mut stream = self.connect()?;
        write!(
            stream,
            "POST {target} HTTP/1.1\r\nHost: podvisor\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .and_then(|()| stream.write_all(body))
        .map_err(self.io())?;
        let writer = stream.try_clone().map_err(self.io())?;
        let mut reader = BufReader::new(stream);
        let (status, headers) = self.read_head(&mut reader)?;
        if status == 101 {
            return Ok(Upgrade::Switched {
                headers,
                reader,
                writer,
            });
        }
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<u64>().ok());
        let mut text = String::new();
        match length {
            Some(n) => reader.take(n).read_to_string(&mut text),
            None => reader.read_to_string(&mut text),
        }
        .map_err(self.io())?;
        let body = serde_json::from_str(&text).unwrap_or_else(
            |_| serde_json::json!({ "error": format!("agent answered {status}: {}", text.trim()) }),
        );
        Ok(Upgrade::Refused { status, body })
    }

    /// Sends `GET target` and returns the response; a non-2xx answer is an error carrying
    /// the agent's message.
    pub fn get(&self, target: &str) -> Result<ClientResponse, ClientError> {
        let mut stream = self.connect()?;
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: podvisor\r\nConnection: close\r\n\r\n"
        )
        .map_err(self.io())?;
        let mut reader = BufReader::new(stream);
        let (status, headers) = self.read_head(&mut reader)?;
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let length = header("content-length").and_then(|v| v.parse::<u64>().ok());
        let chunked =
            header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let upgraded = header("upgrade").is_some();
        // An upgraded (streamed) response runs until the agent closes the connection.
        let body: Box<dyn Read> = match (upgraded, chunked, length) {
            (true, _, _) => Box::new(reader),
            (false, true, _) => Box::new(Chunked {
                inner: reader,
                left: 0,
                done: false,
            }),
            (false, false, Some(n)) => Box::new(reader.take(n)),
            (false, false, None) => Box::new(reader),
        };
        let mut response = ClientResponse { status, body };
        if !(200..300).contains(&status) {
            let mut text = String::new();
            response.body.read_to_string(&mut text).map_err(self.io())?;
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| format!("agent answered {status}: {}", text.trim()));
            return Err(ClientError::Api { status, message });
        }
        Ok(response)
    }

    /// Reads a response's status line and headers (names lower-cased, values trimmed),
    /// leaving `reader` at the body.
    fn read_head(
        &self,
        reader: &mut BufReader<UnixStream>,
    ) -> Result<(u16, Vec<(String, String)>), ClientError> {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(self.io())?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ClientError::BadResponse(format!("status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(self.io())? == 0 {
                return Err(ClientError::BadResponse("headers cut short".into()));
            }
            let l = line.trim_end();
            if l.is_empty() {
                return Ok((status, headers));
            }
            if let Some((name, value)) = l.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
    }

    /// `GET` and decode a JSON body.
    pub fn get_json<T: DeserializeOwned>(&self, target: &str) -> Result<T, ClientError> {
        let mut r = self.get(target)?;
        let mut text = Vec::new();
        r.body.read_to_end(&mut text).map_err(self.io())?;
        serde_json::from_slice(&text)
            .map_err(|e| ClientError::BadResponse(format!("{target}: {e}")))
    }

    /// `GET` and copy the body to `out` as it arrives (flushing), until the agent closes.
    pub fn stream(&self, target: &str, out: &mut dyn Write) -> Result<(), ClientError> {
        let mut r = self.get(target)?;
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match r.body.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io()(e)),
            };
            out.write_all(&buf[..n])
                .and_then(|()| out.flush())
                .map_err(self.io())?;
        }
    }
}

/// The answer to [`ApiClient::post_upgrade`].
#[derive(Debug)]
pub enum Upgrade {
    /// `101 Switching Protocols`: the connection now carries the protocol.
    Switched {
        /// Response headers, names lower-cased.
        headers: Vec<(String, String)>,
        /// The connection's read side (it may hold bytes already received).
        reader: BufReader<UnixStream>,
        /// The connection's write side.
        writer: UnixStream,
    },
    /// Any other status, with the JSON body (`{"error": ...}`).
    Refused {
        /// HTTP status.
        status: u16,
        /// The body.
        body: serde_json::Value,
    },
}

/// A `Transfer-Encoding: chunked` body reader.
struct Chunked<R> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = u64::from_str_radix(size, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {line:?}"),
                )
            })?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunked body cut short",
            ));
        }
        self.left -= n as u64;
        if self.left == 0 {
            let mut crlf = String::new();
            self.inner.read_line(&mut crlf)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_body_is_decoded() {
        let raw = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        let mut body = String::new();
        Chunked {
            inner: &raw[..],
            left: 0,
            done: false,
        }
        .read_to_string(&mut body)
        .unwrap();
        assert_eq!(body, "hello, world");
    }

    #[test]
    fn missing_socket_says_agent_not_running() {
        let tmp = tempfile::tempdir().unwrap();
        let err = ApiClient::new(tmp.path()).get("/healthz").unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("not running") && msg.contains("no socket") && msg.contains("agent.sock"),
            "{msg}"
        );
    }

    #[test]
    fn stale_socket_says_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = socket_path(tmp.path());
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        let err = ApiClient::new(tmp.path()).get("/healthz").unwrap_err();
        assert!(err.to_string().contains("connection refused"), "{err}");
    }
}
