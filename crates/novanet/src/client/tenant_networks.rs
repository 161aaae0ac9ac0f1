//! The current project's networks (`/os-tenant-networks`).

use serde::Deserialize;
use serde_json::json;

use super::output::{done, or_dash, print_items, print_object, Column};
use super::wire::{read, Item};
use crate::session::{err, Res, Session};

#[derive(Deserialize)]
pub struct TenantNetwork {
    id: String,
    label: String,
    #[serde(default)]
    cidr: Option<String>,
}

#[derive(Deserialize)]
struct TenantNetworkBody {
    network: Item<TenantNetwork>,
}

#[derive(Deserialize)]
struct TenantNetworkList {
    #[serde(default)]
    networks: Vec<Item<TenantNetwork>>,
}

const COLUMNS: &[Column<TenantNetwork>] = &[
    ("ID", |n| n.id.clone()),
    ("Label", |n| n.label.clone()),
    ("CIDR", |n| or_dash(&n.cidr)),
];

fn all(s: &Session) -> Res<Vec<Item<TenantNetwork>>> {
    let v: TenantNetworkList = read(s.get("/os-tenant-networks")?, "GET /os-tenant-networks")?;
    Ok(v.networks)
}

fn find(s: &Session, key: &str) -> Res<Item<TenantNetwork>> {
    all(s)?
        .into_iter()
        .find(|n| n.id == key || n.label == key)
        .ok_or_else(|| {
            err(format!(
                "ERROR (CommandError): No network with a label or ID of '{key}' exists.\n\
                 `novanet tenant-network-list` shows the networks of project '{}'.",
                s.project_name
            ))
        })
}

pub fn list(s: &Session, as_json: bool) -> Res<()> {
    print_items(&all(s)?, COLUMNS, as_json);
    Ok(())
}

pub fn create(s: &Session, label: &str, cidr: &str, as_json: bool) -> Res<()> {
    let v: TenantNetworkBody = read(
        s.call(
            "POST",
            "/os-tenant-networks",
            Some(json!({"network": {"label": label, "cidr": cidr}})),
        )?,
        "POST /os-tenant-networks",
    )?;
    print_object(&v.network.raw, as_json);
    Ok(())
}

pub fn show(s: &Session, network: &str, as_json: bool) -> Res<()> {
    let n = find(s, network)?;
    let path = format!("/os-tenant-networks/{}", n.id);
    let v: TenantNetworkBody = read(s.get(&path)?, &format!("GET {path}"))?;
    print_object(&v.network.raw, as_json);
    Ok(())
}

pub fn delete(s: &Session, network: &str) -> Res<()> {
    let n = find(s, network)?;
    s.call("DELETE", &format!("/os-tenant-networks/{}", n.id), None)?;
    done(format_args!("Deleted network {} ({})", n.label, n.id));
    Ok(())
}
