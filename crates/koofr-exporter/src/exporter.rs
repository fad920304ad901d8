//! [`KoofrExporter`]: the Plakar exporter that restores records into a Koofr folder.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use kloset_plugin::{
    ByteStream, ConnectorError, Exporter, FileInfo, FileMode, InitContext, LocationInfo, Record,
    Result, safe_relative_path, unix_millis,
};
use koofr_core::{Client, KoofrPath, OverwritePolicy, UploadBody, UploadOptions};

use crate::names::{Claim, RestoredNames};
use koofr_core::plakar::connector_error;

/// Files up to this size are gathered (as the pipeline's own chunks, no copy) into a replayable
/// body, so that a 5xx or 429 on their upload is retried; larger ones stream once.
pub const REPLAYABLE_MAX: u64 = 4 << 20;

/// Restores records under the configured Koofr location (`/` = the location itself).
pub struct KoofrExporter {
    client: Client,
    root: KoofrPath,
    location: LocationInfo,
    restored: RestoredNames,
    /// The outcome of the one check of endpoint, credentials and mount, made before the first
    /// record is restored (see [`KoofrExporter::ready`]).
    checked: tokio::sync::OnceCell<Result<()>>,
}

impl std::fmt::Debug for KoofrExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KoofrExporter")
            .field("root", &self.root)
            .field("location", &self.location)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// A record's destination: the Koofr folder and the (NFC) name inside it.
struct Target {
    segments: Vec<String>,
    path: KoofrPath,
}

impl KoofrExporter {
    /// An exporter over `client`, restoring into the client's configured location.
    pub fn new(client: Client) -> Self {
        let config = client.config();
        let root = config.location().clone();
        let location = koofr_core::plakar::location_info(config, 0);
        Self {
            client,
            root,
            location,
            restored: RestoredNames::default(),
            checked: tokio::sync::OnceCell::new(),
        }
    }

    /// Checks the endpoint, the credentials and the mount with one request, once (at `Init`,
    /// or before the first record of an exporter built without it): every record after a
    /// failed check gets the same fatal error, which ends the export (one clear error instead
    /// of one per record, and no repeated failed logins).
    async fn ready(&self) -> Result<()> {
        self.checked
            .get_or_init(|| async {
                self.client.check_mount().await.map(drop).map_err(|e| {
                    connector_error(e)
                        .context(format_args!("cannot restore to koofr://{}", self.root))
                        .fatal()
                })
            })
            .await
            .clone()
    }

    /// Parses a Plakar config map with koofr-core's parser (warnings go to the log) and builds
    /// the exporter. No network I/O.
    pub fn from_config_map(config: &HashMap<String, String>) -> Result<Self> {
        let config = koofr_core::plakar::config_from_init(config, &[])?;
        Ok(Self::new(Client::new(config).map_err(connector_error)?))
    }

    /// Builds the exporter from `Init`'s configuration; no network I/O.
    pub fn from_init(ctx: &InitContext) -> Result<Self> {
        Self::from_config_map(&ctx.config)
    }

    /// The plugin's `Init`: [`KoofrExporter::from_init`], then the one check of endpoint,
    /// credentials and mount. A restore that cannot work fails there, before plakar sends a
    /// single record: plakar 1.1.4 reports a failed `Init` with the connector's message, while
    /// an export stream ended by an error may reach the user as a bare `EOF`.
    pub async fn open(ctx: &InitContext) -> Result<Self> {
        let exporter = Self::from_init(ctx)?;
        exporter.ready().await?;
        Ok(exporter)
    }

    /// The Koofr client (shared folder cache and concurrency limit).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The Koofr folder records are restored into.
    pub fn root(&self) -> &KoofrPath {
        &self.root
    }

    /// Maps a record pathname to its Koofr path, refusing escapes and names Koofr cannot store.
    fn target(&self, pathname: &str) -> Result<Target> {
        let segments = safe_relative_path(pathname)?;
        let mut path = self.root.clone();
        for segment in &segments {
            path = path.child(segment).map_err(|e| {
                ConnectorError::invalid_input(format!(
                    "{pathname}: not restored: Koofr cannot store the name {segment:?}: {}",
                    e.reason
                ))
            })?;
        }
        Ok(Target { segments, path })
    }

    fn claim(&self, pathname: &str, target: &Target) -> Result<Claim> {
        self.restored.claim(pathname, &target.segments)
    }

    async fn upload(&self, target: &Target, info: &FileInfo, content: ByteStream) -> Result<()> {
        let (dir, name) = target.path.split().ok_or_else(|| {
            ConnectorError::invalid_input("/: cannot store a file as the destination folder itself")
        })?;
        self.client
            .create_folder_all(&dir)
            .await
            .map_err(connector_error)?;
        let (body, size_hint) = upload_body(info, content).await?;
        let options = UploadOptions {
            modified_ms: Some(unix_millis(info.mod_time)),
            policy: OverwritePolicy::Overwrite,
            size_hint,
        };
        self.client
            .upload(&dir, name, body, options)
            .await
            .map_err(connector_error)?;
        Ok(())
    }
}

