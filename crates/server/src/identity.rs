//! Keystone v3 compatible identity: password tokens scoped to a project, with a catalog
//! that points the compute and image services at this server.

use std::sync::Arc;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use novanet_core::Error;
use novanet_store::Token;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult, Body, ErrorKind};
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
    /// Keystone's default roles: `admin` implies `member` implies `reader`; only the first
    /// two change anything (`_member_` is the old spelling of `member`).
    pub fn can_write(&self) -> bool {
        self.token
            .roles
            .iter()
            .any(|r| matches!(r.as_str(), "admin" | "member" | "_member_"))
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
        let identity = parts.uri.path().starts_with("/identity");
        // Identity routes answer in Keystone's shape, compute routes in Nova's.
        let ctx = authenticate(parts, state).await.map_err(|e| {
            if identity {
                e.in_keystone_shape()
            } else {
                e
            }
        })?;
        if let Some(p) = parts.extensions.get::<crate::version::RequestProject>() {
            p.set(ctx.project_id());
        }
        // A reader changes nothing; identity routes are exempt (anyone may end their own
        // token, and Keystone's token routes check the subject instead).
        let changes = !matches!(parts.method, Method::GET | Method::HEAD);
        if changes && !ctx.can_write() && !parts.uri.path().starts_with("/identity") {
            return Err(ApiError::forbidden(
                "Policy doesn't allow this to be performed: the reader role is read-only.",
            ));
        }
        Ok(ctx)
    }
}

async fn authenticate(parts: &Parts, state: &Arc<AppState>) -> Result<Ctx, ApiError> {
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

fn version_doc(base: &str) -> Value {
    json!({
        "id": IDENTITY_VERSION,
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/identity/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

async fn versions(State(st): State<Arc<AppState>>) -> Response {
    let base = st.public_base.as_str();
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": {"values": [version_doc(base)]}})),
    )
        .into_response()
}

async fn version(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"version": version_doc(&st.public_base)}))
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
    ApiError::keystone(ErrorKind::Unauthorized, msg)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
}

async fn issue(
    State(st): State<Arc<AppState>>,
    ext: Extensions,
    body: Result<Body<Value>, ApiError>,
) -> ApiResult<Response> {
    let bad = |m: &str| ApiError::keystone(ErrorKind::BadRequest, m);
    // A malformed body is answered in Keystone's shape too, like every other identity fault.
    let Body(body) = body.map_err(ApiError::in_keystone_shape)?;
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
    let source = ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let keys = LoginGuard::keys(user_key, source.as_deref());
    let now = unix_now();
    if let Some(wait) = st.logins.refused(&keys, now) {
        return Err(ApiError::keystone(
            ErrorKind::TooManyRequests,
            format!(
                "Too many failed logins for this user or from this address; try again in {wait} s."
            ),
        ));
    }
    let (store, ttl) = (st.store.clone(), st.cfg.token_expiration as i64);
    let (u, p, pr) = (
        user_key.to_string(),
        password.to_string(),
        project_key.to_string(),
    );
    // Password hashing is slow on purpose: off the async workers.
    let issued = tokio::task::spawn_blocking(move || store.issue_token(&u, &p, &pr, now, ttl))
        .await
        .map_err(|e| ApiError::unavailable(format!("login failed: {e}")))?;
    let t = match issued {
        Ok(t) => {
            st.logins.succeeded(&keys);
            t
        }
        Err(Error::Forbidden(_)) => {
            st.logins.failed(&keys, now);
            return Err(unauthorized(
                "The request you have made requires authentication.",
            ));
        }
        Err(other) => return Err(ApiError::from(other)),
    };
    let mut resp = (StatusCode::CREATED, Json(token_body(&t, &st.public_base))).into_response();
    resp.headers_mut()
        .insert("x-subject-token", t.id.parse().expect("token is ascii"));
    Ok(resp)
}

/// The token named by `X-Subject-Token`, which only its owner or an admin may look at or end
/// (Keystone's `admin_or_token_subject`).
fn subject(st: &AppState, ctx: &Ctx, headers: &HeaderMap) -> ApiResult<Token> {
    let id = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::keystone(ErrorKind::BadRequest, "X-Subject-Token header is required")
        })?;
    let t = st.store.token(id, unix_now()).map_err(|e| match e {
        novanet_core::Error::Store(_) => ApiError::from(e).in_keystone_shape(),
        other => ApiError::keystone(ErrorKind::NotFound, other.to_string()),
    })?;
    if t.user.id != ctx.user_id() && !ctx.is_admin() {
        return Err(ApiError::keystone(
            ErrorKind::Forbidden,
            "You are not authorized to perform the requested action: only the token's owner or an admin may.",
        ));
    }
    Ok(t)
}

async fn validate(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let t = subject(&st, &ctx, &headers)?;
    let mut resp = Json(token_body(&t, &st.public_base)).into_response();
    resp.headers_mut()
        .insert("x-subject-token", t.id.parse().expect("ascii"));
    Ok(resp)
}

async fn check(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    subject(&st, &ctx, &headers)?;
    Ok(StatusCode::OK)
}

async fn revoke(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let t = subject(&st, &ctx, &headers)?;
    st.store.revoke_token(&t.id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Failed-login throttling, per user name and per source address (Keystone's
/// `lockout_failure_attempts`, and what a proxy in front of it adds per address).
#[derive(Default)]
pub struct LoginGuard {
    /// key -> (failures, start of the window).
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl LoginGuard {
    /// Failures a user name may see in a window before its logins are refused.
    pub const USER_LIMIT: u32 = 5;
    /// Failures one source address may cause in a window, over every user name.
    pub const SOURCE_LIMIT: u32 = 30;
    /// Seconds a window lasts; a refused key waits for its window to end.
    pub const WINDOW: i64 = 300;
    /// Entries kept at most; expired ones go first (names are the caller's choice).
    const MAX_ENTRIES: usize = 100_000;

    pub fn keys(user: &str, source: Option<&str>) -> Vec<(String, u32)> {
        let mut k = vec![(format!("user:{user}"), Self::USER_LIMIT)];
        if let Some(s) = source {
            k.push((format!("source:{s}"), Self::SOURCE_LIMIT));
        }
        k
    }

    /// Seconds to wait, when any key is over its limit.
    pub fn refused(&self, keys: &[(String, u32)], now: i64) -> Option<i64> {
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|(k, limit)| {
                f.get(k)
                    .filter(|(n, start)| *n >= *limit && now - start < Self::WINDOW)
                    .map(|(_, start)| start + Self::WINDOW - now)
            })
            .max()
    }

    pub fn failed(&self, keys: &[(String, u32)], now: i64) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() >= Self::MAX_ENTRIES {
            f.retain(|_, (_, start)| now - *start < Self::WINDOW);
        }
        for (k, _) in keys {
            let e = f.entry(k.clone()).or_insert((0, now));
            if now - e.1 >= Self::WINDOW {
                *e = (0, now);
            }
            e.0 += 1;
        }
    }

    /// A good password clears the user's count (not the source's).
    pub fn succeeded(&self, keys: &[(String, u32)]) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, _)) = keys.first() {
            f.remove(k);
        }
    }
}
