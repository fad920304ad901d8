//! The Plakar importer connector for Koofr (backing up a Koofr folder) and its plugin binary `koofr-importer`.
//!
//! The crate is thin: the protocol lives in `kloset-plugin`, Koofr knowledge in `koofr-core`.
//!
//! * [`KoofrImporter`] implements [`kloset_plugin::Importer`]. A scan is **one** streamed
//!   `files/listrecursive` request; records go out as listing lines arrive. Only when Koofr refuses
//!   the recursive listing before streaming (koofr-core's `Unsupported`: 400, 405, 501, e.g. on
//!   some connected external mounts) does it walk the tree folder by folder with `files/list`.
//!   A listing that breaks off mid-stream (dropped connection, stall) is requested again,
//!   skipping what was already sent.
//! * Records: the ancestors of the root up to `/` (directories with the constant time
//!   [`ANCESTOR_TIME`]), the root, then every folder and file with absolute pathnames below the
//!   location. Modes are fixed Go `fs.FileMode` values, as the rclone integration uses
//!   (protocol spec §8.1): files [`FILE_MODE`] (`0o600` = 384), folders [`DIR_MODE`]
//!   (`ModeDir|0o700` = 2147484096). Size and Koofr's `modified` (milliseconds, converted exactly)
//!   complete the `FileInfo`; every other field is zero, so an unchanged file yields an identical
//!   `FileInfo` on every scan and Plakar never downloads it again.
//! * Content is downloaded by `Open`, lazily (the request starts when the stream is first
//!   polled), under the client's concurrency limit, and verified against the size and MD5 the
//!   scan listed (see [`index`] for the per-file memory cost). While plakar's `Open`s follow the
//!   scan order, [`readahead`] downloads the next small files ahead of them, within a budget.
//! * Configuration: every key of `koofr_core::config`, plus those of [`config`] (`stream`,
//!   `readahead_mib`, `readahead_file_mib`).

pub mod config;
pub mod importer;
pub mod index;
pub mod readahead;
pub mod records;
mod scan;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::SourceConfig;
pub use importer::KoofrImporter;
pub use records::{ANCESTOR_TIME, DIR_MODE, FILE_MODE};
