//! The Koofr endpoints (spec §7), the token and OAuth2 endpoints (§3), and authentication.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use md5::{Digest, Md5};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::OAuthTokens;
use crate::body::{BoxError, UploadStream, full, sized, streamed};
use crate::paths::{
    NameError, autorename_candidate, child_key, content_type_for, join_path, normalize_path,
    validate_name,
};
use crate::server::{ApiError, Ctx, Failure, HandlerResult, JSON, empty_response, json_response};
use crate::state::{Shared, State, listing_order, walk_tree};
use crate::store::{Blob, DiskBlob, FileData, Node};

/// Largest JSON or form request body accepted (bodies of metadata calls are tiny).
const MAX_SMALL_BODY: usize = 1024 * 1024;
/// Chunk size for streamed downloads and listings.
const CHUNK: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Authentication

enum Credentials {
    Valid,
    Missing,
    Invalid,
}

fn check_credentials(shared: &Shared, state: &State, headers: &http::HeaderMap) -> Credentials {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Credentials::Missing;
    };
    let Ok(value) = value.to_str() else {
        return Credentials::Invalid;
    };
    let Some((scheme, rest)) = value.trim().split_once(' ') else {
        return Credentials::Invalid;
    };
    let rest = rest.trim();
    let valid = match scheme.to_ascii_lowercase().as_str() {
        "basic" => base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|pair| {
                pair.split_once(':')
                    .map(|(e, p)| (e.to_string(), p.to_string()))
            })
            .is_some_and(|(email, password)| {
                email.eq_ignore_ascii_case(&shared.email) && password == shared.password
            }),
        "token" => {
            let token = rest
                .strip_prefix("token=")
                .unwrap_or(rest)
                .trim_matches('"');
            state.auth.legacy_tokens.contains(token)
        }
        "bearer" => state
            .auth
            .access_tokens
            .get(rest)
            .is_some_and(|expires| *expires > state.now_ms()),
        _ => false,
    };
    if valid {
        Credentials::Valid
    } else {
        Credentials::Invalid
    }
}

fn throttled(state: &State) -> bool {
    state
        .faults
        .login_throttle_after
        .is_some_and(|limit| state.failed_logins >= limit)
}

const THROTTLED: Failure = Failure::Plain(StatusCode::TOO_MANY_REQUESTS, "Too many login retries");

