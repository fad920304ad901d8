//! The importer conformance fixture for Koofr, built on koofr-core's `Client` only, so it runs
//! unchanged against the emulator and real Koofr (used by this crate's tests and
//! `cargo xtask conformance`).
//!
//! ```no_run
//! # async fn demo(client: koofr_core::Client, root: koofr_core::KoofrPath,
//! #               config: std::collections::HashMap<String, String>) {
//! use koofr_importer::testkit::{KoofrImporterSite, Transport};
//! let site = KoofrImporterSite::new(client, root, config, Transport::Direct);
//! kloset_plugin::suites::run_importer_suite("koofr in-process", &site).await.assert_passed();
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use kloset_plugin::host::{InitArgs, RemoteImporter};
use kloset_plugin::suites::{
    Connections, ImporterCapabilities, ImporterFixture, RemotePlugin, TreeEntry, TreeKind,
    pattern_stream,
};
use kloset_plugin::{ConnectorError, Importer, Protocol, Result, unix_millis};
use koofr_core::{Client, KoofrPath, UploadBody, UploadOptions};

use crate::importer::{KoofrImporter, connector_error};

/// How the fixture reaches a [`KoofrImporter`]; a binary is the `koofr-importer` executable.
pub use kloset_plugin::suites::Transport;

/// Replaces the folder `root` with `tree` (files uploaded with their mtimes; folders created).
pub async fn write_tree(client: &Client, root: &KoofrPath, tree: &[TreeEntry]) -> Result<()> {
    match client.remove(root).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(connector_error(e)),
    }
    client
        .create_folder_all(root)
        .await
        .map_err(connector_error)?;
    for entry in tree {
        let path = root
            .join(&entry.path)
            .map_err(|e| ConnectorError::invalid_input(e.to_string()))?;
        match entry.kind {
            TreeKind::Dir => client
                .create_folder_all(&path)
                .await
                .map_err(connector_error)?,
            TreeKind::File { seed, len } => {
                let (parent, name) = path
                    .split()
                    .ok_or_else(|| ConnectorError::invalid_input("a file at /"))?;
                client
                    .create_folder_all(&parent)
                    .await
                    .map_err(connector_error)?;
                let replay = Arc::new(move || {
                    pattern_stream(seed, len)
                        .map(|chunk| {
                            chunk.map_err(|e| {
                                koofr_core::Error::permanent(
                                    koofr_core::ErrorKind::InvalidInput,
                                    "upload",
                                    e.to_string(),
                                )
                            })
                        })
                        .boxed()
                });
                let options = UploadOptions {
                    modified_ms: Some(unix_millis(entry.mtime)),
                    size_hint: Some(len),
                    ..UploadOptions::default()
                };
                client
                    .upload(&parent, name, UploadBody::Replayable(replay), options)
                    .await
                    .map_err(connector_error)?;
            }
        }
    }
    Ok(())
}

/// The importer suite's fixture: a Koofr folder, and importers configured for it.
pub struct KoofrImporterSite {
    client: Client,
    root: KoofrPath,
    config: HashMap<String, String>,
    connections: Connections<RemoteImporter>,
}

impl std::fmt::Debug for KoofrImporterSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config map holds the password: show only where the fixture points.
        f.debug_struct("KoofrImporterSite")
            .field("root", &self.root)
            .field("transport", self.connections.transport())
            .finish_non_exhaustive()
    }
}

impl KoofrImporterSite {
    /// A fixture for the folder `root`, written with `client`; `config` is the Plakar config map
    /// the importers get (its `location` must name `root`).
    pub fn new(
        client: Client,
        root: KoofrPath,
        config: HashMap<String, String>,
        transport: Transport,
    ) -> Self {
        KoofrImporterSite {
            client,
            root,
            config,
            connections: Connections::new("koofr-importer", transport),
        }
    }

    /// The same fixture over `protocol` (gRPC transports only).
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.connections = self.connections.with_protocol(protocol);
        self
    }

    /// The source folder.
    pub fn root(&self) -> &KoofrPath {
        &self.root
    }

    /// The plugin handles of the importers still connected (for pid and RSS checks).
    pub fn live_plugins(&self) -> Vec<Arc<dyn RemotePlugin>> {
        self.connections.live()
    }

    /// Starts an importer as the fixture's transport dictates, with `extra` config keys.
    pub async fn connect_with(&self, extra: &[(&str, &str)]) -> Result<Arc<dyn Importer>> {
        let mut config = self.config.clone();
        config.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self.connections
            .connect_importer(&InitArgs::new("koofr", config), KoofrImporter::from_init)
            .await
    }
}

#[async_trait]
impl ImporterFixture for KoofrImporterSite {
    async fn write_tree(&self, tree: &[TreeEntry]) -> Result<()> {
        write_tree(&self.client, &self.root, tree).await
    }

    async fn connect(&self) -> Result<Arc<dyn Importer>> {
        self.connect_with(&[]).await
    }

    async fn release(&self, importer: Arc<dyn Importer>) -> Result<()> {
        self.connections.release(&importer).await
    }

    async fn break_entry(&self, _path: &str) -> Result<bool> {
        // Koofr offers no way to make one entry unlistable through its API; error records are
        // covered by this crate's unit tests on listing items instead.
        Ok(false)
    }

    fn capabilities(&self) -> ImporterCapabilities {
        // Koofr sets a file's mtime at upload, but a folder's time is its creation time.
        ImporterCapabilities {
            file_mtimes: true,
            dir_mtimes: false,
        }
    }
}
