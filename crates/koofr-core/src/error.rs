//! The crate's one error type: a kind, a temporary/permanent flag, the operation and Koofr path
//! at fault, and the single function that classifies HTTP answers (spec §8).

use std::fmt;
use std::time::Duration;

use crate::path::PathError;

/// What went wrong, independent of whether trying again may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file, folder or mount does not exist (404 `NotFound`).
    NotFound,
    /// The target name is taken (409 `AlreadyExists`, or 400 in API v2).
    AlreadyExists,
    /// A condition failed or the target exists in error mode (409 `Conflict`).
    Conflict,
    /// 403.
    PermissionDenied,
    /// 401: wrong e-mail, application password or token.
    Unauthenticated,
    /// 429.
    RateLimited,
    /// 413 `QuotaExceeded`.
    QuotaExceeded,
    /// The request was refused as malformed (400), or a name/path/config value is invalid.
    InvalidInput,
    /// 416: the offset lies at or beyond the end of the file.
    RangeNotSatisfiable,
    /// A folder was expected (`NotDir`).
    NotADirectory,
    /// A file was expected (`NotFile`).
    NotAFile,
    /// The mount's device is offline or not synchronised (`DeviceOffline`, `FilesNotSynced`).
    DeviceOffline,
    /// Sizes or hashes do not match, or a file changed during a resumed download.
    Integrity,
    /// Timeout, reset, stall or truncated-body failures.
    Transport,
    /// The endpoint cannot be reached at all: connection refused, host name not resolved, or
    /// the TLS handshake failed. Retried briefly (a few attempts within seconds), not for minutes.
    Unreachable,
    /// The server does not implement the request (405, 501, 505, or a recursive listing a mount
    /// refuses): permanent, so callers fall back at once.
    Unsupported,
    /// 5xx and 499.
    Server,
    /// Anything else (unexpected status or response shape).
    Unexpected,
}

/// An error from the Koofr client. Its message names the operation and the Koofr path, and
/// never contains credentials. Boxed so that `Result`s stay small.
#[derive(thiserror::Error)]
#[error(transparent)]
pub struct Error {
    inner: Box<ErrorInner>,
}

/// The parts of an [`Error`]; its `Display` is the error's message.
#[derive(Debug, thiserror::Error)]
#[error(
    "koofr {op}{}: {message}{}{}{}",
    quoted(.path),
    http_status(.status, .code),
    gave_up(.attempts),
    caused_by(.source)
)]
struct ErrorInner {
    kind: ErrorKind,
    temporary: bool,
    op: &'static str,
    path: Option<String>,
    attempts: u32,
    status: Option<u16>,
    code: Option<String>,
    message: String,
    retry_after: Option<Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error; `temporary` says whether retrying may help.
    pub fn new(
        kind: ErrorKind,
        temporary: bool,
        op: &'static str,
        message: impl Into<String>,
    ) -> Error {
        Error {
            inner: Box::new(ErrorInner {
                kind,
                temporary,
                op,
                path: None,
                attempts: 0,
                status: None,
                code: None,
                message: message.into(),
                retry_after: None,
                source: None,
            }),
        }
    }

    /// A permanent error of `kind`.
    pub fn permanent(kind: ErrorKind, op: &'static str, message: impl Into<String>) -> Error {
        Error::new(kind, false, op, message)
    }

    /// Sets the Koofr path the error is about.
    pub fn with_path(mut self, path: impl fmt::Display) -> Error {
        self.inner.path = Some(path.to_string());
        self
    }

    /// Sets the path only if none is set yet.
    pub(crate) fn or_path(mut self, path: impl fmt::Display) -> Error {
        if self.inner.path.is_none() {
            self.inner.path = Some(path.to_string());
        }
        self
    }

    /// Replaces the kind (where the request decides what an answer means).
    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Error {
        self.inner.kind = kind;
        self
    }

    /// Replaces the operation name.
    pub(crate) fn with_op(mut self, op: &'static str) -> Error {
        self.inner.op = op;
        self
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        self.inner.source = Some(Box::new(source));
        self
    }

    pub(crate) fn with_status(mut self, status: u16, code: Option<String>) -> Error {
        self.inner.status = Some(status);
        self.inner.code = code;
        self
    }

