//! The cross-crate pipeline of the Koofr connectors for Plakar, driving the three real plugin
//! binaries over stdin/stdout as Plakar does: seed a tree on the emulator (or real Koofr), back
//! it up into a kloset through the importer and storage plugins, restore it through the storage
//! and exporter plugins, verify, and summarise; plus the conformance matrix of `cargo xtask
//! conformance`.
//!
//! * [`binaries`]: `cargo build` of the plugins and their paths.
//! * The backend (emulator or live Koofr) is `koofr_testkit::Site`.
//! * [`tree`]: the deterministic seeded tree and its upload.
//! * [`manifest`]: the package manifest, and the one derived for plakar v1.0.x.
//! * [`pack`], [`index`]: packfiles and the state (index) the host writes.
//! * [`pipeline`]: create, backup, restore and verify phases, and the whole demo.
//! * [`plakar`]: a real plakar in the loop: finding it, isolated homes with the package
//!   installed, commands, plugin memory, and ending every process a test started.
//! * [`plakar_demo`]: Koofr entries in a plakar home, and the demo's story through plakar.
//! * [`summary`]: per-phase numbers, request counts and plugin peak memory.
//! * [`conformance`]: the kloset-plugin suites × backends × faults matrix.

pub mod binaries;
pub mod conformance;
pub mod index;
pub mod manifest;
pub mod pack;
pub mod pipeline;
pub mod plakar;
pub mod plakar_demo;
pub mod progress;
pub mod summary;
pub mod tree;

pub use binaries::{PluginBinaries, build_plugins, locate_plugins};
pub use progress::Progress;
pub use tree::TreeSpec;
