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

/// What `diagnose` compares the kernel with: novanet's iptables chains as the iptables (or
/// noop) driver writes them for `plan` ((table, chain) to its `-A` lines), and the jumps into
/// them from the builtin chains, each as `-A BUILTIN -j TARGET` in its table.
pub(crate) fn iptables_expected(plan: &HostPlan) -> (iptables::OwnedChains, Vec<(String, String)>) {
    // noop keeps nova's chains but filters no instance.
    let open = novanet_core::plan::SecurityPlan::default();
    let sec = if plan.firewall_driver == FirewallDriver::Noop {
        &open
    } else {
        &plan.security
    };
    let text = iptables::iptables_restore(&iptables::nova_rules(plan), Some(sec), &[]);
    let jumps = iptables::jumps()
        .into_iter()
        .map(|(t, b, j)| (t.to_string(), format!("-A {b} -j {j}")))
        .collect();
    (iptables::owned_chains(&text), jumps)
}

pub(crate) use iptables::owned_chains as iptables_owned_chains;

/// The `iptables-restore --noflush` text that puts novanet's chains back as the driver
/// writes them for `plan`, with the jumps `saved` (an `iptables-save`) lacks: the fix
/// `diagnose` offers for drift.
pub(crate) fn iptables_fix_script(plan: &HostPlan, saved: &str) -> String {
    let open = novanet_core::plan::SecurityPlan::default();
    let sec = if plan.firewall_driver == FirewallDriver::Noop {
        &open
    } else {
        &plan.security
    };
    let mut table = "";
    let mut present = Vec::new();
    for l in saved.lines() {
        if let Some(t) = l.strip_prefix('*') {
            table = t;
        } else if l.starts_with("-A ") {
            present.push((table, l));
        }
    }
    let missing: Vec<(&str, &str, String)> = iptables::jumps()
        .into_iter()
        .filter(|(t, b, j)| !present.contains(&(*t, format!("-A {b} -j {j}").as_str())))
        .collect();
    iptables::iptables_restore(&iptables::nova_rules(plan), Some(sec), &missing)
}

/// The nftables driver's NAT table for `plan`, as the script that replaces it (what
/// `diagnose` loads in a private namespace to learn the kernel's spelling, and offers as
/// the fix).
pub(crate) fn nft_nat_script(plan: &HostPlan) -> String {
    nftables::replace_table(
        "ip",
        nftables::NAT_TABLE,
        &nftables::nat_table(&plan.gateway, &plan.floating),
    )
}

pub(crate) use nftables::NAT_TABLE as NFT_NAT_TABLE;

/// Bridged frames must pass netfilter to reach the instances' filters (settable per
/// network namespace on the testbed's kernel).
fn bridge_filtering() -> Result<()> {
    ensure_sysctl("net/bridge/bridge-nf-call-iptables", "1")?;
    // IPv6 too (dual stack; the kernel's default, made sure of).
    ensure_sysctl("net/bridge/bridge-nf-call-ip6tables", "1")
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
            host_addresses: &Default::default(),
        };
        host_plan(&snap, &cfg, "controller", 1)
    }

    /// A controller serving two networks (DHCP on the first only), with dmz_cidr, a
    /// loopback metadata host (nova's REDIRECT) and a floating IP: every part of the
    /// gateway's intent at once, for each driver's snapshot.
    pub(super) fn two_networks_plan() -> HostPlan {
        let cfg = Config {
            flat_interface: Some("eth2".into()),
            public_interface: "eth1".into(),
            my_ip: "192.168.56.200".into(),
            metadata_host: Some("127.0.0.1".into()),
            dmz_cidr: vec!["10.128.0.0/24".into(), "192.0.2.0/25".into()],
            ..Config::default()
        };
        let net = |id: i64, label: &str, cidr: &str, bridge: &str| {
            let req = NetworkRequest {
                label: label.into(),
                cidr: Some(cidr.into()),
                bridge: Some(bridge.into()),
                ..Default::default()
            };
            let mut n: Network =
                plan_networks(&req, cfg.network_manager, &cfg, &[], || format!("u{id}"))
                    .unwrap()
                    .networks
                    .remove(0)
                    .network;
            n.id = id;
            n.host = Some("controller".into());
            n
        };
        let mut second = net(2, "backnet", "10.1.0.0/24", "br101");
        second.enable_dhcp = false;
        let snap = Snapshot {
            networks: &[net(1, "vmnet", "10.0.0.0/24", "br100"), second],
            bound: &[],
            floating: &[FloatingIp {
                id: 0,
                address: "68.99.26.170".into(),
                pool: "nova".into(),
                interface: "eth1".into(),
                project_id: None,
                fixed_ip: Some("10.1.0.5".into()),
                instance_uuid: None,
                host: Some("controller".into()),
                auto_assigned: false,
            }],
            rules: &[],
            provider_rules: &[],
            segment_peers: &Default::default(),
            host_addresses: &Default::default(),
        };
        host_plan(&snap, &cfg, "controller", 1)
    }

    /// Seed 004's controller as iptables-restore text: taken from the rule lists
    /// (`firewall.rules` plus each floating IP's three rules) before plans carried intent.
    const SEED_IPTABLES: &str = "*filter
