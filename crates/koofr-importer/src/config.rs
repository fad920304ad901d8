//! The importer's configuration: koofr-core's keys plus the importer-only `stream` flag and
//! read-ahead budgets.
//!
//! | Key | Default | Meaning |
//! |-----|---------|---------|
//! | `stream` | `false` | `true` reports Plakar's `stream` location flag (4): Plakar then starts no second "statistics" importer during a backup (no doubled listing load, but no totals in the progress display) |
//! | `readahead_mib` | 16 | 0..=1024 MiB of file content downloaded ahead of Plakar's `Open` calls while they follow the scan order; `0` turns read-ahead off (see [`crate::readahead`]) |
//! | `readahead_file_mib` | 4 | 1..=1024: files larger than this many MiB are never read ahead, only streamed when opened |
//!
//! All other keys (`location`, `username`, `password`, `endpoint`, `concurrency`, …) are
//! documented in `koofr_core::config`.

use std::collections::HashMap;

use kloset_plugin::ConnectorError;
use koofr_core::KoofrConfig;
use koofr_core::plakar::mib_key;

use crate::readahead::ReadAheadLimits;

/// The config key that turns Plakar's `stream` location flag on.
pub const STREAM_KEY: &str = "stream";

/// The config key of the read-ahead budget (MiB; 0 = off).
pub const READAHEAD_KEY: &str = "readahead_mib";

/// The config key of the largest file read ahead (MiB).
pub const READAHEAD_FILE_KEY: &str = "readahead_file_mib";

/// The read-ahead limits without configuration: 16 MiB ahead, files up to 4 MiB.
pub const DEFAULT_READAHEAD: ReadAheadLimits = ReadAheadLimits {
    budget: 16 << 20,
    max_file: 4 << 20,
};

/// The parsed importer configuration.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The Koofr client configuration (location, credentials, limits).
    pub koofr: KoofrConfig,
    /// Report the `stream` location flag.
    pub stream: bool,
    /// The read-ahead of `Open`.
    pub readahead: ReadAheadLimits,
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
        let readahead = ReadAheadLimits {
            budget: mib_key(map, READAHEAD_KEY, DEFAULT_READAHEAD.budget >> 20, 0, 1024)?,
            max_file: mib_key(
                map,
                READAHEAD_FILE_KEY,
                DEFAULT_READAHEAD.max_file >> 20,
                1,
                1024,
            )?,
        };
        // koofr-core warns about keys it does not know; these are ours.
        let mut rest = map.clone();
        for key in [STREAM_KEY, READAHEAD_KEY, READAHEAD_FILE_KEY] {
            rest.remove(key);
        }
        let (koofr, warnings) = KoofrConfig::from_plakar(&rest)
            .map_err(|e| ConnectorError::invalid_input(e.to_string()))?;
        Ok((
            SourceConfig {
                koofr,
                stream,
                readahead,
            },
            warnings,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test `Init` map of this connector's location, with `extra` keys.
    fn map(extra: &[(&str, &str)]) -> HashMap<String, String> {
        koofr_testkit::init_map("koofr:///Photos", extra)
    }

    #[test]
    fn stream_is_off_by_default_and_parsed() {
        let (config, warnings) = SourceConfig::from_map(&map(&[])).unwrap();
        assert!(!config.stream);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.koofr.location().as_str(), "/Photos");
        let with = [("stream", "TRUE")];
        let (config, warnings) = SourceConfig::from_map(&map(&with)).unwrap();
        assert!(config.stream);
        assert!(
            warnings.is_empty(),
            "`stream` must not be reported as unknown: {warnings:?}"
        );
    }

    #[test]
    fn readahead_keys_have_defaults_and_are_parsed() {
        let (config, _) = SourceConfig::from_map(&map(&[])).unwrap();
        assert_eq!(config.readahead, DEFAULT_READAHEAD);
        let with = [("readahead_mib", "0"), ("readahead_file_mib", "2")];
        let (config, warnings) = SourceConfig::from_map(&map(&with)).unwrap();
        assert_eq!(
            config.readahead,
            ReadAheadLimits {
                budget: 0,
                max_file: 2 << 20
            }
        );
        assert!(
            warnings.is_empty(),
            "our keys are not unknown: {warnings:?}"
        );
        for (key, bad) in [
            ("readahead_mib", "lots"),
            ("readahead_mib", "2000"),
            ("readahead_file_mib", "0"),
        ] {
            let with = [(key, bad)];
            let err = SourceConfig::from_map(&map(&with)).unwrap_err();
            assert!(
                err.message().contains(&format!("`{key}`")) && err.message().contains(bad),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_values_name_the_key_and_hide_secrets() {
        let with = [("stream", "maybe")];
        let err = SourceConfig::from_map(&map(&with)).unwrap_err();
        assert!(
            err.message().contains("`stream`") && err.message().contains("maybe"),
            "{err}"
        );
        // Without a password (unless a live run provides KOOFR_PASSWORD in the environment).
        if std::env::var_os("KOOFR_PASSWORD").is_none() {
            let err = SourceConfig::from_map(&{
                let mut map = map(&[]);
                map.remove("password");
                map
            })
            .unwrap_err();
            assert!(err.message().contains("password"), "{err}");
        }
        let debug = format!("{:?}", SourceConfig::from_map(&map(&[])).unwrap());
        assert!(!debug.contains(koofr_testkit::INIT_PASSWORD), "{debug}");
    }
}
