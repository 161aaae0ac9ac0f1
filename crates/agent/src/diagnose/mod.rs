//! `novanet diagnose`: the seeds' troubleshooting sections as checks of this host's kernel
//! against its plan. Each check is a pure function of the plan and of facts gathered once
//! (`gather`: sysctls, links, processes, rules, files), and says ok or wrong with what was
//! expected, what was found and the command that fixes it. The agent runs the same checks
//! periodically and sends them with its heartbeat.

mod gather;
pub mod nft;

use std::collections::BTreeMap;
use std::fmt::Write;

use novanet_core::config::FirewallDriver;
use novanet_core::plan::HostPlan;
use serde::{Deserialize, Serialize};

pub use gather::{gather, load_last_apply, load_plan, save_last_apply, save_plan};

use crate::links::Link;

/// One check's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked: `ip_forward`, `promiscuous`, `dnsmasq`, `drift`, ...
    pub check: String,
    /// What it is checked on: an interface, a network's bridge, an address, a table.
    #[serde(default)]
    pub subject: String,
    pub ok: bool,
    pub expected: String,
    pub found: String,
    /// The command that makes it right (empty when ok).
    #[serde(default)]
    pub fix: String,
}

/// A host's checks at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub host: String,
    /// The generation of the plan checked against.
    pub generation: u64,
    /// Unix seconds.
    pub at: i64,
    pub checks: Vec<Check>,
}

impl Diagnosis {
    pub fn wrong(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }

    /// The checks as a person reads them: one line each, the fix under what is wrong.
    pub fn text(&self) -> String {
        let mut out = format!(
            "host {}: plan generation {}, checked at {} (unix); {} check(s), {} wrong\n",
            self.host,
            self.generation,
            self.at,
            self.checks.len(),
            self.wrong().count()
        );
        for c in &self.checks {
            let what = if c.subject.is_empty() {
                c.check.clone()
            } else {
                format!("{} {}", c.check, c.subject)
            };
            let _ = writeln!(
                out,
                "{:<6} {what}: expected {}; found {}",
                if c.ok { "ok" } else { "WRONG" },
                c.expected,
                c.found
            );
            if !c.ok && !c.fix.is_empty() {
                let _ = writeln!(out, "       fix: {}", c.fix);
            }
        }
        out
    }
}

/// What the agent's last apply did (kept in its state directory for `diagnose`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LastApply {
    pub generation: u64,
    /// Unix seconds when it ended.
    pub at: i64,
    pub seconds: f64,
    pub errors: Vec<String>,
}

/// A running dnsmasq (in this network namespace).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub args: Vec<String>,
}

/// Everything the checks look at, gathered once.
#[derive(Debug, Default)]
pub struct Facts {
    /// `/proc/sys` paths (`net/ipv4/ip_forward`) to their values; absent: no such sysctl.
    pub sysctls: BTreeMap<String, String>,
    pub links: BTreeMap<String, Link>,
    pub dnsmasq: Vec<Process>,
    /// Per served network's bridge: the argv novanet starts its dnsmasq with.
    pub dnsmasq_args: BTreeMap<String, Vec<String>>,
    /// Running radvd processes, and per advertised bridge the argv novanet starts it with.
    pub radvd: Vec<Process>,
    pub radvd_args: BTreeMap<String, Vec<String>>,
    /// Per served network's bridge: the hosts lines dnsmasq was given (base file and
    /// watched directory).
    pub hosts_lines: BTreeMap<String, Vec<String>>,
    /// `iptables-save`, when the iptables driver is used.
    pub iptables_save: Option<String>,
    /// `nft -a list ruleset`.
    pub ruleset: Option<String>,
    /// For the nftables driver: the NAT table as the kernel holds it and as the kernel
    /// spells the rendered one (loaded in a private namespace); and where the fix script is.
    pub nat_live: Option<nft::TableContent>,
    pub nat_expected: Option<nft::TableContent>,
    pub nat_fix_file: String,
    /// The restore text of novanet's chains, for the iptables fix.
    pub iptables_fix_file: String,
    /// Whether the metadata redirect's target answered HTTP, or why not.
    pub metadata: Option<Result<(), String>>,
    pub last_apply: Option<LastApply>,
    /// Why a fact could not be gathered (a tool missing, a file unreadable).
    pub unknown: Vec<(String, String)>,
}

