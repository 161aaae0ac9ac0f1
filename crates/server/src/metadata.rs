//! The metadata service at 169.254.169.254: the trees of `novanet-metadata`, for the instance
//! whose fixed IP is the request's source. This module gathers an instance's `InstanceMeta`
//! from the store (cached per address), checks who is asking, rate-limits and keeps the
//! password and tokens; the trees themselves are the library's.

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

use crate::offload::blocking;
use crate::AppState;

pub use novanet_metadata::{
    config_drive_files, lookup, Answer, InstanceMeta, EC2_VERSIONS, OPENSTACK_VERSIONS,
};

pub const MAX_PASSWORD: usize = 255 * 4;
pub const MAX_TOKEN_TTL: u64 = 21600;

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
    let ipv6 = st.cfg.ipv6();
    let project = inst.spec.project_id.as_str();
    // One default route, the first network's (nova's use_single_default_gateway).
    let mut default_given = false;
    let mut default6_given = false;
    let mut net_num = 0;
    for a in &addrs {
        let link = format!("tap{}", &a.vif_uuid[..11.min(a.vif_uuid.len())]);
        if !links.iter().any(|l: &Value| l["id"] == json!(link)) {
            links.push(json!({"id": link, "vif_id": a.vif_uuid, "type": "bridge", "mtu": null, "ethernet_mac_address": a.mac}));
        }
        let net = networks.iter().find(|x| x.uuid == a.network_uuid);
        let dhcp = net.is_some_and(|x| x.enable_dhcp) && st.cfg.network_manager.uses_dhcp();
        let gw = net
            .and_then(|x| x.gateway.clone())
            .filter(|_| !default_given);
        if dhcp {
            nets.push(json!({"id": format!("network{net_num}"), "type": "ipv4_dhcp", "link": link, "network_id": a.network_uuid}));
        } else {
            default_given |= gw.is_some();
            nets.push(json!({"id": format!("network{net_num}"), "type": "ipv4", "link": link, "ip_address": a.address,
                "netmask": net.and_then(|x| x.netmask.clone()), "network_id": a.network_uuid,
                "routes": gw.map(|g| vec![json!({"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": g})]).unwrap_or_default()}));
        }
        net_num += 1;
        // nova's v6 subnet has no DHCP server: always a static entry; one default route,
        // the first v6 network's, as for v4.
        let v6 = net.zip(ipv6).and_then(|(n, b)| {
            Some((
                n,
                novanet_core::ipv6::instance_address(b, n, &a.mac, project)?,
            ))
        });
        if let Some((n, addr)) = v6 {
            let gw6 = n.gateway_v6.clone().filter(|_| !default6_given);
            default6_given |= gw6.is_some();
            nets.push(json!({"id": format!("network{net_num}"), "type": "ipv6", "link": link, "ip_address": addr.to_string(),
                "netmask": n.netmask_v6, "network_id": a.network_uuid,
                "routes": gw6.map(|g| vec![json!({"network": "::", "netmask": "::", "gateway": g})]).unwrap_or_default()}));
            net_num += 1;
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
    let network_config = novanet_core::guest::guest_interfaces(&vifs, ipv6.map(|b| (b, project)))
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
                let now_owner = blocking(lookup);
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
    // A miss reads the store; hits (nearly every request) stay on the async worker.
    let m = blocking(|| owner.unwrap_or_else(lookup).and_then(|i| build_meta(st, i))).map(Arc::new);
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
    // Cloudpipe's revocation list, for the VPN instances to fetch (it is public: any
    // instance may read it).
    if method == Method::GET && norm == crate::compute::cloudpipe::CRL_PATH {
        let ca = Arc::clone(&st);
        return match tokio::task::spawn_blocking(move || ca.ca.crl()).await {
            Ok(Ok(crl)) => text(StatusCode::OK, crl),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cloudpipe CRL");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the CRL is not available",
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "cloudpipe CRL");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the CRL is not available",
                )
            }
        };
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
        return match blocking(|| st.store.set_instance_password(&m.instance.uuid, &pw)) {
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
        blocking(|| st.store.instance(&m.instance.uuid))
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

    fn meta() -> InstanceMeta {
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
                power: Default::default(),
                locked_by: None,
                actions: Vec::new(),
                spec: InstanceSpec {
                    name: "test".into(),
                    key_name: Some("mykey".into()),
                    key_data: Some("ssh-rsa AAAA Generated by Nova\n".into()),
                    ..Default::default()
                },
            },
            domain: "novalocal".into(),
            fixed_ips: vec!["10.0.0.2".into()],
            floating_ips: vec![],
            security_groups: vec!["default".into()],
            flavor_name: "m1.tiny".into(),
            image_index: 0,
            user_data: None,
            network_data: json!({"links": [], "networks": [], "services": []}),
            vendor_data: json!({}),
            network_config: None,
            random_seed: "c2VlZA==".into(),
        }
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
        let mut m = meta();
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
