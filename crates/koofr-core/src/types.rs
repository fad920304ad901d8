//! Koofr's JSON objects (spec §6) as the client returns them: files, mounts, users, listing items.

use serde::{Deserialize, Deserializer, Serialize};

use crate::path::KoofrPath;

/// Whether a [`FileInfo`] is a file or a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// A regular file.
    #[serde(rename = "file")]
    File,
    /// A folder.
    #[serde(rename = "dir")]
    Dir,
}

/// Koofr's "File" object (spec §6.1). Unknown fields (such as `tags`) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Stored name (case as created); `""` for the mount root.
    #[serde(default)]
    pub name: String,
    /// File or folder.
    #[serde(rename = "type")]
    pub kind: FileKind,
    /// Modification time, milliseconds since the Unix epoch (ignore it for folders).
    #[serde(default)]
    pub modified: i64,
    /// Size in bytes; 0 for folders.
    #[serde(default)]
    pub size: u64,
    /// MIME type derived from the extension (do not depend on it).
    #[serde(default, rename = "contentType")]
    pub content_type: String,
    /// Lower-case hex MD5 of the content; `None` when unknown (absent or empty).
    #[serde(
        default,
        deserialize_with = "non_empty_lowercase",
        skip_serializing_if = "Option::is_none"
    )]
    pub hash: Option<String>,
}

impl FileInfo {
    /// True for folders.
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }
    /// True for files.
    pub fn is_file(&self) -> bool {
        self.kind == FileKind::File
    }
    /// Whether `other` describes the same content version (size, modified time, known hashes).
    pub fn same_version(&self, other: &FileInfo) -> bool {
        self.size == other.size
            && self.modified == other.modified
            && match (&self.hash, &other.hash) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

fn non_empty_lowercase<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value: Option<String> = Option::deserialize(d)?;
    Ok(value
        .filter(|h| !h.is_empty())
        .map(|h| h.to_ascii_lowercase()))
}

/// A mount (spec §6.2); only the fields the project needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Mount {
    /// Mount id (a UUID).
    pub id: String,
    /// Display name, e.g. `Koofr`.
    #[serde(default)]
    pub name: String,
    /// `device`, `export` or `import`.
    #[serde(default, rename = "type")]
    pub mount_type: String,
    /// Whether this is the user's primary mount.
    #[serde(default, rename = "isPrimary")]
    pub is_primary: bool,
    /// Whether the device is online, when reported.
    #[serde(default)]
    pub online: Option<bool>,
    /// Total space in MiB, when reported.
    #[serde(default, rename = "spaceTotal")]
    pub space_total_mib: Option<u64>,
    /// Used space in MiB, when reported.
    #[serde(default, rename = "spaceUsed")]
    pub space_used_mib: Option<u64>,
}

const MIB: u64 = 1024 * 1024;

impl Mount {
    /// Total space in bytes, when reported.
    pub fn total_bytes(&self) -> Option<u64> {
        self.space_total_mib.map(|m| m.saturating_mul(MIB))
    }
    /// Used space in bytes, when reported.
    pub fn used_bytes(&self) -> Option<u64> {
        self.space_used_mib.map(|m| m.saturating_mul(MIB))
    }
    /// Free space in bytes, when reported.
    pub fn free_bytes(&self) -> Option<u64> {
        Some(self.total_bytes()?.saturating_sub(self.used_bytes()?))
    }
}

/// The current user (spec §6.3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    /// User id.
    pub id: String,
    /// First name.
    #[serde(default, rename = "firstName")]
    pub first_name: String,
    /// Last name.
    #[serde(default, rename = "lastName")]
    pub last_name: String,
    /// Account e-mail.
    #[serde(default)]
    pub email: String,
}

/// One item of a recursive listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListEntry {
    /// A file or folder; `path` is absolute (the listed folder joined with Koofr's relative path).
    File {
        /// Absolute path inside the mount.
        path: KoofrPath,
        /// The item.
        info: FileInfo,
    },
    /// An error the server reported in the stream (it ends the listing).
    Error {
        /// The item concerned, when the server named one.
        path: Option<KoofrPath>,
        /// Koofr's error code.
        code: String,
        /// Koofr's message.
        message: String,
    },
}

/// `{"mounts":[…]}` (`/mounts`) or `{"places":[…]}` (v2.1 `/places`).
#[derive(Deserialize)]
pub(crate) struct MountList {
    #[serde(default)]
    mounts: Vec<Mount>,
    #[serde(default)]
    places: Vec<Mount>,
}

impl MountList {
    pub(crate) fn into_mounts(self) -> Vec<Mount> {
        if self.mounts.is_empty() {
            self.places
        } else {
            self.mounts
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct FileList {
    pub files: Vec<FileInfo>,
}

#[derive(Deserialize)]
pub(crate) struct ApiErrorBody {
    pub error: ApiErrorDetail,
}

#[derive(Deserialize)]
pub(crate) struct ApiErrorDetail {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// One NDJSON line of `files/listrecursive`.
#[derive(Deserialize)]
pub(crate) struct RecursiveItem {
    #[serde(rename = "type")]
    pub item_type: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub file: Option<FileInfo>,
    #[serde(default)]
    pub error: Option<ApiErrorDetail>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spec_examples() {
        let f: FileInfo = serde_json::from_str(
            r#"{"name":"report.pdf","type":"file","modified":1591868314156,"size":52311,
 "contentType":"application/pdf","hash":"D05374DC381D9B52806446A71C8E79B1","tags":{},"extra":1}"#,
        )
        .unwrap();
        assert!(f.is_file());
        assert_eq!(f.hash.as_deref(), Some("d05374dc381d9b52806446a71c8e79b1"));
        let d: FileInfo = serde_json::from_str(
            r#"{"name":"Documents","type":"dir","modified":1,"size":0,"contentType":"","hash":""}"#,
        )
        .unwrap();
        assert!(d.is_dir());
        assert_eq!(d.hash, None);
        let m: Mount = serde_json::from_str(
            r#"{"id":"9fd6","name":"Koofr","type":"device","isPrimary":true,"spaceTotal":10240,"spaceUsed":17,"online":true}"#,
        )
        .unwrap();
        assert_eq!(m.total_bytes(), Some(10240 * MIB));
        assert_eq!(m.free_bytes(), Some((10240 - 17) * MIB));
    }
}
