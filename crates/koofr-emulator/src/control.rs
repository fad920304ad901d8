//! The optional control API under `/_emulator/` (not part of Koofr's API), so scripts driving
//! the binary can read the request log and set faults and hooks over HTTP. Off by default;
//! enabled with `EmulatorConfig::control_api` or `--control-api`.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;

use crate::body::RespBody;
use crate::endpoint::Endpoint;
use crate::faults::Faults;
use crate::response::{ApiError, Failure, failure_response, json_response};
use crate::server::Query;
use crate::state::Shared;

/// Largest control request body (a fault rule).
const MAX_BODY: usize = 64 * 1024;

pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<RespBody> {
    let request_id = uuid::Uuid::new_v4().to_string();
    match dispatch(shared, req).await {
        Ok(response) => response,
        Err(failure) => failure_response(failure, &request_id),
    }
}

fn parse<T: std::str::FromStr>(query: &Query, key: &str) -> Result<Option<T>, ApiError> {
    query
        .get(key)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| ApiError::bad_request(format!("Invalid query parameter {key}: {v:?}")))
        })
        .transpose()
}

fn required<T: std::str::FromStr>(query: &Query, key: &str) -> Result<T, ApiError> {
    parse(query, key)?
        .ok_or_else(|| ApiError::bad_request(format!("Missing query parameter {key}")))
}

fn ok() -> Result<Response<RespBody>, Failure> {
    json_response(200, &json!({"ok": true}))
}

async fn dispatch(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, Failure> {
    let faults = Faults {
        shared: shared.clone(),
    };
    let query = Query::parse(req.uri().query());
    let hook = req
        .uri()
        .path()
        .trim_start_matches("/_emulator/")
        .to_string();
    let method = req.method().clone();
    match (method.clone(), hook.as_str()) {
        (Method::GET, "requests") => {
            let records: Vec<_> = shared
                .lock()
                .log
                .iter()
                .map(|e| {
                    let r = e.snapshot();
                    json!({"method": r.method, "endpoint": r.endpoint, "path": r.path,
                           "apiVersion": r.api_version, "status": r.status,
                           "bytesIn": r.bytes_in, "bytesOut": r.bytes_out})
                })
                .collect();
            json_response(200, &json!({ "requests": records }))
        }
        (Method::DELETE, "requests") => {
            shared.lock().log.clear();
            ok()
        }
        (Method::POST, "faults") => {
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(|_| Failure::Drop)?
                .to_bytes();
            if body.len() > MAX_BODY {
                return Err(ApiError::bad_request("fault rule too long").into());
            }
            let text = String::from_utf8_lossy(&body);
            let rule = text
                .trim()
                .parse()
                .map_err(|e: crate::FaultParseError| ApiError::bad_request(e.to_string()))?;
            faults.inject(rule);
            ok()
        }
        (Method::DELETE, "faults") => {
            faults.clear();
            ok()
        }
        (Method::POST, "expire-tokens") => {
            faults.expire_tokens();
            ok()
        }
        (Method::POST, "clock") => {
            faults.set_clock(parse::<i64>(&query, "ms")?);
            ok()
        }
        (Method::POST, "latency") => {
            faults.set_latency(Duration::from_millis(required(&query, "ms")?));
            ok()
        }
        (Method::POST, "failure-rate") => {
            let endpoint = match query.get("endpoint") {
                None => None,
                Some(name) => Some(Endpoint::from_name(name).map(Endpoint::name).ok_or_else(|| {
                    ApiError::bad_request(format!("Invalid query parameter endpoint: {name:?}"))
                })?),
            };
            faults.set_failure_rate(endpoint, required(&query, "rate")?);
            ok()
        }
        (Method::POST, "quota") => {
            faults.set_quota(required(&query, "bytes")?);
            ok()
        }
        (Method::POST, "omit-hash") => {
            faults.omit_hash(&required::<String>(&query, "path")?);
            ok()
        }
        (Method::POST, "mount-offline") => {
            faults.set_mount_offline(&required::<String>(&query, "mount")?, required(&query, "offline")?);
            ok()
        }
        (Method::POST, "race-folder-create") => {
            faults.race_folder_create(required(&query, "times")?);
            ok()
        }
        (Method::POST, "shuffle-listings") => {
            faults.shuffle_listings(required(&query, "on")?);
            ok()
        }
        (Method::POST, "reject-non-bmp") => {
            faults.set_reject_non_bmp(required(&query, "on")?);
            ok()
        }
        (Method::POST, "login-throttle") => {
            faults.set_login_throttle(parse(&query, "after")?);
            ok()
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND.as_u16(),
            "NotFound",
            format!(
                "Unknown control endpoint {method} /_emulator/{hook}; known: GET|DELETE requests, POST|DELETE faults, POST expire-tokens, clock, latency, failure-rate, quota, omit-hash, mount-offline, race-folder-create, shuffle-listings, reject-non-bmp, login-throttle"
            ),
        )
        .into()),
    }
}
