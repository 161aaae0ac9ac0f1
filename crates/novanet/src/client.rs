//! `novanet COMMAND`: the nova client's commands, with the seeds' spellings, over the API.

use std::io::Read;
use std::time::Duration;

use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::args::NetworkCreateArgs;
use crate::table::Table;

#[derive(Args, Debug, Clone)]
pub struct Auth {
    #[arg(
        long = "os-auth-url",
        env = "OS_AUTH_URL",
        global = true,
        default_value = "http://127.0.0.1:8774/identity/v3"
    )]
    pub auth_url: String,
    #[arg(
        long = "os-username",
        env = "OS_USERNAME",
        global = true,
        default_value = "admin"
    )]
    pub username: String,
    #[arg(
        long = "os-password",
        env = "OS_PASSWORD",
        global = true,
        default_value = "",
        hide_env_values = true
    )]
    pub password: String,
    #[arg(
        long = "os-project-name",
        env = "OS_PROJECT_NAME",
        global = true,
        default_value = "admin"
    )]
    pub project: String,
    /// Print JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}

/// A rule outside any group, as novaclient's default-rule commands spell it.
#[derive(Args, Debug, Clone)]
pub struct AdminRuleArgs {
    ip_proto: String,
    from_port: i32,
    to_port: i32,
    cidr: String,
}

// Parsed once per process: the size of the biggest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum ClientCmd {
    NetworkCreate(NetworkCreateArgs),
    NetworkList,
    NetworkShow {
        network: String,
    },
    NetworkDelete {
        network: String,
    },
    NetworkAssociateHost {
        network: String,
        host: String,
    },
    NetworkAssociateProject {
        network: String,
    },
    NetworkDisassociate {
        #[arg(long = "host-only", default_value = "0")]
        host_only: String,
        #[arg(long = "project-only", default_value = "0")]
        project_only: String,
        network: String,
    },
    Boot {
        #[arg(long, alias = "p_w_picpath")]
        image: Option<String>,
        #[arg(long)]
        flavor: Option<String>,
        /// net-id=UUID[,v4-fixed-ip=IP]
        #[arg(long)]
        nic: Vec<String>,
        #[arg(long = "key-name", alias = "key_name")]
        key_name: Option<String>,
        #[arg(long = "user-data", alias = "user_data")]
        user_data: Option<String>,
        /// KEY=VALUE
        #[arg(long)]
        meta: Vec<String>,
        /// comma-separated group names
        #[arg(long = "security-groups", alias = "security_groups")]
        security_groups: Option<String>,
        #[arg(long = "availability-zone", alias = "availability_zone")]
        availability_zone: Option<String>,
        #[arg(long = "min-count")]
        min_count: Option<u32>,
        name: String,
    },
    List {
        #[arg(long = "all-tenants", num_args = 0..=1, default_missing_value = "1")]
        all_tenants: Option<String>,
    },
    Show {
        server: String,
    },
    Delete {
        servers: Vec<String>,
    },
    FloatingIpCreate {
        pool: Option<String>,
    },
    FloatingIpDelete {
        address: String,
    },
    FloatingIpList,
    FloatingIpPoolList,
    FloatingIpAssociate {
        #[arg(long = "fixed-address")]
        fixed_address: Option<String>,
        server: String,
        address: String,
    },
    FloatingIpDisassociate {
        server: String,
        address: String,
    },
    FloatingIpBulkCreate {
        ip_range: String,
        #[arg(long)]
        pool: Option<String>,
        #[arg(long)]
        interface: Option<String>,
    },
    FloatingIpBulkList {
        #[arg(long)]
        host: Option<String>,
    },
    FloatingIpBulkDelete {
        ip_range: String,
    },
    FixedIpGet {
        address: String,
    },
    FixedIpReserve {
        address: String,
    },
    FixedIpUnreserve {
        address: String,
    },
    AddFixedIp {
        server: String,
        network: String,
    },
    RemoveFixedIp {
        server: String,
        address: String,
    },
    SecgroupCreate {
        name: String,
        description: String,
    },
    SecgroupList {
        #[arg(long = "all-tenants", num_args = 0..=1, default_missing_value = "1")]
        all_tenants: Option<String>,
    },
    SecgroupDelete {
        group: String,
    },
    #[command(allow_negative_numbers = true)]
    SecgroupAddRule {
        group: String,
        ip_proto: String,
        from_port: i32,
        to_port: i32,
        cidr: String,
    },
    #[command(allow_negative_numbers = true)]
    SecgroupDeleteRule {
        group: String,
        ip_proto: String,
        from_port: i32,
        to_port: i32,
        cidr: String,
    },
    #[command(allow_negative_numbers = true)]
    SecgroupAddGroupRule {
        group: String,
        source_group: String,
        ip_proto: String,
        from_port: i32,
        to_port: i32,
    },
    SecgroupListRules {
        group: String,
    },
    /// Adds a rule copied into every new `default` group (admin)
    #[command(allow_negative_numbers = true)]
    SecgroupAddDefaultRule(AdminRuleArgs),
    #[command(allow_negative_numbers = true)]
    SecgroupDeleteDefaultRule(AdminRuleArgs),
    SecgroupListDefaultRules,
    /// Adds a provider rule (admin): what it matches is dropped for every instance
    #[command(allow_negative_numbers = true)]
    ProviderRuleAdd(AdminRuleArgs),
    #[command(allow_negative_numbers = true)]
    ProviderRuleDelete(AdminRuleArgs),
    ProviderRuleList,
    AddSecgroup {
        server: String,
        group: String,
    },
    RemoveSecgroup {
        server: String,
        group: String,
    },
    KeypairAdd {
        #[arg(long = "pub-key", alias = "pub_key")]
        pub_key: Option<String>,
        name: String,
    },
    KeypairList,
    KeypairDelete {
        name: String,
    },
    VirtualInterfaceList {
        server: String,
    },
    /// GET a compute API path and print the JSON (for scripts)
    #[command(hide = true)]
    ApiGet {
        path: String,
    },
    /// Report where a hypervisor plugged a VIF (the lab does this for its VMs)
    #[command(hide = true)]
    VifPlug {
        vif: String,
        device: String,
    },
}

