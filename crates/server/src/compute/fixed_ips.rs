//! `os-fixed-ips`: one fixed address, and reserving or unreserving it (admin).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::ok_empty;
use super::one_action;
use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::version::Microversion;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/os-fixed-ips/{address}", get(show_fixed_ip))
        .route("/os-fixed-ips/{address}/action", post(fixed_ip_action))
}

async fn show_fixed_ip(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Path(address): Path<String>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-fixed-ips")?;
    let f = st.store.fixed_ip(&address)?;
    let mut view = json!({
        "address": f.fixed.address, "cidr": f.network_cidr, "hostname": f.hostname,
        "host": f.instance_host,
    });
    // `reserved` came with 2.4.
    if v.at_least(4) {
        view["reserved"] = json!(f.fixed.reserved);
    }
    Ok(Json(json!({ "fixed_ip": view })))
}

async fn fixed_ip_action(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(address): Path<String>,
    Body(b): Body<Map<String, Value>>,
) -> ApiResult<Response> {
    ctx.require_admin("os_compute_api:os-fixed-ips")?;
    let reserve = match one_action(&b)?.0.as_str() {
        "reserve" => true,
        "unreserve" => false,
        _ => {
            return Err(ApiError::bad_request(
                "the action must be reserve or unreserve",
            ))
        }
    };
    st.store.set_fixed_reserved(&address, reserve)?;
    tracing::info!(address = %address, reserved = reserve, "fixed IP reservation changed");
    Ok(ok_empty(StatusCode::ACCEPTED))
}
