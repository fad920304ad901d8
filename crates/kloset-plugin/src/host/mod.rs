//! The host side: spawns or embeds a plugin and drives it as plakar v1.1.x does (protocol v2),
//! or as plakar v1.0.x does ([`v1`]).
//!
//! [`RemoteStore`], [`RemoteImporter`] and [`RemoteExporter`] (and their [`v1`] equivalents)
//! implement the same traits as connectors, so one suite runs against an in-process connector
//! and a plugin binary alike, over either protocol.

mod exporter;
mod importer;
mod store;
pub mod v1;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::process::Child;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::ByteStream;
use crate::error::ConnectorError;
use crate::serve::{MAX_CHUNK, TransportError};
use crate::types::Options;

pub use exporter::RemoteExporter;
pub use importer::RemoteImporter;
pub use store::RemoteStore;

/// How long [`PluginHandle::shutdown`] waits for the plugin to exit after closing its input.
const EXIT_WAIT: Duration = Duration::from_secs(30);
/// Size of the in-process pipe buffer.
const DUPLEX_BUFFER: usize = 256 * 1024;

type BoxReader = Pin<Box<dyn AsyncRead + Send>>;
type BoxWriter = Pin<Box<dyn AsyncWrite + Send>>;
type SharedWriter = Arc<Mutex<Option<BoxWriter>>>;

/// The host's end of the byte pipe; its write half can be closed from outside (EOF to the plugin).
struct HostIo {
    reader: BoxReader,
    writer: SharedWriter,
}

impl AsyncRead for HostIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().reader.as_mut().poll_read(cx, buf)
    }
}

fn closed_pipe() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "plugin input closed by the host")
}

impl AsyncWrite for HostIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(writer) => writer.as_mut().poll_write(cx, buf),
            None => Poll::Ready(Err(closed_pipe())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(writer) => writer.as_mut().poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(writer) => writer.as_mut().poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

enum Running {
    Child(Child),
    Task(JoinHandle<std::result::Result<(), TransportError>>),
}

/// The running plugin: its pid, and a clean shutdown that closes its input and waits for it.
pub struct PluginHandle {
    pid: Option<u32>,
    writer: SharedWriter,
    running: tokio::sync::Mutex<Option<Running>>,
}

impl std::fmt::Debug for PluginHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHandle")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl PluginHandle {
    /// The child's process id (None for an in-process plugin).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Closes the plugin's input (as plakar does when it is done) and waits for it to end.
    /// Returns the exit code: the process status, or 0/1 for an in-process server.
    pub async fn shutdown(&self) -> io::Result<i32> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut writer) = writer {
            // Shutdown, not just drop: a split duplex pipe only signals EOF on shutdown.
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut writer).await;
        }
        let Some(running) = self.running.lock().await.take() else {
            return Err(io::Error::other("plugin already shut down"));
        };
        match running {
            Running::Child(mut child) => {
                match tokio::time::timeout(EXIT_WAIT, child.wait()).await {
                    Ok(status) => {
                        let status = status?;
                        Ok(status.code().unwrap_or(-1))
                    }
                    Err(_) => {
                        let _ = child.kill().await;
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "plugin did not exit after EOF on its input",
                        ))
                    }
                }
            }
            Running::Task(task) => match tokio::time::timeout(EXIT_WAIT, task).await {
                Ok(Ok(Ok(()))) => Ok(0),
                Ok(Ok(Err(err))) => {
                    tracing::warn!(%err, "in-process plugin transport failed");
                    Ok(1)
                }
                Ok(Err(join)) => Err(io::Error::other(format!(
                    "in-process plugin panicked: {join}"
                ))),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "in-process plugin did not end after EOF",
                )),
            },
        }
    }
}

/// A gRPC channel to a plugin plus its [`PluginHandle`].
#[derive(Debug)]
pub struct PluginConnection {
    channel: Channel,
    handle: PluginHandle,
}

