//! Project segments of VLAN networks (`novanet_core::segment`): the 802.1Q or VXLAN device of
//! each planned bridge, made before the bridge enslaves it, and the VXLAN flood list (the
//! all-zero FDB entries of head-end replication). Devices this agent made and no plan has any
//! more are removed; others are never touched.

use std::collections::{BTreeMap, BTreeSet};

use novanet_core::plan::BridgePlan;
use novanet_core::segment::{Segment, VXLAN_OVERHEAD};
use serde::Deserialize;

use crate::links::Link;
use crate::sys::{run, AgentError, Result};

/// The destination of flooded frames in a VXLAN FDB.
const FLOOD_MAC: &str = "00:00:00:00:00:00";

/// The `ip -batch` lines that make, adopt and remove segment devices. A device that already
/// exists with the planned name is adopted as it is (an agent restart changes nothing).
pub fn link_commands(
    links: &BTreeMap<String, Link>,
    bridges: &[BridgePlan],
    owned: &BTreeSet<String>,
) -> Vec<String> {
    let mut cmds = Vec::new();
    for (b, seg) in bridges
        .iter()
        .filter_map(|b| b.segment.as_ref().map(|s| (b, s)))
    {
        let dev = seg.device();
        let mtu = device_mtu(b, seg);
        if let Some(l) = links.get(dev.as_str()) {
            if let Some(mtu) = mtu {
                if l.mtu != Some(mtu) {
                    cmds.push(format!("link set {dev} mtu {mtu}"));
                }
            }
            continue;
        }
        match seg {
            Segment::Vlan { parent, id } => {
                if !links.contains_key(parent.as_str()) {
                    // Said by `problems`; nothing to put the VLAN on yet.
                    continue;
                }
                if !links[parent.as_str()].flags.iter().any(|f| f == "UP") {
                    cmds.push(format!("link set {parent} up"));
                }
                // The VLAN device takes its parent's MTU, as nova's did.
                cmds.push(format!(
                    "link add link {parent} name {dev} type vlan id {id}"
                ));
            }
            Segment::Vxlan {
                id, local, port, ..
            } => {
                cmds.push(format!(
                    "link add {dev} type vxlan id {id} local {local} dstport {port}"
                ));
            }
        }
        if let Some(mtu) = mtu {
            cmds.push(format!("link set {dev} mtu {mtu}"));
        }
        cmds.push(format!("link set {dev} up"));
    }
    let wanted: BTreeSet<String> = bridges
        .iter()
        .filter_map(|b| b.segment.as_ref())
        .map(|s| s.device().to_string())
        .collect();
    for old in owned.iter().filter(|o| !wanted.contains(*o)) {
        if links.contains_key(old) && Segment::is_device_name(old) {
            cmds.push(format!("link del {old}"));
        }
    }
    cmds
}

/// The MTU a segment device must have: the network's; a VXLAN device without one leaves
/// room for its encapsulation in a 1500-byte underlay (the kernel would say 1500 and
/// fragment every full frame).
fn device_mtu(b: &BridgePlan, seg: &Segment) -> Option<u32> {
    match seg {
        Segment::Vlan { .. } => b.mtu.map(|m| m.get()),
        Segment::Vxlan { .. } => Some(
            b.mtu
                .map_or(novanet_core::valid::ETHERNET_MTU - VXLAN_OVERHEAD, |m| {
                    m.get()
                }),
        ),
    }
}

/// The segment devices a plan has, to remember as this agent's own.
pub fn planned_devices(bridges: &[BridgePlan]) -> BTreeSet<String> {
    bridges
        .iter()
        .filter_map(|b| b.segment.as_ref())
        .map(|s| s.device().to_string())
        .collect()
}

