//! The CRI log line format and the splitting of a byte stream into log entries.
//!
//! Each entry is one line of the log file: `<time> <stream> <tag> <text>\n`, where time is
//! RFC 3339 with nine fractional digits (as containerd writes it; the kubelet parses it
//! with Go's `RFC3339Nano`), stream is `stdout` or `stderr`, and tag is `F` for the end of a
//! line or `P` for a piece of a longer one. Like containerd, a line longer than the maximum
//! (16 KiB by default) is cut into `P` pieces followed by its `F` end; a trailing `\r\n` or
//! `\n` is not part of the text; bytes left without a newline when the stream closes are
//! written as a final `P`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Containerd's default `max_container_log_line_size`.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024;

/// Which pipe the text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The container's standard output.
    Stdout,
    /// The container's standard error.
    Stderr,
}

impl Stream {
    /// The word used in the log file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// Whether an entry ends its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `F`: the last (or only) piece of a line.
    Full,
    /// `P`: a piece of a line that continues in the next entry.
    Partial,
}

impl Tag {
    /// The letter used in the log file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "F",
            Self::Partial => "P",
        }
    }
}

/// Formats `t` as `2006-01-02T15:04:05.000000000Z` (UTC, nine digits: entries sort as text).
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days);
    let mut out = String::with_capacity(30);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    );
    out
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Appends one formatted entry (with its newline) to `out`.
pub fn push_entry(out: &mut Vec<u8>, ts: &str, stream: Stream, tag: Tag, text: &[u8]) {
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(tag.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// One parsed line of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// When the text was read from the pipe.
    pub time: SystemTime,
    /// `stdout` or `stderr`.
    pub stream: Stream,
    /// `F` or `P`.
    pub tag: Tag,
    /// The text, without the file's newline.
    pub text: &'a [u8],
}

/// Parses one line of a CRI log file (without its trailing newline); `None` if malformed.
pub fn parse_entry(line: &[u8]) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let time = crate::supervise::clock::parse_rfc3339(time)?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let tag = match parts.next()? {
        b"F" => Tag::Full,
        b"P" => Tag::Partial,
        _ => return None,
    };
    let text = parts.next().unwrap_or(b"");
    Some(Entry {
        time,
        stream,
        tag,
        text,
    })
}

/// Turns the bytes of one pipe into CRI entries, keeping an unfinished line between reads.
#[derive(Debug)]
pub struct LineSplitter {
    stream: Stream,
    max_line: usize,
    pending: Vec<u8>,
}

impl LineSplitter {
    /// A splitter for `stream` that cuts lines longer than `max_line` bytes.
    pub fn new(stream: Stream, max_line: usize) -> Self {
        Self {
            stream,
            max_line: max_line.max(1),
            pending: Vec::new(),
        }
    }

