//! The endpoints that change the tree without content: folder, remove, copy, move, rename
//! (spec §7.10–7.14), and public links (§7.15).

use http::Request;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{
    ApiError, already_exists, check_name, conflict, ctx_mount, json_opt_i64, json_string,
    mount_index, node_at, not_dir, parse_path, path_param, quota_exceeded, read_json,
};
use crate::paths::{child_key, join_path};
use crate::response::{HandlerResult, empty_response, json_response};
use crate::server::Ctx;
use crate::store::Node;

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
    let node = node_at(&state.mounts, index, &segments)?;
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
    let node = node_at(&state.mounts, src_index, &source)?;
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
    let dest_parent_node = node_at(&state.mounts, dst_index, dest_parent)?;
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
    if new_key == old_key {
        // A rename is a move within the folder; to Koofr another spelling of the same name
        // (case, NFC/NFD) is the same path, so the node would move into itself.
        return Err(ApiError::new(400, "MoveIntoSelf", "Cannot move into itself").into());
    }
    if children.contains_key(&new_key) {
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
    let node = node_at(&state.mounts, index, &segments)?;
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