/// A failed call: nova's `ERROR (Kind): message (HTTP code)`.
#[derive(Debug)]
pub struct ClientError(pub String);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Res<T> = Result<T, ClientError>;

fn err(m: impl Into<String>) -> ClientError {
    ClientError(m.into())
}

pub struct Session {
    http: ureq::Agent,
    token: String,
    compute: String,
    image: String,
}

fn http_error(e: ureq::Error) -> ClientError {
    match e {
        ureq::Error::Status(code, resp) => {
            let body: Value = resp.into_json().unwrap_or(Value::Null);
            let (kind, msg) = body
                .as_object()
                .and_then(|o| o.iter().next())
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .unwrap_or_else(|| ("Error".into(), body.to_string()));
            err(format!("ERROR ({kind}): {msg} (HTTP {code})"))
        }
        ureq::Error::Transport(t) => err(format!("ERROR (ConnectionRefused): {t}")),
    }
}

impl Session {
    pub fn login(a: &Auth) -> Res<Session> {
        let http = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": a.username, "password": a.password, "domain": {"id": "default"}}}},
            "scope": {"project": {"name": a.project, "domain": {"id": "default"}}}}});
        let url = format!("{}/auth/tokens", a.auth_url.trim_end_matches('/'));
        let resp = http.post(&url).send_json(body).map_err(http_error)?;
        let token = resp
            .header("x-subject-token")
            .ok_or_else(|| err("ERROR: no X-Subject-Token in the identity response"))?
            .to_string();
        let v: Value = resp
            .into_json()
            .map_err(|e| err(format!("ERROR: bad token response: {e}")))?;
        let url_of = |kind: &str| -> Res<String> {
            v["token"]["catalog"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["type"] == kind)
                .and_then(|s| {
                    s["endpoints"]
                        .as_array()?
                        .iter()
                        .find(|e| e["interface"] == "public")
                })
                .and_then(|e| e["url"].as_str())
                .map(|u| u.trim_end_matches('/').to_string())
                .ok_or_else(|| {
                    err(format!(
                        "ERROR (EndpointNotFound): publicURL endpoint for {kind} service not found"
                    ))
                })
        };
        Ok(Session {
            compute: url_of("compute")?,
            image: url_of("image")?,
            token,
            http,
        })
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Res<Value> {
        let root = self.compute.trim_end_matches("/v2.1").to_string();
        let base = if path.starts_with("/v2/images") {
            &self.image
        } else if path.starts_with("/novanet/") {
            &root
        } else {
            &self.compute
        };
        let req = self
            .http
            .request(method, &format!("{base}{path}"))
            .set("X-Auth-Token", &self.token)
            .set("X-OpenStack-Nova-API-Version", "2.35");
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        }
        .map_err(http_error)?;
        let mut text = String::new();
        resp.into_reader()
            .read_to_string(&mut text)
            .map_err(|e| err(e.to_string()))?;
        Ok(if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        })
    }

    fn get(&self, path: &str) -> Res<Value> {
        self.call("GET", path, None)
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_list(items: &[Value], cols: &[(&str, &str)], as_json: bool) {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(items.to_vec())).expect("json")
        );
        return;
    }
    let mut t = Table::new(&cols.iter().map(|c| c.0).collect::<Vec<_>>());
    for i in items {
        t.row(cols.iter().map(|(_, k)| cell(&i[*k])).collect());
    }
    println!("{}", t.render());
}