    pub(crate) fn with_retry_after(mut self, retry_after: Option<Duration>) -> Error {
        self.inner.retry_after = retry_after;
        self
    }

    /// Records that retries ran out after `attempts` attempts: the error becomes permanent so
    /// that no outer layer retries it again.
    pub(crate) fn exhausted(mut self, attempts: u32) -> Error {
        self.inner.attempts = attempts;
        self.inner.temporary = false;
        self
    }

    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether retrying the operation may succeed.
    pub fn is_temporary(&self) -> bool {
        self.inner.temporary
    }

    /// Shorthand for `kind() == NotFound`.
    pub fn is_not_found(&self) -> bool {
        self.inner.kind == ErrorKind::NotFound
    }

    /// The operation, e.g. `"upload"`.
    pub fn op(&self) -> &'static str {
        self.inner.op
    }

    /// The Koofr path involved, if any.
    pub fn path(&self) -> Option<&str> {
        self.inner.path.as_deref()
    }

    /// How many attempts were made (0 when the error was not retried at all).
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// The HTTP status, when the error came from a response.
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// Koofr's error `code`, when the response carried one.
    pub fn code(&self) -> Option<&str> {
        self.inner.code.as_deref()
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The human-readable part of the message.
    pub fn message(&self) -> &str {
        &self.inner.message
    }
}

/// ` "<path>"`, or nothing.
fn quoted(path: &Option<String>) -> String {
    path.as_ref().map(|p| format!(" {p:?}")).unwrap_or_default()
}

/// ` (HTTP <status>, <code>)`, ` (HTTP <status>)`, or nothing.
fn http_status(status: &Option<u16>, code: &Option<String>) -> String {
    match (status, code) {
        (Some(status), Some(code)) => format!(" (HTTP {status}, {code})"),
        (Some(status), None) => format!(" (HTTP {status})"),
        _ => String::new(),
    }
}

/// ` [gave up after <n> attempts]` once the error was retried.
fn gave_up(attempts: &u32) -> String {
    if *attempts > 1 {
        format!(" [gave up after {attempts} attempts]")
    } else {
        String::new()
    }
}

/// `: <source>`, or nothing.
fn caused_by(source: &Option<Box<dyn std::error::Error + Send + Sync>>) -> String {
    source
        .as_ref()
        .map(|s| format!(": {s}"))
        .unwrap_or_default()
}

