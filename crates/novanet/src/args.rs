//! Flags shared by `novanet network-create` and `novanet manage network create`, accepting
//! both nova's (`--fixed-range-v4`) and nova-manage's (`--fixed_range_v4`) spellings.

use clap::Args;
use novanet_core::planning::NetworkRequest;
use novanet_core::{Error, Result};

#[derive(Args, Debug, Clone, Default)]
pub struct NetworkCreateArgs {
    /// Label (nova-manage also takes it as the first positional word)
    pub label_pos: Option<String>,
    /// The old positional form: CIDR, NUM_NETWORKS, NETWORK_SIZE
    #[arg(hide = true)]
    pub rest: Vec<String>,
    #[arg(long)]
    pub label: Option<String>,
    #[arg(
        long = "fixed-range-v4",
        alias = "fixed_range_v4",
        alias = "fixed_range",
        alias = "fixed-range",
        alias = "ip-range",
        alias = "ip_range"
    )]
    pub fixed_range_v4: Option<String>,
    #[arg(long = "fixed-cidr", alias = "fixed_cidr")]
    pub fixed_cidr: Option<String>,
    #[arg(long)]
    pub bridge: Option<String>,
    #[arg(long = "bridge-interface", alias = "bridge_interface")]
    pub bridge_interface: Option<String>,
    #[arg(long)]
    pub vlan: Option<u32>,
    #[arg(long = "vlan-start", alias = "vlan_start")]
    pub vlan_start: Option<u32>,
    /// First VPN port (cloudpipe)
    #[arg(long)]
    pub vpn: Option<u32>,
    #[arg(long = "fixed-range-v6", alias = "fixed_range_v6")]
    pub fixed_range_v6: Option<String>,
    #[arg(long)]
    pub gateway: Option<String>,
    #[arg(long = "gateway-v6", alias = "gateway_v6")]
    pub gateway_v6: Option<String>,
    #[arg(long)]
    pub dns1: Option<String>,
    #[arg(long)]
    pub dns2: Option<String>,
    /// T/F, true/false, 1/0
    #[arg(long = "multi-host", alias = "multi_host")]
    pub multi_host: Option<String>,
    #[arg(long = "project-id", alias = "project_id", alias = "project")]
    pub project_id: Option<String>,
    #[arg(long = "dhcp-server", alias = "dhcp_server")]
    pub dhcp_server: Option<String>,
    #[arg(long = "allowed-start", alias = "allowed_start")]
    pub allowed_start: Option<String>,
    #[arg(long = "allowed-end", alias = "allowed_end")]
    pub allowed_end: Option<String>,
    #[arg(long = "num-networks", alias = "num_networks")]
    pub num_networks: Option<u32>,
    #[arg(long = "network-size", alias = "network_size")]
    pub network_size: Option<u64>,
    #[arg(long)]
    pub uuid: Option<String>,
    #[arg(long)]
    pub mtu: Option<u32>,
    #[arg(long = "enable-dhcp", alias = "enable_dhcp")]
    pub enable_dhcp: Option<String>,
    #[arg(long = "share-address", alias = "share_address")]
    pub share_address: Option<String>,
    #[arg(long)]
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
