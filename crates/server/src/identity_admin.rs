//! Keystone v3's administration, as much as operators and Tempest use: the `Default`
//! domain, the three default roles, projects, users and their role assignments, so that
//! `openstack project create`, `user create` and `role add` and Tempest's dynamic
//! credentials work. Admin only, except reading oneself.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use novanet_core::Error;
use novanet_store::{Project, User};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult, Body, ErrorKind};
use crate::identity::Ctx;
use crate::AppState;

/// Keystone's default roles; novanet knows no others.
pub const ROLES: &[&str] = &["admin", "member", "reader"];

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/identity/v3/domains", get(list_domains))
        .route("/identity/v3/domains/{id}", get(show_domain))
        .route("/identity/v3/roles", get(list_roles).post(create_role))
        .route("/identity/v3/roles/{id}", get(show_role))
        .route(
            "/identity/v3/projects",
            get(list_projects).post(create_project),
        )
        .route(
            "/identity/v3/projects/{id}",
            get(show_project)
                .patch(update_project)
                .delete(delete_project),
        )
        .route("/identity/v3/users", get(list_users).post(create_user))
        .route(
            "/identity/v3/users/{id}",
            get(show_user).patch(update_user).delete(delete_user),
        )
        .route("/identity/v3/users/{id}/projects", get(user_projects))
        .route(
            "/identity/v3/projects/{project}/users/{user}/roles",
            get(list_user_roles),
        )
        .route(
            "/identity/v3/projects/{project}/users/{user}/roles/{role}",
            put(grant).delete(revoke).head(check_grant),
        )
        .route("/identity/v3/role_assignments", get(role_assignments))
}

fn kerr(code: StatusCode, m: impl Into<String>) -> ApiError {
    ApiError::keystone(ErrorKind::from_status(code), m)
}

/// Every fault here in Keystone's shape.
fn k(e: impl Into<ApiError>) -> ApiError {
    e.into().in_keystone_shape()
}

fn admin(ctx: &Ctx, what: &str) -> ApiResult<()> {
    if ctx.is_admin() {
        Ok(())
    } else {
        Err(kerr(
            StatusCode::FORBIDDEN,
            format!("You are not authorized to perform the requested action: identity:{what}."),
        ))
    }
}

fn base(st: &AppState) -> String {
    format!("{}/identity/v3", st.public_base)
}

fn domain_view(st: &AppState) -> Value {
    json!({"id": "default", "name": "Default", "description": "The default domain", "enabled": true,
           "tags": [], "options": {}, "links": {"self": format!("{}/domains/default", base(st))}})
}

fn project_view(st: &AppState, p: &Project) -> Value {
    json!({"id": p.id, "name": p.name, "domain_id": "default", "description": "", "enabled": true,
           "parent_id": "default", "is_domain": false, "tags": [], "options": {},
           "links": {"self": format!("{}/projects/{}", base(st), p.id)}})
}

fn user_view(st: &AppState, u: &User) -> Value {
    json!({"id": u.id, "name": u.name, "domain_id": "default", "enabled": true,
           "password_expires_at": null, "options": {},
           "links": {"self": format!("{}/users/{}", base(st), u.id)}})
}

fn role_view(st: &AppState, r: &str) -> Value {
    json!({"id": r, "name": r, "domain_id": null, "description": null, "options": {},
           "links": {"self": format!("{}/roles/{r}", base(st))}})
}

#[derive(Deserialize)]
struct NameFilter {
    name: Option<String>,
}

async fn list_domains(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Query(q): Query<NameFilter>,
) -> Json<Value> {
    let all = q.name.as_deref().is_none_or(|n| n == "Default");
    let domains: Vec<Value> = if all { vec![domain_view(&st)] } else { vec![] };
    Json(
        json!({"domains": domains, "links": {"self": format!("{}/domains", base(&st)), "next": null, "previous": null}}),
    )
}

