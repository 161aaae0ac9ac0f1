//! The nftables driver: novanet's own tables, each replaced in one transaction when its
//! text changes, the security tables changed incrementally. Instances are reached through
//! verdict maps (one lookup whatever their number); floating NAT is one map each way, filled
//! from the plan's floating bindings. Rendering is pure: plan in, text out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use novanet_core::firewall::{GatewayPlan, Proto, VPN_PRIVATE_PORT};
use novanet_core::plan::{
    FloatingBinding, HostPlan, InstanceSecurity, SecurityPlan, SgRule, METADATA_ADDRESS,
    METADATA_ADDRESS_V6, METADATA_PORT,
};

use super::{bridge_filtering, dedup_in_order, Applied, Firewall};
use crate::sys::{run, write_if_changed, Result};

pub const NAT_TABLE: &str = "novanet_nat";
/// The IPv6 NAT: the metadata service's DNAT at `fe80::a9fe:a9fe` (dual stack).
pub const NAT6_TABLE: &str = "novanet_nat6";
pub const FILTER_TABLE: &str = "novanet_filter";
pub const SPOOF_TABLE: &str = "novanet_spoof";

fn map_elements(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} : {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The gateway's chains, one rule a line, by chain: the DHCP, DNS and metadata accepts
/// (`input`), the bridges' accepts (`forward`), the metadata redirect (`prerouting`), the
/// SNAT exceptions per served network (`postrouting`) and the default SNAT (`source_nat`).
/// nftables has no checksum-fill; guests with virtio offloads do not need it.
fn gateway_chains(g: &GatewayPlan) -> BTreeMap<&'static str, String> {
    let mut chains: BTreeMap<&str, String> = BTreeMap::new();
    let mut add = |chain: &'static str, rule: String| {
        let body = chains.entry(chain).or_default();
        let _ = writeln!(body, "\t\t{rule}");
    };
    for n in g.served.iter().filter(|n| n.serves_dhcp) {
        for port in [67, 53] {
            for proto in ["udp", "tcp"] {
                add(
                    "input",
                    format!("iifname \"{}\" {proto} dport {port} accept", n.bridge),
                );
            }
        }
    }
    if let Some(md) = &g.metadata {
        add(
            "input",
            format!("ip daddr {}/32 tcp dport {} accept", md.host, md.port),
        );
    }
    for b in &g.forward {
        add("forward", format!("iifname \"{b}\" accept"));
        add("forward", format!("oifname \"{b}\" accept"));
    }
    for v in &g.vpn {
        add(
            "forward",
            format!(
                "ip daddr {}/32 udp dport {VPN_PRIVATE_PORT} accept",
                v.private
            ),
        );
        for chain in ["prerouting", "output"] {
            add(
                chain,
                format!(
                    "ip daddr {}/32 udp dport {} dnat ip to {}:{VPN_PRIVATE_PORT}",
                    v.public, v.port, v.private
                ),
            );
        }
    }
    if let Some(md) = &g.metadata {
        let to = if md.is_local() {
            format!("redirect to :{}", md.port)
        } else {
            format!("dnat ip to {}:{}", md.host, md.port)
        };
        add(
            "prerouting",
            format!("ip daddr {METADATA_ADDRESS}/32 tcp dport {METADATA_PORT} {to}"),
        );
    }
    for n in &g.served {
        let c = &n.cidr;
        if let Some(md) = &g.metadata {
            add(
                "postrouting",
                format!("ip saddr {c} ip daddr {}/32 accept", md.host),
            );
        }
        for dmz in &g.dmz {
            add("postrouting", format!("ip saddr {c} ip daddr {dmz} accept"));
        }
        add(
            "postrouting",
            format!("ip saddr {c} ip daddr {c} ct status != dnat accept"),
        );
    }
    if let Some(snat) = &g.snat {
        let out = snat
            .out_interface
            .as_ref()
            .map(|o| format!("oifname \"{o}\" "))
            .unwrap_or_default();
        for n in &g.served {
            add(
                "source_nat",
                format!("{out}ip saddr {} snat ip to {}", n.cidr, snat.to),
            );
        }
    }
    chains
}

