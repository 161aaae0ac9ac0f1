//! Networks (`/os-networks`): create, list, show, delete, associate and disassociate (admin).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::output::{done, or_dash, print_items, print_object, Column};
use super::wire::{read, Item};
use crate::args::NetworkCreateArgs;
use crate::session::{err, Auth, Res, Session};

/// What the client reads of a network.
#[derive(Deserialize, Debug, Clone)]
pub struct Network {
    pub id: String,
    pub label: String,
    #[serde(default)]
    pub cidr: Option<String>,
    #[serde(default)]
    pub cidr_v6: Option<String>,
}

#[derive(Deserialize)]
struct NetworkList {
    #[serde(default)]
    networks: Vec<Item<Network>>,
}

#[derive(Deserialize)]
struct NetworkBody {
    network: Item<Network>,
}

const COLUMNS: &[Column<Network>] = &[
    ("ID", |n| n.id.clone()),
    ("Label", |n| n.label.clone()),
    ("Cidr", |n| or_dash(&n.cidr)),
];

/// A network by UUID, label or CIDR.
pub fn find(s: &Session, key: &str) -> Res<Item<Network>> {
    let list: NetworkList = read(s.get("/os-networks")?, "GET /os-networks")?;
    list.networks
        .into_iter()
        .find(|n| n.id == key || n.label == key || n.cidr.as_deref() == Some(key))
        .ok_or_else(|| {
            err(format!(
                "ERROR (CommandError): No network with a label or ID of '{key}' exists.\n\
                 `novanet network-list` shows the networks project '{}' can see.",
                s.project_name
            ))
        })
}

pub fn create(s: &Session, auth: &Auth, a: &NetworkCreateArgs, as_json: bool) -> Res<()> {
    let body = request_body(s, auth, a)?;
    let v: NetworkBody = read(
        s.call("POST", "/os-networks", Some(body))?,
        "POST /os-networks",
    )?;
    let n = &v.network;
    if as_json {
        print_object(&n.raw, true);
    }
    let range = n.cidr.clone().or_else(|| n.cidr_v6.clone());
    done(format_args!(
        "Created network {} ({}, {})",
        n.label,
        n.id,
        or_dash(&range)
    ));
    Ok(())
}

pub fn list(s: &Session, as_json: bool) -> Res<()> {
    let list: NetworkList = read(s.get("/os-networks")?, "GET /os-networks")?;
    print_items(&list.networks, COLUMNS, as_json);
    Ok(())
}

pub fn show(s: &Session, network: &str, as_json: bool) -> Res<()> {
    print_object(&find(s, network)?.raw, as_json);
    Ok(())
}

pub fn delete(s: &Session, network: &str) -> Res<()> {
    let n = find(s, network)?;
    s.call("DELETE", &format!("/os-networks/{}", n.id), None)?;
    done(format_args!("Deleted network {} ({})", n.label, n.id));
    Ok(())
}

pub fn associate_host(s: &Session, network: &str, host: &str) -> Res<()> {
    let n = find(s, network)?;
    s.call(
        "POST",
        &format!("/os-networks/{}/action", n.id),
        Some(json!({ "associate_host": host })),
    )?;
    done(format_args!(
        "Associated network {} with host {host}",
        n.label
    ));
    Ok(())
}

pub fn associate_project(s: &Session, network: &str) -> Res<()> {
    let n = find(s, network)?;
    s.call("POST", "/os-networks/add", Some(json!({ "id": n.id })))?;
    done(format_args!(
        "Associated network {} with project {}",
        n.label, s.project_name
    ));
    Ok(())
}

pub fn disassociate(s: &Session, network: &str, host_only: bool, project_only: bool) -> Res<()> {
    let n = find(s, network)?;
    let (action, what) = match (host_only, project_only) {
        (true, _) => ("disassociate_host", "its host"),
        (_, true) => ("disassociate_project", "its project"),
        _ => ("disassociate", "its host and project"),
    };
    s.call(
        "POST",
        &format!("/os-networks/{}/action", n.id),
        Some(json!({ action: null })),
    )?;
    done(format_args!(
        "Disassociated network {} from {what}",
        n.label
    ));
    Ok(())
}

/// The `POST /os-networks` body from the CLI's flags, with the project (by id or name)
/// resolved to its id.
fn request_body(s: &Session, auth: &Auth, a: &NetworkCreateArgs) -> Res<Value> {
    let mut r = a
        .to_request()
        .map_err(|e| err(format!("ERROR (CommandError): {e}")))?;
    if r.cidr.is_none() && r.cidr_v6.is_none() {
        return Err(err(
            "ERROR (CommandError): Must specify either fixed_range_v4 or fixed_range_v6\n\
             Give the network's range, e.g. --fixed-range-v4 10.0.0.0/24.",
        ));
    }
    if let Some(p) = &r.project_id {
        r.project_id = Some(s.project_id_of(&auth.auth_url, p)?);
    }
    let mut body = serde_json::to_value(ApiNetworkOut::from(r)).expect("json");
    body.as_object_mut()
        .expect("object")
        .retain(|_, v| !v.is_null());
    Ok(json!({ "network": body }))
}

/// The `POST /os-networks` body.
#[derive(Serialize)]
struct ApiNetworkOut {
    label: String,
    cidr: Option<String>,
    cidr_v6: Option<String>,
    fixed_cidr: Option<String>,
    bridge: Option<String>,
    bridge_interface: Option<String>,
    vlan: Option<u32>,
    vlan_start: Option<u32>,
    vpn_start: Option<u32>,
    gateway: Option<String>,
    gateway_v6: Option<String>,
    dns1: Option<String>,
    dns2: Option<String>,
    multi_host: Option<bool>,
    project_id: Option<String>,
    dhcp_server: Option<String>,
    allowed_start: Option<String>,
    allowed_end: Option<String>,
    uuid: Option<String>,
    mtu: Option<u32>,
    enable_dhcp: Option<bool>,
    share_address: Option<bool>,
    priority: Option<i64>,
    num_networks: Option<u32>,
    network_size: Option<u64>,
}

impl From<novanet_core::planning::NetworkRequest> for ApiNetworkOut {
    fn from(r: novanet_core::planning::NetworkRequest) -> Self {
        ApiNetworkOut {
            label: r.label,
            cidr: r.cidr,
            cidr_v6: r.cidr_v6,
            fixed_cidr: r.fixed_cidr,
            bridge: r.bridge,
            bridge_interface: r.bridge_interface,
            vlan: r.vlan,
            vlan_start: r.vlan_start,
            vpn_start: r.vpn_start,
            gateway: r.gateway,
            gateway_v6: r.gateway_v6,
            dns1: r.dns1,
            dns2: r.dns2,
            multi_host: r.multi_host,
            project_id: r.project_id,
            dhcp_server: r.dhcp_server,
            allowed_start: r.allowed_start,
            allowed_end: r.allowed_end,
            uuid: r.uuid,
            mtu: r.mtu,
            enable_dhcp: r.enable_dhcp,
            share_address: r.share_address,
            priority: r.priority,
            num_networks: r.num_networks,
            network_size: r.network_size,
        }
    }
}
