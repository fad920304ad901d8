//! Serving a connector as a plugin: one gRPC connection on stdin/stdout (or any byte pipe).

mod exporter;
mod importer;
mod store;
mod transport;
mod v1;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::Status;

use crate::error::{ConnectorError, ConnectorErrorKind, Result};
use crate::pb::plakar::connectors::Chunk;
use crate::protocol::Protocol;
use crate::types::InitContext;

pub use exporter::ExportPipeline;
pub use store::MAX_LIST_MACS;
pub use transport::TransportError;

pub(crate) use exporter::ExporterService;
pub(crate) use importer::ImporterService;
pub(crate) use store::StoreService;

/// Largest data chunk sent in any stream (§2.5).
pub const MAX_CHUNK: usize = 1024 * 1024;
/// Largest message plakar accepts (§2.5); nothing sent may exceed it.
pub const MAX_SEND_MESSAGE: usize = 4 * 1024 * 1024;
/// Largest message this side accepts (≥ 4 MiB, §2.5).
pub const MAX_RECEIVE_MESSAGE: usize = 8 * 1024 * 1024;

/// Sets up `tracing` to stderr, filtered by `RUST_LOG`, quiet (warnings only) by default.
/// Never logs to stdout, which carries the gRPC stream.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// The routes of a generated gRPC server, with the message limits of every service (§2.5).
macro_rules! routes {
    ($server:expr) => {
        tonic::service::Routes::new(
            $server
                .max_decoding_message_size($crate::serve::MAX_RECEIVE_MESSAGE)
                .max_encoding_message_size($crate::serve::MAX_SEND_MESSAGE),
        )
    };
}
pub(crate) use routes;

/// The async constructor of a connector `C`, which `Init` runs: any
/// `Fn(InitContext) -> impl Future<Output = Result<C>>` that can be shared across tasks.
pub trait ConnectorFactory<C>: Send + Sync + 'static {
    /// Builds the connector for one `Init`.
    fn build(&self, ctx: InitContext) -> BoxFuture<'static, Result<C>>;
}

impl<F, Fut, C> ConnectorFactory<C> for F
where
    F: Fn(InitContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<C>> + Send + 'static,
{
    fn build(&self, ctx: InitContext) -> BoxFuture<'static, Result<C>> {
        self(ctx).boxed()
    }
}

/// A [`ConnectorFactory`] shared by the services of one connection.
pub(crate) type Factory<C> = Arc<dyn ConnectorFactory<C>>;

/// Holds the connector built by `Init`; every other RPC before it fails with FAILED_PRECONDITION.
pub(crate) struct ConnectorSlot<C> {
    factory: Factory<C>,
    cell: tokio::sync::OnceCell<Arc<C>>,
}

impl<C: Send + Sync + 'static> ConnectorSlot<C> {
    pub(crate) fn new(factory: Factory<C>) -> Self {
        Self {
            factory,
            cell: tokio::sync::OnceCell::new(),
        }
    }

    pub(crate) async fn init(&self, ctx: InitContext) -> Result<Arc<C>, Status> {
        if self.cell.initialized() {
            return Err(Status::failed_precondition("Init was already called"));
        }
        let factory = self.factory.clone();
        let connector = self
            .cell
            .get_or_try_init(|| async move { factory.build(ctx).await.map(Arc::new) })
            .await
            .map_err(|err| {
                tracing::debug!(error = %err, "connector construction failed");
                Status::from(err)
            })?;
        Ok(connector.clone())
    }

    pub(crate) fn get(&self) -> Result<Arc<C>, Status> {
        self.cell
            .get()
            .cloned()
            .ok_or_else(|| Status::failed_precondition("Init must be the first call"))
    }
}

