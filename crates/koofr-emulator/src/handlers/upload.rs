//! Uploads (spec §7.9): the conflict flags, multipart or raw bodies, and receiving into memory
//! or a temp file while counting size and MD5 against the quota.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::Request;
use http::header::CONTENT_TYPE;
use hyper::body::Incoming;
use md5::{Digest, Md5};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::{
    ApiError, check_name, child_path, conflict, ctx_mount, node_at, not_dir, not_file, path_param,
    quota_exceeded, upload_stream, v21_exists_status,
};
use crate::paths::{autorename_candidate, child_key, join_path};
use crate::response::{Failure, HandlerResult, json_response};
use crate::server::Ctx;
use crate::state::{Shared, State};
use crate::store::{Blob, DiskBlob, FileData, Node};

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
    let parent_node = node_at(&state.mounts, index, parent)?;
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
            let node = node_at(&state.mounts, index, &parent)?;
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
