//! Credentials: HTTP Basic (static header), the legacy `/token` login and OAuth2 bearer tokens,
//! with one shared token that is renewed once for all concurrent callers after a 401. Once the
//! credentials are refused for good, no request is sent with them again, and until they have
//! been accepted once, requests go out one at a time: Koofr blocks an IP after repeated failed
//! logins, so a client makes at most one, however many callers start together.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use reqwest::header::HeaderValue;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::{AuthConfig, OAuthRefresh, Secret};
use crate::error::{AUTH_FAILED, Error, ErrorKind, Result, classify};
use crate::transport::RequestContext;

/// The authentication state of one client.
pub(crate) struct Auth {
    mode: Mode,
    state: Mutex<TokenState>,
    /// Upper bound for one login or refresh exchange (callers wait on the lock meanwhile).
    exchange_timeout: Duration,
    /// Set once the credentials were refused (after the one renewal that may cure a 401).
    refused: AtomicBool,
    /// Set once a request was answered with anything but 401.
    accepted: AtomicBool,
    /// Held by the one request in flight while the credentials are not known to be good.
    probe: Mutex<()>,
}

enum Mode {
    Basic(HeaderValue),
    Token { username: String, password: Secret },
    OAuth { refresh: Option<OAuthRefresh> },
}

struct TokenState {
    header: Option<HeaderValue>,
    /// Bumped on every renewal, so callers that saw a 401 with an older token skip renewing.
    generation: u64,
    refresh_token: Option<Secret>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.mode {
            Mode::Basic(_) => "Auth::Basic",
            Mode::Token { .. } => "Auth::Token",
            Mode::OAuth { .. } => "Auth::OAuth",
        })
    }
}

fn sensitive(value: String) -> Result<HeaderValue> {
    let mut header = HeaderValue::from_str(&value).map_err(|_| {
        Error::permanent(
            ErrorKind::InvalidInput,
            "authenticate",
            "credentials contain characters not allowed in a header",
        )
    })?;
    header.set_sensitive(true);
    Ok(header)
}

#[derive(Deserialize)]
struct TokenResponse {
    token: String,
}

#[derive(Deserialize)]
struct OAuthTokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
}

impl Auth {
    pub(crate) fn new(config: &AuthConfig, exchange_timeout: Duration) -> Result<Auth> {
        let (mode, header, refresh_token) = match config {
            AuthConfig::Basic { username, password } => {
                let raw = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                (
                    Mode::Basic(sensitive(format!("Basic {encoded}"))?),
                    None,
                    None,
                )
            }
            AuthConfig::Token { username, password } => (
                Mode::Token {
                    username: username.clone(),
                    password: password.clone(),
                },
                None,
                None,
            ),
            AuthConfig::OAuth {
                access_token,
                refresh,
            } => (
                Mode::OAuth {
                    refresh: refresh.clone(),
                },
                Some(sensitive(format!("Bearer {}", access_token.expose()))?),
                refresh.as_ref().map(|r| r.refresh_token.clone()),
            ),
        };
        Ok(Auth {
            mode,
            state: Mutex::new(TokenState {
                header,
                generation: 0,
                refresh_token,
            }),
            exchange_timeout,
            refused: AtomicBool::new(false),
            accepted: AtomicBool::new(false),
            probe: Mutex::new(()),
        })
    }

    /// Until the credentials have been accepted once, a request waits for its turn and holds
    /// the returned guard until its answer is known, so that a wrong password costs one
    /// refused request and not one per concurrent caller. `None` once they are accepted.
    pub(crate) async fn probe(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if self.accepted.load(Ordering::Relaxed) {
            return None;
        }
        let turn = self.probe.lock().await;
        (!self.accepted.load(Ordering::Relaxed)).then_some(turn)
    }

    /// Records that a request was answered with something other than 401.
    pub(crate) fn accept(&self) {
        self.accepted.store(true, Ordering::Relaxed);
    }

    /// Records that the credentials were refused: every later request fails without being sent.
    pub(crate) fn refuse(&self) {
        self.refused.store(true, Ordering::Relaxed);
    }

    /// The error of a request with refused credentials.
    pub(crate) fn refused_error(&self, op: &'static str) -> Error {
        Error::permanent(ErrorKind::Unauthenticated, op, self.failure_message())
            .with_status(401, None)
    }

