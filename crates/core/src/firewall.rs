//! A host's firewall and NAT intent, as data: what its netfilter must do for the bridges
//! it has and the networks it is the gateway of, never how. Each driver
//! (`agent/src/firewall/`) renders it its own way (nova's iptables chains, nftables tables);
//! nothing here knows their syntax. Floating IPs travel as bindings
//! (`HostPlan::floating`), instances' filters as `HostPlan::security`.

use std::num::NonZeroU16;

use serde::{Deserialize, Serialize};

use crate::valid::{CidrText, IfName, Ipv4Text};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

/// The gateway's part of a host's netfilter (nova's `linux_net`, whatever the firewall
/// driver): forwarding through the host's bridges and, for the networks it serves, the
/// DHCP and DNS accepts, source NAT with its exceptions, and the metadata redirect.
///
/// Agents and the server ship together: an agent older than this shape (a rule list in
/// nova's layout, `firewall.rules`) does not read it, and need not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayPlan {
    /// Every bridge on this host, in plan order: traffic forwarded into or out of it is
    /// accepted (after the instances' filters).
    pub forward: Vec<IfName>,
    /// The networks this host is the network host of, in plan order.
    pub served: Vec<ServedNetwork>,
    /// Where the served networks' traffic to the outside is source-NATed (nova's
    /// `routing_source_ip`). Set only when `served` is not empty.
    pub snat: Option<SourceNat>,
    /// Destinations the served networks reach with their own addresses (nova's
    /// `dmz_cidr`), like the metadata host and each network itself. Set only when `served`
    /// is not empty.
    pub dmz: Vec<CidrText>,
    /// Where guests' metadata requests go. Set only when `served` is not empty.
    pub metadata: Option<MetadataRedirect>,
    /// Each served project's way in from outside (cloudpipe), while its VPN instance holds
    /// the network's VPN address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpn: Vec<VpnForward>,
    /// Dual stack: the metadata service at `fe80::a9fe:a9fe` on these bridges, answered by
    /// this host's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_v6: Option<MetadataV6>,
}

/// The metadata service over IPv6, as later Nova and Neutron offer it: each listed bridge
/// carries `fe80::a9fe:a9fe`, and requests to its port 80 are DNATed to `port` on that same
/// address, where this host's agent answers. A link-local source cannot be forwarded to a
/// server elsewhere, so the host of the bridge answers itself, from its copy of the
/// instances' metadata; the instance is the one whose MAC the source's EUI-64 interface
/// identifier carries (the bridge table lets a port send to this address only from its own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataV6 {
    pub bridges: Vec<IfName>,
    pub port: NonZeroU16,
}

/// The port every cloudpipe VPN instance's OpenVPN server listens on (UDP).
pub const VPN_PRIVATE_PORT: u16 = 1194;

/// nova's `ensure_vpn_forward`: `public:port/udp` (on this host, in from outside or from
/// the host itself) is DNATed to the VPN instance's `private:1194/udp`, and forwarded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnForward {
    pub public: Ipv4Text,
    pub port: NonZeroU16,
    pub private: Ipv4Text,
}

/// A network this host is the gateway of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedNetwork {
    pub bridge: IfName,
    pub cidr: CidrText,
    /// This host runs the network's DHCP server: DHCP and DNS are accepted from the
    /// bridge, and DHCP replies on it get their UDP checksum filled (guests that check it).
    pub serves_dhcp: bool,
}

/// The default SNAT of the served networks; their traffic to each other, to the metadata
/// host, to `dmz` and connections that were DNATed (floating IPs) are exempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceNat {
    pub to: Ipv4Text,
    /// Only traffic leaving through this interface (nova's `public_interface`); None: any.
    pub out_interface: Option<IfName>,
}

/// 169.254.169.254:80 redirected to the metadata server (nova's `metadata_host` and
/// `metadata_port`), whose requests this host's INPUT then accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataRedirect {
    pub host: Ipv4Text,
    pub port: NonZeroU16,
}

impl MetadataRedirect {
    /// A server on loopback is reached by redirecting to this host's port (nova's
    /// `REDIRECT --to-ports`): a DNAT to 127.0.0.1 is dropped unless `route_localnet` is set.
    pub fn is_local(&self) -> bool {
        self.host.addr().is_loopback()
    }
}
