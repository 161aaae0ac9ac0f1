//! `novanet COMMAND`: the nova client's commands, with the seeds' spellings, over the API.
//! What a command prints follows python-novaclient 7.1.2; where novaclient prints nothing,
//! a command that changed something says so in one line on standard error.

use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::args::NetworkCreateArgs;
use crate::session::{err, Res, Session};
pub use crate::session::{Auth, Output};
use crate::table::{out, Table};

// No doc comment here: clap would show it as the about of every command without its own.
// A rule outside any group, as novaclient's default-rule commands spell it.
#[derive(Args, Debug, Clone)]
#[command(allow_negative_numbers = true)]
pub struct AdminRuleArgs {
    /// IP protocol (icmp, tcp, udp)
    #[arg(value_name = "IP_PROTO")]
    ip_proto: String,
    /// Port at start of range (ICMP: the type, -1 for any)
    #[arg(value_name = "FROM_PORT")]
    from_port: i32,
    /// Port at end of range (ICMP: the code, -1 for any)
    #[arg(value_name = "TO_PORT")]
    to_port: i32,
    /// CIDR for address range (ex: 0.0.0.0/0)
    #[arg(value_name = "CIDR")]
    cidr: String,
}

// A rule of a group, from an address range.
#[derive(Args, Debug, Clone)]
#[command(allow_negative_numbers = true)]
pub struct GroupRuleArgs {
    /// ID or name of security group
    #[arg(value_name = "GROUP")]
    group: String,
    /// IP protocol (icmp, tcp, udp)
    #[arg(value_name = "IP_PROTO")]
    ip_proto: String,
    /// Port at start of range (ICMP: the type, -1 for any)
    #[arg(value_name = "FROM_PORT")]
    from_port: i32,
    /// Port at end of range (ICMP: the code, -1 for any)
    #[arg(value_name = "TO_PORT")]
    to_port: i32,
    /// CIDR for address range (ex: 0.0.0.0/0)
    #[arg(value_name = "CIDR")]
    cidr: String,
}

// A rule of a group, from the members of another group.
#[derive(Args, Debug, Clone)]
#[command(allow_negative_numbers = true)]
pub struct SourceGroupRuleArgs {
    /// ID or name of security group
    #[arg(value_name = "GROUP")]
    group: String,
    /// ID or name of source group
    #[arg(value_name = "SOURCE_GROUP")]
    source_group: String,
    /// IP protocol (icmp, tcp, udp)
    #[arg(value_name = "IP_PROTO")]
    ip_proto: String,
    /// Port at start of range (ICMP: the type, -1 for any)
    #[arg(value_name = "FROM_PORT")]
    from_port: i32,
    /// Port at end of range (ICMP: the code, -1 for any)
    #[arg(value_name = "TO_PORT")]
    to_port: i32,
}

// New values for a project's quotas (nova's `quota_set` keys, with dashes).
#[derive(Args, Debug, Clone, Default)]
pub struct QuotaValues {
    /// New value for the "instances" quota
    #[arg(long, value_name = "N")]
    instances: Option<i64>,
    /// New value for the "cores" quota
    #[arg(long, value_name = "N")]
    cores: Option<i64>,
    /// New value for the "ram" quota (MB)
    #[arg(long, value_name = "N")]
    ram: Option<i64>,
    /// New value for the "floating_ips" quota
    #[arg(long = "floating-ips", alias = "floating_ips", value_name = "N")]
    floating_ips: Option<i64>,
    /// New value for the "fixed_ips" quota
    #[arg(long = "fixed-ips", alias = "fixed_ips", value_name = "N")]
    fixed_ips: Option<i64>,
    /// New value for the "metadata_items" quota
    #[arg(long = "metadata-items", alias = "metadata_items", value_name = "N")]
    metadata_items: Option<i64>,
    /// New value for the "injected_files" quota
    #[arg(long = "injected-files", alias = "injected_files", value_name = "N")]
    injected_files: Option<i64>,
    /// New value for the "injected_file_content_bytes" quota
    #[arg(
        long = "injected-file-content-bytes",
        alias = "injected_file_content_bytes",
        value_name = "N"
    )]
    injected_file_content_bytes: Option<i64>,
    /// New value for the "injected_file_path_bytes" quota
    #[arg(
        long = "injected-file-path-bytes",
        alias = "injected_file_path_bytes",
        value_name = "N"
    )]
    injected_file_path_bytes: Option<i64>,
    /// New value for the "key_pairs" quota
    #[arg(long = "key-pairs", alias = "key_pairs", value_name = "N")]
    key_pairs: Option<i64>,
    /// New value for the "security_groups" quota
    #[arg(long = "security-groups", alias = "security_groups", value_name = "N")]
    security_groups: Option<i64>,
    /// New value for the "security_group_rules" quota
    #[arg(
        long = "security-group-rules",
        alias = "security_group_rules",
        value_name = "N"
    )]
    security_group_rules: Option<i64>,
    /// New value for the "server_groups" quota
    #[arg(long = "server-groups", alias = "server_groups", value_name = "N")]
    server_groups: Option<i64>,
    /// New value for the "server_group_members" quota
    #[arg(
        long = "server-group-members",
        alias = "server_group_members",
        value_name = "N"
    )]
    server_group_members: Option<i64>,
}

