//! The gRPC `store.Store` service of protocol v1 over a [`crate::Store`] connector: one set of
//! calls per resource (states, packfiles, locks), and `GetPackfileBlob` for ranged reads.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use super::Session;
use crate::Store;
use crate::messages::PutMessage;
use crate::pb::v1::store as pb;
use crate::pb::v1::store::store_server::{Store as StoreRpc, StoreServer};
use crate::serve::store::{
    ObjectChunks, get_object, listed_macs, mac_of, put_object, sendable_config,
};
use crate::serve::{Factory, invalid, routes};
use crate::types::{ByteRange, Mac, Resource};

/// Largest MAC count that fits one `Get…sResponse` under 4 MiB: each is a `MAC` message inside
/// the repeated field, 36 bytes on the wire.
const MAX_LIST_MACS: usize = 116_000;

pub(crate) struct StoreService<S> {
    session: Session<S>,
}

impl<S: Store> StoreService<S> {
    pub(crate) fn router(factory: Factory<S>) -> Routes {
        routes!(StoreServer::new(Self {
            session: Session::new(factory),
        }))
    }

    async fn list(&self, cookie: &str, resource: Resource) -> Result<Vec<pb::Mac>, Status> {
        let store = self.session.get(cookie)?;
        let macs = listed_macs(&*store, resource, MAX_LIST_MACS, "protocol v1").await?;
        Ok(macs.into_iter().map(|value| pb::Mac { value }).collect())
    }

    async fn put<M: PutMessage>(
        &self,
        resource: Resource,
        mut incoming: Streaming<M>,
    ) -> Result<i64, Status> {
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| invalid("Put stream ended before its first message".to_owned()))?;
        let (mac, chunk, cookie) = first.into_parts();
        let store = self.session.get(&cookie)?;
        let mac = mac_field(mac)?;
        let rest = incoming.map(|msg| msg.map(|m| m.into_parts().1));
        put_object(&*store, resource, mac, chunk, rest).await
    }

    async fn get(
        &self,
        cookie: &str,
        resource: Resource,
        mac: Option<pb::Mac>,
        range: Option<ByteRange>,
    ) -> Result<ObjectChunks, Status> {
        let store = self.session.get(cookie)?;
        get_object(&*store, resource, mac_field(mac)?, range).await
    }

    async fn delete(
        &self,
        cookie: &str,
        resource: Resource,
        mac: Option<pb::Mac>,
    ) -> Result<(), Status> {
        let store = self.session.get(cookie)?;
        store.delete(resource, mac_field(mac)?).await?;
        Ok(())
    }
}

fn mac_field(mac: Option<pb::Mac>) -> Result<Mac, Status> {
    let mac = mac.ok_or_else(|| invalid("request without a MAC".to_owned()))?;
    mac_of(&mac.value)
}

type ChunkStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn chunks<T: Send + 'static>(data: ObjectChunks, wrap: fn(Bytes) -> T) -> ChunkStream<T> {
    Box::pin(data.map(move |chunk| chunk.map(wrap)))
}

#[tonic::async_trait]
impl<S: Store> StoreRpc for StoreService<S> {
    async fn init(
        &self,
        request: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        self.session.init(request.into_inner().into()).await?;
        Ok(Response::new(pb::InitResponse {
            cookie: self.session.cookie(),
        }))
    }

    async fn create(
        &self,
        request: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        let req = request.into_inner();
        self.session.get(&req.cookie)?.create(req.config).await?;
        Ok(Response::new(pb::CreateResponse {}))
    }

    async fn open(
        &self,
        request: Request<pb::OpenRequest>,
    ) -> Result<Response<pb::OpenResponse>, Status> {
        let store = self.session.get(&request.into_inner().cookie)?;
        let config = sendable_config(store.open().await?)?;
        Ok(Response::new(pb::OpenResponse { config }))
    }

    async fn close(
        &self,
        request: Request<pb::CloseRequest>,
    ) -> Result<Response<pb::CloseResponse>, Status> {
        self.session
            .get(&request.into_inner().cookie)?
            .close()
            .await?;
        Ok(Response::new(pb::CloseResponse {}))
    }

