//! Flags shared by `novanet network-create` and `novanet manage network create`, accepting
//! both nova's (`--fixed-range-v4`) and nova-manage's (`--fixed_range_v4`) spellings.

use clap::Args;
use novanet_core::planning::NetworkRequest;
use novanet_core::{Error, Result};

// No doc comment on the struct: clap would show it as the about of the commands using it.
#[derive(Args, Debug, Clone, Default)]
pub struct NetworkCreateArgs {
    /// Label for the network (or --label)
    #[arg(value_name = "LABEL")]
    pub label_pos: Option<String>,
    /// The old positional form: CIDR, NUM_NETWORKS, NETWORK_SIZE
    #[arg(hide = true)]
    pub rest: Vec<String>,
    /// Label for the network (instead of the positional LABEL)
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
    /// IPv4 subnet (ex: 10.0.0.0/24)
    #[arg(
        long = "fixed-range-v4",
        alias = "fixed_range_v4",
        alias = "fixed_range",
        alias = "fixed-range",
        alias = "ip-range",
        alias = "ip_range",
        value_name = "CIDR"
    )]
    pub fixed_range_v4: Option<String>,
    /// IPv4 subnet for fixed IPs, inside the range (ex: 10.20.0.0/16)
    #[arg(long = "fixed-cidr", alias = "fixed_cidr", value_name = "CIDR")]
    pub fixed_cidr: Option<String>,
    /// VIFs on this network are connected to this bridge
    #[arg(long, value_name = "BRIDGE")]
    pub bridge: Option<String>,
    /// The bridge is connected to this interface (default: flat_interface or vlan_interface)
    #[arg(
        long = "bridge-interface",
        alias = "bridge_interface",
        value_name = "INTERFACE"
    )]
    pub bridge_interface: Option<String>,
    /// The VLAN ID to be assigned to the project (VlanManager)
    #[arg(long, value_name = "VLAN_ID")]
    pub vlan: Option<u32>,
    /// First VLAN ID to be assigned; subsequent networks get the next ones (VlanManager)
    #[arg(long = "vlan-start", alias = "vlan_start", value_name = "VLAN_ID")]
    pub vlan_start: Option<u32>,
    /// First VPN port (cloudpipe)
    #[arg(long, value_name = "PORT")]
    pub vpn: Option<u32>,
    /// IPv6 subnet (ex: fd00:1::/48)
    #[arg(long = "fixed-range-v6", alias = "fixed_range_v6", value_name = "CIDR")]
    pub fixed_range_v6: Option<String>,
    /// IPv4 gateway (default: the range's first address)
    #[arg(long, value_name = "ADDRESS")]
    pub gateway: Option<String>,
    /// IPv6 gateway
    #[arg(long = "gateway-v6", alias = "gateway_v6", value_name = "ADDRESS")]
    pub gateway_v6: Option<String>,
    /// First DNS server given to instances
    #[arg(long, value_name = "ADDRESS")]
    pub dns1: Option<String>,
    /// Second DNS server given to instances
    #[arg(long, value_name = "ADDRESS")]
    pub dns2: Option<String>,
    /// Multi host: every compute host serves the network to its own instances
    #[arg(long = "multi-host", alias = "multi_host", value_name = "T|F")]
    pub multi_host: Option<String>,
    /// The project the network belongs to (its ID, or its name)
    #[arg(
        long = "project-id",
        alias = "project_id",
        alias = "project",
        value_name = "PROJECT"
    )]
    pub project_id: Option<String>,
    /// DHCP server address (default: the gateway address)
    #[arg(long = "dhcp-server", alias = "dhcp_server", value_name = "ADDRESS")]
    pub dhcp_server: Option<String>,
    /// Start of the addresses handed to instances
    #[arg(
        long = "allowed-start",
        alias = "allowed_start",
        value_name = "ADDRESS"
    )]
    pub allowed_start: Option<String>,
    /// End of the addresses handed to instances
    #[arg(long = "allowed-end", alias = "allowed_end", value_name = "ADDRESS")]
    pub allowed_end: Option<String>,
    /// Number of networks to split the range into (nova-manage)
    #[arg(long = "num-networks", alias = "num_networks", value_name = "N")]
    pub num_networks: Option<u32>,
    /// Number of addresses in each network (nova-manage)
    #[arg(long = "network-size", alias = "network_size", value_name = "N")]
    pub network_size: Option<u64>,
    /// The network's UUID (default: a new one)
    #[arg(long, value_name = "UUID")]
    pub uuid: Option<String>,
    /// MTU for the network
    #[arg(long, value_name = "MTU")]
    pub mtu: Option<u32>,
    /// Enable DHCP
    #[arg(long = "enable-dhcp", alias = "enable_dhcp", value_name = "T|F")]
    pub enable_dhcp: Option<String>,
    /// Share the gateway address between hosts (multi-host)
    #[arg(long = "share-address", alias = "share_address", value_name = "T|F")]
    pub share_address: Option<String>,
    /// Network interface priority
    #[arg(long, value_name = "N")]
    pub priority: Option<i64>,
}

