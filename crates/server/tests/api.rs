//! In-process tests of the whole HTTP service (`novanet_server::call`, so path normalisation
//! included) over a real SQLite store: identity, compute, the agents' API, policy, error
//! shapes and the seed tutorial's flow. Every route of `openapi::ROUTES` is called at least
//! once with success, and no request may ever answer 500.

use axum::http::StatusCode;
use novanet_server::openapi::ROUTES;
use serde_json::{json, Value};

mod common;
use common::*;

// ---- 1. identity ---------------------------------------------------------------------------

#[tokio::test]
async fn identity_version_documents() {
    let h = Harness::new("idver").await;
    let v = h.expect(200, "GET", "/identity/v3", None, None).await;
    assert_eq!(v["version"]["status"], "stable");
    assert!(v["version"]["id"].as_str().unwrap().starts_with("v3."));
    let links = v["version"]["links"].as_array().unwrap();
    assert!(links
        .iter()
        .any(|l| l["rel"] == "self" && l["href"] == format!("http://{HOST}/identity/v3/")));
    // The unversioned URL answers 300 with the values list.
    let v = h.expect(300, "GET", "/identity", None, None).await;
    assert_eq!(v["versions"]["values"][0]["status"], "stable");
}

#[tokio::test]
async fn identity_issues_tokens_with_a_catalog() {
    let h = Harness::new("idtoken").await;
    let (s, headers, v) = h
        .req(
            "POST",
            "/identity/v3/auth/tokens",
            None,
            Some(password_body("admin", "pw", "admin")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let subject = headers["x-subject-token"].to_str().unwrap();
    assert!(!subject.is_empty());
    let t = &v["token"];
    let expires = t["expires_at"].as_str().unwrap();
    let issued = t["issued_at"].as_str().unwrap();
    assert!(
        expires.ends_with('Z') && expires > issued,
        "{expires} {issued}"
    );
    assert_eq!(t["user"]["name"], "admin");
    assert_eq!(t["project"]["name"], "admin");
    let pid = t["project"]["id"].as_str().unwrap();
    assert!(pid.len() == 32 && pid.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(t["roles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "admin"));
    let catalog = t["catalog"].as_array().unwrap();
    let public_url = |kind: &str| -> String {
        let svc = catalog
            .iter()
            .find(|s| s["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in the catalog: {v}"));
        svc["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["interface"] == "public")
            .expect("public endpoint")["url"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let compute = public_url("compute");
    assert!(compute.ends_with("/v2.1"), "{compute}");
    assert_eq!(compute, format!("http://{HOST}/v2.1"));
    assert_eq!(public_url("image"), format!("http://{HOST}/image"));
    assert!(
        !catalog.iter().any(|s| s["type"] == "network"),
        "a network service would send novaclient to neutron"
    );
    // The token works on compute.
    h.expect(200, "GET", "/v2.1/servers", Some(subject), None)
        .await;

    // Other spellings clients send: domain by name, user and project by id.
    let body = json!({"auth": {
        "identity": {"methods": ["password"],
                     "password": {"user": {"name": "demo", "password": "pw", "domain": {"name": "Default"}}}},
        "scope": {"project": {"id": h.state.store.project("demo").unwrap().id}}}});
    let v = h
        .expect(201, "POST", "/identity/v3/auth/tokens", None, Some(body))
        .await;
    assert_eq!(v["token"]["project"]["name"], "demo");
    assert_eq!(v["token"]["roles"][0]["name"], "member");
}

#[tokio::test]
async fn identity_refuses_bad_credentials_in_keystones_shape() {
    let h = Harness::new("idbad").await;
    for body in [
        password_body("admin", "wrong", "admin"),
        password_body("nobody", "pw", "admin"),
        password_body("admin", "pw", "nosuchproject"),
        // demo has no role on admin.
        password_body("demo", "pw", "admin"),
    ] {
        let (s, headers, v) = h
            .req("POST", "/identity/v3/auth/tokens", None, Some(body))
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
        assert!(headers.get("x-subject-token").is_none());
        assert_eq!(v["error"]["code"], 401, "{v}");
        assert_eq!(v["error"]["title"], "Unauthorized");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // No scope, no password method: 400 in the same shape.
    let body = json!({"auth": {"identity": {"methods": ["password"],
        "password": {"user": {"name": "admin", "password": "pw"}}}}});
    let v = h
        .expect(400, "POST", "/identity/v3/auth/tokens", None, Some(body))
        .await;
    assert_eq!(v["error"]["code"], 400, "{v}");
    let body = json!({"auth": {"identity": {"methods": ["token"]}}});
    let v = h
        .expect(400, "POST", "/identity/v3/auth/tokens", None, Some(body))
        .await;
    assert_eq!(v["error"]["code"], 400, "{v}");
    // A malformed body too: keystoneauth prints error.message.
    let (s, _, v) = h
        .send(
            "POST",
            "/identity/v3/auth/tokens",
            None,
            &[],
            Some("{\"auth\": ".into()),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("request body")));
}

#[tokio::test]
async fn identity_validates_checks_and_revokes_tokens() {
    let h = Harness::new("idrevoke").await;
    let subject = h.token("demo", "demo").await;
    let sub = [("x-subject-token", subject.as_str())];
    let path = "/identity/v3/auth/tokens";

    let (s, headers, v) = h.send("GET", path, h.admin(), &sub, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(headers["x-subject-token"], subject.as_str());
    assert_eq!(v["token"]["user"]["name"], "demo");
    assert_eq!(v["token"]["project"]["name"], "demo");
    assert!(v["token"]["expires_at"].is_string());

    let (s, _, v) = h.send("HEAD", path, h.admin(), &sub, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.is_null(), "HEAD has no body: {v}");

    // Validation needs a caller token and a subject.
    let (s, _, v) = h.send("GET", path, None, &sub, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, _, v) = h.send("GET", path, h.admin(), &[], None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], 400);

    let (s, _, v) = h.send("DELETE", path, h.admin(), &sub, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");

    for m in ["GET", "HEAD", "DELETE"] {
        let (s, _, v) = h.send(m, path, h.admin(), &sub, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{m} after revoke: {v}");
    }
    // The revoked token no longer authenticates.
    let v = h
        .expect(401, "GET", "/v2.1/servers", Some(&subject), None)
        .await;
    fault(&v, "unauthorized", 401);
}

// ---- 2. compute versions -------------------------------------------------------------------

#[tokio::test]
async fn compute_version_documents_on_every_spelling() {
    let h = Harness::new("compver").await;
    let pid = h.state.store.project("demo").unwrap().id;
    for path in [
        "/v2.1".to_string(),
        "/v2.1/".to_string(),
        "/compute/v2.1".to_string(),
        "/compute/v2.1/".to_string(),
        format!("/v2.1/{pid}"),
        format!("/v2.1/{pid}/"),
        format!("/compute/v2.1/{pid}/"),
    ] {
        for token in [None, h.demo()] {
            let v = h.expect(200, "GET", &path, token, None).await;
            let ver = &v["version"];
            assert_eq!(ver["version"], "2.35", "{path}: {v}");
            assert_eq!(ver["min_version"], "2.1", "{path}: {v}");
            assert_eq!(ver["id"], "v2.1");
        }
    }
    let v = h.expect(200, "GET", "/", None, None).await;
    let versions = v["versions"].as_array().expect("versions list");
    let ids: Vec<&str> = versions.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["v2.0", "v2.1"]);
    let v21 = versions.iter().find(|v| v["id"] == "v2.1").unwrap();
    assert_eq!(v21["status"], "CURRENT");
    assert_eq!(v21["version"], "2.35");

    // A project id in the path reaches the same resources.
    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/{pid}/flavors/1"),
            h.demo(),
            None,
        )
        .await;
    assert_eq!(v["flavor"]["name"], "m1.tiny");
    let v = h
        .expect(200, "GET", "/v2/os-networks", h.demo(), None)
        .await;
    assert!(v["networks"].is_array());
}

// ---- 3. every route ------------------------------------------------------------------------

async fn routes_identity(h: &Harness) {
    h.expect(200, "GET", "/identity/v3", None, None).await;
    let subject = h.token("other", "other").await;
    let sub = [("x-subject-token", subject.as_str())];
    let path = "/identity/v3/auth/tokens";
    for (m, code) in [("GET", 200), ("HEAD", 200), ("DELETE", 204)] {
        let (s, _, v) = h.send(m, path, h.admin(), &sub, None).await;
        assert_eq!(s.as_u16(), code, "{m}: {v}");
    }
}

async fn routes_networks(h: &Harness) {
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-networks",
            h.admin(),
            Some(network_body("vmnet", "10.0.0.0/24")),
        )
        .await;
    let n = &v["network"];
    assert_eq!(n["label"], "vmnet");
    assert_eq!(n["cidr"], "10.0.0.0/24");
    assert_eq!(n["bridge"], "br100");
    assert_eq!(n["gateway"], "10.0.0.1");
    assert_eq!(n["netmask"], "255.255.255.0");

    // Without a bridge, flat_network_bridge applies.
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-networks",
            h.admin(),
            Some(json!({"network": {"label": "net2", "cidr": "10.1.0.0/28"}})),
        )
        .await;
    assert_eq!(v["network"]["bridge"], "br100");
    let net2 = v["network"]["id"].as_str().unwrap().to_string();

    let v = h
        .expect(200, "GET", "/v2.1/os-networks", h.admin(), None)
        .await;
    let labels: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels.len(), 2);
    assert!(labels.contains(&"vmnet") && labels.contains(&"net2"));
    // Members see the shared networks, without the admin fields.
    let v = h
        .expect(200, "GET", "/v2.1/os-networks", h.demo(), None)
        .await;
    assert_eq!(v["networks"].as_array().unwrap().len(), 2);
    assert!(v["networks"][0].get("bridge").is_none(), "{v}");

    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/os-networks/{net2}"),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["network"]["cidr"], "10.1.0.0/28");
    // By label too.
    let v = h
        .expect(200, "GET", "/v2.1/os-networks/vmnet", h.admin(), None)
        .await;
    assert_eq!(v["network"]["label"], "vmnet");

    // Associate net2 with admin's project, then walk the actions.
    h.expect(
        202,
        "POST",
        "/v2.1/os-networks/add",
        h.admin(),
        Some(json!({"id": net2})),
    )
    .await;
    let admin_pid = h.state.store.project("admin").unwrap().id;
    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/os-networks/{net2}"),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["network"]["project_id"], admin_pid.as_str());
    // A project's network is hidden from other members.
    h.expect(
        404,
        "GET",
        &format!("/v2.1/os-networks/{net2}"),
        h.demo(),
        None,
    )
    .await;
    // Deleting an associated network is refused.
    let v = h
        .expect(
            409,
            "DELETE",
            &format!("/v2.1/os-networks/{net2}"),
            h.admin(),
            None,
        )
        .await;
    fault(&v, "conflictingRequest", 409);

    let action = format!("/v2.1/os-networks/{net2}/action");
    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        Some(json!({"associate_host": "net-1"})),
    )
    .await;
    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/os-networks/{net2}"),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["network"]["host"], "net-1");
    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        Some(json!({"disassociate_host": null})),
    )
    .await;
    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        Some(json!({"disassociate_project": null})),
    )
    .await;
    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/os-networks/{net2}"),
            h.admin(),
            None,
        )
        .await;
    assert!(v["network"]["project_id"].is_null(), "{v}");
    assert!(v["network"]["host"].is_null(), "{v}");
    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        Some(json!({"disassociate": null})),
    )
    .await;
    let v = h
        .expect(
            400,
            "POST",
            &action,
            h.admin(),
            Some(json!({"explode": null})),
        )
        .await;
    fault(&v, "badRequest", 400);

    let r = h
        .expect(
            202,
            "DELETE",
            &format!("/v2.1/os-networks/{net2}"),
            h.admin(),
            None,
        )
        .await;
    assert!(r.is_null());
    h.expect(
        404,
        "GET",
        &format!("/v2.1/os-networks/{net2}"),
        h.admin(),
        None,
    )
    .await;
}

async fn routes_tenant_networks(h: &Harness) {
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-tenant-networks",
            h.demo(),
            Some(json!({"network": {"label": "demonet", "cidr": "10.20.0.0/29"}})),
        )
        .await;
    let id = v["network"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["network"]["label"], "demonet");
    assert_eq!(v["network"]["cidr"], "10.20.0.0/29");

    let v = h
        .expect(200, "GET", "/v2.1/os-tenant-networks", h.demo(), None)
        .await;
    assert!(v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["id"] == id.as_str()));
    // Not visible to another project.
    let v = h
        .expect(200, "GET", "/v2.1/os-tenant-networks", h.other(), None)
        .await;
    assert!(!v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["id"] == id.as_str()));
    h.expect(
        404,
        "GET",
        &format!("/v2.1/os-tenant-networks/{id}"),
        h.other(),
        None,
    )
    .await;

    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/os-tenant-networks/{id}"),
            h.demo(),
            None,
        )
        .await;
    assert_eq!(v["network"]["label"], "demonet");
    h.expect(
        202,
        "DELETE",
        &format!("/v2.1/os-tenant-networks/{id}"),
        h.demo(),
        None,
    )
    .await;
    h.expect(
        404,
        "GET",
        &format!("/v2.1/os-tenant-networks/{id}"),
        h.demo(),
        None,
    )
    .await;
    // Too small to hold hosts.
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/os-tenant-networks",
            h.demo(),
            Some(json!({"network": {"label": "tiny", "cidr": "10.21.0.0/31"}})),
        )
        .await;
    fault(&v, "badRequest", 400);
}

