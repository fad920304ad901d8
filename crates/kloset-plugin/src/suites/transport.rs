//! How a conformance fixture reaches its connector ([`Transport`]) and the plugin connections
//! it opened ([`Connections`]), written once for every role and every connector's fixture.
//!
//! A fixture gives the same factory its plugin binary gives `serve_*`, and gets back a
//! connector: built in process ([`Transport::Direct`]), served over a `tokio::io::duplex` pipe
//! ([`Transport::Duplex`]), or a spawned plugin binary ([`Transport::Binary`]), over protocol
//! v2 or, with [`Connections::with_protocol`], v1 (a binary is then started with
//! `--plakar-protocol v1`). The gRPC ones are kept until [`Connections::release`], which closes
//! the plugin's input and fails unless it then exits with status 0.
//!
//! ```no_run
//! # async fn demo() -> kloset_plugin::Result<()> {
//! use kloset_plugin::host::{InitArgs, RemoteStore};
//! use kloset_plugin::reference::{ReferenceStore, backend_from_config};
//! use kloset_plugin::suites::{Connections, Transport};
//!
//! let stores: Connections<RemoteStore> =
//!     Connections::new("kloset-reference-plugin", Transport::Duplex);
//! let init = InitArgs::new("ref", [("location".to_owned(), "ref:///kloset".to_owned())]);
//! let store = stores
//!     .connect_store(&init, |ctx| async move {
//!         let (backend, root) = backend_from_config(&ctx)?;
//!         Ok(ReferenceStore::new(backend, &root))
//!     })
//!     .await?;
//! // … run cases on `store` …
//! stores.release(&store).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::DuplexStream;

use crate::host::{
    InitArgs, PluginConnection, PluginHandle, RemoteExporter, RemoteImporter, RemoteStore, v1,
};
use crate::{
    ConnectorError, ConnectorFactory, ExportPipeline, Exporter, Importer, InitContext, Protocol,
    Result, Store, TransportError,
};

/// How a fixture reaches the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Trait calls straight into a connector built in process by the plugin's factory.
    Direct,
    /// gRPC over a `tokio::io::duplex` pipe to the factory served in process by `serve_*_on`.
    Duplex,
    /// gRPC over stdin/stdout of the plugin binary at this path (e.g.
    /// `env!("CARGO_BIN_EXE_…")`); one process per connection.
    Binary(PathBuf),
}

/// A host-side plugin connection of one role ([`RemoteStore`], [`RemoteImporter`],
/// [`RemoteExporter`] and their [`v1`] equivalents), as kept by [`Connections`].
pub trait RemotePlugin: Send + Sync + 'static {
    /// The running plugin (pid, shutdown).
    fn plugin(&self) -> &PluginHandle;
}

impl RemotePlugin for RemoteStore {
    fn plugin(&self) -> &PluginHandle {
        RemoteStore::plugin(self)
    }
}

impl RemotePlugin for RemoteImporter {
    fn plugin(&self) -> &PluginHandle {
        RemoteImporter::plugin(self)
    }
}

impl RemotePlugin for RemoteExporter {
    fn plugin(&self) -> &PluginHandle {
        RemoteExporter::plugin(self)
    }
}

impl RemotePlugin for v1::RemoteStore {
    fn plugin(&self) -> &PluginHandle {
        v1::RemoteStore::plugin(self)
    }
}

impl RemotePlugin for v1::RemoteImporter {
    fn plugin(&self) -> &PluginHandle {
        v1::RemoteImporter::plugin(self)
    }
}

impl RemotePlugin for v1::RemoteExporter {
    fn plugin(&self) -> &PluginHandle {
        v1::RemoteExporter::plugin(self)
    }
}

/// The connections of one fixture to its connector of role `R` (named by its protocol v2 host
/// type): opens them over the fixture's [`Transport`] and [`Protocol`], and keeps the gRPC ones
/// until [`Connections::release`].
pub struct Connections<R> {
    plugin_name: String,
    transport: Transport,
    protocol: Protocol,
    binary_args: Vec<String>,
    live: Mutex<Vec<Arc<dyn RemotePlugin>>>,
    role: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Connections<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("plugin_name", &self.plugin_name)
            .field("transport", &self.transport)
            .field("protocol", &self.protocol)
            .field("binary_args", &self.binary_args)
            .field("live", &self.lock_live().len())
            .finish()
    }
}

