//! The stdio byte pipe as one tonic connection: EOF fires shutdown, I/O errors mean exit 1,
//! and calls in flight at EOF get a bounded grace period to finish.
//!
//! plakar closes the plugin's input as soon as it is done, sometimes with a call still running
//! (it deletes its lock while it closes the storage plugin). The connection is gone then, and
//! with it every handler future the server was polling. So every call runs as a task of its
//! own, tracked here (and so does any work a handler hands to [`spawn_in_flight`], such as an
//! export's uploads): at EOF no new call can arrive, and the plugin waits up to [`GRACE`] for
//! the tracked tasks to finish or run out of retries before it exits. Every service, and any
//! protocol adapter served through this module, gets this without doing anything.

use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::Routes;
use tonic::transport::server::Connected;

/// How long calls still running when the input reaches EOF may take before the plugin exits.
pub const GRACE: Duration = Duration::from_secs(10);

tokio::task_local! {
    /// The tasks of the connection being served (set around every call's handler).
    static IN_FLIGHT: TaskTracker;
}

/// Spawns work that a call started and that must outlive the connection (e.g. an upload whose
/// result is still to be sent): the plugin waits for it, within [`GRACE`], before it exits.
/// Outside a served call it is a plain `tokio::spawn`.
pub(crate) fn spawn_in_flight<F>(task: F) -> JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match IN_FLIGHT.try_with(TaskTracker::clone) {
        Ok(tracker) => tracker.spawn(IN_FLIGHT.scope(tracker.clone(), task)),
        Err(_) => tokio::spawn(task),
    }
}

/// The tower layer that runs every call's handler as a tracked task.
#[derive(Clone)]
struct InFlightLayer(TaskTracker);

impl<S> tower::Layer<S> for InFlightLayer {
    type Service = InFlight<S>;
    fn layer(&self, inner: S) -> InFlight<S> {
        InFlight {
            inner,
            tracker: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct InFlight<S> {
    inner: S,
    tracker: TaskTracker,
}

impl<S, Req> tower::Service<Req> for InFlight<S>
where
    S: tower::Service<Req>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let handler = self.inner.call(request);
        // Dropped with the connection, this future only stops waiting: the task goes on.
        let task = self
            .tracker
            .spawn(IN_FLIGHT.scope(self.tracker.clone(), handler));
        Box::pin(async move {
            match task.await {
                Ok(outcome) => outcome,
                Err(join) => std::panic::resume_unwind(join.into_panic()),
            }
        })
    }
}

/// The byte pipe to plakar broke (not a clean EOF).
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin transport failed: {0}")]
pub struct TransportError(pub String);

/// Shared between the IO object and the server: `closed` fires at EOF or on the first I/O
/// error, `broken` on the first I/O error only.
#[derive(Default)]
struct ConnectionState {
    closed: CancellationToken,
    broken: CancellationToken,
    failure: Mutex<Option<String>>,
}

impl ConnectionState {
    fn fail(&self, what: &str, err: &io::Error) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_none() {
            *failure = Some(format!("{what}: {err}"));
        }
        drop(failure);
        self.broken.cancel();
        self.closed.cancel();
    }
}

/// One bidirectional IO object over a reader and a writer that reports EOF and errors.
struct WatchedIo<R, W> {
    reader: R,
    writer: W,
    state: Arc<ConnectionState>,
}

impl<R: AsyncRead + Unpin, W: Unpin> AsyncRead for WatchedIo<R, W> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        match Pin::new(&mut this.reader).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if wanted && buf.filled().len() == before {
                    tracing::debug!("plugin input reached EOF");
                    this.state.closed.cancel();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => {
                this.state.fail("reading the plugin input", &err);
                Poll::Ready(Err(err))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<R: Unpin, W: AsyncWrite + Unpin> AsyncWrite for WatchedIo<R, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.writer).poll_write(cx, buf);
        if let Poll::Ready(Err(err)) = &result {
            this.state.fail("writing the plugin output", err);
        }
        result
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.writer).poll_flush(cx);
        if let Poll::Ready(Err(err)) = &result {
            this.state.fail("flushing the plugin output", err);
        }
        result
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_shutdown(cx)
    }
}

impl<R, W> Drop for WatchedIo<R, W> {
    fn drop(&mut self) {
        // The connection is gone: nothing more will ever be served.
        self.state.closed.cancel();
    }
}

impl<R, W> Connected for WatchedIo<R, W> {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

type BoxReader = Pin<Box<dyn AsyncRead + Send>>;
type BoxWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// Non-blocking pipe handles on duplicated fds 0 and 1; tokio's thread-backed stdio when
/// they are not pipes (e.g. a terminal or a file in manual runs).
fn stdio_handles() -> io::Result<(BoxReader, BoxWriter)> {
    use tokio::net::unix::pipe;
    let stdin_fd = io::stdin().as_fd().try_clone_to_owned()?;
    let stdout_fd = io::stdout().as_fd().try_clone_to_owned()?;
    let reader: BoxReader = match pipe::Receiver::from_owned_fd(stdin_fd) {
        Ok(rx) => Box::pin(rx),
        Err(_) => Box::pin(tokio::io::stdin()),
    };
    let writer: BoxWriter = match pipe::Sender::from_owned_fd(stdout_fd) {
        Ok(tx) => Box::pin(tx),
        Err(_) => Box::pin(tokio::io::stdout()),
    };
    Ok((reader, writer))
}

/// Serves `routes` on stdin/stdout; 0 at EOF, 1 with a one-line stderr message otherwise.
pub(crate) async fn serve_stdio(routes: Routes) -> ExitCode {
    let result = match stdio_handles() {
        Ok((reader, writer)) => serve_parts(reader, writer, routes).await,
        Err(err) => Err(TransportError(format!("cannot use stdin/stdout: {err}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// Serves `routes` on one bidirectional byte pipe until it reaches EOF.
pub(crate) async fn serve_io<IO>(io: IO, routes: Routes) -> Result<(), TransportError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (reader, writer) = tokio::io::split(io);
    serve_parts(reader, writer, routes).await
}

async fn serve_parts<R, W>(reader: R, writer: W, routes: Routes) -> Result<(), TransportError>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let state = Arc::new(ConnectionState::default());
    let io = WatchedIo {
        reader,
        writer,
        state: state.clone(),
    };
    // Yield the one connection, then stay pending: an ending stream makes tonic stop serving.
    let incoming = futures::stream::once(async move { Ok::<_, io::Error>(io) })
        .chain(futures::stream::pending());
    let closed = state.closed.clone();
    let tracker = TaskTracker::new();
    let server = tonic::transport::Server::builder()
        .layer(InFlightLayer(tracker.clone()))
        .serve_with_incoming_shutdown(routes, incoming, async move { closed.cancelled().await });
    // A broken pipe ends serving at once: a graceful shutdown could wait for an input that
    // never closes, and nothing can reach plakar any more anyway.
    let served = tokio::select! {
        served = server => served,
        () = state.broken.cancelled() => Ok(()),
    };
    tracker.close();
    if !tracker.is_empty() {
        tracing::debug!(
            calls = tracker.len(),
            "plugin input closed; letting calls in flight finish"
        );
        if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
            tracing::warn!(
                calls = tracker.len(),
                "calls still running {} s after the plugin input closed; exiting",
                GRACE.as_secs()
            );
        }
    }
    if let Err(err) = served {
        return Err(TransportError(err.to_string()));
    }
    let failure = state
        .failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    match failure {
        Some(message) => Err(TransportError(message)),
        None => Ok(()),
    }
}
