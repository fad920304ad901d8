//! The compact per-file index a scan keeps so that `Open` can verify content against the
//! listing and refuse pathnames the scan never announced.
//!
//! Memory: one hash-table slot per listed file, keyed by a 64-bit keyed hash of the pathname
//! (the pathname string itself is not kept): 8 bytes of key + 32 bytes of [`Listed`] + 1 control
//! byte = 41 bytes per file, about 47 at the table's maximum load and up to about 94 just after
//! it doubled. A million files therefore cost roughly 45–90 MiB. Folders (and error records)
//! only have their 8-byte pathname hash remembered (9–18 bytes each), so that a listing that
//! broke off and restarted never sends them twice.
//!
//! Two pathnames sharing a 64-bit hash (odds about 2.7 × 10⁻⁸ for a million files) make one of
//! them fail at `Open` with a "changed since listing" error rather than read wrong metadata.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Mutex;

/// What the scan listed for one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// Size in bytes.
    pub size: u64,
    /// Koofr's `modified` (ms).
    pub modified: i64,
    /// MD5 of the content; all zeros = unknown (Koofr sent no hash).
    pub md5: [u8; 16],
}

impl Listed {
    /// The entry of a listed Koofr file.
    pub fn of(info: &koofr_core::FileInfo) -> Listed {
        let mut md5 = [0u8; 16];
        if let Some(hash) = &info.hash
            && hex::decode_to_slice(hash, &mut md5).is_err()
        {
            md5 = [0; 16];
        }
        Listed {
            size: info.size,
            modified: info.modified,
            md5,
        }
    }

    /// The MD5, when Koofr listed one.
    pub fn md5(&self) -> Option<[u8; 16]> {
        (self.md5 != [0; 16]).then_some(self.md5)
    }

    /// Whether `current` (what a download reports now) is the version that was listed.
    pub fn matches(&self, current: &koofr_core::FileInfo) -> bool {
        let now = Listed::of(current);
        self.size == now.size
            && self.modified == now.modified
            && match (self.md5(), now.md5()) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// The keys are already uniformly distributed hashes: use them as they are.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in for completeness.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Listed files by pathname hash; shared by the scan (writer) and `Open` (reader).
pub struct FileIndex {
    keys: RandomState,
    files: Mutex<HashMap<u64, Listed, BuildHasherDefault<IdentityHasher>>>,
    /// Pathname hashes of the other records sent by this scan.
    others: Mutex<HashSet<u64, BuildHasherDefault<IdentityHasher>>>,
}

impl std::fmt::Debug for FileIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileIndex")
            .field("files", &self.len())
            .finish()
    }
}

impl Default for FileIndex {
    fn default() -> Self {
        FileIndex {
            keys: RandomState::new(),
            files: Mutex::default(),
            others: Mutex::default(),
        }
    }
}

impl FileIndex {
    fn key(&self, pathname: &str) -> u64 {
        self.keys.hash_one(pathname)
    }

    /// Records a listed file.
    pub fn insert(&self, pathname: &str, listed: Listed) {
        let key = self.key(pathname);
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, listed);
    }

    /// What the scan listed at `pathname`, if it announced a file there.
    pub fn get(&self, pathname: &str) -> Option<Listed> {
        let key = self.key(pathname);
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied()
    }

    /// Remembers that a record without content (a folder, an error) was sent for `pathname`;
    /// false if it already was.
    pub fn mark_sent(&self, pathname: &str) -> bool {
        let key = self.key(pathname);
        self.others
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key)
    }

    /// Forgets everything (a new scan starts).
    pub fn clear(&self) {
        *self.files.lock().unwrap_or_else(|e| e.into_inner()) = HashMap::default();
        *self.others.lock().unwrap_or_else(|e| e.into_inner()) = HashSet::default();
    }

    /// Number of indexed files.
    pub fn len(&self) -> usize {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no file is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use koofr_core::FileKind;

    fn info(size: u64, modified: i64, hash: Option<&str>) -> koofr_core::FileInfo {
        koofr_core::FileInfo {
            name: "f".to_owned(),
            kind: FileKind::File,
            modified,
            size,
            content_type: String::new(),
            hash: hash.map(str::to_owned),
        }
    }

    #[test]
    fn entries_are_compact_and_found_by_pathname() {
        assert_eq!(std::mem::size_of::<Listed>(), 32);
        let index = FileIndex::default();
        let md5 = "900150983cd24fb0d6963f7d28e17f72";
        index.insert("/a/b.txt", Listed::of(&info(3, 9, Some(md5))));
        let got = index.get("/a/b.txt").unwrap();
        assert_eq!(hex::encode(got.md5().unwrap()), md5);
        assert!(index.get("/a/B.txt").is_none());
        assert_eq!(index.len(), 1);
        assert!(index.mark_sent("/a") && !index.mark_sent("/a"));
        index.clear();
        assert!(index.is_empty());
        assert!(index.mark_sent("/a"), "a new scan starts afresh");
    }

    #[test]
    fn version_matching_uses_size_time_and_known_hashes() {
        let listed = Listed::of(&info(3, 9, Some("900150983cd24fb0d6963f7d28e17f72")));
        assert!(listed.matches(&info(
            3,
            9,
            Some("900150983CD24FB0D6963F7D28E17F72".to_lowercase().as_str())
        )));
        assert!(
            listed.matches(&info(3, 9, None)),
            "an unknown hash is not a mismatch"
        );
        assert!(!listed.matches(&info(4, 9, None)));
        assert!(!listed.matches(&info(3, 10, None)));
        assert!(!listed.matches(&info(3, 9, Some("00000000000000000000000000000001"))));
        assert_eq!(Listed::of(&info(1, 1, Some("not hex"))).md5(), None);
    }
}
