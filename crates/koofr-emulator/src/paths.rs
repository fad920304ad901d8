//! Koofr path normalisation (spec §5.1), name rules (§5.2, §5.4), child keys (§5.3) and
//! autorename candidates (§5.5).

use unicode_normalization::UnicodeNormalization;

/// Why a path or a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The path breaks §5.1 (backslash, `.`/`..` segment, or a segment empty after stripping).
    InvalidPath,
    /// The name breaks §5.2 or §5.4.
    InvalidName,
}

/// True for the code points that §5.1 step 5 deletes: U+0000–U+001F and U+007F–U+009F.
pub fn is_stripped_control(c: char) -> bool {
    matches!(c as u32, 0x00..=0x1F | 0x7F..=0x9F)
}

/// True for a code point outside the Basic Multilingual Plane (a 4-byte UTF-8 sequence).
pub fn is_non_bmp(c: char) -> bool {
    (c as u32) > 0xFFFF
}

/// Normalises a `path` parameter per §5.1 and returns its segments (empty for the root).
pub fn normalize_path(raw: &str) -> Result<Vec<String>, NameError> {
    if raw.contains('\\') {
        return Err(NameError::InvalidPath);
    }
    let mut segments = Vec::new();
    for raw_segment in raw.split('/') {
        if raw_segment.is_empty() {
            continue;
        }
        if raw_segment == "." || raw_segment == ".." {
            return Err(NameError::InvalidPath);
        }
        let stripped: String = raw_segment
            .nfc()
            .filter(|c| !is_stripped_control(*c))
            .collect();
        // Stripping can leave a combining mark next to its base (`s\0\u{30c}`); composing
        // again keeps the result NFC, so normalisation is idempotent.
        let segment: String = stripped.nfc().collect();
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(NameError::InvalidPath);
        }
        segments.push(segment);
    }
    Ok(segments)
}

/// Joins segments back into a Koofr path (`/` for the root).
pub fn join_path(segments: &[String]) -> String {
    if segments.is_empty() {
        return "/".to_string();
    }
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        out.push_str(segment);
    }
    out
}

/// Validates a single name (folder-create `name`, rename `name`, upload `filename`, the last
/// segment of a copy/move destination) and returns its NFC form.
///
/// Control characters are rejected rather than stripped: Koofr's fake rejects C0 and DEL, and
/// the emulator extends that to C1 so a name never silently changes ([I]).
pub fn validate_name(raw: &str, reject_non_bmp: bool) -> Result<String, NameError> {
    let name: String = raw.nfc().collect();
    if name.is_empty() || name == "." || name == ".." {
        return Err(NameError::InvalidName);
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || is_stripped_control(c))
    {
        return Err(NameError::InvalidName);
    }
    if reject_non_bmp && name.chars().any(is_non_bmp) {
        return Err(NameError::InvalidName);
    }
    Ok(name)
}

/// The child key of a name: `lowercase(NFC(name))` with full Unicode lowercase (§5.3).
pub fn child_key(name: &str) -> String {
    name.nfc().collect::<String>().to_lowercase()
}

/// The `n`-th autorename candidate (§5.5): `name (n).ext`, split at the last dot.
///
/// A name whose only dot is its first character (`.hidden`) has no extension ([I]).
pub fn autorename_candidate(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{} ({n}){}", &name[..dot], &name[dot..]),
        _ => format!("{name} ({n})"),
    }
}

/// The content type derived from the lower-cased extension (§5.6).
pub fn content_type_for(name: &str) -> &'static str {
    let ext = match name.rfind('.') {
        Some(dot) if dot > 0 => name[dot + 1..].to_lowercase(),
        _ => return "application/octet-stream",
    };
    match ext.as_str() {
        "txt" => "text/plain",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "pdf" => "application/pdf",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "zip" => "application/zip",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        assert_eq!(join_path(&normalize_path("").unwrap()), "/");
        assert_eq!(join_path(&normalize_path("/////").unwrap()), "/");
        assert_eq!(join_path(&normalize_path("a/b/c").unwrap()), "/a/b/c");
        assert_eq!(join_path(&normalize_path("/foo/").unwrap()), "/foo");
        assert_eq!(join_path(&normalize_path("//a///b").unwrap()), "/a/b");
        assert_eq!(join_path(&normalize_path("/a\u{0}b").unwrap()), "/ab");
        assert_eq!(join_path(&normalize_path("/a\u{9f}b").unwrap()), "/ab");
        assert_eq!(
            join_path(&normalize_path("/a\u{a0}b").unwrap()),
            "/a\u{a0}b"
        );
        assert_eq!(join_path(&normalize_path("/s\u{30c}").unwrap()), "/\u{161}");
        assert_eq!(
            join_path(&normalize_path("/s\u{0}\u{30c}").unwrap()),
            "/\u{161}"
        );
        for bad in ["/foo/./bar", "/foo/..", "../x", "/a\\b", "/\u{2}/foo.txt"] {
            assert_eq!(normalize_path(bad), Err(NameError::InvalidPath), "{bad:?}");
        }
    }

    #[test]
    fn autorename_examples() {
        assert_eq!(autorename_candidate("foo.bar.baz", 1), "foo.bar (1).baz");
        assert_eq!(autorename_candidate("noext", 1), "noext (1)");
        assert_eq!(autorename_candidate("a.txt", 2), "a (2).txt");
        assert_eq!(autorename_candidate(".hidden", 1), ".hidden (1)");
    }

    #[test]
    fn names() {
        assert!(validate_name("ok name.txt", true).is_ok());
        assert!(validate_name("🐂", true).is_err());
        assert!(validate_name("🐂", false).is_ok());
        assert!(validate_name("a/b", false).is_err());
        assert!(validate_name("..", false).is_err());
        assert!(validate_name("a\u{7f}", false).is_err());
        assert_eq!(child_key("Hello.DOC"), "hello.doc");
        assert_ne!(child_key("c"), child_key("č"));
        assert_eq!(child_key("s\u{30c}"), child_key("\u{160}"));
    }
}
