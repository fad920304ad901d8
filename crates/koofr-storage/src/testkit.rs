//! The conformance-suite fixture of this connector ([`StoreSite`], a
//! [`kloset_plugin::suites::StoreFixture`]), shared by this crate's tests and
//! `cargo xtask conformance`. Its hooks use `koofr-core`'s [`Client`] only, so the same fixture
//! runs against the emulator and against real Koofr.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use kloset_plugin::host::{InitArgs, PluginConnection, RemoteStore};
use kloset_plugin::suites::{StoreCapabilities, StoreFixture};
use kloset_plugin::{ConnectorError, InitContext, Resource, Result, Store};
use koofr_core::{Client, KoofrConfig, KoofrPath, UploadOptions};

use crate::store::{KoofrStore, connector_error};

/// How the fixture reaches the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Trait calls straight into a [`KoofrStore`] built as `Init` would build it.
    Direct,
    /// gRPC over an in-process pipe to the connector served by `kloset_plugin::serve_store_on`.
    Duplex,
    /// gRPC over stdin/stdout of the `koofr-storage` binary at this path (e.g.
    /// `env!("CARGO_BIN_EXE_koofr-storage")`); one process per connection.
    Binary(PathBuf),
}

/// A kloset location on Koofr (or the emulator) for the store suite.
pub struct StoreSite {
    client: Client,
    root: KoofrPath,
    config: HashMap<String, String>,
    transport: Transport,
    capabilities: StoreCapabilities,
    live: Mutex<Vec<Arc<RemoteStore>>>,
}

impl std::fmt::Debug for StoreSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config map holds the password: show the location only.
        f.debug_struct("StoreSite")
            .field("root", &self.root)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl StoreSite {
    /// A fixture for the kloset at the `location` of `config` (the map Plakar's `Init` would
    /// send, e.g. `koofr_core::testing::Harness::plugin_config`); `client` is any client on the
    /// same account and mount, used by the hooks.
    pub fn new(
        client: Client,
        config: HashMap<String, String>,
        transport: Transport,
    ) -> Result<StoreSite> {
        // The environment is ignored here so that the fixture's idea of the location is the map's.
        let (parsed, _) = KoofrConfig::from_map(&config, &|_| None)
            .map_err(|e| ConnectorError::invalid_input(e.to_string()))?;
        Ok(StoreSite {
            client,
            root: parsed.location().clone(),
            config,
            transport,
            capabilities: StoreCapabilities::default(),
            live: Mutex::default(),
        })
    }

    /// Replaces the declared capabilities (e.g. a smaller large-object size under faults).
    pub fn with_capabilities(mut self, capabilities: StoreCapabilities) -> StoreSite {
        self.capabilities = capabilities;
        self
    }

    /// The kloset folder.
    pub fn root(&self) -> &KoofrPath {
        &self.root
    }

    /// The `Init` context the connector receives.
    pub fn init_context(&self) -> InitContext {
        InitContext {
            proto: "koofr".to_owned(),
            config: self.config.clone(),
            options: None,
        }
    }

    /// A connection to the connector over gRPC (duplex pipe or binary), after `Init`.
    pub async fn connect_remote(&self) -> Result<RemoteStore> {
        let connection = match &self.transport {
            Transport::Binary(program) => {
                PluginConnection::spawn(program, std::iter::empty::<&str>()).await
            }
            Transport::Direct | Transport::Duplex => {
                PluginConnection::in_process(|io| {
                    kloset_plugin::serve_store_on(io, |ctx: InitContext| async move {
                        KoofrStore::from_init(&ctx)
                    })
                })
                .await
            }
        }
        .map_err(ConnectorError::from)?;
        RemoteStore::init(connection, &InitArgs::new("koofr", self.config.clone())).await
    }

    fn junk_folder(&self, resource: Resource) -> Result<KoofrPath> {
        self.root
            .child(resource.folder())
            .map_err(|e| ConnectorError::invalid_input(e.to_string()))
    }
}

#[async_trait]
impl StoreFixture for StoreSite {
    async fn connect(&self) -> Result<Arc<dyn Store>> {
        if self.transport == Transport::Direct {
            return Ok(Arc::new(KoofrStore::from_init(&self.init_context())?));
        }
        let store = Arc::new(self.connect_remote().await?);
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(store.clone());
        Ok(store)
    }

    async fn release(&self, store: Arc<dyn Store>) -> Result<()> {
        let found = {
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            let position = live
                .iter()
                .position(|s| std::ptr::addr_eq(Arc::as_ptr(s), Arc::as_ptr(&store)));
            position.map(|p| live.remove(p))
        };
        let Some(remote) = found else {
            return Ok(());
        };
        let code = remote
            .plugin()
            .shutdown()
            .await
            .map_err(ConnectorError::from)?;
        if code != 0 {
            return Err(ConnectorError::other(format!(
                "koofr-storage exited with status {code} after EOF"
            )));
        }
        Ok(())
    }

    async fn add_junk(&self, resource: Resource, name: &str) -> Result<()> {
        let folder = self.junk_folder(resource)?;
        self.client
            .create_folder_all(&folder)
            .await
            .map_err(connector_error)?;
        self.client
            .upload(
                &folder,
                name,
                Bytes::from_static(b"not a kloset object").into(),
                UploadOptions::default(),
            )
            .await
            .map_err(connector_error)?;
        Ok(())
    }

    async fn remove_junk(&self, resource: Resource, name: &str) -> Result<()> {
        let path = self
            .junk_folder(resource)?
            .child(name)
            .map_err(|e| ConnectorError::invalid_input(e.to_string()))?;
        match self.client.remove(&path).await {
            Err(e) if !e.is_not_found() => Err(connector_error(e)),
            _ => Ok(()),
        }
    }

    fn capabilities(&self) -> StoreCapabilities {
        self.capabilities
    }
}