async fn routes_fixed_ips(h: &Harness) {
    let v = h
        .expect(200, "GET", "/v2.1/os-fixed-ips/10.0.0.5", h.admin(), None)
        .await;
    assert_eq!(v["fixed_ip"]["address"], "10.0.0.5");
    assert_eq!(v["fixed_ip"]["cidr"], "10.0.0.0/24");
    assert!(
        v["fixed_ip"].get("reserved").is_none(),
        "reserved came with 2.4"
    );
    h.expect(
        202,
        "POST",
        "/v2.1/os-fixed-ips/10.0.0.5/action",
        h.admin(),
        Some(json!({"reserve": null})),
    )
    .await;
    let (_, _, v) = h
        .send(
            "GET",
            "/v2.1/os-fixed-ips/10.0.0.5",
            h.admin(),
            &[("x-openstack-nova-api-version", "2.4")],
            None,
        )
        .await;
    assert_eq!(v["fixed_ip"]["reserved"], true);
    h.expect(
        202,
        "POST",
        "/v2.1/os-fixed-ips/10.0.0.5/action",
        h.admin(),
        Some(json!({"unreserve": null})),
    )
    .await;
    let v = h
        .expect(200, "GET", "/v2.1/os-fixed-ips/10.0.0.5", h.admin(), None)
        .await;
    assert!(
        v["fixed_ip"].get("reserved").is_none(),
        "reserved came with 2.4"
    );
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/os-fixed-ips/10.0.0.5/action",
            h.admin(),
            Some(json!({"frobnicate": null})),
        )
        .await;
    fault(&v, "badRequest", 400);
    let v = h
        .expect(
            404,
            "GET",
            "/v2.1/os-fixed-ips/192.168.77.1",
            h.admin(),
            None,
        )
        .await;
    fault(&v, "itemNotFound", 404);
}

/// Glance v2's create, upload, show, list, download and delete of a project's own image.
async fn routes_uploaded_images(h: &Harness) {
    let v = h
        .expect(
            201,
            "POST",
            "/image/v2/images",
            h.demo(),
            Some(
                json!({"name": "tiny", "disk_format": "raw", "container_format": "bare",
                        "os_command_line": "console=ttyS0"}),
            ),
        )
        .await;
    assert_eq!(v["status"], "queued");
    assert_eq!(v["visibility"], "private");
    assert_eq!(
        v["os_command_line"], "console=ttyS0",
        "a property is a top-level key"
    );
    let id = v["id"].as_str().unwrap().to_string();
    let file = format!("/image/v2/images/{id}/file");
    // Not active yet: no data to give, nothing to boot.
    let (s, _, _) = h.req("GET", &file, h.demo(), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let data = "hello image";
    let (s, _, v) = h
        .send("PUT", &file, h.demo(), &[], Some(data.to_string()))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, _, _) = h
        .send("PUT", &file, h.demo(), &[], Some(data.to_string()))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "data is uploaded once");
    let v = h
        .expect(
            200,
            "GET",
            &format!("/image/v2/images/{id}"),
            h.demo(),
            None,
        )
        .await;
    assert_eq!(v["status"], "active");
    assert_eq!(v["size"], data.len());
    // md5("hello image")
    assert_eq!(v["checksum"], "1a8170f6b425d667b1aba297dbe4ff88");
    assert_eq!(v["os_hash_algo"], "sha512");
    let (s, headers, v) = h.req("GET", &file, h.demo(), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            data
        ))
    );
    assert_eq!(headers["content-md5"], "1a8170f6b425d667b1aba297dbe4ff88");
    let v = h
        .expect(200, "GET", "/image/v2/images?name=tiny", h.demo(), None)
        .await;
    assert_eq!(v["images"][0]["id"], id.as_str());
    // Private: another project neither sees nor deletes it.
    let v = h
        .expect(200, "GET", "/image/v2/images?name=tiny", h.other(), None)
        .await;
    assert_eq!(v["images"], json!([]));
    h.expect(
        404,
        "DELETE",
        &format!("/image/v2/images/{id}"),
        h.other(),
        None,
    )
    .await;
    // Only admin publishes; the built-in images are protected.
    h.expect(
        403,
        "POST",
        "/image/v2/images",
        h.demo(),
        Some(json!({"name": "pub", "disk_format": "raw", "visibility": "public"})),
    )
    .await;
    h.expect(
        400,
        "POST",
        "/image/v2/images",
        h.demo(),
        Some(json!({"name": "bad", "disk_format": "floppy"})),
    )
    .await;
    h.expect(
        403,
        "DELETE",
        &format!("/image/v2/images/{CIRROS}"),
        h.admin(),
        None,
    )
    .await;
    let (s, _, _) = h
        .req("DELETE", &format!("/image/v2/images/{id}"), h.demo(), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    h.expect(
        404,
        "GET",
        &format!("/image/v2/images/{id}"),
        h.demo(),
        None,
    )
    .await;
}

#[tokio::test]
async fn an_uploaded_image_boots_by_name() {
    let h = Harness::new("image-boot").await;
    create_network(&h, "vmnet", "10.0.0.0/24").await;
    let v = h
        .expect(
            201,
            "POST",
            "/image/v2/images",
            h.demo(),
            Some(json!({"name": "mine", "disk_format": "qcow2"})),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_string();
    let boot_body = json!({"server": {"name": "vm", "imageRef": "mine", "flavorRef": "1"}});
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/servers",
            h.demo(),
            Some(boot_body.clone()),
        )
        .await;
    assert!(
        v.to_string().contains("Can not find requested image"),
        "{v}"
    );
    let (s, _, _) = h
        .send(
            "PUT",
            &format!("/image/v2/images/{id}/file"),
            h.demo(),
            &[],
            Some("qcow2 bytes".into()),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    h.expect(
        202,
        "POST",
        "/v2.1/servers",
        h.demo(),
        Some(boot_body.clone()),
    )
    .await;
    // Another project cannot boot a private image.
    h.expect(400, "POST", "/v2.1/servers", h.other(), Some(boot_body))
        .await;
}

async fn routes_keypairs_flavors_images_limits(h: &Harness) {
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-keypairs",
            h.demo(),
            Some(json!({"keypair": {"name": "k1", "public_key": PUBKEY}})),
        )
        .await;
    assert_eq!(v["keypair"]["name"], "k1");
    assert_eq!(v["keypair"]["public_key"], PUBKEY);
    assert!(v["keypair"]["fingerprint"]
        .as_str()
        .is_some_and(|f| f.contains(':')));
    let v = h
        .expect(200, "GET", "/v2.1/os-keypairs", h.demo(), None)
        .await;
    assert_eq!(v["keypairs"][0]["keypair"]["name"], "k1");
    // Key pairs are the user's own.
    let v = h
        .expect(200, "GET", "/v2.1/os-keypairs", h.other(), None)
        .await;
    assert_eq!(v["keypairs"], json!([]));
    let v = h
        .expect(200, "GET", "/v2.1/os-keypairs/k1", h.demo(), None)
        .await;
    assert_eq!(v["keypair"]["public_key"], PUBKEY);
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/os-keypairs",
            h.demo(),
            Some(json!({"keypair": {"name": "bad", "public_key": "not a key"}})),
        )
        .await;
    assert!(fault(&v, "badRequest", 400).contains("public_key"));
    h.expect(202, "DELETE", "/v2.1/os-keypairs/k1", h.demo(), None)
        .await;
    h.expect(404, "GET", "/v2.1/os-keypairs/k1", h.demo(), None)
        .await;

    for path in ["/v2.1/flavors", "/v2.1/flavors/detail"] {
        let v = h.expect(200, "GET", path, h.demo(), None).await;
        let f = v["flavors"].as_array().unwrap();
        assert_eq!(f.len(), 5);
        assert_eq!(f[0]["id"], "1");
        assert_eq!(f[0]["name"], "m1.tiny");
    }
    let v = h
        .expect(200, "GET", "/v2.1/flavors/2", h.demo(), None)
        .await;
    assert_eq!(v["flavor"]["name"], "m1.small");
    assert_eq!(v["flavor"]["ram"], 2048);
    h.expect(404, "GET", "/v2.1/flavors/m1.tiny", h.demo(), None)
        .await;

    let v = h
        .expect(200, "GET", "/image/v2/images?name=cirros", h.demo(), None)
        .await;
    let imgs = v["images"].as_array().unwrap();
    assert_eq!(imgs.len(), 1, "the server must filter by name: {v}");
    assert_eq!(imgs[0]["id"], CIRROS);
    let v = h
        .expect(200, "GET", "/image/v2/images", h.demo(), None)
        .await;
    assert!(v["images"].as_array().unwrap().len() >= 2);
    let v = h
        .expect(
            200,
            "GET",
            &format!("/image/v2/images/{CIRROS}"),
            h.demo(),
            None,
        )
        .await;
    assert_eq!(v["id"], CIRROS, "an image is not wrapped: {v}");
    assert_eq!(v["name"], "cirros");
    h.expect(
        404,
        "GET",
        "/image/v2/images/00000000-0000-0000-0000-000000000000",
        h.demo(),
        None,
    )
    .await;

    let v = h.expect(200, "GET", "/v2.1/limits", h.demo(), None).await;
    let abs = &v["limits"]["absolute"];
    assert_eq!(abs["maxTotalFloatingIps"], 10);
    assert_eq!(abs["maxSecurityGroups"], 10);
    assert_eq!(abs["maxSecurityGroupRules"], 20);
}

async fn routes_hosts(h: &Harness) {
    let v = h
        .expect(
            200,
            "POST",
            "/novanet/v1/hosts/compute-1/report",
            h.admin(),
            Some(json!({})),
        )
        .await;
    assert_eq!(v["host"], "compute-1");
    assert_eq!(v["claimed_networks"], 0);
    let v = h
        .expect(
            200,
            "POST",
            "/novanet/v1/hosts/net-1/report",
            h.admin(),
            Some(json!({"network_host": true})),
        )
        .await;
    assert_eq!(v["host"], "net-1");
    assert_eq!(v["claimed_networks"], 1, "vmnet is claimed: {v}");

    let v = h
        .expect(200, "GET", "/v2.1/os-services", h.admin(), None)
        .await;
    let services = v["services"].as_array().unwrap();
    let binary = |host: &str| {
        services
            .iter()
            .find(|s| s["host"] == host)
            .unwrap_or_else(|| panic!("{host} in {v}"))["binary"]
            .clone()
    };
    assert_eq!(binary("compute-1"), "nova-compute");
    assert_eq!(binary("net-1"), "nova-network");
    assert!(services.iter().all(|s| s["state"] == "up"));

    let v = h
        .expect(200, "GET", "/novanet/v1/hosts/net-1/plan", h.admin(), None)
        .await;
    assert_eq!(v["host"], "net-1");
    let generation = v["generation"].as_u64().expect("generation");
    assert!(v["bridges"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["name"] == "br100"));
    // A long poll for an older generation answers at once, even though no watcher task
    // runs in process.
    let started = std::time::Instant::now();
    let v = h
        .expect(
            200,
            "GET",
            &format!(
                "/novanet/v1/hosts/net-1/plan?after={}&wait=20",
                generation.saturating_sub(1)
            ),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["host"], "net-1");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the plan waited {:?} for a change that had already happened",
        started.elapsed()
    );
    // With nothing new, it waits out `wait` and answers the same generation.
    let started = std::time::Instant::now();
    let v = h
        .expect(
            200,
            "GET",
            &format!("/novanet/v1/hosts/net-1/plan?after={generation}&wait=1"),
            h.admin(),
            None,
        )
        .await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    assert_eq!(v["generation"], generation);
}

async fn routes_servers(h: &Harness) -> String {
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-keypairs",
            h.admin(),
            Some(json!({"keypair": {"name": "adminkey", "public_key": PUBKEY}})),
        )
        .await;
    assert_eq!(v["keypair"]["name"], "adminkey");
    let mut body = boot_body("cirros");
    body["server"]["key_name"] = json!("adminkey");
    body["server"]["metadata"] = json!({"role": "test"});
    let v = h
        .expect(202, "POST", "/v2.1/servers", h.admin(), Some(body))
        .await;
    let id = v["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["server"]["security_groups"], json!([{"name": "default"}]));
    assert!(v["server"].get("adminPass").is_some());

    let v = h
        .expect(200, "GET", "/v2.1/servers?name=cirros", h.admin(), None)
        .await;
    assert_eq!(v["servers"].as_array().unwrap().len(), 1);
    assert_eq!(v["servers"][0]["id"], id.as_str());
    assert_eq!(v["servers"][0]["name"], "cirros");
    let v = h
        .expect(200, "GET", "/v2.1/servers?name=nomatch", h.admin(), None)
        .await;
    assert_eq!(v["servers"], json!([]));

    let v = h
        .expect(200, "GET", "/v2.1/servers/detail", h.admin(), None)
        .await;
    let s = &v["servers"][0];
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["status"], "ACTIVE");
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    assert!(s["OS-EXT-STS:task_state"].is_null());
    assert_eq!(addrs_of(&s["addresses"], "vmnet"), ["10.0.0.2"]);

    let v = h
        .expect(200, "GET", &format!("/v2.1/servers/{id}"), h.admin(), None)
        .await;
    let s = &v["server"];
    assert_eq!(s["name"], "cirros");
    assert_eq!(s["key_name"], "adminkey");
    assert_eq!(s["metadata"]["role"], "test");
    assert_eq!(s["flavor"]["id"], "1");
    assert_eq!(s["image"]["id"], CIRROS);
    assert_eq!(s["OS-EXT-SRV-ATTR:host"], "compute-1", "scheduled: {v}");
    let mac = s["addresses"]["vmnet"][0]["OS-EXT-IPS-MAC:mac_addr"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(mac.starts_with("fa:16:3e:"), "{mac}");

    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/servers/{id}/os-virtual-interfaces"),
            h.admin(),
            None,
        )
        .await;
    let vifs = v["virtual_interfaces"].as_array().unwrap();
    assert_eq!(vifs.len(), 1);
    assert_eq!(vifs[0]["mac_address"], mac.as_str());

    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/servers/{id}/os-security-groups"),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["security_groups"][0]["name"], "default");
    assert!(v["security_groups"][0]["rules"].is_array());

    // The dnsmasq hook: lease, then release, the server's address.
    let v = h
        .expect(
            200,
            "POST",
            "/novanet/v1/leases",
            h.admin(),
            Some(json!({"action": "add", "address": "10.0.0.2", "mac": mac, "hostname": "cirros"})),
        )
        .await;
    assert_eq!(v["changed"], true);
    let v = h
        .expect(
            200,
            "POST",
            "/novanet/v1/leases",
            h.admin(),
            Some(json!({"action": "old", "address": "10.0.0.2", "mac": mac})),
        )
        .await;
    assert_eq!(v["changed"], true);
    let v = h
        .expect(
            400,
            "POST",
            "/novanet/v1/leases",
            h.admin(),
            Some(json!({"action": "renew", "address": "10.0.0.2"})),
        )
        .await;
    fault(&v, "badRequest", 400);

    // The hypervisor reports where it plugged the VIF; the host plan carries the device.
    let vifs = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/servers/{id}/os-virtual-interfaces"),
            h.admin(),
            None,
        )
        .await;
    let vif = vifs["virtual_interfaces"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    h.expect(
        200,
        "POST",
        &format!("/novanet/v1/vifs/{vif}/plug"),
        h.admin(),
        Some(json!({"device": "vnet0"})),
    )
    .await;
    let v = h
        .expect(
            400,
            "POST",
            &format!("/novanet/v1/vifs/{vif}/plug"),
            h.admin(),
            Some(json!({"device": "a/b"})),
        )
        .await;
    fault(&v, "badRequest", 400);
    h.expect(
        404,
        "POST",
        "/novanet/v1/vifs/nope/plug",
        h.admin(),
        Some(json!({"device": "vnet1"})),
    )
    .await;
    // What the host's hypervisor driver reads: the instance, its size, image and VIFs.
    let s = h
        .expect(200, "GET", &format!("/v2.1/servers/{id}"), h.admin(), None)
        .await;
    let host = s["server"]["OS-EXT-SRV-ATTR:host"].as_str().unwrap();
    let v = h
        .expect(
            200,
            "GET",
            &format!("/novanet/v1/hosts/{host}/instances"),
            h.admin(),
            None,
        )
        .await;
    let inst = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["uuid"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not on {host}: {v}"))
        .clone();
    assert_eq!(inst["flavor"]["memory_mb"], 512);
    assert_eq!(inst["flavor"]["vcpus"], 1);
    assert_eq!(inst["image"]["name"], "cirros");
    assert_eq!(inst["image"]["data"], false, "cirros is a name only");
    assert_eq!(inst["vifs"][0]["uuid"], vif.as_str());
    assert_eq!(inst["vifs"][0]["bridge"], "br100");
    h.expect(
        403,
        "GET",
        &format!("/novanet/v1/hosts/{host}/instances"),
        h.demo(),
        None,
    )
    .await;
    server_lifecycle_follows_its_driver(h, &id, host).await;
    // What a multi-host compute host's agent serves its instances' metadata from.
    let v = h
        .expect(
            200,
            "GET",
            &format!("/novanet/v1/hosts/{host}/metadata"),
            h.admin(),
            None,
        )
        .await;
    let meta = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["instance"]["uuid"] == id.as_str())
        .unwrap_or_else(|| panic!("{id}'s metadata not on {host}: {v}"))
        .clone();
    assert_eq!(meta["domain"], "novalocal");
    assert!(meta["fixed_ips"][0].is_string(), "{meta}");
    h.expect(
        403,
        "GET",
        &format!("/novanet/v1/hosts/{host}/metadata"),
        h.demo(),
        None,
    )
    .await;
    id
}