/// Checks the `Authorization` header (§3, §10.4), counting failures for the login throttle.
pub(crate) fn authenticate(ctx: &Ctx) -> Result<(), Failure> {
    let mut state = ctx.shared.lock();
    if throttled(&state) {
        return Err(THROTTLED);
    }
    match check_credentials(&ctx.shared, &state, &ctx.headers) {
        Credentials::Valid => Ok(()),
        Credentials::Missing => Err(Failure::Unauthorized),
        Credentials::Invalid => {
            state.failed_logins += 1;
            Err(Failure::Unauthorized)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

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

async fn read_json(ctx: &Ctx, req: Request<Incoming>) -> Result<Value, Failure> {
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

// ---------------------------------------------------------------------------------------------
// Account endpoints

pub(crate) fn mounts(ctx: &Ctx, key: &str) -> HandlerResult {
    let state = ctx.shared.lock();
    let list: Vec<Value> = (0..state.mounts.len())
        .map(|i| state.mount_json(i))
        .collect();
    json_response(200, &json!({ key: list }))
}

pub(crate) fn mount(ctx: &Ctx) -> HandlerResult {
    let state = ctx.shared.lock();
    let index = state
        .mount_index(ctx.route.mount.as_deref().unwrap_or_default())
        .ok_or_else(|| ApiError::new(404, "NotFound", "Mount not found"))?;
    json_response(200, &state.mount_json(index))
}

pub(crate) fn user(ctx: &Ctx) -> HandlerResult {
    json_response(
        200,
        &json!({"id": ctx.shared.user_id, "firstName": "Emulated", "lastName": "User",
                "email": ctx.shared.email, "level": 1000, "hasPassword": true, "phoneNumber": ""}),
    )
}

// ---------------------------------------------------------------------------------------------
// Metadata endpoints

pub(crate) fn info(ctx: &Ctx) -> HandlerResult {
    let state = ctx.shared.lock();
    let index = ctx_mount(&state, ctx)?;
    let segments = path_param(ctx)?;
    let node = state.mounts[index]
        .root
        .get(&segments)
        .ok_or_else(ApiError::not_found)?;
    json_response(200, &state.file_json(node, &join_path(&segments)))
}

pub(crate) fn list(ctx: &Ctx) -> HandlerResult {
    let mut guard = ctx.shared.lock();
    let index = ctx_mount(&guard, ctx)?;
    let segments = path_param(ctx)?;
    let dir_path = join_path(&segments);
    let state = &mut *guard;
    let node = state.mounts[index]
        .root
        .get(&segments)
        .ok_or_else(ApiError::not_found)?;
    if !node.is_dir() {
        return Err(not_dir().into());
    }
    let shuffle = state.faults.shuffle_listings.then_some(&mut state.rng);
    let files: Vec<Value> = listing_order(node, shuffle)
        .into_iter()
        .map(|child| {
            child.to_json(
                !state
                    .faults
                    .hash_omitted(&child_path(&dir_path, &child.name)),
            )
        })
        .collect();
    json_response(200, &json!({ "files": files }))
}

pub(crate) fn tree(ctx: &Ctx) -> HandlerResult {
    fn build(
        node: &Node,
        path: &str,
        faults: &crate::faults::FaultState,
        rng: &mut rand::rngs::SmallRng,
    ) -> Value {
        let mut value = node.to_json(!faults.hash_omitted(path));
        if node.is_dir() {
            let shuffle = faults.shuffle_listings.then_some(&mut *rng);
            let children: Vec<&Node> = listing_order(node, shuffle);
            let children: Vec<Value> = children
                .into_iter()
                .map(|c| build(c, &child_path(path, &c.name), faults, rng))
                .collect();
            value["children"] = Value::Array(children);
        }
        value
    }
    let mut guard = ctx.shared.lock();
    let index = ctx_mount(&guard, ctx)?;
    let segments = path_param(ctx)?;
    let state = &mut *guard;
    let node = state.mounts[index]
        .root
        .get(&segments)
        .ok_or_else(ApiError::not_found)?;
    if !node.is_dir() {
        return Err(not_dir().into());
    }
    let value = build(node, &join_path(&segments), &state.faults, &mut state.rng);
    json_response(200, &value)
}

/// NDJSON, streamed in chunks from a metadata snapshot (§7.7).
pub(crate) fn list_recursive(ctx: &Ctx) -> HandlerResult {
    let snapshot: Vec<(String, Value)> = {
        let mut guard = ctx.shared.lock();
        let index = ctx_mount(&guard, ctx)?;
        let segments = path_param(ctx)?;
        let base = join_path(&segments);
        let state = &mut *guard;
        let node = state.mounts[index]
            .root
            .get(&segments)
            .ok_or_else(ApiError::not_found)?;
        if !node.is_dir() {
            return Err(not_dir().into());
        }
        let shuffle = state.faults.shuffle_listings.then_some(&mut state.rng);
        let mut items = vec![("/".to_string(), node.to_json(true))];
        for (relative, child) in walk_tree(node, "/", shuffle) {
            let full = if base == "/" {
                relative.clone()
            } else {
                format!("{base}{relative}")
            };
            items.push((relative, child.to_json(!state.faults.hash_omitted(&full))));
        }
        items
    };
    let mut items = snapshot.into_iter();
    let stream = futures::stream::iter(std::iter::from_fn(move || {
        let mut chunk = Vec::with_capacity(CHUNK);
        for (path, file) in items.by_ref() {
            let line = json!({"type": "file", "path": path, "file": file});
            serde_json::to_writer(&mut chunk, &line).expect("JSON to a Vec cannot fail");
            chunk.push(b'\n');
            if chunk.len() >= CHUNK {
                break;
            }
        }
        (!chunk.is_empty()).then(|| Ok::<Bytes, BoxError>(Bytes::from(chunk)))
    }));
    Ok(Response::builder()
        .status(200)
        .header(CONTENT_TYPE, "application/x-ndjson; charset=utf-8")
        .body(streamed(stream))
        .expect("valid listrecursive response"))
}

// ---------------------------------------------------------------------------------------------
// Download

/// `/api/{v}/mounts/{m}/files/get` → 303 to the content URL (§7.8).
pub(crate) fn get_redirect(ctx: &Ctx) -> HandlerResult {
    let host = ctx
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"))
        .unwrap_or_default();
    let mount = ctx.route.mount.as_deref().unwrap_or("primary");
    let query = ctx
        .raw_query
        .as_deref()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let location = format!(
        "{host}/content/api/{}/mounts/{mount}/files/get{query}",
        ctx.route.version
    );
    Ok(Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(LOCATION, location)
        .body(crate::body::empty())
        .expect("valid redirect"))
}

enum RangeRequest {
    Full,
    /// Inclusive start and end.
    Single(u64, u64),
}

fn parse_range(header: Option<&str>, size: u64) -> Result<RangeRequest, ApiError> {
    let unsatisfiable = |message: &str| {
        ApiError::new(416, "Other", message)
            .with_header(http::header::CONTENT_RANGE, format!("bytes */{size}"))
    };
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        // A missing or non-bytes Range header is ignored, as in standard HTTP.
        return Ok(RangeRequest::Full);
    };
    if spec.contains(',') {
        return Err(unsatisfiable("Cannot serve multipart range requests"));
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Ok(RangeRequest::Full);
    };
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        let Ok(suffix) = end.parse::<u64>() else {
            return Ok(RangeRequest::Full);
        };
        if suffix == 0 || size == 0 {
            return Err(unsatisfiable("Invalid range"));
        }
        return Ok(RangeRequest::Single(size - suffix.min(size), size - 1));
    }
    let Ok(start) = start.parse::<u64>() else {
        return Ok(RangeRequest::Full);
    };
    let end = if end.is_empty() {
        u64::MAX
    } else {
        match end.parse::<u64>() {
            Ok(end) if end >= start => end,
            _ => return Ok(RangeRequest::Full),
        }
    };
    if start >= size {
        return Err(unsatisfiable("Invalid range"));
    }
    Ok(RangeRequest::Single(start, end.min(size - 1)))
}

/// Streams `len` bytes of `blob` from `start`.
async fn blob_stream(
    blob: Blob,
    start: u64,
    len: u64,
) -> Result<std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>, ApiError> {
    match blob {
        Blob::Memory(bytes) => {
            let data = bytes.slice(start as usize..(start + len) as usize);
            let chunks = (0..data.len()).step_by(CHUNK).map(move |offset| {
                Ok::<Bytes, BoxError>(data.slice(offset..(offset + CHUNK).min(data.len())))
            });
            Ok(Box::pin(futures::stream::iter(chunks.collect::<Vec<_>>())))
        }
        Blob::Disk(disk) => {
            let mut file = tokio::fs::File::open(&disk.path).await.map_err(|e| {
                ApiError::internal(format!("cannot open blob {}: {e}", disk.path.display()))
            })?;
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| {
                    ApiError::internal(format!("cannot seek blob {}: {e}", disk.path.display()))
                })?;
            let reader = tokio_util::io::ReaderStream::with_capacity(file.take(len), CHUNK);
            // The Arc keeps the blob file alive until the download ends, even if replaced.
            let stream = reader.map(move |r| {
                let _keep = &disk;
                r.map_err(|e| Box::new(e) as BoxError)
            });
            Ok(Box::pin(stream))
        }
    }
}

pub(crate) async fn get(ctx: &Ctx) -> HandlerResult {
    let (blob, size, info, content_type) = {
        let state = ctx.shared.lock();
        let index = ctx_mount(&state, ctx)?;
        let segments = path_param(ctx)?;
        let node = state.mounts[index]
            .root
            .get(&segments)
            .ok_or_else(ApiError::not_found)?;
        let file = node.file().ok_or_else(not_file)?;
        (
            file.blob.clone(),
            file.size,
            state.file_json(node, &join_path(&segments)).to_string(),
            content_type_for(&node.name),
        )
    };
    let range_header = ctx
        .headers
        .get(http::header::RANGE)
        .and_then(|v| v.to_str().ok());
    let range = parse_range(range_header, size)?;
    let mut builder = Response::builder()
        .header(CONTENT_TYPE, content_type)
        .header(http::header::ACCEPT_RANGES, "bytes")
        .header(
            "x-file-info",
            http::HeaderValue::from_bytes(info.as_bytes())
                .map_err(|e| ApiError::internal(format!("X-File-Info header: {e}")))?,
        );
    let (start, len) = match range {
        RangeRequest::Full => {
            builder = builder.status(200);
            (0, size)
        }
        RangeRequest::Single(start, end) => {
            builder = builder.status(206).header(
                http::header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{size}"),
            );
            (start, end - start + 1)
        }
    };
    let stream = blob_stream(blob, start, len).await?;
    Ok(builder
        .header(CONTENT_LENGTH, len)
        .body(sized(stream, len))
        .expect("valid download response"))
}

// ---------------------------------------------------------------------------------------------
// Upload

/// The §7.9 flags of an upload.
#[derive(Debug)]
struct UploadFlags {
    overwrite: bool,
    autorename: bool,
    ignore_nonexistent: bool,
    if_modified: Option<i64>,
    if_size: Option<u64>,
    if_hash: Option<String>,
    modified: Option<i64>,
    info: bool,
    tags: BTreeMap<String, Vec<String>>,
}

impl UploadFlags {
    fn parse(ctx: &Ctx) -> Result<UploadFlags, ApiError> {
        let q = &ctx.query;
        let ignore_nonexistent = q.get("overwriteIgnoreNonexisting") == Some("")
            || q.get("overwriteIgnoreNonexistent") == Some("");
        let if_modified = q.i64("overwriteIfModified")?;
        let if_size = q.u64("overwriteIfSize")?;
        let if_hash = q
            .get("overwriteIfHash")
            .map(|h| h.trim().to_ascii_lowercase());
        let any_condition = if_modified.is_some() || if_size.is_some() || if_hash.is_some();
        let overwrite = q.get("overwrite") == Some("true") || any_condition || ignore_nonexistent;
        let autorename = q.get("autorename") != Some("false") && !overwrite;
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for tag in q.get_all("tags") {
            let (key, value) = tag.split_once('=').ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Invalid query parameter tags: {tag:?} is not key=value"
                ))
            })?;
            tags.entry(key.to_string())
                .or_default()
                .push(value.to_string());
        }
        Ok(UploadFlags {
            overwrite,
            autorename,
            ignore_nonexistent,
            if_modified,
            if_size,
            if_hash,
            modified: q.i64("modified")?,
            info: q.get("info") == Some("true"),
            tags,
        })
    }

    fn has_conditions(&self) -> bool {
        self.if_modified.is_some() || self.if_size.is_some() || self.if_hash.is_some()
    }
}

