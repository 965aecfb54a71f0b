//! Signal names and numbers as `kill` accepts them (`TERM`, `SIGTERM`, `15`).

const SIGNALS: [(&str, i32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// Parse a signal given by name (with or without `SIG`, any case), number, or real-time
/// form (`RTMIN+3`).
pub fn parse_signal(s: &str) -> Result<i32, String> {
    let bad = || format!("unknown signal {s:?}");
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(n) = SIGNALS.iter().find(|(k, _)| *k == name).map(|(_, n)| *n) {
        return Ok(n);
    }
    if name == "IOT" {
        return Ok(6);
    }
    if name == "POLL" {
        return Ok(29);
    }
    let rt = |base: i32, rest: &str, sign: i32| -> Result<i32, String> {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.parse().map_err(|_| bad())?
        };
        let n = base + sign * off;
        if (34..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt(34, rest.trim_start_matches('+'), 1);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt(64, rest.trim_start_matches('-'), -1);
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_realtime_forms() {
        let table = [
            ("TERM", Ok(15)),
            ("SIGTERM", Ok(15)),
            ("sigkill", Ok(9)),
            ("9", Ok(9)),
            ("KILL", Ok(9)),
            ("USR1", Ok(10)),
            ("SIGRTMIN", Ok(34)),
            ("RTMIN+3", Ok(37)),
            ("SIGRTMAX-1", Ok(63)),
            ("WINCH", Ok(28)),
        ];
        for (input, want) in table {
            assert_eq!(parse_signal(input), want, "{input}");
        }
        for bad in ["0", "65", "FOO", "RTMIN+40", ""] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }
}
