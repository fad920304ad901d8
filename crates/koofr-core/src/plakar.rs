//! Glue between the Koofr client and Plakar's connector types (feature `plakar`): the one
//! config-from-`Init` path, error mapping and location answer that all three Koofr connectors
//! share.

use std::collections::HashMap;

use futures::StreamExt;
use kloset_plugin::{ConnectorError, ConnectorErrorKind, LocationInfo};

use crate::config::KoofrConfig;
use crate::error::{Error, ErrorKind};

/// The connector type every Koofr connector reports to Plakar (`InitResponse.type`).
pub const CONNECTOR_TYPE: &str = "koofr";

impl From<Error> for ConnectorError {
    /// Only the message crosses the wire (protocol §2.6); it names the operation and the Koofr
    /// path, never credentials. The kind picks the gRPC status code: failures that retrying did
    /// not cure (server errors, throttling, the network, an offline mount) are `Unavailable`.
    /// Refused credentials, a full account and an unreachable endpoint are
    /// [fatal](ConnectorError::fatal): every later item would fail the same way.
    fn from(err: Error) -> ConnectorError {
        let fatal = matches!(
            err.kind(),
            ErrorKind::Unauthenticated | ErrorKind::QuotaExceeded | ErrorKind::Unreachable
        );
        let kind = match err.kind() {
            ErrorKind::NotFound => ConnectorErrorKind::NotFound,
            ErrorKind::AlreadyExists | ErrorKind::Conflict => ConnectorErrorKind::AlreadyExists,
            ErrorKind::Unauthenticated | ErrorKind::PermissionDenied => {
                ConnectorErrorKind::PermissionDenied
            }
            ErrorKind::InvalidInput | ErrorKind::NotADirectory | ErrorKind::NotAFile => {
                ConnectorErrorKind::InvalidInput
            }
            ErrorKind::RangeNotSatisfiable => ConnectorErrorKind::RangeNotSatisfiable,
            ErrorKind::Server
            | ErrorKind::Transport
            | ErrorKind::RateLimited
            | ErrorKind::Unreachable
            | ErrorKind::DeviceOffline => ConnectorErrorKind::Unavailable,
            _ => ConnectorErrorKind::Other,
        };
        let mapped = ConnectorError::new(kind, err.to_string());
        if fatal { mapped.fatal() } else { mapped }
    }
}

/// A koofr-core error as a connector error (for `map_err`).
pub fn connector_error(err: Error) -> ConnectorError {
    ConnectorError::from(err)
}

/// A client byte stream as a connector byte stream.
pub fn connector_stream(stream: crate::ByteStream) -> kloset_plugin::ByteStream {
    stream
        .map(|item| item.map_err(ConnectorError::from))
        .boxed()
}