impl<R> Connections<R> {
    // A panicking case must not make every later release fail too.
    fn lock_live(&self) -> std::sync::MutexGuard<'_, Vec<Arc<dyn RemotePlugin>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<R: RemotePlugin> Connections<R> {
    /// No connections yet; `plugin_name` names the plugin in errors (e.g. `koofr-storage`).
    pub fn new(plugin_name: &str, transport: Transport) -> Self {
        Self {
            plugin_name: plugin_name.to_owned(),
            transport,
            protocol: Protocol::default(),
            binary_args: Vec::new(),
            live: Mutex::default(),
            role: PhantomData,
        }
    }

    /// The protocol gRPC connections speak (v2 by default).
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The protocol between the fixture and its connector; None for [`Transport::Direct`].
    pub fn protocol(&self) -> Option<Protocol> {
        (self.transport != Transport::Direct).then_some(self.protocol)
    }

    /// The arguments a [`Transport::Binary`] plugin is started with, before those of the
    /// protocol (none by default; e.g. the role, for a binary serving several).
    pub fn with_binary_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.binary_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// The transport connections go over.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The gRPC connections not released yet (for pid and RSS checks).
    pub fn live(&self) -> Vec<Arc<dyn RemotePlugin>> {
        self.lock_live().clone()
    }

    /// Keeps `remote` until [`Connections::release`].
    pub fn track<T: RemotePlugin>(&self, remote: T) -> Arc<T> {
        let remote = Arc::new(remote);
        self.lock_live().push(remote.clone());
        remote
    }

    /// Shuts down the plugin behind `connector` if it is one of ours (a direct connector is
    /// not: nothing to do), and fails unless the plugin exits with status 0 after EOF.
    pub async fn release<T: ?Sized>(&self, connector: &Arc<T>) -> Result<()> {
        let found = {
            let mut live = self.lock_live();
            let position = live
                .iter()
                .position(|r| std::ptr::addr_eq(Arc::as_ptr(r), Arc::as_ptr(connector)));
            position.map(|p| live.remove(p))
        };
        let Some(remote) = found else {
            return Ok(());
        };
        let code = remote.plugin().shutdown().await.map_err(|e| {
            ConnectorError::other(format!("shutting down {}: {e}", self.plugin_name))
        })?;
        if code != 0 {
            return Err(ConnectorError::other(format!(
                "{} exited with status {code} after EOF",
                self.plugin_name
            )));
        }
        Ok(())
    }

    /// A gRPC connection: the binary spawned, or `serve` run on a duplex pipe (also for
    /// [`Transport::Direct`], whose caller asked for gRPC all the same).
    async fn connection<F, Fut>(&self, serve: F) -> Result<PluginConnection>
    where
        F: FnOnce(DuplexStream) -> Fut,
        Fut: Future<Output = std::result::Result<(), TransportError>> + Send + 'static,
    {
        match &self.transport {
            Transport::Binary(program) => {
                let args = self.binary_args.iter().cloned().chain(self.protocol.args());
                PluginConnection::spawn(program, args).await
            }
            Transport::Direct | Transport::Duplex => PluginConnection::in_process(serve).await,
        }
        .map_err(ConnectorError::from)
    }

    /// Refuses a protocol v2 call on connections of another protocol.
    fn expect_v2(&self, what: &str) -> Result<()> {
        if self.protocol == Protocol::V2 {
            return Ok(());
        }
        Err(ConnectorError::new(
            crate::ConnectorErrorKind::FailedPrecondition,
            format!(
                "{what} speaks protocol v2; these {} connections speak {}",
                self.plugin_name, self.protocol
            ),
        ))
    }
}

/// The context `Init` hands a plugin's factory, for a connector built in process.
fn init_context(init: &InitArgs, with_options: bool) -> InitContext {
    InitContext {
        proto: init.proto.clone(),
        config: init.config.clone(),
        // Stores get no options over the wire; importers and exporters do.
        options: with_options.then(|| init.options.clone()),
    }
}

impl Connections<RemoteStore> {
    /// A store over gRPC (protocol v2) after `Init` with `init`, served by `factory` in process
    /// unless the transport is a binary; the caller owns it (it is not kept for release).
    pub async fn open_store<S: Store>(
        &self,
        init: &InitArgs,
        factory: impl ConnectorFactory<S>,
    ) -> Result<RemoteStore> {
        self.expect_v2("open_store")?;
        let connection = self
            .connection(|io| crate::serve_store_on(io, factory))
            .await?;
        RemoteStore::init(connection, init).await
    }

