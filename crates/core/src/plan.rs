//! A host's desired state as a pure function of the stored state: which bridges, gateway
//! addresses, DHCP servers, firewall and NAT intent and floating addresses it must have. The
//! server computes it; the agent renders and applies it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::num::NonZeroU16;

use serde::{Deserialize, Serialize};

use crate::config::{Config, FirewallDriver};
use crate::firewall::{
    GatewayPlan, MetadataRedirect, MetadataV6, Proto, ServedNetwork, SourceNat, VpnForward,
};
use crate::model::{BoundAddress, FloatingIp, Network};
use crate::net::Ipv4Cidr;
use crate::segment::{plan_segment, Segment, SegmentInputs, VXLAN_OVERHEAD};
use crate::valid::{
    CidrText, DhcpTag, DnsDomain, Hostname, IfAddr, IfName, Ipv4Text, Ipv6Prefix, Ipv6Text,
    MacText, Mtu, VlanId,
};

/// 169.254.169.254:80, where every cloud image looks for its metadata.
pub const METADATA_ADDRESS: &str = "169.254.169.254";
pub const METADATA_PORT: u16 = 80;
/// The metadata service's IPv6 address, link-local on each instance's link.
pub const METADATA_ADDRESS_V6: &str = "fe80::a9fe:a9fe";
/// Where a host's agent answers metadata requests over IPv6 (the DNAT's target; the port
/// Neutron's metadata proxy uses).
pub const METADATA_V6_PORT: u16 = 9697;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostPlan {
    pub host: String,
    pub generation: u64,
    pub firewall_driver: FirewallDriver,
    pub bridges: Vec<BridgePlan>,
    pub dhcp: Vec<DhcpPlan>,
    /// The gateway's accepts, SNAT and its exceptions, the metadata redirect: the host's
    /// netfilter intent but for floating IPs, which `floating` carries, and instances'
    /// filters, which `security` carries.
    pub gateway: GatewayPlan,
    /// Floating addresses to bind as /32 on an interface, each mapped to its fixed address
    /// (its NAT both ways: every driver renders it from here).
    pub floating: Vec<FloatingBinding>,
    /// Leases to end with `dhcp_release` (instances deleted with `force_dhcp_release`).
    pub releases: Vec<DhcpRelease>,
    pub ip_forward: bool,
    /// What was left out because a stored value failed validation, one line each; the
    /// server logs them and the agent reports them, the rest of the plan applies.
    #[serde(default)]
    pub refused: Vec<String>,
    /// Security groups and anti-spoofing for the instances on this host.
    #[serde(default)]
    pub security: SecurityPlan,
    /// Dual stack (`use_ipv6`): the networks this host is the gateway of that have an IPv6
    /// prefix. IPv6 forwarding is on while there is one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ra: Vec<RaPlan>,
}

/// IPv6 on the bridge of a network this host serves: the gateway's address on the bridge
/// and radvd advertising the prefix, from which guests configure their addresses (nova's
/// `update_ra` and `initialize_gateway_device`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaPlan {
    pub network_uuid: String,
    pub bridge: IfName,
    pub prefix: Ipv6Prefix,
    /// The network's `gateway_v6`, bound on the bridge with the prefix's length.
    pub gateway: Ipv6Text,
    /// A multi-host network: every host's bridge has the same gateway and advertises the
    /// same prefix on the shared segment, so each keeps its neighbour discovery and router
    /// advertisements to its own instances (`agent/src/isolation.rs`) and binds the gateway
    /// without duplicate address detection.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multi_host: bool,
}

/// What filters traffic to and from this host's instances.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityPlan {
    pub allow_same_net: bool,
    pub instances: Vec<InstanceSecurity>,
    /// Members' fixed IPs of each security group some rule here names as its source.
    pub group_members: BTreeMap<i64, Vec<Ipv4Text>>,
    /// Dual stack: the same members' IPv6 addresses (only groups with some).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_members_v6: BTreeMap<i64, Vec<Ipv6Text>>,
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
    pub device: Option<IfName>,
    pub mac: MacText,
    pub ips: Vec<Ipv4Text>,
    pub network_cidr: Option<CidrText>,
    pub dhcp_server: Option<Ipv4Text>,
    /// Dual stack: the address the instance autoconfigures on this port (EUI-64 of its MAC
    /// in the network's prefix), which it may send from besides link-local ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips_v6: Vec<Ipv6Text>,
    /// Dual stack: the network's IPv6 prefix (same-network traffic, when allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_cidr_v6: Option<Ipv6Prefix>,
}

