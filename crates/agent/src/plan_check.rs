//! The agent trusts no plan: every value in it is parsed again into the validated types of
//! `novanet_core::valid` (the plan's own types), one entry at a time, so that an entry a
//! store written by an older version or by hand got wrong is refused and logged while the
//! rest of the host keeps running.

use std::collections::BTreeSet;

use novanet_core::firewall::{MetadataRedirect, MetadataV6, ServedNetwork, SourceNat, VpnForward};
use novanet_core::plan::{
    BridgePlan, DhcpPlan, DhcpRelease, FloatingBinding, HostPlan, InstanceSecurity, RaPlan, SgRule,
};
use novanet_core::valid::{CidrText, IfName, Ipv4Text, Ipv6Text};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{AgentError, Result};

/// Keeps the elements of the array at `v[key]` that parse as `T`; says why for the rest.
fn keep_valid<T: DeserializeOwned>(v: &mut Value, key: &str, refused: &mut Vec<String>) {
    let Some(items) = v.get_mut(key).and_then(Value::as_array_mut) else {
        return;
    };
    items.retain(|item| match serde_json::from_value::<T>(item.clone()) {
        Ok(_) => true,
        Err(e) => {
            let net = item
                .get("network_uuid")
                .and_then(Value::as_str)
                .map(|u| format!(" (network {u})"))
                .unwrap_or_default();
            refused.push(format!("{key} entry{net}: {e}"));
            false
        }
    });
}

/// Drops the object at `v[key]` (it becomes null: none) unless it parses as `T`.
fn keep_valid_one<T: DeserializeOwned>(v: &mut Value, key: &str, refused: &mut Vec<String>) {
    let Some(item) = v.get_mut(key).filter(|i| !i.is_null()) else {
        return;
    };
    if let Err(e) = serde_json::from_value::<T>(item.clone()) {
        refused.push(format!("{key}: {e}"));
        *item = Value::Null;
    }
}

