//! The iptables driver: nova-network's chains (seed 004's layout, novanet's prefix), rendered
//! for iptables-restore and applied in one `--noflush` transaction that replaces only the
//! chains that change. Anti-spoofing, which nova did with ebtables, is nftables' bridge table
//! (`nftables::spoof_table`). Rendering is pure and snapshot-tested.

use std::collections::BTreeMap;
use std::path::Path;

use novanet_core::firewall::{GatewayPlan, Proto, VPN_PRIVATE_PORT};
use novanet_core::plan::{
    HostPlan, SecurityPlan, SgRule, METADATA_ADDRESS, METADATA_ADDRESS_V6, METADATA_PORT,
};
use novanet_core::valid::CidrText;

use super::nftables::{spoof_table, Tables, SPOOF_TABLE};
use super::{bridge_filtering, dedup_in_order, Applied, Firewall};
use crate::sys::{run, Result};

/// The iptables driver: nova's chains for the gateway, NAT and instances, nftables' bridge
/// table for anti-spoofing.
pub struct Iptables {
    /// novanet's chains as the kernel holds them (read at the first apply of this process,
    /// then as this process left them); None: read them again.
    applied: Option<OwnedChains>,
    /// The same for ip6tables (dual stack).
    applied6: Option<OwnedChains>,
    /// The builtin chains' jumps to novanet's v6 chains that are not there yet.
    jumps6_missing: Vec<(&'static str, &'static str, String)>,
    spoof: Tables,
}

