//! Shared test setup: the reference plugin binary and the library's reference fixtures.

#![allow(dead_code, unused_imports)]

pub use kloset_plugin::reference::fixtures::{
    ExporterSite, ImporterSite, Site, StoreSite, Transport,
};

/// The reference plugin binary built with this crate.
pub const BIN: &str = env!("CARGO_BIN_EXE_kloset-reference-plugin");

/// The binary transport.
pub fn binary() -> Transport {
    Transport::Binary(BIN.into())
}
