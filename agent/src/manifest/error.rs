//! The one error type for a manifest file: every variant names the file, and field-level
//! problems carry the field path (`spec.containers[0].image`).

use std::fmt;
use std::path::PathBuf;

/// One problem with one field of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, in the manifest's own spelling: `spec.containers[0].ports[1].containerPort`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error at `field` saying `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A list of field errors, displayed one per `; `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Why a manifest file does not give a pod to run. All of these are the file's fault
/// (permanent until the file changes), except [`ManifestError::Read`], which may be transient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be opened or read (the message keeps the OS error).
    #[error("read manifest {file}: {message}")]
    Read {
        /// The manifest file.
        file: PathBuf,
        /// The I/O error, with its errno.
        message: String,
    },
    /// The file is over the size cap.
    #[error("manifest {file} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The manifest file.
        file: PathBuf,
        /// Its size (at least; reading stops past the limit).
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// The file holds no document.
    #[error("manifest {file} is empty: it must hold one Pod")]
    Empty {
        /// The manifest file.
        file: PathBuf,
    },
    /// The file is not valid YAML/JSON, or breaks a parser budget (aliases, depth).
    #[error("parse manifest {file}: {message}")]
    Syntax {
        /// The manifest file.
        file: PathBuf,
        /// The parser's message, with its line and column where known.
        message: String,
    },
    /// Several YAML documents in one file (the kubelet silently takes the first).
    #[error(
        "manifest {file} holds {count} YAML documents: podvisor takes exactly one Pod per file"
    )]
    MultipleDocuments {
        /// The manifest file.
        file: PathBuf,
        /// How many documents were found.
        count: usize,
    },
    /// Not `v1 Pod` nor `apps/v1 DaemonSet`.
    #[error(
        "manifest {file}: apiVersion {api_version:?} kind {kind:?} is not a v1 Pod or an apps/v1 DaemonSet"
    )]
    WrongKind {
        /// The manifest file.
        file: PathBuf,
        /// The `apiVersion` given (empty when missing).
        api_version: String,
        /// The `kind` given (empty when missing).
        kind: String,
    },
    /// The document does not fit the Pod schema, or fails validation.
    #[error("manifest {file}: {errors}")]
    Invalid {
        /// The manifest file.
        file: PathBuf,
        /// Every problem found, each with its field path.
        errors: FieldErrors,
    },
    /// A valid pod whose nodeSelector, node affinity or tolerations exclude this node.
    #[error("manifest {file}: pod {pod} does not run on node {node}: {reason}")]
    NotSelected {
        /// The manifest file.
        file: PathBuf,
        /// The pod's name (with the node suffix).
        pod: String,
        /// This node.
        node: String,
        /// Which rule excluded it.
        reason: String,
    },
}

impl ManifestError {
    /// The manifest file this error is about.
    pub fn file(&self) -> &std::path::Path {
        match self {
            ManifestError::Read { file, .. }
            | ManifestError::TooLarge { file, .. }
            | ManifestError::Empty { file }
            | ManifestError::Syntax { file, .. }
            | ManifestError::MultipleDocuments { file, .. }
            | ManifestError::WrongKind { file, .. }
            | ManifestError::Invalid { file, .. }
            | ManifestError::NotSelected { file, .. } => file,
        }
    }

    /// An [`ManifestError::Invalid`] with field errors.
    pub fn invalid(file: impl Into<PathBuf>, errors: Vec<FieldError>) -> Self {
        ManifestError::Invalid {
            file: file.into(),
            errors: FieldErrors(errors),
        }
    }
}
