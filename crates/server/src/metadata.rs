//! The metadata service at 169.254.169.254: the EC2 (up to 2009-04-04) and OpenStack trees as
//! seed 000 shows them. The instance is the one whose fixed IP is the request's source.
//! The trees are plain data built once per instance (and cached); lookups are pure.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use hmac::{Hmac, Mac};
use novanet_core::model::Instance;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::AppState;

pub const EC2_VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
];
/// Seed 000's versions, then 2015-10-15 for `network_data.json`.
pub const OPENSTACK_VERSIONS: &[&str] = &["2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15"];
/// nova stored the password in 4 chunks of 255 characters.
pub const MAX_PASSWORD: usize = 255 * 4;
pub const MAX_TOKEN_TTL: u64 = 21600;

/// Everything the trees show about one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceMeta {
    pub instance: Instance,
    pub domain: String,
    pub fixed_ips: Vec<String>,
    pub floating_ips: Vec<String>,
    pub security_groups: Vec<String>,
    pub flavor_name: String,
    pub image_index: usize,
    pub user_data: Option<Vec<u8>>,
    pub network_data: Value,
    pub vendor_data: Value,
    /// nova's injected `/etc/network/interfaces` (`flat_injected` networks only), served as
    /// `openstack/content/0000` and named by meta_data.json's `network_config`.
    pub network_config: Option<String>,
    /// base64 of 512 random bytes, made once per build as nova did (cached with the rest).
    pub random_seed: String,
}

impl InstanceMeta {
    fn hostname(&self) -> String {
        if self.domain.is_empty() {
            self.instance.hostname.clone()
        } else {
            format!("{}.{}", self.instance.hostname, self.domain)
        }
    }
}

/// One address's cached answer: when it was built, the store generation it was last
/// checked against, and the instance it found (None: the address is no instance's).
struct CacheEntry {
    built: Instant,
    generation: u64,
    meta: Option<Arc<InstanceMeta>>,
}

/// IMDSv2 session tokens: each bound to the address that asked for it.
#[derive(Default)]
struct Tokens {
    by_token: HashMap<String, (Instant, IpAddr)>,
    /// Per address, its tokens oldest first (at most [`MAX_TOKENS_PER_INSTANCE`]).
    by_ip: HashMap<IpAddr, std::collections::VecDeque<String>>,
    mints: u64,
}

/// A token bucket per instance (`metadata_rate_limit`, `metadata_rate_burst`).
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
pub struct Cache {
    /// The store's generation as this process last saw it: on each of its own commits at
    /// once, other processes' within the server's next look (100 ms).
    generation: std::sync::atomic::AtomicU64,
    by_ip: Mutex<HashMap<String, CacheEntry>>,
    tokens: Mutex<Tokens>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// IMDSv2 tokens one instance may hold; minting another drops its oldest.
pub const MAX_TOKENS_PER_INSTANCE: usize = 16;

impl Cache {
    pub fn saw_generation(&self, g: u64) {
        self.generation
            .fetch_max(g, std::sync::atomic::Ordering::SeqCst);
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Mints a token for `ip`, in O(1) amortised: expired tokens go in a sweep every 1,024
    /// mints, and an address over its cap loses its oldest token.
    fn mint(&self, ip: IpAddr, ttl: Duration) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let now = Instant::now();
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        t.mints += 1;
        if t.mints.is_multiple_of(1024) {
            t.by_token.retain(|_, (exp, _)| *exp > now);
            let Tokens {
                by_token, by_ip, ..
            } = &mut *t;
            by_ip.retain(|_, q| {
                q.retain(|k| by_token.contains_key(k));
                !q.is_empty()
            });
        }
        let q = t.by_ip.entry(ip).or_default();
        q.push_back(token.clone());
        let evicted = (q.len() > MAX_TOKENS_PER_INSTANCE)
            .then(|| q.pop_front())
            .flatten();
        if let Some(old) = evicted {
            t.by_token.remove(&old);
        }
        t.by_token.insert(token.clone(), (now + ttl, ip));
        token
    }

    /// Whether `token` is live and was minted for `ip`.
    fn token_ok(&self, token: &str, ip: IpAddr) -> bool {
        let t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        t.by_token
            .get(token)
            .is_some_and(|(exp, owner)| *exp > Instant::now() && *owner == ip)
    }

