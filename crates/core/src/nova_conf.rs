//! nova.conf as operators have it: oslo.config's INI (`[DEFAULT]`, `key = value`, booleans
//! as `True`/`true`/`1`, lists as comma-separated strings) and the flag-file lines of the
//! seeds (`--flat_interface=eth2`), turned into the same typed table novanet's TOML form
//! gives, so that one deserialiser checks both. A real nova.conf holds many options that
//! are not about networking (database, messaging, libvirt): in these forms they are reported
//! once as not used, never an error. In TOML an unknown key stays an error.

use std::collections::BTreeMap;

use toml::{Table, Value};

use crate::error::{Error, Result};

/// How an option's text becomes a typed value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Str,
    /// `None` (oslo's spelling of unset) or empty leaves it unset.
    OptStr,
    Bool,
    Int,
    OptInt,
    /// Comma-separated.
    List,
}

/// Every option of `[DEFAULT]` novanet reads, with its kind. A test holds this list equal
/// to `Config`'s fields.
pub const OPTIONS: &[(&str, Kind)] = &[
    ("my_ip", Kind::Str),
    ("host", Kind::OptStr),
    ("network_manager", Kind::Str),
    ("flat_interface", Kind::OptStr),
    ("flat_network_bridge", Kind::OptStr),
    ("flat_network_dns", Kind::Str),
    ("flat_injected", Kind::Bool),
    ("vlan_interface", Kind::OptStr),
    ("vlan_start", Kind::Int),
    ("vpn_start", Kind::Int),
    ("vpn_ip", Kind::OptStr),
    ("cnt_vpn_clients", Kind::Int),
    ("num_networks", Kind::Int),
    ("network_size", Kind::Int),
    ("network_device_mtu", Kind::OptInt),
    ("share_dhcp_address", Kind::Bool),
    ("public_interface", Kind::Str),
    ("routing_source_ip", Kind::OptStr),
    ("fixed_range", Kind::OptStr),
    ("fixed_range_v6", Kind::Str),
    ("use_ipv6", Kind::Bool),
    ("gateway_v6", Kind::OptStr),
    ("ipv6_backend", Kind::Str),
    ("dhcp_domain", Kind::Str),
    ("dhcp_lease_time", Kind::Int),
    ("force_dhcp_release", Kind::Bool),
    ("fixed_ip_disassociate_timeout", Kind::Int),
    ("dns_server", Kind::List),
    ("use_network_dns_servers", Kind::Bool),
    ("dnsmasq_config_file", Kind::Str),
    ("dhcpbridge", Kind::OptStr),
    ("dhcpbridge_flagfile", Kind::OptStr),
    ("use_single_default_gateway", Kind::Bool),
    ("metadata_host", Kind::OptStr),
    ("metadata_port", Kind::Int),
    ("metadata_listen", Kind::Str),
    ("metadata_listen_port", Kind::Int),
    ("metadata_cache_expiration", Kind::Int),
    ("metadata_workers", Kind::OptInt),
    ("metadata_manager", Kind::OptStr),
    ("vendordata_driver", Kind::OptStr),
    ("vendordata_jsonfile_path", Kind::OptStr),
    ("enabled_apis", Kind::List),
    ("metadata_trusted_proxies", Kind::List),
    ("metadata_proxy_shared_secret", Kind::Str),
    ("metadata_rate_limit", Kind::Int),
    ("metadata_rate_burst", Kind::Int),
    ("auto_assign_floating_ip", Kind::Bool),
    ("default_floating_pool", Kind::Str),
    ("floating_range", Kind::OptStr),
    ("dmz_cidr", Kind::List),
    ("multi_host", Kind::Bool),
    ("allow_same_net_traffic", Kind::Bool),
    ("firewall_driver", Kind::Str),
    ("segment_driver", Kind::Str),
    ("vxlan_port", Kind::Int),
    ("send_arp_for_ha", Kind::Bool),
    ("send_arp_for_ha_count", Kind::Int),
    ("quota_floating_ips", Kind::Int),
    ("quota_fixed_ips", Kind::Int),
    ("quota_security_groups", Kind::Int),
    ("quota_security_group_rules", Kind::Int),
    ("quota_networks", Kind::Int),
    ("create_unique_mac_address_attempts", Kind::Int),
    ("public_endpoint", Kind::OptStr),
    ("max_tenant_network_size", Kind::Int),
    ("max_network_size", Kind::Int),
    ("token_expiration", Kind::Int),
    ("libvirt_uri", Kind::OptStr),
    ("service_down_time", Kind::Int),
];

