//! The contract every engine implements, one trait per noun. Methods are domain
//! operations, not SQL, so that another engine (PostgreSQL for several servers) implements
//! the same contract and passes the same conformance suite (`conformance`).
//!
//! Callers hold `Arc<dyn Store>`: every method of every trait below is callable on it
//! without importing anything. Code holding a concrete engine (`SqliteStore`) brings the
//! traits into scope with `use novanet_store::prelude::*;`.

use novanet_core::config::Config;
use novanet_core::model::{
    BoundAddress, FloatingIp, Instance, InstanceAction, InstanceAddress, InstanceSpec,
    InstanceUpdate, Network, PowerAction, PowerReport,
};
use novanet_core::planning::NetworkRequest;
use novanet_core::secgroup::NewRule;
use novanet_core::Result;

use crate::{
    CommitHook, FixedIpInfo, HostChanges, HostInputs, InstanceInputs, Keypair, NetworkUpdate,
    Project, ScrubReport, SecurityGroup, SecurityGroupRule, Service, ServiceReport, Token, User,
};

/// Everything novanet stores: an engine implements every noun's trait and is a `Store`.
pub trait Store:
    PlanStore
    + NetworkStore
    + FixedIpStore
    + InstanceStore
    + FloatingIpStore
    + SecurityGroupStore
    + IdentityStore
    + KeypairStore
    + ServiceStore
    + QuotaStore
    + Send
    + Sync
{
}

impl<T> Store for T where
    T: PlanStore
        + NetworkStore
        + FixedIpStore
        + InstanceStore
        + FloatingIpStore
        + SecurityGroupStore
        + IdentityStore
        + KeypairStore
        + ServiceStore
        + QuotaStore
        + Send
        + Sync
{
}

/// The generations, the change log and the reads scoped to one host or instance that
/// hosts' plans are computed from.
pub trait PlanStore {
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
    /// Calls `hook` after every commit of this process that touched a host's plan (the hook
    /// may read, never write).
    fn on_commit(&self, hook: CommitHook);
}

/// Networks: created with their fixed IPs, associated with projects and hosts.
pub trait NetworkStore {
    fn create_networks(
        &self,
        req: &NetworkRequest,
        cfg: &Config,
    ) -> Result<(Vec<Network>, Vec<String>)>;
    fn networks(&self) -> Result<Vec<Network>>;
    /// By uuid, cidr or label.
    fn network(&self, key: &str) -> Result<Network>;
    fn network_by_id(&self, id: i64) -> Result<Option<Network>>;
    fn delete_network(&self, key: &str, require_disassociated: bool) -> Result<Network>;
    fn update_network(&self, key: &str, update: &NetworkUpdate) -> Result<Network>;
    /// VLAN manager: give a project a network (a named one, or the first free one).
    fn associate_project_network(&self, project_id: &str, uuid: Option<&str>) -> Result<Network>;
    /// Single-host networks without a host are claimed by the first network host.
    fn claim_networks(&self, host: &str) -> Result<usize>;
}

/// Fixed IPs: reservation, DHCP leases and releases, and the addresses bound to VIFs.
pub trait FixedIpStore {
    fn fixed_ip(&self, address: &str) -> Result<FixedIpInfo>;
    fn fixed_ips(&self, host: Option<&str>) -> Result<Vec<FixedIpInfo>>;
    fn set_fixed_reserved(&self, address: &str, reserved: bool) -> Result<()>;
    /// dnsmasq `add`/`old`: the lease is held.
    fn lease_fixed_ip(&self, address: &str, mac: Option<&str>) -> Result<bool>;
    /// dnsmasq `del`: the lease ended; frees the address if its instance is gone.
    fn release_fixed_ip(&self, address: &str, mac: Option<&str>, now: i64) -> Result<bool>;
    /// Frees addresses deallocated more than `timeout` seconds ago whose release never came.
    fn disassociate_stale_fixed_ips(&self, now: i64, timeout: i64) -> Result<usize>;
    /// Addresses bound to VIFs on these networks (allocated, or awaiting their release).
    fn bound_addresses(&self, network_ids: &[i64]) -> Result<Vec<BoundAddress>>;
    /// The address `host` serves a multi-host network from (its own instances' gateway and
    /// DHCP server, nova's one fixed IP per host), taken from the pool on first use; booting
    /// on a host reserves it too. A network that is not multi-host, or whose address is
    /// shared (`share_address`), has none: an error naming the field.
    fn reserve_host_address(&self, network_key: &str, host: &str) -> Result<String>;
    /// Gives `host`'s address in the network back to the pool (None: it had none).
    fn release_host_address(&self, network_key: &str, host: &str) -> Result<Option<String>>;
}

