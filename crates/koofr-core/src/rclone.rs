//! Entries imported from rclone (`plakar … import -rclone`): the `rclone_*` keys of a Koofr remote
//! read as the native keys, and rclone's obscured passwords revealed.
//!
//! plakar turns every key of an rclone section into `rclone_<key>`. For a remote of type `koofr`:
//!
//! | rclone key | Native key | How |
//! |------------|------------|-----|
//! | `rclone_type` | – | must be `koofr` |
//! | `rclone_user` | `username` | as is |
//! | `rclone_password` | `password` | revealed with [`reveal`] |
//! | `rclone_provider`, `rclone_endpoint` | `provider`, `endpoint` | as rclone's koofr backend decides (below) |
//! | `rclone_mountid` | `mount` | as is |
//! | any other `rclone_*` key | – | ignored with a warning |
//!
//! Provider and endpoint follow rclone: without a provider, an endpoint starting with
//! `https://app.koofr.net` (or none) means `koofr` and one starting with
//! `https://storage.rcs-rds.ro` means `digistorage`; `koofr` and `digistorage` always use their
//! own URL (rclone then ignores the endpoint); any other provider uses the endpoint, which is
//! then required. A native key given as well wins over its rclone key, with a warning.

use std::collections::HashMap;

use aes::Aes256;
use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ctr::Ctr128BE;
use ctr::cipher::{KeyIvInit, StreamCipher};

use crate::config::{ConfigError, Secret};

/// rclone's fixed key for obscuring (`fs/config/obscure`): public, so obscuring only keeps a
/// password from being read at a glance.
const OBSCURE_KEY: [u8; 32] = [
    0x9c, 0x93, 0x5b, 0x48, 0x73, 0x0a, 0x55, 0x4d, 0x6b, 0xfd, 0x7c, 0x63, 0xc8, 0x86, 0xa9, 0x2b,
    0xd3, 0x90, 0x19, 0x8e, 0xb8, 0x12, 0x8a, 0xfb, 0xf4, 0xde, 0x16, 0x2b, 0x8b, 0x95, 0xf6, 0x38,
];

/// AES's block size: the IV that starts every obscured value.
const IV_LEN: usize = 16;

/// Go's `base64.RawURLEncoding`: URL-safe alphabet, no padding, lenient about the unused bits
/// of the last character.
const RAW_URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// What `rclone config show REMOTE` prints instead of a password.
const RCLONE_MASK: &str = "*** ENCRYPTED ***";

/// Why a value is not an rclone-obscured password. Never holds any part of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RevealError {
    /// Not base64 (URL-safe alphabet, no padding).
    #[error("is not base64 (URL-safe, without padding)")]
    NotBase64,
    /// Shorter than the 16-byte IV.
    #[error("is too short to hold rclone's 16-byte IV")]
    TooShort,
    /// Decrypts to bytes that are not UTF-8 text.
    #[error("does not decrypt to UTF-8 text")]
    NotUtf8,
}

/// Reveals a password obscured by rclone (`rclone obscure`, or a `password` in `rclone.conf`),
/// exactly as rclone's `obscure.Reveal`: base64 URL-safe without padding, then AES-256-CTR with
/// rclone's fixed key and the first 16 bytes as the IV.
pub fn reveal(obscured: &str) -> Result<Secret, RevealError> {
    // Go's decoder skips line breaks.
    let cleaned: String = obscured
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n'))
        .collect();
    let mut bytes = RAW_URL
        .decode(cleaned)
        .map_err(|_| RevealError::NotBase64)?;
    let (iv, text) = bytes
        .split_first_chunk_mut::<IV_LEN>()
        .ok_or(RevealError::TooShort)?;
    Ctr128BE::<Aes256>::new(&OBSCURE_KEY.into(), (&*iv).into()).apply_keystream(text);
    bytes.drain(..IV_LEN);
    String::from_utf8(bytes)
        .map(Secret::new)
        .map_err(|_| RevealError::NotUtf8)
}