:novanet-INPUT - [0:0]
:novanet-FORWARD - [0:0]
:novanet-local - [0:0]
:novanet-sg-fallback - [0:0]
:novanet-provider - [0:0]
-A novanet-FORWARD -j novanet-local
-A novanet-sg-fallback -j DROP
-A novanet-INPUT -i br100 -p udp -m udp --dport 67 -j ACCEPT
-A novanet-INPUT -i br100 -p tcp -m tcp --dport 67 -j ACCEPT
-A novanet-INPUT -i br100 -p udp -m udp --dport 53 -j ACCEPT
-A novanet-INPUT -i br100 -p tcp -m tcp --dport 53 -j ACCEPT
-A novanet-INPUT -d 192.168.56.200/32 -p tcp -m tcp --dport 8775 -j ACCEPT
-A novanet-FORWARD -i br100 -j ACCEPT
-A novanet-FORWARD -o br100 -j ACCEPT
COMMIT
*nat
:novanet-PREROUTING - [0:0]
:novanet-OUTPUT - [0:0]
:novanet-POSTROUTING - [0:0]
:novanet-snat - [0:0]
:novanet-float-snat - [0:0]
:novanet-postrouting-bottom - [0:0]
-A novanet-postrouting-bottom -j novanet-snat
-A novanet-snat -j novanet-float-snat
-A novanet-PREROUTING -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.56.200:8775
-A novanet-PREROUTING -d 68.99.26.170/32 -j DNAT --to-destination 10.0.0.2
-A novanet-PREROUTING -d 68.99.26.171/32 -j DNAT --to-destination 10.0.0.3
-A novanet-OUTPUT -d 68.99.26.170/32 -j DNAT --to-destination 10.0.0.2
-A novanet-OUTPUT -d 68.99.26.171/32 -j DNAT --to-destination 10.0.0.3
-A novanet-POSTROUTING -s 10.0.0.0/24 -d 192.168.56.200/32 -j ACCEPT
-A novanet-POSTROUTING -s 10.0.0.0/24 -d 10.0.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT
-A novanet-snat -s 10.0.0.0/24 -o eth1 -j SNAT --to-source 192.168.56.200
-A novanet-float-snat -s 10.0.0.2/32 -j SNAT --to-source 68.99.26.170
-A novanet-float-snat -s 10.0.0.3/32 -j SNAT --to-source 68.99.26.171
COMMIT
*mangle
:novanet-POSTROUTING - [0:0]
-A novanet-POSTROUTING -o br100 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill
COMMIT
";

    #[test]
    fn iptables_text_is_the_rule_lists() {
        let plan = seed_plan();
        assert_eq!(plan.floating.len(), 2);
        let now =
            iptables::iptables_restore(&iptables::nova_rules(&plan), Some(&plan.security), &[]);
        assert_eq!(now, SEED_IPTABLES);
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
        let t = nftables::nat_table(&plan.gateway, &plan.floating);
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

    /// A project's VLAN network whose VPN instance holds the VPN address (10.0.0.2 of
    /// 10.0.0.0/24, port 1000 from `vpn_start`) on a controller with the iptables driver
    /// and with nftables: nova's `ensure_vpn_forward` in each driver's spelling.
    fn vpn_plan() -> HostPlan {
        use novanet_core::config::Manager;
        use novanet_core::model::BoundAddress;
        let cfg = Config {
            network_manager: Manager::Vlan,
            vlan_interface: Some("eth2".into()),
            public_interface: "eth1".into(),
            my_ip: "192.168.56.200".into(),
            ..Config::default()
        };
        let req = NetworkRequest {
            label: "proj".into(),
            cidr: Some("10.0.0.0/24".into()),
            vlan: Some(100),
            project_id: Some("p1".into()),
            ..Default::default()
        };
        let mut n: Network = plan_networks(&req, Manager::Vlan, &cfg, &[], || "u".into())
            .unwrap()
            .networks
            .remove(0)
            .network;
        n.id = 1;
        n.host = Some("controller".into());
        assert_eq!(n.vpn_private_address.as_deref(), Some("10.0.0.2"));
        let vpn = BoundAddress {
            network_id: 1,
            address: "10.0.0.2".into(),
            mac: "fa:16:3e:00:00:02".into(),
            vif_uuid: "v".into(),
            instance_uuid: "i".into(),
            instance_id: 3,
            hostname: "p1-vpn".into(),
            instance_host: Some("compute-1".into()),
            allocated: true,
            leased: true,
            device: None,
            groups: vec![],
            project_id: String::new(),
            default_route: true,
        };
        let snap = Snapshot {
            networks: &[n],
            bound: &[vpn],
            floating: &[],
            rules: &[],
            provider_rules: &[],
            segment_peers: &Default::default(),
            host_addresses: &Default::default(),
        };
        host_plan(&snap, &cfg, "controller", 1)
    }

    #[test]
    fn vpn_forward_iptables_snapshot() {
        let plan = vpn_plan();
        let lines: Vec<String> = iptables::nova_rules(&plan)
            .into_iter()
            .map(|(c, r)| format!("-A {} {r}", iptables::chain_name(c)))
            .collect();
        assert_eq!(lines.join("\n"), VPN_IPTABLES.trim_end());
    }

    #[test]
    fn vpn_forward_nftables_snapshot() {
        let plan = vpn_plan();
        assert_eq!(nftables::nat_table(&plan.gateway, &plan.floating), VPN_NFT);
    }

    const VPN_IPTABLES: &str = "-A novanet-INPUT -i br100 -p udp -m udp --dport 67 -j ACCEPT
-A novanet-INPUT -i br100 -p tcp -m tcp --dport 67 -j ACCEPT
-A novanet-INPUT -i br100 -p udp -m udp --dport 53 -j ACCEPT
-A novanet-INPUT -i br100 -p tcp -m tcp --dport 53 -j ACCEPT
-A novanet-INPUT -d 192.168.56.200/32 -p tcp -m tcp --dport 8775 -j ACCEPT
-A novanet-FORWARD -i br100 -j ACCEPT
-A novanet-FORWARD -o br100 -j ACCEPT
-A novanet-FORWARD -d 10.0.0.2/32 -p udp -m udp --dport 1194 -j ACCEPT
-A novanet-PREROUTING -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.56.200:8775
-A novanet-PREROUTING -d 192.168.56.200/32 -p udp -m udp --dport 1000 -j DNAT --to-destination 10.0.0.2:1194
-A novanet-OUTPUT -d 192.168.56.200/32 -p udp -m udp --dport 1000 -j DNAT --to-destination 10.0.0.2:1194
-A novanet-POSTROUTING -s 10.0.0.0/24 -d 192.168.56.200/32 -j ACCEPT
-A novanet-POSTROUTING -s 10.0.0.0/24 -d 10.0.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT
-A novanet-snat -s 10.0.0.0/24 -o eth1 -j SNAT --to-source 192.168.56.200
-A novanet-POSTROUTING -o br100 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill
";
    const VPN_NFT: &str = "table ip novanet_nat {
\tmap floating_dnat {
\t\ttype ipv4_addr : ipv4_addr
\t}
\tmap floating_snat {
\t\ttype ipv4_addr : ipv4_addr
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
\t\tip daddr 10.0.0.2/32 udp dport 1194 accept
\t}
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr 192.168.56.200/32 udp dport 1000 dnat ip to 10.0.0.2:1194
\t\tip daddr 169.254.169.254/32 tcp dport 80 dnat ip to 192.168.56.200:8775
\t\tdnat ip to ip daddr map @floating_dnat
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tip daddr 192.168.56.200/32 udp dport 1000 dnat ip to 10.0.0.2:1194
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
}
