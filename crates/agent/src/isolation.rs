//! A multi-host network with a shared address (`share_address`) has the same gateway and
//! DHCP address on every host's bridge. These bridge rules keep it to this host, as nova's
//! `isolate_dhcp_address` did with ebtables: the other hosts' ARP for the address is not
//! answered here, this host's ARP for it does not leave, and no DHCP request or reply
//! crosses the flat interface. One nft table of the bridge family (what Debian's ebtables
//! is built on), ours alone, replaced whole in one transaction.

use novanet_core::plan::{BridgePlan, RaPlan};

use crate::sys::{run, AgentError, Result};

/// The table's name: nothing else on the host uses it.
pub const TABLE: &str = "novanet_isolate";

/// The whole table for the plan's bridges, or None when none needs isolating: bridges
/// with a shared address, and bridges of multi-host IPv6 networks (`ra`), whose gateway
/// address, `fe80::a9fe:a9fe` (also the routers' source) and prefix every host has: this
/// host's neighbour discovery and router advertisements do not leave through the flat
/// interface, and the other hosts' (their instances' solicitations) are not answered here.
pub fn render(bridges: &[BridgePlan], ra: &[RaPlan]) -> Option<String> {
    let shared: Vec<(&str, &str)> = bridges
        .iter()
        .filter_map(|b| {
            Some((
                b.interface.as_ref()?.as_str(),
                b.shared_address.as_ref()?.as_str(),
            ))
        })
        .collect();
    let v6: Vec<&str> = ra
        .iter()
        .filter(|r| r.multi_host)
        .filter_map(|r| {
            let b = bridges.iter().find(|b| b.name == r.bridge)?;
            Some(b.interface.as_ref()?.as_str())
        })
        .collect();
    if shared.is_empty() && v6.is_empty() {
        return None;
    }
    let (mut input, mut output, mut forward) = (String::new(), String::new(), String::new());
    for (iface, addr) in shared {
        input.push_str(&format!(
            "    iifname \"{iface}\" arp daddr ip {addr} drop\n    iifname \"{iface}\" udp dport 67 drop\n"
        ));
        output.push_str(&format!(
            "    oifname \"{iface}\" arp saddr ip {addr} drop\n    oifname \"{iface}\" udp sport 67 drop\n"
        ));
        forward.push_str(&format!(
            "    iifname \"{iface}\" udp dport 67-68 drop\n    oifname \"{iface}\" udp dport 67-68 drop\n"
        ));
    }
    const ND: &str = "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } drop";
    for iface in v6 {
        input.push_str(&format!("    iifname \"{iface}\" {ND}\n"));
        output.push_str(&format!("    oifname \"{iface}\" {ND}\n"));
    }
    // At ebtables' filter priority: bridged IPv4 that br_netfilter hands to iptables comes
    // back to the bridge hooks after priority 0 only, so a chain at 0 would never see it.
    let chain = |name: &str, rules: &str| {
        format!(
            "  chain {name} {{\n    type filter hook {name} priority filter; policy accept;\n{rules}  }}\n"
        )
    };
    Some(format!(
        "table bridge {TABLE}\ndelete table bridge {TABLE}\ntable bridge {TABLE} {{\n{}{}{}}}\n",
        chain("input", &input),
        chain("output", &output),
        chain("forward", &forward),
    ))
}

/// Applies the table when it differs from what this process last applied.
#[derive(Default)]
pub struct Isolation {
    /// What was last applied: None before the first apply (a table an earlier run left is
    /// then removed if the plan has none).
    applied: Option<Option<String>>,
}

impl Isolation {
    /// True when it changed the host.
    pub fn apply(&mut self, bridges: &[BridgePlan], ra: &[RaPlan]) -> Result<bool> {
        let want = render(bridges, ra);
        if self.applied.as_ref() == Some(&want) {
            return Ok(false);
        }
        match &want {
            Some(text) => {
                run("nft", &["-f", "-"], Some(text))?;
            }
            None => {
                // Creating it first makes the delete succeed whether or not it was there. A
                // host without nft has no such table: nothing to remove.
                let text = format!("table bridge {TABLE}\ndelete table bridge {TABLE}\n");
                match run("nft", &["-f", "-"], Some(&text)) {
                    Ok(_) | Err(AgentError::Io(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let changed = want.is_some() || self.applied.as_ref().is_some_and(Option::is_some);
        self.applied = Some(want);
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn br100(shared: Option<&str>) -> BridgePlan {
        BridgePlan {
            network_uuid: "u".into(),
            name: "br100".parse().unwrap(),
            interface: Some("eth2".parse().unwrap()),
            gateway: Some("10.0.0.1/24".parse().unwrap()),
            broadcast: None,
            vlan: None,
            mtu: None,
            segment: None,
            shared_address: shared.map(|a| a.parse().unwrap()),
        }
    }

    #[test]
    fn a_shared_address_is_kept_to_its_host() {
        assert_eq!(render(&[br100(None)], &[]), None);
        let text = render(&[br100(Some("10.0.0.1"))], &[]).unwrap();
        assert_eq!(
            text,
            "table bridge novanet_isolate\n\
             delete table bridge novanet_isolate\n\
             table bridge novanet_isolate {\n  \
               chain input {\n    type filter hook input priority filter; policy accept;\n    \
                 iifname \"eth2\" arp daddr ip 10.0.0.1 drop\n    \
                 iifname \"eth2\" udp dport 67 drop\n  }\n  \
               chain output {\n    type filter hook output priority filter; policy accept;\n    \
                 oifname \"eth2\" arp saddr ip 10.0.0.1 drop\n    \
                 oifname \"eth2\" udp sport 67 drop\n  }\n  \
               chain forward {\n    type filter hook forward priority filter; policy accept;\n    \
                 iifname \"eth2\" udp dport 67-68 drop\n    \
                 oifname \"eth2\" udp dport 67-68 drop\n  }\n\
             }\n"
        );
        // A bridge without a flat interface has nothing to isolate from.
        let mut alone = br100(Some("10.0.0.1"));
        alone.interface = None;
        assert_eq!(render(&[alone], &[]), None);
    }

    /// A multi-host IPv6 network: this host's neighbour discovery and router
    /// advertisements stay off the flat interface, the other hosts' are not answered here;
    /// a single-host one needs nothing.
    #[test]
    fn a_multi_host_ipv6_gateway_is_kept_to_its_host() {
        let mut ra = RaPlan {
            network_uuid: "u".into(),
            bridge: "br100".parse().unwrap(),
            prefix: "fd00:1::/64".parse().unwrap(),
            gateway: "fd00:1::1".parse().unwrap(),
            multi_host: false,
        };
        assert_eq!(render(&[br100(None)], std::slice::from_ref(&ra)), None);
        ra.multi_host = true;
        let text = render(&[br100(None)], &[ra]).unwrap();
        let nd = "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } drop";
        assert!(text.contains(&format!("chain input {{\n    type filter hook input priority filter; policy accept;\n    iifname \"eth2\" {nd}\n  }}")), "{text}");
        assert!(
            text.contains(&format!("oifname \"eth2\" {nd}\n  }}")),
            "{text}"
        );
    }
}
