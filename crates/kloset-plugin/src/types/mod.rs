//! Protocol values in Rust terms (stored objects, files and records, locations, options) and
//! their proto conversions.

mod file;
mod object;

pub use file::*;
pub use object::*;

use std::collections::HashMap;
use std::fmt;

/// Store access mode bits (§7.3): write = 2, read = 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreMode(pub i32);

impl StoreMode {
    /// Write access.
    pub const WRITE: StoreMode = StoreMode(2);
    /// Read access.
    pub const READ: StoreMode = StoreMode(4);
    /// Read and write: the normal answer.
    pub const READ_WRITE: StoreMode = StoreMode(6);
}

/// Storage hint flags (newest proto revision); a bit set, unknown bits ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StorageFlags(pub u32);

impl StorageFlags {
    /// A "hot" packfile.
    pub const HOT: StorageFlags = StorageFlags(1);
    /// Whether the hot bit is set.
    pub fn is_hot(self) -> bool {
        self.0 & 1 != 0
    }
}

/// Location flag bits of `InitResponse.flags` (§8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocationFlags;

impl LocationFlags {
    /// The location is a local path.
    pub const LOCALFS: u32 = 1;
    /// The kloset is one file.
    pub const FILE: u32 = 2;
    /// The importer cannot run `Import` twice (no statistics process).
    pub const STREAM: u32 = 4;
    /// The importer wants acks (always on over gRPC).
    pub const NEEDACK: u32 = 8;
    /// Sources cannot be merged.
    pub const NOMERGE: u32 = 16;
    /// The exporter wants xattr records.
    pub const EXPORTXATTR: u32 = 32;
}

/// What `Init` answers: origin, type, root and location flags (§8.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocationInfo {
    /// Where the data lives; stable across runs.
    pub origin: String,
    /// Connector type name (never `fs` or `ptar`).
    pub r#type: String,
    /// Absolute path of the location inside the remote.
    pub root: String,
    /// [`LocationFlags`] bits.
    pub flags: u32,
}

/// The importer/exporter `Init` options sent by plakar.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// Hostname of the machine running plakar.
    pub hostname: String,
    /// Go GOOS of plakar.
    pub os: String,
    /// Go GOARCH of plakar.
    pub arch: String,
    /// plakar's working directory.
    pub cwd: String,
    /// plakar's `-concurrency` (a hint; often 1 on small machines).
    pub max_concurrency: i64,
    /// Exclusion patterns (plakar applies them too).
    pub excludes: Vec<String>,
    /// Extended attributes are not wanted.
    pub no_xattr: bool,
}

/// What a connector factory receives from `Init`.
#[derive(Clone, Default)]
pub struct InitContext {
    /// The URL scheme the connector was chosen for.
    pub proto: String,
    /// The configuration map (may hold secrets: never log it).
    pub config: HashMap<String, String>,
    /// Options (importer and exporter only).
    pub options: Option<Options>,
}

impl fmt::Debug for InitContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Config values may be passwords: show only the keys.
        let mut keys: Vec<&String> = self.config.keys().collect();
        keys.sort();
        f.debug_struct("InitContext")
            .field("proto", &self.proto)
            .field("config_keys", &keys)
            .field("options", &self.options)
            .finish()
    }
}