/// Splits chunks larger than [`MAX_CHUNK`] and drops empty ones (§2.5), as both sides send data.
pub(crate) fn chunked<S>(stream: S) -> impl Stream<Item = Result<Bytes>> + Send + 'static
where
    S: Stream<Item = Result<Bytes>> + Send + 'static,
{
    stream.flat_map(|item| {
        let pieces: Vec<Result<Bytes>> = match item {
            Ok(mut chunk) => {
                let mut pieces = Vec::with_capacity(chunk.len().div_ceil(MAX_CHUNK));
                while !chunk.is_empty() {
                    let take = chunk.len().min(MAX_CHUNK);
                    pieces.push(Ok(chunk.split_to(take)));
                }
                pieces
            }
            Err(err) => vec![Err(err)],
        };
        futures::stream::iter(pieces)
    })
}

/// [`chunked`], with errors mapped to statuses for a response stream.
pub(crate) fn rechunk<S>(stream: S) -> impl Stream<Item = Result<Bytes, Status>> + Send + 'static
where
    S: Stream<Item = Result<Bytes>> + Send + 'static,
{
    chunked(stream).map(|item| item.map_err(Status::from))
}

/// A `Get` or `Open` answer of either protocol: the data as [`Chunk`] messages.
pub(crate) type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, Status>> + Send>>;

/// Wraps data already cut to [`MAX_CHUNK`] (by [`rechunk`]) in [`Chunk`] messages.
pub(crate) fn chunk_messages<S>(data: S) -> ChunkStream
where
    S: Stream<Item = Result<Bytes, Status>> + Send + 'static,
{
    Box::pin(data.map(|item| item.map(|chunk| Chunk { chunk })))
}

/// Runs `serve` in the protocol this process's argv names (v2 by default, `--plakar-protocol
/// v1` for plakar 1.0.x), or exits with status 2 and a usage line on stderr.
async fn serve_argv<Fut>(serve: impl FnOnce(Protocol) -> Fut) -> ExitCode
where
    Fut: Future<Output = ExitCode>,
{
    let mut argv = std::env::args();
    let program = argv.next().unwrap_or_else(|| "plugin".to_owned());
    match Protocol::from_args(argv) {
        Ok(protocol) => serve(protocol).await,
        Err(err) => {
            eprintln!("{program}: {err}\n{}", Protocol::usage(&program));
            ExitCode::from(2)
        }
    }
}

/// Runs a store plugin on stdin/stdout until plakar closes the pipe, in the protocol its argv
/// names (v2 by default, `--plakar-protocol v1` for plakar 1.0.x; anything else is exit status
/// 2); returns the exit code (0 at EOF, 1 with a one-line stderr message on a broken transport).
pub async fn serve_store<S: crate::Store>(factory: impl ConnectorFactory<S>) -> ExitCode {
    serve_argv(|protocol| serve_store_as(protocol, factory)).await
}

/// Runs a store plugin on stdin/stdout in `protocol` (see [`serve_store`]).
pub async fn serve_store_as<S: crate::Store>(
    protocol: Protocol,
    factory: impl ConnectorFactory<S>,
) -> ExitCode {
    let factory: Factory<S> = Arc::new(factory);
    let routes = match protocol {
        Protocol::V1 => v1::store_router(factory),
        Protocol::V2 => StoreService::router(factory),
    };
    transport::serve_stdio(routes).await
}

/// Runs an importer plugin on stdin/stdout in the protocol its argv names (see
/// [`serve_store`]).
pub async fn serve_importer<I: crate::Importer>(factory: impl ConnectorFactory<I>) -> ExitCode {
    serve_argv(|protocol| serve_importer_as(protocol, factory)).await
}

/// Runs an importer plugin on stdin/stdout in `protocol` (see [`serve_store`]).
pub async fn serve_importer_as<I: crate::Importer>(
    protocol: Protocol,
    factory: impl ConnectorFactory<I>,
) -> ExitCode {
    let factory: Factory<I> = Arc::new(factory);
    let routes = match protocol {
        Protocol::V1 => v1::importer_router(factory),
        Protocol::V2 => ImporterService::router(factory),
    };
    transport::serve_stdio(routes).await
}

