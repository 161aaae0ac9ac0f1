//! Rendering for nftables: the same rule model as the iptables driver, in novanet's own
//! tables. Instances are reached through verdict maps (one lookup whatever their number);
//! floating NAT is one map each way. Pure: text in, text out.

use std::collections::BTreeMap;
use std::fmt::Write;

use novanet_core::firewall::{Chain, Match, Proto, Ruleset, Target};
use novanet_core::plan::{InstanceSecurity, PortSecurity, SecurityPlan, SgRule};

pub const NAT_TABLE: &str = "novanet_nat";
pub const FILTER_TABLE: &str = "novanet_filter";
pub const SPOOF_TABLE: &str = "novanet_spoof";

fn m_expr(m: &Match) -> String {
    let mut a: Vec<String> = Vec::new();
    if let Some(i) = &m.in_iface {
        a.push(format!("iifname \"{i}\""));
    }
    if let Some(o) = &m.out_iface {
        a.push(format!("oifname \"{o}\""));
    }
    if let Some(s) = &m.src {
        a.push(format!("ip saddr {s}"));
    }
    if let Some(d) = &m.dst {
        a.push(format!("ip daddr {d}"));
    }
    match (m.proto, m.dport) {
        (Some(p), Some(port)) => a.push(format!("{} dport {port}", p.name())),
        (Some(p), None) => a.push(format!("meta l4proto {}", p.name())),
        _ => {}
    }
    if m.not_dnat {
        a.push("ct status != dnat".into());
    }
    a.join(" ")
}

fn t_expr(t: &Target) -> Option<String> {
    Some(match t {
        Target::Accept => "accept".into(),
        Target::Drop => "drop".into(),
        Target::Dnat(to) => format!("dnat ip to {to}"),
        Target::Snat(to) => format!("snat ip to {to}"),
        // nftables has no checksum-fill; guests with virtio offloads do not need it.
        Target::ChecksumFill => return None,
    })
}

fn rule_line(m: &Match, t: &Target) -> Option<String> {
    let t = t_expr(t)?;
    let m = m_expr(m);
    Some(if m.is_empty() {
        format!("\t\t{t}\n")
    } else {
        format!("\t\t{m} {t}\n")
    })
}

/// A bare `-d FLOAT/32` DNAT or `-s FIXED/32` SNAT: a floating IP, which goes in a map.
fn floating_pair(m: &Match, t: &Target) -> Option<(String, String)> {
    let plain = m.in_iface.is_none() && m.out_iface.is_none() && m.proto.is_none() && !m.not_dnat;
    match (plain, &m.src, &m.dst, t) {
        (true, None, Some(d), Target::Dnat(to)) if d.ends_with("/32") => {
            Some((d.trim_end_matches("/32").into(), to.clone()))
        }
        (true, Some(s), None, Target::Snat(to)) if s.ends_with("/32") => {
            Some((s.trim_end_matches("/32").into(), to.clone()))
        }
        _ => None,
    }
}

fn map_elements(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} : {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The NAT and gateway filter rules of the model as one `ip` table.
pub fn nat_table(rules: &Ruleset) -> String {
    let mut out = String::new();
    let mut dnat: BTreeMap<String, String> = BTreeMap::new();
    let mut snat: BTreeMap<String, String> = BTreeMap::new();
    let mut chains: BTreeMap<&str, String> = BTreeMap::new();
    for r in &rules.rules {
        let name = match r.chain {
            Chain::FilterInput => "input",
            Chain::FilterForward => "forward",
            Chain::NatPrerouting => "prerouting",
            Chain::NatOutput => "output",
            Chain::NatPostrouting => "postrouting",
            Chain::NatSnat => "source_nat",
            Chain::NatFloatSnat => "float_snat",
            Chain::ManglePostrouting => continue,
        };
        if matches!(
            r.chain,
            Chain::NatPrerouting | Chain::NatOutput | Chain::NatFloatSnat
        ) {
            if let Some((k, v)) = floating_pair(&r.m, &r.target) {
                if r.chain == Chain::NatFloatSnat {
                    snat.insert(k, v);
                } else {
                    dnat.insert(k, v);
                }
                continue;
            }
        }
        if let Some(line) = rule_line(&r.m, &r.target) {
            chains.entry(name).or_default().push_str(&line);
        }
    }
    let dnat: Vec<(String, String)> = dnat.into_iter().collect();
    let snat: Vec<(String, String)> = snat.into_iter().collect();
    let _ = writeln!(out, "table ip {NAT_TABLE} {{");
    let _ = writeln!(
        out,
        "\tmap floating_dnat {{\n\t\ttype ipv4_addr : ipv4_addr"
    );
    if !dnat.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", map_elements(&dnat));
    }
    let _ = writeln!(
        out,
        "\t}}\n\tmap floating_snat {{\n\t\ttype ipv4_addr : ipv4_addr"
    );
    if !snat.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", map_elements(&snat));
    }
    let _ = writeln!(out, "\t}}");
    let body = |n: &str| chains.get(n).cloned().unwrap_or_default();
    let _ = write!(
        out,
        "\tchain input {{\n\t\ttype filter hook input priority filter; policy accept;\n{}\t}}\n",
        body("input")
    );
    let _ = write!(
        out,
        "\tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n{}\t}}\n",
        body("forward")
    );
    let _ = write!(
        out,
        "\tchain prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n{}\t\tdnat ip to ip daddr map @floating_dnat\n\t}}\n",
        body("prerouting")
    );
    let _ = write!(
        out,
        "\tchain output {{\n\t\ttype nat hook output priority -100; policy accept;\n{}\t\tdnat ip to ip daddr map @floating_dnat\n\t}}\n",
        body("output")
    );
    // nova's order: the exceptions, then the floating SNATs, then the default SNAT.
    let _ = write!(
        out,
        "\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n{}\t\tjump source_nat\n\t}}\n",
        body("postrouting")
    );
    let _ = write!(
        out,
        "\tchain source_nat {{\n\t\tsnat ip to ip saddr map @floating_snat\n{}\t}}\n",
        body("source_nat")
    );
    out.push_str("}\n");
    out
}

