//! The harness the server's integration tests share (api, policy, keystone, metadata, plans):
//! temporary directories, stores seeded with projects and users, and one server over a
//! fresh SQLite store driven in-process through `novanet_server::call`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body as AxumBody;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use novanet_core::config::Config;
use novanet_server::{call, normalise_path, AppState};
use novanet_store::prelude::*;
use novanet_store::SqliteStore;
use serde_json::{json, Value};

pub const HOST: &str = "novanet.test:8774";
pub const CIRROS: &str = "ed8b2a37-5535-4a5f-a615-443513036d71";
pub const PUBKEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCyQiXymFLORE1cWoQTJsZtm1AEB4GlBSt4ydJaYddLtb5y6By6cnWzPV7f6Jt9mkooDQKitGQlf7QwuxM4BuNkzqKnT2Uk+9hJCPu3zOaugcjRVRgaz3bqTMZrl4eN9zhcZTwEP6g7I4WE30zDrcSkhwc8ITP8aCIsYbCF81MmjQ== test";

// ---- harness -------------------------------------------------------------------------------

/// A directory under the system temp dir, unique per test, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!(
            "novanet-server-test-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The harness's (project, user, role) triples.
pub const USERS: &[(&str, &str, &str)] = &[
    ("admin", "admin", "admin"),
    ("demo", "demo", "member"),
    ("other", "other", "member"),
];

/// A fresh store in `dir` with these (project, user, role) triples; every password is `pw`.
pub fn store_with_users(dir: &TempDir, users: &[(&str, &str, &str)]) -> SqliteStore {
    let store = SqliteStore::open_dir(&dir.0).expect("open store");
    for (project, user, role) in users {
        let p = store.create_project(project).expect("project");
        let u = store.create_user(user, "pw").expect("user");
        store.assign_role(&u.id, &p.id, role).expect("role");
    }
    store
}

/// One server over a fresh store with three projects: `admin` (user admin, role admin),
/// `demo` (user demo, member) and `other` (user other, member).
pub struct Harness {
    // Declared before the directory so that the store closes before the directory goes.
    pub state: Arc<AppState>,
    pub admin: String,
    pub demo: String,
    pub other: String,
    /// Every request sent: (method, normalised path without query, status).
    pub calls: Mutex<Vec<(Method, String, StatusCode)>>,
    pub _dir: TempDir,
}

type Reply = (StatusCode, HeaderMap, Value);

impl Harness {
    pub async fn new(name: &str) -> Harness {
        let cfg = Config {
            flat_network_bridge: Some("br100".into()),
            public_endpoint: Some(format!("http://{HOST}")),
            ..Config::default()
        };
        let mut h = Harness::over(name, USERS, cfg);
        h.admin = h.token("admin", "admin").await;
        h.demo = h.token("demo", "demo").await;
        h.other = h.token("other", "other").await;
        h
    }

    /// A server over a fresh store with `users` and `cfg`, holding no tokens (the caller
    /// logs in, here or at the Keystone `cfg` names).
    pub fn over(name: &str, users: &[(&str, &str, &str)], cfg: Config) -> Harness {
        let dir = TempDir::new(name);
        let store = store_with_users(&dir, users);
        Harness {
            state: AppState::new(Arc::new(store), cfg),
            admin: String::new(),
            demo: String::new(),
            other: String::new(),
            calls: Mutex::new(Vec::new()),
            _dir: dir,
        }
    }

    pub fn admin(&self) -> Option<&str> {
        Some(&self.admin)
    }
    pub fn demo(&self) -> Option<&str> {
        Some(&self.demo)
    }
    pub fn other(&self) -> Option<&str> {
        Some(&self.other)
    }

