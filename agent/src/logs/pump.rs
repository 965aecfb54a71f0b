//! One poll loop that moves many containers' stdout/stderr pipes into their CRI log files.
//!
//! The shim owns this: no thread per container, one `epoll(7)` set over every pipe read
//! end (non-blocking), each registered to a [`LogFile`]. The epoll fd is itself pollable,
//! so the shim can nest it in its own event loop and call [`LogPump::service`] when it is
//! readable. A pipe that reaches end-of-file (every writer closed) is flushed — an
//! unfinished line becomes a final `P` entry — and removed; the file closes when its last
//! stream is gone.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rustix::buffer::spare_capacity;
use rustix::event::epoll;
use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use rustix::io::Errno;

use super::file::{LogFile, LogFileError, RotateConfig};
use super::format::{DEFAULT_MAX_LINE, LineSplitter, Stream, timestamp};

/// Identifies one container run's log file inside a pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SinkId(u64);

/// An error of the pump; file errors name the file.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    /// An epoll or fcntl call failed.
    #[error("{what}: {source}")]
    Sys {
        /// The step.
        what: &'static str,
        /// The errno.
        source: io::Error,
    },
    /// A log file could not be opened, written or rotated.
    #[error(transparent)]
    File(#[from] LogFileError),
}

fn sys(what: &'static str) -> impl FnOnce(Errno) -> PumpError {
    move |e| PumpError::Sys {
        what,
        source: e.into(),
    }
}

#[derive(Debug)]
struct Source {
    fd: OwnedFd,
    sink: SinkId,
    splitter: LineSplitter,
}

#[derive(Debug)]
struct Sink {
    file: LogFile,
    open_streams: usize,
}

/// Something that happened while servicing the pump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PumpEvent {
    /// Every stream of this sink reached end-of-file; its file is closed.
    Closed(SinkId),
    /// Writing this sink failed; its streams keep being drained (data is dropped) so the
    /// container never blocks on a full pipe. The message names the file and errno.
    WriteFailed(SinkId, String),
}

/// Moves pipe output into CRI log files with one epoll set for all containers of a pod.
#[derive(Debug)]
pub struct LogPump {
    epoll: OwnedFd,
    sources: HashMap<u64, Source>,
    sinks: HashMap<SinkId, Sink>,
    next_token: u64,
    max_line: usize,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl LogPump {
    /// An empty pump cutting lines at `max_line` bytes (see [`DEFAULT_MAX_LINE`]).
    pub fn new(max_line: usize) -> Result<Self, PumpError> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(sys("epoll_create1"))?;
        Ok(Self {
            epoll,
            sources: HashMap::new(),
            sinks: HashMap::new(),
            next_token: 1,
            max_line,
            buf: vec![0; 64 * 1024],
            out: Vec::with_capacity(64 * 1024),
        })
    }

    /// A pump with containerd's default 16 KiB line limit.
    pub fn with_defaults() -> Result<Self, PumpError> {
        Self::new(DEFAULT_MAX_LINE)
    }

    /// Opens `path` (appending) as a new sink and registers the read ends of the
    /// container's pipes. Pass `None` for a stream the container does not have (a TTY
    /// container has only stdout).
    pub fn add(
        &mut self,
        path: PathBuf,
        rotate: RotateConfig,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    ) -> Result<SinkId, PumpError> {
        let file = LogFile::open(path, rotate)?;
        let sink = SinkId(self.next_token);
        self.next_token += 1;
        self.sinks.insert(
            sink,
            Sink {
                file,
                open_streams: 0,
            },
        );
        for (fd, stream) in [(stdout, Stream::Stdout), (stderr, Stream::Stderr)] {
            if let Some(fd) = fd {
                self.add_source(sink, fd, stream)?;
            }
        }
        Ok(sink)
    }

