//! `os-cloudpipe` and novanet's client configuration routes over a VLAN cloud: the VPN
//! instance takes its network's VPN address with a `PROJECT-vpn` group and its server's
//! certificates in its user data; the states; configure; a user's `.ovpn` and revocation;
//! the CRL from the metadata service.

mod common;
use common::*;

use base64::Engine;
use serde_json::json;

async fn demo_project(h: &Harness) -> String {
    h.state.store.project("demo").unwrap().id
}

/// `POST /os-cloudpipe` for the project: the VPN instance's ID.
async fn create_vpn(h: &Harness, project: &str) -> String {
    let body = json!({"cloudpipe": {"project_id": project}});
    let v = h
        .expect(200, "POST", "/v2.1/os-cloudpipe", h.admin(), Some(body))
        .await;
    v["instance_id"].as_str().unwrap().to_string()
}

fn project_network(h: &Harness, project: &str) -> novanet_core::model::Network {
    h.state
        .store
        .networks()
        .unwrap()
        .into_iter()
        .find(|n| n.project_id.as_deref() == Some(project))
        .expect("the project's network")
}

#[tokio::test]
async fn cloudpipe_create_boots_the_vpn_instance_on_the_vpn_address() {
    let h = Harness::vlan("cloudpipe-create", "10.0.0.0/24").await;
    let project = demo_project(&h).await;
    let v = h
        .expect(200, "GET", "/v2.1/os-cloudpipe", h.admin(), None)
        .await;
    assert_eq!(v, json!({"cloudpipes": []}), "no project has a network yet");
    let id = create_vpn(&h, &project).await;
    // Asked again: the same instance.
    assert_eq!(create_vpn(&h, &project).await, id);
    let inst = h.state.store.instance(&id).unwrap();
    assert_eq!(inst.spec.name, format!("{project}-vpn"));
    assert_eq!(inst.spec.project_id, project);
    let addrs = h.state.store.instance_addresses(&id).unwrap();
    let net = project_network(&h, &project);
    assert_eq!(
        Some(addrs[0].address.clone()),
        net.vpn_private_address,
        "on the network's VPN address"
    );
    let groups = h.state.store.instance_security_groups(&id).unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, format!("{project}-vpn"));
    let mut rules: Vec<_> = groups[0]
        .rules
        .iter()
        .map(|r| (r.protocol.clone(), r.from_port, r.to_port))
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        vec![
            (Some("icmp".into()), Some(-1), Some(-1)),
            (Some("udp".into()), Some(1194), Some(1194)),
        ]
    );
    let script = base64::engine::general_purpose::STANDARD
        .decode(inst.spec.user_data.as_deref().unwrap())
        .unwrap();
    let script = String::from_utf8(script).unwrap();
    assert!(script.starts_with("#!/bin/sh\n"));
    assert!(script.contains("BEGIN CERTIFICATE") && script.contains("PRIVATE KEY"));
    assert!(script.contains("push \"route 10.0.0.0 255.255.255.0\""));
    // Nothing answers OpenVPN at 127.0.0.1:1000: down.
    let v = h
        .expect(200, "GET", "/v2.1/os-cloudpipe", h.admin(), None)
        .await;
    let cp = &v["cloudpipes"][0];
    assert_eq!(cp["project_id"], project.as_str());
    assert_eq!(cp["instance_id"], id.as_str());
    assert_eq!(cp["internal_ip"], addrs[0].address.as_str());
    assert_eq!(
        (cp["public_ip"].clone(), cp["public_port"].clone()),
        (json!("127.0.0.1"), json!(1000))
    );
    assert_eq!(cp["state"], "down");
    // Deleted: pending, and the address can be taken again by the next VPN instance.
    h.expect(
        204,
        "DELETE",
        &format!("/v2.1/servers/{id}"),
        h.admin(),
        None,
    )
    .await;
    let v = h
        .expect(200, "GET", "/v2.1/os-cloudpipe", h.admin(), None)
        .await;
    assert_eq!(v["cloudpipes"][0]["state"], "pending");
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-cloudpipe",
            h.admin(),
            Some(json!({"cloudpipe": {"project_id": project}})),
        )
        .await;
    assert_ne!(v["instance_id"], id.as_str());
    // Another project: no network left to claim.
    let other = h.state.store.project("other").unwrap().id;
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/os-cloudpipe",
            h.admin(),
            Some(json!({"cloudpipe": {"project_id": other}})),
        )
        .await;
    assert!(fault(&v, "badRequest", 400).contains("Unable to claim IP for VPN"));
    // A project name that could steer openssl: refused by name, nothing made.
    let before = h.state.store.instances(None).unwrap().len();
    let v = h
        .expect(
            400,
            "POST",
            "/v2.1/os-cloudpipe",
            h.admin(),
            Some(json!({"cloudpipe": {"project_id": "x/CN=evil"}})),
        )
        .await;
    assert!(fault(&v, "badRequest", 400).contains("project_id"));
    assert_eq!(h.state.store.instances(None).unwrap().len(), before);
    // Members may not.
    h.expect(403, "GET", "/v2.1/os-cloudpipe", h.demo(), None)
        .await;
}

