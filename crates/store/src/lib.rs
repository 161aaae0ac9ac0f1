//! The state store: one trait, engines behind it. SQLite (a WAL file under the data
//! directory) is the embedded default. Every operation that changes state is one transaction:
//! two callers can never get the same address, and a crash leaves either all of an operation
//! or none of it.

use novanet_core::config::Config;
use novanet_core::model::{
    FixedIp, FloatingIp, Instance, InstanceAddress, InstanceSpec, InstanceUpdate, Network,
};
use novanet_core::planning::NetworkRequest;
use novanet_core::Result;
use serde::{Deserialize, Serialize};

mod sqlite;
pub use novanet_core::model::BoundAddress;
pub use novanet_core::secgroup::NewRule;
pub use sqlite::SqliteStore;

/// A fixed IP with what its owner looks like, for `fixed-ip-get` and `manage fixed list`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FixedIpInfo {
    pub fixed: FixedIp,
    pub network_cidr: String,
    pub network_label: String,
    pub hostname: Option<String>,
    pub instance_host: Option<String>,
}

/// Partial update of a network: `Some(None)` clears a field.
#[derive(Clone, Debug, Default)]
pub struct NetworkUpdate {
    pub project_id: Option<Option<String>>,
    pub host: Option<Option<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: i64,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub rules: Vec<SecurityGroupRule>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroupRule {
    pub id: i64,
    pub parent_group_id: i64,
    pub protocol: Option<String>,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub cidr: Option<String>,
    pub group_id: Option<i64>,
    /// Name and project of the source group, when `group_id` is set.
    pub group_name: Option<String>,
    pub group_project: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub user: User,
    pub project: Project,
    pub roles: Vec<String>,
    pub issued_at: i64,
    pub expires_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Keypair {
    /// Row id (Nova shows it from `GET /os-keypairs/{name}`); 0 until stored.
    #[serde(default)]
    pub id: i64,
    pub name: String,
    pub user_id: String,
    pub public_key: String,
    pub fingerprint: String,
    /// `ssh` (or `x509`), as Nova's `type` (2.2).
    #[serde(default = "ssh")]
    pub kind: String,
    #[serde(default)]
    pub created_at: i64,
}

fn ssh() -> String {
    "ssh".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub host: String,
    pub network_host: bool,
    pub last_seen: i64,
    /// IPv4 networks on the host's own interfaces (its agent's report), which no project
    /// network may overlap.
    #[serde(default)]
    pub networks: Vec<String>,
    /// The host's own options (interfaces, addresses) from its agent's configuration.
    #[serde(default)]
    pub options: novanet_core::config::HostOptions,
}

/// An agent's heartbeat.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceReport {
    pub host: String,
    pub network_host: bool,
    pub networks: Vec<String>,
    pub options: novanet_core::config::HostOptions,
}

/// Called after a commit that touched some host's plan, with the new generation.
pub type CommitHook = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// What a scrub removed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScrubReport {
    pub networks: usize,
    pub security_groups: usize,
}

/// How much of a host's plan a change may have changed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeScope {
    /// Anything.
    Plan,
    /// Only the DHCP entry of this address, on the host serving its network.
    Address { network_id: i64, address: String },
    /// Only this instance of the host (its ports and rules), and whether the host still
    /// has instances on the networks it was on.
    Instance { uuid: String, networks: Vec<i64> },
    /// Only this floating IP's binding and NAT on the host.
    Floating { address: String },
}

impl ChangeScope {
    /// The change log's text for it.
    pub fn encode(&self) -> String {
        match self {
            ChangeScope::Plan => String::new(),
            ChangeScope::Address {
                network_id,
                address,
            } => format!("a:{network_id}:{address}"),
            ChangeScope::Floating { address } => format!("f:{address}"),
            ChangeScope::Instance { uuid, networks } if networks.is_empty() => format!("i:{uuid}"),
            ChangeScope::Instance { uuid, networks } => {
                let n: Vec<String> = networks.iter().map(i64::to_string).collect();
                format!("i:{uuid}:{}", n.join(","))
            }
        }
    }

