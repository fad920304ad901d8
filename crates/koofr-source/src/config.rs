//! The importer's configuration: koofr-core's keys plus the importer-only `stream` flag.
//!
//! | Key | Default | Meaning |
//! |-----|---------|---------|
//! | `stream` | `false` | `true` reports Plakar's `stream` location flag (4): Plakar then starts no second "statistics" importer during a backup (no doubled listing load, but no totals in the progress display) |
//!
//! All other keys (`location`, `username`, `password`, `endpoint`, `concurrency`, …) are
//! documented in `koofr_core::config`.

use std::collections::HashMap;

use kloset_plugin::ConnectorError;
use koofr_core::KoofrConfig;

/// The config key that turns Plakar's `stream` location flag on.
pub const STREAM_KEY: &str = "stream";

/// The parsed importer configuration.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The Koofr client configuration (location, credentials, limits).
    pub koofr: KoofrConfig,
    /// Report the `stream` location flag.
    pub stream: bool,
}

impl SourceConfig {
    /// Parses a Plakar config map (with `KOOFR_*` environment fallbacks); returns warnings
    /// about unknown keys to be logged. Errors name the key at fault, never a secret value.
    pub fn from_map(
        map: &HashMap<String, String>,
    ) -> Result<(SourceConfig, Vec<String>), ConnectorError> {
        let stream = match map.get(STREAM_KEY).map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(v) => match v.as_str() {
                "" | "false" | "0" | "no" | "off" => false,
                "true" | "1" | "yes" | "on" => true,
                _ => {
                    return Err(ConnectorError::invalid_input(format!(
                        "koofr configuration key `{STREAM_KEY}`: must be true or false, not {v:?}"
                    )));
                }
            },
        };
        // koofr-core warns about keys it does not know; `stream` is ours.
        let mut rest = map.clone();
        rest.remove(STREAM_KEY);
        let (koofr, warnings) = KoofrConfig::from_plakar(&rest)
            .map_err(|e| ConnectorError::invalid_input(e.to_string()))?;
        Ok((SourceConfig { koofr, stream }, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const BASE: [(&str, &str); 4] = [
        ("location", "koofr:///Photos"),
        ("endpoint", "http://127.0.0.1:9"),
        ("username", "me@example.com"),
        ("password", "SECRET-PASSWORD"),
    ];

    #[test]
    fn stream_is_off_by_default_and_parsed() {
        let (config, warnings) = SourceConfig::from_map(&map(&BASE)).unwrap();
        assert!(!config.stream);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.koofr.location().as_str(), "/Photos");
        let mut with = BASE.to_vec();
        with.push(("stream", "TRUE"));
        let (config, warnings) = SourceConfig::from_map(&map(&with)).unwrap();
        assert!(config.stream);
        assert!(
            warnings.is_empty(),
            "`stream` must not be reported as unknown: {warnings:?}"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_hide_secrets() {
        let mut with = BASE.to_vec();
        with.push(("stream", "maybe"));
        let err = SourceConfig::from_map(&map(&with)).unwrap_err();
        assert!(
            err.message().contains("`stream`") && err.message().contains("maybe"),
            "{err}"
        );
        // Without a password (unless a live run provides KOOFR_PASSWORD in the environment).
        if std::env::var_os("KOOFR_PASSWORD").is_none() {
            let err = SourceConfig::from_map(&map(&BASE[..3])).unwrap_err();
            assert!(err.message().contains("password"), "{err}");
        }
        let debug = format!("{:?}", SourceConfig::from_map(&map(&BASE)).unwrap());
        assert!(!debug.contains("SECRET-PASSWORD"), "{debug}");
    }
}
