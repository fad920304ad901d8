//! The gRPC `plakar.exporter.Exporter` service, with generic pipelining of connector calls.
//!
//! plakar sends every record (and a file's content inline) on one stream, so a one-at-a-time
//! exporter would wait one round trip per file. This layer keeps several connector calls in
//! flight: small files are read into memory (within a byte budget) and handed to a task; larger
//! ones stream straight to the connector while the request stream waits. Any record waits for
//! the calls of its pending ancestor directories, so parents are complete before children.
//! A [fatal](ConnectorError::fatal) error of any record (refused credentials, a full account)
//! ends the whole export with that error instead of failing the records one by one.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use super::transport::spawn_in_flight;
use super::{ConnectorSlot, Factory, routes};
use crate::error::{ConnectorError, Result};
use crate::pb::plakar::connectors as pbc;
use crate::pb::plakar::exporter as pb;
use crate::pb::plakar::exporter::export_request::Packet;
use crate::pb::plakar::exporter::exporter_server::{Exporter as ExporterRpc, ExporterServer};
use crate::types::Record;
use crate::{Exporter, safe_relative_path};

/// Limits of the exporter pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportPipeline {
    /// Files up to this size (by their `FileInfo.size`) are read into memory and handed to a
    /// task; larger or unknown-size files stream to the connector while the stream waits.
    pub small_file_threshold: usize,
    /// Total bytes of small files held in memory at once.
    pub memory_budget: usize,
    /// Overrides the connector's [`Exporter::max_in_flight`] when set.
    pub max_in_flight: Option<usize>,
}

impl Default for ExportPipeline {
    fn default() -> Self {
        Self {
            small_file_threshold: 4 << 20,
            memory_budget: 64 << 20,
            max_in_flight: None,
        }
    }
}

/// Chunks queued towards a connector that is streaming a large file.
const STREAMED_CHUNK_QUEUE: usize = 4;
/// Pruning point for the map of directory calls.
const DIRECTORY_MAP_PRUNE: usize = 256;

pub(crate) struct ExporterService<E> {
    slot: ConnectorSlot<E>,
    pipeline: ExportPipeline,
}

