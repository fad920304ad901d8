//! The names restored in this run, per folder, by their Koofr key `lowercase(NFC(name))`.
//!
//! Koofr folders are case-insensitive and treat NFC and NFD spellings as one name, so two
//! records that differ only that way would land on the same remote file: the second would
//! overwrite the first. The first spelling claimed in a folder wins; any other spelling of the
//! same key (as a name, or as a folder on the way to a record) is refused.

use std::collections::HashMap;
use std::sync::Mutex;

use kloset_plugin::{ConnectorError, Result};
use unicode_normalization::UnicodeNormalization;

/// Koofr's key for a name: equal keys are the same remote entry.
pub(crate) fn name_key(name: &str) -> String {
    name.nfc().collect::<String>().to_lowercase()
}

/// Folder key (the keys of its segments joined by `/`) → name key → spelling restored.
#[derive(Debug, Default)]
pub(crate) struct RestoredNames {
    folders: Mutex<HashMap<String, HashMap<String, String>>>,
}

/// A claimed name; [`Claim::release`] gives it up again when its restore failed.
#[derive(Debug)]
pub(crate) struct Claim {
    /// Folder key and name key of the last segment, when this claim inserted it.
    inserted: Option<(String, String)>,
}

impl RestoredNames {
    /// Claims every segment of `segments` (a record's path below the root) in its folder.
    /// Fails when a segment is already claimed in this run with a different spelling.
    pub(crate) fn claim(&self, pathname: &str, segments: &[String]) -> Result<Claim> {
        let mut folders = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        // Check every level first so that a refused record claims nothing.
        let mut folder_key = String::new();
        let mut planned = Vec::with_capacity(segments.len());
        for (depth, segment) in segments.iter().enumerate() {
            let key = name_key(segment);
            if let Some(existing) = folders.get(&folder_key).and_then(|names| names.get(&key))
                && existing != segment
            {
                let what = if depth + 1 == segments.len() {
                    "its name"
                } else {
                    "its folder"
                };
                return Err(ConnectorError::invalid_input(format!(
                    "{pathname}: not restored: {what} {segment:?} differs only in case or Unicode \
                     spelling from {existing:?}, restored earlier in the same folder, and Koofr \
                     cannot store both (names are case-insensitive); the first one is kept"
                )));
            }
            planned.push((folder_key.clone(), key.clone()));
            if !folder_key.is_empty() {
                folder_key.push('/');
            }
            folder_key.push_str(&key);
        }
        let mut inserted = None;
        let last = planned.len().saturating_sub(1);
        for (i, ((folder, key), segment)) in planned.into_iter().zip(segments).enumerate() {
            let names = folders.entry(folder.clone()).or_default();
            if !names.contains_key(&key) {
                names.insert(key.clone(), segment.clone());
                if i == last {
                    inserted = Some((folder, key));
                }
            }
        }
        Ok(Claim { inserted })
    }

    /// Gives up a claim whose restore failed, so that a later spelling may still be restored.
    pub(crate) fn release(&self, claim: Claim) {
        if let Some((folder, key)) = claim.inserted {
            let mut folders = self.folders.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(names) = folders.get_mut(&folder) {
                names.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn first_spelling_wins_per_folder() {
        let names = RestoredNames::default();
        names.claim("/Docs/a.txt", &segs("/Docs/a.txt")).unwrap();
        names
            .claim("/Docs/a.txt", &segs("/Docs/a.txt"))
            .expect("same spelling again is fine");
        let err = names
            .claim("/Docs/A.TXT", &segs("/Docs/A.TXT"))
            .unwrap_err();
        assert!(
            err.message().contains("\"A.TXT\"") && err.message().contains("\"a.txt\""),
            "{err}"
        );
        let err = names
            .claim("/docs/b.txt", &segs("/docs/b.txt"))
            .unwrap_err();
        assert!(err.message().contains("its folder \"docs\""), "{err}");
        // Same name in another folder is independent.
        names.claim("/Other/A.TXT", &segs("/Other/A.TXT")).unwrap();
    }

    #[test]
    fn nfc_and_nfd_spellings_collide() {
        let names = RestoredNames::default();
        let nfc = "/caf\u{e9}.txt";
        let nfd = "/cafe\u{301}.txt";
        names.claim(nfc, &segs(nfc)).unwrap();
        assert!(names.claim(nfd, &segs(nfd)).is_err());
    }

    #[test]
    fn released_claims_free_the_name() {
        let names = RestoredNames::default();
        let claim = names.claim("/x/a", &segs("/x/a")).unwrap();
        names.release(claim);
        names
            .claim("/x/A", &segs("/x/A"))
            .expect("the failed spelling was released");
        // The folder claimed on the way stays.
        assert!(names.claim("/X/b", &segs("/X/b")).is_err());
    }
}