    /// Reads the change log's text; anything unknown is the whole plan.
    pub fn decode(what: &str) -> ChangeScope {
        let parsed = if let Some(rest) = what.strip_prefix("a:") {
            rest.split_once(':').and_then(|(n, a)| {
                Some(ChangeScope::Address {
                    network_id: n.parse().ok()?,
                    address: a.to_string(),
                })
            })
        } else if let Some(address) = what.strip_prefix("f:") {
            Some(ChangeScope::Floating {
                address: address.to_string(),
            })
        } else if let Some(rest) = what.strip_prefix("i:") {
            let (uuid, nets) = rest.split_once(':').unwrap_or((rest, ""));
            let networks: Option<Vec<i64>> = nets
                .split(',')
                .filter(|n| !n.is_empty())
                .map(|n| n.parse().ok())
                .collect();
            networks.map(|networks| ChangeScope::Instance {
                uuid: uuid.to_string(),
                networks,
            })
        } else {
            None
        };
        parsed.unwrap_or(ChangeScope::Plan)
    }
}

/// One row of the change log: a committed write that may change `host`'s plan, `"*"` for
/// every host's (provider rules, a scrub).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostChange {
    pub generation: u64,
    pub host: String,
    pub scope: ChangeScope,
}

/// What one instance's entry in its host's plan is computed from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InstanceInputs {
    /// The networks of its bound addresses, by id.
    pub networks: Vec<Network>,
    /// Its bound addresses, ordered as [`Store::bound_addresses`] orders them.
    pub bound: Vec<BoundAddress>,
    /// The rules of its groups.
    pub rules: Vec<SecurityGroupRule>,
}

/// The change log after a cursor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostChanges {
    /// The store's generation when read: the next cursor.
    pub upto: u64,
    /// False when rows after the cursor were already pruned: the reader must recompute
    /// every plan it keeps.
    pub complete: bool,
    /// Oldest first.
    pub changes: Vec<HostChange>,
}

/// What one host's plan is computed from: only what that host renders.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostInputs {
    /// The host's generation, read before the rest.
    pub generation: u64,
    /// Networks the host serves or has instances on, by id.
    pub networks: Vec<Network>,
    /// Its instances' bound addresses, every bound address of the single-host networks it
    /// serves, and the addresses of the members of the groups its instances' rules name;
    /// ordered as [`Store::bound_addresses`] orders them (network, then address).
    pub bound: Vec<BoundAddress>,
    /// Floating IPs bound on the host.
    pub floating: Vec<FloatingIp>,
    /// The rules of its instances' groups.
    pub rules: Vec<SecurityGroupRule>,
    pub provider_rules: Vec<SecurityGroupRule>,
    pub options: novanet_core::config::HostOptions,
    /// For each of its VLAN networks, the `my_ip` of every host that has the network.
    pub segment_peers: std::collections::BTreeMap<i64, Vec<String>>,
}

/// Everything novanet stores. Methods are domain operations, not SQL, so that another engine
/// (PostgreSQL for several servers) implements the same contract.
pub trait Store: Send + Sync {
    /// A number that grows with every committed change.
    fn generation(&self) -> Result<u64>;
    /// The generation of the last change that touched this host's plan (agents watch it).
    fn host_generation(&self, host: &str) -> Result<u64>;
    /// The change log after `after` (a generation).
    fn host_changes(&self, after: u64) -> Result<HostChanges>;
    /// What `host`'s plan is computed from, read with queries scoped to that host.
    fn host_inputs(&self, host: &str) -> Result<HostInputs>;
    /// One fixed IP's bound address (None when no VIF holds it).
    fn bound_address(&self, address: &str) -> Result<Option<BoundAddress>>;
    /// What one instance's entry in its host's plan is computed from.
    fn instance_inputs(&self, uuid: &str) -> Result<InstanceInputs>;
    /// Whether the host has an instance with an address on the network (then it has the
    /// network's bridge).
    fn host_on_network(&self, host: &str, network_id: i64) -> Result<bool>;
    fn network_by_id(&self, id: i64) -> Result<Option<Network>>;
    /// How many instances each host has (hosts without any may be missing).
    fn instance_counts(&self) -> Result<Vec<(String, u64)>>;
    /// Calls `hook` after every commit of this process that touched a host's plan (the hook
    /// may read, never write).
    fn on_commit(&self, hook: CommitHook);

    // Networks
    fn create_networks(
        &self,
        req: &NetworkRequest,
        cfg: &Config,
    ) -> Result<(Vec<Network>, Vec<String>)>;
    fn networks(&self) -> Result<Vec<Network>>;
    /// By uuid, cidr or label.
    fn network(&self, key: &str) -> Result<Network>;
    fn delete_network(&self, key: &str, require_disassociated: bool) -> Result<Network>;
    fn update_network(&self, key: &str, update: &NetworkUpdate) -> Result<Network>;
    /// VLAN manager: give a project a network (a named one, or the first free one).
    fn associate_project_network(&self, project_id: &str, uuid: Option<&str>) -> Result<Network>;
    /// Single-host networks without a host are claimed by the first network host.
    fn claim_networks(&self, host: &str) -> Result<usize>;

