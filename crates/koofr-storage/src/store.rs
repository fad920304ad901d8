//! [`KoofrStore`]: the kloset store (protocol §7) on a Koofr folder, built on `koofr-core`.
//!
//! Request budget (what the emulator's request log confirms in the tests):
//! * `Put`: ONE `files/put` into the resource folder (overwrite mode, replayable body). Only if
//!   Koofr answers that the folder is missing (a kloset made by another tool) are the folders
//!   created and the upload sent once more.
//! * `Get` with a range: ONE `files/get` with `Range`; length 0: no request. While ranged `Get`s
//!   walk forward through one object, [`crate::readahead`] serves them from windows read ahead
//!   (one request for many `Get`s). A whole `Get` is one request when Koofr sends
//!   `X-File-Info`, and is checked against the stored size and MD5. The bucket-layout name is
//!   tried only when the flat name is missing.
//! * `List`: ONE streamed `files/listrecursive` of the resource folder, however many objects.
//! * `Size`: ONE streamed `files/listrecursive` of the kloset folder, summing file sizes. It is
//!   informational, rarely called (`plakar info`), and a listing is far cheaper than the data,
//!   so an exact figure is worth one request; a missing kloset folder counts as 0.
//! * `Delete`: one `files/remove` for the flat name and one for the bucket name (run together),
//!   so that no copy left by a bucket-layout writer survives; a missing object is not an error.
//! * `Mode`: answered from memory.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use kloset_plugin::{
    ByteRange, ByteStream, ConnectorError, InitContext, LocationInfo, Mac, ObjectKey, Resource,
    Result, Store,
};
use koofr_core::error::ErrorKind;
use koofr_core::{Client, KoofrConfig, KoofrPath, ListEntry, OverwritePolicy, UploadOptions};

use crate::config::StorageConfig;
use crate::layout::{CONFIG_NAME, Layout, mac_of_relative};
use crate::readahead::{ReadAhead, ReadAheadLimits, fetch_fn};
use crate::spool;

use koofr_core::plakar::connector_stream;
/// The connector type reported to Plakar.
pub use koofr_core::plakar::{CONNECTOR_TYPE, connector_error};

/// Largest `CONFIG` accepted by `Open` (Plakar's is a few hundred bytes).
const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// A kloset stored in a Koofr folder. Cheap to share; every method may run concurrently.
#[derive(Debug, Clone)]
pub struct KoofrStore {
    client: Client,
    layout: Layout,
    location: LocationInfo,
    readahead: Arc<ReadAhead>,
}

impl KoofrStore {
    /// A store on the client's configured location, with the default read-ahead. Makes no
    /// request.
    pub fn new(client: Client) -> KoofrStore {
        KoofrStore::with_readahead(client, crate::config::DEFAULT_READAHEAD)
    }

    /// A store on the client's configured location with these read-ahead limits. Makes no
    /// request.
    pub fn with_readahead(client: Client, limits: ReadAheadLimits) -> KoofrStore {
        let config = client.config();
        let root = config.location().clone();
        let location = koofr_core::plakar::location_info(config, 0);
        KoofrStore {
            layout: Layout::new(root),
            client,
            location,
            readahead: Arc::new(ReadAhead::new(limits)),
        }
    }

    /// What `Init` does: parses the Plakar config map (and `KOOFR_*` variables), logs the
    /// warnings to stderr, and builds the store without any network I/O.
    pub fn from_init(ctx: &InitContext) -> Result<KoofrStore> {
        let config = StorageConfig::from_init(&ctx.config)?;
        let client = Client::new(config.koofr).map_err(connector_error)?;
        Ok(KoofrStore::with_readahead(client, config.readahead))
    }

    /// A store from a parsed configuration, with the default read-ahead. Makes no request.
    pub fn from_config(config: KoofrConfig) -> Result<KoofrStore> {
        let client = Client::new(config).map_err(connector_error)?;
        Ok(KoofrStore::new(client))
    }

    /// Bytes held by read-ahead windows and the number of objects they belong to.
    pub fn readahead_held(&self) -> (u64, usize) {
        self.readahead.held()
    }

    /// The Koofr client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Where the kloset's files are.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The location as users write it, for messages: `koofr:///path`.
    pub fn url(&self) -> String {
        format!("koofr://{}", self.layout.root())
    }

