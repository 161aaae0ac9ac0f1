//! Network creation with nova's semantics (`NetworkManager.create_networks`): defaulting,
//! validation, carving a range into subnets that skip the ones in use, VLAN and VPN
//! numbering, and which fixed addresses are reserved. Pure: the caller passes the existing
//! networks and a uuid source, and stores the result in one transaction.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::config::{Config, Manager};
use crate::error::{Error, Result};
use crate::model::Network;
use crate::net::{Ipv4Cidr, Ipv6Cidr};

pub const MAX_VLAN: u32 = 4094;
pub const MAX_LABEL: usize = 255;

/// The fields of `nova network-create` / `nova-manage network create` / `POST /os-networks`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRequest {
    pub label: String,
    /// `--fixed-range-v4`
    pub cidr: Option<String>,
    /// `--fixed-range-v6`
    pub cidr_v6: Option<String>,
    pub fixed_cidr: Option<String>,
    pub bridge: Option<String>,
    pub bridge_interface: Option<String>,
    pub vlan: Option<u32>,
    pub vlan_start: Option<u32>,
    pub vpn_start: Option<u32>,
    pub gateway: Option<String>,
    pub gateway_v6: Option<String>,
    pub dns1: Option<String>,
    pub dns2: Option<String>,
    pub multi_host: Option<bool>,
    pub project_id: Option<String>,
    pub dhcp_server: Option<String>,
    pub allowed_start: Option<String>,
    pub allowed_end: Option<String>,
    pub num_networks: Option<u32>,
    pub network_size: Option<u64>,
    pub uuid: Option<String>,
    pub mtu: Option<u32>,
    pub enable_dhcp: Option<bool>,
    pub share_address: Option<bool>,
    pub priority: Option<i64>,
}

/// One network to store, with its fixed addresses in order and whether each is reserved.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedNetwork {
    pub network: Network,
    pub fixed_ips: Vec<(Ipv4Addr, bool)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub networks: Vec<PlannedNetwork>,
    /// Things the operator should know (nova logged them), e.g. a range cut to /24.
    pub warnings: Vec<String>,
}

fn parse_v4(field: &str, s: &str) -> Result<Ipv4Addr> {
    s.parse()
        .map_err(|_| Error::invalid(field, format!("{s:?} is not an IPv4 address")))
}

fn parse_v6(field: &str, s: &str) -> Result<std::net::Ipv6Addr> {
    s.parse()
        .map_err(|_| Error::invalid(field, format!("{s:?} is not an IPv6 address")))
}

pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Plans the networks a create request makes, given the networks that exist.
/// The request's values that end up on a host, checked as the plan will carry them: names
/// as interface names, MTU and VLAN in range, addresses as addresses.
fn check_host_values(req: &NetworkRequest) -> Result<()> {
    use crate::valid::{check_mtu, check_vlan, IfName};
    for (field, v) in [
        ("bridge", &req.bridge),
        ("bridge_interface", &req.bridge_interface),
    ] {
        if let Some(name) = v {
            IfName::new(name.as_str()).map_err(|e| Error::invalid(field, e))?;
        }
    }
    if let Some(m) = req.mtu {
        check_mtu("mtu", m)?;
    }
    if let Some(v) = req.vlan {
        check_vlan("vlan", v)?;
    }
    for (field, v) in [
        ("gateway", &req.gateway),
        ("dns1", &req.dns1),
        ("dns2", &req.dns2),
        ("dhcp_server", &req.dhcp_server),
        ("allowed_start", &req.allowed_start),
        ("allowed_end", &req.allowed_end),
    ] {
        if let Some(a) = v.as_deref().filter(|a| !a.is_empty()) {
            crate::valid::Ipv4Text::new(a).map_err(|e| Error::invalid(field, e))?;
        }
    }
    Ok(())
}

/// The edge's check of a requested range (API and `manage`, not the store, so that benches
/// may use loopback ranges): no range a host or the cloud itself uses.
pub fn check_requested_range(req: &NetworkRequest) -> Result<()> {
    if let Some(c) = req.cidr.as_deref() {
        let cidr: Ipv4Cidr = c.parse().map_err(|e| Error::invalid("fixed_range_v4", e))?;
        if let Some(why) = crate::valid::special_purpose_v4(&cidr) {
            return Err(Error::invalid(
                "fixed_range_v4",
                format!("{c} overlaps {why}, which a host or the cloud itself uses"),
            ));
        }
    }
    Ok(())
}

