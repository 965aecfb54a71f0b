//! The crate's one error type: each variant says whether retrying can help.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong getting an image onto the node or a root filesystem out of it.
///
/// [`Error::is_transient`] tells a caller whether retrying with backoff may help (network,
/// registry 5xx, I/O) or whether the request itself is wrong (bad reference, tampered blob,
/// hostile archive, unknown image).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image reference does not parse.
    #[error("parse image reference {reference:?}: {reason}")]
    Reference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A system call or file operation failed; the errno is kept in `source`.
    #[error("{step} {}: {source}", path.display())]
    Io {
        /// What was being done ("create blob", "mount overlay").
        step: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The underlying error, with its errno.
        #[source]
        source: io::Error,
    },
    /// Content did not match the digest that names it.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Which blob or layer.
        what: String,
        /// The digest the descriptor or config promised.
        expected: String,
        /// The digest of the bytes actually received.
        actual: String,
    },
    /// Content was not the size its descriptor promised.
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// Which blob.
        what: String,
        /// The size in the descriptor.
        expected: u64,
        /// The size received.
        actual: u64,
    },
    /// A layer entry tries to reach outside its layer directory, or is otherwise unsafe.
    #[error("layer entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// A manifest, index, config or archive is malformed or of an unsupported kind.
    #[error("{what}: {reason}")]
    Format {
        /// Which document or archive.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The image is not in the store.
    #[error("image {0} not found in the store")]
    NotFound(String),
    /// The image is used by a prepared container and cannot be removed.
    #[error("image {reference} is in use by container {container}")]
    InUse {
        /// The image.
        reference: String,
        /// One container that uses it.
        container: String,
    },
    /// The registry answered with an error status.
    #[error("registry {url}: HTTP {status}: {message}")]
    Registry {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error message, if any.
        message: String,
    },
    /// The HTTP request failed below the status line (DNS, TCP, TLS, timeout).
    #[error("registry {url}: {source}")]
    Http {
        /// The URL requested.
        url: String,
        /// The transport error.
        #[source]
        source: Box<ureq::Error>,
    },
}

impl Error {
    /// Builds an [`Error::Io`] from a step, a path and anything convertible to `io::Error`
    /// (`rustix::io::Errno` included), so the errno is never lost.
    pub fn io(step: &'static str, path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        Error::Io {
            step,
            path: path.into(),
            source: source.into(),
        }
    }

    /// Builds an [`Error::Format`].
    pub fn format(what: impl Into<String>, reason: impl ToString) -> Self {
        Error::Format {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// True when retrying later may succeed: transport failures, registry 408/429/5xx, and
    /// I/O errors. Digest mismatches, hostile archives, bad references and missing images are
    /// permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Http { .. } | Error::Io { .. } => true,
            Error::Registry { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
