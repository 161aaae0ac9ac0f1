//! Servers (`/servers`): boot, list, show, delete, their fixed IPs, virtual interfaces and
//! config drive.

use std::collections::BTreeMap;

use base64::Engine;
use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};

use super::networks;
use super::output::{
    done, or_dash, print_items, print_json_list, print_object, print_table, Column,
};
use super::wire::{read, Item};
use crate::session::{err, Res, Session};
use crate::table::out;

// What `boot` takes. (No doc comment: clap would show it as the command's about.)
#[derive(Args, Debug)]
pub struct BootArgs {
    /// Name or ID of the image
    #[arg(long, alias = "p_w_picpath", value_name = "IMAGE")]
    image: Option<String>,
    /// Name or ID of the flavor (default 1, m1.tiny)
    #[arg(long, value_name = "FLAVOR")]
    flavor: Option<String>,
    /// A NIC on a network: net-id=UUID[,v4-fixed-ip=IP] (repeat for more NICs)
    #[arg(long, value_name = "net-id=UUID[,v4-fixed-ip=IP]")]
    nic: Vec<String>,
    /// Key name of the keypair to inject (see keypair-add)
    #[arg(long = "key-name", alias = "key_name", value_name = "NAME")]
    key_name: Option<String>,
    /// A file whose contents the metadata service serves as user data
    #[arg(long = "user-data", alias = "user_data", value_name = "FILE")]
    user_data: Option<String>,
    /// Metadata to record with the server (repeat for more)
    #[arg(long, value_name = "KEY=VALUE")]
    meta: Vec<String>,
    /// Comma-separated names of the security groups (default: default)
    #[arg(
        long = "security-groups",
        alias = "security_groups",
        value_name = "GROUPS"
    )]
    security_groups: Option<String>,
    /// The zone, or ZONE:HOST to place the server on a host (admin)
    #[arg(
        long = "availability-zone",
        alias = "availability_zone",
        value_name = "ZONE[:HOST]"
    )]
    availability_zone: Option<String>,
    /// Boot this many servers at once
    #[arg(long = "min-count", value_name = "N")]
    min_count: Option<u32>,
    /// Name for the new server
    name: String,
}

/// What the client reads of a server; `show` prints all the server sends.
#[derive(Deserialize, Debug, Clone)]
pub struct Server {
    pub id: String,
    pub name: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default, rename = "OS-EXT-STS:task_state")]
    task_state: Option<String>,
    #[serde(default, rename = "OS-EXT-STS:power_state")]
    power_state: Option<i64>,
    /// Network label to its addresses.
    #[serde(default)]
    addresses: BTreeMap<String, Vec<Address>>,
}

#[derive(Deserialize, Debug, Clone)]
struct Address {
    #[serde(default)]
    addr: Option<String>,
}

#[derive(Deserialize)]
struct ServerBody {
    server: Item<Server>,
}

#[derive(Deserialize)]
struct ServerList {
    #[serde(default)]
    servers: Vec<Item<Server>>,
}

