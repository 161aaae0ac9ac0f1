//! The configuration file: nova.conf's option names and nova's defaults, so that what an
//! operator knows about nova-network carries over. Unknown keys are refused by name.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::net::{Ipv4Cidr, Ipv6Cidr};
use toml::Value;

/// Which of nova's three network managers plans the networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum Manager {
    Flat,
    FlatDhcp,
    Vlan,
}

impl Manager {
    /// Accepts novanet's short names and nova's class paths
    /// (`nova.network.manager.FlatDHCPManager`), so a nova.conf value works unchanged.
    pub fn parse(s: &str) -> Result<Manager> {
        let short = s.rsplit('.').next().unwrap_or(s).to_ascii_lowercase();
        match short.trim_end_matches("manager") {
            "flat" => Ok(Manager::Flat),
            "flatdhcp" => Ok(Manager::FlatDhcp),
            "vlan" => Ok(Manager::Vlan),
            _ => Err(Error::invalid(
                "network_manager",
                format!("{s:?} is not one of flat, flatdhcp, vlan"),
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Manager::Flat => "flat",
            Manager::FlatDhcp => "flatdhcp",
            Manager::Vlan => "vlan",
        }
    }
    /// FlatManager injects the address into the guest; the others serve it by DHCP.
    pub fn uses_dhcp(self) -> bool {
        self != Manager::Flat
    }
}

impl From<Manager> for String {
    fn from(m: Manager) -> String {
        m.name().to_string()
    }
}

impl TryFrom<String> for Manager {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        Manager::parse(&s).map_err(|e| e.to_string())
    }
}

/// Which firewall driver renders and applies a host's plan. It travels in the plan under
/// its short name (`"nftables"`), so the wire stays readable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum FirewallDriver {
    Iptables,
    #[default]
    Nftables,
    Noop,
}

impl FirewallDriver {
    /// novanet's names, and nova's class paths (`nova.virt.firewall.NoopFirewallDriver`,
    /// `nova.virt.libvirt.firewall.IptablesFirewallDriver`), so nova.conf values work.
    pub fn parse(s: &str) -> Result<FirewallDriver> {
        let short = s.rsplit('.').next().unwrap_or(s).to_ascii_lowercase();
        match short.trim_end_matches("firewalldriver") {
            "iptables" => Ok(FirewallDriver::Iptables),
            "nftables" => Ok(FirewallDriver::Nftables),
            "noop" => Ok(FirewallDriver::Noop),
            _ => Err(Error::invalid(
                "firewall_driver",
                format!("{s:?} is not one of nftables, iptables, noop (or nova's class paths)"),
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            FirewallDriver::Iptables => "iptables",
            FirewallDriver::Nftables => "nftables",
            FirewallDriver::Noop => "noop",
        }
    }
}

impl TryFrom<String> for FirewallDriver {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        FirewallDriver::parse(&s).map_err(|e| e.to_string())
    }
}

impl From<FirewallDriver> for String {
    fn from(d: FirewallDriver) -> String {
        d.name().to_string()
    }
}

/// How a VLAN network's project segment reaches every host that needs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum SegmentDriver {
    /// nova's way: an 802.1Q device `vlan<N>` on `vlan_interface`, its frames tagged N on
    /// a switch that trunks the VLANs to every host.
    #[default]
    Vlan,
    /// A VXLAN device `vxlan<N>` (VNI N) over the management network, with head-end
    /// replication to the other hosts of the network: no switch configuration needed.
    Vxlan,
}

