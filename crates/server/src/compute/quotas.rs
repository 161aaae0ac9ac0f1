//! `os-quota-sets` as Nova served it up to 2.35: a project's limits (the configured defaults
//! unless an admin set its own), their defaults and their use; `limits`' absolute part.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use novanet_core::Error;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/os-quota-sets/{tenant_id}",
            get(show).put(update).delete(revert),
        )
        .route("/os-quota-sets/{tenant_id}/defaults", get(defaults))
        .route("/os-quota-sets/{tenant_id}/detail", get(detail))
        .route(
            "/os-quota-class-sets/{id}",
            get(show_class).put(update_class),
        )
}

/// Quota classes: only `default`, whose limits are every project's defaults. Kept as the
/// overrides of a reserved project id no Keystone project can have.
const DEFAULT_CLASS: &str = "quota-class:default";

fn shown(k: &str) -> bool {
    // `networks` left the quota set with nova-network's API (Tempest's schema refuses it);
    // novanet still enforces it, as quota_networks or an override set through the store.
    k != "networks"
}

fn class_limits(st: &AppState) -> ApiResult<BTreeMap<String, i64>> {
    let mut m: BTreeMap<String, i64> = st
        .cfg
        .default_quotas()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    for (k, v) in st.store.quota_overrides(DEFAULT_CLASS)? {
        m.insert(k, v);
    }
    Ok(m)
}

async fn show_class(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-quota-class-sets:show")?;
    Ok(Json(
        json!({"quota_class_set": quota_set(&id, &class_limits(&st)?)}),
    ))
}

async fn update_class(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-quota-class-sets:update")?;
    if id != "default" {
        return Err(ApiError::bad_request("only the default quota class exists"));
    }
    let set = b
        .get("quota_class_set")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            Error::invalid(
                "quota_class_set",
                "the body needs a \"quota_class_set\" object",
            )
        })?;
    let changes = checked_changes(&st, set)?;
    for (k, n) in &changes {
        st.store.set_quota(DEFAULT_CLASS, k, *n)?;
    }
    tracing::info!(changes = ?changes, "default quotas changed");
    let mut limits = class_limits(&st)?;
    limits.remove("id");
    Ok(Json(
        json!({"quota_class_set": quota_set_without_id(&limits)}),
    ))
}

fn quota_set_without_id(limits: &BTreeMap<String, i64>) -> Value {
    let mut v = quota_set("", limits);
    v.as_object_mut().map(|o| o.remove("id"));
    v
}

/// Every value of a quota set body checked before any is written: a bad one changes nothing.
fn checked_changes(st: &AppState, set: &Map<String, Value>) -> ApiResult<Vec<(String, i64)>> {
    let known: Vec<&str> = st.cfg.default_quotas().iter().map(|(k, _)| *k).collect();
    let mut changes = Vec::new();
    for (k, v) in set {
        // nova's `force` skips its in-use check; novanet has none to skip.
        if k == "force" || k == "id" {
            continue;
        }
        if !known.contains(&k.as_str()) {
            return Err(Error::invalid(
                k.as_str(),
                format!("is not a quota (one of {})", known.join(", ")),
            )
            .into());
        }
        let n = v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            // Nova's column is a 32-bit integer.
            .filter(|n| (-1..=i64::from(i32::MAX)).contains(n))
            .ok_or_else(|| Error::invalid(k.as_str(), format!("{v} is not -1 or a count")))?;
        changes.push((k.clone(), n));
    }
    Ok(changes)
}

/// The project's limit for one resource: its own, else the configured default (-1 is
/// unlimited).
pub fn limit(st: &AppState, project_id: &str, resource: &str) -> ApiResult<i64> {
    Ok(limits_of(st, project_id)?
        .get(resource)
        .copied()
        .unwrap_or(-1))
}

/// Every limit of a project, read once (its overrides over the class over the configuration).
pub fn limits_of(st: &AppState, project_id: &str) -> ApiResult<BTreeMap<String, i64>> {
    let mut m = class_limits(st)?;
    for (k, v) in st.store.quota_overrides(project_id)? {
        m.insert(k, v);
    }
    Ok(m)
}

/// What a project's instances use: (instances, cores, ram MiB).
pub fn instance_usage(st: &AppState, project_id: &str) -> ApiResult<(i64, i64, i64)> {
    let instances = st.store.instances(Some(project_id))?;
    let cores_ram = |i: &novanet_core::model::Instance| {
        super::FLAVORS
            .iter()
            .find(|f| Some(f.0) == i.spec.flavor_id.as_deref())
            .map_or((1, 512), |f| (i64::from(f.4), i64::from(f.2)))
    };
    let (cores, ram) = instances
        .iter()
        .map(cores_ram)
        .fold((0, 0), |(c, r), (c2, r2)| (c + c2, r + r2));
    Ok((instances.len() as i64, cores, ram))
}

/// The networks a project owns (its tenant networks), against `quota_networks`.
pub fn project_networks(st: &AppState, project_id: &str) -> ApiResult<i64> {
    Ok(st
        .store
        .networks()?
        .iter()
        .filter(|n| n.project_id.as_deref() == Some(project_id))
        .count() as i64)
}

