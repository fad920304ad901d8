//! The gRPC `exporter.Exporter` service of protocol v1 over a [`crate::Exporter`] connector:
//! one call per operation, at most [`crate::Exporter::max_in_flight`] connector calls at once.
//!
//! plakar 1.0 sends pathnames under the answer of `Root`, orders directories before their
//! files itself, and sends a file's metadata only after its content, in `SetPermissions`: the
//! connector gets the content with the time of the restore (Koofr cannot change a time after
//! an upload), and `SetPermissions` has nothing left to do.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use super::{Session, answer_close};
use crate::error::{ConnectorError, Result};
use crate::pb::v1::exporter as pb;
use crate::pb::v1::exporter::exporter_server::{Exporter as ExporterRpc, ExporterServer};
use crate::pb::v1::exporter::store_file_request::Type as Packet;
use crate::pb::v1::session::{Cookie, PathnameRequest};
use crate::serve::{Factory, invalid, routes};
use crate::types::{FileInfo, FileMode, Record};
use crate::{ByteStream, Exporter};

/// `CreateLinkRequest.ltype` of a symbolic link (0 is a hard link).
const SYMLINK: u32 = 1;

pub(crate) struct ExporterService<E> {
    session: Session<E>,
    max_in_flight: Option<usize>,
    calls: OnceCell<Arc<Semaphore>>,
}

impl<E: Exporter> ExporterService<E> {
    /// `max_in_flight` overrides the connector's [`Exporter::max_in_flight`].
    pub(crate) fn router(factory: Factory<E>, max_in_flight: Option<usize>) -> Routes {
        routes!(ExporterServer::new(Self {
            session: Session::new(factory),
            max_in_flight,
            calls: OnceCell::new(),
        }))
    }

    /// The connector and the connector's pathname of `pathname`, for a request with `cookie`.
    fn target(&self, cookie: &str, pathname: &str) -> Result<(Arc<E>, String), Status> {
        let exporter = self.session.get(cookie)?;
        let path = rerooted(&exporter.location().root, pathname)?;
        Ok((exporter, path))
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, Status> {
        let calls = self
            .calls
            .get()
            .ok_or_else(|| Status::failed_precondition("Init must be the first call"))?;
        calls
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("the exporter is closing"))
    }
}

/// The connector's pathname (`/` = the destination) of a v1 pathname below `root`; anything
/// not below it is refused.
fn rerooted(root: &str, pathname: &str) -> Result<String, Status> {
    let root = match root.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    let below = if root == "/" {
        pathname.starts_with('/').then_some(pathname)
    } else if pathname == root {
        Some("/")
    } else {
        pathname
            .strip_prefix(root)
            .filter(|rest| rest.starts_with('/'))
    };
    below.map(str::to_owned).ok_or_else(|| {
        invalid(format!(
            "{pathname:?}: not restored: outside the destination {root}"
        ))
    })
}

/// The last element of a connector pathname (`/` for the root).
fn base_name(path: &str) -> &str {
    match path.rsplit('/').next() {
        Some("") | None => "/",
        Some(name) => name,
    }
}

/// The content of a `StoreFile` after its header, checked against the header's size: a stream
/// that ends short or runs long ends with an error item, so the connector stores nothing.
fn file_content(
    incoming: Streaming<pb::StoreFileRequest>,
    pathname: String,
    size: u64,
) -> ByteStream {
    futures::stream::unfold(Some((incoming, 0u64)), move |state| {
        let pathname = pathname.clone();
        async move {
            let (mut incoming, received) = state?;
            let failed = |message: String| Some((Err(ConnectorError::other(message)), None));
            match incoming.message().await {
                Ok(Some(pb::StoreFileRequest {
                    r#type: Some(Packet::Data(data)),
                    ..
                })) => {
                    let received = received + data.chunk.len() as u64;
                    if received > size {
                        return failed(format!(
                            "{pathname}: more content than the {size} bytes announced"
                        ));
                    }
                    Some((Ok(data.chunk), Some((incoming, received))))
                }
                Ok(Some(_)) => failed(format!(
                    "{pathname}: a StoreFile message that is not data after the header"
                )),
                Ok(None) if received == size => None,
                Ok(None) => failed(format!(
                    "{pathname}: content ended after {received} of {size} bytes"
                )),
                Err(status) => Some((Err(ConnectorError::from(status)), None)),
            }
        }
    })
    .filter(|chunk: &Result<Bytes>| {
        futures::future::ready(chunk.as_ref().map_or(true, |c| !c.is_empty()))
    })
    .boxed()
}

