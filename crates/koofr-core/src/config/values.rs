//! The values a configuration holds: credentials (whose secrets never print), the mount
//! selection, the API version and the timeouts.

use std::fmt;
use std::time::Duration;

/// A string that never shows up in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The secret itself (for building requests only).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the client authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthConfig {
    /// HTTP Basic with an application password on every request (the default).
    Basic { username: String, password: Secret },
    /// Legacy `POST /token` login; the token is renewed after a 401.
    Token { username: String, password: Secret },
    /// OAuth2 bearer token, optionally renewable with a refresh token and client credentials.
    OAuth {
        access_token: Secret,
        refresh: Option<OAuthRefresh>,
    },
}

/// What renews an OAuth2 access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthRefresh {
    /// The refresh token.
    pub refresh_token: Secret,
    /// The registered client id.
    pub client_id: String,
    /// The registered client secret.
    pub client_secret: Secret,
}

/// Which mount the client works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSelector {
    /// The user's primary mount, addressed with the `primary` alias (no lookup).
    Primary,
    /// A mount id or a mount name, resolved on first use (a UUID-shaped value is used directly).
    IdOrName(String),
}

/// The API version used in request paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `/api/v2` (as rclone and OpenDAL).
    V2,
    /// `/api/v2.1` (409 for "already exists").
    V2_1,
}

impl ApiVersion {
    /// The path segment, `v2` or `v2.1`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V2 => "v2",
            ApiVersion::V2_1 => "v2.1",
        }
    }
}

/// Connection timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time to establish a TCP/TLS connection.
    pub connect: Duration,
    /// A transfer (or a wait for response headers) that makes no progress for this long fails.
    pub stall: Duration,
}