/// `[keystone_authtoken]`'s options novanet reads.
const KEYSTONE_OPTIONS: &[&str] = &[
    "auth_url",
    "username",
    "password",
    "project_name",
    "user_domain_name",
    "project_domain_name",
];

/// Options nova had that novanet accepts but does not need, and why: said once at start.
pub const NOT_NEEDED: &[(&str, &str)] = &[
    (
        "dhcpbridge",
        "the agent is dnsmasq's --dhcp-script itself (novanet dhcp-hook)",
    ),
    (
        "dhcpbridge_flagfile",
        "the agent is dnsmasq's --dhcp-script itself and needs no flag file",
    ),
    (
        "metadata_manager",
        "the metadata service is built into novanet server",
    ),
    (
        "metadata_workers",
        "the metadata service runs on the server's async workers",
    ),
    (
        "vendordata_driver",
        "vendor data comes from vendordata_jsonfile_path alone",
    ),
    (
        "enabled_apis",
        "novanet server always serves the compute, identity and metadata APIs",
    ),
    (
        "fixed_range",
        "networks come from network-create (nova's dynamic fixed_range since Grizzly)",
    ),
    (
        "floating_range",
        "floating IPs are created with `novanet manage floating create --ip_range`",
    ),
];

/// What a nova.conf (INI or flag file) holds for novanet: the typed table, where each key
/// came from, and what was not used.
#[derive(Debug)]
pub struct Parsed {
    pub table: Table,
    /// Option name (`keystone_authtoken.auth_url` for sections) -> `line N`.
    pub lines: BTreeMap<String, usize>,
    pub warnings: Vec<String>,
}

fn kind_of(key: &str) -> Option<Kind> {
    OPTIONS.iter().find(|(k, _)| *k == key).map(|(_, k)| *k)
}

/// oslo.config's booleans.
fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" => Ok(true),
        "false" | "0" | "no" | "off" | "f" => Ok(false),
        _ => Err(Error::invalid(
            key,
            format!("{v:?} is not a boolean (use True or False)"),
        )),
    }
}

/// Strips one pair of matching quotes, as oslo.config does.
fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

fn typed(key: &str, kind: Kind, raw: &str) -> Result<Option<Value>> {
    let v = unquote(raw);
    Ok(match kind {
        Kind::Str => Some(Value::String(v.to_string())),
        Kind::OptStr => (!v.is_empty() && v != "None").then(|| Value::String(v.to_string())),
        Kind::Bool => Some(Value::Boolean(parse_bool(key, v)?)),
        Kind::Int | Kind::OptInt => {
            if kind == Kind::OptInt && (v.is_empty() || v == "None") {
                None
            } else {
                Some(Value::Integer(v.parse().map_err(|_| {
                    Error::invalid(key, format!("{v:?} is not an integer"))
                })?))
            }
        }
        Kind::List => Some(Value::Array(
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(unquote(s).to_string()))
                .collect(),
        )),
    })
}

/// Whether the text is a flag file (`--key=value` lines), the form seed 004 shows.
pub fn is_flag_file(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with("--"))
}

/// Whether the text is oslo.config's INI rather than TOML: a `[DEFAULT]` section, or
/// `key=value` lines that TOML cannot read (unquoted strings).
pub fn is_ini(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "[DEFAULT]") || text.parse::<Table>().is_err()
}