#[tonic::async_trait]
impl<E: Exporter> ExporterRpc for ExporterService<E> {
    async fn init(&self, request: Request<pb::InitRequest>) -> Result<Response<Cookie>, Status> {
        let exporter = self.session.init(request.into_inner().into()).await?;
        let in_flight = self
            .max_in_flight
            .unwrap_or_else(|| exporter.max_in_flight())
            .max(1);
        let _ = self.calls.set(Arc::new(Semaphore::new(in_flight)));
        exporter.ping().await?;
        Ok(Response::new(Cookie {
            cookie: self.session.cookie(),
        }))
    }

    async fn root(&self, request: Request<Cookie>) -> Result<Response<pb::RootResponse>, Status> {
        let exporter = self.session.get(&request.into_inner().cookie)?;
        Ok(Response::new(pb::RootResponse {
            root_path: exporter.location().root,
        }))
    }

    async fn create_directory(
        &self,
        request: Request<PathnameRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        let (exporter, path) = self.target(&req.cookie, &req.pathname)?;
        let info = FileInfo::directory(base_name(&path), 0o700, SystemTime::now());
        let _permit = self.permit().await?;
        exporter.create_directory(&path, &info).await?;
        Ok(Response::new(()))
    }

    async fn store_file(
        &self,
        request: Request<Streaming<pb::StoreFileRequest>>,
    ) -> Result<Response<()>, Status> {
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| invalid("StoreFile stream ended before its header".to_owned()))?;
        let Some(Packet::Header(header)) = first.r#type else {
            return Err(invalid("StoreFile must start with a header".to_owned()));
        };
        let (exporter, path) = self.target(&first.cookie, &header.pathname)?;
        let size = i64::try_from(header.size)
            .map_err(|_| invalid(format!("{}: size {} too large", path, header.size)))?;
        let info = FileInfo::file(base_name(&path), size, 0o600, SystemTime::now());
        let content = file_content(incoming, header.pathname, header.size);
        let _permit = self.permit().await?;
        exporter.store_file(&path, &info, content).await?;
        Ok(Response::new(()))
    }

    async fn set_permissions(
        &self,
        request: Request<pb::SetPermissionsRequest>,
    ) -> Result<Response<()>, Status> {
        // Comes after the content is stored: see the module notes.
        let req = request.into_inner();
        self.target(&req.cookie, &req.pathname)?;
        Ok(Response::new(()))
    }

    async fn create_link(
        &self,
        request: Request<pb::CreateLinkRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        let (exporter, path) = self.target(&req.cookie, &req.newname)?;
        if req.ltype != SYMLINK {
            // The connector API has no way to name content already restored.
            return Err(invalid(format!(
                "{path}: not restored: a hard link to {} cannot be restored through protocol v1",
                req.oldname
            )));
        }
        let info = FileInfo::with_mode(
            base_name(&path),
            0,
            FileMode::symlink(0o777),
            SystemTime::now(),
        );
        let mut record = Record::entry(path, info);
        record.target = req.oldname;
        let _permit = self.permit().await?;
        exporter.other(&record).await?;
        Ok(Response::new(()))
    }

    async fn close(&self, request: Request<Cookie>) -> Result<Response<()>, Status> {
        let exporter = self.session.get(&request.into_inner().cookie)?;
        answer_close(exporter.close().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pathnames_are_rerooted_below_the_destination_only() {
        for (root, pathname, want) in [
            ("/dest", "/dest", Some("/")),
            ("/dest", "/dest/a/b", Some("/a/b")),
            ("/dest/", "/dest/a", Some("/a")),
            ("/", "/a", Some("/a")),
            ("/", "a", None),
            ("/dest", "/destination/a", None),
            ("/dest", "/other", None),
            ("/dest", "dest/a", None),
        ] {
            assert_eq!(
                rerooted(root, pathname).ok().as_deref(),
                want,
                "{root} {pathname}"
            );
        }
        assert_eq!(base_name("/"), "/");
        assert_eq!(base_name("/a/b.txt"), "b.txt");
    }
}