/// By hand, to show the source by its message rather than its (long) `Debug`.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("temporary", &self.inner.temporary)
            .field("op", &self.inner.op)
            .field("path", &self.inner.path)
            .field("attempts", &self.inner.attempts)
            .field("status", &self.inner.status)
            .field("code", &self.inner.code)
            .field("message", &self.inner.message)
            .field("source", &self.inner.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl From<PathError> for Error {
    fn from(e: PathError) -> Error {
        let input = e.input.clone();
        Error::permanent(ErrorKind::InvalidInput, "validate path", e.reason).with_path(input)
    }
}

/// The message of the one error that a wrong password produces.
pub const AUTH_FAILED: &str = "authentication failed (check the e-mail and application password)";

/// Plain-text body of Koofr's login throttle (spec §3.4).
const LOGIN_THROTTLED: &str = "Too many login retries";

/// Decides an HTTP error's kind and whether it is temporary, from the status, Koofr's error
/// `code` and body text (spec §8). `exists_possible` marks folder create, copy, move and rename,
/// where API v2 reports "already exists" as a bare 400.
pub fn classify(
    status: u16,
    code: Option<&str>,
    body: &str,
    exists_possible: bool,
) -> (ErrorKind, bool) {
    use ErrorKind::*;
    match code {
        Some("AlreadyExists") => return (AlreadyExists, false),
        Some("DeviceOffline") | Some("FilesNotSynced") => return (DeviceOffline, true),
        Some("NotDir") => return (NotADirectory, false),
        Some("NotFile") => return (NotAFile, false),
        Some("QuotaExceeded") => return (QuotaExceeded, false),
        // v2 answers an upload conflict in error mode with 400 and this code.
        Some("Conflict") => return (Conflict, false),
        _ => {}
    }
    match status {
        401 => (Unauthenticated, false),
        403 => (PermissionDenied, false),
        404 => (NotFound, false),
        408 => (Transport, true),
        409 => (Conflict, false),
        405 | 501 | 505 => (Unsupported, false),
        413 => (QuotaExceeded, false),
        416 => (RangeNotSatisfiable, false),
        // The login throttle is IP-wide and lasts 15-60 minutes: retrying only prolongs it.
        429 if body.contains(LOGIN_THROTTLED) => (RateLimited, false),
        429 => (RateLimited, true),
        400 if exists_possible && matches!(code, None | Some("Other")) => (AlreadyExists, false),
        400 | 411 | 414 | 422 => (InvalidInput, false),
        499..=599 => (Server, true),
        _ => (Unexpected, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_spec_table() {
        use ErrorKind::*;
        assert_eq!(classify(401, None, "", false), (Unauthenticated, false));
        assert_eq!(
            classify(404, Some("NotFound"), "", false),
            (NotFound, false)
        );
        assert_eq!(
            classify(404, Some("DeviceOffline"), "", false),
            (DeviceOffline, true)
        );
        assert_eq!(classify(400, None, "", true), (AlreadyExists, false));
        assert_eq!(classify(400, None, "", false), (InvalidInput, false));
        assert_eq!(
            classify(400, Some("BadRequest"), "", true),
            (InvalidInput, false)
        );
        assert_eq!(
            classify(409, Some("AlreadyExists"), "", true),
            (AlreadyExists, false)
        );
        assert_eq!(
            classify(409, Some("Conflict"), "", false),
            (Conflict, false)
        );
        assert_eq!(
            classify(400, Some("Conflict"), "", false),
            (Conflict, false)
        );
        assert_eq!(
            classify(400, Some("NotDir"), "", false),
            (NotADirectory, false)
        );
        assert_eq!(classify(400, Some("NotFile"), "", false), (NotAFile, false));
        assert_eq!(classify(413, None, "", false), (QuotaExceeded, false));
        assert_eq!(
            classify(416, Some("Other"), "", false),
            (RangeNotSatisfiable, false)
        );
        assert_eq!(classify(429, None, "", false), (RateLimited, true));
        assert_eq!(
            classify(429, None, "Too many login retries", false),
            (RateLimited, false)
        );
        assert_eq!(classify(499, None, "", false), (Server, true));
        assert_eq!(classify(503, None, "", false), (Server, true));
        assert_eq!(classify(501, None, "", false), (Unsupported, false));
        assert_eq!(classify(505, None, "", false), (Unsupported, false));
        assert_eq!(classify(405, None, "", false), (Unsupported, false));
        assert_eq!(classify(408, None, "", false), (Transport, true));
        assert_eq!(
            classify(403, Some("Forbidden"), "", false),
            (PermissionDenied, false)
        );
        assert_eq!(classify(302, None, "", false), (Unexpected, false));
    }

    #[test]
    fn display_names_op_path_and_attempts() {
        let e = Error::new(ErrorKind::Server, true, "info", "server error")
            .with_path("/a b")
            .with_status(503, Some("Other".into()))
            .exhausted(4);
        assert_eq!(
            e.to_string(),
            r#"koofr info "/a b": server error (HTTP 503, Other) [gave up after 4 attempts]"#
        );
        assert!(!e.is_temporary());
        let bare = Error::permanent(ErrorKind::Unexpected, "get user", "odd answer").exhausted(1);
        assert_eq!(bare.to_string(), "koofr get user: odd answer");
    }

    #[test]
    fn the_source_is_shown_and_chained() {
        use std::error::Error as _;
        let e = Error::new(ErrorKind::Transport, true, "upload", "request failed")
            .with_status(404, None)
            .with_source(std::io::Error::other("connection reset"));
        assert_eq!(
            e.to_string(),
            "koofr upload: request failed (HTTP 404): connection reset"
        );
        assert_eq!(e.source().unwrap().to_string(), "connection reset");
        assert!(
            Error::permanent(ErrorKind::Unexpected, "x", "y")
                .source()
                .is_none()
        );
    }
}
