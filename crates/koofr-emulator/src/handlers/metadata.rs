//! The metadata endpoints: info, list, tree and the streamed recursive listing (spec §7.4–7.7).

use bytes::Bytes;
use http::Response;
use http::header::CONTENT_TYPE;
use serde_json::{Value, json};

use super::{CHUNK, child_path, ctx_mount, node_at, not_dir, path_param};
use crate::body::{BoxError, streamed};
use crate::paths::join_path;
use crate::response::{HandlerResult, json_response};
use crate::server::Ctx;
use crate::state::{listing_order, walk_tree};
use crate::store::Node;

pub(crate) fn info(ctx: &Ctx) -> HandlerResult {
    let state = ctx.shared.lock();
    let index = ctx_mount(&state, ctx)?;
    let segments = path_param(ctx)?;
    let node = node_at(&state.mounts, index, &segments)?;
    json_response(200, &state.file_json(node, &join_path(&segments)))
}

pub(crate) fn list(ctx: &Ctx) -> HandlerResult {
    let mut guard = ctx.shared.lock();
    let index = ctx_mount(&guard, ctx)?;
    let segments = path_param(ctx)?;
    let dir_path = join_path(&segments);
    let state = &mut *guard;
    let node = node_at(&state.mounts, index, &segments)?;
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
    let node = node_at(&state.mounts, index, &segments)?;
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
        let node = node_at(&state.mounts, index, &segments)?;
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