enum Placement {
    Create(String),
    Replace(String),
}

/// Applies the conflict rules of §7.9 for `name` in `parent`.
fn place_upload(
    ctx: &Ctx,
    state: &State,
    index: usize,
    parent: &[String],
    name: &str,
    flags: &UploadFlags,
) -> Result<Placement, ApiError> {
    let parent_node = state.mounts[index]
        .root
        .get(parent)
        .ok_or_else(ApiError::not_found)?;
    let children = parent_node.children().ok_or_else(not_dir)?;
    let existing = children.get(&child_key(name));
    if flags.autorename {
        let free = (0..)
            .map(|n| autorename_candidate(name, n))
            .find(|candidate| !children.contains_key(&child_key(candidate)))
            .expect("an unbounded sequence has a free name");
        return Ok(Placement::Create(free));
    }
    if flags.overwrite {
        return match existing {
            Some(node) => {
                let file = node.file();
                if let Some(want) = flags.if_modified
                    && node.modified != want
                {
                    return Err(conflict("Overwrite if modified does not match"));
                }
                if let Some(want) = flags.if_size
                    && node.size() != want
                {
                    return Err(conflict("Overwrite if size does not match"));
                }
                if let Some(want) = &flags.if_hash
                    && file.is_none_or(|f| f.md5 != *want)
                {
                    return Err(conflict("Overwrite if hash does not match"));
                }
                if node.is_dir() {
                    return Err(not_file());
                }
                Ok(Placement::Replace(name.to_string()))
            }
            None if flags.has_conditions() && !flags.ignore_nonexistent => {
                Err(conflict("Overwrite file not found"))
            }
            None => Ok(Placement::Create(name.to_string())),
        };
    }
    match existing {
        Some(_) => Err(ApiError::new(
            v21_exists_status(ctx),
            "Conflict",
            "File already exists",
        )),
        None => Ok(Placement::Create(name.to_string())),
    }
}

