//! The Plakar storage connector for Koofr: a kloset kept in a Koofr folder, served by the
//! plugin binary `koofr-storage` over Plakar's protocol v2.
//!
//! * [`KoofrStore`] implements [`kloset_plugin::Store`] on top of `koofr-core`'s client; its
//!   module documents how many requests each operation costs.
//! * [`layout`] is the kloset layout: written flat like Plakar's rclone integration, read
//!   tolerantly (flat names and 2-hex bucket folders).
//! * [`spool`] makes incoming objects replayable (memory up to 1 MiB, a temporary file above).
//! * [`testkit`] is the conformance-suite fixture for this connector (used by the tests and by
//!   `cargo xtask conformance`); it talks to Koofr through `koofr-core`'s client only.
//!
//! * [`readahead`] serves ranged `Get`s that walk forward through a packfile from windows read
//!   ahead.
//!
//! Configuration keys are koofr-core's ([`koofr_core::config`]) plus the read-ahead budgets
//! ([`config`]).

pub mod config;
pub mod layout;
pub mod readahead;
pub mod spool;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use store::{CONNECTOR_TYPE, KoofrStore, connector_error};