    /// Sends one request with a raw body and extra headers. Panics on any 500.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Reply {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut b = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", HOST)
            .header("accept", "application/json");
        if let Some(t) = token {
            b = b.header("x-auth-token", t);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = match body {
            Some(s) => b
                .header("content-type", "application/json")
                .body(AxumBody::from(s)),
            None => b.body(AxumBody::empty()),
        }
        .expect("request");
        let resp = call(self.state.clone(), req).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        let binary = headers.get("content-type").is_some_and(|t| {
            t.as_bytes() == b"application/x-iso9660-image"
                || t.as_bytes() == b"application/octet-stream"
        });
        let text = headers
            .get("content-type")
            .is_some_and(|t| t.as_bytes().starts_with(b"text/plain"));
        let value = if bytes.is_empty() {
            Value::Null
        } else if text {
            // Metrics and health answers.
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        } else if binary {
            // A config drive or an image's data: base64 of its bytes.
            Value::String(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                &bytes,
            ))
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{method} {path}: body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{method} {path} answered 500: {value}"
        );
        let bare = path.split('?').next().unwrap_or(path);
        self.calls
            .lock()
            .unwrap()
            .push((method, normalise_path(bare), status));
        (status, headers, value)
    }

    pub async fn req(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.send(method, path, token, &[], body.map(|b| b.to_string()))
            .await
    }

    /// `req`, asserting the status; returns the body.
    pub async fn expect(
        &self,
        status: u16,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (s, _, v) = self.req(method, path, token, body).await;
        assert_eq!(s.as_u16(), status, "{method} {path}: {v}");
        v
    }

    pub async fn token(&self, user: &str, project: &str) -> String {
        self.token_with(user, "pw", project).await
    }

    pub async fn token_with(&self, user: &str, password: &str, project: &str) -> String {
        let (s, h, v) = self
            .req(
                "POST",
                "/identity/v3/auth/tokens",
                None,
                Some(password_body(user, password, project)),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        h["x-subject-token"].to_str().unwrap().to_string()
    }
}

pub fn password_body(user: &str, password: &str, project: &str) -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"],
                     "password": {"user": {"name": user, "password": password, "domain": {"id": "default"}}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}})
}

/// Asserts a Nova fault body: `{"<key>": {"code": <status>, "message": "..."}}`; returns the
/// message.
pub fn fault(v: &Value, key: &str, code: u16) -> String {
    let f = &v[key];
    assert_eq!(f["code"], code, "expected a {key} fault: {v}");
    let msg = f["message"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(!msg.is_empty(), "{v}");
    msg.to_string()
}

pub fn network_body(label: &str, cidr: &str) -> Value {
    json!({"network": {"label": label, "cidr": cidr, "bridge": "br100"}})
}

pub fn rule_body(group: &Value, proto: &str, from: i64, to: i64, cidr: &str) -> Value {
    json!({"security_group_rule": {"ip_protocol": proto, "from_port": from, "to_port": to,
                                   "cidr": cidr, "group_id": null, "parent_group_id": group}})
}

pub fn boot_body(name: &str) -> Value {
    json!({"server": {"name": name, "imageRef": CIRROS, "flavorRef": "1", "min_count": 1, "max_count": 1}})
}

/// Creates a network as admin; returns its uuid.
pub async fn create_network(h: &Harness, label: &str, cidr: &str) -> String {
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-networks",
            h.admin(),
            Some(network_body(label, cidr)),
        )
        .await;
    v["network"]["id"].as_str().expect("network id").to_string()
}

/// Boots a server; returns its id.
pub async fn boot(h: &Harness, token: Option<&str>, name: &str) -> String {
    let v = h
        .expect(202, "POST", "/v2.1/servers", token, Some(boot_body(name)))
        .await;
    v["server"]["id"].as_str().expect("server id").to_string()
}

/// The caller's `default` security group id (made on first listing).
pub async fn default_group(h: &Harness, token: Option<&str>) -> Value {
    let v = h
        .expect(200, "GET", "/v2.1/os-security-groups", token, None)
        .await;
    v["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "default")
        .expect("default group")["id"]
        .clone()
}

pub async fn addresses(h: &Harness, token: Option<&str>, server: &str) -> Value {
    let v = h
        .expect(200, "GET", &format!("/v2.1/servers/{server}"), token, None)
        .await;
    v["server"]["addresses"].clone()
}

pub fn addrs_of(addresses: &Value, label: &str) -> Vec<String> {
    addresses[label]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["addr"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

impl Harness {
    /// A cloud under the VLAN manager (cloudpipe's), `my_ip` on loopback so that VPN
    /// probes stay on this machine, with one admin-made network of `cidr` whose VPN
    /// ports start at 1000.
    pub async fn vlan(name: &str, cidr: &str) -> Harness {
        let cfg = Config {
            network_manager: novanet_core::config::Manager::Vlan,
            vlan_interface: Some("eth2".into()),
            my_ip: "127.0.0.1".into(),
            public_endpoint: Some(format!("http://{HOST}")),
            ..Config::default()
        };
        let mut h = Harness::over(name, USERS, cfg);
        h.admin = h.token("admin", "admin").await;
        h.demo = h.token("demo", "demo").await;
        h.other = h.token("other", "other").await;
        let body = json!({"network": {"label": "private", "cidr": cidr, "vlan_start": 100, "vpn_start": 1000}});
        h.expect(200, "POST", "/v2.1/os-networks", h.admin(), Some(body))
            .await;
        h
    }
}
