//! [`RemoteExporter`]: a protocol v1 exporter plugin driven as plakar 1.0.6 restores, with
//! pathnames under the plugin's `Root`, implementing [`crate::Exporter`].
//!
//! As plakar: a file is `CreateDirectory` of its parent, `StoreFile` (header, then chunks of at
//! most 1 MiB, then a half-close, also when the content broke), then `SetPermissions`; the
//! directories get their `SetPermissions` at `close`, deepest first; a symlink is `CreateLink`.

use std::sync::Mutex;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{cookie as session_cookie, location, pathname as pathname_request};
use crate::error::{ConnectorError, Result};
use crate::host::{InitArgs, PluginConnection, PluginHandle, init_client, plugin_accessors};
use crate::pb::plakar::connectors::Chunk;
use crate::pb::v1::exporter as pb;
use crate::pb::v1::exporter::exporter_client::ExporterClient;
use crate::pb::v1::exporter::store_file_request::Type as Packet;
use crate::serve::chunked;
use crate::types::{FileInfo, LocationInfo, Record};
use crate::{ByteStream, Exporter};

/// Concurrent calls callers may usefully make.
const HOST_IN_FLIGHT: usize = 16;
/// Messages queued ahead of a `StoreFile` stream.
const STORE_FILE_QUEUE: usize = 4;
/// `CreateLinkRequest.ltype` of a symbolic link.
const SYMLINK: u32 = 1;

/// A v1 exporter plugin after `Init` and `Root`, usable as an [`Exporter`].
#[derive(Debug)]
pub struct RemoteExporter {
    client: ExporterClient<Channel>,
    cookie: String,
    root: String,
    location: LocationInfo,
    plugin: PluginHandle,
    /// Restored directories, for their `SetPermissions` at close.
    directories: Mutex<Vec<(String, FileInfo)>>,
}

impl RemoteExporter {
    /// Sends `Init` with the config map and the concurrency (the one v1 option), then `Root`.
    pub async fn init(connection: PluginConnection, args: &InitArgs) -> Result<Self> {
        let (mut client, plugin, init) =
            init_client!(ExporterClient, connection, pb::InitRequest::from(args));
        let cookie = init.cookie;
        let root = client
            .root(session_cookie(&cookie))
            .await?
            .into_inner()
            .root_path;
        Ok(Self {
            client,
            cookie,
            location: location(String::new(), args.proto.clone(), root.clone()),
            root,
            plugin,
            directories: Mutex::default(),
        })
    }

    plugin_accessors!(ExporterClient<Channel>);

    /// The cookie `Init` answered, echoed in every request.
    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    /// The v1 pathname of a re-rooted one: below `Root`, as sent, never cleaned up (a hostile
    /// pathname must reach the plugin as it is).
    fn dest(&self, pathname: &str) -> String {
        match (self.root.as_str(), pathname) {
            ("/", _) => pathname.to_owned(),
            (root, "/") => root.to_owned(),
            (root, _) => format!("{root}{pathname}"),
        }
    }

    async fn create_parent(&self, dest: &str) -> Result<()> {
        let parent = match dest.rfind('/') {
            Some(0) | None => "/",
            Some(i) => &dest[..i],
        };
        self.client
            .clone()
            .create_directory(pathname_request(parent, &self.cookie))
            .await?;
        Ok(())
    }

    async fn set_permissions(&self, dest: &str, info: &FileInfo) -> Result<()> {
        self.client
            .clone()
            .set_permissions(pb::SetPermissionsRequest {
                pathname: dest.to_owned(),
                file_info: Some(info.into()),
                cookie: self.cookie.clone(),
            })
            .await?;
        Ok(())
    }
}

/// Whether `path` is absolute with no empty, `.` or `..` segment (what Go's `path.Join` makes).
fn is_clean(path: &str) -> bool {
    path == "/"
        || path.strip_prefix('/').is_some_and(|rest| {
            rest.split('/')
                .all(|segment| !matches!(segment, "" | "." | ".."))
        })
}