/// Parses an INI or flag-file nova.conf.
pub fn parse(text: &str) -> Result<Parsed> {
    let flags = is_flag_file(text);
    let mut table = Table::new();
    let mut keystone = Table::new();
    let mut database = Table::new();
    let mut lines = BTreeMap::new();
    let mut unused: Vec<String> = Vec::new();
    let mut unused_sections: Vec<String> = Vec::new();
    let mut section = "DEFAULT".to_string();
    for (n, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if !flags && line.starts_with('[') {
            let name = line.trim_start_matches('[').trim_end_matches(']').trim();
            section = name.to_string();
            if !matches!(
                name,
                "DEFAULT" | "keystone_authtoken" | "database" | "libvirt"
            ) {
                unused_sections.push(format!("[{name}]"));
            }
            continue;
        }
        let (key, value) = if flags {
            let f = line.strip_prefix("--").ok_or_else(|| {
                Error::invalid(
                    format!("line {}", n + 1),
                    format!("{line:?}: a flag file holds --option=value lines"),
                )
            })?;
            match f.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                // `--verbose` is true, `--noverbose` false, as gflags had them.
                None => match f
                    .strip_prefix("no")
                    .filter(|k| kind_of(k) == Some(Kind::Bool))
                {
                    Some(k) => (k, "false"),
                    None => (f.trim(), "true"),
                },
            }
        } else {
            let (k, v) = line.split_once('=').ok_or_else(|| {
                Error::invalid(
                    format!("line {}", n + 1),
                    format!("{line:?} is not `option = value`"),
                )
            })?;
            (k.trim(), v.trim())
        };
        match section.as_str() {
            "DEFAULT" => match kind_of(key) {
                Some(kind) => {
                    if let Some(v) = typed(key, kind, value)? {
                        table.insert(key.to_string(), v);
                    } else {
                        table.remove(key);
                    }
                    lines.insert(key.to_string(), n + 1);
                }
                None => unused.push(key.to_string()),
            },
            "keystone_authtoken" => {
                if KEYSTONE_OPTIONS.contains(&key) {
                    keystone.insert(key.to_string(), Value::String(unquote(value).to_string()));
                    lines.insert(format!("keystone_authtoken.{key}"), n + 1);
                } else {
                    unused.push(format!("keystone_authtoken.{key}"));
                }
            }
            // Nova's own database (MySQL, mostly) is not novanet's store; a PostgreSQL one
            // may be: novanet keeps its tables there.
            "database" => {
                let url = unquote(value);
                let postgres = crate::config::Database {
                    connection: url.to_string(),
                }
                .postgres_url()
                .is_some();
                if key == "connection" && postgres {
                    database.insert(key.to_string(), Value::String(url.to_string()));
                    lines.insert(format!("database.{key}"), n + 1);
                } else {
                    unused.push(format!("database.{key}"));
                }
            }
            // Later nova's name of the flag-file era's `libvirt_uri`; the section's other
            // options (virt_type, ...) are the compute driver's, not networking.
            "libvirt" => {
                if key == "connection_uri" {
                    match typed("libvirt_uri", Kind::OptStr, value)? {
                        Some(v) => table.insert("libvirt_uri".into(), v),
                        None => table.remove("libvirt_uri"),
                    };
                    lines.insert("libvirt_uri".to_string(), n + 1);
                } else {
                    unused.push(format!("libvirt.{key}"));
                }
            }
            _ => {}
        }
    }
    if !database.is_empty() {
        table.insert("database".into(), Value::Table(database));
    }
    if keystone.contains_key("auth_url") {
        table.insert("keystone_authtoken".into(), Value::Table(keystone));
    }
    let mut warnings = Vec::new();
    if !unused.is_empty() {
        warnings.push(format!(
            "{} option(s) not about networking are not used: {}",
            unused.len(),
            unused.join(", ")
        ));
    }
    unused_sections.dedup();
    if !unused_sections.is_empty() {
        warnings.push(format!(
            "section(s) not used: {}",
            unused_sections.join(", ")
        ));
    }
    Ok(Parsed {
        table,
        lines,
        warnings,
    })
}

