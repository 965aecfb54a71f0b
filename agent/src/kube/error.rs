//! The client's error type: kubeconfig and credential problems (the operator's to fix),
//! transport failures (retry with backoff) and API `Status` answers (decoded with their reason).

use std::path::PathBuf;

/// The body of a failed API call, as the API server sends it (`kind: Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiStatus {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `AlreadyExists`, `Conflict`, `Forbidden`...).
    pub reason: String,
    /// Human-readable message from the API server.
    pub message: String,
}

impl ApiStatus {
    /// Decode a `Status` body; a body that is not a `Status` keeps its first 200 bytes as message.
    pub fn from_body(code: u16, body: &[u8]) -> Self {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let message = field("message").unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_owned()
        });
        let reason = field("reason").unwrap_or_else(|| default_reason(code).to_owned());
        Self {
            code,
            reason,
            message,
        }
    }
}

/// The reason the API server would give for a bare HTTP status code.
fn default_reason(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

/// Everything that can go wrong talking to the API server.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig file cannot be read.
    #[error("read kubeconfig {path}: {source}")]
    ReadKubeconfig {
        /// The kubeconfig path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The kubeconfig is not valid YAML or lacks what we need.
    #[error("kubeconfig {path}: {detail}")]
    Kubeconfig {
        /// The kubeconfig path.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A certificate, key or token file cannot be read.
    #[error("read {what} {path}: {source}")]
    ReadCredential {
        /// `client certificate`, `client key`, `certificate authority` or `token file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A certificate or key is not usable PEM.
    #[error("{what}: {detail}")]
    Pem {
        /// Which credential.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The request never got an HTTP answer (connect, TLS, timeout, reset): retry with backoff.
    #[error("{method} {path}: {source}")]
    Transport {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// The transport error.
        source: ureq::Error,
    },
    /// The API server answered with an error `Status`.
    #[error("{method} {path}: {} {} ({})", .status.code, .status.reason, .status.message)]
    Api {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// The decoded `Status`.
        status: ApiStatus,
    },
    /// A success answer whose body is not the JSON we expected.
    #[error("decode answer of {method} {path}: {source}")]
    Decode {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// The JSON error.
        source: serde_json::Error,
    },
}

impl KubeError {
    /// The API `Status` of this error, if the server answered.
    pub fn status(&self) -> Option<&ApiStatus> {
        match self {
            Self::Api { status, .. } => Some(status),
            _ => None,
        }
    }

    /// The HTTP code of an API answer (`None` when the server did not answer).
    pub fn code(&self) -> Option<u16> {
        self.status().map(|s| s.code)
    }

    /// True for 404 NotFound.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// True for 409 (AlreadyExists or Conflict).
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    /// True for 403 Forbidden (the Node authorizer or NodeRestriction said no).
    pub fn is_forbidden(&self) -> bool {
        self.code() == Some(403)
    }

    /// A short, stable key for "log once": the same failure repeated gives the same key.
    pub fn log_key(&self) -> String {
        match self {
            Self::Transport { source, .. } => format!("transport:{source}"),
            Self::Api { status, .. } => format!("api:{}:{}", status.code, status.reason),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_body_is_decoded_with_reason_and_message() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"x\" not found","reason":"NotFound","code":404}"#;
        let s = ApiStatus::from_body(404, body);
        assert_eq!(s.reason, "NotFound");
        assert_eq!(s.message, "pods \"x\" not found");
    }

    #[test]
    fn non_status_body_keeps_text_and_infers_reason() {
        let s = ApiStatus::from_body(503, b"upstream connect error\n");
        assert_eq!(s.reason, "ServiceUnavailable");
        assert_eq!(s.message, "upstream connect error");
    }

    #[test]
    fn api_error_message_names_method_path_and_reason() {
        let e = KubeError::Api {
            method: "POST".into(),
            path: "/api/v1/namespaces/kube-system/pods".into(),
            status: ApiStatus {
                code: 403,
                reason: "Forbidden".into(),
                message: "no".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "POST /api/v1/namespaces/kube-system/pods: 403 Forbidden (no)"
        );
        assert!(e.is_forbidden());
    }
}
