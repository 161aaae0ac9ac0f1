//! `novanet explain SRC DST [PROTO PORT]`: why A can or cannot reach B, read from the host
//! plans alone (no kernel). The walk follows a packet through the plans of the hosts on its
//! path: the segment (bridged on one network, or routed by a network host), anti-spoofing,
//! NAT (floating DNAT and SNAT, the default SNAT to `routing_source_ip`, its `dmz_cidr` and
//! metadata exceptions) and the destination instance's chain, whose order is the drivers'
//! (`agent/src/firewall/`): INVALID, ESTABLISHED, the provider's drops, the DHCP server's
//! replies, the same network when `allow_same_net_traffic`, the groups' rules, then DROP.
//! Every verdict must be what those rules make the kernel do; where the plans cannot tell
//! (a route outside novanet, an asymmetric reply), the answer says so instead of guessing.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::config::FirewallDriver;
use crate::error::{Error, Result};
use crate::firewall::Proto;
use crate::net::Ipv4Cidr;
use crate::plan::{HostPlan, InstanceSecurity, SecurityPlan, SgRule};

/// What the walk reads: every relevant host's plan and the instances (names and addresses
/// come from the store; plans know instances by UUID).
pub struct Cloud<'a> {
    pub plans: &'a [HostPlan],
    pub instances: &'a [InstanceInfo],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub name: String,
    pub uuid: String,
    pub host: Option<String>,
    /// Its fixed addresses, the first VIF's first.
    pub addresses: Vec<Ipv4Addr>,
}

/// The packet asked about: TCP or UDP to a port, or ICMP of a type (8, echo, by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub proto: Proto,
    /// The destination port (TCP, UDP) or the ICMP type.
    pub port: u16,
}

/// ICMP echo request: what `ping` sends.
pub const ICMP_ECHO: u16 = 8;

impl Traffic {
    /// `PROTO PORT` as the command line gives them: no protocol is a ping; TCP and UDP need
    /// a port; ICMP's optional port is the type.
    pub fn parse(proto: Option<&str>, port: Option<&str>) -> Result<Traffic> {
        let proto = match proto.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("icmp") => Proto::Icmp,
            Some("tcp") => Proto::Tcp,
            Some("udp") => Proto::Udp,
            Some(other) => {
                return Err(Error::invalid(
                    "proto",
                    format!("{other:?} is not one of tcp, udp, icmp"),
                ))
            }
        };
        let port = match (proto, port.filter(|p| !p.is_empty())) {
            (Proto::Icmp, None) => ICMP_ECHO,
            (_, None) => {
                return Err(Error::invalid(
                    "port",
                    format!("give the {} port to explain", proto.name()),
                ))
            }
            (_, Some(p)) => {
                let max = if proto == Proto::Icmp { 255 } else { 65535 };
                match p.parse::<u16>() {
                    Ok(n) if n <= max && (n > 0 || proto == Proto::Icmp) => n,
                    _ => {
                        return Err(Error::invalid(
                            "port",
                            format!("{p:?} is not a {} from 1 to {max}", port_word(proto)),
                        ))
                    }
                }
            }
        };
        Ok(Traffic { proto, port })
    }

    pub fn describe(&self) -> String {
        match self.proto {
            Proto::Icmp if self.port == ICMP_ECHO => "icmp echo (ping)".to_string(),
            Proto::Icmp => format!("icmp type {}", self.port),
            p => format!("{} port {}", p.name(), self.port),
        }
    }
}

fn port_word(p: Proto) -> &'static str {
    if p == Proto::Icmp {
        "ICMP type"
    } else {
        "port"
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allowed,
    Dropped,
    /// The plans cannot tell (a route novanet does not own, an asymmetric reply).
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub reason: String,
    /// The rule that decides, as the drivers render it from the plan, or the rule missing.
    pub rule: Option<String>,
}

/// One step of the path: where (a host, or none for the wire) and what happens there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    pub host: Option<String>,
    pub step: String,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub hops: Vec<Hop>,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub src: String,
    pub dst: String,
    pub traffic: Traffic,
    pub request: Leg,
    /// None when the request does not arrive.
    pub reply: Option<Leg>,
}

impl Explanation {
    /// The path hop by hop and the verdict of each direction, for people.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} -> {}: {}\n",
            self.src,
            self.dst,
            self.traffic.describe()
        );
        let leg = |out: &mut String, name: &str, l: &Leg| {
            out.push_str(&format!("{name}:\n"));
            for (i, h) in l.hops.iter().enumerate() {
                let at = h.host.as_deref().unwrap_or("-");
                out.push_str(&format!("  {}. [{at}] {}: {}\n", i + 1, h.step, h.detail));
            }
            let word = match l.verdict.outcome {
                Outcome::Allowed => "ALLOWED",
                Outcome::Dropped => "DROPPED",
                Outcome::Unknown => "UNKNOWN",
            };
            out.push_str(&format!("  => {word}: {}\n", l.verdict.reason));
            if let Some(r) = &l.verdict.rule {
                out.push_str(&format!("     rule: {r}\n"));
            }
        };
        leg(&mut out, "request", &self.request);
        match &self.reply {
            Some(r) => leg(&mut out, "reply", r),
            None => out.push_str("reply: none, the request does not arrive\n"),
        }
        out
    }
}

/// An end of the path, resolved.
#[derive(Clone, Copy)]
enum End<'a> {
    Vm {
        inst: &'a InstanceInfo,
        fixed: Ipv4Addr,
        /// Addressed by this floating IP, bound on that host.
        floating: Option<(Ipv4Addr, &'a HostPlan)>,
    },
    /// Beyond the public interfaces; None: any such address.
    Outside(Option<Ipv4Addr>),
}

/// The source address a filter sees.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Source {
    Addr(Ipv4Addr),
    /// `outside` with no address: matches only rules open to every address.
    AnyOutside,
}

impl Source {
    fn describe(self) -> String {
        match self {
            Source::Addr(a) => a.to_string(),
            Source::AnyOutside => "any outside address".to_string(),
        }
    }
}

fn describe_end(e: &End) -> String {
    match e {
        End::Vm {
            inst,
            fixed,
            floating: None,
        } => format!("{} ({fixed} on {})", inst.name, host_of(inst)),
        End::Vm {
            inst,
            fixed,
            floating: Some((f, _)),
        } => format!(
            "{} via floating IP {f} ({fixed} on {})",
            inst.name,
            host_of(inst)
        ),
        End::Outside(Some(a)) => format!("outside ({a})"),
        End::Outside(None) => "outside (any address)".to_string(),
    }
}

fn host_of(i: &InstanceInfo) -> &str {
    i.host.as_deref().unwrap_or("no host")
}

fn cidr_of(text: &str) -> Option<Ipv4Cidr> {
    if text.contains('/') {
        text.parse().ok()
    } else {
        format!("{text}/32").parse().ok()
    }
}

