//! The iptables driver: nova-network's chains (seed 004's layout, novanet's prefix), rendered
//! for iptables-restore and applied in one `--noflush` transaction that replaces only the
//! chains that change. Anti-spoofing, which nova did with ebtables, is nftables' bridge table
//! (`nftables::spoof_table`). Rendering is pure and snapshot-tested.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use novanet_core::firewall::{Chain, Match, Proto, Rule, Ruleset, Target};
use novanet_core::net::Ipv4Cidr;
use novanet_core::plan::{FloatingBinding, HostPlan, SecurityPlan, SgRule};
use novanet_core::valid::{CidrText, NatTo};

use super::nftables::{spoof_table, Tables, SPOOF_TABLE};
use super::{bridge_filtering, dedup_in_order, Applied, Firewall};
use crate::sys::{run, Result};

/// The iptables driver: nova's chains for the gateway, NAT and instances, nftables' bridge
/// table for anti-spoofing.
pub struct Iptables {
    /// novanet's chains as the kernel holds them (read at the first apply of this process,
    /// then as this process left them); None: read them again.
    applied: Option<OwnedChains>,
    spoof: Tables,
}

impl Iptables {
    pub fn new(state_dir: &Path) -> Iptables {
        Iptables {
            applied: None,
            spoof: Tables::new(state_dir),
        }
    }

    /// nova's instance chains for `sec` alone, with no NAT and no anti-spoofing: what
    /// `bench firewall` measures. False when they were already in place.
    pub fn apply_instance_chains(&mut self, sec: &SecurityPlan) -> Result<bool> {
        self.apply_chains(&HostPlan::default(), sec)
    }

    /// Applies the plan's chains with `sec` as the instances' filters, replacing only the
    /// chains that change; false when they were already in place. An agent restart finding
    /// its chains in place touches nothing.
    pub(super) fn apply_chains(&mut self, plan: &HostPlan, sec: &SecurityPlan) -> Result<bool> {
        let wanted = owned_chains(&iptables_restore(&with_floating(plan), Some(sec), &[]));
        let mut missing = Vec::new();
        if self.applied.is_none() {
            let saved = run("iptables-save", &[], None)?;
            let present = owned_lines(&saved);
            missing = jumps()
                .into_iter()
                .filter(|(t, b, j)| !present.contains(&(t.to_string(), format!("-A {b} -j {j}"))))
                .collect();
            self.applied = Some(owned_chains(&saved));
        }
        let text = restore_delta(
            self.applied.as_ref().expect("read above"),
            &wanted,
            &missing,
        );
        if text.is_empty() {
            return Ok(false);
        }
        if let Err(e) = run("iptables-restore", &["--noflush"], Some(&text)) {
            self.applied = None;
            return Err(e);
        }
        tracing::info!(
            chains = text.lines().filter(|l| l.starts_with(':')).count(),
            jumps_restored = missing.len(),
            "iptables: replaced novanet's changed chains"
        );
        self.applied = Some(wanted);
        Ok(true)
    }

    /// The bridge table that anti-spoofs `sec`'s ports (empty sets admit every frame).
    pub(super) fn apply_spoofing(&mut self, sec: &SecurityPlan) -> Result<bool> {
        let changed = self
            .spoof
            .apply(&[("bridge", SPOOF_TABLE, spoof_table(sec))])?;
        Ok(!changed.is_empty())
    }

    pub(super) fn forget(&mut self) {
        self.applied = None;
        self.spoof.recheck();
    }
}

impl Firewall for Iptables {
    fn apply(&mut self, plan: &HostPlan) -> Applied {
        let mut out = Applied::default();
        if !plan.security.instances.is_empty() {
            out.step(bridge_filtering(), |()| None);
        }
        out.step(self.apply_chains(plan, &plan.security), |c| {
            c.then(|| "iptables".to_string())
        });
        // nova's chains filter; the nftables bridge table only anti-spoofs.
        out.step(self.apply_spoofing(&plan.security), |c| {
            c.then(|| "anti-spoofing".to_string())
        });
        out
    }

    fn resync(&mut self) {
        self.forget();
    }
}

/// The whole iptables-restore text for a plan with `sec` as the instances' filters, and
/// the anti-spoofing table beside it.
pub(super) fn render(plan: &HostPlan, sec: &SecurityPlan) -> String {
    let mut text = iptables_restore(&with_floating(plan), Some(sec), &[]);
    text.push_str(&spoof_table(sec));
    text
}