fn ports_of(r: &SgRule, proto: Proto) -> String {
    match (proto, r.from_port, r.to_port) {
        (Proto::Icmp, Some(t), c) if t >= 0 => match c {
            Some(c) if c >= 0 => format!(" icmp type {t} icmp code {c}"),
            _ => format!(" icmp type {t}"),
        },
        (Proto::Icmp, _, _) => String::new(),
        (_, Some(f), Some(t)) if f == t => format!(" {} dport {f}", proto.name()),
        (_, Some(f), Some(t)) => format!(" {} dport {f}-{t}", proto.name()),
        _ => String::new(),
    }
}

/// One security group rule as an nft rule body (None for what IPv4 dispatch cannot see).
pub fn sg_rule(r: &SgRule) -> Option<String> {
    let mut s = String::new();
    match (&r.cidr, r.group) {
        (Some(c), _) if c.contains(':') => return None,
        (Some(c), _) if c != "0.0.0.0/0" => s.push_str(&format!("ip saddr {c} ")),
        (_, Some(g)) => s.push_str(&format!("ip saddr @grp_{g} ")),
        _ => {}
    }
    match r.proto {
        Some(p) => {
            let ports = ports_of(r, p);
            if ports.is_empty() {
                s.push_str(&format!("meta l4proto {}", p.name()));
            } else {
                s.push_str(ports.trim_start());
            }
            s.push_str(" accept");
        }
        None => s.push_str("accept"),
    }
    Some(s)
}

pub fn inst_chain(i: &InstanceSecurity) -> String {
    format!("inst_{}", i.id)
}

/// The rules of an instance's chain, nova's order: invalid, established, DHCP replies from
/// its server, the same network when allowed, the groups' rules, then drop.
pub fn inst_rules(i: &InstanceSecurity, allow_same_net: bool) -> Vec<String> {
    let mut v = vec![
        "ct state invalid drop".to_string(),
        "ct state established,related accept".to_string(),
    ];
    for p in &i.ports {
        if let Some(d) = &p.dhcp_server {
            v.push(format!("ip saddr {d} udp sport 67 udp dport 68 accept"));
        }
    }
    if allow_same_net {
        for p in &i.ports {
            if !p.network_cidr.is_empty() {
                v.push(format!("ip saddr {} accept", p.network_cidr));
            }
        }
    }
    v.extend(i.rules.iter().filter_map(sg_rule));
    v.push("drop".into());
    v
}

pub fn port_chain(i: &InstanceSecurity, n: usize) -> String {
    format!("port_{}_{n}", i.id)
}

/// Anti-spoofing on one port: its MAC only, its addresses only (and the DHCP discover from
/// 0.0.0.0), ARP only for its own address and MAC, no DHCP server answers, no IPv6.
pub fn port_rules(p: &PortSecurity) -> Vec<String> {
    let ips = p.ips.join(", ");
    vec![
        format!("ether saddr != {} drop", p.mac),
        format!("ether type arp arp saddr ether != {} drop", p.mac),
        format!("ether type arp arp saddr ip != {{ {ips} }} drop"),
        "ether type ip ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept".into(),
        format!("ether type ip ip saddr != {{ {ips} }} drop"),
        "ether type ip udp sport 67 drop".into(),
        "ether type ip6 drop".into(),
    ]
}

