//! Firewall drivers: each makes netfilter hold what a host plan asks for (the gateway's
//! accepts, SNAT and its exceptions, the metadata redirect, floating IPs' NAT, instances'
//! filters, anti-spoofing) in its own way. One trait; the plan names the driver
//! (`FirewallDriver`) and `driver` builds it. Each driver renders with pure functions and
//! applies through the tools (`iptables-restore`, `nft -f`).

mod iptables;
mod nftables;
mod noop;

use std::path::Path;

pub use novanet_core::config::FirewallDriver;
use novanet_core::plan::HostPlan;

pub use iptables::Iptables;
pub use nftables::{Nftables, SecurityScripts, Update};
pub use noop::Noop;

use crate::sys::{ensure_sysctl, AgentError, Result};

/// A firewall driver.
pub trait Firewall: Send {
    /// Makes netfilter hold what `plan` asks for; idempotent, and cheap when nothing
    /// changed. Keeps going after a failed step.
    fn apply(&mut self, plan: &HostPlan) -> Applied;
    /// Makes the next `apply` read the kernel again instead of trusting what this process
    /// applied (the periodic resync: somebody may have flushed a chain or removed a table).
    fn resync(&mut self);
}

/// What an `apply` did.
#[derive(Debug, Default)]
pub struct Applied {
    /// What changed, a short phrase each (`iptables`, `anti-spoofing`, `security (full)`).
    pub changed: Vec<String>,
    /// Every step that failed; the steps after it still ran.
    pub errors: Vec<AgentError>,
}

impl Applied {
    fn step<T>(&mut self, result: Result<T>, changed: impl FnOnce(T) -> Option<String>) {
        match result {
            Ok(v) => self.changed.extend(changed(v)),
            Err(e) => self.errors.push(e),
        }
    }
}

/// The driver `kind` names, keeping its state under `state_dir`.
pub fn driver(kind: FirewallDriver, state_dir: &Path) -> Box<dyn Firewall> {
    match kind {
        FirewallDriver::Iptables => Box::new(Iptables::new(state_dir)),
        FirewallDriver::Nftables => Box::new(Nftables::new(state_dir)),
        FirewallDriver::Noop => Box::new(Noop::new(state_dir)),
    }
}

/// Everything driver `kind` would write for `plan`, as one text; no I/O.
pub fn render(kind: FirewallDriver, plan: &HostPlan) -> String {
    match kind {
        FirewallDriver::Iptables => iptables::render(plan, &plan.security),
        FirewallDriver::Nftables => nftables::render(plan),
        FirewallDriver::Noop => noop::render(plan),
    }
}

/// Bridged frames must pass netfilter to reach the instances' filters (settable per
/// network namespace on the testbed's kernel).
fn bridge_filtering() -> Result<()> {
    ensure_sysctl("net/bridge/bridge-nf-call-iptables", "1")
}