    // Fixed IPs
    fn fixed_ip(&self, address: &str) -> Result<FixedIpInfo>;
    fn fixed_ips(&self, host: Option<&str>) -> Result<Vec<FixedIpInfo>>;
    fn set_fixed_reserved(&self, address: &str, reserved: bool) -> Result<()>;
    /// dnsmasq `add`/`old`: the lease is held.
    fn lease_fixed_ip(&self, address: &str, mac: Option<&str>) -> Result<bool>;
    /// dnsmasq `del`: the lease ended; frees the address if its instance is gone.
    fn release_fixed_ip(&self, address: &str, mac: Option<&str>, now: i64) -> Result<bool>;
    /// Frees addresses deallocated more than `timeout` seconds ago whose release never came.
    fn disassociate_stale_fixed_ips(&self, now: i64, timeout: i64) -> Result<usize>;
    /// The hypervisor reports where it plugged a VIF (its host-side device).
    fn set_vif_device(&self, vif_uuid: &str, device: &str) -> Result<()>;
    /// Addresses bound to VIFs on these networks (allocated, or awaiting their release).
    fn bound_addresses(&self, network_ids: &[i64]) -> Result<Vec<BoundAddress>>;

    // Instances
    fn create_instance(&self, spec: &InstanceSpec, cfg: &Config) -> Result<Instance>;
    fn delete_instance(&self, uuid: &str, cfg: &Config, now: i64) -> Result<Instance>;
    fn instance(&self, uuid: &str) -> Result<Instance>;
    fn instances(&self, project_id: Option<&str>) -> Result<Vec<Instance>>;
    fn instance_addresses(&self, uuid: &str) -> Result<Vec<InstanceAddress>>;
    fn instance_by_fixed_ip(&self, address: &str) -> Result<Option<Instance>>;
    fn add_fixed_ip(&self, uuid: &str, network_key: &str, cfg: &Config) -> Result<InstanceAddress>;
    fn remove_fixed_ip(&self, uuid: &str, address: &str, now: i64) -> Result<()>;
    /// Changes what the user may change of an instance's record.
    fn update_instance(&self, uuid: &str, update: &InstanceUpdate, now: i64) -> Result<Instance>;
    /// Stores the instance's password once; false when one is already set.
    fn set_instance_password(&self, uuid: &str, password: &str) -> Result<bool>;

    // Floating IPs
    fn create_floating_ips(
        &self,
        pool: &str,
        interface: &str,
        addresses: &[std::net::Ipv4Addr],
    ) -> Result<usize>;
    fn delete_floating_ips(&self, addresses: &[std::net::Ipv4Addr]) -> Result<usize>;
    fn floating_ips(&self, project_id: Option<&str>) -> Result<Vec<FloatingIp>>;
    fn floating_ip(&self, key: &str) -> Result<FloatingIp>;
    fn floating_pools(&self) -> Result<Vec<String>>;
    fn allocate_floating_ip(&self, project_id: &str, pool: &str, quota: i64) -> Result<FloatingIp>;
    /// Releases (disassociating first); `project_id` None acts as admin.
    fn release_floating_ip(&self, address: &str, project_id: Option<&str>) -> Result<()>;
    fn associate_floating_ip(
        &self,
        address: &str,
        instance_uuid: &str,
        fixed_address: Option<&str>,
        project_id: Option<&str>,
    ) -> Result<FloatingIp>;
    fn disassociate_floating_ip(
        &self,
        address: &str,
        instance_uuid: Option<&str>,
        project_id: Option<&str>,
    ) -> Result<()>;