/// What the plan's segments need that the host does not give, one line each: a missing VLAN
/// parent, or an underlay whose MTU leaves guests less than the network promises them.
pub fn problems(links: &BTreeMap<String, Link>, bridges: &[BridgePlan]) -> Vec<String> {
    let mut out = Vec::new();
    for (b, seg) in bridges
        .iter()
        .filter_map(|b| b.segment.as_ref().map(|s| (b, s)))
    {
        match seg {
            Segment::Vlan { parent, .. } => {
                if !links.contains_key(parent.as_str()) {
                    out.push(format!(
                        "{}: vlan_interface {parent} does not exist on this host",
                        b.name
                    ));
                }
            }
            Segment::Vxlan { local, .. } => {
                let underlay = links.values().find(|l| {
                    l.addr_info
                        .iter()
                        .any(|a| a.family == "inet" && a.local == local.as_str())
                });
                let Some(u) = underlay else {
                    out.push(format!(
                        "{}: no interface has my_ip {local}, the VXLAN source address",
                        b.name
                    ));
                    continue;
                };
                let guest = b
                    .mtu
                    .map_or(novanet_core::valid::ETHERNET_MTU - VXLAN_OVERHEAD, |m| {
                        m.get()
                    });
                if let Some(m) = u.mtu.filter(|m| *m < guest + VXLAN_OVERHEAD) {
                    out.push(format!(
                        "{}: the underlay {} has MTU {m}; guests of MTU {guest} need {} (set its MTU, or the network's mtu to {})",
                        b.name,
                        u.ifname,
                        guest + VXLAN_OVERHEAD,
                        m - VXLAN_OVERHEAD
                    ));
                }
            }
        }
    }
    out
}

#[derive(Deserialize)]
struct FdbEntry {
    mac: String,
    #[serde(default)]
    dst: Option<String>,
}

/// The flood destinations each planned VXLAN device has now (`bridge -j fdb show`).
pub fn read_flood_lists(bridges: &[BridgePlan]) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut out = BTreeMap::new();
    for b in bridges {
        let Some(seg @ Segment::Vxlan { .. }) = &b.segment else {
            continue;
        };
        let dev = seg.device();
        let Ok(text) = run("bridge", &["-j", "fdb", "show", "dev", dev.as_str()], None) else {
            continue; // Not made yet: nothing to compare.
        };
        let entries: Vec<FdbEntry> = serde_json::from_str(&text)
            .map_err(|e| AgentError::Io(format!("cannot parse `bridge -j fdb show`: {e}")))?;
        out.insert(
            dev.to_string(),
            entries
                .into_iter()
                .filter(|e| e.mac == FLOOD_MAC)
                .filter_map(|e| e.dst)
                .collect(),
        );
    }
    Ok(out)
}