fn check(
    check: &str,
    subject: &str,
    ok: bool,
    expected: String,
    found: String,
    fix: String,
) -> Check {
    Check {
        check: check.into(),
        subject: subject.into(),
        ok,
        expected,
        found,
        fix: if ok { String::new() } else { fix },
    }
}

/// Every check of `plan` over `facts`, in the order an operator would look.
pub fn run_checks(plan: &HostPlan, f: &Facts) -> Vec<Check> {
    let mut out = Vec::new();
    sysctls(plan, f, &mut out);
    links(plan, f, &mut out);
    dnsmasq(plan, f, &mut out);
    radvd(plan, f, &mut out);
    nat(plan, f, &mut out);
    metadata(plan, f, &mut out);
    drift(plan, f, &mut out);
    other_tables(plan, f, &mut out);
    last_apply(plan, f, &mut out);
    for (what, why) in &f.unknown {
        out.push(check(
            what,
            "",
            false,
            "readable".into(),
            why.clone(),
            "run diagnose as root, with iproute2 and nftables installed".into(),
        ));
    }
    out
}

fn sysctl_value<'a>(f: &'a Facts, path: &str) -> &'a str {
    f.sysctls.get(path).map(String::as_str).unwrap_or("absent")
}

/// The interfaces whose reverse-path filter matters: the bridges, what they enslave, and
/// where floating addresses and SNAT go.
pub fn rp_filter_interfaces(plan: &HostPlan) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for b in &plan.bridges {
        v.push(b.name.to_string());
        if let Some(i) = &b.interface {
            v.push(i.to_string());
        }
    }
    v.extend(plan.floating.iter().map(|f| f.interface.to_string()));
    if let Some(i) = plan
        .gateway
        .snat
        .as_ref()
        .and_then(|s| s.out_interface.as_ref())
    {
        v.push(i.to_string());
    }
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|i| seen.insert(i.clone()));
    v
}

fn sysctls(plan: &HostPlan, f: &Facts, out: &mut Vec<Check>) {
    if plan.ip_forward {
        let v = sysctl_value(f, "net/ipv4/ip_forward");
        out.push(check(
            "ip_forward",
            "",
            v == "1",
            "1 (this host routes its networks' traffic)".into(),
            v.into(),
            "sysctl -w net.ipv4.ip_forward=1".into(),
        ));
    }
    let all = sysctl_value(f, "net/ipv4/conf/all/rp_filter");
    for i in rp_filter_interfaces(plan) {
        let path = format!("net/ipv4/conf/{i}/rp_filter");
        let Some(own) = f.sysctls.get(&path) else {
            continue; // no such interface: the links checks say so
        };
        // The kernel uses the larger of `all` and the interface's own value.
        let strict = own == "1" || all == "1";
        let mut fix = Vec::new();
        if own == "1" {
            fix.push(format!("sysctl -w net.ipv4.conf.{i}.rp_filter=0"));
        }
        if all == "1" {
            fix.push("sysctl -w net.ipv4.conf.all.rp_filter=0".into());
        }
        out.push(check(
            "rp_filter",
            &i,
            !strict,
            "0 or 2 (strict reverse-path filtering drops replies that come back another way)"
                .into(),
            format!("{i} {own}, all {all}"),
            fix.join(" && "),
        ));
    }
    // The drivers filter instances' bridged traffic in netfilter's IP hooks.
    let filters =
        !plan.security.instances.is_empty() && plan.firewall_driver != FirewallDriver::Noop;
    if filters {
        let v = sysctl_value(f, "net/bridge/bridge-nf-call-iptables");
        out.push(check(
            "bridge-nf-call-iptables",
            "",
            v == "1",
            format!(
                "1 (the {} driver filters instances' bridged traffic)",
                plan.firewall_driver.name()
            ),
            v.into(),
            "sysctl -w net.bridge.bridge-nf-call-iptables=1".into(),
        ));
    }
}

