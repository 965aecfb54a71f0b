//! The termination message of an exited container, as the kubelet reads it.
//!
//! The message is the tail (at most 4096 bytes) of the file the container wrote at its
//! `terminationMessagePath` (the host side of that mount). With
//! `terminationMessagePolicy: FallbackToLogsOnError`, a container that failed and wrote no
//! message gets the last 80 lines of its log instead, at most 2048 bytes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::logs::reader::{ReadOptions, read_logs};

/// The kubelet's `MaxContainerTerminationMessageLength`.
pub const MAX_MESSAGE: u64 = 4096;
/// The kubelet's `MaxContainerTerminationMessageLogLength`.
pub const MAX_LOG_MESSAGE: usize = 2048;
/// The kubelet's `MaxContainerTerminationMessageLogLines`.
pub const MAX_LOG_LINES: usize = 80;

/// The last [`MAX_MESSAGE`] bytes of the message file; `None` if it does not exist.
pub fn read_message_file(path: &Path) -> io::Result<Option<String>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(MAX_MESSAGE)))?;
    let mut buf = Vec::new();
    file.take(MAX_MESSAGE).read_to_end(&mut buf)?;
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// The last [`MAX_LOG_LINES`] lines of a container run's CRI log, cut to the last
/// [`MAX_LOG_MESSAGE`] bytes.
pub fn log_tail_message(log_path: &Path) -> io::Result<String> {
    let mut out = Vec::new();
    let opts = ReadOptions {
        tail: Some(MAX_LOG_LINES),
        ..Default::default()
    };
    match read_logs(log_path, &opts, &mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    }
    let start = out.len().saturating_sub(MAX_LOG_MESSAGE);
    Ok(String::from_utf8_lossy(&out[start..]).into_owned())
}

/// Chooses the message: the file's content, or with `FallbackToLogsOnError` and a failed
/// exit and no file message, the log tail (`log_tail` is only called then).
pub fn termination_message(
    policy: Option<&str>,
    success: bool,
    file_message: Option<String>,
    log_tail: impl FnOnce() -> Option<String>,
) -> Option<String> {
    let from_file = file_message.filter(|m| !m.is_empty());
    if from_file.is_none() && !success && policy == Some("FallbackToLogsOnError") {
        return log_tail().filter(|m| !m.is_empty());
    }
    from_file
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    #[test]
    fn message_choice_table() {
        let file = || Some("from file".to_string());
        let cases: &[(&str, Option<&str>, bool, Option<String>, Option<&str>)] = &[
            (
                "file_policy_uses_file",
                Some("File"),
                false,
                file(),
                Some("from file"),
            ),
            (
                "file_policy_never_uses_logs",
                Some("File"),
                false,
                None,
                None,
            ),
            (
                "fallback_prefers_file",
                Some("FallbackToLogsOnError"),
                false,
                file(),
                Some("from file"),
            ),
            (
                "fallback_uses_logs_on_error",
                Some("FallbackToLogsOnError"),
                false,
                None,
                Some("from logs"),
            ),
            (
                "fallback_empty_file_uses_logs",
                Some("FallbackToLogsOnError"),
                false,
                Some(String::new()),
                Some("from logs"),
            ),
            (
                "fallback_not_on_success",
                Some("FallbackToLogsOnError"),
                true,
                None,
                None,
            ),
            ("unset_policy_is_file", None, false, None, None),
        ];
        for (name, policy, success, file_msg, want) in cases {
            let got = termination_message(*policy, *success, file_msg.clone(), || {
                Some("from logs".into())
            });
            assert_eq!(got.as_deref(), *want, "{name}");
        }
    }

    #[test]
    fn file_message_is_its_last_4096_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("termination-log");
        assert_eq!(read_message_file(&path).unwrap(), None);
        let mut text = "x".repeat(5000);
        text.push_str("END");
        std::fs::write(&path, &text).unwrap();
        let got = read_message_file(&path).unwrap().unwrap();
        assert_eq!(got.len(), 4096);
        assert!(got.ends_with("xEND"));
    }

    #[test]
    fn log_tail_is_last_80_lines_within_2048_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("0.log");
        let mut log = String::new();
        for i in 0..100 {
            writeln!(log, "2023-11-14T22:13:20.000000000Z stderr F line {i}").unwrap();
        }
        std::fs::write(&path, &log).unwrap();
        let got = log_tail_message(&path).unwrap();
        assert!(
            got.starts_with("line 20\n") && got.ends_with("line 99\n"),
            "{got}"
        );
        let long = format!(
            "2023-11-14T22:13:20.000000000Z stderr F {}\n",
            "y".repeat(3000)
        );
        std::fs::write(&path, long).unwrap();
        assert_eq!(log_tail_message(&path).unwrap().len(), 2048);
        assert_eq!(
            log_tail_message(&tmp.path().join("missing.log")).unwrap(),
            ""
        );
    }
}
