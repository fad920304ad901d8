//! [`RemoteStore`]: a store plugin driven over gRPC, implementing [`crate::Store`].

use std::future::Future;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{InitArgs, PluginConnection, PluginHandle, init_client, plugin_accessors, received};
use crate::error::{ConnectorError, Result};
use crate::pb::plakar::connectors::{Chunk, Config, StoreInitRequest};
use crate::pb::store as pb;
use crate::pb::store::store_client::StoreClient;
use crate::serve::chunked;
use crate::types::{ByteRange, LocationInfo, Mac, ObjectKey, Resource, StoreMode};
use crate::{ByteStream, Store};

/// Requests queued ahead of a `Put` stream.
const PUT_QUEUE: usize = 4;
/// Encoding limit of `Put` messages: a 1 MiB chunk plus headroom (see `put`).
pub(super) const PUT_ENCODE_LIMIT: usize = crate::serve::MAX_CHUNK + 64 * 1024;

/// Feeds `data` into a client-streaming upload as plakar does: `first` names the object, then
/// one `chunk` message per chunk of at most 1 MiB, then a half-close; returns what `call` (run
/// on the message stream, with an encoding limit of [`PUT_ENCODE_LIMIT`]) answers. When `data`
/// fails, the upload is made to fail on the plugin side too, never to look complete: a message
/// over the client's own encoding limit makes tonic reset the HTTP/2 stream instead of
/// half-closing it (dropping the call would half-close the body cleanly).
pub(super) async fn upload<M, C, F, Fut>(
    first: M,
    chunk: C,
    data: ByteStream,
    call: F,
) -> Result<i64>
where
    M: Send + 'static,
    C: Fn(Bytes) -> M,
    F: FnOnce(ReceiverStream<M>) -> Fut,
    Fut: Future<Output = Result<i64>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<M>(PUT_QUEUE);
    let call = tokio::spawn(call(ReceiverStream::new(rx)));
    let mut chunks = std::pin::pin!(chunked(data));
    let mut feed_error = None;
    if tx.send(first).await.is_ok() {
        while let Some(item) = chunks.next().await {
            match item {
                Ok(data) => {
                    if tx.send(chunk(data)).await.is_err() {
                        break; // The call ended early; its status says why.
                    }
                }
                Err(err) => {
                    feed_error = Some(err);
                    break;
                }
            }
        }
    }
    if let Some(err) = feed_error {
        let _ = tx
            .send(chunk(Bytes::from(vec![0u8; PUT_ENCODE_LIMIT + 1])))
            .await;
        let _ = call.await;
        drop(tx);
        return Err(err);
    }
    drop(tx); // Half-close: the upload is complete.
    call.await
        .map_err(|e| ConnectorError::other(format!("put task failed: {e}")))?
}

/// A store plugin after `Init` (and a `Mode` query), usable as a [`Store`].
#[derive(Debug)]
pub struct RemoteStore {
    client: StoreClient<Channel>,
    location: LocationInfo,
    mode: StoreMode,
    plugin: PluginHandle,
}

impl RemoteStore {
    /// Sends `Init` (then `Mode`, answered from memory) on a connection.
    pub async fn init(connection: PluginConnection, args: &InitArgs) -> Result<Self> {
        let (mut client, plugin, init) =
            init_client!(StoreClient, connection, StoreInitRequest::from(args));
        let mode = client.mode(()).await?.into_inner().mode;
        Ok(Self {
            client,
            location: init.into(),
            mode: StoreMode(mode),
            plugin,
        })
    }

    plugin_accessors!(StoreClient<Channel>);
}

#[async_trait]
impl Store for RemoteStore {
    fn location(&self) -> LocationInfo {
        self.location.clone()
    }

    async fn create(&self, config: Bytes) -> Result<()> {
        self.client.clone().create(Config { config }).await?;
        Ok(())
    }

    async fn open(&self) -> Result<Bytes> {
        Ok(self.client.clone().open(()).await?.into_inner().config)
    }

    async fn ping(&self) -> Result<()> {
        self.client.clone().ping(()).await?;
        Ok(())
    }

    fn mode(&self) -> StoreMode {
        self.mode
    }

    async fn size(&self) -> Result<i64> {
        Ok(self.client.clone().size(()).await?.into_inner().size)
    }

    async fn list(&self, resource: Resource) -> Result<Vec<Mac>> {
        let response = self
            .client
            .clone()
            .list(pb::ListRequest {
                r#type: resource.to_proto(),
                flags: 0,
            })
            .await?
            .into_inner();
        response
            .macs
            .iter()
            .map(|raw| Mac::from_slice(raw))
            .collect()
    }

    async fn put(&self, key: ObjectKey, data: ByteStream) -> Result<u64> {
        let ObjectKey { resource, mac } = key;
        let first = pb::PutRequest {
            mac: Bytes::copy_from_slice(&mac.0),
            r#type: resource.to_proto(),
            chunk: Bytes::new(),
            flags: 0,
        };
        let chunk = |chunk| pb::PutRequest {
            mac: Bytes::new(),
            r#type: 0,
            chunk,
            flags: 0,
        };
        let mut client = self
            .client
            .clone()
            .max_encoding_message_size(PUT_ENCODE_LIMIT);
        let written = upload(first, chunk, data, move |messages| async move {
            Ok(client.put(messages).await?.into_inner().bytes_written)
        })
        .await?;
        Ok(written as u64)
    }

    async fn get(&self, key: ObjectKey, range: Option<ByteRange>) -> Result<ByteStream> {
        let ObjectKey { resource, mac } = key;
        let request = pb::GetRequest {
            mac: Bytes::copy_from_slice(&mac.0),
            r#type: resource.to_proto(),
            range: range.map(|r| pb::get_request::Range {
                offset: r.offset,
                length: r.length,
            }),
            flags: 0,
        };
        let stream = self.client.clone().get(request).await?.into_inner();
        let what = format!("get {key}");
        Ok(received(stream, |m: Chunk| m.chunk, what, ()))
    }

    async fn delete(&self, key: ObjectKey) -> Result<()> {
        let ObjectKey { resource, mac } = key;
        let request = pb::DeleteRequest {
            mac: Bytes::copy_from_slice(&mac.0),
            r#type: resource.to_proto(),
            flags: 0,
        };
        self.client.clone().delete(request).await?;
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.client.clone().close(()).await?;
        Ok(())
    }
}