/// Where an upload's bytes go while it is received.
enum Sink {
    Memory(BytesMut),
    Disk {
        file: tokio::fs::File,
        temp: tempfile::TempPath,
    },
}

struct Received {
    size: u64,
    md5: String,
    blob: Blob,
}

fn quota_exceeded() -> ApiError {
    ApiError::new(413, "QuotaExceeded", "Quota exceeded")
}

/// Receives an upload body into a blob, computing size and MD5; stops with 413 once `budget`
/// bytes are exceeded. A body error (broken connection, short body, abort fault) → `Drop`.
async fn receive<S, E>(shared: &Shared, mut body: S, budget: u64) -> Result<Received, Failure>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut sink = match &shared.disk {
        None => Sink::Memory(BytesMut::new()),
        Some(disk) => {
            let temp = tempfile::Builder::new()
                .prefix("upload-")
                .tempfile_in(&disk.tmp)
                .map_err(|e| {
                    ApiError::internal(format!(
                        "cannot create a temp file in {}: {e}",
                        disk.tmp.display()
                    ))
                })?;
            let (file, temp) = temp.into_parts();
            Sink::Disk {
                file: tokio::fs::File::from_std(file),
                temp,
            }
        }
    };
    let mut md5 = Md5::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::debug!(error = %e, "upload body broke; nothing stored");
                return Err(Failure::Drop);
            }
        };
        size += chunk.len() as u64;
        if size > budget {
            return Err(quota_exceeded().into());
        }
        md5.update(&chunk);
        match &mut sink {
            Sink::Memory(buf) => buf.extend_from_slice(&chunk),
            Sink::Disk { file, temp } => file
                .write_all(&chunk)
                .await
                .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", temp.display())))?,
        }
    }
    let blob = match sink {
        Sink::Memory(buf) => Blob::Memory(buf.freeze()),
        Sink::Disk { mut file, temp } => {
            file.flush()
                .await
                .map_err(|e| ApiError::internal(format!("cannot flush {}: {e}", temp.display())))?;
            drop(file);
            let disk = shared
                .disk
                .as_ref()
                .expect("a disk sink implies a disk layout");
            let path = disk.new_blob_path();
            temp.persist(&path).map_err(|e| {
                ApiError::internal(format!("cannot move the upload to {}: {e}", path.display()))
            })?;
            Blob::Disk(Arc::new(DiskBlob { path }))
        }
    };
    Ok(Received {
        size,
        md5: hex::encode(md5.finalize()),
        blob,
    })
}

