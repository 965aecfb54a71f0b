//! Bring `lo` up in a network namespace the init just created, as runc and crun do for a
//! new network namespace (and as the CNI `loopback` plugin does for the kubelet): in a new
//! namespace `lo` exists but is down, so `127.0.0.1` has no address and nothing in the
//! pod could talk to itself over localhost.
//!
//! One rtnetlink request (`RTM_NEWLINK` on ifindex 1 with `IFF_UP` in both `ifi_flags`
//! and `ifi_change`), then the kernel's ack, see rtnetlink(7). The loopback device is
//! always ifindex 1 (`LOOPBACK_IFINDEX`) in every network namespace, so no lookup is
//! needed. Plain socket calls: no `unsafe`.

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::channel::StepError;

const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const IFF_UP: u32 = 1;
const LOOPBACK_IFINDEX: i32 = 1;
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

/// The `RTM_NEWLINK` request that sets `IFF_UP` on interface `index` (sequence `seq`).
pub(crate) fn link_up_request(index: i32, seq: u32) -> Vec<u8> {
    let len = (NLMSG_HDRLEN + IFINFOMSG_LEN) as u32;
    let mut m = Vec::with_capacity(len as usize);
    // struct nlmsghdr
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills ours in
    // struct ifinfomsg
    m.push(libc::AF_UNSPEC as u8); // ifi_family
    m.push(0); // padding
    m.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    m.extend_from_slice(&index.to_ne_bytes());
    m.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    m.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    m
}

/// Reads the kernel's answer to request `seq`: `Ok(())` for an ack (error 0), the errno
/// of an `NLMSG_ERROR` otherwise; `Err(None)` when the answer is not an ack to `seq`.
pub(crate) fn parse_ack(answer: &[u8], seq: u32) -> Result<(), Option<i32>> {
    let word = |at: usize| -> Option<[u8; 4]> { answer.get(at..at + 4)?.try_into().ok() };
    let half = |at: usize| -> Option<[u8; 2]> { answer.get(at..at + 2)?.try_into().ok() };
    let kind = half(4).map(u16::from_ne_bytes).ok_or(None)?;
    let got_seq = word(8).map(u32::from_ne_bytes).ok_or(None)?;
    if kind != NLMSG_ERROR || got_seq != seq {
        return Err(None);
    }
    let error = word(NLMSG_HDRLEN).map(i32::from_ne_bytes).ok_or(None)?;
    if error == 0 {
        Ok(())
    } else {
        Err(Some(-error))
    }
}

/// Sets `lo` up in the calling thread's network namespace.
pub(super) fn bring_up() -> Result<(), StepError> {
    const STEP: &str = "bring up lo in the new network namespace";
    let io = |e: rustix::io::Errno| StepError::io(STEP, &std::io::Error::from(e));
    let sock = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None, // protocol 0 is NETLINK_ROUTE
    )
    .map_err(io)?;
    let seq = 1;
    let request = link_up_request(LOOPBACK_IFINDEX, seq);
    rustix::net::sendto(
        &sock,
        &request,
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )
    .map_err(io)?;
    let mut answer = [0u8; 1024];
    let (n, _) = rustix::net::recv(&sock, &mut answer, RecvFlags::empty()).map_err(io)?;
    match parse_ack(&answer[..n.min(answer.len())], seq) {
        Ok(()) => Ok(()),
        Err(Some(errno)) => Err(io(rustix::io::Errno::from_raw_os_error(errno))),
        Err(None) => Err(StepError::other(STEP, "the kernel's answer is not an ack")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_up_request_layout() {
        let m = link_up_request(1, 7);
        assert_eq!(m.len(), 32);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), RTM_NEWLINK);
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), 5);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(m[24..28].try_into().unwrap()), IFF_UP);
        assert_eq!(u32::from_ne_bytes(m[28..32].try_into().unwrap()), IFF_UP);
    }

    fn error_msg(seq: u32, error: i32) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&36u32.to_ne_bytes());
        a.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        a.extend_from_slice(&0u16.to_ne_bytes());
        a.extend_from_slice(&seq.to_ne_bytes());
        a.extend_from_slice(&0u32.to_ne_bytes());
        a.extend_from_slice(&error.to_ne_bytes());
        a
    }

    #[test]
    fn acks_and_errors_are_told_apart() {
        assert_eq!(parse_ack(&error_msg(3, 0), 3), Ok(()));
        assert_eq!(parse_ack(&error_msg(3, -1), 3), Err(Some(1)));
        assert_eq!(parse_ack(&error_msg(4, 0), 3), Err(None), "other seq");
        assert_eq!(parse_ack(&[0u8; 6], 3), Err(None), "short");
    }
}
