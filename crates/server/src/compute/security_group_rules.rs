//! `os-security-group-rules`: adding a rule to a group and removing it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use novanet_core::secgroup::validate_rule;
use novanet_core::Error;
use serde::Deserialize;
use serde_json::{json, Value};

use super::networks::int_field;
use super::ok_empty;
use super::parse_id;
use super::security_groups::own_group;
use super::security_groups::rule_view;
use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/os-security-group-rules", post(create_rule))
        .route(
            "/os-security-group-rules/{id}",
            axum::routing::delete(delete_rule),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleBody {
    security_group_rule: RuleFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFields {
    parent_group_id: Value,
    ip_protocol: Option<String>,
    from_port: Option<Value>,
    to_port: Option<Value>,
    cidr: Option<String>,
    group_id: Option<Value>,
}

fn id_value(field: &str, v: &Value) -> ApiResult<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| Error::invalid(field, format!("{v} is not an id")).into())
}

async fn create_rule(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<RuleBody>,
) -> ApiResult<Json<Value>> {
    let r = b.security_group_rule;
    let parent = own_group(
        &st,
        &ctx,
        &id_value("parent_group_id", &r.parent_group_id)?.to_string(),
    )?;
    let group_id = match &r.group_id {
        None | Some(Value::Null) => None,
        Some(v) => {
            let g = own_group(&st, &ctx, &id_value("group_id", v)?.to_string())?;
            Some(g.id)
        }
    };
    let rule = validate_rule(
        r.ip_protocol.as_deref(),
        int_field("from_port", &r.from_port)?,
        int_field("to_port", &r.to_port)?,
        r.cidr.as_deref(),
        group_id,
    )?;
    let created = st.store.add_security_group_rule(
        parent.id,
        &rule,
        super::quotas::limit(&st, &parent.project_id, "security_group_rules")?,
    )?;
    tracing::info!(
        group = parent.id,
        rule = created.id,
        "security group rule created"
    );
    Ok(Json(json!({ "security_group_rule": rule_view(&created) })))
}

async fn delete_rule(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id("security group rule", &id)?;
    let owner = st
        .store
        .security_groups(ctx.scope())?
        .into_iter()
        .any(|g| g.rules.iter().any(|r| r.id == id));
    if !owner {
        return Err(ApiError::not_found(format!("Rule ({id}) not found")));
    }
    st.store.delete_security_group_rule(id)?;
    tracing::info!(rule = id, "security group rule deleted");
    Ok(ok_empty(StatusCode::ACCEPTED))
}
