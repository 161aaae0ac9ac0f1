//! The state store: one contract (`Store`, a trait per noun in `contract`), engines behind
//! it. SQLite (a WAL file under the data directory, `sqlite/`) is the embedded default;
//! PostgreSQL (`postgres/`, by URL) serves several servers on one database. Every
//! operation that changes state is one transaction:
//! two callers can never get the same address, and a crash leaves either all of an operation
//! or none of it.

use novanet_core::model::{FixedIp, FloatingIp, Network};
use serde::{Deserialize, Serialize};

#[cfg(feature = "conformance")]
#[doc(hidden)]
pub mod conformance;
mod contract;
mod location;
pub mod migrate;
mod passwords;
mod postgres;
mod sqlite;
#[cfg(feature = "test-support")]
pub mod test_support;
pub mod timing;
mod touched;
pub use contract::{
    FixedIpStore, FloatingIpStore, IdentityStore, InstanceStore, KeypairStore, NetworkStore,
    PlanStore, QuotaStore, SecurityGroupStore, ServiceStore, Store,
};
pub use location::{is_postgres_url, Location, SQLITE_FILE};
pub use novanet_core::model::BoundAddress;
pub use novanet_core::secgroup::NewRule;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// The error for a host address asked of a network whose hosts have none of their own.
pub(crate) fn not_per_host(n: &Network) -> novanet_core::Error {
    novanet_core::Error::invalid(
        "network",
        format!(
            "network {} has no address per host: it is {} (only a multi_host network without \
             share_address gives each host its own gateway address)",
            n.label,
            if n.multi_host {
                "share_address"
            } else {
                "single-host"
            }
        ),
    )
}

/// The store's traits, for code that calls them on a concrete engine (`SqliteStore`):
/// `use novanet_store::prelude::*;`. Code holding `dyn Store` needs none of them.
pub mod prelude {
    pub use crate::contract::{
        FixedIpStore, FloatingIpStore, IdentityStore, InstanceStore, KeypairStore, NetworkStore,
        PlanStore, QuotaStore, SecurityGroupStore, ServiceStore, Store,
    };
}

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
    /// Where the project's cloudpipe VPN is reached from outside: `vpn_public_address` and
    /// `vpn_public_port` (nova-manage vpn change).
    pub vpn_public: Option<(String, u32)>,
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
    /// Its bound addresses, ordered as [`FixedIpStore::bound_addresses`] orders them.
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
    /// ordered as [`FixedIpStore::bound_addresses`] orders them (network, then address).
    pub bound: Vec<BoundAddress>,
    /// Floating IPs bound on the host.
    pub floating: Vec<FloatingIp>,
    /// The rules of its instances' groups.
    pub rules: Vec<SecurityGroupRule>,
    pub provider_rules: Vec<SecurityGroupRule>,
    pub options: novanet_core::config::HostOptions,
    /// For each of its VLAN networks, the `my_ip` of every host that has the network.
    pub segment_peers: std::collections::BTreeMap<i64, Vec<String>>,
    /// The host's own address in each multi-host network it has one in (by network id).
    pub host_addresses: std::collections::BTreeMap<i64, String>,
}