fn resolve<'a>(cloud: &Cloud<'a>, field: &str, text: &str) -> Result<End<'a>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("outside") {
        return Ok(End::Outside(None));
    }
    if let Ok(a) = text.parse::<Ipv4Addr>() {
        if let Some(inst) = cloud.instances.iter().find(|i| i.addresses.contains(&a)) {
            return Ok(End::Vm {
                inst,
                fixed: a,
                floating: None,
            });
        }
        for p in cloud.plans {
            if let Some(b) = p.floating.iter().find(|f| f.address.addr() == a) {
                let fixed = b.fixed.addr();
                let inst = cloud
                    .instances
                    .iter()
                    .find(|i| i.addresses.contains(&fixed))
                    .ok_or_else(|| {
                        Error::invalid(
                            field,
                            format!("floating IP {a} maps to {fixed}, which no instance has"),
                        )
                    })?;
                return Ok(End::Vm {
                    inst,
                    fixed,
                    floating: Some((a, p)),
                });
            }
        }
        if let Some(c) = network_of(cloud, a) {
            return Err(Error::invalid(
                field,
                format!("{a} is in network {c} but no instance has it"),
            ));
        }
        return Ok(End::Outside(Some(a)));
    }
    let found: Vec<&InstanceInfo> = cloud
        .instances
        .iter()
        .filter(|i| i.name == text || i.uuid == text)
        .collect();
    match found.as_slice() {
        [] => Err(Error::invalid(
            field,
            format!(
                "no instance is named {text:?}; give an instance's name or UUID, an address, \
                 a floating IP or `outside`"
            ),
        )),
        [inst] => {
            let fixed = *inst.addresses.first().ok_or_else(|| {
                Error::invalid(field, format!("instance {text:?} has no fixed address"))
            })?;
            Ok(End::Vm {
                inst,
                fixed,
                floating: None,
            })
        }
        many => Err(Error::invalid(
            field,
            format!(
                "{} instances are named {text:?}; give a UUID or an address",
                many.len()
            ),
        )),
    }
}

/// The network (as its gateway serves it, or as an instance port names it) holding `a`.
fn network_of(cloud: &Cloud, a: Ipv4Addr) -> Option<Ipv4Cidr> {
    let served = cloud
        .plans
        .iter()
        .flat_map(|p| &p.gateway.served)
        .filter_map(|n| cidr_of(&n.cidr));
    let ports = cloud
        .plans
        .iter()
        .flat_map(|p| &p.security.instances)
        .flat_map(|i| &i.ports)
        .filter_map(|p| p.network_cidr.as_deref().and_then(cidr_of));
    served.chain(ports).find(|c| c.contains(a))
}

/// The host routing `net`'s traffic: the instance's own host in multi-host mode, else the
/// network host; and the bridge it serves the network on.
fn gateway_of<'a>(
    cloud: &Cloud<'a>,
    net: Ipv4Cidr,
    near: Option<&str>,
) -> Option<(&'a HostPlan, String)> {
    let serving = |p: &'a HostPlan| {
        p.gateway
            .served
            .iter()
            .find(|n| cidr_of(&n.cidr) == Some(net))
            .map(|n| (p, n.bridge.to_string()))
    };
    cloud
        .plans
        .iter()
        .filter(|p| Some(p.host.as_str()) == near)
        .find_map(serving)
        .or_else(|| cloud.plans.iter().find_map(serving))
}

fn plan_of<'a>(cloud: &Cloud<'a>, host: Option<&str>) -> Option<&'a HostPlan> {
    host.and_then(|h| cloud.plans.iter().find(|p| p.host == h))
}

fn hop(host: Option<&str>, step: &str, detail: impl Into<String>) -> Hop {
    Hop {
        host: host.map(str::to_string),
        step: step.to_string(),
        detail: detail.into(),
    }
}

fn verdict(outcome: Outcome, reason: impl Into<String>, rule: Option<String>) -> Verdict {
    Verdict {
        outcome,
        reason: reason.into(),
        rule,
    }
}

fn security_of<'a>(plan: &'a HostPlan, uuid: &str) -> Option<&'a InstanceSecurity> {
    plan.security.instances.iter().find(|i| i.uuid == uuid)
}

/// The instance leaving: its port and what anti-spoofing lets out of it.
fn leave_hop(cloud: &Cloud, inst: &InstanceInfo, fixed: Ipv4Addr) -> Hop {
    let plan = plan_of(cloud, inst.host.as_deref());
    let port = plan.and_then(|p| security_of(p, &inst.uuid)).and_then(|s| {
        s.ports
            .iter()
            .find(|p| p.ips.iter().any(|i| i.addr() == fixed))
    });
    let detail = match port {
        Some(p) => match &p.device {
            Some(d) => format!(
                "{} sends from {fixed} through {d}; anti-spoofing lets out only MAC {} with \
                 its own addresses, so it passes",
                inst.name, p.mac
            ),
            None => format!(
                "{} sends from {fixed}; no device reported for its port yet, so no \
                 anti-spoofing applies",
                inst.name
            ),
        },
        None => format!(
            "{} sends from {fixed}; it has no port filter on this host (firewall driver {})",
            inst.name,
            plan.map_or("unknown", |p| driver_name(p.firewall_driver))
        ),
    };
    hop(inst.host.as_deref(), "leave", detail)
}

fn driver_name(d: FirewallDriver) -> &'static str {
    match d {
        FirewallDriver::Iptables => "iptables",
        FirewallDriver::Nftables => "nftables",
        FirewallDriver::Noop => "noop",
    }
}

/// Whether a rule's source part matches.
#[derive(PartialEq, Eq, Debug)]
enum SourceMatch {
    Yes,
    No,
    /// Only for some outside addresses (a narrower CIDR, asked about `outside`).
    Some(String),
}

fn source_matches(r: &SgRule, src: Source, sec: &SecurityPlan) -> SourceMatch {
    match (&r.cidr, r.group) {
        // An IPv6 source never matches IPv4 traffic (the drivers leave such rules out).
        (Some(c), _) if c.contains(':') => SourceMatch::No,
        (Some(c), _) if c.as_ref() == "0.0.0.0/0" => SourceMatch::Yes,
        (Some(c), _) => match (cidr_of(c), src) {
            (Some(c), Source::Addr(a)) if c.contains(a) => SourceMatch::Yes,
            (Some(c), Source::AnyOutside) => SourceMatch::Some(c.to_string()),
            _ => SourceMatch::No,
        },
        (None, Some(g)) => match src {
            Source::Addr(a)
                if sec
                    .group_members
                    .get(&g)
                    .is_some_and(|m| m.iter().any(|ip| ip.addr() == a)) =>
            {
                SourceMatch::Yes
            }
            _ => SourceMatch::No,
        },
        (None, None) => SourceMatch::Yes,
    }
}

