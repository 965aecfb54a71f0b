//! Turning a tar entry's path into a safe `(parent, name)` inside the layer directory.
//!
//! This is the pure half of escape-proof extraction: leading `/` and `./` are dropped (layers
//! are rooted at the image root, as in containerd), `..` anywhere is refused outright, and
//! over-long paths or components are refused. The other half is resolving the parent with
//! `openat2(RESOLVE_BENEATH)` so symlinks cannot lead out either (see `unpack`).

use crate::error::{Error, Result};

/// Longest path accepted (PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Longest single component accepted (NAME_MAX).
pub const MAX_NAME: usize = 255;

/// A cleaned entry path: the parent's components joined by `/` (empty for the root) and the
/// final component. Bytes, not strings: Linux file names need not be UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPath {
    /// The parent directory relative to the layer root, empty for the root itself.
    pub parent: Vec<u8>,
    /// The final component; never empty, `.` or `..`, never contains `/`.
    pub name: Vec<u8>,
}

impl EntryPath {
    /// `parent/name`, relative to the layer root.
    pub fn full(&self) -> Vec<u8> {
        if self.parent.is_empty() {
            self.name.clone()
        } else {
            [&self.parent[..], b"/", &self.name[..]].concat()
        }
    }
}

/// Cleans `raw`. Returns `Ok(None)` for the layer root itself (`./`, `/`).
pub fn clean(raw: &[u8]) -> Result<Option<EntryPath>> {
    let unsafe_entry = |reason: &str| Error::UnsafeEntry {
        entry: String::from_utf8_lossy(&raw[..raw.len().min(200)]).into_owned(),
        reason: reason.into(),
    };
    if raw.len() > MAX_PATH {
        return Err(unsafe_entry("path longer than PATH_MAX"));
    }
    if raw.contains(&0) {
        return Err(unsafe_entry("path contains a NUL byte"));
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err(unsafe_entry("path contains '..'")),
            c if c.len() > MAX_NAME => return Err(unsafe_entry("component longer than NAME_MAX")),
            c => parts.push(c),
        }
    }
    let Some(name) = parts.pop() else {
        return Ok(None);
    };
    Ok(Some(EntryPath {
        parent: parts.join(&b'/'),
        name: name.to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> Option<(String, String)> {
        clean(raw.as_bytes()).unwrap().map(|p| {
            (
                String::from_utf8(p.parent).unwrap(),
                String::from_utf8(p.name).unwrap(),
            )
        })
    }

    #[test]
    fn entry_paths_are_rooted_at_the_layer() {
        let s = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(ok("etc/passwd"), s("etc", "passwd"));
        assert_eq!(ok("./etc/passwd"), s("etc", "passwd"));
        assert_eq!(ok("/etc/passwd"), s("etc", "passwd"));
        assert_eq!(ok("//etc//./passwd/"), s("etc", "passwd"));
        assert_eq!(ok("bin/"), s("", "bin"));
        assert_eq!(ok("./"), None);
        assert_eq!(ok("/"), None);
        assert_eq!(ok("a/b/c/.wh..wh..opq"), s("a/b/c", ".wh..wh..opq"));
    }

    #[test]
    fn traversal_and_oversized_paths_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "a/..",
            "/..",
            "./../etc/passwd",
            "a/.wh...",
        ] {
            let r = clean(bad.as_bytes());
            // ".wh..." is a legal name (whiteout of ".."); the unpacker refuses it separately.
            if bad == "a/.wh..." {
                assert!(r.is_ok());
                continue;
            }
            assert!(matches!(r, Err(Error::UnsafeEntry { .. })), "{bad}");
        }
        assert!(clean("a/".repeat(3000).as_bytes()).is_err());
        assert!(clean("x".repeat(256).as_bytes()).is_err());
        assert!(clean(b"a\0b").is_err());
        // Not UTF-8 (Latin-1 "caf\xe9"): a valid Linux name, kept byte for byte.
        let p = clean(b"dir/caf\xe9").unwrap().unwrap();
        assert_eq!(p.name, b"caf\xe9");
    }
}
