//! The real Koofr account of live runs, from the environment: `KOOFR_ENDPOINT` with
//! `KOOFR_ACCESS_TOKEN` (a bearer token) or with `KOOFR_USERNAME` and `KOOFR_PASSWORD`, and
//! optionally `KOOFR_API_VERSION` (`2` or `2.1`). Secrets never appear in `Debug`.

use std::collections::HashMap;
use std::fmt;

/// A Koofr account: the endpoint, how to sign in and the API version.
#[derive(Clone)]
pub struct LiveCredentials {
    /// Base URL, e.g. `https://app.koofr.net`.
    pub endpoint: String,
    /// How to sign in.
    pub auth: LiveAuth,
    /// The `api_version` key (`2` or `2.1`), when set.
    pub api_version: Option<String>,
}

/// How an account signs in.
#[derive(Clone)]
pub enum LiveAuth {
    /// The account e-mail and an application password.
    Password {
        /// Account e-mail.
        username: String,
        /// Application password.
        password: String,
    },
    /// An OAuth2 bearer token.
    AccessToken(String),
}

impl fmt::Debug for LiveAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiveAuth::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            LiveAuth::AccessToken(_) => f.write_str("AccessToken(<redacted>)"),
        }
    }
}

impl fmt::Debug for LiveCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveCredentials")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .field("api_version", &self.api_version)
            .finish()
    }
}

impl LiveCredentials {
    /// From `KOOFR_ENDPOINT` with `KOOFR_ACCESS_TOKEN`, or with `KOOFR_USERNAME` and
    /// `KOOFR_PASSWORD` (a token first, as the connectors' own config does), plus
    /// `KOOFR_API_VERSION`; `None` unless an endpoint and a complete credential are set.
    pub fn from_env() -> Option<LiveCredentials> {
        LiveCredentials::from_lookup(|key| std::env::var(key).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<LiveCredentials> {
        let get = |key: &str| lookup(key).filter(|v| !v.is_empty());
        let auth = match get("KOOFR_ACCESS_TOKEN") {
            Some(token) => LiveAuth::AccessToken(token),
            None => LiveAuth::Password {
                username: get("KOOFR_USERNAME")?,
                password: get("KOOFR_PASSWORD")?,
            },
        };
        Some(LiveCredentials {
            endpoint: get("KOOFR_ENDPOINT")?,
            auth,
            api_version: get("KOOFR_API_VERSION"),
        })
    }

    /// The account keys of a plugin config map: `endpoint`, the credential (`username` and
    /// `password`, or `access_token`) and `api_version` when set.
    pub fn config_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([("endpoint".to_owned(), self.endpoint.clone())]);
        match &self.auth {
            LiveAuth::Password { username, password } => {
                map.insert("username".to_owned(), username.clone());
                map.insert("password".to_owned(), password.clone());
            }
            LiveAuth::AccessToken(token) => {
                map.insert("access_token".to_owned(), token.clone());
            }
        }
        if let Some(version) = &self.api_version {
            map.insert("api_version".to_owned(), version.clone());
        }
        map
    }

    /// The secret (application password or access token), for checks that it never leaks.
    pub fn secret(&self) -> &str {
        match &self.auth {
            LiveAuth::Password { password, .. } => password,
            LiveAuth::AccessToken(token) => token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Option<LiveCredentials> {
        let pairs: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LiveCredentials::from_lookup(|key| pairs.get(key).cloned())
    }

    #[test]
    fn every_auth_mode_gives_its_config_keys_and_hides_its_secret() {
        let token = from(&[
            ("KOOFR_ENDPOINT", "https://k.example"),
            ("KOOFR_ACCESS_TOKEN", "TOKEN-SECRET"),
            ("KOOFR_USERNAME", "me@example.com"),
            ("KOOFR_PASSWORD", "PASSWORD-SECRET"),
            ("KOOFR_API_VERSION", "2.1"),
        ])
        .unwrap();
        let map = token.config_map();
        assert_eq!(map["access_token"], "TOKEN-SECRET");
        assert_eq!(map["api_version"], "2.1");
        assert!(!map.contains_key("password"), "{:?}", map.keys());
        assert_eq!(token.secret(), "TOKEN-SECRET");

        let password = from(&[
            ("KOOFR_ENDPOINT", "https://k.example"),
            ("KOOFR_USERNAME", "me@example.com"),
            ("KOOFR_PASSWORD", "PASSWORD-SECRET"),
        ])
        .unwrap();
        let map = password.config_map();
        assert_eq!(
            (map["username"].as_str(), map["password"].as_str()),
            ("me@example.com", "PASSWORD-SECRET")
        );
        assert!(!map.contains_key("api_version") && !map.contains_key("access_token"));

        for credentials in [&token, &password] {
            let debug = format!("{credentials:?}");
            assert!(!debug.contains("SECRET"), "{debug}");
            assert!(debug.contains("k.example"), "{debug}");
        }
    }

    #[test]
    fn an_incomplete_account_is_no_account() {
        assert!(from(&[("KOOFR_ENDPOINT", "https://k.example")]).is_none());
        assert!(from(&[("KOOFR_USERNAME", "a"), ("KOOFR_PASSWORD", "b")]).is_none());
        assert!(
            from(&[
                ("KOOFR_ENDPOINT", "https://k.example"),
                ("KOOFR_USERNAME", "a"),
                ("KOOFR_PASSWORD", ""),
            ])
            .is_none()
        );
    }
}
