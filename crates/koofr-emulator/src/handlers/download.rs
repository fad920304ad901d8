//! Downloads (spec §7.8): the API family's redirect, ranges, and streaming from memory or disk.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{ApiError, CHUNK, ctx_mount, node_at, not_file, path_param};
use crate::body::{BoxError, streamed};
use crate::paths::{content_type_for, join_path};
use crate::response::HandlerResult;
use crate::server::Ctx;
use crate::store::Blob;

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
        let node = node_at(&state.mounts, index, &segments)?;
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
        // The explicit length makes hyper send `Content-Length`, not chunks.
        .body(streamed(stream))
        .expect("valid download response"))
}
