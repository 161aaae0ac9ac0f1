//! `os-services`: the hosts that reported, as Nova listed nova-compute and nova-network.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::identity::Ctx;
use crate::{iso8601, unix_now, AppState};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/os-services", get(list_services))
}

#[derive(Deserialize)]
struct ServiceQuery {
    binary: Option<String>,
    host: Option<String>,
}

async fn list_services(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ServiceQuery>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-services")?;
    let now = unix_now();
    let services: Vec<Value> = st
        .store
        .services()?
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": i + 1, "binary": if s.network_host { "nova-network" } else { "nova-compute" },
                   "host": s.host, "zone": "nova", "status": "enabled",
                   "state": if now - s.last_seen < st.cfg.service_down_time as i64 { "up" } else { "down" },
                   "updated_at": iso8601(s.last_seen), "disabled_reason": null})
        })
        .filter(|s: &Value| {
            q.binary.as_deref().is_none_or(|b| s["binary"] == b)
                && q.host.as_deref().is_none_or(|h| s["host"] == h)
        })
        .collect();
    Ok(Json(json!({ "services": services })))
}