pub fn plan_networks(
    req: &NetworkRequest,
    manager: Manager,
    cfg: &Config,
    existing: &[Network],
    mut new_uuid: impl FnMut() -> String,
) -> Result<Plan> {
    let mut warnings = Vec::new();
    let label = req.label.trim();
    if label.is_empty() {
        return Err(Error::invalid("label", "a network needs a label"));
    }
    if label.len() > MAX_LABEL {
        return Err(Error::invalid(
            "label",
            format!("longer than {MAX_LABEL} characters"),
        ));
    }
    crate::valid::check_name("label", label)?;
    check_host_values(req)?;
    if req.cidr.is_none() && req.cidr_v6.is_none() {
        return Err(Error::invalid(
            "fixed_range_v4",
            "give a fixed range (--fixed-range-v4) or an IPv6 one (--fixed-range-v6)",
        ));
    }
    let bridge = req
        .bridge
        .clone()
        .or_else(|| cfg.flat_network_bridge.clone());
    let mut bridge_interface = req.bridge_interface.clone();
    if manager == Manager::Vlan {
        bridge_interface = bridge_interface.or_else(|| cfg.vlan_interface.clone());
    }
    let bridge_interface = bridge_interface.or_else(|| cfg.flat_interface.clone());
    match manager {
        Manager::Flat | Manager::FlatDhcp if bridge.is_none() => {
            return Err(Error::invalid(
                "bridge",
                format!(
                    "the {} manager needs a bridge: give --bridge or set flat_network_bridge",
                    manager.name()
                ),
            ))
        }
        Manager::Vlan if bridge_interface.is_none() => {
            return Err(Error::invalid(
                "bridge_interface",
                "the vlan manager needs an interface to put VLANs on: give --bridge-interface or set vlan_interface",
            ))
        }
        _ => {}
    }
    let cidr: Option<Ipv4Cidr> = req
        .cidr
        .as_deref()
        .map(|c| c.parse().map_err(|e| Error::invalid("fixed_range_v4", e)))
        .transpose()?;
    let cidr_v6: Option<Ipv6Cidr> = req
        .cidr_v6
        .as_deref()
        .map(|c| c.parse().map_err(|e| Error::invalid("fixed_range_v6", e)))
        .transpose()?;
    let num_networks = req.num_networks.unwrap_or(cfg.num_networks);
    if num_networks == 0 {
        return Err(Error::invalid("num_networks", "must be at least 1"));
    }
    let network_size = match (req.network_size, cidr) {
        (Some(s), _) => s,
        (None, Some(c)) => {
            let each = c.size() / u64::from(num_networks);
            if each > cfg.network_size {
                warnings.push(format!(
                    "subnet(s) too large, defaulting to /{} (network_size {})",
                    32 - ceil_log2(cfg.network_size),
                    cfg.network_size
                ));
                cfg.network_size
            } else {
                each
            }
        }
        (None, None) => cfg.network_size,
    };
    if network_size < 4 {
        return Err(Error::invalid(
            "network_size",
            format!("{network_size} is too small: a network needs at least 4 addresses"),
        ));
    }
    // Each address is a row written in one transaction: a /8 would be 16 million rows and
    // minutes of a locked store.
    if network_size > cfg.max_network_size {
        return Err(Error::invalid(
            "network_size",
            format!(
                "{network_size} addresses is more than max_network_size ({}): give a smaller range or more networks",
                cfg.max_network_size
            ),
        ));
    }
    let multi_host = req.multi_host.unwrap_or(cfg.multi_host);
    let vlan_start = req.vlan_start.unwrap_or(cfg.vlan_start);
    let vpn_start = req.vpn_start.unwrap_or(cfg.vpn_start);
    if manager == Manager::Vlan {
        if !(1..=MAX_VLAN).contains(&vlan_start) {
            return Err(Error::invalid(
                "vlan_start",
                format!("{vlan_start} is not between 1 and {MAX_VLAN}"),
            ));
        }
        if num_networks + vlan_start > MAX_VLAN {
            return Err(Error::invalid(
                "num_networks",
                format!("{num_networks} networks from vlan {vlan_start} go past vlan {MAX_VLAN}"),
            ));
        }
        if let Some(v) = req.vlan {
            if !(1..=MAX_VLAN).contains(&v) {
                return Err(Error::invalid(
                    "vlan",
                    format!("{v} is not between 1 and {MAX_VLAN}"),
                ));
            }
            if num_networks > 1 {
                return Err(Error::invalid(
                    "vlan",
                    "a VLAN id can be given for one network only",
                ));
            }
        }
        if let Some(c) = cidr {
            if c.size() < u64::from(num_networks) * network_size {
                return Err(Error::invalid(
                    "num_networks",
                    format!("the range {c} is not big enough to fit {num_networks} networks of size {network_size}"),
                ));
            }
        }
    } else if req.vlan.is_some() {
        return Err(Error::invalid(
            "vlan",
            format!(
                "VLAN ids need network_manager = vlan (this is {})",
                manager.name()
            ),
        ));
    }
    if let Some(u) = &req.uuid {
        if !is_uuid(u) {
            return Err(Error::invalid("uuid", format!("{u:?} is not a UUID")));
        }
        if num_networks > 1 {
            return Err(Error::invalid(
                "uuid",
                "a uuid can be given for one network only",
            ));
        }
        if existing.iter().any(|n| &n.uuid == u) {
            return Err(Error::conflict(format!(
                "a network with uuid {u} already exists"
            )));
        }
    }
    let fixed_cidr: Option<Ipv4Cidr> = req
        .fixed_cidr
        .as_deref()
        .map(|c| c.parse().map_err(|e| Error::invalid("fixed_cidr", e)))
        .transpose()?;
    if let Some(f) = fixed_cidr {
        match cidr {
            Some(c) if c.contains_cidr(&f) => {}
            Some(c) => {
                return Err(Error::invalid(
                    "fixed_cidr",
                    format!("{f} is not inside the fixed range {c}"),
                ))
            }
            None => {
                return Err(Error::invalid(
                    "fixed_cidr",
                    "needs a fixed range (--fixed-range-v4)",
                ))
            }
        }
    }
    for (field, v) in [("dns1", &req.dns1), ("dns2", &req.dns2)] {
        if let Some(v) = v {
            parse_v4(field, v)?;
        }
    }

    let subnet_bits = ceil_log2(network_size);
    let subnets_v4: Vec<Ipv4Cidr> = match cidr {
        None => Vec::new(),
        Some(c) => {
            if subnet_bits > u32::from(32 - c.prefix()) {
                return Err(Error::invalid(
                    "network_size",
                    format!("networks of size {network_size} do not fit in {c}"),
                ));
            }
            let prefix = (32 - subnet_bits) as u8;
            let taken: Vec<(Ipv4Cidr, &str)> = existing
                .iter()
                .filter_map(|n| n.cidr_v4().map(|c| (c, n.label.as_str())))
                .collect();
            let free: Vec<Ipv4Cidr> = c
                .subnets(prefix)
                .filter(|s| taken.iter().all(|(t, _)| !t.overlaps(s)))
                .take(num_networks as usize)
                .collect();
            if free.len() < num_networks as usize {
                let clash = taken
                    .iter()
                    .find(|(t, _)| t.overlaps(&c))
                    .map(|(t, l)| format!(" (existing network {l} has {t})"))
                    .unwrap_or_default();
                return Err(Error::conflict(format!(
                    "fixed range {c} has room for {} of the {num_networks} networks of size {network_size} requested{clash}",
                    free.len()
                )));
            }
            free
        }
    };
    let subnets_v6: Vec<Ipv6Cidr> = match cidr_v6 {
        None => Vec::new(),
        Some(c6) => {
            let prefix = (128 - subnet_bits).min(64) as u8;
            if prefix < c6.prefix() {
                return Err(Error::invalid(
                    "fixed_range_v6",
                    format!("{c6} is too small: each network needs a /{prefix}"),
                ));
            }
            let taken: Vec<Ipv6Cidr> = existing
                .iter()
                .filter_map(|n| n.cidr_v6.as_deref().and_then(|c| c.parse().ok()))
                .collect();
            let mut out = Vec::new();
            let mut i = 0u128;
            while out.len() < num_networks as usize {
                let Some(s) = c6.subnet(prefix, i) else {
                    return Err(Error::conflict(format!(
                        "fixed range {c6} has no room for {num_networks} more /{prefix} networks"
                    )));
                };
                if taken.iter().all(|t| !t.overlaps(&s)) {
                    out.push(s);
                }
                i += 1;
            }
            out
        }
    };

    let used_vlans: BTreeSet<u32> = existing.iter().filter_map(|n| n.vlan).collect();
    if let Some(v) = req.vlan {
        if let Some(n) = existing.iter().find(|n| n.vlan == Some(v)) {
            return Err(Error::conflict(format!(
                "vlan {v} is already used by network {}",
                n.label
            )));
        }
    }
    let num_used_nets = used_vlans.len() as u32;
    let mut planned_vlans = used_vlans.clone();

    let mut networks = Vec::new();
    for index in 0..num_networks {
        let i = index as usize;
        let mut net = Network {
            uuid: req.uuid.clone().unwrap_or_else(&mut new_uuid),
            label: if num_networks > 1 {
                format!("{label}_{index}")
            } else {
                label.to_string()
            },
            bridge: bridge.clone(),
            bridge_interface: bridge_interface.clone(),
            dns1: Some(
                req.dns1
                    .clone()
                    .unwrap_or_else(|| cfg.flat_network_dns.clone()),
            ),
            dns2: req.dns2.clone(),
            multi_host,
            injected: manager == Manager::Flat && cfg.flat_injected,
            mtu: req.mtu.or(cfg.network_device_mtu),
            enable_dhcp: req.enable_dhcp.unwrap_or(true),
            share_address: req.share_address.unwrap_or(cfg.share_dhcp_address),
            priority: req.priority,
            project_id: req.project_id.clone(),
            ..Network::default()
        };
        let mut fixed_ips = Vec::new();
        if let Some(subnet) = subnets_v4.get(i) {
            // nova's cursor starts at allowed_start when given (which then becomes the
            // gateway, unless one is given), else at the subnet's first host.
            let first = match &req.allowed_start {
                Some(s) => {
                    let s = parse_v4("allowed_start", s)?;
                    if !subnet.contains(s) {
                        return Err(Error::invalid(
                            "allowed_start",
                            format!("{s} is not inside {subnet}"),
                        ));
                    }
                    s
                }
                None => subnet.nth(1).expect("network has at least 4 addresses"),
            };
            let (gateway, current) = match &req.gateway {
                Some(g) => {
                    let g = parse_v4("gateway", g)?;
                    if !subnet.contains(g) {
                        return Err(Error::invalid(
                            "gateway",
                            format!("{g} is not inside {subnet}"),
                        ));
                    }
                    (g, first)
                }
                None => (first, next(first)),
            };
            let allowed_end = req
                .allowed_end
                .as_deref()
                .map(|e| {
                    let e = parse_v4("allowed_end", e)?;
                    if subnet.contains(e) {
                        Ok(e)
                    } else {
                        Err(Error::invalid(
                            "allowed_end",
                            format!("{e} is not inside {subnet}"),
                        ))
                    }
                })
                .transpose()?;
            let dhcp_server = match &req.dhcp_server {
                Some(d) => parse_v4("dhcp_server", d)?,
                None => gateway,
            };
            let mut dhcp_start = current;
            let mut current = next(current);
            if dhcp_start == dhcp_server {
                dhcp_start = current;
                current = next(current);
            }
            let _ = current;
            let mut vpn_private = None;
            if manager == Manager::Vlan {
                vpn_private = Some(dhcp_start);
                dhcp_start = next(dhcp_start);
            }
            net.cidr = Some(subnet.to_string());
            net.netmask = Some(subnet.netmask().to_string());
            net.broadcast = Some(subnet.broadcast().to_string());
            net.gateway = Some(gateway.to_string());
            net.dhcp_server = Some(dhcp_server.to_string());
            net.dhcp_start = Some(dhcp_start.to_string());
            net.vpn_private_address = vpn_private.map(|a| a.to_string());

            let ips = fixed_cidr.unwrap_or(*subnet);
            let size = ips.size();
            let vlan_extra = u64::from(manager == Manager::Vlan);
            let bottom = match &req.allowed_start {
                Some(s) => subnet.index_of(parse_v4("allowed_start", s)?).unwrap_or(0),
                None => 2 + vlan_extra,
            };
            let top = match allowed_end {
                Some(e) => subnet.size() - 1 - subnet.index_of(e).unwrap_or(0),
                None => 1 + vlan_extra * u64::from(cfg.cnt_vpn_clients),
            };
            let special: Vec<Ipv4Addr> = [Some(dhcp_server), Some(gateway), vpn_private]
                .into_iter()
                .flatten()
                .collect();
            for idx in 0..size {
                let addr = ips.nth(idx).expect("in range");
                let reserved = idx < bottom || size - idx <= top || special.contains(&addr);
                fixed_ips.push((addr, reserved));
            }
        }
        if let Some(s6) = subnets_v6.get(i) {
            net.cidr_v6 = Some(s6.to_string());
            net.netmask_v6 = Some(s6.netmask().to_string());
            // nova.conf's gateway_v6 is the default only for the prefix that holds it.
            let from_config = cfg
                .gateway_v6
                .as_deref()
                .and_then(|g| g.parse().ok())
                .filter(|g| s6.contains(*g));
            let g6 = match &req.gateway_v6 {
                Some(g) => parse_v6("gateway_v6", g)?,
                None => from_config.unwrap_or_else(|| s6.nth(1)),
            };
            net.gateway_v6 = Some(g6.to_string());
        }
        if manager == Manager::Vlan {
            let mut vlan = req.vlan.unwrap_or(vlan_start + index + num_used_nets);
            if planned_vlans.contains(&vlan) {
                vlan = planned_vlans.iter().max().map_or(vlan, |m| m + 1);
            }
            if vlan > MAX_VLAN {
                return Err(Error::invalid(
                    "vlan",
                    format!("no VLAN id left: {vlan} is above {MAX_VLAN}"),
                ));
            }
            planned_vlans.insert(vlan);
            net.vlan = Some(vlan);
            net.bridge = Some(format!("br{vlan}"));
            net.vpn_public_port = Some(vpn_start + index + num_used_nets);
            net.vpn_public_address = Some(cfg.vpn_ip().to_string());
        }
        networks.push(PlannedNetwork {
            network: net,
            fixed_ips,
        });
    }
    Ok(Plan { networks, warnings })
}