/// Drops repeated lines, keeping the first of each in place: two ports on one network (a
/// second fixed IP there) would otherwise write its accepts twice; nova's sets never did.
fn dedup_in_order(lines: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    lines.retain(|l| seen.insert(l.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use novanet_core::config::Config;
    use novanet_core::firewall::{Chain, Match, Ruleset, Target};
    use novanet_core::model::{FloatingIp, Network};
    use novanet_core::plan::{host_plan, Snapshot};
    use novanet_core::planning::{plan_networks, NetworkRequest};

    /// Seed 004's controller: vmnet on br100, two floating IPs bound to instances.
    fn seed_plan() -> HostPlan {
        let cfg = Config {
            flat_interface: Some("eth2".into()),
            public_interface: "eth1".into(),
            my_ip: "192.168.56.200".into(),
            ..Config::default()
        };
        let req = NetworkRequest {
            label: "vmnet".into(),
            cidr: Some("10.0.0.0/24".into()),
            bridge: Some("br100".into()),
            ..Default::default()
        };
        let mut n: Network = plan_networks(&req, cfg.network_manager, &cfg, &[], || "u".into())
            .unwrap()
            .networks
            .remove(0)
            .network;
        n.id = 1;
        n.host = Some("controller".into());
        let floating = |address: &str, fixed: &str| FloatingIp {
            id: 0,
            address: address.into(),
            pool: "nova".into(),
            interface: "eth1".into(),
            project_id: None,
            fixed_ip: Some(fixed.into()),
            instance_uuid: None,
            host: Some("controller".into()),
            auto_assigned: false,
        };
        let snap = Snapshot {
            networks: &[n],
            bound: &[],
            floating: &[
                floating("68.99.26.170", "10.0.0.2"),
                floating("68.99.26.171", "10.0.0.3"),
            ],
            rules: &[],
            provider_rules: &[],
            segment_peers: &Default::default(),
        };
        host_plan(&snap, &cfg, "controller", 1)
    }

    /// The plan's rules with the floating NAT as `host_plan` listed it before floating IPs
    /// travelled only as bindings: DNAT in PREROUTING and OUTPUT, SNAT in float-snat, per
    /// binding, then sorted by chain.
    fn rules_as_listed_before(plan: &HostPlan) -> Ruleset {
        let mut rs = plan.firewall.clone();
        for f in &plan.floating {
            for chain in [Chain::NatPrerouting, Chain::NatOutput] {
                rs.push(
                    chain,
                    Match {
                        dst: Some(format!("{}/32", f.address).parse().unwrap()),
                        ..Match::default()
                    },
                    Target::Dnat(f.fixed.as_str().parse().unwrap()),
                );
            }
            rs.push(
                Chain::NatFloatSnat,
                Match {
                    src: Some(format!("{}/32", f.fixed).parse().unwrap()),
                    ..Match::default()
                },
                Target::Snat(f.address.as_str().parse().unwrap()),
            );
        }
        rs.rules.sort_by_key(|r| r.chain);
        rs
    }

    #[test]
    fn iptables_text_is_the_rule_lists() {
        let plan = seed_plan();
        assert_eq!(plan.floating.len(), 2);
        let before =
            iptables::iptables_restore(&rules_as_listed_before(&plan), Some(&plan.security), &[]);
        let now =
            iptables::iptables_restore(&iptables::with_floating(&plan), Some(&plan.security), &[]);
        assert_eq!(now, before);
        assert!(now.contains(
            "-A novanet-float-snat -s 10.0.0.2/32 -j SNAT --to-source 68.99.26.170\n\
             -A novanet-float-snat -s 10.0.0.3/32 -j SNAT --to-source 68.99.26.171\n"
        ));
    }

    /// The table the nftables driver used to build by picking the floating NAT out of the
    /// rule list: the bindings now fill its maps directly.
    #[test]
    fn nftables_nat_snapshot() {
        let plan = seed_plan();
        let t = nftables::nat_table(&plan.firewall, &plan.floating);
        let want = "table ip novanet_nat {
\tmap floating_dnat {
\t\ttype ipv4_addr : ipv4_addr
\t\telements = { 68.99.26.170 : 10.0.0.2, 68.99.26.171 : 10.0.0.3 }
\t}
\tmap floating_snat {
\t\ttype ipv4_addr : ipv4_addr
\t\telements = { 10.0.0.2 : 68.99.26.170, 10.0.0.3 : 68.99.26.171 }
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname \"br100\" udp dport 67 accept
\t\tiifname \"br100\" tcp dport 67 accept
\t\tiifname \"br100\" udp dport 53 accept
\t\tiifname \"br100\" tcp dport 53 accept
\t\tip daddr 192.168.56.200/32 tcp dport 8775 accept
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"br100\" accept
\t\toifname \"br100\" accept
\t}
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr 169.254.169.254/32 tcp dport 80 dnat ip to 192.168.56.200:8775
\t\tdnat ip to ip daddr map @floating_dnat
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tdnat ip to ip daddr map @floating_dnat
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 10.0.0.0/24 ip daddr 192.168.56.200/32 accept
\t\tip saddr 10.0.0.0/24 ip daddr 10.0.0.0/24 ct status != dnat accept
\t\tjump source_nat
\t}
\tchain source_nat {
\t\tsnat ip to ip saddr map @floating_snat
\t\toifname \"eth1\" ip saddr 10.0.0.0/24 snat ip to 192.168.56.200
\t}
}
";
        assert_eq!(t, want);
    }
}
