//! The HTTP side: accept loop, per-request pipeline (log, latency, faults, auth, dispatch,
//! byte counting), routing of Koofr URLs to route classes, and response helpers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{CountingBody, RespBody, empty, full};
use crate::faults::FaultAction;
use crate::handlers;
use crate::state::{LogEntry, Shared};

pub(crate) const JSON: &str = "application/json; charset=utf-8";

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
#[derive(Debug)]
pub(crate) struct DroppedConnection;

impl std::fmt::Display for DroppedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the emulator")
    }
}

impl std::error::Error for DroppedConnection {}

/// A JSON API error (spec §6.4).
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn with_header(mut self, name: HeaderName, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub(crate) fn not_found() -> ApiError {
        ApiError::new(404, "NotFound", "File not found")
    }

    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "Other", message)
    }
}

/// Every way a handler can end other than success.
#[derive(Debug)]
pub(crate) enum Failure {
    Api(ApiError),
    /// 401 with an empty body.
    Unauthorized,
    /// A non-JSON body (login throttle, OAuth errors use `Json`).
    Plain(StatusCode, &'static str),
    /// OAuth2-style JSON error `{"error": "..."}`.
    OAuth(StatusCode, &'static str),
    /// Close the connection without answering (broken or aborted upload).
    Drop,
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure::Api(e)
    }
}

pub(crate) type HandlerResult = Result<Response<RespBody>, Failure>;

/// The `X-Koofr-Version`-aware API version and the route class of a request.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) endpoint: &'static str,
    /// "v2", "v2.1" or "".
    pub(crate) version: &'static str,
    pub(crate) family: Family,
    pub(crate) mount: Option<String>,
}

