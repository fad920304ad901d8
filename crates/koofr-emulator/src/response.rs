//! How requests end: the Koofr error body (spec §6.4) and the other failure shapes, the
//! injected-fault answers, and small response builders.

use http::header::{CONTENT_TYPE, HeaderName};
use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::body::{RespBody, empty, full};

pub(crate) const JSON: &str = "application/json; charset=utf-8";

/// A JSON API error (spec §6.4).
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn with_header(mut self, name: HeaderName, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub(crate) fn not_found() -> ApiError {
        ApiError::new(404, "NotFound", "File not found")
    }

    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "Other", message)
    }
}

/// Every way a handler can end other than success.
#[derive(Debug)]
pub(crate) enum Failure {
    Api(ApiError),
    /// 401 with an empty body.
    Unauthorized,
    /// A non-JSON body (login throttle, OAuth errors use `Json`).
    Plain(StatusCode, &'static str),
    /// OAuth2-style JSON error `{"error": "..."}`.
    OAuth(StatusCode, &'static str),
    /// Close the connection without answering (broken or aborted upload).
    Drop,
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure::Api(e)
    }
}

pub(crate) type HandlerResult = Result<Response<RespBody>, Failure>;

pub(crate) fn injected_status(
    status: u16,
    retry_after: Option<u64>,
    body: Option<String>,
) -> HandlerResult {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut builder = Response::builder().status(status);
    if let Some(seconds) = retry_after {
        builder = builder.header("retry-after", seconds.to_string());
    }
    let response = match body {
        Some(text) => builder
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(full(text)),
        None if status == StatusCode::UNAUTHORIZED => builder.body(empty()),
        None => {
            let body = json!({"error": {"code": "Other",
                "message": format!("Injected fault: {}", status.canonical_reason().unwrap_or("error")),
                "extra": {}}, "requestId": uuid::Uuid::new_v4().to_string()});
            builder
                .header(CONTENT_TYPE, JSON)
                .body(full(body.to_string()))
        }
    };
    Ok(response.expect("valid injected response"))
}

pub(crate) fn failure_response(failure: Failure, request_id: &str) -> Response<RespBody> {
    let response = match failure {
        Failure::Api(e) => {
            let body = json!({"error": {"code": e.code, "message": e.message, "extra": {}},
                              "requestId": request_id});
            let mut builder = Response::builder()
                .status(e.status)
                .header(CONTENT_TYPE, JSON);
            for (name, value) in e.headers {
                builder = builder.header(name, value);
            }
            builder.body(full(body.to_string()))
        }
        Failure::Unauthorized => Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .body(empty()),
        Failure::Plain(status, text) => Response::builder()
            .status(status)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(full(text)),
        Failure::OAuth(status, error) => Response::builder()
            .status(status)
            .header(CONTENT_TYPE, JSON)
            .body(full(json!({ "error": error }).to_string())),
        Failure::Drop => unreachable!("handled by the caller"),
    };
    response.expect("valid error response")
}

pub(crate) fn json_response(status: u16, value: &Value) -> HandlerResult {
    Ok(Response::builder()
        .status(status)
        .header(CONTENT_TYPE, JSON)
        .body(full(value.to_string()))
        .expect("valid JSON response"))
}

pub(crate) fn empty_response(status: u16) -> HandlerResult {
    Ok(Response::builder()
        .status(status)
        .body(empty())
        .expect("valid empty response"))
}