    /// Reads `CONFIG`; `Ok(None)` when there is none.
    async fn read_config(&self) -> koofr_core::Result<Option<Bytes>> {
        let path = self.layout.config();
        let download = match self.client.download(&path).await {
            Ok(d) => d,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        if download.info.size > MAX_CONFIG_BYTES as u64 {
            return Err(koofr_core::Error::permanent(
                ErrorKind::Unexpected,
                "read kloset config",
                format!(
                    "{} bytes is too large for a kloset CONFIG (limit {MAX_CONFIG_BYTES})",
                    download.info.size
                ),
            )
            .with_path(&path));
        }
        let mut stream = download.stream;
        let mut config = BytesMut::with_capacity(download.info.size as usize);
        while let Some(chunk) = stream.next().await {
            config.extend_from_slice(&chunk?);
        }
        Ok(Some(config.freeze()))
    }

    /// Uploads `CONFIG` in error-if-exists mode, so that of two racing creators only one wins.
    /// koofr-core does not retry such an upload itself (a retry cannot tell its own earlier
    /// success from a competitor's), so it runs under the client's retry loop here, where a
    /// "name taken" answer on a retry counts as success only if the stored bytes are exactly
    /// ours.
    async fn upload_config(&self, config: Bytes) -> Result<()> {
        let options = UploadOptions {
            policy: OverwritePolicy::ErrorIfExists,
            size_hint: Some(config.len() as u64),
            modified_ms: None,
        };
        let (config, options) = (&config, &options);
        let taken = |e: &koofr_core::Error| {
            matches!(e.kind(), ErrorKind::Conflict | ErrorKind::AlreadyExists)
        };
        let sent = self
            .client
            .retrying(|attempt| async move {
                let sent = self
                    .client
                    .upload(
                        self.layout.root(),
                        CONFIG_NAME,
                        config.clone().into(),
                        options.clone(),
                    )
                    .await;
                match sent {
                    Err(e) if taken(&e) && attempt > 1 => {
                        match self.read_config().await {
                            // An earlier attempt stored it and its answer was lost.
                            Ok(Some(stored)) if stored == *config => Ok(()),
                            _ => Err(e),
                        }
                    }
                    other => other.map(drop),
                }
            })
            .await;
        match sent {
            Ok(()) => Ok(()),
            Err(e) if taken(&e) => Err(ConnectorError::already_exists(format!(
                "kloset already initialized at {}",
                self.url()
            ))),
            Err(e) => {
                Err(connector_error(e)
                    .context(format!("cannot create the kloset at {}", self.url())))
            }
        }
    }

    /// Ensures a layout folder exists: one folder create, confirmed by koofr-core when the
    /// name is taken (a concurrent creator, or an existing kloset's folder).
    async fn ensure_folder(&self, resource: Resource) -> koofr_core::Result<()> {
        let folder = self.layout.folder(resource);
        match self
            .client
            .create_folder(self.layout.root(), resource.folder())
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                self.client.create_folder_all(&folder).await
            }
            Err(e) => Err(e),
        }
    }

    /// Folds a streamed recursive listing of `folder` (koofr-core resumes a broken
    /// connection itself). `visit` sees each entry below `folder` with its relative path; a
    /// missing folder lists as empty.
    async fn fold_listing<T, F>(&self, folder: &KoofrPath, visit: F) -> koofr_core::Result<T>
    where
        T: Default + Send,
        F: Fn(&mut T, &str, &koofr_core::FileInfo) + Send + Sync,
    {
        let mut acc = T::default();
        self.walk_once(folder, &mut |relative, info| {
            visit(&mut acc, relative, info)
        })
        .await?;
        Ok(acc)
    }

    async fn walk_once(
        &self,
        folder: &KoofrPath,
        visit: &mut (dyn FnMut(&str, &koofr_core::FileInfo) + Send),
    ) -> koofr_core::Result<()> {
        let mut entries = match self.client.list_recursive(folder).await {
            Ok(entries) => entries,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        while let Some(entry) = entries.next().await {
            match entry? {
                ListEntry::File { path, info } => {
                    if let Some(relative) = path.strip_prefix(folder)
                        && !relative.is_empty()
                    {
                        visit(relative, &info);
                    }
                }
                ListEntry::Error {
                    path,
                    code,
                    message,
                } => {
                    let at = path.as_ref().unwrap_or(folder);
                    return Err(koofr_core::Error::permanent(
                        ErrorKind::Unexpected,
                        "list recursively",
                        format!("the listing failed ({code}): {message}"),
                    )
                    .with_path(at));
                }
            }
        }
        Ok(())
    }

    /// Removes `path`; a missing file is fine.
    async fn remove_if_present(&self, path: &KoofrPath) -> Result<()> {
        match self.client.remove(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(connector_error(e)),
        }
    }
}

#[async_trait]
impl Store for KoofrStore {
    fn location(&self) -> LocationInfo {
        self.location.clone()
    }

    async fn create(&self, config: Bytes) -> Result<()> {
        let context = || format!("cannot create the kloset at {}", self.url());
        self.client
            .create_folder_all(self.layout.root())
            .await
            .map_err(|e| connector_error(e).context(context()))?;
        // The folders first and CONFIG last: CONFIG marks a complete kloset, and its
        // error-if-exists upload decides between racing creators.
        let folders = Resource::ALL.map(|resource| self.ensure_folder(resource));
        for outcome in futures::future::join_all(folders).await {
            outcome.map_err(|e| connector_error(e).context(context()))?;
        }
        self.upload_config(config).await
    }

