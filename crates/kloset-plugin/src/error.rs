//! The connector error type and its mapping to gRPC statuses (protocol §2.6).

use std::fmt;

/// What went wrong, as far as the caller needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectorErrorKind {
    /// The object, file or kloset does not exist.
    NotFound,
    /// The object or kloset already exists.
    AlreadyExists,
    /// A bad argument, configuration value or path.
    InvalidInput,
    /// A byte range outside the object.
    RangeNotSatisfiable,
    /// Credentials refused.
    PermissionDenied,
    /// Called in the wrong order (e.g. before `Init`).
    FailedPrecondition,
    /// The operation was cancelled by the caller.
    Cancelled,
    /// The remote service or the network is unavailable for now (server errors, throttling,
    /// connections that fail), and retrying did not help; gRPC `UNAVAILABLE`, which plakar
    /// prints as `I/O error communicating with the integration (<message>)`.
    Unavailable,
    /// Anything else.
    Other,
}

/// An error returned by a connector; only its message crosses the wire to plakar.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectorError {
    kind: ConnectorErrorKind,
    message: String,
    /// The error dooms the whole operation, not just the item at hand.
    fatal: bool,
}

/// Result with a [`ConnectorError`].
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

impl ConnectorError {
    /// An error of `kind` with a short, self-contained, secret-free message.
    pub fn new(kind: ConnectorErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            fatal: false,
        }
    }
    /// The same error, marked as dooming the whole operation (credentials refused, the account
    /// full, the endpoint unreachable): where the serving layer would go on with the next item
    /// (an export's next record), it ends the operation with this error instead.
    pub fn fatal(mut self) -> Self {
        self.fatal = true;
        self
    }
    /// Whether the error dooms the whole operation (see [`ConnectorError::fatal`]).
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }
    /// [`ConnectorErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ConnectorErrorKind::NotFound, message)
    }
    /// [`ConnectorErrorKind::AlreadyExists`].
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ConnectorErrorKind::AlreadyExists, message)
    }
    /// [`ConnectorErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ConnectorErrorKind::InvalidInput, message)
    }
    /// [`ConnectorErrorKind::RangeNotSatisfiable`].
    pub fn range_not_satisfiable(message: impl Into<String>) -> Self {
        Self::new(ConnectorErrorKind::RangeNotSatisfiable, message)
    }
    /// [`ConnectorErrorKind::Other`].
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ConnectorErrorKind::Other, message)
    }
    /// The kind of error.
    pub fn kind(&self) -> ConnectorErrorKind {
        self.kind
    }
    /// The message shown to the user.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The same error with `context: ` prefixed to its message.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self {
            message: format!("{context}: {}", self.message),
            ..self
        }
    }
}

impl fmt::Debug for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fatal = if self.fatal { " (fatal)" } else { "" };
        write!(f, "{:?}{fatal}: {}", self.kind, self.message)
    }
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectorError {}

impl From<std::io::Error> for ConnectorError {
    fn from(err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ConnectorErrorKind::NotFound,
            std::io::ErrorKind::AlreadyExists => ConnectorErrorKind::AlreadyExists,
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
                ConnectorErrorKind::InvalidInput
            }
            std::io::ErrorKind::PermissionDenied => ConnectorErrorKind::PermissionDenied,
            _ => ConnectorErrorKind::Other,
        };
        Self::new(kind, err.to_string())
    }
}

impl From<ConnectorError> for tonic::Status {
    fn from(err: ConnectorError) -> Self {
        use tonic::Code;
        let code = match err.kind {
            ConnectorErrorKind::NotFound => Code::NotFound,
            ConnectorErrorKind::AlreadyExists => Code::AlreadyExists,
            ConnectorErrorKind::InvalidInput => Code::InvalidArgument,
            ConnectorErrorKind::RangeNotSatisfiable => Code::OutOfRange,
            ConnectorErrorKind::PermissionDenied => Code::PermissionDenied,
            ConnectorErrorKind::FailedPrecondition => Code::FailedPrecondition,
            ConnectorErrorKind::Cancelled => Code::Cancelled,
            ConnectorErrorKind::Unavailable => Code::Unavailable,
            ConnectorErrorKind::Other => Code::Unknown,
        };
        tonic::Status::new(code, err.message)
    }
}

impl From<tonic::Status> for ConnectorError {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let kind = match status.code() {
            Code::NotFound => ConnectorErrorKind::NotFound,
            Code::AlreadyExists => ConnectorErrorKind::AlreadyExists,
            Code::InvalidArgument => ConnectorErrorKind::InvalidInput,
            Code::OutOfRange => ConnectorErrorKind::RangeNotSatisfiable,
            Code::PermissionDenied | Code::Unauthenticated => ConnectorErrorKind::PermissionDenied,
            Code::FailedPrecondition => ConnectorErrorKind::FailedPrecondition,
            Code::Cancelled => ConnectorErrorKind::Cancelled,
            Code::Unavailable => ConnectorErrorKind::Unavailable,
            _ => ConnectorErrorKind::Other,
        };
        Self::new(kind, status.message().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_keeps_kind_and_message() {
        for kind in [
            ConnectorErrorKind::NotFound,
            ConnectorErrorKind::InvalidInput,
            ConnectorErrorKind::RangeNotSatisfiable,
        ] {
            let err = ConnectorError::new(kind, "object abc missing");
            let back = ConnectorError::from(tonic::Status::from(err.clone()));
            assert_eq!(back, err);
        }
    }
}
