//! [`RemoteStore`]: a protocol v1 store plugin, implementing [`crate::Store`].

use std::future::Future;

use async_trait::async_trait;
use bytes::Bytes;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{cookie as session_cookie, location};
use crate::error::{ConnectorError, Result};
use crate::host::store::{PUT_ENCODE_LIMIT, upload};
use crate::host::{
    InitArgs, PluginConnection, PluginHandle, init_client, plugin_accessors, received,
};
use crate::pb::plakar::connectors::{Chunk, StoreInitRequest};
use crate::pb::v1::store as pb;
use crate::pb::v1::store::store_client::StoreClient;
use crate::types::{ByteRange, LocationInfo, Mac, ObjectKey, Resource, StoreMode};
use crate::{ByteStream, Store};

/// A v1 store plugin after `Init` (and `GetLocation` and `GetMode`), usable as a [`Store`].
#[derive(Debug)]
pub struct RemoteStore {
    client: StoreClient<Channel>,
    cookie: String,
    location: LocationInfo,
    mode: StoreMode,
    plugin: PluginHandle,
}

fn mac_message(mac: Mac) -> Option<pb::Mac> {
    Some(pb::Mac {
        value: Bytes::copy_from_slice(&mac.0),
    })
}

impl RemoteStore {
    /// Sends `Init`, then `GetLocation` and `GetMode` (answered from memory afterwards).
    pub async fn init(connection: PluginConnection, args: &InitArgs) -> Result<Self> {
        let (mut client, plugin, init) =
            init_client!(StoreClient, connection, StoreInitRequest::from(args));
        let cookie = init.cookie;
        let url = client
            .get_location(session_cookie(&cookie))
            .await?
            .into_inner()
            .location;
        // `type://root`; v1 carries no origin.
        let (r#type, root) = match url.split_once("://") {
            Some((scheme, root)) => (scheme.to_owned(), root.to_owned()),
            None => (String::new(), url),
        };
        let mode = client
            .get_mode(session_cookie(&cookie))
            .await?
            .into_inner()
            .mode;
        Ok(Self {
            client,
            cookie,
            location: location(String::new(), r#type, root),
            mode: StoreMode(mode),
            plugin,
        })
    }

    plugin_accessors!(StoreClient<Channel>);

    /// The cookie `Init` answered, echoed in every request.
    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    /// Uploads `data` with `call` (one of the three `Put…` calls) as plakar does: the first
    /// message holds the MAC only, every message the cookie.
    async fn put_through<F, Fut>(&self, mac: Mac, data: ByteStream, call: F) -> Result<i64>
    where
        F: FnOnce(StoreClient<Channel>, ReceiverStream<pb::PutRequest>) -> Fut,
        Fut: Future<Output = Result<i64>> + Send + 'static,
    {
        let client = self
            .client
            .clone()
            .max_encoding_message_size(PUT_ENCODE_LIMIT);
        let cookie = self.cookie.clone();
        let first = pb::PutRequest {
            mac: mac_message(mac),
            chunk: Bytes::new(),
            cookie: cookie.clone(),
        };
        let chunk = move |chunk| pb::PutRequest {
            mac: None,
            chunk,
            cookie: cookie.clone(),
        };
        upload(first, chunk, data, move |messages| call(client, messages)).await
    }
}

#[async_trait]
impl Store for RemoteStore {
    fn location(&self) -> LocationInfo {
        self.location.clone()
    }

    async fn create(&self, config: Bytes) -> Result<()> {
        self.client
            .clone()
            .create(pb::CreateRequest {
                config,
                cookie: self.cookie.clone(),
            })
            .await?;
        Ok(())
    }

    async fn open(&self) -> Result<Bytes> {
        let request = session_cookie(&self.cookie);
        Ok(self.client.clone().open(request).await?.into_inner().config)
    }

    /// v1 has no `Ping`: a `GetLocation` round trip proves the plugin answers.
    async fn ping(&self) -> Result<()> {
        let request = session_cookie(&self.cookie);
        self.client.clone().get_location(request).await?;
        Ok(())
    }

    fn mode(&self) -> StoreMode {
        self.mode
    }

    async fn size(&self) -> Result<i64> {
        let request = session_cookie(&self.cookie);
        Ok(self
            .client
            .clone()
            .get_size(request)
            .await?
            .into_inner()
            .size)
    }

    async fn list(&self, resource: Resource) -> Result<Vec<Mac>> {
        let mut client = self.client.clone();
        let request = session_cookie(&self.cookie);
        let macs = match resource {
            Resource::State => client.get_states(request).await?,
            Resource::Packfile => client.get_packfiles(request).await?,
            Resource::Lock => client.get_locks(request).await?,
        };
        let macs = macs.into_inner().macs;
        macs.iter().map(|mac| Mac::from_slice(&mac.value)).collect()
    }

    async fn put(&self, key: ObjectKey, data: ByteStream) -> Result<u64> {
        let ObjectKey { resource, mac } = key;
        let written = self
            .put_through(mac, data, move |mut client, messages| async move {
                let answer = match resource {
                    Resource::State => client.put_state(messages).await?,
                    Resource::Packfile => client.put_packfile(messages).await?,
                    Resource::Lock => client.put_lock(messages).await?,
                };
                Ok(answer.into_inner().bytes_written)
            })
            .await?;
        Ok(written as u64)
    }

    async fn get(&self, key: ObjectKey, range: Option<ByteRange>) -> Result<ByteStream> {
        let ObjectKey { resource, mac } = key;
        let mut client = self.client.clone();
        let what = format!("get {key}");
        let request = pb::MacRequest {
            mac: mac_message(mac),
            cookie: self.cookie.clone(),
        };
        let answer = match (resource, range) {
            (Resource::Packfile, Some(range)) => {
                let request = pb::GetPackfileBlobRequest {
                    mac: request.mac,
                    offset: range.offset,
                    length: range.length,
                    cookie: request.cookie,
                };
                client.get_packfile_blob(request).await?
            }
            (_, Some(_)) => {
                return Err(ConnectorError::invalid_input(format!(
                    "{what}: protocol v1 reads ranges of packfiles only"
                )));
            }
            (Resource::Packfile, None) => client.get_packfile(request).await?,
            (Resource::State, None) => client.get_state(request).await?,
            (Resource::Lock, None) => client.get_lock(request).await?,
        };
        Ok(received(answer.into_inner(), |m: Chunk| m.chunk, what, ()))
    }

    async fn delete(&self, key: ObjectKey) -> Result<()> {
        let ObjectKey { resource, mac } = key;
        let mut client = self.client.clone();
        let request = pb::MacRequest {
            mac: mac_message(mac),
            cookie: self.cookie.clone(),
        };
        match resource {
            Resource::State => client.delete_state(request).await?,
            Resource::Packfile => client.delete_packfile(request).await?,
            Resource::Lock => client.delete_lock(request).await?,
        };
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        let request = session_cookie(&self.cookie);
        self.client.clone().close(request).await?;
        Ok(())
    }
}
