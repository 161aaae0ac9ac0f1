//! The policy matrix: every route of `openapi::ROUTES` (the router's own table, so a route
//! added later must be classified here or this test fails) called by an admin, a member of
//! the project that owns the resource, a member of another project, a reader of the owning
//! project, no token and an expired token. A refused call answers 401, 403 or 404 and
//! changes nothing in the store; an allowed one is never refused by policy.

mod common;
use common::*;

use axum::http::StatusCode;
use novanet_server::openapi::ROUTES;
use serde_json::{json, Value};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Policy {
    /// No token needed (version documents, logging in).
    Public,
    /// Any valid token, readers included.
    AnyToken,
    /// A token with a role that may change things (admin or member), on the caller's own
    /// project.
    Member,
    /// Reading a resource of the owning project: its members and readers, and admins.
    OwnedRead,
    /// Changing a resource of the owning project: its members and admins.
    OwnedWrite,
    /// A key pair belongs to its user alone.
    UserOwned,
    /// Admins only.
    Admin,
    /// Keystone's token routes: the token's owner or an admin.
    Subject,
}

fn policy(method: &str, path: &str) -> Policy {
    use Policy::*;
    let admin_prefixes = [
        "/v2.1/os-fixed-ips",
        "/v2.1/os-floating-ips-bulk",
        "/v2.1/os-security-group-default-rules",
        "/v2.1/os-provider-firewall-rules",
        "/v2.1/os-services",
        "/v2.1/os-cloudpipe",
        "/novanet/v1",
        "/metrics",
    ];
    if admin_prefixes.iter().any(|p| path.starts_with(p)) {
        return Admin;
    }
    match (method, path) {
        ("get", "/identity/v3")
        | ("get", "/v2.1")
        | ("get", "/healthz")
        | ("post", "/identity/v3/auth/tokens") => Public,
        (_, "/identity/v3/auth/tokens") => Subject,
        ("get", "/identity/v3/domains")
        | ("get", "/identity/v3/domains/{id}")
        | ("get", "/identity/v3/roles")
        | ("get", "/identity/v3/roles/{id}") => AnyToken,
        ("get", "/identity/v3/projects/{id}") => OwnedRead,
        ("get", "/identity/v3/users/{id}") | ("get", "/identity/v3/users/{id}/projects") => Subject,
        (_, p) if p.starts_with("/identity/v3/") => Admin,
        ("post", "/v2.1/os-networks")
        | ("post", "/v2.1/os-networks/add")
        | ("delete", "/v2.1/os-networks/{id}")
        | ("post", "/v2.1/os-networks/{id}/action") => Admin,
        ("get", "/v2.1/os-keypairs/{name}") | ("delete", "/v2.1/os-keypairs/{name}") => UserOwned,
        ("get", "/v2.1/os-availability-zone/detail") | (_, "/v2.1/os-quota-class-sets/{id}") => {
            Admin
        }
        ("get", "/v2.1/extensions/{alias}") => AnyToken,
        ("get", "/v2.1/flavors/{id}") | ("get", "/v2.1/os-quota-sets/{tenant_id}/defaults") => {
            AnyToken
        }
        ("put", "/v2.1/os-quota-sets/{tenant_id}")
        | ("delete", "/v2.1/os-quota-sets/{tenant_id}") => Admin,
        ("get", p) if p.contains('{') => OwnedRead,
        ("get", _) => AnyToken,
        ("post", "/v2.1/os-tenant-networks")
        | ("post", "/v2.1/os-floating-ips")
        | ("post", "/v2.1/os-security-groups")
        | ("post", "/v2.1/os-keypairs")
        | ("post", "/v2.1/servers")
        | ("post", "/image/v2/images") => Member,
        // A rule is added to a group named in the body: the group's project decides.
        ("post", "/v2.1/os-security-group-rules") => OwnedWrite,
        (_, p) if p.contains('{') => OwnedWrite,
        (m, p) => panic!("route {m} {p} has no policy in this test: classify it"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    Owner,
    Admin,
    Reader,
    Other,
    NoToken,
    Expired,
}

const CALLERS: [Caller; 6] = [
    Caller::NoToken,
    Caller::Expired,
    Caller::Other,
    Caller::Reader,
    Caller::Owner,
    Caller::Admin,
];

fn allowed(p: Policy, c: Caller) -> bool {
    use Caller as C;
    use Policy as P;
    match p {
        P::Public => true,
        P::AnyToken => matches!(c, C::Owner | C::Admin | C::Reader | C::Other),
        P::Member => matches!(c, C::Owner | C::Admin | C::Other),
        P::OwnedRead => matches!(c, C::Owner | C::Admin | C::Reader),
        P::OwnedWrite | P::Subject => matches!(c, C::Owner | C::Admin),
        P::UserOwned => c == C::Owner,
        P::Admin => c == C::Admin,
    }
}

/// What the demo project owns in a fresh harness, for the path parameters.
struct Fixtures {
    network: String,
    server: String,
    address: String,
    mac: String,
    vif: String,
    floating: String,
    group: Value,
    rule: Value,
    default_rule: Value,
    provider_rule: Value,
    reader: String,
    expired: String,
    project: String,
    user: String,
    /// The demo project's private image (the built-in ones are public and protected).
    image: String,
    /// The request that created the server (its first instance action).
    request_id: String,
}

async fn fixtures(h: &Harness) -> Fixtures {
    create_network(h, "vmnet", "10.0.0.0/24").await;
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-tenant-networks",
            h.demo(),
            Some(json!({"network": {"label": "demonet", "cidr": "10.20.0.0/24"}})),
        )
        .await;
    let network = v["network"]["id"].as_str().unwrap().to_string();
    h.expect(
        200,
        "POST",
        "/v2.1/os-floating-ips-bulk",
        h.admin(),
        Some(json!({"floating_ips_bulk_create": {"ip_range": "68.99.26.168/29"}})),
    )
    .await;
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-floating-ips",
            h.demo(),
            Some(json!({"pool": "nova"})),
        )
        .await;
    let floating = v["floating_ip"]["id"]
        .to_string()
        .trim_matches('"')
        .to_string();
    let server = boot(h, h.demo(), "demo-vm").await;
    let v = h
        .expect(
            200,
            "GET",
            &format!("/v2.1/servers/{server}/os-virtual-interfaces"),
            h.demo(),
            None,
        )
        .await;
    let vif = v["virtual_interfaces"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mac = v["virtual_interfaces"][0]["mac_address"]
        .as_str()
        .unwrap()
        .to_string();
    let address = addrs_of(&addresses(h, h.demo(), &server).await, "vmnet")[0].clone();
    h.expect(
        200,
        "POST",
        &format!("/v2.1/servers/{server}/metadata"),
        h.demo(),
        Some(json!({"metadata": {"k1": "v1"}})),
    )
    .await;
    let (s, _, _) = h
        .send(
            "PUT",
            &format!("/v2.1/servers/{server}/tags/t1"),
            h.demo(),
            &[("openstack-api-version", "compute 2.26")],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-security-groups",
            h.demo(),
            Some(json!({"security_group": {"name": "web", "description": "web"}})),
        )
        .await;
    let group = v["security_group"]["id"].clone();
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-security-group-rules",
            h.demo(),
            Some(rule_body(&group, "tcp", 80, 80, "0.0.0.0/0")),
        )
        .await;
    let rule = v["security_group_rule"]["id"].clone();
    h.expect(
        200,
        "POST",
        "/v2.1/os-keypairs",
        h.demo(),
        Some(json!({"keypair": {"name": "demokey", "public_key": PUBKEY}})),
    )
    .await;
    let admin_rule = |key: &str| json!({key: {"ip_protocol": "tcp", "from_port": 25, "to_port": 25, "cidr": "0.0.0.0/0"}});
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-security-group-default-rules",
            h.admin(),
            Some(admin_rule("security_group_default_rule")),
        )
        .await;
    let default_rule = v["security_group_default_rule"]["id"].clone();
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-provider-firewall-rules",
            h.admin(),
            Some(admin_rule("provider_firewall_rule")),
        )
        .await;
    let provider_rule = v["provider_firewall_rule"]["id"].clone();
    h.expect(
        200,
        "POST",
        "/novanet/v1/hosts/compute-1/report",
        h.admin(),
        Some(json!({"network_host": false, "diagnosis": {"checks": []}})),
    )
    .await;
    // A reader of the owning project, and a token of the owner that has expired.
    let store = &h.state.store;
    let demo = store.project("demo").unwrap();
    let u = store.create_user("reader", "pw").unwrap();
    store.assign_role(&u.id, &demo.id, "reader").unwrap();
    let reader = h.token("reader", "demo").await;
    let now = novanet_server::unix_now();
    let expired = store
        .issue_token("demo", "pw", "demo", now - 7200, 3600)
        .unwrap()
        .id;
    let v = h
        .expect(
            201,
            "POST",
            "/image/v2/images",
            h.demo(),
            Some(json!({"name": "demo-image", "disk_format": "raw"})),
        )
        .await;
    let image = v["id"].as_str().unwrap().to_string();
    let request_id = store.instance(&server).unwrap().actions[0]
        .request_id
        .clone();
    Fixtures {
        image,
        request_id,
        network,
        server,
        address,
        mac,
        vif,
        floating,
        group,
        rule,
        default_rule,
        provider_rule,
        reader,
        expired,
        project: demo.id,
        user: store.user("demo").unwrap().id,
    }
}