/// A server as `GET /servers?name=` lists it.
#[derive(Deserialize)]
struct ServerRef {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct ServerRefs {
    #[serde(default)]
    servers: Vec<ServerRef>,
}

#[derive(Deserialize)]
struct Created {
    server: CreatedServer,
}

#[derive(Deserialize)]
struct CreatedServer {
    id: String,
}

#[derive(Deserialize)]
struct Image {
    id: String,
}

#[derive(Deserialize)]
struct ImageList {
    #[serde(default)]
    images: Vec<Image>,
}

#[derive(Deserialize)]
struct VirtualInterface {
    id: String,
    #[serde(default)]
    mac_address: Option<String>,
}

#[derive(Deserialize)]
struct VirtualInterfaces {
    #[serde(default)]
    virtual_interfaces: Vec<Item<VirtualInterface>>,
}

impl Server {
    /// novaclient's Networks column: `label=addr, addr; label=addr`.
    fn networks(&self) -> String {
        self.addresses
            .iter()
            .map(|(label, addrs)| {
                let a: Vec<String> = addrs.iter().map(|x| or_dash(&x.addr)).collect();
                format!("{label}={}", a.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// novaclient's names of nova's power states.
    fn power(&self) -> &'static str {
        match self.power_state {
            Some(1) => "Running",
            Some(3) => "Paused",
            Some(4) => "Shutdown",
            Some(6) => "Crashed",
            Some(7) => "Suspended",
            _ => "NOSTATE",
        }
    }
}

fn is_uuid(s: &str) -> bool {
    novanet_core::planning::is_uuid(s)
}

fn get_server(s: &Session, id: &str) -> Res<Item<Server>> {
    let path = format!("/servers/{id}");
    let body: ServerBody = read(s.get(&path)?, &format!("GET {path}"))?;
    Ok(body.server)
}

/// A server by ID or (unique) name.
pub fn find(s: &Session, key: &str) -> Res<Item<Server>> {
    if is_uuid(key) {
        if let Ok(v) = s.get(&format!("/servers/{key}")) {
            let body: ServerBody = read(v, &format!("GET /servers/{key}"))?;
            return Ok(body.server);
        }
    }
    let path = format!("/servers?name={key}");
    let list: ServerRefs = read(s.get(&path)?, &format!("GET {path}"))?;
    let matches: Vec<&ServerRef> = list.servers.iter().filter(|s| s.name == key).collect();
    match matches.as_slice() {
        [one] => get_server(s, &one.id),
        [] => Err(err(format!("ERROR (CommandError): No server with a name or ID of '{key}' exists.\n`novanet list` shows the servers of project '{}' (admins: `novanet list --all-tenants`).", s.project_name))),
        _ => Err(err(format!("ERROR (CommandError): Multiple server matches found for '{key}', use an ID to be more specific."))),
    }
}

/// Runs a server action (`POST /servers/ID/action`).
pub fn action(s: &Session, server: &Server, body: Value) -> Res<Value> {
    s.call(
        "POST",
        &format!("/servers/{}/action", server.id),
        Some(body),
    )
}

fn image_id(s: &Session, image: &str) -> Res<String> {
    if is_uuid(image) {
        return Ok(image.to_string());
    }
    let path = format!("/v2/images?name={image}");
    let list: ImageList = read(s.get(&path)?, &format!("GET {path}"))?;
    match list.images.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(err(format!("ERROR (CommandError): No Image matching {image}."))),
        _ => Err(err(format!("ERROR (CommandError): Multiple image matches found for '{image}', use an ID to be more specific."))),
    }
}

pub fn boot(s: &Session, a: BootArgs, as_json: bool) -> Res<()> {
    let image_id = a.image.as_deref().map(|i| image_id(s, i)).transpose()?;
    let count = a.min_count.unwrap_or(1);
    let mut server = json!({"name": a.name, "flavorRef": a.flavor.unwrap_or_else(|| "1".into()), "min_count": count, "max_count": count});
    if let Some(i) = image_id {
        server["imageRef"] = json!(i);
    }
    let mut nets = Vec::new();
    for n in &a.nic {
        let mut entry = serde_json::Map::new();
        for kv in n.split(',') {
            match kv.split_once('=') {
                Some(("net-id", v)) => {
                    entry.insert("uuid".into(), json!(v));
                }
                Some(("v4-fixed-ip", v)) => {
                    entry.insert("fixed_ip".into(), json!(v));
                }
                _ => return Err(err(format!("ERROR (CommandError): Invalid nic argument '{n}'. Nic arguments must be of the form --nic <net-id=net-uuid,v4-fixed-ip=ip-addr>"))),
            }
        }
        nets.push(Value::Object(entry));
    }
    if !nets.is_empty() {
        server["networks"] = Value::Array(nets);
    }
    if let Some(k) = a.key_name {
        server["key_name"] = json!(k);
    }
    if let Some(f) = a.user_data {
        let data = std::fs::read(&f).map_err(|e| {
            err(format!(
                "ERROR (CommandError): cannot read user data {f}: {e}"
            ))
        })?;
        server["user_data"] = json!(base64::engine::general_purpose::STANDARD.encode(data));
    }
    if !a.meta.is_empty() {
        let mut m = serde_json::Map::new();
        for kv in &a.meta {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                err(format!(
                    "ERROR (CommandError): --meta {kv} is not KEY=VALUE"
                ))
            })?;
            m.insert(k.into(), json!(v));
        }
        server["metadata"] = Value::Object(m);
    }
    if let Some(g) = a.security_groups {
        server["security_groups"] =
            json!(g.split(',').map(|n| json!({"name": n})).collect::<Vec<_>>());
    }
    if let Some(az) = a.availability_zone {
        server["availability_zone"] = json!(az);
    }
    let made: Created = read(
        s.call("POST", "/servers", Some(json!({ "server": server })))?,
        "POST /servers",
    )?;
    print_object(&get_server(s, &made.server.id)?.raw, as_json);
    Ok(())
}

const LIST_COLUMNS: &[Column<Server>] = &[
    ("ID", |r| r.id.clone()),
    ("Name", |r| r.name.clone()),
    ("Status", |r| or_dash(&r.status)),
    ("Task State", |r| or_dash(&r.task_state)),
    ("Power State", |r| r.power().to_string()),
    ("Networks", Server::networks),
];

pub fn list(s: &Session, all_tenants: Option<String>, as_json: bool) -> Res<()> {
    let q = all_tenants
        .map(|a| format!("?all_tenants={a}"))
        .unwrap_or_default();
    let path = format!("/servers/detail{q}");
    let mut list: ServerList = read(s.get(&path)?, &format!("GET {path}"))?;
    list.servers.sort_by(|a, b| a.name.cmp(&b.name));
    if as_json {
        // The servers as sent, with the table's derived columns under the keys `--json`
        // has always printed them with.
        let rows = list
            .servers
            .iter()
            .map(|r| {
                let mut raw = r.raw.clone();
                raw["_networks"] = json!(r.networks());
                raw["_task"] = json!(or_dash(&r.task_state));
                raw["_power"] = json!(r.power());
                raw
            })
            .collect();
        print_json_list(rows);
        return Ok(());
    }
    print_table(list.servers.iter().map(|r| &r.fields), LIST_COLUMNS);
    Ok(())
}

pub fn show(s: &Session, server: &str, as_json: bool) -> Res<()> {
    print_object(&find(s, server)?.raw, as_json);
    Ok(())
}

pub fn delete(s: &Session, servers: &[String]) -> Res<()> {
    for name in servers {
        let srv = find(s, name)?;
        s.call("DELETE", &format!("/servers/{}", srv.id), None)?;
        out(&format!(
            "Request to delete server {name} has been accepted."
        ));
    }
    Ok(())
}

/// `stop` and `start`: one action per server, as novaclient sends them.
pub fn power(s: &Session, servers: &[String], action: &str) -> Res<()> {
    for name in servers {
        let srv = find(s, name)?;
        self::action(s, &srv, json!({ action: null }))?;
        let verb = if action == "os-stop" { "stop" } else { "start" };
        out(&format!(
            "Request to {verb} server {name} has been accepted."
        ));
    }
    Ok(())
}

pub fn reboot(s: &Session, server: &str, hard: bool) -> Res<()> {
    let srv = find(s, server)?;
    let kind = if hard { "HARD" } else { "SOFT" };
    action(s, &srv, json!({"reboot": {"type": kind}}))?;
    out(&format!(
        "Request to reboot server {server} has been accepted."
    ));
    Ok(())
}

pub fn console_log(s: &Session, server: &str, length: Option<u32>) -> Res<()> {
    let srv = find(s, server)?;
    let v = action(s, &srv, json!({"os-getConsoleOutput": {"length": length}}))?;
    print!("{}", v["output"].as_str().unwrap_or_default());
    Ok(())
}

pub fn add_fixed_ip(s: &Session, server: &str, network: &str) -> Res<()> {
    let srv = find(s, server)?;
    let n = networks::find(s, network)?;
    action(s, &srv, json!({"addFixedIp": {"networkId": n.id}}))?;
    done(format_args!(
        "Added a fixed IP on network {} to server {}",
        n.label, srv.name
    ));
    Ok(())
}

pub fn remove_fixed_ip(s: &Session, server: &str, address: &str) -> Res<()> {
    let srv = find(s, server)?;
    action(s, &srv, json!({"removeFixedIp": {"address": address}}))?;
    done(format_args!(
        "Removed fixed IP {address} from server {}",
        srv.name
    ));
    Ok(())
}

pub fn config_drive(s: &Session, server: &str, output: &std::path::Path) -> Res<()> {
    let srv = find(s, server)?;
    let iso = s.get_bytes(
        &format!("/novanet/v1/instances/{}/config-drive", srv.id),
        64 << 20,
    )?;
    std::fs::write(output, &iso)
        .map_err(|e| err(format!("ERROR: writing {}: {e}", output.display())))?;
    done(format_args!(
        "Wrote the config drive of server {} to {} ({} bytes)",
        srv.name,
        output.display(),
        iso.len()
    ));
    Ok(())
}

pub fn virtual_interfaces(s: &Session, server: &str, as_json: bool) -> Res<()> {
    let srv = find(s, server)?;
    let path = format!("/servers/{}/os-virtual-interfaces", srv.id);
    let list: VirtualInterfaces = read(s.get(&path)?, &format!("GET {path}"))?;
    let cols: &[Column<VirtualInterface>] = &[
        ("Id", |v| v.id.clone()),
        ("Mac address", |v| or_dash(&v.mac_address)),
    ];
    print_items(&list.virtual_interfaces, cols, as_json);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_networks_column_and_power_state() {
        let v = json!({"id": "x", "name": "vm", "OS-EXT-STS:power_state": 1,
            "addresses": {"vmnet": [{"addr": "10.0.0.2"}, {"addr": "68.99.26.170"}], "b": [{"addr": "10.1.0.2"}]}});
        let s: Server = serde_json::from_value(v).unwrap();
        assert_eq!(s.networks(), "b=10.1.0.2; vmnet=10.0.0.2, 68.99.26.170");
        assert_eq!(s.power(), "Running");
        let s: Server = serde_json::from_value(json!({"id": "y", "name": "vm2"})).unwrap();
        assert_eq!((s.networks().as_str(), s.power()), ("", "NOSTATE"));
    }
}
