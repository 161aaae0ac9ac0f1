//! A host's desired state as a pure function of the stored state: which bridges, gateway
//! addresses, DHCP servers, firewall and NAT rules and floating addresses it must have. The
//! server computes it; the agent renders and applies it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::{Config, FirewallDriver};
use crate::firewall::{Chain, Match, Proto, Rule, Ruleset, Target};
use crate::model::{BoundAddress, FloatingIp, Network};

/// 169.254.169.254:80, where every cloud image looks for its metadata.
pub const METADATA_ADDRESS: &str = "169.254.169.254";
pub const METADATA_PORT: u16 = 80;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostPlan {
    pub host: String,
    pub generation: u64,
    pub firewall_driver: String,
    pub bridges: Vec<BridgePlan>,
    pub dhcp: Vec<DhcpPlan>,
    pub firewall: Ruleset,
    /// Floating addresses to bind as /32 on an interface.
    pub floating: Vec<FloatingBinding>,
    /// Leases to end with `dhcp_release` (instances deleted with `force_dhcp_release`).
    pub releases: Vec<DhcpRelease>,
    pub ip_forward: bool,
    /// Security groups and anti-spoofing for the instances on this host.
    #[serde(default)]
    pub security: SecurityPlan,
}

/// What filters traffic to and from this host's instances.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityPlan {
    pub allow_same_net: bool,
    pub instances: Vec<InstanceSecurity>,
    /// Members' fixed IPs of each security group some rule here names as its source.
    pub group_members: BTreeMap<i64, Vec<String>>,
    /// The admin's provider rules: traffic they match is dropped for every instance, right
    /// after ESTABLISHED (nova's `provider_fw_rules`, Liberty and earlier).
    #[serde(default)]
    pub provider_rules: Vec<SgRule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSecurity {
    /// The instance's row id: its chain is `inst-<id>`, as nova's was.
    pub id: i64,
    pub uuid: String,
    pub ports: Vec<PortSecurity>,
    pub rules: Vec<SgRule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSecurity {
    /// Host-side device, once the hypervisor reported it; anti-spoofing needs it.
    pub device: Option<String>,
    pub mac: String,
    pub ips: Vec<String>,
    pub network_cidr: String,
    pub dhcp_server: Option<String>,
}

/// One ingress rule (nova-network's groups had no egress rules).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SgRule {
    pub proto: Option<Proto>,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub cidr: Option<String>,
    /// Source group: its members' addresses.
    pub group: Option<i64>,
}