fn has_flag(l: &Link, flag: &str) -> bool {
    l.flags.iter().any(|f| f == flag)
}

fn links(plan: &HostPlan, f: &Facts, out: &mut Vec<Check>) {
    for b in &plan.bridges {
        let br = f.links.get(b.name.as_str());
        let found = match br {
            None => "absent".to_string(),
            Some(l) if !has_flag(l, "UP") => "down".into(),
            Some(_) => "up".into(),
        };
        out.push(check(
            "bridge",
            b.name.as_str(),
            found == "up",
            "present and up".into(),
            found,
            format!(
                "ip link add {0} type bridge forward_delay 0 stp_state 0; ip link set {0} up",
                b.name
            ),
        ));
        if let Some(i) = &b.interface {
            let l = f.links.get(i.as_str());
            let master = l.and_then(|l| l.master.clone());
            out.push(check(
                "bridge member",
                i.as_str(),
                master.as_deref() == Some(b.name.as_str()),
                format!("enslaved to {}", b.name),
                match (l, &master) {
                    (None, _) => "no such interface".into(),
                    (Some(_), None) => "not in a bridge".into(),
                    (Some(_), Some(m)) => format!("in {m}"),
                },
                format!("ip link set {i} master {}", b.name),
            ));
            // seeds 000, 001: frames for the VMs' MACs must be let in.
            if let Some(l) = l {
                let promisc = has_flag(l, "PROMISC");
                out.push(check(
                    "promiscuous",
                    i.as_str(),
                    promisc,
                    "promiscuous (frames for the instances' MACs come in through it)".into(),
                    if promisc {
                        "promiscuous"
                    } else {
                        "not promiscuous"
                    }
                    .into(),
                    format!("ip link set {i} promisc on"),
                ));
            }
        }
        if let Some(gw) = &b.gateway {
            let has = br.is_some_and(|l| {
                l.addr_info.iter().any(|a| {
                    a.family == "inet" && format!("{}/{}", a.local, a.prefixlen) == gw.to_string()
                })
            });
            let found = br
                .map(|l| {
                    let a: Vec<String> = l
                        .addr_info
                        .iter()
                        .filter(|a| a.family == "inet")
                        .map(|a| format!("{}/{}", a.local, a.prefixlen))
                        .collect();
                    if a.is_empty() {
                        "no IPv4 address".into()
                    } else {
                        a.join(", ")
                    }
                })
                .unwrap_or_else(|| "no bridge".into());
            let brd = b
                .broadcast
                .as_ref()
                .map(|x| format!(" brd {x}"))
                .unwrap_or_default();
            out.push(check(
                "gateway address",
                b.name.as_str(),
                has,
                gw.to_string(),
                found,
                format!("ip addr add {gw}{brd} dev {}", b.name),
            ));
        }
    }
    for fl in &plan.floating {
        let want = format!("{}/32", fl.address);
        let l = f.links.get(fl.interface.as_str());
        let has = l.is_some_and(|l| {
            l.addr_info
                .iter()
                .any(|a| a.family == "inet" && format!("{}/{}", a.local, a.prefixlen) == want)
        });
        out.push(check(
            "floating address",
            fl.address.as_str(),
            has,
            format!("{want} on {}", fl.interface),
            if l.is_none() {
                format!("no interface {}", fl.interface)
            } else if has {
                format!("{want} on {}", fl.interface)
            } else {
                format!("not on {}", fl.interface)
            },
            format!("ip addr add {want} dev {}", fl.interface),
        ));
    }
}

