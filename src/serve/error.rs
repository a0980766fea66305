//! One error envelope, the CLI's: `{"error": {code, message, fix, retryable, details,
//! requestId}}`, with the validator's stable codes reused and an HTTP status per code.

use crate::cli::errors::ExitClass;
use crate::exit_codes::ErrorClass;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Codes the service itself adds to the validator's and the supervisor's.
pub const SERVICE_CODES: &[&str] = &[
    "unknown_field",
    "invalid_request",
    "forbidden",
    "peer_refused",
    "not_found",
    "method_not_allowed",
    "conflict",
    "precondition_failed",
    "payload_too_large",
    "too_many_calls",
    "deadline_exceeded",
    "idempotency_conflict",
    "shutting_down",
    "internal",
];

/// Codes of the supervisor, the engine, sessions and the config (see their `code()`s).
pub const OTHER_CODES: &[&str] = &[
    "audit_failed",
    "config_drift",
    "config_problems",
    "container_not_found",
    "engine_error",
    "engine_unreachable",
    "foreign_container",
    "image_missing",
    "invalid_session_key",
    "name_conflict",
    "not_sandboxed",
    "plan_mismatch",
    "remote_engine",
    "setup_failed",
    "config_error",
];

/// A failed request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub fix: String,
    pub retryable: bool,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            fix: String::new(),
            retryable: false,
            details: serde_json::Value::Null,
            request_id: None,
            retry_after: None,
        }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = fix.into();
        self
    }

    pub fn details(mut self, d: serde_json::Value) -> Self {
        self.details = d;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn too_many(message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_calls", message)
            .fix("retry later, or raise serve.maxCalls / serve.maxCallsPerSandbox");
        e.retryable = true;
        e.retry_after = Some(retry_after);
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Any error the CLI knows, with the status of its code or class.
    pub fn from_class<E: ExitClass + ?Sized>(e: &E) -> Self {
        let code = e.code();
        let status = status_of(&code, e.class());
        let mut out = Self::new(status, &code, e.to_string()).fix(e.fix());
        out.retryable = matches!(e.class(), ErrorClass::Engine) || code == "busy";
        out
    }
}

/// The HTTP status of an error code (or, for codes without one of their own, its class).
pub fn status_of(code: &str, class: ErrorClass) -> StatusCode {
    match code {
        "not_found" | "container_not_found" | "image_missing" | "not_sandboxed" => {
            StatusCode::NOT_FOUND
        }
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "already_exists" | "busy" | "config_drift" | "foreign_container" | "name_conflict" => {
            StatusCode::CONFLICT
        }
        "precondition_failed" | "etag_mismatch" => StatusCode::PRECONDITION_FAILED,
        "timeout" | "deadline_exceeded" => StatusCode::GATEWAY_TIMEOUT,
        _ => match class {
            ErrorClass::Usage => StatusCode::BAD_REQUEST,
            ErrorClass::Refused => StatusCode::FORBIDDEN,
            ErrorClass::ConfigProblems => StatusCode::FORBIDDEN,
            ErrorClass::Engine => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Config => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
    }
}

impl<E: ExitClass> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError::from_class(&e)
    }
}

/// Marks an error response so the request-id layer can fill `requestId` in.
#[derive(Clone)]
pub struct ErrorBody(pub ApiError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry = self.retry_after;
        let body = serde_json::json!({ "error": &self });
        let mut r = (status, axum::Json(body)).into_response();
        if let Some(s) = retry
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert("retry-after", v);
        }
        r.extensions_mut().insert(ErrorBody(self));
        r
    }
}
