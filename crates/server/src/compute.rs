//! The compute v2.1 API as Nova served it for nova-network (microversions 2.1 to 2.35):
//! thin translations between the wire and the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use novanet_core::floating::parse_range;
use novanet_core::model::{FloatingIp, Instance, InstanceSpec, Network, RequestedNetwork};
use novanet_core::net::Ipv4Cidr;
use novanet_core::planning::{is_uuid, NetworkRequest};
use novanet_core::secgroup::{validate_group_text, validate_rule};
use novanet_core::valid::check_name;
use novanet_core::Error;
use novanet_store::{NetworkUpdate, SecurityGroup, SecurityGroupRule, Store};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::version::Microversion;
use crate::{iso8601, unix_now, AppState};

pub const MAX_MICROVERSION: &str = "2.35";
pub const MIN_MICROVERSION: &str = "2.1";

/// The image registry behind the catalog's `image` entry. The first id is the seed's.
pub const IMAGES: &[(&str, &str)] = &[
    ("ed8b2a37-5535-4a5f-a615-443513036d71", "cirros"),
    ("5c9a5c0e-7b8f-4a54-9d6f-6a3e0d3f1a01", "cloudpipe"),
];

/// A flavor: id, name, ram MiB, disk GB, vcpus.
pub type Flavor = (&'static str, &'static str, u32, u32, u32);

/// Nova's default flavors (id, name, ram MiB, disk GB, vcpus).
pub const FLAVORS: &[Flavor] = &[
    ("1", "m1.tiny", 512, 1, 1),
    ("2", "m1.small", 2048, 20, 1),
    ("3", "m1.medium", 4096, 40, 2),
    ("4", "m1.large", 8192, 80, 4),
    ("5", "m1.xlarge", 16384, 160, 8),
];

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(version))
        .route("/os-networks", get(list_networks).post(create_network))
        .route("/os-networks/add", post(add_network))
        .route(
            "/os-networks/{id}",
            get(show_network).delete(delete_network),
        )
        .route("/os-networks/{id}/action", post(network_action))
        .route(
            "/os-tenant-networks",
            get(list_tenant_networks).post(create_tenant_network),
        )
        .route(
            "/os-tenant-networks/{id}",
            get(show_tenant_network).delete(delete_tenant_network),
        )
        .route("/os-fixed-ips/{address}", get(show_fixed_ip))
        .route("/os-fixed-ips/{address}/action", post(fixed_ip_action))
        .route("/os-floating-ip-pools", get(list_pools))
        .route(
            "/os-floating-ips",
            get(list_floating).post(allocate_floating),
        )
        .route(
            "/os-floating-ips/{id}",
            get(show_floating).delete(release_floating),
        )
        .route("/os-floating-ips-bulk", get(list_bulk).post(create_bulk))
        .route(
            "/os-floating-ips-bulk/{host}",
            get(list_bulk_host).put(delete_bulk),
        )
        .route(
            "/os-security-groups",
            get(list_groups).post(create_group).delete(no_group_named),
        )
        .route(
            "/os-security-groups/{id}",
            get(show_group).put(update_group).delete(delete_group),
        )
        .route("/os-security-group-rules", post(create_rule))
        .route(
            "/os-security-group-rules/{id}",
            axum::routing::delete(delete_rule),
        )
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
        .merge(crate::keypairs::routes())
        .route("/os-services", get(list_services))
        .route("/flavors", get(list_flavors))
        .route("/flavors/detail", get(list_flavors_detail))
        .route("/flavors/{id}", get(show_flavor))
        .route("/servers", get(list_servers).post(create_server))
        .route("/servers/detail", get(list_servers_detail))
        .route(
            "/servers/{id}",
            get(show_server)
                .delete(delete_server)
                .put(crate::servers::update_server),
        )
        .merge(crate::servers::routes())
        .route("/servers/{id}/action", post(server_action))
        .route("/servers/{id}/os-virtual-interfaces", get(list_vifs))
        .route("/servers/{id}/os-security-groups", get(server_groups))
        .route("/limits", get(limits))
        .merge(crate::quotas::routes())
}

pub fn image_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/image/v2/images", get(list_images))
        .route("/image/v2/images/{id}", get(show_image))
}

pub fn version_doc(base: &str) -> Value {
    json!({
        "id": "v2.1", "status": "CURRENT", "version": MAX_MICROVERSION, "min_version": MIN_MICROVERSION,
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{base}/v2.1/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}],
    })
}

async fn version(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"version": version_doc(&st.public_base)}))
}

