//! The kloset-plugin exporter-suite fixture for this connector, built on koofr-core's `Client`
//! only, so it runs unchanged on the emulator and on real Koofr (and `cargo xtask conformance`
//! reuses it).
//!
//! The fixture owns a `base` folder; the destination is `base/restore/dest`, so anything written
//! next to it (an escape) is visible to [`ExporterFixture::outside_root`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures::StreamExt;
use kloset_plugin::host::{InitArgs, RemoteExporter};
use kloset_plugin::suites::{Connections, ExporterCapabilities, ExporterFixture, ReadBackEntry};
use kloset_plugin::{
    ConnectorError, ExportPipeline, Exporter, Protocol, Result, time_from_unix_millis,
};
use koofr_core::{Client, KoofrPath, ListEntry};

use crate::{KoofrExporter, connector_error};

/// Where the destination lives below the fixture's base folder.
pub const DESTINATION: &str = "restore/dest";

/// How the fixture reaches a [`KoofrExporter`]; a binary is the `koofr-exporter` executable.
pub use kloset_plugin::suites::Transport;

/// An exporter fixture on a Koofr account.
pub struct KoofrExporterSite {
    client: Client,
    base: KoofrPath,
    dest: KoofrPath,
    config: HashMap<String, String>,
    pipeline: ExportPipeline,
    connections: Connections<RemoteExporter>,
}

impl std::fmt::Debug for KoofrExporterSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config map holds the password: only its keys are shown.
        let mut keys: Vec<&String> = self.config.keys().collect();
        keys.sort();
        f.debug_struct("KoofrExporterSite")
            .field("base", &self.base)
            .field("dest", &self.dest)
            .field("config_keys", &keys)
            .field("transport", self.connections.transport())
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

impl KoofrExporterSite {
    /// A fixture owning the folder `base` of the account `client` works on. `config` is the
    /// plugin config map of that account (credentials, endpoint, retries); its `location` is
    /// replaced by the destination.
    pub fn new(
        client: Client,
        base: KoofrPath,
        mut config: HashMap<String, String>,
        transport: Transport,
    ) -> Self {
        let dest = base.join(DESTINATION).expect("a constant relative path");
        config.insert("location".to_owned(), format!("koofr://{dest}"));
        Self {
            client,
            base,
            dest,
            config,
            pipeline: ExportPipeline::default(),
            connections: Connections::new("koofr-exporter", transport),
        }
    }

