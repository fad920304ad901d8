//! The kloset state the host writes: for every record its path and full `FileInfo`, and for
//! files the MD5 and the (packfile MAC, offset, length) pieces of the content; serialised as
//! JSON, named by its SHA-256.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use kloset_plugin::{FileInfo, FileMode, Mac, system_time_to_timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Format version of [`Snapshot`].
pub const SNAPSHOT_VERSION: u32 = 1;

/// A `FileInfo` with every field Plakar compares (§8.4), the time to the nanosecond.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInfo {
    pub name: String,
    pub size: i64,
    pub mode: u32,
    pub mtime_seconds: i64,
    pub mtime_nanos: i32,
    pub dev: u64,
    pub ino: u64,
    pub uid: u64,
    pub gid: u64,
    pub nlink: u32,
    pub username: String,
    pub groupname: String,
    pub flags: u32,
}

impl From<&FileInfo> for StoredInfo {
    fn from(info: &FileInfo) -> StoredInfo {
        let time = system_time_to_timestamp(info.mod_time);
        StoredInfo {
            name: info.name.clone(),
            size: info.size,
            mode: info.mode.0,
            mtime_seconds: time.seconds,
            mtime_nanos: time.nanos,
            dev: info.dev,
            ino: info.ino,
            uid: info.uid,
            gid: info.gid,
            nlink: info.nlink,
            username: info.username.clone(),
            groupname: info.groupname.clone(),
            flags: info.flags,
        }
    }
}

impl StoredInfo {
    /// The `FileInfo` again.
    pub fn to_file_info(&self) -> FileInfo {
        FileInfo {
            name: self.name.clone(),
            size: self.size,
            mode: FileMode(self.mode),
            mod_time: self.mod_time(),
            dev: self.dev,
            ino: self.ino,
            uid: self.uid,
            gid: self.gid,
            nlink: self.nlink,
            username: self.username.clone(),
            groupname: self.groupname.clone(),
            flags: self.flags,
        }
    }

    /// The modification time.
    pub fn mod_time(&self) -> SystemTime {
        let nanos = Duration::from_nanos(self.mtime_nanos.clamp(0, 999_999_999) as u64);
        if self.mtime_seconds >= 0 {
            UNIX_EPOCH + Duration::from_secs(self.mtime_seconds as u64) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(self.mtime_seconds.unsigned_abs()) + nanos
        }
    }

    /// Whether Plakar would take the file as unchanged (§8.4: every field but `flags`; a size
    /// of -1 is not compared).
    pub fn unchanged_from(&self, earlier: &StoredInfo) -> bool {
        self.name == earlier.name
            && (self.size == earlier.size || self.size == -1 || earlier.size == -1)
            && self.mode == earlier.mode
            && self.mtime_seconds == earlier.mtime_seconds
            && self.mtime_nanos == earlier.mtime_nanos
            && self.dev == earlier.dev
            && self.ino == earlier.ino
            && self.uid == earlier.uid
            && self.gid == earlier.gid
            && self.nlink == earlier.nlink
            && self.username == earlier.username
            && self.groupname == earlier.groupname
    }
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
    /// Its metadata.
    pub info: StoredInfo,
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
        self.entries
            .iter()
            .filter(|e| FileMode(e.info.mode).is_regular())
    }
}
