//! [`RemoteImporter`]: an importer plugin driven as plakar does, implementing [`crate::Importer`].
//!
//! Like plakar, it acks every record: records without content at once, files after their
//! `Open` stream ended (or at `close`), and half-closes the `Import` stream after the last ack.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::transport::Channel;

use super::{InitArgs, PluginConnection, PluginHandle, init_client, plugin_accessors, received};
use crate::error::{ConnectorError, Result};
use crate::pb::importer as pb;
use crate::pb::importer::importer_client::ImporterClient;
use crate::pb::plakar::connectors as pbc;
use crate::types::{LocationInfo, Record};
use crate::{ByteStream, Importer, RecordStream};

/// Records queued towards the consumer of `scan`.
const RECORD_QUEUE: usize = 64;
/// How long `close` waits for the `Import` call to end after the half-close.
const IMPORT_END_WAIT: Duration = Duration::from_secs(30);

/// Ack bookkeeping of the running import.
#[derive(Default)]
struct AckState {
    /// None once half-closed. Unbounded but holds at most one ack per received record, and
    /// tonic drains it continuously.
    sender: Option<mpsc::UnboundedSender<pb::ImportRequest>>,
    /// Records with content not yet acked, by pathname.
    pending: HashMap<String, Vec<pbc::Record>>,
    finished: bool,
    started: bool,
}

impl AckState {
    fn ack(&mut self, header: pbc::Record) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(pb::ImportRequest {
                result: Some(pbc::Result {
                    header: Some(header),
                    error: String::new(),
                }),
            });
        }
        self.maybe_half_close();
    }
    fn ack_pending(&mut self, pathname: &str) {
        let header = match self.pending.get_mut(pathname) {
            Some(list) => {
                let header = list.pop();
                if list.is_empty() {
                    self.pending.remove(pathname);
                }
                header
            }
            None => None,
        };
        if let Some(header) = header {
            self.ack(header);
        }
    }
    fn ack_all(&mut self) {
        self.finished = true;
        let pending = std::mem::take(&mut self.pending);
        for header in pending.into_values().flatten() {
            self.ack(header);
        }
        self.maybe_half_close();
    }
    fn maybe_half_close(&mut self) {
        if self.finished && self.pending.is_empty() {
            self.sender = None;
        }
    }
}

/// An importer plugin after `Init`, usable as an [`Importer`].
#[derive(Debug)]
pub struct RemoteImporter {
    client: ImporterClient<Channel>,
    location: LocationInfo,
    plugin: PluginHandle,
    acks: Arc<Mutex<AckState>>,
    import_end: tokio::sync::Mutex<Option<oneshot::Receiver<Result<()>>>>,
}

impl std::fmt::Debug for AckState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckState")
            .field("pending", &self.pending.len())
            .field("finished", &self.finished)
            .finish()
    }
}

impl RemoteImporter {
    /// Sends `Init` with the config map and options.
    pub async fn init(connection: PluginConnection, args: &InitArgs) -> Result<Self> {
        let (client, plugin, init) =
            init_client!(ImporterClient, connection, pbc::InitRequest::from(args));
        Ok(Self {
            client,
            location: init.into(),
            plugin,
            acks: Arc::default(),
            import_end: tokio::sync::Mutex::new(None),
        })
    }

    plugin_accessors!(ImporterClient<Channel>);

    /// Acks every record still pending, half-closes, and returns the final status of `Import`
    /// (Ok if no import ran). Called by [`Importer::close`].
    pub async fn finish_import(&self) -> Result<()> {
        self.acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ack_all();
        let Some(end) = self.import_end.lock().await.take() else {
            return Ok(());
        };
        match tokio::time::timeout(IMPORT_END_WAIT, end).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(ConnectorError::other("import task ended without a status")),
            Err(_) => Err(ConnectorError::other(
                "Import did not end after the last ack and half-close",
            )),
        }
    }
}

#[async_trait]
impl Importer for RemoteImporter {
    fn location(&self) -> LocationInfo {
        self.location.clone()
    }

