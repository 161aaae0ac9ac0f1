//! The parts of Nova's server API a record of a server needs beyond create, show and delete:
//! rename and access addresses (`PUT /servers/{id}`), metadata, tags (2.26), `ips`, list
//! filters as Nova has them, availability zones and the extension list.

use std::collections::BTreeMap;
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

use crate::compute::{find_server, server_addresses, server_view};
use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::version::Microversion;
use crate::{iso8601, unix_now, AppState};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/servers/{id}/metadata",
            get(list_meta).put(replace_meta).post(merge_meta),
        )
        .route(
            "/servers/{id}/metadata/{key}",
            get(show_meta).put(set_meta).delete(delete_meta),
        )
        .route(
            "/servers/{id}/tags",
            get(list_tags).put(replace_tags).delete(delete_tags),
        )
        .route(
            "/servers/{id}/tags/{tag}",
            get(check_tag).put(add_tag).delete(delete_tag),
        )
        .route("/servers/{id}/ips", get(ips))
        .route("/servers/{id}/ips/{network}", get(ips_of))
        .route("/os-availability-zone", get(zones))
        .route("/os-availability-zone/detail", get(zones_detail))
        .route("/extensions", get(extensions))
        .route("/extensions/{alias}", get(extension))
}

// ---- PUT /servers/{id} ----------------------------------------------------------------------

fn opt_address(field: &str, v: &Value, v6: bool) -> ApiResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => {
            // Kept in canonical form, as Nova does (`::babe:dc0c:1602`).
            let canonical = if v6 {
                s.parse::<std::net::Ipv6Addr>().map(|a| a.to_string()).ok()
            } else {
                s.parse::<std::net::Ipv4Addr>().map(|a| a.to_string()).ok()
            };
            if let Some(c) = canonical {
                Ok(Some(c))
            } else {
                Err(Error::invalid(
                    field,
                    format!("{s:?} is not an IPv{} address", if v6 { 6 } else { 4 }),
                )
                .into())
            }
        }
        other => Err(Error::invalid(field, format!("{other} is not an address")).into()),
    }
}

/// A server name or description as Nova takes them: at most 255 characters, no control
/// characters; a name is not empty.
pub fn check_server_text(field: &str, v: &Value, may_be_empty: bool) -> ApiResult<String> {
    let s = v
        .as_str()
        .ok_or_else(|| Error::invalid(field, format!("{v} is not a string")))?;
    if !may_be_empty && s.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty").into());
    }
    check_name(field, s)?;
    Ok(s.to_string())
}

/// An access address a body gives: absent (`None`), cleared (`Some(None)`) or set.
pub type AccessIp = Option<Option<String>>;

/// The access addresses a create or update body gives.
pub fn access_ips(b: &Map<String, Value>) -> ApiResult<(AccessIp, AccessIp)> {
    let v4 = b
        .get("accessIPv4")
        .map(|v| opt_address("accessIPv4", v, false))
        .transpose()?;
    let v6 = b
        .get("accessIPv6")
        .map(|v| opt_address("accessIPv6", v, true))
        .transpose()?;
    Ok((v4, v6))
}

pub async fn update_server(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Path(id): Path<String>,
    Body(b): Body<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    let s = b
        .get("server")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::invalid("server", "the body needs a \"server\" object"))?;
    let mut allowed = vec!["name", "accessIPv4", "accessIPv6", "OS-DCF:diskConfig"];
    if v.at_least(19) {
        allowed.push("description");
    }
    if let Some(k) = s.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Error::invalid(k.as_str(), "cannot be updated").into());
    }
    let (v4, v6) = access_ips(s)?;
    let update = InstanceUpdate {
        name: s
            .get("name")
            .map(|n| check_server_text("name", n, false))
            .transpose()?,
        access_ip_v4: v4,
        access_ip_v6: v6,
        description: s
            .get("description")
            .map(|d| match d {
                Value::Null => Ok(None),
                d => check_server_text("description", d, true).map(Some),
            })
            .transpose()?,
        ..InstanceUpdate::default()
    };
    let i = st.store.update_instance(&i.uuid, &update, unix_now())?;
    // Nova's update answers with the base view, without the extensions' attributes.
    let mut view = server_view(&st, &i, v, &ctx)?;
    if let Some(o) = view.as_object_mut() {
        o.retain(|k, _| {
            !k.starts_with("OS-EXT-")
                && k != "key_name"
                && k != "security_groups"
                && k != "host_status"
        });
    }
    Ok(Json(json!({ "server": view })))
}

