//! Fault injection: scripted responses for the Nth matching request, seeded random failures,
//! latency, and the §10.11 test hooks. `Faults` is a cheap handle onto the emulator's state.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::state::Shared;

/// What a matching request gets instead of (or on top of) the normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this status; `body` defaults to a JSON error body (code `Other`).
    Status {
        status: u16,
        retry_after: Option<u64>,
        body: Option<String>,
    },
    /// Close the connection without a response.
    DropConnection,
    /// Serve the normal response with its full `Content-Length`, but cut the body after N bytes
    /// and close the connection.
    TruncateBody { after_bytes: u64 },
    /// Stop reading the request body after N bytes and drop the connection (nothing is stored).
    AbortUpload { after_bytes: u64 },
    /// Wait this long, then answer normally.
    Delay(Duration),
}

/// A scripted fault: applies to matching requests number `skip+1` to `skip+times`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// HTTP method (`"PUT"`); None = any.
    pub method: Option<String>,
    /// The endpoint; None = any (an unknown path is [`Endpoint::Unknown`]).
    pub endpoint: Option<Endpoint>,
    /// Prefix of the decoded `path` query parameter; None = any.
    pub path_prefix: Option<String>,
    /// Let this many matching requests pass first.
    pub skip: u32,
    /// Then apply to this many.
    pub times: u32,
    pub action: FaultAction,
}

impl FaultRule {
    /// A rule with this action for any request, applied once.
    pub fn new(action: FaultAction) -> FaultRule {
        FaultRule {
            method: None,
            endpoint: None,
            path_prefix: None,
            skip: 0,
            times: 1,
            action,
        }
    }

    /// Answer `status` (JSON error body) for requests of the endpoint named `endpoint` (as in
    /// the request log, e.g. `"files/put"`), once.
    ///
    /// # Panics
    /// If no endpoint has that name; so do the other constructors taking a name.
    pub fn status(endpoint: &str, status: u16) -> FaultRule {
        FaultRule::new(FaultAction::Status {
            status,
            retry_after: None,
            body: None,
        })
        .endpoint(endpoint)
    }

    /// Drop the connection of requests of the endpoint named `endpoint`, once.
    pub fn drop_connection(endpoint: &str) -> FaultRule {
        FaultRule::new(FaultAction::DropConnection).endpoint(endpoint)
    }

    /// Cut the response body of the endpoint named `endpoint` after `after_bytes` bytes, once.
    pub fn truncate_body(endpoint: &str, after_bytes: u64) -> FaultRule {
        FaultRule::new(FaultAction::TruncateBody { after_bytes }).endpoint(endpoint)
    }

    /// Abort uploads after `after_bytes` request-body bytes, once.
    pub fn abort_upload(after_bytes: u64) -> FaultRule {
        FaultRule {
            endpoint: Some(Endpoint::FilesPut),
            ..FaultRule::new(FaultAction::AbortUpload { after_bytes })
        }
    }

    /// Delay requests of the endpoint named `endpoint` by `delay`, once.
    pub fn delay(endpoint: &str, delay: Duration) -> FaultRule {
        FaultRule::new(FaultAction::Delay(delay)).endpoint(endpoint)
    }

    /// Applies the rule to the endpoint named `endpoint` only.
    ///
    /// # Panics
    /// If no endpoint has that name.
    pub fn endpoint(mut self, endpoint: &str) -> FaultRule {
        self.endpoint = Some(Endpoint::named(endpoint));
        self
    }

    pub fn method(mut self, method: &str) -> FaultRule {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    pub fn path_prefix(mut self, prefix: &str) -> FaultRule {
        self.path_prefix = Some(prefix.to_string());
        self
    }

    pub fn skip(mut self, skip: u32) -> FaultRule {
        self.skip = skip;
        self
    }

    pub fn times(mut self, times: u32) -> FaultRule {
        self.times = times;
        self
    }

    /// Sets `Retry-After` (seconds) on a `Status` action; no effect on other actions.
    pub fn retry_after(mut self, seconds: u64) -> FaultRule {
        if let FaultAction::Status { retry_after, .. } = &mut self.action {
            *retry_after = Some(seconds);
        }
        self
    }

    /// Sets the body of a `Status` action; no effect on other actions.
    pub fn body(mut self, text: &str) -> FaultRule {
        if let FaultAction::Status { body, .. } = &mut self.action {
            *body = Some(text.to_string());
        }
        self
    }

    pub(crate) fn matches(&self, method: &str, endpoint: Endpoint, path: Option<&str>) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.endpoint.is_none_or(|e| e == endpoint)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.is_some_and(|path| path.starts_with(p)))
    }
}

