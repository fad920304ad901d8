//! [`RemoteExporter`]: an exporter plugin driven as plakar does, implementing [`crate::Exporter`].
//!
//! One `Export` stream carries every call: a record, then (for files) its chunks and an empty
//! terminator. Calls from several tasks are serialised on the stream but wait for their results
//! concurrently, so the plugin can pipeline. `close` half-closes after the last record.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{InitArgs, PluginConnection, PluginHandle, init_client, plugin_accessors};
use crate::error::{ConnectorError, Result};
use crate::pb::plakar::connectors as pbc;
use crate::pb::plakar::exporter as pb;
use crate::pb::plakar::exporter::export_request::Packet;
use crate::pb::plakar::exporter::exporter_client::ExporterClient;
use crate::serve::chunked;
use crate::types::{FileInfo, LocationInfo, Record};
use crate::{ByteStream, Exporter};

/// Messages queued ahead of the `Export` stream.
const EXPORT_QUEUE: usize = 8;
/// Concurrent calls callers may usefully make.
const HOST_IN_FLIGHT: usize = 16;

/// The calls waiting for their results, and why the result stream ended once it has.
#[derive(Debug, Default)]
struct Pending {
    waiters: HashMap<String, VecDeque<oneshot::Sender<Result<pbc::Result>>>>,
    /// Set when the result stream ended: a later call fails with it at once.
    ended: Option<ConnectorError>,
}

type Waiters = Arc<Mutex<Pending>>;

struct ExportSession {
    sender: mpsc::Sender<pb::ExportRequest>,
}

/// An exporter plugin after `Init`, usable as an [`Exporter`].
#[derive(Debug)]
pub struct RemoteExporter {
    client: ExporterClient<Channel>,
    location: LocationInfo,
    plugin: PluginHandle,
    session: tokio::sync::Mutex<Option<ExportSession>>,
    started: Mutex<bool>,
    waiters: Waiters,
    reader: tokio::sync::Mutex<Option<JoinHandle<Result<()>>>>,
}

impl std::fmt::Debug for ExportSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportSession")
    }
}

fn fail_all(waiters: &Waiters, err: &ConnectorError) {
    let drained: Vec<_> = {
        let mut pending = waiters.lock().unwrap_or_else(|e| e.into_inner());
        pending.ended = Some(err.clone());
        pending.waiters.drain().collect()
    };
    for (pathname, queue) in drained {
        for waiter in queue {
            let _ = waiter.send(Err(err
                .clone()
                .context(format_args!("no result for {pathname}"))));
        }
    }
}

impl RemoteExporter {
    /// Sends `Init` with the config map and options.
    pub async fn init(connection: PluginConnection, args: &InitArgs) -> Result<Self> {
        let (client, plugin, init) =
            init_client!(ExporterClient, connection, pbc::InitRequest::from(args));
        Ok(Self {
            client,
            location: init.into(),
            plugin,
            session: tokio::sync::Mutex::new(None),
            started: Mutex::new(false),
            waiters: Arc::default(),
            reader: tokio::sync::Mutex::new(None),
        })
    }

    plugin_accessors!(ExporterClient<Channel>);

