//! The conformance-suite fixture of this connector ([`KoofrStoreSite`], a
//! [`kloset_plugin::suites::StoreFixture`]), shared by this crate's tests and
//! `cargo xtask conformance`. Its hooks use `koofr-core`'s [`Client`] only, so the same fixture
//! runs against the emulator and against real Koofr.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use kloset_plugin::host::{InitArgs, RemoteStore};
use kloset_plugin::suites::{Connections, StoreCapabilities, StoreFixture};
use kloset_plugin::{ConnectorError, InitContext, Protocol, Resource, Result, Store};
use koofr_core::{Client, KoofrConfig, KoofrPath, UploadOptions};

use crate::store::{KoofrStore, connector_error};

/// How the fixture reaches a [`KoofrStore`]; a binary is the `koofr-storage` executable (e.g.
/// `env!("CARGO_BIN_EXE_koofr-storage")`).
pub use kloset_plugin::suites::Transport;

/// A kloset location on Koofr (or the emulator) for the store suite.
pub struct KoofrStoreSite {
    client: Client,
    root: KoofrPath,
    config: HashMap<String, String>,
    capabilities: StoreCapabilities,
    connections: Connections<RemoteStore>,
}

impl std::fmt::Debug for KoofrStoreSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config map holds the password: show the location only.
        f.debug_struct("KoofrStoreSite")
            .field("root", &self.root)
            .field("transport", self.connections.transport())
            .finish_non_exhaustive()
    }
}

impl KoofrStoreSite {
    /// A fixture for the kloset at the `location` of `config` (the map Plakar's `Init` would
    /// send, e.g. `koofr_testkit::Site::plugin_config`); `client` is any client on the
    /// same account and mount, used by the hooks.
    pub fn new(
        client: Client,
        config: HashMap<String, String>,
        transport: Transport,
    ) -> Result<KoofrStoreSite> {
        // The environment is ignored here so that the fixture's idea of the location is the map's.
        let (parsed, _) = KoofrConfig::from_map(&config, &|_| None)
            .map_err(|e| ConnectorError::invalid_input(e.to_string()))?;
        Ok(KoofrStoreSite {
            client,
            root: parsed.location().clone(),
            config,
            capabilities: StoreCapabilities::default(),
            connections: Connections::new("koofr-storage", transport),
        })
    }

    /// The same fixture over `protocol` (gRPC transports only).
    pub fn with_protocol(mut self, protocol: Protocol) -> KoofrStoreSite {
        self.connections = self.connections.with_protocol(protocol);
        self
    }

    /// Replaces the declared capabilities (e.g. a smaller large-object size under faults).
    pub fn with_capabilities(mut self, capabilities: StoreCapabilities) -> KoofrStoreSite {
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

    /// The `Init` arguments sent to plugin connectors.
    pub fn init_args(&self) -> InitArgs {
        InitArgs::new("koofr", self.config.clone())
    }

    /// A connection to the connector over gRPC (duplex pipe or binary), after `Init`; the
    /// caller shuts it down.
    pub async fn connect_remote(&self) -> Result<RemoteStore> {
        self.connections
            .open_store(&self.init_args(), factory)
            .await
    }

    fn junk_folder(&self, resource: Resource) -> Result<KoofrPath> {
        self.root
            .child(resource.folder())
            .map_err(|e| ConnectorError::invalid_input(e.to_string()))
    }
}

#[async_trait]
impl StoreFixture for KoofrStoreSite {
    async fn connect(&self) -> Result<Arc<dyn Store>> {
        self.connections
            .connect_store(&self.init_args(), factory)
            .await
    }

    async fn release(&self, store: Arc<dyn Store>) -> Result<()> {
        self.connections.release(&store).await
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

/// The plugin binary's factory: the store `Init` builds.
async fn factory(ctx: InitContext) -> Result<KoofrStore> {
    KoofrStore::from_init(&ctx)
}