impl SegmentDriver {
    pub fn parse(s: &str) -> Result<SegmentDriver> {
        match s.to_ascii_lowercase().as_str() {
            "vlan" => Ok(SegmentDriver::Vlan),
            "vxlan" => Ok(SegmentDriver::Vxlan),
            _ => Err(Error::invalid(
                "segment_driver",
                format!("{s:?} is not one of vlan, vxlan"),
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            SegmentDriver::Vlan => "vlan",
            SegmentDriver::Vxlan => "vxlan",
        }
    }
}

impl TryFrom<String> for SegmentDriver {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        SegmentDriver::parse(&s).map_err(|e| e.to_string())
    }
}

impl From<SegmentDriver> for String {
    fn from(d: SegmentDriver) -> String {
        d.name().into()
    }
}

/// nova.conf options novanet understands. Field names are nova's option names.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This host's address; the default of `routing_source_ip`, `metadata_host` and `vpn_ip`.
    pub my_ip: String,
    /// Name of this host (nova's `host`).
    pub host: Option<String>,
    pub network_manager: Manager,
    pub flat_interface: Option<String>,
    pub flat_network_bridge: Option<String>,
    pub flat_network_dns: String,
    pub flat_injected: bool,
    pub vlan_interface: Option<String>,
    pub vlan_start: u32,
    pub vpn_start: u32,
    pub vpn_ip: Option<String>,
    pub cnt_vpn_clients: u32,
    pub num_networks: u32,
    pub network_size: u64,
    pub network_device_mtu: Option<u32>,
    pub share_dhcp_address: bool,
    pub public_interface: String,
    pub routing_source_ip: Option<String>,
    pub fixed_range: Option<String>,
    pub fixed_range_v6: String,
    pub use_ipv6: bool,
    pub gateway_v6: Option<String>,
    pub ipv6_backend: String,
    pub dhcp_domain: String,
    pub dhcp_lease_time: u32,
    pub force_dhcp_release: bool,
    pub fixed_ip_disassociate_timeout: u64,
    pub dns_server: Vec<String>,
    pub use_network_dns_servers: bool,
    pub dnsmasq_config_file: String,
    /// Accepted, not needed: the agent is dnsmasq's dhcp-script itself.
    pub dhcpbridge: Option<String>,
    pub dhcpbridge_flagfile: Option<String>,
    pub use_single_default_gateway: bool,
    pub metadata_host: Option<String>,
    pub metadata_port: u16,
    pub metadata_listen: String,
    pub metadata_listen_port: u16,
    pub metadata_cache_expiration: u64,
    /// Accepted, not needed (nova's metadata service plumbing).
    pub metadata_workers: Option<u32>,
    pub metadata_manager: Option<String>,
    pub vendordata_driver: Option<String>,
    pub enabled_apis: Vec<String>,
    pub vendordata_jsonfile_path: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed (with a valid signature).
    pub metadata_trusted_proxies: Vec<String>,
    pub metadata_proxy_shared_secret: String,
    pub auto_assign_floating_ip: bool,
    pub default_floating_pool: String,
    /// Accepted, not needed: floating IPs come from `manage floating create`.
    pub floating_range: Option<String>,
    pub dmz_cidr: Vec<String>,
    pub multi_host: bool,
    pub allow_same_net_traffic: bool,
    pub firewall_driver: FirewallDriver,
    /// How VLAN networks' segments are carried between hosts (`vlan` or `vxlan`).
    pub segment_driver: SegmentDriver,
    /// The UDP port of VXLAN segments.
    pub vxlan_port: u16,
    pub send_arp_for_ha: bool,
    pub send_arp_for_ha_count: u32,
    pub quota_floating_ips: i64,
    pub quota_fixed_ips: i64,
    pub quota_security_groups: i64,
    pub quota_security_group_rules: i64,
    pub create_unique_mac_address_attempts: u32,
    /// The URL clients reach the API at (Keystone's `public_endpoint`); the catalog
    /// points there. Default: `http://my_ip:8774`, or the listen address when specific.
    pub public_endpoint: Option<String>,
    /// Networks a project may create with `os-tenant-networks` (nova's `quota_networks`).
    pub quota_networks: i64,
    /// The largest network anyone may create, in addresses (a /16 by default).
    pub max_network_size: u64,
    /// The largest tenant network, in addresses (a /22 by default); admins are not bound.
    pub max_tenant_network_size: u64,
    /// Metadata requests per second one instance may make (0: no limit); a burst of
    /// `metadata_rate_burst` passes at once, so cloud-init's crawl is never slowed.
    pub metadata_rate_limit: u32,
    pub metadata_rate_burst: u32,
    /// Seconds without a heartbeat after which a host is down (nova's `service_down_time`).
    pub service_down_time: u64,
    /// Lifetime of API tokens, seconds (keystone's `[token] expiration`).
    pub token_expiration: u64,
    /// The libvirt connection of `compute_driver = libvirt` (nova's flag `libvirt_uri`,
    /// later `[libvirt] connection_uri`); default `qemu:///system`.
    pub libvirt_uri: Option<String>,
    /// nova.conf's `[keystone_authtoken]`: when present, API tokens are validated against
    /// that Keystone instead of novanet's own identity service.
    pub keystone_authtoken: Option<KeystoneAuthtoken>,
    /// nova.conf's `[database]`: a PostgreSQL `connection` puts the store there (several
    /// servers share it) instead of the data dir's SQLite file.
    pub database: Option<Database>,
}

