//! Reads every shim connection of this process on one thread.
//!
//! The agent holds a connection per pod shim; a blocked reader thread per connection cost
//! a thread (stack, malloc cache) per pod. Here one thread waits in `epoll_wait` on all of
//! them (and an eventfd announcing new ones), reads what arrived with `MSG_DONTWAIT` (the
//! socket itself stays blocking for the writer), splits it into lines and hands each line
//! to the connection's handler. An idle agent's connections cost no CPU.
//!
//! A connection ends when the peer closes it, a read fails, a line exceeds
//! [`MAX_LINE`] or its handler declines a line; its handler then gets `None` (unless it
//! declined) and the [`Registration`] is released.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::Duration;

use rustix::buffer::spare_capacity;
use rustix::event::{EventfdFlags, epoll, eventfd};
use rustix::io::Errno;
use rustix::net::RecvFlags;

use super::protocol::MAX_LINE;

/// What a connection's handler is given: a complete line (without its newline), or
/// `None` once when the connection ended. Returning `false` ends the connection.
pub type Handler = Box<dyn FnMut(Option<&[u8]>) -> bool + Send>;

/// The registration of one connection; [`Registration::wait_ended`] waits until the
/// reader let go of it (after the caller shut the socket down).
#[derive(Debug)]
pub struct Registration {
    ended: Receiver<()>,
}

impl Registration {
    /// Waits (at most `timeout`) until the connection was dropped by the reader.
    pub fn wait_ended(&self, timeout: Duration) {
        let _ = self.ended.recv_timeout(timeout);
    }
}

struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    handler: Handler,
    _ended: Sender<()>,
}

struct Mux {
    add: Sender<Conn>,
    wake: OwnedFd,
}

static MUX: OnceLock<Option<Mux>> = OnceLock::new();

/// The eventfd's token; connections count from 1.
const WAKE: u64 = 0;

/// Starts reading `stream` (a clone of the caller's socket) on the shared reader thread.
/// Fails when that thread cannot be started.
pub fn register(stream: UnixStream, handler: Handler) -> std::io::Result<Registration> {
    let mux = MUX
        .get_or_init(start)
        .as_ref()
        .ok_or_else(|| std::io::Error::other("the shim reader thread could not be started"))?;
    let (ended_tx, ended) = mpsc::channel();
    mux.add
        .send(Conn {
            stream,
            buf: Vec::new(),
            handler,
            _ended: ended_tx,
        })
        .map_err(|_| std::io::Error::other("the shim reader thread has ended"))?;
    rustix::io::write(&mux.wake, &1u64.to_ne_bytes())?;
    Ok(Registration { ended })
}

fn start() -> Option<Mux> {
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).ok()?;
    let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).ok()?;
    epoll::add(
        &epoll,
        &wake,
        epoll::EventData::new_u64(WAKE),
        epoll::EventFlags::IN,
    )
    .ok()?;
    let thread_wake = wake.try_clone().ok()?;
    let (add, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("shim-reader".into())
        .spawn(move || run(&epoll, &thread_wake, &rx))
        .ok()?;
    Some(Mux { add, wake })
}