/// Warnings about options that are set but that novanet does not need or does not do yet.
pub fn notes_for(present: &[String], cfg: &crate::config::Config) -> Vec<String> {
    let mut w: Vec<String> = NOT_NEEDED
        .iter()
        .filter(|(k, _)| present.iter().any(|p| p == k))
        .map(|(k, why)| format!("{k} is accepted and not needed: {why}"))
        .collect();
    for k in ["ipv6_backend"] {
        if present.iter().any(|p| p == k) && !cfg.use_ipv6 {
            w.push(format!("{k} has no effect without use_ipv6"));
        }
    }
    if cfg.flat_injected {
        w.push("flat_injected = True: novanet serves the address through network_data.json (metadata and config drive), not by writing into the image".into());
    }
    if present.iter().any(|p| p == "send_arp_for_ha") {
        w.push("send_arp_for_ha: novanet always sends gratuitous ARP when a floating IP moves to a host".into());
    }
    if present.iter().any(|p| p == "use_single_default_gateway") {
        w.push("use_single_default_gateway: novanet's DHCP gives the default route on every network; only the first network's gateway should be a guest's default route".into());
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgresql_database_is_the_store_and_novas_mysql_is_not() {
        let p =
            parse("[DEFAULT]\n[database]\nconnection = postgresql+psycopg2://nova:pw@db/novanet\n")
                .unwrap();
        let c = crate::config::Config::load(
            "[DEFAULT]\n[database]\nconnection = postgresql+psycopg2://nova:pw@db/novanet\n",
            "nova.conf",
        )
        .unwrap()
        .config;
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(
            c.database.unwrap().postgres_url().as_deref(),
            Some("postgresql://nova:pw@db/novanet")
        );
        let p =
            parse("[DEFAULT]\n[database]\nconnection = mysql+pymysql://nova:pw@db/nova\n").unwrap();
        assert!(!p.table.contains_key("database"));
        assert!(
            p.warnings[0].contains("database.connection"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn ini_values_become_typed() {
        let p = parse(
            "[DEFAULT]\nflat_interface=eth2\ndns_server = 8.8.8.8, 8.8.4.4\nmulti_host=True\n\
             network_device_mtu = None\nrabbit_host = x\n[libvirt]\nvirt_type = qemu\n\
             connection_uri = qemu:///system\n[vnc]\nenabled = False\n",
        )
        .unwrap();
        assert_eq!(p.table["libvirt_uri"].as_str(), Some("qemu:///system"));
        assert_eq!(p.lines["libvirt_uri"], 9);
        assert_eq!(p.table["flat_interface"].as_str(), Some("eth2"));
        assert_eq!(p.table["dns_server"].as_array().unwrap().len(), 2);
        assert_eq!(p.table["multi_host"].as_bool(), Some(true));
        assert!(!p.table.contains_key("network_device_mtu"));
        assert_eq!(p.lines["flat_interface"], 2);
        assert!(p.warnings[0].contains("rabbit_host"), "{:?}", p.warnings);
        assert!(
            p.warnings[0].contains("libvirt.virt_type"),
            "{:?}",
            p.warnings
        );
        assert!(p.warnings[1].contains("[vnc]"), "{:?}", p.warnings);
    }

    #[test]
    fn flag_files_as_seed_004_has_them() {
        let text = "--public_interface=eth1\n--fixed_range=10.0.0.0/24\n--flat_interface=eth2\n\
                    --flat_network_bridge=br100\n--network_manager=nova.network.manager.FlatDHCPManager\n\
                    --allow_same_net_traffic=false\n--verbose\n--nomulti_host\n";
        assert!(is_flag_file(text));
        let p = parse(text).unwrap();
        assert_eq!(p.table["flat_interface"].as_str(), Some("eth2"));
        assert_eq!(p.table["allow_same_net_traffic"].as_bool(), Some(false));
        assert_eq!(p.table["multi_host"].as_bool(), Some(false));
        assert!(p.warnings[0].contains("verbose"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = parse("[DEFAULT]\nmulti_host = maybe\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("multi_host"), "{e}");
        let e = parse("[DEFAULT]\nvlan_start = x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("vlan_start"), "{e}");
    }
}
