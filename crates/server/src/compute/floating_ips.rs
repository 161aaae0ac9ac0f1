//! `os-floating-ips` and `os-floating-ip-pools`: a project's floating IPs, allocated from
//! and released to the pools.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use novanet_core::model::FloatingIp;
use novanet_core::Error;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ok_empty;
use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/os-floating-ip-pools", get(list_pools))
        .route(
            "/os-floating-ips",
            get(list_floating).post(allocate_floating),
        )
        .route(
            "/os-floating-ips/{id}",
            get(show_floating).delete(release_floating),
        )
}

fn floating_view(f: &FloatingIp) -> Value {
    json!({"id": f.id, "ip": f.address, "pool": f.pool, "fixed_ip": f.fixed_ip, "instance_id": f.instance_uuid})
}

async fn list_pools(State(st): State<Arc<AppState>>, _ctx: Ctx) -> ApiResult<Json<Value>> {
    let pools: Vec<Value> = st
        .store
        .floating_pools()?
        .into_iter()
        .map(|p| json!({"name": p}))
        .collect();
    Ok(Json(json!({ "floating_ip_pools": pools })))
}

async fn list_floating(State(st): State<Arc<AppState>>, ctx: Ctx) -> ApiResult<Json<Value>> {
    let fl: Vec<Value> = st
        .store
        .floating_ips(Some(ctx.project_id()))?
        .iter()
        .map(floating_view)
        .collect();
    Ok(Json(json!({ "floating_ips": fl })))
}

fn own_floating(st: &AppState, ctx: &Ctx, id: &str) -> ApiResult<FloatingIp> {
    let f = st.store.floating_ip(id)?;
    if f.project_id.as_deref() != Some(ctx.project_id()) {
        return Err(ApiError::not_found(format!(
            "Floating IP {id} could not be found."
        )));
    }
    Ok(f)
}

async fn show_floating(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({ "floating_ip": floating_view(&own_floating(&st, &ctx, &id)?) }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AllocateBody {
    pool: Option<String>,
}

async fn allocate_floating(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<Option<AllocateBody>>,
) -> ApiResult<Json<Value>> {
    let pool = b
        .and_then(|b| b.pool)
        .unwrap_or_else(|| st.cfg.default_floating_pool.clone());
    let f = st
        .store
        .allocate_floating_ip(
            ctx.project_id(),
            &pool,
            super::quotas::limit(&st, ctx.project_id(), "floating_ips")?,
        )
        .map_err(|e| match e {
            Error::Exhausted(_) => {
                ApiError::not_found(format!("No more floating IPs in pool {pool}."))
            }
            other => other.into(),
        })?;
    tracing::info!(address = %f.address, pool = %f.pool, "floating IP allocated");
    Ok(Json(json!({ "floating_ip": floating_view(&f) })))
}

async fn release_floating(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let f = own_floating(&st, &ctx, &id)?;
    if f.auto_assigned {
        return Err(ApiError::forbidden(
            "Cannot disassociate auto assigned floating IP",
        ));
    }
    st.store
        .release_floating_ip(&f.address, Some(ctx.project_id()))?;
    tracing::info!(address = %f.address, "floating IP released");
    Ok(ok_empty(StatusCode::ACCEPTED))
}
