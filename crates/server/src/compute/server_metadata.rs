//! `servers/{id}/metadata`: a server's key/value metadata, within quota_metadata_items.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use novanet_core::model::{Instance, InstanceUpdate};
use novanet_core::valid::check_name;
use novanet_core::Error;
use serde_json::{json, Map, Value};

use super::servers::find_server;
use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::{unix_now, AppState};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/servers/{id}/metadata",
            get(list_meta).put(replace_meta).post(merge_meta),
        )
        .route(
            "/servers/{id}/metadata/{key}",
            get(show_meta).put(set_meta).delete(delete_meta),
        )
}

fn meta_map(v: Option<&Value>, key: &str) -> ApiResult<BTreeMap<String, String>> {
    let m = v
        .and_then(Value::as_object)
        .ok_or_else(|| Error::invalid(key, format!("the body needs a \"{key}\" object")))?;
    let mut out = BTreeMap::new();
    for (k, v) in m {
        if k.is_empty() || k.chars().count() > 255 {
            return Err(Error::invalid(key, "keys are 1 to 255 characters").into());
        }
        check_name(key, k)?;
        let v = v
            .as_str()
            .ok_or_else(|| Error::invalid(key, format!("the value of {k:?} is not a string")))?;
        check_name(key, v)?;
        out.insert(k.clone(), v.to_string());
    }
    Ok(out)
}

fn within_quota(st: &AppState, i: &Instance, m: &BTreeMap<String, String>) -> ApiResult<()> {
    let quota = super::quotas::limit(st, &i.spec.project_id, "metadata_items")?;
    if quota >= 0 && m.len() as i64 > quota {
        return Err(Error::Forbidden(format!(
            "Quota exceeded for metadata_items: {} items, at most {quota}",
            m.len()
        ))
        .into());
    }
    Ok(())
}

fn save_meta(st: &AppState, i: &Instance, m: BTreeMap<String, String>) -> ApiResult<Instance> {
    within_quota(st, i, &m)?;
    let u = InstanceUpdate {
        metadata: Some(m),
        ..InstanceUpdate::default()
    };
    Ok(st.store.update_instance(&i.uuid, &u, unix_now())?)
}

async fn list_meta(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    Ok(Json(json!({"metadata": i.spec.metadata})))
}

async fn replace_meta(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    let m = meta_map(b.get("metadata"), "metadata")?;
    let i = save_meta(&st, &i, m)?;
    Ok(Json(json!({"metadata": i.spec.metadata})))
}

async fn merge_meta(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    let mut m = i.spec.metadata.clone();
    m.extend(meta_map(b.get("metadata"), "metadata")?);
    let i = save_meta(&st, &i, m)?;
    Ok(Json(json!({"metadata": i.spec.metadata})))
}

async fn show_meta(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    let v = i
        .spec
        .metadata
        .get(&key)
        .ok_or_else(|| ApiError::not_found(format!("Metadata item {key} was not found")))?;
    Ok(Json(json!({"meta": {key: v}})))
}

async fn set_meta(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
    Body(b): Body<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    let item = meta_map(b.get("meta"), "meta")?;
    if item.len() != 1 || !item.contains_key(&key) {
        return Err(Error::invalid(
            "meta",
            format!("give exactly one item, keyed {key:?} as the path"),
        )
        .into());
    }
    let mut m = i.spec.metadata.clone();
    m.extend(item.clone());
    save_meta(&st, &i, m)?;
    Ok(Json(json!({ "meta": item })))
}

async fn delete_meta(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let i = find_server(&st, &ctx, &id)?;
    let mut m = i.spec.metadata.clone();
    if m.remove(&key).is_none() {
        return Err(ApiError::not_found(format!(
            "Metadata item {key} was not found"
        )));
    }
    save_meta(&st, &i, m)?;
    Ok(StatusCode::NO_CONTENT)
}