fn proto_matches(r: &SgRule, t: Traffic) -> bool {
    match r.proto {
        None => true,
        Some(p) if p != t.proto => false,
        // ICMP: a type of -1 is every type; a code (we ask code 0) only narrows a type.
        Some(Proto::Icmp) => match (r.from_port, r.to_port) {
            (Some(ty), code) if ty >= 0 => ty == i32::from(t.port) && code.is_none_or(|c| c <= 0),
            _ => true,
        },
        Some(_) => match (r.from_port, r.to_port) {
            (Some(f), Some(to)) => (f..=to).contains(&i32::from(t.port)),
            _ => true,
        },
    }
}

/// A rule as a person reads it: `tcp 22-22 from 0.0.0.0/0`.
pub fn describe_rule(r: &SgRule) -> String {
    let proto = r.proto.map_or("any protocol", Proto::name);
    let ports = match (r.proto, r.from_port, r.to_port) {
        (Some(Proto::Icmp), Some(t), Some(c)) if t >= 0 && c >= 0 => format!(" type {t} code {c}"),
        (Some(Proto::Icmp), Some(t), _) if t >= 0 => format!(" type {t}"),
        (Some(Proto::Icmp), _, _) | (None, _, _) => String::new(),
        (Some(_), Some(f), Some(t)) => format!(" {f}-{t}"),
        _ => String::new(),
    };
    let from = match (&r.cidr, r.group) {
        (Some(c), _) => format!("from {c}"),
        (None, Some(g)) => format!("from members of group {g}"),
        (None, None) => "from anywhere".to_string(),
    };
    format!("{proto}{ports} {from}")
}

fn chain_name(driver: FirewallDriver, id: i64) -> String {
    match driver {
        FirewallDriver::Nftables => format!("inet novanet_filter inst_{id}"),
        _ => format!("novanet-inst-{id}"),
    }
}

/// The rule that would admit the traffic, for the answer to a drop.
fn missing_rule(t: Traffic, src: Source) -> String {
    let cidr = match src {
        Source::Addr(a) => format!("{a}/32"),
        Source::AnyOutside => "0.0.0.0/0".to_string(),
    };
    let (from, to) = match t.proto {
        Proto::Icmp => (t.port.to_string(), "-1".to_string()),
        _ => (t.port.to_string(), t.port.to_string()),
    };
    format!(
        "missing: a rule `{} {from} {to} {cidr}` in one of its groups \
         (novanet secgroup-add-rule GROUP {} {from} {to} {cidr})",
        t.proto.name(),
        t.proto.name()
    )
}

/// The destination instance's chain on its host, in the drivers' order.
fn instance_filter(
    cloud: &Cloud,
    inst: &InstanceInfo,
    fixed: Ipv4Addr,
    src: Source,
    t: Traffic,
) -> (Hop, Verdict) {
    let host = inst.host.as_deref();
    let Some(plan) = plan_of(cloud, host) else {
        return (
            hop(host, "filter", "no plan for its host"),
            verdict(
                Outcome::Unknown,
                format!("{} is on no host with a plan", inst.name),
                None,
            ),
        );
    };
    if plan.firewall_driver == FirewallDriver::Noop {
        return (
            hop(host, "filter", "firewall_driver noop: no instance filters"),
            verdict(
                Outcome::Allowed,
                "the noop firewall driver filters nothing",
                None,
            ),
        );
    }
    let sec = &plan.security;
    let Some(i) = security_of(plan, &inst.uuid) else {
        return (
            hop(
                host,
                "filter",
                format!(
                    "{} has no chain here: the bridges' forward accepts admit it",
                    inst.name
                ),
            ),
            verdict(
                Outcome::Allowed,
                "no instance chain (its port was refused or not planned)",
                None,
            ),
        );
    };
    let chain = chain_name(plan.firewall_driver, i.id);
    let head = format!(
        "chain {chain} of {} ({fixed}) sees {} from {}: not ESTABLISHED (a new request)",
        inst.name,
        t.describe(),
        src.describe()
    );
    let mut notes: Vec<String> = Vec::new();
    for r in &sec.provider_rules {
        if !proto_matches(r, t) {
            continue;
        }
        match source_matches(r, src, sec) {
            SourceMatch::Yes => {
                return (
                    hop(host, "filter", format!("{head}; provider rule matches")),
                    verdict(
                        Outcome::Dropped,
                        "a provider rule drops it, before any security group rule",
                        Some(format!("provider rule: {} -> DROP", describe_rule(r))),
                    ),
                )
            }
            SourceMatch::Some(c) => notes.push(format!("the provider rule drops it from {c}")),
            SourceMatch::No => {}
        }
    }
    let same_net = i
        .ports
        .iter()
        .filter_map(|p| p.network_cidr.as_deref().and_then(cidr_of))
        .find(|c| matches!(src, Source::Addr(a) if c.contains(a)));
    match (sec.allow_same_net, same_net) {
        (true, Some(c)) => {
            return (
                hop(
                    host,
                    "filter",
                    format!("{head}; the source is on its network"),
                ),
                verdict(
                    Outcome::Allowed,
                    format!("allow_same_net_traffic accepts everything from {c}"),
                    Some(format!("same network: from {c} -> ACCEPT")),
                ),
            )
        }
        (false, Some(c)) => notes.push(format!(
            "allow_same_net_traffic is off: {c} gets no blanket accept"
        )),
        _ => {}
    }
    for r in &i.rules {
        if !proto_matches(r, t) {
            continue;
        }
        match source_matches(r, src, sec) {
            SourceMatch::Yes => {
                return (
                    hop(host, "filter", format!("{head}; a group rule matches")),
                    verdict(
                        Outcome::Allowed,
                        "a rule of its security groups accepts it",
                        Some(format!("{} -> ACCEPT", describe_rule(r))),
                    ),
                )
            }
            SourceMatch::Some(c) => notes.push(format!("a rule accepts it from {c} only")),
            SourceMatch::No => {}
        }
    }
    let mut reason =
        "no rule of its security groups accepts it; the chain ends in DROP".to_string();
    if !notes.is_empty() {
        reason.push_str(&format!(" ({})", notes.join("; ")));
    }
    (
        hop(host, "filter", format!("{head}; no rule matches")),
        verdict(Outcome::Dropped, reason, Some(missing_rule(t, src))),
    )
}

/// Where a routed packet leaves the gateway.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Egress<'a> {
    Bridge(&'a str),
    Public,
}