/// Stop, start, reboot and the console as a hypervisor driver carries them out and reports;
/// the server is ACTIVE again at the end.
async fn server_lifecycle_follows_its_driver(h: &Harness, id: &str, host: &str) {
    let action = format!("/v2.1/servers/{id}/action");
    let server = format!("/v2.1/servers/{id}");
    let report = format!("/novanet/v1/hosts/{host}/instances/state");
    let state = |v: &Value| {
        (
            v["server"]["status"].as_str().unwrap().to_string(),
            v["server"]["OS-EXT-STS:task_state"]
                .as_str()
                .map(str::to_string),
        )
    };
    let said = |state: &str, done: u32, console: Option<&str>| json!({"instances": [{"uuid": id, "state": state, "done_id": done, "console": console}]});
    h.expect(
        200,
        "POST",
        &report,
        h.admin(),
        Some(said("active", 0, Some("line 1\nline 2\n"))),
    )
    .await;
    // os-start of a running server: 409, and nothing asked of the driver.
    h.expect(
        409,
        "POST",
        &action,
        h.admin(),
        Some(json!({"os-start": null})),
    )
    .await;
    h.expect(
        400,
        "POST",
        &action,
        h.admin(),
        Some(json!({"reboot": {"type": "WARM"}})),
    )
    .await;
    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        Some(json!({"os-stop": null})),
    )
    .await;
    let v = h.expect(200, "GET", &server, h.admin(), None).await;
    assert_eq!(state(&v), ("ACTIVE".into(), Some("powering-off".into())));
    // The driver has not stopped it yet: a second stop waits.
    h.expect(
        409,
        "POST",
        &action,
        h.admin(),
        Some(json!({"os-stop": null})),
    )
    .await;
    let listed = h
        .expect(
            200,
            "GET",
            &format!("/novanet/v1/hosts/{host}/instances"),
            h.admin(),
            None,
        )
        .await;
    let mine = listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["uuid"] == id)
        .unwrap()
        .clone();
    assert_eq!(mine["power"], json!({"action_id": 1, "action": "stop"}));
    h.expect(
        200,
        "POST",
        &report,
        h.admin(),
        Some(said("shutoff", 1, None)),
    )
    .await;
    let v = h.expect(200, "GET", &server, h.admin(), None).await;
    assert_eq!(state(&v), ("SHUTOFF".into(), None));
    assert_eq!(v["server"]["OS-EXT-STS:power_state"], 4);
    let stopped = h
        .expect(
            200,
            "GET",
            "/v2.1/servers/detail?status=SHUTOFF",
            h.admin(),
            None,
        )
        .await;
    assert!(stopped["servers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == id));
    h.expect(
        409,
        "POST",
        &action,
        h.admin(),
        Some(json!({"reboot": {"type": "SOFT"}})),
    )
    .await;
    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        Some(json!({"os-start": null})),
    )
    .await;
    h.expect(
        200,
        "POST",
        &report,
        h.admin(),
        Some(said("active", 2, Some("line 3\n"))),
    )
    .await;
    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        Some(json!({"reboot": {"type": "HARD"}})),
    )
    .await;
    let v = h.expect(200, "GET", &server, h.admin(), None).await;
    assert_eq!(
        state(&v),
        ("HARD_REBOOT".into(), Some("rebooting_hard".into()))
    );
    h.expect(
        200,
        "POST",
        &report,
        h.admin(),
        Some(said("active", 3, None)),
    )
    .await;
    let v = h.expect(200, "GET", &server, h.admin(), None).await;
    assert_eq!(state(&v), ("ACTIVE".into(), None));
    let out = h
        .expect(
            200,
            "POST",
            &action,
            h.admin(),
            Some(json!({"os-getConsoleOutput": {"length": 1}})),
        )
        .await;
    assert_eq!(out["output"], "line 3\n");
    // A failed VM: ERROR with the hypervisor's reason; a project's user may not report.
    h.expect(403, "POST", &report, h.demo(), Some(said("error", 3, None)))
        .await;
    let failed = json!({"instances": [{"uuid": id, "state": "error", "done_id": 3, "fault": "qemu: cannot open disk"}]});
    h.expect(200, "POST", &report, h.admin(), Some(failed))
        .await;
    let v = h.expect(200, "GET", &server, h.admin(), None).await;
    assert_eq!(v["server"]["status"], "ERROR");
    assert_eq!(v["server"]["fault"]["message"], "qemu: cannot open disk");
    h.expect(
        200,
        "POST",
        &report,
        h.admin(),
        Some(said("active", 3, None)),
    )
    .await;
}

/// The six server actions, on a server with vmnet; a second network is made for
/// addFixedIp and removed after.
async fn routes_server_actions(h: &Harness, id: &str) {
    let action = format!("/v2.1/servers/{id}/action");
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-floating-ips",
            h.admin(),
            Some(json!({"pool": null})),
        )
        .await;
    let ip = v["floating_ip"]["ip"].as_str().unwrap().to_string();
    let fid = v["floating_ip"]["id"].clone();

    let r = h
        .expect(
            202,
            "POST",
            &action,
            h.admin(),
            Some(json!({"addFloatingIp": {"address": ip}})),
        )
        .await;
    assert!(r.is_null(), "202 with an empty body: {r}");
    assert_eq!(
        addrs_of(&addresses(h, h.admin(), id).await, "vmnet"),
        ["10.0.0.2", ip.as_str()]
    );
    // The floating address lives on vmnet's network host.
    let v = h
        .expect(
            200,
            "GET",
            "/v2.1/os-floating-ips-bulk/net-1",
            h.admin(),
            None,
        )
        .await;
    let info = v["floating_ip_info"].as_array().unwrap();
    assert!(info.iter().any(|f| f["address"] == ip.as_str()), "{v}");
    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/os-floating-ips/{fid}"),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["floating_ip"]["instance_id"], id);
    assert_eq!(v["floating_ip"]["fixed_ip"], "10.0.0.2");

    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        Some(json!({"removeFloatingIp": {"address": ip}})),
    )
    .await;
    assert_eq!(
        addrs_of(&addresses(h, h.admin(), id).await, "vmnet"),
        ["10.0.0.2"]
    );

    let extra = create_network(h, "extra", "10.5.0.0/28").await;
    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        Some(json!({"addFixedIp": {"networkId": extra}})),
    )
    .await;
    let a = addresses(h, h.admin(), id).await;
    let extra_addrs = addrs_of(&a, "extra");
    assert_eq!(extra_addrs.len(), 1, "{a}");
    assert!(extra_addrs[0].starts_with("10.5.0."));
    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        Some(json!({"removeFixedIp": {"address": extra_addrs[0]}})),
    )
    .await;
    let a = addresses(h, h.admin(), id).await;
    assert!(addrs_of(&a, "extra").is_empty(), "{a}");

    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-security-groups",
            h.admin(),
            Some(json!({"security_group": {"name": "web", "description": "web servers"}})),
        )
        .await;
    assert_eq!(v["security_group"]["name"], "web");
    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        Some(json!({"addSecurityGroup": {"name": "web"}})),
    )
    .await;
    let groups_path = format!("/v2.1/servers/{id}/os-security-groups");
    let v = h.expect(200, "GET", &groups_path, h.admin(), None).await;
    let mut names: Vec<&str> = v["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["default", "web"]);
    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        Some(json!({"removeSecurityGroup": {"name": "web"}})),
    )
    .await;
    let v = h.expect(200, "GET", &groups_path, h.admin(), None).await;
    assert_eq!(v["security_groups"].as_array().unwrap().len(), 1);

    let v = h
        .expect(
            404,
            "POST",
            &action,
            h.admin(),
            Some(json!({"addSecurityGroup": {"name": "nosuch"}})),
        )
        .await;
    fault(&v, "itemNotFound", 404);
    // A record has nothing to reboot: accepted and done, as Tempest's group tests need.
    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        Some(json!({"reboot": {"type": "HARD"}})),
    )
    .await;
    let v = h
        .expect(
            400,
            "POST",
            &action,
            h.admin(),
            Some(json!({"shelve": null})),
        )
        .await;
    fault(&v, "badRequest", 400);
    let v = h
        .expect(
            400,
            "POST",
            &action,
            h.admin(),
            Some(json!({"addFloatingIp": {}})),
        )
        .await;
    assert!(fault(&v, "badRequest", 400).contains("address"));
}

async fn routes_floating(h: &Harness) {
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-floating-ips-bulk",
            h.admin(),
            Some(json!({"floating_ips_bulk_create": {"ip_range": "68.99.26.170/31"}})),
        )
        .await;
    let c = &v["floating_ips_bulk_create"];
    assert_eq!(c["ip_range"], "68.99.26.170/31");
    assert_eq!(c["pool"], "nova");
    assert_eq!(c["interface"], "eth0");
    h.expect(
        200,
        "POST",
        "/v2.1/os-floating-ips-bulk",
        h.admin(),
        Some(json!({"floating_ips_bulk_create": {"ip_range": "172.24.4.8/30", "pool": "public", "interface": "eth1"}})),
    )
    .await;

    let v = h
        .expect(200, "GET", "/v2.1/os-floating-ips-bulk", h.admin(), None)
        .await;
    let info = v["floating_ip_info"].as_array().unwrap();
    assert_eq!(info.len(), 2 + 2, "{v}");
    assert!(info
        .iter()
        .any(|f| f["address"] == "68.99.26.171" && f["pool"] == "nova"));
    assert!(info
        .iter()
        .any(|f| f["address"] == "172.24.4.9" && f["interface"] == "eth1"));
    let v = h
        .expect(
            200,
            "GET",
            "/v2.1/os-floating-ips-bulk/nohost",
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["floating_ip_info"], json!([]));

    let v = h
        .expect(200, "GET", "/v2.1/os-floating-ip-pools", h.demo(), None)
        .await;
    let mut pools: Vec<&str> = v["floating_ip_pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    pools.sort_unstable();
    assert_eq!(pools, ["nova", "public"]);

    // demo allocates from a named pool, sees it, releases it.
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-floating-ips",
            h.demo(),
            Some(json!({"pool": "public"})),
        )
        .await;
    let f = &v["floating_ip"];
    assert_eq!(f["pool"], "public");
    assert!(f["instance_id"].is_null() && f["fixed_ip"].is_null());
    let ip = f["ip"].as_str().unwrap().to_string();
    assert!(ip.starts_with("172.24.4."), "{ip}");
    let fid = f["id"].clone();
    let v = h
        .expect(200, "GET", "/v2.1/os-floating-ips", h.demo(), None)
        .await;
    assert_eq!(v["floating_ips"].as_array().unwrap().len(), 1);
    assert_eq!(v["floating_ips"][0]["ip"], ip.as_str());
    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/os-floating-ips/{fid}"),
            h.demo(),
            None,
        )
        .await;
    assert_eq!(v["floating_ip"]["ip"], ip.as_str());
    h.expect(
        202,
        "DELETE",
        &format!("/v2.1/os-floating-ips/{fid}"),
        h.demo(),
        None,
    )
    .await;
    let v = h
        .expect(200, "GET", "/v2.1/os-floating-ips", h.demo(), None)
        .await;
    assert_eq!(v["floating_ips"], json!([]));

    // An empty body allocates from the default pool.
    let (s, _, v) = h
        .send("POST", "/v2.1/os-floating-ips", h.demo(), &[], None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["floating_ip"]["pool"], "nova");
    let fid = v["floating_ip"]["id"].clone();
    h.expect(
        202,
        "DELETE",
        &format!("/v2.1/os-floating-ips/{fid}"),
        h.demo(),
        None,
    )
    .await;

    let v = h
        .expect(
            200,
            "PUT",
            "/v2.1/os-floating-ips-bulk/delete",
            h.admin(),
            Some(json!({"ip_range": "172.24.4.8/30"})),
        )
        .await;
    assert_eq!(v["floating_ips_bulk_delete"], "172.24.4.8/30");
    let v = h
        .expect(200, "GET", "/v2.1/os-floating-ips-bulk", h.admin(), None)
        .await;
    assert_eq!(v["floating_ip_info"].as_array().unwrap().len(), 2);
    let v = h
        .expect(200, "GET", "/v2.1/os-floating-ip-pools", h.demo(), None)
        .await;
    assert_eq!(v["floating_ip_pools"], json!([{"name": "nova"}]));
}