/// `map` with its `rclone_*` keys replaced by the native keys they stand for, and warnings
/// about rclone keys that were ignored (naming keys, never values).
pub(crate) fn native_keys(
    map: &HashMap<String, String>,
) -> Result<(HashMap<String, String>, Vec<String>), ConfigError> {
    let mut native = HashMap::with_capacity(map.len());
    let mut rclone = HashMap::new();
    for (key, value) in map {
        match key.strip_prefix("rclone_") {
            // plakar drops empty rclone values itself; an empty one counts as unset here too.
            Some(name) if !value.is_empty() => {
                rclone.insert(name, value.as_str());
            }
            Some(_) => {}
            None => {
                native.insert(key.clone(), value.clone());
            }
        }
    }
    let mut warnings = Vec::new();
    if rclone.is_empty() {
        return Ok((native, warnings));
    }
    if let Some(kind) = rclone.remove("type").filter(|kind| *kind != "koofr") {
        return Err(error(
            "rclone_type",
            format!("is {kind:?}: only rclone remotes of type `koofr` can be used here"),
        ));
    }

    let given_provider = rclone.remove("provider");
    let given_endpoint = rclone.remove("endpoint");
    let (provider, endpoint) = provider_and_endpoint(given_provider, given_endpoint, &mut warnings);
    if provider == Some("other")
        && endpoint.is_none()
        && !is_set(&native, "provider")
        && !is_set(&native, "endpoint")
    {
        return Err(error(
            "rclone_endpoint",
            "is required when rclone_provider is not `koofr` or `digistorage`",
        ));
    }
    // The provider of an old, provider-less config comes from `rclone_endpoint`.
    let provider_key = match given_provider {
        Some(_) => "rclone_provider",
        None => "rclone_endpoint",
    };
    let mut put = Vec::new();
    for (key, rclone_key, value) in [
        ("provider", provider_key, provider),
        ("endpoint", "rclone_endpoint", endpoint),
        ("username", "rclone_user", rclone.remove("user")),
        ("mount", "rclone_mountid", rclone.remove("mountid")),
        ("password", "rclone_password", rclone.remove("password")),
    ] {
        let Some(value) = value else { continue };
        if is_set(&native, key) {
            warnings.push(format!(
                "koofr: `{key}` is set, so `{rclone_key}` is ignored"
            ));
        } else if key == "password" {
            // Revealed only when used: a native password makes a bad one harmless.
            put.push((key, revealed(value)?));
        } else {
            put.push((key, value.to_owned()));
        }
    }
    native.extend(put.into_iter().map(|(key, value)| (key.to_owned(), value)));

    let mut ignored: Vec<&str> = rclone.into_keys().collect();
    ignored.sort_unstable();
    for name in ignored {
        warnings.push(format!(
            "koofr: ignoring `rclone_{name}` (the koofr connectors have no such setting)"
        ));
    }
    Ok((native, warnings))
}

fn is_set(map: &HashMap<String, String>, key: &str) -> bool {
    map.get(key).is_some_and(|value| !value.is_empty())
}

/// rclone's `setProviderDefaults`: the provider (`koofr`, `digistorage` or `other`; `None`
/// when rclone gave neither key) and, for `other` alone, the endpoint (the first two have a fixed
/// URL).
fn provider_and_endpoint<'a>(
    provider: Option<&str>,
    endpoint: Option<&'a str>,
    warnings: &mut Vec<String>,
) -> (Option<&'static str>, Option<&'a str>) {
    let fixed = match (provider, endpoint) {
        (None, None) => return (None, None),
        (Some("koofr"), _) => Some("koofr"),
        (Some("digistorage"), _) => Some("digistorage"),
        // rclone takes any other provider name as a Koofr-compatible service at `endpoint`.
        (Some(_), _) => None,
        // An old, provider-less config: the provider follows from the endpoint.
        (None, Some(e)) if e.starts_with("https://app.koofr.net") => Some("koofr"),
        (None, Some(e)) if e.starts_with("https://storage.rcs-rds.ro") => Some("digistorage"),
        (None, Some(_)) => None,
    };
    match fixed {
        Some(fixed) => {
            if provider.is_some() && endpoint.is_some() {
                warnings.push(format!(
                    "koofr: ignoring `rclone_endpoint`: with provider `{fixed}` rclone uses \
                     the provider's own URL"
                ));
            }
            (Some(fixed), None)
        }
        None => (Some("other"), endpoint),
    }
}