/// The one action a body names (`{"reserve": null}`): a body with several is refused,
/// never half-done.
fn one_action(b: &Map<String, Value>) -> ApiResult<(&String, &Value)> {
    let mut it = b.iter();
    match (it.next(), it.next()) {
        (Some(a), None) => Ok(a),
        (None, _) => Err(ApiError::bad_request("the body names no action")),
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!(
            "the body names {} actions ({}): give exactly one",
            b.len(),
            b.keys().cloned().collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn ok_empty(code: StatusCode) -> Response {
    code.into_response()
}

// ---- networks ------------------------------------------------------------------------------

fn network_view(n: &Network, admin: bool) -> Value {
    let mut v = json!({
        "id": n.uuid, "label": n.label, "cidr": n.cidr, "netmask": n.netmask, "gateway": n.gateway,
        "broadcast": n.broadcast, "dns1": n.dns1, "dns2": n.dns2, "cidr_v6": n.cidr_v6,
        "gateway_v6": n.gateway_v6, "netmask_v6": n.netmask_v6,
    });
    if admin {
        let extra = json!({
            "created_at": null, "updated_at": null, "deleted_at": null, "deleted": false,
            "injected": n.injected, "bridge": n.bridge, "vlan": n.vlan,
            "vpn_public_address": n.vpn_public_address, "vpn_public_port": n.vpn_public_port,
            "vpn_private_address": n.vpn_private_address, "dhcp_start": n.dhcp_start,
            "project_id": n.project_id, "host": n.host, "bridge_interface": n.bridge_interface,
            "multi_host": n.multi_host, "priority": n.priority, "rxtx_base": null, "mtu": n.mtu,
            "dhcp_server": n.dhcp_server, "enable_dhcp": n.enable_dhcp, "share_address": n.share_address,
        });
        if let (Value::Object(a), Value::Object(b)) = (&mut v, extra) {
            a.extend(b);
        }
    }
    v
}

fn visible(ctx: &Ctx, n: &Network) -> bool {
    ctx.is_admin() || n.project_id.is_none() || n.project_id.as_deref() == Some(ctx.project_id())
}

async fn list_networks(State(st): State<Arc<AppState>>, ctx: Ctx) -> ApiResult<Json<Value>> {
    let nets: Vec<Value> = st
        .store
        .networks()?
        .iter()
        .filter(|n| visible(&ctx, n))
        .map(|n| network_view(n, ctx.is_admin()))
        .collect();
    Ok(Json(json!({ "networks": nets })))
}

fn find_visible_network(st: &AppState, ctx: &Ctx, id: &str) -> ApiResult<Network> {
    let n = st.store.network(id)?;
    if !visible(ctx, &n) {
        return Err(ApiError::not_found(format!(
            "Network {id} could not be found."
        )));
    }
    Ok(n)
}

async fn show_network(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let n = find_visible_network(&st, &ctx, &id)?;
    Ok(Json(json!({ "network": network_view(&n, ctx.is_admin()) })))
}

/// `POST /os-networks` body: nova's schema, with the types novaclient really sends (ints
/// for vlan_start/vpn_start, a string priority) accepted too.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkCreateBody {
    network: ApiNetwork,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiNetwork {
    label: String,
    cidr: Option<String>,
    cidr_v6: Option<String>,
    ipam: Option<bool>,
    project_id: Option<String>,
    multi_host: Option<Value>,
    gateway: Option<String>,
    gateway_v6: Option<String>,
    bridge: Option<String>,
    bridge_interface: Option<String>,
    dns1: Option<String>,
    dns2: Option<String>,
    dhcp_server: Option<String>,
    fixed_cidr: Option<String>,
    allowed_start: Option<String>,
    allowed_end: Option<String>,
    enable_dhcp: Option<Value>,
    share_address: Option<Value>,
    mtu: Option<Value>,
    vlan: Option<Value>,
    vlan_start: Option<Value>,
    vpn_start: Option<Value>,
    uuid: Option<String>,
    priority: Option<Value>,
    num_networks: Option<Value>,
    network_size: Option<Value>,
}

fn int_field<T: TryFrom<i64>>(field: &str, v: &Option<Value>) -> ApiResult<Option<T>> {
    let Some(v) = v else { return Ok(None) };
    let n = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    n.and_then(|n| T::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| Error::invalid(field, format!("{v} is not a valid integer")).into())
}

fn bool_field(field: &str, v: &Option<Value>) -> ApiResult<Option<bool>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "t" | "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "f" | "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(Error::invalid(field, format!("{s:?} is not a boolean")).into()),
        },
        Some(other) => Err(Error::invalid(field, format!("{other} is not a boolean")).into()),
    }
}

