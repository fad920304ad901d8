//! [`RemoteImporter`]: a protocol v1 importer plugin driven as plakar 1.0.6 does, implementing
//! [`crate::Importer`]: `Scan` for the records, then per file `OpenReader` and `CloseReader`.

use async_trait::async_trait;
use futures::StreamExt;
use tonic::transport::Channel;

use super::{cookie, location, pathname as pathname_request};
use crate::error::{ConnectorError, Result};
use crate::host::{
    InitArgs, PluginConnection, PluginHandle, init_client, plugin_accessors, received,
};
use crate::pb::plakar::connectors::Chunk;
use crate::pb::v1::importer as pb;
use crate::pb::v1::importer::importer_client::ImporterClient;
use crate::pb::v1::session::PathnameRequest;
use crate::types::{FileInfo, LocationInfo, Record, XattrType};
use crate::{ByteStream, Importer, RecordStream};

/// A v1 importer plugin after `Init` and `Info`, usable as an [`Importer`].
#[derive(Debug)]
pub struct RemoteImporter {
    client: ImporterClient<Channel>,
    cookie: String,
    location: LocationInfo,
    plugin: PluginHandle,
}

/// The record of a `Scan` message. v1 has no `hasReader`: plakar gives every record a reader
/// and reads those of regular files (and extended attributes), as here.
fn record_of(response: pb::ScanResponse) -> Result<Record> {
    match response.result {
        Some(pb::scan_response::Result::Error(error)) => {
            Ok(Record::error(response.pathname, error.message))
        }
        Some(pb::scan_response::Result::Record(scanned)) => {
            let info = FileInfo::from(&scanned.fileinfo.unwrap_or_default());
            let is_xattr = scanned.xattr.is_some();
            let xattr = scanned.xattr.unwrap_or_default();
            let record = Record {
                pathname: response.pathname,
                has_reader: is_xattr || info.mode.is_regular(),
                file_info: (!is_xattr).then_some(info),
                error: None,
                target: scanned.target,
                is_xattr,
                xattr_name: xattr.name,
                xattr_type: XattrType::from_proto(xattr.r#type),
                extended_attributes: Vec::new(),
                file_attributes: scanned.file_attributes,
            };
            Ok(record)
        }
        None => Err(ConnectorError::other(format!(
            "scan response for {} without record nor error",
            response.pathname
        ))),
    }
}

impl RemoteImporter {
    /// Sends `Init` with the config map and the five v1 options, then `Info`.
    pub async fn init(connection: PluginConnection, args: &InitArgs) -> Result<Self> {
        let (mut client, plugin, init) =
            init_client!(ImporterClient, connection, pb::InitRequest::from(args));
        if let Some(error) = init.error {
            return Err(ConnectorError::other(error));
        }
        let info = client.info(cookie(&init.cookie)).await?.into_inner();
        Ok(Self {
            client,
            cookie: init.cookie,
            location: location(info.origin, info.r#type, info.root),
            plugin,
        })
    }

    plugin_accessors!(ImporterClient<Channel>);

    /// The cookie `Init` answered, echoed in every request.
    pub fn cookie(&self) -> &str {
        &self.cookie
    }
}

#[async_trait]
impl Importer for RemoteImporter {
    fn location(&self) -> LocationInfo {
        self.location.clone()
    }

    /// v1 has no `Ping`: an `Info` round trip proves the plugin answers.
    async fn ping(&self) -> Result<()> {
        let request = cookie(&self.cookie);
        self.client.clone().info(request).await?;
        Ok(())
    }

    async fn scan(&self) -> Result<RecordStream> {
        let request = cookie(&self.cookie);
        let responses = self.client.clone().scan(request).await?.into_inner();
        // The first error ends the scan (plakar 1.0.6 would go on reading a failed stream).
        Ok(responses
            .scan(false, |failed, item| {
                if *failed {
                    return futures::future::ready(None);
                }
                let record = item
                    .map_err(ConnectorError::from)
                    .and_then(record_of)
                    .and_then(|record| record.validate().map(|()| record));
                *failed = record.is_err();
                futures::future::ready(Some(record))
            })
            .boxed())
    }

    async fn open(&self, pathname: &str) -> Result<ByteStream> {
        // As plakar: `CloseReader` follows every read, failed or not.
        let close = CloseReaderOnDrop {
            client: self.client.clone(),
            request: Some(pathname_request(pathname, &self.cookie)),
        };
        let request = pathname_request(pathname, &self.cookie);
        let stream = self.client.clone().open_reader(request).await?.into_inner();
        let what = format!("open {pathname}");
        Ok(received(stream, |m: Chunk| m.chunk, what, close))
    }

    async fn close(&self) -> Result<()> {
        let request = cookie(&self.cookie);
        self.client.clone().close(request).await?;
        Ok(())
    }
}

/// Sends `CloseReader` for a file once its read is over (its stream dropped).
struct CloseReaderOnDrop {
    client: ImporterClient<Channel>,
    request: Option<PathnameRequest>,
}

impl Drop for CloseReaderOnDrop {
    fn drop(&mut self) {
        let (Some(request), Ok(runtime)) =
            (self.request.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let mut client = self.client.clone();
        runtime.spawn(async move {
            if let Err(status) = client.close_reader(request).await {
                tracing::debug!(%status, "CloseReader failed");
            }
        });
    }
}