    async fn open(&self) -> Result<Bytes> {
        match self.read_config().await {
            Ok(Some(config)) => Ok(config),
            Ok(None) => Err(ConnectorError::not_found(format!(
                "no kloset found at {}",
                self.url()
            ))),
            Err(e) => {
                Err(connector_error(e).context(format!("cannot open the kloset at {}", self.url())))
            }
        }
    }

    async fn ping(&self) -> Result<()> {
        // Info on the kloset folder proves the endpoint, the credentials and the mount; the
        // folder itself may not exist yet (before `create`).
        match self.client.info(self.layout.root()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(connector_error(e)),
        }
    }

    async fn size(&self) -> Result<i64> {
        let total: u64 = self
            .fold_listing(self.layout.root(), |total: &mut u64, _, info| {
                if info.is_file() {
                    *total += info.size;
                }
            })
            .await
            .map_err(|e| {
                connector_error(e).context(format!("cannot size the kloset at {}", self.url()))
            })?;
        Ok(i64::try_from(total).unwrap_or(i64::MAX))
    }

    async fn list(&self, resource: Resource) -> Result<Vec<Mac>> {
        let folder = self.layout.folder(resource);
        let (_, macs): (HashSet<Mac>, Vec<Mac>) = self
            .fold_listing(
                &folder,
                |(seen, macs): &mut (HashSet<Mac>, Vec<Mac>), relative, info| {
                    // Flat and bucket copies of one object are listed once.
                    if info.is_file()
                        && let Some(mac) = mac_of_relative(relative)
                        && seen.insert(mac)
                    {
                        macs.push(mac);
                    }
                },
            )
            .await
            .map_err(|e| connector_error(e).context(format!("cannot list the {resource}s")))?;
        Ok(macs)
    }

    async fn put(&self, key: ObjectKey, data: ByteStream) -> Result<u64> {
        let what = key.to_string();
        let spooled = spool::receive(data, &what).await?;
        let folder = self.layout.folder(key.resource);
        let name = key.mac.to_hex();
        let options = UploadOptions {
            policy: OverwritePolicy::Overwrite,
            size_hint: Some(spooled.len),
            modified_ms: None,
        };
        let uploaded = match self
            .client
            .upload(&folder, &name, spooled.body(), options.clone())
            .await
        {
            Err(e) if e.is_not_found() => {
                // The resource folder is missing (a kloset made by another tool): create it
                // once and send again.
                tracing::info!(folder = %folder, "koofr-storage: creating a missing kloset folder");
                self.client
                    .create_folder_all(&folder)
                    .await
                    .map_err(connector_error)?;
                self.client
                    .upload(&folder, &name, spooled.body(), options)
                    .await
            }
            other => other,
        };
        let info =
            uploaded.map_err(|e| connector_error(e).context(format!("cannot store {what}")))?;
        Ok(info.size)
    }

    async fn get(&self, key: ObjectKey, range: Option<ByteRange>) -> Result<ByteStream> {
        tracing::debug!(%key, offset = range.map(|r| r.offset), length = range.map(|r| r.length), "koofr-storage: get");
        match range {
            Some(range) if range.length == 0 => Ok(futures::stream::empty().boxed()),
            Some(range) => {
                // The windows' requests must not hold the store (which holds the read-ahead).
                let (client, layout) = (self.client.clone(), self.layout.clone());
                let fetch = fetch_fn(move |offset, length| {
                    let (client, layout) = (client.clone(), layout.clone());
                    async move { read(&client, &layout, key, Some((offset, length))).await }
                });
                self.readahead
                    .get(key, range.offset, u64::from(range.length), fetch)
                    .await
            }
            None => read(&self.client, &self.layout, key, None).await,
        }
    }

    async fn delete(&self, key: ObjectKey) -> Result<()> {
        let flat = self.layout.flat(key);
        let bucket = self.layout.bucket(key);
        let (flat, bucket) = futures::future::join(
            self.remove_if_present(&flat),
            self.remove_if_present(&bucket),
        )
        .await;
        flat.and(bucket)
    }
}

/// Reads an object, whole or `(offset, length)`: the flat name, or the bucket name when the flat
/// one is missing.
async fn read(
    client: &Client,
    layout: &Layout,
    key: ObjectKey,
    range: Option<(u64, u64)>,
) -> Result<ByteStream> {
    let open = |path: KoofrPath| async move {
        match range {
            None => Ok(client.download(&path).await?.stream),
            Some((offset, length)) => client.download_range(&path, offset, length).await,
        }
    };
    let opened = match open(layout.flat(key)).await {
        Err(e) if e.is_not_found() => match open(layout.bucket(key)).await {
            Err(e) if e.is_not_found() => {
                return Err(ConnectorError::not_found(format!(
                    "{key} not found at koofr://{}",
                    layout.folder(key.resource)
                )));
            }
            other => other,
        },
        other => other,
    };
    opened.map(connector_stream).map_err(connector_error)
}
