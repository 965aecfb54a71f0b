//! Small parsers for the local API: URL paths and query strings, and Go-style durations
//! (`--since 5m`, `1h30m`, `90s`) as `kubectl logs --since` accepts them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Splits `/a/b?x=1&y=2` into its decoded path segments and decoded query parameters
/// (segments are decoded one by one, so `%2F` inside a segment stays inside it).
pub fn split_url(url: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let params = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    (segments, params)
}

/// Percent-decoding (and `+` as space in queries); invalid escapes are kept as written.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses a Go duration made of `<number><unit>` parts (`h`, `m`, `s`, `ms`), or a plain
/// number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(value * scale).ok()?;
    }
    Some(total)
}

/// `since` as the API takes it: an RFC 3339 time, or a duration before `now`.
pub fn parse_since(text: &str, now: SystemTime) -> Option<SystemTime> {
    if let Some(t) = crate::supervise::clock::parse_rfc3339(text) {
        return Some(t);
    }
    parse_duration(text).map(|d| now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn duration_table() {
        let cases = [
            ("5m", Some(300)),
            ("1h30m", Some(5400)),
            ("90s", Some(90)),
            ("42", Some(42)),
            ("1h0m5s", Some(3605)),
            ("1.5h", Some(5400)),
            ("", None),
            ("5x", None),
            ("m5", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).map(|d| d.as_secs()), want, "{text:?}");
        }
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    }

    #[test]
    fn url_split_and_percent_coding() {
        let (path, q) =
            split_url("/pods/web%2Dn1/logs?container=app&since=2023-11-14T22%3A13%3A20Z&follow");
        assert_eq!(path, ["pods", "web-n1", "logs"]);
        assert_eq!(split_url("/pods/ns%2Fname").0, ["pods", "ns/name"]);
        assert_eq!(q.get("container").map(String::as_str), Some("app"));
        assert_eq!(
            q.get("since").map(String::as_str),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(q.get("follow").map(String::as_str), Some(""));
        assert_eq!(decode(&encode("a b/c:d+é")), "a b/c:d+é");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%é%"), "%é%");
    }

    #[test]
    fn since_accepts_time_or_duration() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_600);
        assert_eq!(
            parse_since("10m", now),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z", now),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(parse_since("soon", now), None);
    }
}