/// The `bridge -batch` lines that make each VXLAN device flood to exactly its planned remotes.
pub fn flood_commands(
    current: &BTreeMap<String, BTreeSet<String>>,
    bridges: &[BridgePlan],
) -> Vec<String> {
    let mut cmds = Vec::new();
    for b in bridges {
        let Some(seg @ Segment::Vxlan { remotes, .. }) = &b.segment else {
            continue;
        };
        let dev = seg.device();
        let have = current.get(dev.as_str()).cloned().unwrap_or_default();
        let want: BTreeSet<String> = remotes.iter().map(|r| r.to_string()).collect();
        for dst in want.difference(&have) {
            cmds.push(format!("fdb append {FLOOD_MAC} dev {dev} dst {dst}"));
        }
        for dst in have.difference(&want) {
            cmds.push(format!("fdb del {FLOOD_MAC} dev {dev} dst {dst}"));
        }
    }
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::links::AddrInfo;
    use novanet_core::valid::{IfName, Ipv4Text, Mtu, VlanId};

    fn t(s: &str) -> Ipv4Text {
        Ipv4Text::new(s).unwrap()
    }

    fn bridge(seg: Segment, mtu: Option<u32>) -> BridgePlan {
        BridgePlan {
            network_uuid: "u".into(),
            name: IfName::new(format!("br{}", seg.id())).unwrap(),
            interface: Some(seg.device()),
            gateway: None,
            broadcast: None,
            vlan: Some(seg.id()),
            mtu: mtu.map(|m| Mtu::new(m).unwrap()),
            segment: Some(seg),
            shared_address: None,
        }
    }

    fn vlan(id: u32) -> Segment {
        Segment::Vlan {
            parent: IfName::new("eth2").unwrap(),
            id: VlanId::new(id).unwrap(),
        }
    }

    fn vxlan(id: u32, remotes: &[&str]) -> Segment {
        Segment::Vxlan {
            id: VlanId::new(id).unwrap(),
            local: t("192.168.56.202"),
            port: 4789,
            remotes: remotes.iter().map(|r| t(r)).collect(),
        }
    }

    fn link(name: &str, up: bool, mtu: u32, addr: Option<&str>) -> (String, Link) {
        (
            name.into(),
            Link {
                ifname: name.into(),
                flags: if up { vec!["UP".into()] } else { vec![] },
                mtu: Some(mtu),
                addr_info: addr
                    .map(|a| AddrInfo {
                        family: "inet".into(),
                        local: a.into(),
                        prefixlen: 24,
                        broadcast: None,
                        scope: Some("global".into()),
                    })
                    .into_iter()
                    .collect(),
                ..Link::default()
            },
        )
    }

    #[test]
    fn vlan_devices_are_nova_s_on_the_parent() {
        let links = BTreeMap::from([link("eth2", false, 1500, None)]);
        let cmds = link_commands(&links, &[bridge(vlan(100), None)], &BTreeSet::new());
        assert_eq!(
            cmds,
            [
                "link set eth2 up",
                "link add link eth2 name vlan100 type vlan id 100",
                "link set vlan100 up",
            ]
        );
    }

    #[test]
    fn vxlan_devices_take_the_vni_source_and_port() {
        let links = BTreeMap::from([link("eth1", true, 1500, Some("192.168.56.202"))]);
        let cmds = link_commands(
            &links,
            &[bridge(vxlan(101, &["192.168.56.200"]), Some(1400))],
            &BTreeSet::new(),
        );
        assert_eq!(
            cmds,
            [
                "link add vxlan101 type vxlan id 101 local 192.168.56.202 dstport 4789",
                "link set vxlan101 mtu 1400",
                "link set vxlan101 up",
            ]
        );
    }

    #[test]
    fn existing_devices_are_adopted_and_only_own_unplanned_ones_removed() {
        let links = BTreeMap::from([
            link("eth2", true, 1500, None),
            link("vlan100", true, 1500, None),
            link("vlan101", true, 1500, None),
            link("vlan102", true, 1500, None),
        ]);
        let owned = BTreeSet::from(["vlan100".to_string(), "vlan101".to_string()]);
        let cmds = link_commands(&links, &[bridge(vlan(100), None)], &owned);
        // vlan102 is not this agent's: an operator's device stays.
        assert_eq!(cmds, ["link del vlan101"]);
    }

    #[test]
    fn flood_lists_follow_the_hosts_of_the_network() {
        let current = BTreeMap::from([(
            "vxlan101".to_string(),
            BTreeSet::from(["192.168.56.200".to_string(), "192.168.56.209".to_string()]),
        )]);
        let cmds = flood_commands(
            &current,
            &[bridge(
                vxlan(101, &["192.168.56.200", "192.168.56.203"]),
                None,
            )],
        );
        assert_eq!(
            cmds,
            [
                "fdb append 00:00:00:00:00:00 dev vxlan101 dst 192.168.56.203",
                "fdb del 00:00:00:00:00:00 dev vxlan101 dst 192.168.56.209",
            ]
        );
    }

    #[test]
    fn problems_name_what_to_set() {
        let links = BTreeMap::from([link("eth1", true, 1500, Some("192.168.56.202"))]);
        let p = problems(
            &links,
            &[bridge(vlan(100), None), bridge(vxlan(101, &[]), Some(1500))],
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("vlan_interface eth2 does not exist"),
            "{}",
            p[0]
        );
        assert!(
            p[1].contains("MTU 1500") && p[1].contains("1450"),
            "{}",
            p[1]
        );
        // The default guest MTU fits a 1500 underlay.
        assert!(problems(&links, &[bridge(vxlan(101, &[]), None)]).is_empty());
    }
}