impl ApiNetwork {
    fn to_request(&self, whole_range: bool) -> ApiResult<NetworkRequest> {
        let _ = self.ipam;
        // Name the API's fields in parse errors (the planner names nova-manage's options).
        if let Some(c) = &self.cidr {
            c.parse::<novanet_core::net::Ipv4Cidr>()
                .map_err(|e| Error::invalid("cidr", e))?;
        }
        if let Some(c) = &self.cidr_v6 {
            c.parse::<novanet_core::net::Ipv6Cidr>()
                .map_err(|e| Error::invalid("cidr_v6", e))?;
        }
        let mut r = NetworkRequest {
            label: self.label.clone(),
            cidr: self.cidr.clone(),
            cidr_v6: self.cidr_v6.clone(),
            fixed_cidr: self.fixed_cidr.clone(),
            bridge: self.bridge.clone(),
            bridge_interface: self.bridge_interface.clone(),
            vlan: int_field("vlan", &self.vlan)?,
            vlan_start: int_field("vlan_start", &self.vlan_start)?,
            vpn_start: int_field("vpn_start", &self.vpn_start)?,
            gateway: self.gateway.clone(),
            gateway_v6: self.gateway_v6.clone(),
            dns1: self.dns1.clone(),
            dns2: self.dns2.clone(),
            multi_host: bool_field("multi_host", &self.multi_host)?,
            project_id: self.project_id.clone(),
            dhcp_server: self.dhcp_server.clone(),
            allowed_start: self.allowed_start.clone(),
            allowed_end: self.allowed_end.clone(),
            num_networks: int_field("num_networks", &self.num_networks)?,
            network_size: int_field("network_size", &self.network_size)?,
            uuid: self.uuid.clone(),
            mtu: int_field("mtu", &self.mtu)?,
            enable_dhcp: bool_field("enable_dhcp", &self.enable_dhcp)?,
            share_address: bool_field("share_address", &self.share_address)?,
            priority: int_field("priority", &self.priority)?,
        };
        if whole_range {
            // The API creates exactly the range given (nova forces num_networks=1 and
            // network_size=cidr.size), unlike nova-manage's /24 default.
            r.num_networks = Some(1);
            if let Some(c) = r
                .cidr
                .as_deref()
                .and_then(|c| c.parse::<novanet_core::net::Ipv4Cidr>().ok())
            {
                r.network_size = Some(c.size());
            }
        }
        if r.cidr.is_none() && r.cidr_v6.is_none() {
            return Err(Error::invalid("cidr", "give cidr or cidr_v6").into());
        }
        Ok(r)
    }
}

async fn create_network(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<NetworkCreateBody>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-networks:create")?;
    let req = b.network.to_request(true)?;
    novanet_core::planning::check_requested_range(&req)?;
    let (nets, _) = st.store.create_networks(&req, &st.cfg)?;
    claim_for_network_host(&st)?;
    Ok(Json(json!({ "network": network_view(&nets[0], true) })))
}

/// A service not heard from for this long (seconds) is down, as nova's service_down_time.
const SERVICE_DOWN_AFTER: i64 = 60;

fn claim_for_network_host(st: &AppState) -> ApiResult<()> {
    claim_for_live_network_host(st.store.as_ref(), crate::unix_now())?;
    Ok(())
}

/// A new single-host network goes at once to the live network host heard from last:
/// waiting for its next heartbeat would leave the network without a gateway or DHCP for up
/// to 10 s. Returns how many networks it claimed.
pub fn claim_for_live_network_host(store: &dyn Store, now: i64) -> novanet_core::Result<usize> {
    let host = store
        .services()?
        .into_iter()
        .filter(|s| s.network_host && now - s.last_seen < SERVICE_DOWN_AFTER)
        .max_by_key(|s| s.last_seen);
    match host {
        Some(h) => store.claim_networks(&h.host),
        None => Ok(0),
    }
}

async fn delete_network(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    ctx.require_admin("os_compute_api:os-networks:delete")?;
    st.store.delete_network(&id, true)?;
    Ok(ok_empty(StatusCode::ACCEPTED))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNetworkBody {
    id: Option<String>,
}

async fn add_network(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<AddNetworkBody>,
) -> ApiResult<Response> {
    ctx.require_admin("os_compute_api:os-networks:add")?;
    st.store
        .associate_project_network(ctx.project_id(), b.id.as_deref())
        .map_err(|e| match e {
            Error::Exhausted(m) => ApiError::bad_request(m),
            other => other.into(),
        })?;
    Ok(ok_empty(StatusCode::ACCEPTED))
}

async fn network_action(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<Map<String, Value>>,
) -> ApiResult<Response> {
    ctx.require_admin("os_compute_api:os-networks-associate")?;
    let (action, arg) = one_action(&b)?;
    let update = match action.as_str() {
        "disassociate" => NetworkUpdate {
            project_id: Some(None),
            host: Some(None),
        },
        "disassociate_host" => NetworkUpdate {
            host: Some(None),
            ..Default::default()
        },
        "disassociate_project" => NetworkUpdate {
            project_id: Some(None),
            ..Default::default()
        },
        "associate_host" => {
            let h = arg
                .as_str()
                .ok_or_else(|| ApiError::bad_request("associate_host needs a host name"))?;
            NetworkUpdate {
                host: Some(Some(h.to_string())),
                ..Default::default()
            }
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown network action {other:?}"
            )))
        }
    };
    st.store.update_network(&id, &update)?;
    Ok(ok_empty(StatusCode::ACCEPTED))
}

fn tenant_view(n: &Network) -> Value {
    json!({"id": n.uuid, "cidr": n.cidr, "label": n.label})
}

async fn list_tenant_networks(State(st): State<Arc<AppState>>, ctx: Ctx) -> ApiResult<Json<Value>> {
    let nets: Vec<Value> = st
        .store
        .networks()?
        .iter()
        .filter(|n| n.project_id.is_none() || n.project_id.as_deref() == Some(ctx.project_id()))
        .map(tenant_view)
        .collect();
    Ok(Json(json!({ "networks": nets })))
}

async fn show_tenant_network(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let n = find_visible_network(&st, &ctx, &id)?;
    Ok(Json(json!({ "network": tenant_view(&n) })))
}

/// What a project may send to `os-tenant-networks`: a label and a CIDR (nova's `ipam` flag
/// is accepted and means nothing here). Everything that reaches a host (bridge, interface,
/// MTU, DHCP server, gateway...) comes from the configuration, as nova's did.
const TENANT_NETWORK_FIELDS: &[&str] = &["label", "cidr", "ipam"];