fn print_object(v: &Value, as_json: bool) {
    if as_json {
        println!("{}", serde_json::to_string_pretty(v).expect("json"));
        return;
    }
    let mut t = Table::new(&["Property", "Value"]);
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            let s = match val {
                Value::Object(_) | Value::Array(_) => val.to_string(),
                other => cell(other),
            };
            t.row(vec![k.clone(), s]);
        }
    }
    println!("{}", t.render());
}

fn is_uuid(s: &str) -> bool {
    novanet_core::planning::is_uuid(s)
}

impl Session {
    fn find_server(&self, key: &str) -> Res<Value> {
        if is_uuid(key) {
            if let Ok(v) = self.get(&format!("/servers/{key}")) {
                return Ok(v["server"].clone());
            }
        }
        let list = self.get(&format!("/servers?name={key}"))?;
        let matches: Vec<&Value> = list["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["name"] == key)
            .collect();
        match matches.as_slice() {
            [one] => Ok(self.get(&format!("/servers/{}", cell(&one["id"])))?["server"].clone()),
            [] => Err(err(format!("ERROR (CommandError): No server with a name or ID of '{key}' exists."))),
            _ => Err(err(format!("ERROR (CommandError): Multiple server matches found for '{key}', use an ID to be more specific."))),
        }
    }

    fn find_network(&self, key: &str) -> Res<Value> {
        let list = self.get("/os-networks")?;
        list["networks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["id"] == key || n["label"] == key || n["cidr"] == key)
            .cloned()
            .ok_or_else(|| {
                err(format!(
                    "ERROR (CommandError): No network with a label or ID of '{key}' exists."
                ))
            })
    }

    fn find_group(&self, key: &str) -> Res<Value> {
        let list = self.get("/os-security-groups")?;
        list["security_groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["name"] == key || cell(&g["id"]) == key)
            .cloned()
            .ok_or_else(|| {
                err(format!(
                    "ERROR (CommandError): Secgroup ID or name '{key}' not found."
                ))
            })
    }

    fn find_floating(&self, address: &str) -> Res<Value> {
        let list = self.get("/os-floating-ips")?;
        list["floating_ips"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["ip"] == address)
            .cloned()
            .ok_or_else(|| {
                err(format!(
                    "ERROR (CommandError): Floating IP {address} not found in your project."
                ))
            })
    }
}

fn server_networks(s: &Value) -> String {
    s["addresses"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(label, addrs)| {
                    let a: Vec<String> = addrs
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|x| cell(&x["addr"]))
                        .collect();
                    format!("{label}={}", a.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

const RULE_COLS: &[(&str, &str)] = &[
    ("IP Protocol", "ip_protocol"),
    ("From Port", "from_port"),
    ("To Port", "to_port"),
    ("IP Range", "_range"),
    ("Source Group", "_group"),
];

const DEFAULT_RULES: &str = "/os-security-group-default-rules";
const DEFAULT_RULE: &str = "security_group_default_rule";
const PROVIDER_RULES: &str = "/os-provider-firewall-rules";
const PROVIDER_RULE: &str = "provider_firewall_rule";

const ADMIN_RULE_COLS: &[(&str, &str)] = &[
    ("IP Protocol", "ip_protocol"),
    ("From Port", "from_port"),
    ("To Port", "to_port"),
    ("IP Range", "_range"),
];

/// What `cmd` does to the rules an admin keeps at `path` (whose bodies use `key`): add,
/// delete (found by its fields, as novaclient does) or list (`None`).
fn admin_rules(
    s: &Session,
    path: &str,
    key: &str,
    add: bool,
    r: Option<AdminRuleArgs>,
    j: bool,
) -> Res<()> {
    let Some(r) = r else {
        let v = s.call("GET", path, None)?;
        let rows: Vec<Value> = v[format!("{key}s")]
            .as_array()
            .into_iter()
            .flatten()
            .map(rule_row)
            .collect();
        print_list(&rows, ADMIN_RULE_COLS, j);
        return Ok(());
    };
    if add {
        let body = json!({ key: {"ip_protocol": r.ip_proto, "from_port": r.from_port, "to_port": r.to_port, "cidr": r.cidr}});
        let v = s.call("POST", path, Some(body))?;
        print_list(&[rule_row(&v[key])], ADMIN_RULE_COLS, j);
        return Ok(());
    }
    let v = s.call("GET", path, None)?;
    let rule = v[format!("{key}s")]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| {
            x["ip_protocol"] == r.ip_proto.to_lowercase().as_str()
                && x["from_port"] == r.from_port
                && x["to_port"] == r.to_port
                && x["ip_range"]["cidr"] == r.cidr.as_str()
        })
        .cloned()
        .ok_or_else(|| err("ERROR (CommandError): Rule not found"))?;
    s.call("DELETE", &format!("{path}/{}", cell(&rule["id"])), None)?;
    Ok(())
}

fn rule_row(r: &Value) -> Value {
    let mut r = r.clone();
    r["_range"] = r["ip_range"].get("cidr").cloned().unwrap_or(json!(""));
    r["_group"] = r["group"].get("name").cloned().unwrap_or(json!(""));
    for k in ["ip_protocol", "from_port", "to_port"] {
        if r[k].is_null() {
            r[k] = json!("");
        }
    }
    r
}

pub fn run(auth: &Auth, cmd: ClientCmd) -> Res<()> {
    let s = Session::login(auth)?;
    let j = auth.json;
    match cmd {
        ClientCmd::NetworkCreate(a) => {
            let r = a
                .to_request()
                .map_err(|e| err(format!("ERROR (CommandError): {e}")))?;
            if r.cidr.is_none() && r.cidr_v6.is_none() {
                return Err(err(
                    "ERROR (CommandError): Must specify either fixed_range_v4 or fixed_range_v6",
                ));
            }
            let mut body = serde_json::to_value(ApiNetworkOut::from(r)).expect("json");
            body.as_object_mut()
                .expect("object")
                .retain(|_, v| !v.is_null());
            let v = s.call("POST", "/os-networks", Some(json!({ "network": body })))?;
            if j {
                print_object(&v["network"], true);
            }
        }
        ClientCmd::NetworkList => {
            let v = s.get("/os-networks")?;
            print_list(
                v["networks"].as_array().map(Vec::as_slice).unwrap_or(&[]),
                &[("ID", "id"), ("Label", "label"), ("Cidr", "cidr")],
                j,
            );
        }
        ClientCmd::NetworkShow { network } => print_object(&s.find_network(&network)?, j),
        ClientCmd::NetworkDelete { network } => {
            let n = s.find_network(&network)?;
            s.call("DELETE", &format!("/os-networks/{}", cell(&n["id"])), None)?;
        }
        ClientCmd::NetworkAssociateHost { network, host } => {
            let n = s.find_network(&network)?;
            s.call(
                "POST",
                &format!("/os-networks/{}/action", cell(&n["id"])),
                Some(json!({"associate_host": host})),
            )?;
        }
        ClientCmd::NetworkAssociateProject { network } => {
            let n = s.find_network(&network)?;
            s.call("POST", "/os-networks/add", Some(json!({"id": n["id"]})))?;
        }
        ClientCmd::NetworkDisassociate {
            host_only,
            project_only,
            network,
        } => {
            let n = s.find_network(&network)?;
            let action = match (host_only == "1", project_only == "1") {
                (true, _) => "disassociate_host",
                (_, true) => "disassociate_project",
                _ => "disassociate",
            };
            s.call(
                "POST",
                &format!("/os-networks/{}/action", cell(&n["id"])),
                Some(json!({ action: null })),
            )?;
        }
        ClientCmd::Boot {
            image,
            flavor,
            nic,
            key_name,
            user_data,
            meta,
            security_groups,
            availability_zone,
            min_count,
            name,
        } => {
            let image_id = match image {
                Some(i) if is_uuid(&i) => Some(i),
                Some(i) => {
                    let v = s.get(&format!("/v2/images?name={i}"))?;
                    let imgs = v["images"].as_array().cloned().unwrap_or_default();
                    match imgs.as_slice() {
                        [one] => Some(cell(&one["id"])),
                        [] => return Err(err(format!("ERROR (CommandError): No Image matching {i}."))),
                        _ => return Err(err(format!("ERROR (CommandError): Multiple image matches found for '{i}', use an ID to be more specific."))),
                    }
                }
                None => None,
            };
            let mut server = json!({"name": name, "flavorRef": flavor.unwrap_or_else(|| "1".into()), "min_count": min_count.unwrap_or(1), "max_count": min_count.unwrap_or(1)});
            if let Some(i) = image_id {
                server["imageRef"] = json!(i);
            }
            let mut nets = Vec::new();
            for n in &nic {
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
            if let Some(k) = key_name {
                server["key_name"] = json!(k);
            }
            if let Some(f) = user_data {
                let data = std::fs::read(&f).map_err(|e| {
                    err(format!(
                        "ERROR (CommandError): cannot read user data {f}: {e}"
                    ))
                })?;
                server["user_data"] = json!(base64::engine::general_purpose::STANDARD.encode(data));
            }
            if !meta.is_empty() {
                let mut m = serde_json::Map::new();
                for kv in &meta {
                    let (k, v) = kv.split_once('=').ok_or_else(|| {
                        err(format!(
                            "ERROR (CommandError): --meta {kv} is not KEY=VALUE"
                        ))
                    })?;
                    m.insert(k.into(), json!(v));
                }
                server["metadata"] = Value::Object(m);
            }
            if let Some(g) = security_groups {
                server["security_groups"] =
                    json!(g.split(',').map(|n| json!({"name": n})).collect::<Vec<_>>());
            }
            if let Some(az) = availability_zone {
                server["availability_zone"] = json!(az);
            }
            let v = s.call("POST", "/servers", Some(json!({ "server": server })))?;
            let id = cell(&v["server"]["id"]);
            let full = s.get(&format!("/servers/{id}"))?;
            print_object(&full["server"], j);
        }
        ClientCmd::List { all_tenants } => {
            let q = all_tenants
                .map(|a| format!("?all_tenants={a}"))
                .unwrap_or_default();
            let v = s.get(&format!("/servers/detail{q}"))?;
            let mut rows: Vec<Value> = v["servers"].as_array().cloned().unwrap_or_default();
            rows.sort_by_key(|r| cell(&r["name"]));
            for r in &mut rows {
                r["_networks"] = json!(server_networks(r));
                r["_task"] = json!(cell(&r["OS-EXT-STS:task_state"]));
                r["_power"] = json!(if r["OS-EXT-STS:power_state"] == 1 {
                    "Running"
                } else {
                    "NOSTATE"
                });
            }
            print_list(
                &rows,
                &[
                    ("ID", "id"),
                    ("Name", "name"),
                    ("Status", "status"),
                    ("Task State", "_task"),
                    ("Power State", "_power"),
                    ("Networks", "_networks"),
                ],
                j,
            );
        }
        ClientCmd::Show { server } => print_object(&s.find_server(&server)?, j),
        ClientCmd::Delete { servers } => {
            for name in servers {
                let srv = s.find_server(&name)?;
                s.call("DELETE", &format!("/servers/{}", cell(&srv["id"])), None)?;
                println!("Request to delete server {name} has been accepted.");
            }
        }
        ClientCmd::FloatingIpCreate { pool } => {
            let v = s.call("POST", "/os-floating-ips", Some(json!({ "pool": pool })))?;
            print_list(&[v["floating_ip"].clone()], FLOATING_COLS, j);
        }
        ClientCmd::FloatingIpDelete { address } => {
            let f = s.find_floating(&address)?;
            s.call(
                "DELETE",
                &format!("/os-floating-ips/{}", cell(&f["id"])),
                None,
            )?;
        }
        ClientCmd::FloatingIpList => {
            let v = s.get("/os-floating-ips")?;
            print_list(
                v["floating_ips"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
                FLOATING_COLS,
                j,
            );
        }
        ClientCmd::FloatingIpPoolList => {
            let v = s.get("/os-floating-ip-pools")?;
            print_list(
                v["floating_ip_pools"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
                &[("name", "name")],
                j,
            );
        }
        ClientCmd::FloatingIpAssociate {
            fixed_address,
            server,
            address,
        } => {
            let srv = s.find_server(&server)?;
            let mut body = json!({"address": address});
            if let Some(f) = fixed_address {
                body["fixed_address"] = json!(f);
            }
            s.call(
                "POST",
                &format!("/servers/{}/action", cell(&srv["id"])),
                Some(json!({ "addFloatingIp": body })),
            )?;
        }
        ClientCmd::FloatingIpDisassociate { server, address } => {
            let srv = s.find_server(&server)?;
            s.call(
                "POST",
                &format!("/servers/{}/action", cell(&srv["id"])),
                Some(json!({"removeFloatingIp": {"address": address}})),
            )?;
        }
        ClientCmd::FloatingIpBulkCreate {
            ip_range,
            pool,
            interface,
        } => {
            let mut b = json!({ "ip_range": ip_range });
            if let Some(p) = pool {
                b["pool"] = json!(p);
            }
            if let Some(i) = interface {
                b["interface"] = json!(i);
            }
            s.call(
                "POST",
                "/os-floating-ips-bulk",
                Some(json!({ "floating_ips_bulk_create": b })),
            )?;
        }
        ClientCmd::FloatingIpBulkList { host } => {
            let path = host
                .map(|h| format!("/os-floating-ips-bulk/{h}"))
                .unwrap_or_else(|| "/os-floating-ips-bulk".into());
            let v = s.get(&path)?;
            print_list(
                v["floating_ip_info"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
                &[
                    ("project_id", "project_id"),
                    ("address", "address"),
                    ("instance_uuid", "instance_uuid"),
                    ("pool", "pool"),
                    ("interface", "interface"),
                ],
                j,
            );
        }
        ClientCmd::FloatingIpBulkDelete { ip_range } => {
            s.call(
                "PUT",
                "/os-floating-ips-bulk/delete",
                Some(json!({ "ip_range": ip_range })),
            )?;
        }
        ClientCmd::FixedIpGet { address } => {
            let v = s.get(&format!("/os-fixed-ips/{address}"))?;
            print_list(
                &[v["fixed_ip"].clone()],
                &[
                    ("address", "address"),
                    ("cidr", "cidr"),
                    ("hostname", "hostname"),
                    ("host", "host"),
                ],
                j,
            );
        }
        ClientCmd::FixedIpReserve { address } => {
            s.call(
                "POST",
                &format!("/os-fixed-ips/{address}/action"),
                Some(json!({"reserve": null})),
            )?;
        }
        ClientCmd::FixedIpUnreserve { address } => {
            s.call(
                "POST",
                &format!("/os-fixed-ips/{address}/action"),
                Some(json!({"unreserve": null})),
            )?;
        }
        ClientCmd::AddFixedIp { server, network } => {
            let srv = s.find_server(&server)?;
            let n = s.find_network(&network)?;
            s.call(
                "POST",
                &format!("/servers/{}/action", cell(&srv["id"])),
                Some(json!({"addFixedIp": {"networkId": n["id"]}})),
            )?;
        }
        ClientCmd::RemoveFixedIp { server, address } => {
            let srv = s.find_server(&server)?;
            s.call(
                "POST",
                &format!("/servers/{}/action", cell(&srv["id"])),
                Some(json!({"removeFixedIp": {"address": address}})),
            )?;
        }
        ClientCmd::SecgroupCreate { name, description } => {
            let v = s.call(
                "POST",
                "/os-security-groups",
                Some(json!({"security_group": {"name": name, "description": description}})),
            )?;
            print_list(&[v["security_group"].clone()], GROUP_COLS, j);
        }
        ClientCmd::SecgroupList { all_tenants } => {
            let q = all_tenants
                .map(|a| format!("?all_tenants={a}"))
                .unwrap_or_default();
            let v = s.get(&format!("/os-security-groups{q}"))?;
            print_list(
                v["security_groups"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
                GROUP_COLS,
                j,
            );
        }
        ClientCmd::SecgroupDelete { group } => {
            let g = s.find_group(&group)?;
            s.call(
                "DELETE",
                &format!("/os-security-groups/{}", cell(&g["id"])),
                None,
            )?;
        }
        ClientCmd::SecgroupAddRule {
            group,
            ip_proto,
            from_port,
            to_port,
            cidr,
        } => {
            let g = s.find_group(&group)?;
            let body = json!({"security_group_rule": {"ip_protocol": ip_proto, "from_port": from_port, "to_port": to_port, "cidr": cidr, "group_id": null, "parent_group_id": g["id"]}});
            let v = s.call("POST", "/os-security-group-rules", Some(body))?;
            print_list(&[rule_row(&v["security_group_rule"])], RULE_COLS, j);
        }
        ClientCmd::SecgroupAddGroupRule {
            group,
            source_group,
            ip_proto,
            from_port,
            to_port,
        } => {
            let g = s.find_group(&group)?;
            let src = s.find_group(&source_group)?;
            let body = json!({"security_group_rule": {"ip_protocol": ip_proto, "from_port": from_port, "to_port": to_port, "group_id": src["id"], "parent_group_id": g["id"]}});
            let v = s.call("POST", "/os-security-group-rules", Some(body))?;
            print_list(&[rule_row(&v["security_group_rule"])], RULE_COLS, j);
        }
        ClientCmd::SecgroupDeleteRule {
            group,
            ip_proto,
            from_port,
            to_port,
            cidr,
        } => {
            let g = s.find_group(&group)?;
            let rule = g["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| {
                    r["ip_protocol"] == ip_proto.to_lowercase().as_str()
                        && r["from_port"] == from_port
                        && r["to_port"] == to_port
                        && r["ip_range"]["cidr"] == cidr.as_str()
                })
                .cloned()
                .ok_or_else(|| err("ERROR (CommandError): Rule not found"))?;
            s.call(
                "DELETE",
                &format!("/os-security-group-rules/{}", cell(&rule["id"])),
                None,
            )?;
        }
        ClientCmd::SecgroupListRules { group } => {
            let g = s.find_group(&group)?;
            let rows: Vec<Value> = g["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(rule_row)
                .collect();
            print_list(&rows, RULE_COLS, j);
        }
        ClientCmd::SecgroupAddDefaultRule(r) => {
            admin_rules(&s, DEFAULT_RULES, DEFAULT_RULE, true, Some(r), j)?
        }
        ClientCmd::SecgroupDeleteDefaultRule(r) => {
            admin_rules(&s, DEFAULT_RULES, DEFAULT_RULE, false, Some(r), j)?
        }
        ClientCmd::SecgroupListDefaultRules => {
            admin_rules(&s, DEFAULT_RULES, DEFAULT_RULE, false, None, j)?
        }
        ClientCmd::ProviderRuleAdd(r) => {
            admin_rules(&s, PROVIDER_RULES, PROVIDER_RULE, true, Some(r), j)?
        }
        ClientCmd::ProviderRuleDelete(r) => {
            admin_rules(&s, PROVIDER_RULES, PROVIDER_RULE, false, Some(r), j)?
        }
        ClientCmd::ProviderRuleList => {
            admin_rules(&s, PROVIDER_RULES, PROVIDER_RULE, false, None, j)?
        }
        ClientCmd::AddSecgroup { server, group } => {
            let srv = s.find_server(&server)?;
            s.call(
                "POST",
                &format!("/servers/{}/action", cell(&srv["id"])),
                Some(json!({"addSecurityGroup": {"name": group}})),
            )?;
        }
        ClientCmd::RemoveSecgroup { server, group } => {
            let srv = s.find_server(&server)?;
            s.call(
                "POST",
                &format!("/servers/{}/action", cell(&srv["id"])),
                Some(json!({"removeSecurityGroup": {"name": group}})),
            )?;
        }
        ClientCmd::KeypairAdd { pub_key, name } => {
            let path = pub_key.ok_or_else(|| {
                err("ERROR (CommandError): give --pub-key FILE (key generation is not offered)")
            })?;
            let key = std::fs::read_to_string(&path).map_err(|e| {
                err(format!(
                    "ERROR (CommandError): Can't open or read '{path}': {e}"
                ))
            })?;
            s.call(
                "POST",
                "/os-keypairs",
                Some(json!({"keypair": {"name": name, "public_key": key}})),
            )?;
        }
        ClientCmd::KeypairList => {
            let v = s.get("/os-keypairs")?;
            let rows: Vec<Value> = v["keypairs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| k["keypair"].clone())
                .collect();
            print_list(
                &rows,
                &[("Name", "name"), ("Fingerprint", "fingerprint")],
                j,
            );
        }
        ClientCmd::KeypairDelete { name } => {
            s.call("DELETE", &format!("/os-keypairs/{name}"), None)?;
        }
        ClientCmd::ApiGet { path } => println!("{}", s.get(&path)?),
        ClientCmd::VifPlug { vif, device } => {
            s.call(
                "POST",
                &format!("/novanet/v1/vifs/{vif}/plug"),
                Some(json!({ "device": device })),
            )?;
        }
        ClientCmd::VirtualInterfaceList { server } => {
            let srv = s.find_server(&server)?;
            let v = s.get(&format!(
                "/servers/{}/os-virtual-interfaces",
                cell(&srv["id"])
            ))?;
            print_list(
                v["virtual_interfaces"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
                &[("Id", "id"), ("Mac address", "mac_address")],
                j,
            );
        }
    }
    Ok(())
}

const FLOATING_COLS: &[(&str, &str)] = &[
    ("Id", "id"),
    ("IP", "ip"),
    ("Server Id", "instance_id"),
    ("Fixed IP", "fixed_ip"),
    ("Pool", "pool"),
];
const GROUP_COLS: &[(&str, &str)] = &[
    ("Id", "id"),
    ("Name", "name"),
    ("Description", "description"),
];

/// The `POST /os-networks` body from the CLI's flags.
#[derive(serde::Serialize)]
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
