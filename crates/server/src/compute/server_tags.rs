//! `servers/{id}/tags` (2.26).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use novanet_core::model::{Instance, InstanceUpdate};
use novanet_core::valid::check_name;
use novanet_core::Error;
use serde_json::{json, Map, Value};

use super::servers::find_server;
use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::version::Microversion;
use crate::{unix_now, AppState};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/servers/{id}/tags",
            get(list_tags).put(replace_tags).delete(delete_tags),
        )
        .route(
            "/servers/{id}/tags/{tag}",
            get(check_tag).put(add_tag).delete(delete_tag),
        )
}

/// Nova's tag rule: 1 to 60 characters, no `/` or `,`; at most 50 a server.
const MAX_TAGS: usize = 50;

fn check_tag_text(t: &str) -> ApiResult<()> {
    if t.is_empty() || t.chars().count() > 60 || t.contains('/') || t.contains(',') {
        return Err(Error::invalid(
            "tag",
            format!("{t:?}: a tag is 1 to 60 characters without '/' or ','"),
        )
        .into());
    }
    check_name("tag", t)?;
    Ok(())
}

fn tags_server(st: &AppState, ctx: &Ctx, v: Microversion, id: &str) -> ApiResult<Instance> {
    if !v.at_least(26) {
        return Err(ApiError::not_found(
            "Server tags need microversion 2.26 or later.",
        ));
    }
    find_server(st, ctx, id)
}

fn save_tags(st: &AppState, i: &Instance, tags: Vec<String>) -> ApiResult<Instance> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_TAGS} tags a server"
        )));
    }
    let u = InstanceUpdate {
        tags: Some(tags),
        ..InstanceUpdate::default()
    };
    Ok(st.store.update_instance(&i.uuid, &u, unix_now())?)
}

async fn list_tags(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let i = tags_server(&st, &ctx, v, &id)?;
    Ok(Json(json!({"tags": i.spec.tags})))
}

async fn replace_tags(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Path(id): Path<String>,
    Body(b): Body<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let i = tags_server(&st, &ctx, v, &id)?;
    let list = b
        .get("tags")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid("tags", "the body needs a \"tags\" list"))?;
    let mut tags = Vec::new();
    for t in list {
        let t = t
            .as_str()
            .ok_or_else(|| Error::invalid("tags", format!("{t} is not a string")))?;
        check_tag_text(t)?;
        if !tags.iter().any(|x| x == t) {
            tags.push(t.to_string());
        }
    }
    let i = save_tags(&st, &i, tags)?;
    Ok(Json(json!({"tags": i.spec.tags})))
}

async fn delete_tags(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let i = tags_server(&st, &ctx, v, &id)?;
    save_tags(&st, &i, Vec::new())?;
    Ok(StatusCode::NO_CONTENT)
}

async fn check_tag(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let i = tags_server(&st, &ctx, v, &id)?;
    if i.spec.tags.contains(&tag) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("Tag {tag} not found")))
    }
}

async fn add_tag(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<Response> {
    let i = tags_server(&st, &ctx, v, &id)?;
    check_tag_text(&tag)?;
    if i.spec.tags.contains(&tag) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut tags = i.spec.tags.clone();
    tags.push(tag.clone());
    save_tags(&st, &i, tags)?;
    let mut r = StatusCode::CREATED.into_response();
    let loc = format!("{}/v2.1/servers/{}/tags/{tag}", st.public_base, i.uuid);
    if let Ok(h) = HeaderValue::from_str(&loc) {
        r.headers_mut().insert("location", h);
    }
    Ok(r)
}

async fn delete_tag(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let i = tags_server(&st, &ctx, v, &id)?;
    if !i.spec.tags.contains(&tag) {
        return Err(ApiError::not_found(format!("Tag {tag} not found")));
    }
    let tags = i.spec.tags.iter().filter(|t| **t != tag).cloned().collect();
    save_tags(&st, &i, tags)?;
    Ok(StatusCode::NO_CONTENT)
}
