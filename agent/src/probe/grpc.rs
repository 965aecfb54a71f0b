//! The `grpc` handler: one `grpc.health.v1.Health/Check` call over plaintext HTTP/2 (h2c with
//! prior knowledge), judged as the kubelet's gRPC prober does (`pkg/probe/grpc`).
//!
//! Why hand-rolled: the only maintained Rust gRPC stacks (tonic, grpcio) need an async runtime
//! (tokio) or a C++ core, and podvisor has no async runtime by design. One unary call needs
//! very little of HTTP/2: the preface, SETTINGS (and their ACK), one HEADERS and one DATA frame
//! out; HEADERS, CONTINUATION, DATA, PING, RST_STREAM and GOAWAY in. The response headers are
//! HPACK-coded ([`super::hpack`]) and the messages are one-field protobufs, decoded here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::hpack::{Decoder, encode_literal};
use super::outcome::Outcome;
use super::tcp::connect;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Frames larger than this are refused (the client never raises SETTINGS_MAX_FRAME_SIZE).
const MAX_FRAME: usize = 16_384;
const STREAM: u32 = 1;
/// Limit on the response's header blocks and on its body (a health reply is a few bytes).
const MAX_RESPONSE: usize = 64 * 1024;

/// Runs the health check against `host:port` for `service` within `timeout`.
pub fn probe(host: &str, port: u16, service: &str, user_agent: &str, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let secs = timeout.as_secs();
    let stream = match connect(host, port, timeout) {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service \"{host}:{port}\" within {secs}s: {e}"
            ));
        }
    };
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match check(stream, &authority, service, user_agent, deadline) {
        Ok(Reply::Status(1)) => Outcome::Success("service healthy".into()),
        Ok(Reply::Status(s)) => Outcome::Failure(format!(
            "service unhealthy (responded with {:?})",
            status_name(s)
        )),
        Ok(Reply::Rpc { code: 12, message }) => Outcome::Failure(format!(
            "this server does not implement the grpc health protocol (grpc.health.v1.Health): {message}"
        )),
        Ok(Reply::Rpc { code: 4, .. }) | Err(CallError::Timeout) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {secs}s"
        )),
        Ok(Reply::Rpc { code, message }) => Outcome::Failure(format!(
            "error: health rpc probe failed: rpc error: code = {} desc = {message}",
            code_name(code)
        )),
        Err(CallError::Protocol(e)) => {
            Outcome::Failure(format!("error: health rpc probe failed: {e}"))
        }
    }
}

/// What the server answered.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// A HealthCheckResponse with this `status` (1 = SERVING).
    Status(u64),
    /// A non-OK gRPC status.
    Rpc { code: u32, message: String },
}

#[derive(Debug)]
enum CallError {
    Timeout,
    Protocol(String),
}

impl From<std::io::Error> for CallError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => CallError::Timeout,
            _ => CallError::Protocol(format!("connection: {e}")),
        }
    }
}

fn protocol(msg: impl Into<String>) -> CallError {
    CallError::Protocol(msg.into())
}

/// A connection with the deadline applied to every read and write.
struct Conn {
    stream: TcpStream,
    deadline: Instant,
}

impl Conn {
    fn arm(&self) -> Result<(), CallError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CallError::Timeout);
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.set_write_timeout(Some(left))?;
        Ok(())
    }

    fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Result<(), CallError> {
        self.arm()?;
        let len = payload.len() as u32;
        let mut frame = Vec::with_capacity(9 + payload.len());
        frame.extend_from_slice(&len.to_be_bytes()[1..]);
        frame.push(kind);
        frame.push(flags);
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame)?;
        Ok(())
    }

    fn recv(&mut self) -> Result<(u8, u8, u32, Vec<u8>), CallError> {
        self.arm()?;
        let mut head = [0u8; 9];
        self.stream.read_exact(&mut head)?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        if len > MAX_FRAME {
            return Err(protocol(format!(
                "frame of {len} bytes exceeds {MAX_FRAME}"
            )));
        }
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        self.arm()?;
        self.stream.read_exact(&mut payload)?;
        Ok((head[3], head[4], stream, payload))
    }
}

fn request_headers(authority: &str, user_agent: &str, deadline: Instant) -> Vec<u8> {
    let millis = deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .max(1);
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", user_agent),
        ("grpc-timeout", &format!("{millis}m")),
    ] {
        encode_literal(&mut block, name, value);
    }
    block
}

/// `HealthCheckRequest { string service = 1; }` framed as one uncompressed gRPC message.
fn request_message(service: &str) -> Vec<u8> {
    let mut pb = Vec::new();
    if !service.is_empty() {
        pb.push(0x0a);
        put_varint(&mut pb, service.len() as u64);
        pb.extend_from_slice(service.as_bytes());
    }
    let mut msg = vec![0u8];
    msg.extend_from_slice(&(pb.len() as u32).to_be_bytes());
    msg.extend_from_slice(&pb);
    msg
}