// ---- metadata ---------------------------------------------------------------------------------

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
    let quota = crate::quotas::limit(st, &i.spec.project_id, "metadata_items")?;
    if quota >= 0 && m.len() as i64 > quota {
        return Err(Error::OverLimit(format!(
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

// ---- tags (2.26) ------------------------------------------------------------------------------

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

// ---- ips --------------------------------------------------------------------------------------

async fn ips(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    Ok(Json(
        json!({"addresses": bare_addresses(server_addresses(&st, &i)?)}),
    ))
}

async fn ips_of(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path((id, network)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    let all = bare_addresses(server_addresses(&st, &i)?);
    let addrs = all.get(&network).ok_or_else(|| {
        ApiError::not_found(format!(
            "There are no addresses on network {network} for this server."
        ))
    })?;
    Ok(Json(json!({ network: addrs })))
}

/// Nova's `ips` shows `version` and `addr` only (the server view adds type and MAC).
fn bare_addresses(mut a: BTreeMap<String, Vec<Value>>) -> BTreeMap<String, Vec<Value>> {
    for list in a.values_mut() {
        for e in list.iter_mut() {
            if let Some(o) = e.as_object_mut() {
                o.retain(|k, _| k == "addr" || k == "version");
            }
        }
    }
    a
}

// ---- availability zones -----------------------------------------------------------------------

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

// ---- extensions -------------------------------------------------------------------------------

/// The v2 extensions a nova-network cloud showed, for clients that still ask.
const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("os-consoles", "Consoles", "Interactive Console support."),
    ("os-hosts", "Hosts", "Admin-only host administration."),
    (
        "os-availability-zone",
        "AvailabilityZone",
        "Availability zone support.",
    ),
    ("os-fixed-ips", "FixedIPs", "Fixed IPs support."),
    (
        "os-floating-ip-pools",
        "FloatingIpPools",
        "Floating IPs support.",
    ),
    ("os-floating-ips", "FloatingIps", "Floating IPs support."),
    (
        "os-floating-ips-bulk",
        "FloatingIpsBulk",
        "Bulk handling of Floating IPs.",
    ),
    ("os-keypairs", "Keypairs", "Keypair Support."),
    (
        "os-networks",
        "Networks",
        "Admin-only Network Management Extension.",
    ),
    ("os-quota-sets", "Quotas", "Quotas management support."),
    (
        "os-security-group-default-rules",
        "SecurityGroupDefaultRules",
        "Default rules for security group support.",
    ),
    (
        "os-security-groups",
        "SecurityGroups",
        "Security group support.",
    ),
    ("os-services", "Services", "Services support."),
    (
        "os-tenant-networks",
        "OSTenantNetworks",
        "Tenant-based Network Management Extension.",
    ),
    (
        "os-virtual-interfaces",
        "VirtualInterfaces",
        "Virtual interface support.",
    ),
];

fn extension_view(e: &(&str, &str, &str)) -> Value {
    json!({"alias": e.0, "name": e.1, "description": e.2, "links": [], "namespace": "http://docs.openstack.org/compute/ext/fake_xml",
           "updated": "2014-12-03T00:00:00Z"})
}

async fn extensions(_ctx: Ctx) -> Json<Value> {
    let list: Vec<Value> = EXTENSIONS.iter().map(extension_view).collect();
    Json(json!({ "extensions": list }))
}

async fn extension(_ctx: Ctx, Path(alias): Path<String>) -> ApiResult<Json<Value>> {
    EXTENSIONS
        .iter()
        .find(|e| e.0 == alias)
        .map(|e| Json(json!({"extension": extension_view(e)})))
        .ok_or_else(|| ApiError::not_found(format!("Extension {alias} could not be found.")))
}