async fn show_domain(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if id != "default" {
        return Err(kerr(
            StatusCode::NOT_FOUND,
            format!("Could not find domain: {id}."),
        ));
    }
    Ok(Json(json!({"domain": domain_view(&st)})))
}

async fn list_roles(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Query(q): Query<NameFilter>,
) -> Json<Value> {
    let roles: Vec<Value> = ROLES
        .iter()
        .filter(|r| q.name.as_deref().is_none_or(|n| n == **r))
        .map(|r| role_view(&st, r))
        .collect();
    Json(
        json!({"roles": roles, "links": {"self": format!("{}/roles", base(&st)), "next": null, "previous": null}}),
    )
}

fn find_role(id: &str) -> ApiResult<&'static str> {
    ROLES
        .iter()
        .find(|r| **r == id)
        .copied()
        .ok_or_else(|| kerr(StatusCode::NOT_FOUND, format!("Could not find role: {id}.")))
}

async fn show_role(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"role": role_view(&st, find_role(&id)?)})))
}

/// Only the default roles exist; creating one of them again is a conflict, another name is
/// refused (novanet's policy knows no other role).
async fn create_role(ctx: Ctx, Body(b): Body<Value>) -> ApiResult<Response> {
    admin(&ctx, "create_role")?;
    let name = b
        .pointer("/role/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if ROLES.contains(&name) {
        return Err(kerr(
            StatusCode::CONFLICT,
            format!("Duplicate entry: role {name} exists."),
        ));
    }
    Err(kerr(
        StatusCode::BAD_REQUEST,
        format!("role {name:?}: novanet has the roles admin, member and reader only"),
    ))
}

async fn list_projects(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<NameFilter>,
) -> ApiResult<Json<Value>> {
    admin(&ctx, "list_projects")?;
    let projects: Vec<Value> = st
        .store
        .projects()
        .map_err(k)?
        .iter()
        .filter(|p| q.name.as_deref().is_none_or(|n| n == p.name))
        .map(|p| project_view(&st, p))
        .collect();
    Ok(Json(
        json!({"projects": projects, "links": {"self": format!("{}/projects", base(&st)), "next": null, "previous": null}}),
    ))
}

fn str_field(b: &Value, path: &str, field: &str) -> ApiResult<Option<String>> {
    match b.pointer(path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(k(Error::invalid(field, format!("{other} is not a string")))),
    }
}

fn check_domain(b: &Value, path: &str) -> ApiResult<()> {
    match str_field(b, path, "domain_id")?.as_deref() {
        None | Some("default") => Ok(()),
        Some(d) => Err(kerr(
            StatusCode::BAD_REQUEST,
            format!("domain {d:?}: novanet has the Default domain only"),
        )),
    }
}

async fn create_project(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<Value>,
) -> ApiResult<Response> {
    admin(&ctx, "create_project")?;
    check_domain(&b, "/project/domain_id")?;
    let name = str_field(&b, "/project/name", "name")?
        .ok_or_else(|| k(Error::invalid("project.name", "is required")))?;
    let p = st.store.create_project(&name).map_err(k)?;
    tracing::info!(project = %p.id, name = %p.name, "project created");
    Ok((
        StatusCode::CREATED,
        Json(json!({"project": project_view(&st, &p)})),
    )
        .into_response())
}

fn find_project(st: &AppState, id: &str) -> ApiResult<Project> {
    st.store.project(id).map_err(|_| {
        kerr(
            StatusCode::NOT_FOUND,
            format!("Could not find project: {id}."),
        )
    })
}

async fn show_project(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if id != ctx.project_id() {
        admin(&ctx, "get_project")?;
    }
    Ok(Json(
        json!({"project": project_view(&st, &find_project(&st, &id)?)}),
    ))
}

async fn update_project(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<Value>,
) -> ApiResult<Json<Value>> {
    admin(&ctx, "update_project")?;
    let p = find_project(&st, &id)?;
    let p = match str_field(&b, "/project/name", "name")? {
        Some(n) => st.store.rename_project(&p.id, &n).map_err(k)?,
        None => p,
    };
    Ok(Json(json!({"project": project_view(&st, &p)})))
}

