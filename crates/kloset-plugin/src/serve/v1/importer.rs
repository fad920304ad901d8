//! The gRPC `importer.Importer` service of protocol v1 over a [`crate::Importer`] connector:
//! `Scan` streams the records, `OpenReader` a file's content, `CloseReader` ends its read.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use super::{SessionService, answer_close};
use crate::Importer;
use crate::pb::plakar::connectors::FileInfo;
use crate::pb::v1::importer as pb;
use crate::pb::v1::importer::importer_server::{Importer as ImporterRpc, ImporterServer};
use crate::pb::v1::session::{Cookie, PathnameRequest};
use crate::serve::importer::content;
use crate::serve::{ChunkStream, Factory, chunk_messages, routes};
use crate::types::Record;

/// Records queued ahead of the gRPC stream; flow control does the rest.
const RECORD_QUEUE: usize = 64;

/// The routes of a v1 importer served by `factory`.
pub(crate) fn router<I: Importer>(factory: Factory<I>) -> Routes {
    routes!(ImporterServer::new(SessionService::new(factory)))
}

/// The v1 message of a record (an error record is a `ScanError` for its pathname).
fn scan_response(record: Record) -> pb::ScanResponse {
    let result = match record.error {
        Some(message) => pb::scan_response::Result::Error(pb::ScanError { message }),
        None => pb::scan_response::Result::Record(pb::ScanRecord {
            target: record.target,
            fileinfo: Some(
                record
                    .file_info
                    .as_ref()
                    .map(FileInfo::from)
                    .unwrap_or_default(),
            ),
            file_attributes: record.file_attributes,
            xattr: record.is_xattr.then(|| pb::ExtendedAttribute {
                name: record.xattr_name,
                r#type: record.xattr_type.to_proto(),
            }),
        }),
    };
    pb::ScanResponse {
        pathname: record.pathname,
        result: Some(result),
    }
}

/// A whole-scan failure as v1 can carry it: an error record for the root (plakar 1.0.6 never
/// stops reading a `Scan` stream that failed, so the stream itself must end cleanly).
fn scan_failure(root: &str, message: String) -> pb::ScanResponse {
    pb::ScanResponse {
        pathname: root.to_owned(),
        result: Some(pb::scan_response::Result::Error(pb::ScanError { message })),
    }
}

type ScanStream = Pin<Box<dyn Stream<Item = Result<pb::ScanResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<I: Importer> ImporterRpc for SessionService<I> {
    async fn init(
        &self,
        request: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        let importer = self.session.init(request.into_inner().into()).await?;
        importer.ping().await?;
        Ok(Response::new(pb::InitResponse {
            error: None,
            cookie: self.session.cookie(),
        }))
    }

    async fn info(&self, request: Request<Cookie>) -> Result<Response<pb::InfoResponse>, Status> {
        let loc = self.session.get(&request.into_inner().cookie)?.location();
        Ok(Response::new(pb::InfoResponse {
            r#type: loc.r#type,
            origin: loc.origin,
            root: loc.root,
        }))
    }

    type ScanStream = ScanStream;

    async fn scan(&self, request: Request<Cookie>) -> Result<Response<ScanStream>, Status> {
        let importer = self.session.get(&request.into_inner().cookie)?;
        let (tx, rx) = mpsc::channel::<Result<pb::ScanResponse, Status>>(RECORD_QUEUE);
        tokio::spawn(async move {
            let root = importer.location().root;
            let mut records = match importer.scan().await {
                Ok(records) => records,
                Err(err) => {
                    let message = err.context("scan failed").message().to_owned();
                    let _ = tx.send(Ok(scan_failure(&root, message))).await;
                    return;
                }
            };
            while let Some(item) = records.next().await {
                let message = match item.and_then(|record| record.validate().map(|()| record)) {
                    Ok(record) => scan_response(record),
                    Err(err) => {
                        let message = err.context("scan failed").message().to_owned();
                        let _ = tx.send(Ok(scan_failure(&root, message))).await;
                        return;
                    }
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type OpenReaderStream = ChunkStream;

    async fn open_reader(
        &self,
        request: Request<PathnameRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let req = request.into_inner();
        let importer = self.session.get(&req.cookie)?;
        // The connector answers only for files its scan announced (v1 has no acks to bound a
        // list of them here).
        let data = content(&*importer, &req.pathname).await?;
        Ok(Response::new(chunk_messages(data)))
    }

    async fn close_reader(
        &self,
        request: Request<PathnameRequest>,
    ) -> Result<Response<()>, Status> {
        // A file's read ends with its `OpenReader` stream: nothing is held until here.
        self.session.get(&request.into_inner().cookie)?;
        Ok(Response::new(()))
    }

    async fn close(&self, request: Request<Cookie>) -> Result<Response<()>, Status> {
        let importer = self.session.get(&request.into_inner().cookie)?;
        answer_close(importer.close().await)
    }
}