    fn add_source(&mut self, sink: SinkId, fd: OwnedFd, stream: Stream) -> Result<(), PumpError> {
        let flags = fcntl_getfl(&fd).map_err(sys("fcntl(F_GETFL) on log pipe"))?;
        fcntl_setfl(&fd, flags | OFlags::NONBLOCK)
            .map_err(sys("fcntl(F_SETFL O_NONBLOCK) on log pipe"))?;
        let token = self.next_token;
        self.next_token += 1;
        epoll::add(
            &self.epoll,
            &fd,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN | epoll::EventFlags::RDHUP,
        )
        .map_err(sys("epoll_ctl(ADD) log pipe"))?;
        self.sources.insert(
            token,
            Source {
                fd,
                sink,
                splitter: LineSplitter::new(stream, self.max_line),
            },
        );
        if let Some(s) = self.sinks.get_mut(&sink) {
            s.open_streams += 1;
        }
        Ok(())
    }

    /// Number of pipes still open.
    pub fn open_streams(&self) -> usize {
        self.sources.len()
    }

    /// Waits up to `timeout` (`None`: forever) for pipe activity, moves what is readable
    /// into the log files and reports closed or failing sinks.
    pub fn service(&mut self, timeout: Option<Duration>) -> Result<Vec<PumpEvent>, PumpError> {
        let mut ready: Vec<epoll::Event> = Vec::with_capacity(64);
        let timeout = timeout.map(|d| rustix::event::Timespec {
            tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(d.subsec_nanos()),
        });
        match epoll::wait(&self.epoll, spare_capacity(&mut ready), timeout.as_ref()) {
            Ok(_) => {}
            Err(Errno::INTR) => return Ok(Vec::new()),
            Err(e) => return Err(sys("epoll_wait")(e)),
        }
        let mut events = Vec::new();
        for ev in ready {
            let token = ev.data.u64();
            self.drain(token, &mut events)?;
        }
        Ok(events)
    }

    /// Reads a pipe until it would block or reaches end-of-file.
    fn drain(&mut self, token: u64, events: &mut Vec<PumpEvent>) -> Result<(), PumpError> {
        let Some(source) = self.sources.get_mut(&token) else {
            return Ok(());
        };
        let sink_id = source.sink;
        let mut eof = false;
        self.out.clear();
        loop {
            match rustix::io::read(&source.fd, &mut self.buf[..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    let ts = timestamp(SystemTime::now());
                    source.splitter.feed(&self.buf[..n], &ts, &mut self.out);
                    // Bound memory: write out every 256 KiB of entries.
                    if self.out.len() >= 256 * 1024 {
                        write_sink(&mut self.sinks, sink_id, &self.out, events);
                        self.out.clear();
                    }
                }
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(sys("read log pipe")(e)),
            }
        }
        if eof {
            source
                .splitter
                .finish(&timestamp(SystemTime::now()), &mut self.out);
        }
        write_sink(&mut self.sinks, sink_id, &self.out, events);
        self.out.clear();
        if eof {
            if let Some(source) = self.sources.remove(&token) {
                epoll::delete(&self.epoll, &source.fd).map_err(sys("epoll_ctl(DEL) log pipe"))?;
            }
            let closed = self.sinks.get_mut(&sink_id).is_some_and(|s| {
                s.open_streams = s.open_streams.saturating_sub(1);
                s.open_streams == 0
            });
            if closed {
                self.sinks.remove(&sink_id);
                events.push(PumpEvent::Closed(sink_id));
            }
        }
        Ok(())
    }
}

fn write_sink(
    sinks: &mut HashMap<SinkId, Sink>,
    id: SinkId,
    data: &[u8],
    events: &mut Vec<PumpEvent>,
) {
    if let Some(sink) = sinks.get_mut(&id)
        && let Err(e) = sink.file.append(data, SystemTime::now())
    {
        events.push(PumpEvent::WriteFailed(id, e.to_string()));
    }
}

impl AsFd for LogPump {
    /// The epoll fd: readable when some pipe has data (for nesting in another loop).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;

    use super::*;
    use crate::logs::format::{Tag, parse_entry};

    fn pipe() -> (OwnedFd, std::fs::File) {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        (r, std::fs::File::from(w))
    }

    fn run_until_closed(pump: &mut LogPump, want_closed: usize) -> Vec<PumpEvent> {
        let mut all = Vec::new();
        for _ in 0..1000 {
            all.extend(pump.service(Some(Duration::from_millis(100))).unwrap());
            if all
                .iter()
                .filter(|e| matches!(e, PumpEvent::Closed(_)))
                .count()
                >= want_closed
            {
                return all;
            }
        }
        panic!("sinks not closed: {all:?}");
    }

