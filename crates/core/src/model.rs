//! The records novanet keeps, as plain data. Addresses are kept as text in the records (as
//! nova's database did) and parsed where arithmetic is needed.

use serde::{Deserialize, Serialize};

use crate::net::Ipv4Cidr;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// Store row id; 0 until stored.
    pub id: i64,
    pub uuid: String,
    pub label: String,
    pub cidr: Option<String>,
    pub cidr_v6: Option<String>,
    pub netmask: Option<String>,
    pub netmask_v6: Option<String>,
    pub gateway: Option<String>,
    pub gateway_v6: Option<String>,
    pub broadcast: Option<String>,
    pub dns1: Option<String>,
    pub dns2: Option<String>,
    pub bridge: Option<String>,
    pub bridge_interface: Option<String>,
    pub vlan: Option<u32>,
    pub vpn_public_address: Option<String>,
    pub vpn_public_port: Option<u32>,
    pub vpn_private_address: Option<String>,
    pub dhcp_start: Option<String>,
    pub dhcp_server: Option<String>,
    pub project_id: Option<String>,
    pub host: Option<String>,
    pub multi_host: bool,
    pub injected: bool,
    pub mtu: Option<u32>,
    pub enable_dhcp: bool,
    pub share_address: bool,
    pub priority: Option<i64>,
}

impl Network {
    pub fn cidr_v4(&self) -> Option<Ipv4Cidr> {
        self.cidr.as_deref().and_then(|c| c.parse().ok())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FixedIp {
    pub id: i64,
    pub network_id: i64,
    pub address: String,
    pub allocated: bool,
    pub leased: bool,
    pub reserved: bool,
    pub instance_uuid: Option<String>,
    pub vif_id: Option<i64>,
    pub host: Option<String>,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vif {
    pub id: i64,
    pub uuid: String,
    pub mac: String,
    pub network_id: i64,
    pub instance_uuid: String,
}

/// What a caller asks for when booting an instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    pub host: Option<String>,
    pub availability_zone: Option<String>,
    pub key_name: Option<String>,
    pub key_data: Option<String>,
    pub user_data: Option<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
    pub security_groups: Vec<String>,
    pub flavor_id: Option<String>,
    pub image_id: Option<String>,
    /// Requested networks: (network uuid, optional fixed address). Empty: nova's default set.
    pub networks: Vec<RequestedNetwork>,
    /// Nova's accessIPv4/accessIPv6: addresses the user says the server is reached at.
    #[serde(default)]
    pub access_ip_v4: Option<String>,
    #[serde(default)]
    pub access_ip_v6: Option<String>,
    /// Free text (microversion 2.19).
    #[serde(default)]
    pub description: Option<String>,
    /// Server tags (2.26).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The project's cloudpipe VPN instance: it may be given its network's reserved VPN
    /// address. Only cloudpipe sets it, never a request body.
    #[serde(default)]
    pub vpn: bool,
}

/// A change to an instance's record (rename, access addresses, metadata, tags); `None`
/// leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InstanceUpdate {
    pub name: Option<String>,
    pub access_ip_v4: Option<Option<String>>,
    pub access_ip_v6: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    pub tags: Option<Vec<String>>,
    pub locked_by: Option<Option<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestedNetwork {
    pub uuid: String,
    pub fixed_ip: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Store row id, the `%08x` of the EC2 `i-` id and the firewall chain number.
    pub id: i64,
    pub uuid: String,
    pub hostname: String,
    pub launch_index: u32,
    pub reservation_id: String,
    pub created_at: i64,
    /// Set once by the guest through the metadata service (`password`).
    #[serde(default)]
    pub password: Option<String>,
    /// Last change of the record (0: never changed since created).
    #[serde(default)]
    pub updated_at: i64,
    /// What its hypervisor should do and what it last reported.
    #[serde(default)]
    pub power: Power,
    /// Who locked it (`os-lock`): `owner` or `admin`. A locked server's lifecycle actions
    /// are an admin's only, as in nova.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<String>,
    /// What was asked of it (`os-instance-actions`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<InstanceAction>,
    #[serde(flatten)]
    pub spec: InstanceSpec,
}

/// One request on a server (`create`, `reboot`, `stop`, `start`, `lock`, `unlock`), as
/// nova's `os-instance-actions` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceAction {
    pub action: String,
    pub request_id: String,
    pub user_id: String,
    pub project_id: String,
    pub start_time: i64,
}

/// The actions an instance keeps: the oldest go first (nova kept every one, in a table).
pub const INSTANCE_ACTIONS_KEPT: usize = 100;

/// A lifecycle action on a server (`os-start`, `os-stop`, `reboot`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    #[default]
    Start,
    Stop,
    Reboot,
}

/// What a hypervisor driver found a VM doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerObserved {
    Active,
    Shutoff,
    Error,
}

/// An instance's power: the last action asked (numbered, so that a driver acts on each
/// once) and the last report of its host's hypervisor driver.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Power {
    /// Bumped by every action; 0: none since boot.
    #[serde(default)]
    pub action_id: u32,
    #[serde(default)]
    pub action: PowerAction,
    /// The last action the driver carried out.
    #[serde(default)]
    pub done_id: u32,
    /// None until a driver reports: a host without one (`compute_driver = none`) keeps
    /// records only, whose state follows the actions.
    #[serde(default)]
    pub observed: Option<PowerObserved>,
    /// The hypervisor's reason when it could not run the VM (nova's `fault`).
    #[serde(default)]
    pub fault: Option<String>,
}

