//! The gRPC `importer.Importer` service: records out, acks in until plakar half-closes; `Open`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use super::{ChunkStream, ConnectorSlot, Factory, chunk_messages, invalid, rechunk, routes};
use crate::Importer;
use crate::pb::importer as pb;
use crate::pb::importer::importer_server::{Importer as ImporterRpc, ImporterServer};
use crate::pb::plakar::connectors::{InitRequest, InitResponse};

/// Records queued ahead of the gRPC stream; flow control does the rest.
const RECORD_QUEUE: usize = 64;

/// Pathnames announced with content and not yet acknowledged: only those can be opened.
/// plakar always opens a file before acking it, so this holds only the in-flight window.
#[derive(Default)]
struct Announced(Mutex<HashMap<String, usize>>);

impl Announced {
    fn add(&self, pathname: &str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(pathname.to_owned())
            .or_default() += 1;
    }
    fn ack(&self, pathname: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(pathname) {
            *count -= 1;
            if *count == 0 {
                map.remove(pathname);
            }
        }
    }
    fn contains(&self, pathname: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(pathname)
    }
}

pub(crate) struct ImporterService<I> {
    slot: ConnectorSlot<I>,
    announced: Arc<Announced>,
}

impl<I: Importer> ImporterService<I> {
    pub(crate) fn router(factory: Factory<I>) -> Routes {
        routes!(ImporterServer::new(Self {
            slot: ConnectorSlot::new(factory),
            announced: Arc::default(),
        }))
    }
}

/// A file's content as chunks for an `Open` stream (of either protocol).
pub(crate) async fn content<I: Importer + ?Sized>(
    importer: &I,
    pathname: &str,
) -> Result<impl Stream<Item = Result<Bytes, Status>> + Send + 'static, Status> {
    let data = importer
        .open(pathname)
        .await
        .map_err(|e| Status::from(e.context(format_args!("open {pathname}"))))?;
    Ok(rechunk(data))
}

type ImportStream = Pin<Box<dyn Stream<Item = Result<pb::ImportResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<I: Importer> ImporterRpc for ImporterService<I> {
    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let importer = self.slot.init(request.into_inner().into()).await?;
        Ok(Response::new(importer.location().into()))
    }

    async fn ping(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        self.slot.get()?.ping().await?;
        Ok(Response::new(()))
    }

    type ImportStream = ImportStream;

    async fn import(
        &self,
        request: Request<Streaming<pb::ImportRequest>>,
    ) -> Result<Response<ImportStream>, Status> {
        let importer = self.slot.get()?;
        let mut acks = request.into_inner();
        let mut records = importer.scan().await?;
        let (tx, rx) = mpsc::channel::<Result<pb::ImportResponse, Status>>(RECORD_QUEUE);

        // Acks are read on their own task so a blocked record send can never stall them; the
        // response stream ends (OK) only when both tasks have dropped their senders, i.e. after
        // `finished` was sent and plakar half-closed.
        let announced = self.announced.clone();
        let ack_tx = tx.clone();
        tokio::spawn(async move {
            loop {
                match acks.message().await {
                    Ok(Some(ack)) => {
                        if let Some(header) = ack.result.as_ref().and_then(|r| r.header.as_ref()) {
                            announced.ack(&header.pathname);
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "import ack stream failed");
                        break;
                    }
                }
            }
            drop(ack_tx);
        });

        let announced = self.announced.clone();
        tokio::spawn(async move {
            while let Some(item) = records.next().await {
                let message = match item.and_then(|record| record.validate().map(|()| record)) {
                    Ok(record) => {
                        if record.has_reader && !record.is_error() {
                            announced.add(&record.pathname);
                        }
                        Ok(pb::ImportResponse {
                            record: Some(record.to_proto()),
                            finished: false,
                        })
                    }
                    Err(err) => Err(Status::from(err.context("scan failed"))),
                };
                let fatal = message.is_err();
                if tx.send(message).await.is_err() || fatal {
                    return;
                }
            }
            let _ = tx
                .send(Ok(pb::ImportResponse {
                    record: None,
                    finished: true,
                }))
                .await;
        });

        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type OpenStream = ChunkStream;

    async fn open(
        &self,
        request: Request<pb::OpenRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let importer = self.slot.get()?;
        let record = request
            .into_inner()
            .record
            .ok_or_else(|| invalid("Open without a record".to_owned()))?;
        if record.is_xattr {
            return Err(Status::unimplemented(format!(
                "extended attribute {} of {} cannot be read: not supported",
                record.xattr_name, record.pathname
            )));
        }
        if !self.announced.contains(&record.pathname) {
            return Err(Status::not_found(format!(
                "{}: not announced with content by the running import",
                record.pathname
            )));
        }
        let data = content(&*importer, &record.pathname).await?;
        Ok(Response::new(chunk_messages(data)))
    }

    async fn close(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        self.slot.get()?.close().await?;
        Ok(Response::new(()))
    }
}