/// The plan's rules with each floating IP's three NAT rules (DNAT in PREROUTING and OUTPUT,
/// SNAT in float-snat) after the other rules of their chains, in the bindings' order: where
/// nova's `floating_forward_rules` put them.
pub(super) fn with_floating(plan: &HostPlan) -> Ruleset {
    let host32 = |a: Ipv4Addr| CidrText::from(Ipv4Cidr::new(a, 32).expect("/32"));
    let mut rules = plan.firewall.rules.clone();
    for f in &plan.floating {
        let FloatingBinding { address, fixed, .. } = f;
        let (address, fixed) = (address.addr(), fixed.addr());
        for chain in [Chain::NatPrerouting, Chain::NatOutput] {
            rules.push(Rule {
                chain,
                m: Match {
                    dst: Some(host32(address)),
                    ..Match::default()
                },
                target: Target::Dnat(NatTo::from(fixed)),
            });
        }
        rules.push(Rule {
            chain: Chain::NatFloatSnat,
            m: Match {
                src: Some(host32(fixed)),
                ..Match::default()
            },
            target: Target::Snat(NatTo::from(address)),
        });
    }
    // Stable: each chain keeps the plan's rules first, then the floating ones.
    rules.sort_by_key(|r| r.chain);
    Ruleset { rules }
}

/// The `-A` lines of an iptables-save (or restore) text, with their table, in order, for
/// the tables novanet uses.
fn owned_lines(text: &str) -> Vec<(String, String)> {
    let mut table = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if line.starts_with("-A ") && matches!(table.as_str(), "filter" | "nat" | "mangle") {
            out.push((table.clone(), line.to_string()));
        }
    }
    out
}

/// Chain names, nova-network's layout with novanet's prefix (nova used `nova-network-`).
pub const PREFIX: &str = "novanet";

pub fn chain_name(c: Chain) -> String {
    let suffix = match c {
        Chain::FilterInput => "INPUT",
        Chain::FilterForward => "FORWARD",
        Chain::NatPrerouting => "PREROUTING",
        Chain::NatOutput => "OUTPUT",
        Chain::NatPostrouting => "POSTROUTING",
        Chain::NatSnat => "snat",
        Chain::NatFloatSnat => "float-snat",
        Chain::ManglePostrouting => "POSTROUTING",
    };
    format!("{PREFIX}-{suffix}")
}

pub const BOTTOM_CHAIN: &str = "novanet-postrouting-bottom";

pub fn table_of(c: Chain) -> &'static str {
    match c {
        Chain::FilterInput | Chain::FilterForward => "filter",
        Chain::ManglePostrouting => "mangle",
        _ => "nat",
    }
}

/// Where each owned chain is entered from: (table, builtin chain, jump target).
pub fn jumps() -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("filter", "INPUT", chain_name(Chain::FilterInput)),
        ("filter", "FORWARD", chain_name(Chain::FilterForward)),
        ("nat", "PREROUTING", chain_name(Chain::NatPrerouting)),
        ("nat", "OUTPUT", chain_name(Chain::NatOutput)),
        ("nat", "POSTROUTING", chain_name(Chain::NatPostrouting)),
        // Must stay the last POSTROUTING rule so that the SNAT exceptions come first.
        ("nat", "POSTROUTING", BOTTOM_CHAIN.to_string()),
        (
            "mangle",
            "POSTROUTING",
            chain_name(Chain::ManglePostrouting),
        ),
    ]
}

/// The jump from a builtin chain into one of novanet's: inserted first, as nova did, so that
/// a distribution's own rules ending in `-j REJECT` cannot keep packets from reaching it; the
/// bottom chain is appended, so that its SNAT comes after every other POSTROUTING rule.
pub fn jump_line(builtin: &str, target: &str) -> String {
    if target == BOTTOM_CHAIN {
        format!("-A {builtin} -j {target}")
    } else {
        format!("-I {builtin} 1 -j {target}")
    }
}

