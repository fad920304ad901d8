//! What every crate's tests share (and `cargo xtask`): one [`Site`] on the in-process emulator
//! or on real Koofr, the live account ([`LiveCredentials`]), request-log helpers and
//! deterministic test data.
//!
//! * [`site`]: the backend and the base folder a test or a run works in, its client, plugin
//!   config maps, `plakar … add` arguments, request log and listing.
//! * [`live`]: the real Koofr account of live runs, read from `KOOFR_ENDPOINT` with
//!   `KOOFR_ACCESS_TOKEN` or with `KOOFR_USERNAME` and `KOOFR_PASSWORD`, and optionally
//!   `KOOFR_API_VERSION`; secrets never in `Debug`.
//! * [`requests`]: counting the emulator's request log by endpoint, by folder and by status.
//! * [`init`]: plugin `Init` maps for the config parsers' unit tests.
//! * [`data`]: the workspace's one generator of test bytes, and collecting byte streams.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use koofr_testkit::{Site, count};
//!
//! // Real Koofr in a fresh folder when `KOOFR_*` is set, else the emulator (and a notice).
//! let site = Site::start_live_or_emulator("example").await?;
//! let kloset = site.path("kloset")?;
//! let config = site.plugin_config(&kloset); // what Plakar's `Init` would send
//! site.client().create_folder_all(&kloset).await?;
//! if !site.is_live() {
//!     assert_eq!(count(&site.take_requests(), "files/folder"), 1);
//! }
//! # drop(config);
//! site.finish().await // removes the live folder
//! # }
//! ```

pub mod data;
pub mod init;
pub mod live;
pub mod requests;
pub mod site;

pub use data::{collect, content, content_chunks};
pub use init::{INIT_PASSWORD, init_map};
pub use live::{LiveAuth, LiveCredentials};
pub use requests::{count, count_below, count_status};
pub use site::{
    EmulatorOptions, RemoteEntry, Site, emulator_config, notice, refused_endpoint, test_retry,
};
