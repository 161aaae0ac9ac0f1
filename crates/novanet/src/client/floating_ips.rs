//! Floating IPs: a project's (`/os-floating-ips`), the pools, associations with servers, and
//! the admin's bulk ranges (`/os-floating-ips-bulk`).

use serde::Deserialize;
use serde_json::json;

use super::output::{done, or_dash, print_items, Column};
use super::servers;
use super::wire::{read, Id, Item};
use crate::session::{err, Res, Session};

#[derive(Deserialize)]
pub struct FloatingIp {
    id: Id,
    ip: String,
    #[serde(default)]
    instance_id: Option<String>,
    #[serde(default)]
    fixed_ip: Option<String>,
    #[serde(default)]
    pool: Option<String>,
}

#[derive(Deserialize)]
struct FloatingIpBody {
    floating_ip: Item<FloatingIp>,
}

#[derive(Deserialize)]
struct FloatingIpList {
    #[serde(default)]
    floating_ips: Vec<Item<FloatingIp>>,
}

#[derive(Deserialize)]
pub struct Pool {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct PoolList {
    #[serde(default)]
    floating_ip_pools: Vec<Item<Pool>>,
}

/// A floating IP as the bulk API lists it (every project's).
#[derive(Deserialize)]
pub struct BulkEntry {
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    instance_uuid: Option<String>,
    #[serde(default)]
    pool: Option<String>,
    #[serde(default)]
    interface: Option<String>,
}

#[derive(Deserialize)]
struct BulkList {
    #[serde(default)]
    floating_ip_info: Vec<Item<BulkEntry>>,
}

#[derive(Deserialize)]
struct BulkCreated {
    floating_ips_bulk_create: BulkRange,
}

#[derive(Deserialize)]
struct BulkRange {
    #[serde(default)]
    pool: Option<String>,
    #[serde(default)]
    interface: Option<String>,
}

const COLUMNS: &[Column<FloatingIp>] = &[
    ("Id", |f| f.id.to_string()),
    ("IP", |f| f.ip.clone()),
    ("Server Id", |f| or_dash(&f.instance_id)),
    ("Fixed IP", |f| or_dash(&f.fixed_ip)),
    ("Pool", |f| or_dash(&f.pool)),
];

const BULK_COLUMNS: &[Column<BulkEntry>] = &[
    ("project_id", |f| or_dash(&f.project_id)),
    ("address", |f| or_dash(&f.address)),
    ("instance_uuid", |f| or_dash(&f.instance_uuid)),
    ("pool", |f| or_dash(&f.pool)),
    ("interface", |f| or_dash(&f.interface)),
];

fn project_list(s: &Session) -> Res<Vec<Item<FloatingIp>>> {
    let list: FloatingIpList = read(s.get("/os-floating-ips")?, "GET /os-floating-ips")?;
    Ok(list.floating_ips)
}

fn find(s: &Session, address: &str) -> Res<Item<FloatingIp>> {
    project_list(s)?
        .into_iter()
        .find(|f| f.ip == address)
        .ok_or_else(|| {
            err(format!(
                "ERROR (CommandError): Floating IP {address} not found in your project.\n\
                 `novanet floating-ip-list` shows the floating IPs of project '{}'.",
                s.project_name
            ))
        })
}

pub fn create(s: &Session, pool: Option<String>, as_json: bool) -> Res<()> {
    let v: FloatingIpBody = read(
        s.call("POST", "/os-floating-ips", Some(json!({ "pool": pool })))?,
        "POST /os-floating-ips",
    )?;
    print_items(&[v.floating_ip], COLUMNS, as_json);
    Ok(())
}

pub fn delete(s: &Session, address: &str) -> Res<()> {
    let f = find(s, address)?;
    s.call("DELETE", &format!("/os-floating-ips/{}", f.id), None)?;
    done(format_args!(
        "Released floating IP {address} from project {}",
        s.project_name
    ));
    Ok(())
}

pub fn list(s: &Session, as_json: bool) -> Res<()> {
    print_items(&project_list(s)?, COLUMNS, as_json);
    Ok(())
}

pub fn pool_list(s: &Session, as_json: bool) -> Res<()> {
    let v: PoolList = read(s.get("/os-floating-ip-pools")?, "GET /os-floating-ip-pools")?;
    let cols: &[Column<Pool>] = &[("name", |p| or_dash(&p.name))];
    print_items(&v.floating_ip_pools, cols, as_json);
    Ok(())
}

pub fn associate(
    s: &Session,
    server: &str,
    address: &str,
    fixed_address: Option<String>,
) -> Res<()> {
    let srv = servers::find(s, server)?;
    let mut body = json!({ "address": address });
    if let Some(f) = &fixed_address {
        body["fixed_address"] = json!(f);
    }
    servers::action(s, &srv, json!({ "addFloatingIp": body }))?;
    done(format_args!(
        "Associated floating IP {address} with server {}{}",
        srv.name,
        fixed_address.map(|f| format!(" ({f})")).unwrap_or_default()
    ));
    Ok(())
}

pub fn disassociate(s: &Session, server: &str, address: &str) -> Res<()> {
    let srv = servers::find(s, server)?;
    servers::action(s, &srv, json!({"removeFloatingIp": {"address": address}}))?;
    done(format_args!(
        "Disassociated floating IP {address} from server {}",
        srv.name
    ));
    Ok(())
}

pub fn bulk_create(
    s: &Session,
    ip_range: &str,
    pool: Option<String>,
    interface: Option<String>,
) -> Res<()> {
    let mut b = json!({ "ip_range": ip_range });
    if let Some(p) = pool {
        b["pool"] = json!(p);
    }
    if let Some(i) = interface {
        b["interface"] = json!(i);
    }
    let v: BulkCreated = read(
        s.call(
            "POST",
            "/os-floating-ips-bulk",
            Some(json!({ "floating_ips_bulk_create": b })),
        )?,
        "POST /os-floating-ips-bulk",
    )?;
    let made = &v.floating_ips_bulk_create;
    done(format_args!(
        "Created floating IPs {ip_range} in pool {} on interface {}",
        or_dash(&made.pool),
        or_dash(&made.interface)
    ));
    Ok(())
}

pub fn bulk_list(s: &Session, host: Option<String>, as_json: bool) -> Res<()> {
    let path = host
        .map(|h| format!("/os-floating-ips-bulk/{h}"))
        .unwrap_or_else(|| "/os-floating-ips-bulk".into());
    let v: BulkList = read(s.get(&path)?, &format!("GET {path}"))?;
    print_items(&v.floating_ip_info, BULK_COLUMNS, as_json);
    Ok(())
}

pub fn bulk_delete(s: &Session, ip_range: &str) -> Res<()> {
    s.call(
        "PUT",
        "/os-floating-ips-bulk/delete",
        Some(json!({ "ip_range": ip_range })),
    )?;
    done(format_args!("Deleted floating IPs {ip_range}"));
    Ok(())
}