fn run(epoll: &OwnedFd, wake: &OwnedFd, rx: &Receiver<Conn>) {
    let mut conns: HashMap<u64, Conn> = HashMap::new();
    let mut next = WAKE;
    let mut ready: Vec<epoll::Event> = Vec::with_capacity(64);
    loop {
        ready.clear();
        match epoll::wait(epoll, spare_capacity(&mut ready), None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => return,
        }
        for ev in &ready {
            let token = ev.data.u64();
            if token == WAKE {
                let mut counter = [0u8; 8];
                let _ = rustix::io::read(wake, &mut counter);
                loop {
                    match rx.try_recv() {
                        Ok(mut conn) => {
                            next += 1;
                            let added = epoll::add(
                                epoll,
                                &conn.stream,
                                epoll::EventData::new_u64(next),
                                epoll::EventFlags::IN | epoll::EventFlags::RDHUP,
                            );
                            if added.is_ok() {
                                conns.insert(next, conn);
                            } else {
                                (conn.handler)(None);
                            }
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return,
                    }
                }
            } else if let Some(conn) = conns.get_mut(&token)
                && !service(conn)
                && let Some(conn) = conns.remove(&token)
            {
                let _ = epoll::delete(epoll, &conn.stream);
            }
        }
    }
}

/// Reads what is there and hands out complete lines; `false` when the connection ended.
fn service(conn: &mut Conn) -> bool {
    let mut chunk = [0u8; 8192];
    // The lines read before the end are handed out before the end itself.
    let ended = loop {
        match rustix::net::recv(&conn.stream, &mut chunk, RecvFlags::DONTWAIT) {
            Ok((0, _)) => break true,
            Ok((n, _)) => conn.buf.extend_from_slice(&chunk[..n]),
            Err(Errno::AGAIN) => break false,
            Err(Errno::INTR) => {}
            Err(_) => break true,
        }
    };
    let mut start = 0;
    while let Some(nl) = conn.buf[start..].iter().position(|b| *b == b'\n') {
        let line = &conn.buf[start..start + nl];
        start += nl + 1;
        if line.len() > MAX_LINE || !(conn.handler)(Some(line)) {
            if line.len() > MAX_LINE {
                (conn.handler)(None);
            }
            return false;
        }
    }
    conn.buf.drain(..start);
    if ended || conn.buf.len() > MAX_LINE {
        (conn.handler)(None);
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn collect() -> (Handler, Receiver<Option<Vec<u8>>>) {
        let (tx, rx) = mpsc::channel();
        let handler: Handler = Box::new(move |line: Option<&[u8]>| {
            let _ = tx.send(line.map(<[u8]>::to_vec));
            line != Some(b"stop".as_slice())
        });
        (handler, rx)
    }

    fn next(rx: &Receiver<Option<Vec<u8>>>) -> Option<Vec<u8>> {
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn lines_split_across_writes_arrive_whole_and_in_order_then_the_end() {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let (handler, rx) = collect();
        let reg = register(theirs, handler).unwrap();
        ours.write_all(b"one\ntw").unwrap();
        assert_eq!(next(&rx), Some(b"one".to_vec()));
        ours.write_all(b"o\nthree\n").unwrap();
        assert_eq!(next(&rx), Some(b"two".to_vec()));
        assert_eq!(next(&rx), Some(b"three".to_vec()));
        // A last line and the end read together: the line first.
        ours.write_all(b"last\n").unwrap();
        drop(ours);
        assert_eq!(next(&rx), Some(b"last".to_vec()));
        assert_eq!(next(&rx), None);
        reg.wait_ended(Duration::from_secs(5));
        assert!(
            matches!(reg.ended.try_recv(), Err(TryRecvError::Disconnected)),
            "the registration is released"
        );
    }

    #[test]
    fn a_declined_line_ends_the_connection_without_a_second_end() {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let (handler, rx) = collect();
        let reg = register(theirs, handler).unwrap();
        ours.write_all(b"a\nstop\nnever\n").unwrap();
        assert_eq!(next(&rx), Some(b"a".to_vec()));
        assert_eq!(next(&rx), Some(b"stop".to_vec()));
        reg.wait_ended(Duration::from_secs(5));
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    }

    #[test]
    fn many_connections_are_served_independently() {
        let mut pairs = Vec::new();
        for _ in 0..50 {
            let (ours, theirs) = UnixStream::pair().unwrap();
            let (handler, rx) = collect();
            let reg = register(theirs, handler).unwrap();
            pairs.push((ours, rx, reg));
        }
        for (i, (ours, _, _)) in pairs.iter_mut().enumerate().rev() {
            ours.write_all(format!("{i}\n").as_bytes()).unwrap();
        }
        for (i, (_, rx, _)) in pairs.iter().enumerate() {
            assert_eq!(next(rx), Some(i.to_string().into_bytes()));
        }
    }
}
