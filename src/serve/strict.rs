//! Strict request decoding: an unknown field is `400 unknown_field` naming it (a misspelt
//! `timeoutMS` must never mean "no timeout"), any other shape error `400 invalid_request` with
//! the path of the bad value.

use super::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// Most bytes a JSON request body may have (file content goes in raw bodies).
pub const MAX_JSON_BODY: usize = 16 << 20;

/// A JSON body decoded with unknown fields refused.
pub struct StrictJson<T>(pub T);

/// A query string decoded with unknown parameters refused.
pub struct StrictQuery<T>(pub T);

/// The error of a strict decode: which field, and why.
pub fn decode_error(e: serde_path_to_error::Error<impl std::fmt::Display>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    if let Some(rest) = inner.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or("");
        let field = if path == "." || path.is_empty() {
            name.to_string()
        } else {
            // The path ends at the unknown field itself.
            path.clone()
        };
        return ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "unknown_field",
            format!("unknown field {field:?}"),
        )
        .fix("remove it or correct its spelling (see /v1/openapi.json)")
        .details(serde_json::json!({ "field": field }));
    }
    ApiError::bad_request(format!("{path}: {inner}"))
        .fix("see /v1/openapi.json for the request's shape")
        .details(serde_json::json!({ "field": path }))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // The body is JSON whatever the content type says (curl -d sends a form type).
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        if bytes.len() > MAX_JSON_BODY {
            return Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "a JSON body of {} bytes is over {MAX_JSON_BODY}",
                    bytes.len()
                ),
            ));
        }
        let text: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        let de = &mut serde_json::Deserializer::from_slice(text);
        let v = serde_path_to_error::deserialize(de).map_err(decode_error)?;
        Ok(StrictJson(v))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for StrictQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        let v = serde_path_to_error::deserialize(de).map_err(decode_error)?;
        Ok(StrictQuery(v))
    }
}
