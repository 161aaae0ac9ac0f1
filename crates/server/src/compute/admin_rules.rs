//! The rules an admin keeps outside any group: `os-security-group-default-rules` and
//! `os-provider-firewall-rules`, one set of handlers for both.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use novanet_core::secgroup::validate_rule;
use novanet_store::SecurityGroupRule;
use serde::Deserialize;
use serde_json::{json, Value};

use super::networks::int_field;
use super::ok_empty;
use super::parse_id;
use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/os-security-group-default-rules",
            get(|s, c| list_admin_rules(AdminRules::Default, s, c))
                .post(|s, c, b| create_admin_rule(AdminRules::Default, s, c, b)),
        )
        .route(
            "/os-security-group-default-rules/{id}",
            get(|s, c, p| show_admin_rule(AdminRules::Default, s, c, p))
                .delete(|s, c, p| delete_admin_rule(AdminRules::Default, s, c, p)),
        )
        .route(
            "/os-provider-firewall-rules",
            get(|s, c| list_admin_rules(AdminRules::Provider, s, c))
                .post(|s, c, b| create_admin_rule(AdminRules::Provider, s, c, b)),
        )
        .route(
            "/os-provider-firewall-rules/{id}",
            get(|s, c, p| show_admin_rule(AdminRules::Provider, s, c, p))
                .delete(|s, c, p| delete_admin_rule(AdminRules::Provider, s, c, p)),
        )
}

/// The rules an admin keeps outside any group: the defaults copied into each new `default`
/// group (Nova's os-security-group-default-rules), and the provider rules dropped for every
/// instance (nova-network's provider_fw_rules, here under os-provider-firewall-rules).
#[derive(Clone, Copy)]
enum AdminRules {
    Default,
    Provider,
}

impl AdminRules {
    /// The body's key for one rule; the list's key adds an `s`.
    fn key(self) -> &'static str {
        match self {
            AdminRules::Default => "security_group_default_rule",
            AdminRules::Provider => "provider_firewall_rule",
        }
    }

    fn policy(self) -> &'static str {
        match self {
            AdminRules::Default => "os_compute_api:os-security-group-default-rules",
            AdminRules::Provider => "os_compute_api:os-provider-firewall-rules",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            AdminRules::Default => "Default rule",
            AdminRules::Provider => "Provider firewall rule",
        }
    }

    fn list(self, st: &AppState) -> ApiResult<Vec<SecurityGroupRule>> {
        Ok(match self {
            AdminRules::Default => st.store.default_rules()?,
            AdminRules::Provider => st.store.provider_rules()?,
        })
    }
}

fn admin_rule_view(r: &SecurityGroupRule) -> Value {
    json!({"id": r.id, "ip_protocol": r.protocol, "from_port": r.from_port, "to_port": r.to_port,
           "ip_range": r.cidr.as_ref().map_or(json!({}), |c| json!({"cidr": c}))})
}

async fn list_admin_rules(
    kind: AdminRules,
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    ctx.require_admin(kind.policy())?;
    let rules: Vec<Value> = kind.list(&st)?.iter().map(admin_rule_view).collect();
    Ok(Json(json!({ format!("{}s", kind.key()): rules })))
}

/// Either body; the route decides which key it must carry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminRuleBody {
    security_group_default_rule: Option<AdminRuleFields>,
    provider_firewall_rule: Option<AdminRuleFields>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminRuleFields {
    ip_protocol: String,
    from_port: Value,
    to_port: Value,
    cidr: Option<String>,
}

async fn create_admin_rule(
    kind: AdminRules,
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<AdminRuleBody>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin(kind.policy())?;
    let r = match kind {
        AdminRules::Default => b.security_group_default_rule,
        AdminRules::Provider => b.provider_firewall_rule,
    }
    .ok_or_else(|| ApiError::bad_request(format!("the body needs a {} object", kind.key())))?;
    let rule = validate_rule(
        Some(&r.ip_protocol),
        int_field("from_port", &Some(r.from_port))?,
        int_field("to_port", &Some(r.to_port))?,
        r.cidr.as_deref(),
        None,
    )?;
    let created = match kind {
        AdminRules::Default => st.store.add_default_rule(&rule)?,
        AdminRules::Provider => st.store.add_provider_rule(&rule)?,
    };
    tracing::info!(kind = kind.key(), rule = created.id, "admin rule created");
    Ok(Json(json!({ kind.key(): admin_rule_view(&created) })))
}

async fn show_admin_rule(
    kind: AdminRules,
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin(kind.policy())?;
    let id = parse_id("rule", &id)?;
    let r = kind
        .list(&st)?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::not_found(format!("{} ({id}) not found", kind.noun())))?;
    Ok(Json(json!({ kind.key(): admin_rule_view(&r) })))
}

async fn delete_admin_rule(
    kind: AdminRules,
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    ctx.require_admin(kind.policy())?;
    let id = parse_id("rule", &id)?;
    match kind {
        AdminRules::Default => st.store.delete_default_rule(id)?,
        AdminRules::Provider => st.store.delete_provider_rule(id)?,
    }
    tracing::info!(kind = kind.key(), rule = id, "admin rule deleted");
    Ok(ok_empty(StatusCode::NO_CONTENT))
}
