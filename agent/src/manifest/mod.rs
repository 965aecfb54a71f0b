//! Manifests: which files in the manifest directory count, decoding one file into a Pod,
//! the desired set of pods with the §3 change rules, and the inotify watcher that keeps it.

pub mod decode;
pub mod desired;
pub mod error;
pub mod source;
pub mod watch;

pub use decode::{Decoded, MAX_MANIFEST_BYTES, ManifestKind, decode};
pub use desired::{DesiredSet, OnInvalid, Problem, decide};
pub use error::{FieldError, FieldErrors, ManifestError};