/// The options that belong to one host, not to the cloud: each agent reads them from its
/// own configuration and reports them; the server plans that host with them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct HostOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flat_interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_source_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub my_ip: Option<String>,
}

impl HostOptions {
    /// What a host's configuration says of itself: only what it sets, so that an agent
    /// without a configuration leaves the server's values alone.
    pub fn from_config(c: &Config) -> HostOptions {
        let d = Config::default();
        HostOptions {
            flat_interface: c.flat_interface.clone(),
            public_interface: (c.public_interface != d.public_interface)
                .then(|| c.public_interface.clone()),
            vlan_interface: c.vlan_interface.clone(),
            routing_source_ip: c.routing_source_ip.clone(),
            my_ip: (c.my_ip != d.my_ip).then(|| c.my_ip.clone()),
        }
    }

    /// Checks each value as what it is (interface name or IPv4 address): a report with a
    /// bad value is refused whole, with the key named.
    pub fn validate(&self) -> Result<()> {
        use crate::valid::IfName;
        for (key, v) in [
            ("flat_interface", &self.flat_interface),
            ("public_interface", &self.public_interface),
            ("vlan_interface", &self.vlan_interface),
        ] {
            if let Some(v) = v {
                IfName::new(v.as_str()).map_err(|e| Error::invalid(key, e))?;
            }
        }
        for (key, v) in [
            ("routing_source_ip", &self.routing_source_ip),
            ("my_ip", &self.my_ip),
        ] {
            if let Some(v) = v {
                v.parse::<std::net::Ipv4Addr>()
                    .map_err(|_| Error::invalid(key, format!("{v:?} is not an IPv4 address")))?;
            }
        }
        Ok(())
    }

    /// The server's configuration as this host sees it.
    pub fn apply(&self, cfg: &Config) -> Config {
        let mut c = cfg.clone();
        if let Some(v) = &self.flat_interface {
            c.flat_interface = Some(v.clone());
        }
        if let Some(v) = &self.public_interface {
            c.public_interface = v.clone();
        }
        if let Some(v) = &self.vlan_interface {
            c.vlan_interface = Some(v.clone());
        }
        if let Some(v) = &self.routing_source_ip {
            c.routing_source_ip = Some(v.clone());
        }
        if let Some(v) = &self.my_ip {
            c.my_ip = v.clone();
        }
        c
    }

    pub fn is_empty(&self) -> bool {
        self == &HostOptions::default()
    }
}

/// keystonemiddleware's options, as a `[keystone_authtoken]` table: the Keystone to ask
/// (`auth_url`, its v3 endpoint) and the service user that asks.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeystoneAuthtoken {
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub project_name: String,
    #[serde(default = "default_domain")]
    pub user_domain_name: String,
    #[serde(default = "default_domain")]
    pub project_domain_name: String,
}

/// Where the store is, as a `[database]` table.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// `postgresql://user:password@host/dbname` (SQLAlchemy's `postgresql+driver://` too).
    pub connection: String,
}

impl Database {
    /// The URL PostgreSQL's driver takes: SQLAlchemy's `+driver` part dropped.
    pub fn postgres_url(&self) -> Option<String> {
        let (scheme, rest) = self.connection.split_once("://")?;
        let base = scheme.split('+').next().unwrap_or(scheme);
        matches!(base, "postgres" | "postgresql").then(|| format!("postgresql://{rest}"))
    }
}

