//! The storage connector's configuration: koofr-core's keys plus the read-ahead budgets.
//!
//! | Key | Default | Meaning |
//! |-----|---------|---------|
//! | `readahead_mib` | 16 | 0..=1024 MiB that read-ahead windows may hold together (all packfiles); `0` turns read-ahead off, so that every ranged `Get` is one request of exactly its range (see [`crate::readahead`]) |
//! | `readahead_window_mib` | 4 | 1..=256: the longest window, one request, in MiB; one packfile holds at most two |
//!
//! All other keys are documented in `koofr_core::config`.

use std::collections::HashMap;

use kloset_plugin::ConnectorError;
use koofr_core::KoofrConfig;
use koofr_core::plakar::{config_from_init, mib_key};

use crate::readahead::ReadAheadLimits;

/// The config key of the read-ahead budget (MiB; 0 = off).
pub const READAHEAD_KEY: &str = "readahead_mib";

/// The config key of the longest read-ahead window (MiB).
pub const READAHEAD_WINDOW_KEY: &str = "readahead_window_mib";

/// The read-ahead without configuration: 16 MiB in windows of up to 4 MiB.
pub const DEFAULT_READAHEAD: ReadAheadLimits = ReadAheadLimits {
    budget: 16 << 20,
    window: 4 << 20,
};

/// The parsed storage configuration.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The Koofr client configuration (location, credentials, limits).
    pub koofr: KoofrConfig,
    /// The read-ahead of ranged `Get`s.
    pub readahead: ReadAheadLimits,
}

impl StorageConfig {
    /// Parses the `Init` config map (and `KOOFR_*` variables) without network I/O; warnings
    /// about unknown keys go to stderr. Errors name the key at fault, never a secret value.
    pub fn from_init(map: &HashMap<String, String>) -> Result<StorageConfig, ConnectorError> {
        let readahead = ReadAheadLimits {
            budget: mib_key(map, READAHEAD_KEY, DEFAULT_READAHEAD.budget >> 20, 0, 1024)?,
            window: mib_key(
                map,
                READAHEAD_WINDOW_KEY,
                DEFAULT_READAHEAD.window >> 20,
                1,
                256,
            )?,
        };
        let koofr = config_from_init(map, &[READAHEAD_KEY, READAHEAD_WINDOW_KEY])?;
        Ok(StorageConfig { koofr, readahead })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test `Init` map of this connector's location, with `extra` keys.
    fn map(extra: &[(&str, &str)]) -> HashMap<String, String> {
        koofr_testkit::init_map("koofr:///kloset", extra)
    }

    #[test]
    fn readahead_keys_have_defaults_are_parsed_and_name_the_key_at_fault() {
        let config = StorageConfig::from_init(&map(&[])).unwrap();
        assert_eq!(config.readahead, DEFAULT_READAHEAD);
        assert_eq!(config.koofr.location().as_str(), "/kloset");
        let with = [("readahead_mib", " 0 "), ("readahead_window_mib", "1")];
        let config = StorageConfig::from_init(&map(&with)).unwrap();
        assert_eq!(
            config.readahead,
            ReadAheadLimits {
                budget: 0,
                window: 1 << 20
            }
        );
        for (key, bad) in [("readahead_window_mib", "0"), ("readahead_mib", "-1")] {
            let with = [(key, bad)];
            let err = StorageConfig::from_init(&map(&with)).unwrap_err();
            assert!(
                err.message().contains(&format!("`{key}`")) && err.message().contains(bad),
                "{err}"
            );
            assert!(!err.message().contains("SECRET"), "{err}");
        }
    }
}
