//! Authentication of API requests (spec §3, §10.4): Basic, legacy tokens and OAuth2 bearer
//! tokens, with the failed-login count behind the login throttle.

use base64::Engine;
use http::StatusCode;

use crate::response::Failure;
use crate::server::Ctx;
use crate::state::{Shared, State};

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

pub(super) fn throttled(state: &State) -> bool {
    state
        .faults
        .login_throttle_after
        .is_some_and(|limit| state.failed_logins >= limit)
}

pub(super) const THROTTLED: Failure =
    Failure::Plain(StatusCode::TOO_MANY_REQUESTS, "Too many login retries");

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