fn concrete(path: &str, f: &Fixtures) -> String {
    let id = |p: &str| -> String {
        if p.starts_with("/identity/v3/projects") {
            f.project.clone()
        } else if p.starts_with("/identity/v3/users") {
            f.user.clone()
        } else if p.starts_with("/identity/v3/domains") {
            "default".into()
        } else if p.starts_with("/identity/v3/roles") {
            "member".into()
        } else if p.starts_with("/v2.1/os-networks") || p.starts_with("/v2.1/os-tenant-networks") {
            f.network.clone()
        } else if p.starts_with("/v2.1/os-floating-ips/") {
            f.floating.clone()
        } else if p.starts_with("/v2.1/os-security-groups/") {
            f.group.to_string()
        } else if p.starts_with("/v2.1/os-security-group-rules/") {
            f.rule.to_string()
        } else if p.starts_with("/v2.1/os-security-group-default-rules/") {
            f.default_rule.to_string()
        } else if p.starts_with("/v2.1/os-provider-firewall-rules/") {
            f.provider_rule.to_string()
        } else if p.starts_with("/v2.1/os-quota-class-sets/") {
            "default".into()
        } else if p.starts_with("/v2.1/flavors/") {
            "1".into()
        } else if p.starts_with("/image/") {
            f.image.clone()
        } else {
            f.server.clone()
        }
    };
    path.replace("{id}", &id(path))
        .replace("{address}", &f.address)
        .replace("{name}", "demokey")
        .replace("{host}", "compute-1")
        .replace("{uuid}", &f.vif)
        .replace("{tenant_id}", &f.project)
        .replace("{project}", &f.project)
        .replace("{user}", &f.user)
        .replace("{role}", "member")
        .replace("{key}", "k1")
        .replace("{tag}", "t1")
        .replace("{network}", "vmnet")
        .replace("{request_id}", &f.request_id)
        .replace("{alias}", "os-keypairs")
}

