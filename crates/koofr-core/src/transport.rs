//! HTTP transport: a pooled HTTP/1.1 reqwest client, the per-client concurrency limit (the
//! permit travels with the response body), the stall watchdog, authentication with one renewal
//! after a 401 (and at most one refused request per client), and conversion of error answers
//! and connection failures into [`Error`]s.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::header::AUTHORIZATION;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Auth;
use crate::config::KoofrConfig;
use crate::error::{Error, ErrorKind, Result, classify};
use crate::retry::parse_retry_after;
use crate::types::ApiErrorBody;

/// A stream of bytes from or to Koofr.
pub type ByteStream = BoxStream<'static, Result<Bytes, Error>>;

/// Largest error body read to find Koofr's error code.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A stall watchdog: the last time a transfer made progress, and a wait that resolves once it
/// made none for the stall timeout.
#[derive(Clone, Debug)]
pub(crate) struct StallWatchdog(Arc<Mutex<Instant>>);

impl StallWatchdog {
    pub(crate) fn new() -> StallWatchdog {
        StallWatchdog(Arc::new(Mutex::new(Instant::now())))
    }
    /// The transfer made progress.
    pub(crate) fn touch(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
    fn last(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Resolves once no progress was made for `stall`.
    async fn stalled(&self, stall: Duration) {
        loop {
            let deadline = self.last() + stall;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// What the error conversion needs to know about a request.
#[derive(Clone, Copy)]
pub(crate) struct RequestContext<'a> {
    pub op: &'static str,
    pub path: Option<&'a str>,
    /// Folder create, copy, move and rename: a bare 400 means "already exists" in API v2.
    pub exists_possible: bool,
}

impl RequestContext<'_> {
    pub(crate) fn error(
        &self,
        kind: ErrorKind,
        temporary: bool,
        message: impl Into<String>,
    ) -> Error {
        let e = Error::new(kind, temporary, self.op, message);
        match self.path {
            Some(p) => e.with_path(p),
            None => e,
        }
    }
    /// A request that got no answer: [`ErrorKind::Unreachable`] when no connection to `base`
    /// could be made, else a temporary transport error.
    pub(crate) fn send_error(&self, base: &str, e: reqwest::Error) -> Error {
        match unreachable_cause(&e) {
            // The source is left out: the cause says it all, and its URL carries the query.
            Some(cause) => self.error(
                ErrorKind::Unreachable,
                true,
                format!("cannot connect to {base}: {cause}"),
            ),
            None => self.transport_error(e),
        }
    }

    pub(crate) fn transport_error(&self, e: reqwest::Error) -> Error {
        let message = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_body() || e.is_decode() {
            "the response body broke off"
        } else {
            "request failed"
        };
        self.error(ErrorKind::Transport, true, message)
            .with_source(e)
    }
    fn stall_error(&self, stall: Duration) -> Error {
        self.error(
            ErrorKind::Transport,
            true,
            format!(
                "no progress for {} s (stalled transfer)",
                stall.as_secs_f64()
            ),
        )
    }
}

/// Why no connection could be made, from the error's source chain: `connection refused`,
/// `no such host (…)`, `TLS error (…)`; `None` when the failure is not one of connecting (a
/// timeout, or a connection that broke later).
fn unreachable_cause(e: &reqwest::Error) -> Option<String> {
    use std::error::Error as _;
    use std::io::ErrorKind as Io;
    if !e.is_connect() || e.is_timeout() {
        return None;
    }
    let mut io_kinds = Vec::new();
    let mut dns = false;
    let mut innermost = e.to_string();
    let mut next: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(err) = next {
        innermost = err.to_string();
        // hyper-util names its resolver failures only in text; everything else is typed.
        dns |= innermost == "dns error";
        let mut io = err.downcast_ref::<std::io::Error>();
        while let Some(inner) = io {
            io_kinds.push(inner.kind());
            io = inner
                .get_ref()
                .and_then(|e| e.downcast_ref::<std::io::Error>());
        }
        next = err.source();
    }
    let cause = if io_kinds.contains(&Io::ConnectionRefused) {
        "connection refused".to_owned()
    } else if dns {
        format!("no such host ({innermost})")
    } else if io_kinds.contains(&Io::InvalidData) {
        format!("TLS error ({innermost})")
    } else if io_kinds.contains(&Io::HostUnreachable) {
        "host unreachable".to_owned()
    } else if io_kinds.contains(&Io::NetworkUnreachable) {
        "network unreachable".to_owned()
    } else {
        innermost
    };
    Some(cause)
}

/// A successful response that holds a concurrency permit until its body is consumed.
pub(crate) struct Response {
    pub inner: reqwest::Response,
    pub permit: OwnedSemaphorePermit,
}

/// The shared HTTP machinery of one client.
pub(crate) struct Transport {
    http: reqwest::Client,
    semaphore: Arc<Semaphore>,
    stall: Duration,
    base: String,
    auth: Auth,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("base", &self.base)
            .field("stall", &self.stall)
            .field("auth", &self.auth)
            .field("available_permits", &self.semaphore.available_permits())
            .finish()
    }
}

impl Transport {
    pub(crate) fn new(config: &KoofrConfig) -> Result<Transport> {
        let timeouts = config.timeouts();
        let http = reqwest::Client::builder()
            .http1_only()
            .connect_timeout(timeouts.connect)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(config.concurrency())
            .tcp_nodelay(true)
            .user_agent(concat!("koofr-plakar/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                Error::permanent(
                    ErrorKind::Unexpected,
                    "create client",
                    "cannot build the HTTP client",
                )
                .with_source(e)
            })?;
        Ok(Transport {
            http,
            semaphore: Arc::new(Semaphore::new(config.concurrency())),
            stall: timeouts.stall,
            base: config.endpoint().as_str().trim_end_matches('/').to_owned(),
            auth: Auth::new(config.auth(), timeouts.stall.max(Duration::from_secs(1)))?,
        })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn stall(&self) -> Duration {
        self.stall
    }

    /// Sends one request (built by `build`, possibly twice: once more after a 401 renewal) and
    /// returns a 2xx response holding a concurrency permit, or the classified error.
    /// `watchdog` (uploads) is touched by the body as it is sent; without it, the stall watchdog
    /// counts from the start of the request.
    pub(crate) async fn send<F>(
        &self,
        ctx: RequestContext<'_>,
        watchdog: Option<StallWatchdog>,
        mut build: F,
    ) -> Result<Response>
    where
        F: FnMut(&reqwest::Client) -> Result<reqwest::RequestBuilder>,
    {
        let permit = self
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ctx.error(ErrorKind::Unexpected, false, "the client was shut down"))?;
        let mut probe = self.auth.probe().await;
        let mut renewed = false;
        loop {
            let (auth_header, generation) = self
                .auth
                .header(&self.http, &self.base)
                .await
                .map_err(|e| e.with_op(ctx.op).or_path_opt(ctx.path))?;
            let request = build(&self.http)?.header(AUTHORIZATION, auth_header);
            let watchdog = watchdog.clone().unwrap_or_else(StallWatchdog::new);
            watchdog.touch();
            let response = tokio::select! {
                r = request.send() => r.map_err(|e| ctx.send_error(&self.base, e))?,
                () = watchdog.stalled(self.stall) => return Err(ctx.stall_error(self.stall)),
            };
            let status = response.status().as_u16();
            if status != 401 {
                self.auth.accept();
                drop(probe.take());
            }
            if (200..300).contains(&status) {
                return Ok(Response {
                    inner: response,
                    permit,
                });
            }
            if status == 401 {
                if self.auth.renewable() && !renewed {
                    tracing::debug!(op = ctx.op, "koofr: 401, renewing the credential once");
                    self.auth
                        .renew(generation, &self.http, &self.base)
                        .await
                        .map_err(|e| e.with_op(ctx.op).or_path_opt(ctx.path))?;
                    renewed = true;
                    continue;
                }
                // Never retried, and never sent again: repeated failed logins trigger Koofr's
                // IP-wide throttle.
                self.auth.refuse();
                return Err(self.auth.refused_error(ctx.op).or_path_opt(ctx.path));
            }
            return Err(self.error_from_response(ctx, response).await);
        }
    }

    /// Reads a (bounded) error body and classifies it.
    async fn error_from_response(
        &self,
        ctx: RequestContext<'_>,
        response: reqwest::Response,
    ) -> Error {
        let status = response.status().as_u16();
        let retry_after = parse_retry_after(response.headers().get(reqwest::header::RETRY_AFTER));
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        let read = async {
            while let Some(Ok(chunk)) = stream.next().await {
                body.extend_from_slice(&chunk);
                if body.len() >= MAX_ERROR_BODY {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(self.stall, read).await;
        let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)]).into_owned();
        let (code, server_message) = match serde_json::from_str::<ApiErrorBody>(&text) {
            Ok(parsed) => (parsed.error.code, parsed.error.message),
            Err(_) => (None, None),
        };
        let (kind, temporary) = classify(status, code.as_deref(), &text, ctx.exists_possible);
        let message = server_message
            .or_else(|| {
                let trimmed = text.trim();
                (!trimmed.is_empty() && trimmed.len() <= 200 && !trimmed.starts_with('{'))
                    .then(|| trimmed.to_owned())
            })
            .unwrap_or_else(|| {
                reqwest::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("error")
                    .to_owned()
            });
        ctx.error(kind, temporary, message)
            .with_status(status, code)
            .with_retry_after(retry_after)
    }

    /// Sends and parses a small JSON answer (the permit is released when the body is read).
    pub(crate) async fn json<T, F>(&self, ctx: RequestContext<'_>, build: F) -> Result<T>
    where
        T: for<'de> serde::Deserialize<'de>,
        F: FnMut(&reqwest::Client) -> Result<reqwest::RequestBuilder>,
    {
        let response = self.send(ctx, None, build).await?;
        let bytes = read_all(ctx, response, self.stall).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ctx.error(
                ErrorKind::Unexpected,
                false,
                format!("unexpected response ({e}): {}", preview(&bytes)),
            )
        })
    }