/// One rule in iptables syntax (without `-A chain`), in iptables-save's canonical order.
pub fn iptables_rule(m: &Match, t: &Target) -> String {
    let mut a: Vec<String> = Vec::new();
    let cidr = |s: &str| {
        if s.contains('/') {
            s.to_string()
        } else {
            format!("{s}/32")
        }
    };
    if let Some(s) = &m.src {
        a.push(format!("-s {}", cidr(s)));
    }
    if let Some(d) = &m.dst {
        a.push(format!("-d {}", cidr(d)));
    }
    if let Some(i) = &m.in_iface {
        a.push(format!("-i {i}"));
    }
    if let Some(o) = &m.out_iface {
        a.push(format!("-o {o}"));
    }
    if let Some(p) = m.proto {
        a.push(format!("-p {}", p.name()));
        if let Some(port) = m.dport {
            a.push(format!("-m {} --dport {port}", p.name()));
        }
    }
    if m.not_dnat {
        a.push("-m conntrack ! --ctstate DNAT".into());
    }
    a.push(match t {
        Target::Accept => "-j ACCEPT".into(),
        Target::Drop => "-j DROP".into(),
        Target::Dnat(to) => format!("-j DNAT --to-destination {to}"),
        Target::Snat(to) => format!("-j SNAT --to-source {to}"),
        Target::ChecksumFill => "-j CHECKSUM --checksum-fill".into(),
        Target::Redirect(port) => format!("-j REDIRECT --to-ports {port}"),
    });
    a.join(" ")
}

pub const LOCAL_CHAIN: &str = "novanet-local";
pub const FALLBACK_CHAIN: &str = "novanet-sg-fallback";
/// nova's `provider` chain (Liberty and earlier): the admin's drops, jumped to from every
/// instance chain right after ESTABLISHED.
pub const PROVIDER_CHAIN: &str = "novanet-provider";

fn ipt_ports(r: &SgRule, p: Proto) -> String {
    match (p, r.from_port, r.to_port) {
        (Proto::Icmp, Some(t), Some(c)) if t >= 0 && c >= 0 => {
            format!(" -m icmp --icmp-type {t}/{c}")
        }
        (Proto::Icmp, Some(t), _) if t >= 0 => format!(" -m icmp --icmp-type {t}"),
        (Proto::Icmp, _, _) => String::new(),
        (_, Some(f), Some(t)) if f == t => format!(" -m {} --dport {f}", p.name()),
        (_, Some(f), Some(t)) => format!(" -m {} --dport {f}:{t}", p.name()),
        _ => String::new(),
    }
}

/// What a rule matches, as iptables arguments (each with a leading space): one entry, or one
/// per member address for a source group, as nova wrote them; none for IPv6 sources.
fn ipt_matches(r: &SgRule, sec: &SecurityPlan) -> Vec<String> {
    let sources: Vec<String> = match (&r.cidr, r.group) {
        (Some(c), _) if c.contains(':') => return Vec::new(),
        (Some(c), _) if c == "0.0.0.0/0" => vec![String::new()],
        (Some(c), _) => vec![format!(" -s {c}")],
        (None, Some(g)) => sec
            .group_members
            .get(&g)
            .into_iter()
            .flatten()
            .map(|ip| format!(" -s {ip}/32"))
            .collect(),
        (None, None) => vec![String::new()],
    };
    let proto = r
        .proto
        .map(|p| format!(" -p {}{}", p.name(), ipt_ports(r, p)))
        .unwrap_or_default();
    sources.into_iter().map(|s| format!("{s}{proto}")).collect()
}

