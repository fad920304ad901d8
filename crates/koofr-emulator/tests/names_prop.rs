//! Property tests for path normalisation (§5.1) and name rules (§5.2–§5.5).

use koofr_emulator::paths::{
    NameError, autorename_candidate, child_key, is_non_bmp, is_stripped_control, join_path,
    normalize_path, validate_name,
};
use proptest::prelude::*;

/// Path-ish strings: separators, dots, backslashes, controls, combining marks, case, emoji.
fn pathish() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("/".to_string()),
        Just("//".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("\\".to_string()),
        Just("\u{0}".to_string()),
        Just("\u{1f}".to_string()),
        Just("\u{7f}".to_string()),
        Just("\u{9f}".to_string()),
        Just("\u{a0}".to_string()),
        Just("s\u{30c}".to_string()),
        Just("\u{30c}".to_string()),
        Just("Š".to_string()),
        Just("🐂".to_string()),
        "[a-zA-Z0-9 ._-]{1,6}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(pieces, 0..10).prop_map(|v| v.concat())
}

/// True if `path` is a valid normalised Koofr path.
fn is_normalised(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains('\\')
        && path[1..].split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && !segment.chars().any(is_stripped_control)
                && unicode_normalization::is_nfc(segment)
        })
}

proptest! {
    #[test]
    fn normalisation_is_idempotent_and_yields_valid_paths(raw in pathish()) {
        if let Ok(segments) = normalize_path(&raw) {
            let path = join_path(&segments);
            prop_assert!(is_normalised(&path), "{raw:?} -> {path:?}");
            let again = normalize_path(&path).expect("a normalised path stays valid");
            prop_assert_eq!(join_path(&again), path);
        } else {
            // Rejections only happen for the §5.1 reasons.
            let has_dot_segment = raw.split('/').any(|s| s == "." || s == "..");
            let stripped_bad = raw.split('/').any(|s| {
                let kept: String = s.chars().filter(|c| !is_stripped_control(*c)).collect();
                !s.is_empty() && (kept.is_empty() || kept == "." || kept == "..")
            });
            prop_assert!(raw.contains('\\') || has_dot_segment || stripped_bad, "{raw:?} rejected");
        }
    }

    #[test]
    fn valid_names_are_single_clean_segments(raw in pathish(), reject in any::<bool>()) {
        match validate_name(&raw, reject) {
            Ok(name) => {
                prop_assert!(!name.is_empty() && name != "." && name != "..");
                prop_assert!(!name.contains('/') && !name.contains('\\'));
                prop_assert!(!name.chars().any(is_stripped_control));
                prop_assert!(!reject || !name.chars().any(is_non_bmp));
                // A valid name is also a valid one-segment path, unchanged.
                let path = join_path(&normalize_path(&format!("/{name}")).unwrap());
                prop_assert_eq!(path, format!("/{name}"));
                prop_assert_eq!(validate_name(&name, reject), Ok(name.clone()));
            }
            Err(e) => prop_assert_eq!(e, NameError::InvalidName),
        }
    }

    #[test]
    fn keys_are_case_insensitive_and_nfc_insensitive(name in "[a-zA-ZčČšŠ]{1,8}") {
        prop_assert_eq!(child_key(&name.to_uppercase()), child_key(&name.to_lowercase()));
        let nfd: String = unicode_normalization::UnicodeNormalization::nfd(name.as_str()).collect();
        prop_assert_eq!(child_key(&nfd), child_key(&name));
    }

    #[test]
    fn autorename_candidates_are_distinct_and_keep_the_extension(
        base in "[a-z]{1,6}", ext in proptest::option::of("[a-z]{1,3}"), n in 1u32..50,
    ) {
        let name = match &ext { Some(e) => format!("{base}.{e}"), None => base.clone() };
        let candidate = autorename_candidate(&name, n);
        prop_assert_ne!(&candidate, &name);
        if let Some(e) = &ext {
            prop_assert_eq!(candidate.clone(), format!("{base} ({n}).{e}"));
        }
        prop_assert_ne!(candidate, autorename_candidate(&name, n + 1));
    }
}