pub(crate) async fn put(ctx: &Ctx, req: Request<Incoming>) -> HandlerResult {
    let parent = path_param(ctx)?;
    let flags = UploadFlags::parse(ctx)?;
    let content_type = ctx
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = if content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        Some(multer::parse_boundary(content_type).map_err(|e| {
            ApiError::bad_request(format!(
                "Invalid multipart Content-Type {content_type:?}: {e}"
            ))
        })?)
    } else {
        None
    };
    let query_name = ctx.query.get("filename").map(str::to_string);
    if query_name.is_none() && boundary.is_none() {
        return Err(ApiError::bad_request(
            "Missing query parameter filename (required for raw bodies)",
        )
        .into());
    }
    // Fail fast, before reading the body; the checks are repeated when committing.
    let budget = {
        let state = ctx.shared.lock();
        let index = ctx_mount(&state, ctx)?;
        let mut budget = state.quota_bytes.saturating_sub(state.used_bytes);
        if let Some(raw) = &query_name {
            let name = check_name(&state, raw)?;
            if let Placement::Replace(_) = place_upload(ctx, &state, index, &parent, &name, &flags)?
            {
                let mut target = parent.clone();
                target.push(name);
                budget += state.mounts[index].root.get(&target).map_or(0, Node::size);
            }
        } else {
            let node = state.mounts[index]
                .root
                .get(&parent)
                .ok_or_else(ApiError::not_found)?;
            if !node.is_dir() {
                return Err(not_dir().into());
            }
        }
        budget
    };
    let stream = upload_stream(ctx, req);
    let (part_name, received) = match boundary {
        None => (None, receive(&ctx.shared, stream, budget).await?),
        Some(boundary) => {
            let mut multipart = multer::Multipart::new(stream, boundary);
            loop {
                match multipart.next_field().await {
                    Ok(Some(field)) if field.name() == Some("file") => {
                        let name = field.file_name().map(str::to_string);
                        let received = receive(&ctx.shared, field, budget).await;
                        break (name, received?);
                    }
                    Ok(Some(_other_part)) => continue,
                    Ok(None) => {
                        return Err(ApiError::bad_request(
                            "Multipart body has no part named \"file\"",
                        )
                        .into());
                    }
                    Err(multer::Error::StreamReadFailed(_)) => return Err(Failure::Drop),
                    Err(e) => {
                        return Err(ApiError::bad_request(format!(
                            "Malformed multipart body: {e}"
                        ))
                        .into());
                    }
                }
            }
        }
    };
    let raw_name = query_name.or(part_name).ok_or_else(|| {
        ApiError::bad_request("Missing query parameter filename and the file part has no filename")
    })?;
    let mut guard = ctx.shared.lock();
    let state = &mut *guard;
    let index = ctx_mount(state, ctx)?;
    let name = check_name(state, &raw_name)?;
    let placement = place_upload(ctx, state, index, &parent, &name, &flags)?;
    let (final_name, replaced_size) = match placement {
        Placement::Create(n) => (n, 0),
        Placement::Replace(n) => {
            let mut target = parent.clone();
            target.push(n.clone());
            let size = state.mounts[index].root.get(&target).map_or(0, Node::size);
            (n, size)
        }
    };
    if state.used_bytes - replaced_size + received.size > state.quota_bytes {
        return Err(quota_exceeded().into());
    }
    let modified = flags.modified.unwrap_or_else(|| state.now_ms());
    let data = FileData {
        size: received.size,
        md5: received.md5,
        blob: received.blob,
    };
    let node = state
        .store_file(index, &parent, &final_name, data, modified)
        .ok_or_else(|| ApiError::internal("the upload target changed while receiving"))?;
    let node_json_path = child_path(&join_path(&parent), &final_name);
    let mut node_value = node.to_json(true);
    if !flags.tags.is_empty() {
        let mut target = parent.clone();
        target.push(final_name.clone());
        if let Some(node) = state.mounts[index].root.get_mut(&target) {
            node.tags = flags.tags.clone();
            node_value = node.to_json(true);
        }
    }
    if state.faults.hash_omitted(&node_json_path)
        && let Some(obj) = node_value.as_object_mut()
    {
        obj.remove("hash");
    }
    drop(guard);
    if flags.info {
        json_response(200, &node_value)
    } else {
        json_response(200, &json!([{"name": final_name, "type": "file"}]))
    }
}

// ---------------------------------------------------------------------------------------------
// Folder, remove, copy, move, rename, links