/// The upload body of a record's content: small files (by declared size) become a replayable
/// list of the chunks already in memory; anything else, or content longer than declared,
/// streams once. A broken content stream fails the record before anything is sent.
async fn upload_body(
    info: &FileInfo,
    mut content: ByteStream,
) -> Result<(UploadBody, Option<u64>)> {
    let small = u64::try_from(info.size).is_ok_and(|size| size <= REPLAYABLE_MAX);
    if !small {
        return Ok((UploadBody::Stream(source_stream(content)), None));
    }
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0u64;
    while let Some(chunk) = content.next().await {
        let chunk = chunk?;
        total += chunk.len() as u64;
        chunks.push(chunk);
        if total > REPLAYABLE_MAX {
            // More than declared: stream what is held, then the rest.
            let head = futures::stream::iter(chunks.into_iter().map(Ok));
            return Ok((
                UploadBody::Stream(head.chain(source_stream(content)).boxed()),
                None,
            ));
        }
    }
    let chunks: Arc<[Bytes]> = chunks.into();
    let replay = move || {
        let chunks = chunks.clone();
        futures::stream::iter((0..chunks.len()).map(move |i| Ok(chunks[i].clone()))).boxed()
    };
    Ok((UploadBody::Replayable(Arc::new(replay)), Some(total)))
}

fn source_stream(content: ByteStream) -> koofr_core::ByteStream {
    content
        .map_err(|e| {
            koofr_core::Error::permanent(
                koofr_core::ErrorKind::Transport,
                "read restore content",
                e.message(),
            )
        })
        .boxed()
}

/// Why a record of this kind cannot be stored on Koofr.
fn unsupported_kind(record: &Record) -> String {
    if record.is_xattr {
        return format!("extended attributes ({:?})", record.xattr_name);
    }
    let mode = record.file_info.as_ref().map_or(FileMode(0), |i| i.mode);
    let bits = mode.0;
    if mode.is_symlink() {
        format!("symbolic links (target {:?})", record.target)
    } else if bits & FileMode::CHAR_DEVICE != 0 {
        "character devices".to_owned()
    } else if bits & FileMode::DEVICE != 0 {
        "devices".to_owned()
    } else if bits & FileMode::SOCKET != 0 {
        "sockets".to_owned()
    } else if bits & FileMode::NAMED_PIPE != 0 {
        "named pipes".to_owned()
    } else if bits & FileMode::IRREGULAR != 0 {
        "irregular files".to_owned()
    } else if record.file_info.is_none() {
        "records without file information".to_owned()
    } else {
        "a regular file record without content".to_owned()
    }
}

#[async_trait]
impl Exporter for KoofrExporter {
    fn location(&self) -> LocationInfo {
        self.location.clone()
    }

    async fn ping(&self) -> Result<()> {
        self.client.check_mount().await.map_err(connector_error)?;
        Ok(())
    }

    fn max_in_flight(&self) -> usize {
        // The client's limit, not Plakar's hint: more would only queue inside the client.
        self.client.config().concurrency()
    }

    async fn create_directory(&self, pathname: &str, _info: &FileInfo) -> Result<()> {
        self.ready().await?;
        // `/` is the location itself, whatever the record's name says.
        let target = self.target(pathname)?;
        let claim = self.claim(pathname, &target)?;
        match self.client.create_folder_all(&target.path).await {
            Ok(()) => Ok(()),
            Err(err) => {
                self.restored.release(claim);
                Err(connector_error(err))
            }
        }
    }

    async fn store_file(&self, pathname: &str, info: &FileInfo, content: ByteStream) -> Result<()> {
        self.ready().await?;
        let target = self.target(pathname)?;
        if target.segments.is_empty() {
            return Err(ConnectorError::invalid_input(
                "/: not restored: a file cannot replace the destination folder itself",
            ));
        }
        let claim = self.claim(pathname, &target)?;
        let outcome = self.upload(&target, info, content).await;
        if outcome.is_err() {
            self.restored.release(claim);
        }
        outcome
    }

    async fn other(&self, record: &Record) -> Result<()> {
        if record.is_error() {
            return Ok(());
        }
        safe_relative_path(&record.pathname)?;
        if let Some(info) = record
            .file_info
            .as_ref()
            .filter(|i| i.mode.is_dir() && !record.is_xattr)
        {
            return self.create_directory(&record.pathname, info).await;
        }
        Err(ConnectorError::invalid_input(format!(
            "{}: not restored: Koofr cannot store {}",
            record.pathname,
            unsupported_kind(record)
        )))
    }
}
