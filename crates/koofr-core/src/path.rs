//! Typed Koofr paths: the server's §5.1 normalisation, name rules (§5.2, §5.4) and query encoding (§4.1).

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use unicode_normalization::UnicodeNormalization;

/// A path or name that Koofr would reject (or that the client refuses to send).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Koofr path or name {input:?}: {reason}")]
pub struct PathError {
    /// The offending input, as given.
    pub input: String,
    /// Why it is invalid.
    pub reason: &'static str,
}

fn path_error(input: &str, reason: &'static str) -> PathError {
    PathError {
        input: input.to_owned(),
        reason,
    }
}

/// A normalised absolute path inside a Koofr mount: starts with `/`, no trailing `/` (except
/// the root), no empty, `.` or `..` segments, every segment NFC without control characters.
///
/// Normalisation follows spec §5.1, except that control characters are stripped *before* NFC
/// composition so that normalising twice gives the same result (the server's order can leave a
/// decomposed sequence behind when a control character separated a base letter and its accent).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KoofrPath(String);

impl KoofrPath {
    /// The mount root `/`.
    pub fn root() -> KoofrPath {
        KoofrPath("/".to_owned())
    }

    /// Normalises `input` (spec §5.1): collapses `/` runs, adds the leading `/`, drops a
    /// trailing one, NFC per segment, strips C0/C1 controls; rejects `\`, `.` and `..`.
    pub fn parse(input: &str) -> Result<KoofrPath, PathError> {
        if input.contains('\\') {
            return Err(path_error(input, "backslashes are not allowed"));
        }
        let mut out = String::with_capacity(input.len() + 1);
        for raw in input.split('/').filter(|s| !s.is_empty()) {
            if raw == "." || raw == ".." {
                return Err(path_error(input, "`.` and `..` segments are not allowed"));
            }
            let segment = normalise_segment(raw);
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(path_error(
                    input,
                    "a segment is empty, `.` or `..` once control characters are removed",
                ));
            }
            out.push('/');
            out.push_str(&segment);
        }
        if out.is_empty() {
            out.push('/');
        }
        Ok(KoofrPath(out))
    }

    /// The path as sent to Koofr.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// Joins a relative (or `/`-prefixed, still relative) path below this one.
    pub fn join(&self, relative: &str) -> Result<KoofrPath, PathError> {
        if self.is_root() {
            return KoofrPath::parse(relative);
        }
        let rest = KoofrPath::parse(relative)?;
        if rest.is_root() {
            return Ok(self.clone());
        }
        Ok(KoofrPath(format!("{}{}", self.0, rest.0)))
    }

    /// Appends exactly one name, validated by [`validate_name`].
    pub fn child(&self, name: &str) -> Result<KoofrPath, PathError> {
        let name = validate_name(name)?;
        if self.is_root() {
            Ok(KoofrPath(format!("/{name}")))
        } else {
            Ok(KoofrPath(format!("{}/{name}", self.0)))
        }
    }

    /// The parent folder; `None` for the root.
    pub fn parent(&self) -> Option<KoofrPath> {
        self.split().map(|(parent, _)| parent)
    }

    /// The last segment; `""` for the root.
    pub fn name(&self) -> &str {
        match self.0.rfind('/') {
            Some(i) => &self.0[i + 1..],
            None => "",
        }
    }

    /// `(parent, name)`; `None` for the root.
    pub fn split(&self) -> Option<(KoofrPath, &str)> {
        if self.is_root() {
            return None;
        }
        let i = self.0.rfind('/').unwrap_or(0);
        let parent = if i == 0 {
            "/".to_owned()
        } else {
            self.0[..i].to_owned()
        };
        Some((KoofrPath(parent), &self.0[i + 1..]))
    }

    /// The segments from the root down (empty for the root).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// Every ancestor from the first segment down to `self` itself (excludes the root).
    pub fn ancestors_from_top(&self) -> Vec<KoofrPath> {
        let mut out = Vec::new();
        let mut current = String::new();
        for segment in self.segments() {
            current.push('/');
            current.push_str(segment);
            out.push(KoofrPath(current.clone()));
        }
        out
    }

    /// Koofr compares names case-insensitively (spec §5.3): the key under which two spellings
    /// of the same server path are equal.
    pub fn case_key(&self) -> String {
        self.0.to_lowercase()
    }

    /// True when `self` is `base` or lies below it (case-insensitive, segment-wise).
    pub fn is_within(&self, base: &KoofrPath) -> bool {
        is_key_within(&self.case_key(), &base.case_key())
    }

    /// The relative path of `self` below `base` (`""` when equal), case-insensitively.
    pub fn strip_prefix(&self, base: &KoofrPath) -> Option<&str> {
        if !self.is_within(base) {
            return None;
        }
        if base.is_root() {
            return Some(self.0.trim_start_matches('/'));
        }
        // Lowercasing can change byte lengths, so cut by segment count, not bytes.
        let depth = base.segments().count();
        let mut rest = self.0.as_str();
        for _ in 0..depth {
            rest = &rest[1..];
            rest = rest.find('/').map_or("", |i| &rest[i..]);
        }
        Some(rest.trim_start_matches('/'))
    }

    /// Refuses paths Koofr cannot store: names outside the Basic Multilingual Plane (spec §5.4).
    pub fn check_supported(&self) -> Result<(), PathError> {
        for segment in self.segments() {
            check_bmp(segment)?;
        }
        Ok(())
    }
}