pub(crate) async fn folder(ctx: &Ctx, req: Request<Incoming>) -> HandlerResult {
    let parent = path_param(ctx)?;
    let body = read_json(ctx, req).await?;
    let raw_name = json_string(&body, "name")?;
    let mut guard = ctx.shared.lock();
    let state = &mut *guard;
    let index = ctx_mount(state, ctx)?;
    let name = check_name(state, raw_name)?;
    let now = state.now_ms();
    let seq = state.next_seq();
    let race = state.faults.race_folder_creates > 0;
    let parent_node = state.mounts[index]
        .root
        .get_mut(&parent)
        .ok_or_else(ApiError::not_found)?;
    let children = parent_node.children_mut().ok_or_else(not_dir)?;
    let key = child_key(&name);
    if children.contains_key(&key) {
        return Err(already_exists(ctx).into());
    }
    children.insert(key, Node::new_dir(name, now, seq));
    if race {
        state.faults.race_folder_creates -= 1;
        return Err(already_exists(ctx).into());
    }
    empty_response(200)
}

pub(crate) fn remove(ctx: &Ctx) -> HandlerResult {
    let segments = path_param(ctx)?;
    let if_size = ctx.query.u64("removeIfSize")?;
    let if_modified = ctx.query.i64("removeIfModified")?;
    let if_hash = ctx
        .query
        .get("removeIfHash")
        .map(|h| h.trim().to_ascii_lowercase());
    let if_empty = ctx.query.get("removeIfEmpty").is_some();
    let mut state = ctx.shared.lock();
    let index = ctx_mount(&state, ctx)?;
    if segments.is_empty() {
        return Err(not_dir().into());
    }
    let node = state.mounts[index]
        .root
        .get(&segments)
        .ok_or_else(ApiError::not_found)?;
    let mismatch = if_size.is_some_and(|s| node.size() != s)
        || if_modified.is_some_and(|m| node.modified != m)
        || if_hash
            .as_ref()
            .is_some_and(|h| node.file().is_none_or(|f| f.md5 != *h))
        || (if_empty && node.children().is_some_and(|c| !c.is_empty()));
    if mismatch {
        return Err(conflict("Conflict").into());
    }
    state.remove_node(index, &segments);
    empty_response(200)
}

/// Renumbers a subtree's sequence numbers so a copy lists after existing siblings.
fn renumber(node: &mut Node, state_seq: &mut u64) {
    *state_seq += 1;
    node.seq = *state_seq;
    if let Some(children) = node.children_mut() {
        let mut ordered: Vec<&mut Node> = children.values_mut().collect();
        ordered.sort_by_key(|n| n.seq);
        for child in ordered {
            renumber(child, state_seq);
        }
    }
}

pub(crate) async fn copy_or_move(
    ctx: &Ctx,
    req: Request<Incoming>,
    is_move: bool,
) -> HandlerResult {
    let source = path_param(ctx)?;
    let body = read_json(ctx, req).await?;
    let to_mount = json_string(&body, "toMountId")?;
    let to_path = parse_path(json_string(&body, "toPath")?)?;
    let modified = json_opt_i64(&body, "modified")?;
    let if_modified = json_opt_i64(&body, "ifModified")?;
    let if_size = json_opt_i64(&body, "ifSize")?;
    let if_hash = match body.get("ifHash") {
        None | Some(Value::Null) => None,
        Some(_) => Some(json_string(&body, "ifHash")?.to_ascii_lowercase()),
    };
    let (verb, into_self_code, into_self_message) = if is_move {
        ("Move", "MoveIntoSelf", "Cannot move into itself")
    } else {
        ("Copy", "CopyIntoSelf", "Cannot copy into itself")
    };
    let mut guard = ctx.shared.lock();
    let state = &mut *guard;
    let src_index = ctx_mount(state, ctx)?;
    let dst_index = mount_index(state, to_mount)?;
    let node = state.mounts[src_index]
        .root
        .get(&source)
        .ok_or_else(ApiError::not_found)?;
    if source.is_empty() {
        return Err(ApiError::new(400, into_self_code, into_self_message).into());
    }
    if let Some(want) = if_modified
        && node.modified != want
    {
        return Err(conflict(format!("{verb} if modified does not match")).into());
    }
    if let Some(want) = if_size
        && node.size() as i64 != want
    {
        return Err(conflict(format!("{verb} if size does not match")).into());
    }
    if let Some(want) = &if_hash
        && node.file().is_none_or(|f| f.md5 != *want)
    {
        return Err(conflict(format!("{verb} if hash does not match")).into());
    }
    let keys = |segments: &[String]| segments.iter().map(|s| child_key(s)).collect::<Vec<_>>();
    if src_index == dst_index && keys(&to_path).starts_with(&keys(&source)) {
        return Err(ApiError::new(400, into_self_code, into_self_message).into());
    }
    let Some((dest_name, dest_parent)) = to_path.split_last() else {
        return Err(already_exists(ctx).into());
    };
    let dest_name = check_name(state, dest_name)?;
    let dest_parent_node = state.mounts[dst_index]
        .root
        .get(dest_parent)
        .ok_or_else(ApiError::not_found)?;
    let dest_children = dest_parent_node.children().ok_or_else(not_dir)?;
    if dest_children.contains_key(&child_key(&dest_name)) {
        return Err(already_exists(ctx).into());
    }
    let mut moved = if is_move {
        state
            .remove_node(src_index, &source)
            .expect("the source was just found")
    } else {
        let copy = node.clone();
        let bytes = copy.subtree_bytes();
        if state.used_bytes + bytes > state.quota_bytes {
            return Err(quota_exceeded().into());
        }
        copy
    };
    moved.name = dest_name.clone();
    if !is_move {
        renumber(&mut moved, &mut state.next_seq);
        if let Some(m) = modified {
            moved.modified = m;
        }
    } else {
        state.next_seq += 1;
        moved.seq = state.next_seq;
    }
    state.used_bytes += moved.subtree_bytes();
    state.mounts[dst_index]
        .root
        .get_mut(dest_parent)
        .and_then(Node::children_mut)
        .expect("the destination parent was just found")
        .insert(child_key(&dest_name), moved);
    drop(guard);
    if ctx.route.v21() {
        json_response(200, &json!({ "name": dest_name }))
    } else {
        empty_response(200)
    }
}