impl<E: Exporter> ExporterService<E> {
    pub(crate) fn router(factory: Factory<E>, pipeline: ExportPipeline) -> Routes {
        routes!(ExporterServer::new(Self {
            slot: ConnectorSlot::new(factory),
            pipeline,
        }))
    }
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<E: Exporter> ExporterRpc for ExporterService<E> {
    async fn init(
        &self,
        request: Request<pbc::InitRequest>,
    ) -> Result<Response<pbc::InitResponse>, Status> {
        let exporter = self.slot.init(request.into_inner().into()).await?;
        Ok(Response::new(exporter.location().into()))
    }

    async fn ping(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        self.slot.get()?.ping().await?;
        Ok(Response::new(()))
    }

    type ExportStream = ExportStream;

    async fn export(
        &self,
        request: Request<Streaming<pb::ExportRequest>>,
    ) -> Result<Response<ExportStream>, Status> {
        let exporter = self.slot.get()?;
        let in_flight = self
            .pipeline
            .max_in_flight
            .unwrap_or_else(|| exporter.max_in_flight())
            .max(1);
        let (tx, rx) = mpsc::channel(in_flight + 16);
        let pump = ExportPump::new(exporter, request.into_inner(), tx, self.pipeline, in_flight);
        spawn_in_flight(pump.run());
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn close(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        self.slot.get()?.close().await?;
        Ok(Response::new(()))
    }
}

type Done = Shared<BoxFuture<'static, ()>>;

/// Where results go: the response stream, which a fatal error ends.
#[derive(Clone)]
struct Results {
    tx: mpsc::Sender<Result<pb::ExportResponse, Status>>,
    /// Set by the first fatal error, which is the last item sent.
    fatal_sent: Arc<AtomicBool>,
    /// Fired with it: the pump stops reading records at once.
    ended: CancellationToken,
}

impl Results {
    /// Sends a record's result, or ends the stream with its error when that is fatal.
    async fn send(&self, header: pbc::Record, outcome: Result<()>) {
        let item = match outcome {
            Err(err) if err.is_fatal() => {
                if self.fatal_sent.swap(true, Ordering::SeqCst) {
                    return;
                }
                tracing::debug!(error = %err, "a fatal error ends the export");
                self.ended.cancel();
                Err(Status::from(err))
            }
            outcome => Ok(result_message(header, outcome)),
        };
        let _ = self.tx.send(item).await;
    }
}

/// Reads the export request stream and dispatches connector calls.
struct ExportPump<E> {
    exporter: Arc<E>,
    incoming: Streaming<pb::ExportRequest>,
    lookahead: Option<pb::ExportRequest>,
    results: Results,
    calls: Arc<Semaphore>,
    memory: Arc<Semaphore>,
    pipeline: ExportPipeline,
    directories: HashMap<String, Done>,
}

/// How a record's content ended.
enum ContentEnd {
    /// The empty terminator chunk arrived.
    Complete,
    /// The stream ended (or broke, or a record came) first.
    Truncated,
}

fn result_message(header: pbc::Record, outcome: Result<()>) -> pb::ExportResponse {
    let error = outcome
        .err()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    pb::ExportResponse {
        result: Some(pbc::Result {
            header: Some(header),
            error,
        }),
    }
}

fn truncated(pathname: &str) -> ConnectorError {
    ConnectorError::other(format!(
        "export stream ended before the end of the content of {pathname}"
    ))
}

impl<E: Exporter> ExportPump<E> {
    fn new(
        exporter: Arc<E>,
        incoming: Streaming<pb::ExportRequest>,
        results: mpsc::Sender<Result<pb::ExportResponse, Status>>,
        pipeline: ExportPipeline,
        in_flight: usize,
    ) -> Self {
        let budget = pipeline
            .memory_budget
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let pipeline = ExportPipeline {
            small_file_threshold: pipeline.small_file_threshold.min(budget),
            memory_budget: budget,
            ..pipeline
        };
        Self {
            exporter,
            incoming,
            lookahead: None,
            results: Results {
                tx: results,
                fatal_sent: Arc::new(AtomicBool::new(false)),
                ended: CancellationToken::new(),
            },
            calls: Arc::new(Semaphore::new(in_flight)),
            memory: Arc::new(Semaphore::new(budget)),
            pipeline,
            directories: HashMap::new(),
        }
    }

    /// The next request; `None` at its end, or once a fatal error ended the export (then the
    /// request stream is dropped at once, which tells plakar to stop sending).
    async fn next_message(&mut self) -> Option<pb::ExportRequest> {
        if self.results.ended.is_cancelled() {
            return None;
        }
        if let Some(msg) = self.lookahead.take() {
            return Some(msg);
        }
        let ended = self.results.ended.clone();
        tokio::select! {
            received = self.incoming.message() => match received {
                Ok(msg) => msg,
                Err(status) => {
                    tracing::debug!(%status, "export request stream failed");
                    None
                }
            },
            () = ended.cancelled() => None,
        }
    }

    /// The next content chunk of the current record; `Err` when the content ends.
    async fn next_chunk(&mut self) -> std::result::Result<Bytes, ContentEnd> {
        loop {
            match self.next_message().await {
                None => return Err(ContentEnd::Truncated),
                Some(pb::ExportRequest {
                    packet: Some(Packet::Chunk(chunk)),
                }) => {
                    if chunk.is_empty() {
                        return Err(ContentEnd::Complete);
                    }
                    return Ok(chunk);
                }
                Some(
                    msg @ pb::ExportRequest {
                        packet: Some(Packet::Record(_)),
                    },
                ) => {
                    self.lookahead = Some(msg);
                    return Err(ContentEnd::Truncated);
                }
                Some(pb::ExportRequest { packet: None }) => continue,
            }
        }
    }

    async fn discard_content(&mut self) -> ContentEnd {
        loop {
            if let Err(end) = self.next_chunk().await {
                return end;
            }
        }
    }

    async fn send_now(&self, header: pbc::Record, outcome: Result<()>) {
        self.results.send(header, outcome).await;
    }

    /// Pending calls of this pathname's ancestor directories.
    fn ancestors_pending(&self, pathname: &str) -> Vec<Done> {
        let mut waits = Vec::new();
        let mut current = pathname;
        while current != "/" && !current.is_empty() {
            let parent = match current.rfind('/') {
                Some(0) => "/",
                Some(i) => &current[..i],
                None => break,
            };
            if let Some(done) = self.directories.get(parent)
                && done.peek().is_none()
            {
                waits.push(done.clone());
            }
            current = parent;
        }
        waits
    }

    async fn run(mut self) {
        while let Some(msg) = self.next_message().await {
            let stream_ended = match msg.packet {
                // A record arriving inside a file's content is kept as lookahead.
                Some(Packet::Record(record)) => {
                    !self.dispatch(record).await && self.lookahead.is_none()
                }
                Some(Packet::Chunk(chunk)) => {
                    tracing::warn!(
                        len = chunk.len(),
                        "export chunk outside of a file record; ignored"
                    );
                    false
                }
                None => false,
            };
            if stream_ended {
                break;
            }
        }
        // Results of tasks still running are sent by them; the stream ends when all are done.
    }

    /// Handles one record; false when the request stream ended inside its content.
    async fn dispatch(&mut self, header: pbc::Record) -> bool {
        let record = Record::from_proto(&header);
        let checks = record
            .validate()
            .and_then(|()| safe_relative_path(&record.pathname).map(|_| ()));
        let info = record.file_info.clone();
        let is_dir = info.as_ref().is_some_and(|i| i.mode.is_dir());
        let is_file = info.as_ref().is_some_and(|i| i.mode.is_regular()) && !record.is_xattr;

        if record.is_error() || checks.is_err() || (record.has_reader && !is_file) {
            // Error records are Ok by rule; hostile or invalid ones get an error; content of
            // records the connector cannot take (e.g. xattrs) is skipped.
            let complete = if record.has_reader {
                matches!(self.discard_content().await, ContentEnd::Complete)
            } else {
                true
            };
            let outcome = if record.is_error() {
                Ok(())
            } else if let Err(err) = checks {
                Err(err)
            } else if !complete {
                Err(truncated(&record.pathname))
            } else {
                self.exporter.other(&record).await
            };
            self.send_now(header, outcome).await;
            return complete;
        }

        let waits = self.ancestors_pending(&record.pathname);
        let Ok(call_permit) = self.calls.clone().acquire_owned().await else {
            return false;
        };
        let exporter = self.exporter.clone();
        let results = self.results.clone();
        let wait_ancestors = futures::future::join_all(waits);

        if let Some(info) = info.clone().filter(|_| is_dir) {
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let done: Done = done_rx.map(|_| ()).boxed().shared();
            if self.directories.len() >= DIRECTORY_MAP_PRUNE {
                self.directories.retain(|_, d| d.peek().is_none());
            }
            self.directories.insert(record.pathname.clone(), done);
            spawn_in_flight(async move {
                wait_ancestors.await;
                let outcome = exporter.create_directory(&record.pathname, &info).await;
                drop(call_permit);
                let _ = done_tx.send(());
                results.send(header, outcome).await;
            });
            return true;
        }

        let Some(info) = info.filter(|_| is_file && record.has_reader) else {
            spawn_in_flight(async move {
                wait_ancestors.await;
                let outcome = exporter.other(&record).await;
                drop(call_permit);
                results.send(header, outcome).await;
            });
            return true;
        };

        let declared = usize::try_from(info.size).ok();
        let mut buffered: Vec<Bytes> = Vec::new();
        if let Some(size) = declared.filter(|s| *s <= self.pipeline.small_file_threshold) {
            // Small file: read it whole within the memory budget, then hand it to a task.
            let Ok(memory_permit) = self.memory.clone().acquire_many_owned(size as u32).await
            else {
                return false;
            };
            let mut total = 0usize;
            loop {
                match self.next_chunk().await {
                    Ok(chunk) => {
                        total += chunk.len();
                        buffered.push(chunk);
                        if total > size {
                            // Larger than declared: stream the rest instead.
                            drop(memory_permit);
                            break;
                        }
                    }
                    Err(ContentEnd::Complete) => {
                        spawn_in_flight(async move {
                            wait_ancestors.await;
                            let content =
                                futures::stream::iter(buffered.into_iter().map(Ok)).boxed();
                            let outcome =
                                exporter.store_file(&record.pathname, &info, content).await;
                            drop(call_permit);
                            drop(memory_permit);
                            results.send(header, outcome).await;
                        });
                        return true;
                    }
                    Err(ContentEnd::Truncated) => {
                        drop(call_permit);
                        self.send_now(header, Err(truncated(&record.pathname)))
                            .await;
                        return false;
                    }
                }
            }
        }

        // Large, unknown-size or over-long file: stream it to the connector as it arrives.
        let (chunk_tx, chunk_rx) = mpsc::channel::<Result<Bytes>>(STREAMED_CHUNK_QUEUE);
        let pathname = record.pathname.clone();
        spawn_in_flight(async move {
            wait_ancestors.await;
            let head = futures::stream::iter(buffered.into_iter().map(Ok));
            let content = head.chain(ReceiverStream::new(chunk_rx)).boxed();
            let outcome = exporter.store_file(&record.pathname, &info, content).await;
            drop(call_permit);
            results.send(header, outcome).await;
        });
        let mut receiver_alive = true;
        loop {
            match self.next_chunk().await {
                Ok(chunk) => {
                    // A connector that stopped reading (it failed) no longer gets chunks.
                    if receiver_alive && chunk_tx.send(Ok(chunk)).await.is_err() {
                        receiver_alive = false;
                    }
                }
                Err(ContentEnd::Complete) => return true,
                Err(ContentEnd::Truncated) => {
                    let _ = chunk_tx.send(Err(truncated(&pathname))).await;
                    return false;
                }
            }
        }
    }
}
