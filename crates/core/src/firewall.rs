//! The firewall and NAT rule model: what a host's netfilter must hold, as data. Drivers
//! (iptables-restore text, nft scripts) render it; nothing here knows their syntax.
//! Floating IPs are not rules here: a plan carries them as bindings, which each driver
//! renders its own way (nova's per-address rules, or one nftables map each way).

use serde::{Deserialize, Serialize};

use crate::valid::{CidrText, IfName, NatTo};

/// The chains novanet owns, in nova-network's layout (seed 004). Each builtin hook jumps to
/// the chain of the same name; `Snat` hangs off a bottom POSTROUTING chain and starts with a
/// jump to `FloatSnat` (where the iptables driver puts floating IPs' SNAT), as nova's did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    pub in_iface: Option<IfName>,
    pub out_iface: Option<IfName>,
    /// CIDR or address (a bare address means /32).
    pub src: Option<CidrText>,
    pub dst: Option<CidrText>,
    pub proto: Option<Proto>,
    pub dport: Option<u16>,
    /// Only packets whose connection was not DNATed (nova's fixed-to-fixed exception).
    pub not_dnat: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Accept,
    Drop,
    /// DNAT to `address[:port]`.
    Dnat(NatTo),
    /// SNAT to an address.
    Snat(NatTo),
    /// To this host's own port (nova's `REDIRECT --to-ports` for a loopback metadata host:
    /// a DNAT to 127.0.0.1 is dropped unless `route_localnet` is set).
    Redirect(u16),
    /// Fill in UDP checksums (DHCP replies to guests that check them).
    ChecksumFill,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub chain: Chain,
    #[serde(default)]
    pub m: Match,
    pub target: Target,
}

/// All of a host's rules, in order within each chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    pub rules: Vec<Rule>,
}

impl Ruleset {
    pub fn push(&mut self, chain: Chain, m: Match, target: Target) {
        self.rules.push(Rule { chain, m, target });
    }
    pub fn in_chain(&self, chain: Chain) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.chain == chain)
    }
}