async fn routes_security_groups(h: &Harness) {
    let v = h
        .expect(200, "GET", "/v2.1/os-security-groups", h.demo(), None)
        .await;
    let groups = v["security_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{v}");
    assert_eq!(groups[0]["name"], "default");
    assert!(groups[0]["rules"].is_array());

    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-security-groups",
            h.demo(),
            Some(json!({"security_group": {"name": "db", "description": "databases"}})),
        )
        .await;
    let g = &v["security_group"];
    assert_eq!(g["name"], "db");
    assert_eq!(g["description"], "databases");
    assert_eq!(g["rules"], json!([]));
    let gid = g["id"].clone();
    assert!(gid.is_i64(), "nova-network group ids are ints: {gid}");
    // Clients PUT the group on every update, changed or not.
    let v = h
        .expect(
            200,
            "PUT",
            &format!("/v2.1/os-security-groups/{gid}"),
            h.demo(),
            Some(json!({"security_group": {"name": "db", "description": "databases"}})),
        )
        .await;
    assert_eq!(v["security_group"]["name"], "db");
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/os-security-groups",
            h.demo(),
            Some(json!({"security_group": {"name": "db", "description": "again"}})),
        )
        .await;
    fault(&v, "badRequest", 400);

    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-security-group-rules",
            h.demo(),
            Some(rule_body(&gid, "tcp", 5432, 5432, "10.0.0.0/8")),
        )
        .await;
    let r = &v["security_group_rule"];
    assert_eq!(r["ip_protocol"], "tcp");
    assert_eq!(r["from_port"], 5432);
    assert_eq!(r["parent_group_id"], gid);
    assert_eq!(r["ip_range"], json!({"cidr": "10.0.0.0/8"}));
    assert_eq!(r["group"], json!({}));
    let rid = r["id"].clone();
    // A source-group rule: group names the source, ip_range is empty.
    let default_id = default_group(h, h.demo()).await;
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-security-group-rules",
            h.demo(),
            Some(json!({"security_group_rule": {"ip_protocol": "tcp", "from_port": 1, "to_port": 65535,
                                                "cidr": null, "group_id": default_id, "parent_group_id": gid}})),
        )
        .await;
    let r = &v["security_group_rule"];
    assert_eq!(r["group"]["name"], "default");
    assert_eq!(r["ip_range"], json!({}));

    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/os-security-groups/{gid}"),
            h.demo(),
            None,
        )
        .await;
    assert_eq!(v["security_group"]["rules"].as_array().unwrap().len(), 2);

    let r = h
        .expect(
            202,
            "DELETE",
            &format!("/v2.1/os-security-group-rules/{rid}"),
            h.demo(),
            None,
        )
        .await;
    assert!(r.is_null());
    h.expect(
        404,
        "DELETE",
        &format!("/v2.1/os-security-group-rules/{rid}"),
        h.demo(),
        None,
    )
    .await;
    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/os-security-groups/{gid}"),
            h.demo(),
            None,
        )
        .await;
    assert_eq!(v["security_group"]["rules"].as_array().unwrap().len(), 1);

    h.expect(
        202,
        "DELETE",
        &format!("/v2.1/os-security-groups/{gid}"),
        h.demo(),
        None,
    )
    .await;
    h.expect(
        404,
        "GET",
        &format!("/v2.1/os-security-groups/{gid}"),
        h.demo(),
        None,
    )
    .await;
    let v = h
        .expect(
            400,
            "GET",
            "/v2.1/os-security-groups/notanumber",
            h.demo(),
            None,
        )
        .await;
    fault(&v, "badRequest", 400);

    // Default rules (admin), copied into groups made afterwards.
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-security-group-default-rules",
            h.admin(),
            Some(json!({"security_group_default_rule": {"ip_protocol": "tcp", "from_port": 80, "to_port": 80, "cidr": "0.0.0.0/0"}})),
        )
        .await;
    let d = &v["security_group_default_rule"];
    assert_eq!(d["ip_protocol"], "tcp");
    assert_eq!(d["from_port"], 80);
    assert_eq!(d["ip_range"], json!({"cidr": "0.0.0.0/0"}));
    let did = d["id"].clone();
    let v = h
        .expect(
            200,
            "GET",
            "/v2.1/os-security-group-default-rules",
            h.admin(),
            None,
        )
        .await;
    assert_eq!(
        v["security_group_default_rules"].as_array().unwrap().len(),
        1
    );
    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/os-security-group-default-rules/{did}"),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["security_group_default_rule"]["to_port"], 80);
    // `other` lists its groups for the first time: its default group gets the rule.
    let v = h
        .expect(200, "GET", "/v2.1/os-security-groups", h.other(), None)
        .await;
    let rules = &v["security_groups"][0]["rules"];
    assert!(
        rules
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["from_port"] == 80 && r["ip_range"]["cidr"] == "0.0.0.0/0"),
        "{v}"
    );
    h.expect(
        204,
        "DELETE",
        &format!("/v2.1/os-security-group-default-rules/{did}"),
        h.admin(),
        None,
    )
    .await;
    h.expect(
        404,
        "GET",
        &format!("/v2.1/os-security-group-default-rules/{did}"),
        h.admin(),
        None,
    )
    .await;

    // Provider rules (admin): in every host's plan, dropped for every instance.
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-provider-firewall-rules",
            h.admin(),
            Some(json!({"provider_firewall_rule": {"ip_protocol": "tcp", "from_port": 25, "to_port": 25, "cidr": "0.0.0.0/0"}})),
        )
        .await;
    let p = &v["provider_firewall_rule"];
    assert_eq!(p["from_port"], 25);
    let pid = p["id"].clone();
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/os-provider-firewall-rules",
            h.admin(),
            Some(json!({"security_group_default_rule": {"ip_protocol": "tcp", "from_port": 25, "to_port": 25}})),
        )
        .await;
    fault(&v, "badRequest", 400);
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/os-provider-firewall-rules",
            h.admin(),
            Some(json!({"provider_firewall_rule": {"ip_protocol": "gre", "from_port": 1, "to_port": 1}})),
        )
        .await;
    fault(&v, "badRequest", 400);
    // IPv6 ranges are accepted since both drivers filter IPv6 (tests/ipv6.rs).
    let v = h
        .expect(
            200,
            "GET",
            "/v2.1/os-provider-firewall-rules",
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["provider_firewall_rules"].as_array().unwrap().len(), 1);
    h.expect(
        200,
        "GET",
        &format!("/v2.1/os-provider-firewall-rules/{pid}"),
        h.admin(),
        None,
    )
    .await;
    let v = h
        .expect(
            200,
            "GET",
            "/novanet/v1/hosts/compute-1/plan",
            h.admin(),
            None,
        )
        .await;
    assert_eq!(
        v["security"]["provider_rules"],
        json!([{"proto": "tcp", "from_port": 25, "to_port": 25, "cidr": "0.0.0.0/0", "group": null}])
    );
    h.expect(
        204,
        "DELETE",
        &format!("/v2.1/os-provider-firewall-rules/{pid}"),
        h.admin(),
        None,
    )
    .await;
    let v = h
        .expect(
            200,
            "GET",
            "/novanet/v1/hosts/compute-1/plan",
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["security"]["provider_rules"], json!([]));
}

async fn routes_delete_server(h: &Harness, id: &str) {
    let r = h
        .expect(
            204,
            "DELETE",
            &format!("/v2.1/servers/{id}"),
            h.admin(),
            None,
        )
        .await;
    assert!(r.is_null());
    let v = h
        .expect(404, "GET", &format!("/v2.1/servers/{id}"), h.admin(), None)
        .await;
    fault(&v, "itemNotFound", 404);
    let v = h.expect(200, "GET", "/v2.1/servers", h.admin(), None).await;
    assert_eq!(v["servers"], json!([]));
    // The lease ends after the delete.
    h.expect(
        200,
        "POST",
        "/novanet/v1/leases",
        h.admin(),
        Some(json!({"action": "del", "address": "10.0.0.2"})),
    )
    .await;
}

async fn routes_openapi(h: &Harness) {
    let v = h.expect(200, "GET", "/openapi.json", None, None).await;
    assert_eq!(v["openapi"], "3.0.3");
    let paths = v["paths"].as_object().unwrap();
    for (method, path, _) in ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} missing from /openapi.json"
        );
    }
    assert_eq!(
        paths["/v2.1/servers/{id}"]["get"]["parameters"][0]["name"],
        "id"
    );
}

/// Whether `path` fits `template` (`{x}` matches one segment); returns the number of
/// placeholders used, so that literal routes win over parameterised ones.
fn route_match(template: &str, path: &str) -> Option<usize> {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut params = 0;
    for (a, b) in t.iter().zip(&p) {
        if a.starts_with('{') {
            params += 1;
        } else if a != b {
            return None;
        }
    }
    Some(params)
}