pub(crate) async fn rename(ctx: &Ctx, req: Request<Incoming>) -> HandlerResult {
    let segments = path_param(ctx)?;
    let body = read_json(ctx, req).await?;
    let raw_name = json_string(&body, "name")?;
    let mut guard = ctx.shared.lock();
    let state = &mut *guard;
    let index = ctx_mount(state, ctx)?;
    let Some((old_name, parent)) = segments.split_last() else {
        return Err(not_dir().into());
    };
    let name = check_name(state, raw_name)?;
    let parent_node = state.mounts[index]
        .root
        .get_mut(parent)
        .ok_or_else(ApiError::not_found)?;
    let children = parent_node.children_mut().ok_or_else(ApiError::not_found)?;
    let old_key = child_key(old_name);
    let new_key = child_key(&name);
    if !children.contains_key(&old_key) {
        return Err(ApiError::not_found().into());
    }
    if new_key != old_key && children.contains_key(&new_key) {
        return Err(already_exists(ctx).into());
    }
    let mut node = children.remove(&old_key).expect("checked above");
    node.name = name;
    children.insert(new_key, node);
    empty_response(200)
}

pub(crate) async fn link(ctx: &Ctx, req: Request<Incoming>) -> HandlerResult {
    let body = read_json(ctx, req).await?;
    let segments = parse_path(json_string(&body, "path")?)?;
    let mut state = ctx.shared.lock();
    let index = ctx_mount(&state, ctx)?;
    let node = state.mounts[index]
        .root
        .get(&segments)
        .ok_or_else(ApiError::not_found)?;
    let name = node.name.clone();
    let id = state.random_id();
    let hash: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let value = json!({
        "id": id, "mountId": state.mounts[index].id, "name": name, "path": join_path(&segments),
        "counter": 0, "url": format!("https://app.koofr.net/links/{id}"),
        "shortUrl": format!("https://k00.fr/{hash}"), "hash": hash, "host": "k00.fr",
        "hasPassword": false, "passwordRequired": false, "downloadable": true,
        "validFrom": 0, "validTo": 0,
    });
    json_response(201, &value)
}

// ---------------------------------------------------------------------------------------------
// Legacy tokens and OAuth2

