//! Files as Plakar sees them: Go file modes, `FileInfo`, times, extended attributes and the
//! importer's records.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{ConnectorError, Result};
use crate::pb::plakar::connectors as pbc;

/// The constants of Go's `io/fs` mode bits, one `NAME = bit, "GoName";` a row.
macro_rules! go_mode_bits {
    ($($name:ident = $bit:literal, $go:literal;)*) => {
        $(
            #[doc = concat!("`", $go, "`.")]
            pub const $name: u32 = 1 << $bit;
        )*
    };
}

/// Go `io/fs.FileMode` bits (§8.1): type bits at the top, permissions in the low 9 bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileMode(pub u32);

impl FileMode {
    go_mode_bits! {
        DIR = 31, "ModeDir";
        APPEND = 30, "ModeAppend";
        EXCLUSIVE = 29, "ModeExclusive";
        TEMPORARY = 28, "ModeTemporary";
        SYMLINK = 27, "ModeSymlink";
        DEVICE = 26, "ModeDevice";
        NAMED_PIPE = 25, "ModeNamedPipe";
        SOCKET = 24, "ModeSocket";
        SETUID = 23, "ModeSetuid";
        SETGID = 22, "ModeSetgid";
        CHAR_DEVICE = 21, "ModeCharDevice";
        STICKY = 20, "ModeSticky";
        IRREGULAR = 19, "ModeIrregular";
    }
    /// `ModeType`: the bits that make an entry not a regular file.
    pub const TYPE_MASK: u32 = Self::DIR
        | Self::SYMLINK
        | Self::NAMED_PIPE
        | Self::SOCKET
        | Self::DEVICE
        | Self::CHAR_DEVICE
        | Self::IRREGULAR;
    /// `ModePerm`.
    pub const PERM_MASK: u32 = 0o777;

    /// A directory with permissions `perm`.
    pub const fn dir(perm: u32) -> Self {
        Self(Self::DIR | (perm & Self::PERM_MASK))
    }
    /// A regular file with permissions `perm`.
    pub const fn regular(perm: u32) -> Self {
        Self(perm & Self::PERM_MASK)
    }
    /// A symlink with permissions `perm`.
    pub const fn symlink(perm: u32) -> Self {
        Self(Self::SYMLINK | (perm & Self::PERM_MASK))
    }
    /// The directory bit is set.
    pub const fn is_dir(self) -> bool {
        self.0 & Self::DIR != 0
    }
    /// The symlink bit is set.
    pub const fn is_symlink(self) -> bool {
        self.0 & Self::SYMLINK != 0
    }
    /// No type bit is set.
    pub const fn is_regular(self) -> bool {
        self.0 & Self::TYPE_MASK == 0
    }
    /// The permission bits (`0o777` at most).
    pub const fn perm(self) -> u32 {
        self.0 & Self::PERM_MASK
    }
}

impl fmt::Debug for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_dir() {
            "dir"
        } else if self.is_symlink() {
            "symlink"
        } else if self.is_regular() {
            "file"
        } else {
            "other"
        };
        write!(f, "FileMode({kind} {:#o}, {:#010x})", self.perm(), self.0)
    }
}

/// File metadata (proto `FileInfo`), with `mod_time` as a [`SystemTime`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Base name: the last element of the pathname (`/` for the root).
    pub name: String,
    /// Size in bytes (0 for directories, -1 unknown).
    pub size: i64,
    /// Go file mode.
    pub mode: FileMode,
    /// Modification time.
    pub mod_time: SystemTime,
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Owner id.
    pub uid: u64,
    /// Group id.
    pub gid: u64,
    /// Link count.
    pub nlink: u32,
    /// Owner name.
    pub username: String,
    /// Group name.
    pub groupname: String,
    /// OS-specific flags.
    pub flags: u32,
}

impl FileInfo {
    /// A regular file's info; other fields zero.
    pub fn file(name: impl Into<String>, size: i64, perm: u32, mod_time: SystemTime) -> Self {
        Self::with_mode(name, size, FileMode::regular(perm), mod_time)
    }
    /// A directory's info (size 0); other fields zero.
    pub fn directory(name: impl Into<String>, perm: u32, mod_time: SystemTime) -> Self {
        Self::with_mode(name, 0, FileMode::dir(perm), mod_time)
    }
    /// Info with the given mode; other fields zero.
    pub fn with_mode(
        name: impl Into<String>,
        size: i64,
        mode: FileMode,
        mod_time: SystemTime,
    ) -> Self {
        Self {
            name: name.into(),
            size,
            mode,
            mod_time,
            dev: 0,
            ino: 0,
            uid: 0,
            gid: 0,
            nlink: 0,
            username: String::new(),
            groupname: String::new(),
            flags: 0,
        }
    }