/// A fault rule that failed to parse, with the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FaultParseError(pub String);

impl FromStr for FaultRule {
    type Err = FaultParseError;

    /// Parses `METHOD ENDPOINT ACTION [key=value ...]`, e.g.
    /// `POST files/put 503 retry-after=1 times=3`. METHOD and ENDPOINT may be `*`. ACTION is a
    /// status code, `drop`, `truncate=N`, `abort-upload=N` or `delay-ms=N`. Options: `times=N`
    /// (default 1), `skip=N`, `retry-after=S`, `path=PREFIX`, `body=TEXT`.
    fn from_str(text: &str) -> Result<FaultRule, FaultParseError> {
        let err = |why: String| FaultParseError(format!("invalid fault rule {text:?}: {why}"));
        let mut words = text.split_whitespace();
        let (Some(method), Some(endpoint), Some(action)) =
            (words.next(), words.next(), words.next())
        else {
            return Err(err(
                "expected `METHOD ENDPOINT ACTION [key=value ...]`".into()
            ));
        };
        let number = |key: &str, value: &str| -> Result<u64, FaultParseError> {
            value
                .parse::<u64>()
                .map_err(|_| err(format!("{key} needs a non-negative integer, got {value:?}")))
        };
        let action = if let Ok(status) = action.parse::<u16>() {
            if !(100..=599).contains(&status) {
                return Err(err(format!("status {status} is outside 100..=599")));
            }
            FaultAction::Status {
                status,
                retry_after: None,
                body: None,
            }
        } else if action == "drop" {
            FaultAction::DropConnection
        } else if let Some(n) = action.strip_prefix("truncate=") {
            FaultAction::TruncateBody {
                after_bytes: number("truncate", n)?,
            }
        } else if let Some(n) = action.strip_prefix("abort-upload=") {
            FaultAction::AbortUpload {
                after_bytes: number("abort-upload", n)?,
            }
        } else if let Some(n) = action.strip_prefix("delay-ms=") {
            FaultAction::Delay(Duration::from_millis(number("delay-ms", n)?))
        } else {
            return Err(err(format!(
                "unknown action {action:?} (a status, drop, truncate=N, abort-upload=N, delay-ms=N)"
            )));
        };
        let mut rule = FaultRule::new(action);
        if method != "*" {
            rule = rule.method(method);
        }
        if endpoint != "*" {
            let known = Endpoint::from_name(endpoint).ok_or_else(|| {
                err(format!(
                    "unknown endpoint {endpoint:?}; known: {}",
                    Endpoint::names()
                ))
            })?;
            if method != "*" && !known.takes(method) {
                let methods: Vec<&str> = known.methods().iter().map(|m| m.as_str()).collect();
                return Err(err(format!(
                    "{known} is never called with {method} (it takes {})",
                    methods.join(" or ")
                )));
            }
            rule.endpoint = Some(known);
        }
        for option in words {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| err(format!("option {option:?} is not key=value")))?;
            match key {
                "times" => rule.times = number(key, value)? as u32,
                "skip" => rule.skip = number(key, value)? as u32,
                "retry-after" => rule = rule.retry_after(number(key, value)?),
                "path" => rule = rule.path_prefix(value),
                "body" => rule = rule.body(value),
                _ => return Err(err(format!("unknown option {key:?}"))),
            }
        }
        Ok(rule)
    }
}

/// The mutable fault and hook settings, inside the emulator's state.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    /// Each rule with the number of requests it has matched so far.
    pub(crate) rules: Vec<(FaultRule, u32)>,
    pub(crate) latency: Duration,
    pub(crate) failure_rates: HashMap<Option<Endpoint>, f64>,
    pub(crate) omit_hash_prefixes: Vec<String>,
    pub(crate) offline_mounts: Vec<String>,
    pub(crate) race_folder_creates: u32,
    pub(crate) shuffle_listings: bool,
    pub(crate) login_throttle_after: Option<u32>,
    pub(crate) clock_ms: Option<i64>,
}

impl FaultState {
    /// Counts the request against every matching rule and returns the first rule action that
    /// applies to it.
    pub(crate) fn scripted_action(
        &mut self,
        method: &str,
        endpoint: Endpoint,
        path: Option<&str>,
    ) -> Option<FaultAction> {
        let mut chosen = None;
        for (rule, matched) in &mut self.rules {
            if !rule.matches(method, endpoint, path) {
                continue;
            }
            *matched += 1;
            let applies = *matched > rule.skip && *matched - rule.skip <= rule.times;
            if applies && chosen.is_none() {
                chosen = Some(rule.action.clone());
            }
        }
        chosen
    }