#[tokio::test]
async fn configure_sets_the_public_endpoint_and_checks_it() {
    let h = Harness::vlan("cloudpipe-configure", "10.0.0.0/24").await;
    let project = demo_project(&h).await;
    h.expect(
        200,
        "POST",
        "/v2.1/os-cloudpipe",
        h.admin(),
        Some(json!({"cloudpipe": {"project_id": project}})),
    )
    .await;
    // configure-project acts on the caller's project: an admin of demo.
    h.state
        .store
        .assign_role(&h.state.store.user("admin").unwrap().id, &project, "admin")
        .unwrap();
    let admin_of_demo = h.token("admin", "demo").await;
    let path = "/v2.1/os-cloudpipe/configure-project";
    for (body, field) in [
        (
            json!({"configure_project": {"vpn_ip": "1.2.3", "vpn_port": 1000}}),
            "vpn_ip",
        ),
        (
            json!({"configure_project": {"vpn_ip": "198.51.100.7", "vpn_port": 0}}),
            "vpn_port",
        ),
    ] {
        let v = h
            .expect(400, "PUT", path, Some(&admin_of_demo), Some(body))
            .await;
        assert!(fault(&v, "badRequest", 400).contains(field));
    }
    let v = h
        .expect(
            400,
            "PUT",
            "/v2.1/os-cloudpipe/other",
            Some(&admin_of_demo),
            Some(json!({"configure_project": {"vpn_ip": "198.51.100.7", "vpn_port": 1194}})),
        )
        .await;
    assert!(fault(&v, "badRequest", 400).contains("configure-project"));
    h.expect(
        202,
        "PUT",
        path,
        Some(&admin_of_demo),
        Some(json!({"configure_project": {"vpn_ip": "198.51.100.7", "vpn_port": "1194"}})),
    )
    .await;
    let v = h
        .expect(200, "GET", "/v2.1/os-cloudpipe", h.admin(), None)
        .await;
    let cp = &v["cloudpipes"][0];
    assert_eq!(
        (cp["public_ip"].clone(), cp["public_port"].clone()),
        (json!("198.51.100.7"), json!(1194))
    );
}