/// POSTROUTING on the gateway, as the drivers render it: the exceptions (metadata host,
/// dmz, same network unless DNATed) first, then each floating IP's SNAT, then the default
/// SNAT of the served networks (through the public interface when one is set).
fn source_nat(
    gw: &HostPlan,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    egress: Egress,
    dnated: bool,
) -> (Ipv4Addr, String) {
    let g = &gw.gateway;
    let served = g
        .served
        .iter()
        .filter_map(|n| cidr_of(&n.cidr))
        .find(|c| c.contains(src));
    let Some(net) = served else {
        return (
            src,
            format!("{src} is in no network this host serves: no SNAT"),
        );
    };
    if g.metadata.as_ref().is_some_and(|m| m.host.addr() == dst) {
        return (
            src,
            format!("{dst} is the metadata host: source kept (exception)"),
        );
    }
    if let Some(d) = g
        .dmz
        .iter()
        .filter_map(|d| cidr_of(d))
        .find(|d| d.contains(dst))
    {
        return (src, format!("{dst} is in dmz_cidr {d}: source {src} kept"));
    }
    if net.contains(dst) && !dnated {
        return (src, format!("{net} to itself: source kept"));
    }
    if let Some(f) = gw.floating.iter().find(|f| f.fixed.addr() == src) {
        let to = f.address.addr();
        return (
            to,
            format!("float-snat: source {src} becomes its floating IP {to}"),
        );
    }
    if let Some(s) = &g.snat {
        let through = match (&s.out_interface, egress) {
            (None, _) | (Some(_), Egress::Public) => true,
            (Some(o), Egress::Bridge(b)) => o.as_ref() == b,
        };
        if through {
            let to = s.to.addr();
            return (
                to,
                format!("snat: source {src} becomes routing_source_ip {to}"),
            );
        }
    }
    (src, format!("no SNAT rule matches: source {src} kept"))
}

/// What the request leg found that the reply needs.
struct Delivered<'a> {
    /// The source the destination sees.
    seen_src: Source,
    /// The host that routed (and may have NATed) the request.
    router: Option<&'a HostPlan>,
    /// The request was DNATed (a floating IP).
    dnated: bool,
    /// The source was rewritten on the way.
    snated: bool,
}

/// Explains `src` to `dst` (each an instance name or UUID, a fixed or floating address, an
/// outside address or `outside`) for `t`.
pub fn explain(cloud: &Cloud, src: &str, dst: &str, t: Traffic) -> Result<Explanation> {
    let s = resolve(cloud, "src", src)?;
    let d = resolve(cloud, "dst", dst)?;
    match (&s, &d) {
        (End::Outside(_), End::Outside(_)) => {
            return Err(Error::invalid(
                "dst",
                "both ends are outside the cloud: novanet has nothing to explain",
            ))
        }
        (End::Vm { inst: a, .. }, End::Vm { inst: b, .. }) if a.uuid == b.uuid => {
            return Err(Error::invalid(
                "dst",
                "source and destination are the same instance",
            ))
        }
        _ => {}
    }
    let mut hops = Vec::new();
    let (req, delivered) = walk_request(cloud, &s, &d, t, &mut hops);
    let request = Leg { hops, verdict: req };
    let reply = match (&delivered, request.verdict.outcome) {
        (Some(dl), Outcome::Allowed | Outcome::Unknown) => Some(walk_reply(cloud, &s, &d, dl)),
        _ => None,
    };
    Ok(Explanation {
        src: describe_end(&s),
        dst: describe_end(&d),
        traffic: t,
        request,
        reply,
    })
}

fn walk_request<'a>(
    cloud: &Cloud<'a>,
    s: &End<'a>,
    d: &End<'a>,
    t: Traffic,
    hops: &mut Vec<Hop>,
) -> (Verdict, Option<Delivered<'a>>) {
    let unknown = |why: String| (verdict(Outcome::Unknown, why, None), None);
    match (*s, *d) {
        (End::Vm { inst: a, fixed, .. }, _) => {
            hops.push(leave_hop(cloud, a, fixed));
            let Some(a_net) = network_of(cloud, fixed) else {
                return unknown(format!("{fixed} is in no network the plans know"));
            };
            // Same network, addressed by the fixed address: bridged, no router, no NAT.
            if let End::Vm {
                inst: b,
                fixed: bf,
                floating: None,
            } = *d
            {
                if a_net.contains(bf) {
                    let path = if a.host == b.host {
                        format!("both on {}: bridged on the host", host_of(a))
                    } else {
                        format!(
                            "bridged {} -> flat/VLAN segment -> {}",
                            host_of(a),
                            host_of(b)
                        )
                    };
                    hops.push(hop(
                        None,
                        "segment",
                        format!("same network {a_net}: {path}; no routing, no NAT"),
                    ));
                    let (h, v) = instance_filter(cloud, b, bf, Source::Addr(fixed), t);
                    hops.push(h);
                    let dl = Delivered {
                        seen_src: Source::Addr(fixed),
                        router: None,
                        dnated: false,
                        snated: false,
                    };
                    return (v, Some(dl));
                }
            }
            let Some((gw, a_bridge)) = gateway_of(cloud, a_net, a.host.as_deref()) else {
                return unknown(format!("no host serves {a_net}: nothing routes it"));
            };
            let gh = Some(gw.host.as_str());
            hops.push(hop(
                gh,
                "route",
                format!("{a_net}'s gateway routes it (in through {a_bridge})"),
            ));
            if !gw.ip_forward {
                return (
                    verdict(
                        Outcome::Dropped,
                        format!("{} does not forward (ip_forward off in its plan)", gw.host),
                        None,
                    ),
                    None,
                );
            }
            let (target, dnated) = match *d {
                End::Vm {
                    floating: Some((f, fh)),
                    fixed: bf,
                    ..
                } => {
                    if fh.host != gw.host {
                        return unknown(format!(
                            "{f} is bound on {}, not on {}, which routes {a_net}: the path \
                             between them is outside the plans",
                            fh.host, gw.host
                        ));
                    }
                    hops.push(hop(
                        gh,
                        "dnat",
                        format!("PREROUTING: floating {f} -> fixed {bf}"),
                    ));
                    (Some(bf), true)
                }
                End::Vm { fixed: bf, .. } => (Some(bf), false),
                End::Outside(_) => (None, false),
            };
            match (target, *d) {
                (Some(bf), End::Vm { inst: b, .. }) => {
                    let Some(b_net) = network_of(cloud, bf) else {
                        return unknown(format!("{bf} is in no network the plans know"));
                    };
                    let Some(b_bridge) = gw
                        .gateway
                        .served
                        .iter()
                        .find(|n| cidr_of(&n.cidr) == Some(b_net))
                        .map(|n| n.bridge.to_string())
                    else {
                        return unknown(format!(
                            "{} is not a gateway of {b_net}: where it sends the packet is its \
                             own routing table's business",
                            gw.host
                        ));
                    };
                    hops.push(hop(
                        gh,
                        "forward",
                        format!("out through {b_bridge} (the bridges' forward accepts)"),
                    ));
                    let (seen, why) = source_nat(gw, fixed, bf, Egress::Bridge(&b_bridge), dnated);
                    hops.push(hop(gh, "snat", why));
                    hops.push(hop(
                        None,
                        "segment",
                        format!("{b_net} bridged to {}", host_of(b)),
                    ));
                    let (h, v) = instance_filter(cloud, b, bf, Source::Addr(seen), t);
                    hops.push(h);
                    let dl = Delivered {
                        seen_src: Source::Addr(seen),
                        router: Some(gw),
                        dnated,
                        snated: seen != fixed,
                    };
                    (v, Some(dl))
                }
                _ => {
                    let (seen, why) = source_nat(
                        gw,
                        fixed,
                        match *d {
                            End::Outside(Some(o)) => o,
                            _ => Ipv4Addr::UNSPECIFIED,
                        },
                        Egress::Public,
                        false,
                    );
                    hops.push(hop(gh, "snat", why));
                    hops.push(hop(
                        gh,
                        "forward",
                        "out through the public side (the bridges' forward accepts)",
                    ));
                    let dl = Delivered {
                        seen_src: Source::Addr(seen),
                        router: Some(gw),
                        dnated: false,
                        snated: seen != fixed,
                    };
                    (
                        verdict(
                            Outcome::Allowed,
                            "instances' outgoing traffic is not filtered (nova-network's \
                             groups hold ingress rules only)",
                            None,
                        ),
                        Some(dl),
                    )
                }
            }
        }
        (
            End::Outside(o),
            End::Vm {
                inst: b,
                fixed: bf,
                floating,
            },
        ) => {
            let src = o.map_or(Source::AnyOutside, Source::Addr);
            let Some(b_net) = network_of(cloud, bf) else {
                return unknown(format!("{bf} is in no network the plans know"));
            };
            let (router, dnated) = match floating {
                Some((f, fh)) => {
                    let iface = fh
                        .floating
                        .iter()
                        .find(|x| x.address.addr() == f)
                        .map(|x| x.interface.to_string())
                        .unwrap_or_default();
                    hops.push(hop(
                        Some(&fh.host),
                        "dnat",
                        format!("{f} is bound on {iface}; PREROUTING: {f} -> fixed {bf}"),
                    ));
                    (fh, true)
                }
                None => {
                    let Some((gw, _)) = gateway_of(cloud, b_net, b.host.as_deref()) else {
                        return unknown(format!("no host serves {b_net}"));
                    };
                    hops.push(hop(
                        Some(&gw.host),
                        "route",
                        format!(
                            "reaches {bf} only if the outside routes {b_net} to {}: novanet \
                             announces no route to fixed networks",
                            gw.host
                        ),
                    ));
                    (gw, false)
                }
            };
            let Some(b_bridge) = router
                .gateway
                .served
                .iter()
                .find(|n| cidr_of(&n.cidr) == Some(b_net))
                .map(|n| n.bridge.to_string())
            else {
                return unknown(format!("{} is not a gateway of {b_net}", router.host));
            };
            hops.push(hop(
                Some(&router.host),
                "forward",
                format!(
                    "out through {b_bridge}; the source ({}) is in no served network: no SNAT",
                    src.describe()
                ),
            ));
            hops.push(hop(
                None,
                "segment",
                format!("{b_net} bridged to {}", host_of(b)),
            ));
            let (h, mut v) = instance_filter(cloud, b, bf, src, t);
            hops.push(h);
            if !dnated && v.outcome == Outcome::Allowed {
                v.outcome = Outcome::Unknown;
                v.reason = format!(
                    "{}, but only if the outside routes {b_net}; the plans cannot tell",
                    v.reason
                );
            }
            let dl = Delivered {
                seen_src: src,
                router: Some(router),
                dnated,
                snated: false,
            };
            (v, Some(dl))
        }
        (End::Outside(_), End::Outside(_)) => unreachable!("refused by explain"),
    }
}

