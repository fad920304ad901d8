//! The pathname sanitiser every exporter uses, so hostile records cannot escape the root.

use crate::error::{ConnectorError, Result};

/// Splits an absolute record pathname into its segments below the destination root.
///
/// `/` maps to the root itself (no segments). Refuses relative paths, empty segments (`//`, a
/// trailing `/`), `.` and `..`, backslashes and NUL characters, so that joining the segments to
/// the root can never name anything outside it.
pub fn safe_relative_path(pathname: &str) -> Result<Vec<String>> {
    let refuse = |why: &str| {
        Err(ConnectorError::invalid_input(format!(
            "refusing pathname {pathname:?}: {why}"
        )))
    };
    let Some(rest) = pathname.strip_prefix('/') else {
        return refuse("not absolute");
    };
    if pathname.contains('\\') {
        return refuse("contains a backslash");
    }
    if pathname.contains('\0') {
        return refuse("contains a NUL character");
    }
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut segments = Vec::new();
    for segment in rest.split('/') {
        match segment {
            "" => return refuse("empty segment"),
            "." | ".." => return refuse("dot segment"),
            _ => segments.push(segment.to_owned()),
        }
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_clean_paths_and_maps_root_to_nothing() {
        assert_eq!(safe_relative_path("/").unwrap(), Vec::<String>::new());
        assert_eq!(
            safe_relative_path("/a/b c/d.txt").unwrap(),
            ["a", "b c", "d.txt"]
        );
        assert_eq!(safe_relative_path("/...").unwrap(), ["..."]);
    }

    #[test]
    fn refuses_hostile_paths() {
        for bad in [
            "", "a/b", "/a/../b", "/..", "/./a", "/a//b", "/a/", "/a\\b", "/..\\x", "/a\0b", "//",
        ] {
            let err = safe_relative_path(bad).unwrap_err();
            assert!(
                err.message().contains("refusing pathname"),
                "{bad:?}: {err}"
            );
        }
    }

    proptest! {
        #[test]
        fn accepted_segments_never_escape(path in "[/a.\\\\]{0,12}") {
            if let Ok(segments) = safe_relative_path(&path) {
                for s in &segments {
                    prop_assert!(!s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\\'));
                }
                let rebuilt = format!("/{}", segments.join("/"));
                prop_assert_eq!(rebuilt, path);
            }
        }
    }
}