    /// Starts the `Export` stream on first use.
    async fn session(&self) -> Result<tokio::sync::MutexGuard<'_, Option<ExportSession>>> {
        let mut session = self.session.lock().await;
        if session.is_some() {
            return Ok(session);
        }
        {
            let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
            if *started {
                return Err(ConnectorError::other("the export stream is closed"));
            }
            *started = true;
        }
        let (tx, rx) = mpsc::channel(EXPORT_QUEUE);
        let mut responses = self
            .client
            .clone()
            .export(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let waiters = self.waiters.clone();
        let reader = tokio::spawn(async move {
            let outcome = loop {
                match responses.message().await {
                    Ok(Some(msg)) => {
                        let Some(result) = msg.result else {
                            break Err(ConnectorError::other("export response without result"));
                        };
                        let Some(header) = &result.header else {
                            break Err(ConnectorError::other("export result without header"));
                        };
                        let waiter = waiters
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .waiters
                            .get_mut(&header.pathname)
                            .and_then(VecDeque::pop_front);
                        match waiter {
                            Some(waiter) => {
                                let _ = waiter.send(Ok(result));
                            }
                            None => {
                                break Err(ConnectorError::other(format!(
                                    "unexpected export result for {}",
                                    header.pathname
                                )));
                            }
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(status) => break Err(ConnectorError::from(status)),
                }
            };
            let reason = match &outcome {
                Ok(()) => ConnectorError::other("export stream ended"),
                Err(err) => err.clone(),
            };
            fail_all(&waiters, &reason);
            outcome
        });
        *self.reader.lock().await = Some(reader);
        *session = Some(ExportSession { sender: tx });
        Ok(session)
    }

    /// Sends one record (and its content) and waits for its result, checking the echo.
    async fn call(&self, header: pbc::Record, content: Option<ByteStream>) -> Result<()> {
        let (waiter_tx, waiter_rx) = oneshot::channel();
        let pathname = header.pathname.clone();
        let mut content_error = None;
        {
            let mut guard = self.session().await?;
            let sender = guard
                .as_ref()
                .map(|s| s.sender.clone())
                .ok_or_else(|| ConnectorError::other("the export stream is closed"))?;
            {
                let mut pending = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(err) = &pending.ended {
                    return Err(err
                        .clone()
                        .context(format_args!("no result for {pathname}")));
                }
                pending
                    .waiters
                    .entry(pathname.clone())
                    .or_default()
                    .push_back(waiter_tx);
            }
            let closed =
                || ConnectorError::other(format!("export stream closed while sending {pathname}"));
            sender
                .send(pb::ExportRequest {
                    packet: Some(Packet::Record(header.clone())),
                })
                .await
                .map_err(|_| closed())?;
            if let Some(content) = content {
                let mut chunks = std::pin::pin!(chunked(content));
                while let Some(item) = chunks.next().await {
                    match item {
                        Ok(chunk) => sender
                            .send(pb::ExportRequest {
                                packet: Some(Packet::Chunk(chunk)),
                            })
                            .await
                            .map_err(|_| closed())?,
                        Err(err) => {
                            content_error = Some(err);
                            break;
                        }
                    }
                }
                if content_error.is_some() {
                    // The content broke: end the stream without a terminator, as an interrupted
                    // plakar would; the plugin must abort this file.
                    *guard = None;
                } else {
                    let terminator = pb::ExportRequest {
                        packet: Some(Packet::Chunk(Bytes::new())),
                    };
                    sender.send(terminator).await.map_err(|_| closed())?;
                }
            }
        }
        let result = waiter_rx
            .await
            .map_err(|_| ConnectorError::other(format!("no result for {pathname}")))?;
        if let Some(err) = content_error {
            return Err(err);
        }
        let result = result?;
        if result.header.as_ref() != Some(&header) {
            return Err(ConnectorError::other(format!(
                "result for {pathname} is not a full echo of its record"
            )));
        }
        if result.error.is_empty() {
            Ok(())
        } else {
            Err(ConnectorError::other(result.error))
        }
    }

    /// Half-closes the export stream and waits for every result; Ok if no export ran.
    pub async fn finish_export(&self) -> Result<()> {
        *self.session.lock().await = None;
        *self.started.lock().unwrap_or_else(|e| e.into_inner()) = true;
        let Some(reader) = self.reader.lock().await.take() else {
            return Ok(());
        };
        reader
            .await
            .map_err(|e| ConnectorError::other(format!("export reader failed: {e}")))?
    }
}

#[async_trait]
impl Exporter for RemoteExporter {
    fn location(&self) -> LocationInfo {
        self.location.clone()
    }

    async fn ping(&self) -> Result<()> {
        self.client.clone().ping(()).await?;
        Ok(())
    }

    fn max_in_flight(&self) -> usize {
        HOST_IN_FLIGHT
    }

    async fn create_directory(&self, pathname: &str, info: &FileInfo) -> Result<()> {
        self.call(Record::directory(pathname, info.clone()).to_proto(), None)
            .await
    }

    async fn store_file(&self, pathname: &str, info: &FileInfo, content: ByteStream) -> Result<()> {
        self.call(
            Record::file(pathname, info.clone()).to_proto(),
            Some(content),
        )
        .await
    }

    async fn other(&self, record: &Record) -> Result<()> {
        let content = record.has_reader.then(|| futures::stream::empty().boxed());
        self.call(record.to_proto(), content).await
    }

    async fn close(&self) -> Result<()> {
        let export = self.finish_export().await;
        self.client.clone().close(()).await?;
        export
    }
}