/// What Nova keeps of a server beyond its networking: name and access addresses, metadata,
/// tags, `ips`; list filters; zones, extensions, quota classes; keypairs as Nova made them.
async fn routes_server_records(h: &Harness, server: &str) {
    // The config drive: an ISO 9660 image (its volume descriptor at 32 KiB) labelled config-2.
    let v = h
        .expect(
            200,
            "GET",
            &format!("/novanet/v1/instances/{server}/config-drive"),
            h.admin(),
            None,
        )
        .await;
    let iso = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        v.as_str().expect("ISO bytes"),
    )
    .unwrap();
    assert_eq!(&iso[0x8001..0x8006], b"CD001");
    assert_eq!(&iso[0x8028..0x8030], b"config-2");
    let s = format!("/v2.1/servers/{server}");
    // The server is the admin's.
    let me = h.admin();
    // Its requests, newest first: the create (and the actions routes_server_actions made).
    let v = h
        .expect(200, "GET", &format!("{s}/os-instance-actions"), me, None)
        .await;
    let actions = v["instanceActions"].as_array().unwrap();
    let create = actions.last().unwrap();
    assert_eq!(create["action"], "create");
    let request = create["request_id"].as_str().unwrap();
    let v = h
        .expect(
            200,
            "GET",
            &format!("{s}/os-instance-actions/{request}"),
            me,
            None,
        )
        .await;
    assert_eq!(v["instanceAction"]["instance_uuid"], server);
    assert_eq!(v["instanceAction"]["events"], json!([]));
    h.expect(
        404,
        "GET",
        &format!("{s}/os-instance-actions/req-nosuch"),
        me,
        None,
    )
    .await;
    // Rename and access addresses; the list filters see the new name.
    let v = h
        .expect(
            200,
            "PUT",
            &s,
            me,
            Some(json!({"server": {"name": "renamed-1", "accessIPv4": "192.0.2.7"}})),
        )
        .await;
    assert_eq!(
        (
            v["server"]["name"].as_str(),
            v["server"]["accessIPv4"].as_str()
        ),
        (Some("renamed-1"), Some("192.0.2.7"))
    );
    h.expect(400, "PUT", &s, me, Some(json!({"server": {"name": ""}})))
        .await;
    h.expect(
        400,
        "PUT",
        &s,
        me,
        Some(json!({"server": {"accessIPv4": "::1"}})),
    )
    .await;
    let v = h
        .expect(200, "GET", "/v2.1/servers?name=^renamed-[0-9]$", me, None)
        .await;
    assert_eq!(v["servers"].as_array().unwrap().len(), 1, "{v}");
    let v = h
        .expect(200, "GET", "/v2.1/servers?name=^nomatch$", me, None)
        .await;
    assert_eq!(v["servers"], json!([]));
    h.expect(400, "GET", "/v2.1/servers?limit=-1", me, None)
        .await;
    h.expect(
        400,
        "GET",
        "/v2.1/servers?changes-since=yesterday",
        me,
        None,
    )
    .await;
    // Out-of-range fields are refused before any arithmetic (they overflowed).
    for bad in [
        "2020-01-01T1e18:00",
        "9999999999999999-01-01T00:00",
        "2020-01-01T00:00+99999999999999999:00",
        "2020-13-01T00:00",
    ] {
        let path = format!("/v2.1/servers?changes-since={bad}");
        h.expect(400, "GET", &path, me, None).await;
    }
    let v = h
        .expect(
            200,
            "GET",
            "/v2.1/servers?changes-since=2100-01-01T00:00:00Z",
            me,
            None,
        )
        .await;
    assert_eq!(v["servers"], json!([]));
    let v = h
        .expect(200, "GET", "/v2.1/servers/detail?limit=0", me, None)
        .await;
    assert_eq!(v["servers"], json!([]));
    // Metadata.
    let m = format!("{s}/metadata");
    let v = h
        .expect(
            200,
            "PUT",
            &m,
            me,
            Some(json!({"metadata": {"a": "1", "b": "2"}})),
        )
        .await;
    assert_eq!(v["metadata"], json!({"a": "1", "b": "2"}));
    let v = h
        .expect(200, "POST", &m, me, Some(json!({"metadata": {"c": "3"}})))
        .await;
    assert_eq!(v["metadata"], json!({"a": "1", "b": "2", "c": "3"}));
    h.expect(400, "POST", &m, me, Some(json!({"metadata": {"": "x"}})))
        .await;
    let v = h.expect(200, "GET", &m, me, None).await;
    assert_eq!(v["metadata"]["c"], "3");
    let v = h
        .expect(
            200,
            "PUT",
            &format!("{m}/a"),
            me,
            Some(json!({"meta": {"a": "9"}})),
        )
        .await;
    assert_eq!(v["meta"], json!({"a": "9"}));
    h.expect(
        400,
        "PUT",
        &format!("{m}/a"),
        me,
        Some(json!({"meta": {"b": "9"}})),
    )
    .await;
    let v = h.expect(200, "GET", &format!("{m}/a"), me, None).await;
    assert_eq!(v["meta"]["a"], "9");
    h.expect(204, "DELETE", &format!("{m}/a"), me, None).await;
    h.expect(404, "GET", &format!("{m}/a"), me, None).await;
    // Tags, from 2.26 only.
    let v226 = [("openstack-api-version", "compute 2.26")];
    let t = format!("{s}/tags");
    let (st, _, _) = h.send("GET", &t, me, &[], None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, v) = h
        .send(
            "PUT",
            &t,
            me,
            &v226,
            Some(json!({"tags": ["a", "b"]}).to_string()),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _, _) = h.send("PUT", &format!("{t}/c"), me, &v226, None).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _, _) = h.send("GET", &format!("{t}/c"), me, &v226, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, _, v) = h.send("GET", &t, me, &v226, None).await;
    assert_eq!(v["tags"], json!(["a", "b", "c"]));
    let (_, _, v) = h.send("GET", &s, me, &v226, None).await;
    assert_eq!(v["server"]["tags"], json!(["a", "b", "c"]));
    assert_eq!(v["server"]["locked"], false);
    let (st, _, _) = h.send("DELETE", &format!("{t}/c"), me, &v226, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = h.send("DELETE", &t, me, &v226, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    // ips.
    let v = h.expect(200, "GET", &format!("{s}/ips"), me, None).await;
    let label = v["addresses"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    h.expect(200, "GET", &format!("{s}/ips/{label}"), me, None)
        .await;
    h.expect(404, "GET", &format!("{s}/ips/nosuchnet"), me, None)
        .await;
    // Zones, extensions, the default quota class.
    let v = h
        .expect(200, "GET", "/v2.1/os-availability-zone", me, None)
        .await;
    assert_eq!(v["availabilityZoneInfo"][0]["zoneName"], "nova");
    h.expect(
        403,
        "GET",
        "/v2.1/os-availability-zone/detail",
        h.demo(),
        None,
    )
    .await;
    h.expect(
        200,
        "GET",
        "/v2.1/os-availability-zone/detail",
        h.admin(),
        None,
    )
    .await;
    let v = h.expect(200, "GET", "/v2.1/extensions", me, None).await;
    assert!(v["extensions"].as_array().unwrap().len() > 5);
    h.expect(200, "GET", "/v2.1/extensions/os-keypairs", me, None)
        .await;
    h.expect(404, "GET", "/v2.1/extensions/os-nothing", me, None)
        .await;
    let v = h
        .expect(
            200,
            "GET",
            "/v2.1/os-quota-class-sets/default",
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["quota_class_set"]["instances"], 10);
    let v = h
        .expect(
            200,
            "PUT",
            "/v2.1/os-quota-class-sets/default",
            h.admin(),
            Some(json!({"quota_class_set": {"instances": 11}})),
        )
        .await;
    assert_eq!(v["quota_class_set"]["instances"], 11);
    let demo = h.state.store.project("demo").unwrap().id;
    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/os-quota-sets/{demo}/defaults"),
            me,
            None,
        )
        .await;
    assert_eq!(v["quota_set"]["instances"], 11);
    assert!(
        v["quota_set"].get("networks").is_none(),
        "not in nova's quota set"
    );
    // Keypairs at 2.2 and 2.10: 201, type, admin for another user; real fingerprints.
    let v22 = [("openstack-api-version", "compute 2.2")];
    let body = json!({"keypair": {"name": "k22", "public_key": PUBKEY}}).to_string();
    let (st, _, v) = h
        .send("POST", "/v2.1/os-keypairs", me, &v22, Some(body))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["keypair"]["type"], "ssh");
    assert_eq!(
        v["keypair"]["fingerprint"],
        "ff:98:c5:f8:6b:de:5d:b2:7d:d0:fa:f1:49:90:23:06"
    );
    let v = h
        .expect(200, "GET", "/v2.1/os-keypairs/k22", me, None)
        .await;
    assert!(
        v["keypair"]["id"].is_i64() && v["keypair"]["deleted"] == false,
        "{v}"
    );
    let (st, _, _) = h
        .send("DELETE", "/v2.1/os-keypairs/k22", me, &v22, None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let bad = json!({"keypair": {"name": "key_/.\\@:", "public_key": PUBKEY}});
    h.expect(400, "POST", "/v2.1/os-keypairs", me, Some(bad))
        .await;
    let junk = json!({"keypair": {"name": "junk", "public_key": "ssh-rsa JUNK nova@ubuntu"}});
    h.expect(400, "POST", "/v2.1/os-keypairs", me, Some(junk))
        .await;
    let demo_user = h.state.store.user("demo").unwrap().id;
    let v210 = [("openstack-api-version", "compute 2.10")];
    let body = json!({"keypair": {"name": "forDemo", "public_key": PUBKEY, "user_id": demo_user}})
        .to_string();
    let (st, _, _) = h
        .send(
            "POST",
            "/v2.1/os-keypairs",
            h.admin(),
            &v210,
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _, _) = h
        .send("POST", "/v2.1/os-keypairs", h.other(), &v210, Some(body))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    h.expect(202, "DELETE", "/v2.1/os-keypairs/forDemo", h.demo(), None)
        .await;
}

/// Keystone's administration as python-openstackclient and Tempest's dynamic credentials use
/// it: find the Default domain and the member role, make a project and a user, grant, log
/// in as the new user, revoke, delete.
async fn routes_identity_admin(h: &Harness) {
    let k = "/identity/v3";
    let v = h
        .expect(
            200,
            "GET",
            &format!("{k}/domains?name=Default"),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["domains"][0]["id"], "default");
    h.expect(200, "GET", &format!("{k}/domains/default"), h.admin(), None)
        .await;
    let v = h
        .expect(200, "GET", &format!("{k}/roles"), h.admin(), None)
        .await;
    let names: Vec<&str> = v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["admin", "member", "reader"]);
    h.expect(200, "GET", &format!("{k}/roles/member"), h.admin(), None)
        .await;
    h.expect(
        409,
        "POST",
        &format!("{k}/roles"),
        h.admin(),
        Some(json!({"role": {"name": "member"}})),
    )
    .await;
    let v = h
        .expect(201, "POST", &format!("{k}/projects"), h.admin(),
            Some(json!({"project": {"name": "tempest-p", "description": "d", "domain_id": "default"}})))
        .await;
    let pid = v["project"]["id"].as_str().unwrap().to_string();
    let v = h
        .expect(
            200,
            "GET",
            &format!("{k}/projects?name=tempest-p"),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["projects"][0]["id"], pid.as_str());
    h.expect(200, "GET", &format!("{k}/projects/{pid}"), h.admin(), None)
        .await;
    h.expect(
        200,
        "PATCH",
        &format!("{k}/projects/{pid}"),
        h.admin(),
        Some(json!({"project": {"name": "tempest-p2"}})),
    )
    .await;
    let v = h
        .expect(
            201,
            "POST",
            &format!("{k}/users"),
            h.admin(),
            Some(json!({"user": {"name": "tempest-u", "password": "pw2", "domain_id": "default"}})),
        )
        .await;
    let uid = v["user"]["id"].as_str().unwrap().to_string();
    h.expect(
        200,
        "GET",
        &format!("{k}/users?name=tempest-u"),
        h.admin(),
        None,
    )
    .await;
    h.expect(200, "GET", &format!("{k}/users/{uid}"), h.admin(), None)
        .await;
    let grant = format!("{k}/projects/{pid}/users/{uid}/roles/member");
    // No role yet: no login.
    let (s, _, _) = h
        .req(
            "POST",
            &format!("{k}/auth/tokens"),
            None,
            Some(password_body("tempest-u", "pw2", "tempest-p2")),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    h.expect(204, "PUT", &grant, h.admin(), None).await;
    h.expect(204, "HEAD", &grant, h.admin(), None).await;
    let v = h
        .expect(
            200,
            "GET",
            &format!("{k}/projects/{pid}/users/{uid}/roles"),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["roles"][0]["name"], "member");
    let v = h
        .expect(
            200,
            "GET",
            &format!("{k}/role_assignments?user.id={uid}"),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(
        v["role_assignments"][0]["scope"]["project"]["id"],
        pid.as_str()
    );
    let token = h.token_with("tempest-u", "pw2", "tempest-p2").await;
    h.expect(200, "GET", "/v2.1/servers", Some(&token), None)
        .await;
    let v = h
        .expect(
            200,
            "GET",
            &format!("{k}/users/{uid}/projects"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(v["projects"][0]["id"], pid.as_str());
    // A new password ends the user's tokens.
    h.expect(
        200,
        "PATCH",
        &format!("{k}/users/{uid}"),
        h.admin(),
        Some(json!({"user": {"password": "pw3"}})),
    )
    .await;
    h.expect(401, "GET", "/v2.1/servers", Some(&token), None)
        .await;
    let token = h.token_with("tempest-u", "pw3", "tempest-p2").await;
    h.expect(204, "DELETE", &grant, h.admin(), None).await;
    h.expect(401, "GET", "/v2.1/servers", Some(&token), None)
        .await;
    h.expect(204, "DELETE", &format!("{k}/users/{uid}"), h.admin(), None)
        .await;
    h.expect(
        204,
        "DELETE",
        &format!("{k}/projects/{pid}"),
        h.admin(),
        None,
    )
    .await;
    h.expect(404, "GET", &format!("{k}/projects/{pid}"), h.admin(), None)
        .await;
}

/// os-quota-sets as nova had it, the limits it feeds, microversion headers and host_status.
async fn routes_quotas_and_versions(h: &Harness, server: &str) {
    let demo = h.state.store.project("demo").unwrap().id;
    let q = format!("/v2.1/os-quota-sets/{demo}");
    let v = h.expect(200, "GET", &q, h.demo(), None).await;
    assert_eq!(v["quota_set"]["id"], demo.as_str());
    assert_eq!(v["quota_set"]["floating_ips"], 10);
    assert!(
        v["quota_set"].get("networks").is_none(),
        "networks left the quota set with nova-network"
    );
    let v = h
        .expect(200, "GET", &format!("{q}/defaults"), h.demo(), None)
        .await;
    assert_eq!(v["quota_set"]["security_groups"], 10);
    let v = h
        .expect(200, "GET", &format!("{q}/detail"), h.demo(), None)
        .await;
    assert!(v["quota_set"]["instances"]["in_use"].is_i64(), "{v}");
    // Only admins set quotas; a bad value changes nothing.
    let body = json!({"quota_set": {"floating_ips": 1, "instances": 50}});
    h.expect(403, "PUT", &q, h.demo(), Some(body.clone())).await;
    let bad = json!({"quota_set": {"floating_ips": 2, "instances": -7}});
    h.expect(400, "PUT", &q, h.admin(), Some(bad)).await;
    let v = h.expect(200, "GET", &q, h.demo(), None).await;
    assert_eq!(v["quota_set"]["floating_ips"], 10);
    let v = h.expect(200, "PUT", &q, h.admin(), Some(body)).await;
    assert_eq!(v["quota_set"]["floating_ips"], 1);
    let v = h.expect(200, "GET", "/v2.1/limits", h.demo(), None).await;
    let abs = &v["limits"]["absolute"];
    assert_eq!(abs["maxTotalFloatingIps"], 1);
    assert_eq!(abs["maxTotalInstances"], 50);
    assert!(abs["totalInstancesUsed"].is_i64(), "{v}");
    // The quota holds: the project has its floating IP already.
    let used = h.state.store.floating_ips(Some(&demo)).unwrap().len();
    let (s, _, _) = h
        .req(
            "POST",
            "/v2.1/os-floating-ips",
            h.demo(),
            Some(json!({"pool": "nova"})),
        )
        .await;
    if used >= 1 {
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    h.expect(202, "DELETE", &q, h.admin(), None).await;
    let v = h.expect(200, "GET", &q, h.demo(), None).await;
    assert_eq!(v["quota_set"]["floating_ips"], 10);

    // Microversions: echoed on every compute response, checked, and honoured.
    let (s, hd, _) = h.send("GET", "/v2.1/servers", h.demo(), &[], None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(hd["x-openstack-nova-api-version"], "2.1");
    assert_eq!(hd["openstack-api-version"], "compute 2.1");
    assert!(hd["vary"]
        .to_str()
        .unwrap()
        .contains("OpenStack-API-Version"));
    let id = hd["x-openstack-request-id"].to_str().unwrap();
    assert!(id.starts_with("req-") && id.len() == 40, "{id}");
    assert_eq!(hd["x-compute-request-id"], id);
    let v216 = [("openstack-api-version", "compute 2.16")];
    let (_, hd, v) = h
        .send(
            "GET",
            &format!("/v2.1/servers/{server}"),
            h.admin(),
            &v216,
            None,
        )
        .await;
    assert_eq!(hd["x-openstack-nova-api-version"], "2.16");
    // Its host's agent never reported: UNKNOWN; stale: DOWN; fresh: UP.
    let host = v["server"]["OS-EXT-SRV-ATTR:host"]
        .as_str()
        .map(str::to_string);
    let status = v["server"]["host_status"].as_str().unwrap().to_string();
    if let Some(host) = host {
        let report = novanet_store::ServiceReport {
            host: host.clone(),
            ..Default::default()
        };
        h.state.store.report_service(&report, 1).unwrap();
        let (_, _, v) = h
            .send(
                "GET",
                &format!("/v2.1/servers/{server}"),
                h.admin(),
                &v216,
                None,
            )
            .await;
        assert_eq!(v["server"]["host_status"], "DOWN", "was {status}");
        let svc = h
            .expect(200, "GET", "/v2.1/os-services", h.admin(), None)
            .await;
        assert!(
            svc["services"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["host"] == host.as_str() && s["state"] == "down"),
            "{svc}"
        );
        h.state
            .store
            .report_service(&report, novanet_server::unix_now())
            .unwrap();
        let (_, _, v) = h
            .send(
                "GET",
                &format!("/v2.1/servers/{server}"),
                h.admin(),
                &v216,
                None,
            )
            .await;
        assert_eq!(v["server"]["host_status"], "UP");
    }
    // Not at 2.15, and not for members.
    let (_, _, v) = h
        .send(
            "GET",
            &format!("/v2.1/servers/{server}"),
            h.admin(),
            &[("x-openstack-nova-api-version", "2.15")],
            None,
        )
        .await;
    assert!(v["server"].get("host_status").is_none());
    let (_, _, v) = h
        .send(
            "GET",
            &format!("/v2.1/servers/{server}"),
            h.demo(),
            &v216,
            None,
        )
        .await;
    assert!(v["server"].get("host_status").is_none());
    for (bad, code) in [("2.36", 406), ("3.0", 400), ("garbage", 400)] {
        let (s, hd, v) = h
            .send(
                "GET",
                "/v2.1/servers",
                h.demo(),
                &[("x-openstack-nova-api-version", bad)],
                None,
            )
            .await;
        assert_eq!(s.as_u16(), code, "{bad}: {v}");
        assert!(hd.contains_key("x-openstack-request-id"));
    }
}

/// `/healthz` without a token; `/novanet/v1/metrics` for admins only, with the request
/// counters by route template and the cloud's figures.
async fn routes_metrics(h: &Harness) {
    let ok = h.expect(200, "GET", "/healthz", None, None).await;
    assert_eq!(ok, "ok\n");
    h.expect(403, "GET", "/novanet/v1/metrics", h.demo(), None)
        .await;
    let m = h
        .expect(200, "GET", "/novanet/v1/metrics", h.admin(), None)
        .await;
    let m = m.as_str().expect("text");
    for want in [
        "novanet_http_requests_total{route=\"/v2.1/servers\",method=\"POST\",status=\"202\"}",
        "novanet_http_request_duration_seconds_bucket{route=\"/v2.1/servers/{id}\",method=\"GET\",le=\"+Inf\"}",
        "novanet_instances{host=",
        "novanet_fixed_ips{network=",
        "state=\"allocated\"",
        "novanet_floating_ips{pool=",
        "novanet_store_generation ",
    ] {
        assert!(m.contains(want), "{want} missing from:\n{m}");
    }
    // Where Prometheus looks by default, with the store's transaction times.
    let m = h.expect(200, "GET", "/metrics", h.admin(), None).await;
    let m = m.as_str().expect("text");
    for want in [
        "novanet_http_requests_total{route=\"/v2.1/servers\",method=\"POST\",status=\"202\"}",
        "novanet_store_operation_duration_seconds_count{noun=\"instances\",kind=\"write\"}",
        "novanet_store_operation_duration_seconds_bucket{noun=\"networks\",kind=\"read\",le=\"+Inf\"}",
    ] {
        assert!(m.contains(want), "{want} missing from:\n{m}");
    }
    h.expect(403, "GET", "/metrics", h.demo(), None).await;
}

/// An agent's heartbeat carries its host's diagnosis; the controller shows the latest.
async fn routes_diagnosis(h: &Harness) {
    h.expect(
        404,
        "GET",
        "/novanet/v1/hosts/compute-9/diagnosis",
        h.admin(),
        None,
    )
    .await;
    let d = json!({"host": "compute-9", "generation": 4, "at": 5, "checks": [
        {"check": "ip_forward", "subject": "", "ok": false, "expected": "1", "found": "0",
         "fix": "sysctl -w net.ipv4.ip_forward=1"}]});
    h.expect(
        400,
        "POST",
        "/novanet/v1/hosts/compute-9/report",
        h.admin(),
        Some(json!({"diagnosis": "all fine"})),
    )
    .await;
    h.expect(
        200,
        "POST",
        "/novanet/v1/hosts/compute-9/report",
        h.admin(),
        Some(json!({"diagnosis": d})),
    )
    .await;
    // A heartbeat without one keeps the last.
    h.expect(
        200,
        "POST",
        "/novanet/v1/hosts/compute-9/report",
        h.admin(),
        Some(json!({})),
    )
    .await;
    let v = h
        .expect(
            200,
            "GET",
            "/novanet/v1/hosts/compute-9/diagnosis",
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["diagnosis"], d, "{v}");
    assert!(v["reported_at"].as_i64().unwrap() > 0);
    h.expect(
        403,
        "GET",
        "/novanet/v1/hosts/compute-9/diagnosis",
        h.demo(),
        None,
    )
    .await;
}

/// `/novanet/v1/explain` (admin): the path to an instance and the verdict of each direction;
/// bad input names its field.
async fn routes_explain(h: &Harness, server: &str) {
    let q = format!("/novanet/v1/explain?src=outside&dst={server}&proto=tcp&port=22");
    let q = q.as_str();
    h.expect(403, "GET", q, h.demo(), None).await;
    let v = h.expect(200, "GET", q, h.admin(), None).await;
    assert_eq!(v["traffic"], json!({"proto": "tcp", "port": 22}));
    assert!(v["dst"].as_str().unwrap().contains(" on "), "{v}");
    assert!(v["request"]["verdict"]["outcome"].is_string(), "{v}");
    for (query, field) in [
        ("src=outside&dst=cirros&proto=tcp", "port"),
        ("src=outside&dst=cirros&proto=gre&port=1", "proto"),
        ("dst=cirros", "src"),
        ("src=nobody&dst=cirros", "src"),
    ] {
        let v = h
            .expect(
                400,
                "GET",
                &format!("/novanet/v1/explain?{query}"),
                h.admin(),
                None,
            )
            .await;
        let m = v["badRequest"]["message"].as_str().unwrap_or_default();
        assert!(m.contains(field), "{query}: {v}");
    }
}

/// Cloudpipe needs the VLAN manager: its calls run on a VLAN cloud of their own and count
/// with the others.
async fn routes_cloudpipe(h: &Harness) {
    let v = Harness::vlan("routes-vlan", "10.0.0.0/24").await;
    let project = v.state.store.project("demo").unwrap().id;
    v.expect(
        200,
        "POST",
        "/v2.1/os-cloudpipe",
        v.admin(),
        Some(json!({"cloudpipe": {"project_id": project}})),
    )
    .await;
    v.expect(200, "GET", "/v2.1/os-cloudpipe", v.admin(), None)
        .await;
    v.expect(
        202,
        "PUT",
        "/v2.1/os-cloudpipe/configure-project",
        v.admin(),
        Some(json!({"configure_project": {"vpn_ip": "127.0.0.1", "vpn_port": 1000}})),
    )
    .await;
    let clients = format!("/novanet/v1/cloudpipe/{project}/clients");
    v.expect(
        200,
        "POST",
        &clients,
        v.admin(),
        Some(json!({"client": {"user": "demo"}})),
    )
    .await;
    v.expect(200, "DELETE", &format!("{clients}/demo"), v.admin(), None)
        .await;
    let calls = std::mem::take(&mut *v.calls.lock().unwrap());
    h.calls.lock().unwrap().extend(calls);
}

#[tokio::test]
async fn every_openapi_route_succeeds() {
    let h = Harness::new("routes").await;
    routes_identity(&h).await;
    h.expect(200, "GET", "/v2.1", h.admin(), None).await;
    routes_networks(&h).await;
    routes_tenant_networks(&h).await;
    routes_fixed_ips(&h).await;
    routes_keypairs_flavors_images_limits(&h).await;
    routes_uploaded_images(&h).await;
    routes_floating(&h).await;
    routes_hosts(&h).await;
    let server = routes_servers(&h).await;
    routes_server_actions(&h, &server).await;
    routes_security_groups(&h).await;
    routes_quotas_and_versions(&h, &server).await;
    routes_server_records(&h, &server).await;
    routes_identity_admin(&h).await;
    routes_metrics(&h).await;
    routes_explain(&h, &server).await;
    routes_cloudpipe(&h).await;
    routes_diagnosis(&h).await;
    routes_delete_server(&h, &server).await;
    routes_openapi(&h).await;

    let calls = h.calls.lock().unwrap();
    let mut covered = vec![false; ROUTES.len()];
    for (method, path, status) in calls.iter() {
        if status.as_u16() >= 400 {
            continue;
        }
        let matches: Vec<(usize, usize)> = ROUTES
            .iter()
            .enumerate()
            .filter(|(_, (m, _, _))| m.eq_ignore_ascii_case(method.as_str()))
            .filter_map(|(i, (_, t, _))| route_match(t, path).map(|p| (i, p)))
            .collect();
        // The table is the policy matrix's source: a route the router serves but the table
        // lacks would escape it.
        assert!(
            !matches.is_empty()
                || path.starts_with("/identity")
                || path == "/"
                || path == "/openapi.json",
            "{method} {path} answered {status} but is not in openapi::ROUTES"
        );
        if let Some(best) = matches.iter().map(|m| m.1).min() {
            for (i, p) in matches {
                if p == best {
                    covered[i] = true;
                }
            }
        }
    }
    let missing: Vec<String> = ROUTES
        .iter()
        .zip(&covered)
        .filter(|(_, c)| !**c)
        .map(|((m, p, _), _)| format!("{m} {p}"))
        // Only the default roles exist: creating a role is always refused (409 or 400).
        .filter(|r| r != "post /identity/v3/roles")
        .collect();
    assert!(
        missing.is_empty(),
        "routes never called with success: {missing:?}"
    );
}

// ---- 4. policy -----------------------------------------------------------------------------

#[tokio::test]
async fn members_are_refused_admin_routes() {
    let h = Harness::new("policy").await;
    let net = create_network(&h, "vmnet", "10.0.0.0/24").await;
    h.expect(
        200,
        "POST",
        "/v2.1/os-floating-ips-bulk",
        h.admin(),
        Some(json!({"floating_ips_bulk_create": {"ip_range": "68.99.26.170/31"}})),
    )
    .await;
    let admin_only: Vec<(&str, String, Option<Value>)> = vec![
        (
            "POST",
            "/v2.1/os-networks".into(),
            Some(network_body("x", "10.9.0.0/24")),
        ),
        ("DELETE", format!("/v2.1/os-networks/{net}"), None),
        (
            "POST",
            "/v2.1/os-networks/add".into(),
            Some(json!({"id": net})),
        ),
        (
            "POST",
            format!("/v2.1/os-networks/{net}/action"),
            Some(json!({"disassociate": null})),
        ),
        (
            "POST",
            format!("/v2.1/os-networks/{net}/action"),
            Some(json!({"associate_host": "h"})),
        ),
        ("GET", "/v2.1/os-floating-ips-bulk".into(), None),
        (
            "POST",
            "/v2.1/os-floating-ips-bulk".into(),
            Some(json!({"floating_ips_bulk_create": {"ip_range": "1.2.3.4"}})),
        ),
        ("GET", "/v2.1/os-floating-ips-bulk/h".into(), None),
        (
            "PUT",
            "/v2.1/os-floating-ips-bulk/delete".into(),
            Some(json!({"ip_range": "68.99.26.170/31"})),
        ),
        ("GET", "/v2.1/os-fixed-ips/10.0.0.2".into(), None),
        (
            "POST",
            "/v2.1/os-fixed-ips/10.0.0.2/action".into(),
            Some(json!({"reserve": null})),
        ),
        ("GET", "/v2.1/os-security-group-default-rules".into(), None),
        (
            "POST",
            "/v2.1/os-security-group-default-rules".into(),
            Some(
                json!({"security_group_default_rule": {"ip_protocol": "tcp", "from_port": 1, "to_port": 2}}),
            ),
        ),
        (
            "GET",
            "/v2.1/os-security-group-default-rules/1".into(),
            None,
        ),
        (
            "DELETE",
            "/v2.1/os-security-group-default-rules/1".into(),
            None,
        ),
        ("GET", "/v2.1/os-provider-firewall-rules".into(), None),
        (
            "POST",
            "/v2.1/os-provider-firewall-rules".into(),
            Some(
                json!({"provider_firewall_rule": {"ip_protocol": "tcp", "from_port": 25, "to_port": 25}}),
            ),
        ),
        ("GET", "/v2.1/os-provider-firewall-rules/1".into(), None),
        ("DELETE", "/v2.1/os-provider-firewall-rules/1".into(), None),
        ("GET", "/v2.1/os-services".into(), None),
        (
            "POST",
            "/novanet/v1/hosts/h/report".into(),
            Some(json!({"network_host": true})),
        ),
        ("GET", "/novanet/v1/hosts/h/plan".into(), None),
        (
            "POST",
            "/novanet/v1/leases".into(),
            Some(json!({"action": "add", "address": "10.0.0.2"})),
        ),
    ];
    for (method, path, body) in &admin_only {
        let v = h.expect(403, method, path, h.demo(), body.clone()).await;
        let msg = fault(&v, "forbidden", 403);
        assert!(msg.contains("admin"), "{method} {path}: {msg}");
        // And without a token at all: 401.
        let v = h.expect(401, method, path, None, body.clone()).await;
        fault(&v, "unauthorized", 401);
    }
    // Nothing changed.
    let v = h
        .expect(200, "GET", "/v2.1/os-networks", h.admin(), None)
        .await;
    assert_eq!(v["networks"].as_array().unwrap().len(), 1);
    assert!(v["networks"][0]["project_id"].is_null());
    assert!(v["networks"][0]["host"].is_null());
    let v = h
        .expect(200, "GET", "/v2.1/os-floating-ips-bulk", h.admin(), None)
        .await;
    assert_eq!(v["floating_ip_info"].as_array().unwrap().len(), 2);
    let v = h
        .expect(200, "GET", "/v2.1/os-fixed-ips/10.0.0.2", h.admin(), None)
        .await;
    assert!(
        v["fixed_ip"].get("reserved").is_none(),
        "reserved came with 2.4"
    );

    // Forcing a host is admin only too.
    let mut body = boot_body("forced");
    body["server"]["availability_zone"] = json!("nova:compute-9");
    let v = h
        .expect(403, "POST", "/v2.1/servers", h.demo(), Some(body))
        .await;
    fault(&v, "forbidden", 403);
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401() {
    let h = Harness::new("noauth").await;
    for (method, path) in [
        ("GET", "/v2.1/servers"),
        ("GET", "/v2.1/servers/detail"),
        ("POST", "/v2.1/servers"),
        ("GET", "/v2.1/os-networks"),
        ("GET", "/v2.1/os-floating-ips"),
        ("GET", "/v2.1/os-security-groups"),
        ("GET", "/v2.1/os-keypairs"),
        ("GET", "/v2.1/flavors/1"),
        ("GET", "/v2.1/limits"),
        ("GET", "/image/v2/images"),
        ("GET", "/compute/v2.1/os-tenant-networks"),
    ] {
        for token in [None, Some("not-a-token")] {
            let (s, _, v) = h.req(method, path, token, None).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path}: {v}");
            fault(&v, "unauthorized", 401);
        }
    }
}

#[tokio::test]
async fn projects_do_not_see_each_others_resources() {
    let h = Harness::new("tenancy").await;
    create_network(&h, "vmnet", "10.0.0.0/24").await;
    h.expect(
        200,
        "POST",
        "/v2.1/os-floating-ips-bulk",
        h.admin(),
        Some(json!({"floating_ips_bulk_create": {"ip_range": "68.99.26.168/29"}})),
    )
    .await;
    let demo_project = h.state.store.project("demo").unwrap().id;

    // demo: a server with a floating IP, a group with a rule.
    let server = boot(&h, h.demo(), "demo-vm").await;
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-floating-ips",
            h.demo(),
            Some(json!({"pool": null})),
        )
        .await;
    let ip = v["floating_ip"]["ip"].as_str().unwrap().to_string();
    let fid = v["floating_ip"]["id"].clone();
    h.expect(
        202,
        "POST",
        &format!("/v2.1/servers/{server}/action"),
        h.demo(),
        Some(json!({"addFloatingIp": {"address": ip}})),
    )
    .await;
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-security-groups",
            h.demo(),
            Some(json!({"security_group": {"name": "private", "description": "demo's"}})),
        )
        .await;
    let gid = v["security_group"]["id"].clone();
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-security-group-rules",
            h.demo(),
            Some(rule_body(&gid, "tcp", 22, 22, "0.0.0.0/0")),
        )
        .await;
    let rid = v["security_group_rule"]["id"].clone();

    // other: 404 everywhere on demo's things.
    let srv = format!("/v2.1/servers/{server}");
    for (method, path, body) in [
        ("GET", srv.clone(), None),
        ("DELETE", srv.clone(), None),
        (
            "POST",
            format!("{srv}/action"),
            Some(json!({"removeFloatingIp": {"address": ip}})),
        ),
        (
            "POST",
            format!("{srv}/action"),
            Some(json!({"addSecurityGroup": {"name": "default"}})),
        ),
        ("GET", format!("{srv}/os-virtual-interfaces"), None),
        ("GET", format!("{srv}/os-security-groups"), None),
        ("GET", format!("/v2.1/os-floating-ips/{fid}"), None),
        ("DELETE", format!("/v2.1/os-floating-ips/{fid}"), None),
        ("GET", format!("/v2.1/os-security-groups/{gid}"), None),
        ("DELETE", format!("/v2.1/os-security-groups/{gid}"), None),
        (
            "POST",
            "/v2.1/os-security-group-rules".to_string(),
            Some(rule_body(&gid, "tcp", 80, 80, "0.0.0.0/0")),
        ),
        (
            "DELETE",
            format!("/v2.1/os-security-group-rules/{rid}"),
            None,
        ),
    ] {
        let v = h.expect(404, method, &path, h.other(), body).await;
        fault(&v, "itemNotFound", 404);
    }
    let v = h
        .expect(200, "GET", "/v2.1/servers/detail", h.other(), None)
        .await;
    assert_eq!(v["servers"], json!([]));
    let v = h
        .expect(200, "GET", "/v2.1/os-floating-ips", h.other(), None)
        .await;
    assert_eq!(
        v["floating_ips"],
        json!([]),
        "demo's floating IPs leak: {v}"
    );
    let v = h
        .expect(200, "GET", "/v2.1/os-security-groups", h.other(), None)
        .await;
    let names: Vec<&str> = v["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default"]);
    // all_tenants means nothing to a member.
    let v = h
        .expect(
            200,
            "GET",
            "/v2.1/servers/detail?all_tenants=1",
            h.other(),
            None,
        )
        .await;
    assert_eq!(v["servers"], json!([]));

    // other's own server cannot take demo's floating IP.
    let own = boot(&h, h.other(), "other-vm").await;
    let (s, _, v) = h
        .req(
            "POST",
            &format!("/v2.1/servers/{own}/action"),
            h.other(),
            Some(json!({"addFloatingIp": {"address": ip}})),
        )
        .await;
    assert!(s.is_client_error(), "{s}: {v}");

    // Still intact for demo.
    let a = addresses(&h, h.demo(), &server).await;
    assert!(addrs_of(&a, "vmnet").contains(&ip), "{a}");
    h.expect(
        200,
        "GET",
        &format!("/v2.1/os-security-groups/{gid}"),
        h.demo(),
        None,
    )
    .await;

    // The admin sees demo's server, group and floating IP.
    let v = h.expect(200, "GET", &srv, h.admin(), None).await;
    assert_eq!(v["server"]["tenant_id"], demo_project.as_str());
    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/os-security-groups/{gid}"),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["security_group"]["name"], "private");
    assert_eq!(v["security_group"]["tenant_id"], demo_project.as_str());
    let v = h
        .expect(
            200,
            "GET",
            "/v2.1/os-security-groups?all_tenants=1",
            h.admin(),
            None,
        )
        .await;
    assert!(v["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["id"] == gid));
    let v = h
        .expect(
            200,
            "GET",
            "/v2.1/servers/detail?all_tenants=1",
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["servers"].as_array().unwrap().len(), 2);
    let v = h
        .expect(200, "GET", "/v2.1/os-floating-ips-bulk", h.admin(), None)
        .await;
    let f = v["floating_ip_info"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["address"] == ip.as_str())
        .unwrap()
        .clone();
    assert_eq!(f["project_id"], demo_project.as_str());
    assert_eq!(f["instance_uuid"], server.as_str());

    // The admin may delete demo's server.
    h.expect(204, "DELETE", &srv, h.admin(), None).await;
    h.expect(404, "GET", &srv, h.demo(), None).await;
}

// ---- 5. error shapes -----------------------------------------------------------------------

/// POSTs a network that must be refused with 400; returns the message.
async fn bad_network(h: &Harness, body: Value) -> String {
    let v = h
        .expect(400, "POST", "/v2.1/os-networks", h.admin(), Some(body))
        .await;
    fault(&v, "badRequest", 400)
}

#[tokio::test]
async fn bad_bodies_are_400_with_a_reason() {
    let h = Harness::new("errors").await;
    // Malformed JSON on every body-taking compute route.
    for (method, path) in [
        ("POST", "/v2.1/os-networks"),
        ("POST", "/v2.1/os-tenant-networks"),
        ("POST", "/v2.1/os-floating-ips"),
        ("POST", "/v2.1/os-floating-ips-bulk"),
        ("PUT", "/v2.1/os-floating-ips-bulk/delete"),
        ("POST", "/v2.1/os-security-groups"),
        ("POST", "/v2.1/os-security-group-rules"),
        ("POST", "/v2.1/os-keypairs"),
        ("POST", "/v2.1/servers"),
        ("POST", "/novanet/v1/leases"),
    ] {
        let (s, _, v) = h
            .send(method, path, h.admin(), &[], Some("{\"network\": ".into()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {path}: {v}");
        fault(&v, "badRequest", 400);
    }

    // Wrong type.
    let msg = bad_network(&h, json!({"network": {"label": 5, "cidr": "10.0.0.0/24"}})).await;
    assert!(msg.contains("invalid"), "{msg}");
    // Unknown field, named.
    let msg = bad_network(
        &h,
        json!({"network": {"label": "x", "cidr": "10.0.0.0/24", "bogus_field": 1}}),
    )
    .await;
    assert!(msg.contains("bogus_field"), "{msg}");
    // A missing wrapper.
    bad_network(&h, json!({"label": "x", "cidr": "10.0.0.0/24"})).await;
    // A bad CIDR: the message names the field.
    let msg = bad_network(&h, network_body("x", "10.0.0.0/33")).await;
    assert!(msg.contains("cidr"), "{msg}");
    let msg = bad_network(&h, network_body("x", "banana")).await;
    assert!(msg.contains("cidr"), "{msg}");
    let msg = bad_network(
        &h,
        json!({"network": {"label": "x", "cidr_v6": "fd00::/200"}}),
    )
    .await;
    assert!(msg.contains("cidr_v6"), "{msg}");
    // No range at all.
    let msg = bad_network(&h, json!({"network": {"label": "x"}})).await;
    assert!(msg.contains("cidr"), "{msg}");
    // A non-integer mtu names mtu.
    let msg = bad_network(
        &h,
        json!({"network": {"label": "x", "cidr": "10.3.0.0/24", "mtu": "big"}}),
    )
    .await;
    assert!(msg.contains("mtu"), "{msg}");

    // Overlap: 409.
    create_network(&h, "vmnet", "10.0.0.0/24").await;
    let v = h
        .expect(
            409,
            "POST",
            "/v2.1/os-networks",
            h.admin(),
            Some(network_body("again", "10.0.0.128/25")),
        )
        .await;
    fault(&v, "conflictingRequest", 409);

    // Other bodies.
    let gid = default_group(&h, h.demo()).await;
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/os-security-group-rules",
            h.demo(),
            Some(json!({"security_group_rule": {"parent_group_id": gid, "ip_protocol": "tcp",
                                                "from_port": "abc", "to_port": 22, "cidr": "0.0.0.0/0"}})),
        )
        .await;
    assert!(fault(&v, "badRequest", 400).contains("from_port"));
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/os-security-group-rules",
            h.demo(),
            Some(rule_body(&gid, "tcp", 22, 22, "0.0.0.0/99")),
        )
        .await;
    fault(&v, "badRequest", 400);
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/servers",
            h.demo(),
            Some(json!({"server": {"name": "x", "flavorRef": "1", "nics": []}})),
        )
        .await;
    assert!(fault(&v, "badRequest", 400).contains("nics"));
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/servers",
            h.demo(),
            Some(json!({"server": {"name": "x", "flavorRef": "99"}})),
        )
        .await;
    fault(&v, "badRequest", 400);
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/servers",
            h.demo(),
            Some(json!({"server": {"name": "x", "imageRef": "nosuchimage"}})),
        )
        .await;
    fault(&v, "badRequest", 400);
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/servers",
            h.demo(),
            Some(json!({"server": {"name": "x", "networks": [{"uuid": "nope"}]}})),
        )
        .await;
    assert!(fault(&v, "badRequest", 400).contains("networks"));
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/os-floating-ips-bulk",
            h.admin(),
            Some(json!({"floating_ips_bulk_create": {"ip_range": "68.99.26.0/33"}})),
        )
        .await;
    assert!(fault(&v, "badRequest", 400).contains("ip_range"));
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/os-floating-ips",
            h.demo(),
            Some(json!({"pool": 7})),
        )
        .await;
    fault(&v, "badRequest", 400);

    // Unknown things: 404 in Nova's shape.
    for path in [
        "/v2.1/servers/00000000-0000-0000-0000-000000000000",
        "/v2.1/os-networks/00000000-0000-0000-0000-000000000000",
        "/v2.1/os-security-groups/999",
        "/v2.1/os-floating-ips/999",
        "/v2.1/os-keypairs/nokey",
    ] {
        let v = h.expect(404, "GET", path, h.admin(), None).await;
        fault(&v, "itemNotFound", 404);
    }
}

