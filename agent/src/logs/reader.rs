//! Reading a container's CRI log back as the kubelet's `ReadLogs` does: the text of each
//! entry, with a newline after `F` entries, optionally only the last N entries
//! (`--tail`), only entries at or after a time (`--since`), and following the file as it
//! grows and across rotation (`-f`).
//!
//! Rotated files (`<n>.log.<stamp>`) are read before the current one, so `--tail` still
//! works right after a rotation (the kubelet reads only the current file).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::file::rotated_files;
use super::format::{Tag, parse_entry};

/// What to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Only the last N entries (counted before the `since` filter, as the kubelet does).
    pub tail: Option<usize>,
    /// Only entries stamped at or after this time.
    pub since: Option<SystemTime>,
    /// Prefix each line with its RFC 3339 time (`kubectl logs --timestamps`).
    pub timestamps: bool,
}

/// Writes one entry's text as the user sees it.
fn emit(line: &[u8], opts: &ReadOptions, out: &mut dyn Write) -> io::Result<()> {
    let Some(e) = parse_entry(line) else {
        return Ok(()); // a torn or foreign line: skip, as the kubelet does
    };
    if opts.since.is_some_and(|since| e.time < since) {
        return Ok(());
    }
    if opts.timestamps {
        let ts = line.split(|&b| b == b' ').next().unwrap_or_default();
        out.write_all(ts)?;
        out.write_all(b" ")?;
    }
    out.write_all(e.text)?;
    if e.tag == Tag::Full {
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn strip_newline(mut line: &[u8]) -> &[u8] {
    if let Some(l) = line.strip_suffix(b"\n") {
        line = l;
    }
    line
}

/// Reads the log of one container run (`current` is `<n>.log`) and writes its text.
/// Returns the open current file positioned at its end, for [`follow`].
pub fn read_logs(
    current: &Path,
    opts: &ReadOptions,
    out: &mut dyn Write,
) -> io::Result<Option<File>> {
    let mut files = rotated_files(current).unwrap_or_default();
    files.push(current.to_path_buf());
    let mut tail: VecDeque<Vec<u8>> = VecDeque::new();
    let mut last = None;
    for path in &files {
        let file = match File::open(path) {
            Ok(f) => f,
            // rotated away or pruned between listing and opening
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 || !line.ends_with(b"\n") {
                break; // EOF, or an entry still being written: follow picks it up
            }
            match opts.tail {
                Some(0) => {}
                Some(n) => {
                    if tail.len() == n {
                        tail.pop_front();
                    }
                    tail.push_back(strip_newline(&line).to_vec());
                }
                None => emit(strip_newline(&line), opts, out)?,
            }
        }
        if path == current {
            let consumed = reader.stream_position()? - line.len() as u64;
            let mut file = reader.into_inner();
            file.seek(SeekFrom::Start(consumed))?;
            last = Some(file);
        }
    }
    for line in &tail {
        emit(line, opts, out)?;
    }
    Ok(last)
}

/// Follows `current` after [`read_logs`]: writes new entries as they are appended, and
/// when the file is rotated (the path names another inode) finishes the old file and
/// continues with the new one. Polls every `interval`; stops when `keep_going` returns
/// false or writing fails (the reader went away).
pub fn follow(
    current: &Path,
    mut file: Option<File>,
    opts: &ReadOptions,
    out: &mut dyn Write,
    interval: Duration,
    keep_going: &dyn Fn() -> bool,
) -> io::Result<()> {
    // Entries older than --since were already filtered; --tail does not apply to new ones.
    let opts = ReadOptions {
        tail: None,
        ..opts.clone()
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut progressed = false;
        if let Some(f) = file.as_mut() {
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                progressed = true;
                pending.extend_from_slice(&buf[..n]);
                let complete = pending
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                for line in pending[..complete]
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                {
                    emit(line, &opts, out)?;
                }
                pending.drain(..complete);
            }
            out.flush()?;
        }
        if !progressed {
            // At the end: has the path been rotated to a new file (or appeared)?
            let open_ino = file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map(|m| (m.dev(), m.ino()));
            let path_ino = std::fs::metadata(current).ok().map(|m| (m.dev(), m.ino()));
            if path_ino.is_some() && path_ino != open_ino {
                // Rotated: the writer may have appended to the old file just before the
                // rename, so drain it once more before switching.
                if let Some(f) = file.as_mut() {
                    f.read_to_end(&mut pending)?;
                    for line in pending.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        emit(line, &opts, out)?;
                    }
                }
                pending.clear();
                // Open the new current file first, then read whole every file rotated
                // between the old one and it (several rotations can happen between two
                // looks), so no entry is skipped.
                let next = File::open(current)?;
                let next_ino = next.metadata().ok().map(|m| (m.dev(), m.ino()));
                let ino_of = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
                let rotated = rotated_files(current).unwrap_or_default();
                // If the old file was already pruned, every remaining rotated file is newer.
                let after_old = rotated
                    .iter()
                    .position(|p| open_ino.is_some() && ino_of(p) == open_ino)
                    .map_or(0, |i| i + 1);
                for path in &rotated[after_old..] {
                    if ino_of(path) == next_ino {
                        break;
                    }
                    let Ok(mut missed) = File::open(path) else {
                        continue;
                    };
                    let mut text = Vec::new();
                    missed.read_to_end(&mut text)?;
                    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        emit(line, &opts, out)?;
                    }
                }
                file = Some(next);
                pending.clear();
                continue;
            }
            if !keep_going() {
                return Ok(());
            }
            std::thread::sleep(interval);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::logs::file::{LogFile, RotateConfig};
    use crate::logs::format::{Stream, push_entry, timestamp};

    fn entry(secs: u64, stream: Stream, tag: Tag, text: &str) -> Vec<u8> {
        let mut v = Vec::new();
        let ts = timestamp(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs));
        push_entry(&mut v, &ts, stream, tag, text.as_bytes());
        v
    }

    fn sample(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("0.log");
        let mut data = Vec::new();
        data.extend(entry(0, Stream::Stdout, Tag::Full, "one"));
        data.extend(entry(1, Stream::Stderr, Tag::Partial, "tw"));
        data.extend(entry(1, Stream::Stderr, Tag::Full, "o"));
        data.extend(entry(2, Stream::Stdout, Tag::Full, "three"));
        data.extend(entry(3, Stream::Stdout, Tag::Full, "four"));
        fs::write(&path, data).unwrap();
        path
    }

    fn read(path: &Path, opts: ReadOptions) -> String {
        let mut out = Vec::new();
        read_logs(path, &opts, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn read_options_table() {
        let tmp = tempfile::tempdir().unwrap();
        let path = sample(tmp.path());
        let at = |s: u64| Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s));
        let cases = [
            (
                "everything_with_partials_joined",
                ReadOptions::default(),
                "one\ntwo\nthree\nfour\n",
            ),
            (
                "tail_counts_entries",
                ReadOptions {
                    tail: Some(2),
                    ..Default::default()
                },
                "three\nfour\n",
            ),
            (
                "tail_zero_is_nothing",
                ReadOptions {
                    tail: Some(0),
                    ..Default::default()
                },
                "",
            ),
            (
                "tail_larger_than_file",
                ReadOptions {
                    tail: Some(50),
                    ..Default::default()
                },
                "one\ntwo\nthree\nfour\n",
            ),
            (
                "since_is_inclusive",
                ReadOptions {
                    since: at(2),
                    ..Default::default()
                },
                "three\nfour\n",
            ),
            (
                "tail_then_since",
                ReadOptions {
                    tail: Some(3),
                    since: at(2),
                    ..Default::default()
                },
                "three\nfour\n",
            ),
            (
                "timestamps_prefix",
                ReadOptions {
                    tail: Some(1),
                    timestamps: true,
                    ..Default::default()
                },
                "2023-11-14T22:13:23.000000000Z four\n",
            ),
        ];
        for (name, opts, want) in cases {
            assert_eq!(read(&path, opts), want, "{name}");
        }
    }

    #[test]
    fn rotated_files_are_read_first_and_torn_lines_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("0.log");
        fs::write(
            tmp.path().join("0.log.20231114-221320"),
            entry(0, Stream::Stdout, Tag::Full, "old"),
        )
        .unwrap();
        let mut cur = entry(1, Stream::Stdout, Tag::Full, "new");
        cur.extend_from_slice(b"garbage line\n2023-11-14T22:13:22Z stdout F half-writ");
        fs::write(&path, cur).unwrap();
        assert_eq!(read(&path, ReadOptions::default()), "old\nnew\n");
        assert_eq!(
            read(
                &path,
                ReadOptions {
                    tail: Some(2),
                    ..Default::default()
                }
            ),
            "new\n"
        );
    }

    /// A `Write` that collects into a shared buffer.
    #[derive(Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn follow_reads_files_rotated_between_two_looks() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("0.log");
        let rotate = RotateConfig {
            max_size: 130,
            max_files: 10,
        };
        let mut log = LogFile::open(path.clone(), rotate).unwrap();
        log.append(
            &entry(0, Stream::Stdout, Tag::Full, "first"),
            SystemTime::now(),
        )
        .unwrap();
        let mut out = Vec::new();
        let opts = ReadOptions::default();
        let file = read_logs(&path, &opts, &mut out).unwrap();
        // Several rotations before the follower looks again (two entries per file).
        let mut want = String::from("first\n");
        for i in 0..9 {
            let text = format!("burst-{i}");
            log.append(
                &entry(1, Stream::Stdout, Tag::Full, &text),
                SystemTime::now(),
            )
            .unwrap();
            want.push_str(&text);
            want.push('\n');
        }
        assert!(rotated_files(&path).unwrap().len() >= 3);
        let looks = std::cell::Cell::new(0);
        follow(
            &path,
            file,
            &opts,
            &mut out,
            Duration::from_millis(1),
            &|| {
                looks.set(looks.get() + 1);
                looks.get() < 3
            },
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn follow_sees_appends_and_survives_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("0.log");
        let rotate = RotateConfig {
            max_size: 200,
            max_files: 5,
        };
        let mut log = LogFile::open(path.clone(), rotate).unwrap();
        log.append(
            &entry(0, Stream::Stdout, Tag::Full, "before"),
            SystemTime::now(),
        )
        .unwrap();

        let out = Shared::default();
        let stop = Arc::new(AtomicBool::new(false));
        let follower = {
            let (path, mut out, stop) = (path.clone(), out.clone(), stop.clone());
            std::thread::spawn(move || {
                let opts = ReadOptions::default();
                let file = read_logs(&path, &opts, &mut out).unwrap();
                follow(
                    &path,
                    file,
                    &opts,
                    &mut out,
                    Duration::from_millis(10),
                    &|| !stop.load(Ordering::SeqCst),
                )
                .unwrap();
            })
        };
        let mut want = String::from("before\n");
        // 60-byte entries in 200-byte files: rotates every 3 entries, several times.
        for i in 0..20 {
            std::thread::sleep(Duration::from_millis(5));
            let text = format!("line-{i:02}");
            log.append(
                &entry(1, Stream::Stdout, Tag::Full, &text),
                SystemTime::now(),
            )
            .unwrap();
            want.push_str(&text);
            want.push('\n');
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while out.0.lock().unwrap().len() < want.len() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::SeqCst);
        follower.join().unwrap();
        assert!(
            !rotated_files(&path).unwrap().is_empty(),
            "the test must rotate"
        );
        assert_eq!(
            String::from_utf8(out.0.lock().unwrap().clone()).unwrap(),
            want
        );
    }
}
