//! `servers`: create (scheduling and network allocation), list with Nova's filters, show,
//! rename and access addresses (`PUT`), delete; the server view the other server modules
//! share.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use novanet_core::model::{Instance, InstanceSpec, InstanceUpdate, RequestedNetwork};
use novanet_core::planning::is_uuid;
use novanet_core::valid::check_name;
use novanet_core::Error;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::flavors::FLAVORS;
use super::images;
use super::networks::int_field;
use super::ok_empty;
use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::version::Microversion;
use crate::{iso8601, unix_now, AppState};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/servers", get(list_servers).post(create_server))
        .route("/servers/detail", get(list_servers_detail))
        .route(
            "/servers/{id}",
            get(show_server).delete(delete_server).put(update_server),
        )
}

pub fn find_server(st: &AppState, ctx: &Ctx, id: &str) -> ApiResult<Instance> {
    let not_found = || ApiError::not_found(format!("Instance {id} could not be found."));
    let i = st.store.instance(id).map_err(|_| not_found())?;
    if !ctx.is_admin() && i.spec.project_id != ctx.project_id() {
        return Err(not_found());
    }
    Ok(i)
}

/// Nova's `host_status` (2.16): UP while the host's agent reports within
/// `service_down_time`, DOWN after, UNKNOWN for a host never heard from, "" for none.
fn host_status(st: &AppState, host: Option<&str>) -> ApiResult<&'static str> {
    let Some(h) = host else { return Ok("") };
    let now = unix_now();
    Ok(match st.store.services()?.iter().find(|s| s.host == h) {
        Some(s) if now - s.last_seen < st.cfg.service_down_time as i64 => "UP",
        Some(_) => "DOWN",
        None => "UNKNOWN",
    })
}