impl QuotaValues {
    /// The `quota_set` body's entries, in novaclient's order.
    fn entries(&self) -> Vec<(&'static str, i64)> {
        [
            ("instances", self.instances),
            ("cores", self.cores),
            ("ram", self.ram),
            ("floating_ips", self.floating_ips),
            ("fixed_ips", self.fixed_ips),
            ("metadata_items", self.metadata_items),
            ("injected_files", self.injected_files),
            (
                "injected_file_content_bytes",
                self.injected_file_content_bytes,
            ),
            ("injected_file_path_bytes", self.injected_file_path_bytes),
            ("key_pairs", self.key_pairs),
            ("security_groups", self.security_groups),
            ("security_group_rules", self.security_group_rules),
            ("server_groups", self.server_groups),
            ("server_group_members", self.server_group_members),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

/// novaclient's quota resources, in the order `quota-show` lists them.
const QUOTA_RESOURCES: &[&str] = &[
    "instances",
    "cores",
    "ram",
    "floating_ips",
    "fixed_ips",
    "metadata_items",
    "injected_files",
    "injected_file_content_bytes",
    "injected_file_path_bytes",
    "key_pairs",
    "security_groups",
    "security_group_rules",
    "server_groups",
    "server_group_members",
];

// Parsed once per process: the size of the biggest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum ClientCmd {
    /// Create a network (admin)
    ///
    /// Flat and FlatDHCP networks need a bridge; VLAN networks get one (brVLAN) from the
    /// VLAN. The range is the whole network (the API creates exactly one).
    #[command(after_help = "Examples:\n  \
        novanet network-create vmnet --fixed-range-v4 10.0.0.0/24 --bridge br100\n  \
        novanet network-create vmnet --fixed-range-v4 10.0.0.0/24 --bridge br100 --multi-host T\n  \
        novanet network-create public --fixed-range-v4 10.0.3.0/24 --vlan 100 --vpn 1000")]
    NetworkCreate(NetworkCreateArgs),
    /// Print a list of available networks
    #[command(after_help = "Example:\n  novanet network-list")]
    NetworkList,
    /// Show details about the given network
    NetworkShow {
        /// UUID, label or CIDR of the network
        network: String,
    },
    /// Delete a network by label or ID (admin)
    NetworkDelete {
        /// UUID, label or CIDR of the network
        network: String,
    },
    /// Associate a host with a network (admin)
    NetworkAssociateHost {
        /// UUID, label or CIDR of the network
        network: String,
        /// Name of the host
        host: String,
    },
    /// Associate the current project with a network (admin)
    NetworkAssociateProject {
        /// UUID, label or CIDR of the network
        network: String,
    },
    /// Disassociate host and/or project from the given network (admin)
    NetworkDisassociate {
        /// 1: disassociate only the host
        #[arg(long = "host-only", value_name = "0|1", default_value = "0", value_parser = ["0", "1"])]
        host_only: String,
        /// 1: disassociate only the project
        #[arg(long = "project-only", value_name = "0|1", default_value = "0", value_parser = ["0", "1"])]
        project_only: String,
        /// UUID, label or CIDR of the network
        network: String,
    },
    /// Boot a new server
    #[command(after_help = "Examples:\n  \
        novanet boot --image cirros --flavor 1 cirros\n  \
        novanet boot --image cirros --flavor 1 --nic net-id=NETWORK_UUID --availability-zone nova:compute-2 vm2")]
    Boot {
        /// Name or ID of the image
        #[arg(long, alias = "p_w_picpath", value_name = "IMAGE")]
        image: Option<String>,
        /// Name or ID of the flavor (default 1, m1.tiny)
        #[arg(long, value_name = "FLAVOR")]
        flavor: Option<String>,
        /// A NIC on a network: net-id=UUID[,v4-fixed-ip=IP] (repeat for more NICs)
        #[arg(long, value_name = "net-id=UUID[,v4-fixed-ip=IP]")]
        nic: Vec<String>,
        /// Key name of the keypair to inject (see keypair-add)
        #[arg(long = "key-name", alias = "key_name", value_name = "NAME")]
        key_name: Option<String>,
        /// A file whose contents the metadata service serves as user data
        #[arg(long = "user-data", alias = "user_data", value_name = "FILE")]
        user_data: Option<String>,
        /// Metadata to record with the server (repeat for more)
        #[arg(long, value_name = "KEY=VALUE")]
        meta: Vec<String>,
        /// Comma-separated names of the security groups (default: default)
        #[arg(
            long = "security-groups",
            alias = "security_groups",
            value_name = "GROUPS"
        )]
        security_groups: Option<String>,
        /// The zone, or ZONE:HOST to place the server on a host (admin)
        #[arg(
            long = "availability-zone",
            alias = "availability_zone",
            value_name = "ZONE[:HOST]"
        )]
        availability_zone: Option<String>,
        /// Boot this many servers at once
        #[arg(long = "min-count", value_name = "N")]
        min_count: Option<u32>,
        /// Name for the new server
        name: String,
    },
    /// List servers
    #[command(after_help = "Example:\n  novanet list")]
    List {
        /// Display information from all projects (admin)
        #[arg(long = "all-tenants", value_name = "0|1", num_args = 0..=1, default_missing_value = "1")]
        all_tenants: Option<String>,
    },
    /// Show details about the given server
    Show {
        /// Name or ID of the server
        server: String,
    },
    /// Immediately shut down and delete the specified server(s)
    Delete {
        /// Name or ID of the server(s)
        #[arg(required = true)]
        servers: Vec<String>,
    },
    /// Allocate a floating IP for the current project
    #[command(
        after_help = "Examples:\n  novanet floating-ip-create\n  novanet floating-ip-create nova"
    )]
    FloatingIpCreate {
        /// Name of the floating IP pool (default: the configured default_floating_pool)
        pool: Option<String>,
    },
    /// De-allocate a floating IP from the current project
    #[command(after_help = "Example:\n  novanet floating-ip-delete 68.99.26.170")]
    FloatingIpDelete {
        /// IP of the floating IP
        address: String,
    },
    /// List the current project's floating IPs
    #[command(after_help = "Example:\n  novanet floating-ip-list")]
    FloatingIpList,
    /// List all floating IP pools
    #[command(after_help = "Example:\n  novanet floating-ip-pool-list")]
    FloatingIpPoolList,
    /// Associate a floating IP address to a server
    #[command(after_help = "Example:\n  novanet floating-ip-associate cirros 68.99.26.170")]
    FloatingIpAssociate {
        /// Fixed IP address of the server to associate with (default: its first)
        #[arg(long = "fixed-address", value_name = "ADDRESS")]
        fixed_address: Option<String>,
        /// Name or ID of the server
        server: String,
        /// The floating IP address
        address: String,
    },
    /// Disassociate a floating IP address from a server
    #[command(after_help = "Example:\n  novanet floating-ip-disassociate cirros 68.99.26.170")]
    FloatingIpDisassociate {
        /// Name or ID of the server
        server: String,
        /// The floating IP address
        address: String,
    },
    /// Bulk create floating IPs by range (admin)
    #[command(
        after_help = "Example:\n  novanet floating-ip-bulk-create 68.99.26.0/29 --pool nova"
    )]
    FloatingIpBulkCreate {
        /// Address range to create (CIDR)
        #[arg(value_name = "RANGE")]
        ip_range: String,
        /// Pool for the new floating IPs (default: default_floating_pool)
        #[arg(long, value_name = "POOL")]
        pool: Option<String>,
        /// Interface for the new floating IPs (default: public_interface)
        #[arg(long, value_name = "INTERFACE")]
        interface: Option<String>,
    },
    /// List all floating IPs of every project (admin)
    FloatingIpBulkList {
        /// Filter by host
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
    },
    /// Bulk delete floating IPs by range (admin)
    FloatingIpBulkDelete {
        /// Address range to delete (CIDR)
        #[arg(value_name = "RANGE")]
        ip_range: String,
    },
    /// Retrieve info on a fixed IP (admin)
    FixedIpGet {
        /// Fixed IP address
        #[arg(value_name = "FIXED_IP")]
        address: String,
    },
    /// Reserve a fixed IP: it is never handed to an instance (admin)
    FixedIpReserve {
        /// Fixed IP address
        #[arg(value_name = "FIXED_IP")]
        address: String,
    },
    /// Unreserve a fixed IP (admin)
    FixedIpUnreserve {
        /// Fixed IP address
        #[arg(value_name = "FIXED_IP")]
        address: String,
    },
    /// Add a new IP address on a network to a server
    AddFixedIp {
        /// Name or ID of the server
        server: String,
        /// UUID, label or CIDR of the network
        network: String,
    },
    /// Write a server's config drive (an ISO 9660 image labelled config-2) to a file (admin)
    #[command(after_help = "Example:\n  novanet config-drive cirros -o cirros-config.iso")]
    ConfigDrive {
        /// Name or ID of the server
        server: String,
        /// Where to write the image
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: std::path::PathBuf,
    },
    /// Remove an IP address from a server
    RemoveFixedIp {
        /// Name or ID of the server
        server: String,
        /// The IP address
        address: String,
    },
    /// Create a security group
    #[command(after_help = "Example:\n  novanet secgroup-create web \"web servers\"")]
    SecgroupCreate {
        /// Name of the security group
        name: String,
        /// Description of the security group
        description: String,
    },
    /// Update a security group's name and description
    SecgroupUpdate {
        /// ID or name of the security group
        group: String,
        /// New name of the security group
        name: String,
        /// New description of the security group
        description: String,
    },
    /// List security groups for the current project
    SecgroupList {
        /// Display information from all projects (admin)
        #[arg(long = "all-tenants", value_name = "0|1", num_args = 0..=1, default_missing_value = "1")]
        all_tenants: Option<String>,
    },
    /// Delete a security group
    SecgroupDelete {
        /// ID or name of the security group
        group: String,
    },
    /// Add a rule to a security group
    #[command(after_help = "Examples:\n  \
        novanet secgroup-add-rule default icmp -1 -1 0.0.0.0/0\n  \
        novanet secgroup-add-rule default tcp 22 22 0.0.0.0/0")]
    SecgroupAddRule(GroupRuleArgs),
    /// Delete a rule from a security group
    #[command(after_help = "Example:\n  novanet secgroup-delete-rule default tcp 22 22 0.0.0.0/0")]
    SecgroupDeleteRule(GroupRuleArgs),
    /// Add a source group rule to a security group: members of SOURCE_GROUP may connect
    #[command(after_help = "Example:\n  novanet secgroup-add-group-rule default web tcp 80 80")]
    SecgroupAddGroupRule(SourceGroupRuleArgs),
    /// Delete a source group rule from a security group
    #[command(after_help = "Example:\n  novanet secgroup-delete-group-rule default web tcp 80 80")]
    SecgroupDeleteGroupRule(SourceGroupRuleArgs),
    /// List rules for a security group
    #[command(after_help = "Example:\n  novanet secgroup-list-rules default")]
    SecgroupListRules {
        /// ID or name of the security group
        group: String,
    },
    /// Add a rule to the rules copied into every new project's `default` group (admin)
    #[command(after_help = "Example:\n  novanet secgroup-add-default-rule tcp 22 22 0.0.0.0/0")]
    SecgroupAddDefaultRule(AdminRuleArgs),
    /// Delete a rule from the rules copied into every new `default` group (admin)
    SecgroupDeleteDefaultRule(AdminRuleArgs),
    /// List the rules copied into every new project's `default` group
    SecgroupListDefaultRules,
    /// Add a provider rule: what it matches is dropped for every instance (admin)
    #[command(after_help = "Example:\n  novanet provider-rule-add tcp 25 25 0.0.0.0/0")]
    ProviderRuleAdd(AdminRuleArgs),
    /// Delete a provider rule (admin)
    ProviderRuleDelete(AdminRuleArgs),
    /// List the provider rules (admin)
    ProviderRuleList,
    /// Add a security group to a server
    AddSecgroup {
        /// Name or ID of the server
        server: String,
        /// Name or ID of the security group
        group: String,
    },
    /// Remove a security group from a server
    RemoveSecgroup {
        /// Name or ID of the server
        server: String,
        /// Name of the security group
        group: String,
    },
    /// List the security groups of a server
    ListSecgroup {
        /// Name or ID of the server
        server: String,
    },
    /// Create a new key pair for use with servers (from a public key)
    KeypairAdd {
        /// Path to a public ssh key ("-" reads standard input)
        #[arg(long = "pub-key", alias = "pub_key", value_name = "FILE")]
        pub_key: Option<String>,
        /// Name of the key
        name: String,
    },
    /// Print a list of your key pairs
    KeypairList,
    /// Delete a key pair given by its name
    KeypairDelete {
        /// Name of the key pair
        name: String,
    },
    /// Show the virtual interfaces (MAC addresses) of a server
    VirtualInterfaceList {
        /// Name or ID of the server
        server: String,
    },
    /// Show a list of all services: the agents and when they last reported (admin)
    ServiceList {
        /// Only the services of this host
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Only the services of this binary (nova-network, nova-compute)
        #[arg(long, value_name = "BINARY")]
        binary: Option<String>,
    },
    /// List the quotas of a project
    QuotaShow {
        /// ID (or name) of the project (default: the current project)
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
    },
    /// List the default quotas (those of a project with none of its own)
    QuotaDefaults {
        /// ID (or name) of the project (default: the current project)
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
    },
    /// Update the quotas of a project (admin)
    #[command(after_help = "Example:\n  novanet quota-update PROJECT_ID --floating-ips 20")]
    QuotaUpdate {
        /// ID (or name) of the project
        tenant: String,
        #[command(flatten)]
        values: QuotaValues,
        /// Whether to update the quota even if the project already uses more
        #[arg(long)]
        force: bool,
    },
    /// List the networks the current project may use
    TenantNetworkList,
    /// Create a network for the current project
    #[command(after_help = "Example:\n  novanet tenant-network-create my_net 172.16.0.0/24")]
    TenantNetworkCreate {
        /// Network label (ex. my_new_network)
        label: String,
        /// IP block to allocate from (ex. 172.16.0.0/24)
        cidr: String,
    },
    /// Show a network of the current project
    TenantNetworkShow {
        /// ID or label of the network
        network: String,
    },
    /// Delete a network of the current project
    TenantNetworkDelete {
        /// ID or label of the network
        network: String,
    },
    /// GET a compute API path and print the JSON (for scripts)
    #[command(hide = true)]
    ApiGet {
        /// The path, e.g. /os-services
        path: String,
    },
    /// Report where a hypervisor plugged a VIF (the lab does this for its VMs)
    #[command(hide = true)]
    VifPlug {
        /// The VIF's UUID
        vif: String,
        /// The host device it was plugged into
        device: String,
    },
}

