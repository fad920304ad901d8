//! The gRPC `store.Store` service of protocol v1 over a [`crate::Store`] connector: one set of
//! calls per resource (states, packfiles, locks), and `GetPackfileBlob` for ranged reads.

use futures::StreamExt;
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use super::{SessionService, answer_close};
use crate::Store;
use crate::pb::plakar::connectors::{BytesWritten, Config, Mode, Size};
use crate::pb::v1::session::Cookie;
use crate::pb::v1::store as pb;
use crate::pb::v1::store::store_server::{Store as StoreRpc, StoreServer};
use crate::serve::store::{get_object, listed_macs, mac_of, put_object, sendable_config};
use crate::serve::{ChunkStream, Factory, chunk_messages, invalid, routes};
use crate::types::{ByteRange, Mac, Resource};

/// Largest MAC count that fits one `MacList` under 4 MiB: each is a `MAC` message inside
/// the repeated field, 36 bytes on the wire.
const MAX_LIST_MACS: usize = 116_000;

/// The routes of a v1 store served by `factory`.
pub(crate) fn router<S: Store>(factory: Factory<S>) -> Routes {
    routes!(StoreServer::new(SessionService::new(factory)))
}

impl<S: Store> SessionService<S> {
    async fn list(&self, cookie: &str, resource: Resource) -> Result<Vec<pb::Mac>, Status> {
        let store = self.session.get(cookie)?;
        let macs = listed_macs(&*store, resource, MAX_LIST_MACS, "protocol v1").await?;
        Ok(macs.into_iter().map(|value| pb::Mac { value }).collect())
    }

    async fn list_response(
        &self,
        request: Request<Cookie>,
        resource: Resource,
    ) -> Result<Response<pb::MacList>, Status> {
        let macs = self.list(&request.into_inner().cookie, resource).await?;
        Ok(Response::new(pb::MacList { macs }))
    }

    async fn put(
        &self,
        resource: Resource,
        request: Request<Streaming<pb::PutRequest>>,
    ) -> Result<Response<BytesWritten>, Status> {
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| invalid("Put stream ended before its first message".to_owned()))?;
        let store = self.session.get(&first.cookie)?;
        let key = resource.key(mac_field(first.mac)?);
        let rest = incoming.map(|msg| msg.map(|m| m.chunk));
        let bytes_written = put_object(&*store, key, first.chunk, rest).await?;
        Ok(Response::new(BytesWritten { bytes_written }))
    }

    async fn get(
        &self,
        cookie: &str,
        resource: Resource,
        mac: Option<pb::Mac>,
        range: Option<ByteRange>,
    ) -> Result<Response<ChunkStream>, Status> {
        let store = self.session.get(cookie)?;
        let data = get_object(&*store, resource.key(mac_field(mac)?), range).await?;
        Ok(Response::new(chunk_messages(data)))
    }

    async fn delete(
        &self,
        request: Request<pb::MacRequest>,
        resource: Resource,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        let store = self.session.get(&req.cookie)?;
        store.delete(resource.key(mac_field(req.mac)?)).await?;
        Ok(Response::new(()))
    }
}

fn mac_field(mac: Option<pb::Mac>) -> Result<Mac, Status> {
    let mac = mac.ok_or_else(|| invalid("request without a MAC".to_owned()))?;
    mac_of(&mac.value)
}

#[tonic::async_trait]
impl<S: Store> StoreRpc for SessionService<S> {
    async fn init(
        &self,
        request: Request<crate::pb::plakar::connectors::StoreInitRequest>,
    ) -> Result<Response<Cookie>, Status> {
        self.session.init(request.into_inner().into()).await?;
        Ok(Response::new(Cookie {
            cookie: self.session.cookie(),
        }))
    }