fn check(
    stream: TcpStream,
    authority: &str,
    service: &str,
    user_agent: &str,
    deadline: Instant,
) -> Result<Reply, CallError> {
    let mut conn = Conn { stream, deadline };
    conn.arm()?;
    conn.stream.write_all(PREFACE)?;
    conn.send(SETTINGS, 0, 0, &[])?;
    conn.send(
        HEADERS,
        END_HEADERS,
        STREAM,
        &request_headers(authority, user_agent, deadline),
    )?;
    conn.send(DATA, END_STREAM, STREAM, &request_message(service))?;
    let mut hpack = Decoder::default();
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut body = Vec::new();
    loop {
        let (kind, flags, stream, payload) = conn.recv()?;
        match kind {
            SETTINGS if flags & ACK == 0 => conn.send(SETTINGS, ACK, 0, &[])?,
            PING if flags & ACK == 0 => conn.send(PING, ACK, 0, &payload)?,
            GOAWAY => return Err(protocol("server sent GOAWAY")),
            RST_STREAM if stream == STREAM => {
                let code = payload
                    .get(..4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                return Err(protocol(format!(
                    "stream reset by server (http2 error code {code})"
                )));
            }
            HEADERS if stream == STREAM => {
                let mut block = strip_padding(flags, &payload, true)?.to_vec();
                let mut end_headers = flags & END_HEADERS != 0;
                while !end_headers {
                    let (k, f, s, p) = conn.recv()?;
                    if k != CONTINUATION || s != STREAM {
                        return Err(protocol("expected CONTINUATION frame"));
                    }
                    block.extend_from_slice(&p);
                    if block.len() > MAX_RESPONSE {
                        return Err(protocol("response headers too large"));
                    }
                    end_headers = f & END_HEADERS != 0;
                }
                headers.extend(hpack.decode(&block).map_err(|e| protocol(e.to_string()))?);
                if flags & END_STREAM != 0 {
                    return reply(&headers, &body);
                }
            }
            DATA if stream == STREAM => {
                body.extend_from_slice(strip_padding(flags, &payload, false)?);
                if body.len() > MAX_RESPONSE {
                    return Err(protocol("response message too large"));
                }
                if flags & END_STREAM != 0 {
                    return reply(&headers, &body);
                }
            }
            _ => {}
        }
    }
}

fn strip_padding(flags: u8, payload: &[u8], headers: bool) -> Result<&[u8], CallError> {
    let mut p = payload;
    let mut pad = 0usize;
    if flags & PADDED != 0 {
        pad = usize::from(*p.first().ok_or_else(|| protocol("empty padded frame"))?);
        p = &p[1..];
    }
    if headers && flags & PRIORITY != 0 {
        p = p.get(5..).ok_or_else(|| protocol("short priority block"))?;
    }
    p.get(..p.len().saturating_sub(pad))
        .filter(|_| pad <= p.len())
        .ok_or_else(|| protocol("bad padding"))
}

/// Reads the outcome from the response headers + trailers and the body.
fn reply(headers: &[(String, String)], body: &[u8]) -> Result<Reply, CallError> {
    let get = |name: &str| {
        headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(status) = get(":status").filter(|s| *s != "200") {
        return Err(protocol(format!(
            "unexpected HTTP status code received from server: {status}"
        )));
    }
    let code: u32 = get("grpc-status")
        .ok_or_else(|| protocol("response without grpc-status"))?
        .parse()
        .map_err(|_| protocol("malformed grpc-status"))?;
    if code != 0 {
        let message = percent_decode(get("grpc-message").unwrap_or(""));
        return Ok(Reply::Rpc { code, message });
    }
    let msg = body
        .get(5..)
        .ok_or_else(|| protocol("missing response message"))?;
    if body[0] != 0 {
        return Err(protocol("compressed response message not supported"));
    }
    Ok(Reply::Status(health_status(msg)?))
}

/// `HealthCheckResponse { ServingStatus status = 1; }`; other fields are skipped.
fn health_status(mut pb: &[u8]) -> Result<u64, CallError> {
    let mut status = 0;
    while !pb.is_empty() {
        let key = take_varint(&mut pb)?;
        match key & 7 {
            0 => {
                let v = take_varint(&mut pb)?;
                if key >> 3 == 1 {
                    status = v;
                }
            }
            1 => pb = pb.get(8..).ok_or_else(|| protocol("truncated protobuf"))?,
            2 => {
                let len = take_varint(&mut pb)? as usize;
                pb = pb
                    .get(len..)
                    .ok_or_else(|| protocol("truncated protobuf"))?;
            }
            5 => pb = pb.get(4..).ok_or_else(|| protocol("truncated protobuf"))?,
            _ => return Err(protocol("unsupported protobuf wire type")),
        }
    }
    Ok(status)
}

fn take_varint(pb: &mut &[u8]) -> Result<u64, CallError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = pb
            .split_first()
            .ok_or_else(|| protocol("truncated varint"))?;
        *pb = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(protocol("varint too long"))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_name(s: u64) -> &'static str {
    match s {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNRECOGNIZED",
    }
}

fn code_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES.get(code as usize).copied().unwrap_or("Unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_message_encodes_the_service_field() {
        assert_eq!(request_message(""), vec![0, 0, 0, 0, 0]);
        assert_eq!(
            request_message("etcd"),
            vec![0, 0, 0, 0, 6, 0x0a, 4, b'e', b't', b'c', b'd']
        );
    }

    #[test]
    fn replies_are_read_from_trailers_and_body() {
        let h = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let ok = h(&[(":status", "200"), ("grpc-status", "0")]);
        assert_eq!(
            reply(&ok, &[0, 0, 0, 0, 2, 0x08, 1]).ok(),
            Some(Reply::Status(1))
        );
        assert_eq!(
            reply(&ok, &[0, 0, 0, 0, 2, 0x08, 2]).ok(),
            Some(Reply::Status(2))
        );
        let unimpl = h(&[
            (":status", "200"),
            ("grpc-status", "12"),
            ("grpc-message", "unknown%20service"),
        ]);
        assert_eq!(
            reply(&unimpl, &[]).ok(),
            Some(Reply::Rpc {
                code: 12,
                message: "unknown service".into()
            })
        );
        assert!(reply(&h(&[(":status", "404")]), &[]).is_err());
    }
}