/// One radvd per advertised bridge, with the plan's configuration (radvd forks a
/// privilege-separated child: a child of a server is not another server).
fn radvd(plan: &HostPlan, f: &Facts, out: &mut Vec<Check>) {
    for r in &plan.ra {
        let bridge = r.bridge.as_str();
        let want = f.radvd_args.get(bridge);
        let mine: Vec<&Process> = f
            .radvd
            .iter()
            .filter(|p| want.is_some_and(|w| p.args.get(1..) == Some(w.as_slice())))
            .collect();
        let servers: Vec<&Process> = mine
            .iter()
            .copied()
            .filter(|p| !mine.iter().any(|q| q.pid == p.ppid))
            .collect();
        out.push(check(
            "radvd",
            bridge,
            servers.len() == 1,
            format!("one radvd advertising {} on {bridge}", r.prefix),
            match servers.as_slice() {
                [] => "not running".into(),
                [one] => format!("one, PID {}", one.pid),
                many => format!("{} servers", many.len()),
            },
            format!(
                "systemctl restart novanet-agent (the agent starts it: radvd {})",
                want.map(|w| w.join(" ")).unwrap_or_default()
            ),
        ));
    }
    if !plan.ra.is_empty() {
        let v = sysctl_value(f, "net/ipv6/conf/all/forwarding");
        out.push(check(
            "ipv6 forwarding",
            "",
            v == "1",
            "1 (this host routes its networks' IPv6 traffic)".into(),
            v.into(),
            "sysctl -w net.ipv6.conf.all.forwarding=1".into(),
        ));
    }
}