/// True when case key `key` equals `base` or lies below it.
pub(crate) fn is_key_within(key: &str, base: &str) -> bool {
    if base == "/" {
        return true;
    }
    key == base || (key.starts_with(base) && key.as_bytes().get(base.len()) == Some(&b'/'))
}

impl fmt::Display for KoofrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KoofrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KoofrPath({:?})", self.0)
    }
}

impl std::str::FromStr for KoofrPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KoofrPath::parse(s)
    }
}

impl AsRef<str> for KoofrPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn is_stripped_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

fn normalise_segment(raw: &str) -> String {
    let stripped: String = raw.chars().filter(|c| !is_stripped_control(*c)).collect();
    stripped.nfc().collect()
}

fn check_bmp(name: &str) -> Result<(), PathError> {
    if name.chars().any(|c| u32::from(c) > 0xFFFF) {
        return Err(path_error(
            name,
            "Koofr does not support characters outside the Basic Multilingual Plane (e.g. emoji)",
        ));
    }
    Ok(())
}

/// Validates one file or folder name (spec §5.2, §5.4) and returns its NFC form.
/// Control characters are refused rather than stripped: the stored name would differ.
pub fn validate_name(name: &str) -> Result<String, PathError> {
    if name.is_empty() {
        return Err(path_error(name, "a name cannot be empty"));
    }
    if name == "." || name == ".." {
        return Err(path_error(name, "`.` and `..` are not valid names"));
    }
    if name.contains('/') || name.contains('\\') {
        return Err(path_error(name, "a name cannot contain `/` or `\\`"));
    }
    if name.chars().any(is_stripped_control) {
        return Err(path_error(name, "a name cannot contain control characters"));
    }
    check_bmp(name)?;
    Ok(name.nfc().collect())
}