fn chain_block(name: &str, rules: &[String]) -> String {
    let mut s = format!("\tchain {name} {{\n");
    for r in rules {
        let _ = writeln!(s, "\t\t{r}");
    }
    s.push_str("\t}\n");
    s
}

/// Group member sets: `set grp_N { type ipv4_addr; elements = {...} }`.
fn set_block(g: i64, members: &[String]) -> String {
    let mut s = format!("\tset grp_{g} {{\n\t\ttype ipv4_addr\n");
    if !members.is_empty() {
        let _ = writeln!(s, "\t\telements = {{ {} }}", members.join(", "));
    }
    s.push_str("\t}\n");
    s
}

/// The whole security table: dispatch by destination address through a verdict map.
pub fn filter_table(sec: &SecurityPlan) -> String {
    let mut out = format!("table inet {FILTER_TABLE} {{\n");
    for (g, m) in &sec.group_members {
        out.push_str(&set_block(*g, m));
    }
    let elements: Vec<String> = sec
        .instances
        .iter()
        .flat_map(|i| {
            i.ports.iter().flat_map(move |p| {
                p.ips
                    .iter()
                    .map(move |ip| format!("{ip} : jump {}", inst_chain(i)))
            })
        })
        .collect();
    out.push_str("\tmap instances {\n\t\ttype ipv4_addr : verdict\n");
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
    out.push_str("\t}\n");
    for i in &sec.instances {
        out.push_str(&chain_block(
            &inst_chain(i),
            &inst_rules(i, sec.allow_same_net),
        ));
    }
    out.push_str("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tip daddr vmap @instances\n\t}\n}\n");
    out
}

/// The anti-spoofing table: dispatch by ingress port through a verdict map.
pub fn spoof_table(sec: &SecurityPlan) -> String {
    let mut out = format!("table bridge {SPOOF_TABLE} {{\n");
    let mut elements = Vec::new();
    let mut chains = String::new();
    for i in &sec.instances {
        for (n, p) in i.ports.iter().enumerate() {
            let Some(dev) = &p.device else { continue };
            let name = port_chain(i, n);
            elements.push(format!("\"{dev}\" : jump {name}"));
            chains.push_str(&chain_block(&name, &port_rules(p)));
        }
    }
    out.push_str("\tmap ports {\n\t\ttype ifname : verdict\n");
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
    out.push_str("\t}\n");
    out.push_str(&chains);
    out.push_str("\tchain prerouting {\n\t\ttype filter hook prerouting priority -200; policy accept;\n\t\tiifname vmap @ports\n\t}\n}\n");
    out
}

