//! The account endpoints: mounts and places, one mount, the user (spec §7.1–7.3).

use serde_json::{Value, json};

use crate::response::{ApiError, HandlerResult, json_response};
use crate::server::Ctx;

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