    #[test]
    fn many_containers_share_one_loop_and_write_cri_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let mut pump = LogPump::with_defaults().unwrap();
        let mut writers = Vec::new();
        let mut paths = Vec::new();
        for i in 0..20 {
            let (out_r, out_w) = pipe();
            let (err_r, err_w) = pipe();
            let path = tmp.path().join(format!("c{i}/0.log"));
            pump.add(
                path.clone(),
                RotateConfig::default(),
                Some(out_r),
                Some(err_r),
            )
            .unwrap();
            writers.push((i, out_w, err_w));
            paths.push(path);
        }
        assert_eq!(pump.open_streams(), 40);
        for (i, out_w, err_w) in &mut writers {
            writeln!(out_w, "hello from {i}").unwrap();
            write!(err_w, "oops {i}\nno newline").unwrap();
        }
        drop(writers);
        let events = run_until_closed(&mut pump, 20);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, PumpEvent::WriteFailed(..)))
        );
        assert_eq!(pump.open_streams(), 0);
        for (i, path) in paths.iter().enumerate() {
            let text = fs::read(path).unwrap();
            let entries: Vec<_> = text
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| parse_entry(l).unwrap())
                .collect();
            let mut got: Vec<(Stream, Tag, String)> = entries
                .iter()
                .map(|e| {
                    (
                        e.stream,
                        e.tag,
                        String::from_utf8_lossy(e.text).into_owned(),
                    )
                })
                .collect();
            got.sort_by_key(|(s, _, t)| (s.as_str(), t.clone()));
            assert_eq!(
                got,
                vec![
                    (Stream::Stderr, Tag::Partial, "no newline".to_string()),
                    (Stream::Stderr, Tag::Full, format!("oops {i}")),
                    (Stream::Stdout, Tag::Full, format!("hello from {i}")),
                ]
            );
        }
    }

    #[test]
    fn long_output_is_split_into_partial_entries_and_rotated() {
        let tmp = tempfile::tempdir().unwrap();
        let mut pump = LogPump::new(1024).unwrap();
        let (r, mut w) = pipe();
        let path = tmp.path().join("big/0.log");
        let rotate = RotateConfig {
            max_size: 64 * 1024,
            max_files: 3,
        };
        pump.add(path.clone(), rotate, Some(r), None).unwrap();
        // 100 lines of 3000 bytes: each becomes P(1024) P(1024) F(952). Written from a
        // thread because the pipe buffer is smaller than the output.
        let writer = std::thread::spawn(move || {
            for i in 0..100u8 {
                let line = vec![b'a' + (i % 26); 3000];
                w.write_all(&line).unwrap();
                w.write_all(b"\n").unwrap();
            }
        });
        run_until_closed(&mut pump, 1);
        writer.join().unwrap();
        let mut files = crate::logs::file::rotated_files(&path).unwrap();
        assert_eq!(files.len(), 2, "max_files 3 = current + 2 rotated");
        files.push(path.clone());
        let mut all = Vec::new();
        for f in &files {
            let text = fs::read(f).unwrap();
            assert!(
                text.len() as u64 <= rotate.max_size,
                "{f:?} is {} bytes",
                text.len()
            );
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let e = parse_entry(line).unwrap();
                all.push((e.tag, e.text.len(), e.text[0]));
            }
        }
        // The oldest kept file may start mid-line (older files were pruned): skip to the
        // first line end, then every line is P(1024) P(1024) F(952) of one letter.
        let first_full = all.iter().position(|e| e.0 == Tag::Full).unwrap();
        let rest = &all[first_full + 1..];
        assert!(
            rest.len() >= 30 && rest.len() % 3 == 0,
            "{} entries",
            rest.len()
        );
        for chunk in rest.chunks(3) {
            let c = chunk[0].2;
            assert_eq!(
                chunk,
                [
                    (Tag::Partial, 1024, c),
                    (Tag::Partial, 1024, c),
                    (Tag::Full, 952, c)
                ]
            );
        }
        assert_eq!(
            rest.last().unwrap().2,
            b'a' + 99 % 26,
            "the last line is the last written"
        );
    }
}