/// nova's `bool_from_string`, plus nova-manage's `T`/`F`.
pub fn parse_bool(field: &str, s: &str) -> Result<bool> {
    match s.to_ascii_lowercase().as_str() {
        "t" | "true" | "1" | "yes" | "on" | "y" => Ok(true),
        "f" | "false" | "0" | "no" | "off" | "n" => Ok(false),
        _ => Err(Error::invalid(
            field,
            format!("{s:?} is not a boolean (use true or false)"),
        )),
    }
}

fn parse_num<T: std::str::FromStr>(field: &str, s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| Error::invalid(field, format!("{s:?} is not an integer")))
}

impl NetworkCreateArgs {
    pub fn to_request(&self) -> Result<NetworkRequest> {
        let label = self
            .label
            .clone()
            .or_else(|| self.label_pos.clone())
            .ok_or_else(|| Error::invalid("label", "a network needs a label"))?;
        // nova-manage's positional order: label, cidr, num_networks, network_size.
        let mut rest = self.rest.iter();
        let cidr = self.fixed_range_v4.clone().or_else(|| rest.next().cloned());
        let num_networks = match (self.num_networks, rest.next()) {
            (Some(n), _) => Some(n),
            (None, Some(s)) => Some(parse_num("num_networks", s)?),
            (None, None) => None,
        };
        let network_size = match (self.network_size, rest.next()) {
            (Some(n), _) => Some(n),
            (None, Some(s)) => Some(parse_num("network_size", s)?),
            (None, None) => None,
        };
        if let Some(extra) = rest.next() {
            return Err(Error::invalid(
                "arguments",
                format!("unexpected argument {extra:?}"),
            ));
        }
        let flag = |field: &str, v: &Option<String>| {
            v.as_deref().map(|s| parse_bool(field, s)).transpose()
        };
        Ok(NetworkRequest {
            label,
            cidr,
            cidr_v6: self.fixed_range_v6.clone(),
            fixed_cidr: self.fixed_cidr.clone(),
            bridge: self.bridge.clone(),
            bridge_interface: self.bridge_interface.clone(),
            vlan: self.vlan,
            vlan_start: self.vlan_start,
            vpn_start: self.vpn,
            gateway: self.gateway.clone(),
            gateway_v6: self.gateway_v6.clone(),
            dns1: self.dns1.clone(),
            dns2: self.dns2.clone(),
            multi_host: flag("multi_host", &self.multi_host)?,
            project_id: self.project_id.clone(),
            dhcp_server: self.dhcp_server.clone(),
            allowed_start: self.allowed_start.clone(),
            allowed_end: self.allowed_end.clone(),
            num_networks,
            network_size,
            uuid: self.uuid.clone(),
            mtu: self.mtu,
            enable_dhcp: flag("enable_dhcp", &self.enable_dhcp)?,
            share_address: flag("share_address", &self.share_address)?,
            priority: self.priority,
        })
    }
}
