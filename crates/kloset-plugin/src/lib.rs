//! Plakar connector plugins in Rust: protocol v2 (plakar 1.1.x) and v1 (plakar 1.0.x), stdio
//! gRPC serving, a host and conformance suites.
//!
//! A connector implements one of the traits [`Store`], [`Importer`] or [`Exporter`] and its
//! binary calls [`serve_store`], [`serve_importer`] or [`serve_exporter`] with an async factory
//! that builds the connector from the `Init` configuration. The [`host`] module drives a plugin
//! (a child process or an in-process server) exactly as plakar v1.1.x does, and its clients
//! implement the same traits, so the conformance suites run unchanged against both.
//!
//! Features (both off by default, so a plugin binary carries neither):
//! * `suites`: the `suites` module, the conformance suites and the fixture transport that
//!   reaches a connector directly, over an in-process pipe or as a plugin binary;
//! * `reference`: the `reference` module (in-memory and directory reference connectors that
//!   pass every suite, and their fixtures) and the `kloset-reference-plugin` binary; enables
//!   `suites`.
//!
//! Crates enable them where they use them: in `[dev-dependencies]` for tests, in
//! `[dependencies]` for tools that run the suites (`cargo xtask conformance`). Cargo unifies
//! features across one build, so a workspace-wide build turns them on for everything it builds;
//! `cargo build -p <connector> --bin <plugin>` builds the plugin without them.
//!
//! ```no_run
//! // A store plugin serving the reference store (`reference` feature).
//! use kloset_plugin::reference::{ReferenceStore, backend_from_config};
//! use kloset_plugin::{InitContext, init_logging, serve_store};
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     init_logging(); // stderr only: stdout carries the gRPC stream
//!     serve_store(|ctx: InitContext| async move {
//!         // Parse and validate ctx.config here; an error reaches plakar as the message.
//!         let (backend, root) = backend_from_config(&ctx)?;
//!         Ok(ReferenceStore::new(backend, &root))
//!     })
//!     .await
//! }
//! ```
//!
//! Protocol facts this crate enforces (see the Plakar protocol v2 notes): chunks are at most
//! 1 MiB and never empty, no message exceeds 4 MiB, `Init` comes first (other calls fail with
//! `FAILED_PRECONDITION`), `Import` stays open after `finished` until plakar half-closes,
//! export results echo their record in full, a [fatal](ConnectorError::fatal) error ends an
//! export instead of failing record by record, and calls still running when plakar closes the
//! plugin's input get up to 10 s to finish before the plugin exits.

pub mod host;
pub mod pb;
#[cfg(feature = "reference")]
pub mod reference;
pub mod serve;
#[cfg(feature = "suites")]
pub mod suites;

mod connector;
mod error;
mod messages;
mod path;
mod protocol;
mod types;

pub use connector::{ByteStream, Exporter, Importer, RecordStream, Store};
pub use error::{ConnectorError, ConnectorErrorKind, Result};
pub use path::safe_relative_path;
pub use protocol::{PROTOCOL_ARG, Protocol, UsageError};
pub use serve::{
    ConnectorFactory, ExportPipeline, MAX_LIST_MACS, Pipe, TransportError, init_logging,
    serve_exporter, serve_exporter_as, serve_exporter_on, serve_exporter_v1_on,
    serve_exporter_with, serve_importer, serve_importer_as, serve_importer_on,
    serve_importer_v1_on, serve_store, serve_store_as, serve_store_on, serve_store_v1_on,
};
pub use types::{
    ByteRange, FileInfo, FileMode, InitContext, LocationFlags, LocationInfo, Mac, ObjectKey,
    Options, Record, Resource, StorageFlags, StoreMode, XattrType, system_time_to_timestamp,
    time_from_unix_millis, timestamp_to_system_time, unix_millis,
};
