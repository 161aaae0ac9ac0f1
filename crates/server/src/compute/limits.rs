//! `limits`: the absolute limits of a project (no rate limits).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::identity::Ctx;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/limits", get(limits))
}

async fn limits(State(st): State<Arc<AppState>>, ctx: Ctx) -> ApiResult<Json<Value>> {
    let absolute = super::quotas::absolute(&st, ctx.project_id())?;
    Ok(Json(json!({"limits": {"rate": [], "absolute": absolute}})))
}