/// A rule of a security group, as the snapshot carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRule {
    pub group_id: i64,
    pub rule: SgRule,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgePlan {
    pub network_uuid: String,
    pub name: String,
    /// The physical (or VLAN) interface enslaved to the bridge.
    pub interface: Option<String>,
    /// `dhcp_server/prefix`, on the network host only.
    pub gateway: Option<String>,
    pub broadcast: Option<String>,
    pub vlan: Option<u32>,
    pub mtu: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DhcpPlan {
    pub network_uuid: String,
    pub network_id: i64,
    pub label: String,
    pub bridge: String,
    pub listen_address: String,
    pub dhcp_start: String,
    pub netmask: String,
    pub gateway: String,
    pub lease_time: u32,
    pub lease_max: u64,
    pub domain: String,
    pub conf_file: String,
    pub dns_servers: Vec<String>,
    pub mtu: Option<u32>,
    pub hosts: Vec<DhcpHost>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpHost {
    pub mac: String,
    pub hostname: String,
    pub address: String,
    pub leased: bool,
}

impl DhcpHost {
    /// nova's hosts file line: `MAC,HOSTNAME.DOMAIN,IP`.
    pub fn line(&self, domain: &str) -> String {
        format!("{},{}.{},{}", self.mac, self.hostname, domain, self.address)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpRelease {
    pub bridge: String,
    pub address: String,
    pub mac: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingBinding {
    pub address: String,
    pub interface: String,
    pub fixed: String,
}

/// What the host plan is computed from.
pub struct Snapshot<'a> {
    pub networks: &'a [Network],
    pub bound: &'a [BoundAddress],
    pub floating: &'a [FloatingIp],
    pub rules: &'a [GroupRule],
    pub provider_rules: &'a [SgRule],
}

fn is_network_host(n: &Network, host: &str, bound: &[BoundAddress]) -> bool {
    if n.multi_host {
        bound
            .iter()
            .any(|b| b.network_id == n.id && b.instance_host.as_deref() == Some(host))
    } else {
        n.host.as_deref() == Some(host)
    }
}

pub fn host_plan(s: &Snapshot, cfg: &Config, host: &str, generation: u64) -> HostPlan {
    let mut plan = HostPlan {
        host: host.to_string(),
        generation,
        firewall_driver: match cfg.firewall_driver {
            FirewallDriver::Iptables => "iptables",
            FirewallDriver::Nftables => "nftables",
            FirewallDriver::Noop => "noop",
        }
        .into(),
        ..HostPlan::default()
    };
    let mut fw = Ruleset::default();
    let mut served_cidrs = Vec::new();
    for n in s.networks {
        let Some(bridge) = n.bridge.clone() else {
            continue;
        };
        let network_host = is_network_host(n, host, s.bound);
        let has_instances = s.bound.iter().any(|b| {
            b.network_id == n.id && b.allocated && b.instance_host.as_deref() == Some(host)
        });
        if !network_host && !has_instances {
            continue;
        }
        // nova: the configured interface overrides the network's (bug 833426).
        let interface = cfg
            .flat_interface
            .clone()
            .filter(|_| n.vlan.is_none())
            .or_else(|| n.vlan.and(cfg.vlan_interface.clone()))
            .or_else(|| n.bridge_interface.clone());
        let cidr = n.cidr_v4();
        let gateway = match (network_host, cidr, &n.dhcp_server) {
            (true, Some(c), Some(d)) => Some(format!("{d}/{}", c.prefix())),
            _ => None,
        };
        plan.bridges.push(BridgePlan {
            network_uuid: n.uuid.clone(),
            name: bridge.clone(),
            interface,
            gateway,
            broadcast: n.broadcast.clone().filter(|_| network_host),
            vlan: n.vlan,
            mtu: n.mtu,
        });
        fw.push(
            Chain::FilterForward,
            Match {
                in_iface: Some(bridge.clone()),
                ..Match::default()
            },
            Target::Accept,
        );
        fw.push(
            Chain::FilterForward,
            Match {
                out_iface: Some(bridge.clone()),
                ..Match::default()
            },
            Target::Accept,
        );
        if !network_host {
            continue;
        }
        plan.ip_forward = true;
        let Some(c) = cidr else { continue };
        served_cidrs.push(c.to_string());
        let in_net = |b: &&BoundAddress| {
            b.network_id == n.id && (!n.multi_host || b.instance_host.as_deref() == Some(host))
        };
        if cfg.network_manager.uses_dhcp() && n.enable_dhcp {
            let listen = n.dhcp_server.clone().unwrap_or_default();
            let mut dns_servers = cfg.dns_server.clone();
            if cfg.use_network_dns_servers {
                dns_servers.extend(n.dns1.iter().chain(n.dns2.iter()).cloned());
            }
            plan.dhcp.push(DhcpPlan {
                network_uuid: n.uuid.clone(),
                network_id: n.id,
                label: n.label.clone(),
                bridge: bridge.clone(),
                listen_address: listen.clone(),
                dhcp_start: n.dhcp_start.clone().unwrap_or_default(),
                netmask: n.netmask.clone().unwrap_or_default(),
                gateway: if n.multi_host && !n.share_address {
                    listen
                } else {
                    n.gateway.clone().unwrap_or_default()
                },
                lease_time: cfg.dhcp_lease_time,
                lease_max: c.size(),
                domain: cfg.dhcp_domain.clone(),
                conf_file: cfg.dnsmasq_config_file.clone(),
                dns_servers,
                mtu: n.mtu,
                hosts: s
                    .bound
                    .iter()
                    .filter(in_net)
                    .filter(|b| b.allocated)
                    .map(|b| DhcpHost {
                        mac: b.mac.clone(),
                        hostname: b.hostname.clone(),
                        address: b.address.clone(),
                        leased: b.leased,
                    })
                    .collect(),
            });
            for port in [67u16, 53] {
                for proto in [Proto::Udp, Proto::Tcp] {
                    fw.push(
                        Chain::FilterInput,
                        Match {
                            in_iface: Some(bridge.clone()),
                            proto: Some(proto),
                            dport: Some(port),
                            ..Match::default()
                        },
                        Target::Accept,
                    );
                }
            }
            fw.push(
                Chain::ManglePostrouting,
                Match {
                    out_iface: Some(bridge.clone()),
                    proto: Some(Proto::Udp),
                    dport: Some(68),
                    ..Match::default()
                },
                Target::ChecksumFill,
            );
            if cfg.force_dhcp_release {
                plan.releases.extend(
                    s.bound
                        .iter()
                        .filter(in_net)
                        .filter(|b| !b.allocated && b.leased)
                        .map(|b| DhcpRelease {
                            bridge: bridge.clone(),
                            address: b.address.clone(),
                            mac: b.mac.clone(),
                        }),
                );
            }
        }
        // nova's init_host order: snat, then the metadata, dmz and fixed-to-fixed exceptions.
        let cidr_s = c.to_string();
        fw.push(
            Chain::NatSnat,
            Match {
                src: Some(cidr_s.clone()),
                out_iface: Some(cfg.public_interface.clone()).filter(|p| !p.is_empty()),
                ..Match::default()
            },
            Target::Snat(cfg.routing_source_ip().to_string()),
        );
        fw.push(
            Chain::NatPostrouting,
            Match {
                src: Some(cidr_s.clone()),
                dst: Some(format!("{}/32", cfg.metadata_host())),
                ..Match::default()
            },
            Target::Accept,
        );
        for dmz in &cfg.dmz_cidr {
            fw.push(
                Chain::NatPostrouting,
                Match {
                    src: Some(cidr_s.clone()),
                    dst: Some(dmz.clone()),
                    ..Match::default()
                },
                Target::Accept,
            );
        }
        fw.push(
            Chain::NatPostrouting,
            Match {
                src: Some(cidr_s.clone()),
                dst: Some(cidr_s.clone()),
                not_dnat: true,
                ..Match::default()
            },
            Target::Accept,
        );
    }
    if !served_cidrs.is_empty() {
        fw.push(
            Chain::NatPrerouting,
            Match {
                dst: Some(format!("{METADATA_ADDRESS}/32")),
                proto: Some(Proto::Tcp),
                dport: Some(METADATA_PORT),
                ..Match::default()
            },
            Target::Dnat(format!("{}:{}", cfg.metadata_host(), cfg.metadata_port)),
        );
    }
    for f in s
        .floating
        .iter()
        .filter(|f| f.host.as_deref() == Some(host))
    {
        let Some(fixed) = &f.fixed_ip else { continue };
        let interface = if cfg.public_interface.is_empty() {
            f.interface.clone()
        } else {
            cfg.public_interface.clone()
        };
        let float32 = format!("{}/32", f.address);
        let fixed32 = format!("{fixed}/32");
        for chain in [Chain::NatPrerouting, Chain::NatOutput] {
            fw.push(
                chain,
                Match {
                    dst: Some(float32.clone()),
                    ..Match::default()
                },
                Target::Dnat(fixed.clone()),
            );
        }
        fw.push(
            Chain::NatFloatSnat,
            Match {
                src: Some(fixed32.clone()),
                ..Match::default()
            },
            Target::Snat(f.address.clone()),
        );
        plan.floating.push(FloatingBinding {
            address: f.address.clone(),
            interface,
            fixed: fixed.clone(),
        });
    }
    // Floating DNATs must win over nothing else in PREROUTING, but the metadata DNAT only
    // matches 169.254.169.254, so order between them does not matter; keep a stable order.
    fw.rules.sort_by_key(|r: &Rule| r.chain);
    plan.firewall = fw;
    if cfg.firewall_driver != FirewallDriver::Noop {
        plan.security = security_plan(s, cfg, host);
    }
    plan
}

fn security_plan(s: &Snapshot, cfg: &Config, host: &str) -> SecurityPlan {
    let mut by_instance: BTreeMap<&str, Vec<&BoundAddress>> = BTreeMap::new();
    for b in s
        .bound
        .iter()
        .filter(|b| b.allocated && b.instance_host.as_deref() == Some(host))
    {
        by_instance
            .entry(b.instance_uuid.as_str())
            .or_default()
            .push(b);
    }
    let mut sources = BTreeSet::new();
    let mut instances = Vec::new();
    for (uuid, addrs) in by_instance {
        let mut ports: Vec<PortSecurity> = Vec::new();
        for b in &addrs {
            let net = s.networks.iter().find(|n| n.id == b.network_id);
            match ports.iter_mut().find(|p| p.mac == b.mac) {
                Some(p) => p.ips.push(b.address.clone()),
                None => ports.push(PortSecurity {
                    device: b.device.clone(),
                    mac: b.mac.clone(),
                    ips: vec![b.address.clone()],
                    network_cidr: net.and_then(|n| n.cidr.clone()).unwrap_or_default(),
                    dhcp_server: net.and_then(|n| n.dhcp_server.clone()),
                }),
            }
        }
        let groups: BTreeSet<i64> = addrs
            .iter()
            .flat_map(|b| b.groups.iter().copied())
            .collect();
        let mut rules: Vec<SgRule> = s
            .rules
            .iter()
            .filter(|r| groups.contains(&r.group_id))
            .map(|r| r.rule.clone())
            .collect();
        rules.sort();
        rules.dedup();
        sources.extend(rules.iter().filter_map(|r| r.group));
        instances.push(InstanceSecurity {
            id: addrs[0].instance_id,
            uuid: uuid.to_string(),
            ports,
            rules,
        });
    }
    let mut group_members: BTreeMap<i64, Vec<String>> =
        sources.iter().map(|g| (*g, Vec::new())).collect();
    for b in s.bound.iter().filter(|b| b.allocated) {
        for g in &b.groups {
            if let Some(m) = group_members.get_mut(g) {
                m.push(b.address.clone());
            }
        }
    }
    SecurityPlan {
        allow_same_net: cfg.allow_same_net_traffic,
        instances,
        group_members,
        provider_rules: s.provider_rules.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planning::{plan_networks, NetworkRequest};

    fn seed_network() -> Network {
        let req = NetworkRequest {
            label: "vmnet".into(),
            cidr: Some("10.0.0.0/24".into()),
            bridge: Some("br100".into()),
            ..Default::default()
        };
        let cfg = Config::default();
        let mut n = plan_networks(&req, cfg.network_manager, &cfg, &[], || "u-1".into())
            .unwrap()
            .networks
            .remove(0)
            .network;
        n.id = 1;
        n.host = Some("controller".into());
        n
    }

    fn cirros() -> BoundAddress {
        BoundAddress {
            network_id: 1,
            address: "10.0.0.2".into(),
            mac: "fa:16:3e:2c:e8:ec".into(),
            vif_uuid: "v".into(),
            instance_uuid: "i".into(),
            instance_id: 9,
            hostname: "cirros".into(),
            instance_host: Some("compute-1".into()),
            allocated: true,
            leased: false,
            device: Some("vnet0".into()),
            groups: vec![1],
        }
    }

    #[test]
    fn controller_serves_dhcp_and_nat_compute_only_bridges() {
        let cfg = Config {
            flat_interface: Some("eth2".into()),
            public_interface: "eth1".into(),
            my_ip: "192.168.56.200".into(),
            ..Config::default()
        };
        let nets = [seed_network()];
        let bound = [cirros()];
        let s = Snapshot {
            networks: &nets,
            bound: &bound,
            floating: &[],
            rules: &[],
            provider_rules: &[],
        };
        let ctl = host_plan(&s, &cfg, "controller", 7);
        assert_eq!(ctl.bridges[0].gateway.as_deref(), Some("10.0.0.1/24"));
        assert_eq!(ctl.bridges[0].interface.as_deref(), Some("eth2"));
        assert_eq!(ctl.dhcp.len(), 1);
        assert_eq!(
            ctl.dhcp[0].hosts[0].line("novalocal"),
            "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2"
        );
        assert!(ctl.ip_forward);
        assert!(ctl
            .firewall
            .in_chain(Chain::NatPrerouting)
            .any(|r| r.target == Target::Dnat("192.168.56.200:8775".into())));
        let c1 = host_plan(&s, &cfg, "compute-1", 7);
        assert_eq!(c1.bridges.len(), 1);
        assert!(c1.bridges[0].gateway.is_none() && c1.dhcp.is_empty() && !c1.ip_forward);
        let c2 = host_plan(&s, &cfg, "compute-2", 7);
        assert!(c2.bridges.is_empty());
    }

    #[test]
    fn compute_hosts_get_their_instances_rules() {
        let cfg = Config::default();
        let nets = [seed_network()];
        let mut other = cirros();
        other.address = "10.0.0.3".into();
        other.mac = "fa:16:3e:00:00:03".into();
        other.instance_uuid = "j".into();
        other.instance_host = Some("compute-2".into());
        other.groups = vec![2];
        let bound = [cirros(), other];
        let rules = [
            GroupRule {
                group_id: 1,
                rule: SgRule {
                    proto: Some(Proto::Tcp),
                    from_port: Some(22),
                    to_port: Some(22),
                    cidr: Some("0.0.0.0/0".into()),
                    group: None,
                },
            },
            GroupRule {
                group_id: 1,
                rule: SgRule {
                    proto: None,
                    from_port: None,
                    to_port: None,
                    cidr: None,
                    group: Some(2),
                },
            },
            GroupRule {
                group_id: 2,
                rule: SgRule {
                    proto: Some(Proto::Icmp),
                    from_port: Some(-1),
                    to_port: Some(-1),
                    cidr: Some("0.0.0.0/0".into()),
                    group: None,
                },
            },
        ];
        let s = Snapshot {
            networks: &nets,
            bound: &bound,
            floating: &[],
            rules: &rules,
            provider_rules: &[],
        };
        let p = host_plan(&s, &cfg, "compute-1", 1);
        assert_eq!(p.security.instances.len(), 1);
        let i = &p.security.instances[0];
        assert_eq!((i.id, i.rules.len()), (9, 2));
        assert_eq!(i.ports[0].device.as_deref(), Some("vnet0"));
        assert_eq!(i.ports[0].dhcp_server.as_deref(), Some("10.0.0.1"));
        assert_eq!(p.security.group_members[&2], ["10.0.0.3"]);
        let noop = Config {
            firewall_driver: FirewallDriver::Noop,
            ..Config::default()
        };
        assert!(host_plan(&s, &noop, "compute-1", 1)
            .security
            .instances
            .is_empty());
    }

    #[test]
    fn deleted_leased_instances_are_released() {
        let cfg = Config::default();
        let nets = [seed_network()];
        let mut b = cirros();
        b.allocated = false;
        b.leased = true;
        let bound = [b];
        let s = Snapshot {
            networks: &nets,
            bound: &bound,
            floating: &[],
            rules: &[],
            provider_rules: &[],
        };
        let p = host_plan(&s, &cfg, "controller", 1);
        assert!(p.dhcp[0].hosts.is_empty());
        assert_eq!(p.releases.len(), 1);
        let no_force = Config {
            force_dhcp_release: false,
            ..Config::default()
        };
        assert!(host_plan(&s, &no_force, "controller", 1)
            .releases
            .is_empty());
    }
}