/// A floating IP asked for from its own network: the gateway DNATs the request but the
/// reply goes straight back on the bridge, from the fixed address, never un-NATed. The
/// requester's host tracks no connection it belongs to (INVALID, which its chain drops),
/// and the requester did not send to that address anyway.
fn hairpin_reply(
    cloud: &Cloud,
    s: &End,
    mut hops: Vec<Hop>,
    to: &str,
    fixed: Ipv4Addr,
    net: Ipv4Cidr,
    router: &str,
) -> Leg {
    let why = format!(
        "the reply goes straight to {to} on {net} from {fixed}, not back through {router}, \
         so nothing reverses the DNAT (hairpin NAT; use the fixed address, or give the \
         requester a floating IP so that its source is rewritten too)"
    );
    let End::Vm { inst: a, .. } = *s else {
        return Leg {
            hops,
            verdict: verdict(Outcome::Unknown, why, None),
        };
    };
    let chain = plan_of(cloud, a.host.as_deref()).and_then(|p| {
        (p.firewall_driver != FirewallDriver::Noop)
            .then(|| security_of(p, &a.uuid).map(|i| chain_name(p.firewall_driver, i.id)))
            .flatten()
    });
    match chain {
        Some(c) => {
            hops.push(hop(
                a.host.as_deref(),
                "filter",
                format!(
                    "chain {c} of {}: the reply matches no tracked connection",
                    a.name
                ),
            ));
            Leg {
                hops,
                verdict: verdict(
                    Outcome::Dropped,
                    why,
                    Some("ct state invalid -> DROP".to_string()),
                ),
            }
        }
        None => Leg {
            hops,
            verdict: verdict(Outcome::Unknown, why, None),
        },
    }
}