    async fn create(&self, request: Request<pb::CreateRequest>) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        self.session.get(&req.cookie)?.create(req.config).await?;
        Ok(Response::new(()))
    }

    async fn open(&self, request: Request<Cookie>) -> Result<Response<Config>, Status> {
        let store = self.session.get(&request.into_inner().cookie)?;
        let config = sendable_config(store.open().await?)?;
        Ok(Response::new(Config { config }))
    }

    async fn close(&self, request: Request<Cookie>) -> Result<Response<()>, Status> {
        let store = self.session.get(&request.into_inner().cookie)?;
        answer_close(store.close().await)
    }

    async fn get_location(
        &self,
        request: Request<Cookie>,
    ) -> Result<Response<pb::GetLocationResponse>, Status> {
        let loc = self.session.get(&request.into_inner().cookie)?.location();
        // plakar 1.0 compares it with backed-up pathnames; a URL never matches a local path.
        Ok(Response::new(pb::GetLocationResponse {
            location: format!("{}://{}", loc.r#type, loc.root),
        }))
    }

    async fn get_mode(&self, request: Request<Cookie>) -> Result<Response<Mode>, Status> {
        let mode = self.session.get(&request.into_inner().cookie)?.mode();
        Ok(Response::new(Mode { mode: mode.0 }))
    }

    async fn get_size(&self, request: Request<Cookie>) -> Result<Response<Size>, Status> {
        let store = self.session.get(&request.into_inner().cookie)?;
        Ok(Response::new(Size {
            size: store.size().await?,
        }))
    }

    async fn get_states(&self, request: Request<Cookie>) -> Result<Response<pb::MacList>, Status> {
        self.list_response(request, Resource::State).await
    }

    async fn put_state(
        &self,
        request: Request<Streaming<pb::PutRequest>>,
    ) -> Result<Response<BytesWritten>, Status> {
        self.put(Resource::State, request).await
    }

    type GetStateStream = ChunkStream;

    async fn get_state(
        &self,
        request: Request<pb::MacRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let req = request.into_inner();
        self.get(&req.cookie, Resource::State, req.mac, None).await
    }

    async fn delete_state(&self, request: Request<pb::MacRequest>) -> Result<Response<()>, Status> {
        self.delete(request, Resource::State).await
    }

    async fn get_packfiles(
        &self,
        request: Request<Cookie>,
    ) -> Result<Response<pb::MacList>, Status> {
        self.list_response(request, Resource::Packfile).await
    }

    async fn put_packfile(
        &self,
        request: Request<Streaming<pb::PutRequest>>,
    ) -> Result<Response<BytesWritten>, Status> {
        self.put(Resource::Packfile, request).await
    }

    type GetPackfileStream = ChunkStream;

    async fn get_packfile(
        &self,
        request: Request<pb::MacRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let req = request.into_inner();
        self.get(&req.cookie, Resource::Packfile, req.mac, None)
            .await
    }

    type GetPackfileBlobStream = ChunkStream;

    async fn get_packfile_blob(
        &self,
        request: Request<pb::GetPackfileBlobRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let req = request.into_inner();
        let range = ByteRange {
            offset: req.offset,
            length: req.length,
        };
        self.get(&req.cookie, Resource::Packfile, req.mac, Some(range))
            .await
    }

    async fn delete_packfile(
        &self,
        request: Request<pb::MacRequest>,
    ) -> Result<Response<()>, Status> {
        self.delete(request, Resource::Packfile).await
    }

    async fn get_locks(&self, request: Request<Cookie>) -> Result<Response<pb::MacList>, Status> {
        self.list_response(request, Resource::Lock).await
    }

    async fn put_lock(
        &self,
        request: Request<Streaming<pb::PutRequest>>,
    ) -> Result<Response<BytesWritten>, Status> {
        self.put(Resource::Lock, request).await
    }

    type GetLockStream = ChunkStream;

    async fn get_lock(
        &self,
        request: Request<pb::MacRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let req = request.into_inner();
        self.get(&req.cookie, Resource::Lock, req.mac, None).await
    }

    async fn delete_lock(&self, request: Request<pb::MacRequest>) -> Result<Response<()>, Status> {
        self.delete(request, Resource::Lock).await
    }
}