    /// Feeds bytes read from the pipe; appends the finished entries, stamped `ts`, to `out`.
    pub fn feed(&mut self, data: &[u8], ts: &str, out: &mut Vec<u8>) {
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&rest[..pos]);
            rest = &rest[pos + 1..];
            if self.pending.last() == Some(&b'\r') {
                self.pending.pop();
            }
            self.emit_pieces(ts, out);
            push_entry(out, ts, self.stream, Tag::Full, &self.pending);
            self.pending.clear();
        }
        self.pending.extend_from_slice(rest);
        // An unfinished line longer than the maximum is written as pieces now, so at most
        // `max_line` bytes wait per stream, and the cut does not depend on read sizes.
        self.emit_pieces(ts, out);
    }

    /// Writes all but the last 1..=`max_line` bytes of the pending line as `P` pieces.
    fn emit_pieces(&mut self, ts: &str, out: &mut Vec<u8>) {
        if self.pending.len() <= self.max_line {
            return;
        }
        let cut = (self.pending.len() - 1) / self.max_line * self.max_line;
        for piece in self.pending[..cut].chunks(self.max_line) {
            push_entry(out, ts, self.stream, Tag::Partial, piece);
        }
        self.pending.drain(..cut);
    }

    /// The pipe closed: writes any unfinished line as a final `P` entry (as containerd does).
    pub fn finish(&mut self, ts: &str, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            push_entry(out, ts, self.stream, Tag::Partial, &self.pending);
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TS: &str = "2023-11-14T22:13:20.000000000Z";

    fn split(max: usize, chunks: &[&[u8]], close: bool) -> String {
        let mut s = LineSplitter::new(Stream::Stdout, max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, TS, &mut out);
        }
        if close {
            s.finish(TS, &mut out);
        }
        String::from_utf8(out)
            .unwrap()
            .replace(&format!("{TS} stdout "), "")
    }

    #[test]
    fn splitter_table() {
        type Case<'a> = (&'a str, usize, &'a [&'a [u8]], bool, &'a str);
        let cases: &[Case] = &[
            (
                "one_line_is_one_full_entry",
                16,
                &[b"hello\n"],
                false,
                "F hello\n",
            ),
            (
                "empty_line_is_an_empty_full_entry",
                16,
                &[b"\n"],
                false,
                "F \n",
            ),
            ("crlf_is_stripped", 16, &[b"dos\r\n"], false, "F dos\n"),
            (
                "line_across_reads_is_joined",
                16,
                &[b"hel", b"lo\nwo", b"rld\n"],
                false,
                "F hello\nF world\n",
            ),
            (
                "unfinished_line_waits_for_newline",
                16,
                &[b"abc"],
                false,
                "",
            ),
            (
                "unfinished_line_is_partial_at_close",
                16,
                &[b"abc"],
                true,
                "P abc\n",
            ),
            (
                "line_of_exactly_max_is_one_full_entry",
                4,
                &[b"abcd\n"],
                false,
                "F abcd\n",
            ),
            (
                "long_line_is_cut_into_pieces_then_full",
                4,
                &[b"abcdefghij\n"],
                false,
                "P abcd\nP efgh\nF ij\n",
            ),
            (
                "line_of_twice_max_ends_with_full_piece",
                4,
                &[b"abcdefgh\n"],
                false,
                "P abcd\nF efgh\n",
            ),
            (
                "long_unfinished_line_is_flushed_in_pieces",
                4,
                &[b"abcdefghij"],
                false,
                "P abcd\nP efgh\n",
            ),
            (
                "flushed_pieces_then_rest_of_line",
                4,
                &[b"abcdef", b"g\n"],
                false,
                "P abcd\nF efg\n",
            ),
            (
                "max_then_newline_in_next_read",
                4,
                &[b"abcd", b"\n"],
                false,
                "F abcd\n",
            ),
            (
                "cut_does_not_depend_on_read_sizes",
                4,
                &[b"ab", b"cdefg", b"hi", b"j\n"],
                false,
                "P abcd\nP efgh\nF ij\n",
            ),
        ];
        for (name, max, chunks, close, want) in cases {
            assert_eq!(split(*max, chunks, *close), *want, "{name}");
        }
    }

    #[test]
    fn timestamp_has_nine_digits_and_parses_back() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 1_500);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.000001500Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000000Z"
        );
        let line = format!("{} stderr P some text with spaces", timestamp(t));
        let e = parse_entry(line.as_bytes()).unwrap();
        assert_eq!(
            (e.time, e.stream, e.tag, e.text),
            (
                t,
                Stream::Stderr,
                Tag::Partial,
                &b"some text with spaces"[..]
            )
        );
    }

    #[test]
    fn malformed_lines_are_rejected() {
        for bad in [
            &b""[..],
            b"garbage",
            b"2023-11-14T22:13:20Z stdin F x",
            b"2023-11-14T22:13:20Z stdout X x",
        ] {
            assert!(parse_entry(bad).is_none(), "{bad:?}");
        }
        let e = parse_entry(b"2023-11-14T22:13:20Z stdout F").unwrap();
        assert_eq!(e.text, b"");
    }
}