/// Says what a command did when novaclient would print nothing (on standard error, so
/// standard output stays as novaclient's).
fn done(msg: impl std::fmt::Display) {
    eprintln!("{msg}");
}

fn list_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_list(items: &[Value], cols: &[(&str, &str)], as_json: bool) {
    if as_json {
        out(&serde_json::to_string_pretty(&Value::Array(items.to_vec())).expect("json"));
        return;
    }
    let mut t = Table::new(&cols.iter().map(|c| c.0).collect::<Vec<_>>());
    for i in items {
        t.row(cols.iter().map(|(_, k)| cell(&i[*k])).collect());
    }
    out(&t.render());
}

fn print_object(v: &Value, as_json: bool) {
    if as_json {
        out(&serde_json::to_string_pretty(v).expect("json"));
        return;
    }
    let mut t = Table::new(&["Property", "Value"]);
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            let s = match val {
                Value::Object(_) | Value::Array(_) => val.to_string(),
                other => cell(other),
            };
            t.row(vec![k.clone(), s]);
        }
    }
    out(&t.render());
}

fn is_uuid(s: &str) -> bool {
    novanet_core::planning::is_uuid(s)
}

impl Session {
    fn find_server(&self, key: &str) -> Res<Value> {
        if is_uuid(key) {
            if let Ok(v) = self.get(&format!("/servers/{key}")) {
                return Ok(v["server"].clone());
            }
        }
        let list = self.get(&format!("/servers?name={key}"))?;
        let matches: Vec<&Value> = list["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["name"] == key)
            .collect();
        match matches.as_slice() {
            [one] => Ok(self.get(&format!("/servers/{}", cell(&one["id"])))?["server"].clone()),
            [] => Err(err(format!("ERROR (CommandError): No server with a name or ID of '{key}' exists.\n`novanet list` shows the servers of project '{}' (admins: `novanet list --all-tenants`).", self.project_name))),
            _ => Err(err(format!("ERROR (CommandError): Multiple server matches found for '{key}', use an ID to be more specific."))),
        }
    }

    fn find_network(&self, key: &str) -> Res<Value> {
        let list = self.get("/os-networks")?;
        list["networks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["id"] == key || n["label"] == key || n["cidr"] == key)
            .cloned()
            .ok_or_else(|| {
                err(format!(
                    "ERROR (CommandError): No network with a label or ID of '{key}' exists.\n\
                     `novanet network-list` shows the networks project '{}' can see.",
                    self.project_name
                ))
            })
    }

    fn find_group(&self, key: &str) -> Res<Value> {
        let list = self.get("/os-security-groups")?;
        list["security_groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["name"] == key || cell(&g["id"]) == key)
            .cloned()
            .ok_or_else(|| {
                err(format!(
                    "ERROR (CommandError): Secgroup ID or name '{key}' not found.\n\
                     `novanet secgroup-list` shows the groups of project '{}'.",
                    self.project_name
                ))
            })
    }

    fn find_floating(&self, address: &str) -> Res<Value> {
        let list = self.get("/os-floating-ips")?;
        list["floating_ips"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["ip"] == address)
            .cloned()
            .ok_or_else(|| {
                err(format!(
                    "ERROR (CommandError): Floating IP {address} not found in your project.\n\
                     `novanet floating-ip-list` shows the floating IPs of project '{}'.",
                    self.project_name
                ))
            })
    }
}

fn server_networks(s: &Value) -> String {
    s["addresses"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(label, addrs)| {
                    let a: Vec<String> = addrs
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|x| cell(&x["addr"]))
                        .collect();
                    format!("{label}={}", a.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

const RULE_COLS: &[(&str, &str)] = &[
    ("IP Protocol", "ip_protocol"),
    ("From Port", "from_port"),
    ("To Port", "to_port"),
    ("IP Range", "_range"),
    ("Source Group", "_group"),
];

const DEFAULT_RULES: &str = "/os-security-group-default-rules";
const DEFAULT_RULE: &str = "security_group_default_rule";
const PROVIDER_RULES: &str = "/os-provider-firewall-rules";
const PROVIDER_RULE: &str = "provider_firewall_rule";

const ADMIN_RULE_COLS: &[(&str, &str)] = &[
    ("IP Protocol", "ip_protocol"),
    ("From Port", "from_port"),
    ("To Port", "to_port"),
    ("IP Range", "_range"),
];

/// What `cmd` does to the rules an admin keeps at `path` (whose bodies use `key`): add,
/// delete (found by its fields, as novaclient does) or list (`None`).
fn admin_rules(
    s: &Session,
    path: &str,
    key: &str,
    add: bool,
    r: Option<AdminRuleArgs>,
    j: bool,
) -> Res<()> {
    let Some(r) = r else {
        let v = s.get(path)?;
        let rows: Vec<Value> = v[format!("{key}s")]
            .as_array()
            .into_iter()
            .flatten()
            .map(rule_row)
            .collect();
        print_list(&rows, ADMIN_RULE_COLS, j);
        return Ok(());
    };
    if add {
        let body = json!({ key: {"ip_protocol": r.ip_proto, "from_port": r.from_port, "to_port": r.to_port, "cidr": r.cidr}});
        let v = s.call("POST", path, Some(body))?;
        print_list(&[rule_row(&v[key])], ADMIN_RULE_COLS, j);
        return Ok(());
    }
    let v = s.call("GET", path, None)?;
    let rule = v[format!("{key}s")]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| {
            x["ip_protocol"] == r.ip_proto.to_lowercase().as_str()
                && x["from_port"] == r.from_port
                && x["to_port"] == r.to_port
                && x["ip_range"]["cidr"] == r.cidr.as_str()
        })
        .cloned()
        .ok_or_else(|| {
            err(format!(
                "ERROR (CommandError): Rule not found\nNo rule {} {} {} {}: `novanet {}` shows them.",
                r.ip_proto,
                r.from_port,
                r.to_port,
                r.cidr,
                if path == DEFAULT_RULES {
                    "secgroup-list-default-rules"
                } else {
                    "provider-rule-list"
                }
            ))
        })?;
    print_list(&[rule_row(&rule)], ADMIN_RULE_COLS, j);
    s.call("DELETE", &format!("{path}/{}", cell(&rule["id"])), None)?;
    Ok(())
}

fn rule_row(r: &Value) -> Value {
    let mut r = r.clone();
    r["_range"] = r["ip_range"].get("cidr").cloned().unwrap_or(json!(""));
    r["_group"] = r["group"].get("name").cloned().unwrap_or(json!(""));
    for k in ["ip_protocol", "from_port", "to_port"] {
        if r[k].is_null() {
            r[k] = json!("");
        }
    }
    r
}

impl Session {
    /// The project a network is meant for, by id or name.
    fn network_request_body(&self, auth: &Auth, a: &NetworkCreateArgs) -> Res<Value> {
        let mut r = a
            .to_request()
            .map_err(|e| err(format!("ERROR (CommandError): {e}")))?;
        if r.cidr.is_none() && r.cidr_v6.is_none() {
            return Err(err(
                "ERROR (CommandError): Must specify either fixed_range_v4 or fixed_range_v6\n\
                 Give the network's range, e.g. --fixed-range-v4 10.0.0.0/24.",
            ));
        }
        if let Some(p) = &r.project_id {
            r.project_id = Some(self.project_id_of(&auth.auth_url, p)?);
        }
        let mut body = serde_json::to_value(ApiNetworkOut::from(r)).expect("json");
        body.as_object_mut()
            .expect("object")
            .retain(|_, v| !v.is_null());
        Ok(json!({ "network": body }))
    }

    fn find_tenant_network(&self, key: &str) -> Res<Value> {
        let list = self.get("/os-tenant-networks")?;
        list_of(&list, "networks")
            .iter()
            .find(|n| n["id"] == key || n["label"] == key)
            .cloned()
            .ok_or_else(|| {
                err(format!(
                    "ERROR (CommandError): No network with a label or ID of '{key}' exists.\n\
                     `novanet tenant-network-list` shows the networks of project '{}'.",
                    self.project_name
                ))
            })
    }

    fn server_action(&self, server: &Value, action: Value) -> Res<Value> {
        self.call(
            "POST",
            &format!("/servers/{}/action", cell(&server["id"])),
            Some(action),
        )
    }
}

fn quota_rows(v: &Value) -> Vec<Value> {
    let q = &v["quota_set"];
    let mut rows: Vec<Value> = QUOTA_RESOURCES
        .iter()
        .filter(|k| !q[**k].is_null())
        .map(|k| json!({"quota": k, "limit": q[*k]}))
        .collect();
    if let Some(o) = q.as_object() {
        for (k, val) in o {
            if k != "id" && !QUOTA_RESOURCES.contains(&k.as_str()) {
                rows.push(json!({"quota": k, "limit": val}));
            }
        }
    }
    rows
}

fn same_proto(rule: &Value, proto: &str) -> bool {
    rule["ip_protocol"]
        .as_str()
        .is_some_and(|p| p.eq_ignore_ascii_case(proto))
}

pub fn run(auth: &Auth, output: &Output, cmd: ClientCmd) -> Res<()> {
    let s = Session::login(auth)?;
    let j = output.json;
    match cmd {
        ClientCmd::NetworkCreate(a) => {
            let body = s.network_request_body(auth, &a)?;
            let v = s.call("POST", "/os-networks", Some(body))?;
            let n = &v["network"];
            if j {
                print_object(n, true);
            }
            done(format_args!(
                "Created network {} ({}, {})",
                cell(&n["label"]),
                cell(&n["id"]),
                if n["cidr"].is_null() {
                    cell(&n["cidr_v6"])
                } else {
                    cell(&n["cidr"])
                }
            ));
        }
        ClientCmd::NetworkList => {
            let v = s.get("/os-networks")?;
            print_list(
                list_of(&v, "networks"),
                &[("ID", "id"), ("Label", "label"), ("Cidr", "cidr")],
                j,
            );
        }
        ClientCmd::NetworkShow { network } => print_object(&s.find_network(&network)?, j),
        ClientCmd::NetworkDelete { network } => {
            let n = s.find_network(&network)?;
            s.call("DELETE", &format!("/os-networks/{}", cell(&n["id"])), None)?;
            done(format_args!(
                "Deleted network {} ({})",
                cell(&n["label"]),
                cell(&n["id"])
            ));
        }
        ClientCmd::NetworkAssociateHost { network, host } => {
            let n = s.find_network(&network)?;
            s.call(
                "POST",
                &format!("/os-networks/{}/action", cell(&n["id"])),
                Some(json!({"associate_host": host})),
            )?;
            done(format_args!(
                "Associated network {} with host {host}",
                cell(&n["label"])
            ));
        }
        ClientCmd::NetworkAssociateProject { network } => {
            let n = s.find_network(&network)?;
            s.call("POST", "/os-networks/add", Some(json!({"id": n["id"]})))?;
            done(format_args!(
                "Associated network {} with project {}",
                cell(&n["label"]),
                s.project_name
            ));
        }
        ClientCmd::NetworkDisassociate {
            host_only,
            project_only,
            network,
        } => {
            let n = s.find_network(&network)?;
            let (action, what) = match (host_only == "1", project_only == "1") {
                (true, _) => ("disassociate_host", "its host"),
                (_, true) => ("disassociate_project", "its project"),
                _ => ("disassociate", "its host and project"),
            };
            s.call(
                "POST",
                &format!("/os-networks/{}/action", cell(&n["id"])),
                Some(json!({ action: null })),
            )?;
            done(format_args!(
                "Disassociated network {} from {what}",
                cell(&n["label"])
            ));
        }
        ClientCmd::Boot {
            image,
            flavor,
            nic,
            key_name,
            user_data,
            meta,
            security_groups,
            availability_zone,
            min_count,
            name,
        } => {
            let image_id = match image {
                Some(i) if is_uuid(&i) => Some(i),
                Some(i) => {
                    let v = s.get(&format!("/v2/images?name={i}"))?;
                    let imgs = v["images"].as_array().cloned().unwrap_or_default();
                    match imgs.as_slice() {
                        [one] => Some(cell(&one["id"])),
                        [] => return Err(err(format!("ERROR (CommandError): No Image matching {i}."))),
                        _ => return Err(err(format!("ERROR (CommandError): Multiple image matches found for '{i}', use an ID to be more specific."))),
                    }
                }
                None => None,
            };
            let mut server = json!({"name": name, "flavorRef": flavor.unwrap_or_else(|| "1".into()), "min_count": min_count.unwrap_or(1), "max_count": min_count.unwrap_or(1)});
            if let Some(i) = image_id {
                server["imageRef"] = json!(i);
            }
            let mut nets = Vec::new();
            for n in &nic {
                let mut entry = serde_json::Map::new();
                for kv in n.split(',') {
                    match kv.split_once('=') {
                        Some(("net-id", v)) => {
                            entry.insert("uuid".into(), json!(v));
                        }
                        Some(("v4-fixed-ip", v)) => {
                            entry.insert("fixed_ip".into(), json!(v));
                        }
                        _ => return Err(err(format!("ERROR (CommandError): Invalid nic argument '{n}'. Nic arguments must be of the form --nic <net-id=net-uuid,v4-fixed-ip=ip-addr>"))),
                    }
                }
                nets.push(Value::Object(entry));
            }
            if !nets.is_empty() {
                server["networks"] = Value::Array(nets);
            }
            if let Some(k) = key_name {
                server["key_name"] = json!(k);
            }
            if let Some(f) = user_data {
                let data = std::fs::read(&f).map_err(|e| {
                    err(format!(
                        "ERROR (CommandError): cannot read user data {f}: {e}"
                    ))
                })?;
                server["user_data"] = json!(base64::engine::general_purpose::STANDARD.encode(data));
            }
            if !meta.is_empty() {
                let mut m = serde_json::Map::new();
                for kv in &meta {
                    let (k, v) = kv.split_once('=').ok_or_else(|| {
                        err(format!(
                            "ERROR (CommandError): --meta {kv} is not KEY=VALUE"
                        ))
                    })?;
                    m.insert(k.into(), json!(v));
                }
                server["metadata"] = Value::Object(m);
            }
            if let Some(g) = security_groups {
                server["security_groups"] =
                    json!(g.split(',').map(|n| json!({"name": n})).collect::<Vec<_>>());
            }
            if let Some(az) = availability_zone {
                server["availability_zone"] = json!(az);
            }
            let v = s.call("POST", "/servers", Some(json!({ "server": server })))?;
            let id = cell(&v["server"]["id"]);
            let full = s.get(&format!("/servers/{id}"))?;
            print_object(&full["server"], j);
        }
        ClientCmd::List { all_tenants } => {
            let q = all_tenants
                .map(|a| format!("?all_tenants={a}"))
                .unwrap_or_default();
            let v = s.get(&format!("/servers/detail{q}"))?;
            let mut rows: Vec<Value> = list_of(&v, "servers").to_vec();
            rows.sort_by_key(|r| cell(&r["name"]));
            for r in &mut rows {
                r["_networks"] = json!(server_networks(r));
                r["_task"] = json!(cell(&r["OS-EXT-STS:task_state"]));
                r["_power"] = json!(if r["OS-EXT-STS:power_state"] == 1 {
                    "Running"
                } else {
                    "NOSTATE"
                });
            }
            print_list(
                &rows,
                &[
                    ("ID", "id"),
                    ("Name", "name"),
                    ("Status", "status"),
                    ("Task State", "_task"),
                    ("Power State", "_power"),
                    ("Networks", "_networks"),
                ],
                j,
            );
        }
        ClientCmd::Show { server } => print_object(&s.find_server(&server)?, j),
        ClientCmd::Delete { servers } => {
            for name in servers {
                let srv = s.find_server(&name)?;
                s.call("DELETE", &format!("/servers/{}", cell(&srv["id"])), None)?;
                out(&format!(
                    "Request to delete server {name} has been accepted."
                ));
            }
        }
        ClientCmd::FloatingIpCreate { pool } => {
            let v = s.call("POST", "/os-floating-ips", Some(json!({ "pool": pool })))?;
            print_list(&[v["floating_ip"].clone()], FLOATING_COLS, j);
        }
        ClientCmd::FloatingIpDelete { address } => {
            let f = s.find_floating(&address)?;
            s.call(
                "DELETE",
                &format!("/os-floating-ips/{}", cell(&f["id"])),
                None,
            )?;
            done(format_args!(
                "Released floating IP {address} from project {}",
                s.project_name
            ));
        }
        ClientCmd::FloatingIpList => {
            let v = s.get("/os-floating-ips")?;
            print_list(list_of(&v, "floating_ips"), FLOATING_COLS, j);
        }
        ClientCmd::FloatingIpPoolList => {
            let v = s.get("/os-floating-ip-pools")?;
            print_list(list_of(&v, "floating_ip_pools"), &[("name", "name")], j);
        }
        ClientCmd::FloatingIpAssociate {
            fixed_address,
            server,
            address,
        } => {
            let srv = s.find_server(&server)?;
            let mut body = json!({"address": address});
            if let Some(f) = &fixed_address {
                body["fixed_address"] = json!(f);
            }
            s.server_action(&srv, json!({ "addFloatingIp": body }))?;
            done(format_args!(
                "Associated floating IP {address} with server {}{}",
                cell(&srv["name"]),
                fixed_address.map(|f| format!(" ({f})")).unwrap_or_default()
            ));
        }
        ClientCmd::FloatingIpDisassociate { server, address } => {
            let srv = s.find_server(&server)?;
            s.server_action(&srv, json!({"removeFloatingIp": {"address": address}}))?;
            done(format_args!(
                "Disassociated floating IP {address} from server {}",
                cell(&srv["name"])
            ));
        }
        ClientCmd::FloatingIpBulkCreate {
            ip_range,
            pool,
            interface,
        } => {
            let mut b = json!({ "ip_range": ip_range });
            if let Some(p) = pool {
                b["pool"] = json!(p);
            }
            if let Some(i) = interface {
                b["interface"] = json!(i);
            }
            let v = s.call(
                "POST",
                "/os-floating-ips-bulk",
                Some(json!({ "floating_ips_bulk_create": b })),
            )?;
            let made = &v["floating_ips_bulk_create"];
            done(format_args!(
                "Created floating IPs {ip_range} in pool {} on interface {}",
                cell(&made["pool"]),
                cell(&made["interface"])
            ));
        }
        ClientCmd::FloatingIpBulkList { host } => {
            let path = host
                .map(|h| format!("/os-floating-ips-bulk/{h}"))
                .unwrap_or_else(|| "/os-floating-ips-bulk".into());
            let v = s.get(&path)?;
            print_list(
                list_of(&v, "floating_ip_info"),
                &[
                    ("project_id", "project_id"),
                    ("address", "address"),
                    ("instance_uuid", "instance_uuid"),
                    ("pool", "pool"),
                    ("interface", "interface"),
                ],
                j,
            );
        }
        ClientCmd::FloatingIpBulkDelete { ip_range } => {
            s.call(
                "PUT",
                "/os-floating-ips-bulk/delete",
                Some(json!({ "ip_range": ip_range })),
            )?;
            done(format_args!("Deleted floating IPs {ip_range}"));
        }
        ClientCmd::FixedIpGet { address } => {
            let v = s.get(&format!("/os-fixed-ips/{address}"))?;
            print_list(
                &[v["fixed_ip"].clone()],
                &[
                    ("address", "address"),
                    ("cidr", "cidr"),
                    ("hostname", "hostname"),
                    ("host", "host"),
                    ("reserved", "reserved"),
                ],
                j,
            );
        }
        ClientCmd::FixedIpReserve { address } => {
            s.call(
                "POST",
                &format!("/os-fixed-ips/{address}/action"),
                Some(json!({"reserve": null})),
            )?;
            done(format_args!("Reserved fixed IP {address}"));
        }
        ClientCmd::FixedIpUnreserve { address } => {
            s.call(
                "POST",
                &format!("/os-fixed-ips/{address}/action"),
                Some(json!({"unreserve": null})),
            )?;
            done(format_args!("Unreserved fixed IP {address}"));
        }
        ClientCmd::AddFixedIp { server, network } => {
            let srv = s.find_server(&server)?;
            let n = s.find_network(&network)?;
            s.server_action(&srv, json!({"addFixedIp": {"networkId": n["id"]}}))?;
            done(format_args!(
                "Added a fixed IP on network {} to server {}",
                cell(&n["label"]),
                cell(&srv["name"])
            ));
        }
        ClientCmd::ConfigDrive { server, output } => {
            let srv = s.find_server(&server)?;
            let id = srv["id"].as_str().unwrap_or_default();
            let iso = s.get_bytes(
                &format!("/novanet/v1/instances/{id}/config-drive"),
                64 << 20,
            )?;
            std::fs::write(&output, &iso).map_err(|e| {
                crate::session::err(format!("ERROR: writing {}: {e}", output.display()))
            })?;
            done(format_args!(
                "Wrote the config drive of server {} to {} ({} bytes)",
                cell(&srv["name"]),
                output.display(),
                iso.len()
            ));
        }
        ClientCmd::RemoveFixedIp { server, address } => {
            let srv = s.find_server(&server)?;
            s.server_action(&srv, json!({"removeFixedIp": {"address": address}}))?;
            done(format_args!(
                "Removed fixed IP {address} from server {}",
                cell(&srv["name"])
            ));
        }
        ClientCmd::SecgroupCreate { name, description } => {
            let v = s.call(
                "POST",
                "/os-security-groups",
                Some(json!({"security_group": {"name": name, "description": description}})),
            )?;
            print_list(&[v["security_group"].clone()], GROUP_COLS, j);
        }
        ClientCmd::SecgroupUpdate {
            group,
            name,
            description,
        } => {
            let g = s.find_group(&group)?;
            let v = s.call(
                "PUT",
                &format!("/os-security-groups/{}", cell(&g["id"])),
                Some(json!({"security_group": {"name": name, "description": description}})),
            )?;
            print_list(&[v["security_group"].clone()], GROUP_COLS, j);
        }
        ClientCmd::SecgroupList { all_tenants } => {
            let all = all_tenants.as_deref().is_some_and(|a| a != "0");
            let q = all_tenants
                .map(|a| format!("?all_tenants={a}"))
                .unwrap_or_default();
            let v = s.get(&format!("/os-security-groups{q}"))?;
            let cols: &[(&str, &str)] = if all {
                &[
                    ("Id", "id"),
                    ("Name", "name"),
                    ("Description", "description"),
                    ("Tenant_ID", "tenant_id"),
                ]
            } else {
                GROUP_COLS
            };
            print_list(list_of(&v, "security_groups"), cols, j);
        }
        ClientCmd::SecgroupDelete { group } => {
            let g = s.find_group(&group)?;
            s.call(
                "DELETE",
                &format!("/os-security-groups/{}", cell(&g["id"])),
                None,
            )?;
            // novaclient prints the group it deleted.
            print_list(&[g], GROUP_COLS, j);
        }
        ClientCmd::SecgroupAddRule(r) => {
            let g = s.find_group(&r.group)?;
            let body = json!({"security_group_rule": {"ip_protocol": r.ip_proto, "from_port": r.from_port, "to_port": r.to_port, "cidr": r.cidr, "group_id": null, "parent_group_id": g["id"]}});
            let v = s.call("POST", "/os-security-group-rules", Some(body))?;
            print_list(&[rule_row(&v["security_group_rule"])], RULE_COLS, j);
        }
        ClientCmd::SecgroupAddGroupRule(r) => {
            let g = s.find_group(&r.group)?;
            let src = s.find_group(&r.source_group)?;
            let body = json!({"security_group_rule": {"ip_protocol": r.ip_proto, "from_port": r.from_port, "to_port": r.to_port, "group_id": src["id"], "parent_group_id": g["id"]}});
            let v = s.call("POST", "/os-security-group-rules", Some(body))?;
            print_list(&[rule_row(&v["security_group_rule"])], RULE_COLS, j);
        }
        ClientCmd::SecgroupDeleteRule(r) => {
            let g = s.find_group(&r.group)?;
            let rule = list_of(&g, "rules")
                .iter()
                .find(|x| {
                    same_proto(x, &r.ip_proto)
                        && x["from_port"] == r.from_port
                        && x["to_port"] == r.to_port
                        && x["ip_range"]["cidr"] == r.cidr.as_str()
                })
                .cloned()
                .ok_or_else(|| {
                    err(format!(
                        "ERROR (CommandError): Rule not found\nGroup {} has no rule {} {} {} {}: \
                         `novanet secgroup-list-rules {}` shows its rules.",
                        r.group, r.ip_proto, r.from_port, r.to_port, r.cidr, r.group
                    ))
                })?;
            // novaclient prints the rule it deletes.
            print_list(&[rule_row(&rule)], RULE_COLS, j);
            s.call(
                "DELETE",
                &format!("/os-security-group-rules/{}", cell(&rule["id"])),
                None,
            )?;
        }
        ClientCmd::SecgroupDeleteGroupRule(r) => {
            let g = s.find_group(&r.group)?;
            let src = s.find_group(&r.source_group)?;
            let rule = list_of(&g, "rules")
                .iter()
                .find(|x| {
                    same_proto(x, &r.ip_proto)
                        && x["from_port"] == r.from_port
                        && x["to_port"] == r.to_port
                        && x["group"]["name"] == src["name"]
                })
                .cloned()
                .ok_or_else(|| {
                    err(format!(
                        "ERROR (CommandError): Rule not found\nGroup {} has no rule {} {} {} from \
                         group {}: `novanet secgroup-list-rules {}` shows its rules.",
                        r.group, r.ip_proto, r.from_port, r.to_port, r.source_group, r.group
                    ))
                })?;
            s.call(
                "DELETE",
                &format!("/os-security-group-rules/{}", cell(&rule["id"])),
                None,
            )?;
            done(format_args!(
                "Deleted rule {} {} {} from group {} in group {}",
                r.ip_proto,
                r.from_port,
                r.to_port,
                cell(&src["name"]),
                cell(&g["name"])
            ));
        }
        ClientCmd::SecgroupListRules { group } => {
            let g = s.find_group(&group)?;
            let rows: Vec<Value> = list_of(&g, "rules").iter().map(rule_row).collect();
            print_list(&rows, RULE_COLS, j);
        }
        ClientCmd::SecgroupAddDefaultRule(r) => {
            admin_rules(&s, DEFAULT_RULES, DEFAULT_RULE, true, Some(r), j)?
        }
        ClientCmd::SecgroupDeleteDefaultRule(r) => {
            admin_rules(&s, DEFAULT_RULES, DEFAULT_RULE, false, Some(r), j)?
        }
        ClientCmd::SecgroupListDefaultRules => {
            admin_rules(&s, DEFAULT_RULES, DEFAULT_RULE, false, None, j)?
        }
        ClientCmd::ProviderRuleAdd(r) => {
            admin_rules(&s, PROVIDER_RULES, PROVIDER_RULE, true, Some(r), j)?
        }
        ClientCmd::ProviderRuleDelete(r) => {
            admin_rules(&s, PROVIDER_RULES, PROVIDER_RULE, false, Some(r), j)?
        }
        ClientCmd::ProviderRuleList => {
            admin_rules(&s, PROVIDER_RULES, PROVIDER_RULE, false, None, j)?
        }
        ClientCmd::AddSecgroup { server, group } => {
            let srv = s.find_server(&server)?;
            s.server_action(&srv, json!({"addSecurityGroup": {"name": group}}))?;
            done(format_args!(
                "Added security group {group} to server {}",
                cell(&srv["name"])
            ));
        }
        ClientCmd::RemoveSecgroup { server, group } => {
            let srv = s.find_server(&server)?;
            s.server_action(&srv, json!({"removeSecurityGroup": {"name": group}}))?;
            done(format_args!(
                "Removed security group {group} from server {}",
                cell(&srv["name"])
            ));
        }
        ClientCmd::ListSecgroup { server } => {
            let srv = s.find_server(&server)?;
            let v = s.get(&format!("/servers/{}/os-security-groups", cell(&srv["id"])))?;
            print_list(list_of(&v, "security_groups"), GROUP_COLS, j);
        }
        ClientCmd::KeypairAdd { pub_key, name } => {
            let path = pub_key.ok_or_else(|| {
                err(
                    "ERROR (CommandError): give --pub-key FILE (key generation is not offered)\n\
                     Make a key with `ssh-keygen -f KEYFILE` and give --pub-key KEYFILE.pub.",
                )
            })?;
            let key = if path == "-" {
                let mut k = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut k)
                    .map(|_| k)
                    .map_err(|e| {
                        err(format!(
                            "ERROR (CommandError): Can't read standard input: {e}"
                        ))
                    })?
            } else {
                std::fs::read_to_string(&path).map_err(|e| {
                    err(format!(
                        "ERROR (CommandError): Can't open or read '{path}': {e}"
                    ))
                })?
            };
            let v = s.call(
                "POST",
                "/os-keypairs",
                Some(json!({"keypair": {"name": name, "public_key": key}})),
            )?;
            done(format_args!(
                "Added key pair {name} ({})",
                cell(&v["keypair"]["fingerprint"])
            ));
        }
        ClientCmd::KeypairList => {
            let v = s.get("/os-keypairs")?;
            let rows: Vec<Value> = list_of(&v, "keypairs")
                .iter()
                .map(|k| k["keypair"].clone())
                .collect();
            print_list(
                &rows,
                &[("Name", "name"), ("Fingerprint", "fingerprint")],
                j,
            );
        }
        ClientCmd::KeypairDelete { name } => {
            s.call("DELETE", &format!("/os-keypairs/{name}"), None)?;
            done(format_args!("Deleted key pair {name}"));
        }
        ClientCmd::VirtualInterfaceList { server } => {
            let srv = s.find_server(&server)?;
            let v = s.get(&format!(
                "/servers/{}/os-virtual-interfaces",
                cell(&srv["id"])
            ))?;
            print_list(
                list_of(&v, "virtual_interfaces"),
                &[("Id", "id"), ("Mac address", "mac_address")],
                j,
            );
        }
        ClientCmd::ServiceList { host, binary } => {
            let mut q = Vec::new();
            if let Some(h) = &host {
                q.push(format!("host={h}"));
            }
            if let Some(b) = &binary {
                q.push(format!("binary={b}"));
            }
            let path = if q.is_empty() {
                "/os-services".to_string()
            } else {
                format!("/os-services?{}", q.join("&"))
            };
            let v = s.get(&path)?;
            let rows: Vec<Value> = list_of(&v, "services")
                .iter()
                .filter(|r| host.as_deref().is_none_or(|h| r["host"] == h))
                .filter(|r| binary.as_deref().is_none_or(|b| r["binary"] == b))
                .cloned()
                .collect();
            // novaclient's columns: Id and Disabled Reason when the server sends them.
            let mut cols: Vec<(&str, &str)> = vec![
                ("Binary", "binary"),
                ("Host", "host"),
                ("Zone", "zone"),
                ("Status", "status"),
                ("State", "state"),
                ("Updated_at", "updated_at"),
            ];
            if rows
                .first()
                .is_some_and(|r| r.get("disabled_reason").is_some())
            {
                cols.push(("Disabled Reason", "disabled_reason"));
            }
            if rows.first().is_some_and(|r| r.get("id").is_some()) {
                cols.insert(0, ("Id", "id"));
            }
            print_list(&rows, &cols, j);
        }
        ClientCmd::QuotaShow { tenant } => {
            let id = match tenant {
                Some(t) => s.project_id_of(&auth.auth_url, &t)?,
                None => s.project_id.clone(),
            };
            let v = s.get(&format!("/os-quota-sets/{id}"))?;
            print_list(
                &quota_rows(&v),
                &[("Quota", "quota"), ("Limit", "limit")],
                j,
            );
        }
        ClientCmd::QuotaDefaults { tenant } => {
            let id = match tenant {
                Some(t) => s.project_id_of(&auth.auth_url, &t)?,
                None => s.project_id.clone(),
            };
            let v = s.get(&format!("/os-quota-sets/{id}/defaults"))?;
            print_list(
                &quota_rows(&v),
                &[("Quota", "quota"), ("Limit", "limit")],
                j,
            );
        }
        ClientCmd::QuotaUpdate {
            tenant,
            values,
            force,
        } => {
            let entries = values.entries();
            if entries.is_empty() {
                return Err(err(
                    "ERROR (CommandError): no quota to change\n\
                     Give at least one new value, e.g. --floating-ips 20 (see `novanet quota-update --help`).",
                ));
            }
            let id = s.project_id_of(&auth.auth_url, &tenant)?;
            let mut set: serde_json::Map<String, Value> = entries
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            if force {
                set.insert("force".into(), json!(true));
            }
            let v = s.call(
                "PUT",
                &format!("/os-quota-sets/{id}"),
                Some(json!({ "quota_set": set })),
            )?;
            if j {
                print_object(&v["quota_set"], true);
            }
            let changed: Vec<String> = entries.iter().map(|(k, v)| format!("{k}={v}")).collect();
            done(format_args!(
                "Updated the quotas of project {tenant}: {}",
                changed.join(", ")
            ));
        }
        ClientCmd::TenantNetworkList => {
            let v = s.get("/os-tenant-networks")?;
            print_list(
                list_of(&v, "networks"),
                &[("ID", "id"), ("Label", "label"), ("CIDR", "cidr")],
                j,
            );
        }
        ClientCmd::TenantNetworkCreate { label, cidr } => {
            let v = s.call(
                "POST",
                "/os-tenant-networks",
                Some(json!({"network": {"label": label, "cidr": cidr}})),
            )?;
            print_object(&v["network"], j);
        }
        ClientCmd::TenantNetworkShow { network } => {
            let n = s.find_tenant_network(&network)?;
            let v = s.get(&format!("/os-tenant-networks/{}", cell(&n["id"])))?;
            print_object(&v["network"], j);
        }
        ClientCmd::TenantNetworkDelete { network } => {
            let n = s.find_tenant_network(&network)?;
            s.call(
                "DELETE",
                &format!("/os-tenant-networks/{}", cell(&n["id"])),
                None,
            )?;
            done(format_args!(
                "Deleted network {} ({})",
                cell(&n["label"]),
                cell(&n["id"])
            ));
        }
        ClientCmd::ApiGet { path } => out(&s.get(&path)?.to_string()),
        ClientCmd::VifPlug { vif, device } => {
            s.call(
                "POST",
                &format!("/novanet/v1/vifs/{vif}/plug"),
                Some(json!({ "device": device })),
            )?;
        }
    }
    Ok(())
}

const FLOATING_COLS: &[(&str, &str)] = &[
    ("Id", "id"),
    ("IP", "ip"),
    ("Server Id", "instance_id"),
    ("Fixed IP", "fixed_ip"),
    ("Pool", "pool"),
];
const GROUP_COLS: &[(&str, &str)] = &[
    ("Id", "id"),
    ("Name", "name"),
    ("Description", "description"),
];

/// The `POST /os-networks` body from the CLI's flags.
#[derive(serde::Serialize)]
struct ApiNetworkOut {
    label: String,
    cidr: Option<String>,
    cidr_v6: Option<String>,
    fixed_cidr: Option<String>,
    bridge: Option<String>,
    bridge_interface: Option<String>,
    vlan: Option<u32>,
    vlan_start: Option<u32>,
    vpn_start: Option<u32>,
    gateway: Option<String>,
    gateway_v6: Option<String>,
    dns1: Option<String>,
    dns2: Option<String>,
    multi_host: Option<bool>,
    project_id: Option<String>,
    dhcp_server: Option<String>,
    allowed_start: Option<String>,
    allowed_end: Option<String>,
    uuid: Option<String>,
    mtu: Option<u32>,
    enable_dhcp: Option<bool>,
    share_address: Option<bool>,
    priority: Option<i64>,
    num_networks: Option<u32>,
    network_size: Option<u64>,
}

impl From<novanet_core::planning::NetworkRequest> for ApiNetworkOut {
    fn from(r: novanet_core::planning::NetworkRequest) -> Self {
        ApiNetworkOut {
            label: r.label,
            cidr: r.cidr,
            cidr_v6: r.cidr_v6,
            fixed_cidr: r.fixed_cidr,
            bridge: r.bridge,
            bridge_interface: r.bridge_interface,
            vlan: r.vlan,
            vlan_start: r.vlan_start,
            vpn_start: r.vpn_start,
            gateway: r.gateway,
            gateway_v6: r.gateway_v6,
            dns1: r.dns1,
            dns2: r.dns2,
            multi_host: r.multi_host,
            project_id: r.project_id,
            dhcp_server: r.dhcp_server,
            allowed_start: r.allowed_start,
            allowed_end: r.allowed_end,
            uuid: r.uuid,
            mtu: r.mtu,
            enable_dhcp: r.enable_dhcp,
            share_address: r.share_address,
            priority: r.priority,
            num_networks: r.num_networks,
            network_size: r.network_size,
        }
    }
}