/// Runs an exporter plugin on stdin/stdout (see [`serve_store`]) with the default
/// [`ExportPipeline`] (4 MiB small-file threshold, 64 MiB budget, the connector's
/// [`crate::Exporter::max_in_flight`]).
pub async fn serve_exporter<E: crate::Exporter>(factory: impl ConnectorFactory<E>) -> ExitCode {
    serve_exporter_with(ExportPipeline::default(), factory).await
}

/// Runs an exporter plugin on stdin/stdout with explicit pipelining limits, in the protocol its
/// argv names (see [`serve_store`]).
pub async fn serve_exporter_with<E: crate::Exporter>(
    pipeline: ExportPipeline,
    factory: impl ConnectorFactory<E>,
) -> ExitCode {
    serve_argv(|protocol| serve_exporter_as(protocol, pipeline, factory)).await
}

/// Runs an exporter plugin on stdin/stdout in `protocol`. Protocol v1 has one call per
/// operation, which plakar 1.0 issues itself: only `pipeline.max_in_flight` applies to it.
pub async fn serve_exporter_as<E: crate::Exporter>(
    protocol: Protocol,
    pipeline: ExportPipeline,
    factory: impl ConnectorFactory<E>,
) -> ExitCode {
    let factory: Factory<E> = Arc::new(factory);
    let routes = match protocol {
        Protocol::V1 => v1::ExporterService::router(factory, pipeline.max_in_flight),
        Protocol::V2 => ExporterService::router(factory, pipeline),
    };
    transport::serve_stdio(routes).await
}

/// A byte pipe a plugin can be served on (e.g. one end of `tokio::io::duplex`).
pub trait Pipe: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<IO: AsyncRead + AsyncWrite + Send + Unpin + 'static> Pipe for IO {}

/// Serves a store on any byte pipe until it reaches EOF.
pub async fn serve_store_on<S: crate::Store>(
    io: impl Pipe,
    factory: impl ConnectorFactory<S>,
) -> Result<(), TransportError> {
    transport::serve_io(io, StoreService::router(Arc::new(factory))).await
}

/// Serves an importer on any byte pipe until it reaches EOF.
pub async fn serve_importer_on<I: crate::Importer>(
    io: impl Pipe,
    factory: impl ConnectorFactory<I>,
) -> Result<(), TransportError> {
    transport::serve_io(io, ImporterService::router(Arc::new(factory))).await
}

/// Serves an exporter on any byte pipe until it reaches EOF, with the given pipelining limits.
pub async fn serve_exporter_on<E: crate::Exporter>(
    io: impl Pipe,
    pipeline: ExportPipeline,
    factory: impl ConnectorFactory<E>,
) -> Result<(), TransportError> {
    transport::serve_io(io, ExporterService::router(Arc::new(factory), pipeline)).await
}

/// Serves a store in protocol v1 on any byte pipe until it reaches EOF.
pub async fn serve_store_v1_on<S: crate::Store>(
    io: impl Pipe,
    factory: impl ConnectorFactory<S>,
) -> Result<(), TransportError> {
    transport::serve_io(io, v1::store_router(Arc::new(factory))).await
}

/// Serves an importer in protocol v1 on any byte pipe until it reaches EOF.
pub async fn serve_importer_v1_on<I: crate::Importer>(
    io: impl Pipe,
    factory: impl ConnectorFactory<I>,
) -> Result<(), TransportError> {
    transport::serve_io(io, v1::importer_router(Arc::new(factory))).await
}

/// Serves an exporter in protocol v1 on any byte pipe until it reaches EOF (of `pipeline`, only
/// `max_in_flight` applies).
pub async fn serve_exporter_v1_on<E: crate::Exporter>(
    io: impl Pipe,
    pipeline: ExportPipeline,
    factory: impl ConnectorFactory<E>,
) -> Result<(), TransportError> {
    let factory = Arc::new(factory);
    transport::serve_io(
        io,
        v1::ExporterService::router(factory, pipeline.max_in_flight),
    )
    .await
}

pub(crate) fn invalid(message: String) -> Status {
    Status::from(ConnectorError::new(
        ConnectorErrorKind::InvalidInput,
        message,
    ))
}
