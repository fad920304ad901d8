//! [`KoofrImporter`]: the `kloset_plugin::Importer` that backs up one Koofr folder.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use kloset_plugin::{
    ByteStream, ConnectorError, Importer, InitContext, LocationFlags, LocationInfo, RecordStream,
    Result,
};
use koofr_core::{Client, KoofrPath};
use md5::{Digest, Md5};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::SourceConfig;
use crate::index::{FileIndex, Listed};
use crate::readahead::ReadAhead;
use crate::scan;

/// Records produced ahead of the consumer; the listing is read no faster than this drains.
const RECORD_QUEUE: usize = 256;

/// The importer of one Koofr location. Cheap to share; `Open` may run concurrently with the scan.
#[derive(Debug)]
pub struct KoofrImporter {
    client: Client,
    root: KoofrPath,
    location: LocationInfo,
    index: Arc<FileIndex>,
    readahead: Arc<ReadAhead>,
}

pub(crate) use koofr_core::plakar::connector_error;

impl KoofrImporter {
    /// An importer for `config` (no network request), for a plakar running at
    /// `-concurrency 1`.
    pub fn new(config: SourceConfig) -> Result<KoofrImporter> {
        KoofrImporter::with_plakar_concurrency(config, 1)
    }

    /// An importer for `config` (no network request); `plakar_concurrency` is plakar's
    /// `-concurrency` (how far its `Open`s may stray from the scan order).
    pub fn with_plakar_concurrency(
        config: SourceConfig,
        plakar_concurrency: i64,
    ) -> Result<KoofrImporter> {
        let root = config.koofr.location().clone();
        let flags = if config.stream {
            LocationFlags::STREAM
        } else {
            0
        };
        let location = koofr_core::plakar::location_info(&config.koofr, flags);
        let client = Client::new(config.koofr).map_err(connector_error)?;
        let readahead = ReadAhead::new(client.clone(), config.readahead, plakar_concurrency);
        Ok(KoofrImporter {
            client,
            root,
            location,
            index: Arc::default(),
            readahead: Arc::new(readahead),
        })
    }

    /// An importer from a Plakar config map; unknown keys are logged as warnings.
    pub fn from_config_map(map: &HashMap<String, String>) -> Result<KoofrImporter> {
        KoofrImporter::from_plakar(map, 1)
    }

    fn from_plakar(
        map: &HashMap<String, String>,
        plakar_concurrency: i64,
    ) -> Result<KoofrImporter> {
        let (config, warnings) = SourceConfig::from_map(map)?;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        KoofrImporter::with_plakar_concurrency(config, plakar_concurrency)
    }

    /// The connector factory of the plugin binary (`Init`).
    pub async fn from_init(ctx: InitContext) -> Result<KoofrImporter> {
        let plakar_concurrency = ctx.options.as_ref().map_or(1, |o| o.max_concurrency);
        KoofrImporter::from_plakar(&ctx.config, plakar_concurrency)
    }

    /// The Koofr client (shared with the open downloads).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The number of files the current scan indexed so far.
    pub fn indexed_files(&self) -> usize {
        self.index.len()
    }

    /// The read-ahead of `Open`.
    pub fn readahead(&self) -> &ReadAhead {
        &self.readahead
    }
}

/// Downloads `path` and checks that it is still the listed version; the content is then
/// verified (by koofr-core, or here when only the listing knew the MD5) as it streams.
pub(crate) async fn open_listed(
    client: Client,
    path: KoofrPath,
    listed: Listed,
) -> Result<ByteStream> {
    let download = client.download(&path).await.map_err(|e| {
        if e.is_not_found() {
            ConnectorError::not_found(format!(
                "{path}: listed by the scan but no longer exists on Koofr"
            ))
        } else {
            connector_error(e)
        }
    })?;
    if !listed.matches(&download.info) {
        return Err(ConnectorError::other(format!(
            "{path}: changed on Koofr since it was listed (listed {} bytes modified at {} ms, now {} bytes modified at {} ms)",
            listed.size, listed.modified, download.info.size, download.info.modified
        )));
    }
    let content = download.stream.map_err(connector_error);
    match (listed.md5(), download.info.hash.is_some()) {
        (Some(expected), false) => Ok(verify_md5(content, path, expected)),
        _ => Ok(content.boxed()),
    }
}