async fn delete_project(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    admin(&ctx, "delete_project")?;
    let p = find_project(&st, &id)?;
    if p.id == ctx.project_id() {
        return Err(kerr(
            StatusCode::FORBIDDEN,
            "a project cannot be deleted with a token scoped to it",
        ));
    }
    st.store.delete_project(&p.id).map_err(k)?;
    tracing::info!(project = %p.id, name = %p.name, "project deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn list_users(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<NameFilter>,
) -> ApiResult<Json<Value>> {
    admin(&ctx, "list_users")?;
    let users: Vec<Value> = st
        .store
        .users()
        .map_err(k)?
        .iter()
        .filter(|u| q.name.as_deref().is_none_or(|n| n == u.name))
        .map(|u| user_view(&st, u))
        .collect();
    Ok(Json(
        json!({"users": users, "links": {"self": format!("{}/users", base(&st)), "next": null, "previous": null}}),
    ))
}

async fn create_user(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<Value>,
) -> ApiResult<Response> {
    admin(&ctx, "create_user")?;
    check_domain(&b, "/user/domain_id")?;
    let name = str_field(&b, "/user/name", "name")?
        .ok_or_else(|| k(Error::invalid("user.name", "is required")))?;
    let password = str_field(&b, "/user/password", "password")?.ok_or_else(|| {
        k(Error::invalid(
            "user.password",
            "is required: novanet's users log in with one",
        ))
    })?;
    let default_project = str_field(&b, "/user/default_project_id", "default_project_id")?
        .map(|p| find_project(&st, &p))
        .transpose()?;
    let (store, n, pw) = (st.store.clone(), name.clone(), password);
    // Hashing the password is slow on purpose: off the async workers.
    let u = tokio::task::spawn_blocking(move || store.create_user(&n, &pw))
        .await
        .map_err(|e| ApiError::internal(e).in_keystone_shape())?
        .map_err(k)?;
    tracing::info!(user = %u.id, name = %u.name, "user created");
    let mut view = user_view(&st, &u);
    if let Some(p) = default_project {
        view["default_project_id"] = json!(p.id);
    }
    Ok((StatusCode::CREATED, Json(json!({ "user": view }))).into_response())
}

fn find_user(st: &AppState, id: &str) -> ApiResult<User> {
    st.store
        .user(id)
        .map_err(|_| kerr(StatusCode::NOT_FOUND, format!("Could not find user: {id}.")))
}

async fn show_user(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if id != ctx.user_id() {
        admin(&ctx, "get_user")?;
    }
    Ok(Json(json!({"user": user_view(&st, &find_user(&st, &id)?)})))
}

async fn update_user(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<Value>,
) -> ApiResult<Json<Value>> {
    admin(&ctx, "update_user")?;
    let u = find_user(&st, &id)?;
    let name = str_field(&b, "/user/name", "name")?;
    let password = str_field(&b, "/user/password", "password")?;
    let store = st.store.clone();
    let u = tokio::task::spawn_blocking(move || {
        store.update_user(&u.id, name.as_deref(), password.as_deref())
    })
    .await
    .map_err(|e| ApiError::internal(e).in_keystone_shape())?
    .map_err(k)?;
    Ok(Json(json!({"user": user_view(&st, &u)})))
}

async fn delete_user(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    admin(&ctx, "delete_user")?;
    let u = find_user(&st, &id)?;
    if u.id == ctx.user_id() {
        return Err(kerr(StatusCode::FORBIDDEN, "a user cannot delete itself"));
    }
    st.store.delete_user(&u.id).map_err(k)?;
    tracing::info!(user = %u.id, name = %u.name, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn user_projects(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if id != ctx.user_id() {
        admin(&ctx, "list_user_projects")?;
    }
    let u = find_user(&st, &id)?;
    let mut ids: Vec<String> = st
        .store
        .role_assignments(Some(&u.id), None)
        .map_err(k)?
        .into_iter()
        .map(|(_, p, _)| p)
        .collect();
    ids.dedup();
    let projects: Vec<Value> = ids
        .iter()
        .filter_map(|p| st.store.project(p).ok())
        .map(|p| project_view(&st, &p))
        .collect();
    Ok(Json(
        json!({"projects": projects, "links": {"self": null, "next": null, "previous": null}}),
    ))
}

async fn list_user_roles(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path((project, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    admin(&ctx, "list_grants")?;
    let (p, u) = (find_project(&st, &project)?, find_user(&st, &user)?);
    let roles: Vec<Value> = st
        .store
        .role_assignments(Some(&u.id), Some(&p.id))
        .map_err(k)?
        .iter()
        .map(|(_, _, r)| role_view(&st, r))
        .collect();
    Ok(Json(
        json!({"roles": roles, "links": {"self": null, "next": null, "previous": null}}),
    ))
}

async fn grant(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path((project, user, role)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    admin(&ctx, "create_grant")?;
    let (p, u, r) = (
        find_project(&st, &project)?,
        find_user(&st, &user)?,
        find_role(&role)?,
    );
    st.store.assign_role(&u.id, &p.id, r).map_err(k)?;
    tracing::info!(user = %u.id, project = %p.id, role = %r, "role assigned");
    Ok(StatusCode::NO_CONTENT)
}

async fn check_grant(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path((project, user, role)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    admin(&ctx, "check_grant")?;
    let (p, u, r) = (
        find_project(&st, &project)?,
        find_user(&st, &user)?,
        find_role(&role)?,
    );
    let has = st
        .store
        .role_assignments(Some(&u.id), Some(&p.id))
        .map_err(k)?
        .iter()
        .any(|(_, _, x)| x == r);
    if has {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(kerr(
            StatusCode::NOT_FOUND,
            "Could not find role assignment.",
        ))
    }
}

async fn revoke(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path((project, user, role)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    admin(&ctx, "revoke_grant")?;
    let (p, u, r) = (
        find_project(&st, &project)?,
        find_user(&st, &user)?,
        find_role(&role)?,
    );
    st.store.remove_role(&u.id, &p.id, r).map_err(|e| match e {
        Error::Store(_) => k(e),
        other => kerr(StatusCode::NOT_FOUND, other.to_string()),
    })?;
    tracing::info!(user = %u.id, project = %p.id, role = %r, "role removed");
    Ok(StatusCode::NO_CONTENT)
}

async fn role_assignments(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let user = q.get("user.id").and_then(Value::as_str);
    let project = q.get("scope.project.id").and_then(Value::as_str);
    if user != Some(ctx.user_id()) {
        admin(&ctx, "list_role_assignments")?;
    }
    let role = q.get("role.id").and_then(Value::as_str);
    // `openstack role assignment list --names` asks for the names too.
    let names = q.contains_key("include_names");
    let domain = json!({"id": "default", "name": "Default"});
    let list: Vec<Value> = st
        .store
        .role_assignments(user, project)
        .map_err(k)?
        .iter()
        .filter(|(_, _, r)| role.is_none_or(|x| x == r))
        .map(|(u, p, r)| {
            let mut a = json!({"role": {"id": r}, "user": {"id": u}, "scope": {"project": {"id": p}},
                   "links": {"assignment": format!("{}/projects/{p}/users/{u}/roles/{r}", base(&st))}});
            if names {
                a["role"]["name"] = json!(r);
                a["user"]["name"] = json!(st.store.user(u).map(|x| x.name).unwrap_or_default());
                a["user"]["domain"] = domain.clone();
                a["scope"]["project"]["name"] =
                    json!(st.store.project(p).map(|x| x.name).unwrap_or_default());
                a["scope"]["project"]["domain"] = domain.clone();
            }
            a
        })
        .collect();
    Ok(Json(
        json!({"role_assignments": list, "links": {"self": null, "next": null, "previous": null}}),
    ))
}
