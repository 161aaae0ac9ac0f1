//! `servers/{id}/ips`: a server's addresses by network.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::servers::find_server;
use super::servers::server_addresses;
use crate::error::{ApiError, ApiResult};
use crate::identity::Ctx;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/servers/{id}/ips", get(ips))
        .route("/servers/{id}/ips/{network}", get(ips_of))
}

async fn ips(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    Ok(Json(
        json!({"addresses": bare_addresses(server_addresses(&st, &i)?)}),
    ))
}

async fn ips_of(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path((id, network)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    let all = bare_addresses(server_addresses(&st, &i)?);
    let addrs = all.get(&network).ok_or_else(|| {
        ApiError::not_found(format!(
            "There are no addresses on network {network} for this server."
        ))
    })?;
    Ok(Json(json!({ network: addrs })))
}

/// Nova's `ips` shows `version` and `addr` only (the server view adds type and MAC).
fn bare_addresses(mut a: BTreeMap<String, Vec<Value>>) -> BTreeMap<String, Vec<Value>> {
    for list in a.values_mut() {
        for e in list.iter_mut() {
            if let Some(o) = e.as_object_mut() {
                o.retain(|k, _| k == "addr" || k == "version");
            }
        }
    }
    a
}