fn default_domain() -> String {
    "Default".into()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            my_ip: "127.0.0.1".into(),
            host: None,
            network_manager: Manager::FlatDhcp,
            flat_interface: None,
            flat_network_bridge: None,
            flat_network_dns: "8.8.4.4".into(),
            flat_injected: false,
            vlan_interface: None,
            vlan_start: 100,
            vpn_start: 1000,
            vpn_ip: None,
            cnt_vpn_clients: 0,
            num_networks: 1,
            network_size: 256,
            network_device_mtu: None,
            share_dhcp_address: false,
            public_interface: "eth0".into(),
            routing_source_ip: None,
            fixed_range: None,
            fixed_range_v6: "fd00::/48".into(),
            use_ipv6: false,
            gateway_v6: None,
            ipv6_backend: "rfc2462".into(),
            dhcp_domain: "novalocal".into(),
            dhcp_lease_time: 86400,
            force_dhcp_release: true,
            fixed_ip_disassociate_timeout: 600,
            dns_server: Vec::new(),
            use_network_dns_servers: false,
            dnsmasq_config_file: String::new(),
            dhcpbridge: None,
            dhcpbridge_flagfile: None,
            use_single_default_gateway: false,
            metadata_host: None,
            metadata_port: 8775,
            metadata_listen: "0.0.0.0".into(),
            metadata_listen_port: 8775,
            metadata_cache_expiration: 15,
            metadata_workers: None,
            metadata_manager: None,
            vendordata_driver: None,
            enabled_apis: vec!["osapi_compute".into(), "metadata".into()],
            vendordata_jsonfile_path: None,
            metadata_trusted_proxies: Vec::new(),
            metadata_proxy_shared_secret: String::new(),
            auto_assign_floating_ip: false,
            default_floating_pool: "nova".into(),
            floating_range: None,
            dmz_cidr: Vec::new(),
            multi_host: false,
            allow_same_net_traffic: true,
            firewall_driver: FirewallDriver::Nftables,
            segment_driver: SegmentDriver::Vlan,
            vxlan_port: 4789,
            send_arp_for_ha: false,
            send_arp_for_ha_count: 3,
            quota_floating_ips: 10,
            quota_fixed_ips: -1,
            quota_security_groups: 10,
            quota_security_group_rules: 20,
            create_unique_mac_address_attempts: 5,
            service_down_time: 60,
            token_expiration: 3600,
            libvirt_uri: None,
            public_endpoint: None,
            quota_networks: 3,
            max_tenant_network_size: 1024,
            max_network_size: 65536,
            metadata_rate_limit: 0,
            metadata_rate_burst: 200,
            keystone_authtoken: None,
            database: None,
        }
    }
}

/// A configuration with what an operator should know about it.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    /// Which form the file was in: `toml`, `ini` or `flag file`.
    pub format: &'static str,
    /// Option -> where its value came from (`line N`); options absent are nova's defaults.
    pub sources: std::collections::BTreeMap<String, String>,
    /// Said once at start: options not used, accepted but not needed, or not done yet.
    pub warnings: Vec<String>,
}

impl Config {
    /// `ipv6_backend` as the type that computes addresses.
    pub fn ipv6_backend(&self) -> Result<crate::ipv6::Backend> {
        self.ipv6_backend
            .parse()
            .map_err(|e: String| Error::invalid("ipv6_backend", e))
    }

    /// The backend instances' IPv6 addresses come from, when `use_ipv6` is on (a validated
    /// config never falls back to the default).
    pub fn ipv6(&self) -> Option<crate::ipv6::Backend> {
        self.use_ipv6
            .then(|| self.ipv6_backend().unwrap_or_default())
    }