    /// The message of the final authentication error.
    pub(crate) fn failure_message(&self) -> &'static str {
        match self.mode {
            Mode::OAuth { .. } => "authentication failed (the OAuth2 access token was rejected)",
            _ => AUTH_FAILED,
        }
    }

    /// True when a 401 can be cured by renewing the credential (never for Basic).
    pub(crate) fn renewable(&self) -> bool {
        match &self.mode {
            Mode::Basic(_) => false,
            Mode::Token { .. } => true,
            Mode::OAuth { refresh } => refresh.is_some(),
        }
    }

    /// The `Authorization` header to send and the generation it belongs to; logs in first if
    /// no token is held yet (one login for all callers: they wait on the lock).
    pub(crate) async fn header(
        &self,
        http: &reqwest::Client,
        base: &str,
    ) -> Result<(HeaderValue, u64)> {
        if self.refused.load(Ordering::Relaxed) {
            return Err(self.refused_error("authenticate"));
        }
        if let Mode::Basic(header) = &self.mode {
            return Ok((header.clone(), 0));
        }
        let mut state = self.state.lock().await;
        if state.header.is_none() {
            self.renew_locked(&mut state, http, base).await?;
        }
        let header = state
            .header
            .clone()
            .expect("a token is present after renewal");
        Ok((header, state.generation))
    }

    /// Renews the credential after a 401 seen with generation `seen`, unless another caller
    /// already did.
    pub(crate) async fn renew(&self, seen: u64, http: &reqwest::Client, base: &str) -> Result<()> {
        let mut state = self.state.lock().await;
        if self.refused.load(Ordering::Relaxed) {
            return Err(self.refused_error("authenticate"));
        }
        if state.generation != seen {
            return Ok(());
        }
        self.renew_locked(&mut state, http, base).await
    }

    async fn renew_locked(
        &self,
        state: &mut TokenState,
        http: &reqwest::Client,
        base: &str,
    ) -> Result<()> {
        let renewed = self.exchange(state, http, base).await;
        if let Err(e) = &renewed
            && e.kind() == ErrorKind::Unauthenticated
        {
            self.refuse();
        }
        let header = renewed?;
        state.header = Some(header);
        state.generation += 1;
        Ok(())
    }

    /// One login or token refresh; the new `Authorization` header.
    async fn exchange(
        &self,
        state: &mut TokenState,
        http: &reqwest::Client,
        base: &str,
    ) -> Result<HeaderValue> {
        let header = match &self.mode {
            Mode::Basic(header) => header.clone(),
            Mode::Token { username, password } => {
                tracing::debug!("koofr: logging in with POST /token");
                let response = http
                    .post(format!("{base}/token"))
                    .timeout(self.exchange_timeout)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(
                        serde_json::json!({"email": username, "password": password.expose()})
                            .to_string(),
                    )
                    .send()
                    .await
                    .map_err(|e| login_transport_error("login", base, e))?;
                let body: TokenResponse = login_json(response, "login").await?;
                sensitive(format!("Token token={}", body.token))?
            }
            Mode::OAuth { refresh } => {
                let Some(refresh) = refresh else {
                    return Err(Error::permanent(
                        ErrorKind::Unauthenticated,
                        "authenticate",
                        "the OAuth2 access token was rejected and no refresh_token is configured",
                    ));
                };
                let refresh_token = state
                    .refresh_token
                    .clone()
                    .unwrap_or_else(|| refresh.refresh_token.clone());
                tracing::debug!("koofr: refreshing the OAuth2 access token");
                let form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.expose()),
                    ("client_id", refresh.client_id.as_str()),
                    ("client_secret", refresh.client_secret.expose()),
                ];
                let response = http
                    .post(format!("{base}/oauth2/token"))
                    .timeout(self.exchange_timeout)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .form(&form)
                    .send()
                    .await
                    .map_err(|e| login_transport_error("refresh token", base, e))?;
                let body: OAuthTokenResponse = login_json(response, "refresh token").await?;
                if let Some(new_refresh) = body.refresh_token.filter(|t| !t.is_empty()) {
                    state.refresh_token = Some(Secret::new(new_refresh));
                }
                sensitive(format!("Bearer {}", body.access_token))?
            }
        };
        Ok(header)
    }
}

fn login_transport_error(op: &'static str, base: &str, e: reqwest::Error) -> Error {
    let ctx = RequestContext {
        op,
        path: None,
        exists_possible: false,
    };
    // The error's URL is the token endpoint; the credentials travel in the body, not the URL.
    ctx.send_error(base, e.without_url())
}

async fn login_json<T: for<'de> Deserialize<'de>>(
    response: reqwest::Response,
    op: &'static str,
) -> Result<T> {
    let status = response.status().as_u16();
    if status == 401 || status == 400 || status == 403 {
        // A refused login is final: repeating it triggers Koofr's IP-wide login throttle.
        return Err(
            Error::permanent(ErrorKind::Unauthenticated, op, AUTH_FAILED).with_status(status, None),
        );
    }
    let body = response.text().await.map_err(|e| {
        Error::new(
            ErrorKind::Transport,
            true,
            op,
            "the response body broke off",
        )
        .with_source(e.without_url())
    })?;
    if !(200..300).contains(&status) {
        let (kind, temporary) = classify(status, None, &body, false);
        let mut message = body.chars().take(200).collect::<String>();
        if message.is_empty() {
            message = "login failed".to_owned();
        }
        return Err(Error::new(kind, temporary, op, message).with_status(status, None));
    }
    serde_json::from_str(&body).map_err(|e| {
        Error::permanent(
            ErrorKind::Unexpected,
            op,
            format!("unexpected login response: {e}"),
        )
    })
}