/// What a project uses of the resources novanet counts.
pub fn usage(st: &AppState, project_id: &str) -> ApiResult<BTreeMap<&'static str, i64>> {
    let (instances, cores, ram) = instance_usage(st, project_id)?;
    Ok(BTreeMap::from([
        ("instances", instances),
        ("cores", cores),
        ("ram", ram),
        (
            "floating_ips",
            st.store.floating_ips(Some(project_id))?.len() as i64,
        ),
        (
            "security_groups",
            st.store.security_groups(Some(project_id))?.len() as i64,
        ),
        ("networks", project_networks(st, project_id)?),
    ]))
}

/// A project id from the path: only admins look at or change another project's.
fn project(st: &AppState, ctx: &Ctx, tenant: &str, what: &str) -> ApiResult<String> {
    if tenant != ctx.project_id() && !ctx.is_admin() {
        return Err(ApiError::forbidden(format!(
            "Policy doesn't allow os_compute_api:os-quota-sets:{what} to be performed on another project."
        )));
    }
    // Keystone ids or names (novaclient passes ids); an unknown one still has defaults, as
    // Nova never checked the project.
    Ok(st
        .store
        .project(tenant)
        .map(|p| p.id)
        .unwrap_or_else(|_| tenant.to_string()))
}

fn quota_set(id: &str, limits: &BTreeMap<String, i64>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    for (k, v) in limits.iter().filter(|(k, _)| shown(k)) {
        m.insert(k.clone(), json!(v));
    }
    Value::Object(m)
}

async fn show(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Value>> {
    let p = project(&st, &ctx, &tenant, "show")?;
    Ok(Json(
        json!({"quota_set": quota_set(&tenant, &limits_of(&st, &p)?)}),
    ))
}

async fn detail(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Value>> {
    let p = project(&st, &ctx, &tenant, "detail")?;
    let used = usage(&st, &p)?;
    let mut m = Map::new();
    m.insert("id".into(), json!(tenant));
    for (k, v) in limits_of(&st, &p)?.into_iter().filter(|(k, _)| shown(k)) {
        let in_use = used.get(k.as_str()).copied().unwrap_or(0);
        m.insert(k, json!({"limit": v, "in_use": in_use, "reserved": 0}));
    }
    Ok(Json(json!({ "quota_set": Value::Object(m) })))
}

async fn defaults(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(tenant): Path<String>,
) -> Json<Value> {
    let d = class_limits(&st).unwrap_or_default();
    Json(json!({"quota_set": quota_set(&tenant, &d)}))
}

async fn update(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(tenant): Path<String>,
    Body(b): Body<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-quota-sets:update")?;
    let p = project(&st, &ctx, &tenant, "update")?;
    let set = b
        .get("quota_set")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::invalid("quota_set", "the body needs a \"quota_set\" object"))?;
    let changes = checked_changes(&st, set)?;
    for (k, n) in &changes {
        st.store.set_quota(&p, k, *n)?;
    }
    tracing::info!(project = %p, changes = ?changes, "quotas changed");
    // Nova's update answers without the id.
    Ok(Json(
        json!({"quota_set": quota_set_without_id(&limits_of(&st, &p)?)}),
    ))
}

async fn revert(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(tenant): Path<String>,
) -> ApiResult<Response> {
    ctx.require_admin("os_compute_api:os-quota-sets:delete")?;
    let p = project(&st, &ctx, &tenant, "delete")?;
    st.store.delete_quotas(&p)?;
    tracing::info!(project = %p, "quotas reverted to the defaults");
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET /limits`' absolute limits and use, as Nova reported them.
pub fn absolute(st: &AppState, project_id: &str) -> ApiResult<Value> {
    let l = limits_of(st, project_id)?;
    let u = usage(st, project_id)?;
    let lim = |k: &str| l.get(k).copied().unwrap_or(-1);
    let used = |k: &str| u.get(k).copied().unwrap_or(0);
    Ok(json!({
        "maxTotalInstances": lim("instances"), "totalInstancesUsed": used("instances"),
        "maxTotalCores": lim("cores"), "totalCoresUsed": used("cores"),
        "maxTotalRAMSize": lim("ram"), "totalRAMUsed": used("ram"),
        "maxTotalFloatingIps": lim("floating_ips"), "totalFloatingIpsUsed": used("floating_ips"),
        "maxSecurityGroups": lim("security_groups"), "totalSecurityGroupsUsed": used("security_groups"),
        "maxSecurityGroupRules": lim("security_group_rules"),
        "maxTotalKeypairs": lim("key_pairs"), "maxServerMeta": lim("metadata_items"),
        "maxImageMeta": 128, "maxPersonality": lim("injected_files"),
        "maxPersonalitySize": lim("injected_file_content_bytes"),
        "maxServerGroups": lim("server_groups"), "maxServerGroupMembers": lim("server_group_members"),
        "totalServerGroupsUsed": 0,
    }))
}
