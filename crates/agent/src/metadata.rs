//! The metadata service on a multi-host compute host (`metadata_host = 127.0.0.1`): the plan
//! redirects 169.254.169.254:80 to this host's `metadata_port`, and the agent answers its
//! own instances there from its copy of their metadata, fetched from the server when the
//! plan changes and kept in its state directory. No request goes to the server, and the
//! instances keep their metadata while no server answers (or the agent restarts without one).
//!
//! The trees are `novanet-metadata`'s, as the server's are; the instance is the one whose
//! fixed IP is the request's source, as on the server. Only reads are served here: a
//! password POST, IMDSv2 tokens and rate limits stay the server's.
//!
//! Dual stack: on every host with IPv6 gateways (the network host, each multi-host host)
//! the plan DNATs `[fe80::a9fe:a9fe]:80` on those bridges to a second listener here. The
//! source is the instance's link-local address, which cannot be forwarded to a server, so
//! this host answers from the same copy: the instance is the one whose MAC the source's
//! EUI-64 interface identifier carries (the bridge table drops any other source a port
//! sends to that address from).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use novanet_core::plan::{HostPlan, METADATA_ADDRESS_V6};
use novanet_metadata::{lookup, Answer, InstanceMeta};

use crate::client::Client;

/// The copy, shared with the listeners' threads.
type SharedIndex = Arc<RwLock<Index>>;

/// The host's instances by fixed IP, and by MAC (lower case).
#[derive(Default)]
struct Index {
    by_ip: HashMap<String, Arc<InstanceMeta>>,
    by_mac: HashMap<String, Arc<InstanceMeta>>,
}

/// Largest request head read (a metadata GET is a few hundred bytes).
const MAX_HEAD: usize = 8192;

pub struct LocalMetadata {
    index: SharedIndex,
    file: PathBuf,
    /// The port a listener runs on (it runs until the agent exits).
    listening: Option<u16>,
    /// The same for the IPv6 listener (`fe80::a9fe:a9fe`'s DNAT target).
    listening6: Option<u16>,
    /// The plan generation the copy was fetched for.
    fetched: Option<u64>,
}

