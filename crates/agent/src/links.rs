//! Bridges, enslaved interfaces, gateway and floating addresses. The kernel's state is read
//! once per pass (`ip -j addr`), the differences are written in one `ip -batch`.

use std::collections::{BTreeMap, BTreeSet};

use novanet_core::plan::{BridgePlan, FloatingBinding};
use serde::Deserialize;

use crate::sys::{run, AgentError, Result};

#[derive(Debug, Default, Deserialize)]
pub struct Link {
    pub ifname: String,
    #[serde(default)]
    pub master: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub addr_info: Vec<AddrInfo>,
    /// Routes through this link other than the kernel's own (from `ip -j route`).
    #[serde(default)]
    pub routes: Vec<RouteInfo>,
}

/// A route as `ip -j route show` prints it.
#[derive(Debug, Default, Deserialize)]
pub struct RouteInfo {
    pub dst: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub dev: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub metric: Option<u32>,
}

impl RouteInfo {
    /// The `ip -batch` line that puts this route on `dev`, if its values are plain (they
    /// come from the kernel, but still become a command line).
    fn on(&self, dev: &str) -> Option<String> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/'))
        };
        if !plain(&self.dst) || !self.gateway.as_deref().is_none_or(plain) {
            return None;
        }
        let mut l = format!("route replace {}", self.dst);
        if let Some(g) = &self.gateway {
            l.push_str(&format!(" via {g}"));
        }
        l.push_str(&format!(" dev {dev}"));
        if let Some(m) = self.metric {
            l.push_str(&format!(" metric {m}"));
        }
        Some(l)
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct AddrInfo {
    pub family: String,
    pub local: String,
    pub prefixlen: u8,
    #[serde(default)]
    pub broadcast: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

impl Link {
    fn has_v4(&self, cidr: &str) -> bool {
        self.addr_info
            .iter()
            .any(|a| a.family == "inet" && format!("{}/{}", a.local, a.prefixlen) == cidr)
    }
}

pub fn read_links() -> Result<BTreeMap<String, Link>> {
    let out = run("ip", &["-j", "addr", "show"], None)?;
    let links: Vec<Link> = serde_json::from_str(&out)
        .map_err(|e| AgentError::Io(format!("cannot parse `ip -j addr show`: {e}")))?;
    let mut links: BTreeMap<String, Link> =
        links.into_iter().map(|l| (l.ifname.clone(), l)).collect();
    let out = run("ip", &["-j", "route", "show", "table", "main"], None)?;
    let routes: Vec<RouteInfo> = serde_json::from_str(&out)
        .map_err(|e| AgentError::Io(format!("cannot parse `ip -j route show`: {e}")))?;
    for r in routes
        .into_iter()
        .filter(|r| r.protocol.as_deref() != Some("kernel"))
    {
        if let Some(l) = r.dev.clone().and_then(|d| links.get_mut(&d)) {
            l.routes.push(r);
        }
    }
    Ok(links)
}

/// The host's own IPv4 networks: global addresses on interfaces other than the bridges
/// novanet made, without single addresses (/32: floating IPs, the metadata address).
pub fn host_networks(links: &BTreeMap<String, Link>, owned: &BTreeSet<String>) -> Vec<String> {
    let mut v: Vec<String> = links
        .values()
        .filter(|l| !owned.contains(&l.ifname))
        .flat_map(|l| l.addr_info.iter())
        .filter(|a| a.family == "inet" && a.scope.as_deref() == Some("global") && a.prefixlen < 32)
        .filter_map(|a| {
            let addr = a.local.parse().ok()?;
            novanet_core::net::Ipv4Cidr::new(addr, a.prefixlen).map(|c| c.to_string())
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The `ip -batch` lines that make the kernel match the bridge and floating plans, removing
/// bridges and floating addresses this agent made earlier and that the plan no longer has.
pub fn diff(
    links: &BTreeMap<String, Link>,
    bridges: &[BridgePlan],
    floating: &[FloatingBinding],
    owned_bridges: &BTreeSet<String>,
    owned_floating: &BTreeSet<(String, String)>,
) -> Vec<String> {
    let mut cmds = Vec::new();
    for b in bridges {
        // Routes through an interface whose addresses move to the bridge go with them (the
        // kernel drops them with the address), after the bridge is up, as nova moved them.
        let mut moved_routes = Vec::new();
        let br = links.get(b.name.as_str());
        if br.is_none() {
            cmds.push(format!(
                "link add {} type bridge forward_delay 0 stp_state 0",
                b.name
            ));
        }
        if let Some(mtu) = b.mtu {
            if br.and_then(|l| l.mtu) != Some(mtu.get()) {
                cmds.push(format!("link set {} mtu {mtu}", b.name));
            }
        }
        if let Some(ifname) = &b.interface {
            if let Some(l) = links.get(ifname.as_str()) {
                if l.master.as_deref() != Some(b.name.as_str()) {
                    cmds.push(format!("link set {ifname} master {}", b.name));
                    // The bridge keeps the interface's MAC, so it never changes (nova).
                    if let Some(mac) = &l.address {
                        cmds.push(format!("link set {} address {mac}", b.name));
                    }
                    // Addresses on the interface move to the bridge, as nova's ensure_bridge did.
                    for a in l
                        .addr_info
                        .iter()
                        .filter(|a| a.family == "inet" && a.scope.as_deref() == Some("global"))
                    {
                        cmds.push(format!("addr del {}/{} dev {ifname}", a.local, a.prefixlen));
                        let brd = a
                            .broadcast
                            .as_ref()
                            .map(|b| format!(" brd {b}"))
                            .unwrap_or_default();
                        cmds.push(format!(
                            "addr add {}/{}{brd} dev {}",
                            a.local, a.prefixlen, b.name
                        ));
                    }
                    if l.addr_info
                        .iter()
                        .any(|a| a.family == "inet" && a.scope.as_deref() == Some("global"))
                    {
                        moved_routes.extend(l.routes.iter().filter_map(|r| r.on(&b.name)));
                    }
                }
                if !l.flags.iter().any(|f| f == "PROMISC") {
                    cmds.push(format!("link set {ifname} promisc on"));
                }
                if !l.flags.iter().any(|f| f == "UP") {
                    cmds.push(format!("link set {ifname} up"));
                }
            }
        }
        if let Some(gw) = &b.gateway {
            if !br.is_some_and(|l| l.has_v4(&gw.to_string())) {
                let brd = b
                    .broadcast
                    .as_ref()
                    .map(|x| format!(" brd {x}"))
                    .unwrap_or_default();
                cmds.push(format!("addr add {gw}{brd} dev {}", b.name));
            }
        }
        if !br.is_some_and(|l| l.flags.iter().any(|f| f == "UP")) {
            cmds.push(format!("link set {} up", b.name));
        }
        cmds.extend(moved_routes);
    }
    let wanted: BTreeSet<&str> = bridges.iter().map(|b| b.name.as_str()).collect();
    for old in owned_bridges
        .iter()
        .filter(|o| !wanted.contains(o.as_str()))
    {
        if links.contains_key(old) {
            cmds.push(format!("link del {old}"));
        }
    }
    let want_fl: BTreeSet<(String, String)> = floating
        .iter()
        .map(|f| (f.address.to_string(), f.interface.to_string()))
        .collect();
    for (addr, dev) in &want_fl {
        let present = links
            .get(dev)
            .is_some_and(|l| l.has_v4(&format!("{addr}/32")));
        if !present && links.contains_key(dev) {
            cmds.push(format!("addr add {addr}/32 dev {dev}"));
        }
    }
    for (addr, dev) in owned_floating.difference(&want_fl) {
        if links
            .get(dev)
            .is_some_and(|l| l.has_v4(&format!("{addr}/32")))
        {
            cmds.push(format!("addr del {addr}/32 dev {dev}"));
        }
    }
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, master: Option<&str>, up: bool) -> Link {
        Link {
            ifname: name.into(),
            master: master.map(|g| g.parse().unwrap()),
            address: Some("08:00:27:8f:87:fa".parse().unwrap()),
            flags: if up {
                vec!["UP".parse().unwrap()]
            } else {
                vec![]
            },
            ..Link::default()
        }
    }

    fn br100(gateway: Option<&str>) -> BridgePlan {
        BridgePlan {
            network_uuid: "u".parse().unwrap(),
            name: "br100".parse().unwrap(),
            interface: Some("eth2".parse().unwrap()),
            gateway: gateway.map(|g| g.parse().unwrap()),
            broadcast: Some("10.0.0.255".parse().unwrap()),
            vlan: None,
            mtu: None,
            segment: None,
            shared_address: None,
        }
    }

    #[test]
    fn creates_a_bridge_like_nova() {
        let links = BTreeMap::from([("eth2".to_string(), link("eth2", None, false))]);
        let cmds = diff(
            &links,
            &[br100(Some("10.0.0.1/24"))],
            &[],
            &BTreeSet::new(),
            &BTreeSet::new(),
        );
        assert_eq!(
            cmds,
            [
                "link add br100 type bridge forward_delay 0 stp_state 0",
                "link set eth2 master br100",
                "link set br100 address 08:00:27:8f:87:fa",
                "link set eth2 promisc on",
                "link set eth2 up",
                "addr add 10.0.0.1/24 brd 10.0.0.255 dev br100",
                "link set br100 up",
            ]
        );
    }

    /// nova's ensure_bridge moved the interface's address and its routes (the default route
    /// among them) to the bridge; the kernel drops a route when its address goes.
    #[test]
    fn the_flat_interfaces_address_and_routes_move_to_the_bridge() {
        let mut eth2 = link("eth2", None, true);
        eth2.addr_info.push(AddrInfo {
            family: "inet".into(),
            local: "192.168.56.200".into(),
            prefixlen: 24,
            broadcast: Some("192.168.56.255".into()),
            scope: Some("global".into()),
        });
        eth2.routes.push(RouteInfo {
            dst: "default".into(),
            gateway: Some("192.168.56.101".into()),
            dev: Some("eth2".into()),
            protocol: None,
            metric: None,
        });
        eth2.routes.push(RouteInfo {
            dst: "10.9.0.0/16".into(),
            gateway: Some("192.168.56.1".into()),
            dev: Some("eth2".into()),
            protocol: Some("static".into()),
            metric: Some(5),
        });
        let links = BTreeMap::from([("eth2".to_string(), eth2)]);
        let cmds = diff(
            &links,
            &[br100(None)],
            &[],
            &BTreeSet::new(),
            &BTreeSet::new(),
        );
        assert_eq!(
            cmds,
            [
                "link add br100 type bridge forward_delay 0 stp_state 0",
                "link set eth2 master br100",
                "link set br100 address 08:00:27:8f:87:fa",
                "addr del 192.168.56.200/24 dev eth2",
                "addr add 192.168.56.200/24 brd 192.168.56.255 dev br100",
                "link set eth2 promisc on",
                "link set br100 up",
                "route replace default via 192.168.56.101 dev br100",
                "route replace 10.9.0.0/16 via 192.168.56.1 dev br100 metric 5",
            ]
        );
    }

    #[test]
    fn converged_state_needs_nothing_and_old_bridges_go() {
        let mut eth2 = link("eth2", Some("br100"), true);
        eth2.flags.push("PROMISC".parse().unwrap());
        let mut br = link("br100", None, true);
        br.addr_info.push(AddrInfo {
            family: "inet".parse().unwrap(),
            local: "10.0.0.1".parse().unwrap(),
            prefixlen: 24,
            broadcast: None,
            scope: None,
        });
        let links = BTreeMap::from([
            ("eth2".to_string(), eth2),
            ("br100".to_string(), br),
            ("br101".to_string(), link("br101", None, true)),
        ]);
        let owned = BTreeSet::from(["br100".to_string(), "br101".to_string()]);
        let cmds = diff(
            &links,
            &[br100(Some("10.0.0.1/24"))],
            &[],
            &owned,
            &BTreeSet::new(),
        );
        assert_eq!(cmds, ["link del br101"]);
    }
}