fn walk_reply(cloud: &Cloud, s: &End, d: &End, dl: &Delivered) -> Leg {
    let mut hops = Vec::new();
    let to = dl.seen_src.describe();
    let unknown = |hops: Vec<Hop>, why: String| Leg {
        hops,
        verdict: verdict(Outcome::Unknown, why, None),
    };
    // Leaving the destination.
    match *d {
        End::Vm { inst: b, fixed, .. } => {
            hops.push(hop(
                b.host.as_deref(),
                "leave",
                format!(
                    "{} answers {to} from {fixed}; anti-spoofing passes its own address",
                    b.name
                ),
            ));
            match dl.router {
                None => hops.push(hop(None, "segment", "same network: bridged back")),
                Some(r) => {
                    let Some(b_net) = network_of(cloud, fixed) else {
                        return unknown(hops, format!("{fixed} is in no known network"));
                    };
                    let hairpin = match (dl.seen_src, dl.snated) {
                        (Source::Addr(a), false) => b_net.contains(a),
                        _ => false,
                    };
                    if hairpin {
                        return hairpin_reply(cloud, s, hops, &to, fixed, b_net, &r.host);
                    }
                    match gateway_of(cloud, b_net, b.host.as_deref()) {
                        Some((g, _)) if g.host == r.host => hops.push(hop(
                            Some(&g.host),
                            "route",
                            if dl.dnated || dl.snated {
                                "its gateway, the request's router: conntrack reverses the NAT"
                            } else {
                                "its gateway routes it back"
                            },
                        )),
                        Some((g, _)) => {
                            return unknown(
                                hops,
                                format!(
                                    "the reply leaves through {}, the request came through {}: \
                                     asymmetric",
                                    g.host, r.host
                                ),
                            )
                        }
                        None => return unknown(hops, format!("no host serves {b_net}")),
                    }
                }
            }
        }
        End::Outside(_) => {
            let Some(r) = dl.router else {
                return unknown(hops, "no router on the path".into());
            };
            if !dl.snated {
                return unknown(
                    hops,
                    format!(
                        "the source {to} was kept: the outside must route it back to {}; the \
                         plans cannot tell",
                        r.host
                    ),
                );
            }
            hops.push(hop(
                Some(&r.host),
                "route",
                format!("the outside answers {to}; conntrack reverses the SNAT"),
            ));
        }
    }
    // Arriving at the requester.
    match *s {
        End::Vm { inst: a, fixed, .. } => {
            let plan = plan_of(cloud, a.host.as_deref());
            let chain = plan
                .and_then(|p| security_of(p, &a.uuid).map(|i| chain_name(p.firewall_driver, i.id)));
            let (detail, rule) = match chain {
                Some(c) => (
                    format!("chain {c} of {} ({fixed}): a reply is ESTABLISHED", a.name),
                    Some("ct state established,related -> ACCEPT".to_string()),
                ),
                None => (
                    format!("{} ({fixed}) has no chain: not filtered", a.name),
                    None,
                ),
            };
            hops.push(hop(a.host.as_deref(), "filter", detail));
            Leg {
                hops,
                verdict: verdict(
                    Outcome::Allowed,
                    "replies are ESTABLISHED, accepted before any rule",
                    rule,
                ),
            }
        }
        End::Outside(_) => Leg {
            hops,
            verdict: verdict(
                Outcome::Allowed,
                "the outside receives it (nothing of novanet filters it)",
                None,
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{GatewayPlan, MetadataRedirect, ServedNetwork, SourceNat};
    use crate::plan::{FloatingBinding, PortSecurity};
    use crate::valid::{CidrText, IfName, Ipv4Text, MacText};

    fn rule(proto: Option<Proto>, from: i32, to: i32, cidr: Option<&str>) -> SgRule {
        SgRule {
            proto,
            from_port: proto.map(|_| from),
            to_port: proto.map(|_| to),
            cidr: cidr.map(|c| CidrText::new(c).unwrap()),
            group: None,
        }
    }

    fn tcp(port: i32) -> SgRule {
        rule(Some(Proto::Tcp), port, port, Some("0.0.0.0/0"))
    }

    fn ping() -> SgRule {
        rule(Some(Proto::Icmp), -1, -1, Some("0.0.0.0/0"))
    }

    fn inst(id: i64, uuid: &str, ip: &str, cidr: &str, rules: Vec<SgRule>) -> InstanceSecurity {
        InstanceSecurity {
            id,
            uuid: uuid.into(),
            ports: vec![PortSecurity {
                device: Some(IfName::new(format!("vnet{id}")).unwrap()),
                mac: MacText::new(format!("fa:16:3e:00:00:{id:02x}")).unwrap(),
                ips: vec![Ipv4Text::new(ip).unwrap()],
                network_cidr: Some(CidrText::new(cidr).unwrap()),
                dhcp_server: Some(Ipv4Text::new("10.0.0.1").unwrap()),
                ips_v6: vec![],
                network_cidr_v6: None,
            }],
            rules,
        }
    }

    fn host(name: &str, instances: Vec<InstanceSecurity>) -> HostPlan {
        HostPlan {
            host: name.into(),
            firewall_driver: FirewallDriver::Iptables,
            security: SecurityPlan {
                allow_same_net: true,
                instances,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Seed 004's controller: the gateway of vmnet (and of `other` when asked), SNAT to
    /// 192.168.56.200 through eth1.
    fn controller(nets: &[(&str, &str)], instances: Vec<InstanceSecurity>) -> HostPlan {
        let mut p = host("controller", instances);
        p.ip_forward = true;
        p.gateway = GatewayPlan {
            forward: nets.iter().map(|(b, _)| IfName::new(*b).unwrap()).collect(),
            served: nets
                .iter()
                .map(|(b, c)| ServedNetwork {
                    bridge: IfName::new(*b).unwrap(),
                    cidr: CidrText::new(*c).unwrap(),
                    serves_dhcp: true,
                })
                .collect(),
            snat: Some(SourceNat {
                to: Ipv4Text::new("192.168.56.200").unwrap(),
                out_interface: Some(IfName::new("eth1").unwrap()),
            }),
            dmz: vec![],
            metadata: Some(MetadataRedirect {
                host: Ipv4Text::new("192.168.56.200").unwrap(),
                port: std::num::NonZeroU16::new(8775).unwrap(),
            }),
            vpn: vec![],
            metadata_v6: None,
        };
        p
    }

    fn bind(p: &mut HostPlan, floating: &str, fixed: &str) {
        p.floating.push(FloatingBinding {
            address: Ipv4Text::new(floating).unwrap(),
            interface: IfName::new("eth1").unwrap(),
            fixed: Ipv4Text::new(fixed).unwrap(),
        });
    }

    fn vm(name: &str, host: &str, ip: &str) -> InstanceInfo {
        InstanceInfo {
            name: name.into(),
            uuid: format!("uuid-{name}"),
            host: Some(host.into()),
            addresses: vec![ip.parse().unwrap()],
        }
    }

    /// cirros (10.0.0.2) on compute-1 with the seed's rules (ping, SSH); vm2 (10.0.0.3) on
    /// compute-2 with ping only; the controller routes vmnet and holds 68.99.26.170 for
    /// cirros.
    struct Seed {
        plans: Vec<HostPlan>,
        vms: Vec<InstanceInfo>,
    }

    fn seed() -> Seed {
        let net = "10.0.0.0/24";
        let mut ctl = controller(&[("br100", net)], vec![]);
        bind(&mut ctl, "68.99.26.170", "10.0.0.2");
        Seed {
            plans: vec![
                ctl,
                host(
                    "compute-1",
                    vec![inst(
                        1,
                        "uuid-cirros",
                        "10.0.0.2",
                        net,
                        vec![ping(), tcp(22)],
                    )],
                ),
                host(
                    "compute-2",
                    vec![inst(2, "uuid-vm2", "10.0.0.3", net, vec![ping()])],
                ),
            ],
            vms: vec![
                vm("cirros", "compute-1", "10.0.0.2"),
                vm("vm2", "compute-2", "10.0.0.3"),
            ],
        }
    }

    impl Seed {
        fn ask(&self, src: &str, dst: &str, proto: &str, port: Option<&str>) -> Explanation {
            let cloud = Cloud {
                plans: &self.plans,
                instances: &self.vms,
            };
            let t = Traffic::parse(Some(proto), port).unwrap();
            explain(&cloud, src, dst, t).unwrap()
        }

        fn err(&self, src: &str, dst: &str) -> String {
            let cloud = Cloud {
                plans: &self.plans,
                instances: &self.vms,
            };
            explain(&cloud, src, dst, Traffic::parse(None, None).unwrap())
                .unwrap_err()
                .to_string()
        }

        fn plan(&mut self, host: &str) -> &mut HostPlan {
            self.plans.iter_mut().find(|p| p.host == host).unwrap()
        }
    }

    fn outcome(e: &Explanation) -> (Outcome, Option<Outcome>) {
        (
            e.request.verdict.outcome,
            e.reply.as_ref().map(|r| r.verdict.outcome),
        )
    }

    use Outcome::*;

    #[test]
    fn traffic_parses_with_errors_naming_the_field() {
        assert_eq!(
            Traffic::parse(None, None).unwrap(),
            Traffic {
                proto: Proto::Icmp,
                port: 8
            }
        );
        assert_eq!(Traffic::parse(Some("TCP"), Some("22")).unwrap().port, 22);
        for (p, port, field) in [
            (Some("gre"), None, "proto"),
            (Some("tcp"), None, "port"),
            (Some("tcp"), Some("0"), "port"),
            (Some("udp"), Some("70000"), "port"),
            (Some("icmp"), Some("300"), "port"),
            (Some("tcp"), Some("ssh"), "port"),
        ] {
            match Traffic::parse(p, port) {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field, "{p:?} {port:?}"),
                other => panic!("{p:?} {port:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn same_network_with_allow_same_net_is_accepted_whatever_the_rules() {
        let s = seed();
        let e = s.ask("vm2", "cirros", "tcp", Some("80"));
        assert_eq!(outcome(&e), (Allowed, Some(Allowed)));
        assert!(e.request.verdict.reason.contains("allow_same_net_traffic"));
        assert!(e.request.hops.iter().any(|h| h.step == "segment"
            && h.detail
                .contains("compute-2 -> flat/VLAN segment -> compute-1")));
        // No router on the way: the controller appears nowhere.
        assert!(e
            .request
            .hops
            .iter()
            .all(|h| h.host.as_deref() != Some("controller")));
    }

    #[test]
    fn same_network_without_allow_same_net_needs_a_rule() {
        let mut s = seed();
        s.plan("compute-1").security.allow_same_net = false;
        let e = s.ask("vm2", "10.0.0.2", "tcp", Some("80"));
        assert_eq!(outcome(&e), (Dropped, None));
        assert!(e
            .request
            .verdict
            .reason
            .contains("allow_same_net_traffic is off"));
        let missing = e.request.verdict.rule.unwrap();
        assert!(missing.contains("tcp 80 80 10.0.0.3/32"), "{missing}");
        // SSH is open to everyone.
        let e = s.ask("vm2", "cirros", "tcp", Some("22"));
        assert_eq!(outcome(&e), (Allowed, Some(Allowed)));
        assert_eq!(
            e.request.verdict.rule.as_deref(),
            Some("tcp 22-22 from 0.0.0.0/0 -> ACCEPT")
        );
        assert!(e
            .reply
            .unwrap()
            .hops
            .iter()
            .any(|h| h.detail.contains("ESTABLISHED") && h.detail.contains("novanet-inst-2")));
    }

    #[test]
    fn outside_to_a_floating_ip_is_dnated_and_filtered_by_the_groups() {
        let s = seed();
        let e = s.ask("outside", "68.99.26.170", "tcp", Some("22"));
        assert_eq!(outcome(&e), (Allowed, Some(Allowed)));
        assert!(e.request.hops.iter().any(|h| h.step == "dnat"
            && h.host.as_deref() == Some("controller")
            && h.detail.contains("68.99.26.170 -> fixed 10.0.0.2")));
        let e = s.ask("outside", "68.99.26.170", "tcp", Some("80"));
        assert_eq!(outcome(&e), (Dropped, None));
        assert!(e
            .request
            .verdict
            .rule
            .unwrap()
            .contains("tcp 80 80 0.0.0.0/0"));
        assert_eq!(
            outcome(&s.ask("192.168.56.101", "68.99.26.170", "icmp", None)),
            (Allowed, Some(Allowed))
        );
        assert!(s
            .ask("outside", "68.99.26.170", "icmp", None)
            .render()
            .contains("=> ALLOWED"));
    }

    #[test]
    fn a_narrower_cidr_decides_by_the_outside_address() {
        let mut s = seed();
        s.plan("compute-1").security.instances[0].rules.push(rule(
            Some(Proto::Tcp),
            80,
            81,
            Some("192.168.56.0/24"),
        ));
        let e = s.ask("192.168.56.101", "68.99.26.170", "tcp", Some("81"));
        assert_eq!(outcome(&e), (Allowed, Some(Allowed)));
        let e = s.ask("203.0.113.9", "68.99.26.170", "tcp", Some("80"));
        assert_eq!(outcome(&e), (Dropped, None));
        let e = s.ask("outside", "68.99.26.170", "tcp", Some("80"));
        assert_eq!(outcome(&e), (Dropped, None));
        assert!(e
            .request
            .verdict
            .reason
            .contains("from 192.168.56.0/24 only"));
    }

    #[test]
    fn provider_rules_drop_before_the_groups() {
        let mut s = seed();
        s.plan("compute-1").security.provider_rules = vec![tcp(22)];
        let e = s.ask("outside", "68.99.26.170", "tcp", Some("22"));
        assert_eq!(outcome(&e), (Dropped, None));
        assert_eq!(
            e.request.verdict.rule.as_deref(),
            Some("provider rule: tcp 22-22 from 0.0.0.0/0 -> DROP")
        );
        // Even from the same network, allow_same_net comes after it.
        assert_eq!(
            outcome(&s.ask("vm2", "cirros", "tcp", Some("22"))),
            (Dropped, None)
        );
        assert_eq!(
            outcome(&s.ask("vm2", "cirros", "icmp", None)),
            (Allowed, Some(Allowed))
        );
    }

    #[test]
    fn icmp_types_and_codes_match_as_the_drivers_write_them() {
        let mut s = seed();
        let c = &mut s.plan("compute-2").security;
        c.allow_same_net = false;
        c.instances[0].rules = vec![rule(Some(Proto::Icmp), 8, 0, Some("0.0.0.0/0"))];
        assert_eq!(outcome(&s.ask("cirros", "vm2", "icmp", None)).0, Allowed);
        assert_eq!(
            outcome(&s.ask("cirros", "vm2", "icmp", Some("13"))).0,
            Dropped
        );
        s.plan("compute-2").security.instances[0].rules =
            vec![rule(Some(Proto::Icmp), 13, -1, Some("0.0.0.0/0"))];
        assert_eq!(outcome(&s.ask("cirros", "vm2", "icmp", None)).0, Dropped);
        assert_eq!(
            outcome(&s.ask("cirros", "vm2", "icmp", Some("13"))).0,
            Allowed
        );
        // A rule for TCP says nothing of UDP.
        s.plan("compute-2").security.instances[0].rules = vec![tcp(53)];
        assert_eq!(
            outcome(&s.ask("cirros", "vm2", "udp", Some("53"))).0,
            Dropped
        );
        assert_eq!(
            outcome(&s.ask("cirros", "vm2", "tcp", Some("53"))).0,
            Allowed
        );
    }

    #[test]
    fn source_group_rules_admit_members_only() {
        let mut s = seed();
        let c1 = s.plan("compute-1");
        c1.security.allow_same_net = false;
        c1.security.instances[0].rules = vec![SgRule {
            proto: Some(Proto::Tcp),
            from_port: Some(80),
            to_port: Some(80),
            cidr: None,
            group: Some(7),
        }];
        c1.security.group_members.insert(7, vec![]);
        assert_eq!(
            outcome(&s.ask("vm2", "cirros", "tcp", Some("80"))).0,
            Dropped
        );
        s.plan("compute-1")
            .security
            .group_members
            .insert(7, vec![Ipv4Text::new("10.0.0.3").unwrap()]);
        let e = s.ask("vm2", "cirros", "tcp", Some("80"));
        assert_eq!(outcome(&e).0, Allowed);
        assert_eq!(
            e.request.verdict.rule.as_deref(),
            Some("tcp 80-80 from members of group 7 -> ACCEPT")
        );
        // The outside is in no group.
        assert_eq!(
            outcome(&s.ask("outside", "68.99.26.170", "tcp", Some("80"))).0,
            Dropped
        );
    }

    #[test]
    fn instances_reach_the_outside_through_snat_or_their_floating_ip() {
        let s = seed();
        let e = s.ask("vm2", "outside", "tcp", Some("8080"));
        assert_eq!(outcome(&e), (Allowed, Some(Allowed)));
        assert!(e
            .request
            .hops
            .iter()
            .any(|h| h.step == "snat" && h.detail.contains("routing_source_ip 192.168.56.200")));
        let e = s.ask("cirros", "192.168.56.101", "tcp", Some("8080"));
        assert!(e
            .request
            .hops
            .iter()
            .any(|h| h.step == "snat" && h.detail.contains("floating IP 68.99.26.170")));
        assert_eq!(outcome(&e), (Allowed, Some(Allowed)));
    }

    #[test]
    fn dmz_keeps_the_source_and_the_reply_is_not_known() {
        let mut s = seed();
        s.plan("controller")
            .gateway
            .dmz
            .push(CidrText::new("192.168.57.0/24").unwrap());
        let e = s.ask("vm2", "192.168.57.9", "tcp", Some("80"));
        assert_eq!(outcome(&e), (Allowed, Some(Unknown)));
        assert!(e.request.hops.iter().any(|h| h.detail.contains("dmz_cidr")));
    }

    #[test]
    fn routed_between_networks_through_the_gateway() {
        let mut s = seed();
        let other = "10.1.0.0/24";
        *s.plan("controller") = {
            let mut c = controller(&[("br100", "10.0.0.0/24"), ("br101", other)], vec![]);
            bind(&mut c, "68.99.26.170", "10.0.0.2");
            c
        };
        s.plans.push(host(
            "compute-3",
            vec![inst(3, "uuid-web", "10.1.0.5", other, vec![tcp(80)])],
        ));
        s.vms.push(vm("web", "compute-3", "10.1.0.5"));
        // vm2 has no floating IP and br101 is not the public interface: no SNAT.
        let e = s.ask("vm2", "web", "tcp", Some("80"));
        assert_eq!(outcome(&e), (Allowed, Some(Allowed)));
        assert!(e.request.hops.iter().any(|h| h.step == "route"));
        assert!(e
            .request
            .hops
            .iter()
            .any(|h| h.detail.contains("no SNAT rule matches")));
        // Same-net acceptance does not apply across networks.
        assert_eq!(outcome(&s.ask("vm2", "web", "tcp", Some("22"))).0, Dropped);
        // cirros leaves from its floating address even towards another network.
        let e = s.ask("cirros", "web", "tcp", Some("80"));
        assert!(e
            .request
            .hops
            .iter()
            .any(|h| h.detail.contains("float-snat")));
        assert!(e.request.verdict.reason.contains("security groups"));
    }

    #[test]
    fn hairpin_replies_drop_and_unannounced_routes_are_not_guessed() {
        let s = seed();
        // vm2 to cirros's floating IP: DNATed, source kept, the reply bypasses the gateway.
        let e = s.ask("vm2", "68.99.26.170", "tcp", Some("22"));
        assert_eq!(outcome(&e), (Allowed, Some(Dropped)));
        let reply = e.reply.unwrap();
        assert!(reply.verdict.reason.contains("hairpin"));
        assert_eq!(
            reply.verdict.rule.as_deref(),
            Some("ct state invalid -> DROP")
        );
        // The outside to a fixed address: only its own routes can tell.
        let e = s.ask("outside", "10.0.0.2", "tcp", Some("22"));
        assert_eq!(outcome(&e).0, Unknown);
        let e = s.ask("outside", "10.0.0.2", "tcp", Some("80"));
        assert_eq!(outcome(&e).0, Dropped);
    }

    #[test]
    fn noop_driver_and_unfiltered_instances_are_open() {
        let mut s = seed();
        s.plan("compute-2").firewall_driver = FirewallDriver::Noop;
        s.plan("compute-2").security = SecurityPlan::default();
        let e = s.ask("outside", "10.0.0.3", "udp", Some("9"));
        assert!(e.request.verdict.reason.contains("noop"));
        s.plan("compute-2").firewall_driver = FirewallDriver::Iptables;
        let e = s.ask("cirros", "vm2", "udp", Some("9"));
        assert_eq!(outcome(&e).0, Allowed);
        assert!(e.request.verdict.reason.contains("no instance chain"));
    }

    #[test]
    fn nftables_names_its_chains() {
        let mut s = seed();
        s.plan("compute-1").firewall_driver = FirewallDriver::Nftables;
        let e = s.ask("outside", "68.99.26.170", "tcp", Some("23"));
        assert!(e
            .request
            .hops
            .iter()
            .any(|h| h.detail.contains("inet novanet_filter inst_1")));
    }

    #[test]
    fn bad_endpoints_are_named() {
        let mut s = seed();
        assert!(s
            .err("nope", "cirros")
            .contains("invalid src: no instance is named"));
        assert!(s
            .err("cirros", "10.0.0.77")
            .contains("invalid dst: 10.0.0.77 is in network 10.0.0.0/24"));
        assert!(s
            .err("outside", "1.2.3.4")
            .contains("both ends are outside"));
        assert!(s.err("cirros", "68.99.26.170").contains("same instance"));
        let mut twin = vm("vm2", "compute-1", "10.0.0.9");
        twin.uuid = "uuid-twin".into();
        s.vms.push(twin);
        assert!(s
            .err("cirros", "vm2")
            .contains("2 instances are named \"vm2\""));
        // By UUID it is clear.
        let cloud = Cloud {
            plans: &s.plans,
            instances: &s.vms,
        };
        assert!(explain(
            &cloud,
            "cirros",
            "uuid-vm2",
            Traffic::parse(None, None).unwrap()
        )
        .is_ok());
    }

    #[test]
    fn the_explanation_round_trips_as_json() {
        let e = seed().ask("outside", "68.99.26.170", "tcp", Some("22"));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["request"]["verdict"]["outcome"], "allowed");
        assert_eq!(v["traffic"]["proto"], "tcp");
        let back: Explanation = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
