//! Errors on the wire, in Nova's shape (`{"itemNotFound": {"code": 404, "message": ...}}`)
//! or Keystone's (`{"error": {"code": 401, "title": ..., "message": ...}}`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use novanet_core::Error;
use serde::de::DeserializeOwned;
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    /// A compute API fault.
    Nova(StatusCode, String),
    /// An identity API fault.
    Keystone(StatusCode, String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::Nova(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError::Nova(StatusCode::NOT_FOUND, msg.into())
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        ApiError::Nova(StatusCode::FORBIDDEN, msg.into())
    }
    /// A service this one depends on (an external Keystone) did not answer.
    pub fn unavailable(msg: impl Into<String>) -> Self {
        ApiError::Nova(StatusCode::SERVICE_UNAVAILABLE, msg.into())
    }
    pub fn unauthorized() -> Self {
        ApiError::Nova(
            StatusCode::UNAUTHORIZED,
            "The request you have made requires authentication.".into(),
        )
    }
}

pub fn nova_key(code: StatusCode) -> &'static str {
    match code.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        501 => "notImplemented",
        _ => "computeFault",
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let msg = e.to_string();
        let code = match e {
            Error::Invalid { .. } => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::Exhausted(_) => StatusCode::CONFLICT,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            // nova-network answered quota faults with 403 (FloatingIpLimitExceeded et al.).
            Error::OverLimit(_) => StatusCode::FORBIDDEN,
            Error::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::Nova(code, msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Nova(code, message) => {
                let key = if message.starts_with("quota exceeded") || message.contains("over quota")
                {
                    "overLimit"
                } else {
                    nova_key(code)
                };
                let body = json!({ key: { "code": code.as_u16(), "message": message } });
                (code, Json(body)).into_response()
            }
            ApiError::Keystone(code, message) => {
                let title = code.canonical_reason().unwrap_or("Error");
                let body =
                    json!({"error": {"code": code.as_u16(), "title": title, "message": message}});
                (code, Json(body)).into_response()
            }
        }
    }
}

/// A JSON body whose every failure (malformed, wrong type, unknown field) is a 400 that
/// says what was wrong, never a 500 or a plain-text rejection.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"null")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
    }
}
