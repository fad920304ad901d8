//! Koofr metadata → Plakar records: fixed modes, exact times, name checks, error records.
//!
//! Every `FileInfo` field is a pure function of Koofr's metadata (name, size, `modified`) and
//! constants, so an unchanged file looks identical on every scan (protocol spec §8.4).

use std::time::{SystemTime, UNIX_EPOCH};

use kloset_plugin::{FileInfo, FileMode, Record, time_from_unix_millis};
use koofr_core::{KoofrPath, validate_name};

/// Mode of every file: `0o600` (384), as the rclone integration (spec §8.1).
pub const FILE_MODE: FileMode = FileMode::regular(0o600);

/// Mode of every folder: `ModeDir|0o700` (2147484096), as the rclone integration (spec §8.1).
pub const DIR_MODE: FileMode = FileMode::dir(0o700);

/// Time of the ancestors of the root, which are not listed: a constant, so they never differ
/// between scans.
pub const ANCESTOR_TIME: SystemTime = UNIX_EPOCH;

/// The base name Plakar expects for `path` (`/` for the mount root).
pub fn base_name(path: &KoofrPath) -> &str {
    if path.is_root() { "/" } else { path.name() }
}

/// The `FileInfo` of a Koofr file or folder, named `name`.
pub fn file_info(name: &str, info: &koofr_core::FileInfo) -> FileInfo {
    let mod_time = time_from_unix_millis(info.modified);
    if info.is_dir() {
        FileInfo::with_mode(name, 0, DIR_MODE, mod_time)
    } else {
        // Koofr sizes fit in i64; saturate rather than wrap on a corrupt answer.
        let size = i64::try_from(info.size).unwrap_or(i64::MAX);
        FileInfo::with_mode(name, size, FILE_MODE, mod_time)
    }
}

/// Directory records for every ancestor of `root` from `/` down (the root itself excluded).
pub fn ancestor_records(root: &KoofrPath) -> Vec<Record> {
    let mut out = vec![];
    if root.is_root() {
        return out;
    }
    out.push(Record::directory(
        "/",
        FileInfo::with_mode("/", 0, DIR_MODE, ANCESTOR_TIME),
    ));
    let ancestors = root.ancestors_from_top();
    for ancestor in &ancestors[..ancestors.len() - 1] {
        let info = FileInfo::with_mode(ancestor.name(), 0, DIR_MODE, ANCESTOR_TIME);
        out.push(Record::directory(ancestor.as_str(), info));
    }
    out
}

/// The record of the location's own folder (named after the configured path, whatever case
/// Koofr stores, so that the name always matches the pathname).
pub fn root_record(root: &KoofrPath, info: &koofr_core::FileInfo) -> Record {
    Record::directory(root.as_str(), file_info(base_name(root), info))
}

/// The record of one listed item below the root: a file, a folder, or an error record when
/// Plakar could not accept its name.
pub fn entry_record(path: &KoofrPath, info: &koofr_core::FileInfo) -> Record {
    let name = match validate_name(&info.name) {
        Ok(name) => name,
        Err(e) => {
            return Record::error(
                path.as_str(),
                format!(
                    "Koofr name {:?} cannot be backed up: {}",
                    info.name, e.reason
                ),
            );
        }
    };
    if name != path.name() {
        // E.g. a name holding `/` or control characters, which Koofr's path rules rewrote.
        return Record::error(
            path.as_str(),
            format!(
                "Koofr name {:?} does not match its listed path {:?}; skipped",
                info.name,
                path.as_str()
            ),
        );
    }
    let file_info = file_info(&name, info);
    if info.is_dir() {
        Record::directory(path.as_str(), file_info)
    } else {
        Record::file(path.as_str(), file_info)
    }
}