    /// Takes one request from the instance's bucket; false when it is empty.
    fn allow(&self, instance: &str, rate: u32, burst: u32) -> bool {
        if rate == 0 {
            return true;
        }
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() > 100_000 {
            b.retain(|_, x| now.duration_since(x.at) < Duration::from_secs(60));
        }
        let e = b.entry(instance.to_string()).or_insert(Bucket {
            tokens: f64::from(burst.max(1)),
            at: now,
        });
        let refill = now.duration_since(e.at).as_secs_f64() * f64::from(rate);
        e.tokens = (e.tokens + refill).min(f64::from(burst.max(1)));
        e.at = now;
        if e.tokens >= 1.0 {
            e.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a path resolves to.
#[derive(Debug, PartialEq)]
pub enum Answer {
    Text(String),
    Json(String),
    Bytes(Vec<u8>),
    NotFound,
}

fn listing(items: &[String]) -> Answer {
    Answer::Text(items.join("\n"))
}

fn ec2_keys(v: &str, m: &InstanceMeta) -> Vec<&'static str> {
    let at_least = |x: &str| {
        EC2_VERSIONS.iter().position(|e| *e == v) >= EC2_VERSIONS.iter().position(|e| *e == x)
    };
    let mut keys = vec![
        "ami-id",
        "ami-launch-index",
        "ami-manifest-path",
        "hostname",
        "instance-id",
        "local-ipv4",
        "reservation-id",
        "security-groups",
    ];
    if m.instance.spec.key_data.is_some() {
        keys.push("public-keys/");
    }
    if at_least("2007-01-19") {
        keys.extend(["local-hostname", "public-hostname", "public-ipv4"]);
    }
    if at_least("2007-08-29") {
        keys.push("instance-type");
    }
    if at_least("2007-12-15") {
        keys.extend(["block-device-mapping/", "kernel-id", "ramdisk-id"]);
    }
    if at_least("2008-02-01") {
        keys.push("placement/");
    }
    if at_least("2008-09-01") {
        keys.push("instance-action");
    }
    keys.sort_unstable();
    keys
}

fn ec2(version: &str, rest: &[&str], m: &InstanceMeta) -> Answer {
    let v = if version == "latest" {
        EC2_VERSIONS[EC2_VERSIONS.len() - 1]
    } else {
        version
    };
    if !EC2_VERSIONS.contains(&v) {
        return Answer::NotFound;
    }
    match rest {
        [] => {
            let mut l = vec!["meta-data/".to_string()];
            if m.user_data.is_some() {
                l.push("user-data".into());
            }
            listing(&l)
        }
        ["user-data"] => m.user_data.clone().map_or(Answer::NotFound, Answer::Bytes),
        ["meta-data", rest @ ..] => {
            let keys = ec2_keys(v, m);
            let Some(first) = rest.first() else {
                return listing(&keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
            };
            let listed = keys.iter().any(|k| k.trim_end_matches('/') == *first);
            if !listed {
                return Answer::NotFound;
            }
            let i = &m.instance;
            let leaf = |s: String| {
                if rest.len() == 1 {
                    Answer::Text(s)
                } else {
                    Answer::NotFound
                }
            };
            match *first {
                "ami-id" => leaf(format!("ami-{:08x}", m.image_index + 1)),
                "ami-launch-index" => leaf(i.launch_index.to_string()),
                "ami-manifest-path" => leaf("FIXME".into()),
                "hostname" | "local-hostname" | "public-hostname" => leaf(m.hostname()),
                "instance-action" => leaf("none".into()),
                "instance-id" => leaf(format!("i-{:08x}", i.id)),
                "instance-type" => leaf(m.flavor_name.clone()),
                "kernel-id" | "ramdisk-id" => leaf(String::new()),
                "local-ipv4" => leaf(m.fixed_ips.first().cloned().unwrap_or_default()),
                "public-ipv4" => leaf(m.floating_ips.first().cloned().unwrap_or_default()),
                "reservation-id" => leaf(i.reservation_id.clone()),
                "security-groups" => leaf(m.security_groups.join("\n")),
                "block-device-mapping" => match &rest[1..] {
                    [] => Answer::Text("ami".into()),
                    ["ami"] => Answer::Text("vda".into()),
                    _ => Answer::NotFound,
                },
                "placement" => match &rest[1..] {
                    [] => Answer::Text("availability-zone".into()),
                    ["availability-zone"] => Answer::Text(
                        i.spec
                            .availability_zone
                            .clone()
                            .unwrap_or_else(|| "nova".into()),
                    ),
                    _ => Answer::NotFound,
                },
                "public-keys" => {
                    let (Some(name), Some(key)) = (&i.spec.key_name, &i.spec.key_data) else {
                        return Answer::NotFound;
                    };
                    match &rest[1..] {
                        [] => Answer::Text(format!("0={name}")),
                        ["0"] => Answer::Text("openssh-key".into()),
                        ["0", "openssh-key"] => Answer::Text(key.clone()),
                        _ => Answer::NotFound,
                    }
                }
                _ => Answer::NotFound,
            }
        }
        _ => Answer::NotFound,
    }
}

/// `json.dumps` style: `", "` and `": "` separators, keys in the given order.
fn py_json(pairs: &[(&str, Value)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}: {}", Value::String(k.to_string()), py_value(v)))
        .collect();
    format!("{{{}}}", body.join(", "))
}

fn py_value(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), py_value(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(py_value).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn meta_data_json(v: &str, m: &InstanceMeta) -> String {
    let i = &m.instance;
    let mut pairs: Vec<(&str, Value)> = vec![
        ("uuid", json!(i.uuid)),
        (
            "availability_zone",
            json!(i
                .spec
                .availability_zone
                .clone()
                .unwrap_or_else(|| "nova".into())),
        ),
        ("hostname", json!(m.hostname())),
        ("launch_index", json!(i.launch_index)),
    ];
    if !i.spec.metadata.is_empty() {
        pairs.push(("meta", json!(i.spec.metadata)));
    }
    pairs.push(("project_id", json!(i.spec.project_id)));
    if let (Some(name), Some(key)) = (&i.spec.key_name, &i.spec.key_data) {
        pairs.push(("public_keys", json!({ name: key })));
    }
    pairs.push(("name", json!(i.spec.name)));
    if v >= "2013-04-04" {
        pairs.push(("random_seed", json!(m.random_seed)));
    }
    if v >= "2015-10-15" {
        if let (Some(name), Some(key)) = (&i.spec.key_name, &i.spec.key_data) {
            pairs.push(("keys", json!([{"name": name, "type": "ssh", "data": key}])));
        }
    }
    if m.network_config.is_some() {
        // nova named the file twice: as network_config (which cloud-init converts) and, as
        // its file injection did, as the image's /etc/network/interfaces.
        let content_path = format!("/{CONTENT_DIR}/{NETWORK_CONFIG_KEY}");
        pairs.push((
            "files",
            json!([{"path": "/etc/network/interfaces", "content_path": content_path}]),
        ));
        pairs.push((
            "network_config",
            json!({"name": "network_config", "content_path": content_path}),
        ));
    }
    py_json(&pairs)
}

/// nova's directory for injected content, beside the versions (`openstack/content/0000`).
pub const CONTENT_DIR: &str = "content";
/// The key of the interfaces file: nova numbered content from 0000 and it is the only one.
pub const NETWORK_CONFIG_KEY: &str = "0000";

fn openstack(rest: &[&str], m: &InstanceMeta, password: Option<&str>) -> Answer {
    if let [CONTENT_DIR, key] = rest {
        return match (&m.network_config, *key == NETWORK_CONFIG_KEY) {
            (Some(c), true) => Answer::Text(c.clone()),
            _ => Answer::NotFound,
        };
    }
    let Some(version) = rest.first() else {
        let mut l: Vec<String> = OPENSTACK_VERSIONS.iter().map(|s| s.to_string()).collect();
        l.push("latest".into());
        return listing(&l);
    };
    let v = if *version == "latest" {
        OPENSTACK_VERSIONS[OPENSTACK_VERSIONS.len() - 1]
    } else {
        version
    };
    if !OPENSTACK_VERSIONS.contains(&v) {
        return Answer::NotFound;
    }
    let has_password = v >= "2013-04-04";
    let has_vendor = v >= "2013-10-17";
    let has_network = v >= "2015-10-15";
    match &rest[1..] {
        [] => {
            let mut l = vec!["meta_data.json".to_string()];
            if m.user_data.is_some() {
                l.push("user_data".into());
            }
            if has_password {
                l.push("password".into());
            }
            if has_vendor {
                l.push("vendor_data.json".into());
            }
            if has_network {
                l.push("network_data.json".into());
            }
            listing(&l)
        }
        ["meta_data.json"] => Answer::Json(meta_data_json(v, m)),
        ["user_data"] => m.user_data.clone().map_or(Answer::NotFound, Answer::Bytes),
        ["password"] if has_password => Answer::Text(password.unwrap_or_default().to_string()),
        ["vendor_data.json"] if has_vendor => Answer::Json(py_value(&m.vendor_data)),
        ["network_data.json"] if has_network => Answer::Json(py_value(&m.network_data)),
        _ => Answer::NotFound,
    }
}

/// Resolves a metadata path for an instance (None: the request came from no instance, which
/// only `/` tolerates).
pub fn lookup(path: &str, m: Option<&InstanceMeta>, password: Option<&str>) -> Answer {
    let segs: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if segs.contains(&"..") {
        return Answer::NotFound;
    }
    // The tree is the first segment's: `/openstackx` or `/ec2/openstack` are EC2 paths.
    if segs.first() == Some(&"openstack") {
        return m.map_or(Answer::NotFound, |m| openstack(&segs[1..], m, password));
    }
    let segs: &[&str] = if segs.first() == Some(&"ec2") {
        &segs[1..]
    } else {
        &segs
    };
    if segs.is_empty() {
        let mut l: Vec<String> = EC2_VERSIONS.iter().map(|s| s.to_string()).collect();
        l.push("latest".into());
        return listing(&l);
    }
    let Some(m) = m else { return Answer::NotFound };
    ec2(segs[0], &segs[1..], m)
}

fn answer_bytes(a: Answer) -> Option<Vec<u8>> {
    match a {
        Answer::Text(s) | Answer::Json(s) => Some(s.into_bytes()),
        Answer::Bytes(b) => Some(b),
        Answer::NotFound => None,
    }
}

/// The EC2 tree under `path` (a listing) as JSON, as nova wrote `ec2/*/meta-data.json`:
/// a subtree per `name/` (and per `0=name`, the public-keys form), a string per leaf.
fn ec2_json(path: &str, m: &InstanceMeta) -> Value {
    let Answer::Text(list) = lookup(path, Some(m), None) else {
        return Value::Null;
    };
    let mut out = serde_json::Map::new();
    for entry in list.lines().filter(|l| !l.is_empty()) {
        if let Some(sub) = entry
            .strip_suffix('/')
            .or_else(|| entry.split_once('=').map(|(k, _)| k))
        {
            out.insert(sub.to_string(), ec2_json(&format!("{path}{sub}/"), m));
        } else if let Some(b) = answer_bytes(lookup(&format!("{path}{entry}"), Some(m), None)) {
            out.insert(
                entry.to_string(),
                Value::String(String::from_utf8_lossy(&b).into_owned()),
            );
        }
    }
    Value::Object(out)
}

/// The config drive's files (path, bytes), read from the same trees the metadata service
/// serves: `openstack/<each version and latest>/` without the password (nova left it out),
/// `openstack/content/0000` when the interfaces are injected, and `ec2/<2009-04-04 and
/// latest>/meta-data.json` and `user-data`.
pub fn config_drive_files(m: &InstanceMeta) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let lines = |a: Answer| match a {
        Answer::Text(t) => t.lines().map(str::to_string).collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    for v in lines(lookup("/openstack", Some(m), None)) {
        for f in lines(lookup(&format!("/openstack/{v}/"), Some(m), None)) {
            if f == "password" {
                continue;
            }
            let path = format!("openstack/{v}/{f}");
            if let Some(b) = answer_bytes(lookup(&path, Some(m), None)) {
                files.push((path, b));
            }
        }
    }
    let content = format!("openstack/{CONTENT_DIR}/{NETWORK_CONFIG_KEY}");
    if let Some(b) = answer_bytes(lookup(&content, Some(m), None)) {
        files.push((content, b));
    }
    for v in [EC2_VERSIONS[EC2_VERSIONS.len() - 1], "latest"] {
        let tree = ec2_json(&format!("/{v}/meta-data/"), m);
        files.push((
            format!("ec2/{v}/meta-data.json"),
            py_value(&tree).into_bytes(),
        ));
        if let Some(b) = answer_bytes(lookup(&format!("/{v}/user-data"), Some(m), None)) {
            files.push((format!("ec2/{v}/user-data"), b));
        }
    }
    files
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn text(code: StatusCode, s: impl Into<String>) -> Response {
    (
        code,
        [("content-type", "text/plain; charset=UTF-8")],
        s.into(),
    )
        .into_response()
}

fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "404 Not Found\n\nThe resource could not be found.\n",
    )
}

type HmacSha256 = Hmac<Sha256>;

/// Checks Neutron's metadata proxy signature: hex HMAC-SHA256 of the instance id.
pub fn signature_ok(secret: &str, instance_id: &str, signature: &str) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(instance_id.as_bytes());
    let Ok(sig) = (0..signature.len())
        .step_by(2)
        .map(|i| {
            signature
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(())
        })
        .collect::<Result<Vec<u8>, ()>>()
    else {
        return false;
    };
    mac.verify_slice(&sig).is_ok()
}

pub fn build_meta(st: &AppState, inst: Instance) -> Option<InstanceMeta> {
    let addrs = st.store.instance_addresses(&inst.uuid).ok()?;
    let groups = st.store.instance_security_groups(&inst.uuid).ok()?;
    let networks = st.store.networks().ok()?;
    let mut links = Vec::new();
    let mut nets = Vec::new();
    let mut dns = Vec::new();
    // One default route, the first network's (nova's use_single_default_gateway).
    let mut default_given = false;
    for (n, a) in addrs.iter().enumerate() {
        let link = format!("tap{}", &a.vif_uuid[..11.min(a.vif_uuid.len())]);
        if !links.iter().any(|l: &Value| l["id"] == json!(link)) {
            links.push(json!({"id": link, "vif_id": a.vif_uuid, "type": "bridge", "mtu": null, "ethernet_mac_address": a.mac}));
        }
        let net = networks.iter().find(|x| x.uuid == a.network_uuid);
        let dhcp = net.is_some_and(|x| x.enable_dhcp) && st.cfg.network_manager.uses_dhcp();
        if dhcp {
            nets.push(json!({"id": format!("network{n}"), "type": "ipv4_dhcp", "link": link, "network_id": a.network_uuid}));
        } else {
            let gw = net
                .and_then(|x| x.gateway.clone())
                .filter(|_| !default_given);
            default_given |= gw.is_some();
            nets.push(json!({"id": format!("network{n}"), "type": "ipv4", "link": link, "ip_address": a.address,
                "netmask": net.and_then(|x| x.netmask.clone()), "network_id": a.network_uuid,
                "routes": gw.map(|g| vec![json!({"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": g})]).unwrap_or_default()}));
        }
        for d in net.iter().flat_map(|x| x.dns1.iter().chain(x.dns2.iter())) {
            let s = json!({"type": "dns", "address": d});
            if !dns.contains(&s) {
                dns.push(s);
            }
        }
    }
    let vifs: Vec<novanet_core::guest::Vif> = addrs
        .iter()
        .filter_map(|a| {
            Some(novanet_core::guest::Vif {
                network: networks.iter().find(|x| x.uuid == a.network_uuid)?,
                mac: &a.mac,
                address: &a.address,
            })
        })
        .collect();
    // A stored value that is not valid leaves the file out rather than reach the guest.
    let network_config = novanet_core::guest::guest_interfaces(&vifs, st.cfg.use_ipv6)
        .ok()
        .filter(|ifs| !ifs.is_empty())
        .map(|ifs| novanet_core::guest::interfaces_text(&ifs));
    let vendor_data = st
        .cfg
        .vendordata_jsonfile_path
        .as_deref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({}));
    let image_index = crate::compute::IMAGES
        .iter()
        .position(|i| {
            Some(i.0) == inst.spec.image_id.as_deref() || Some(i.1) == inst.spec.image_id.as_deref()
        })
        .unwrap_or(0);
    let flavor_name = crate::compute::FLAVORS
        .iter()
        .find(|f| Some(f.0) == inst.spec.flavor_id.as_deref())
        .map_or("m1.tiny", |f| f.1)
        .to_string();
    let user_data = inst.spec.user_data.as_deref().and_then(|u| {
        base64::engine::general_purpose::STANDARD
            .decode(u.trim())
            .ok()
    });
    Some(InstanceMeta {
        domain: st.cfg.dhcp_domain.clone(),
        fixed_ips: addrs.iter().map(|a| a.address.clone()).collect(),
        floating_ips: addrs.iter().flat_map(|a| a.floating.clone()).collect(),
        security_groups: groups.into_iter().map(|g| g.name).collect(),
        flavor_name,
        image_index,
        user_data,
        network_data: json!({"links": links, "networks": nets, "services": dns}),
        vendor_data,
        network_config,
        random_seed: base64::engine::general_purpose::STANDARD.encode(
            (0..32)
                .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
                .collect::<Vec<u8>>(),
        ),
        instance: inst,
    })
}

/// The instance for a source address. Answers are cached per address for
/// `metadata_cache_expiration`, but an entry belongs to the instance it was built for: once
/// the store has changed since the entry was last checked, the address is looked up again
/// and an entry of another instance (the address was released or reused) is dropped at once.
fn meta_for_ip(st: &AppState, ip: &str) -> Option<Arc<InstanceMeta>> {
    let ttl = Duration::from_secs(st.cfg.metadata_cache_expiration);
    let generation = st.metadata_cache.generation();
    let lookup = || st.store.instance_by_fixed_ip(ip).ok().flatten();
    let mut owner = None;
    if !ttl.is_zero() {
        let cached = st
            .metadata_cache
            .by_ip
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(ip)
            .filter(|e| e.built.elapsed() < ttl)
            .map(|e| (e.generation, e.meta.clone()));
        match cached {
            Some((g, m)) if g == generation => return m,
            Some((_, m)) => {
                let now_owner = lookup();
                let same = match (&m, &now_owner) {
                    (Some(m), Some(i)) => m.instance.uuid == i.uuid,
                    (None, None) => true,
                    _ => false,
                };
                if same {
                    if let Some(e) = st
                        .metadata_cache
                        .by_ip
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_mut(ip)
                    {
                        e.generation = generation;
                    }
                    return m;
                }
                owner = Some(now_owner);
            }
            None => {}
        }
    }
    let m = owner
        .unwrap_or_else(lookup)
        .and_then(|i| build_meta(st, i))
        .map(Arc::new);
    if !ttl.is_zero() {
        let mut cache = st
            .metadata_cache
            .by_ip
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if cache.len() > 100_000 {
            cache.retain(|_, e| e.built.elapsed() < ttl);
        }
        cache.insert(
            ip.to_string(),
            CacheEntry {
                built: Instant::now(),
                generation,
                meta: m.clone(),
            },
        );
    }
    m
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Which instance is asking: the source address, or (from a trusted proxy, with a valid
/// signature) the instance the proxy names.
fn requester(
    st: &AppState,
    peer: IpAddr,
    headers: &HeaderMap,
) -> Result<Option<Arc<InstanceMeta>>, Box<Response>> {
    let trusted = st
        .cfg
        .metadata_trusted_proxies
        .iter()
        .any(|p| p.parse::<IpAddr>().ok() == Some(peer));
    let forwarded = header(headers, "x-forwarded-for")
        .map(|f| f.split(',').next().unwrap_or(f).trim().to_string());
    match (trusted, forwarded, header(headers, "x-instance-id")) {
        (true, Some(ip), Some(id)) => {
            let sig = header(headers, "x-instance-id-signature").unwrap_or("");
            if st.cfg.metadata_proxy_shared_secret.is_empty()
                || !signature_ok(&st.cfg.metadata_proxy_shared_secret, id, sig)
            {
                return Err(Box::new(text(
                    StatusCode::FORBIDDEN,
                    "Invalid proxy request signature.",
                )));
            }
            let m = meta_for_ip(st, &ip);
            // Nova checks the project the proxy names too (Neutron's agent sends it): an
            // instance of another project is not found.
            let tenant = header(headers, "x-tenant-id");
            Ok(m.filter(|m| {
                m.instance.uuid == id && tenant.is_none_or(|t| t == m.instance.spec.project_id)
            }))
        }
        // Anyone else's X-Forwarded-For is ignored: the source address decides.
        _ => Ok(meta_for_ip(st, &peer.to_string())),
    }
}

async fn handle(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let norm = path.trim_end_matches('/');
    let is_root = norm.is_empty() || norm == "/ec2";
    let root = || match lookup("/", None, None) {
        Answer::Text(t) => text(StatusCode::OK, t),
        _ => not_found(),
    };
    let session = header(&headers, "x-aws-ec2-metadata-token");
    if is_root && method != Method::PUT && session.is_none() {
        return root();
    }
    // A listener on `::` sees IPv4 clients as `::ffff:a.b.c.d`.
    let peer_ip = peer.ip().to_canonical();
    let m = match requester(&st, peer_ip, &headers) {
        Ok(Some(m)) => m,
        Ok(None) => return not_found(),
        Err(resp) => return *resp,
    };
    if !st.metadata_cache.allow(
        &m.instance.uuid,
        st.cfg.metadata_rate_limit,
        st.cfg.metadata_rate_burst,
    ) {
        return text(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many metadata requests from this instance; slow down.",
        );
    }
    // The address a token is bound to: the instance's own (through a proxy, the one the
    // proxy vouched for).
    let bound_ip: IpAddr = m
        .fixed_ips
        .iter()
        .filter_map(|a| a.parse().ok())
        .find(|a: &IpAddr| *a == peer_ip)
        .or_else(|| m.fixed_ips.first().and_then(|a| a.parse().ok()))
        .unwrap_or(peer_ip);
    // IMDSv2 session tokens.
    if method == Method::PUT && norm == "/latest/api/token" {
        let ttl = header(&headers, "x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|t| t.parse::<u64>().ok());
        let Some(ttl) = ttl.filter(|t| (1..=MAX_TOKEN_TTL).contains(t)) else {
            return text(
                StatusCode::BAD_REQUEST,
                "X-aws-ec2-metadata-token-ttl-seconds must be 1 to 21600",
            );
        };
        let token = st.metadata_cache.mint(bound_ip, Duration::from_secs(ttl));
        return text(StatusCode::OK, token);
    }
    if let Some(t) = session {
        if !st.metadata_cache.token_ok(t, bound_ip) {
            return text(
                StatusCode::UNAUTHORIZED,
                "Invalid or expired metadata token.",
            );
        }
    }
    if is_root {
        return root();
    }
    let is_password = norm.starts_with("/openstack/") && norm.ends_with("/password");
    if is_password && method == Method::POST {
        // Only where GET would show a password (not 2012-08-10, not an unknown version).
        if lookup(path, Some(&m), None) == Answer::NotFound {
            return not_found();
        }
        if body.len() > MAX_PASSWORD {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Request is too large (at most {MAX_PASSWORD} bytes)."),
            );
        }
        let Ok(pw) = String::from_utf8(body.to_vec()) else {
            return text(StatusCode::BAD_REQUEST, "The password must be UTF-8 text.");
        };
        return match st.store.set_instance_password(&m.instance.uuid, &pw) {
            Ok(true) => text(StatusCode::OK, ""),
            Ok(false) => text(StatusCode::CONFLICT, "Password already set."),
            Err(_) => not_found(),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return text(
            StatusCode::BAD_REQUEST,
            "Only GET (and POST to password) are supported.",
        );
    }
    let password = if is_password {
        st.store
            .instance(&m.instance.uuid)
            .ok()
            .and_then(|i| i.password)
    } else {
        None
    };
    match lookup(path, Some(&m), password.as_deref()) {
        Answer::Text(t) => text(StatusCode::OK, t),
        Answer::Json(j) => {
            (StatusCode::OK, [("content-type", "application/json")], j).into_response()
        }
        Answer::Bytes(b) => (StatusCode::OK, [("content-type", "text/plain")], b).into_response(),
        Answer::NotFound => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use novanet_core::model::InstanceSpec;
    use std::collections::BTreeMap;

    fn meta(with_key: bool) -> InstanceMeta {
        let mut spec = InstanceSpec {
            name: "test".into(),
            project_id: "f7ac731cc11f40efbc03a9f9e1d1d21f".into(),
            availability_zone: Some("nova".into()),
            flavor_id: Some("1".into()),
            metadata: BTreeMap::from([
                ("priority".into(), "low".into()),
                ("role".into(), "webserver".into()),
            ]),
            user_data: Some(
                base64::engine::general_purpose::STANDARD
                    .encode("#!/bin/bash\necho 'Extra user data here'\n"),
            ),
            ..Default::default()
        };
        if with_key {
            spec.key_name = Some("mykey".into());
            spec.key_data = Some("ssh-rsa AAAA Generated by Nova\n".into());
        }
        InstanceMeta {
            instance: Instance {
                id: 9,
                uuid: "d8e02d56-2648-49a3-bf97-6be8f1204f38".into(),
                hostname: "test".into(),
                launch_index: 0,
                reservation_id: "r-abcd1234".into(),
                created_at: 0,
                password: None,
                updated_at: 0,
                spec,
            },
            domain: "novalocal".into(),
            fixed_ips: vec!["10.0.0.2".into()],
            floating_ips: vec![],
            security_groups: vec!["default".into()],
            flavor_name: "m1.tiny".into(),
            image_index: 0,
            user_data: Some(b"#!/bin/bash\necho 'Extra user data here'\n".to_vec()),
            network_data: json!({"links": [], "networks": [], "services": []}),
            vendor_data: json!({}),
            network_config: None,
            random_seed: "c2VlZA==".into(),
        }
    }

    fn t(a: Answer) -> String {
        match a {
            Answer::Text(s) | Answer::Json(s) => s,
            Answer::Bytes(b) => String::from_utf8(b).unwrap(),
            Answer::NotFound => "<404>".into(),
        }
    }

    #[test]
    fn seed_listings() {
        let m = meta(true);
        assert_eq!(t(lookup("/", None, None)), "1.0\n2007-01-19\n2007-03-01\n2007-08-29\n2007-10-10\n2007-12-15\n2008-02-01\n2008-09-01\n2009-04-04\nlatest");
        assert_eq!(t(lookup("/2009-04-04/meta-data/", Some(&m), None)),
            "ami-id\nami-launch-index\nami-manifest-path\nblock-device-mapping/\nhostname\ninstance-action\ninstance-id\ninstance-type\nkernel-id\nlocal-hostname\nlocal-ipv4\nplacement/\npublic-hostname\npublic-ipv4\npublic-keys/\nramdisk-id\nreservation-id\nsecurity-groups");
        assert_eq!(
            t(lookup(
                "/2009-04-04/meta-data/block-device-mapping/",
                Some(&m),
                None
            )),
            "ami"
        );
        assert_eq!(
            t(lookup("/2009-04-04/meta-data/placement/", Some(&m), None)),
            "availability-zone"
        );
        assert_eq!(
            t(lookup("/2009-04-04/meta-data/public-keys/", Some(&m), None)),
            "0=mykey"
        );
        assert_eq!(
            t(lookup(
                "/2009-04-04/meta-data/public-keys/0/openssh-key",
                Some(&m),
                None
            )),
            "ssh-rsa AAAA Generated by Nova\n"
        );
        assert_eq!(
            t(lookup("/2009-04-04/user-data", Some(&m), None)),
            "#!/bin/bash\necho 'Extra user data here'\n"
        );
        assert_eq!(
            t(lookup("/2009-04-04/meta-data/instance-id", Some(&m), None)),
            "i-00000009"
        );
        assert_eq!(
            t(lookup("/latest/meta-data/hostname", Some(&m), None)),
            "test.novalocal"
        );
        assert_eq!(
            t(lookup("/2009-04-04", Some(&m), None)),
            "meta-data/\nuser-data"
        );
        assert_eq!(
            t(lookup("/openstack", Some(&m), None)),
            "2012-08-10\n2013-04-04\n2013-10-17\n2015-10-15\nlatest"
        );
        assert_eq!(
            t(lookup("/openstack/2012-08-10/", Some(&m), None)),
            "meta_data.json\nuser_data"
        );
        assert_eq!(
            t(lookup("/openstack/2012-08-10/user_data", Some(&m), None)),
            "#!/bin/bash\necho 'Extra user data here'\n"
        );
        assert_eq!(
            t(lookup(
                "/openstack/2012-08-10/meta_data.json",
                Some(&m),
                None
            )),
            r#"{"uuid": "d8e02d56-2648-49a3-bf97-6be8f1204f38", "availability_zone": "nova", "hostname": "test.novalocal", "launch_index": 0, "meta": {"priority": "low", "role": "webserver"}, "project_id": "f7ac731cc11f40efbc03a9f9e1d1d21f", "public_keys": {"mykey": "ssh-rsa AAAA Generated by Nova\n"}, "name": "test"}"#
        );
    }

    #[test]
    fn errors_are_404() {
        let m = meta(false);
        for p in [
            "/2009-04-04/meta-data/public-keys/",
            "/2009-04-04/meta-data/nope",
            "/2009-04-04/meta-data/hostname/deeper",
            "/1999-01-01/meta-data/",
            "/openstack/2011-01-01/meta_data.json",
            "/openstack/2012-08-10/password",
            "/openstack/2012-08-10/../../etc/passwd",
        ] {
            assert_eq!(lookup(p, Some(&m), None), Answer::NotFound, "{p}");
        }
        assert!(!t(lookup("/2009-04-04/meta-data/", Some(&m), None)).contains("public-keys"));
        assert_eq!(
            lookup("/2009-04-04/meta-data/", None, None),
            Answer::NotFound
        );
    }

    #[test]
    fn config_drive_contents() {
        let mut m = meta(true);
        m.network_config = Some("auto lo\niface lo inet loopback\n".into());
        let files = config_drive_files(&m);
        let paths: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
        let mut want = Vec::new();
        for v in [
            "2012-08-10",
            "2013-04-04",
            "2013-10-17",
            "2015-10-15",
            "latest",
        ] {
            want.push(format!("openstack/{v}/meta_data.json"));
            want.push(format!("openstack/{v}/user_data"));
            if v != "2012-08-10" && v != "2013-04-04" {
                want.push(format!("openstack/{v}/vendor_data.json"));
            }
            if v == "2015-10-15" || v == "latest" {
                want.push(format!("openstack/{v}/network_data.json"));
            }
        }
        want.push("openstack/content/0000".into());
        for v in ["2009-04-04", "latest"] {
            want.push(format!("ec2/{v}/meta-data.json"));
            want.push(format!("ec2/{v}/user-data"));
        }
        assert_eq!(paths, want);
        let file = |p: &str| {
            String::from_utf8(files.iter().find(|f| f.0 == p).unwrap().1.clone()).unwrap()
        };
        assert_eq!(
            file("openstack/latest/meta_data.json"),
            r#"{"uuid": "d8e02d56-2648-49a3-bf97-6be8f1204f38", "availability_zone": "nova", "hostname": "test.novalocal", "launch_index": 0, "meta": {"priority": "low", "role": "webserver"}, "project_id": "f7ac731cc11f40efbc03a9f9e1d1d21f", "public_keys": {"mykey": "ssh-rsa AAAA Generated by Nova\n"}, "name": "test", "random_seed": "c2VlZA==", "keys": [{"data": "ssh-rsa AAAA Generated by Nova\n", "name": "mykey", "type": "ssh"}], "files": [{"content_path": "/content/0000", "path": "/etc/network/interfaces"}], "network_config": {"content_path": "/content/0000", "name": "network_config"}}"#
        );
        assert_eq!(
            file("openstack/content/0000"),
            "auto lo\niface lo inet loopback\n"
        );
        assert_eq!(
            file("openstack/latest/network_data.json"),
            r#"{"links": [], "networks": [], "services": []}"#
        );
        assert_eq!(
            file("ec2/latest/meta-data.json"),
            r#"{"ami-id": "ami-00000001", "ami-launch-index": "0", "ami-manifest-path": "FIXME", "block-device-mapping": {"ami": "vda"}, "hostname": "test.novalocal", "instance-action": "none", "instance-id": "i-00000009", "instance-type": "m1.tiny", "kernel-id": "", "local-hostname": "test.novalocal", "local-ipv4": "10.0.0.2", "placement": {"availability-zone": "nova"}, "public-hostname": "test.novalocal", "public-ipv4": "", "public-keys": {"0": {"openssh-key": "ssh-rsa AAAA Generated by Nova\n"}}, "ramdisk-id": "", "reservation-id": "r-abcd1234", "security-groups": "default"}"#
        );
        assert_eq!(
            file("ec2/2009-04-04/user-data"),
            "#!/bin/bash\necho 'Extra user data here'\n"
        );
        // Without injection: no content, no reference to it.
        let plain = config_drive_files(&meta(false));
        assert!(plain.iter().all(|f| !f.0.contains("content")));
        assert!(!String::from_utf8_lossy(&plain[0].1).contains("network_config"));
    }

    #[test]
    fn config_drive_iso_is_labelled_config_2() {
        if std::process::Command::new("isoinfo")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: isoinfo (genisoimage) is not installed");
            return;
        }
        let mut m = meta(true);
        m.network_config = Some("auto lo\n".into());
        let iso = crate::configdrive::build_iso(&config_drive_files(&m)).unwrap();
        let dir = std::env::temp_dir().join(format!("novanet-iso-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cd.iso");
        std::fs::write(&path, &iso).unwrap();
        let isoinfo = |args: &[&str]| {
            let o = std::process::Command::new("isoinfo")
                .arg("-i")
                .arg(&path)
                .args(args)
                .output()
                .unwrap();
            String::from_utf8(o.stdout).unwrap()
        };
        assert!(isoinfo(&["-d"]).contains("Volume id: config-2"));
        assert_eq!(
            isoinfo(&["-R", "-x", "/openstack/content/0000"]),
            "auto lo\n"
        );
        assert!(isoinfo(&["-R", "-x", "/openstack/latest/meta_data.json"])
            .starts_with(r#"{"uuid": "d8e02d56"#));
        assert!(isoinfo(&["-R", "-f"]).contains("/ec2/latest/meta-data.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn proxy_signatures() {
        let mut mac = HmacSha256::new_from_slice(b"s3cret").unwrap();
        mac.update(b"iid");
        let sig: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(signature_ok("s3cret", "iid", &sig));
        assert!(!signature_ok("s3cret", "other", &sig));
        assert!(!signature_ok("s3cret", "iid", "zz"));
    }
}