/// The API's view of a server's state: (status, vm_state, power_state, task_state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerState {
    pub status: &'static str,
    pub vm_state: &'static str,
    /// nova's numbers: 1 running, 4 shutdown.
    pub power_state: u8,
    pub task_state: Option<&'static str>,
}

impl Power {
    /// A new action, for the driver to carry out once.
    pub fn request(&mut self, action: PowerAction) {
        self.action_id += 1;
        self.action = action;
    }

    /// Takes a driver's report; true when the record changed.
    pub fn take_report(&mut self, r: &PowerReport) -> bool {
        let before = self.clone();
        self.observed = Some(r.state);
        self.fault = (r.state == PowerObserved::Error).then(|| r.fault.clone().unwrap_or_default());
        // A report never takes back an action asked after it was made.
        self.done_id = r.done_id.min(self.action_id).max(self.done_id);
        *self != before
    }

    /// Whether the last action still waits for the driver.
    pub fn pending(&self) -> bool {
        self.observed.is_some() && self.done_id < self.action_id
    }

    /// The state nova would show: the driver's report, with the action under way as the
    /// task; without a driver, the last action's outcome.
    pub fn state(&self) -> ServerState {
        let running = ServerState {
            status: "ACTIVE",
            vm_state: "active",
            power_state: 1,
            task_state: None,
        };
        let stopped = ServerState {
            status: "SHUTOFF",
            vm_state: "stopped",
            power_state: 4,
            task_state: None,
        };
        let now = match self.observed {
            None if self.action == PowerAction::Stop => stopped,
            None => running,
            Some(PowerObserved::Active) => running,
            Some(PowerObserved::Shutoff) => stopped,
            Some(PowerObserved::Error) => {
                return ServerState {
                    status: "ERROR",
                    vm_state: "error",
                    power_state: 0,
                    task_state: None,
                }
            }
        };
        if !self.pending() {
            return now;
        }
        match self.action {
            PowerAction::Stop => ServerState {
                task_state: Some("powering-off"),
                ..now
            },
            PowerAction::Start => ServerState {
                task_state: Some("powering-on"),
                ..now
            },
            PowerAction::Reboot => ServerState {
                status: "HARD_REBOOT",
                task_state: Some("rebooting_hard"),
                ..now
            },
        }
    }
}

/// A hypervisor driver's report on one of its host's instances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerReport {
    pub uuid: String,
    pub state: PowerObserved,
    #[serde(default)]
    pub fault: Option<String>,
    /// The last action carried out.
    #[serde(default)]
    pub done_id: u32,
    /// The tail of the VM's serial console, when it changed since the last report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloatingIp {
    pub id: i64,
    pub address: String,
    pub pool: String,
    pub interface: String,
    pub project_id: Option<String>,
    pub fixed_ip: Option<String>,
    pub instance_uuid: Option<String>,
    pub host: Option<String>,
    pub auto_assigned: bool,
}

/// An instance's address on one network, as the API and the host plan show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceAddress {
    pub network_uuid: String,
    pub network_label: String,
    pub mac: String,
    pub vif_uuid: String,
    pub address: String,
    pub floating: Vec<String>,
}

/// An address bound to a VIF, as the DHCP server and the firewall need it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundAddress {
    pub network_id: i64,
    pub address: String,
    pub mac: String,
    pub vif_uuid: String,
    pub instance_uuid: String,
    pub instance_id: i64,
    pub hostname: String,
    pub instance_host: Option<String>,
    /// False once the instance is gone but the lease is not yet released.
    pub allocated: bool,
    pub leased: bool,
    /// The host-side device the hypervisor plugged the VIF into (e.g. `vnet0`), once known.
    #[serde(default)]
    pub device: Option<String>,
    /// Security groups of the instance.
    #[serde(default)]
    pub groups: Vec<i64>,
    /// The instance's first VIF (lowest id): the only one whose DHCP answer carries a
    /// default route (nova's `use_single_default_gateway`).
    #[serde(default = "yes")]
    pub default_route: bool,
    /// The instance's project: nova's `account_identifier` IPv6 address is computed from it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project_id: String,
}

fn yes() -> bool {
    true
}

/// nova's hostname rule: lowercase, `[a-z0-9-]` only, at most 63 characters
/// (LP #1238910 shortens longer ones to `name[:2] + '-' + name[-60:]`).
pub fn hostname_for(display_name: &str) -> String {
    let mut h: String = display_name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    h = h.trim_matches('-').to_string();
    if h.is_empty() {
        h = "server".into();
    }
    if h.len() > 63 {
        h = format!("{}-{}", &h[..2], &h[h.len() - 60..]);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert_eq!(hostname_for("cirros"), "cirros");
        assert_eq!(hostname_for("My VM_1"), "my-vm-1");
        let long = "a".repeat(70);
        assert_eq!(hostname_for(&long).len(), 63);
    }
}