#[tokio::test]
async fn an_exhausted_floating_pool_is_404() {
    let h = Harness::new("exhaust").await;
    // Nothing in the pool yet.
    let v = h
        .expect(
            404,
            "POST",
            "/v2.1/os-floating-ips",
            h.demo(),
            Some(json!({"pool": null})),
        )
        .await;
    fault(&v, "itemNotFound", 404);
    h.expect(
        200,
        "POST",
        "/v2.1/os-floating-ips-bulk",
        h.admin(),
        Some(json!({"floating_ips_bulk_create": {"ip_range": "68.99.26.170/31"}})),
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let v = h
            .expect(
                200,
                "POST",
                "/v2.1/os-floating-ips",
                h.demo(),
                Some(json!({"pool": null})),
            )
            .await;
        got.push(v["floating_ip"]["ip"].as_str().unwrap().to_string());
    }
    got.sort();
    assert_eq!(got, ["68.99.26.170", "68.99.26.171"]);
    let v = h
        .expect(
            404,
            "POST",
            "/v2.1/os-floating-ips",
            h.other(),
            Some(json!({"pool": null})),
        )
        .await;
    let msg = fault(&v, "itemNotFound", 404);
    assert!(msg.contains("nova"), "{msg}");
    // A pool that does not exist is empty too.
    let v = h
        .expect(
            404,
            "POST",
            "/v2.1/os-floating-ips",
            h.other(),
            Some(json!({"pool": "nosuchpool"})),
        )
        .await;
    fault(&v, "itemNotFound", 404);
}

