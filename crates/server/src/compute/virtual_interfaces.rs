//! `servers/{id}/os-virtual-interfaces`: a server's VIFs and their MACs.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::servers::find_server;
use crate::error::ApiResult;
use crate::identity::Ctx;
use crate::version::Microversion;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/servers/{id}/os-virtual-interfaces", get(list_vifs))
}

async fn list_vifs(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    let mut seen = std::collections::BTreeSet::new();
    let vifs: Vec<Value> = st
        .store
        .instance_addresses(&i.uuid)?
        .into_iter()
        .filter(|a| seen.insert(a.vif_uuid.clone()))
        .map(|a| {
            let mut x = json!({"id": a.vif_uuid, "mac_address": a.mac, "OS-EXT-VIF-NET:net_id": a.network_uuid});
            // `net_id` came with 2.12.
            if v.at_least(12) {
                x["net_id"] = json!(a.network_uuid);
            }
            x
        })
        .collect();
    Ok(Json(json!({ "virtual_interfaces": vifs })))
}