pub(crate) async fn token(ctx: &Ctx, req: Request<Incoming>) -> HandlerResult {
    if throttled(&ctx.shared.lock()) {
        return Err(THROTTLED);
    }
    let method = ctx.method.clone();
    if method == http::Method::DELETE {
        let header = ctx
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let token = header.strip_prefix("Token ").map(|t| {
            t.trim()
                .strip_prefix("token=")
                .unwrap_or(t.trim())
                .trim_matches('"')
        });
        let mut state = ctx.shared.lock();
        return match token {
            Some(t) if state.auth.legacy_tokens.remove(t) => empty_response(204),
            _ => Err(Failure::Unauthorized),
        };
    }
    let (email, password) = if method == http::Method::POST {
        let body = read_json(ctx, req).await?;
        (
            json_string(&body, "email")?.to_string(),
            json_string(&body, "password")?.to_string(),
        )
    } else {
        let header = |name: &str| {
            ctx.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        (header("x-koofr-email"), header("x-koofr-password"))
    };
    let mut state = ctx.shared.lock();
    if !(email.eq_ignore_ascii_case(&ctx.shared.email) && password == ctx.shared.password) {
        state.failed_logins += 1;
        return Err(Failure::Unauthorized);
    }
    let token = uuid::Uuid::new_v4().to_string();
    state.auth.legacy_tokens.insert(token.clone());
    drop(state);
    let builder = Response::builder()
        .status(200)
        .header("x-user-id", &ctx.shared.user_id);
    let response = if method == http::Method::POST {
        builder
            .header(CONTENT_TYPE, JSON)
            .body(full(json!({ "token": token }).to_string()))
    } else {
        builder
            .header("x-koofr-token", &token)
            .body(crate::body::empty())
    };
    Ok(response.expect("valid token response"))
}

/// Issues an access/refresh token pair (expiry on the emulator clock).
pub(crate) fn issue_oauth_tokens(state: &mut State) -> OAuthTokens {
    let access_token = format!("ea-{}", state.random_id());
    let refresh_token = format!("er-{}", state.random_id());
    let ttl = state.token_ttl;
    let expires = state.now_ms().saturating_add(ttl.as_millis() as i64);
    state
        .auth
        .access_tokens
        .insert(access_token.clone(), expires);
    state.auth.refresh_tokens.insert(refresh_token.clone());
    OAuthTokens {
        access_token,
        refresh_token,
        expires_in: ttl.as_secs(),
    }
}

/// `GET /oauth2/auth`: approves at once (no browser) and redirects with a code.
pub(crate) fn oauth_auth(ctx: &Ctx) -> HandlerResult {
    let q = &ctx.query;
    if q.get("client_id") != Some(ctx.shared.oauth_client_id.as_str()) {
        return Err(ApiError::bad_request(format!(
            "Invalid query parameter client_id: {:?} is not a registered client",
            q.get("client_id").unwrap_or("")
        ))
        .into());
    }
    if q.get("response_type") != Some("code") {
        return Err(ApiError::bad_request(
            "Invalid query parameter response_type: only \"code\" is supported",
        )
        .into());
    }
    let redirect = q
        .get("redirect_uri")
        .ok_or_else(|| ApiError::bad_request("Missing query parameter redirect_uri"))?;
    let mut url = url::Url::parse(redirect).map_err(|e| {
        ApiError::bad_request(format!(
            "Invalid query parameter redirect_uri: {redirect:?}: {e}"
        ))
    })?;
    let code = {
        let mut state = ctx.shared.lock();
        let code = format!("ec-{}", state.random_id());
        state
            .auth
            .auth_codes
            .insert(code.clone(), redirect.to_string());
        code
    };
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair("code", &code);
        if let Some(s) = q.get("state") {
            pairs.append_pair("state", s);
        }
    }
    Ok(Response::builder()
        .status(StatusCode::FOUND)
        .header(LOCATION, url.as_str())
        .body(crate::body::empty())
        .expect("valid OAuth redirect"))
}

/// `POST /oauth2/token` (form-encoded): `authorization_code` and `refresh_token` grants.
pub(crate) async fn oauth_token(ctx: &Ctx, req: Request<Incoming>) -> HandlerResult {
    let body = read_small_body(ctx, req).await?;
    let form = crate::server::Query::parse(Some(&String::from_utf8_lossy(&body)));
    let basic_client = ctx
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(i, s)| (i.to_string(), s.to_string()))
        });
    let (client_id, client_secret) = match basic_client {
        Some(pair) => pair,
        None => (
            form.get("client_id").unwrap_or("").to_string(),
            form.get("client_secret").unwrap_or("").to_string(),
        ),
    };
    if client_id != ctx.shared.oauth_client_id || client_secret != ctx.shared.oauth_client_secret {
        return Err(Failure::OAuth(StatusCode::UNAUTHORIZED, "invalid_client"));
    }
    let mut state = ctx.shared.lock();
    let refresh_to_keep = match form.get("grant_type") {
        Some("authorization_code") => {
            let code = form.get("code").unwrap_or("");
            match state.auth.auth_codes.remove(code) {
                Some(uri) if form.get("redirect_uri").is_none_or(|r| r == uri) => None,
                _ => return Err(Failure::OAuth(StatusCode::BAD_REQUEST, "invalid_grant")),
            }
        }
        Some("refresh_token") => {
            let refresh = form.get("refresh_token").unwrap_or("");
            if !state.auth.refresh_tokens.contains(refresh) {
                return Err(Failure::OAuth(StatusCode::BAD_REQUEST, "invalid_grant"));
            }
            Some(refresh.to_string())
        }
        _ => {
            return Err(Failure::OAuth(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
            ));
        }
    };
    let mut tokens = issue_oauth_tokens(&mut state);
    if let Some(refresh) = refresh_to_keep {
        // Refresh tokens are long-lived and reused, so the fresh one is not needed.
        state.auth.refresh_tokens.remove(&tokens.refresh_token);
        tokens.refresh_token = refresh;
    }
    drop(state);
    json_response(
        200,
        &json!({"access_token": tokens.access_token, "token_type": "Bearer",
                "expires_in": tokens.expires_in, "refresh_token": tokens.refresh_token}),
    )
}
