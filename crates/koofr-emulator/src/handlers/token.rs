//! The legacy token endpoints (spec §3.2) and OAuth2 (§3.3): login, revoke, the approving
//! `/oauth2/auth` and both grants of `/oauth2/token`.

use base64::Engine;
use http::header::{CONTENT_TYPE, LOCATION};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::auth::{THROTTLED, throttled};
use super::{ApiError, json_string, read_json, read_small_body};
use crate::OAuthTokens;
use crate::body::full;
use crate::response::{Failure, HandlerResult, JSON, empty_response, json_response};
use crate::server::{Ctx, Query};
use crate::state::State;

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
    let form = Query::parse(Some(&String::from_utf8_lossy(&body)));
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