/// A server's addresses by network label, as `addresses` and `/ips` show them.
pub fn server_addresses(st: &AppState, i: &Instance) -> ApiResult<BTreeMap<String, Vec<Value>>> {
    let mut addresses: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let addrs = st.store.instance_addresses(&i.uuid)?;
    // The v6 address is computed from the MAC (nova's nw_info did the same), so it needs
    // the networks' prefixes; read only in dual stack.
    let v6_networks = match st.cfg.ipv6() {
        Some(b) if !addrs.is_empty() => Some((b, st.store.networks()?)),
        _ => None,
    };
    for a in addrs {
        let e = addresses.entry(a.network_label.clone()).or_default();
        e.push(json!({"addr": a.address, "version": 4, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": a.mac}));
        let v6 = v6_networks.as_ref().and_then(|(b, nets)| {
            let n = nets.iter().find(|n| n.uuid == a.network_uuid)?;
            novanet_core::ipv6::instance_address(*b, n, &a.mac, &i.spec.project_id)
        });
        if let Some(v6) = v6 {
            e.push(json!({"addr": v6.to_string(), "version": 6, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": a.mac}));
        }
        for f in &a.floating {
            e.push(json!({"addr": f, "version": 4, "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": a.mac}));
        }
    }
    Ok(addresses)
}

pub fn server_view(st: &AppState, i: &Instance, v: Microversion, ctx: &Ctx) -> ApiResult<Value> {
    let addresses = server_addresses(st, i)?;
    let groups: Vec<Value> = st
        .store
        .instance_security_groups(&i.uuid)?
        .iter()
        .map(|g| json!({"name": g.name}))
        .collect();
    let created = iso8601(i.created_at);
    let state = i.power.state();
    let mut view = json!({
        "id": i.uuid, "name": i.spec.name, "status": state.status,
        "tenant_id": i.spec.project_id, "user_id": i.spec.user_id,
        "image": {"id": i.spec.image_id.clone().unwrap_or_default(), "links": []},
        "flavor": {"id": i.spec.flavor_id.clone().unwrap_or_else(|| "1".into()), "links": []},
        "addresses": addresses, "security_groups": groups, "metadata": i.spec.metadata,
        "key_name": i.spec.key_name, "OS-EXT-STS:task_state": state.task_state, "OS-EXT-STS:vm_state": state.vm_state,
        "OS-EXT-STS:power_state": state.power_state, "OS-EXT-SRV-ATTR:host": i.spec.host,
        "OS-EXT-AZ:availability_zone": i.spec.availability_zone.clone().unwrap_or_else(|| "nova".into()),
        "created": created, "updated": iso8601(i.updated_at.max(i.created_at)), "hostId": "",
        "accessIPv4": i.spec.access_ip_v4.clone().unwrap_or_default(),
        "accessIPv6": i.spec.access_ip_v6.clone().unwrap_or_default(),
        "OS-DCF:diskConfig": "MANUAL", "links": [],
    });
    // Nova shows progress only while a server is active or being built (its views'
    // _progress_statuses, of which novanet has these two).
    if matches!(state.status, "ACTIVE" | "BUILD") {
        view["progress"] = json!(0);
    }
    // Nova shows why a server is in ERROR: the hypervisor's reason.
    if let (Some(fault), "ERROR") = (&i.power.fault, state.status) {
        view["fault"] = json!({"code": 500, "message": fault, "created": iso8601(i.updated_at.max(i.created_at))});
    }
    // Nova leaves the key out for a server in no group.
    if view["security_groups"]
        .as_array()
        .is_some_and(Vec::is_empty)
    {
        view.as_object_mut().map(|o| o.remove("security_groups"));
    }
    if v.at_least(9) {
        view["locked"] = json!(i.locked_by.is_some());
    }
    if v.at_least(19) {
        view["description"] = json!(i.spec.description);
    }
    if v.at_least(26) {
        view["tags"] = json!(i.spec.tags);
    }
    // Nova's default policy shows the host and its status to admins only.
    if !ctx.is_admin() {
        view.as_object_mut()
            .map(|o| o.remove("OS-EXT-SRV-ATTR:host"));
    }
    if v.at_least(16) && ctx.is_admin() {
        view["host_status"] = json!(host_status(st, i.spec.host.as_deref())?);
    }
    Ok(view)
}

#[derive(Deserialize)]
struct ServerQuery {
    name: Option<String>,
    all_tenants: Option<String>,
    tenant_id: Option<String>,
    project_id: Option<String>,
    image: Option<String>,
    flavor: Option<String>,
    status: Option<String>,
    ip: Option<String>,
    host: Option<String>,
    #[serde(rename = "changes-since")]
    changes_since: Option<String>,
    limit: Option<String>,
    marker: Option<String>,
    reservation_id: Option<String>,
    availability_zone: Option<String>,
}

/// `2026-12-04T20:37:32Z`, with optional fraction and offset (ISO 8601, as Nova takes it).
fn parse_time(field: &str, s: &str) -> ApiResult<i64> {
    let bad = || -> ApiError {
        Error::invalid(
            field,
            format!("{s:?} is not an ISO 8601 time (2026-12-04T20:37:32Z)"),
        )
        .into()
    };
    let (date, rest) = s
        .split_once('T')
        .or_else(|| s.split_once(' '))
        .ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<ApiResult<_>>()?;
    let (time, offset) = match rest.find(['Z', 'z', '+', '-']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    let t: Vec<f64> = time
        .split(':')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<ApiResult<_>>()?;
    // Every field in its range before any arithmetic (a year of 10^16 would overflow).
    let in_range = d.len() == 3
        && (1..=9999).contains(&d[0])
        && (1..=12).contains(&d[1])
        && (1..=31).contains(&d[2])
        && (2..=3).contains(&t.len())
        && (0.0..24.0).contains(&t[0])
        && (0.0..60.0).contains(&t[1])
        && t.get(2).is_none_or(|s| (0.0..61.0).contains(s));
    if !in_range {
        return Err(bad());
    }
    let off = match offset {
        "" | "Z" | "z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (h, m) = o[1..].split_once(':').unwrap_or((&o[1..], "0"));
            let (h, m) = (
                h.parse::<i64>().map_err(|_| bad())?,
                m.parse::<i64>().map_err(|_| bad())?,
            );
            if !(0..=14).contains(&h) || !(0..60).contains(&m) {
                return Err(bad());
            }
            sign * (h * 3600 + m * 60)
        }
    };
    // Howard Hinnant's days_from_civil.
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = t[0] as i64 * 3600 + t[1] as i64 * 60 + t.get(2).copied().unwrap_or(0.0) as i64;
    Ok(days * 86400 + secs - off)
}

fn regex(field: &str, pattern: &str) -> ApiResult<regex_lite::Regex> {
    regex_lite::Regex::new(pattern).map_err(|e| {
        Error::invalid(
            field,
            format!("{pattern:?} is not a regular expression: {e}"),
        )
        .into()
    })
}

/// The servers a list shows, with Nova's filters: name and ip as regular expressions,
/// image, flavor, status, host (admins), changes-since, reservation and zone; newest first,
/// paged by marker and limit.
fn listed(st: &AppState, ctx: &Ctx, q: &ServerQuery) -> ApiResult<Vec<Instance>> {
    let all = ctx.is_admin()
        && q.all_tenants
            .as_deref()
            .is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"));
    let tenant = q.tenant_id.as_deref().or(q.project_id.as_deref());
    let scope = match (all, tenant) {
        (true, Some(t)) => Some(t.to_string()),
        (true, None) => None,
        (false, _) => Some(ctx.project_id().to_string()),
    };
    let name = q.name.as_deref().map(|n| regex("name", n)).transpose()?;
    let ip = q.ip.as_deref().map(|n| regex("ip", n)).transpose()?;
    let since = q
        .changes_since
        .as_deref()
        .map(|c| parse_time("changes-since", c))
        .transpose()?;
    let limit = q
        .limit
        .as_deref()
        .map(|l| {
            l.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!("limit {l:?} is not a non-negative integer"))
            })
        })
        .transpose()?;
    let image = q
        .image
        .as_deref()
        .map(|i| i.rsplit('/').next().unwrap_or(i));
    let flavor = q
        .flavor
        .as_deref()
        .map(|f| f.rsplit('/').next().unwrap_or(f));
    let mut list: Vec<Instance> = Vec::new();
    for i in st.store.instances(scope.as_deref())?.into_iter().rev() {
        let s = &i.spec;
        let keep = name.as_ref().is_none_or(|r| r.is_match(&s.name))
            && image.is_none_or(|m| s.image_id.as_deref() == Some(m))
            && flavor.is_none_or(|f| s.flavor_id.as_deref().unwrap_or("1") == f)
            && q.status
                .as_deref()
                .is_none_or(|x| x.eq_ignore_ascii_case(i.power.state().status))
            && (!ctx.is_admin()
                || q.host
                    .as_deref()
                    .is_none_or(|h| s.host.as_deref() == Some(h)))
            && since.is_none_or(|t| i.updated_at.max(i.created_at) >= t)
            && q.reservation_id
                .as_deref()
                .is_none_or(|r| i.reservation_id == r)
            && q.availability_zone
                .as_deref()
                .is_none_or(|z| s.availability_zone.as_deref().unwrap_or("nova") == z);
        if !keep {
            continue;
        }
        if let Some(r) = &ip {
            let addrs = st.store.instance_addresses(&i.uuid)?;
            if !addrs
                .iter()
                .any(|a| r.is_match(&a.address) || a.floating.iter().any(|f| r.is_match(f)))
            {
                continue;
            }
        }
        list.push(i);
    }
    if let Some(m) = &q.marker {
        let at = list
            .iter()
            .position(|i| i.uuid == *m)
            .ok_or_else(|| ApiError::bad_request(format!("marker [{m}] not found")))?;
        list.drain(..=at);
    }
    if let Some(l) = limit {
        list.truncate(l);
    }
    Ok(list)
}

async fn list_servers(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ServerQuery>,
) -> ApiResult<Json<Value>> {
    let servers: Vec<Value> = listed(&st, &ctx, &q)?
        .iter()
        .map(|i| json!({"id": i.uuid, "name": i.spec.name, "links": []}))
        .collect();
    Ok(Json(json!({ "servers": servers })))
}

async fn list_servers_detail(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Query(q): Query<ServerQuery>,
) -> ApiResult<Json<Value>> {
    let servers = listed(&st, &ctx, &q)?
        .iter()
        .map(|i| server_view(&st, i, v, &ctx))
        .collect::<ApiResult<Vec<Value>>>()?;
    Ok(Json(json!({ "servers": servers })))
}

async fn show_server(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    Ok(Json(json!({ "server": server_view(&st, &i, v, &ctx)? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateServerBody {
    server: CreateServer,
    #[serde(rename = "os:scheduler_hints")]
    _hints: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateServer {
    name: String,
    #[serde(rename = "imageRef")]
    image_ref: Option<String>,
    #[serde(rename = "flavorRef")]
    flavor_ref: Option<Value>,
    min_count: Option<Value>,
    max_count: Option<Value>,
    networks: Option<Value>,
    key_name: Option<String>,
    user_data: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
    security_groups: Option<Vec<NameRef>>,
    availability_zone: Option<String>,
    #[serde(rename = "OS-DCF:diskConfig")]
    _disk_config: Option<String>,
    #[serde(rename = "adminPass")]
    admin_pass: Option<String>,
    #[serde(rename = "accessIPv4")]
    access_ip_v4: Option<Value>,
    #[serde(rename = "accessIPv6")]
    access_ip_v6: Option<Value>,
    description: Option<Value>,
    return_reservation_id: Option<Value>,
    config_drive: Option<Value>,
    block_device_mapping_v2: Option<Value>,
}

#[derive(Deserialize)]
struct NameRef {
    name: String,
}

fn requested_networks(v: &Option<Value>) -> ApiResult<Vec<RequestedNetwork>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    match v {
        Value::String(s) if s == "auto" || s == "none" => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|n| {
                let uuid = n.get("uuid").and_then(Value::as_str).ok_or_else(|| {
                    Error::invalid(
                        "networks",
                        "each network needs a uuid (port and tag are not supported)",
                    )
                })?;
                if !is_uuid(uuid) {
                    return Err(Error::invalid(
                        "networks",
                        format!("{uuid:?} is not a network uuid"),
                    )
                    .into());
                }
                let fixed_ip = match n.get("fixed_ip") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => {
                        return Err(Error::invalid(
                            "fixed_ip",
                            format!("{other} is not an address"),
                        )
                        .into())
                    }
                };
                Ok(RequestedNetwork {
                    uuid: uuid.to_string(),
                    fixed_ip,
                })
            })
            .collect(),
        other => {
            Err(Error::invalid("networks", format!("{other} is not a list of networks")).into())
        }
    }
}

/// Picks a host for a new server: the one named by `nova:HOST`, else the compute host with
/// the fewest instances (ties by name).
pub(super) fn schedule(st: &AppState, ctx: &Ctx, az: Option<&str>) -> ApiResult<Option<String>> {
    if let Some(h) = az
        .and_then(|z| z.split_once(':'))
        .map(|(_, h)| h)
        .filter(|h| !h.is_empty())
    {
        ctx.require_admin("forcing a host with availability_zone nova:HOST")?;
        return Ok(Some(h.to_string()));
    }
    let services = st.store.services()?;
    let computes: Vec<&str> = services
        .iter()
        .filter(|s| !s.network_host)
        .map(|s| s.host.as_str())
        .collect();
    let candidates: Vec<&str> = if computes.is_empty() {
        services.iter().map(|s| s.host.as_str()).collect()
    } else {
        computes
    };
    // Per-host counts the store keeps, not every instance.
    let counts: std::collections::HashMap<String, u64> =
        st.store.instance_counts()?.into_iter().collect();
    Ok(candidates
        .into_iter()
        .min_by_key(|h| (counts.get(*h).copied().unwrap_or(0), h.to_string()))
        .map(str::to_string))
}

async fn create_server(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    request: axum::Extension<crate::version::RequestId>,
    v: Microversion,
    Body(b): Body<CreateServerBody>,
) -> ApiResult<Response> {
    let s = b.server;
    let _ = (s.config_drive, s.block_device_mapping_v2);
    if s.name.trim().is_empty() {
        return Err(Error::invalid("name", "must not be empty").into());
    }
    check_name("name", &s.name)?;
    for (k, v) in s.metadata.iter().flatten() {
        if k.is_empty() {
            return Err(Error::invalid("metadata", "keys must not be empty").into());
        }
        check_name("metadata", k)?;
        check_name("metadata", v)?;
    }
    let flavor_id = match &s.flavor_ref {
        None | Some(Value::Null) => "1".to_string(),
        Some(Value::String(f)) => f.rsplit('/').next().unwrap_or(f).to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(Error::invalid("flavorRef", format!("{other} is not a flavor id")).into())
        }
    };
    if !FLAVORS.iter().any(|f| f.0 == flavor_id) {
        return Err(ApiError::bad_request(format!(
            "Flavor {flavor_id} could not be found."
        )));
    }
    if let Some(img) = &s.image_ref {
        if !img.is_empty() && !images::bootable(&st, &ctx, img) {
            return Err(ApiError::bad_request(format!(
                "Can not find requested image {img}"
            )));
        }
    }
    // nova: between min_count and max_count servers, or none and an error.
    let min_count = int_field::<u32>("min_count", &s.min_count)?.unwrap_or(1);
    let max_count = int_field::<u32>("max_count", &s.max_count)?.unwrap_or(min_count);
    if min_count == 0 || max_count == 0 || max_count > 100 {
        return Err(Error::invalid("max_count", "counts must be between 1 and 100").into());
    }
    if min_count > max_count {
        return Err(Error::invalid(
            "min_count",
            format!("min_count {min_count} is above max_count {max_count}"),
        )
        .into());
    }
    let key_data = match &s.key_name {
        Some(k) => Some(
            st.store
                .keypair(ctx.user_id(), k)
                .map_err(|_| ApiError::bad_request(format!("Invalid key_name provided: {k}")))?
                .public_key,
        ),
        None => None,
    };
    if let Some(u) = &s.user_data {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(u.trim())
            .map_err(|_| Error::invalid("user_data", "is not valid base64"))?;
        if u.len() > 65535 {
            return Err(Error::invalid("user_data", "is longer than 65535 bytes").into());
        }
    }
    let host = schedule(&st, &ctx, s.availability_zone.as_deref())?;
    // The named security groups must exist (nova: 400 before anything is made).
    let names: Vec<&str> = s
        .security_groups
        .iter()
        .flatten()
        .map(|g| g.name.as_str())
        .collect();
    if names.iter().any(|n| *n != "default") {
        let have = st.store.security_groups(Some(ctx.project_id()))?;
        if let Some(n) = names.iter().find(|n| {
            **n != "default"
                && !have
                    .iter()
                    .any(|g| g.name == **n || g.id.to_string() == **n)
        }) {
            return Err(ApiError::bad_request(format!(
                "Security group {n} not found for project {}.",
                ctx.project_id()
            )));
        }
    }
    let metadata = s.metadata.clone().unwrap_or_default();
    let limits = super::quotas::limits_of(&st, ctx.project_id())?;
    let limit = |r: &str| limits.get(r).copied().unwrap_or(-1);
    let meta_quota = limit("metadata_items");
    if meta_quota >= 0 && metadata.len() as i64 > meta_quota {
        return Err(Error::Forbidden(format!(
            "Quota exceeded for metadata_items: {} items, at most {meta_quota}",
            metadata.len()
        ))
        .into());
    }
    let mut access = Map::new();
    for (k, v) in [
        ("accessIPv4", &s.access_ip_v4),
        ("accessIPv6", &s.access_ip_v6),
    ] {
        if let Some(v) = v {
            access.insert(k.to_string(), v.clone());
        }
    }
    let (access_ip_v4, access_ip_v6) = access_ips(&access)?;
    let description = match (&s.description, v.at_least(19)) {
        (None, _) | (Some(Value::Null), _) => None,
        (Some(d), true) => Some(check_server_text("description", d, true)?),
        (Some(_), false) => {
            return Err(Error::invalid("description", "needs microversion 2.19 or later").into())
        }
    };
    let admin_pass = match &s.admin_pass {
        Some(p) => p.clone(),
        // nova's generate_password: 12 characters; the guest sets its own through metadata.
        None => uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
    };
    let mut spec = InstanceSpec {
        name: s.name.clone(),
        project_id: ctx.project_id().to_string(),
        user_id: ctx.user_id().to_string(),
        host,
        availability_zone: s
            .availability_zone
            .as_deref()
            .map(|z| z.split(':').next().unwrap_or(z).to_string()),
        key_name: s.key_name.clone(),
        key_data,
        user_data: s.user_data.clone(),
        metadata,
        access_ip_v4: access_ip_v4.flatten(),
        access_ip_v6: access_ip_v6.flatten(),
        description,
        tags: Vec::new(),
        security_groups: s
            .security_groups
            .iter()
            .flatten()
            .map(|g| g.name.clone())
            .collect(),
        flavor_id: Some(flavor_id),
        image_id: s.image_ref.clone(),
        networks: requested_networks(&s.networks)?,
        vpn: false,
    };
    // The instances, cores and ram quotas, as nova checked them: as many servers as fit
    // between min and max.
    let flavor = FLAVORS
        .iter()
        .find(|f| Some(f.0) == spec.flavor_id.as_deref())
        .copied()
        .unwrap_or(FLAVORS[0]);
    let mut max_count = max_count;
    // The project's instances are read only when one of the three is limited.
    let limited = ["instances", "cores", "ram"].iter().any(|r| limit(r) >= 0);
    let (instances, cores, ram) = if limited {
        super::quotas::instance_usage(&st, ctx.project_id())?
    } else {
        (0, 0, 0)
    };
    for (resource, each, in_use) in [
        ("instances", 1i64, instances),
        ("cores", i64::from(flavor.4), cores),
        ("ram", i64::from(flavor.2), ram),
    ] {
        let quota = limit(resource);
        if quota < 0 {
            continue;
        }
        let room = ((quota - in_use).max(0) / each.max(1)) as u32;
        if room < min_count {
            // nova answers an exceeded instance quota with 403 `forbidden` (its fault name
            // follows the status), not `overLimit`.
            return Err(Error::Forbidden(format!(
                "Quota exceeded for {resource}: requested {}, but already used {in_use} of {quota} {resource}",
                i64::from(min_count) * each
            ))
            .into());
        }
        max_count = max_count.min(room);
    }
    let mut created: Vec<Instance> = Vec::new();
    for idx in 0..max_count {
        if max_count > 1 {
            spec.name = format!("{}-{}", s.name, idx + 1);
        }
        match st.store.create_instance(&spec, &st.cfg) {
            Ok(inst) => created.push(inst),
            // Enough made: the rest is what did not fit, as nova's quota check would say.
            Err(_) if created.len() as u32 >= min_count => break,
            Err(e) => {
                // Fewer than asked for at least: undo, so the caller has all or nothing.
                for i in &created {
                    let _ = st.store.delete_instance(&i.uuid, &st.cfg, unix_now());
                }
                return Err(e.into());
            }
        }
    }
    for i in &created {
        super::instance_actions::record(&st, &ctx, &request, &i.uuid, "create");
        tracing::info!(server = %i.uuid, name = %i.spec.name, host = ?i.spec.host, "server created");
    }
    let inst = created.remove(0);
    let groups: Vec<Value> = st
        .store
        .instance_security_groups(&inst.uuid)?
        .iter()
        .map(|g| json!({"name": g.name}))
        .collect();
    if s.return_reservation_id
        .as_ref()
        .is_some_and(|r| r == &json!(true) || r == "true" || r == "True")
    {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"reservation_id": inst.reservation_id})),
        )
            .into_response());
    }
    let body = json!({"server": {"id": inst.uuid, "links": [], "adminPass": admin_pass, "OS-DCF:diskConfig": "MANUAL", "security_groups": groups}});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn delete_server(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let i = find_server(&st, &ctx, &id)?;
    super::server_actions::check_lock(&i, &ctx)?;
    st.store.delete_instance(&i.uuid, &st.cfg, unix_now())?;
    tracing::info!(server = %i.uuid, name = %i.spec.name, "server deleted");
    Ok(ok_empty(StatusCode::NO_CONTENT))
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

async fn update_server(
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
