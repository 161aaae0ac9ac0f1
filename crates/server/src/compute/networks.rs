//! `os-networks`: nova-network's networks as an admin sees and changes them (create, delete,
//! associate with a project or host, `add` to a project).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use novanet_core::model::Network;
use novanet_core::planning::NetworkRequest;
use novanet_core::Error;
use novanet_store::{NetworkUpdate, Store};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::ok_empty;
use super::one_action;
use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/os-networks", get(list_networks).post(create_network))
        .route("/os-networks/add", post(add_network))
        .route(
            "/os-networks/{id}",
            get(show_network).delete(delete_network),
        )
        .route("/os-networks/{id}/action", post(network_action))
}

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

pub(crate) fn find_visible_network(st: &AppState, ctx: &Ctx, id: &str) -> ApiResult<Network> {
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

pub(crate) fn int_field<T: TryFrom<i64>>(field: &str, v: &Option<Value>) -> ApiResult<Option<T>> {
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
    for n in &nets {
        tracing::info!(network = %n.uuid, label = %n.label, cidr = ?n.cidr, "network created");
    }
    claim_for_network_host(&st)?;
    Ok(Json(json!({ "network": network_view(&nets[0], true) })))
}

/// A service not heard from for this long (seconds) is down, as nova's service_down_time.
const SERVICE_DOWN_AFTER: i64 = 60;

pub(crate) fn claim_for_network_host(st: &AppState) -> ApiResult<()> {
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
    tracing::info!(network = %id, "network deleted");
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
    tracing::info!(project = %ctx.project_id(), network = ?b.id, "network added to the project");
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
            ..Default::default()
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
    tracing::info!(network = %id, action = %action, "network association changed");
    Ok(ok_empty(StatusCode::ACCEPTED))
}
