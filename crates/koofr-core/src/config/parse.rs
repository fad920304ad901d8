//! Reading the Plakar config map: every key with its `KOOFR_*` environment fallback, the one
//! place the credentials come from, numbers within their range, `koofr://` locations and
//! endpoints; unknown keys become warnings.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use super::{ApiVersion, AuthConfig, KoofrConfig, MountSelector, OAuthRefresh, Secret, Timeouts};
use crate::path::KoofrPath;
use crate::retry::RetryPolicy;

/// A configuration problem; the message names the key at fault (never a secret's value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("koofr configuration key `{key}`: {message}")]
pub struct ConfigError {
    /// The key at fault.
    pub key: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn config_error(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        message: message.into(),
    }
}

/// Every key read below (the table of the `config` module's documentation).
const KNOWN_KEYS: &[&str] = &[
    "location",
    "username",
    "password",
    "auth",
    "access_token",
    "refresh_token",
    "client_id",
    "client_secret",
    "provider",
    "endpoint",
    "mount",
    "api_version",
    "concurrency",
    "retries",
    "retry_delay_ms",
    "timeout_connect",
    "stall_timeout",
];

/// Keys Plakar adds that are none of our business.
const IGNORED_KEYS: &[&str] = &["passphrase", "passphrase_cmd"];

const KOOFR_URL: &str = "https://app.koofr.net";
const DIGISTORAGE_URL: &str = "https://storage.rcs-rds.ro";

impl KoofrConfig {
    /// Parses a Plakar config map; `env` looks up `KOOFR_*` variables (injected for tests).
    /// Returns the config and warnings about unknown keys.
    pub fn from_map(
        map: &HashMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(KoofrConfig, Vec<String>), ConfigError> {
        let (map, mut warnings) = crate::rclone::native_keys(map)?;
        let map = &map;
        let mut unknown: Vec<&String> = map
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()) && !IGNORED_KEYS.contains(&k.as_str()))
            .collect();
        unknown.sort();
        for key in unknown {
            warnings.push(format!("koofr: ignoring unknown configuration key `{key}`"));
        }
        let get = |key: &'static str| -> Option<String> {
            map.get(key)
                .cloned()
                .filter(|v| !v.is_empty())
                .or_else(|| env(&format!("KOOFR_{}", key.to_uppercase())).filter(|v| !v.is_empty()))
        };

        let location = parse_location(
            &get("location").ok_or_else(|| config_error("location", "is required"))?,
        )?;
        let endpoint = parse_endpoint(get("provider").as_deref(), get("endpoint").as_deref())?;

        // The credentials come from one place: the map when it holds any of them (a missing
        // half of a username/password pair may still come from the environment), else the
        // environment; a token before a password within each. So an entry with a username and
        // password never turns into a token login because `KOOFR_ACCESS_TOKEN` is exported.
        let in_map = |key: &str| map.get(key).is_some_and(|v| !v.is_empty());
        let map_has_password = in_map("username") || in_map("password");
        let access_token = if map_has_password && !in_map("access_token") {
            None
        } else {
            get("access_token")
        };
        let auth_mode = get("auth").unwrap_or_else(|| "basic".to_owned());
        let auth = if let Some(access_token) = access_token {
            let refresh = match get("refresh_token") {
                None => None,
                Some(refresh_token) => Some(OAuthRefresh {
                    refresh_token: Secret::new(refresh_token),
                    client_id: get("client_id").ok_or_else(|| {
                        config_error("client_id", "is required with refresh_token")
                    })?,
                    client_secret: Secret::new(get("client_secret").ok_or_else(|| {
                        config_error("client_secret", "is required with refresh_token")
                    })?),
                }),
            };
            AuthConfig::OAuth {
                access_token: Secret::new(access_token),
                refresh,
            }
        } else {
            let username = get("username").ok_or_else(|| {
                config_error(
                    "username",
                    "is required (the Koofr account e-mail; or set KOOFR_USERNAME)",
                )
            })?;
            let password = Secret::new(get("password").ok_or_else(|| {
                config_error(
                    "password",
                    "is required (a Koofr application password; or set KOOFR_PASSWORD)",
                )
            })?);
            match auth_mode.as_str() {
                "basic" => AuthConfig::Basic { username, password },
                "token" => AuthConfig::Token { username, password },
                other => {
                    return Err(config_error(
                        "auth",
                        format!("must be `basic` or `token`, not {other:?}"),
                    ));
                }
            }
        };

        let mount = match get("mount") {
            None => MountSelector::Primary,
            Some(m) if m == "primary" => MountSelector::Primary,
            Some(m) => MountSelector::IdOrName(m),
        };
        let api_version = match get("api_version").as_deref() {
            None | Some("2") | Some("v2") => ApiVersion::V2,
            Some("2.1") | Some("v2.1") => ApiVersion::V2_1,
            Some(other) => {
                return Err(config_error(
                    "api_version",
                    format!("must be `2` or `2.1`, not {other:?}"),
                ));
            }
        };
        let concurrency = parse_number(get("concurrency"), "concurrency", 8, 1, 64)? as usize;
        let retries = parse_number(get("retries"), "retries", 8, 1, 20)? as u32;
        let retry_delay_ms = parse_number(get("retry_delay_ms"), "retry_delay_ms", 500, 1, 60_000)?;
        let connect = parse_number(get("timeout_connect"), "timeout_connect", 30, 1, 600)?;
        let stall = parse_number(get("stall_timeout"), "stall_timeout", 120, 1, 3600)?;

        let config = KoofrConfig {
            location,
            endpoint,
            auth,
            mount,
            api_version,
            concurrency,
            retry: RetryPolicy {
                base_delay: Duration::from_millis(retry_delay_ms),
                ..RetryPolicy::with_attempts(retries)
            },
            timeouts: Timeouts {
                connect: Duration::from_secs(connect),
                stall: Duration::from_secs(stall),
            },
        };
        Ok((config, warnings))
    }

    /// [`KoofrConfig::from_map`] with the process environment.
    pub fn from_plakar(
        map: &HashMap<String, String>,
    ) -> Result<(KoofrConfig, Vec<String>), ConfigError> {
        KoofrConfig::from_map(map, &|name| std::env::var(name).ok())
    }

    /// A Basic-auth configuration for tests and tools (location `/`, defaults elsewhere).
    pub fn basic(
        endpoint: &str,
        username: &str,
        password: &str,
    ) -> Result<KoofrConfig, ConfigError> {
        let map = HashMap::from([
            ("location".to_owned(), "koofr:///".to_owned()),
            ("endpoint".to_owned(), endpoint.to_owned()),
            ("username".to_owned(), username.to_owned()),
            ("password".to_owned(), password.to_owned()),
        ]);
        KoofrConfig::from_map(&map, &|_| None).map(|(config, _)| config)
    }
}