/// Parses a host plan as the server sent it: what is valid, and one line per part refused
/// (the server's own refusals first, `server: ` before each).
/// A network whose bridge was refused loses its DHCP server too. Only a plan whose frame
/// (host, generation, driver) does not parse is an error.
pub fn parse_plan(mut v: Value) -> Result<(HostPlan, Vec<String>)> {
    let mut refused: Vec<String> = v
        .get("refused")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(|s| format!("server: {s}"))
                .collect()
        })
        .unwrap_or_default();
    let uuids = |v: &Value, key: &str| -> BTreeSet<String> {
        v.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|b| b.get("network_uuid").and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    };
    let all_bridges = uuids(&v, "bridges");
    keep_valid::<BridgePlan>(&mut v, "bridges", &mut refused);
    let kept_bridges = uuids(&v, "bridges");
    for key in ["dhcp", "ra"] {
        if let Some(list) = v.get_mut(key).and_then(Value::as_array_mut) {
            list.retain(|d| {
                let u = d.get("network_uuid").and_then(Value::as_str).unwrap_or("");
                !all_bridges.contains(u) || kept_bridges.contains(u)
            });
        }
    }
    keep_valid::<DhcpPlan>(&mut v, "dhcp", &mut refused);
    keep_valid::<RaPlan>(&mut v, "ra", &mut refused);
    keep_valid::<FloatingBinding>(&mut v, "floating", &mut refused);
    keep_valid::<DhcpRelease>(&mut v, "releases", &mut refused);
    if let Some(gw) = v.get_mut("gateway") {
        keep_valid::<IfName>(gw, "forward", &mut refused);
        keep_valid::<ServedNetwork>(gw, "served", &mut refused);
        keep_valid::<CidrText>(gw, "dmz", &mut refused);
        keep_valid_one::<SourceNat>(gw, "snat", &mut refused);
        keep_valid_one::<MetadataRedirect>(gw, "metadata", &mut refused);
        keep_valid::<VpnForward>(gw, "vpn", &mut refused);
        keep_valid_one::<MetadataV6>(gw, "metadata_v6", &mut refused);
    }
    if let Some(sec) = v.get_mut("security") {
        keep_valid::<InstanceSecurity>(sec, "instances", &mut refused);
        keep_valid::<SgRule>(sec, "provider_rules", &mut refused);
        if let Some(groups) = sec.get_mut("group_members").and_then(Value::as_object_mut) {
            for (g, members) in groups.iter_mut() {
                if let Some(m) = members.as_array_mut() {
                    m.retain(|a| {
                        let ok = serde_json::from_value::<Ipv4Text>(a.clone()).is_ok();
                        if !ok {
                            refused.push(format!("member {a} of group {g}: not an IPv4 address"));
                        }
                        ok
                    });
                }
            }
        }
        if let Some(groups) = sec
            .get_mut("group_members_v6")
            .and_then(Value::as_object_mut)
        {
            for (g, members) in groups.iter_mut() {
                if let Some(m) = members.as_array_mut() {
                    m.retain(|a| {
                        let ok = serde_json::from_value::<Ipv6Text>(a.clone()).is_ok();
                        if !ok {
                            refused.push(format!("member {a} of group {g}: not an IPv6 address"));
                        }
                        ok
                    });
                }
            }
        }
    }
    // The server's own refusals stay in the plan as it sent them (deltas are over that
    // plan); they are also in the lines returned.
    let plan: HostPlan =
        serde_json::from_value(v).map_err(|e| AgentError::Server(format!("bad host plan: {e}")))?;
    Ok((plan, refused))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan_with(bridge: &str) -> Value {
        json!({
            "host": "controller", "generation": 3, "firewall_driver": "nftables",
            "bridges": [
                {"network_uuid": "good", "name": "br100", "interface": "eth2", "gateway": "10.0.0.1/24",
                 "broadcast": "10.0.0.255", "vlan": null, "mtu": null},
                {"network_uuid": "bad", "name": bridge, "interface": null, "gateway": null,
                 "broadcast": null, "vlan": null, "mtu": null},
            ],
            "dhcp": [
                {"network_uuid": "bad", "network_id": 2, "label": "x", "bridge": "br101",
                 "listen_address": "10.1.0.1", "dhcp_start": "10.1.0.2", "netmask": "255.255.255.0",
                 "gateway": "10.1.0.1", "lease_time": 120, "lease_max": 256, "domain": "novalocal",
                 "conf_file": "", "dns_servers": [], "mtu": null, "hosts": []},
            ],
            "gateway": {"forward": ["br100", bridge], "served": [], "snat": null, "dmz": [],
                        "metadata": null},
            "floating": [], "releases": [], "ip_forward": true,
        })
    }

    #[test]
    fn a_hostile_bridge_is_refused_and_the_rest_applies() {
        for hostile in [
            "br101\nlink set eth0 down",
            "../../etc",
            "eth0 master x",
            "",
            "waytoolongbridgename",
        ] {
            let (plan, refused) = parse_plan(plan_with(hostile)).unwrap();
            assert_eq!(plan.bridges.len(), 1, "{hostile:?}");
            assert_eq!(plan.bridges[0].name, "br100");
            assert!(plan.dhcp.is_empty(), "the refused network's DHCP goes too");
            assert_eq!(plan.gateway.forward.len(), 1);
            assert_eq!(refused.len(), 2, "{refused:?}");
            assert!(refused[0].contains("network bad"), "{refused:?}");
        }
    }

    #[test]
    fn a_valid_plan_is_kept_whole() {
        let (plan, refused) = parse_plan(plan_with("br101")).unwrap();
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!((plan.bridges.len(), plan.dhcp.len()), (2, 1));
    }

    /// Each part of the gateway's intent is checked on its own: a bad one goes, with a
    /// line saying why, and the rest applies.
    #[test]
    fn a_hostile_gateway_part_is_refused_and_the_rest_applies() {
        let mut v = plan_with("br101");
        v["gateway"] = json!({
            "forward": ["br100"],
            "served": [
                {"bridge": "br100", "cidr": "10.0.0.0/24", "serves_dhcp": true},
                {"bridge": "br101", "cidr": "10.1.0.0/24 EVIL", "serves_dhcp": false},
            ],
            "snat": {"to": "192.168.56.200;reboot", "out_interface": "eth1"},
            "dmz": ["10.128.0.0/24", "10.128.0.0/40"],
            "metadata": {"host": "192.168.56.200", "port": 0},
            "vpn": [
                {"public": "192.168.56.200", "port": 1000, "private": "10.0.0.2"},
                {"public": "192.168.56.200", "port": 1001, "private": "10.0.1.2 -j ACCEPT"},
            ],
        });
        let (plan, refused) = parse_plan(v).unwrap();
        let g = &plan.gateway;
        assert_eq!(g.forward.len(), 1);
        assert_eq!(g.served.len(), 1);
        assert_eq!(g.served[0].cidr, "10.0.0.0/24");
        assert_eq!(g.dmz.len(), 1);
        assert!(g.snat.is_none() && g.metadata.is_none());
        assert_eq!(g.vpn.len(), 1);
        assert_eq!(refused.len(), 5, "{refused:?}");
        let (good, refused) = parse_plan(json!({
            "host": "controller", "generation": 3, "firewall_driver": "iptables",
            "bridges": [], "dhcp": [], "floating": [], "releases": [], "ip_forward": true,
            "gateway": {"forward": [], "served": [], "dmz": [],
                        "snat": {"to": "192.168.56.200", "out_interface": null},
                        "metadata": {"host": "127.0.0.1", "port": 8775}},
        }))
        .unwrap();
        assert!(refused.is_empty(), "{refused:?}");
        assert!(good.gateway.snat.is_some());
        assert!(good.gateway.metadata.as_ref().is_some_and(|m| m.is_local()));
    }

    /// Dual stack parts: a hostile bridge in the IPv6 metadata DNAT or a member that is no
    /// IPv6 address goes, with a line saying why; the rest applies.
    #[test]
    fn hostile_ipv6_parts_are_refused() {
        let mut v = plan_with("br101");
        v["gateway"]["metadata_v6"] = json!({"bridges": ["br100", "br1;x"], "port": 9697});
        v["security"] = json!({
            "allow_same_net": true, "instances": [], "group_members": {},
            "group_members_v6": {"4": ["fd00:1::f816:3eff:fe00:4", "fd00::1 -j ACCEPT"]},
        });
        let (plan, refused) = parse_plan(v).unwrap();
        assert!(plan.gateway.metadata_v6.is_none());
        assert_eq!(
            plan.security.group_members_v6[&4],
            [Ipv6Text::new("fd00:1::f816:3eff:fe00:4").unwrap()]
        );
        assert!(
            refused.iter().any(|r| r.contains("metadata_v6")),
            "{refused:?}"
        );
        assert!(
            refused.iter().any(|r| r.contains("not an IPv6 address")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_broken_frame_is_an_error() {
        assert!(parse_plan(json!({"host": 1})).is_err());
    }
}