/// `rclone_password` revealed, or an error that names the key and never the value.
fn revealed(obscured: &str) -> Result<String, ConfigError> {
    if obscured.trim() == RCLONE_MASK {
        return Err(error(
            "rclone_password",
            format!(
                "holds rclone's placeholder {RCLONE_MASK:?}, not the obscured password: \
                 `rclone config show REMOTE` hides passwords; import from the rclone.conf file \
                 (`import -rclone -config FILE REMOTE`) or from `rclone config show` without a \
                 remote name, or set `password`"
            ),
        ));
    }
    match reveal(obscured) {
        Ok(secret) if secret.expose().is_empty() => Err(error(
            "rclone_password",
            "reveals an empty password (set `password` to a Koofr application password)",
        )),
        Ok(secret) => Ok(secret.expose().to_owned()),
        Err(e) => Err(error(
            "rclone_password",
            format!(
                "{e}, so it is not a password obscured by rclone (a clear password goes in \
                 `password`)"
            ),
        )),
    }
}

fn error(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthConfig, KoofrConfig};

    #[derive(serde::Deserialize)]
    struct Fixtures {
        cases: Vec<Case>,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        password: String,
        obscured: String,
    }

    fn fixtures() -> Vec<Case> {
        let text = include_str!("../tests/fixtures/rclone-obscured.json");
        serde_json::from_str::<Fixtures>(text)
            .expect("fixture file parses")
            .cases
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A map holding an rclone `other` entry for a local Koofr, and `extra`.
    fn with_entry(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let entry = [
            ("location", "koofr:///Documents"),
            ("rclone_type", "koofr"),
            ("rclone_provider", "other"),
            ("rclone_endpoint", "http://127.0.0.1:8080"),
            ("rclone_user", "me@example.com"),
            ("rclone_password", OBSCURED),
        ];
        map(&[&entry[..], extra].concat())
    }

    const OBSCURED: &str = "QSEm5XqDkKYVPaGnQcY4mctL-9mB2atMgkQ5i2MQBAH3I9uq";
    const CLEAR: &str = "9fd1kq2z5w7m3r8x0c4v";

    #[test]
    fn reveals_what_rclone_obscured() {
        let cases = fixtures();
        assert!(cases.len() >= 5);
        for case in &cases {
            let revealed = reveal(&case.obscured).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(revealed.expose(), case.password, "{}", case.name);
        }
        // Two obscurings of one password differ (random IV) and reveal the same.
        let ascii: Vec<&Case> = cases
            .iter()
            .filter(|c| c.password == cases[0].password)
            .collect();
        assert_eq!(ascii.len(), 2);
        assert_ne!(ascii[0].obscured, ascii[1].obscured);
    }

    #[test]
    fn reveal_refuses_what_rclone_refuses() {
        // Padding, the standard alphabet's `+` and `/`, a short value, a mask.
        for bad in [
            format!("{OBSCURED}=="),
            OBSCURED.replace('-', "+"),
            "JFB4j0RQl_m9n4OTV799".to_owned(),
            RCLONE_MASK.to_owned(),
        ] {
            assert!(reveal(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            reveal("JFB4j0RQl_m9n4OT").unwrap_err(),
            RevealError::TooShort
        );
        assert_eq!(reveal("").unwrap_err(), RevealError::TooShort);
        // Like Go's non-strict decoder, unused bits of the last character may be set.
        assert_eq!(reveal("JFB4j0RQl_m9n4OTV799qh").unwrap().expose(), "");
        // Go's decoder skips line breaks.
        let wrapped = format!("{}\n{}", &OBSCURED[..20], &OBSCURED[20..]);
        assert_eq!(reveal(&wrapped).unwrap().expose(), CLEAR);
        // A flipped ciphertext bit flips one bit of the password: CTR, no integrity check.
        let flipped = reveal(&format!("{}A", &OBSCURED[..OBSCURED.len() - 1])).unwrap();
        assert_ne!(flipped.expose(), CLEAR);
        assert_eq!(flipped.expose().len(), CLEAR.len());
    }

    #[test]
    fn rclone_keys_become_native_keys() {
        let (native, warnings) = native_keys(&with_entry(&[(
            "rclone_mountid",
            "0b6d4fc2-2ca0-4a57-b0a7-2e1aa8a2a4a8",
        )]))
        .unwrap();
        assert_eq!(
            native,
            map(&[
                ("location", "koofr:///Documents"),
                ("provider", "other"),
                ("endpoint", "http://127.0.0.1:8080"),
                ("username", "me@example.com"),
                ("password", CLEAR),
                ("mount", "0b6d4fc2-2ca0-4a57-b0a7-2e1aa8a2a4a8"),
            ])
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        // Without rclone keys the map is unchanged and nothing is said.
        let plain = map(&[("location", "koofr:///"), ("password", "pw")]);
        assert_eq!(native_keys(&plain).unwrap(), (plain, vec![]));
    }

    #[test]
    fn providers_and_endpoints_as_rclone_sets_them() {
        let provider_of = |pairs: &[(&str, &str)]| {
            let (native, warnings) = native_keys(&map(pairs)).unwrap();
            (
                native.get("provider").cloned(),
                native.get("endpoint").cloned(),
                warnings.len(),
            )
        };
        const EXAMPLE: &str = "https://koofr.example.org";
        // Keys given, and the native provider and endpoint with the count of warnings.
        type Case = (&'static [(&'static str, &'static str)], Expected);
        type Expected = (Option<&'static str>, Option<&'static str>, usize);
        let cases: [Case; 9] = [
            // Provider given: koofr and digistorage use their own URL, whatever the endpoint.
            (&[("rclone_provider", "koofr")], (Some("koofr"), None, 0)),
            (
                &[("rclone_provider", "digistorage")],
                (Some("digistorage"), None, 0),
            ),
            (
                &[("rclone_provider", "koofr"), ("rclone_endpoint", EXAMPLE)],
                (Some("koofr"), None, 1),
            ),
            (
                &[("rclone_provider", "other"), ("rclone_endpoint", EXAMPLE)],
                (Some("other"), Some(EXAMPLE), 0),
            ),
            // rclone takes an unknown provider name as `other`.
            (
                &[("rclone_provider", "acme"), ("rclone_endpoint", EXAMPLE)],
                (Some("other"), Some(EXAMPLE), 0),
            ),
            // Old, provider-less configs: inferred from the endpoint (none: the default, koofr).
            (&[("rclone_user", "u")], (None, None, 0)),
            (
                &[("rclone_endpoint", "https://app.koofr.net/")],
                (Some("koofr"), None, 0),
            ),
            (
                &[("rclone_endpoint", "https://storage.rcs-rds.ro")],
                (Some("digistorage"), None, 0),
            ),
            (
                &[("rclone_endpoint", "http://127.0.0.1:9")],
                (Some("other"), Some("http://127.0.0.1:9"), 0),
            ),
        ];
        for (pairs, (provider, endpoint, warnings)) in cases {
            let expected = (
                provider.map(str::to_owned),
                endpoint.map(str::to_owned),
                warnings,
            );
            assert_eq!(provider_of(pairs), expected, "{pairs:?}");
        }
        // `other` without an endpoint.
        let e = native_keys(&map(&[("rclone_provider", "other")])).unwrap_err();
        assert_eq!(e.key, "rclone_endpoint");
        let (native, _) = native_keys(&map(&[
            ("rclone_provider", "other"),
            ("endpoint", "https://koofr.example.org"),
        ]))
        .unwrap();
        assert_eq!(native["provider"], "other");
    }

    #[test]
    fn native_keys_win_with_a_warning() {
        let (native, warnings) = native_keys(&map(&[
            ("username", "native@example.com"),
            ("password", "native-pw"),
            ("rclone_user", "rclone@example.com"),
            // Not even revealed: a native password makes it irrelevant.
            ("rclone_password", "not obscured at all"),
        ]))
        .unwrap();
        assert_eq!(native["username"], "native@example.com");
        assert_eq!(native["password"], "native-pw");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("`username`") && w.contains("`rclone_user`"))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("`password`") && w.contains("`rclone_password`"))
        );
        for warning in &warnings {
            for value in [
                "native@example.com",
                "native-pw",
                "rclone@example.com",
                "not obscured",
            ] {
                assert!(!warning.contains(value), "{warning}");
            }
        }
    }

    #[test]
    fn other_types_fail_and_other_keys_warn() {
        let e = native_keys(&map(&[("rclone_type", "s3"), ("rclone_user", "u")])).unwrap_err();
        assert_eq!(e.key, "rclone_type");
        assert!(e.to_string().contains("\"s3\""), "{e}");
        let (native, warnings) = native_keys(&map(&[
            ("rclone_type", "koofr"),
            ("rclone_user", "u"),
            ("rclone_setmtime", "false"),
            ("rclone_encoding", "Slash,Dot"),
            ("rclone_empty", ""),
        ]))
        .unwrap();
        assert!(
            native.keys().all(|k| !k.starts_with("rclone_")),
            "{native:?}"
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("`rclone_encoding`"), "{warnings:?}");
        assert!(warnings[1].contains("`rclone_setmtime`"), "{warnings:?}");
        assert!(!warnings.iter().any(|w| w.contains("Slash")));
    }

    #[test]
    fn an_imported_entry_configures_the_connectors() {
        let (config, warnings) =
            KoofrConfig::from_map(&with_entry(&[("rclone_setmtime", "false")]), &|_| None).unwrap();
        assert_eq!(config.location().as_str(), "/Documents");
        assert_eq!(config.endpoint().as_str(), "http://127.0.0.1:8080/");
        assert_eq!(config.username(), Some("me@example.com"));
        match config.auth() {
            AuthConfig::Basic { password, .. } => assert_eq!(password.expose(), CLEAR),
            other => panic!("{other:?}"),
        }
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("rclone_setmtime"), "{warnings:?}");
        let debug = format!("{config:?}");
        assert!(
            !debug.contains(CLEAR) && !debug.contains(OBSCURED),
            "{debug}"
        );
        let (config, _) = KoofrConfig::from_map(
            &map(&[
                ("location", "koofr:///"),
                ("rclone_type", "koofr"),
                ("rclone_provider", "digistorage"),
                ("rclone_user", "me@example.com"),
                ("rclone_password", OBSCURED),
            ]),
            &|_| None,
        )
        .unwrap();
        assert_eq!(config.host(), "storage.rcs-rds.ro");
        let e = KoofrConfig::from_map(
            &map(&[
                ("location", "koofr:///"),
                ("rclone_type", "koofr"),
                ("rclone_user", "me@example.com"),
                ("rclone_password", CLEAR),
            ]),
            &|_| None,
        )
        .unwrap_err();
        assert_eq!(e.key, "rclone_password");
        assert!(!e.to_string().contains(CLEAR), "{e}");
    }

    #[test]
    fn a_bad_obscured_password_is_named_and_never_shown() {
        for (bad, hint) in [
            ("my clear password", "not base64"),
            ("c2hvcnQ", "too short"),
            (RCLONE_MASK, "rclone config show"),
            ("JFB4j0RQl_m9n4OTV799qg", "empty"),
        ] {
            let e =
                native_keys(&map(&[("rclone_user", "u"), ("rclone_password", bad)])).unwrap_err();
            assert_eq!(e.key, "rclone_password", "{bad}");
            let message = e.to_string();
            assert!(message.contains(hint), "{message}");
            if bad != RCLONE_MASK {
                assert!(!message.contains(bad), "{message}");
            }
        }
    }
}