/// A network made while a network host runs is that host's at once (its dataplane follows
/// within the agent's next poll), and the heartbeats that claim nothing change no plan.
#[tokio::test]
async fn a_new_network_goes_to_the_network_host_at_once() {
    let h = Harness::new("claim").await;
    h.expect(
        200,
        "POST",
        "/novanet/v1/hosts/net-1/report",
        h.admin(),
        Some(json!({"network_host": true})),
    )
    .await;
    let generation = h.state.store.generation().unwrap();
    h.expect(
        200,
        "POST",
        "/novanet/v1/hosts/net-1/report",
        h.admin(),
        Some(json!({"network_host": true})),
    )
    .await;
    assert_eq!(h.state.store.generation().unwrap(), generation);
    let id = create_network(&h, "vmnet", "10.0.0.0/24").await;
    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/os-networks/{id}"),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["network"]["host"], "net-1", "{v}");
}

#[tokio::test]
async fn quotas_answer_over_limit_and_change_nothing() {
    let h = Harness::new("quota").await;
    h.expect(
        200,
        "POST",
        "/v2.1/os-floating-ips-bulk",
        h.admin(),
        Some(json!({"floating_ips_bulk_create": {"ip_range": "68.99.26.0/27"}})),
    )
    .await;
    // quota_floating_ips defaults to 10.
    for _ in 0..10 {
        h.expect(
            200,
            "POST",
            "/v2.1/os-floating-ips",
            h.demo(),
            Some(json!({"pool": null})),
        )
        .await;
    }
    let v = h
        .expect(
            403,
            "POST",
            "/v2.1/os-floating-ips",
            h.demo(),
            Some(json!({"pool": null})),
        )
        .await;
    let msg = fault(&v, "overLimit", 403);
    assert!(msg.to_lowercase().contains("quota"), "{msg}");
    let v = h
        .expect(200, "GET", "/v2.1/os-floating-ips", h.demo(), None)
        .await;
    assert_eq!(v["floating_ips"].as_array().unwrap().len(), 10);
    // Another project has its own quota.
    h.expect(
        200,
        "POST",
        "/v2.1/os-floating-ips",
        h.other(),
        Some(json!({"pool": null})),
    )
    .await;
    // Security groups: quota_security_groups (10) counts the default group too.
    default_group(&h, h.demo()).await;
    for i in 1..10 {
        h.expect(
            200,
            "POST",
            "/v2.1/os-security-groups",
            h.demo(),
            Some(json!({"security_group": {"name": format!("g{i}"), "description": "d"}})),
        )
        .await;
    }
    let v = h
        .expect(
            403,
            "POST",
            "/v2.1/os-security-groups",
            h.demo(),
            Some(json!({"security_group": {"name": "g10", "description": "d"}})),
        )
        .await;
    fault(&v, "overLimit", 403);
}