async fn create_tenant_network(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let net = b
        .get("network")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::invalid("network", "the body needs a \"network\" object"))?;
    if let Some(k) = net
        .keys()
        .find(|k| !TENANT_NETWORK_FIELDS.contains(&k.as_str()))
    {
        return Err(Error::invalid(
            k.as_str(),
            "may not be set on a project network: give only label and cidr; the rest comes from the configuration",
        )
        .into());
    }
    let text = |field: &str| -> ApiResult<String> {
        net.get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error::invalid(field, "is required and must be a string").into())
    };
    let label = text("label")?;
    let cidr_text = text("cidr")?;
    let cidr: Ipv4Cidr = cidr_text
        .parse()
        .map_err(|e: String| Error::invalid("cidr", e))?;
    if let Some(why) = novanet_core::valid::special_purpose_v4(&cidr) {
        return Err(Error::invalid("cidr", format!("{cidr} overlaps {why}")).into());
    }
    if cidr.size() < 4 {
        return Err(ApiError::bad_request(
            "Requested network does not contain enough (2+) usable hosts",
        ));
    }
    if !ctx.is_admin() && cidr.size() > st.cfg.max_tenant_network_size {
        return Err(Error::invalid(
            "cidr",
            format!(
                "{cidr} has {} addresses; a project network may have at most {} (max_tenant_network_size)",
                cidr.size(),
                st.cfg.max_tenant_network_size
            ),
        )
        .into());
    }
    tenant_range_free(&st, &cidr)?;
    let quota = crate::quotas::limit(&st, ctx.project_id(), "networks")?;
    let own = crate::quotas::project_networks(&st, ctx.project_id())?;
    if quota >= 0 && own >= quota {
        return Err(Error::OverLimit(format!(
            "quota exceeded for networks: the project has {own} of {quota} (quota_networks)"
        ))
        .into());
    }
    let req = NetworkRequest {
        label,
        cidr: Some(cidr.to_string()),
        num_networks: Some(1),
        network_size: Some(cidr.size()),
        project_id: Some(ctx.project_id().to_string()),
        bridge: st.cfg.flat_network_bridge.clone(),
        ..NetworkRequest::default()
    };
    let (nets, _) = st.store.create_networks(&req, &st.cfg)?;
    claim_for_network_host(&st)?;
    Ok(Json(json!({ "network": tenant_view(&nets[0]) })))
}

/// A project's range may not overlap what the hosts themselves use (their configured
/// addresses and the DMZ) or a floating IP pool; overlaps with other networks are the
/// planner's conflict.
fn tenant_range_free(st: &AppState, cidr: &Ipv4Cidr) -> ApiResult<()> {
    let cfg = &st.cfg;
    for (what, ip) in [
        ("my_ip", Some(cfg.my_ip.as_str())),
        ("routing_source_ip", cfg.routing_source_ip.as_deref()),
        ("metadata_host", cfg.metadata_host.as_deref()),
        ("vpn_ip", cfg.vpn_ip.as_deref()),
    ] {
        if let Some(a) = ip.and_then(|a| a.parse::<std::net::Ipv4Addr>().ok()) {
            if cidr.contains(a) {
                return Err(Error::invalid(
                    "cidr",
                    format!("{cidr} holds the hosts' own address {a} ({what})"),
                )
                .into());
            }
        }
    }
    for d in cfg
        .dmz_cidr
        .iter()
        .filter_map(|d| d.parse::<Ipv4Cidr>().ok())
    {
        if d.overlaps(cidr) {
            return Err(Error::invalid("cidr", format!("{cidr} overlaps dmz_cidr {d}")).into());
        }
    }
    for s in st.store.services()? {
        for n in s.networks.iter().filter_map(|n| n.parse::<Ipv4Cidr>().ok()) {
            if n.overlaps(cidr) {
                return Err(Error::invalid(
                    "cidr",
                    format!("{cidr} overlaps {n}, a network of host {}", s.host),
                )
                .into());
            }
        }
    }
    if let Some(f) = st
        .store
        .floating_ips(None)?
        .iter()
        .find(|f| f.address.parse().is_ok_and(|a| cidr.contains(a)))
    {
        return Err(Error::invalid(
            "cidr",
            format!(
                "{cidr} overlaps the floating IP pool {} ({})",
                f.pool, f.address
            ),
        )
        .into());
    }
    Ok(())
}

async fn delete_tenant_network(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let n = find_visible_network(&st, &ctx, &id)?;
    if !ctx.is_admin() && n.project_id.as_deref() != Some(ctx.project_id()) {
        return Err(ApiError::forbidden(
            "only the project's own networks can be deleted",
        ));
    }
    st.store.update_network(
        &n.uuid,
        &NetworkUpdate {
            project_id: Some(None),
            host: Some(None),
        },
    )?;
    st.store.delete_network(&n.uuid, false)?;
    Ok(ok_empty(StatusCode::ACCEPTED))
}

// ---- fixed IPs -----------------------------------------------------------------------------

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
    Ok(ok_empty(StatusCode::ACCEPTED))
}

// ---- floating IPs --------------------------------------------------------------------------