/// One ingress rule (nova-network's groups had no egress rules).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SgRule {
    pub proto: Option<Proto>,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub cidr: Option<CidrText>,
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
    pub name: IfName,
    /// The physical (or VLAN) interface enslaved to the bridge.
    pub interface: Option<IfName>,
    /// `dhcp_server/prefix`, on the network host only.
    pub gateway: Option<IfAddr>,
    pub broadcast: Option<Ipv4Text>,
    pub vlan: Option<VlanId>,
    pub mtu: Option<Mtu>,
    /// A VLAN network's project segment: the agent makes its device and enslaves it (it is
    /// then `interface`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,
    /// A multi-host network's shared address (`share_address`): every host has it on its
    /// bridge, so the agent keeps its ARP and the DHCP traffic of this host's instances from
    /// crossing `interface` to the other hosts (nova's `isolate_dhcp_address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_address: Option<Ipv4Text>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DhcpPlan {
    pub network_uuid: String,
    pub network_id: i64,
    /// dnsmasq's tag for the range: the label when it is a valid tag, else `net<id>`.
    pub label: DhcpTag,
    pub bridge: IfName,
    pub listen_address: Ipv4Text,
    pub dhcp_start: Ipv4Text,
    pub netmask: Ipv4Text,
    pub gateway: Ipv4Text,
    pub lease_time: u32,
    pub lease_max: u64,
    pub domain: DnsDomain,
    /// The operator's `dnsmasq_config_file` (checked at start), or empty.
    pub conf_file: String,
    pub dns_servers: Vec<Ipv4Text>,
    pub mtu: Option<Mtu>,
    pub hosts: Vec<DhcpHost>,
    /// Addresses taken from instances that still run (`removeFixedIp`): dnsmasq must forget
    /// their records, or the guest keeps renewing them.
    #[serde(default)]
    pub revoked: Vec<Ipv4Text>,
}

/// The tag of hosts whose network must not give them a default route: every VIF but an
/// instance's first (nova's `use_single_default_gateway`, `NW-<vif>` per host there).
pub const NO_DEFAULT_ROUTE_TAG: &str = "nogw";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpHost {
    pub mac: MacText,
    pub hostname: Hostname,
    pub address: Ipv4Text,
    pub leased: bool,
    #[serde(default = "yes")]
    pub default_route: bool,
}

fn yes() -> bool {
    true
}