    async fn get_location(
        &self,
        request: Request<pb::GetLocationRequest>,
    ) -> Result<Response<pb::GetLocationResponse>, Status> {
        let loc = self.session.get(&request.into_inner().cookie)?.location();
        // plakar 1.0 compares it with backed-up pathnames; a URL never matches a local path.
        Ok(Response::new(pb::GetLocationResponse {
            location: format!("{}://{}", loc.r#type, loc.root),
        }))
    }

    async fn get_mode(
        &self,
        request: Request<pb::GetModeRequest>,
    ) -> Result<Response<pb::GetModeResponse>, Status> {
        let mode = self.session.get(&request.into_inner().cookie)?.mode();
        Ok(Response::new(pb::GetModeResponse { mode: mode.0 }))
    }

    async fn get_size(
        &self,
        request: Request<pb::GetSizeRequest>,
    ) -> Result<Response<pb::GetSizeResponse>, Status> {
        let size = self
            .session
            .get(&request.into_inner().cookie)?
            .size()
            .await?;
        Ok(Response::new(pb::GetSizeResponse { size }))
    }

    async fn get_states(
        &self,
        request: Request<pb::GetStatesRequest>,
    ) -> Result<Response<pb::GetStatesResponse>, Status> {
        let macs = self
            .list(&request.into_inner().cookie, Resource::State)
            .await?;
        Ok(Response::new(pb::GetStatesResponse { macs }))
    }

    async fn put_state(
        &self,
        request: Request<Streaming<pb::PutStateRequest>>,
    ) -> Result<Response<pb::PutStateResponse>, Status> {
        let bytes_written = self.put(Resource::State, request.into_inner()).await?;
        Ok(Response::new(pb::PutStateResponse { bytes_written }))
    }

    type GetStateStream = ChunkStream<pb::GetStateResponse>;

    async fn get_state(
        &self,
        request: Request<pb::GetStateRequest>,
    ) -> Result<Response<Self::GetStateStream>, Status> {
        let req = request.into_inner();
        let data = self
            .get(&req.cookie, Resource::State, req.mac, None)
            .await?;
        Ok(Response::new(chunks(data, |chunk| pb::GetStateResponse {
            chunk,
        })))
    }

    async fn delete_state(
        &self,
        request: Request<pb::DeleteStateRequest>,
    ) -> Result<Response<pb::DeleteStateResponse>, Status> {
        let req = request.into_inner();
        self.delete(&req.cookie, Resource::State, req.mac).await?;
        Ok(Response::new(pb::DeleteStateResponse {}))
    }

    async fn get_packfiles(
        &self,
        request: Request<pb::GetPackfilesRequest>,
    ) -> Result<Response<pb::GetPackfilesResponse>, Status> {
        let macs = self
            .list(&request.into_inner().cookie, Resource::Packfile)
            .await?;
        Ok(Response::new(pb::GetPackfilesResponse { macs }))
    }

    async fn put_packfile(
        &self,
        request: Request<Streaming<pb::PutPackfileRequest>>,
    ) -> Result<Response<pb::PutPackfileResponse>, Status> {
        let bytes_written = self.put(Resource::Packfile, request.into_inner()).await?;
        Ok(Response::new(pb::PutPackfileResponse { bytes_written }))
    }

    type GetPackfileStream = ChunkStream<pb::GetPackfileResponse>;

    async fn get_packfile(
        &self,
        request: Request<pb::GetPackfileRequest>,
    ) -> Result<Response<Self::GetPackfileStream>, Status> {
        let req = request.into_inner();
        let data = self
            .get(&req.cookie, Resource::Packfile, req.mac, None)
            .await?;
        Ok(Response::new(chunks(data, |chunk| {
            pb::GetPackfileResponse { chunk }
        })))
    }

    type GetPackfileBlobStream = ChunkStream<pb::GetPackfileBlobResponse>;

    async fn get_packfile_blob(
        &self,
        request: Request<pb::GetPackfileBlobRequest>,
    ) -> Result<Response<Self::GetPackfileBlobStream>, Status> {
        let req = request.into_inner();
        let range = ByteRange {
            offset: req.offset,
            length: req.length,
        };
        let data = self
            .get(&req.cookie, Resource::Packfile, req.mac, Some(range))
            .await?;
        Ok(Response::new(chunks(data, |chunk| {
            pb::GetPackfileBlobResponse { chunk }
        })))
    }

    async fn delete_packfile(
        &self,
        request: Request<pb::DeletePackfileRequest>,
    ) -> Result<Response<pb::DeletePackfileResponse>, Status> {
        let req = request.into_inner();
        self.delete(&req.cookie, Resource::Packfile, req.mac)
            .await?;
        Ok(Response::new(pb::DeletePackfileResponse {}))
    }

    async fn get_locks(
        &self,
        request: Request<pb::GetLocksRequest>,
    ) -> Result<Response<pb::GetLocksResponse>, Status> {
        let macs = self
            .list(&request.into_inner().cookie, Resource::Lock)
            .await?;
        Ok(Response::new(pb::GetLocksResponse { macs }))
    }

    async fn put_lock(
        &self,
        request: Request<Streaming<pb::PutLockRequest>>,
    ) -> Result<Response<pb::PutLockResponse>, Status> {
        let bytes_written = self.put(Resource::Lock, request.into_inner()).await?;
        Ok(Response::new(pb::PutLockResponse { bytes_written }))
    }

    type GetLockStream = ChunkStream<pb::GetLockResponse>;

    async fn get_lock(
        &self,
        request: Request<pb::GetLockRequest>,
    ) -> Result<Response<Self::GetLockStream>, Status> {
        let req = request.into_inner();
        let data = self.get(&req.cookie, Resource::Lock, req.mac, None).await?;
        Ok(Response::new(chunks(data, |chunk| pb::GetLockResponse {
            chunk,
        })))
    }

    async fn delete_lock(
        &self,
        request: Request<pb::DeleteLockRequest>,
    ) -> Result<Response<pb::DeleteLockResponse>, Status> {
        let req = request.into_inner();
        self.delete(&req.cookie, Resource::Lock, req.mac).await?;
        Ok(Response::new(pb::DeleteLockResponse {}))
    }
}
