//! `os-security-groups`: a project's groups with their rules, and the groups of one server.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use novanet_core::secgroup::validate_group_text;
use novanet_core::Error;
use novanet_store::{SecurityGroup, SecurityGroupRule};
use serde::Deserialize;
use serde_json::{json, Value};

use super::ok_empty;
use super::parse_id;
use super::servers::find_server;
use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/os-security-groups",
            get(list_groups).post(create_group).delete(no_group_named),
        )
        .route(
            "/os-security-groups/{id}",
            get(show_group).put(update_group).delete(delete_group),
        )
        .route("/servers/{id}/os-security-groups", get(server_groups))
}

pub(crate) fn rule_view(r: &SecurityGroupRule) -> Value {
    json!({
        "id": r.id, "parent_group_id": r.parent_group_id, "ip_protocol": r.protocol,
        "from_port": r.from_port, "to_port": r.to_port,
        "group": match (&r.group_name, &r.group_project) {
            (Some(n), Some(p)) => json!({"name": n, "tenant_id": p}),
            _ => json!({}),
        },
        "ip_range": r.cidr.as_ref().map_or(json!({}), |c| json!({"cidr": c})),
    })
}

fn group_view(g: &SecurityGroup) -> Value {
    json!({"id": g.id, "name": g.name, "description": g.description, "tenant_id": g.project_id,
           "rules": g.rules.iter().map(rule_view).collect::<Vec<_>>()})
}

#[derive(Deserialize)]
struct AllTenants {
    all_tenants: Option<String>,
}

async fn list_groups(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<AllTenants>,
) -> ApiResult<Json<Value>> {
    st.store.ensure_default_group(ctx.project_id())?;
    let all = ctx.is_admin() && q.all_tenants.is_some_and(|v| v != "0" && v != "false");
    let scope = if all { None } else { Some(ctx.project_id()) };
    let groups: Vec<Value> = st
        .store
        .security_groups(scope)?
        .iter()
        .map(group_view)
        .collect();
    Ok(Json(json!({ "security_groups": groups })))
}

pub(crate) fn own_group(st: &AppState, ctx: &Ctx, id: &str) -> ApiResult<SecurityGroup> {
    let g = st.store.security_group(parse_id("security group", id)?)?;
    if !ctx.is_admin() && g.project_id != ctx.project_id() {
        return Err(ApiError::not_found(format!(
            "Security group {id} not found."
        )));
    }
    Ok(g)
}

async fn show_group(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({ "security_group": group_view(&own_group(&st, &ctx, &id)?) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupBody {
    security_group: GroupFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFields {
    name: String,
    description: String,
}

async fn create_group(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<GroupBody>,
) -> ApiResult<Json<Value>> {
    let name = validate_group_text("name", &b.security_group.name)?;
    let desc = validate_group_text("description", &b.security_group.description)?;
    let g = st.store.create_security_group(
        ctx.project_id(),
        &name,
        &desc,
        super::quotas::limit(&st, ctx.project_id(), "security_groups")?,
    )?;
    tracing::info!(group = g.id, name = %g.name, project = %g.project_id, "security group created");
    Ok(Json(json!({ "security_group": group_view(&g) })))
}

/// Nova's rename: clients send this PUT on every update of a group, changed or not.
async fn update_group(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<GroupBody>,
) -> ApiResult<Json<Value>> {
    let g = own_group(&st, &ctx, &id)?;
    let name = validate_group_text("name", &b.security_group.name)?;
    let desc = validate_group_text("description", &b.security_group.description)?;
    if g.name == "default" && name != "default" {
        return Err(Error::invalid("name", "the default group cannot be renamed").into());
    }
    let g = st.store.update_security_group(g.id, &name, &desc)?;
    tracing::info!(group = g.id, name = %g.name, "security group updated");
    Ok(Json(json!({ "security_group": group_view(&g) })))
}

/// `DELETE /os-security-groups/` names no group: Nova answers 404, not 405.
async fn no_group_named(_ctx: Ctx) -> ApiError {
    ApiError::not_found("Security group  not found (no id given).")
}

async fn delete_group(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let g = own_group(&st, &ctx, &id)?;
    st.store.delete_security_group(g.id)?;
    tracing::info!(group = g.id, name = %g.name, project = %g.project_id, "security group deleted");
    Ok(ok_empty(StatusCode::ACCEPTED))
}

async fn server_groups(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    let groups: Vec<Value> = st
        .store
        .instance_security_groups(&i.uuid)?
        .iter()
        .map(group_view)
        .collect();
    Ok(Json(json!({ "security_groups": groups })))
}