fn index(metas: Vec<InstanceMeta>) -> Index {
    let mut index = Index::default();
    for m in metas {
        let m = Arc::new(m);
        for ip in &m.fixed_ips {
            index.by_ip.insert(ip.clone(), m.clone());
        }
        let links = m.network_data["links"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for mac in links
            .iter()
            .filter_map(|l| l["ethernet_mac_address"].as_str())
        {
            index.by_mac.insert(mac.to_lowercase(), m.clone());
        }
    }
    index
}

fn load(file: &Path) -> Index {
    let metas: Vec<InstanceMeta> = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    index(metas)
}

impl LocalMetadata {
    /// With the copy an earlier run kept, so that it answers before any server does.
    pub fn new(state_dir: &Path) -> LocalMetadata {
        let file = state_dir.join("metadata.json");
        LocalMetadata {
            index: Arc::new(RwLock::new(load(&file))),
            file,
            listening: None,
            listening6: None,
            fetched: None,
        }
    }

    /// Serves when the plan redirects metadata to this host (IPv4 to a loopback metadata
    /// host, IPv6 at `fe80::a9fe:a9fe`), and refreshes the copy when the plan changed.
    /// Errors are reported; the old copy stays in use.
    pub fn sync(&mut self, plan: &HostPlan, client: &Client) -> Vec<String> {
        let v4 = plan.gateway.metadata.as_ref().filter(|m| m.is_local());
        let v6 = plan.gateway.metadata_v6.as_ref();
        if v4.is_none() && v6.is_none() {
            return Vec::new();
        }
        let mut errors = Vec::new();
        if let (None, Some(md)) = (self.listening, v4) {
            match self.listen(md.port.get()) {
                Ok(()) => self.listening = Some(md.port.get()),
                Err(e) => errors.push(e),
            }
        }
        if let (None, Some(md)) = (self.listening6, v6) {
            match self.listen6(md.port.get()) {
                Ok(()) => self.listening6 = Some(md.port.get()),
                Err(e) => errors.push(e),
            }
        }
        if self.fetched != Some(plan.generation) {
            match self.fetch(client, &plan.host) {
                Ok(()) => self.fetched = Some(plan.generation),
                Err(e) => errors.push(format!("metadata copy not refreshed (old one kept): {e}")),
            }
        }
        errors
    }

    /// The DNAT's target: requests arrive addressed to `fe80::a9fe:a9fe`, from a link-local
    /// source; anything else is not answered (a global source could be anyone's, routed).
    fn listen6(&self, port: u16) -> Result<(), String> {
        let listener = TcpListener::bind((Ipv6Addr::UNSPECIFIED, port))
            .map_err(|e| format!("metadata: cannot listen on [::]:{port}: {e}"))?;
        let index = self.index.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let index = index.clone();
                std::thread::spawn(move || serve_one6(stream, &index));
            }
        });
        tracing::info!(port, "metadata served on this host at fe80::a9fe:a9fe");
        Ok(())
    }

    fn fetch(&self, client: &Client, host: &str) -> Result<(), String> {
        let v = client
            .call("GET", &format!("/novanet/v1/hosts/{host}/metadata"), None)
            .map_err(|e| e.to_string())?;
        let metas: Vec<InstanceMeta> = serde_json::from_value(v["instances"].clone())
            .map_err(|e| format!("the server's metadata does not parse: {e}"))?;
        let text = serde_json::to_string(&metas).map_err(|e| e.to_string())?;
        crate::sys::write_if_changed(&self.file, &text).map_err(|e| e.to_string())?;
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = index(metas);
        Ok(())
    }

    /// Where the redirect sends: any of this host's addresses on the port (REDIRECT goes to
    /// the address of the bridge the request came in on).
    fn listen(&self, port: u16) -> Result<(), String> {
        let listener = TcpListener::bind(("0.0.0.0", port))
            .map_err(|e| format!("metadata: cannot listen on port {port}: {e}"))?;
        let index = self.index.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let index = index.clone();
                std::thread::spawn(move || serve_one(stream, &index));
            }
        });
        tracing::info!(port, "metadata served on this host");
        Ok(())
    }
}

fn serve_one(stream: TcpStream, index: &SharedIndex) {
    let Ok(peer) = stream.peer_addr() else { return };
    let meta = index
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .by_ip
        .get(&peer.ip().to_canonical().to_string())
        .cloned();
    answer(stream, meta.as_deref());
}

/// The instance asking over IPv6: the MAC in its link-local source's interface identifier,
/// for a request to the metadata address only. Pure.
pub fn requester_mac(local: IpAddr, peer: IpAddr) -> Option<String> {
    let (IpAddr::V6(local), IpAddr::V6(peer)) = (local, peer) else {
        return None;
    };
    let link_local = (peer.segments()[0] & 0xffc0) == 0xfe80;
    if local.to_string() != METADATA_ADDRESS_V6 || !link_local {
        return None;
    }
    novanet_core::ipv6::eui64_mac(peer).map(|m| m.to_string())
}

fn serve_one6(stream: TcpStream, index: &SharedIndex) {
    let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) else {
        return;
    };
    let meta = requester_mac(local.ip(), peer.ip()).and_then(|mac| {
        index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_mac
            .get(&mac)
            .cloned()
    });
    answer(stream, meta.as_deref());
}

fn answer(mut stream: TcpStream, meta: Option<&InstanceMeta>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let reply = respond(&head, meta);
    let _ = stream.write_all(&reply);
}

