//! The Plakar exporter connector for Koofr: restores snapshot records into a Koofr folder.
//!
//! [`KoofrExporter`] implements [`kloset_plugin::Exporter`] on top of [`koofr_core::Client`]; the
//! `koofr-exporter` binary serves it over stdin/stdout with kloset-plugin's generic exporter
//! pipelining (several uploads in flight, bounded by the client's `concurrency` setting).
//!
//! * `Init` checks the endpoint, the credentials and the mount with one request, so a restore
//!   that cannot work fails before its first record; refused credentials or a full account met
//!   later end the export with that error instead of failing it record by record.
//! * Folders are ensured with the client's cached, race-tolerant `create_folder_all`, so a file
//!   restored into an existing folder costs one request (the upload).
//! * Files are uploaded in overwrite mode with the snapshot's modification time; koofr-core checks
//!   the size and MD5 Koofr reports. Small files are replayable (retried on 5xx/429); large ones
//!   stream straight through.
//! * What Koofr cannot store (symlinks, devices, sockets, pipes, names outside the Basic
//!   Multilingual Plane, names that differ only in case or Unicode spelling from one restored
//!   earlier in the same folder) gets an error result naming why; the restore goes on.
//!
//! [`testkit`] holds the kloset-plugin exporter-suite fixture for this connector.

mod exporter;
mod names;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use exporter::{KoofrExporter, REPLAYABLE_MAX};
pub use koofr_core::plakar::connector_error;