fn parse_number(
    value: Option<String>,
    key: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let n: u64 = value.trim().parse().map_err(|_| {
        config_error(
            key,
            format!("must be a whole number in {min}..={max}, not {value:?}"),
        )
    })?;
    if !(min..=max).contains(&n) {
        return Err(config_error(
            key,
            format!("must be in {min}..={max}, not {n}"),
        ));
    }
    Ok(n)
}

/// `koofr://<path>` → the path (spec plakar-protocol §10.2).
fn parse_location(location: &str) -> Result<KoofrPath, ConfigError> {
    let rest = location
        .get(..6)
        .filter(|scheme| scheme.eq_ignore_ascii_case("koofr:"))
        .map(|_| &location[6..])
        .ok_or_else(|| {
            config_error(
                "location",
                format!("must start with `koofr://`, got {location:?}"),
            )
        })?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = KoofrPath::parse(&format!("/{rest}"))
        .map_err(|e| config_error("location", e.to_string()))?;
    path.check_supported()
        .map_err(|e| config_error("location", e.to_string()))?;
    Ok(path)
}

fn parse_endpoint(provider: Option<&str>, endpoint: Option<&str>) -> Result<Url, ConfigError> {
    let default = match provider.map(str::to_ascii_lowercase).as_deref() {
        None | Some("koofr") => Some(KOOFR_URL),
        Some("digistorage") | Some("digi") => Some(DIGISTORAGE_URL),
        Some("other") => None,
        Some(other) => {
            return Err(config_error(
                "provider",
                format!("must be `koofr`, `digistorage` or `other`, not {other:?}"),
            ));
        }
    };
    let (key, raw) = match (endpoint, default) {
        (Some(e), _) => ("endpoint", e),
        (None, Some(d)) => ("provider", d),
        (None, None) => {
            return Err(config_error(
                "endpoint",
                "is required when provider is `other`",
            ));
        }
    };
    let mut url = Url::parse(raw.trim())
        .map_err(|e| config_error(key, format!("{raw:?} is not a URL: {e}")))?;
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        // The raw value is not echoed: it may contain a password.
        return Err(config_error(
            key,
            "must be a plain base URL (no credentials, query or fragment)",
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(config_error(
                key,
                format!(
                    "{raw:?} uses plain http; only https is allowed except for loopback addresses"
                ),
            ));
        }
        other => {
            return Err(config_error(
                key,
                format!("{raw:?} has unsupported scheme {other:?}"),
            ));
        }
    }
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<(KoofrConfig, Vec<String>), ConfigError> {
        KoofrConfig::from_map(&map(pairs), &no_env)
    }

    const CREDS: [(&str, &str); 2] = [
        ("username", "me@example.com"),
        ("password", "s3cret-app-pw"),
    ];

    #[test]
    fn location_forms() {
        for (loc, want) in [
            ("koofr://", "/"),
            ("koofr:///", "/"),
            ("koofr:///backups/plakar", "/backups/plakar"),
            ("koofr://backups/plakar", "/backups/plakar"),
            ("koofr:/backups/plakar", "/backups/plakar"),
            ("koofr:backups", "/backups"),
            ("KOOFR:///a//b/", "/a/b"),
        ] {
            let (c, w) = parse(&[("location", loc), CREDS[0], CREDS[1]]).unwrap();
            assert_eq!(c.location().as_str(), want, "{loc}");
            assert!(w.is_empty());
        }
        let e = parse(&[("location", "s3://x"), CREDS[0], CREDS[1]]).unwrap_err();
        assert_eq!(e.key, "location");
        let e = parse(&[("location", "koofr:///a/../b"), CREDS[0], CREDS[1]]).unwrap_err();
        assert_eq!(e.key, "location");
        let e = parse(&[CREDS[0], CREDS[1]]).unwrap_err();
        assert_eq!(e.key, "location");
    }

    #[test]
    fn defaults_and_providers() {
        let (c, _) = parse(&[("location", "koofr://"), CREDS[0], CREDS[1]]).unwrap();
        assert_eq!(c.endpoint().as_str(), "https://app.koofr.net/");
        assert_eq!(c.host(), "app.koofr.net");
        assert_eq!(c.concurrency(), 8);
        assert_eq!(c.mount(), &MountSelector::Primary);
        assert_eq!(c.api_version(), ApiVersion::V2);
        assert_eq!(c.username(), Some("me@example.com"));
        assert_eq!(c.retry().max_attempts, 8);
        assert_eq!(c.timeouts().stall, Duration::from_secs(120));
        assert!(matches!(c.auth(), AuthConfig::Basic { .. }));

        let (c, _) = parse(&[
            ("location", "koofr://"),
            ("provider", "digistorage"),
            CREDS[0],
            CREDS[1],
        ])
        .unwrap();
        assert_eq!(c.host(), "storage.rcs-rds.ro");
        let e = parse(&[
            ("location", "koofr://"),
            ("provider", "other"),
            CREDS[0],
            CREDS[1],
        ])
        .unwrap_err();
        assert_eq!(e.key, "endpoint");
        let (c, _) = parse(&[
            ("location", "koofr://"),
            ("provider", "other"),
            ("endpoint", "https://koofr.example.org/prefix/"),
            CREDS[0],
            CREDS[1],
        ])
        .unwrap();
        assert_eq!(c.endpoint().as_str(), "https://koofr.example.org/prefix");
        let e = parse(&[
            ("location", "koofr://"),
            ("provider", "dropbox"),
            CREDS[0],
            CREDS[1],
        ])
        .unwrap_err();
        assert_eq!(e.key, "provider");
    }

    #[test]
    fn http_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1/",
            "http://[::1]:9",
            "http://127.3.4.5",
        ] {
            let (c, _) = parse(&[
                ("location", "koofr://"),
                ("endpoint", ok),
                CREDS[0],
                CREDS[1],
            ])
            .unwrap();
            assert_eq!(c.endpoint().scheme(), "http");
        }
        for bad in [
            "http://example.org",
            "http://10.0.0.1",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            let e = parse(&[
                ("location", "koofr://"),
                ("endpoint", bad),
                CREDS[0],
                CREDS[1],
            ])
            .unwrap_err();
            assert_eq!(e.key, "endpoint", "{bad}");
        }
        assert_eq!(
            parse(&[
                ("location", "koofr://"),
                ("endpoint", "http://127.0.0.1:8/"),
                CREDS[0],
                CREDS[1]
            ])
            .unwrap()
            .0
            .host(),
            "127.0.0.1:8"
        );
    }

    #[test]
    fn environment_fills_missing_keys_and_map_wins() {
        let env = |name: &str| match name {
            "KOOFR_USERNAME" => Some("env@example.com".to_owned()),
            "KOOFR_PASSWORD" => Some("env-pw".to_owned()),
            "KOOFR_MOUNT" => Some("Dropbox".to_owned()),
            "KOOFR_CONCURRENCY" => Some("3".to_owned()),
            _ => None,
        };
        let (c, _) = KoofrConfig::from_map(&map(&[("location", "koofr://")]), &env).unwrap();
        assert_eq!(c.username(), Some("env@example.com"));
        assert_eq!(c.mount(), &MountSelector::IdOrName("Dropbox".into()));
        assert_eq!(c.concurrency(), 3);
        let (c, _) = KoofrConfig::from_map(
            &map(&[("location", "koofr://"), ("username", "map@example.com")]),
            &env,
        )
        .unwrap();
        assert_eq!(c.username(), Some("map@example.com"));
    }

    /// Which credentials a config ends up with, as a short label.
    fn credentials_of(c: &KoofrConfig) -> String {
        match c.auth() {
            AuthConfig::Basic { username, password } => {
                format!("basic {username} {}", password.expose())
            }
            AuthConfig::Token { username, password } => {
                format!("token {username} {}", password.expose())
            }
            AuthConfig::OAuth { access_token, .. } => format!("oauth {}", access_token.expose()),
        }
    }

    #[test]
    fn the_map_decides_the_credentials_for_every_auth_mode() {
        let env_token = [("KOOFR_ACCESS_TOKEN", "env-at")];
        let env_password = [
            ("KOOFR_USERNAME", "env@example.com"),
            ("KOOFR_PASSWORD", "env-pw"),
        ];
        let env_all = [
            ("KOOFR_ACCESS_TOKEN", "env-at"),
            ("KOOFR_USERNAME", "env@example.com"),
            ("KOOFR_PASSWORD", "env-pw"),
            ("KOOFR_AUTH", "token"),
        ];
        let map_password = [("username", "map@example.com"), ("password", "map-pw")];
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Pairs, Pairs, &str)] = &[
            (&map_password, &env_token, "basic map@example.com map-pw"),
            (&map_password, &env_password, "basic map@example.com map-pw"),
            // KOOFR_AUTH fills the one key the map lacks; the token is still ignored.
            (&map_password, &env_all, "token map@example.com map-pw"),
            (
                &[
                    ("username", "map@example.com"),
                    ("password", "map-pw"),
                    ("auth", "basic"),
                ],
                &env_all,
                "basic map@example.com map-pw",
            ),
            (&[("access_token", "map-at")], &env_password, "oauth map-at"),
            (&[("access_token", "map-at")], &env_all, "oauth map-at"),
            (
                &[
                    ("access_token", "map-at"),
                    ("username", "map@example.com"),
                    ("password", "map-pw"),
                ],
                &env_token,
                "oauth map-at",
            ),
            // Half a pair in the map: the other half from the environment, never the token.
            (
                &[("username", "map@example.com")],
                &env_all,
                "token map@example.com env-pw",
            ),
            (
                &[("password", "map-pw")],
                &env_all,
                "token env@example.com map-pw",
            ),
            (&[], &env_token, "oauth env-at"),
            (&[], &env_password, "basic env@example.com env-pw"),
            (&[], &env_all, "oauth env-at"),
        ];
        for (map_pairs, env_pairs, want) in cases {
            let env = |name: &str| {
                env_pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            };
            let mut pairs = vec![("location", "koofr://")];
            pairs.extend_from_slice(map_pairs);
            let (c, _) = KoofrConfig::from_map(&map(&pairs), &env)
                .unwrap_or_else(|e| panic!("{map_pairs:?} with {env_pairs:?}: {e}"));
            assert_eq!(
                credentials_of(&c),
                *want,
                "{map_pairs:?} with {env_pairs:?}"
            );
        }
        // Half a pair and only a token in the environment: the missing half is named.
        let env = |name: &str| (name == "KOOFR_ACCESS_TOKEN").then(|| "env-at".to_owned());
        let e = KoofrConfig::from_map(
            &map(&[("location", "koofr://"), ("username", "map@example.com")]),
            &env,
        )
        .unwrap_err();
        assert_eq!(e.key, "password");
    }

    #[test]
    fn missing_and_invalid_keys_are_named() {
        assert_eq!(
            parse(&[("location", "koofr://"), CREDS[0]])
                .unwrap_err()
                .key,
            "password"
        );
        assert_eq!(
            parse(&[("location", "koofr://"), CREDS[1]])
                .unwrap_err()
                .key,
            "username"
        );
        for (key, value) in [
            ("concurrency", "0"),
            ("concurrency", "65"),
            ("concurrency", "many"),
            ("retries", "0"),
            ("timeout_connect", "-1"),
            ("stall_timeout", "99999"),
            ("api_version", "3"),
            ("auth", "kerberos"),
        ] {
            let e =
                parse(&[("location", "koofr://"), CREDS[0], CREDS[1], (key, value)]).unwrap_err();
            assert_eq!(e.key, key, "{key}={value}");
        }
        let (c, _) = parse(&[
            ("location", "koofr://"),
            CREDS[0],
            CREDS[1],
            ("concurrency", "64"),
            ("api_version", "2.1"),
        ])
        .unwrap();
        assert_eq!(c.concurrency(), 64);
        assert_eq!(c.api_version(), ApiVersion::V2_1);
    }

    #[test]
    fn unknown_keys_warn_and_plakar_keys_are_ignored() {
        let (_, warnings) = parse(&[
            ("location", "koofr://"),
            CREDS[0],
            CREDS[1],
            ("passphrase", "x"),
            ("passphrase_cmd", "y"),
            ("concurency", "4"),
        ])
        .unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("concurency"));
    }

    #[test]
    fn oauth_and_token_modes() {
        let (c, _) = parse(&[("location", "koofr://"), ("access_token", "AT-123")]).unwrap();
        assert!(matches!(c.auth(), AuthConfig::OAuth { refresh: None, .. }));
        assert_eq!(c.username(), None);
        let e = parse(&[
            ("location", "koofr://"),
            ("access_token", "AT"),
            ("refresh_token", "RT"),
        ])
        .unwrap_err();
        assert_eq!(e.key, "client_id");
        let (c, _) = parse(&[
            ("location", "koofr://"),
            ("auth", "token"),
            CREDS[0],
            CREDS[1],
        ])
        .unwrap();
        assert!(matches!(c.auth(), AuthConfig::Token { .. }));
    }

    #[test]
    fn origin_names_account_host_and_mount() {
        let (c, _) = parse(&[("location", "koofr:///x"), CREDS[0], CREDS[1]]).unwrap();
        assert_eq!(c.plakar_origin(), format!("{}@app.koofr.net", CREDS[0].1));
        let (c, _) = parse(&[
            ("location", "koofr:///x"),
            ("mount", "Dropbox"),
            CREDS[0],
            CREDS[1],
        ])
        .unwrap();
        assert_eq!(
            c.plakar_origin(),
            format!("{}@app.koofr.net/Dropbox", CREDS[0].1)
        );
        let (c, _) = parse(&[("location", "koofr://"), ("access_token", "AT")]).unwrap();
        assert_eq!(c.plakar_origin(), "app.koofr.net");
    }

    #[test]
    fn retry_delay_key_sets_the_backoff_base() {
        let (c, _) = parse(&[
            ("location", "koofr://"),
            ("retry_delay_ms", "3"),
            CREDS[0],
            CREDS[1],
        ])
        .unwrap();
        assert_eq!(c.retry().base_delay, Duration::from_millis(3));
        let e = parse(&[
            ("location", "koofr://"),
            ("retry_delay_ms", "0"),
            CREDS[0],
            CREDS[1],
        ])
        .unwrap_err();
        assert_eq!(e.key, "retry_delay_ms");
    }

    #[test]
    fn secrets_never_in_debug_or_errors() {
        let (c, _) = parse(&[
            ("location", "koofr://"),
            ("access_token", "AT-SECRET"),
            ("refresh_token", "RT-SECRET"),
            ("client_id", "cid"),
            ("client_secret", "CS-SECRET"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        for secret in ["AT-SECRET", "RT-SECRET", "CS-SECRET"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        let (c, _) = parse(&[("location", "koofr://"), CREDS[0], CREDS[1]]).unwrap();
        assert!(!format!("{c:?}").contains("s3cret-app-pw"));
        let e = parse(&[
            ("location", "koofr://"),
            CREDS[0],
            CREDS[1],
            ("endpoint", "http://u:s3cret@example.org"),
        ])
        .unwrap_err();
        assert_eq!(e.key, "endpoint");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}