/// Everything except the RFC 3986 unreserved characters is percent-encoded (spec §4.1), so the
/// result decodes the same under form and plain percent decoding (space is `%20`, `+` is `%2B`).
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a query value (or a URL path segment).
pub fn encode_component(value: &str) -> String {
    utf8_percent_encode(value, QUERY_ENCODE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        KoofrPath::parse(s).unwrap().as_str().to_owned()
    }

    #[test]
    fn normalises_spec_examples() {
        assert_eq!(p(""), "/");
        assert_eq!(p("/////"), "/");
        assert_eq!(p("a/b/c"), "/a/b/c");
        assert_eq!(p("/foo/"), "/foo");
        assert_eq!(p("//a///b"), "/a/b");
        assert_eq!(p("/a\u{0}b"), "/ab");
        assert_eq!(p("/a\u{9f}b"), "/ab");
        assert_eq!(p("/a\u{a0}b"), "/a\u{a0}b");
        assert_eq!(p("/s\u{30c}"), "/\u{161}");
        for bad in ["/foo/./bar", "/foo/..", "../x", "/a\\b", "/\u{2}/foo.txt"] {
            let err = KoofrPath::parse(bad).unwrap_err();
            assert_eq!(err.input, bad);
        }
    }

    #[test]
    fn join_parent_name_split() {
        let base = KoofrPath::parse("/backups/plakar").unwrap();
        let joined = base.join("/sub/x.bin").unwrap();
        assert_eq!(joined.as_str(), "/backups/plakar/sub/x.bin");
        assert_eq!(joined.name(), "x.bin");
        assert_eq!(joined.parent().unwrap().as_str(), "/backups/plakar/sub");
        assert_eq!(base.join("/").unwrap(), base);
        assert_eq!(KoofrPath::root().join("a").unwrap().as_str(), "/a");
        assert_eq!(
            KoofrPath::parse("/a").unwrap().parent().unwrap(),
            KoofrPath::root()
        );
        assert_eq!(KoofrPath::root().parent(), None);
        assert_eq!(KoofrPath::root().name(), "");
        assert_eq!(joined.strip_prefix(&base), Some("sub/x.bin"));
        assert_eq!(base.strip_prefix(&base), Some(""));
        assert_eq!(
            KoofrPath::parse("/BACKUPS/plakar/y")
                .unwrap()
                .strip_prefix(&base),
            Some("y")
        );
        assert!(
            !KoofrPath::parse("/backups/plakarx")
                .unwrap()
                .is_within(&base)
        );
        assert_eq!(joined.ancestors_from_top().len(), 4);
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("a b+c%d#e?f&g=h").is_ok());
        assert_eq!(validate_name("e\u{301}").unwrap(), "\u{e9}");
        for bad in ["", ".", "..", "a/b", "a\\b", "a\u{1}b", "a\u{7f}"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        let err = validate_name("ox \u{1F402}").unwrap_err();
        assert!(err.to_string().contains("ox \u{1F402}"), "{err}");
        assert!(err.to_string().contains("Basic Multilingual Plane"));
        assert!(
            KoofrPath::parse("/a/\u{1F402}")
                .unwrap()
                .check_supported()
                .is_err()
        );
    }

    #[test]
    fn query_encoding_escapes_reserved() {
        assert_eq!(
            encode_component("/a b+c&d=e#f%g?h"),
            "%2Fa%20b%2Bc%26d%3De%23f%25g%3Fh"
        );
        assert_eq!(encode_component("x-y_z.~"), "x-y_z.~");
        assert_eq!(encode_component("é"), "%C3%A9");
    }

    proptest::proptest! {
        #[test]
        fn normalisation_is_idempotent(input in "[a-zA-Z/ .\\u{0}-\\u{1f}\\u{80}-\\u{a0}\\u{300}-\\u{36f}éše]{0,24}") {
            if let Ok(once) = KoofrPath::parse(&input) {
                let twice = KoofrPath::parse(once.as_str()).unwrap();
                proptest::prop_assert_eq!(once, twice);
            }
        }

        #[test]
        fn join_and_split_round_trip(
            base in proptest::collection::vec("[a-zA-Z0-9 +%#&é]{1,8}", 0..4),
            name in "[a-zA-Z0-9 +%#&é.]{1,8}",
        ) {
            proptest::prop_assume!(name != "." && name != "..");
            let dir = KoofrPath::parse(&base.join("/")).unwrap();
            let child = dir.child(&name).unwrap();
            let (parent, last) = child.split().unwrap();
            proptest::prop_assert_eq!(&parent, &dir);
            proptest::prop_assert_eq!(parent.child(last).unwrap(), child.clone());
            proptest::prop_assert_eq!(dir.join(child.strip_prefix(&dir).unwrap()).unwrap(), child);
        }

        #[test]
        fn encoded_component_decodes_back(value in "\\PC{0,20}") {
            let encoded = encode_component(&value);
            let decoded = percent_encoding::percent_decode_str(&encoded).decode_utf8().unwrap();
            proptest::prop_assert_eq!(decoded, value.as_str());
            proptest::prop_assert!(!encoded.contains('+') && !encoded.contains(' '));
        }
    }
}