/// Checks the MD5 of a stream at its end (koofr-core does it when the download reports a hash).
fn verify_md5<S>(content: S, path: KoofrPath, expected: [u8; 16]) -> ByteStream
where
    S: futures::Stream<Item = Result<Bytes>> + Send + 'static,
{
    let content = content.boxed();
    futures::stream::unfold(Some((content, Md5::new(), path)), move |state| async move {
        let (mut content, mut md5, path) = state?;
        match content.next().await {
            Some(Ok(chunk)) => {
                md5.update(&chunk);
                Some((Ok(chunk), Some((content, md5, path))))
            }
            Some(Err(e)) => Some((Err(e), None)),
            None => {
                let actual: [u8; 16] = md5.finalize().into();
                (actual != expected).then(|| {
                    let message = format!(
                        "{path}: MD5 mismatch: received {}, Koofr listed {}",
                        hex::encode(actual),
                        hex::encode(expected)
                    );
                    (Err(ConnectorError::other(message)), None)
                })
            }
        }
    })
    .boxed()
}

#[async_trait]
impl Importer for KoofrImporter {
    fn location(&self) -> LocationInfo {
        self.location.clone()
    }

    async fn ping(&self) -> Result<()> {
        let info = self
            .client
            .info(&self.root)
            .await
            .map_err(connector_error)?;
        if !info.is_dir() {
            return Err(ConnectorError::invalid_input(format!(
                "the Koofr location {} is not a folder",
                self.root
            )));
        }
        Ok(())
    }

    async fn scan(&self) -> Result<RecordStream> {
        self.index.clear();
        self.readahead.reset();
        let listing = scan::start(&self.client, &self.root).await?;
        let (tx, rx) = mpsc::channel(RECORD_QUEUE);
        tokio::spawn(scan::produce(
            self.client.clone(),
            self.root.clone(),
            listing,
            self.index.clone(),
            tx,
        ));
        // Files are announced to the read-ahead in the order plakar receives them.
        let index = self.index.clone();
        let readahead = self.readahead.clone();
        Ok(ReceiverStream::new(rx)
            .inspect(move |item| {
                if let Ok(record) = item
                    && record.has_reader
                    && let Some(listed) = index.get(&record.pathname)
                {
                    readahead.announce(&record.pathname, listed);
                }
            })
            .boxed())
    }

    async fn open(&self, pathname: &str) -> Result<ByteStream> {
        tracing::debug!(pathname, "koofr: open");
        let listed = self.index.get(pathname).ok_or_else(|| {
            ConnectorError::not_found(format!("{pathname}: not a file announced by this scan"))
        })?;
        let path = KoofrPath::parse(pathname)
            .ok()
            .filter(|p| p.as_str() == pathname)
            .ok_or_else(|| {
                ConnectorError::not_found(format!("{pathname}: not a file announced by this scan"))
            })?;
        // Lazy: the download (and its concurrency permit) starts when the content is first read,
        // so many opened-but-unread files never starve the client's transfer slots.
        let client = self.client.clone();
        let prefetched = self.readahead.open(pathname);
        Ok(futures::stream::once(async move {
            if let Some(prefetched) = prefetched
                && let Some((content, reservation)) = prefetched.content().await?
            {
                // The bytes stay reserved until the stream is read or dropped.
                let chunks = (content.into_iter(), reservation);
                return Ok(
                    futures::stream::unfold(chunks, |(mut chunks, reservation)| async {
                        let chunk = chunks.next()?;
                        Some((Ok(chunk), (chunks, reservation)))
                    })
                    .boxed(),
                );
            }
            open_listed(client, path, listed).await
        })
        .try_flatten()
        .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn md5_verification_fails_a_changed_stream() {
        let expected: [u8; 16] = Md5::digest(b"abc").into();
        let path = KoofrPath::parse("/a").unwrap();
        let ok = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Ok(Bytes::from_static(b"c")),
        ]);
        let out: Vec<Result<Bytes>> = verify_md5(ok, path.clone(), expected).collect().await;
        assert!(out.iter().all(|r| r.is_ok()) && out.len() == 2);
        let bad = futures::stream::iter(vec![Ok(Bytes::from_static(b"abd"))]);
        let out: Vec<Result<Bytes>> = verify_md5(bad, path, expected).collect().await;
        let err = out.last().unwrap().as_ref().unwrap_err();
        assert!(err.message().contains("/a: MD5 mismatch"), "{err}");
    }
}