impl PluginConnection {
    /// Spawns `program args…` with stdin/stdout piped and stderr inherited, and connects to it.
    pub async fn spawn<P, A, S>(program: P, args: A) -> io::Result<Self>
    where
        P: AsRef<OsStr>,
        A: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let program_name = program.as_ref().to_string_lossy().into_owned();
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot start plugin {program_name}: {e}"))
            })?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no plugin stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no plugin stdout"))?;
        let pid = child.id();
        Self::connect(
            Box::pin(stdout),
            Box::pin(stdin),
            pid,
            Running::Child(child),
        )
        .await
    }

    /// Runs a server in-process on one end of a `tokio::io::duplex` pipe and connects to it.
    /// `serve` is e.g. `|io| kloset_plugin::serve_store_on(io, factory)`.
    pub async fn in_process<F, Fut>(serve: F) -> io::Result<Self>
    where
        F: FnOnce(DuplexStream) -> Fut,
        Fut: Future<Output = std::result::Result<(), TransportError>> + Send + 'static,
    {
        let (host_end, plugin_end) = tokio::io::duplex(DUPLEX_BUFFER);
        let task = tokio::spawn(serve(plugin_end));
        let (reader, writer) = tokio::io::split(host_end);
        Self::connect(
            Box::pin(reader),
            Box::pin(writer),
            None,
            Running::Task(task),
        )
        .await
    }

    async fn connect(
        reader: BoxReader,
        writer: BoxWriter,
        pid: Option<u32>,
        running: Running,
    ) -> io::Result<Self> {
        let writer: SharedWriter = Arc::new(Mutex::new(Some(writer)));
        let io = Arc::new(Mutex::new(Some(HostIo {
            reader,
            writer: writer.clone(),
        })));
        // The single pipe is handed out once; a reconnect attempt fails instead of hanging.
        let connector = tower::service_fn(move |_: Uri| {
            let io = io.lock().unwrap_or_else(|e| e.into_inner()).take();
            async move {
                io.map(TokioIo::new)
                    .ok_or_else(|| io::Error::other("plugin connection is closed"))
            }
        });
        let channel = Endpoint::from_static("http://127.0.0.1:0")
            .connect_with_connector(connector)
            .await
            .map_err(|e| io::Error::other(format!("cannot connect to the plugin: {e}")))?;
        Ok(Self {
            channel,
            handle: PluginHandle {
                pid,
                writer,
                running: tokio::sync::Mutex::new(Some(running)),
            },
        })
    }

    /// The gRPC channel (for raw protocol tests).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The plugin handle.
    pub fn handle(&self) -> &PluginHandle {
        &self.handle
    }

    /// Splits into the channel and the handle.
    pub fn into_parts(self) -> (Channel, PluginHandle) {
        (self.channel, self.handle)
    }
}

/// What plakar sends as `Init` options from this machine, with the given concurrency.
pub fn host_options(max_concurrency: i64) -> Options {
    Options {
        hostname: "kloset-host".to_owned(),
        os: std::env::consts::OS.to_owned(),
        arch: match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        }
        .to_owned(),
        cwd: std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        max_concurrency,
        excludes: Vec::new(),
        no_xattr: true,
    }
}

/// The `Init` arguments of a connector.
#[derive(Clone, Default)]
pub struct InitArgs {
    /// URL scheme.
    pub proto: String,
    /// Configuration map (may hold secrets: never logged).
    pub config: HashMap<String, String>,
    /// Importer/exporter options.
    pub options: Options,
}

impl std::fmt::Debug for InitArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<&String> = self.config.keys().collect();
        keys.sort();
        f.debug_struct("InitArgs")
            .field("proto", &self.proto)
            .field("config_keys", &keys)
            .finish_non_exhaustive()
    }
}

impl InitArgs {
    /// Init arguments with `location` and the other `config` pairs, and default options.
    pub fn new(proto: &str, config: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            proto: proto.to_owned(),
            config: config.into_iter().collect(),
            options: host_options(4),
        }
    }
}

/// A generated gRPC client limited as plakar's is: an answer over 4 MiB fails (so a plugin that
/// sends one fails here too), and requests are not limited.
macro_rules! plakar_client {
    ($client:expr) => {
        $client
            .max_decoding_message_size($crate::serve::MAX_SEND_MESSAGE)
            .max_encoding_message_size(usize::MAX)
    };
}
use plakar_client;

/// Opens the gRPC client `$client` on a connection and sends `Init` with `$request`: the client,
/// the plugin and the answer, as every remote connector of either protocol starts.
macro_rules! init_client {
    ($client:ident, $connection:expr, $request:expr) => {{
        let (channel, plugin) = $connection.into_parts();
        let mut client = $crate::host::plakar_client!($client::new(channel));
        let init = client.init($request).await?.into_inner();
        (client, plugin, init)
    }};
}
use init_client;

/// The accessors of every remote connector (fields `plugin` and `client`, of type `$client`).
macro_rules! plugin_accessors {
    ($client:ty) => {
        /// The plugin process (pid, shutdown).
        pub fn plugin(&self) -> &$crate::host::PluginHandle {
            &self.plugin
        }

        /// The raw gRPC client, for protocol-level tests.
        pub fn client(&self) -> $client {
            self.client.clone()
        }
    };
}
use plugin_accessors;

/// The data chunks of a response stream, each checked as plakar reads them (§2.5: not empty, at
/// most 1 MiB); `what` names the call in errors, and `keep` lives as long as the stream (e.g. a
/// guard that ends the file's read when it drops).
fn received<T, S, K>(stream: S, chunk: fn(T) -> Bytes, what: String, keep: K) -> ByteStream
where
    T: Send + 'static,
    S: Stream<Item = std::result::Result<T, tonic::Status>> + Send + 'static,
    K: Send + 'static,
{
    stream
        .map(move |item| {
            let _keep = &keep;
            let chunk = chunk(item?);
            if chunk.is_empty() {
                return Err(ConnectorError::other(format!(
                    "{what}: unexpected response: empty chunk"
                )));
            }
            if chunk.len() > MAX_CHUNK {
                return Err(ConnectorError::other(format!(
                    "{what}: chunk of {} bytes exceeds 1 MiB",
                    chunk.len()
                )));
            }
            Ok(chunk)
        })
        .boxed()
}