fn dnsmasq(plan: &HostPlan, f: &Facts, out: &mut Vec<Check>) {
    for d in &plan.dhcp {
        let bridge = d.bridge.as_str();
        let listen = format!("--listen-address={}", d.listen_address);
        let mine: Vec<&Process> = f
            .dnsmasq
            .iter()
            .filter(|p| p.args.contains(&listen))
            .collect();
        // dnsmasq forks a helper for its --dhcp-script: a child of a server is not another
        // server (the seeds' "two processes, a parent and a child").
        let servers: Vec<&Process> = mine
            .iter()
            .copied()
            .filter(|p| !mine.iter().any(|q| q.pid == p.ppid))
            .collect();
        let want = f.dnsmasq_args.get(bridge);
        let right = |p: &Process| want.is_some_and(|w| p.args.get(1..) == Some(w.as_slice()));
        let fix = match servers.as_slice() {
            // dnsmasq's lease hook asks the agent for the leases at start: without the agent
            // it does not start, and with it running the agent starts it within 2 s.
            [] => format!(
                "systemctl restart novanet-agent (the agent starts it: dnsmasq {})",
                want.map(|w| w.join(" ")).unwrap_or_default()
            ),
            [one] if !right(one) => format!(
                "kill {} (the agent starts it again with the plan's arguments)",
                one.pid
            ),
            many => {
                let extra: Vec<String> = many
                    .iter()
                    .filter(|p| !right(p))
                    .map(|p| p.pid.to_string())
                    .collect();
                format!("kill {}", extra.join(" "))
            }
        };
        let found = match servers.as_slice() {
            [] => "not running".to_string(),
            [one] if right(one) => format!("one, PID {}", one.pid),
            [one] => format!("PID {} with other arguments", one.pid),
            many => format!(
                "{} servers: PIDs {}",
                many.len(),
                many.iter()
                    .map(|p| p.pid.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        out.push(check(
            "dnsmasq",
            bridge,
            servers.len() == 1 && right(servers[0]),
            format!("one dnsmasq for {bridge} listening on {}", d.listen_address),
            found,
            fix,
        ));
        let given = f.hosts_lines.get(bridge).cloned().unwrap_or_default();
        let missing: Vec<String> = d
            .hosts
            .iter()
            .map(|h| h.line(&d.domain))
            .filter(|l| !given.contains(l))
            .collect();
        let hosts_file = f
            .dnsmasq_args
            .get(bridge)
            .and_then(|a| a.iter().find_map(|x| x.strip_prefix("--dhcp-hostsfile=")))
            .unwrap_or("the hosts file")
            .to_string();
        let pid = servers
            .first()
            .map(|p| p.pid.to_string())
            .unwrap_or_else(|| "PID".into());
        out.push(check(
            "dhcp hosts",
            bridge,
            missing.is_empty(),
            format!("{} host(s) of the plan in {hosts_file}", d.hosts.len()),
            if missing.is_empty() {
                format!("all {}", d.hosts.len())
            } else {
                format!("missing {}", missing.join("; "))
            },
            format!(
                "{} >> {hosts_file}; kill -HUP {pid}",
                missing
                    .iter()
                    .map(|l| format!("echo '{l}'"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ));
    }
}

/// The floating IPs' NAT and the default SNAT, as the seeds check them with
/// `iptables -L -nv -t nat`.
fn nat(plan: &HostPlan, f: &Facts, out: &mut Vec<Check>) {
    match plan.firewall_driver {
        FirewallDriver::Iptables | FirewallDriver::Noop => {
            let Some(save) = &f.iptables_save else { return };
            let lines: Vec<&str> = save.lines().collect();
            for fl in &plan.floating {
                let dnat = format!(
                    "-A novanet-PREROUTING -d {}/32 -j DNAT --to-destination {}",
                    fl.address, fl.fixed
                );
                let snat = format!(
                    "-A novanet-float-snat -s {}/32 -j SNAT --to-source {}",
                    fl.fixed, fl.address
                );
                for (what, rule) in [("DNAT", &dnat), ("SNAT", &snat)] {
                    let has = lines.contains(&rule.as_str());
                    out.push(check(
                        "nat",
                        &format!("{} {what}", fl.address),
                        has,
                        rule.clone(),
                        if has { "present" } else { "missing" }.into(),
                        format!("iptables -t nat {rule}"),
                    ));
                }
            }
        }
        FirewallDriver::Nftables => {
            let Some(live) = &f.nat_live else { return };
            for fl in &plan.floating {
                for (map, pair) in [
                    ("floating_dnat", format!("{} : {}", fl.address, fl.fixed)),
                    ("floating_snat", format!("{} : {}", fl.fixed, fl.address)),
                ] {
                    let has = live.elements.contains(&(map.to_string(), pair.clone()));
                    out.push(check(
                        "nat",
                        &format!(
                            "{} {}",
                            fl.address,
                            if map == "floating_dnat" {
                                "DNAT"
                            } else {
                                "SNAT"
                            }
                        ),
                        has,
                        format!("{pair} in map {map}"),
                        if has { "present" } else { "missing" }.into(),
                        format!("nft add element ip novanet_nat {map} '{{ {pair} }}'"),
                    ));
                }
            }
            if let Some(s) = &plan.gateway.snat {
                let has = live
                    .rules
                    .iter()
                    .any(|(c, r)| c == "source_nat" && r.contains(&format!("snat to {}", s.to)));
                out.push(check(
                    "nat",
                    "default SNAT",
                    has,
                    format!("the served networks' SNAT to {}", s.to),
                    if has { "present" } else { "missing" }.into(),
                    format!("nft -f {}", f.nat_fix_file),
                ));
            }
        }
    }
}

fn metadata(plan: &HostPlan, f: &Facts, out: &mut Vec<Check>) {
    let (Some(m), Some(answer)) = (&plan.gateway.metadata, &f.metadata) else {
        return;
    };
    let target = metadata_target(plan).unwrap_or_default();
    out.push(check(
        "metadata",
        &target,
        answer.is_ok(),
        format!(
            "169.254.169.254:80 redirected to {}:{}, answering HTTP",
            m.host, m.port
        ),
        match answer {
            Ok(()) => "answers".into(),
            Err(e) => e.clone(),
        },
        format!(
            "start the metadata service on {target} (novanet server's metadata_listen, metadata_listen_port)"
        ),
    ));
}

/// Where this host's metadata redirect sends guests' requests.
pub fn metadata_target(plan: &HostPlan) -> Option<String> {
    let m = plan.gateway.metadata.as_ref()?;
    let host = if m.is_local() {
        "127.0.0.1".to_string()
    } else {
        m.host.to_string()
    };
    Some(format!("{host}:{}", m.port))
}

fn diff_lines(want: &[String], have: &[String]) -> (Vec<String>, Vec<String>) {
    let mut left: Vec<&String> = have.iter().collect();
    let mut missing = Vec::new();
    for w in want {
        match left.iter().position(|h| *h == w) {
            Some(i) => {
                left.remove(i);
            }
            None => missing.push(w.clone()),
        }
    }
    (missing, left.into_iter().cloned().collect())
}

fn summary(missing: &[String], extra: &[String]) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing: {}", missing.join(" | ")));
    }
    if !extra.is_empty() {
        parts.push(format!("not in the plan: {}", extra.join(" | ")));
    }
    if parts.is_empty() {
        "as rendered".into()
    } else {
        parts.join("; ")
    }
}

/// The kernel's rules against what the driver renders for the plan.
fn drift(plan: &HostPlan, f: &Facts, out: &mut Vec<Check>) {
    match plan.firewall_driver {
        FirewallDriver::Iptables | FirewallDriver::Noop => {
            let Some(save) = &f.iptables_save else { return };
            let (want, jumps) = crate::firewall::iptables_expected(plan);
            let have = crate::firewall::iptables_owned_chains(save);
            let mut missing = Vec::new();
            let mut extra = Vec::new();
            for (key, rules) in &want {
                let (m, e) = diff_lines(rules, have.get(key).map(Vec::as_slice).unwrap_or(&[]));
                missing.extend(m.into_iter().map(|r| format!("{} {r}", key.0)));
                extra.extend(e.into_iter().map(|r| format!("{} {r}", key.0)));
            }
            for (key, rules) in have.iter().filter(|(k, _)| !want.contains_key(*k)) {
                extra.push(format!("{} chain {} ({} rules)", key.0, key.1, rules.len()));
            }
            let mut table = String::new();
            let mut present = Vec::new();
            for l in save.lines() {
                if let Some(t) = l.strip_prefix('*') {
                    table = t.to_string();
                } else if l.starts_with("-A ") {
                    present.push((table.clone(), l.to_string()));
                }
            }
            for j in jumps.iter().filter(|j| !present.contains(j)) {
                missing.push(format!("{} {}", j.0, j.1));
            }
            out.push(check(
                "drift",
                "iptables",
                missing.is_empty() && extra.is_empty(),
                "novanet's chains as the iptables driver renders the plan".into(),
                summary(&missing, &extra),
                format!("iptables-restore --noflush {}", f.iptables_fix_file),
            ));
        }
        FirewallDriver::Nftables => {
            let (Some(live), Some(want)) = (&f.nat_live, &f.nat_expected) else {
                return;
            };
            let (mut missing, mut extra) = diff_lines(
                &want
                    .rules
                    .iter()
                    .map(|(c, r)| format!("{c}: {r}"))
                    .collect::<Vec<_>>(),
                &live
                    .rules
                    .iter()
                    .map(|(c, r)| format!("{c}: {r}"))
                    .collect::<Vec<_>>(),
            );
            missing.extend(
                want.elements
                    .difference(&live.elements)
                    .map(|(s, e)| format!("@{s} {e}")),
            );
            extra.extend(
                live.elements
                    .difference(&want.elements)
                    .map(|(s, e)| format!("@{s} {e}")),
            );
            out.push(check(
                "drift",
                &format!("ip {}", crate::firewall::NFT_NAT_TABLE),
                missing.is_empty() && extra.is_empty(),
                "the NAT table as the nftables driver renders the plan".into(),
                summary(&missing, &extra),
                format!("nft -f {}", f.nat_fix_file),
            ));
        }
    }
}

/// Another table's (or, in iptables' own tables, an earlier rule's) drop or reject of
/// traffic novanet accepts: netfilter runs every base chain of a hook, so an accept in
/// novanet's table does not stop another table's drop.
fn other_tables(plan: &HostPlan, f: &Facts, out: &mut Vec<Check>) {
    let Some(ruleset) = &f.ruleset else { return };
    let forwards = !plan.gateway.forward.is_empty();
    let serves = !plan.dhcp.is_empty() || plan.gateway.metadata.is_some();
    if !forwards && !serves {
        return;
    }
    let ours = ["novanet_nat", "novanet_filter", "novanet_spoof"];
    // What novanet's traffic can be recognised by in another rule.
    let mut marks: Vec<String> = plan
        .gateway
        .forward
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect();
    marks.extend(
        plan.bridges
            .iter()
            .filter_map(|b| b.interface.as_ref().map(|i| format!("\"{i}\""))),
    );
    marks.extend(plan.gateway.served.iter().map(|s| s.cidr.to_string()));
    marks.extend(
        plan.floating
            .iter()
            .flat_map(|f| [f.address.to_string(), f.fixed.to_string()]),
    );
    let mut found = Vec::new();
    let mut fixes = Vec::new();
    for c in nft::base_chains(ruleset) {
        if ours.contains(&c.table.as_str())
            || !matches!(c.family.as_str(), "ip" | "inet" | "bridge")
        {
            continue;
        }
        let relevant_hook = (c.hook == "forward" && forwards) || (c.hook == "input" && serves);
        if !relevant_hook {
            continue;
        }
        let name = format!("{} {} {}", c.family, c.table, c.chain);
        let jumps_to_us = c.rules.iter().position(|(_, r)| r.contains("novanet-"));
        for (handle, rule) in c.rules.iter().take(jumps_to_us.unwrap_or(usize::MAX)) {
            let words: Vec<&str> = rule.split_whitespace().collect();
            let verdict = words.iter().any(|w| *w == "drop" || *w == "reject");
            let catch_all = ![
                "iifname", "oifname", "saddr", "daddr", "dport", "sport", "ct state", "meta",
                "ether", "iif ", "oif ",
            ]
            .iter()
            .any(|m| rule.contains(m));
            let ours = marks.iter().any(|m| rule.contains(m.as_str()));
            if verdict && (catch_all || ours) {
                found.push(format!("{name}: {rule}"));
                fixes.push(format!(
                    "nft delete rule {} {} {} handle {handle}",
                    c.family, c.table, c.chain
                ));
            }
        }
        if c.policy == "drop" && jumps_to_us.is_none() {
            found.push(format!("{name}: policy drop"));
            fixes.push(format!(
                "nft 'chain {} {} {} {{ policy accept; }}'",
                c.family, c.table, c.chain
            ));
        }
    }
    out.push(check(
        "other tables",
        "",
        found.is_empty(),
        "no other table's or chain's drop or reject of what novanet accepts".into(),
        if found.is_empty() {
            "none".into()
        } else {
            found.join(" | ")
        },
        fixes.join("; "),
    ));
}

fn last_apply(plan: &HostPlan, f: &Facts, out: &mut Vec<Check>) {
    let found = match &f.last_apply {
        None => "no apply recorded (is the agent running?)".to_string(),
        Some(a) if !a.errors.is_empty() => format!(
            "generation {} at {}: {} error(s): {}",
            a.generation,
            a.at,
            a.errors.len(),
            a.errors.join(" | ")
        ),
        Some(a) => format!(
            "generation {} at {}, no errors, {:.3} s",
            a.generation, a.at, a.seconds
        ),
    };
    let ok = f.last_apply.as_ref().is_some_and(|a| a.errors.is_empty());
    out.push(check(
        "last apply",
        "",
        ok,
        "the agent's last apply without errors".into(),
        found,
        "read the agent's log: each error names the command that failed; the agent retries every second".into(),
    ));
    if !plan.refused.is_empty() {
        out.push(check(
            "plan",
            "",
            false,
            "every stored value valid".into(),
            format!("refused: {}", plan.refused.join(" | ")),
            "correct the stored values named (novanet network-show, nova-manage)".into(),
        ));
    }
}

#[cfg(test)]
mod tests;