fn next(a: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a).wrapping_add(1))
}

/// ceil(log2(n)) for n >= 1.
fn ceil_log2(n: u64) -> u32 {
    64 - (n.max(1) - 1).leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuids() -> impl FnMut() -> String {
        let mut i = 0;
        move || {
            i += 1;
            format!("00000000-0000-0000-0000-{i:012}")
        }
    }

    fn req(label: &str, cidr: &str) -> NetworkRequest {
        NetworkRequest {
            label: label.into(),
            cidr: Some(cidr.into()),
            bridge: Some("br100".into()),
            ..Default::default()
        }
    }

    fn reserved(p: &PlannedNetwork) -> Vec<String> {
        p.fixed_ips
            .iter()
            .filter(|(_, r)| *r)
            .map(|(a, _)| a.to_string())
            .collect()
    }

    #[test]
    fn flatdhcp_slash24_matches_nova() {
        let cfg = Config::default();
        let plan = plan_networks(
            &req("vmnet", "10.0.0.0/24"),
            Manager::FlatDhcp,
            &cfg,
            &[],
            uuids(),
        )
        .unwrap();
        let n = &plan.networks[0];
        assert_eq!(n.network.gateway.as_deref(), Some("10.0.0.1"));
        assert_eq!(n.network.dhcp_server.as_deref(), Some("10.0.0.1"));
        assert_eq!(n.network.dhcp_start.as_deref(), Some("10.0.0.2"));
        assert_eq!(n.network.broadcast.as_deref(), Some("10.0.0.255"));
        assert_eq!(n.network.dns1.as_deref(), Some("8.8.4.4"));
        assert_eq!(n.network.vlan, None);
        assert_eq!(reserved(n), ["10.0.0.0", "10.0.0.1", "10.0.0.255"]);
        assert_eq!(n.fixed_ips.len(), 256);
    }

    #[test]
    fn vlan_matches_nova_api_sample() {
        let cfg = Config {
            vlan_interface: Some("eth2".into()),
            ..Config::default()
        };
        let r = NetworkRequest {
            label: "mynet".into(),
            cidr: Some("10.0.0.0/28".into()),
            num_networks: Some(2),
            network_size: Some(8),
            ..Default::default()
        };
        let plan = plan_networks(&r, Manager::Vlan, &cfg, &[], uuids()).unwrap();
        let n = &plan.networks[0].network;
        assert_eq!(n.label, "mynet_0");
        assert_eq!(n.cidr.as_deref(), Some("10.0.0.0/29"));
        assert_eq!(n.gateway.as_deref(), Some("10.0.0.1"));
        assert_eq!(n.vpn_private_address.as_deref(), Some("10.0.0.2"));
        assert_eq!(n.dhcp_start.as_deref(), Some("10.0.0.3"));
        assert_eq!(
            (n.vlan, n.bridge.as_deref(), n.vpn_public_port),
            (Some(100), Some("br100"), Some(1000))
        );
        let n1 = &plan.networks[1].network;
        assert_eq!(
            (n1.label.as_str(), n1.cidr.as_deref()),
            ("mynet_1", Some("10.0.0.8/29"))
        );
        assert_eq!((n1.vlan, n1.vpn_public_port), (Some(101), Some(1001)));
        assert_eq!(
            reserved(&plan.networks[0]),
            ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.7"]
        );
    }

    #[test]
    fn vlan_numbering_continues_after_existing() {
        let cfg = Config {
            vlan_interface: Some("eth2".into()),
            ..Config::default()
        };
        let r = NetworkRequest {
            label: "a".into(),
            cidr: Some("10.0.0.0/24".into()),
            ..Default::default()
        };
        let first = plan_networks(&r, Manager::Vlan, &cfg, &[], uuids()).unwrap();
        let existing = vec![first.networks[0].network.clone()];
        let r2 = NetworkRequest {
            label: "b".into(),
            cidr: Some("10.0.0.0/16".into()),
            ..Default::default()
        };
        let second = plan_networks(&r2, Manager::Vlan, &cfg, &existing, uuids()).unwrap();
        let n = &second.networks[0].network;
        assert_eq!(
            n.cidr.as_deref(),
            Some("10.0.1.0/24"),
            "skips the subnet in use"
        );
        assert_eq!((n.vlan, n.vpn_public_port), (Some(101), Some(1001)));
        assert_eq!(second.warnings.len(), 1);
        let dup = NetworkRequest {
            vlan: Some(100),
            label: "c".into(),
            cidr: Some("10.9.0.0/24".into()),
            ..Default::default()
        };
        let e = plan_networks(&dup, Manager::Vlan, &cfg, &existing, uuids()).unwrap_err();
        assert!(e.to_string().contains("vlan 100 is already used"), "{e}");
    }

    #[test]
    fn carving_several_networks_and_v6_prefixes() {
        let cfg = Config::default();
        let r = NetworkRequest {
            num_networks: Some(3),
            network_size: Some(64),
            cidr_v6: Some("fd00:1::/48".into()),
            ..req("net", "10.1.0.0/24")
        };
        let plan = plan_networks(&r, Manager::FlatDhcp, &cfg, &[], uuids()).unwrap();
        let c: Vec<_> = plan
            .networks
            .iter()
            .map(|p| p.network.cidr.clone().unwrap())
            .collect();
        assert_eq!(c, ["10.1.0.0/26", "10.1.0.64/26", "10.1.0.128/26"]);
        let c6: Vec<_> = plan
            .networks
            .iter()
            .map(|p| p.network.cidr_v6.clone().unwrap())
            .collect();
        assert_eq!(c6, ["fd00:1::/64", "fd00:1:0:1::/64", "fd00:1:0:2::/64"]);
        assert_eq!(
            plan.networks[1].network.gateway_v6.as_deref(),
            Some("fd00:1:0:1::1")
        );
    }

    /// nova.conf's gateway_v6 is the default gateway of the network whose prefix holds it;
    /// the others keep their prefix's first address.
    #[test]
    fn config_gateway_v6_only_inside_its_prefix() {
        let cfg = Config {
            gateway_v6: Some("fd00:1:0:1::fe".into()),
            ..Config::default()
        };
        let r = NetworkRequest {
            num_networks: Some(2),
            network_size: Some(128),
            cidr_v6: Some("fd00:1::/48".into()),
            ..req("net", "10.1.0.0/24")
        };
        let plan = plan_networks(&r, Manager::FlatDhcp, &cfg, &[], uuids()).unwrap();
        let g: Vec<_> = plan
            .networks
            .iter()
            .map(|p| p.network.gateway_v6.clone().unwrap())
            .collect();
        assert_eq!(g, ["fd00:1::1", "fd00:1:0:1::fe"]);
    }

    /// nova's own expectation (test_network_manager, VLAN, allowed start/end with a DHCP
    /// server): the gateway is the allowed start, then the DHCP server, the VPN address, the
    /// first DHCP address; 23 addresses reserved.
    #[test]
    fn allowed_start_becomes_the_gateway() {
        let req = NetworkRequest {
            label: "n".into(),
            cidr: Some("192.168.0.0/24".into()),
            dhcp_server: Some("192.168.0.11".into()),
            allowed_start: Some("192.168.0.10".into()),
            allowed_end: Some("192.168.0.245".into()),
            bridge_interface: Some("eth1".into()),
            ..Default::default()
        };
        let cfg = Config::default();
        let p = plan_networks(&req, Manager::Vlan, &cfg, &[], || "u".into()).unwrap();
        let n = &p.networks[0];
        assert_eq!(n.network.gateway.as_deref(), Some("192.168.0.10"));
        assert_eq!(n.network.dhcp_server.as_deref(), Some("192.168.0.11"));
        assert_eq!(
            n.network.vpn_private_address.as_deref(),
            Some("192.168.0.12")
        );
        assert_eq!(n.network.dhcp_start.as_deref(), Some("192.168.0.13"));
        assert_eq!(n.fixed_ips.iter().filter(|f| f.1).count(), 23);
    }

    #[test]
    fn allowed_start_end_and_fixed_cidr() {
        let cfg = Config::default();
        let r = NetworkRequest {
            allowed_start: Some("10.0.0.10".into()),
            allowed_end: Some("10.0.0.20".into()),
            ..req("n", "10.0.0.0/24")
        };
        let plan = plan_networks(&r, Manager::FlatDhcp, &cfg, &[], uuids()).unwrap();
        let free: Vec<_> = plan.networks[0]
            .fixed_ips
            .iter()
            .filter(|(_, r)| !r)
            .map(|(a, _)| a.to_string())
            .collect();
        // nova: the allowed start is the gateway; the first free address follows it.
        assert_eq!(
            plan.networks[0].network.gateway.as_deref(),
            Some("10.0.0.10")
        );
        assert_eq!(free.first().map(String::as_str), Some("10.0.0.11"));
        assert_eq!(free.last().map(String::as_str), Some("10.0.0.20"));
        assert_eq!(
            plan.networks[0].network.dhcp_start.as_deref(),
            Some("10.0.0.11")
        );
        let bad = NetworkRequest {
            fixed_cidr: Some("10.1.0.0/25".into()),
            ..req("n", "10.0.0.0/24")
        };
        let e = plan_networks(&bad, Manager::FlatDhcp, &cfg, &[], uuids()).unwrap_err();
        assert!(
            matches!(&e, Error::Invalid { field, .. } if field == "fixed_cidr"),
            "{e}"
        );
    }

    #[test]
    fn bad_input_names_the_field() {
        let cfg = Config::default();
        let cases: Vec<(NetworkRequest, Manager, &str)> = vec![
            (req("n", "10.0.0.0/33"), Manager::FlatDhcp, "fixed_range_v4"),
            (req("", "10.0.0.0/24"), Manager::FlatDhcp, "label"),
            (
                NetworkRequest {
                    bridge: None,
                    ..req("n", "10.0.0.0/24")
                },
                Manager::FlatDhcp,
                "bridge",
            ),
            (req("n", "10.0.0.0/24"), Manager::Vlan, "bridge_interface"),
            (
                NetworkRequest {
                    vlan: Some(5000),
                    bridge_interface: Some("eth2".into()),
                    ..req("n", "10.0.0.0/24")
                },
                Manager::Vlan,
                "vlan",
            ),
            (
                NetworkRequest {
                    vlan: Some(0),
                    bridge_interface: Some("eth2".into()),
                    ..req("n", "10.0.0.0/24")
                },
                Manager::Vlan,
                "vlan",
            ),
            (
                NetworkRequest {
                    num_networks: Some(4),
                    network_size: Some(256),
                    bridge_interface: Some("eth2".into()),
                    ..req("n", "10.0.0.0/24")
                },
                Manager::Vlan,
                "num_networks",
            ),
            (
                NetworkRequest {
                    gateway: Some("10.9.0.1".into()),
                    ..req("n", "10.0.0.0/24")
                },
                Manager::FlatDhcp,
                "gateway",
            ),
            (
                NetworkRequest {
                    uuid: Some("nope".into()),
                    ..req("n", "10.0.0.0/24")
                },
                Manager::FlatDhcp,
                "uuid",
            ),
            (
                NetworkRequest {
                    network_size: Some(2),
                    ..req("n", "10.0.0.0/24")
                },
                Manager::FlatDhcp,
                "network_size",
            ),
        ];
        for (r, m, field) in cases {
            match plan_networks(&r, m, &cfg, &[], uuids()) {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected invalid {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn overlap_is_a_conflict() {
        let cfg = Config::default();
        let first = plan_networks(
            &req("a", "10.0.0.0/16"),
            Manager::FlatDhcp,
            &cfg,
            &[],
            uuids(),
        )
        .unwrap();
        // nova-manage cut the /16 to a /24 by default.
        assert_eq!(
            first.networks[0].network.cidr.as_deref(),
            Some("10.0.0.0/24")
        );
        let existing = vec![first.networks[0].network.clone()];
        let e = plan_networks(
            &req("b", "10.0.0.0/24"),
            Manager::FlatDhcp,
            &cfg,
            &existing,
            uuids(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e}");
        assert!(e.to_string().contains("existing network a"), "{e}");
    }

    #[test]
    fn plans_are_deterministic() {
        let cfg = Config::default();
        let r = NetworkRequest {
            num_networks: Some(4),
            ..req("x", "10.2.0.0/16")
        };
        let a = plan_networks(&r, Manager::FlatDhcp, &cfg, &[], uuids()).unwrap();
        let b = plan_networks(&r, Manager::FlatDhcp, &cfg, &[], uuids()).unwrap();
        assert_eq!(a, b);
    }

    /// A small deterministic generator (xorshift64*): property tests without a dependency,
    /// the same cases on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Property: for random ranges, counts, sizes and managers, carving follows nova's rules.
    /// Networks are disjoint subnets of the range, in order, each listing every address once;
    /// network, gateway, DHCP server, broadcast (and the VPN address and the top
    /// `cnt_vpn_clients` under VLAN) are reserved, as is everything outside allowed-start/end;
    /// the first DHCP address is the first one not reserved; and planning twice gives the same.
    #[test]
    fn property_carving_and_reserved_addresses() {
        let mut rng = Rng(0x5eed_2026);
        let mut checked = 0;
        for _ in 0..400 {
            let prefix = 16 + rng.below(13) as u8; // /16 .. /28
            let base = Ipv4Addr::new(10, rng.below(256) as u8, 0, 0);
            let range = Ipv4Cidr::new(base, prefix).unwrap();
            let manager = [Manager::Flat, Manager::FlatDhcp, Manager::Vlan][rng.below(3) as usize];
            let bits_free = 32 - u32::from(prefix);
            let size_bits = 2 + rng.below(u64::from(bits_free.min(10) - 1)) as u32;
            let network_size = 1u64 << size_bits;
            let num = 1 + rng.below((range.size() / network_size).min(6)) as u32;
            let cfg = Config {
                vlan_interface: Some("eth2".into()),
                cnt_vpn_clients: rng.below(3) as u32,
                ..Config::default()
            };
            let mut r = req("net", &range.to_string());
            r.num_networks = Some(num);
            r.network_size = Some(network_size);
            let narrowed = num == 1 && network_size >= 16 && rng.below(2) == 0;
            if narrowed {
                r.allowed_start = Some(range.nth(5).unwrap().to_string());
                r.allowed_end = Some(range.nth(network_size - 4).unwrap().to_string());
            }
            let plan = match plan_networks(&r, manager, &cfg, &[], uuids()) {
                Ok(p) => p,
                Err(e) => panic!("{r:?} under {manager:?}: {e}"),
            };
            let again = plan_networks(&r, manager, &cfg, &[], uuids()).unwrap();
            assert_eq!(plan, again, "planning is deterministic");
            assert_eq!(plan.networks.len(), num as usize);
            let mut seen = BTreeSet::new();
            for (i, p) in plan.networks.iter().enumerate() {
                let n = &p.network;
                let c: Ipv4Cidr = n.cidr.as_deref().unwrap().parse().unwrap();
                assert!(
                    range.contains_cidr(&c) && c.size() == network_size,
                    "{c} in {range}"
                );
                assert_eq!(
                    c.network(),
                    range.nth(i as u64 * network_size).unwrap(),
                    "in order"
                );
                let addrs: Vec<Ipv4Addr> = p.fixed_ips.iter().map(|(a, _)| *a).collect();
                let all: Vec<Ipv4Addr> = (0..c.size()).map(|k| c.nth(k).unwrap()).collect();
                assert_eq!(addrs, all, "every address once, in order");
                assert!(
                    addrs.iter().all(|a| seen.insert(*a)),
                    "networks are disjoint"
                );
                let reserved: BTreeSet<String> = p
                    .fixed_ips
                    .iter()
                    .filter(|(_, r)| *r)
                    .map(|(a, _)| a.to_string())
                    .collect();
                let mut must = vec![
                    c.network().to_string(),
                    n.gateway.clone().unwrap(),
                    n.dhcp_server.clone().unwrap(),
                    c.broadcast().to_string(),
                ];
                if manager == Manager::Vlan {
                    must.push(n.vpn_private_address.clone().expect("a VPN address"));
                    for k in 0..u64::from(cfg.cnt_vpn_clients) {
                        must.push(c.nth(network_size - 2 - k).unwrap().to_string());
                    }
                    assert_eq!(n.bridge, Some(format!("br{}", n.vlan.unwrap())));
                } else {
                    assert_eq!(n.vlan, None);
                }
                for m in &must {
                    assert!(reserved.contains(m), "{m} must be reserved in {c}: {r:?}");
                }
                if narrowed {
                    for (a, res) in &p.fixed_ips {
                        let idx = c.index_of(*a).unwrap();
                        if !(5..=network_size - 4).contains(&idx) {
                            assert!(res, "{a} is outside allowed-start/end");
                        }
                    }
                }
                let first_free = p
                    .fixed_ips
                    .iter()
                    .find(|(_, r)| !r)
                    .map(|(a, _)| a.to_string());
                if first_free.is_some() {
                    assert_eq!(
                        n.dhcp_start, first_free,
                        "dhcp_start is the first free address"
                    );
                }
                checked += 1;
            }
            if manager == Manager::Vlan {
                let vlans: BTreeSet<u32> = plan
                    .networks
                    .iter()
                    .filter_map(|p| p.network.vlan)
                    .collect();
                assert_eq!(vlans.len(), num as usize, "one VLAN each");
            }
        }
        assert!(checked > 400);
    }
}