impl Route {
    pub(crate) fn v21(&self) -> bool {
        self.version == "v2.1"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Api,
    Content,
    Root,
}

/// Koofr endpoints the emulator knows exist but does not implement (answered with 501).
const NOT_IMPLEMENTED: &[&str] = &[
    "search",
    "versions",
    "zip",
    "sync",
    "trash",
    "shared",
    "jobs",
    "devices",
    "connections",
];

/// Maps a URL path to its route class. Unknown paths give the class "unknown".
pub(crate) fn classify(path: &str, headers: &HeaderMap) -> (Route, bool) {
    let header_v21 = headers
        .get("x-koofr-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "2.1");
    let unknown = |family| Route {
        endpoint: "unknown",
        version: "",
        family,
        mount: None,
    };
    match path {
        "/token" => {
            return (
                Route {
                    endpoint: "token",
                    version: "",
                    family: Family::Root,
                    mount: None,
                },
                false,
            );
        }
        "/oauth2/auth" | "/oauth2/token" => {
            return (
                Route {
                    endpoint: if path == "/oauth2/auth" {
                        "oauth2/auth"
                    } else {
                        "oauth2/token"
                    },
                    version: "",
                    family: Family::Root,
                    mount: None,
                },
                false,
            );
        }
        _ => {}
    }
    let (family, rest) = if let Some(rest) = path.strip_prefix("/content/api/") {
        (Family::Content, rest)
    } else if let Some(rest) = path.strip_prefix("/api/") {
        (Family::Api, rest)
    } else {
        return (unknown(Family::Root), false);
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let version = match segments[0] {
        "v2" if header_v21 => "v2.1",
        "v2" => "v2",
        "v2.1" => "v2.1",
        _ => return (unknown(family), false),
    };
    let route = |endpoint, mount: Option<&str>| Route {
        endpoint,
        version,
        family,
        mount: mount.map(str::to_string),
    };
    let known = |name: &str| crate::faults::endpoint_name(name);
    let (route, not_implemented) = match segments[1..] {
        ["mounts"] => (route("mounts", None), false),
        ["places"] => (route("places", None), false),
        ["user"] => (route("user", None), false),
        ["mounts", m] => (route("mount", Some(m)), false),
        ["mounts", m, "links"] => (route("links", Some(m)), false),
        ["mounts", m, "files", op] => match known(&format!("files/{op}")) {
            Some(endpoint) => (route(endpoint, Some(m)), false),
            None => (unknown(family), NOT_IMPLEMENTED.contains(&op)),
        },
        [first, ..] => (unknown(family), NOT_IMPLEMENTED.contains(&first)),
        [] => (unknown(family), false),
    };
    (route, not_implemented)
}

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
    let (route, not_implemented) = classify(req.uri().path(), req.headers());
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
    tracing::debug!(method = %req.method(), uri = %req.uri(), endpoint = route.endpoint, "request");
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
            if not_implemented {
                Err(Failure::Api(ApiError::new(
                    501,
                    "Other",
                    format!(
                        "{} {} is a Koofr endpoint the emulator does not implement",
                        req.method(),
                        req.uri().path()
                    ),
                )))
            } else {
                dispatch(ctx, req).await
            }
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

fn injected_status(status: u16, retry_after: Option<u64>, body: Option<String>) -> HandlerResult {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut builder = Response::builder().status(status);
    if let Some(seconds) = retry_after {
        builder = builder.header("retry-after", seconds.to_string());
    }
    let response = match body {
        Some(text) => builder
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(full(text)),
        None if status == StatusCode::UNAUTHORIZED => builder.body(empty()),
        None => {
            let body = json!({"error": {"code": "Other",
                "message": format!("Injected fault: {}", status.canonical_reason().unwrap_or("error")),
                "extra": {}}, "requestId": uuid::Uuid::new_v4().to_string()});
            builder
                .header(CONTENT_TYPE, JSON)
                .body(full(body.to_string()))
        }
    };
    Ok(response.expect("valid injected response"))
}

pub(crate) fn failure_response(failure: Failure, request_id: &str) -> Response<RespBody> {
    let response = match failure {
        Failure::Api(e) => {
            let body = json!({"error": {"code": e.code, "message": e.message, "extra": {}},
                              "requestId": request_id});
            let mut builder = Response::builder()
                .status(e.status)
                .header(CONTENT_TYPE, JSON);
            for (name, value) in e.headers {
                builder = builder.header(name, value);
            }
            builder.body(full(body.to_string()))
        }
        Failure::Unauthorized => Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .body(empty()),
        Failure::Plain(status, text) => Response::builder()
            .status(status)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(full(text)),
        Failure::OAuth(status, error) => Response::builder()
            .status(status)
            .header(CONTENT_TYPE, JSON)
            .body(full(json!({ "error": error }).to_string())),
        Failure::Drop => unreachable!("handled by the caller"),
    };
    response.expect("valid error response")
}

pub(crate) fn json_response(status: u16, value: &Value) -> HandlerResult {
    Ok(Response::builder()
        .status(status)
        .header(CONTENT_TYPE, JSON)
        .body(full(value.to_string()))
        .expect("valid JSON response"))
}

pub(crate) fn empty_response(status: u16) -> HandlerResult {
    Ok(Response::builder()
        .status(status)
        .body(empty())
        .expect("valid empty response"))
}

/// Which methods each route class accepts.
fn allowed_methods(endpoint: &str) -> &'static [Method] {
    match endpoint {
        "files/put" | "files/folder" | "links" | "oauth2/token" => &[Method::POST],
        "files/remove" => &[Method::DELETE],
        "files/copy" | "files/move" | "files/rename" => &[Method::PUT],
        "token" => &[Method::GET, Method::POST, Method::DELETE],
        _ => &[Method::GET],
    }
}

/// The family an endpoint lives in (spec §2.2); files/get also answers on the API family (303).
fn expected_family(endpoint: &str) -> Family {
    match endpoint {
        "files/get" | "files/put" | "files/listrecursive" => Family::Content,
        "token" | "oauth2/auth" | "oauth2/token" => Family::Root,
        _ => Family::Api,
    }
}

async fn dispatch(ctx: Ctx, req: Request<Incoming>) -> HandlerResult {
    let endpoint = ctx.route.endpoint;
    if endpoint == "unknown" {
        return Err(ApiError::new(
            404,
            "NotFound",
            format!(
                "Unknown endpoint {} {}: the emulator serves the Koofr API under /api/v2, /api/v2.1, /content/api/v2 and /content/api/v2.1",
                ctx.method,
                req.uri().path()
            ),
        )
        .into());
    }
    if !allowed_methods(endpoint).contains(&ctx.method) {
        let allowed: Vec<&str> = allowed_methods(endpoint)
            .iter()
            .map(Method::as_str)
            .collect();
        return Err(ApiError::new(
            405,
            "BadRequest",
            format!(
                "Method {} is not allowed on {endpoint}; use {}",
                ctx.method,
                allowed.join(", ")
            ),
        )
        .with_header(http::header::ALLOW, allowed.join(", "))
        .into());
    }
    let redirect_get = endpoint == "files/get" && ctx.route.family == Family::Api;
    if !redirect_get && expected_family(endpoint) != ctx.route.family {
        let prefix = if expected_family(endpoint) == Family::Content {
            "/content/api"
        } else {
            "/api"
        };
        return Err(ApiError::new(
            404,
            "NotFound",
            format!(
                "{endpoint} is served under {prefix}/{}, not {}",
                ctx.route.version,
                req.uri().path()
            ),
        )
        .into());
    }
    match endpoint {
        "token" => return handlers::token(&ctx, req).await,
        "oauth2/auth" => return handlers::oauth_auth(&ctx),
        "oauth2/token" => return handlers::oauth_token(&ctx, req).await,
        _ => {}
    }
    handlers::authenticate(&ctx)?;
    if endpoint == "places" && !ctx.route.v21() {
        return Err(ApiError::new(
            404,
            "NotFound",
            "places is a v2.1 endpoint (use /api/v2.1/places or X-Koofr-Version: 2.1)",
        )
        .into());
    }
    if endpoint == "files/tree" && ctx.route.v21() {
        return Err(ApiError::new(
            404,
            "NotFound",
            "files/tree is a v2 endpoint, absent from v2.1",
        )
        .into());
    }
    match endpoint {
        "mounts" => handlers::mounts(&ctx, "mounts"),
        "places" => handlers::mounts(&ctx, "places"),
        "mount" => handlers::mount(&ctx),
        "user" => handlers::user(&ctx),
        "files/info" => handlers::info(&ctx),
        "files/list" => handlers::list(&ctx),
        "files/tree" => handlers::tree(&ctx),
        "files/listrecursive" => handlers::list_recursive(&ctx),
        "files/get" if redirect_get => handlers::get_redirect(&ctx),
        "files/get" => handlers::get(&ctx).await,
        "files/put" => handlers::put(&ctx, req).await,
        "files/folder" => handlers::folder(&ctx, req).await,
        "files/remove" => handlers::remove(&ctx),
        "files/copy" => handlers::copy_or_move(&ctx, req, false).await,
        "files/move" => handlers::copy_or_move(&ctx, req, true).await,
        "files/rename" => handlers::rename(&ctx, req).await,
        "links" => handlers::link(&ctx, req).await,
        other => Err(ApiError::internal(format!("no handler for route class {other}")).into()),
    }
}
