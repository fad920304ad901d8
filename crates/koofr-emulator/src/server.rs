//! The HTTP side: the accept loop and the per-request pipeline (route, log, latency, faults,
//! route checks, the endpoint's handler, byte counting), plus what handlers get about a request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::HeaderValue;
use http::{HeaderMap, Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{CountingBody, RespBody};
use crate::endpoint::{self, Endpoint, Route};
use crate::faults::FaultAction;
use crate::response::{ApiError, Failure, HandlerResult, failure_response, injected_status};
use crate::state::{LogEntry, Shared};

/// Serves connections until `shutdown` changes (or its sender is dropped).
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let mut conn_shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(shared.clone(), req));
                    let conn = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        result = conn => {
                            if let Err(e) = result {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        }
                        _ = conn_shutdown.changed() => {}
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// Returned by the service to make hyper close the connection without a response.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by the emulator")]
pub(crate) struct DroppedConnection;

/// Decoded query parameters with form semantics (`+` = space), in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query(pub(crate) Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn i64(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "Invalid query parameter {key}: {v:?} is not an integer"
                    ))
                })
            })
            .transpose()
    }

    pub(crate) fn u64(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.trim().parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "Invalid query parameter {key}: {v:?} is not a non-negative integer"
                    ))
                })
            })
            .transpose()
    }
}

/// What a handler needs about the request besides its body.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) route: Route,
    pub(crate) method: Method,
    pub(crate) query: Query,
    pub(crate) headers: HeaderMap,
    pub(crate) bytes_in: Arc<AtomicU64>,
    pub(crate) abort_upload_after: Option<u64>,
    pub(crate) raw_query: Option<String>,
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, DroppedConnection> {
    if shared.control_api && req.uri().path().starts_with("/_emulator/") {
        return Ok(crate::control::handle(shared, req).await);
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let route = Route::of(req.uri().path(), req.headers());
    let query = Query::parse(req.uri().query());
    let bytes_in = Arc::new(AtomicU64::new(0));
    let bytes_out = Arc::new(AtomicU64::new(0));
    let entry = Arc::new(LogEntry {
        method: req.method().as_str().to_string(),
        endpoint: route.endpoint,
        path: query.get("path").map(str::to_string),
        api_version: route.version,
        status: Default::default(),
        bytes_in: bytes_in.clone(),
        bytes_out: bytes_out.clone(),
    });
    let (latency, action, random_failure) = {
        let mut state = shared.lock();
        state.push_log(entry.clone());
        let action = state.faults.scripted_action(
            req.method().as_str(),
            route.endpoint,
            entry.path.as_deref(),
        );
        let rate = state.faults.failure_rate(route.endpoint);
        let random_failure = rate > 0.0 && state.rng.random::<f64>() < rate;
        (state.faults.latency, action, random_failure)
    };
    tracing::debug!(method = %req.method(), uri = %req.uri(), endpoint = route.endpoint.name(), "request");
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut truncate_after = None;
    let mut abort_upload_after = None;
    let mut injected = None;
    match action {
        Some(FaultAction::Status {
            status,
            retry_after,
            body,
        }) => injected = Some(injected_status(status, retry_after, body)),
        Some(FaultAction::DropConnection) => return Err(DroppedConnection),
        Some(FaultAction::TruncateBody { after_bytes }) => truncate_after = Some(after_bytes),
        Some(FaultAction::AbortUpload { after_bytes }) => abort_upload_after = Some(after_bytes),
        Some(FaultAction::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    if injected.is_none() && random_failure {
        injected = Some(Err(Failure::Api(ApiError::new(
            503,
            "Other",
            "Service unavailable (injected random failure)",
        ))));
    }
    let result = match injected {
        Some(result) => result,
        None => {
            let ctx = Ctx {
                shared: shared.clone(),
                method: req.method().clone(),
                query,
                headers: req.headers().clone(),
                bytes_in,
                abort_upload_after,
                raw_query: req.uri().query().map(str::to_string),
                route,
            };
            dispatch(ctx, req).await
        }
    };
    let mut response = match result {
        Ok(response) => response,
        Err(Failure::Drop) => return Err(DroppedConnection),
        Err(failure) => failure_response(failure, &request_id),
    };
    entry
        .status
        .store(response.status().as_u16(), Ordering::Relaxed);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let response = response.map(|inner| {
        use http_body_util::BodyExt;
        CountingBody::new(inner, bytes_out, truncate_after).boxed_unsync()
    });
    Ok(response)
}

/// Runs the route checks of a known endpoint, then its handler from the table.
async fn dispatch(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let endpoint = ctx.route.endpoint;
    if endpoint != Endpoint::Unknown {
        endpoint::check(&ctx, req.uri().path())?;
    }
    (endpoint.spec().handler)(ctx, req).await
}
