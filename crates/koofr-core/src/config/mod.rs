//! Connector configuration: one parser for the Plakar config map (plus `KOOFR_*` environment
//! variables) shared by the importer, exporter and storage plugins.
//!
//! # Keys
//!
//! Every key can also come from the environment as `KOOFR_<KEY>` in upper case (for example
//! `KOOFR_PASSWORD`); a key in the map wins over the environment. Empty values count as unset.
//! Credentials come from one place: when the map has `username` or `password`, it is a
//! password login (the other half may come from `KOOFR_USERNAME` or `KOOFR_PASSWORD`) and
//! `KOOFR_ACCESS_TOKEN` is ignored; a map with `access_token` uses it whatever the environment
//! holds; a map with no credentials takes them all from the environment (a token first).
//!
//! | Key | Default | Meaning |
//! |-----|---------|---------|
//! | `location` | required | `koofr://<path>`: the folder inside the mount (`koofr://` or `koofr:///` = root; `koofr://a/b` = `/a/b`) |
//! | `username` | required with `password` | the Koofr account e-mail |
//! | `password` | required unless `access_token` | a Koofr **application password** |
//! | `auth` | `basic` | `basic` (HTTP Basic on every request) or `token` (legacy `POST /token` login) |
//! | `access_token` | – | an OAuth2 bearer token, used instead of `username`/`password` |
//! | `refresh_token`, `client_id`, `client_secret` | – | renew the access token at `{endpoint}/oauth2/token` |
//! | `provider` | `koofr` | `koofr` (<https://app.koofr.net>), `digistorage` (<https://storage.rcs-rds.ro>) or `other` (needs `endpoint`) |
//! | `endpoint` | the provider's URL | base URL; trailing `/` and a path prefix are allowed; `http://` only on loopback |
//! | `mount` | the primary mount | a mount id or mount name |
//! | `api_version` | `2` | `2` or `2.1` |
//! | `concurrency` | 8 | 1..=64 simultaneous HTTP transfers per client |
//! | `retries` | 8 | 1..=20 attempts per request (1 = never retry) |
//! | `retry_delay_ms` | 500 | 1..=60000 milliseconds of backoff before the first retry (doubles, with jitter, capped at 30 s) |
//! | `timeout_connect` | 30 | 1..=600 seconds to establish a connection |
//! | `stall_timeout` | 120 | 1..=3600 seconds without progress before a transfer fails |
//!
//! Plakar's own keys (`passphrase`, `passphrase_cmd`) are ignored silently; any other unknown
//! key produces a warning (probably a typo). Secrets never appear in `Debug` output or errors.
//! The `rclone_*` keys of an entry imported from rclone stand for the native keys
//! ([`crate::rclone`]).
//!
//! The map is read in `parse.rs`; the values it becomes are the types of `values.rs`.

mod parse;
mod values;

use std::fmt;

use url::Url;

use crate::path::KoofrPath;
use crate::retry::RetryPolicy;

pub use parse::ConfigError;
pub use values::{ApiVersion, AuthConfig, MountSelector, OAuthRefresh, Secret, Timeouts};

/// The parsed configuration of one Koofr connector.
#[derive(Clone)]
#[non_exhaustive]
pub struct KoofrConfig {
    location: KoofrPath,
    endpoint: Url,
    auth: AuthConfig,
    mount: MountSelector,
    api_version: ApiVersion,
    concurrency: usize,
    retry: RetryPolicy,
    timeouts: Timeouts,
}

impl fmt::Debug for KoofrConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KoofrConfig")
            .field("location", &self.location)
            .field("endpoint", &self.endpoint.as_str())
            .field("auth", &self.auth)
            .field("mount", &self.mount)
            .field("api_version", &self.api_version)
            .field("concurrency", &self.concurrency)
            .field("retry", &self.retry)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

impl KoofrConfig {
    /// The folder inside the mount that the connector works in.
    pub fn location(&self) -> &KoofrPath {
        &self.location
    }
    /// The base URL, without a trailing `/` in its path.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }
    /// Host (and port, when not the scheme's default) of the endpoint.
    pub fn host(&self) -> String {
        let host = self.endpoint.host_str().unwrap_or_default();
        match self.endpoint.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }
    /// The `origin` every Koofr connector reports to Plakar: `<e-mail>@<host>` (just the host
    /// with token auth), plus `/<mount>` for a non-primary mount. Plakar matches parent snapshots
    /// on type, origin and root, so the account is part of it: two accounts with the same folder
    /// path must never share cached file contents.
    pub fn plakar_origin(&self) -> String {
        let account = match self.username() {
            Some(username) => format!("{username}@{}", self.host()),
            None => self.host(),
        };
        match &self.mount {
            MountSelector::Primary => account,
            MountSelector::IdOrName(mount) => format!("{account}/{mount}"),
        }
    }
    /// The account e-mail, when authenticating by password.
    pub fn username(&self) -> Option<&str> {
        match &self.auth {
            AuthConfig::Basic { username, .. } | AuthConfig::Token { username, .. } => {
                Some(username)
            }
            AuthConfig::OAuth { .. } => None,
        }
    }
    /// The authentication settings.
    pub fn auth(&self) -> &AuthConfig {
        &self.auth
    }
    /// The mount selection.
    pub fn mount(&self) -> &MountSelector {
        &self.mount
    }
    /// The API version.
    pub fn api_version(&self) -> ApiVersion {
        self.api_version
    }
    /// Maximum simultaneous transfers.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }
    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }
    /// The timeouts.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Replaces the retry policy (tests use millisecond backoffs).
    pub fn with_retry(mut self, retry: RetryPolicy) -> KoofrConfig {
        self.retry = retry;
        self
    }
    /// Replaces the location.
    pub fn with_location(mut self, location: KoofrPath) -> KoofrConfig {
        self.location = location;
        self
    }
    /// Replaces the concurrency limit (clamped to 1..=64).
    pub fn with_concurrency(mut self, concurrency: usize) -> KoofrConfig {
        self.concurrency = concurrency.clamp(1, 64);
        self
    }
    /// Replaces the timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> KoofrConfig {
        self.timeouts = timeouts;
        self
    }
    /// Replaces the authentication.
    pub fn with_auth(mut self, auth: AuthConfig) -> KoofrConfig {
        self.auth = auth;
        self
    }
    /// Replaces the mount selection.
    pub fn with_mount(mut self, mount: MountSelector) -> KoofrConfig {
        self.mount = mount;
        self
    }
    /// Replaces the API version.
    pub fn with_api_version(mut self, api_version: ApiVersion) -> KoofrConfig {
        self.api_version = api_version;
        self
    }
}