/// Instances with their VIFs and the fixed IPs allocated to them.
pub trait InstanceStore {
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
    /// The hypervisor reports where it plugged a VIF (its host-side device).
    fn set_vif_device(&self, vif_uuid: &str, device: &str) -> Result<()>;
    /// Asks the instance's hypervisor driver for a lifecycle action; the driver reports
    /// when it carried it out.
    fn request_power_action(&self, uuid: &str, action: PowerAction, now: i64) -> Result<Instance>;
    /// A host's hypervisor driver reports on its VMs (state, fault, console tail); reports
    /// on instances not on `host` are ignored. How many records changed.
    fn report_power(&self, host: &str, reports: &[PowerReport]) -> Result<usize>;
    /// The console tail the instance's driver last reported.
    fn console_output(&self, uuid: &str) -> Result<Option<String>>;
    /// Keeps a request made of the instance (the last `INSTANCE_ACTIONS_KEPT`); no new
    /// generation: no plan or guest reads them.
    fn record_instance_action(&self, uuid: &str, action: &InstanceAction) -> Result<()>;
    /// How many instances each host has (hosts without any may be missing).
    fn instance_counts(&self) -> Result<Vec<(String, u64)>>;
    /// Every violated invariant of instances, VIFs and fixed IPs, and of the engine's own
    /// storage (empty when consistent). For diagnostics and tests.
    fn check_consistency(&self) -> Result<Vec<String>>;
}

/// Floating IPs: pools, allocation to projects, association with instances.
pub trait FloatingIpStore {
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
}

/// Security groups, their rules and members, the default and provider rules.
pub trait SecurityGroupStore {
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
}

/// Keystone's projects, users, role assignments and tokens.
pub trait IdentityStore {
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
}

/// Users' SSH key pairs.
pub trait KeypairStore {
    fn create_keypair(&self, kp: &Keypair) -> Result<()>;
    fn keypairs(&self, user_id: &str) -> Result<Vec<Keypair>>;
    fn keypair(&self, user_id: &str, name: &str) -> Result<Keypair>;
    fn delete_keypair(&self, user_id: &str, name: &str) -> Result<()>;
}

/// Hosts' agents, as their heartbeats report them.
pub trait ServiceStore {
    fn report_service(&self, report: &ServiceReport, now: i64) -> Result<()>;
    fn services(&self) -> Result<Vec<Service>>;
    /// Keeps a host's latest diagnosis (its agent's checks, as JSON text), beside its
    /// heartbeat; changes no plan.
    fn set_diagnosis(&self, host: &str, report: &str, now: i64) -> Result<()>;
    /// A host's latest diagnosis and when it came; None if its agent never sent one.
    fn diagnosis(&self, host: &str) -> Result<Option<(String, i64)>>;
}

/// Per-project quota overrides.
pub trait QuotaStore {
    /// The project's overrides (resource -> limit); defaults come from the configuration.
    fn quota_overrides(&self, project_id: &str) -> Result<Vec<(String, i64)>>;
    fn set_quota(&self, project_id: &str, resource: &str, limit: i64) -> Result<()>;
    /// Back to the defaults.
    fn delete_quotas(&self, project_id: &str) -> Result<()>;
}