impl Iptables {
    pub fn new(state_dir: &Path) -> Iptables {
        Iptables {
            applied: None,
            applied6: None,
            jumps6_missing: jumps6(),
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
        let wanted = owned_chains(&iptables_restore(&nova_rules(plan), Some(sec), &[]));
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

    /// The IPv6 chains (dual stack), replacing only those that change; false when they were
    /// in place. Without instances with IPv6 addresses and without the metadata service's
    /// DNAT none are made (and ip6tables need not be installed); once made, a table's base
    /// chains stay, empty, behind the builtin chain's jump.
    pub(super) fn apply_chains6(&mut self, plan: &HostPlan) -> Result<bool> {
        let (sec, g) = (&plan.security, &plan.gateway);
        if self.applied6.is_none() {
            let saved = match run("ip6tables-save", &[], None) {
                Ok(s) => s,
                // No ip6tables on a host that has nothing to filter over IPv6: nothing to do.
                Err(_)
                    if ip6tables_restore(sec, false, &[]).is_empty()
                        && ip6tables_nat(g, false).is_empty() =>
                {
                    return Ok(false)
                }
                Err(e) => return Err(e),
            };
            let present = owned_lines(&saved);
            self.jumps6_missing = jumps6()
                .into_iter()
                .filter(|(t, b, j)| !present.contains(&(t.to_string(), format!("-A {b} -j {j}"))))
                .collect();
            self.applied6 = Some(owned_chains(&saved));
        }
        let old = self.applied6.as_ref().expect("read above");
        let has = |table: &str| old.keys().any(|(t, _)| t == table);
        let mut text = ip6tables_restore(sec, has("filter"), &[]);
        text.push_str(&ip6tables_nat(g, has("nat")));
        let wanted = owned_chains(&text);
        let missing: Vec<(&str, &str, String)> = self
            .jumps6_missing
            .iter()
            .filter(|(t, _, _)| wanted.keys().any(|(w, _)| w == t))
            .cloned()
            .collect();
        let text = restore_delta(old, &wanted, &missing);
        if text.is_empty() {
            return Ok(false);
        }
        if let Err(e) = run("ip6tables-restore", &["--noflush"], Some(&text)) {
            self.applied6 = None;
            return Err(e);
        }
        self.jumps6_missing.retain(|j| !missing.contains(j));
        self.applied6 = Some(wanted);
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
        self.applied6 = None;
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
        out.step(self.apply_chains6(plan), |c| {
            c.then(|| "ip6tables".to_string())
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
    let mut text = iptables_restore(&nova_rules(plan), Some(sec), &[]);
    text.push_str(&ip6tables_restore(sec, false, &[]));
    text.push_str(&ip6tables_nat(&plan.gateway, false));
    text.push_str(&spoof_table(sec));
    text
}

/// The chains novanet owns, in nova-network's layout (seed 004). Each builtin hook jumps to
/// the chain of the same name; `Snat` hangs off a bottom POSTROUTING chain and starts with a
/// jump to `FloatSnat`, where floating IPs' SNAT goes, as nova's did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Chain {
    FilterInput,
    FilterForward,
    NatPrerouting,
    NatOutput,
    NatPostrouting,
    NatSnat,
    NatFloatSnat,
    ManglePostrouting,
}

impl Chain {
    pub const ALL: [Chain; 8] = [
        Chain::FilterInput,
        Chain::FilterForward,
        Chain::NatPrerouting,
        Chain::NatOutput,
        Chain::NatPostrouting,
        Chain::NatSnat,
        Chain::NatFloatSnat,
        Chain::ManglePostrouting,
    ];
}

/// One rule: its chain, and what follows `-A <chain>` in iptables-save's spelling.
pub type NovaRule = (Chain, String);

/// A CIDR as iptables-save prints it (a bare address is a /32).
fn cidr(c: &CidrText) -> String {
    if c.contains('/') {
        c.to_string()
    } else {
        format!("{c}/32")
    }
}

/// The plan's gateway intent and floating IPs as nova's `linux_net` wrote them, chain by
/// chain in `Chain` order: the DHCP, DNS and metadata accepts on INPUT; the bridges'
/// accepts on FORWARD; the metadata redirect, then each floating IP's DNAT, on PREROUTING
/// (floating DNATs on OUTPUT too); per served network the SNAT exceptions (metadata host,
/// dmz, fixed-to-fixed) on POSTROUTING and the default SNAT on snat; the floating SNATs on
/// float-snat; the DHCP checksum fill on mangle's POSTROUTING.
pub(super) fn nova_rules(plan: &HostPlan) -> Vec<NovaRule> {
    let g = &plan.gateway;
    let mut r: Vec<NovaRule> = Vec::new();
    let dhcp_bridges = || g.served.iter().filter(|n| n.serves_dhcp).map(|n| &n.bridge);
    for bridge in dhcp_bridges() {
        for port in [67, 53] {
            for proto in ["udp", "tcp"] {
                r.push((
                    Chain::FilterInput,
                    format!("-i {bridge} -p {proto} -m {proto} --dport {port} -j ACCEPT"),
                ));
            }
        }
    }
    if let Some(md) = &g.metadata {
        // nova's metadata_accept: the redirected requests must pass this host's INPUT.
        r.push((
            Chain::FilterInput,
            format!(
                "-d {}/32 -p tcp -m tcp --dport {} -j ACCEPT",
                md.host, md.port
            ),
        ));
    }
    for b in &g.forward {
        r.push((Chain::FilterForward, format!("-i {b} -j ACCEPT")));
        r.push((Chain::FilterForward, format!("-o {b} -j ACCEPT")));
    }
    for v in &g.vpn {
        r.push((
            Chain::FilterForward,
            format!(
                "-d {}/32 -p udp -m udp --dport {VPN_PRIVATE_PORT} -j ACCEPT",
                v.private
            ),
        ));
    }
    if let Some(md) = &g.metadata {
        let to = if md.is_local() {
            format!("REDIRECT --to-ports {}", md.port)
        } else {
            format!("DNAT --to-destination {}:{}", md.host, md.port)
        };
        r.push((
            Chain::NatPrerouting,
            format!("-d {METADATA_ADDRESS}/32 -p tcp -m tcp --dport {METADATA_PORT} -j {to}"),
        ));
    }
    for chain in [Chain::NatPrerouting, Chain::NatOutput] {
        for v in &g.vpn {
            r.push((
                chain,
                format!(
                    "-d {}/32 -p udp -m udp --dport {} -j DNAT --to-destination {}:{VPN_PRIVATE_PORT}",
                    v.public, v.port, v.private
                ),
            ));
        }
        for f in &plan.floating {
            r.push((
                chain,
                format!("-d {}/32 -j DNAT --to-destination {}", f.address, f.fixed),
            ));
        }
    }
    for n in &g.served {
        let c = cidr(&n.cidr);
        if let Some(md) = &g.metadata {
            r.push((
                Chain::NatPostrouting,
                format!("-s {c} -d {}/32 -j ACCEPT", md.host),
            ));
        }
        for dmz in &g.dmz {
            r.push((
                Chain::NatPostrouting,
                format!("-s {c} -d {} -j ACCEPT", cidr(dmz)),
            ));
        }
        r.push((
            Chain::NatPostrouting,
            format!("-s {c} -d {c} -m conntrack ! --ctstate DNAT -j ACCEPT"),
        ));
    }
    if let Some(snat) = &g.snat {
        let out = snat
            .out_interface
            .as_ref()
            .map(|o| format!(" -o {o}"))
            .unwrap_or_default();
        for n in &g.served {
            r.push((
                Chain::NatSnat,
                format!("-s {}{out} -j SNAT --to-source {}", cidr(&n.cidr), snat.to),
            ));
        }
    }
    for f in &plan.floating {
        r.push((
            Chain::NatFloatSnat,
            format!("-s {}/32 -j SNAT --to-source {}", f.fixed, f.address),
        ));
    }
    for bridge in dhcp_bridges() {
        r.push((
            Chain::ManglePostrouting,
            format!("-o {bridge} -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill"),
        ));
    }
    r
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

/// What a rule matches among IPv6 sources, as ip6tables arguments: rules with an IPv6 CIDR
/// (`::/0`: any), rules that name no source, and group rules (one entry per member's IPv6
/// address, as nova wrote them).
fn ip6t_matches(r: &SgRule, sec: &SecurityPlan) -> Vec<String> {
    let sources: Vec<String> = match (&r.cidr, r.group) {
        (Some(c), _) if c == "::/0" => vec![String::new()],
        (Some(c), _) if c.is_v6() => vec![format!(" -s {c}")],
        (None, None) => vec![String::new()],
        (None, Some(g)) => sec
            .group_members_v6
            .get(&g)
            .into_iter()
            .flatten()
            .map(|ip| format!(" -s {ip}/128"))
            .collect(),
        _ => return Vec::new(),
    };
    let proto = match r.proto {
        Some(Proto::Icmp) => {
            let t = match (r.from_port, r.to_port) {
                (Some(t), Some(c)) if t >= 0 && c >= 0 => {
                    format!(" -m icmp6 --icmpv6-type {t}/{c}")
                }
                (Some(t), _) if t >= 0 => format!(" -m icmp6 --icmpv6-type {t}"),
                _ => String::new(),
            };
            format!(" -p ipv6-icmp{t}")
        }
        Some(p) => format!(" -p {}{}", p.name(), ipt_ports(r, p)),
        None => String::new(),
    };
    sources.into_iter().map(|s| format!("{s}{proto}")).collect()
}

/// The same chains for IPv6 (nova's ip6tables filter when `use_ipv6`): FORWARD to the
/// instances' v6 addresses, each instance's chain with neighbour discovery, router
/// advertisements from link-local sources, its network's prefix when same-network traffic
/// is allowed, and its rules for IPv6 sources. Empty when no instance has a v6 address,
/// unless `keep` (the chains exist and FORWARD jumps to them: they stay, empty).
pub fn ip6tables_restore(
    sec: &SecurityPlan,
    keep: bool,
    missing_jumps: &[(&str, &str, String)],
) -> String {
    if !keep
        && !sec
            .instances
            .iter()
            .any(|i| i.ports.iter().any(|p| !p.ips_v6.is_empty()))
    {
        return String::new();
    }
    let forward = chain_name(Chain::FilterForward);
    let mut decls = vec![
        format!(":{forward} - [0:0]"),
        format!(":{LOCAL_CHAIN} - [0:0]"),
        format!(":{FALLBACK_CHAIN} - [0:0]"),
        format!(":{PROVIDER_CHAIN} - [0:0]"),
    ];
    let mut rules = vec![
        format!("-A {forward} -j {LOCAL_CHAIN}"),
        format!("-A {FALLBACK_CHAIN} -j DROP"),
    ];
    for m in sec.provider_rules.iter().flat_map(|r| ip6t_matches(r, sec)) {
        rules.push(format!("-A {PROVIDER_CHAIN}{m} -j DROP"));
    }
    for i in sec
        .instances
        .iter()
        .filter(|i| i.ports.iter().any(|p| !p.ips_v6.is_empty()))
    {
        let chain = format!("{PREFIX}-inst-{}", i.id);
        decls.push(format!(":{chain} - [0:0]"));
        for ip in i.ports.iter().flat_map(|p| &p.ips_v6) {
            rules.push(format!("-A {LOCAL_CHAIN} -d {ip}/128 -j {chain}"));
        }
        rules.push(format!("-A {chain} -m conntrack --ctstate INVALID -j DROP"));
        rules.push(format!(
            "-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        ));
        rules.push(format!("-A {chain} -j {PROVIDER_CHAIN}"));
        for t in [135, 136] {
            rules.push(format!(
                "-A {chain} -p ipv6-icmp -m icmp6 --icmpv6-type {t} -j ACCEPT"
            ));
        }
        rules.push(format!(
            "-A {chain} -s fe80::/10 -p ipv6-icmp -m icmp6 --icmpv6-type 134 -j ACCEPT"
        ));
        if sec.allow_same_net {
            for c in i.ports.iter().filter_map(|p| p.network_cidr_v6.as_ref()) {
                rules.push(format!("-A {chain} -s {c} -j ACCEPT"));
            }
        }
        for m in i.rules.iter().flat_map(|r| ip6t_matches(r, sec)) {
            rules.push(format!("-A {chain}{m} -j ACCEPT"));
        }
        rules.push(format!("-A {chain} -j {FALLBACK_CHAIN}"));
    }
    dedup_in_order(&mut rules);
    let mut out = String::from("*filter\n");
    for l in decls.iter().chain(&rules) {
        out.push_str(l);
        out.push('\n');
    }
    for (_, builtin, target) in missing_jumps {
        out.push_str(&jump_line(builtin, target));
        out.push('\n');
    }
    out.push_str("COMMIT\n");
    out
}

/// Where each owned IPv6 chain is entered from: (table, builtin chain, jump target).
pub fn jumps6() -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("filter", "FORWARD", chain_name(Chain::FilterForward)),
        ("nat", "PREROUTING", chain_name(Chain::NatPrerouting)),
    ]
}

/// ip6tables' nat table: each listed bridge's requests to `[fe80::a9fe:a9fe]:80` DNATed to
/// the agent's port on the same address (the metadata service over IPv6). Empty without
/// it, unless `keep` (the chain exists and PREROUTING jumps to it: it stays, empty).
pub fn ip6tables_nat(g: &GatewayPlan, keep: bool) -> String {
    let chain = chain_name(Chain::NatPrerouting);
    let rules: Vec<String> = g
        .metadata_v6
        .iter()
        .flat_map(|md| {
            md.bridges.iter().map(|b| {
                format!(
                    "-A {chain} -d {METADATA_ADDRESS_V6}/128 -i {b} -p tcp -m tcp --dport {METADATA_PORT} -j DNAT --to-destination [{METADATA_ADDRESS_V6}]:{}",
                    md.port
                )
            })
        })
        .collect();
    if rules.is_empty() && !keep {
        return String::new();
    }
    let mut out = format!("*nat\n:{chain} - [0:0]\n");
    for r in rules {
        out.push_str(&r);
        out.push('\n');
    }
    out.push_str("COMMIT\n");
    out
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
    rules: &[NovaRule],
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
    for (chain, rule) in rules {
        tables
            .entry(table_of(*chain))
            .or_default()
            .push(format!("-A {} {rule}", chain_name(*chain)));
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
pub(crate) mod tests {
    use super::*;
    use novanet_core::firewall::Proto;

    #[test]
    fn iptables_shapes_match_the_seed() {
        use novanet_core::firewall::{GatewayPlan, MetadataRedirect, ServedNetwork};
        use novanet_core::plan::FloatingBinding;
        let plan = HostPlan {
            gateway: GatewayPlan {
                served: vec![ServedNetwork {
                    bridge: "br100".parse().unwrap(),
                    cidr: "10.0.0.0/24".parse().unwrap(),
                    serves_dhcp: false,
                }],
                metadata: Some(MetadataRedirect {
                    host: "192.168.56.200".parse().unwrap(),
                    port: 8775.try_into().unwrap(),
                }),
                ..GatewayPlan::default()
            },
            floating: vec![FloatingBinding {
                address: "68.99.26.170".parse().unwrap(),
                interface: "eth1".parse().unwrap(),
                fixed: "10.0.0.3".parse().unwrap(),
            }],
            ..HostPlan::default()
        };
        let rules: Vec<String> = nova_rules(&plan).into_iter().map(|(_, r)| r).collect();
        for want in [
            "-d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.56.200:8775",
            "-s 10.0.0.0/24 -d 10.0.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT",
            "-s 10.0.0.3/32 -j SNAT --to-source 68.99.26.170",
        ] {
            assert!(rules.iter().any(|r| r == want), "{want} in {rules:?}");
        }
    }

    #[test]
    fn restore_text_owns_only_novanet_chains() {
        let rules = [(Chain::FilterForward, "-i br100 -j ACCEPT".to_string())];
        let text = iptables_restore(
            &rules,
            None,
            &[("filter", "FORWARD", "novanet-FORWARD".parse().unwrap())],
        );
        let want = "*filter\n:novanet-INPUT - [0:0]\n:novanet-FORWARD - [0:0]\n-A novanet-FORWARD -i br100 -j ACCEPT\n-I FORWARD 1 -j novanet-FORWARD\nCOMMIT\n\
*nat\n:novanet-PREROUTING - [0:0]\n:novanet-OUTPUT - [0:0]\n:novanet-POSTROUTING - [0:0]\n:novanet-snat - [0:0]\n:novanet-float-snat - [0:0]\n\
:novanet-postrouting-bottom - [0:0]\n-A novanet-postrouting-bottom -j novanet-snat\n-A novanet-snat -j novanet-float-snat\nCOMMIT\n\
*mangle\n:novanet-POSTROUTING - [0:0]\nCOMMIT\n";
        assert_eq!(text, want);
    }

    pub(crate) const TWO_NETWORKS_IPTABLES: &str = "*filter
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
-A novanet-INPUT -d 127.0.0.1/32 -p tcp -m tcp --dport 8775 -j ACCEPT
-A novanet-FORWARD -i br100 -j ACCEPT
-A novanet-FORWARD -o br100 -j ACCEPT
-A novanet-FORWARD -i br101 -j ACCEPT
-A novanet-FORWARD -o br101 -j ACCEPT
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
-A novanet-PREROUTING -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8775
-A novanet-PREROUTING -d 68.99.26.170/32 -j DNAT --to-destination 10.1.0.5
-A novanet-OUTPUT -d 68.99.26.170/32 -j DNAT --to-destination 10.1.0.5
-A novanet-POSTROUTING -s 10.0.0.0/24 -d 127.0.0.1/32 -j ACCEPT
-A novanet-POSTROUTING -s 10.0.0.0/24 -d 10.128.0.0/24 -j ACCEPT
-A novanet-POSTROUTING -s 10.0.0.0/24 -d 192.0.2.0/25 -j ACCEPT
-A novanet-POSTROUTING -s 10.0.0.0/24 -d 10.0.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT
-A novanet-POSTROUTING -s 10.1.0.0/24 -d 127.0.0.1/32 -j ACCEPT
-A novanet-POSTROUTING -s 10.1.0.0/24 -d 10.128.0.0/24 -j ACCEPT
-A novanet-POSTROUTING -s 10.1.0.0/24 -d 192.0.2.0/25 -j ACCEPT
-A novanet-POSTROUTING -s 10.1.0.0/24 -d 10.1.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT
-A novanet-snat -s 10.0.0.0/24 -o eth1 -j SNAT --to-source 192.168.56.200
-A novanet-snat -s 10.1.0.0/24 -o eth1 -j SNAT --to-source 192.168.56.200
-A novanet-float-snat -s 10.1.0.5/32 -j SNAT --to-source 68.99.26.170
COMMIT
*mangle
:novanet-POSTROUTING - [0:0]
-A novanet-POSTROUTING -o br100 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill
COMMIT
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

    /// The metadata service over IPv6 in ip6tables' nat table: a DNAT per bridge; nothing
    /// without it, unless the chain exists (it stays, empty, behind PREROUTING's jump).
    #[test]
    fn ip6tables_nat_snapshot() {
        use novanet_core::firewall::MetadataV6;
        let g = GatewayPlan {
            metadata_v6: Some(MetadataV6 {
                bridges: vec!["br100".parse().unwrap()],
                port: std::num::NonZeroU16::new(9697).unwrap(),
            }),
            ..GatewayPlan::default()
        };
        assert_eq!(
            ip6tables_nat(&g, false),
            "*nat
:novanet-PREROUTING - [0:0]
-A novanet-PREROUTING -d fe80::a9fe:a9fe/128 -i br100 -p tcp -m tcp --dport 80 -j DNAT --to-destination [fe80::a9fe:a9fe]:9697
COMMIT
"
        );
        assert_eq!(ip6tables_nat(&GatewayPlan::default(), false), "");
        assert_eq!(
            ip6tables_nat(&GatewayPlan::default(), true),
            "*nat\n:novanet-PREROUTING - [0:0]\nCOMMIT\n"
        );
        // Only PREROUTING's jump is added where only the nat chain is wanted.
        let wanted = owned_chains(&ip6tables_nat(&g, false));
        let missing: Vec<_> = jumps6()
            .into_iter()
            .filter(|(t, _, _)| wanted.keys().any(|(w, _)| w == t))
            .collect();
        assert!(restore_delta(&OwnedChains::new(), &wanted, &missing)
            .contains("-I PREROUTING 1 -j novanet-PREROUTING\nCOMMIT"));
        assert!(!restore_delta(&OwnedChains::new(), &wanted, &missing).contains("FORWARD"));
    }

    /// Dual stack in ip6tables: the instance's v6 address dispatched to its chain, ND and
    /// link-local RAs accepted, the prefix when same-network traffic is allowed, only the
    /// rules for IPv6 sources (ICMP as ICMPv6), the provider's v6 drops; nothing at all
    /// without a v6 address.
    #[test]
    fn ip6tables_snapshot() {
        use novanet_core::plan::{InstanceSecurity, PortSecurity};
        let rule = |proto, from, to, cidr: &str| SgRule {
            proto: Some(proto),
            from_port: Some(from),
            to_port: Some(to),
            cidr: Some(cidr.parse().unwrap()),
            group: None,
        };
        let mut sec = SecurityPlan {
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
                    ips_v6: vec![],
                    network_cidr_v6: None,
                }],
                rules: vec![rule(Proto::Tcp, 80, 80, "0.0.0.0/0")],
            }],
            ..SecurityPlan::default()
        };
        assert_eq!(ip6tables_restore(&sec, false, &[]), "");
        let p = &mut sec.instances[0].ports[0];
        p.ips_v6 = vec!["fd00:1::f816:3eff:fe2c:e8ec".parse().unwrap()];
        p.network_cidr_v6 = Some("fd00:1::/64".parse().unwrap());
        sec.instances[0]
            .rules
            .push(rule(Proto::Tcp, 22, 22, "::/0"));
        sec.instances[0]
            .rules
            .push(rule(Proto::Icmp, 128, 0, "fd00:2::/64"));
        sec.provider_rules
            .push(rule(Proto::Tcp, 25, 25, "2001:db8::/32"));
        assert_eq!(
            ip6tables_restore(
                &sec,
                false,
                &[("filter", "FORWARD", chain_name(Chain::FilterForward))]
            ),
            "*filter
:novanet-FORWARD - [0:0]
:novanet-local - [0:0]
:novanet-sg-fallback - [0:0]
:novanet-provider - [0:0]
:novanet-inst-9 - [0:0]
-A novanet-FORWARD -j novanet-local
-A novanet-sg-fallback -j DROP
-A novanet-provider -s 2001:db8::/32 -p tcp -m tcp --dport 25 -j DROP
-A novanet-local -d fd00:1::f816:3eff:fe2c:e8ec/128 -j novanet-inst-9
-A novanet-inst-9 -m conntrack --ctstate INVALID -j DROP
-A novanet-inst-9 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A novanet-inst-9 -j novanet-provider
-A novanet-inst-9 -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT
-A novanet-inst-9 -p ipv6-icmp -m icmp6 --icmpv6-type 136 -j ACCEPT
-A novanet-inst-9 -s fe80::/10 -p ipv6-icmp -m icmp6 --icmpv6-type 134 -j ACCEPT
-A novanet-inst-9 -s fd00:1::/64 -j ACCEPT
-A novanet-inst-9 -p tcp -m tcp --dport 22 -j ACCEPT
-A novanet-inst-9 -s fd00:2::/64 -p ipv6-icmp -m icmp6 --icmpv6-type 128/0 -j ACCEPT
-A novanet-inst-9 -j novanet-sg-fallback
-I FORWARD 1 -j novanet-FORWARD
COMMIT
"
        );
        // The v4 chains never carry a v6 rule.
        let (_, v4) = iptables_security(&sec);
        assert!(
            !v4.iter()
                .any(|l| l.contains("fd00") || l.contains("2001:db8")),
            "{v4:?}"
        );
    }

    /// A rule from a group admits its members' IPv6 addresses in ip6tables, one rule each.
    #[test]
    fn ip6tables_group_rules_list_members_v6_addresses() {
        use novanet_core::plan::{InstanceSecurity, PortSecurity};
        let sec = SecurityPlan {
            instances: vec![InstanceSecurity {
                id: 9,
                uuid: "u".parse().unwrap(),
                ports: vec![PortSecurity {
                    device: Some("vnet0".parse().unwrap()),
                    mac: "fa:16:3e:2c:e8:ec".parse().unwrap(),
                    ips: vec!["10.0.0.2".parse().unwrap()],
                    network_cidr: None,
                    dhcp_server: None,
                    ips_v6: vec!["fd00:1::f816:3eff:fe2c:e8ec".parse().unwrap()],
                    network_cidr_v6: None,
                }],
                rules: vec![SgRule {
                    proto: Some(Proto::Tcp),
                    from_port: Some(22),
                    to_port: Some(22),
                    cidr: None,
                    group: Some(3),
                }],
            }],
            group_members: BTreeMap::from([(3, vec!["10.0.0.4".parse().unwrap()])]),
            group_members_v6: BTreeMap::from([(
                3,
                vec![
                    "fd00:1::f816:3eff:fe00:4".parse().unwrap(),
                    "fd00:1::f816:3eff:fe00:5".parse().unwrap(),
                ],
            )]),
            ..SecurityPlan::default()
        };
        let text = ip6tables_restore(&sec, false, &[]);
        for m in ["4", "5"] {
            let line = format!(
                "-A novanet-inst-9 -s fd00:1::f816:3eff:fe00:{m}/128 -p tcp -m tcp --dport 22 -j ACCEPT\n"
            );
            assert!(text.contains(&line), "{text}");
        }
        let (_, v4) = iptables_security(&sec);
        assert!(
            v4.contains(
                &"-A novanet-inst-9 -s 10.0.0.4/32 -p tcp -m tcp --dport 22 -j ACCEPT".to_string()
            ),
            "{v4:?}"
        );
    }

    /// A controller serving two networks with dmz_cidr and a loopback metadata host: the
    /// text taken from the rule-list renderer before the plan carried intent.
    #[test]
    fn two_networks_snapshot() {
        let text = render(
            &super::super::tests::two_networks_plan(),
            &SecurityPlan::default(),
        );
        assert_eq!(text, TWO_NETWORKS_IPTABLES);
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
                    ips_v6: vec![],
                    network_cidr_v6: None,
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
            group_members_v6: BTreeMap::new(),
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