// ---- 6. the seed flow ----------------------------------------------------------------------

#[tokio::test]
async fn seed_tutorial_flow() {
    let h = Harness::new("seed").await;
    let admin = h.admin();

    // nova network-create vmnet --fixed-range-v4 10.0.0.0/24 --bridge br100
    let v = h
        .expect(
            200,
            "POST",
            "/compute/v2.1/os-networks",
            admin,
            Some(network_body("vmnet", "10.0.0.0/24")),
        )
        .await;
    assert_eq!(v["network"]["label"], "vmnet");
    let v = h
        .expect(200, "GET", "/compute/v2.1/os-networks", admin, None)
        .await;
    assert_eq!(v["networks"][0]["cidr"], "10.0.0.0/24");

    // nova boot --image cirros --flavor 1 cirros
    let v = h
        .expect(200, "GET", "/image/v2/images?name=cirros", admin, None)
        .await;
    let image = v["images"][0]["id"].as_str().unwrap().to_string();
    h.expect(200, "GET", "/compute/v2.1/flavors/1", admin, None)
        .await;
    let v = h
        .expect(
            202,
            "POST",
            "/compute/v2.1/servers",
            admin,
            Some(json!({"server": {"name": "cirros", "imageRef": image, "flavorRef": "1", "min_count": 1, "max_count": 1}})),
        )
        .await;
    let id = v["server"]["id"].as_str().unwrap().to_string();
    let v = h
        .expect(
            200,
            "GET",
            &format!("/compute/v2.1/servers/{id}"),
            admin,
            None,
        )
        .await;
    let vmnet = &v["server"]["addresses"]["vmnet"];
    assert_eq!(vmnet.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(vmnet[0]["addr"], "10.0.0.2");
    assert_eq!(vmnet[0]["version"], 4);
    assert_eq!(vmnet[0]["OS-EXT-IPS:type"], "fixed");
    assert_eq!(v["server"]["security_groups"], json!([{"name": "default"}]));

    // nova list
    let v = h
        .expect(200, "GET", "/compute/v2.1/servers/detail", admin, None)
        .await;
    assert_eq!(v["servers"][0]["addresses"]["vmnet"][0]["addr"], "10.0.0.2");

    // nova-manage floating create 68.99.26.170/31 (through the bulk API), floating-ip-create
    h.expect(
        200,
        "POST",
        "/compute/v2.1/os-floating-ips-bulk",
        admin,
        Some(json!({"floating_ips_bulk_create": {"ip_range": "68.99.26.170/31"}})),
    )
    .await;
    let v = h
        .expect(
            200,
            "POST",
            "/compute/v2.1/os-floating-ips",
            admin,
            Some(json!({"pool": null})),
        )
        .await;
    let ip = v["floating_ip"]["ip"].as_str().unwrap().to_string();
    assert!(ip == "68.99.26.170" || ip == "68.99.26.171", "{ip}");
    assert_eq!(v["floating_ip"]["pool"], "nova");

    // nova floating-ip-associate cirros <ip>
    let v = h
        .expect(200, "GET", "/compute/v2.1/servers?name=cirros", admin, None)
        .await;
    assert_eq!(v["servers"][0]["id"], id.as_str());
    h.expect(
        202,
        "POST",
        &format!("/compute/v2.1/servers/{id}/action"),
        admin,
        Some(json!({"addFloatingIp": {"address": ip}})),
    )
    .await;
    let v = h
        .expect(
            200,
            "GET",
            &format!("/compute/v2.1/servers/{id}"),
            admin,
            None,
        )
        .await;
    let vmnet = v["server"]["addresses"]["vmnet"].as_array().unwrap();
    assert_eq!(vmnet.len(), 2, "{v}");
    assert_eq!(vmnet[0]["addr"], "10.0.0.2");
    assert_eq!(vmnet[1]["addr"], ip.as_str());
    assert_eq!(vmnet[1]["OS-EXT-IPS:type"], "floating");
    let v = h
        .expect(200, "GET", "/compute/v2.1/os-floating-ips", admin, None)
        .await;
    let f = &v["floating_ips"][0];
    assert_eq!(f["ip"], ip.as_str());
    assert_eq!(f["instance_id"], id.as_str());
    assert_eq!(f["fixed_ip"], "10.0.0.2");

    // nova secgroup-add-rule default icmp -1 -1 0.0.0.0/0; ... tcp 22 22 0.0.0.0/0
    let gid = default_group(&h, admin).await;
    for (proto, from, to) in [("icmp", -1, -1), ("tcp", 22, 22)] {
        let v = h
            .expect(
                200,
                "POST",
                "/compute/v2.1/os-security-group-rules",
                admin,
                Some(rule_body(&gid, proto, from, to, "0.0.0.0/0")),
            )
            .await;
        let r = &v["security_group_rule"];
        assert_eq!(r["ip_protocol"], proto);
        assert_eq!(r["from_port"], from);
        assert_eq!(r["to_port"], to);
    }
    // nova secgroup-list-rules default: the rules embedded in the list.
    let v = h
        .expect(200, "GET", "/compute/v2.1/os-security-groups", admin, None)
        .await;
    let default = v["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "default")
        .unwrap();
    let rules: Vec<(Value, Value, Value, Value, Value)> = default["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["ip_protocol"].clone(),
                r["from_port"].clone(),
                r["to_port"].clone(),
                r["ip_range"].clone(),
                r["group"].clone(),
            )
        })
        .collect();
    let cidr = json!({"cidr": "0.0.0.0/0"});
    assert_eq!(
        rules,
        [
            (json!("icmp"), json!(-1), json!(-1), cidr.clone(), json!({})),
            (json!("tcp"), json!(22), json!(22), cidr, json!({})),
        ]
    );

    // nova delete cirros
    h.expect(
        204,
        "DELETE",
        &format!("/compute/v2.1/servers/{id}"),
        admin,
        None,
    )
    .await;
    let v = h
        .expect(200, "GET", "/compute/v2.1/servers/detail", admin, None)
        .await;
    assert_eq!(v["servers"], json!([]));
    // The floating IP stays allocated, no longer associated.
    let v = h
        .expect(200, "GET", "/compute/v2.1/os-floating-ips", admin, None)
        .await;
    assert_eq!(v["floating_ips"][0]["ip"], ip.as_str());
    assert!(v["floating_ips"][0]["instance_id"].is_null(), "{v}");
}

/// nova-network's floating IP behaviour that clients rely on: an associated address moves to
/// another server (202), removing an address that is not associated is 409 (clients treat it
/// as done), and admins may associate any project's address or an unallocated one.
#[tokio::test]
async fn floating_ips_behave_as_nova_network() {
    let h = Harness::new("nova-floating").await;
    create_network(&h, "vmnet", "10.0.0.0/24").await;
    h.expect(
        200,
        "POST",
        "/v2.1/os-floating-ips-bulk",
        h.admin(),
        Some(json!({"floating_ips_bulk_create": {"ip_range": "68.99.26.168/29"}})),
    )
    .await;
    let a = boot(&h, h.demo(), "a").await;
    let b = boot(&h, h.demo(), "b").await;
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-floating-ips",
            h.demo(),
            Some(json!({"pool": "nova"})),
        )
        .await;
    let ip = v["floating_ip"]["ip"].as_str().unwrap().to_string();
    let add = json!({"addFloatingIp": {"address": ip}});
    h.expect(
        202,
        "POST",
        &format!("/v2.1/servers/{a}/action"),
        h.demo(),
        Some(add.clone()),
    )
    .await;
    h.expect(
        202,
        "POST",
        &format!("/v2.1/servers/{b}/action"),
        h.demo(),
        Some(add),
    )
    .await;
    let f = h.state.store.floating_ip(&ip).unwrap();
    assert_eq!(f.instance_uuid.as_deref(), Some(b.as_str()), "moved to b");
    let remove = json!({"removeFloatingIp": {"address": ip}});
    h.expect(
        202,
        "POST",
        &format!("/v2.1/servers/{b}/action"),
        h.demo(),
        Some(remove.clone()),
    )
    .await;
    let v = h
        .expect(
            409,
            "POST",
            &format!("/v2.1/servers/{b}/action"),
            h.demo(),
            Some(remove),
        )
        .await;
    fault(&v, "conflictingRequest", 409);
    // An admin associates an address nobody allocated with the demo project's server.
    let free = h
        .state
        .store
        .floating_ips(None)
        .unwrap()
        .into_iter()
        .find(|f| f.project_id.is_none())
        .unwrap()
        .address;
    let add = json!({"addFloatingIp": {"address": free}});
    h.expect(
        404,
        "POST",
        &format!("/v2.1/servers/{a}/action"),
        h.other(),
        Some(add.clone()),
    )
    .await;
    h.expect(
        202,
        "POST",
        &format!("/v2.1/servers/{a}/action"),
        h.admin(),
        Some(add),
    )
    .await;
    let f = h.state.store.floating_ip(&free).unwrap();
    assert_eq!(f.instance_uuid.as_deref(), Some(a.as_str()));
    assert_eq!(
        f.project_id,
        Some(h.state.store.project("demo").unwrap().id),
        "it went to the instance's project"
    );
}

/// Each agent reports its host's own options (from its nova.conf); the server plans that host
/// with them, and refuses a report whose values are not interface names or addresses.
#[tokio::test]
async fn hosts_are_planned_with_their_own_options() {
    let h = Harness::new("host-options").await;
    let report = |opts: Value| json!({"network_host": true, "networks": [], "options": opts});
    let v = h
        .expect(
            400,
            "POST",
            "/novanet/v1/hosts/net-1/report",
            h.admin(),
            Some(report(json!({"flat_interface": "../eth0"}))),
        )
        .await;
    assert!(fault(&v, "badRequest", 400).contains("flat_interface"));
    h.expect(
        200,
        "POST",
        "/novanet/v1/hosts/net-1/report",
        h.admin(),
        Some(report(json!({"flat_interface": "eth9", "public_interface": "eth7", "routing_source_ip": "192.0.2.9"}))),
    )
    .await;
    create_network(&h, "vmnet", "10.0.0.0/24").await;
    let plan = h
        .expect(200, "GET", "/novanet/v1/hosts/net-1/plan", h.admin(), None)
        .await;
    assert_eq!(plan["bridges"][0]["interface"], "eth9", "{plan}");
    let snat = &plan["gateway"]["snat"];
    assert_eq!(
        (&snat["to"], &snat["out_interface"]),
        (&json!("192.0.2.9"), &json!("eth7")),
        "{plan}"
    );
    // Another host keeps the server's configuration.
    h.expect(
        200,
        "POST",
        "/novanet/v1/hosts/compute-1/report",
        h.admin(),
        Some(json!({"network_host": false})),
    )
    .await;
}

async fn locked(h: &Harness, server: &str) -> Value {
    let headers = [("X-OpenStack-Nova-API-Version", "2.9")];
    h.send("GET", server, h.demo(), &headers, None).await.2["server"]["locked"].clone()
}

/// `lock` makes a server's lifecycle an admin's (nova's `check_instance_lock`, 409); an
/// owner lifts their own lock but not an admin's (403); 2.9 shows `locked`.
#[tokio::test]
async fn a_locked_server_is_the_admins_to_act_on() {
    let h = Harness::new("server-lock").await;
    create_network(&h, "private", "10.0.0.0/24").await;
    let id = boot(&h, h.demo(), "locked").await;
    let action = format!("/v2.1/servers/{id}/action");
    let server = format!("/v2.1/servers/{id}");
    assert_eq!(locked(&h, &server).await, json!(false));
    let act = |body: Value| Some(body);
    h.expect(202, "POST", &action, h.demo(), act(json!({"lock": null})))
        .await;
    assert_eq!(locked(&h, &server).await, json!(true));
    let v = h
        .expect(
            409,
            "POST",
            &action,
            h.demo(),
            act(json!({"os-stop": null})),
        )
        .await;
    assert!(
        fault(&v, "conflictingRequest", 409).contains("is locked"),
        "{v}"
    );
    h.expect(409, "DELETE", &server, h.demo(), None).await;
    h.expect(202, "POST", &action, h.demo(), act(json!({"unlock": null})))
        .await;
    h.expect(202, "POST", &action, h.admin(), act(json!({"lock": null})))
        .await;
    h.expect(403, "POST", &action, h.demo(), act(json!({"unlock": null})))
        .await;
    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        act(json!({"os-stop": null})),
    )
    .await;
    h.expect(
        202,
        "POST",
        &action,
        h.admin(),
        act(json!({"unlock": null})),
    )
    .await;
    assert_eq!(locked(&h, &server).await, json!(false));
    h.expect(204, "DELETE", &server, h.demo(), None).await;
}