    /// Sends and discards the answer.
    pub(crate) async fn empty<F>(&self, ctx: RequestContext<'_>, build: F) -> Result<()>
    where
        F: FnMut(&reqwest::Client) -> Result<reqwest::RequestBuilder>,
    {
        let response = self.send(ctx, None, build).await?;
        read_all(ctx, response, self.stall).await.map(drop)
    }
}

fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned()
}

/// Reads a whole (small, metadata) body; each chunk must arrive within `stall`.
async fn read_all(ctx: RequestContext<'_>, response: Response, stall: Duration) -> Result<Bytes> {
    let mut stream = body_stream(response, ctx.op, ctx.path.map(str::to_owned), stall);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(Bytes::from(out))
}

/// Turns a response into a byte stream that carries the concurrency permit, fails after `stall`
/// without data, and checks the received length against `Content-Length`.
pub(crate) fn body_stream(
    response: Response,
    op: &'static str,
    path: Option<String>,
    stall: Duration,
) -> ByteStream {
    struct State {
        inner: BoxStream<'static, reqwest::Result<Bytes>>,
        _permit: OwnedSemaphorePermit,
        expected: Option<u64>,
        received: u64,
        op: &'static str,
        path: Option<String>,
        stall: Duration,
        done: bool,
    }
    let expected = response.inner.content_length();
    let state = State {
        inner: response.inner.bytes_stream().boxed(),
        _permit: response.permit,
        expected,
        received: 0,
        op,
        path,
        stall,
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let ctx = RequestContext {
            op: st.op,
            path: st.path.as_deref(),
            exists_possible: false,
        };
        let item = match tokio::time::timeout(st.stall, st.inner.next()).await {
            Err(_) => Err(ctx.stall_error(st.stall)),
            Ok(Some(Ok(chunk))) => {
                st.received += chunk.len() as u64;
                match st.expected {
                    Some(expected) if st.received > expected => Err(ctx.error(
                        ErrorKind::Integrity,
                        false,
                        format!("received more than the announced {expected} bytes"),
                    )),
                    _ => Ok(chunk),
                }
            }
            Ok(Some(Err(e))) => Err(ctx.transport_error(e)),
            Ok(None) => match st.expected {
                Some(expected) if st.received != expected => Err(ctx.error(
                    ErrorKind::Transport,
                    true,
                    format!("body truncated: {} of {expected} bytes", st.received),
                )),
                _ => return None,
            },
        };
        if item.is_err() {
            st.done = true;
        }
        Some((item, st))
    })
    .boxed()
}

trait OrPathOpt {
    fn or_path_opt(self, path: Option<&str>) -> Self;
}

impl OrPathOpt for Error {
    fn or_path_opt(self, path: Option<&str>) -> Error {
        match path {
            Some(p) => self.or_path(p),
            None => self,
        }
    }
}