/// nova's per-instance chains (`nova/virt/firewall.py`), in iptables-save's spelling.
/// Returns (chain declarations, rules) for the filter table.
pub fn iptables_security(sec: &SecurityPlan) -> (Vec<String>, Vec<String>) {
    let mut decls = vec![
        format!(":{LOCAL_CHAIN} - [0:0]"),
        format!(":{FALLBACK_CHAIN} - [0:0]"),
    ];
    let mut rules = vec![format!("-A {FALLBACK_CHAIN} -j DROP")];
    decls.push(format!(":{PROVIDER_CHAIN} - [0:0]"));
    for r in &sec.provider_rules {
        for m in ipt_matches(r, sec) {
            rules.push(format!("-A {PROVIDER_CHAIN}{m} -j DROP"));
        }
    }
    for i in &sec.instances {
        let chain = format!("{PREFIX}-inst-{}", i.id);
        decls.push(format!(":{chain} - [0:0]"));
        for p in &i.ports {
            for ip in &p.ips {
                rules.push(format!("-A {LOCAL_CHAIN} -d {ip}/32 -j {chain}"));
            }
        }
        rules.push(format!("-A {chain} -m conntrack --ctstate INVALID -j DROP"));
        rules.push(format!(
            "-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        ));
        rules.push(format!("-A {chain} -j {PROVIDER_CHAIN}"));
        for p in &i.ports {
            if let Some(d) = &p.dhcp_server {
                rules.push(format!(
                    "-A {chain} -s {d}/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT"
                ));
            }
        }
        if sec.allow_same_net {
            for c in i.ports.iter().filter_map(|p| p.network_cidr.as_ref()) {
                rules.push(format!("-A {chain} -s {c} -j ACCEPT"));
            }
        }
        for r in &i.rules {
            for m in ipt_matches(r, sec) {
                rules.push(format!("-A {chain}{m} -j ACCEPT"));
            }
        }
        rules.push(format!("-A {chain} -j {FALLBACK_CHAIN}"));
    }
    dedup_in_order(&mut rules);
    (decls, rules)
}

/// novanet's chains in a restore or save text: (table, chain) to its `-A` lines in order (a
/// declared chain without rules has none).
pub type OwnedChains = BTreeMap<(String, String), Vec<String>>;

pub fn owned_chains(text: &str) -> OwnedChains {
    let prefix = format!("{PREFIX}-");
    let mut table = String::new();
    let mut out = OwnedChains::new();
    for line in text.lines() {
        let chain_of = |rest: &str| rest.split_whitespace().next().unwrap_or("").to_string();
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(decl) = line.strip_prefix(':') {
            let chain = chain_of(decl);
            if chain.starts_with(&prefix) {
                out.entry((table.clone(), chain)).or_default();
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = chain_of(rule);
            if chain.starts_with(&prefix) {
                out.entry((table.clone(), chain))
                    .or_default()
                    .push(line.to_string());
            }
        }
    }
    out
}

/// The `iptables-restore --noflush` text that takes novanet's chains from `old` to `new`:
/// each new or changed chain declared (which empties it) and refilled, each chain gone
/// emptied and deleted, and the given jumps from builtin chains added. Chains that did not
/// change are not named, so they keep their rules and counters. Empty when nothing changes.
pub fn restore_delta(
    old: &OwnedChains,
    new: &OwnedChains,
    missing_jumps: &[(&str, &str, String)],
) -> String {
    let mut out = String::new();
    for table in ["filter", "nat", "mangle"] {
        let changed: Vec<(&String, &Vec<String>)> = new
            .iter()
            .filter(|(key, lines)| key.0 == table && old.get(*key) != Some(*lines))
            .map(|((_, c), lines)| (c, lines))
            .collect();
        let gone: Vec<&String> = old
            .keys()
            .filter(|key| key.0 == table && !new.contains_key(*key))
            .map(|(_, c)| c)
            .collect();
        let jumps: Vec<String> = missing_jumps
            .iter()
            .filter(|(t, _, _)| *t == table)
            .map(|(_, builtin, target)| jump_line(builtin, target))
            .collect();
        if changed.is_empty() && gone.is_empty() && jumps.is_empty() {
            continue;
        }
        out.push_str(&format!("*{table}\n"));
        // Every declaration (which empties the chain) first: a refilled chain may jump to a
        // new one, and a chain gone may be the target of another chain gone.
        for chain in changed.iter().map(|(c, _)| *c).chain(gone.iter().copied()) {
            out.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for line in changed
            .iter()
            .flat_map(|(_, lines)| lines.iter())
            .chain(&jumps)
        {
            out.push_str(line);
            out.push('\n');
        }
        for chain in gone {
            out.push_str(&format!("-X {chain}\n"));
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// iptables-restore input (for `--noflush`) that replaces the content of every chain novanet
/// owns, and adds the jumps from the builtin chains listed in `missing_jumps`.
pub(super) fn iptables_restore(
    rules: &Ruleset,
    sec: Option<&SecurityPlan>,
    missing_jumps: &[(&str, &str, String)],
) -> String {
    let mut tables: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for c in Chain::ALL {
        tables
            .entry(table_of(c))
            .or_default()
            .push(format!(":{} - [0:0]", chain_name(c)));
    }
    if let Some(sec) = sec {
        let (decls, sec_rules) = iptables_security(sec);
        let filter = tables.entry("filter").or_default();
        filter.extend(decls);
        // Instances first: the bridge accepts that follow must not bypass their chains.
        filter.push(format!(
            "-A {} -j {LOCAL_CHAIN}",
            chain_name(Chain::FilterForward)
        ));
        filter.extend(sec_rules);
    }
    let nat = tables.entry("nat").or_default();
    nat.push(format!(":{BOTTOM_CHAIN} - [0:0]"));
    nat.push(format!(
        "-A {BOTTOM_CHAIN} -j {}",
        chain_name(Chain::NatSnat)
    ));
    nat.push(format!(
        "-A {} -j {}",
        chain_name(Chain::NatSnat),
        chain_name(Chain::NatFloatSnat)
    ));
    for r in &rules.rules {
        tables.entry(table_of(r.chain)).or_default().push(format!(
            "-A {} {}",
            chain_name(r.chain),
            iptables_rule(&r.m, &r.target)
        ));
    }
    for (table, builtin, target) in missing_jumps {
        tables
            .entry(table)
            .or_default()
            .push(jump_line(builtin, target));
    }
    let mut out = String::new();
    for name in ["filter", "nat", "mangle"] {
        if let Some(lines) = tables.get(name) {
            out.push_str(&format!("*{name}\n"));
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str("COMMIT\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use novanet_core::firewall::Proto;

    #[test]
    fn iptables_shapes_match_the_seed() {
        let dnat = iptables_rule(
            &Match {
                dst: Some("169.254.169.254/32".parse().unwrap()),
                proto: Some(Proto::Tcp),
                dport: Some(80),
                ..Match::default()
            },
            &Target::Dnat("192.168.56.200:8775".parse().unwrap()),
        );
        assert_eq!(dnat, "-d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.56.200:8775");
        let same = iptables_rule(
            &Match {
                src: Some("10.0.0.0/24".parse().unwrap()),
                dst: Some("10.0.0.0/24".parse().unwrap()),
                not_dnat: true,
                ..Match::default()
            },
            &Target::Accept,
        );
        assert_eq!(
            same,
            "-s 10.0.0.0/24 -d 10.0.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT"
        );
        let fl = iptables_rule(
            &Match {
                src: Some("10.0.0.3".parse().unwrap()),
                ..Match::default()
            },
            &Target::Snat("68.99.26.170".parse().unwrap()),
        );
        assert_eq!(fl, "-s 10.0.0.3/32 -j SNAT --to-source 68.99.26.170");
    }

    #[test]
    fn restore_text_owns_only_novanet_chains() {
        let mut rs = Ruleset::default();
        rs.push(
            Chain::FilterForward,
            Match {
                in_iface: Some("br100".parse().unwrap()),
                ..Match::default()
            },
            Target::Accept,
        );
        let text = iptables_restore(
            &rs,
            None,
            &[("filter", "FORWARD", "novanet-FORWARD".parse().unwrap())],
        );
        let want = "*filter\n:novanet-INPUT - [0:0]\n:novanet-FORWARD - [0:0]\n-A novanet-FORWARD -i br100 -j ACCEPT\n-I FORWARD 1 -j novanet-FORWARD\nCOMMIT\n\
*nat\n:novanet-PREROUTING - [0:0]\n:novanet-OUTPUT - [0:0]\n:novanet-POSTROUTING - [0:0]\n:novanet-snat - [0:0]\n:novanet-float-snat - [0:0]\n\
:novanet-postrouting-bottom - [0:0]\n-A novanet-postrouting-bottom -j novanet-snat\n-A novanet-snat -j novanet-float-snat\nCOMMIT\n\
*mangle\n:novanet-POSTROUTING - [0:0]\nCOMMIT\n";
        assert_eq!(text, want);
    }

    #[test]
    fn nova_instance_chain_snapshot() {
        use novanet_core::plan::{InstanceSecurity, PortSecurity};
        let rule = |proto, from, to, cidr: Option<&str>, group| SgRule {
            proto,
            from_port: from,
            to_port: to,
            cidr: cidr.map(|c| c.parse().unwrap()),
            group,
        };
        let sec = SecurityPlan {
            allow_same_net: true,
            instances: vec![InstanceSecurity {
                id: 9,
                uuid: "u".parse().unwrap(),
                ports: vec![PortSecurity {
                    device: Some("vnet0".parse().unwrap()),
                    mac: "fa:16:3e:2c:e8:ec".parse().unwrap(),
                    ips: vec!["10.0.0.2".parse().unwrap()],
                    network_cidr: Some("10.0.0.0/24".parse().unwrap()),
                    dhcp_server: Some("10.0.0.1".parse().unwrap()),
                }],
                rules: vec![
                    rule(
                        Some(Proto::Icmp),
                        Some(-1),
                        Some(-1),
                        Some("0.0.0.0/0"),
                        None,
                    ),
                    rule(
                        Some(Proto::Icmp),
                        Some(8),
                        Some(-1),
                        Some("192.168.11.0/24"),
                        None,
                    ),
                    rule(
                        Some(Proto::Tcp),
                        Some(22),
                        Some(22),
                        Some("0.0.0.0/0"),
                        None,
                    ),
                    rule(
                        Some(Proto::Tcp),
                        Some(80),
                        Some(81),
                        Some("192.168.10.0/24"),
                        None,
                    ),
                    rule(None, None, None, None, Some(3)),
                ],
            }],
            group_members: BTreeMap::from([(
                3,
                vec!["10.0.0.3".parse().unwrap(), "10.0.0.4".parse().unwrap()],
            )]),
            provider_rules: vec![rule(
                Some(Proto::Udp),
                Some(53),
                Some(53),
                Some("0.0.0.0/0"),
                None,
            )],
        };
        let (decls, rules) = iptables_security(&sec);
        assert_eq!(
            decls,
            [
                ":novanet-local - [0:0]",
                ":novanet-sg-fallback - [0:0]",
                ":novanet-provider - [0:0]",
                ":novanet-inst-9 - [0:0]",
            ]
        );
        assert_eq!(
            rules,
            [
                "-A novanet-sg-fallback -j DROP",
                "-A novanet-provider -p udp -m udp --dport 53 -j DROP",
                "-A novanet-local -d 10.0.0.2/32 -j novanet-inst-9",
                "-A novanet-inst-9 -m conntrack --ctstate INVALID -j DROP",
                "-A novanet-inst-9 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                "-A novanet-inst-9 -j novanet-provider",
                "-A novanet-inst-9 -s 10.0.0.1/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT",
                "-A novanet-inst-9 -s 10.0.0.0/24 -j ACCEPT",
                "-A novanet-inst-9 -p icmp -j ACCEPT",
                "-A novanet-inst-9 -s 192.168.11.0/24 -p icmp -m icmp --icmp-type 8 -j ACCEPT",
                "-A novanet-inst-9 -p tcp -m tcp --dport 22 -j ACCEPT",
                "-A novanet-inst-9 -s 192.168.10.0/24 -p tcp -m tcp --dport 80:81 -j ACCEPT",
                "-A novanet-inst-9 -s 10.0.0.3/32 -j ACCEPT",
                "-A novanet-inst-9 -s 10.0.0.4/32 -j ACCEPT",
                "-A novanet-inst-9 -j novanet-sg-fallback",
            ]
        );
    }

    #[test]
    fn a_delta_names_only_what_changed() {
        let old = owned_chains(
            "*filter\n:INPUT ACCEPT [0:0]\n:novanet-local - [0:0]\n:novanet-inst-1 - [0:0]\n:novanet-inst-2 - [0:0]\n\
             -I INPUT 1 -j novanet-INPUT\n-A novanet-local -d 10.0.0.2/32 -j novanet-inst-1\n\
             -A novanet-local -d 10.0.0.3/32 -j novanet-inst-2\n-A novanet-inst-1 -j DROP\n-A novanet-inst-2 -j DROP\nCOMMIT\n",
        );
        assert_eq!(old.len(), 3, "{old:?}");
        // Instance 2 changes a rule; instance 1 goes; instance 3 comes.
        let new = owned_chains(
            "*filter\n:novanet-local - [0:0]\n:novanet-inst-2 - [0:0]\n:novanet-inst-3 - [0:0]\n\
             -A novanet-local -d 10.0.0.3/32 -j novanet-inst-2\n-A novanet-local -d 10.0.0.4/32 -j novanet-inst-3\n\
             -A novanet-inst-2 -p icmp -j ACCEPT\n-A novanet-inst-2 -j DROP\n-A novanet-inst-3 -j DROP\nCOMMIT\n",
        );
        assert_eq!(
            restore_delta(&old, &new, &[]),
            "*filter\n:novanet-inst-2 - [0:0]\n:novanet-inst-3 - [0:0]\n:novanet-local - [0:0]\n:novanet-inst-1 - [0:0]\n\
             -A novanet-inst-2 -p icmp -j ACCEPT\n-A novanet-inst-2 -j DROP\n-A novanet-inst-3 -j DROP\n\
             -A novanet-local -d 10.0.0.3/32 -j novanet-inst-2\n-A novanet-local -d 10.0.0.4/32 -j novanet-inst-3\n\
             -X novanet-inst-1\nCOMMIT\n"
        );
        assert_eq!(restore_delta(&new, &new, &[]), "");
        assert_eq!(
            restore_delta(
                &new,
                &new,
                &[("nat", "OUTPUT", "novanet-OUTPUT".parse().unwrap())]
            ),
            "*nat\n-I OUTPUT 1 -j novanet-OUTPUT\nCOMMIT\n"
        );
    }
}