/// The error record for an error line of a listing (or a folder the walk could not list).
pub fn listing_error_record(
    root: &KoofrPath,
    path: Option<&KoofrPath>,
    code: &str,
    message: &str,
) -> Record {
    let at = path.unwrap_or(root);
    let code = if code.is_empty() {
        String::new()
    } else {
        format!(" ({code})")
    };
    Record::error(
        at.as_str(),
        format!("Koofr could not list {}: {message}{code}", at.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use koofr_core::FileKind;

    fn koofr(name: &str, kind: FileKind, size: u64, modified: i64) -> koofr_core::FileInfo {
        koofr_core::FileInfo {
            name: name.to_owned(),
            kind,
            modified,
            size,
            content_type: String::new(),
            hash: None,
        }
    }

    #[test]
    fn modes_times_and_sizes_follow_the_spec() {
        assert_eq!(FILE_MODE.0, 384);
        assert_eq!(DIR_MODE.0, 2_147_484_096);
        let path = KoofrPath::parse("/Photos/2024/a.jpg").unwrap();
        let r = entry_record(
            &path,
            &koofr("a.jpg", FileKind::File, 12, 1_591_868_314_156),
        );
        assert!(r.has_reader && !r.is_error());
        let info = r.file_info.unwrap();
        assert_eq!(
            (info.name.as_str(), info.size, info.mode),
            ("a.jpg", 12, FILE_MODE)
        );
        let ts = kloset_plugin::system_time_to_timestamp(info.mod_time);
        assert_eq!((ts.seconds, ts.nanos), (1_591_868_314, 156_000_000));
        let dir = entry_record(
            &KoofrPath::parse("/Photos/2024").unwrap(),
            &koofr("2024", FileKind::Dir, 0, 5),
        );
        assert!(!dir.has_reader);
        assert_eq!(dir.file_info.unwrap().mode, DIR_MODE);
    }

    #[test]
    fn ancestors_and_root_are_named_by_their_path() {
        let root = KoofrPath::parse("/Photos/2024").unwrap();
        let names: Vec<(String, String)> = ancestor_records(&root)
            .into_iter()
            .map(|r| (r.pathname, r.file_info.unwrap().name))
            .collect();
        assert_eq!(
            names,
            [
                ("/".to_owned(), "/".to_owned()),
                ("/Photos".to_owned(), "Photos".to_owned())
            ]
        );
        assert!(ancestor_records(&KoofrPath::root()).is_empty());
        let r = root_record(&KoofrPath::root(), &koofr("", FileKind::Dir, 0, 7));
        assert_eq!(
            (r.pathname.as_str(), r.file_info.unwrap().name.as_str()),
            ("/", "/")
        );
        // The configured spelling wins over the stored one, so name == base name.
        let r = root_record(
            &KoofrPath::parse("/photos").unwrap(),
            &koofr("Photos", FileKind::Dir, 0, 7),
        );
        assert_eq!(r.file_info.unwrap().name, "photos");
    }

    #[test]
    fn junk_names_become_error_records() {
        let parent = KoofrPath::parse("/d").unwrap();
        for (listed_path, name) in [
            ("/d/x", ""),
            ("/d/x", "."),
            ("/d/x", ".."),
            ("/d/a/b", "a/b"),
            ("/d/ab", "a\u{1}b"),
            ("/d/other", "name"),
        ] {
            let path = parent.join(listed_path.trim_start_matches("/d/")).unwrap();
            let r = entry_record(&path, &koofr(name, FileKind::File, 1, 1));
            assert!(
                r.is_error() && r.file_info.is_none() && !r.has_reader,
                "{name:?}: {r:?}"
            );
            assert!(
                r.error.as_deref().unwrap().contains(&format!("{name:?}")),
                "{r:?}"
            );
            r.validate().unwrap();
        }
    }

    #[test]
    fn listing_errors_name_the_path() {
        let root = KoofrPath::parse("/r").unwrap();
        let sub = KoofrPath::parse("/r/sub").unwrap();
        let r = listing_error_record(&root, Some(&sub), "Other", "boom");
        assert_eq!(r.pathname, "/r/sub");
        assert!(r.error.unwrap().contains("boom (Other)"));
        assert_eq!(listing_error_record(&root, None, "", "x").pathname, "/r");
    }
}