    /// The same fixture over `protocol` (gRPC transports only).
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.connections = self.connections.with_protocol(protocol);
        self
    }

    /// The same fixture with other pipelining limits (gRPC transports only).
    pub fn with_pipeline(mut self, pipeline: ExportPipeline) -> Self {
        self.pipeline = pipeline;
        self
    }

    /// Sets one config key of the connector (e.g. `concurrency`).
    pub fn set_config(&mut self, key: &str, value: &str) {
        self.config.insert(key.to_owned(), value.to_owned());
    }

    /// The destination relative to the base folder ([`DESTINATION`]).
    pub fn relative_destination() -> &'static str {
        DESTINATION
    }

    /// The destination folder (the connector's location).
    pub fn destination(&self) -> &KoofrPath {
        &self.dest
    }

    /// The folder the fixture owns.
    pub fn base(&self) -> &KoofrPath {
        &self.base
    }

    /// The `Init` arguments sent to plugin connectors.
    pub fn init_args(&self) -> InitArgs {
        InitArgs::new("koofr", self.config.clone())
    }

    /// A connector over gRPC (in-process or the binary), kept for [`ExporterFixture::release`].
    pub async fn connect_remote(&self) -> Result<Arc<RemoteExporter>> {
        let exporter = self
            .connections
            .open_exporter(&self.init_args(), self.pipeline, factory)
            .await?;
        Ok(self.connections.track(exporter))
    }

    /// Everything below `dir` (not `dir` itself), or nothing when `dir` is missing.
    async fn walk(&self, dir: &KoofrPath) -> Result<Vec<(KoofrPath, koofr_core::FileInfo)>> {
        let mut stream = match self.client.list_recursive(dir).await {
            Ok(stream) => stream,
            Err(err) if err.is_not_found() => return Ok(Vec::new()),
            Err(err) => return Err(connector_error(err)),
        };
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item.map_err(connector_error)? {
                ListEntry::File { path, info } => {
                    if path != *dir {
                        out.push((path, info));
                    }
                }
                ListEntry::Error {
                    path,
                    code,
                    message,
                } => {
                    let at = path
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| dir.to_string());
                    return Err(ConnectorError::other(format!(
                        "listing {at}: {code}: {message}"
                    )));
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ExporterFixture for KoofrExporterSite {
    async fn clear(&self) -> Result<()> {
        match self.client.list(&self.base).await {
            Ok(children) => {
                for child in children {
                    let path = self
                        .base
                        .child(&child.name)
                        .map_err(|e| ConnectorError::other(e.to_string()))?;
                    self.client.remove(&path).await.map_err(connector_error)?;
                }
                Ok(())
            }
            Err(err) if err.is_not_found() => self
                .client
                .create_folder_all(&self.base)
                .await
                .map_err(connector_error),
            Err(err) => Err(connector_error(err)),
        }
    }

    async fn connect(&self) -> Result<Arc<dyn Exporter>> {
        self.connections
            .connect_exporter(&self.init_args(), self.pipeline, factory)
            .await
    }

    async fn release(&self, exporter: Arc<dyn Exporter>) -> Result<()> {
        self.connections.release(&exporter).await
    }

    async fn read_tree(&self) -> Result<Vec<ReadBackEntry>> {
        let mut out = Vec::new();
        for (path, info) in self.walk(&self.dest).await? {
            let relative = path
                .strip_prefix(&self.dest)
                .ok_or_else(|| {
                    ConnectorError::other(format!("{path} listed outside {}", self.dest))
                })?
                .to_owned();
            let mtime: SystemTime = time_from_unix_millis(info.modified);
            let content = if info.is_dir() {
                None
            } else {
                let download = self.client.download(&path).await.map_err(connector_error)?;
                let bytes = koofr_core_collect(download.stream).await?;
                Some(bytes)
            };
            out.push(ReadBackEntry {
                path: relative,
                content,
                mtime,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn outside_root(&self) -> Result<Vec<String>> {
        let entries = self.walk(&self.base).await?;
        Ok(entries
            .into_iter()
            .map(|(path, _)| path)
            // The destination's own ancestors, the destination and its content are inside.
            .filter(|path| !self.dest.is_within(path) && !path.is_within(&self.dest))
            .map(|path| path.to_string())
            .collect())
    }

    async fn make_unwritable(&self, path: &str) -> Result<bool> {
        // A folder squatting the file's name: Koofr refuses to overwrite a folder with a file.
        let squatter = self
            .dest
            .join(path)
            .map_err(|e| ConnectorError::invalid_input(e.to_string()))?;
        self.client
            .create_folder_all(&squatter)
            .await
            .map_err(connector_error)?;
        Ok(true)
    }

    fn capabilities(&self) -> ExporterCapabilities {
        // Koofr takes a file's mtime at upload; folders keep the server's time; it cannot
        // store symlinks or devices, which get an error result saying so.
        ExporterCapabilities {
            file_mtimes: true,
            dir_mtimes: false,
            rejects_special_files: true,
        }
        .over(self.connections.protocol())
    }
}

/// The plugin binary's factory: the exporter `Init` builds.
async fn factory(ctx: kloset_plugin::InitContext) -> Result<KoofrExporter> {
    KoofrExporter::open(&ctx).await
}

/// Reads a koofr-core download stream (test-sized files only) into memory.
async fn koofr_core_collect(mut stream: koofr_core::ByteStream) -> Result<bytes::Bytes> {
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(connector_error)?);
    }
    Ok(out.freeze())
}
