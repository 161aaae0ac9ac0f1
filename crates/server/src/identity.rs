//! Keystone v3 compatible identity: password tokens scoped to a project, with a catalog
//! that points the compute and image services at this server.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use novanet_core::Error;
use novanet_store::Token;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult, Body};
use crate::keystone::Refusal;
use crate::{iso8601, unix_now, AppState};

pub const IDENTITY_VERSION: &str = "v3.14";

/// The caller, from a valid `X-Auth-Token`.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub token: Token,
}

impl Ctx {
    pub fn project_id(&self) -> &str {
        &self.token.project.id
    }
    pub fn user_id(&self) -> &str {
        &self.token.user.id
    }
    pub fn is_admin(&self) -> bool {
        self.token.roles.iter().any(|r| r == "admin")
    }
    pub fn require_admin(&self, what: &str) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "Policy doesn't allow {what} to be performed: admin only."
            )))
        }
    }
    /// The project filter for this caller: None for admins acting on everything.
    pub fn scope(&self) -> Option<&str> {
        (!self.is_admin()).then(|| self.project_id())
    }
}

impl FromRequestParts<Arc<AppState>> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let Some(k) = state.keystone.clone() else {
            return state
                .store
                .token(id, unix_now())
                .map(|token| Ctx { token })
                .map_err(|_| ApiError::unauthorized());
        };
        let id = id.to_string();
        let r = tokio::task::spawn_blocking(move || k.validate(&id, unix_now()))
            .await
            .map_err(|e| ApiError::unavailable(format!("token validation failed: {e}")))?;
        match r {
            Ok(token) => Ok(Ctx { token }),
            Err(Refusal::Invalid) => Err(ApiError::unauthorized()),
            Err(Refusal::Unavailable(why)) => Err(ApiError::unavailable(format!(
                "cannot validate the token: {why}"
            ))),
        }
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/identity", get(versions))
        .route("/identity/", get(versions))
        .route("/identity/v3", get(version))
        .route("/identity/v3/", get(version))
        .route(
            "/identity/v3/auth/tokens",
            get(validate).head(check).delete(revoke).post(issue),
        )
}

pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8774");
    format!("http://{host}")
}

fn version_doc(base: &str) -> Value {
    json!({
        "id": IDENTITY_VERSION,
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/identity/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

async fn versions(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": {"values": [version_doc(&base)]}})),
    )
        .into_response()
}

async fn version(headers: HeaderMap) -> Json<Value> {
    Json(json!({"version": version_doc(&base_url(&headers))}))
}

fn endpoint(id: &str, url: &str) -> Value {
    let eps: Vec<Value> = ["public", "internal", "admin"]
        .iter()
        .map(|i| json!({"id": format!("{id}-{i}"), "interface": i, "region": "RegionOne", "region_id": "RegionOne", "url": url}))
        .collect();
    Value::Array(eps)
}

pub fn token_body(t: &Token, base: &str) -> Value {
    let domain = json!({"id": "default", "name": "Default"});
    json!({"token": {
        "methods": ["password"],
        "expires_at": iso8601(t.expires_at),
        "issued_at": iso8601(t.issued_at),
        "audit_ids": [&t.id[..22.min(t.id.len())]],
        "is_domain": false,
        "user": {"id": t.user.id, "name": t.user.name, "domain": domain, "password_expires_at": null},
        "project": {"id": t.project.id, "name": t.project.name, "domain": domain},
        "roles": t.roles.iter().map(|r| json!({"id": r, "name": r})).collect::<Vec<_>>(),
        "catalog": [
            {"type": "compute", "name": "nova", "id": "compute", "endpoints": endpoint("compute", &format!("{base}/v2.1"))},
            {"type": "image", "name": "glance", "id": "image", "endpoints": endpoint("image", &format!("{base}/image"))},
            {"type": "identity", "name": "keystone", "id": "identity", "endpoints": endpoint("identity", &format!("{base}/identity"))},
        ],
    }})
}

fn unauthorized(msg: &str) -> ApiError {
    ApiError::Keystone(StatusCode::UNAUTHORIZED, msg.to_string())
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
}

async fn issue(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Body<Value>, ApiError>,
) -> ApiResult<Response> {
    let bad = |m: &str| ApiError::Keystone(StatusCode::BAD_REQUEST, m.to_string());
    // A malformed body is answered in Keystone's shape too, like every other identity fault.
    let Body(body) = body.map_err(|e| match e {
        ApiError::Nova(code, m) | ApiError::Keystone(code, m) => ApiError::Keystone(code, m),
    })?;
    let identity = body
        .pointer("/auth/identity")
        .ok_or_else(|| bad("auth.identity is required"))?;
    let methods = identity
        .get("methods")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !methods.iter().any(|m| m == "password") {
        return Err(bad("auth.identity.methods must include \"password\""));
    }
    let user = identity
        .pointer("/password/user")
        .ok_or_else(|| bad("auth.identity.password.user is required"))?;
    let user_key = str_at(user, &["name"])
        .or_else(|| str_at(user, &["id"]))
        .ok_or_else(|| bad("auth.identity.password.user needs a name or an id"))?;
    let password = str_at(user, &["password"])
        .ok_or_else(|| bad("auth.identity.password.user.password is required"))?;
    let project = body
        .pointer("/auth/scope/project")
        .ok_or_else(|| bad("a project scope (auth.scope.project) is required"))?;
    let project_key = str_at(project, &["name"])
        .or_else(|| str_at(project, &["id"]))
        .ok_or_else(|| bad("auth.scope.project needs a name or an id"))?;
    let t = st
        .store
        .issue_token(
            user_key,
            password,
            project_key,
            unix_now(),
            st.cfg.token_expiration as i64,
        )
        .map_err(|e| match e {
            Error::Forbidden(_) => {
                unauthorized("The request you have made requires authentication.")
            }
            other => ApiError::from(other),
        })?;
    let mut resp = (
        StatusCode::CREATED,
        Json(token_body(&t, &base_url(&headers))),
    )
        .into_response();
    resp.headers_mut()
        .insert("x-subject-token", t.id.parse().expect("token is ascii"));
    Ok(resp)
}

fn subject(st: &AppState, headers: &HeaderMap) -> ApiResult<Token> {
    let id = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::Keystone(
                StatusCode::BAD_REQUEST,
                "X-Subject-Token header is required".into(),
            )
        })?;
    st.store
        .token(id, unix_now())
        .map_err(|e| ApiError::Keystone(StatusCode::NOT_FOUND, e.to_string()))
}

async fn validate(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let t = subject(&st, &headers)?;
    let mut resp = Json(token_body(&t, &base_url(&headers))).into_response();
    resp.headers_mut()
        .insert("x-subject-token", t.id.parse().expect("ascii"));
    Ok(resp)
}

async fn check(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    subject(&st, &headers)?;
    Ok(StatusCode::OK)
}

async fn revoke(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let t = subject(&st, &headers)?;
    st.store.revoke_token(&t.id)?;
    Ok(StatusCode::NO_CONTENT)
}
