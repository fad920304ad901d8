//! The gRPC `store.Store` service over a [`crate::Store`] connector.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use super::{
    ChunkStream, ConnectorSlot, Factory, MAX_SEND_MESSAGE, chunk_messages, invalid, rechunk, routes,
};
use crate::Store;
use crate::error::ConnectorError;
use crate::pb::plakar::connectors::{BytesWritten, Config, Mode, Size, StoreInitRequest};
use crate::pb::store as pb;
use crate::pb::store::store_server::{Store as StoreRpc, StoreServer};
use crate::types::{ByteRange, Mac, ObjectKey, Resource};

/// Largest MAC count that fits one `ListResponse` under 4 MiB (34 bytes each on the wire).
pub const MAX_LIST_MACS: usize = 120_000;

pub(crate) struct StoreService<S> {
    slot: ConnectorSlot<S>,
}

impl<S: Store> StoreService<S> {
    pub(crate) fn router(factory: Factory<S>) -> Routes {
        routes!(StoreServer::new(Self {
            slot: ConnectorSlot::new(factory),
        }))
    }
}

pub(crate) fn mac_of(bytes: &[u8]) -> Result<Mac, Status> {
    Mac::from_slice(bytes).map_err(Status::from)
}

/// The key a v2 request names by its resource `type` and MAC.
fn key_of(resource: i32, mac: &[u8]) -> Result<ObjectKey, Status> {
    Ok(Resource::from_proto(resource)?.key(mac_of(mac)?))
}

/// The kloset configuration `Open` answers (in either protocol), refused if it cannot be sent.
pub(crate) fn sendable_config(config: Bytes) -> Result<Bytes, Status> {
    if config.len() > MAX_SEND_MESSAGE - 64 {
        return Err(invalid(format!(
            "kloset configuration too large to send ({} bytes)",
            config.len()
        )));
    }
    Ok(config)
}

/// The MACs of `resource` as a `List` answers them (in either protocol): refused when more than
/// `limit` would not fit one response under 4 MiB (`protocol` names the limit in the error).
pub(crate) async fn listed_macs<S: Store + ?Sized>(
    store: &S,
    resource: Resource,
    limit: usize,
    protocol: &str,
) -> Result<Vec<Bytes>, Status> {
    let macs = store.list(resource).await?;
    if macs.len() > limit {
        return Err(Status::resource_exhausted(format!(
            "too many {resource} objects to list: {} ({protocol} limit {limit} per response)",
            macs.len()
        )));
    }
    Ok(macs
        .into_iter()
        .map(|mac| Bytes::copy_from_slice(&mac.0))
        .collect())
}

/// Stores an object received as a `Put` stream (of either protocol): `first` is the chunk of
/// the message that named it (data, if any), `rest` the following chunks. Empty chunks are
/// dropped; a broken stream reaches the connector as an error item, so nothing is stored.
pub(crate) async fn put_object<S, R>(
    store: &S,
    key: ObjectKey,
    first: Bytes,
    rest: R,
) -> Result<i64, Status>
where
    S: Store + ?Sized,
    R: Stream<Item = Result<Bytes, Status>> + Send + 'static,
{
    let head = futures::stream::iter((!first.is_empty()).then_some(Ok(first)));
    let data = head
        .chain(rest.map(|chunk| chunk.map_err(ConnectorError::from)))
        .filter(|c| futures::future::ready(c.as_ref().map_or(true, |b| !b.is_empty())));
    let written = store
        .put(key, data.boxed())
        .await
        .map_err(|e| Status::from(e.context(format_args!("put {key}"))))?;
    Ok(written as i64)
}

/// Chunks of an object stream, as sent in a `Get` stream of either protocol.
pub(crate) type ObjectChunks = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// An object (or `range` of it) as chunks of at most 1 MiB for a `Get` stream of either
/// protocol: never more than the range asks for, and the connector is not read past it.
pub(crate) async fn get_object<S: Store + ?Sized>(
    store: &S,
    key: ObjectKey,
    range: Option<ByteRange>,
) -> Result<ObjectChunks, Status> {
    if range.is_some_and(|r| r.length == 0) {
        return Ok(Box::pin(futures::stream::empty()));
    }
    let data = store.get(key, range).await?;
    let budget = range.map_or(u64::MAX, |r| u64::from(r.length));
    let limited = data.scan(budget, |budget, item| {
        if *budget == 0 {
            return futures::future::ready(None);
        }
        let item = item.map(|mut chunk| {
            let keep = (chunk.len() as u64).min(*budget) as usize;
            *budget -= keep as u64;
            chunk.truncate(keep);
            chunk
        });
        futures::future::ready(Some(item))
    });
    Ok(Box::pin(rechunk(limited)))
}

#[tonic::async_trait]
impl<S: Store> StoreRpc for StoreService<S> {
    async fn init(
        &self,
        request: Request<StoreInitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        let store = self.slot.init(request.into_inner().into()).await?;
        Ok(Response::new(store.location().into()))
    }

    async fn create(&self, request: Request<Config>) -> Result<Response<()>, Status> {
        self.slot.get()?.create(request.into_inner().config).await?;
        Ok(Response::new(()))
    }

    async fn open(&self, _request: Request<()>) -> Result<Response<Config>, Status> {
        let config = sendable_config(self.slot.get()?.open().await?)?;
        Ok(Response::new(Config { config }))
    }

    async fn ping(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        self.slot.get()?.ping().await?;
        Ok(Response::new(()))
    }

    async fn mode(&self, _request: Request<()>) -> Result<Response<Mode>, Status> {
        Ok(Response::new(Mode {
            mode: self.slot.get()?.mode().0,
        }))
    }

    async fn size(&self, _request: Request<()>) -> Result<Response<Size>, Status> {
        Ok(Response::new(Size {
            size: self.slot.get()?.size().await?,
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let store = self.slot.get()?;
        let resource = Resource::from_proto(request.into_inner().r#type)?;
        let macs = listed_macs(&*store, resource, MAX_LIST_MACS, "protocol").await?;
        Ok(Response::new(pb::ListResponse { macs }))
    }

    async fn put(
        &self,
        request: Request<Streaming<pb::PutRequest>>,
    ) -> Result<Response<BytesWritten>, Status> {
        let store = self.slot.get()?;
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| invalid("Put stream ended before its first message".to_owned()))?;
        let key = key_of(first.r#type, &first.mac)?;
        let rest = incoming.map(|msg| msg.map(|m| m.chunk));
        let bytes_written = put_object(&*store, key, first.chunk, rest).await?;
        Ok(Response::new(BytesWritten { bytes_written }))
    }

    type GetStream = ChunkStream;

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<ChunkStream>, Status> {
        let store = self.slot.get()?;
        let req = request.into_inner();
        let key = key_of(req.r#type, &req.mac)?;
        let range = req.range.map(|r| ByteRange {
            offset: r.offset,
            length: r.length,
        });
        let data = get_object(&*store, key, range).await?;
        Ok(Response::new(chunk_messages(data)))
    }

    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Result<Response<()>, Status> {
        let store = self.slot.get()?;
        let req = request.into_inner();
        store.delete(key_of(req.r#type, &req.mac)?).await?;
        Ok(Response::new(()))
    }

    async fn close(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        self.slot.get()?.close().await?;
        Ok(Response::new(()))
    }
}
