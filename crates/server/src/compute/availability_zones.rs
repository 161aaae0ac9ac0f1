//! `os-availability-zone`: `nova` for compute hosts, `internal` for network hosts.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::error::ApiResult;
use crate::identity::Ctx;
use crate::{iso8601, unix_now, AppState};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/os-availability-zone", get(zones))
        .route("/os-availability-zone/detail", get(zones_detail))
}

async fn zones(_ctx: Ctx) -> Json<Value> {
    Json(json!({"availabilityZoneInfo": [
        {"zoneName": "nova", "zoneState": {"available": true}, "hosts": null}
    ]}))
}

/// Compute hosts in `nova`, network hosts in `internal`, as Nova listed its services.
async fn zones_detail(State(st): State<Arc<AppState>>, ctx: Ctx) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-availability-zone:detail")?;
    let now = unix_now();
    let mut zones: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for s in st.store.services()? {
        let (zone, binary) = if s.network_host {
            ("internal", "nova-network")
        } else {
            ("nova", "nova-compute")
        };
        let up = now - s.last_seen < st.cfg.service_down_time as i64;
        zones.entry(zone).or_default().insert(
            s.host.clone(),
            json!({binary: {"available": up, "active": true, "updated_at": iso8601(s.last_seen)}}),
        );
    }
    zones.entry("nova").or_default();
    let info: Vec<Value> = zones
        .into_iter()
        .map(|(z, hosts)| json!({"zoneName": z, "zoneState": {"available": true}, "hosts": hosts}))
        .collect();
    Ok(Json(json!({ "availabilityZoneInfo": info })))
}
