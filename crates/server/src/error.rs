//! Errors on the wire, in Nova's shape (`{"itemNotFound": {"code": 404, "message": ...}}`)
//! or Keystone's (`{"error": {"code": 401, "title": ..., "message": ...}}`).
//!
//! An error keeps its kind from where it was made to where it is answered: the status and
//! Nova's fault name both come from the kind, in `ErrorKind::status` and
//! `ErrorKind::fault_name`, and nowhere else.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use novanet_core::Error;
use serde::de::DeserializeOwned;
use serde_json::json;

/// What went wrong, as far as the client is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotAcceptable,
    Conflict,
    /// A quota would be exceeded. nova-network answered these with 403
    /// (FloatingIpLimitExceeded et al.), named `overLimit`.
    OverLimit,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// Too many requests from one source (failed logins, metadata rate limit).
    TooManyRequests,
    /// Something failed inside this server; the details are in its log, not in the answer.
    Internal,
    NotImplemented,
    /// A service this one depends on (an external Keystone) did not answer.
    Unavailable,
    /// Another status an HTTP layer answered with (axum's rejections: 411, 408...), kept
    /// as it came.
    OtherStatus(StatusCode),
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden | ErrorKind::OverLimit => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::OtherStatus(code) => code,
        }
    }

    /// The key of a Nova fault body. Kinds Nova had no name for are `computeFault`, as in
    /// Nova.
    pub fn fault_name(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "badRequest",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "itemNotFound",
            ErrorKind::MethodNotAllowed => "badMethod",
            ErrorKind::Conflict => "conflictingRequest",
            ErrorKind::OverLimit | ErrorKind::PayloadTooLarge | ErrorKind::TooManyRequests => {
                "overLimit"
            }
            ErrorKind::NotImplemented => "notImplemented",
            ErrorKind::NotAcceptable
            | ErrorKind::UnsupportedMediaType
            | ErrorKind::Internal
            | ErrorKind::Unavailable
            | ErrorKind::OtherStatus(_) => "computeFault",
        }
    }

    /// The kind of a status made elsewhere (axum's rejections, identity helpers).
    pub fn from_status(code: StatusCode) -> ErrorKind {
        match code {
            StatusCode::BAD_REQUEST => ErrorKind::BadRequest,
            StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
            StatusCode::FORBIDDEN => ErrorKind::Forbidden,
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorKind::MethodNotAllowed,
            StatusCode::NOT_ACCEPTABLE => ErrorKind::NotAcceptable,
            StatusCode::CONFLICT => ErrorKind::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorKind::UnsupportedMediaType,
            StatusCode::TOO_MANY_REQUESTS => ErrorKind::TooManyRequests,
            StatusCode::NOT_IMPLEMENTED => ErrorKind::NotImplemented,
            StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Unavailable,
            StatusCode::INTERNAL_SERVER_ERROR => ErrorKind::Internal,
            other => ErrorKind::OtherStatus(other),
        }
    }
}

/// Which API's fault body an error is answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Nova,
    Keystone,
}

#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub shape: Shape,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// What a client is told when the server itself failed: what happened is in the log, under
/// the request's id.
pub const INTERNAL_MESSAGE: &str =
    "The server could not complete the request because of an internal failure; \
     the request id in this response's headers finds the details in the server's log.";

impl ApiError {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: msg.into(),
            shape: Shape::Nova,
        }
    }
    /// An identity API fault.
    pub fn keystone(kind: ErrorKind, msg: impl Into<String>) -> Self {
        ApiError::new(kind, msg).in_keystone_shape()
    }
    /// The same fault, answered in Keystone's shape.
    pub fn in_keystone_shape(mut self) -> Self {
        self.shape = Shape::Keystone;
        self
    }
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::BadRequest, msg)
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::NotFound, msg)
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::Forbidden, msg)
    }
    /// A service this one depends on (an external Keystone) did not answer.
    pub fn unavailable(msg: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::Unavailable, msg)
    }
    pub fn unauthorized() -> Self {
        ApiError::new(
            ErrorKind::Unauthorized,
            "The request you have made requires authentication.",
        )
    }
    /// A failure inside this server: `details` go to the log, the client gets
    /// `INTERNAL_MESSAGE`.
    pub fn internal(details: impl std::fmt::Display) -> Self {
        tracing::error!(error = %details, "request failed inside the server");
        ApiError::new(ErrorKind::Internal, INTERNAL_MESSAGE)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Invalid { .. } => ErrorKind::BadRequest,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) | Error::Exhausted(_) => ErrorKind::Conflict,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::OverLimit(_) => ErrorKind::OverLimit,
            Error::Store(_) => return ApiError::internal(e),
        };
        ApiError::new(kind, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.status();
        let body = match self.shape {
            Shape::Nova => {
                json!({ self.kind.fault_name(): { "code": code.as_u16(), "message": self.message } })
            }
            Shape::Keystone => {
                let title = code.canonical_reason().unwrap_or("Error");
                json!({"error": {"code": code.as_u16(), "title": title, "message": self.message}})
            }
        };
        (code, Json(body)).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: ApiError) -> (StatusCode, serde_json::Value) {
        let r = e.into_response();
        let status = r.status();
        let bytes = read_body(r);
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn read_body(r: Response) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(axum::body::to_bytes(r.into_body(), 1 << 16))
            .unwrap()
            .to_vec()
    }

    #[test]
    fn quota_faults_are_over_limit_whatever_their_text() {
        let (status, v) = body(Error::OverLimit("Quota exceeded for cores".into()).into());
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(v["overLimit"]["code"], 403);
        let (_, v) = body(Error::Forbidden("quota exceeded, or so it says".into()).into());
        assert!(v.get("forbidden").is_some(), "{v}");
    }

    #[test]
    fn store_failures_do_not_reach_the_client() {
        let e: ApiError = Error::Store("disk I/O error: /var/lib/novanet/state.db".into()).into();
        assert_eq!(e.kind, ErrorKind::Internal);
        let (status, v) = body(e);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let msg = v["computeFault"]["message"].as_str().unwrap();
        assert_eq!(msg, INTERNAL_MESSAGE);
        assert!(!msg.contains("disk"));
    }

    #[test]
    fn keystone_shape_keeps_the_kind() {
        let (status, v) = body(ApiError::not_found("no such project").in_keystone_shape());
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(v["error"]["title"], "Not Found");
        assert_eq!(
            ErrorKind::from_status(StatusCode::LENGTH_REQUIRED).status(),
            StatusCode::LENGTH_REQUIRED
        );
    }
}
