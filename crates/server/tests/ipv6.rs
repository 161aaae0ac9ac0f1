//! Dual stack in the API and the metadata service (issue 19): an instance's IPv6 address is
//! computed from its VIF's MAC by the configured backend and shows in the server's
//! addresses and in network_data.json; without `use_ipv6` nothing of it shows.

mod common;
use common::*;

use novanet_core::config::Config;
use novanet_core::net::Mac;
use serde_json::{json, Value};

async fn dual_stack(name: &str, use_ipv6: bool, backend: &str) -> Harness {
    let cfg = Config {
        flat_network_bridge: Some("br100".into()),
        public_endpoint: Some(format!("http://{HOST}")),
        use_ipv6,
        ipv6_backend: backend.into(),
        ..Config::default()
    };
    let mut h = Harness::over(name, USERS, cfg);
    h.admin = h.token("admin", "admin").await;
    h.demo = h.token("demo", "demo").await;
    h.expect(
        200,
        "POST",
        "/v2.1/os-networks",
        h.admin(),
        Some(json!({"network": {"label": "vmnet", "cidr": "10.0.0.0/24",
                                "cidr_v6": "fd00:1::/48", "bridge": "br100"}})),
    )
    .await;
    h
}

/// The server's entries on vmnet: (addr, version, mac).
async fn entries(h: &Harness, id: &str) -> Vec<(String, i64, String)> {
    let a = addresses(h, h.demo(), id).await;
    a["vmnet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["addr"].as_str().unwrap().to_string(),
                e["version"].as_i64().unwrap(),
                e["OS-EXT-IPS-MAC:mac_addr"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// EUI-64 written out independently of novanet's code: the MAC's first byte with the
/// universal/local bit flipped, ff:fe in the middle.
fn eui64(prefix: &str, mac: &str) -> String {
    let m = mac.parse::<Mac>().unwrap().0;
    format!(
        "{prefix}{:02x}{:02x}:{:02x}ff:fe{:02x}:{:02x}{:02x}",
        m[0] ^ 2,
        m[1],
        m[2],
        m[3],
        m[4],
        m[5]
    )
    .parse::<std::net::Ipv6Addr>()
    .unwrap()
    .to_string()
}

#[tokio::test]
async fn rfc2462_address_in_addresses_and_network_data() {
    let h = dual_stack("v6-rfc2462", true, "rfc2462").await;
    let id = boot(&h, h.demo(), "vm1").await;
    let e = entries(&h, &id).await;
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!((e[0].0.as_str(), e[0].1), ("10.0.0.2", 4));
    let want = eui64("fd00:1::", &e[0].2);
    assert_eq!((e[1].0.as_str(), e[1].1), (want.as_str(), 6), "{e:?}");
    assert_eq!(e[1].2, e[0].2);

    let inst = h.state.store.instance(&id).unwrap();
    let meta = novanet_server::metadata::build_meta(&h.state, inst).unwrap();
    let nd = &meta.network_data;
    let nets = nd["networks"].as_array().unwrap();
    assert_eq!(nets.len(), 2, "{nd}");
    assert_eq!(nets[0]["type"], "ipv4_dhcp");
    assert_eq!(nets[0]["id"], "network0");
    assert_eq!(
        nets[1],
        json!({"id": "network1", "type": "ipv6", "link": nets[0]["link"],
               "ip_address": want, "netmask": "ffff:ffff:ffff:ffff::",
               "network_id": nets[0]["network_id"],
               "routes": [{"network": "::", "netmask": "::", "gateway": "fd00:1::1"}]}),
        "{nd}"
    );
}

/// nova's account_identifier: the project's SHA-1 (first 32 bits), ff, the MAC's last three
/// bytes; shown as nova did.
#[tokio::test]
async fn account_identifier_address() {
    let h = dual_stack("v6-account", true, "account_identifier").await;
    let id = boot(&h, h.demo(), "vm1").await;
    let e = entries(&h, &id).await;
    let inst = h.state.store.instance(&id).unwrap();
    let m = e[0].2.parse::<Mac>().unwrap().0;
    let want = novanet_core::ipv6::to_global(
        novanet_core::ipv6::Backend::AccountIdentifier,
        "fd00:1::".parse().unwrap(),
        Mac(m),
        &inst.spec.project_id,
    );
    assert_eq!(e[1], (want.to_string(), 6, e[0].2.clone()));
    let seg: Vec<u16> = want.segments().to_vec();
    assert_eq!(seg[6], 0xff00 | u16::from(m[3]), "{want}");
    assert_ne!(e[1].0, eui64("fd00:1::", &e[0].2));
}

#[tokio::test]
async fn without_use_ipv6_no_v6_address() {
    let h = dual_stack("v6-off", false, "rfc2462").await;
    let id = boot(&h, h.demo(), "vm1").await;
    let e = entries(&h, &id).await;
    assert_eq!(e.len(), 1, "{e:?}");
    let inst = h.state.store.instance(&id).unwrap();
    let meta = novanet_server::metadata::build_meta(&h.state, inst).unwrap();
    let nets: &Vec<Value> = meta.network_data["networks"].as_array().unwrap();
    assert!(nets.iter().all(|n| n["type"] != "ipv6"), "{nets:?}");
}

/// Provider rules accept IPv6 ranges (both drivers render them in their v6 filters).
#[tokio::test]
async fn provider_rules_take_ipv6_ranges() {
    let h = dual_stack("v6-provider", true, "rfc2462").await;
    let v = h
        .expect(
            200,
            "POST",
            "/v2.1/os-provider-firewall-rules",
            h.admin(),
            Some(
                json!({"provider_firewall_rule": {"ip_protocol": "tcp", "from_port": 25,
                                                    "to_port": 25, "cidr": "2001:db8::/32"}}),
            ),
        )
        .await;
    assert_eq!(
        v["provider_firewall_rule"]["ip_range"]["cidr"], "2001:db8::/32",
        "{v}"
    );
}
