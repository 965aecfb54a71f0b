//! "Log an error once": a failure repeated on every retry is logged when it first appears or
//! changes, then only at debug level, and its recovery is logged once.

use std::collections::HashMap;

/// Last failure per operation.
#[derive(Debug, Default)]
pub struct LogOnce {
    last: HashMap<String, String>,
}

impl LogOnce {
    /// Record a failure of `what`; `key` identifies the failure kind (same key: same failure).
    /// Returns true when it was logged at warn level (first time or changed).
    pub fn failed(&mut self, what: &str, key: &str, message: &dyn std::fmt::Display) -> bool {
        let new = self.last.get(what).is_none_or(|k| k != key);
        if new {
            tracing::warn!(op = what, "mirror: {message}");
            self.last.insert(what.to_owned(), key.to_owned());
        } else {
            tracing::debug!(op = what, "mirror: {message}");
        }
        new
    }

    /// Record a success of `what`; logs recovery if it had failed. Returns true if it had.
    pub fn ok(&mut self, what: &str) -> bool {
        let recovered = self.last.remove(what).is_some();
        if recovered {
            tracing::info!(op = what, "mirror: recovered");
        }
        recovered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_failure_is_logged_once_until_it_changes_or_recovers() {
        let mut l = LogOnce::default();
        assert!(l.failed("list", "api:403:Forbidden", &"no"));
        assert!(!l.failed("list", "api:403:Forbidden", &"no"));
        assert!(l.failed("list", "transport:refused", &"down"));
        assert!(l.ok("list"));
        assert!(!l.ok("list"));
        assert!(l.failed("list", "transport:refused", &"down"));
    }
}