    async fn ping(&self) -> Result<()> {
        self.client.clone().ping(()).await?;
        Ok(())
    }

    async fn scan(&self) -> Result<RecordStream> {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        {
            let mut state = self.acks.lock().unwrap_or_else(|e| e.into_inner());
            if state.started {
                return Err(ConnectorError::new(
                    crate::ConnectorErrorKind::FailedPrecondition,
                    "Import runs once per plugin process",
                ));
            }
            *state = AckState {
                sender: Some(ack_tx),
                started: true,
                ..AckState::default()
            };
        }
        let mut responses = self
            .client
            .clone()
            .import(UnboundedReceiverStream::new(ack_rx))
            .await?
            .into_inner();
        let (record_tx, record_rx) = mpsc::channel::<Result<Record>>(RECORD_QUEUE);
        let (end_tx, end_rx) = oneshot::channel();
        *self.import_end.lock().await = Some(end_rx);
        let acks = self.acks.clone();
        tokio::spawn(async move {
            let mut consumer = Some(record_tx);
            let outcome = loop {
                match responses.message().await {
                    Ok(Some(msg)) => {
                        if msg.finished {
                            consumer = None; // The record stream ends here, the call goes on.
                            let mut state = acks.lock().unwrap_or_else(|e| e.into_inner());
                            state.finished = true;
                            state.maybe_half_close();
                            continue;
                        }
                        let Some(header) = msg.record else {
                            break Err(ConnectorError::other(
                                "import response without record nor finished",
                            ));
                        };
                        let record = Record::from_proto(&header);
                        if let Err(err) = record.validate() {
                            break Err(err); // plakar aborts the import the same way.
                        }
                        // Registered before delivery, so an Open racing ahead still finds it.
                        let has_content = record.has_reader && !record.is_error();
                        if has_content {
                            let mut state = acks.lock().unwrap_or_else(|e| e.into_inner());
                            state
                                .pending
                                .entry(record.pathname.clone())
                                .or_default()
                                .push(header.clone());
                        }
                        let pathname = record.pathname.clone();
                        let delivered = match &consumer {
                            Some(tx) => tx.send(Ok(record)).await.is_ok(),
                            None => false,
                        };
                        let mut state = acks.lock().unwrap_or_else(|e| e.into_inner());
                        if !has_content {
                            state.ack(header);
                        } else if !delivered {
                            state.ack_pending(&pathname);
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(status) => break Err(ConnectorError::from(status)),
                }
            };
            if let (Err(err), Some(tx)) = (&outcome, &consumer) {
                let _ = tx.send(Err(err.clone())).await;
            }
            // A plugin that ends Import early: nothing more to ack.
            acks.lock().unwrap_or_else(|e| e.into_inner()).sender = None;
            let _ = end_tx.send(outcome);
        });
        Ok(ReceiverStream::new(record_rx).boxed())
    }

    async fn open(&self, pathname: &str) -> Result<ByteStream> {
        // As plakar: only pathname and the xattr/target fields, never fileInfo.
        let record = pbc::Record {
            pathname: pathname.to_owned(),
            ..Default::default()
        };
        let result = self
            .client
            .clone()
            .open(pb::OpenRequest {
                record: Some(record),
            })
            .await;
        let stream = match result {
            Ok(response) => response.into_inner(),
            Err(status) => {
                self.acks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .ack_pending(pathname);
                return Err(status.into());
            }
        };
        let ack = AckOnDrop {
            acks: self.acks.clone(),
            pathname: pathname.to_owned(),
        };
        let what = format!("open {pathname}");
        Ok(received(stream, |m: pbc::Chunk| m.chunk, what, ack))
    }

    async fn close(&self) -> Result<()> {
        let import = self.finish_import().await;
        self.client.clone().close(()).await?;
        import
    }
}

/// Acks a file when its content stream is dropped (read to the end, failed, or abandoned).
struct AckOnDrop {
    acks: Arc<Mutex<AckState>>,
    pathname: String,
}

impl Drop for AckOnDrop {
    fn drop(&mut self) {
        self.acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ack_pending(&self.pathname);
    }
}