    /// A store over gRPC in protocol v1 (see [`Connections::open_store`]).
    pub async fn open_store_v1<S: Store>(
        &self,
        init: &InitArgs,
        factory: impl ConnectorFactory<S>,
    ) -> Result<v1::RemoteStore> {
        let connection = self
            .connection(|io| crate::serve_store_v1_on(io, factory))
            .await?;
        v1::RemoteStore::init(connection, init).await
    }

    /// A store as the transport dictates: `factory` called directly, or [`Self::open_store`]
    /// kept for release.
    pub async fn connect_store<S: Store>(
        &self,
        init: &InitArgs,
        factory: impl ConnectorFactory<S>,
    ) -> Result<Arc<dyn Store>> {
        Ok(match (&self.transport, self.protocol) {
            (Transport::Direct, _) => Arc::new(factory.build(init_context(init, false)).await?),
            (_, Protocol::V2) => self.track(self.open_store(init, factory).await?),
            (_, Protocol::V1) => self.track(self.open_store_v1(init, factory).await?),
        })
    }
}

impl Connections<RemoteImporter> {
    /// An importer over gRPC (see [`Connections::open_store`]); not kept for release.
    pub async fn open_importer<I: Importer>(
        &self,
        init: &InitArgs,
        factory: impl ConnectorFactory<I>,
    ) -> Result<RemoteImporter> {
        self.expect_v2("open_importer")?;
        let connection = self
            .connection(|io| crate::serve_importer_on(io, factory))
            .await?;
        RemoteImporter::init(connection, init).await
    }

    /// An importer over gRPC in protocol v1 (see [`Connections::open_store`]).
    pub async fn open_importer_v1<I: Importer>(
        &self,
        init: &InitArgs,
        factory: impl ConnectorFactory<I>,
    ) -> Result<v1::RemoteImporter> {
        let connection = self
            .connection(|io| crate::serve_importer_v1_on(io, factory))
            .await?;
        v1::RemoteImporter::init(connection, init).await
    }

    /// An importer as the transport dictates (see [`Connections::connect_store`]).
    pub async fn connect_importer<I: Importer>(
        &self,
        init: &InitArgs,
        factory: impl ConnectorFactory<I>,
    ) -> Result<Arc<dyn Importer>> {
        Ok(match (&self.transport, self.protocol) {
            (Transport::Direct, _) => Arc::new(factory.build(init_context(init, true)).await?),
            (_, Protocol::V2) => self.track(self.open_importer(init, factory).await?),
            (_, Protocol::V1) => self.track(self.open_importer_v1(init, factory).await?),
        })
    }
}

impl Connections<RemoteExporter> {
    /// An exporter over gRPC (see [`Connections::open_store`]), served in process with the
    /// `pipeline` limits (a binary uses its own); not kept for release.
    pub async fn open_exporter<E: Exporter>(
        &self,
        init: &InitArgs,
        pipeline: ExportPipeline,
        factory: impl ConnectorFactory<E>,
    ) -> Result<RemoteExporter> {
        self.expect_v2("open_exporter")?;
        let connection = self
            .connection(|io| crate::serve_exporter_on(io, pipeline, factory))
            .await?;
        RemoteExporter::init(connection, init).await
    }

    /// An exporter over gRPC in protocol v1 (see [`Connections::open_exporter`]; of `pipeline`,
    /// only `max_in_flight` applies).
    pub async fn open_exporter_v1<E: Exporter>(
        &self,
        init: &InitArgs,
        pipeline: ExportPipeline,
        factory: impl ConnectorFactory<E>,
    ) -> Result<v1::RemoteExporter> {
        let connection = self
            .connection(|io| crate::serve_exporter_v1_on(io, pipeline, factory))
            .await?;
        v1::RemoteExporter::init(connection, init).await
    }

    /// An exporter as the transport dictates (see [`Connections::connect_store`]).
    pub async fn connect_exporter<E: Exporter>(
        &self,
        init: &InitArgs,
        pipeline: ExportPipeline,
        factory: impl ConnectorFactory<E>,
    ) -> Result<Arc<dyn Exporter>> {
        Ok(match (&self.transport, self.protocol) {
            (Transport::Direct, _) => Arc::new(factory.build(init_context(init, true)).await?),
            (_, Protocol::V2) => self.track(self.open_exporter(init, pipeline, factory).await?),
            (_, Protocol::V1) => self.track(self.open_exporter_v1(init, pipeline, factory).await?),
        })
    }
}
