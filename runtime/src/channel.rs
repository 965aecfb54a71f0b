//! Messages between the runtime and the container init over a `SOCK_SEQPACKET` pair:
//! one JSON document per packet, with descriptors attached as `SCM_RIGHTS`.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType, recvmsg, sendmsg, socketpair,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::errno;

/// Largest message accepted (plans with big seccomp profiles are tens of KiB).
const MAX_MESSAGE: usize = 4 << 20;

/// A failed init step: what was done, to what, and the errno.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    /// Named step and its object (`pivot_root into /run/x/rootfs`).
    pub step: String,
    /// errno, when a syscall failed.
    pub errno: Option<i32>,
    /// Human-readable cause.
    pub message: String,
}

impl StepError {
    /// From an `io::Error`, keeping its errno.
    pub fn io(step: impl Into<String>, e: &std::io::Error) -> Self {
        let message = match e.raw_os_error() {
            Some(n) => {
                let errno = syscalls::Errno::new(n);
                match (errno.name(), errno.description()) {
                    (Some(name), Some(desc)) => format!("{name} ({desc})"),
                    _ => e.to_string(),
                }
            }
            None => e.to_string(),
        };
        StepError {
            step: step.into(),
            errno: e.raw_os_error(),
            message,
        }
    }

    /// A failure without an errno.
    pub fn other(step: impl Into<String>, message: impl Into<String>) -> Self {
        StepError {
            step: step.into(),
            errno: None,
            message: message.into(),
        }
    }
}

/// What the init tells the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromInit {
    /// Set-up done; waiting for `start` (create) or about to exec (exec).
    Ready,
    /// The init forked the real process into a joined pid namespace; its pidfd is attached.
    Spawned {
        /// Host pid of the process.
        pid: i32,
    },
    /// A step failed; the init exits.
    Failed(StepError),
}

/// A connected, close-on-exec `SOCK_SEQPACKET` pair.
pub fn pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(errno)
}

/// Send one message with `fds` attached. Never raises `SIGPIPE`.
pub fn send<T: Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    send_bytes(sock, &bytes, fds)
}

/// Send raw bytes with `fds` attached (the console socket protocol sends a pty name).
pub fn send_bytes(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !cmsg.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::from_raw_os_error(libc::E2BIG));
    }
    sendmsg(sock, &[IoSlice::new(bytes)], &mut cmsg, SendFlags::NOSIGNAL).map_err(errno)?;
    Ok(())
}

/// Receive one raw message and its descriptors (the console socket protocol).
pub fn recv_bytes(sock: BorrowedFd<'_>) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 4096];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let n = loop {
        match recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut buf)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => break m.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(errno(e)),
        }
    };
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    buf.truncate(n);
    Ok((buf, fds))
}

/// Receive one message; `None` when the peer closed (for the init's socket: it exec'd).
pub fn recv<T: DeserializeOwned>(
    sock: BorrowedFd<'_>,
) -> std::io::Result<Option<(T, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let n = loop {
        match recvmsg(
            sock.as_fd(),
            &mut [IoSliceMut::new(&mut buf)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => break m.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(errno(e)),
        }
    };
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    if n == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..n]).map_err(std::io::Error::other)?;
    Ok(Some((msg, fds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_errors_name_the_errno() {
        let e = StepError::io(
            "pivot_root into /r",
            &std::io::Error::from_raw_os_error(libc::EINVAL),
        );
        assert_eq!(e.errno, Some(libc::EINVAL));
        assert!(e.message.starts_with("EINVAL"), "{}", e.message);
    }

    #[test]
    fn messages_and_descriptors_cross_a_socket_pair() {
        let (a, b) = pair().unwrap();
        let (r, _w) = rustix::pipe::pipe().unwrap();
        send(a.as_fd(), &FromInit::Spawned { pid: 7 }, &[r.as_fd()]).unwrap();
        let (msg, fds) = recv::<FromInit>(b.as_fd()).unwrap().unwrap();
        assert_eq!(msg, FromInit::Spawned { pid: 7 });
        assert_eq!(fds.len(), 1);
        drop(a);
        assert!(recv::<FromInit>(b.as_fd()).unwrap().is_none());
    }
}
