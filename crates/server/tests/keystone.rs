//! `[keystone_authtoken]`: a novanet server that takes tokens issued by an external
//! Keystone. The Keystone here is another novanet server (its identity API is Keystone v3
//! compatible) on a real socket; the server under test has no users of its own.

use std::sync::Arc;

use axum::http::StatusCode;
use novanet_core::config::{Config, KeystoneAuthtoken};
use novanet_server::AppState;
use serde_json::{json, Value};

mod common;
use common::{store_with_users, Harness, TempDir};

/// A token from the Keystone at `base` (blocking HTTP, off the runtime).
async fn login(base: String, user: &str, project: &str) -> String {
    let (user, project) = (user.to_string(), project.to_string());
    tokio::task::spawn_blocking(move || {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "password": "pw", "domain": {"name": "Default"}}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}});
        ureq::post(&format!("{base}/auth/tokens"))
            .send_json(body)
            .expect("login")
            .header("x-subject-token")
            .expect("token")
            .to_string()
    })
    .await
    .unwrap()
}

async fn call(
    h: &Harness,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, _, v) = h.req(method, path, Some(token), body).await;
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_validated_by_an_external_keystone() {
    // The external Keystone: a service user, an admin and a member.
    let dir_k = TempDir::new("keystone");
    let store_k = store_with_users(
        &dir_k,
        &[
            ("service", "nova", "admin"),
            ("admin", "admin", "admin"),
            ("demo", "demo", "member"),
        ],
    );
    let keystone = AppState::new(Arc::new(store_k), Config::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, novanet_server::router(keystone))
            .await
            .unwrap()
    });
    let base = format!("http://{addr}/identity/v3");

    // novanet, with no users of its own, believing that Keystone.
    let cfg = Config {
        flat_network_bridge: Some("br100".into()),
        keystone_authtoken: Some(KeystoneAuthtoken {
            auth_url: base.clone(),
            username: "nova".into(),
            password: "pw".into(),
            project_name: "service".into(),
            user_domain_name: "Default".into(),
            project_domain_name: "Default".into(),
        }),
        ..Config::default()
    };
    let app = Harness::over("novanet", &[], cfg);

    let demo = login(base.clone(), "demo", "demo").await;
    let admin = login(base.clone(), "admin", "admin").await;
    let (s, v) = call(&app, "GET", "/v2.1/os-networks", &demo, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Roles come from Keystone: a member may not create networks, an admin may.
    let net = json!({"network": {"label": "vmnet", "cidr": "10.0.0.0/24"}});
    let (s, _) = call(&app, "POST", "/v2.1/os-networks", &demo, Some(net.clone())).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = call(&app, "POST", "/v2.1/os-networks", &admin, Some(net)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The project is Keystone's: the member's default group belongs to its project id.
    let (s, v) = call(&app, "GET", "/v2.1/os-security-groups", &demo, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let demo_project = v["security_groups"][0]["tenant_id"].clone();
    assert!(demo_project.as_str().is_some_and(|p| !p.is_empty()), "{v}");
    let (s, _) = call(&app, "GET", "/v2.1/os-networks", "not-a-token", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Keystone gone: a token validated within the last minute still works; another one
    // gets 503, which says whose fault it is.
    server.abort();
    let _ = server.await;
    let (s, _) = call(&app, "GET", "/v2.1/os-networks", &demo, None).await;
    assert_eq!(s, StatusCode::OK);
    // A token refused a moment ago is refused again without asking.
    let (s, _) = call(&app, "GET", "/v2.1/os-networks", "not-a-token", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = call(&app, "GET", "/v2.1/os-networks", "another-token", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(
        v.to_string().contains("keystone") || v.to_string().contains("127.0.0.1"),
        "{v}"
    );
}
