//! The handlers of the Koofr endpoints, one module per group, and the helpers they share
//! (error shorthands, mount and path resolution, small JSON bodies).

pub(crate) mod account;
pub(crate) mod auth;
pub(crate) mod changes;
pub(crate) mod download;
pub(crate) mod metadata;
pub(crate) mod token;
pub(crate) mod upload;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::Request;
use http::header::CONTENT_TYPE;
use hyper::body::Incoming;
use serde_json::Value;

use crate::body::UploadStream;
use crate::paths::{NameError, normalize_path, validate_name};
use crate::response::{ApiError, Failure};
use crate::server::Ctx;
use crate::state::{MountState, State};
use crate::store::Node;

/// Largest JSON or form request body accepted (bodies of metadata calls are tiny).
const MAX_SMALL_BODY: usize = 1024 * 1024;
/// Chunk size for streamed downloads and listings.
const CHUNK: usize = 64 * 1024;

fn v21_exists_status(ctx: &Ctx) -> u16 {
    if ctx.route.v21() { 409 } else { 400 }
}

fn already_exists(ctx: &Ctx) -> ApiError {
    ApiError::new(
        v21_exists_status(ctx),
        "AlreadyExists",
        "File already exists",
    )
}

fn not_dir() -> ApiError {
    ApiError::new(400, "NotDir", "Directory expected")
}

fn not_file() -> ApiError {
    ApiError::new(400, "NotFile", "Not a file")
}

fn invalid_name() -> ApiError {
    ApiError::new(400, "BadRequest", "Invalid name")
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new(409, "Conflict", message)
}

/// Resolves the mount of a files/* request: 404 `NotFound` or `DeviceOffline`.
fn mount_index(state: &State, id: &str) -> Result<usize, ApiError> {
    let index = state
        .mount_index(id)
        .ok_or_else(|| ApiError::new(404, "NotFound", "Mount not found"))?;
    if state.is_offline(index) {
        return Err(ApiError::new(404, "DeviceOffline", "Device is offline"));
    }
    Ok(index)
}

fn ctx_mount(state: &State, ctx: &Ctx) -> Result<usize, ApiError> {
    mount_index(state, ctx.route.mount.as_deref().unwrap_or("primary"))
}

/// The node at `segments` in mount `index` (404 when there is none).
fn node_at<'a>(
    mounts: &'a [MountState],
    index: usize,
    segments: &[String],
) -> Result<&'a Node, ApiError> {
    mounts[index]
        .root
        .get(segments)
        .ok_or_else(ApiError::not_found)
}

fn parse_path(raw: &str) -> Result<Vec<String>, ApiError> {
    normalize_path(raw).map_err(|_| ApiError::new(400, "InvalidPath", "Invalid path"))
}

/// The normalised `path` query parameter (400 if missing or invalid).
fn path_param(ctx: &Ctx) -> Result<Vec<String>, ApiError> {
    let raw = ctx
        .query
        .get("path")
        .ok_or_else(|| ApiError::bad_request("Missing query parameter path"))?;
    parse_path(raw)
}

fn check_name(state: &State, raw: &str) -> Result<String, ApiError> {
    validate_name(raw, state.reject_non_bmp).map_err(|e| match e {
        NameError::InvalidName | NameError::InvalidPath => invalid_name(),
    })
}

/// Reads a small request body (JSON or form), counting its bytes.
async fn read_small_body(ctx: &Ctx, req: Request<Incoming>) -> Result<Bytes, Failure> {
    let mut stream = upload_stream(ctx, req);
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Failure::Drop)?;
        if buf.len() + chunk.len() > MAX_SMALL_BODY {
            return Err(ApiError::new(
                413,
                "Other",
                format!("Request body larger than {MAX_SMALL_BODY} bytes"),
            )
            .into());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads a JSON object body. Like Koofr, refuses it with 415 unless `Content-Type` says
/// `application/json` (parameters such as `; charset=utf-8` allowed), before reading it.
async fn read_json(ctx: &Ctx, req: Request<Incoming>) -> Result<Value, Failure> {
    let content_type = ctx
        .headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let is_json = content_type.as_deref().is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        let given = content_type.map_or("none".to_string(), |v| format!("{v:?}"));
        return Err(ApiError::new(
            415,
            "BadRequest",
            format!("Expected request with `Content-Type: application/json` (given: {given})"),
        )
        .into());
    }
    let body = read_small_body(ctx, req).await?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("Invalid JSON body: expected an object").into());
    }
    Ok(value)
}

fn json_string<'a>(body: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    match body.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid field {field}: expected a string, got {other}"
        ))),
        None => Err(ApiError::bad_request(format!("Missing field {field}"))),
    }
}

fn json_opt_i64(body: &Value, field: &str) -> Result<Option<i64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid field {field}: expected an integer, got {v}"
            ))
        }),
    }
}

fn upload_stream(ctx: &Ctx, req: Request<Incoming>) -> UploadStream {
    UploadStream {
        incoming: req.into_body(),
        counter: ctx.bytes_in.clone(),
        abort_after: ctx.abort_upload_after,
        read: 0,
    }
}

fn child_path(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn quota_exceeded() -> ApiError {
    ApiError::new(413, "QuotaExceeded", "Quota exceeded")
}
