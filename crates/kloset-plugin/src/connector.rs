//! The three connector traits (store, importer, exporter) a Plakar plugin implements.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::types::{
    ByteRange, FileInfo, LocationInfo, Mac, ObjectKey, Record, Resource, StoreMode,
};

/// A stream of byte chunks (any size; the serve layer re-chunks to ≤ 1 MiB and drops empties).
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// A stream of importer records; an `Err` item is fatal for the whole scan.
pub type RecordStream = BoxStream<'static, Result<Record>>;

/// A kloset store (protocol §7). Every method may run concurrently with the others.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Origin, type, root and flags, answered by `Init`.
    fn location(&self) -> LocationInfo;
    /// Creates the kloset and stores `config` byte for byte; fails if one already exists.
    async fn create(&self, config: Bytes) -> Result<()>;
    /// The exact bytes given to `create`; a missing kloset is an error.
    async fn open(&self) -> Result<Bytes>;
    /// A cheap authenticated request proving the remote works.
    async fn ping(&self) -> Result<()>;
    /// Access mode, from memory: never do I/O here.
    fn mode(&self) -> StoreMode {
        StoreMode::READ_WRITE
    }
    /// Bytes used, or -1 if unknown.
    async fn size(&self) -> Result<i64> {
        Ok(-1)
    }
    /// The MACs of all objects of `resource` (names that are not MACs skipped, no duplicates).
    async fn list(&self, resource: Resource) -> Result<Vec<Mac>>;
    /// Stores `data` under `key`, overwriting atomically; returns the byte count. An `Err` in
    /// `data` must leave nothing new readable (the previous version stays).
    async fn put(&self, key: ObjectKey, data: ByteStream) -> Result<u64>;
    /// The object, or exactly `range.length` bytes from `range.offset` (fewer only at the end of
    /// the object; an offset at or past the end is an error that is not "not found").
    async fn get(&self, key: ObjectKey, range: Option<ByteRange>) -> Result<ByteStream>;
    /// Removes the object.
    async fn delete(&self, key: ObjectKey) -> Result<()>;
    /// Releases resources; not guaranteed to be called.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// A backup source (protocol §5).
#[async_trait]
pub trait Importer: Send + Sync + 'static {
    /// Origin, type, root and flags, answered by `Init`.
    fn location(&self) -> LocationInfo;
    /// A cheap authenticated request proving the remote works.
    async fn ping(&self) -> Result<()>;
    /// Lists the tree under the root as records, produced as the listing proceeds. Per-path
    /// problems are error records ([`Record::error`]); an `Err` item aborts the scan.
    async fn scan(&self) -> Result<RecordStream>;
    /// The current content of a file announced by the scan.
    async fn open(&self, pathname: &str) -> Result<ByteStream>;
    /// Releases resources; not guaranteed to be called.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// A restore destination (protocol §6). Pathnames are absolute and re-rooted: `/` is the
/// destination root. Use [`crate::safe_relative_path`] to map them.
#[async_trait]
pub trait Exporter: Send + Sync + 'static {
    /// Origin, type, root and flags, answered by `Init`.
    fn location(&self) -> LocationInfo;
    /// A cheap authenticated request proving the remote works.
    async fn ping(&self) -> Result<()>;
    /// How many calls the serve layer may run at once (parents still finish before children).
    fn max_in_flight(&self) -> usize {
        1
    }
    /// Ensures the directory exists (`/` = the root itself).
    async fn create_directory(&self, pathname: &str, info: &FileInfo) -> Result<()>;
    /// Uploads a regular file. `content` yields an `Err` if the transfer was cut short: abort
    /// then, leaving no partial file in place of a previous one.
    async fn store_file(&self, pathname: &str, info: &FileInfo, content: ByteStream) -> Result<()>;
    /// Any other record (symlink, device, xattr): the connector decides; skipping is `Ok`.
    async fn other(&self, record: &Record) -> Result<()> {
        let _ = record;
        Ok(())
    }
    /// Releases resources; not guaranteed to be called.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
