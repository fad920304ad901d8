//! Plugin `Init` maps for the connectors' config-parsing unit tests: no site behind them, since
//! parsing makes no request.

use std::collections::HashMap;

/// The password of every [`init_map`], for tests that it never shows.
pub const INIT_PASSWORD: &str = "SECRET-PASSWORD";

/// An `Init` map for `location` (`koofr:///…`) with Basic-auth keys on an endpoint nothing is
/// asked of, password [`INIT_PASSWORD`], and `extra` keys added or replacing these.
pub fn init_map(location: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    [
        ("location", location),
        ("endpoint", "http://127.0.0.1:9"),
        ("username", "me@example.com"),
        ("password", INIT_PASSWORD),
    ]
    .iter()
    .chain(extra)
    .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keys_are_added_or_replace_the_base() {
        let map = init_map("koofr:///x", &[("stream", "true"), ("username", "other")]);
        assert_eq!(map.len(), 5);
        assert_eq!(map["location"], "koofr:///x");
        assert_eq!(map["username"], "other");
        assert_eq!(map["password"], INIT_PASSWORD);
    }
}
