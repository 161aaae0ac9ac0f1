//! The noop driver: nova's `NoopFirewallDriver`, which filtered no instance traffic.
//!
//! What it keeps, and why: in nova-network the firewall driver only ever owned instance
//! filtering; the gateway's NAT (the default SNAT and its exceptions, floating IPs' DNAT and
//! SNAT, the metadata DNAT) and the gateway's accepts came from `linux_net`'s iptables
//! manager whatever the driver was. So noop keeps all of that, in nova's iptables chains as
//! nova wrote them: a cloud without security groups still reaches the internet, its floating
//! IPs and its metadata. It drops what the driver did own: the instances' chains, and the
//! anti-spoofing that came with them (nova's noop had none either). The anti-spoofing table
//! is applied empty rather than left alone, so that a host switched from another driver does
//! not keep filtering with a stale one.

use std::path::Path;

use novanet_core::plan::{HostPlan, SecurityPlan};

use super::{iptables, Applied, Firewall, Iptables};

pub struct Noop {
    iptables: Iptables,
}

impl Noop {
    pub fn new(state_dir: &Path) -> Noop {
        Noop {
            iptables: Iptables::new(state_dir),
        }
    }
}

/// No instance filtered: whatever security the plan carries is ignored.
fn open() -> SecurityPlan {
    SecurityPlan::default()
}

impl Firewall for Noop {
    fn apply(&mut self, plan: &HostPlan) -> Applied {
        let mut out = Applied::default();
        out.step(self.iptables.apply_chains(plan, &open()), |c| {
            c.then(|| "iptables".to_string())
        });
        out.step(self.iptables.apply_spoofing(&open()), |c| {
            c.then(|| "anti-spoofing removed".to_string())
        });
        out
    }

    fn resync(&mut self) {
        self.iptables.forget();
    }
}

pub(super) fn render(plan: &HostPlan) -> String {
    iptables::render(plan, &open())
}

#[cfg(test)]
mod tests {
    use super::super::{render, FirewallDriver};
    use novanet_core::firewall::{ServedNetwork, SourceNat};
    use novanet_core::plan::{FloatingBinding, HostPlan, InstanceSecurity, PortSecurity};

    fn plan() -> HostPlan {
        let mut p = HostPlan {
            firewall_driver: FirewallDriver::Noop,
            ..HostPlan::default()
        };
        p.gateway.served.push(ServedNetwork {
            bridge: "br100".parse().unwrap(),
            cidr: "10.0.0.0/24".parse().unwrap(),
            serves_dhcp: false,
        });
        p.gateway.snat = Some(SourceNat {
            to: "192.168.56.200".parse().unwrap(),
            out_interface: Some("eth1".parse().unwrap()),
        });
        p.floating.push(FloatingBinding {
            address: "68.99.26.170".parse().unwrap(),
            interface: "eth1".parse().unwrap(),
            fixed: "10.0.0.2".parse().unwrap(),
        });
        // A plan that carries instances anyway (the server sends none with noop).
        p.security.instances.push(InstanceSecurity {
            id: 9,
            uuid: "u".into(),
            ports: vec![PortSecurity {
                device: Some("vnet0".parse().unwrap()),
                mac: "fa:16:3e:2c:e8:ec".parse().unwrap(),
                ips: vec!["10.0.0.2".parse().unwrap()],
                network_cidr: None,
                dhcp_server: None,
                ips_v6: vec![],
                network_cidr_v6: None,
            }],
            rules: vec![],
        });
        p
    }

    /// A controller serving two networks with dmz_cidr and a loopback metadata host, without
    /// instances: noop writes the very text iptables does (the text taken from the rule-list
    /// renderer before the plan carried intent).
    #[test]
    fn two_networks_snapshot() {
        let mut plan = super::super::tests::two_networks_plan();
        plan.firewall_driver = FirewallDriver::Noop;
        assert_eq!(
            render(FirewallDriver::Noop, &plan),
            super::super::iptables::tests::TWO_NETWORKS_IPTABLES
        );
    }

    #[test]
    fn noop_keeps_nat_and_filters_nothing() {
        let text = render(FirewallDriver::Noop, &plan());
        for nat in [
            "-A novanet-snat -s 10.0.0.0/24 -o eth1 -j SNAT --to-source 192.168.56.200",
            "-A novanet-PREROUTING -d 68.99.26.170/32 -j DNAT --to-destination 10.0.0.2",
            "-A novanet-OUTPUT -d 68.99.26.170/32 -j DNAT --to-destination 10.0.0.2",
            "-A novanet-float-snat -s 10.0.0.2/32 -j SNAT --to-source 68.99.26.170",
        ] {
            assert!(text.contains(nat), "{nat} in {text}");
        }
        // No instance chain, and an anti-spoofing table that holds no port.
        assert!(!text.contains("novanet-inst-"), "{text}");
        assert!(!text.contains("vnet0"), "{text}");
        // Exactly the iptables driver's text for a plan without instances.
        let mut open = plan();
        open.security.instances.clear();
        assert_eq!(text, render(FirewallDriver::Iptables, &open));
        assert_ne!(text, render(FirewallDriver::Iptables, &plan()));
    }
}