    /// The proto message.
    pub fn to_proto(&self) -> pbc::FileInfo {
        self.into()
    }

    /// From the proto message (a missing time is the Unix epoch).
    pub fn from_proto(info: &pbc::FileInfo) -> Self {
        info.into()
    }
}

/// The generated `FileInfo`, which both protocols send (a missing time is the Unix epoch).
impl From<&FileInfo> for pbc::FileInfo {
    fn from(info: &FileInfo) -> pbc::FileInfo {
        Self {
            name: info.name.clone(),
            size: info.size,
            mode: info.mode.0,
            mod_time: Some(system_time_to_timestamp(info.mod_time)),
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

impl From<&pbc::FileInfo> for FileInfo {
    fn from(info: &pbc::FileInfo) -> FileInfo {
        FileInfo {
            name: info.name.clone(),
            size: info.size,
            mode: FileMode(info.mode),
            mod_time: info
                .mod_time
                .as_ref()
                .map_or(UNIX_EPOCH, timestamp_to_system_time),
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

/// A time from Unix milliseconds (Koofr's unit, §8.2).
pub fn time_from_unix_millis(ms: i64) -> SystemTime {
    system_time_from_parts(
        ms.div_euclid(1000),
        (ms.rem_euclid(1000) * 1_000_000) as i32,
    )
}

/// Unix milliseconds of a time (truncated towards negative infinity).
pub fn unix_millis(time: SystemTime) -> i64 {
    let ts = system_time_to_timestamp(time);
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

fn system_time_from_parts(seconds: i64, nanos: i32) -> SystemTime {
    let nanos = nanos.clamp(0, 999_999_999) as u32;
    if seconds >= 0 {
        UNIX_EPOCH + Duration::new(seconds as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
            + Duration::from_nanos(u64::from(nanos))
    }
}

/// The protobuf timestamp of a time.
pub fn system_time_to_timestamp(time: SystemTime) -> prost_types::Timestamp {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => prost_types::Timestamp {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        },
        Err(before) => {
            let d = before.duration();
            let mut seconds = -(d.as_secs() as i64);
            let mut nanos = d.subsec_nanos() as i32;
            if nanos > 0 {
                seconds -= 1;
                nanos = 1_000_000_000 - nanos;
            }
            prost_types::Timestamp { seconds, nanos }
        }
    }
}

/// The time of a protobuf timestamp.
pub fn timestamp_to_system_time(ts: &prost_types::Timestamp) -> SystemTime {
    system_time_from_parts(ts.seconds, ts.nanos)
}

/// Extended attribute kind, by wire number (the proto names are off by one, §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrType {
    /// Wire 0: an ordinary extended attribute.
    #[default]
    Extended,
    /// Wire 1: an NTFS alternate data stream.
    Ads,
    /// Wire 2: a custom attribute.
    Custom,
}

impl XattrType {
    pub(crate) fn to_proto(self) -> i32 {
        match self {
            XattrType::Extended => 0,
            XattrType::Ads => 1,
            XattrType::Custom => 2,
        }
    }
    pub(crate) fn from_proto(value: i32) -> Self {
        match value {
            1 => XattrType::Ads,
            2 => XattrType::Custom,
            _ => XattrType::Extended,
        }
    }
}

/// One importer/exporter record: a file, directory, symlink, xattr, or an error for a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute `/`-separated pathname.
    pub pathname: String,
    /// Metadata; present iff this is neither an error nor an xattr record.
    pub file_info: Option<FileInfo>,
    /// Non-empty: this is an error record for `pathname`.
    pub error: Option<String>,
    /// Content follows or can be opened.
    pub has_reader: bool,
    /// Symlink target.
    pub target: String,
    /// This is an extended attribute of `pathname`.
    pub is_xattr: bool,
    /// Attribute name (xattr records).
    pub xattr_name: String,
    /// Attribute kind (xattr records).
    pub xattr_type: XattrType,
    /// Names of this file's extended attributes.
    pub extended_attributes: Vec<String>,
    /// Windows file attributes.
    pub file_attributes: u32,
}

impl Record {
    fn bare(pathname: String) -> Self {
        Self {
            pathname,
            file_info: None,
            error: None,
            has_reader: false,
            target: String::new(),
            is_xattr: false,
            xattr_name: String::new(),
            xattr_type: XattrType::Extended,
            extended_attributes: Vec::new(),
            file_attributes: 0,
        }
    }
    /// A regular file record with content (`has_reader`).
    pub fn file(pathname: impl Into<String>, info: FileInfo) -> Self {
        Self {
            has_reader: true,
            file_info: Some(info),
            ..Self::bare(pathname.into())
        }
    }
    /// A directory record.
    pub fn directory(pathname: impl Into<String>, info: FileInfo) -> Self {
        Self {
            file_info: Some(info),
            ..Self::bare(pathname.into())
        }
    }
    /// A record of any other kind (no content).
    pub fn entry(pathname: impl Into<String>, info: FileInfo) -> Self {
        Self {
            file_info: Some(info),
            ..Self::bare(pathname.into())
        }
    }
    /// An error record: the path could not be read (the scan goes on).
    pub fn error(pathname: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: Some(message.into()),
            ..Self::bare(pathname.into())
        }
    }
    /// Whether this is an error record.
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }

    /// The proto message.
    pub fn to_proto(&self) -> pbc::Record {
        pbc::Record {
            has_reader: self.has_reader,
            pathname: self.pathname.clone(),
            error: self.error.clone().unwrap_or_default(),
            is_xattr: self.is_xattr,
            xattr_name: self.xattr_name.clone(),
            xattr_type: self.xattr_type.to_proto(),
            target: self.target.clone(),
            file_info: self.file_info.as_ref().map(FileInfo::to_proto),
            extended_attributes: self.extended_attributes.clone(),
            file_attributes: self.file_attributes,
        }
    }

    /// From the proto message.
    pub fn from_proto(record: &pbc::Record) -> Self {
        Self {
            pathname: record.pathname.clone(),
            file_info: record.file_info.as_ref().map(FileInfo::from_proto),
            error: (!record.error.is_empty()).then(|| record.error.clone()),
            has_reader: record.has_reader,
            target: record.target.clone(),
            is_xattr: record.is_xattr,
            xattr_name: record.xattr_name.clone(),
            xattr_type: XattrType::from_proto(record.xattr_type),
            extended_attributes: record.extended_attributes.clone(),
            file_attributes: record.file_attributes,
        }
    }

    /// Checks the §4.3 validity rule plakar enforces: a non-error, non-xattr record has info.
    pub fn validate(&self) -> Result<()> {
        if self.error.is_none() && !self.is_xattr && self.file_info.is_none() {
            return Err(ConnectorError::invalid_input(format!(
                "invalid record {}: missing fileinfo",
                self.pathname
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_modes_follow_go_bits() {
        assert_eq!(FileMode::dir(0o700).0, 2_147_484_096);
        assert_eq!(FileMode::regular(0o600).0, 384);
        assert!(FileMode(0o644).is_regular());
        assert!(!FileMode::dir(0o755).is_regular());
        assert!(FileMode::dir(0o755).is_dir());
        assert!(FileMode::symlink(0o777).is_symlink());
        assert_eq!(
            FileMode(0o040755).perm(),
            0o755,
            "POSIX S_IFDIR is not a Go dir bit"
        );
        assert!(!FileMode(0o040755).is_dir());
    }

    #[test]
    fn times_round_trip_through_timestamps_and_millis() {
        for ms in [0i64, 1, 999, 1_700_000_000_123, -1, -1001] {
            let t = time_from_unix_millis(ms);
            assert_eq!(unix_millis(t), ms);
            let ts = system_time_to_timestamp(t);
            assert!((0..1_000_000_000).contains(&ts.nanos));
            assert_eq!(timestamp_to_system_time(&ts), t);
        }
        let ts = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_789,
        };
        assert_eq!(system_time_to_timestamp(timestamp_to_system_time(&ts)), ts);
    }

    #[test]
    fn record_round_trips_through_proto() {
        let info = FileInfo::file("a.txt", 5, 0o600, time_from_unix_millis(1234));
        let rec = Record::file("/x/a.txt", info);
        assert_eq!(Record::from_proto(&rec.to_proto()), rec);
        let err = Record::error("/x/b", "denied");
        assert_eq!(Record::from_proto(&err.to_proto()), err);
        assert!(
            Record {
                file_info: None,
                ..rec
            }
            .validate()
            .is_err()
        );
        assert!(err.validate().is_ok());
    }
}