/// One transaction that replaces a table with `body` (creating it first so that the
/// delete cannot fail).
pub fn replace_table(family: &str, name: &str, body: &str) -> String {
    format!("table {family} {name}\ndelete table {family} {name}\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst() -> InstanceSecurity {
        InstanceSecurity {
            id: 9,
            uuid: "u".into(),
            ports: vec![PortSecurity {
                device: Some("vnet0".into()),
                mac: "fa:16:3e:2c:e8:ec".into(),
                ips: vec!["10.0.0.2".into()],
                network_cidr: "10.0.0.0/24".into(),
                dhcp_server: Some("10.0.0.1".into()),
            }],
            rules: vec![
                SgRule {
                    proto: Some(Proto::Icmp),
                    from_port: Some(-1),
                    to_port: Some(-1),
                    cidr: Some("0.0.0.0/0".into()),
                    group: None,
                },
                SgRule {
                    proto: Some(Proto::Tcp),
                    from_port: Some(22),
                    to_port: Some(22),
                    cidr: Some("0.0.0.0/0".into()),
                    group: None,
                },
                SgRule {
                    proto: Some(Proto::Tcp),
                    from_port: Some(80),
                    to_port: Some(81),
                    cidr: Some("192.168.10.0/24".into()),
                    group: None,
                },
                SgRule {
                    proto: None,
                    from_port: None,
                    to_port: None,
                    cidr: None,
                    group: Some(3),
                },
            ],
        }
    }

    #[test]
    fn instance_chain_snapshot() {
        assert_eq!(
            inst_rules(&inst(), true),
            [
                "ct state invalid drop",
                "ct state established,related accept",
                "ip saddr 10.0.0.1 udp sport 67 udp dport 68 accept",
                "ip saddr 10.0.0.0/24 accept",
                "meta l4proto icmp accept",
                "tcp dport 22 accept",
                "ip saddr 192.168.10.0/24 tcp dport 80-81 accept",
                "ip saddr @grp_3 accept",
                "drop",
            ]
        );
        assert!(!inst_rules(&inst(), false).contains(&"ip saddr 10.0.0.0/24 accept".to_string()));
    }

    #[test]
    fn tables_dispatch_through_maps() {
        let sec = SecurityPlan {
            allow_same_net: true,
            instances: vec![inst()],
            group_members: BTreeMap::from([(3, vec!["10.0.0.3".to_string()])]),
        };
        let f = filter_table(&sec);
        assert!(f.contains("elements = { 10.0.0.2 : jump inst_9 }"), "{f}");
        assert!(f.contains("ip daddr vmap @instances"), "{f}");
        assert!(
            f.contains("set grp_3 {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.3 }"),
            "{f}"
        );
        let s = spoof_table(&sec);
        assert!(s.contains("\"vnet0\" : jump port_9_0"), "{s}");
        assert!(
            s.contains("ether type ip ip saddr != { 10.0.0.2 } drop"),
            "{s}"
        );
    }

    /// The rendered tables must parse: `nft -c` in a private network namespace (root only).
    #[test]
    fn rendered_tables_pass_nft_check() {
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n");
        let nft = std::process::Command::new("sh")
            .args(["-c", "command -v nft"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !root || !nft {
            eprintln!("skipping: nft -c needs root and nftables");
            return;
        }
        let sec = SecurityPlan {
            allow_same_net: false,
            instances: vec![inst()],
            group_members: BTreeMap::from([(3, vec!["10.0.0.3".to_string()]), (4, vec![])]),
        };
        let mut rs = Ruleset::default();
        rs.push(
            Chain::NatPrerouting,
            Match {
                dst: Some("68.99.26.170/32".into()),
                ..Match::default()
            },
            Target::Dnat("10.0.0.2".into()),
        );
        rs.push(
            Chain::NatFloatSnat,
            Match {
                src: Some("10.0.0.2/32".into()),
                ..Match::default()
            },
            Target::Snat("68.99.26.170".into()),
        );
        rs.push(
            Chain::NatSnat,
            Match {
                src: Some("10.0.0.0/24".into()),
                out_iface: Some("eth1".into()),
                ..Match::default()
            },
            Target::Snat("192.168.56.200".into()),
        );
        rs.push(
            Chain::NatPostrouting,
            Match {
                src: Some("10.0.0.0/24".into()),
                dst: Some("10.0.0.0/24".into()),
                not_dnat: true,
                ..Match::default()
            },
            Target::Accept,
        );
        rs.push(
            Chain::FilterInput,
            Match {
                in_iface: Some("br100".into()),
                proto: Some(Proto::Udp),
                dport: Some(67),
                ..Match::default()
            },
            Target::Accept,
        );
        let script = [
            replace_table("ip", NAT_TABLE, &nat_table(&rs)),
            replace_table("inet", FILTER_TABLE, &filter_table(&sec)),
            replace_table("bridge", SPOOF_TABLE, &spoof_table(&sec)),
            replace_table(
                "inet",
                FILTER_TABLE,
                &filter_table(&SecurityPlan::default()),
            ),
        ]
        .concat();
        let mut child = std::process::Command::new("unshare")
            .args(["--net", "nft", "-c", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn floating_nat_is_one_map() {
        let mut rs = Ruleset::default();
        for chain in [Chain::NatPrerouting, Chain::NatOutput] {
            rs.push(
                chain,
                Match {
                    dst: Some("68.99.26.170/32".into()),
                    ..Match::default()
                },
                Target::Dnat("10.0.0.2".into()),
            );
        }
        rs.push(
            Chain::NatFloatSnat,
            Match {
                src: Some("10.0.0.2/32".into()),
                ..Match::default()
            },
            Target::Snat("68.99.26.170".into()),
        );
        rs.push(
            Chain::NatPrerouting,
            Match {
                dst: Some("169.254.169.254/32".into()),
                proto: Some(Proto::Tcp),
                dport: Some(80),
                ..Match::default()
            },
            Target::Dnat("192.168.56.200:8775".into()),
        );
        let t = nat_table(&rs);
        assert!(t.contains("elements = { 68.99.26.170 : 10.0.0.2 }"), "{t}");
        assert!(t.contains("elements = { 10.0.0.2 : 68.99.26.170 }"), "{t}");
        assert!(
            t.contains("ip daddr 169.254.169.254/32 tcp dport 80 dnat ip to 192.168.56.200:8775"),
            "{t}"
        );
        assert_eq!(
            t.matches("dnat ip to ip daddr map @floating_dnat").count(),
            2
        );
    }
}
