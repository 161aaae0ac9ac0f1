//! The client's commands as clap parses them: nova's names and spellings (python-novaclient
//! 7.1.2's, with the seeds' aliases).

use clap::Subcommand;

use super::quotas::QuotaValues;
use super::security_groups::{AdminRuleArgs, GroupRuleArgs, SourceGroupRuleArgs};
use super::servers::BootArgs;
use crate::args::NetworkCreateArgs;

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
    Boot(BootArgs),
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
    /// Stop the server(s): their VMs are powered off, disks kept
    Stop {
        /// Name or ID of the server(s)
        #[arg(required = true)]
        servers: Vec<String>,
    },
    /// Start the stopped server(s)
    Start {
        /// Name or ID of the server(s)
        #[arg(required = true)]
        servers: Vec<String>,
    },
    /// Reboot a server (its VM is powered off and on again)
    Reboot {
        /// Name or ID of the server
        server: String,
        /// A hard reboot (also of a stopped or failed server); the default is soft
        #[arg(long)]
        hard: bool,
    },
    /// The server's serial console output, as its host last reported it
    #[command(after_help = "Example:\n  novanet console-log --length 20 cirros")]
    ConsoleLog {
        /// Name or ID of the server
        server: String,
        /// Only the last N lines
        #[arg(long, value_name = "N")]
        length: Option<u32>,
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
    /// Create an image from a file (uploaded to the image service), so that
    /// `boot --image NAME` boots it
    #[command(after_help = "Examples:\n  \
        novanet image-create cirros-0.6 --file cirros-0.6.2-x86_64-disk.img\n  \
        novanet image-create test-kernel --file vmlinuz --disk-format aki --container-format aki")]
    ImageCreate {
        /// Name of the image
        name: String,
        /// The image's data
        #[arg(long, value_name = "FILE")]
        file: String,
        /// The data's format
        #[arg(long = "disk-format", default_value = "qcow2", value_parser = ["qcow2", "raw", "aki", "ari", "ami", "iso", "vmdk", "vdi", "vhd", "vhdx"])]
        disk_format: String,
        /// The container's format
        #[arg(long = "container-format", default_value = "bare", value_parser = ["bare", "aki", "ari", "ami", "ovf", "ova"])]
        container_format: String,
        /// An image property KEY=VALUE (kernel_id, ramdisk_id, os_command_line); repeatable
        #[arg(long, value_name = "KEY=VALUE")]
        property: Vec<String>,
    },
    /// Print a list of available images to boot from
    ImageList,
    /// Delete an image (yours, or any as admin)
    ImageDelete {
        /// Name or ID of the image
        image: String,
    },
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
    /// Explain why SRC can or cannot reach DST, walked through the host plans (admin)
    ///
    /// SRC and DST: an instance's name or UUID, a fixed or floating address, an outside
    /// address, or `outside`. Without PROTO, a ping. Prints the path hop by hop and the
    /// verdict of the request and of its reply, with the rule that decides (or the rule
    /// missing); from the store and the plans, no host is touched.
    #[command(after_help = "Examples:\n  \
        novanet explain outside 68.99.26.170 tcp 22\n  \
        novanet explain vm2 cirros tcp 80\n  \
        novanet explain cirros outside")]
    Explain {
        /// Where the traffic starts
        src: String,
        /// Where it goes
        dst: String,
        /// tcp, udp or icmp
        proto: Option<String>,
        /// TCP or UDP port, or ICMP type (8, echo, by default)
        port: Option<String>,
    },
    /// Print a list of all cloudpipe instances: each VLAN project's VPN and its state
    /// (admin)
    CloudpipeList,
    /// Create a cloudpipe instance for the given project: its VPN instance on its
    /// network's VPN address (admin)
    #[command(after_help = "Example:\n  novanet cloudpipe-create demo")]
    CloudpipeCreate {
        /// ID (or name) of the project
        project: String,
    },
    /// Update the VPN IP and port of the current project's cloudpipe (admin)
    #[command(after_help = "Example:\n  novanet cloudpipe-configure 192.168.56.200 1000")]
    CloudpipeConfigure {
        /// New IP address of the project's VPN
        address: String,
        /// New port of the project's VPN
        port: String,
    },
    /// Give a user a ready OpenVPN client configuration (.ovpn) for a project's VPN: the CA,
    /// the user's certificate and key, the public address and port (admin)
    #[command(after_help = "Example:\n  novanet cloudpipe-client demo alice --output alice.ovpn")]
    CloudpipeClient {
        /// ID (or name) of the project
        project: String,
        /// The user (the certificate's name)
        user: String,
        /// Write it to this file (mode 0600) instead of standard output
        #[arg(long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// Revoke a user's VPN certificate for a project: the VPN refuses it at its next
    /// CRL fetch (admin)
    CloudpipeRevoke {
        /// ID (or name) of the project
        project: String,
        /// The user
        user: String,
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