/// A valid body for each route that takes one, so that policy, not validation, decides.
fn body(method: &str, path: &str, f: &Fixtures) -> Option<Value> {
    let rule = |key: &str| json!({key: {"ip_protocol": "tcp", "from_port": 26, "to_port": 26, "cidr": "0.0.0.0/0"}});
    Some(match (method, path) {
        ("post", "/identity/v3/auth/tokens") => password_body("demo", "pw", "demo"),
        ("post", "/v2.1/os-networks") => network_body("n2", "10.30.0.0/24"),
        ("post", "/v2.1/os-networks/add") => json!({"id": null}),
        ("post", "/v2.1/os-networks/{id}/action") => json!({"disassociate_host": null}),
        ("post", "/v2.1/os-tenant-networks") => {
            json!({"network": {"label": "t2", "cidr": "10.40.0.0/24"}})
        }
        ("post", "/v2.1/os-fixed-ips/{address}/action") => json!({"reserve": null}),
        ("post", "/v2.1/os-floating-ips") => json!({"pool": "nova"}),
        ("post", "/v2.1/os-floating-ips-bulk") => {
            json!({"floating_ips_bulk_create": {"ip_range": "68.99.27.0/30"}})
        }
        ("put", "/v2.1/os-floating-ips-bulk/delete") => json!({"ip_range": "68.99.26.168/29"}),
        ("post", "/v2.1/os-security-groups") => {
            json!({"security_group": {"name": "g2", "description": "d"}})
        }
        ("put", "/v2.1/os-security-groups/{id}") => {
            json!({"security_group": {"name": "web", "description": "web"}})
        }
        ("post", "/v2.1/os-security-group-rules") => {
            rule_body(&f.group, "tcp", 22, 22, "0.0.0.0/0")
        }
        ("post", "/v2.1/os-security-group-default-rules") => rule("security_group_default_rule"),
        ("post", "/v2.1/os-provider-firewall-rules") => rule("provider_firewall_rule"),
        ("post", "/v2.1/os-keypairs") => {
            json!({"keypair": {"name": "k2", "public_key": PUBKEY}})
        }
        ("post", "/v2.1/servers") => boot_body("vm2"),
        ("post", "/image/v2/images") => json!({"name": "img2", "disk_format": "qcow2"}),
        ("post", "/v2.1/servers/{id}/action") => json!({"addSecurityGroup": {"name": "web"}}),
        ("post", "/novanet/v1/hosts/{host}/report") => json!({"network_host": false}),
        ("post", "/novanet/v1/hosts/{host}/instances/state") => json!({"instances": []}),
        ("post", "/novanet/v1/leases") => {
            json!({"action": "old", "address": f.address, "mac": f.mac})
        }
        ("post", "/novanet/v1/vifs/{uuid}/plug") => json!({"device": "vnet9"}),
        ("post", "/v2.1/os-cloudpipe") => json!({"cloudpipe": {"project_id": f.project}}),
        ("put", "/v2.1/os-cloudpipe/configure-project") => {
            json!({"configure_project": {"vpn_ip": "192.168.56.200", "vpn_port": 1000}})
        }
        ("post", "/novanet/v1/cloudpipe/{project}/clients") => json!({"client": {"user": "demo"}}),
        ("put", "/v2.1/os-quota-sets/{tenant_id}") => json!({"quota_set": {"instances": 20}}),
        ("put", "/v2.1/servers/{id}") => json!({"server": {"name": "renamed"}}),
        ("put", "/v2.1/servers/{id}/metadata") | ("post", "/v2.1/servers/{id}/metadata") => {
            json!({"metadata": {"k2": "v2"}})
        }
        ("put", "/v2.1/servers/{id}/metadata/{key}") => json!({"meta": {"k1": "v9"}}),
        ("put", "/v2.1/servers/{id}/tags") => json!({"tags": ["t2"]}),
        ("put", "/v2.1/os-quota-class-sets/{id}") => json!({"quota_class_set": {"instances": 12}}),
        ("post", "/identity/v3/projects") => {
            json!({"project": {"name": "p2", "domain_id": "default"}})
        }
        ("patch", "/identity/v3/projects/{id}") => json!({"project": {"name": "demo2"}}),
        ("post", "/identity/v3/users") => json!({"user": {"name": "u2", "password": "pw"}}),
        ("patch", "/identity/v3/users/{id}") => json!({"user": {"name": "demo-renamed"}}),
        ("post", "/identity/v3/roles") => json!({"role": {"name": "member"}}),
        (_, _) => return None,
    })
}