#[async_trait]
impl Exporter for RemoteExporter {
    fn location(&self) -> LocationInfo {
        self.location.clone()
    }

    /// v1 has no `Ping`: a `Root` round trip proves the plugin answers.
    async fn ping(&self) -> Result<()> {
        let request = session_cookie(&self.cookie);
        self.client.clone().root(request).await?;
        Ok(())
    }

    fn max_in_flight(&self) -> usize {
        HOST_IN_FLIGHT
    }

    async fn create_directory(&self, pathname: &str, info: &FileInfo) -> Result<()> {
        let dest = self.dest(pathname);
        self.client
            .clone()
            .create_directory(pathname_request(&dest, &self.cookie))
            .await?;
        self.directories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((dest, info.clone()));
        Ok(())
    }

    async fn store_file(&self, pathname: &str, info: &FileInfo, content: ByteStream) -> Result<()> {
        let dest = self.dest(pathname);
        // plakar's pathnames are always clean (`path.Join`); a hostile one gets no parent made
        // for it. plakar goes on to the file when this fails: the file's own call reports it.
        if is_clean(&dest)
            && let Err(err) = self.create_parent(&dest).await
        {
            tracing::debug!(error = %err, "CreateDirectory of the parent failed");
        }
        let (tx, rx) = mpsc::channel(STORE_FILE_QUEUE);
        let mut client = self.client.clone();
        let call = tokio::spawn(async move { client.store_file(ReceiverStream::new(rx)).await });
        let header = pb::StoreFileRequest {
            r#type: Some(Packet::Header(pb::Header {
                pathname: dest.clone(),
                size: u64::try_from(info.size).unwrap_or(0),
            })),
            cookie: self.cookie.clone(),
        };
        let mut content_error = None;
        if tx.send(header).await.is_ok() {
            let mut chunks = std::pin::pin!(chunked(content));
            while let Some(item) = chunks.next().await {
                let chunk = match item {
                    Ok(chunk) => chunk,
                    Err(err) => {
                        content_error = Some(err);
                        break;
                    }
                };
                let message = pb::StoreFileRequest {
                    r#type: Some(Packet::Data(Chunk { chunk })),
                    cookie: self.cookie.clone(),
                };
                if tx.send(message).await.is_err() {
                    break; // The call ended early; its status says why.
                }
            }
        }
        drop(tx); // Half-close, whatever happened to the content (as plakar).
        let outcome = call
            .await
            .map_err(|e| ConnectorError::other(format!("StoreFile task failed: {e}")))?;
        if let Some(err) = content_error {
            return Err(err);
        }
        outcome?;
        self.set_permissions(&dest, info).await
    }

    async fn other(&self, record: &Record) -> Result<()> {
        let Some(info) = record.file_info.as_ref().filter(|_| !record.is_error()) else {
            return Ok(()); // Error and xattr records: plakar 1.0 sends nothing.
        };
        if info.mode.is_dir() {
            return self.create_directory(&record.pathname, info).await;
        }
        if !info.mode.is_symlink() {
            return Ok(()); // Devices, pipes, sockets: plakar 1.0 skips them.
        }
        let dest = self.dest(&record.pathname);
        self.client
            .clone()
            .create_link(pb::CreateLinkRequest {
                oldname: record.target.clone(),
                newname: dest.clone(),
                ltype: SYMLINK,
                cookie: self.cookie.clone(),
            })
            .await?;
        self.set_permissions(&dest, info).await
    }

    async fn close(&self) -> Result<()> {
        let mut directories =
            std::mem::take(&mut *self.directories.lock().unwrap_or_else(|e| e.into_inner()));
        directories.sort_by_key(|(dest, _)| std::cmp::Reverse(dest.matches('/').count()));
        for (dest, info) in &directories {
            // plakar only reports these failures.
            if let Err(err) = self.set_permissions(dest, info).await {
                tracing::debug!(error = %err, "SetPermissions of a directory failed");
            }
        }
        let request = session_cookie(&self.cookie);
        self.client.clone().close(request).await?;
        Ok(())
    }
}
