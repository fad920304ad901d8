//! The Koofr API client shared by the Plakar connectors: config, auth, transport, retries, paths, errors.
//!
//! * [`KoofrConfig`] parses the Plakar config map (keys documented in [`config`]).
//! * [`Client`] performs the API operations (spec `koofr-api.md` §7) with retries
//!   ([`RetryPolicy`]), one concurrency limit per client, a stall watchdog, and integrity checks
//!   (sizes and MD5 of downloads and uploads; resumed downloads check the file did not change).
//! * [`KoofrPath`] is the normalised path type shared by the client and the connectors.
//! * [`Error`] carries an [`ErrorKind`] and a temporary/permanent flag, decided in
//!   [`error::classify`].
//!
//! Transfers return [`ByteStream`]s that hold one of the client's concurrency permits until they
//! are consumed or dropped: with `concurrency = 1`, finish (or drop) a stream before starting
//! another request on the same client.
//!
//! ```no_run
//! # async fn demo() -> koofr_core::Result<()> {
//! use std::collections::HashMap;
//! use koofr_core::{Client, KoofrConfig, UploadOptions};
//!
//! let map = HashMap::from([
//!     ("location".to_owned(), "koofr:///backups".to_owned()),
//!     ("username".to_owned(), "me@example.com".to_owned()),
//!     ("password".to_owned(), "APP-PASSWORD".to_owned()),
//! ]);
//! let (config, warnings) = KoofrConfig::from_plakar(&map).expect("valid config");
//! warnings.iter().for_each(|w| tracing::warn!("{w}"));
//! let client = Client::new(config)?;
//! let dir = client.config().location().clone();
//! client.create_folder_all(&dir).await?;
//! let info = client.upload(&dir, "hello.txt", b"hi".to_vec().into(), UploadOptions::default()).await?;
//! assert_eq!(info.size, 2);
//! # Ok(())
//! # }
//! ```

mod auth;
mod client;
pub mod config;
mod download;
pub mod error;
mod folders;
mod listing;
pub mod path;
#[cfg(feature = "plakar")]
pub mod plakar;
pub mod rclone;
pub mod retry;
mod transport;
pub mod types;
pub mod upload;

pub use client::Client;
pub use config::{
    ApiVersion, AuthConfig, ConfigError, KoofrConfig, MountSelector, OAuthRefresh, Secret, Timeouts,
};
pub use download::Download;
pub use error::{Error, ErrorKind, Result};
pub use path::{KoofrPath, PathError, encode_component, validate_name};
pub use retry::RetryPolicy;
pub use transport::ByteStream;
pub use types::{FileInfo, FileKind, ListEntry, Mount, User};
pub use upload::{OverwritePolicy, ReplayFn, UploadBody, UploadOptions};