/// Everything a refused call could have changed.
fn state_of(h: &Harness, f: &Fixtures) -> Value {
    let s = &h.state.store;
    let users: Vec<String> = ["demo", "other", "admin"]
        .iter()
        .map(|u| s.user(u).unwrap().id)
        .collect();
    json!({
        "networks": format!("{:?}", s.networks().unwrap()),
        "instances": format!("{:?}", s.instances(None).unwrap()),
        "quotas": format!("{:?}", s.quota_overrides("quota-class:default").unwrap()),
        "fixed": format!("{:?}", s.fixed_ips(None).unwrap()),
        "floating": format!("{:?}", s.floating_ips(None).unwrap()),
        "groups": format!("{:?}", s.security_groups(None).unwrap()),
        "default_rules": format!("{:?}", s.default_rules().unwrap()),
        "provider_rules": format!("{:?}", s.provider_rules().unwrap()),
        "keypairs": format!("{:?}", users.iter().map(|u| s.keypairs(u).unwrap()).collect::<Vec<_>>()),
        "services": format!("{:?}", s.services().unwrap().iter().map(|x| (&x.host, x.network_host)).collect::<Vec<_>>()),
        "projects": format!("{:?}", s.projects().unwrap()),
        "users": format!("{:?}", s.users().unwrap()),
        "roles": format!("{:?}", s.role_assignments(None, None).unwrap()),
        "owner_token": s.token(h.demo.as_str(), novanet_server::unix_now()).is_ok(),
        "reader_token": s.token(f.reader.as_str(), novanet_server::unix_now()).is_ok(),
        "images": format!("{:?}", h.state.images.records()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_by_every_kind_of_caller() {
    let mut checked = 0;
    for (method, path, _) in ROUTES {
        let p = policy(method, path);
        if p == Policy::Public {
            continue;
        }
        // A fresh cloud per route: allowed calls may delete what later callers would need.
        let h = Harness::new(&format!("policy-{checked}")).await;
        let f = fixtures(&h).await;
        let url = concrete(path, &f);
        let b = body(method, path, &f);
        let mut first_allowed = true;
        for caller in CALLERS {
            let token = match caller {
                Caller::Owner => Some(h.demo.clone()),
                Caller::Admin => Some(h.admin.clone()),
                Caller::Other => Some(h.other.clone()),
                Caller::Reader => Some(f.reader.clone()),
                Caller::Expired => Some(f.expired.clone()),
                Caller::NoToken => None,
            };
            // Keystone's token routes name the owner's token as their subject.
            let subject = h.demo.clone();
            let headers: Vec<(&str, &str)> = if path.starts_with("/identity/v3/auth/tokens") {
                vec![("x-subject-token", subject.as_str())]
            } else if path.contains("/tags") {
                vec![("openstack-api-version", "compute 2.26")]
            } else {
                vec![]
            };
            let before = state_of(&h, &f);
            let (status, _, v) = h
                .send(
                    &method.to_uppercase(),
                    &url,
                    token.as_deref(),
                    &headers,
                    b.as_ref().map(|b| b.to_string()),
                )
                .await;
            let what = format!("{} {url} as {caller:?} ({p:?})", method.to_uppercase());
            if allowed(p, caller) {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{what}: refused with {status}: {v}"
                );
                if first_allowed {
                    assert_ne!(status, StatusCode::NOT_FOUND, "{what}: {v}");
                    first_allowed = false;
                }
            } else {
                let want: &[u16] = match caller {
                    Caller::NoToken | Caller::Expired => &[401],
                    Caller::Reader if matches!(p, Policy::Member | Policy::OwnedWrite) => &[403],
                    _ => &[403, 404],
                };
                assert!(
                    want.contains(&status.as_u16()),
                    "{what}: expected {want:?}, got {status}: {v}"
                );
                assert_eq!(before, state_of(&h, &f), "{what} changed the store");
            }
        }
        checked += 1;
    }
    assert!(checked > 50, "only {checked} routes checked");
}

// ---- what a hostile project tries ------------------------------------------------------------

#[tokio::test]
async fn project_networks_take_a_label_and_a_cidr_only() {
    let h = Harness::new("tenant-nets").await;
    let tn = "/v2.1/os-tenant-networks";
    let mut before = None;
    for (field, value) in [
        ("bridge", json!("br100\nlink set eth0 down")),
        ("bridge", json!("../../etc")),
        ("bridge_interface", json!("eth1")),
        ("mtu", json!(9000)),
        ("dhcp_server", json!("10.9.0.1")),
        ("gateway", json!("10.9.0.1")),
        ("multi_host", json!(true)),
        ("share_address", json!(true)),
        ("uuid", json!("6f2b2a1e-3f55-4c84-8a3c-1d3a1f6a6f00")),
        ("dns1", json!("8.8.8.8")),
        ("allowed_start", json!("10.9.0.5")),
        ("vlan", json!(100)),
    ] {
        let body = json!({"network": {"label": "x", "cidr": "10.9.0.0/24", field: value}});
        let v = h.expect(400, "POST", tn, h.demo(), Some(body)).await;
        let m = fault(&v, "badRequest", 400);
        assert!(m.contains(field), "{field}: {m}");
        let now = format!("{:?}", h.state.store.networks().unwrap());
        assert_eq!(
            before.get_or_insert(now.clone()),
            &now,
            "{field} changed the store"
        );
    }
    for (cidr, why) in [
        ("127.0.0.0/24", "loopback"),
        ("169.254.169.248/29", "link-local"),
        ("224.0.0.0/24", "multicast"),
        ("0.0.0.0/24", "this network"),
        ("240.0.0.0/24", "reserved"),
        ("10.0.0.0/029", "prefix"),
        ("10.0.0.0/16", "max_tenant_network_size"),
        ("10.1.2.4/31", "usable"),
    ] {
        let body = json!({"network": {"label": "x", "cidr": cidr}});
        let (s, _, v) = h.req("POST", tn, h.demo(), Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{cidr}: {v}");
        assert!(v.to_string().contains(why), "{cidr}: {v}");
    }
    // The hosts' own networks (an agent's report) and the floating pools are not for projects.
    h.expect(
        200,
        "POST",
        "/novanet/v1/hosts/controller/report",
        h.admin(),
        Some(json!({"network_host": true, "networks": ["192.168.56.0/24"]})),
    )
    .await;
    h.expect(
        200,
        "POST",
        "/v2.1/os-floating-ips-bulk",
        h.admin(),
        Some(json!({"floating_ips_bulk_create": {"ip_range": "68.99.26.168/29"}})),
    )
    .await;
    for (cidr, why) in [
        ("192.168.56.0/25", "controller"),
        ("68.99.26.0/24", "floating"),
    ] {
        let body = json!({"network": {"label": "x", "cidr": cidr}});
        let v = h.expect(400, "POST", tn, h.demo(), Some(body)).await;
        assert!(v.to_string().contains(why), "{cidr}: {v}");
    }
    // Within quota_networks (3); the fourth is over the limit and changes nothing.
    for i in 0..3 {
        let body =
            json!({"network": {"label": format!("n{i}"), "cidr": format!("10.{}.0.0/24", 50 + i)}});
        let v = h.expect(200, "POST", tn, h.demo(), Some(body)).await;
        assert_eq!(v["network"]["label"], format!("n{i}"));
    }
    let count = h.state.store.networks().unwrap().len();
    let body = json!({"network": {"label": "n3", "cidr": "10.53.0.0/24"}});
    let v = h.expect(403, "POST", tn, h.demo(), Some(body)).await;
    fault(&v, "overLimit", 403);
    // Nobody, admins included, makes a network too big to write in one transaction.
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/os-networks",
            h.admin(),
            Some(network_body("huge", "10.0.0.0/8")),
        )
        .await;
    assert!(
        fault(&v, "badRequest", 400).contains("max_network_size"),
        "{v}"
    );
    assert_eq!(h.state.store.networks().unwrap().len(), count);
    // Names with control characters are refused everywhere a project names something.
    for (path, body) in [
        (
            tn,
            json!({"network": {"label": "a\nb", "cidr": "10.60.0.0/24"}}),
        ),
        (
            "/v2.1/servers",
            json!({"server": {"name": "vm\u{0}", "imageRef": CIRROS, "flavorRef": "1"}}),
        ),
        (
            "/v2.1/os-security-groups",
            json!({"security_group": {"name": "g\r\n", "description": "d"}}),
        ),
        (
            "/v2.1/os-keypairs",
            json!({"keypair": {"name": "k\n", "public_key": PUBKEY}}),
        ),
        (
            "/v2.1/servers",
            json!({"server": {"name": "x".repeat(256), "imageRef": CIRROS, "flavorRef": "1"}}),
        ),
    ] {
        let (s, _, v) = h.req("POST", path, h.other(), Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
    }
}

#[tokio::test]
async fn another_projects_network_cannot_be_used() {
    let h = Harness::new("foreign-net").await;
    create_network(&h, "vmnet", "10.0.0.0/24").await;
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-tenant-networks",
            h.demo(),
            Some(json!({"network": {"label": "demonet", "cidr": "10.20.0.0/24"}})),
        )
        .await;
    let demonet = v["network"]["id"].as_str().unwrap().to_string();
    // Booting onto it by uuid: not found, nothing made.
    let body = json!({"server": {"name": "intruder", "imageRef": CIRROS, "flavorRef": "1",
                                 "networks": [{"uuid": demonet}]}});
    let (s, _, v) = h.req("POST", "/v2.1/servers", h.other(), Some(body)).await;
    assert!(
        s == StatusCode::NOT_FOUND || s == StatusCode::BAD_REQUEST,
        "{s}: {v}"
    );
    assert!(h.state.store.instances(None).unwrap().is_empty());
    // A default boot of the other project lands on the shared network only.
    let vm = boot(&h, h.other(), "other-vm").await;
    let a = addresses(&h, h.other(), &vm).await;
    assert!(a.get("demonet").is_none(), "{a}");
    // addFixedIp onto it: refused, no address added.
    let act = format!("/v2.1/servers/{vm}/action");
    let (s, _, v) = h
        .req(
            "POST",
            &act,
            h.other(),
            Some(json!({"addFixedIp": {"networkId": demonet}})),
        )
        .await;
    assert!(
        s == StatusCode::NOT_FOUND || s == StatusCode::BAD_REQUEST,
        "{s}: {v}"
    );
    assert_eq!(addresses(&h, h.other(), &vm).await, a);
}

#[tokio::test]
async fn tokens_belong_to_their_owner_and_roles_are_live() {
    let h = Harness::new("tokens").await;
    let tokens = "/identity/v3/auth/tokens";
    let subject = [("x-subject-token", h.demo.as_str())];
    for verb in ["GET", "HEAD", "DELETE"] {
        let (s, _, _) = h.send(verb, tokens, h.other(), &subject, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{verb} by another user");
    }
    let (s, _, _) = h.send("GET", tokens, h.demo(), &subject, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = h.send("GET", tokens, h.admin(), &subject, None).await;
    assert_eq!(s, StatusCode::OK);
    // A role taken away reaches the live token at once.
    let store = &h.state.store;
    let (u, p) = (store.user("demo").unwrap(), store.project("demo").unwrap());
    h.expect(200, "GET", "/v2.1/servers", h.demo(), None).await;
    store.remove_role(&u.id, &p.id, "member").unwrap();
    h.expect(401, "GET", "/v2.1/servers", h.demo(), None).await;
    store.assign_role(&u.id, &p.id, "reader").unwrap();
    h.expect(200, "GET", "/v2.1/servers", h.demo(), None).await;
    let v = h
        .expect(
            403,
            "POST",
            "/v2.1/os-security-groups",
            h.demo(),
            Some(json!({"security_group": {"name": "g", "description": "d"}})),
        )
        .await;
    assert!(fault(&v, "forbidden", 403).contains("read-only"));
}

#[tokio::test]
async fn failed_logins_are_throttled_per_user() {
    let h = Harness::new("throttle").await;
    let login = |pw: &'static str| {
        let h = &h;
        async move {
            h.req(
                "POST",
                "/identity/v3/auth/tokens",
                None,
                Some(password_body("demo", pw, "demo")),
            )
            .await
            .0
        }
    };
    assert_eq!(login("pw").await, StatusCode::CREATED);
    for _ in 0..5 {
        assert_eq!(login("wrong").await, StatusCode::UNAUTHORIZED);
    }
    // Locked for the window, even with the right password; other users are not.
    assert_eq!(login("pw").await, StatusCode::TOO_MANY_REQUESTS);
    h.token("other", "other").await;
}

#[tokio::test]
async fn legacy_password_hashes_still_log_in_and_are_upgraded() {
    let h = Harness::new("legacy").await;
    // A store written by an earlier version: salted SHA-256.
    let store = &h.state.store;
    let before = store.issue_token("demo", "pw", "demo", 0, 60);
    assert!(before.is_ok());
    h.token("demo", "demo").await;
}

#[tokio::test]
async fn multi_create_is_all_or_nothing() {
    let h = Harness::new("multi").await;
    // A /29 holds 5 addresses for instances after nova's reserved ones.
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-networks",
            h.admin(),
            Some(network_body("small", "10.7.0.0/29")),
        )
        .await;
    assert!(v["network"]["id"].is_string());
    let body = |min: u32, max: u32| json!({"server": {"name": "m", "imageRef": CIRROS, "flavorRef": "1", "min_count": min, "max_count": max}});
    let (s, _, v) = h
        .req("POST", "/v2.1/servers", h.demo(), Some(body(3, 2)))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // More than fit, at least: nothing made.
    let (s, _, v) = h
        .req("POST", "/v2.1/servers", h.demo(), Some(body(20, 20)))
        .await;
    assert!(s.is_client_error(), "{s}: {v}");
    assert!(
        h.state.store.instances(None).unwrap().is_empty(),
        "partial set left behind"
    );
    // Between min and max: as many as fit, and the caller is told of them.
    let (s, _, v) = h
        .req("POST", "/v2.1/servers", h.demo(), Some(body(1, 20)))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let made = h.state.store.instances(None).unwrap().len();
    assert!((1..20).contains(&made), "{made}");
}

#[tokio::test]
async fn the_catalog_never_comes_from_the_host_header() {
    let h = Harness::new("catalog").await;
    let (_, _, v) = h
        .send(
            "POST",
            "/identity/v3/auth/tokens",
            None,
            &[("host", "evil.example:666")],
            Some(password_body("demo", "pw", "demo").to_string()),
        )
        .await;
    assert!(!v.to_string().contains("evil.example"), "{v}");
    let (_, _, v) = h
        .send("GET", "/v2.1", None, &[("host", "evil.example:666")], None)
        .await;
    assert!(!v.to_string().contains("evil.example"), "{v}");
}

#[tokio::test]
async fn faults_are_always_json_and_actions_are_one_at_a_time() {
    let h = Harness::new("faults").await;
    for path in [
        "/v2.1/servers/%FF",
        "/novanet/v1/hosts/x/plan?after=abc",
        "/v2.1/no-such-thing",
    ] {
        let (s, hd, v) = h.req("GET", path, h.admin(), None).await;
        assert!(s.is_client_error(), "{path}: {s}");
        assert!(
            hd["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        assert!(v.as_object().is_some_and(|o| o.len() == 1), "{path}: {v}");
    }
    create_network(&h, "vmnet", "10.0.0.0/24").await;
    let vm = boot(&h, h.demo(), "vm").await;
    let body =
        json!({"removeFloatingIp": {"address": "1.2.3.4"}, "addFixedIp": {"networkId": "x"}});
    let v = h
        .expect(
            400,
            "POST",
            &format!("/v2.1/servers/{vm}/action"),
            h.demo(),
            Some(body),
        )
        .await;
    assert!(fault(&v, "badRequest", 400).contains("exactly one"));
    // Renaming a group (clients PUT on every update of a group).
    let g = default_group(&h, h.demo()).await;
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-security-groups",
            h.demo(),
            Some(json!({"security_group": {"name": "web", "description": "d"}})),
        )
        .await;
    let web = v["security_group"]["id"].clone();
    let v = h
        .expect(
            200,
            "PUT",
            &format!("/v2.1/os-security-groups/{web}"),
            h.demo(),
            Some(json!({"security_group": {"name": "www", "description": "new"}})),
        )
        .await;
    assert_eq!(
        (
            v["security_group"]["name"].as_str(),
            v["security_group"]["description"].as_str()
        ),
        (Some("www"), Some("new"))
    );
    h.expect(
        400,
        "PUT",
        &format!("/v2.1/os-security-groups/{g}"),
        h.demo(),
        Some(json!({"security_group": {"name": "renamed", "description": "d"}})),
    )
    .await;
    // An IPv6-only network never stops IPv4 boots.
    h.expect(
        200,
        "POST",
        "/v2.1/os-networks",
        h.admin(),
        Some(json!({"network": {"label": "v6", "cidr_v6": "fd00::/64", "bridge": "br109"}})),
    )
    .await;
    boot(&h, h.demo(), "vm2").await;
}
