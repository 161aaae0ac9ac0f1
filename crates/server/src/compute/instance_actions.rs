//! `servers/{id}/os-instance-actions`: what was asked of a server, newest first, as nova's
//! instance actions (its events are a hypervisor's and a record has none).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use novanet_core::model::{Instance, InstanceAction};
use serde_json::{json, Value};

use super::servers::find_server;
use crate::error::{ApiError, ApiResult};
use crate::identity::Ctx;
use crate::version::RequestId;
use crate::{iso8601, unix_now, AppState};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/servers/{id}/os-instance-actions", get(list))
        .route("/servers/{id}/os-instance-actions/{request_id}", get(show))
}

/// Keeps `action` as asked by this request. A failure to keep it fails nothing else: the
/// action itself was done.
pub fn record(st: &AppState, ctx: &Ctx, request: &Extension<RequestId>, uuid: &str, action: &str) {
    let a = InstanceAction {
        action: action.to_string(),
        request_id: request.0 .0.clone(),
        user_id: ctx.user_id().to_string(),
        project_id: ctx.project_id().to_string(),
        start_time: unix_now(),
    };
    if let Err(e) = st.store.record_instance_action(uuid, &a) {
        tracing::warn!(server = uuid, action, error = %e, "cannot keep the instance action");
    }
}

fn view(i: &Instance, a: &InstanceAction) -> Value {
    json!({
        "action": a.action, "instance_uuid": i.uuid, "message": null,
        "project_id": a.project_id, "request_id": a.request_id,
        "start_time": iso8601(a.start_time), "user_id": a.user_id,
    })
}

async fn list(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    let actions: Vec<Value> = i.actions.iter().rev().map(|a| view(&i, a)).collect();
    Ok(Json(json!({"instanceActions": actions})))
}

async fn show(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path((id, request_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    let a = i
        .actions
        .iter()
        .find(|a| a.request_id == request_id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Action for request_id {request_id} on instance {} not found",
                i.uuid
            ))
        })?;
    let mut v = view(&i, a);
    // Nova shows the events to admins only before 2.51; a record has none to show.
    if ctx.is_admin() {
        v["events"] = json!([]);
    }
    Ok(Json(json!({"instanceAction": v})))
}