/// Parses the `Init` config map (plus `KOOFR_*` variables) without network I/O. `own_keys`
/// are the connector's extra keys, which are neither Koofr keys nor typos. Warnings about
/// unknown keys go to stderr through `tracing`.
pub fn config_from_init(
    config: &HashMap<String, String>,
    own_keys: &[&str],
) -> Result<KoofrConfig, ConnectorError> {
    let koofr_keys: HashMap<String, String> = config
        .iter()
        .filter(|(key, _)| !own_keys.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let (parsed, warnings) = KoofrConfig::from_plakar(&koofr_keys)
        .map_err(|e| ConnectorError::invalid_input(e.to_string()))?;
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    Ok(parsed)
}

/// The `Init` answer: type `koofr`, origin [`KoofrConfig::plakar_origin`], root the location
/// path. Stable for a configuration, so Plakar finds the parent snapshot of a backup.
pub fn location_info(config: &KoofrConfig, flags: u32) -> LocationInfo {
    LocationInfo {
        origin: config.plakar_origin(),
        r#type: CONNECTOR_TYPE.to_owned(),
        root: config.location().as_str().to_owned(),
        flags,
    }
}

/// A connector's own size key in whole MiB (`min..=max`), as bytes. Like every Koofr key it
/// may come from the environment as `KOOFR_<KEY>`; absent or empty = `default` MiB. The error
/// names the key and the value.
pub fn mib_key(
    config: &HashMap<String, String>,
    key: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConnectorError> {
    let from_env = || std::env::var(format!("KOOFR_{}", key.to_uppercase())).ok();
    let value = config
        .get(key)
        .cloned()
        .filter(|v| !v.trim().is_empty())
        .or_else(from_env)
        .filter(|v| !v.trim().is_empty());
    let mib = match value.as_deref().map(str::trim) {
        None => default,
        Some(value) => value
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                ConnectorError::invalid_input(format!(
                    "koofr configuration key `{key}`: must be a whole number of MiB in {min}..={max}, not {value:?}"
                ))
            })?,
    };
    Ok(mib << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_the_path_and_map_the_kind() {
        let err = Error::permanent(ErrorKind::NotAFile, "upload", "Not a file").with_path("/d/a");
        let mapped = ConnectorError::from(err);
        assert_eq!(mapped.kind(), ConnectorErrorKind::InvalidInput);
        assert!(mapped.message().contains("/d/a"), "{mapped}");
        let missing = Error::permanent(ErrorKind::NotFound, "info", "File not found");
        assert_eq!(
            connector_error(missing).kind(),
            ConnectorErrorKind::NotFound
        );
        let integrity = Error::permanent(ErrorKind::Integrity, "upload", "MD5 mismatch");
        assert_eq!(
            ConnectorError::from(integrity).kind(),
            ConnectorErrorKind::Other
        );
        for (kind, plugin_kind, fatal) in [
            (ErrorKind::Server, ConnectorErrorKind::Unavailable, false),
            (
                ErrorKind::RateLimited,
                ConnectorErrorKind::Unavailable,
                false,
            ),
            (ErrorKind::Transport, ConnectorErrorKind::Unavailable, false),
            (
                ErrorKind::DeviceOffline,
                ConnectorErrorKind::Unavailable,
                false,
            ),
            (
                ErrorKind::Unreachable,
                ConnectorErrorKind::Unavailable,
                true,
            ),
            (
                ErrorKind::Unauthenticated,
                ConnectorErrorKind::PermissionDenied,
                true,
            ),
            (ErrorKind::QuotaExceeded, ConnectorErrorKind::Other, true),
            (ErrorKind::Unsupported, ConnectorErrorKind::Other, false),
        ] {
            let mapped = ConnectorError::from(Error::permanent(kind, "op", "m"));
            assert_eq!(
                (mapped.kind(), mapped.is_fatal()),
                (plugin_kind, fatal),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn init_config_skips_own_keys_and_names_bad_keys() {
        let map = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let good = map(&[
            ("location", "koofr:///Photos"),
            ("username", "me@example.com"),
            ("password", "pw"),
            ("stream", "true"),
        ]);
        let config = config_from_init(&good, &["stream"]).unwrap();
        let info = location_info(&config, 4);
        assert_eq!(info.r#type, "koofr");
        assert_eq!(info.root, "/Photos");
        assert_eq!(info.origin, "me@example.com@app.koofr.net");
        assert_eq!(info.flags, 4);
        let bad = map(&[
            ("location", "koofr:///a"),
            ("username", "u"),
            ("password", "pw"),
            ("concurrency", "0"),
        ]);
        let err = config_from_init(&bad, &[]).unwrap_err();
        assert!(err.message().contains("concurrency"), "{err}");
        assert!(!err.message().contains("pw"), "{err}");
    }

    #[test]
    fn mib_keys_default_parse_and_name_the_key_at_fault() {
        let map = |value: &str| HashMap::from([("lab_test_mib".to_owned(), value.to_owned())]);
        let key = "lab_test_mib";
        assert_eq!(mib_key(&HashMap::new(), key, 16, 0, 64).unwrap(), 16 << 20);
        assert_eq!(mib_key(&map(""), key, 16, 0, 64).unwrap(), 16 << 20);
        assert_eq!(mib_key(&map(" 0 "), key, 16, 0, 64).unwrap(), 0);
        assert_eq!(mib_key(&map("64"), key, 16, 0, 64).unwrap(), 64 << 20);
        for bad in ["65", "-1", "1.5", "lots"] {
            let err = mib_key(&map(bad), key, 16, 0, 64).unwrap_err();
            assert_eq!(err.kind(), ConnectorErrorKind::InvalidInput);
            assert!(
                err.message().contains("`lab_test_mib`") && err.message().contains(bad),
                "{err}"
            );
        }
    }
}