    pub(crate) fn failure_rate(&self, endpoint: Endpoint) -> f64 {
        self.failure_rates
            .get(&Some(endpoint))
            .or_else(|| self.failure_rates.get(&None))
            .copied()
            .unwrap_or(0.0)
    }

    pub(crate) fn hash_omitted(&self, path: &str) -> bool {
        self.omit_hash_prefixes
            .iter()
            .any(|p| path.starts_with(p.as_str()))
    }
}

/// A cheap, cloneable handle to change faults and hooks on a running emulator.
#[derive(Clone)]
pub struct Faults {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults").finish_non_exhaustive()
    }
}

impl Faults {
    /// Adds a scripted fault rule (rules are tried in insertion order).
    pub fn inject(&self, rule: FaultRule) {
        self.shared.lock().faults.rules.push((rule, 0));
    }

    /// Removes every scripted rule, random failure rate and latency; the §10.11 hooks
    /// (clock, quota, offline mounts, ...) are reset too.
    pub fn clear(&self) {
        let mut state = self.shared.lock();
        state.faults = FaultState::default();
        state.failed_logins = 0;
    }

    /// Latency added to every request.
    pub fn set_latency(&self, d: Duration) {
        self.shared.lock().faults.latency = d;
    }

    /// Answer 503 with probability `rate` for requests of the endpoint named `endpoint` (None =
    /// every endpoint without its own rate). Draws come from the seeded generator, so runs are
    /// reproducible.
    ///
    /// # Panics
    /// If no endpoint has that name.
    pub fn set_failure_rate(&self, endpoint: Option<&str>, rate: f64) {
        let endpoint = endpoint.map(Endpoint::named);
        self.shared
            .lock()
            .faults
            .failure_rates
            .insert(endpoint, rate.clamp(0.0, 1.0));
    }

    /// Every token issued so far (legacy `/token` tokens and OAuth access tokens) now gets 401.
    /// Refresh tokens stay valid, so OAuth clients can re-authenticate.
    pub fn expire_tokens(&self) {
        let mut state = self.shared.lock();
        state.auth.legacy_tokens.clear();
        state.auth.access_tokens.clear();
    }

    /// Account quota in bytes (reported in MiB).
    pub fn set_quota(&self, bytes: u64) {
        self.shared.lock().quota_bytes = bytes;
    }

    /// Files whose path starts with `path_prefix` (on any mount) are listed without `hash`.
    pub fn omit_hash(&self, path_prefix: &str) {
        self.shared
            .lock()
            .faults
            .omit_hash_prefixes
            .push(path_prefix.to_string());
    }

    /// Marks a mount (id or `primary`) offline: its file operations answer 404 `DeviceOffline`.
    pub fn set_mount_offline(&self, mount_id: &str, offline: bool) {
        let mut state = self.shared.lock();
        let id = state.resolve_mount_id(mount_id);
        state.faults.offline_mounts.retain(|m| *m != id);
        if offline {
            state.faults.offline_mounts.push(id);
        }
    }

    /// The next `times` folder creates create the folder, then answer "exists" (400/409).
    pub fn race_folder_create(&self, times: u32) {
        self.shared.lock().faults.race_folder_creates = times;
    }

    /// Shuffle `files/list`, `files/tree` and `files/listrecursive` order (seeded).
    pub fn shuffle_listings(&self, on: bool) {
        self.shared.lock().faults.shuffle_listings = on;
    }

    /// Reject names outside the BMP with 400 `BadRequest` "Invalid name".
    pub fn set_reject_non_bmp(&self, on: bool) {
        self.shared.lock().reject_non_bmp = on;
    }

    /// After this many failed logins, every request gets 429 `Too many login retries`
    /// (None = never). Resets the failure counter.
    pub fn set_login_throttle(&self, after_failures: Option<u32>) {
        let mut state = self.shared.lock();
        state.faults.login_throttle_after = after_failures;
        state.failed_logins = 0;
    }

    /// Fix the clock used for `modified` defaults, folder times and token expiry (None = real).
    pub fn set_clock(&self, now_ms: Option<i64>) {
        self.shared.lock().faults.clock_ms = now_ms;
    }
}