#[tokio::test]
async fn a_user_gets_a_ready_ovpn_and_loses_it_when_revoked() {
    let h = Harness::vlan("cloudpipe-clients", "10.0.0.0/24").await;
    let project = demo_project(&h).await;
    let clients = format!("/novanet/v1/cloudpipe/{project}/clients");
    // No network for the project yet.
    h.expect(
        409,
        "POST",
        &clients,
        h.admin(),
        Some(json!({"client": {"user": "demo"}})),
    )
    .await;
    h.expect(
        200,
        "POST",
        "/v2.1/os-cloudpipe",
        h.admin(),
        Some(json!({"cloudpipe": {"project_id": project}})),
    )
    .await;
    let v = h
        .expect(
            200,
            "POST",
            &clients,
            h.admin(),
            Some(json!({"client": {"user": "demo"}})),
        )
        .await;
    let ovpn = v["client"]["ovpn"].as_str().unwrap().to_string();
    assert!(ovpn.contains("\nremote 127.0.0.1 1000\n"), "{ovpn}");
    for part in [
        "<ca>\n-----BEGIN CERTIFICATE-----",
        "<cert>\n-----BEGIN CERTIFICATE-----",
        "<key>\n-----BEGIN PRIVATE KEY-----",
    ] {
        assert!(ovpn.contains(part), "{part} in {ovpn}");
    }
    // The same pair until revoked.
    let same = h
        .expect(
            200,
            "POST",
            &clients,
            h.admin(),
            Some(json!({"client": {"user": "demo"}})),
        )
        .await;
    assert_eq!(same["client"]["ovpn"], ovpn.as_str());
    let v = h
        .expect(
            400,
            "POST",
            &clients,
            h.admin(),
            Some(json!({"client": {"user": "demo/../x"}})),
        )
        .await;
    assert!(fault(&v, "badRequest", 400).contains("user"));
    // The CRL a VPN instance fetches: before and after the revocation.
    let crl_before = h.state.ca.crl().unwrap();
    let v = h
        .expect(200, "DELETE", &format!("{clients}/demo"), h.admin(), None)
        .await;
    assert_eq!(v, json!({"revoked": true}));
    let v = h
        .expect(200, "DELETE", &format!("{clients}/demo"), h.admin(), None)
        .await;
    assert_eq!(v, json!({"revoked": false}));
    assert_ne!(h.state.ca.crl().unwrap(), crl_before);
    let renewed = h
        .expect(
            200,
            "POST",
            &clients,
            h.admin(),
            Some(json!({"client": {"user": "demo"}})),
        )
        .await;
    assert_ne!(renewed["client"]["ovpn"], ovpn.as_str());
    h.expect(
        403,
        "POST",
        &clients,
        h.demo(),
        Some(json!({"client": {"user": "demo"}})),
    )
    .await;
}

/// The VPN instance's address is released when it is deleted (the network host's delta
/// carries the release), and the old VIF's lease, still renewed by a guest that outlived
/// its record, is not taken for the next VPN instance's.
#[tokio::test]
async fn a_deleted_vpn_instance_releases_its_address_to_the_next_one() {
    let h = Harness::vlan("cloudpipe-release", "10.0.0.0/24").await;
    let project = demo_project(&h).await;
    let id = create_vpn(&h, &project).await;
    let store = &h.state.store;
    let net = project_network(&h, &project);
    let vpn = net.vpn_private_address.clone().unwrap();
    let update = novanet_store::NetworkUpdate {
        host: Some(Some("net-1".into())),
        ..Default::default()
    };
    store.update_network(&net.uuid, &update).unwrap();
    let old_mac = store.instance_addresses(&id).unwrap()[0].mac.clone();
    let lease = |action: &str, mac: &str| json!({"action": action, "address": vpn, "mac": mac});
    h.expect(
        200,
        "POST",
        "/novanet/v1/leases",
        h.admin(),
        Some(lease("add", &old_mac)),
    )
    .await;
    let held = h
        .expect(
            200,
            "GET",
            "/novanet/v1/hosts/net-1/plan?epoch=0&after=0&wait=0",
            h.admin(),
            None,
        )
        .await;
    let (epoch, g) = (
        held["epoch"].as_u64().unwrap(),
        held["generation"].as_u64().unwrap(),
    );
    h.expect(
        204,
        "DELETE",
        &format!("/v2.1/servers/{id}"),
        h.admin(),
        None,
    )
    .await;
    let d = h
        .expect(
            200,
            "GET",
            &format!("/novanet/v1/hosts/net-1/plan?epoch={epoch}&after={g}&wait=1&form=delta"),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(
        d["deltas"][0]["releases"][0]["insert"],
        json!([{"address": vpn, "bridge": "br100", "mac": old_mac}]),
        "{d}"
    );
    h.expect(
        200,
        "POST",
        "/novanet/v1/leases",
        h.admin(),
        Some(lease("del", &old_mac)),
    )
    .await;
    let next = create_vpn(&h, &project).await;
    assert_eq!(store.instance_addresses(&next).unwrap()[0].address, vpn);
    let v = h
        .expect(
            200,
            "POST",
            "/novanet/v1/leases",
            h.admin(),
            Some(lease("old", &old_mac)),
        )
        .await;
    assert_eq!(v["changed"], false, "the old VIF's renewal");
    assert!(!store.fixed_ip(&vpn).unwrap().fixed.leased);
}
