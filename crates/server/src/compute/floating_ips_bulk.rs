//! `os-floating-ips-bulk`: an admin's view of every floating IP, and adding or removing
//! ranges of them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use novanet_core::floating::parse_range;
use novanet_core::model::FloatingIp;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/os-floating-ips-bulk", get(list_bulk).post(create_bulk))
        .route(
            "/os-floating-ips-bulk/{host}",
            get(list_bulk_host).put(delete_bulk),
        )
}

fn bulk_view(st: &AppState, f: &FloatingIp) -> Value {
    let _ = st;
    json!({"address": f.address, "pool": f.pool, "interface": f.interface, "project_id": f.project_id,
           "instance_uuid": f.instance_uuid, "fixed_ip": f.fixed_ip})
}

async fn list_bulk(State(st): State<Arc<AppState>>, ctx: Ctx) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-floating-ips-bulk")?;
    let all: Vec<Value> = st
        .store
        .floating_ips(None)?
        .iter()
        .map(|f| bulk_view(&st, f))
        .collect();
    Ok(Json(json!({ "floating_ip_info": all })))
}

async fn list_bulk_host(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(host): Path<String>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-floating-ips-bulk")?;
    let all: Vec<Value> = st
        .store
        .floating_ips(None)?
        .iter()
        .filter(|f| f.host.as_deref() == Some(host.as_str()))
        .map(|f| bulk_view(&st, f))
        .collect();
    Ok(Json(json!({ "floating_ip_info": all })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkCreateBody {
    floating_ips_bulk_create: BulkCreate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkCreate {
    ip_range: String,
    pool: Option<String>,
    interface: Option<String>,
}

async fn create_bulk(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<BulkCreateBody>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-floating-ips-bulk")?;
    let b = b.floating_ips_bulk_create;
    let addrs = parse_range("ip_range", &b.ip_range)?;
    let pool = b
        .pool
        .unwrap_or_else(|| st.cfg.default_floating_pool.clone());
    let interface = b
        .interface
        .unwrap_or_else(|| st.cfg.public_interface.clone());
    st.store.create_floating_ips(&pool, &interface, &addrs)?;
    tracing::info!(range = %b.ip_range, pool = %pool, count = addrs.len(), "floating IPs created");
    Ok(Json(
        json!({"floating_ips_bulk_create": {"ip_range": b.ip_range, "pool": pool, "interface": interface}}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkDeleteBody {
    ip_range: String,
}

async fn delete_bulk(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(action): Path<String>,
    Body(b): Body<BulkDeleteBody>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-floating-ips-bulk")?;
    if action != "delete" {
        return Err(ApiError::not_found("Unknown action"));
    }
    let addrs = parse_range("ip_range", &b.ip_range)?;
    st.store.delete_floating_ips(&addrs)?;
    tracing::info!(range = %b.ip_range, count = addrs.len(), "floating IPs deleted");
    Ok(Json(json!({ "floating_ips_bulk_delete": b.ip_range })))
}
