//! The kloset state the host writes: for every record its path and full `FileInfo`, and for
//! files the MD5 and the (packfile MAC, offset, length) pieces of the content; serialised as
//! JSON, named by its SHA-256.

use std::collections::HashMap;

use anyhow::Context;
use kloset_plugin::{FileInfo, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Format version of [`Snapshot`].
pub const SNAPSHOT_VERSION: u32 = 2;

/// Whether Plakar would take a file whose info is `now` as unchanged since `earlier` (§8.4:
/// every field but `flags`; a size of -1 is not compared).
pub fn unchanged(now: &FileInfo, earlier: &FileInfo) -> bool {
    now.name == earlier.name
        && (now.size == earlier.size || now.size == -1 || earlier.size == -1)
        && now.mode == earlier.mode
        && now.mod_time == earlier.mod_time
        && now.dev == earlier.dev
        && now.ino == earlier.ino
        && now.uid == earlier.uid
        && now.gid == earlier.gid
        && now.nlink == earlier.nlink
        && now.username == earlier.username
        && now.groupname == earlier.groupname
}

/// A piece of a file's content inside a packfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// The packfile's MAC, 64 hex characters.
    pub packfile: String,
    /// Offset inside the packfile.
    pub offset: u64,
    /// Length in bytes.
    pub length: u32,
}

impl Piece {
    /// The packfile MAC.
    pub fn mac(&self) -> anyhow::Result<Mac> {
        Mac::from_name(&self.packfile)
            .with_context(|| format!("piece names an invalid packfile MAC {:?}", self.packfile))
    }
}

/// One record of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Absolute pathname as the importer sent it.
    pub pathname: String,
    /// Its metadata (the time to the nanosecond).
    pub info: FileInfo,
    /// Lowercase hex MD5 of the content (files).
    pub md5: Option<String>,
    /// Where the content is, in order (files).
    pub pieces: Vec<Piece>,
}

/// What the importer reported at `Init` (§8.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub r#type: String,
    pub origin: String,
    pub root: String,
}

/// The state object: a snapshot's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub source: SourceInfo,
    pub created_ms: i64,
    /// Entries sorted by pathname (so parents come before children).
    pub entries: Vec<IndexEntry>,
}

impl Snapshot {
    /// The serialised bytes and their MAC (SHA-256).
    pub fn encode(&self) -> anyhow::Result<(Vec<u8>, Mac)> {
        let bytes = serde_json::to_vec(self).context("serialising the snapshot index")?;
        let mac = Mac(Sha256::digest(&bytes).into());
        Ok((bytes, mac))
    }

    /// Parses a state object, checking that its SHA-256 is `mac`.
    pub fn decode(bytes: &[u8], mac: &Mac) -> anyhow::Result<Snapshot> {
        let actual = Mac(Sha256::digest(bytes).into());
        anyhow::ensure!(
            actual == *mac,
            "state {mac} has SHA-256 {actual}: the object is corrupt"
        );
        serde_json::from_slice(bytes).with_context(|| format!("parsing state {mac}"))
    }

    /// Entries by pathname.
    pub fn by_path(&self) -> HashMap<&str, &IndexEntry> {
        self.entries
            .iter()
            .map(|e| (e.pathname.as_str(), e))
            .collect()
    }

    /// Regular files.
    pub fn files(&self) -> impl Iterator<Item = &IndexEntry> {
        self.entries.iter().filter(|e| e.info.mode.is_regular())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use kloset_plugin::{FileMode, time_from_unix_millis};

    use super::*;

    /// Every field Plakar compares survives the JSON of a state object, times before 1970 and
    /// nanoseconds included, and a changed byte is refused.
    #[test]
    fn a_snapshot_keeps_every_field_and_refuses_a_changed_byte() {
        let mut info = FileInfo::file("a.txt", 5, 0o640, time_from_unix_millis(-1_500));
        (
            info.dev, info.ino, info.uid, info.gid, info.nlink, info.flags,
        ) = (1, 2, 3, 4, 5, 6);
        (info.username, info.groupname) = ("ana".to_owned(), "staff".to_owned());
        let later = FileInfo::directory("d", 0o700, UNIX_EPOCH + Duration::new(1, 999_999_999));
        let entry = |pathname: &str, info: &FileInfo| IndexEntry {
            pathname: pathname.to_owned(),
            info: info.clone(),
            md5: None,
            pieces: Vec::new(),
        };
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            source: SourceInfo {
                r#type: "koofr".to_owned(),
                origin: "app.koofr.net".to_owned(),
                root: "/".to_owned(),
            },
            created_ms: 7,
            entries: vec![entry("/a.txt", &info), entry("/d", &later)],
        };
        let (bytes, mac) = snapshot.encode().unwrap();
        let decoded = Snapshot::decode(&bytes, &mac).unwrap();
        assert_eq!(decoded, snapshot);
        assert_eq!(decoded.entries[1].info.mode, FileMode::dir(0o700));
        assert!(unchanged(&decoded.entries[0].info, &info));
        let mut changed = bytes.clone();
        changed[10] ^= 1;
        assert!(Snapshot::decode(&changed, &mac).is_err());
    }

    /// A file is unchanged when all but its flags match; a size of -1 matches any size.
    #[test]
    fn unchanged_ignores_flags_and_unknown_sizes_only() {
        let info = FileInfo::file("a", 5, 0o600, time_from_unix_millis(1_000));
        let mut other = info.clone();
        other.flags = 9;
        assert!(unchanged(&other, &info));
        other.size = -1;
        assert!(unchanged(&other, &info));
        other.mod_time += Duration::from_nanos(1);
        assert!(!unchanged(&other, &info));
    }
}