impl DhcpHost {
    /// nova's hosts file line: `MAC,HOSTNAME.DOMAIN,IP`, tagged `set:nogw` on an instance's
    /// other VIFs.
    pub fn line(&self, domain: &str) -> String {
        let tag = if self.default_route {
            String::new()
        } else {
            format!("set:{NO_DEFAULT_ROUTE_TAG},")
        };
        format!(
            "{},{tag}{}.{},{}",
            self.mac, self.hostname, domain, self.address
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpRelease {
    pub bridge: IfName,
    pub address: Ipv4Text,
    pub mac: MacText,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingBinding {
    pub address: Ipv4Text,
    pub interface: IfName,
    pub fixed: Ipv4Text,
}

/// What the host plan is computed from.
pub struct Snapshot<'a> {
    pub networks: &'a [Network],
    pub bound: &'a [BoundAddress],
    pub floating: &'a [FloatingIp],
    pub rules: &'a [GroupRule],
    pub provider_rules: &'a [SgRule],
    /// For each VLAN network, the management addresses (`my_ip`) of the hosts that have it:
    /// its network host and the hosts of its instances (VXLAN floods to them).
    pub segment_peers: &'a BTreeMap<i64, Vec<Ipv4Text>>,
    /// This host's own address in each multi-host network without a shared address (nova's
    /// fixed IP per host): its instances' gateway and DHCP server there.
    pub host_addresses: &'a BTreeMap<i64, Ipv4Text>,
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

/// The values of one network that reach a host, each parsed into its validated type. A
/// network whose stored values do not parse (a store written by an older version, or by
/// hand) is left out of every plan and named in [`HostPlan::refused`].
struct NetValues {
    bridge: IfName,
    interface: Option<IfName>,
    cidr: Option<Ipv4Cidr>,
    dhcp_server: Option<Ipv4Text>,
    gateway: Option<Ipv4Text>,
    broadcast: Option<Ipv4Text>,
    dhcp_start: Option<Ipv4Text>,
    netmask: Option<Ipv4Text>,
    dns: Vec<Ipv4Text>,
    vlan: Option<VlanId>,
    mtu: Option<Mtu>,
}

fn opt<T>(
    field: &str,
    v: &Option<String>,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse(s).map_err(|e| format!("{field}: {e}")))
        .transpose()
}

fn net_values(n: &Network, cfg: &Config) -> Result<Option<NetValues>, String> {
    let Some(bridge) = &n.bridge else {
        return Ok(None);
    };
    let bridge = IfName::new(bridge.as_str()).map_err(|e| format!("bridge: {e}"))?;
    // nova: the configured interface overrides the network's (bug 833426).
    let interface = cfg
        .flat_interface
        .clone()
        .filter(|_| n.vlan.is_none())
        .or_else(|| n.vlan.and(cfg.vlan_interface.clone()))
        .or_else(|| n.bridge_interface.clone());
    let interface = opt("bridge_interface", &interface, |s| IfName::new(s))?;
    let cidr = opt("cidr", &n.cidr, |s| s.parse::<Ipv4Cidr>())?;
    let v4 = |s: &str| Ipv4Text::new(s);
    let mut dns = Vec::new();
    for d in [&n.dns1, &n.dns2] {
        dns.extend(opt("dns", d, v4)?);
    }
    Ok(Some(NetValues {
        bridge,
        interface,
        cidr,
        dhcp_server: opt("dhcp_server", &n.dhcp_server, v4)?,
        gateway: opt("gateway", &n.gateway, v4)?,
        broadcast: opt("broadcast", &n.broadcast, v4)?,
        dhcp_start: opt("dhcp_start", &n.dhcp_start, v4)?,
        netmask: opt("netmask", &n.netmask, v4)?,
        dns,
        vlan: n
            .vlan
            .map(VlanId::new)
            .transpose()
            .map_err(|e| e.to_string())?,
        mtu: n.mtu.map(Mtu::new).transpose().map_err(|e| e.to_string())?,
    }))
}

pub fn host_plan(s: &Snapshot, cfg: &Config, host: &str, generation: u64) -> HostPlan {
    let mut plan = HostPlan {
        host: host.to_string(),
        generation,
        firewall_driver: cfg.firewall_driver,
        ..HostPlan::default()
    };
    // Host-level values from configuration, checked at start (`Config::validate`).
    let public_interface = IfName::new(cfg.public_interface.as_str()).ok();
    let domain = DnsDomain::new(cfg.dhcp_domain.as_str())
        .unwrap_or_else(|_| DnsDomain::new("novalocal").expect("constant domain"));
    let cfg_dns: Vec<Ipv4Text> = cfg
        .dns_server
        .iter()
        .filter_map(|d| Ipv4Text::new(d.as_str()).ok())
        .collect();
    let routing_source = cfg.routing_source_ip().parse::<Ipv4Addr>().ok();
    let metadata_host = cfg.metadata_host().parse::<Ipv4Addr>().ok();
    let mut gw = GatewayPlan::default();
    for n in s.networks {
        let network_host = is_network_host(n, host, s.bound);
        let has_instances = s.bound.iter().any(|b| {
            b.network_id == n.id && b.allocated && b.instance_host.as_deref() == Some(host)
        });
        if !network_host && !has_instances {
            continue;
        }
        // A VLAN network no project has yet is in the free pool: set up nowhere (nova set one
        // up on its first instance).
        if n.vlan.is_some() && n.project_id.is_none() && !has_instances {
            continue;
        }
        let v = match net_values(n, cfg) {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(e) => {
                plan.refused.push(format!(
                    "network {} ({}): {e}",
                    n.uuid,
                    n.label.escape_debug()
                ));
                continue;
            }
        };
        let segment = match v.vlan {
            Some(id) => {
                let local = Ipv4Text::new(cfg.my_ip.as_str()).ok();
                let peers = s.segment_peers.get(&n.id).map_or(&[][..], Vec::as_slice);
                match plan_segment(&SegmentInputs {
                    driver: cfg.segment_driver,
                    id,
                    parent: v.interface.as_ref(),
                    local: local.as_ref(),
                    port: cfg.vxlan_port,
                    peers,
                }) {
                    Ok(seg) => Some(seg),
                    Err(e) => {
                        plan.refused.push(format!(
                            "network {} ({}): {e}",
                            n.uuid,
                            n.label.escape_debug()
                        ));
                        continue;
                    }
                }
            }
            None => None,
        };
        // A guest on a VXLAN segment must send frames the encapsulation leaves room for.
        let guest_mtu = match &segment {
            Some(Segment::Vxlan { .. }) => v
                .mtu
                .or_else(|| Mtu::new(crate::valid::ETHERNET_MTU - VXLAN_OVERHEAD).ok()),
            _ => v.mtu,
        };
        let bridge = v.bridge.clone();
        // Where this host serves the network from: in multi-host mode its own address (two
        // hosts must not both answer for the network's one dhcp_server), unless the address
        // is shared and isolated on every host.
        let per_host = n.multi_host && !n.share_address;
        let serve_from = if per_host {
            let own = s.host_addresses.get(&n.id).cloned();
            if own.is_none() && network_host {
                plan.refused.push(format!(
                    "network {} ({}): this host has no address of its own in it yet \
                     (multi_host): no gateway or DHCP server here",
                    n.uuid,
                    n.label.escape_debug()
                ));
            }
            own
        } else {
            v.dhcp_server.clone()
        };
        let gateway = match (network_host, v.cidr, &serve_from) {
            (true, Some(c), Some(d)) => IfAddr::new(d.addr(), c.prefix()),
            _ => None,
        };
        plan.bridges.push(BridgePlan {
            network_uuid: n.uuid.clone(),
            name: bridge.clone(),
            interface: segment
                .as_ref()
                .map(Segment::device)
                .or(v.interface.clone()),
            gateway,
            broadcast: v.broadcast.clone().filter(|_| network_host),
            vlan: v.vlan,
            mtu: v.mtu,
            segment,
            shared_address: serve_from
                .clone()
                .filter(|_| network_host && n.multi_host && n.share_address),
        });
        gw.forward.push(bridge.clone());
        if !network_host {
            continue;
        }
        plan.ip_forward = true;
        // As nova: radvd runs where the DHCP managers run dnsmasq (not for Flat).
        if cfg.use_ipv6 && cfg.network_manager.uses_dhcp() {
            match ra_plan(n, &bridge) {
                Ok(Some(r)) => plan.ra.push(r),
                Ok(None) => {}
                Err(e) => plan.refused.push(format!(
                    "network {} ({}): {e}",
                    n.uuid,
                    n.label.escape_debug()
                )),
            }
        }
        let Some(c) = v.cidr else { continue };
        let mut served = ServedNetwork {
            bridge: bridge.clone(),
            cidr: CidrText::from(c),
            serves_dhcp: false,
        };
        let in_net = |b: &&BoundAddress| {
            b.network_id == n.id && (!n.multi_host || b.instance_host.as_deref() == Some(host))
        };
        let dhcp_values = (serve_from.clone(), v.dhcp_start.clone(), v.netmask.clone());
        if let (true, (Some(listen), Some(dhcp_start), Some(netmask))) = (
            cfg.network_manager.uses_dhcp() && n.enable_dhcp,
            dhcp_values,
        ) {
            let mut dns_servers = cfg_dns.clone();
            if cfg.use_network_dns_servers {
                dns_servers.extend(v.dns.iter().cloned());
            }
            let mut hosts = Vec::new();
            for b in s.bound.iter().filter(in_net).filter(|b| b.allocated) {
                match dhcp_host(b) {
                    Ok(h) => hosts.push(h),
                    Err(e) => plan.refused.push(format!(
                        "address {} on network {}: {e}",
                        b.address.escape_debug(),
                        n.uuid
                    )),
                }
            }
            // Deallocated while its instance lives on (the instance row is gone once deleted).
            let revoked = s
                .bound
                .iter()
                .filter(in_net)
                .filter(|b| !b.allocated && b.instance_id != 0)
                .filter_map(|b| Ipv4Text::new(b.address.as_str()).ok())
                .collect();
            plan.dhcp.push(DhcpPlan {
                revoked,
                network_uuid: n.uuid.clone(),
                network_id: n.id,
                label: DhcpTag::for_network(&n.label, n.id),
                bridge: bridge.clone(),
                listen_address: listen.clone(),
                dhcp_start,
                netmask,
                gateway: if per_host {
                    listen
                } else {
                    v.gateway.clone().unwrap_or(listen)
                },
                lease_time: cfg.dhcp_lease_time,
                lease_max: c.size(),
                domain: domain.clone(),
                conf_file: cfg.dnsmasq_config_file.clone(),
                dns_servers,
                mtu: guest_mtu,
                hosts,
            });
            served.serves_dhcp = true;
            if cfg.force_dhcp_release {
                for b in s
                    .bound
                    .iter()
                    .filter(in_net)
                    .filter(|b| !b.allocated && b.leased)
                {
                    if let (Ok(address), Ok(mac)) = (
                        Ipv4Text::new(b.address.as_str()),
                        MacText::new(b.mac.as_str()),
                    ) {
                        plan.releases.push(DhcpRelease {
                            bridge: bridge.clone(),
                            address,
                            mac,
                        });
                    }
                }
            }
        }
        match vpn_forward(n, s.bound) {
            Ok(Some(f)) => gw.vpn.push(f),
            Ok(None) => {}
            Err(e) => plan.refused.push(format!(
                "network {} ({}): {e}",
                n.uuid,
                n.label.escape_debug()
            )),
        }
        gw.served.push(served);
    }
    if !gw.served.is_empty() {
        gw.snat = routing_source.map(|to| SourceNat {
            to: to.into(),
            out_interface: public_interface.clone(),
        });
        gw.dmz = cfg
            .dmz_cidr
            .iter()
            .filter_map(|d| d.parse::<Ipv4Cidr>().ok())
            .map(CidrText::from)
            .collect();
        gw.metadata = metadata_host
            .zip(NonZeroU16::new(cfg.metadata_port))
            .map(|(host, port)| MetadataRedirect {
                host: host.into(),
                port,
            });
    }
    for f in s
        .floating
        .iter()
        .filter(|f| f.host.as_deref() == Some(host))
    {
        let Some(fixed) = &f.fixed_ip else { continue };
        let interface = match &public_interface {
            Some(p) => Ok(p.clone()),
            None => IfName::new(f.interface.as_str()),
        };
        let (Ok(address), Ok(fixed), Ok(interface)) = (
            f.address.parse::<Ipv4Addr>(),
            fixed.parse::<Ipv4Addr>(),
            interface,
        ) else {
            plan.refused.push(format!(
                "floating IP {}: a stored address or interface is not valid",
                f.address.escape_debug()
            ));
            continue;
        };
        plan.floating.push(FloatingBinding {
            address: address.into(),
            interface,
            fixed: fixed.into(),
        });
    }
    if !plan.ra.is_empty() {
        gw.metadata_v6 = NonZeroU16::new(METADATA_V6_PORT).map(|port| MetadataV6 {
            bridges: plan.ra.iter().map(|r| r.bridge.clone()).collect(),
            port,
        });
    }
    plan.gateway = gw;
    if cfg.firewall_driver != FirewallDriver::Noop {
        plan.security = security_plan(s, cfg, host, &mut plan.refused);
    }
    plan
}

/// A network's IPv6 gateway: its prefix and `gateway_v6` (inside the prefix), if it has one.
fn ra_plan(n: &Network, bridge: &IfName) -> Result<Option<RaPlan>, String> {
    let Some(prefix) = opt("cidr_v6", &n.cidr_v6, |s| s.parse::<crate::net::Ipv6Cidr>())? else {
        return Ok(None);
    };
    let gateway = match opt("gateway_v6", &n.gateway_v6, |s| {
        s.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{s:?} is not an IPv6 address"))
    })? {
        Some(g) if prefix.contains(g) => g,
        Some(g) => return Err(format!("gateway_v6: {g} is not in {prefix}")),
        None => prefix.nth(1),
    };
    Ok(Some(RaPlan {
        network_uuid: n.uuid.clone(),
        bridge: bridge.clone(),
        prefix: prefix.into(),
        gateway: gateway.into(),
        multi_host: n.multi_host,
    }))
}

/// A network's cloudpipe way in, while an instance (its VPN instance) holds the network's
/// VPN address: nova added it whenever it set a VLAN network up; here it goes with the
/// instance, so a scrubbed project or a deleted VPN instance leaves no DNAT behind.
fn vpn_forward(n: &Network, bound: &[BoundAddress]) -> Result<Option<VpnForward>, String> {
    let (Some(public), Some(port), Some(private)) = (
        n.vpn_public_address.as_deref().filter(|s| !s.is_empty()),
        n.vpn_public_port,
        n.vpn_private_address.as_deref().filter(|s| !s.is_empty()),
    ) else {
        return Ok(None);
    };
    let held = bound
        .iter()
        .any(|b| b.network_id == n.id && b.allocated && b.address == private);
    if !held {
        return Ok(None);
    }
    let port = u16::try_from(port)
        .ok()
        .and_then(NonZeroU16::new)
        .ok_or_else(|| format!("vpn_public_port: {port} is not a port (1 to 65535)"))?;
    Ok(Some(VpnForward {
        public: Ipv4Text::new(public).map_err(|e| format!("vpn_public_address: {e}"))?,
        port,
        private: Ipv4Text::new(private).map_err(|e| format!("vpn_private_address: {e}"))?,
    }))
}

fn dhcp_host(b: &BoundAddress) -> Result<DhcpHost, String> {
    Ok(DhcpHost {
        mac: MacText::new(b.mac.as_str())?,
        hostname: Hostname::new(b.hostname.as_str())?,
        address: Ipv4Text::new(b.address.as_str())?,
        leased: b.leased,
        default_route: b.default_route,
    })
}

/// The address DHCP answers come from on a network, as this host's instances see it.
fn dhcp_server_for(s: &Snapshot, n: &Network) -> Option<Ipv4Text> {
    if n.multi_host && !n.share_address {
        return s.host_addresses.get(&n.id).cloned();
    }
    n.dhcp_server.as_deref().and_then(|d| Ipv4Text::new(d).ok())
}

/// The port's IPv6 address and its network's prefix in dual stack, as the backend computes
/// it (`rfc2462`: the address the guest autoconfigures; `account_identifier`: the one it is
/// given in network_data.json and its interfaces file, from its project).
fn port_v6(cfg: &Config, n: &Network, b: &BoundAddress) -> Option<(Ipv6Text, Ipv6Prefix)> {
    let backend = cfg.ipv6()?;
    let prefix: crate::net::Ipv6Cidr = n.cidr_v6.as_deref()?.parse().ok()?;
    let a = crate::ipv6::instance_address(backend, n, &b.mac, &b.project_id)?;
    Some((a.into(), prefix.into()))
}

fn security_plan(
    s: &Snapshot,
    cfg: &Config,
    host: &str,
    refused: &mut Vec<String>,
) -> SecurityPlan {
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
            let (Ok(mac), Ok(ip), Ok(device)) = (
                MacText::new(b.mac.as_str()),
                Ipv4Text::new(b.address.as_str()),
                b.device.as_deref().map(IfName::new).transpose(),
            ) else {
                refused.push(format!(
                    "port {} of instance {uuid}: a stored MAC, address or device is not valid",
                    b.vif_uuid
                ));
                continue;
            };
            match ports.iter_mut().find(|p| p.mac == mac) {
                Some(p) => p.ips.push(ip),
                None => {
                    let v6 = net.and_then(|n| port_v6(cfg, n, b));
                    ports.push(PortSecurity {
                        device,
                        ips: vec![ip],
                        network_cidr: net.and_then(|n| n.cidr_v4()).map(CidrText::from),
                        dhcp_server: net.and_then(|n| dhcp_server_for(s, n)),
                        ips_v6: v6.iter().map(|(a, _)| a.clone()).collect(),
                        network_cidr_v6: v6.map(|(_, p)| p),
                        mac,
                    })
                }
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
    let mut group_members: BTreeMap<i64, Vec<Ipv4Text>> =
        sources.iter().map(|g| (*g, Vec::new())).collect();
    // Dual stack: the members' IPv6 addresses too, as nova's rules from a group named them.
    let mut group_members_v6: BTreeMap<i64, Vec<Ipv6Text>> = BTreeMap::new();
    for b in s.bound.iter().filter(|b| b.allocated) {
        let v6 = s
            .networks
            .iter()
            .find(|n| n.id == b.network_id)
            .and_then(|n| port_v6(cfg, n, b));
        for g in &b.groups {
            if let (Some(m), Ok(a)) = (group_members.get_mut(g), Ipv4Text::new(b.address.as_str()))
            {
                m.push(a);
            }
            if let (true, Some((a, _))) = (sources.contains(g), &v6) {
                let m = group_members_v6.entry(*g).or_default();
                if !m.contains(a) {
                    m.push(a.clone());
                }
            }
        }
    }
    SecurityPlan {
        allow_same_net: cfg.allow_same_net_traffic,
        instances,
        group_members,
        group_members_v6,
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
            project_id: String::new(),
            default_route: true,
        }
    }

    /// Dual stack: the gateway host gets the network's IPv6 gateway and radvd, compute hosts
    /// do not; without use_ipv6 nobody does; a stored gateway outside the prefix is refused.
    #[test]
    fn ra_on_the_gateway_host_only() {
        let mut n = seed_network();
        n.cidr_v6 = Some("fd00:1::/64".into());
        n.gateway_v6 = Some("fd00:1::1".into());
        let mut nets = [n];
        let bound = [cirros()];
        let mut cfg = Config {
            use_ipv6: true,
            ..Config::default()
        };
        let plan = |nets: &[Network], cfg: &Config, host: &str| {
            let s = Snapshot {
                networks: nets,
                bound: &bound,
                floating: &[],
                rules: &[],
                provider_rules: &[],
                segment_peers: &Default::default(),
                host_addresses: &Default::default(),
            };
            host_plan(&s, cfg, host, 1)
        };
        let ctl = plan(&nets, &cfg, "controller");
        assert_eq!(
            ctl.ra,
            [RaPlan {
                network_uuid: "u-1".into(),
                bridge: IfName::new("br100").unwrap(),
                prefix: Ipv6Prefix::new("fd00:1::/64").unwrap(),
                gateway: Ipv6Text::new("fd00:1::1").unwrap(),
                multi_host: false,
            }]
        );
        // The metadata service at fe80::a9fe:a9fe on the same bridges.
        assert_eq!(
            ctl.gateway.metadata_v6,
            Some(MetadataV6 {
                bridges: vec![IfName::new("br100").unwrap()],
                port: NonZeroU16::new(METADATA_V6_PORT).unwrap(),
            })
        );
        let compute = plan(&nets, &cfg, "compute-1");
        assert!(compute.ra.is_empty() && compute.gateway.metadata_v6.is_none());
        nets[0].gateway_v6 = Some("fd00:2::1".into());
        let bad = plan(&nets, &cfg, "controller");
        assert!(bad.ra.is_empty() && bad.gateway.metadata_v6.is_none());
        assert!(bad.refused[0].contains("gateway_v6"), "{:?}", bad.refused);
        cfg.use_ipv6 = false;
        assert!(plan(&nets, &cfg, "controller").ra.is_empty());
    }

    /// Dual stack filtering: each port's v6 address by the configured backend (for
    /// `account_identifier` from the instance's project, which the plan carries so that the
    /// agent needs none), and a rule from a group admits its members' v6 addresses too.
    #[test]
    fn ports_and_group_members_carry_v6_addresses() {
        let mut n = seed_network();
        n.cidr_v6 = Some("2001:db8::/64".into());
        let mut a = cirros();
        a.instance_host = Some("compute-1".into());
        a.mac = "00:16:3e:33:44:55".into();
        a.project_id = "test".into();
        let mut b = a.clone();
        b.address = "10.0.0.3".into();
        b.mac = "fa:16:3e:00:00:03".into();
        b.instance_uuid = "other".into();
        b.instance_id = 2;
        b.instance_host = Some("compute-2".into());
        let rules = [GroupRule {
            group_id: 1,
            rule: SgRule {
                proto: Some(Proto::Tcp),
                from_port: Some(22),
                to_port: Some(22),
                cidr: None,
                group: Some(1),
            },
        }];
        let plan = |backend: &str| {
            let cfg = Config {
                use_ipv6: true,
                ipv6_backend: backend.into(),
                ..Config::default()
            };
            let nets = [n.clone()];
            let bound = [a.clone(), b.clone()];
            let s = Snapshot {
                networks: &nets,
                bound: &bound,
                floating: &[],
                rules: &rules,
                provider_rules: &[],
                segment_peers: &Default::default(),
                host_addresses: &Default::default(),
            };
            host_plan(&s, &cfg, "compute-1", 1).security
        };
        let sec = plan("account_identifier");
        // nova's own vector (test_ipv6.py): project "test", MAC 00:16:3e:33:44:55.
        let port = &sec.instances[0].ports[0];
        assert_eq!(
            port.ips_v6,
            [Ipv6Text::new("2001:db8::a94a:8fe5:ff33:4455").unwrap()]
        );
        assert_eq!(
            port.network_cidr_v6,
            Some(Ipv6Prefix::new("2001:db8::/64").unwrap())
        );
        let members = &sec.group_members_v6[&1];
        assert_eq!(members.len(), 2);
        assert!(members.contains(&port.ips_v6[0]));
        assert_eq!(sec.group_members[&1].len(), 2);
        let sec = plan("rfc2462");
        assert_eq!(
            sec.instances[0].ports[0].ips_v6,
            [Ipv6Text::new("2001:db8::216:3eff:fe33:4455").unwrap()]
        );
        assert!(sec.group_members_v6[&1]
            .contains(&Ipv6Text::new("2001:db8::f816:3eff:fe00:3").unwrap()));
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
            segment_peers: &Default::default(),
            host_addresses: &Default::default(),
        };
        let ctl = host_plan(&s, &cfg, "controller", 7);
        assert_eq!(
            ctl.bridges[0].gateway.map(|g| g.to_string()).as_deref(),
            Some("10.0.0.1/24")
        );
        assert_eq!(ctl.bridges[0].interface.as_deref(), Some("eth2"));
        assert_eq!(ctl.dhcp.len(), 1);
        assert_eq!(
            ctl.dhcp[0].hosts[0].line("novalocal"),
            "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2"
        );
        assert!(ctl.ip_forward);
        let md = ctl.gateway.metadata.as_ref().expect("metadata redirect");
        assert_eq!((md.host.as_str(), md.port.get()), ("192.168.56.200", 8775));
        assert!(!md.is_local());
        assert_eq!(ctl.gateway.served.len(), 1);
        assert!(ctl.gateway.served[0].serves_dhcp);
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
                    cidr: Some("0.0.0.0/0".parse().unwrap()),
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
                    cidr: Some("0.0.0.0/0".parse().unwrap()),
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
            segment_peers: &Default::default(),
            host_addresses: &Default::default(),
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
            segment_peers: &Default::default(),
            host_addresses: &Default::default(),
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

    fn multi_host_snapshot_plans(share: bool) -> (HostPlan, HostPlan, HostPlan) {
        let cfg = Config {
            flat_interface: Some("eth2".into()),
            public_interface: "eth1".into(),
            ..Config::default()
        };
        let mut n = seed_network();
        n.multi_host = true;
        n.share_address = share;
        n.host = None;
        let nets = [n];
        let mut other = cirros();
        other.address = "10.0.0.3".into();
        other.mac = "fa:16:3e:00:00:03".into();
        other.instance_uuid = "j".into();
        other.instance_host = Some("compute-2".into());
        let bound = [cirros(), other];
        let plan = |host: &str, own: Option<&str>| {
            let own: BTreeMap<i64, Ipv4Text> = own
                .map(|a| (1, Ipv4Text::new(a).unwrap()))
                .into_iter()
                .collect();
            let s = Snapshot {
                networks: &nets,
                bound: &bound,
                floating: &[],
                rules: &[],
                provider_rules: &[],
                segment_peers: &Default::default(),
                host_addresses: &own,
            };
            host_plan(&s, &cfg, host, 1)
        };
        (
            plan("compute-1", Some("10.0.0.4")),
            plan("compute-2", Some("10.0.0.5")),
            plan("controller", None),
        )
    }

    #[test]
    fn multi_host_each_host_serves_its_instances_from_its_own_address() {
        let (c1, c2, ctl) = multi_host_snapshot_plans(false);
        for (p, own, mac) in [
            (&c1, "10.0.0.4", "fa:16:3e:2c:e8:ec"),
            (&c2, "10.0.0.5", "fa:16:3e:00:00:03"),
        ] {
            assert_eq!(
                p.bridges[0].gateway.map(|g| g.to_string()),
                Some(format!("{own}/24"))
            );
            assert_eq!(p.bridges[0].shared_address, None);
            let d = &p.dhcp[0];
            assert_eq!((d.listen_address.as_str(), d.gateway.as_str()), (own, own));
            let macs: Vec<&str> = d.hosts.iter().map(|h| h.mac.as_str()).collect();
            assert_eq!(macs, [mac], "only the host's own instances");
            assert_eq!(
                p.security.instances[0].ports[0].dhcp_server.as_deref(),
                Some(own)
            );
            assert!(p.ip_forward && p.gateway.snat.is_some());
        }
        assert!(ctl.bridges.is_empty() && ctl.dhcp.is_empty());
        // No address of its own yet: no gateway, no DHCP, and the reason is named.
        let nets = [{
            let mut n = seed_network();
            n.multi_host = true;
            n
        }];
        let bound = [cirros()];
        let s = Snapshot {
            networks: &nets,
            bound: &bound,
            floating: &[],
            rules: &[],
            provider_rules: &[],
            segment_peers: &Default::default(),
            host_addresses: &Default::default(),
        };
        let p = host_plan(&s, &Config::default(), "compute-1", 1);
        assert!(p.bridges[0].gateway.is_none() && p.dhcp.is_empty());
        assert!(
            p.refused[0].contains("no address of its own"),
            "{:?}",
            p.refused
        );
    }

    #[test]
    fn multi_host_shared_address_is_on_every_host_and_isolated() {
        let (c1, c2, _) = multi_host_snapshot_plans(true);
        for p in [&c1, &c2] {
            let b = &p.bridges[0];
            assert_eq!(
                b.gateway.map(|g| g.to_string()).as_deref(),
                Some("10.0.0.1/24")
            );
            assert_eq!(b.shared_address.as_deref(), Some("10.0.0.1"));
            assert_eq!(b.interface.as_deref(), Some("eth2"));
            assert_eq!(p.dhcp[0].listen_address.as_str(), "10.0.0.1");
            assert_eq!(p.dhcp[0].hosts.len(), 1);
            assert!(p.refused.is_empty());
        }
    }

    /// The VPN DNAT exists while an instance holds the network's VPN address, on the
    /// network host only, and a stored port out of range is refused by name.
    #[test]
    fn vpn_forward_follows_the_vpn_instance() {
        let cfg = Config::default();
        let mut n = seed_network();
        n.vpn_public_address = Some("192.168.56.200".into());
        n.vpn_public_port = Some(1000);
        n.vpn_private_address = Some("10.0.0.2".into());
        let nets = [n.clone()];
        let vpn = cirros();
        let snap = |bound: &[BoundAddress], nets: &[Network]| {
            let s = Snapshot {
                networks: nets,
                bound,
                floating: &[],
                rules: &[],
                provider_rules: &[],
                segment_peers: &Default::default(),
                host_addresses: &Default::default(),
            };
            (
                host_plan(&s, &cfg, "controller", 1),
                host_plan(&s, &cfg, "compute-1", 1),
            )
        };
        let (ctl, c1) = snap(std::slice::from_ref(&vpn), &nets);
        assert_eq!(
            ctl.gateway.vpn,
            vec![VpnForward {
                public: "192.168.56.200".parse().unwrap(),
                port: NonZeroU16::new(1000).unwrap(),
                private: "10.0.0.2".parse().unwrap(),
            }]
        );
        assert!(c1.gateway.vpn.is_empty());
        let mut gone = vpn.clone();
        gone.allocated = false;
        assert!(snap(&[gone], &nets).0.gateway.vpn.is_empty());
        let mut other = vpn.clone();
        other.address = "10.0.0.3".into();
        assert!(snap(&[other], &nets).0.gateway.vpn.is_empty());
        n.vpn_public_port = Some(70000);
        let (bad, _) = snap(std::slice::from_ref(&vpn), &[n]);
        assert!(bad.gateway.vpn.is_empty());
        assert!(
            bad.refused.iter().any(|r| r.contains("vpn_public_port")),
            "{:?}",
            bad.refused
        );
    }
}