/// The gateway's rules, and the floating IPs' maps, as one `ip` table.
pub fn nat_table(gateway: &GatewayPlan, floating: &[FloatingBinding]) -> String {
    let mut out = String::new();
    let dnat: BTreeMap<String, String> = floating
        .iter()
        .map(|f| (f.address.to_string(), f.fixed.to_string()))
        .collect();
    let snat: BTreeMap<String, String> = floating
        .iter()
        .map(|f| (f.fixed.to_string(), f.address.to_string()))
        .collect();
    let chains = gateway_chains(gateway);
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

/// The `ip6` table: each listed bridge's requests to `[fe80::a9fe:a9fe]:80` DNATed to the
/// agent's port on the same address. Without IPv6 metadata, an empty table (no NAT hook).
pub fn nat6_table(gateway: &GatewayPlan) -> String {
    let mut out = format!("table ip6 {NAT6_TABLE} {{\n");
    if let Some(md) = &gateway.metadata_v6 {
        out.push_str(
            "\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n",
        );
        for b in &md.bridges {
            let _ = writeln!(
                out,
                "\t\tiifname \"{b}\" ip6 daddr {METADATA_ADDRESS_V6} tcp dport {METADATA_PORT} dnat to [{METADATA_ADDRESS_V6}]:{}",
                md.port
            );
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    out
}

/// The rule's protocol as nft names it: ICMP becomes ICMPv6 in a rule for IPv6 sources, as
/// nova's ip6tables rules made it.
fn proto_name(proto: Proto, v6: bool) -> &'static str {
    match proto {
        Proto::Icmp if v6 => "icmpv6",
        p => p.name(),
    }
}

fn ports_of(r: &SgRule, proto: Proto, v6: bool) -> String {
    let icmp = proto_name(proto, v6);
    match (proto, r.from_port, r.to_port) {
        (Proto::Icmp, Some(t), c) if t >= 0 => match c {
            Some(c) if c >= 0 => format!(" {icmp} type {t} {icmp} code {c}"),
            _ => format!(" {icmp} type {t}"),
        },
        (Proto::Icmp, _, _) => String::new(),
        (_, Some(f), Some(t)) if f == t => format!(" {} dport {f}", proto.name()),
        (_, Some(f), Some(t)) => format!(" {} dport {f}-{t}", proto.name()),
        _ => String::new(),
    }
}

/// What a rule matches, as nft expressions (empty for everything). A CIDR rule matches its
/// own family only: `0.0.0.0/0` admits no IPv6 source, `::/0` no IPv4 one.
fn sg_match(r: &SgRule) -> Option<String> {
    let mut s = String::new();
    let v6 = r.cidr.as_ref().is_some_and(|c| c.is_v6());
    match (&r.cidr, r.group) {
        (Some(c), _) if c == "::/0" => s.push_str("meta nfproto ipv6 "),
        (Some(c), _) if v6 => s.push_str(&format!("ip6 saddr {c} ")),
        (Some(c), _) if c == "0.0.0.0/0" => s.push_str("meta nfproto ipv4 "),
        (Some(c), _) => s.push_str(&format!("ip saddr {c} ")),
        (_, Some(g)) => s.push_str(&format!("ip saddr @grp_{g} ")),
        _ => {}
    }
    if let Some(p) = r.proto {
        let ports = ports_of(r, p, v6);
        if ports.is_empty() {
            s.push_str(&format!("meta l4proto {} ", proto_name(p, v6)));
        } else {
            s.push_str(ports.trim_start());
            s.push(' ');
        }
    }
    Some(s)
}

/// One security group rule as an nft rule body.
pub fn sg_rule(r: &SgRule) -> Option<String> {
    sg_match(r).map(|m| format!("{m}accept"))
}

/// A group rule's IPv6 half (dual stack): its members' v6 addresses, in the group's v6 set.
fn sg_rule_v6_group(r: &SgRule) -> Option<String> {
    let g = r.group.filter(|_| r.cidr.is_none())?;
    let mut s = format!("ip6 saddr @grp6_{g} ");
    if let Some(p) = r.proto {
        let ports = ports_of(r, p, true);
        if ports.is_empty() {
            s.push_str(&format!("meta l4proto {} ", proto_name(p, true)));
        } else {
            s.push_str(ports.trim_start());
            s.push(' ');
        }
    }
    Some(format!("{s}accept"))
}

/// One provider rule: what it matches is dropped.
pub fn provider_rule(r: &SgRule) -> Option<String> {
    sg_match(r).map(|m| format!("{m}drop"))
}

pub fn version_chain(id: i64, version: u32) -> String {
    format!("inst_{id}_v{version}")
}

/// The rules of an instance's chain, nova's order: invalid, established, the provider's
/// drops, DHCP replies from its server, the same network when allowed, the groups' rules,
/// then drop. Provider rules live in every chain, so that changing them is the same add-only
/// new version of each chain as any other change.
pub fn inst_rules(i: &InstanceSecurity, sec: &SecurityPlan) -> Vec<String> {
    let mut v = vec![
        "ct state invalid drop".to_string(),
        "ct state established,related accept".to_string(),
    ];
    v.extend(sec.provider_rules.iter().filter_map(provider_rule));
    for p in &i.ports {
        if let Some(d) = &p.dhcp_server {
            v.push(format!("ip saddr {d} udp sport 67 udp dport 68 accept"));
        }
    }
    if i.ports.iter().any(|p| !p.ips_v6.is_empty()) {
        // Neighbour discovery to the instance's address, and router advertisements, which
        // come from a router's link-local address (nova: from the gateway's, RASERVER).
        v.push("icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept".into());
        v.push("ip6 saddr fe80::/10 icmpv6 type nd-router-advert accept".into());
    }
    if sec.allow_same_net {
        for p in &i.ports {
            if let Some(c) = &p.network_cidr {
                v.push(format!("ip saddr {c} accept"));
            }
            if let Some(c) = &p.network_cidr_v6 {
                v.push(format!("ip6 saddr {c} accept"));
            }
        }
    }
    let dual_stack = i.ports.iter().any(|p| !p.ips_v6.is_empty());
    for r in &i.rules {
        v.extend(sg_rule(r));
        if dual_stack {
            v.extend(sg_rule_v6_group(r));
        }
    }
    v.push("drop".into());
    dedup_in_order(&mut v);
    v
}

fn chain_block(name: &str, rules: &[String]) -> String {
    let mut s = format!("\tchain {name} {{\n");
    for r in rules {
        let _ = writeln!(s, "\t\t{r}");
    }
    s.push_str("\t}\n");
    s
}

/// Group member sets: `set grp_N { type ipv4_addr; elements = {...} }`, and `grp6_N` for
/// the members' IPv6 addresses (each source group has both).
fn set_block<T: AsRef<str>>(g: i64, v6: bool, members: &[T]) -> String {
    let (name, ty) = if v6 {
        (format!("grp6_{g}"), "ipv6_addr")
    } else {
        (format!("grp_{g}"), "ipv4_addr")
    };
    let mut s = format!("\tset {name} {{\n\t\ttype {ty}\n");
    if !members.is_empty() {
        let _ = writeln!(
            s,
            "\t\telements = {{ {} }}",
            members
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<&str>>()
                .join(", ")
        );
    }
    s.push_str("\t}\n");
    s
}

/// The whole security table: dispatch by destination address through a verdict map.
pub fn filter_table(sec: &SecurityPlan) -> String {
    let mut out = format!("table inet {FILTER_TABLE} {{\n");
    for (g, m) in &sec.group_members {
        out.push_str(&set_block(*g, false, m));
        let m6 = sec.group_members_v6.get(g).map_or(&[][..], Vec::as_slice);
        out.push_str(&set_block(*g, true, m6));
    }
    let elements = |v6: bool| -> Vec<String> {
        sec.instances
            .iter()
            .flat_map(|i| {
                ips_of(i)
                    .into_iter()
                    .filter(move |ip| ip.contains(':') == v6)
                    .map(move |ip| format!("{ip} : jump {}", version_chain(i.id, 0)))
            })
            .collect()
    };
    for (map, ty, v6) in [
        ("instances", "ipv4_addr", false),
        ("instances6", "ipv6_addr", true),
    ] {
        let _ = write!(out, "\tmap {map} {{\n\t\ttype {ty} : verdict\n");
        let e = elements(v6);
        if !e.is_empty() {
            let _ = writeln!(out, "\t\telements = {{ {} }}", e.join(", "));
        }
        out.push_str("\t}\n");
    }
    for i in &sec.instances {
        // Versioned chains, so that a change adds the next version and a jump to it from
        // the current one: an add-only transaction (see `incremental`).
        out.push_str(&chain_block(&version_chain(i.id, 0), &inst_rules(i, sec)));
    }
    out.push_str("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tip daddr vmap @instances\n\t\tip6 daddr vmap @instances6\n\t}\n}\n");
    out
}

/// Anti-spoofing for every instance port at once, as data: the ports, each port's MAC and
/// each port's addresses are sets, and one chain checks a frame against them (its MAC only,
/// its addresses only but for the DHCP discover from 0.0.0.0, ARP only for its own address
/// and MAC, no DHCP server answers; IPv6 only from a dual-stack port, from its own address
/// or a link-local one, never a router advertisement, redirect or DHCPv6 answer). A port
/// coming or going is set elements, not a chain: the ruleset nft must read before each
/// change stays small.
pub fn spoof_table(sec: &SecurityPlan) -> String {
    let ports = ports_of_plan(sec);
    let set = |name: &str, ty: &str, elements: Vec<String>| {
        let mut s = format!("\tset {name} {{\n\t\ttype {ty}\n");
        if !elements.is_empty() {
            let _ = writeln!(s, "\t\telements = {{ {} }}", elements.join(", "));
        }
        s.push_str("\t}\n");
        s
    };
    let mut out = format!("table bridge {SPOOF_TABLE} {{\n");
    out.push_str(&set(
        "ports",
        "ifname",
        ports.keys().map(|d| format!("\"{d}\"")).collect(),
    ));
    out.push_str(&set(
        "port_mac",
        "ifname . ether_addr",
        ports
            .iter()
            .map(|(d, (mac, _))| mac_element(d, mac))
            .collect(),
    ));
    out.push_str(&set(
        "port_ip",
        "ifname . ipv4_addr",
        ports
            .iter()
            .flat_map(|(d, (_, ips))| family(ips, false).map(move |ip| ip_element(d, ip)))
            .collect(),
    ));
    out.push_str(&set(
        "ports6",
        "ifname",
        ports
            .iter()
            .filter(|(_, (_, ips))| family(ips, true).next().is_some())
            .map(|(d, _)| format!("\"{d}\""))
            .collect(),
    ));
    out.push_str(&set(
        "port_ip6",
        "ifname . ipv6_addr",
        ports
            .iter()
            .flat_map(|(d, (_, ips))| family(ips, true).map(move |ip| ip_element(d, ip)))
            .collect(),
    ));
    out.push_str(&chain_block(
        "prerouting",
        &[
            "type filter hook prerouting priority -200; policy accept;".to_string(),
            "iifname != @ports accept".into(),
            "iifname . ether saddr != @port_mac drop".into(),
            "ether type arp iifname . arp saddr ether != @port_mac drop".into(),
            "ether type arp iifname . arp saddr ip != @port_ip drop".into(),
            "ether type ip ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept".into(),
            "ether type ip iifname . ip saddr != @port_ip drop".into(),
            "ether type ip udp sport 67 drop".into(),
            "ether type ip6 iifname != @ports6 drop".into(),
            "ether type ip6 icmpv6 type { nd-router-advert, nd-redirect } drop".into(),
            "ether type ip6 udp sport 547 drop".into(),
            // Duplicate address detection and MLD before the port has an address.
            "ether type ip6 ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report } accept".into(),
            // The metadata service knows the instance by its link-local source: only its own.
            format!("ether type ip6 ip6 daddr {METADATA_ADDRESS_V6} iifname . ip6 saddr != @port_ip6 drop"),
            "ether type ip6 ip6 saddr fe80::/10 accept".into(),
            "ether type ip6 iifname . ip6 saddr != @port_ip6 drop".into(),
        ],
    ));
    out.push_str("}\n");
    out
}

/// A port's addresses of one family (the state keeps both in one list).
fn family(ips: &[String], v6: bool) -> impl Iterator<Item = &String> {
    ips.iter().filter(move |ip| ip.contains(':') == v6)
}

fn mac_element(dev: &str, mac: &str) -> String {
    format!("\"{dev}\" . {mac}")
}

fn ip_element(dev: &str, ip: &str) -> String {
    format!("\"{dev}\" . {ip}")
}

/// The security tables' structure (sets, maps, the spoof chain's rules): a state written
/// for another one is replaced whole, never patched (1: the IPv6 sets and map; 2: the
/// metadata service's link-local check, and each source group's IPv6 set).
pub const TABLES_LAYOUT: u32 = 2;

/// What this agent last wrote to the security tables, to compute the next change from.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SecState {
    /// [`TABLES_LAYOUT`] of the tables written (0: before layouts were recorded).
    #[serde(default)]
    pub layout: u32,
    pub allow_same_net: bool,
    pub instances: BTreeMap<i64, InstState>,
    pub groups: BTreeMap<i64, Vec<String>>,
    /// device -> (MAC, addresses)
    pub ports: BTreeMap<String, (String, Vec<String>)>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InstState {
    pub version: u32,
    pub rules: Vec<String>,
    pub ips: Vec<String>,
}

/// An instance's addresses, both families.
fn ips_of(i: &InstanceSecurity) -> Vec<String> {
    let mut v: Vec<String> = i
        .ports
        .iter()
        .flat_map(|p| {
            p.ips
                .iter()
                .map(|a| a.to_string())
                .chain(p.ips_v6.iter().map(|a| a.to_string()))
        })
        .collect();
    v.sort();
    v
}

/// Instance ports with a device: device -> (MAC, sorted addresses).
fn ports_of_plan(sec: &SecurityPlan) -> BTreeMap<String, (String, Vec<String>)> {
    let mut m = BTreeMap::new();
    for p in sec.instances.iter().flat_map(|i| i.ports.iter()) {
        if let Some(dev) = &p.device {
            // nft prints MACs in lower case; so does the state, whatever the store holds.
            let mut ips = sorted(&p.ips);
            // A dual-stack port's own link-local address (modified EUI-64), the only one it
            // may reach the metadata service at fe80::a9fe:a9fe from.
            let mut v6: Vec<String> = p.ips_v6.iter().map(ToString::to_string).collect();
            if let (false, Ok(mac)) = (v6.is_empty(), p.mac.parse::<novanet_core::net::Mac>()) {
                v6.push(novanet_core::ipv6::link_local(mac).to_string());
            }
            ips.extend(sorted(&v6));
            m.insert(dev.to_string(), (p.mac.to_lowercase(), ips));
        }
    }
    m
}

fn sorted<T: ToString>(v: &[T]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(T::to_string).collect();
    v.sort();
    v.dedup();
    v
}

/// The state right after a full render of `sec`.
pub fn full_state(sec: &SecurityPlan) -> SecState {
    SecState {
        layout: TABLES_LAYOUT,
        allow_same_net: sec.allow_same_net,
        instances: sec
            .instances
            .iter()
            .map(|i| {
                (
                    i.id,
                    InstState {
                        version: 0,
                        rules: inst_rules(i, sec),
                        ips: ips_of(i),
                    },
                )
            })
            .collect(),
        groups: groups_of(sec),
        ports: ports_of_plan(sec),
    }
}

/// Each source group's members, both families in one list (the state keeps them so).
fn groups_of(sec: &SecurityPlan) -> BTreeMap<i64, Vec<String>> {
    sec.group_members
        .iter()
        .map(|(g, m)| {
            let mut all = sorted(m);
            all.extend(sorted(
                sec.group_members_v6.get(g).map_or(&[][..], Vec::as_slice),
            ));
            (*g, all)
        })
        .collect()
}

/// A change as two transactions: `hot` only adds (a new chain version, a jump inserted in
/// front of the old one, new map and set elements), so it commits without the ~12 ms wait
/// every deleting transaction pays; `retire` then removes what `hot` made unreachable.
#[derive(Debug, Default, PartialEq)]
pub struct Update {
    pub hot: String,
    pub retire: String,
}

fn join<S: AsRef<str>>(v: &[S]) -> String {
    v.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join(", ")
}

/// `VERB element SET { a, b }` on a line of its own; nothing for no elements.
fn element_line<S: AsRef<str>>(out: &mut String, verb: &str, set: &str, items: &[S]) {
    if !items.is_empty() {
        let _ = writeln!(out, "{verb} element {set} {{ {} }}", join(items));
    }
}

/// A chain and its rules, a command each.
fn add_chain(out: &mut String, table: &str, name: &str, rules: &[String]) {
    let _ = writeln!(out, "add chain {table} {name}");
    for r in rules {
        let _ = writeln!(out, "add rule {table} {name} {r}");
    }
}

/// The update from `old` to `new`, and the state after it; None when a full replace is
/// needed (the same-network switch changes every chain).
pub fn incremental(old: &SecState, new: &SecurityPlan) -> Option<(Update, SecState)> {
    if old.allow_same_net != new.allow_same_net || old.layout != TABLES_LAYOUT {
        return None;
    }
    let t = format!("inet {FILTER_TABLE}");
    let b = format!("bridge {SPOOF_TABLE}");
    let mut u = Update::default();
    let mut next = old.clone();
    // Groups first: a new rule may name a new set.
    let new_groups = groups_of(new);
    for (g, members) in &new_groups {
        let had = old.groups.get(g).cloned();
        if had.is_none() {
            let _ = writeln!(u.hot, "add set {t} grp_{g} {{ type ipv4_addr; }}");
            let _ = writeln!(u.hot, "add set {t} grp6_{g} {{ type ipv6_addr; }}");
        }
        let had = had.unwrap_or_default();
        for (v6, set) in [
            (false, format!("{t} grp_{g}")),
            (true, format!("{t} grp6_{g}")),
        ] {
            let added: Vec<&String> = family(members, v6).filter(|m| !had.contains(m)).collect();
            let removed: Vec<&String> = family(&had, v6).filter(|m| !members.contains(m)).collect();
            element_line(&mut u.hot, "add", &set, &added);
            element_line(&mut u.retire, "delete", &set, &removed);
        }
    }
    next.groups = new_groups.clone();
    // Chains first: a new instance's chain, or the next version of a changed one, reached
    // at once through a jump put first in the current version (hot); the retire deletes
    // what is no longer reached.
    let mut retired_chains = Vec::new();
    next.instances.clear();
    for i in &new.instances {
        let rules = inst_rules(i, new);
        let version = match old.instances.get(&i.id) {
            Some(st) if st.rules == rules => st.version,
            Some(st) => {
                let (old_vc, vc) = (
                    version_chain(i.id, st.version),
                    version_chain(i.id, st.version + 1),
                );
                add_chain(&mut u.hot, &t, &vc, &rules);
                let _ = writeln!(u.hot, "insert rule {t} {old_vc} jump {vc}");
                retired_chains.push(old_vc);
                st.version + 1
            }
            None => {
                add_chain(&mut u.hot, &t, &version_chain(i.id, 0), &rules);
                0
            }
        };
        let ips = ips_of(i);
        next.instances.insert(
            i.id,
            InstState {
                version,
                rules,
                ips,
            },
        );
    }
    for (id, st) in old
        .instances
        .iter()
        .filter(|(id, _)| !next.instances.contains_key(id))
    {
        retired_chains.push(version_chain(*id, st.version));
    }
    // The dispatch map as a whole (an address may move from one instance to another in one
    // update): new keys go in now; a key gone or pointing elsewhere changes in the retire,
    // in the same transaction that deletes the chains it pointed at.
    let map_of = |st: &SecState| -> BTreeMap<String, String> {
        st.instances
            .iter()
            .flat_map(|(id, s)| {
                s.ips
                    .iter()
                    .map(move |ip| (ip.clone(), version_chain(*id, s.version)))
            })
            .collect()
    };
    let (old_map, new_map) = (map_of(old), map_of(&next));
    let element = |(ip, chain): (&String, &String)| format!("{ip} : jump {chain}");
    let added: Vec<String> = new_map
        .iter()
        .filter(|(ip, _)| !old_map.contains_key(*ip))
        .map(element)
        .collect();
    let changed: Vec<&String> = old_map
        .iter()
        .filter(|(ip, chain)| new_map.get(*ip) != Some(*chain))
        .map(|(ip, _)| ip)
        .collect();
    let repointed: Vec<String> = changed
        .iter()
        .filter_map(|ip| new_map.get_key_value(*ip))
        .map(element)
        .collect();
    for (name, v6) in [("instances", false), ("instances6", true)] {
        let map = format!("{t} {name}");
        let of = |v: &[String]| -> Vec<String> {
            v.iter()
                .filter(|e| e.split(' ').next().is_some_and(|ip| ip.contains(':') == v6))
                .cloned()
                .collect()
        };
        let changed: Vec<String> = changed
            .iter()
            .filter(|ip| ip.contains(':') == v6)
            .map(|ip| ip.to_string())
            .collect();
        element_line(&mut u.hot, "add", &map, &of(&added));
        element_line(&mut u.retire, "delete", &map, &changed);
        element_line(&mut u.retire, "add", &map, &of(&repointed));
    }
    for vc in retired_chains {
        let _ = writeln!(u.retire, "flush chain {t} {vc}\ndelete chain {t} {vc}");
    }
    for g in old.groups.keys().filter(|g| !new_groups.contains_key(g)) {
        let _ = writeln!(u.retire, "delete set {t} grp_{g}\ndelete set {t} grp6_{g}");
    }
    // Ports: elements of the three sets; what a port gains goes in now, what it loses later.
    let ports = ports_of_plan(new);
    let (port_set, mac_set, ip_set, ports6_set, ip6_set) = (
        format!("{b} ports"),
        format!("{b} port_mac"),
        format!("{b} port_ip"),
        format!("{b} ports6"),
        format!("{b} port_ip6"),
    );
    let set_of = |ip: &String| if ip.contains(':') { &ip6_set } else { &ip_set };
    let none = (String::new(), Vec::new());
    for (dev, (mac, ips)) in &ports {
        let (old_mac, old_ips) = old.ports.get(dev).unwrap_or(&none);
        if !old.ports.contains_key(dev) {
            element_line(&mut u.hot, "add", &port_set, &[format!("\"{dev}\"")]);
        }
        if mac != old_mac {
            element_line(&mut u.hot, "add", &mac_set, &[mac_element(dev, mac)]);
            if !old_mac.is_empty() {
                element_line(
                    &mut u.retire,
                    "delete",
                    &mac_set,
                    &[mac_element(dev, old_mac)],
                );
            }
        }
        let (had6, has6) = (
            family(old_ips, true).next().is_some(),
            family(ips, true).next().is_some(),
        );
        if has6 && !had6 {
            element_line(&mut u.hot, "add", &ports6_set, &[format!("\"{dev}\"")]);
        }
        if had6 && !has6 {
            element_line(
                &mut u.retire,
                "delete",
                &ports6_set,
                &[format!("\"{dev}\"")],
            );
        }
        for set in [&ip_set, &ip6_set] {
            let pairs = |a: &[String], b: &[String]| -> Vec<String> {
                a.iter()
                    .filter(|ip| !b.contains(ip) && set_of(ip) == set)
                    .map(|ip| ip_element(dev, ip))
                    .collect()
            };
            element_line(&mut u.hot, "add", set, &pairs(ips, old_ips));
            element_line(&mut u.retire, "delete", set, &pairs(old_ips, ips));
        }
    }
    for (dev, (mac, ips)) in old.ports.iter().filter(|(d, _)| !ports.contains_key(*d)) {
        element_line(&mut u.retire, "delete", &port_set, &[format!("\"{dev}\"")]);
        element_line(&mut u.retire, "delete", &mac_set, &[mac_element(dev, mac)]);
        if family(ips, true).next().is_some() {
            element_line(
                &mut u.retire,
                "delete",
                &ports6_set,
                &[format!("\"{dev}\"")],
            );
        }
        for set in [&ip_set, &ip6_set] {
            let ips: Vec<String> = ips
                .iter()
                .filter(|ip| set_of(ip) == set)
                .map(|ip| ip_element(dev, ip))
                .collect();
            element_line(&mut u.retire, "delete", set, &ips);
        }
    }
    next.ports = ports;
    Some((u, next))
}

/// One transaction that replaces both security tables with the full render of `sec`.
pub fn replace_security(sec: &SecurityPlan) -> String {
    [
        replace_table("inet", FILTER_TABLE, &filter_table(sec)),
        replace_table("bridge", SPOOF_TABLE, &spoof_table(sec)),
    ]
    .concat()
}

/// One transaction that replaces a table with `body` (creating it first so that the
/// delete cannot fail).
pub fn replace_table(family: &str, name: &str, body: &str) -> String {
    format!("table {family} {name}\ndelete table {family} {name}\n{body}")
}

/// The nftables driver: the gateway's rules and NAT in an `ip` table, instances' filters in
/// an `inet` table and anti-spoofing in a `bridge` table, all novanet's own.
pub struct Nftables {
    tables: Tables,
}

impl Nftables {
    pub fn new(state_dir: &Path) -> Nftables {
        Nftables {
            tables: Tables::new(state_dir),
        }
    }

    /// The security tables alone (instances' filters and anti-spoofing), as `apply` changes
    /// them: what `bench firewall` measures. What it did (`full`, `incremental`), None when
    /// nothing changed.
    pub fn apply_security(&mut self, sec: &SecurityPlan) -> Result<Option<&'static str>> {
        self.tables.apply_security(sec)
    }
}

impl Firewall for Nftables {
    fn apply(&mut self, plan: &HostPlan) -> Applied {
        let mut out = Applied::default();
        if !plan.security.instances.is_empty() {
            out.step(bridge_filtering(), |()| None);
        }
        let mut wanted = vec![("ip", NAT_TABLE, nat_table(&plan.gateway, &plan.floating))];
        // The IPv6 NAT only where there is or was IPv6 metadata: a host without dual stack
        // gets no table it does not need.
        let had6 = self
            .tables
            .tables()
            .is_ok_and(|t| t.contains(&format!("ip6 {NAT6_TABLE}")));
        if plan.gateway.metadata_v6.is_some() || had6 {
            wanted.push(("ip6", NAT6_TABLE, nat6_table(&plan.gateway)));
        }
        out.step(self.tables.apply(&wanted), |c| {
            (!c.is_empty()).then(|| "nftables NAT".to_string())
        });
        out.step(self.apply_security(&plan.security), |how| {
            how.map(|how| format!("security ({how})"))
        });
        out
    }

    fn resync(&mut self) {
        self.tables.recheck();
    }
}

/// Every table the plan becomes, as one text.
pub(super) fn render(plan: &HostPlan) -> String {
    [
        nat_table(&plan.gateway, &plan.floating),
        nat6_table(&plan.gateway),
        filter_table(&plan.security),
        spoof_table(&plan.security),
    ]
    .concat()
}

/// The security tables' scripts without the kernel: a full replace, then each change as
/// the add-only transaction that makes it take effect and the one that retires what it
/// replaced (`bench firewall` times them apart).
pub struct SecurityScripts {
    state: SecState,
}

impl SecurityScripts {
    /// The script that replaces both security tables with `sec`, and the scripts' state
    /// after it.
    pub fn full(sec: &SecurityPlan) -> (String, SecurityScripts) {
        let state = full_state(sec);
        (replace_security(sec), SecurityScripts { state })
    }

    /// The change to `sec`; None when only a full replace can make it.
    pub fn change(&mut self, sec: &SecurityPlan) -> Option<Update> {
        let (u, next) = incremental(&self.state, sec)?;
        self.state = next;
        Some(u)
    }
}

/// novanet's nftables tables as the kernel holds them, each replaced in one transaction
/// when its text changes. The last applied text is kept in the state directory, so that a
/// restarted agent finding its tables in place leaves them alone. Both the nftables driver
/// and the iptables driver (for its anti-spoofing table) apply through it.
pub(super) struct Tables {
    state: PathBuf,
    last: BTreeMap<String, String>,
    sec_path: PathBuf,
    /// What the security tables hold, for incremental changes.
    sec: Option<SecState>,
    /// The tables present in the kernel, as last listed and as changed since. `nft list
    /// tables` fetches the whole ruleset (270 ms at 1,000 instances), so it runs only when
    /// this is unknown: at start, after a failure, and on the periodic resync.
    tables: Option<BTreeSet<String>>,
}

impl Tables {
    pub(super) fn new(state_dir: &Path) -> Tables {
        let state = state_dir.join("nft-applied.json");
        let last = std::fs::read_to_string(&state)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let sec_path = state_dir.join("nft-security.json");
        let sec = std::fs::read_to_string(&sec_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        Tables {
            state,
            last,
            sec_path,
            sec,
            tables: None,
        }
    }

    /// Makes the next apply list the kernel's tables again instead of trusting what this
    /// process applied (the periodic resync: somebody may have removed a table).
    pub(super) fn recheck(&mut self) {
        self.tables = None;
    }

    fn tables(&mut self) -> Result<&BTreeSet<String>> {
        if self.tables.is_none() {
            let listed = self.nft(&["list", "tables"], None)?;
            let names = listed
                .lines()
                .filter_map(|l| l.trim().strip_prefix("table "))
                .map(str::to_string)
                .collect();
            self.tables = Some(names);
        }
        Ok(self.tables.get_or_insert_with(BTreeSet::new))
    }

    /// Runs an nft script; on failure forgets the tables, so the next apply starts over.
    fn run_script(&mut self, script: &str) -> Result<()> {
        let result = self.nft(&["-f", "-"], Some(script)).map(|_| ());
        if result.is_err() {
            self.tables = None;
        }
        result
    }

    fn nft(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        run("nft", args, input)
    }

    fn save(&self) -> Result<()> {
        let text = serde_json::to_string(&self.last).expect("serializable");
        write_if_changed(&self.state, &text)?;
        if let Some(sec) = &self.sec {
            let text = serde_json::to_string(sec).expect("serializable");
            write_if_changed(&self.sec_path, &text)?;
        }
        Ok(())
    }

    /// The security tables (instances' filters and anti-spoofing): an add-only transaction
    /// for the change, then one retiring what it replaced; a full replace only when needed.
    /// Returns what it did, None when nothing changed.
    pub(super) fn apply_security(&mut self, plan: &SecurityPlan) -> Result<Option<&'static str>> {
        let fkey = format!("inet {FILTER_TABLE}");
        let skey = format!("bridge {SPOOF_TABLE}");
        let tables = self.tables()?;
        let both = tables.contains(&fkey) && tables.contains(&skey);
        // What the tables hold is `sec`, not their text: rendering and keeping two whole
        // tables on every change cost more than the change (agents before kept texts here).
        self.last.remove(&fkey);
        self.last.remove(&skey);
        let step = match self
            .sec
            .as_ref()
            .filter(|_| both)
            .and_then(|old| incremental(old, plan))
        {
            Some((u, _)) if u.hot.is_empty() && u.retire.is_empty() => return Ok(None),
            Some((u, next)) => {
                // Until the new state is saved, none is: a crash in between must lead to a
                // full replace, not to a diff against tables that moved on.
                let _ = std::fs::remove_file(&self.sec_path);
                if !u.hot.is_empty() {
                    if let Err(e) = self.run_script(&u.hot) {
                        // The kernel did not take the diff: replace the tables next time.
                        self.sec = None;
                        return Err(e);
                    }
                }
                self.sec = Some(next);
                if !u.retire.is_empty() {
                    if let Err(e) = self.run_script(&u.retire) {
                        // What the retire left is unknown: the next apply replaces the tables.
                        self.sec = None;
                        return Err(e);
                    }
                }
                "incremental"
            }
            None => {
                let _ = std::fs::remove_file(&self.sec_path);
                self.run_script(&replace_security(plan))?;
                self.sec = Some(full_state(plan));
                "full"
            }
        };
        if let Some(t) = self.tables.as_mut() {
            t.insert(fkey);
            t.insert(skey);
        }
        self.save()?;
        Ok(Some(step))
    }

    /// Applies the given tables ((family, name, body)); returns the names it replaced.
    pub(super) fn apply(&mut self, tables_wanted: &[(&str, &str, String)]) -> Result<Vec<String>> {
        let tables = self.tables()?.clone();
        let mut script = String::new();
        let mut changed = Vec::new();
        for (family, name, body) in tables_wanted {
            let key = format!("{family} {name}");
            if tables.contains(&key) && self.last.get(&key) == Some(body) {
                continue;
            }
            script.push_str(&replace_table(family, name, body));
            changed.push(key);
        }
        if script.is_empty() {
            return Ok(changed);
        }
        self.run_script(&script)?;
        for (family, name, body) in tables_wanted {
            let key = format!("{family} {name}");
            if let Some(t) = self.tables.as_mut() {
                t.insert(key.clone());
            }
            self.last.insert(key, body.clone());
        }
        self.save()?;
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use novanet_core::plan::PortSecurity;

    fn inst() -> InstanceSecurity {
        InstanceSecurity {
            id: 9,
            uuid: "u".parse().unwrap(),
            ports: vec![PortSecurity {
                device: Some("vnet0".parse().unwrap()),
                mac: "fa:16:3e:2c:e8:ec".parse().unwrap(),
                ips: vec!["10.0.0.2".parse().unwrap()],
                network_cidr: Some("10.0.0.0/24".parse().unwrap()),
                dhcp_server: Some("10.0.0.1".parse().unwrap()),
                ips_v6: vec![],
                network_cidr_v6: None,
            }],
            rules: vec![
                SgRule {
                    proto: Some(Proto::Icmp),
                    from_port: Some(-1),
                    to_port: Some(-1),
                    cidr: Some("0.0.0.0/0".parse().unwrap()),
                    group: None,
                },
                SgRule {
                    proto: Some(Proto::Tcp),
                    from_port: Some(22),
                    to_port: Some(22),
                    cidr: Some("0.0.0.0/0".parse().unwrap()),
                    group: None,
                },
                SgRule {
                    proto: Some(Proto::Tcp),
                    from_port: Some(80),
                    to_port: Some(81),
                    cidr: Some("192.168.10.0/24".parse().unwrap()),
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

    fn plan(same_net: bool, provider: Vec<SgRule>) -> SecurityPlan {
        SecurityPlan {
            allow_same_net: same_net,
            instances: vec![inst()],
            group_members: BTreeMap::from([(3, vec!["10.0.0.3".parse().unwrap()])]),
            group_members_v6: BTreeMap::new(),
            provider_rules: provider,
        }
    }

    /// 68.99.26.170 for 10.0.0.2, as the seed's floating IP example.
    fn floating() -> FloatingBinding {
        FloatingBinding {
            address: "68.99.26.170".parse().unwrap(),
            interface: "eth1".parse().unwrap(),
            fixed: "10.0.0.2".parse().unwrap(),
        }
    }

    fn smtp_block() -> SgRule {
        SgRule {
            proto: Some(Proto::Tcp),
            from_port: Some(25),
            to_port: Some(25),
            cidr: Some("0.0.0.0/0".parse().unwrap()),
            group: None,
        }
    }

    /// A second fixed IP on the same network is a second port there: the rules it brings are
    /// the same lines, written once (nova's rule sets never held duplicates).
    #[test]
    fn two_ports_on_one_network_write_each_rule_once() {
        let mut i = inst();
        let mut second = i.ports[0].clone();
        second.mac = "fa:16:3e:2c:e8:ed".parse().unwrap();
        second.ips = vec!["10.0.0.9".parse().unwrap()];
        i.ports.push(second);
        let mut sec = plan(true, vec![]);
        sec.instances = vec![i.clone()];
        let nft = inst_rules(&i, &sec);
        let mut unique = nft.clone();
        super::super::dedup_in_order(&mut unique);
        assert_eq!(nft, unique);
        assert_eq!(
            nft.iter()
                .filter(|l| l.contains("ip saddr 10.0.0.0/24 accept"))
                .count(),
            1
        );
        let (_, ipt) = super::super::iptables::iptables_security(&sec);
        assert_eq!(
            ipt.iter()
                .filter(|l| l.ends_with("-s 10.0.0.0/24 -j ACCEPT"))
                .count(),
            1
        );
        assert_eq!(ipt.iter().filter(|l| l.contains("--sport 67")).count(), 1);
    }

    #[test]
    fn instance_chain_snapshot() {
        assert_eq!(
            inst_rules(&inst(), &plan(true, vec![])),
            [
                "ct state invalid drop",
                "ct state established,related accept",
                "ip saddr 10.0.0.1 udp sport 67 udp dport 68 accept",
                "ip saddr 10.0.0.0/24 accept",
                "meta nfproto ipv4 meta l4proto icmp accept",
                "meta nfproto ipv4 tcp dport 22 accept",
                "ip saddr 192.168.10.0/24 tcp dport 80-81 accept",
                "ip saddr @grp_3 accept",
                "drop",
            ]
        );
        assert!(!inst_rules(&inst(), &plan(false, vec![]))
            .contains(&"ip saddr 10.0.0.0/24 accept".to_string()));
    }

    #[test]
    fn provider_rules_drop_right_after_established() {
        let ping_from = SgRule {
            proto: Some(Proto::Icmp),
            from_port: Some(8),
            to_port: Some(0),
            cidr: Some("203.0.113.0/24".parse().unwrap()),
            group: None,
        };
        let rules = inst_rules(&inst(), &plan(true, vec![smtp_block(), ping_from]));
        assert_eq!(
            rules[..5],
            [
                "ct state invalid drop",
                "ct state established,related accept",
                "meta nfproto ipv4 tcp dport 25 drop",
                "ip saddr 203.0.113.0/24 icmp type 8 icmp code 0 drop",
                "ip saddr 10.0.0.1 udp sport 67 udp dport 68 accept",
            ]
        );
    }

    #[test]
    fn provider_rule_change_is_add_only() {
        let before = plan(true, vec![]);
        let after = plan(true, vec![smtp_block()]);
        let (u, next) = incremental(&full_state(&before), &after).expect("incremental");
        assert!(
            u.hot.contains("add chain inet novanet_filter inst_9_v1"),
            "{}",
            u.hot
        );
        assert!(u.hot.contains(
            "add rule inet novanet_filter inst_9_v1 meta nfproto ipv4 tcp dport 25 drop"
        ));
        assert!(
            !u.hot.contains("delete") && !u.hot.contains("flush"),
            "{}",
            u.hot
        );
        assert!(u
            .retire
            .contains("delete chain inet novanet_filter inst_9_v0"));
        assert_eq!(next.instances[&9].version, 1);
    }

    #[test]
    fn tables_dispatch_through_maps() {
        let sec = plan(true, vec![]);
        let f = filter_table(&sec);
        assert!(
            f.contains("elements = { 10.0.0.2 : jump inst_9_v0 }"),
            "{f}"
        );
        assert!(f.contains("ip daddr vmap @instances"), "{f}");
        assert!(
            f.contains("set grp_3 {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.3 }"),
            "{f}"
        );
        let s = spoof_table(&sec);
        assert!(
            s.contains("elements = { \"vnet0\" . fa:16:3e:2c:e8:ec }"),
            "{s}"
        );
        assert!(s.contains("elements = { \"vnet0\" . 10.0.0.2 }"), "{s}");
        assert!(
            s.contains("ether type ip iifname . ip saddr != @port_ip drop"),
            "{s}"
        );
    }

    #[test]
    fn ports_change_by_set_elements() {
        let before = plan(true, vec![]);
        let mut after = before.clone();
        // vnet0 gets a second address and a new MAC; vnet1 comes.
        after.instances[0].ports[0]
            .ips
            .push("10.0.0.9".parse().unwrap());
        after.instances[0].ports[0].mac = "fa:16:3e:00:00:99".parse().unwrap();
        let mut other = inst();
        other.id = 10;
        other.ports[0].device = Some("vnet1".parse().unwrap());
        other.ports[0].mac = "fa:16:3e:00:00:10".parse().unwrap();
        other.ports[0].ips = vec!["10.0.0.10".parse().unwrap()];
        after.instances.push(other);
        let (u, next) = incremental(&full_state(&before), &after).expect("incremental");
        let b = format!("bridge {SPOOF_TABLE}");
        for line in [
            format!("add element {b} port_mac {{ \"vnet0\" . fa:16:3e:00:00:99 }}"),
            format!("add element {b} port_ip {{ \"vnet0\" . 10.0.0.9 }}"),
            format!("add element {b} ports {{ \"vnet1\" }}"),
            format!("add element {b} port_ip {{ \"vnet1\" . 10.0.0.10 }}"),
        ] {
            assert!(u.hot.contains(&line), "{line} in {}", u.hot);
        }
        assert!(
            !u.hot.contains("delete") && !u.hot.contains("chain bridge"),
            "{}",
            u.hot
        );
        assert_eq!(
            u.retire.trim(),
            format!("delete element {b} port_mac {{ \"vnet0\" . fa:16:3e:2c:e8:ec }}")
        );
        assert_eq!(next, full_state(&after));
        // vnet1 goes: its elements are retired.
        let (u, _) = incremental(&next, &before).expect("incremental");
        assert!(
            u.retire
                .contains(&format!("delete element {b} ports {{ \"vnet1\" }}")),
            "{}",
            u.retire
        );
        assert!(u.retire.contains("\"vnet0\" . 10.0.0.9"), "{}", u.retire);
    }

    /// A gateway with the metadata service at fe80::a9fe:a9fe on two bridges.
    fn dual_stack_gateway() -> GatewayPlan {
        GatewayPlan {
            metadata_v6: Some(novanet_core::firewall::MetadataV6 {
                bridges: vec!["br100".parse().unwrap(), "br101".parse().unwrap()],
                port: std::num::NonZeroU16::new(9697).unwrap(),
            }),
            ..GatewayPlan::default()
        }
    }

    /// The IPv6 NAT table: the metadata DNAT per bridge; without it, no chain (no hook).
    #[test]
    fn nat6_snapshot() {
        assert_eq!(
            nat6_table(&dual_stack_gateway()),
            "table ip6 novanet_nat6 {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tiifname \"br100\" ip6 daddr fe80::a9fe:a9fe tcp dport 80 dnat to [fe80::a9fe:a9fe]:9697
\t\tiifname \"br101\" ip6 daddr fe80::a9fe:a9fe tcp dport 80 dnat to [fe80::a9fe:a9fe]:9697
\t}
}
"
        );
        assert_eq!(
            nat6_table(&GatewayPlan::default()),
            "table ip6 novanet_nat6 {\n}\n"
        );
    }

    /// The rendered tables must parse: `nft -c` in a private network namespace (root only).
    /// An instance with an IPv6 address on its port and rules for IPv6 sources.
    fn dual_stack() -> InstanceSecurity {
        let mut i = inst();
        i.id = 10;
        i.uuid = "v6".into();
        i.ports[0].device = Some("vnet1".parse().unwrap());
        i.ports[0].mac = "fa:16:3e:00:00:01".parse().unwrap();
        i.ports[0].ips = vec!["10.0.0.3".parse().unwrap()];
        i.ports[0].ips_v6 = vec!["fd00:1::f816:3eff:fe00:1".parse().unwrap()];
        i.ports[0].network_cidr_v6 = Some("fd00:1::/64".parse().unwrap());
        let rule = |proto, from, to, cidr: &str| SgRule {
            proto: Some(proto),
            from_port: Some(from),
            to_port: Some(to),
            cidr: Some(cidr.parse().unwrap()),
            group: None,
        };
        i.rules = vec![
            rule(Proto::Tcp, 22, 22, "::/0"),
            rule(Proto::Icmp, 128, -1, "fd00:2::/64"),
            rule(Proto::Icmp, -1, -1, "::/0"),
            rule(Proto::Tcp, 22, 22, "0.0.0.0/0"),
        ];
        i
    }

    /// Dual stack group rules: a rule from a group admits its members' IPv6 addresses from
    /// the group's v6 set, whose members change by elements like the v4 ones.
    #[test]
    fn group_rules_admit_members_v6_addresses() {
        let mut i = dual_stack();
        i.rules = vec![SgRule {
            proto: Some(Proto::Tcp),
            from_port: Some(22),
            to_port: Some(22),
            cidr: None,
            group: Some(3),
        }];
        let mut sec = SecurityPlan {
            instances: vec![i.clone()],
            group_members: BTreeMap::from([(3, vec!["10.0.0.4".parse().unwrap()])]),
            group_members_v6: BTreeMap::from([(
                3,
                vec!["fd00:1::f816:3eff:fe00:4".parse().unwrap()],
            )]),
            ..SecurityPlan::default()
        };
        let rules = inst_rules(&i, &sec);
        assert!(
            rules.contains(&"ip saddr @grp_3 tcp dport 22 accept".to_string()),
            "{rules:?}"
        );
        assert!(
            rules.contains(&"ip6 saddr @grp6_3 tcp dport 22 accept".to_string()),
            "{rules:?}"
        );
        let f = filter_table(&sec);
        assert!(
            f.contains(
                "\tset grp6_3 {\n\t\ttype ipv6_addr\n\t\telements = { fd00:1::f816:3eff:fe00:4 }"
            ),
            "{f}"
        );
        // A member's v6 address coming and going: elements of the v6 set only.
        let old = full_state(&sec);
        sec.group_members_v6
            .get_mut(&3)
            .unwrap()
            .push("fd00:1::f816:3eff:fe00:5".parse().unwrap());
        let (u, next) = incremental(&old, &sec).unwrap();
        assert_eq!(
            u.hot,
            "add element inet novanet_filter grp6_3 { fd00:1::f816:3eff:fe00:5 }\n"
        );
        assert!(u.retire.is_empty(), "{u:?}");
        sec.group_members_v6.clear();
        let (u, _) = incremental(&next, &sec).unwrap();
        assert!(u.hot.is_empty(), "{u:?}");
        assert_eq!(
            u.retire,
            "delete element inet novanet_filter grp6_3 { fd00:1::f816:3eff:fe00:4, fd00:1::f816:3eff:fe00:5 }\n"
        );
        // An instance without IPv6 gets no v6 half.
        assert!(!inst_rules(&inst(), &sec).iter().any(|r| r.contains("grp6")));
    }

    /// A state from before the IPv6 sets (an agent upgraded in place) is never patched: the
    /// tables are replaced whole once.
    #[test]
    fn an_older_layout_is_replaced() {
        let sec = plan(true, vec![]);
        let mut old = full_state(&sec);
        assert!(incremental(&old, &sec).is_some());
        old.layout = 0;
        assert!(incremental(&old, &sec).is_none());
        let text = serde_json::to_string(&full_state(&sec))
            .unwrap()
            .replace("\"layout\":2,", "");
        let read: SecState = serde_json::from_str(&text).unwrap();
        assert_eq!(read.layout, 0);
    }

    /// Dual stack: v6 dispatch, neighbour discovery and RAs from link-local routers, the
    /// network's prefix, rules by family (ICMP becomes ICMPv6), and the port's v6 address
    /// in the anti-spoofing sets.
    #[test]
    fn dual_stack_snapshot() {
        let i = dual_stack();
        let sec = SecurityPlan {
            allow_same_net: true,
            instances: vec![i.clone()],
            ..SecurityPlan::default()
        };
        assert_eq!(
            inst_rules(&i, &sec),
            [
                "ct state invalid drop",
                "ct state established,related accept",
                "ip saddr 10.0.0.1 udp sport 67 udp dport 68 accept",
                "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
                "ip6 saddr fe80::/10 icmpv6 type nd-router-advert accept",
                "ip saddr 10.0.0.0/24 accept",
                "ip6 saddr fd00:1::/64 accept",
                "meta nfproto ipv6 tcp dport 22 accept",
                "ip6 saddr fd00:2::/64 icmpv6 type 128 accept",
                "meta nfproto ipv6 meta l4proto icmpv6 accept",
                "meta nfproto ipv4 tcp dport 22 accept",
                "drop",
            ]
        );
        let f = filter_table(&sec);
        assert!(
            f.contains("\tmap instances6 {\n\t\ttype ipv6_addr : verdict\n\t\telements = { fd00:1::f816:3eff:fe00:1 : jump inst_10_v0 }"),
            "{f}"
        );
        assert!(
            f.contains("elements = { 10.0.0.3 : jump inst_10_v0 }"),
            "{f}"
        );
        let b = spoof_table(&sec);
        assert!(
            b.contains("\tset ports6 {\n\t\ttype ifname\n\t\telements = { \"vnet1\" }"),
            "{b}"
        );
        // Its global address and its own link-local one (the metadata service's check).
        assert!(
            b.contains("elements = { \"vnet1\" . fd00:1::f816:3eff:fe00:1, \"vnet1\" . fe80::f816:3eff:fe00:1 }"),
            "{b}"
        );
        assert!(b.contains("elements = { \"vnet1\" . 10.0.0.3 }"), "{b}");
        // A port losing its v6 address: set elements only, the v6 ones in the v6 sets.
        let mut old = full_state(&sec);
        old.instances.get_mut(&10).unwrap().version = 0;
        let mut gone = sec.clone();
        gone.instances[0].ports[0].ips_v6.clear();
        let (u, _) = incremental(&old, &gone).unwrap();
        assert!(
            u.retire
                .contains("delete element bridge novanet_spoof ports6 { \"vnet1\" }"),
            "{u:?}"
        );
        assert!(
            u.retire.contains("delete element bridge novanet_spoof port_ip6 { \"vnet1\" . fd00:1::f816:3eff:fe00:1, \"vnet1\" . fe80::f816:3eff:fe00:1 }"),
            "{u:?}"
        );
        assert!(
            u.retire.contains(
                "delete element inet novanet_filter instances6 { fd00:1::f816:3eff:fe00:1 }"
            ),
            "{u:?}"
        );
        assert!(!u.retire.contains("port_ip {"), "{u:?}");
    }

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
        let mut sec = plan(false, vec![smtp_block()]);
        sec.group_members.insert(4, vec![]);
        // And a dual-stack port with IPv6 rules.
        sec.instances.push(dual_stack());
        sec.allow_same_net = true;
        let floating = [floating()];
        // Every part of the gateway's intent: DHCP, two networks, dmz, a metadata redirect.
        let gateway = super::super::tests::two_networks_plan().gateway;
        let script = [
            replace_table("ip", NAT_TABLE, &nat_table(&gateway, &floating)),
            replace_table("ip6", NAT6_TABLE, &nat6_table(&gateway)),
            replace_table("ip6", NAT6_TABLE, &nat6_table(&dual_stack_gateway())),
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

    /// Runs the scripts in order in a private network namespace; the final ruleset.
    fn run_in_private_netns(scripts: &[String]) -> std::result::Result<String, String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("novanet-nft-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = String::from("set -e\n");
        for (n, sc) in scripts.iter().enumerate() {
            let f = dir.join(format!("{n}.nft"));
            std::fs::write(&f, sc).unwrap();
            cmd.push_str(&format!("nft -f {}\n", f.display()));
        }
        cmd.push_str("nft list ruleset\n");
        let out = std::process::Command::new("unshare")
            .args(["--net", "sh", "-c", &cmd])
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                scripts.join("\n---\n")
            ))
        }
    }

    /// An address moves from a deleted instance to a new one (and its port name with it) in
    /// one update: the map entry is repointed, never added twice.
    #[test]
    fn an_address_moving_between_instances_applies() {
        let before = plan(true, vec![]);
        let mut after = before.clone();
        after.instances[0].id = 11;
        after.instances[0].ports[0].mac = "FA:16:3E:00:00:11".parse().unwrap();
        let (u, next) = incremental(&full_state(&before), &after).expect("incremental");
        assert!(
            !u.hot.contains("add element inet novanet_filter instances"),
            "{}",
            u.hot
        );
        assert!(
            u.retire.contains(
                "add element inet novanet_filter instances { 10.0.0.2 : jump inst_11_v0 }"
            ),
            "{}",
            u.retire
        );
        assert_eq!(next, full_state(&after));
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n");
        if !root {
            eprintln!("skipping the kernel half: needs root");
            return;
        }
        let scripts = vec![replace_security(&before), u.hot, u.retire];
        let ruleset = run_in_private_netns(&scripts).unwrap_or_else(|e| panic!("{e}"));
        assert!(ruleset.contains("10.0.0.2 : jump inst_11_v0"), "{ruleset}");
        assert!(!ruleset.contains("inst_9_v0"), "{ruleset}");
        assert!(
            ruleset.contains("\"vnet0\" . fa:16:3e:00:00:11"),
            "{ruleset}"
        );
    }

    /// Every kind of incremental change applies on a real kernel after a full render.
    #[test]
    fn incremental_updates_apply() {
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n");
        if !root {
            eprintln!("skipping: needs root for a private network namespace");
            return;
        }
        let mut a = plan(true, vec![]);
        let mut scripts = vec![replace_security(&a)];
        let mut state = full_state(&a);
        // A rule change, a member added, a new instance with a new port.
        a.instances[0].rules.push(SgRule {
            proto: Some(Proto::Udp),
            from_port: Some(53),
            to_port: Some(53),
            cidr: None,
            group: None,
        });
        a.group_members
            .get_mut(&3)
            .unwrap()
            .push("10.0.0.9".parse().unwrap());
        let mut second = inst();
        second.id = 10;
        second.ports[0].device = Some("vnet1".parse().unwrap());
        second.ports[0].mac = "fa:16:3e:00:00:10".parse().unwrap();
        second.ports[0].ips = vec!["10.0.0.10".parse().unwrap()];
        a.instances.push(second);
        for change in 0..3 {
            if change == 1 {
                // The same instance changes again, and a member leaves.
                a.instances[0].rules.pop();
                a.group_members
                    .get_mut(&3)
                    .unwrap()
                    .retain(|m| m != "10.0.0.3");
            }
            if change == 2 {
                // The first instance goes, and with it its port and the group set.
                a.instances.remove(0);
                a.group_members.clear();
                a.instances[0].rules.retain(|r| r.group.is_none());
            }
            let (u, next) = incremental(&state, &a).expect("incremental");
            assert!(
                !u.hot.contains("delete") && !u.hot.contains("flush"),
                "hot must only add: {}",
                u.hot
            );
            scripts.push(u.hot);
            if !u.retire.is_empty() {
                scripts.push(u.retire);
            }
            state = next;
        }
        assert_eq!(state.instances.len(), 1);
        run_in_private_netns(&scripts).unwrap_or_else(|e| panic!("{e}"));
    }

    const TWO_NETWORKS_NFT: &str = "table ip novanet_nat {
\tmap floating_dnat {
\t\ttype ipv4_addr : ipv4_addr
\t\telements = { 68.99.26.170 : 10.1.0.5 }
\t}
\tmap floating_snat {
\t\ttype ipv4_addr : ipv4_addr
\t\telements = { 10.1.0.5 : 68.99.26.170 }
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname \"br100\" udp dport 67 accept
\t\tiifname \"br100\" tcp dport 67 accept
\t\tiifname \"br100\" udp dport 53 accept
\t\tiifname \"br100\" tcp dport 53 accept
\t\tip daddr 127.0.0.1/32 tcp dport 8775 accept
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"br100\" accept
\t\toifname \"br100\" accept
\t\tiifname \"br101\" accept
\t\toifname \"br101\" accept
\t}
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr 169.254.169.254/32 tcp dport 80 redirect to :8775
\t\tdnat ip to ip daddr map @floating_dnat
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tdnat ip to ip daddr map @floating_dnat
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 10.0.0.0/24 ip daddr 127.0.0.1/32 accept
\t\tip saddr 10.0.0.0/24 ip daddr 10.128.0.0/24 accept
\t\tip saddr 10.0.0.0/24 ip daddr 192.0.2.0/25 accept
\t\tip saddr 10.0.0.0/24 ip daddr 10.0.0.0/24 ct status != dnat accept
\t\tip saddr 10.1.0.0/24 ip daddr 127.0.0.1/32 accept
\t\tip saddr 10.1.0.0/24 ip daddr 10.128.0.0/24 accept
\t\tip saddr 10.1.0.0/24 ip daddr 192.0.2.0/25 accept
\t\tip saddr 10.1.0.0/24 ip daddr 10.1.0.0/24 ct status != dnat accept
\t\tjump source_nat
\t}
\tchain source_nat {
\t\tsnat ip to ip saddr map @floating_snat
\t\toifname \"eth1\" ip saddr 10.0.0.0/24 snat ip to 192.168.56.200
\t\toifname \"eth1\" ip saddr 10.1.0.0/24 snat ip to 192.168.56.200
\t}
}
table ip6 novanet_nat6 {
}
table inet novanet_filter {
\tmap instances {
\t\ttype ipv4_addr : verdict
\t}
\tmap instances6 {
\t\ttype ipv6_addr : verdict
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tip daddr vmap @instances
\t\tip6 daddr vmap @instances6
\t}
}
table bridge novanet_spoof {
\tset ports {
\t\ttype ifname
\t}
\tset port_mac {
\t\ttype ifname . ether_addr
\t}
\tset port_ip {
\t\ttype ifname . ipv4_addr
\t}
\tset ports6 {
\t\ttype ifname
\t}
\tset port_ip6 {
\t\ttype ifname . ipv6_addr
\t}
\tchain prerouting {
\t\ttype filter hook prerouting priority -200; policy accept;
\t\tiifname != @ports accept
\t\tiifname . ether saddr != @port_mac drop
\t\tether type arp iifname . arp saddr ether != @port_mac drop
\t\tether type arp iifname . arp saddr ip != @port_ip drop
\t\tether type ip ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept
\t\tether type ip iifname . ip saddr != @port_ip drop
\t\tether type ip udp sport 67 drop
\t\tether type ip6 iifname != @ports6 drop
\t\tether type ip6 icmpv6 type { nd-router-advert, nd-redirect } drop
\t\tether type ip6 udp sport 547 drop
\t\tether type ip6 ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report } accept
\t\tether type ip6 ip6 daddr fe80::a9fe:a9fe iifname . ip6 saddr != @port_ip6 drop
\t\tether type ip6 ip6 saddr fe80::/10 accept
\t\tether type ip6 iifname . ip6 saddr != @port_ip6 drop
\t}
}
";

    /// A controller serving two networks with dmz_cidr and a loopback metadata host: the
    /// tables taken from the rule-list renderer before the plan carried intent.
    #[test]
    fn two_networks_snapshot() {
        assert_eq!(
            render(&super::super::tests::two_networks_plan()),
            TWO_NETWORKS_NFT
        );
    }

    #[test]
    fn floating_nat_is_one_map() {
        let gateway = GatewayPlan {
            metadata: Some(novanet_core::firewall::MetadataRedirect {
                host: "192.168.56.200".parse().unwrap(),
                port: 8775.try_into().unwrap(),
            }),
            ..GatewayPlan::default()
        };
        let t = nat_table(&gateway, &[floating()]);
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