    /// Reads any of the three forms an operator may have: nova.conf's INI, seed 004's flag
    /// file, or novanet's TOML. `origin` names the file in messages.
    pub fn load(text: &str, origin: &str) -> Result<Loaded> {
        // A file taken for INI only because TOML could not read it may be TOML with one
        // slip (an unquoted string): its errors also say what TOML found.
        let not_toml = (!crate::nova_conf::is_flag_file(text)
            && !text.lines().any(|l| l.trim() == "[DEFAULT]"))
        .then(|| text.parse::<toml::Table>().err())
        .flatten()
        .map(|e| {
            let line = e
                .span()
                .map(|r| text[..r.start.min(text.len())].matches('\n').count() + 1);
            let message = e.message().trim().replace('\n', "; ");
            match line {
                Some(n) => format!("line {n}: {message}"),
                None => message,
            }
        });
        let at = |e: Error| match e {
            Error::Invalid { field, problem } => {
                let problem = match &not_toml {
                    Some(t) => format!(
                        "{problem} (the file was read as nova.conf's INI because it is not TOML: {t})"
                    ),
                    None => problem,
                };
                Error::invalid(format!("{origin}: {field}"), problem)
            }
            other => other,
        };
        let (config, format, lines, mut warnings, present) = if crate::nova_conf::is_flag_file(text)
            || crate::nova_conf::is_ini(text)
        {
            let p = crate::nova_conf::parse(text).map_err(at)?;
            let present: Vec<String> = p.lines.keys().cloned().collect();
            let cfg: Config = Value::Table(p.table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    at(Error::invalid("configuration", e.message().to_string()))
                })?;
            let format = if crate::nova_conf::is_flag_file(text) {
                "flag file"
            } else {
                "ini"
            };
            (cfg, format, p.lines, p.warnings, present)
        } else {
            let cfg = Config::from_toml_unchecked(text).map_err(at)?;
            let mut lines = std::collections::BTreeMap::new();
            for (n, l) in text.lines().enumerate() {
                if let Some((k, _)) = l.split_once('=') {
                    let k = k.trim();
                    if !k.is_empty() && !k.starts_with('#') {
                        lines.insert(k.to_string(), n + 1);
                    }
                }
            }
            let present = lines.keys().cloned().collect();
            (cfg, "toml", lines, Vec::new(), present)
        };
        config.validate().map_err(at)?;
        warnings.extend(crate::nova_conf::notes_for(&present, &config));
        Ok(Loaded {
            sources: lines
                .into_iter()
                .map(|(k, n)| (k, format!("{origin}:{n}")))
                .collect(),
            config,
            format,
            warnings,
        })
    }

    /// Parses a TOML file's text. Unknown keys and bad values are errors naming the key.
    pub fn from_toml(text: &str) -> Result<Config> {
        let cfg = Config::from_toml_unchecked(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn from_toml_unchecked(text: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            // toml reports a bad value by position only; name the key on that line.
            let key = e
                .span()
                .and_then(|s| text[..s.start].rsplit('\n').next().map(|l| (l, s.start)))
                .and_then(|(before, start)| {
                    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
                    let line = format!("{before}{}", &text[start..line_end]);
                    line.split_once('=').map(|(k, _)| k.trim().to_string())
                })
                .filter(|k| !k.is_empty() && !k.contains(' '))
                .unwrap_or_else(|| "configuration".into());
            Error::invalid(key, e.message().to_string())
        })?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if let Some(d) = &self.database {
            if d.postgres_url().is_none() {
                return Err(Error::invalid(
                    "database.connection",
                    format!("{:?}: novanet stores in PostgreSQL (postgresql://...) or, without [database], in SQLite under the data dir", d.connection),
                ));
            }
        }
        if let Some(k) = &self.keystone_authtoken {
            if !k.auth_url.starts_with("http://") {
                return Err(Error::invalid(
                    "keystone_authtoken.auth_url",
                    format!("{:?}: give an http:// URL (this build has no TLS client; put a TLS proxy in front)", k.auth_url),
                ));
            }
        }
        for d in &self.dmz_cidr {
            d.parse::<Ipv4Cidr>()
                .map_err(|e| Error::invalid("dmz_cidr", e))?;
        }
        self.fixed_range_v6
            .parse::<Ipv6Cidr>()
            .map_err(|e| Error::invalid("fixed_range_v6", e))?;
        self.ipv6_backend()?;
        if let Some(g) = &self.gateway_v6 {
            g.parse::<std::net::Ipv6Addr>().map_err(|_| {
                Error::invalid("gateway_v6", format!("{g:?} is not an IPv6 address"))
            })?;
        }
        self.validate_ranges()?;
        if !(1..=4094).contains(&self.vlan_start) {
            return Err(Error::invalid("vlan_start", "must be between 1 and 4094"));
        }
        if self.num_networks == 0 {
            return Err(Error::invalid("num_networks", "must be at least 1"));
        }
        for (name, ip) in [
            ("my_ip", Some(&self.my_ip)),
            ("routing_source_ip", self.routing_source_ip.as_ref()),
            ("metadata_host", self.metadata_host.as_ref()),
        ] {
            if let Some(ip) = ip {
                ip.parse::<std::net::Ipv4Addr>()
                    .map_err(|_| Error::invalid(name, format!("{ip:?} is not an IPv4 address")))?;
            }
        }
        Ok(())
    }

    /// Every value that bounds something or reaches a host, checked at start: an error
    /// names the key.
    fn validate_ranges(&self) -> Result<()> {
        use crate::valid::{check_mtu, DnsDomain, IfName};
        if self.token_expiration == 0 || self.token_expiration > 7 * 86400 {
            return Err(Error::invalid(
                "token_expiration",
                format!("{} s: give 1 s to 7 days", self.token_expiration),
            ));
        }
        if let Some(u) = &self.libvirt_uri {
            // virsh's -c argument: libvirt's qemu driver, no spaces or control characters.
            let qemu = u.starts_with("qemu:") || u.starts_with("qemu+");
            if !qemu || !u.contains("://") || u.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(Error::invalid(
                    "libvirt_uri",
                    format!("{u:?}: give a libvirt qemu URI, e.g. qemu:///system or qemu:///system?socket=/run/libvirt/libvirt-sock"),
                ));
            }
        }
        for (key, q) in [
            ("quota_floating_ips", self.quota_floating_ips),
            ("quota_fixed_ips", self.quota_fixed_ips),
            ("quota_security_groups", self.quota_security_groups),
            (
                "quota_security_group_rules",
                self.quota_security_group_rules,
            ),
            ("quota_networks", self.quota_networks),
        ] {
            if q < -1 {
                return Err(Error::invalid(
                    key,
                    format!("{q}: a quota is -1 (unlimited) or at least 0"),
                ));
            }
        }
        for p in &self.metadata_trusted_proxies {
            p.parse::<std::net::IpAddr>().map_err(|_| {
                Error::invalid(
                    "metadata_trusted_proxies",
                    format!("{p:?} is not an IP address"),
                )
            })?;
        }
        for d in &self.dns_server {
            d.parse::<std::net::Ipv4Addr>().map_err(|_| {
                Error::invalid("dns_server", format!("{d:?} is not an IPv4 address"))
            })?;
        }
        if self.vxlan_port == 0 {
            return Err(Error::invalid("vxlan_port", "0 is not a UDP port"));
        }
        if !self.public_interface.is_empty() {
            IfName::new(self.public_interface.as_str())
                .map_err(|e| Error::invalid("public_interface", e))?;
        }
        for (key, v) in [
            ("flat_interface", &self.flat_interface),
            ("vlan_interface", &self.vlan_interface),
            ("flat_network_bridge", &self.flat_network_bridge),
        ] {
            if let Some(name) = v {
                IfName::new(name.as_str()).map_err(|e| Error::invalid(key, e))?;
            }
        }
        DnsDomain::new(self.dhcp_domain.as_str()).map_err(|e| Error::invalid("dhcp_domain", e))?;
        if let Some(m) = self.network_device_mtu {
            check_mtu("network_device_mtu", m)?;
        }
        if self.dhcp_lease_time < 120 {
            return Err(Error::invalid(
                "dhcp_lease_time",
                format!(
                    "{} s: dnsmasq's shortest lease is 120 s",
                    self.dhcp_lease_time
                ),
            ));
        }
        let f = &self.dnsmasq_config_file;
        if !f.is_empty() && (!f.starts_with('/') || f.chars().any(char::is_control)) {
            return Err(Error::invalid(
                "dnsmasq_config_file",
                format!("{f:?}: give an absolute path"),
            ));
        }
        for (key, v) in [
            ("network_size", self.network_size),
            ("max_tenant_network_size", self.max_tenant_network_size),
            ("max_network_size", self.max_network_size),
        ] {
            if !(4..=1 << 24).contains(&v) {
                return Err(Error::invalid(
                    key,
                    format!("{v}: give 4 to 16777216 addresses"),
                ));
            }
        }
        if self.metadata_port == 0 {
            return Err(Error::invalid("metadata_port", "must not be 0"));
        }
        if let Some(e) = &self.public_endpoint {
            if !e.starts_with("http://") || e.chars().any(|c| c.is_control() || c == ' ') {
                return Err(Error::invalid(
                    "public_endpoint",
                    format!("{e:?}: give an http:// URL"),
                ));
            }
        }
        Ok(())
    }

    /// Nova's quota resources and their defaults: the networking ones from this
    /// configuration (enforced), the rest at nova's defaults (instances enforced; the others
    /// shown and settable for clients, as a network controller has nothing of theirs to count).
    pub fn default_quotas(&self) -> Vec<(&'static str, i64)> {
        vec![
            ("instances", 10),
            ("cores", 20),
            ("ram", 51200),
            ("floating_ips", self.quota_floating_ips),
            ("fixed_ips", self.quota_fixed_ips),
            ("metadata_items", 128),
            ("injected_files", 5),
            ("injected_file_content_bytes", 10240),
            ("injected_file_path_bytes", 255),
            ("key_pairs", 100),
            ("security_groups", self.quota_security_groups),
            ("security_group_rules", self.quota_security_group_rules),
            ("server_groups", 10),
            ("server_group_members", 10),
            ("networks", self.quota_networks),
        ]
    }

    pub fn routing_source_ip(&self) -> &str {
        self.routing_source_ip.as_deref().unwrap_or(&self.my_ip)
    }
    pub fn metadata_host(&self) -> &str {
        self.metadata_host.as_deref().unwrap_or(&self.my_ip)
    }
    pub fn vpn_ip(&self) -> &str {
        self.vpn_ip.as_deref().unwrap_or(&self.my_ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_a_slip_names_the_slip_too() {
        let text = "dns_server = [\"192.168.56.101\"]\ndnsmasq_config_file = /etc/dnsmasq.d/nova\n";
        let e = Config::load(text, "novanet.conf").unwrap_err().to_string();
        assert!(e.contains("novanet.conf: dns_server"), "{e}");
        assert!(
            e.contains("read as nova.conf's INI because it is not TOML: line 2:"),
            "{e}"
        );
    }

    #[test]
    fn defaults_are_novas() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.network_manager, Manager::FlatDhcp);
        assert_eq!(c.dhcp_domain, "novalocal");
        assert_eq!(c.dhcp_lease_time, 86400);
        assert!(c.force_dhcp_release);
        assert_eq!(c.metadata_port, 8775);
        assert_eq!(c.public_interface, "eth0");
        assert_eq!(c.default_floating_pool, "nova");
        assert!(c.allow_same_net_traffic);
    }

    #[test]
    fn nova_class_paths_are_accepted() {
        let c = Config::from_toml(
            "network_manager = \"nova.network.manager.VlanManager\"\nflat_interface = \"eth2\"",
        )
        .unwrap();
        assert_eq!(c.network_manager, Manager::Vlan);
        assert_eq!(
            Manager::parse("FlatDHCPManager").unwrap(),
            Manager::FlatDhcp
        );
        assert!(Manager::parse("bogus").is_err());
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::from_toml("flat_interfce = \"eth2\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("flat_interfce"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = Config::from_toml("dmz_cidr = [\"10.0.0.0/40\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dmz_cidr"), "{e}");
        let e = Config::from_toml("dhcp_lease_time = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dhcp_lease_time"), "{e}");
    }

    #[test]
    fn every_option_has_an_ini_kind() {
        let v = serde_json::to_value(Config::default()).unwrap();
        let mut fields: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        fields.retain(|f| !matches!(*f, "keystone_authtoken" | "database"));
        fields.sort();
        let mut kinds: Vec<&str> = crate::nova_conf::OPTIONS.iter().map(|(k, _)| *k).collect();
        kinds.sort();
        assert_eq!(fields, kinds);
    }

    /// Each seed's configuration lines, verbatim, with the warnings they should bring.
    #[test]
    fn the_seeds_configuration_is_accepted() {
        // Seed 004's flag file (one option a line, as nova read it).
        let l = Config::load(
            "--public_interface=eth1\n--fixed_range=10.0.0.0/24\n--flat_interface=eth2\n--flat_network_bridge=br100\n--network_manager=nova.network.manager.FlatDHCPManager\n",
            "nova.conf",
        )
        .unwrap();
        assert_eq!(l.format, "flag file");
        assert_eq!(l.config.flat_interface.as_deref(), Some("eth2"));
        assert_eq!(l.config.network_manager, Manager::FlatDhcp);
        assert_eq!(l.sources["flat_interface"], "nova.conf:3");
        assert!(
            l.warnings.iter().any(|w| w.starts_with("fixed_range")),
            "{:?}",
            l.warnings
        );
        // Seeds 000-003's nova.conf lines and option tables.
        let ini = "[DEFAULT]\n\
            dnsmasq_config_file=/etc/dnsmasq-nova.conf\n\
            dns_server=8.8.8.8\n\
            firewall_driver=nova.virt.firewall.NoopFirewallDriver\n\
            dmz_cidr=10.128.0.0/24\n\
            auto_assign_floating_ip=True\n\
            force_dhcp_release=True\n\
            public_interface=VLAN100\n\
            multi_host=True\n\
            allow_same_net_traffic=false\n\
            fixed_range_v6 = fd00::/48\n\
            use_ipv6 = False\n\
            gateway_v6 = None\n\
            ipv6_backend = rfc2462\n\
            metadata_host = 192.168.56.200\n\
            metadata_port = 8775\n\
            metadata_listen = 0.0.0.0\n\
            metadata_listen_port = 8775\n\
            metadata_cache_expiration = 15\n\
            metadata_workers = None\n\
            metadata_manager = nova.api.manager.MetadataManager\n\
            vendordata_driver = nova.api.metadata.vendordata_json.JsonFileVendorData\n\
            vendordata_jsonfile_path = None\n\
            enabled_apis = ec2,osapi_compute,metadata\n\
            dhcpbridge = /usr/bin/nova-dhcpbridge\n\
            dhcpbridge_flagfile = /etc/nova/nova.conf\n\
            floating_range = 68.99.26.170/31\n\
            use_single_default_gateway = False\n\
            send_arp_for_ha = True\n\
            flat_injected = False\n\
            fixed_range = 10.0.0.0/24\n\
            sql_connection = mysql://nova@localhost/nova\n\
            [libvirt]\nvirt_type = qemu\n";
        let l = Config::load(ini, "nova.conf").unwrap();
        assert_eq!(l.format, "ini");
        let c = &l.config;
        assert_eq!(c.firewall_driver, FirewallDriver::Noop);
        assert_eq!(c.dns_server, ["8.8.8.8"]);
        assert!(c.multi_host && c.auto_assign_floating_ip && !c.allow_same_net_traffic);
        assert_eq!(c.public_interface, "VLAN100");
        for key in [
            "sql_connection",
            "libvirt.virt_type",
            "dhcpbridge is accepted",
            "metadata_manager is accepted",
            "floating_range is accepted",
            "fixed_range is accepted",
            "send_arp_for_ha",
            "use_single_default_gateway",
        ] {
            assert!(
                l.warnings.iter().any(|w| w.contains(key)),
                "{key}: {:?}",
                l.warnings
            );
        }
        // novanet's TOML keeps refusing unknown keys.
        assert!(Config::load("flat_interfce = \"eth2\"", "x").is_err());
        let t = Config::load(
            "firewall_driver = \"nova.virt.firewall.NoopFirewallDriver\"\nmulti_host = true",
            "x",
        )
        .unwrap();
        assert_eq!(
            (t.format, t.config.firewall_driver),
            ("toml", FirewallDriver::Noop)
        );
    }

    #[test]
    fn ranges_are_checked_at_start() {
        for (text, key) in [
            ("token_expiration = 0", "token_expiration"),
            ("libvirt_uri = \"xen:///\"", "libvirt_uri"),
            ("libvirt_uri = \"qemu:///system --x\"", "libvirt_uri"),
            ("quota_floating_ips = -2", "quota_floating_ips"),
            ("quota_networks = -5", "quota_networks"),
            (
                "metadata_trusted_proxies = [\"proxy\"]",
                "metadata_trusted_proxies",
            ),
            ("public_interface = \"eth0\\nx\"", "public_interface"),
            ("flat_interface = \"../etc\"", "flat_interface"),
            ("dhcp_domain = \"a b\"", "dhcp_domain"),
            ("network_device_mtu = 20", "network_device_mtu"),
            ("dhcp_lease_time = 5", "dhcp_lease_time"),
            ("dns_server = [\"8.8.8.8; x\"]", "dns_server"),
            ("public_endpoint = \"ftp://x\"", "public_endpoint"),
        ] {
            let e = Config::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        assert!(Config::from_toml("quota_networks = -1").is_ok());
    }

    #[test]
    fn keystone_authtoken_is_novas_section() {
        let c = Config::from_toml(
            "[keystone_authtoken]\nauth_url = \"http://keystone:5000/v3\"\nusername = \"nova\"\npassword = \"pw\"\nproject_name = \"service\"\n",
        )
        .unwrap();
        let k = c.keystone_authtoken.unwrap();
        assert_eq!(
            (k.username.as_str(), k.user_domain_name.as_str()),
            ("nova", "Default")
        );
        let e = Config::from_toml(
            "[keystone_authtoken]\nauth_url = \"https://k/v3\"\nusername = \"n\"\npassword = \"p\"\nproject_name = \"s\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("keystone_authtoken.auth_url"), "{e}");
        let e =
            Config::from_toml("[keystone_authtoken]\nauth_url = \"http://k/v3\"\nuser = \"n\"\n")
                .unwrap_err();
        assert!(e.to_string().contains("user"), "{e}");
    }

    #[test]
    fn ipv6_options_are_checked() {
        let mut c = Config {
            use_ipv6: true,
            ipv6_backend: "account_identifier".into(),
            ..Config::default()
        };
        assert!(c.validate().is_ok());
        assert_eq!(c.ipv6(), Some(crate::ipv6::Backend::AccountIdentifier));
        c.use_ipv6 = false;
        assert_eq!(c.ipv6(), None);
        c.ipv6_backend = "eui64".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("ipv6_backend"));
        c.ipv6_backend = "rfc2462".into();
        c.gateway_v6 = Some("10.0.0.1".into());
        assert!(c.validate().unwrap_err().to_string().contains("gateway_v6"));
    }
}