    // Security groups
    fn security_groups(&self, project_id: Option<&str>) -> Result<Vec<SecurityGroup>>;
    fn security_group(&self, id: i64) -> Result<SecurityGroup>;
    /// The project's `default` group, made on first use with copies of the default rules.
    fn ensure_default_group(&self, project_id: &str) -> Result<SecurityGroup>;
    fn create_security_group(
        &self,
        project_id: &str,
        name: &str,
        description: &str,
        quota: i64,
    ) -> Result<SecurityGroup>;
    fn delete_security_group(&self, id: i64) -> Result<()>;
    /// Renames a group and sets its description (its rules and members stay).
    fn update_security_group(
        &self,
        id: i64,
        name: &str,
        description: &str,
    ) -> Result<SecurityGroup>;
    fn add_security_group_rule(
        &self,
        group_id: i64,
        rule: &NewRule,
        quota: i64,
    ) -> Result<SecurityGroupRule>;
    fn delete_security_group_rule(&self, id: i64) -> Result<SecurityGroupRule>;
    fn default_rules(&self) -> Result<Vec<SecurityGroupRule>>;
    fn add_default_rule(&self, rule: &NewRule) -> Result<SecurityGroupRule>;
    fn delete_default_rule(&self, id: i64) -> Result<()>;
    /// The admin's provider rules, which drop what they match for every instance.
    fn provider_rules(&self) -> Result<Vec<SecurityGroupRule>>;
    fn add_provider_rule(&self, rule: &NewRule) -> Result<SecurityGroupRule>;
    fn delete_provider_rule(&self, id: i64) -> Result<()>;
    fn instance_security_groups(&self, uuid: &str) -> Result<Vec<SecurityGroup>>;
    /// Every (instance uuid, group id) membership.
    fn security_group_memberships(&self) -> Result<Vec<(String, i64)>>;
    fn add_instance_security_group(&self, uuid: &str, group_id: i64) -> Result<()>;
    fn remove_instance_security_group(&self, uuid: &str, group_id: i64) -> Result<()>;
    /// `nova-manage project scrub`: disassociate the project's networks, drop its groups.
    fn scrub_project(&self, project_id: &str) -> Result<ScrubReport>;

    // Identity
    fn create_project(&self, name: &str) -> Result<Project>;
    fn project(&self, key: &str) -> Result<Project>;
    fn projects(&self) -> Result<Vec<Project>>;
    fn create_user(&self, name: &str, password: &str) -> Result<User>;
    fn user(&self, name: &str) -> Result<User>;
    fn assign_role(&self, user_id: &str, project_id: &str, role: &str) -> Result<()>;
    fn users(&self) -> Result<Vec<User>>;
    /// Renames a project.
    fn rename_project(&self, id: &str, name: &str) -> Result<Project>;
    /// Deletes a project, its role assignments and its tokens (what it owns in compute
    /// stays until `project scrub`, as Keystone never told Nova).
    fn delete_project(&self, id: &str) -> Result<()>;
    /// Changes a user's name and/or password; a new password ends the user's tokens.
    fn update_user(&self, id: &str, name: Option<&str>, password: Option<&str>) -> Result<User>;
    /// Deletes a user with its role assignments, tokens and key pairs.
    fn delete_user(&self, id: &str) -> Result<()>;
    /// (user id, project id, role) for every assignment matching the filters.
    fn role_assignments(
        &self,
        user_id: Option<&str>,
        project_id: Option<&str>,
    ) -> Result<Vec<(String, String, String)>>;
    /// Takes a role away; live tokens lose it at once (roles are read at every check).
    fn remove_role(&self, user_id: &str, project_id: &str, role: &str) -> Result<()>;
    /// Checks a password and issues a token for the project, or says which part failed.
    fn issue_token(
        &self,
        user: &str,
        password: &str,
        project: &str,
        now: i64,
        ttl: i64,
    ) -> Result<Token>;
    fn token(&self, id: &str, now: i64) -> Result<Token>;
    fn revoke_token(&self, id: &str) -> Result<()>;

    // Keypairs, hosts
    fn create_keypair(&self, kp: &Keypair) -> Result<()>;
    fn keypairs(&self, user_id: &str) -> Result<Vec<Keypair>>;
    fn keypair(&self, user_id: &str, name: &str) -> Result<Keypair>;
    fn delete_keypair(&self, user_id: &str, name: &str) -> Result<()>;
    fn report_service(&self, report: &ServiceReport, now: i64) -> Result<()>;
    fn services(&self) -> Result<Vec<Service>>;

    // Quotas
    /// The project's overrides (resource -> limit); defaults come from the configuration.
    fn quota_overrides(&self, project_id: &str) -> Result<Vec<(String, i64)>>;
    fn set_quota(&self, project_id: &str, resource: &str, limit: i64) -> Result<()>;
    /// Back to the defaults.
    fn delete_quotas(&self, project_id: &str) -> Result<()>;
}