fn response(code: &str, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

const TEXT: &str = "text/plain; charset=UTF-8";

/// The answer to one request head from the instance `m` (None: the source address is no
/// instance of this host's). Pure.
pub fn respond(head: &[u8], m: Option<&InstanceMeta>) -> Vec<u8> {
    let not_found = |head_only| {
        response(
            "404 Not Found",
            TEXT,
            b"404 Not Found\n\nThe resource could not be found.\n",
            head_only,
        )
    };
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split(['?', '#']).next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return response(
            "400 Bad Request",
            TEXT,
            b"Only GET is served on this host; a password is set through the server's metadata service.",
            false,
        );
    }
    let norm = path.trim_end_matches('/');
    if !(norm.is_empty() || norm == "/ec2") && m.is_none() {
        return not_found(head_only);
    }
    let m = m.filter(|_| !(norm.is_empty() || norm == "/ec2"));
    match lookup(path, m, None) {
        Answer::Text(t) => response("200 OK", TEXT, t.as_bytes(), head_only),
        Answer::Json(j) => response("200 OK", "application/json", j.as_bytes(), head_only),
        Answer::Bytes(b) => response("200 OK", "text/plain", &b, head_only),
        Answer::NotFound => not_found(head_only),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use novanet_core::model::{Instance, InstanceSpec};
    use serde_json::json;

    fn meta() -> InstanceMeta {
        InstanceMeta {
            instance: Instance {
                id: 9,
                uuid: "d8e02d56-2648-49a3-bf97-6be8f1204f38".into(),
                hostname: "cirros".into(),
                launch_index: 0,
                reservation_id: "r-abcd1234".into(),
                created_at: 0,
                password: None,
                updated_at: 0,
                power: Default::default(),
                locked_by: None,
                actions: Vec::new(),
                spec: InstanceSpec {
                    name: "cirros".into(),
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

    fn body(r: &[u8]) -> (String, String) {
        let t = String::from_utf8_lossy(r).into_owned();
        let (h, b) = t.split_once("\r\n\r\n").unwrap();
        (h.lines().next().unwrap().to_string(), b.to_string())
    }

    /// Over IPv6 the instance is the MAC in the link-local source, for requests to
    /// fe80::a9fe:a9fe only; a global or privacy source, or another destination, is nobody.
    #[test]
    fn v6_requester_is_the_mac_of_its_link_local_source() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let md = ip("fe80::a9fe:a9fe");
        assert_eq!(
            requester_mac(md, ip("fe80::f816:3eff:fe2c:e8ec")).as_deref(),
            Some("fa:16:3e:2c:e8:ec")
        );
        assert_eq!(requester_mac(md, ip("fd00:1::f816:3eff:fe2c:e8ec")), None);
        assert_eq!(requester_mac(md, ip("fe80::1c2d:5a11:9b3e:77a0")), None);
        assert_eq!(
            requester_mac(ip("fd00:1::1"), ip("fe80::f816:3eff:fe2c:e8ec")),
            None
        );
        assert_eq!(requester_mac(ip("10.0.0.1"), ip("10.0.0.2")), None);
        // The copy is indexed by the MACs of the instance's links.
        let mut m = meta();
        m.network_data = json!({"links": [{"ethernet_mac_address": "FA:16:3E:2C:E8:EC"}]});
        let i = index(vec![m]);
        assert!(i.by_mac.contains_key("fa:16:3e:2c:e8:ec"));
        assert!(i.by_ip.contains_key("10.0.0.2"));
    }

    #[test]
    fn answers_its_instances_from_the_trees() {
        let m = meta();
        let get = |p: &str, m: Option<&InstanceMeta>| {
            body(&respond(
                format!("GET {p} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n").as_bytes(),
                m,
            ))
        };
        assert_eq!(
            get("/2009-04-04/meta-data/hostname", Some(&m)),
            ("HTTP/1.1 200 OK".into(), "cirros.novalocal".into())
        );
        let (status, json) = get("/openstack/latest/meta_data.json?x=1", Some(&m));
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(json.starts_with(r#"{"uuid": "d8e02d56"#), "{json}");
        // The root lists versions for anyone; the rest only for an instance of this host.
        assert!(get("/", None).1.contains("2009-04-04"));
        assert_eq!(get("/latest/meta-data/", None).0, "HTTP/1.1 404 Not Found");
        assert_eq!(get("/../etc/passwd", Some(&m)).0, "HTTP/1.1 404 Not Found");
        let post = respond(
            b"POST /openstack/latest/password HTTP/1.1\r\n\r\nx",
            Some(&m),
        );
        assert_eq!(body(&post).0, "HTTP/1.1 400 Bad Request");
    }
}