fn floating_view(f: &FloatingIp) -> Value {
    json!({"id": f.id, "ip": f.address, "pool": f.pool, "fixed_ip": f.fixed_ip, "instance_id": f.instance_uuid})
}

async fn list_pools(State(st): State<Arc<AppState>>, _ctx: Ctx) -> ApiResult<Json<Value>> {
    let pools: Vec<Value> = st
        .store
        .floating_pools()?
        .into_iter()
        .map(|p| json!({"name": p}))
        .collect();
    Ok(Json(json!({ "floating_ip_pools": pools })))
}

async fn list_floating(State(st): State<Arc<AppState>>, ctx: Ctx) -> ApiResult<Json<Value>> {
    let fl: Vec<Value> = st
        .store
        .floating_ips(Some(ctx.project_id()))?
        .iter()
        .map(floating_view)
        .collect();
    Ok(Json(json!({ "floating_ips": fl })))
}

fn own_floating(st: &AppState, ctx: &Ctx, id: &str) -> ApiResult<FloatingIp> {
    let f = st.store.floating_ip(id)?;
    if f.project_id.as_deref() != Some(ctx.project_id()) {
        return Err(ApiError::not_found(format!(
            "Floating IP {id} could not be found."
        )));
    }
    Ok(f)
}

async fn show_floating(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({ "floating_ip": floating_view(&own_floating(&st, &ctx, &id)?) }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AllocateBody {
    pool: Option<String>,
}

async fn allocate_floating(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<Option<AllocateBody>>,
) -> ApiResult<Json<Value>> {
    let pool = b
        .and_then(|b| b.pool)
        .unwrap_or_else(|| st.cfg.default_floating_pool.clone());
    let f = st
        .store
        .allocate_floating_ip(
            ctx.project_id(),
            &pool,
            crate::quotas::limit(&st, ctx.project_id(), "floating_ips")?,
        )
        .map_err(|e| match e {
            Error::Exhausted(_) => {
                ApiError::not_found(format!("No more floating IPs in pool {pool}."))
            }
            other => other.into(),
        })?;
    Ok(Json(json!({ "floating_ip": floating_view(&f) })))
}

async fn release_floating(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let f = own_floating(&st, &ctx, &id)?;
    if f.auto_assigned {
        return Err(ApiError::forbidden(
            "Cannot disassociate auto assigned floating IP",
        ));
    }
    st.store
        .release_floating_ip(&f.address, Some(ctx.project_id()))?;
    Ok(ok_empty(StatusCode::ACCEPTED))
}

fn bulk_view(st: &AppState, f: &FloatingIp) -> Value {
    let _ = st;
    json!({"address": f.address, "pool": f.pool, "interface": f.interface, "project_id": f.project_id,
           "instance_uuid": f.instance_uuid, "fixed_ip": f.fixed_ip})
}

async fn list_bulk(State(st): State<Arc<AppState>>, ctx: Ctx) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-floating-ips-bulk")?;
    let all: Vec<Value> = st
        .store
        .floating_ips(None)?
        .iter()
        .map(|f| bulk_view(&st, f))
        .collect();
    Ok(Json(json!({ "floating_ip_info": all })))
}

async fn list_bulk_host(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(host): Path<String>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-floating-ips-bulk")?;
    let all: Vec<Value> = st
        .store
        .floating_ips(None)?
        .iter()
        .filter(|f| f.host.as_deref() == Some(host.as_str()))
        .map(|f| bulk_view(&st, f))
        .collect();
    Ok(Json(json!({ "floating_ip_info": all })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkCreateBody {
    floating_ips_bulk_create: BulkCreate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkCreate {
    ip_range: String,
    pool: Option<String>,
    interface: Option<String>,
}

async fn create_bulk(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<BulkCreateBody>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-floating-ips-bulk")?;
    let b = b.floating_ips_bulk_create;
    let addrs = parse_range("ip_range", &b.ip_range)?;
    let pool = b
        .pool
        .unwrap_or_else(|| st.cfg.default_floating_pool.clone());
    let interface = b
        .interface
        .unwrap_or_else(|| st.cfg.public_interface.clone());
    st.store.create_floating_ips(&pool, &interface, &addrs)?;
    Ok(Json(
        json!({"floating_ips_bulk_create": {"ip_range": b.ip_range, "pool": pool, "interface": interface}}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkDeleteBody {
    ip_range: String,
}

async fn delete_bulk(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(action): Path<String>,
    Body(b): Body<BulkDeleteBody>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-floating-ips-bulk")?;
    if action != "delete" {
        return Err(ApiError::not_found("Unknown action"));
    }
    let addrs = parse_range("ip_range", &b.ip_range)?;
    st.store.delete_floating_ips(&addrs)?;
    Ok(Json(json!({ "floating_ips_bulk_delete": b.ip_range })))
}

// ---- security groups -----------------------------------------------------------------------

fn rule_view(r: &SecurityGroupRule) -> Value {
    json!({
        "id": r.id, "parent_group_id": r.parent_group_id, "ip_protocol": r.protocol,
        "from_port": r.from_port, "to_port": r.to_port,
        "group": match (&r.group_name, &r.group_project) {
            (Some(n), Some(p)) => json!({"name": n, "tenant_id": p}),
            _ => json!({}),
        },
        "ip_range": r.cidr.as_ref().map_or(json!({}), |c| json!({"cidr": c})),
    })
}

fn group_view(g: &SecurityGroup) -> Value {
    json!({"id": g.id, "name": g.name, "description": g.description, "tenant_id": g.project_id,
           "rules": g.rules.iter().map(rule_view).collect::<Vec<_>>()})
}

#[derive(Deserialize)]
struct AllTenants {
    all_tenants: Option<String>,
}

async fn list_groups(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<AllTenants>,
) -> ApiResult<Json<Value>> {
    st.store.ensure_default_group(ctx.project_id())?;
    let all = ctx.is_admin() && q.all_tenants.is_some_and(|v| v != "0" && v != "false");
    let scope = if all { None } else { Some(ctx.project_id()) };
    let groups: Vec<Value> = st
        .store
        .security_groups(scope)?
        .iter()
        .map(group_view)
        .collect();
    Ok(Json(json!({ "security_groups": groups })))
}

fn parse_id(what: &str, id: &str) -> ApiResult<i64> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("{what} id {id:?} is not an integer")))
}

fn own_group(st: &AppState, ctx: &Ctx, id: &str) -> ApiResult<SecurityGroup> {
    let g = st.store.security_group(parse_id("security group", id)?)?;
    if !ctx.is_admin() && g.project_id != ctx.project_id() {
        return Err(ApiError::not_found(format!(
            "Security group {id} not found."
        )));
    }
    Ok(g)
}

async fn show_group(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({ "security_group": group_view(&own_group(&st, &ctx, &id)?) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupBody {
    security_group: GroupFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFields {
    name: String,
    description: String,
}

async fn create_group(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<GroupBody>,
) -> ApiResult<Json<Value>> {
    let name = validate_group_text("name", &b.security_group.name)?;
    let desc = validate_group_text("description", &b.security_group.description)?;
    let g = st.store.create_security_group(
        ctx.project_id(),
        &name,
        &desc,
        crate::quotas::limit(&st, ctx.project_id(), "security_groups")?,
    )?;
    Ok(Json(json!({ "security_group": group_view(&g) })))
}

/// Nova's rename: clients send this PUT on every update of a group, changed or not.
async fn update_group(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<GroupBody>,
) -> ApiResult<Json<Value>> {
    let g = own_group(&st, &ctx, &id)?;
    let name = validate_group_text("name", &b.security_group.name)?;
    let desc = validate_group_text("description", &b.security_group.description)?;
    if g.name == "default" && name != "default" {
        return Err(Error::invalid("name", "the default group cannot be renamed").into());
    }
    let g = st.store.update_security_group(g.id, &name, &desc)?;
    Ok(Json(json!({ "security_group": group_view(&g) })))
}

/// `DELETE /os-security-groups/` names no group: Nova answers 404, not 405.
async fn no_group_named(_ctx: Ctx) -> ApiError {
    ApiError::not_found("Security group  not found (no id given).")
}

async fn delete_group(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let g = own_group(&st, &ctx, &id)?;
    st.store.delete_security_group(g.id)?;
    Ok(ok_empty(StatusCode::ACCEPTED))
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
        crate::quotas::limit(&st, &parent.project_id, "security_group_rules")?,
    )?;
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
    Ok(ok_empty(StatusCode::ACCEPTED))
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
    if matches!(kind, AdminRules::Provider) && rule.cidr.as_deref().is_some_and(|c| c.contains(':'))
    {
        // The drivers filter IPv4 only: an IPv6 drop would silently let traffic through.
        return Err(ApiError::bad_request(
            "cidr: provider rules take IPv4 ranges only",
        ));
    }
    let created = match kind {
        AdminRules::Default => st.store.add_default_rule(&rule)?,
        AdminRules::Provider => st.store.add_provider_rule(&rule)?,
    };
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
    Ok(ok_empty(StatusCode::NO_CONTENT))
}

// ---- keypairs, services, flavors, images, limits -------------------------------------------

#[derive(Deserialize)]
struct ServiceQuery {
    binary: Option<String>,
    host: Option<String>,
}

async fn list_services(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ServiceQuery>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("os_compute_api:os-services")?;
    let now = unix_now();
    let services: Vec<Value> = st
        .store
        .services()?
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": i + 1, "binary": if s.network_host { "nova-network" } else { "nova-compute" },
                   "host": s.host, "zone": "nova", "status": "enabled",
                   "state": if now - s.last_seen < st.cfg.service_down_time as i64 { "up" } else { "down" },
                   "updated_at": iso8601(s.last_seen), "disabled_reason": null})
        })
        .filter(|s: &Value| {
            q.binary.as_deref().is_none_or(|b| s["binary"] == b)
                && q.host.as_deref().is_none_or(|h| s["host"] == h)
        })
        .collect();
    Ok(Json(json!({ "services": services })))
}

fn flavor_view(f: &(&str, &str, u32, u32, u32)) -> Value {
    json!({"id": f.0, "name": f.1, "ram": f.2, "disk": f.3, "vcpus": f.4, "swap": "",
           "OS-FLV-EXT-DATA:ephemeral": 0, "os-flavor-access:is_public": true, "rxtx_factor": 1.0, "links": []})
}

#[derive(Deserialize)]
struct FlavorQuery {
    #[serde(rename = "minDisk")]
    min_disk: Option<String>,
    #[serde(rename = "minRam")]
    min_ram: Option<String>,
    limit: Option<String>,
    marker: Option<String>,
}

/// Nova's flavor filters and paging: minDisk, minRam, marker (a flavor id), limit.
fn flavors_for(q: &FlavorQuery) -> ApiResult<Vec<&'static Flavor>> {
    let num = |field: &str, v: &Option<String>| -> ApiResult<Option<u32>> {
        v.as_deref()
            .map(|s| {
                s.parse::<u32>().map_err(|_| {
                    Error::invalid(field, format!("{s:?} is not a non-negative integer")).into()
                })
            })
            .transpose()
    };
    let (disk, ram, limit) = (
        num("minDisk", &q.min_disk)?,
        num("minRam", &q.min_ram)?,
        num("limit", &q.limit)?,
    );
    let mut list: Vec<_> = FLAVORS
        .iter()
        .filter(|f| disk.is_none_or(|d| f.3 >= d) && ram.is_none_or(|r| f.2 >= r))
        .collect();
    if let Some(m) = &q.marker {
        let at = list
            .iter()
            .position(|f| f.0 == m)
            .ok_or_else(|| ApiError::bad_request(format!("marker [{m}] not found")))?;
        list.drain(..=at);
    }
    if let Some(l) = limit {
        list.truncate(l as usize);
    }
    Ok(list)
}

async fn list_flavors(_ctx: Ctx, Query(q): Query<FlavorQuery>) -> ApiResult<Json<Value>> {
    let list: Vec<Value> = flavors_for(&q)?
        .into_iter()
        .map(|f| json!({"id": f.0, "name": f.1, "links": []}))
        .collect();
    Ok(Json(json!({ "flavors": list })))
}

async fn list_flavors_detail(_ctx: Ctx, Query(q): Query<FlavorQuery>) -> ApiResult<Json<Value>> {
    let list: Vec<Value> = flavors_for(&q)?.into_iter().map(flavor_view).collect();
    Ok(Json(json!({ "flavors": list })))
}

async fn show_flavor(_ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    FLAVORS
        .iter()
        .find(|f| f.0 == id)
        .map(|f| Json(json!({ "flavor": flavor_view(f) })))
        .ok_or_else(|| ApiError::not_found(format!("Flavor {id} could not be found.")))
}

fn image_view(i: &(&str, &str)) -> Value {
    json!({"id": i.0, "name": i.1, "status": "active", "visibility": "public", "disk_format": "qcow2",
           "container_format": "bare", "min_disk": 0, "min_ram": 0, "size": 0})
}

#[derive(Deserialize)]
struct ImageQuery {
    name: Option<String>,
}

async fn list_images(_ctx: Ctx, Query(q): Query<ImageQuery>) -> Json<Value> {
    let imgs: Vec<Value> = IMAGES
        .iter()
        .filter(|i| q.name.as_deref().is_none_or(|n| n == i.1))
        .map(image_view)
        .collect();
    Json(json!({ "images": imgs }))
}

async fn show_image(_ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    IMAGES
        .iter()
        .find(|i| i.0 == id)
        .map(|i| Json(image_view(i)))
        .ok_or_else(|| ApiError::not_found(format!("Image {id} could not be found.")))
}

async fn limits(State(st): State<Arc<AppState>>, ctx: Ctx) -> ApiResult<Json<Value>> {
    let absolute = crate::quotas::absolute(&st, ctx.project_id())?;
    Ok(Json(json!({"limits": {"rate": [], "absolute": absolute}})))
}

// ---- servers -------------------------------------------------------------------------------

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
    for a in st.store.instance_addresses(&i.uuid)? {
        let e = addresses.entry(a.network_label.clone()).or_default();
        e.push(json!({"addr": a.address, "version": 4, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": a.mac}));
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
    let mut view = json!({
        "id": i.uuid, "name": i.spec.name, "status": "ACTIVE",
        "tenant_id": i.spec.project_id, "user_id": i.spec.user_id,
        "image": {"id": i.spec.image_id.clone().unwrap_or_default(), "links": []},
        "flavor": {"id": i.spec.flavor_id.clone().unwrap_or_else(|| "1".into()), "links": []},
        "addresses": addresses, "security_groups": groups, "metadata": i.spec.metadata,
        "key_name": i.spec.key_name, "OS-EXT-STS:task_state": null, "OS-EXT-STS:vm_state": "active",
        "OS-EXT-STS:power_state": 1, "OS-EXT-SRV-ATTR:host": i.spec.host,
        "OS-EXT-AZ:availability_zone": i.spec.availability_zone.clone().unwrap_or_else(|| "nova".into()),
        "created": created, "updated": iso8601(i.updated_at.max(i.created_at)), "hostId": "",
        "accessIPv4": i.spec.access_ip_v4.clone().unwrap_or_default(),
        "accessIPv6": i.spec.access_ip_v6.clone().unwrap_or_default(),
        "OS-DCF:diskConfig": "MANUAL", "progress": 0, "links": [],
    });
    // Nova leaves the key out for a server in no group.
    if view["security_groups"]
        .as_array()
        .is_some_and(Vec::is_empty)
    {
        view.as_object_mut().map(|o| o.remove("security_groups"));
    }
    if v.at_least(9) {
        view["locked"] = json!(false);
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
                .is_none_or(|x| x.eq_ignore_ascii_case("ACTIVE"))
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
fn schedule(st: &AppState, ctx: &Ctx, az: Option<&str>) -> ApiResult<Option<String>> {
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
        if !img.is_empty() && !IMAGES.iter().any(|i| i.0 == img || i.1 == img) {
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
    let limits = crate::quotas::limits_of(&st, ctx.project_id())?;
    let limit = |r: &str| limits.get(r).copied().unwrap_or(-1);
    let meta_quota = limit("metadata_items");
    if meta_quota >= 0 && metadata.len() as i64 > meta_quota {
        return Err(Error::OverLimit(format!(
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
    let (access_ip_v4, access_ip_v6) = crate::servers::access_ips(&access)?;
    let description = match (&s.description, v.at_least(19)) {
        (None, _) | (Some(Value::Null), _) => None,
        (Some(d), true) => Some(crate::servers::check_server_text("description", d, true)?),
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
        crate::quotas::instance_usage(&st, ctx.project_id())?
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
            return Err(Error::OverLimit(format!(
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
    st.store.delete_instance(&i.uuid, &st.cfg, unix_now())?;
    Ok(ok_empty(StatusCode::NO_CONTENT))
}

fn str_arg<'a>(v: &'a Value, key: &str, action: &str) -> ApiResult<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("{action} needs \"{key}\"")))
}

async fn server_action(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<Map<String, Value>>,
) -> ApiResult<Response> {
    let i = find_server(&st, &ctx, &id)?;
    let (action, arg) = one_action(&b)?;
    let scope = ctx.scope();
    match action.as_str() {
        "addFloatingIp" => {
            let address = str_arg(arg, "address", action)?;
            let fixed = arg.get("fixed_address").and_then(Value::as_str);
            let f = st
                .store
                .floating_ip(address)
                .map_err(|_| ApiError::not_found(format!("floating IP {address} not found")))?;
            if f.auto_assigned {
                return Err(ApiError::forbidden(
                    "Cannot associate auto assigned floating IP",
                ));
            }
            // Admins (scope None) may use any project's address, or an unallocated one.
            st.store
                .associate_floating_ip(address, &i.uuid, fixed, scope)?;
        }
        "removeFloatingIp" => {
            let address = str_arg(arg, "address", action)?;
            let f = st
                .store
                .floating_ip(address)
                .map_err(|_| ApiError::not_found(format!("floating IP {address} not found")))?;
            if f.auto_assigned {
                return Err(ApiError::forbidden(
                    "Cannot disassociate auto assigned floating IP",
                ));
            }
            st.store
                .disassociate_floating_ip(address, Some(&i.uuid), scope)?;
        }
        "addFixedIp" => {
            let net = arg
                .get("networkId")
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .ok_or_else(|| ApiError::bad_request("addFixedIp needs \"networkId\""))?;
            st.store.add_fixed_ip(&i.uuid, &net, &st.cfg)?;
        }
        // A record has no guest to reboot or re-network; nova-network's own actions too.
        "reboot" | "resetNetwork" | "injectNetworkInfo" => {}
        "removeFixedIp" => {
            let address = str_arg(arg, "address", action)?;
            st.store.remove_fixed_ip(&i.uuid, address, unix_now())?;
        }
        "addSecurityGroup" | "removeSecurityGroup" => {
            let name = str_arg(arg, "name", action)?;
            st.store.ensure_default_group(&i.spec.project_id)?;
            let g = st
                .store
                .security_groups(Some(&i.spec.project_id))?
                .into_iter()
                .find(|g| g.name == name)
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "Security group {name} not found for project {}.",
                        i.spec.project_id
                    ))
                })?;
            if action == "addSecurityGroup" {
                st.store.add_instance_security_group(&i.uuid, g.id)?;
            } else {
                st.store.remove_instance_security_group(&i.uuid, g.id)?;
            }
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "unsupported server action {other:?}"
            )))
        }
    }
    Ok(ok_empty(StatusCode::ACCEPTED))
}

async fn list_vifs(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    let mut seen = std::collections::BTreeSet::new();
    let vifs: Vec<Value> = st
        .store
        .instance_addresses(&i.uuid)?
        .into_iter()
        .filter(|a| seen.insert(a.vif_uuid.clone()))
        .map(|a| {
            let mut x = json!({"id": a.vif_uuid, "mac_address": a.mac, "OS-EXT-VIF-NET:net_id": a.network_uuid});
            // `net_id` came with 2.12.
            if v.at_least(12) {
                x["net_id"] = json!(a.network_uuid);
            }
            x
        })
        .collect();
    Ok(Json(json!({ "virtual_interfaces": vifs })))
}

async fn server_groups(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let i = find_server(&st, &ctx, &id)?;
    let groups: Vec<Value> = st
        .store
        .instance_security_groups(&i.uuid)?
        .iter()
        .map(group_view)
        .collect();
    Ok(Json(json!({ "security_groups": groups })))
}
